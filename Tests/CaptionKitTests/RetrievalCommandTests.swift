import Foundation
import XCTest

@testable import CaptionKit

/// The retrieval part against PyTorch (scripts/make_retrieval_fixture.py), and `caption embed`,
/// `index` and `search` on a tiny model with a retrieval part, with every bad input of SPEC §2/§3b.
final class RetrievalCommandTests: XCTestCase {
  let joint = fixturePath("parity/retrieval_gru.model.safetensors")
  let otherJoint = fixturePath("parity/retrieval_lstm2.model.safetensors")
  let examples = packageRoot + "/datasets/shapes/examples"

  func testSentenceAndImageVectorsMatchPyTorch() throws {
    // within 1e-4 relative L2 of the float64 reference, for a GRU, a 2-layer LSTM and a 2-layer peephole
    for name in ["gru", "lstm2", "peephole2"] {
      let space = try JointSpace(modelPath: fixturePath("parity/retrieval_\(name).model.safetensors"))
      let expected = try Safetensors.read(path: fixturePath("parity/retrieval_\(name).expected.safetensors"))
        .tensors
      let words = expected["batch.words"]!
      let lengths = expected["batch.lengths"]!.array.map { Int($0) }
      let (rows, steps) = (words.shape[0], words.shape[1])
      var tokens = [Int](repeating: 0, count: rows * steps)  // time-major
      for r in 0..<rows { for t in 0..<steps { tokens[t * rows + r] = Int(words[r * steps + t]) } }
      let sentences = space.retrieval.sentences.forward(tokens: tokens, steps: steps, lengths: lengths).array
      let reference = expected["expected.sentences"]!.array.map(Double.init)
      XCTAssertLessThan(relativeL2Error(sentences, reference), 1e-4, "\(name) sentences")
      let images = space.retrieval.images.forward(space.captioner.model.encode(expected["batch.images"]!))
        .array
      XCTAssertLessThan(
        relativeL2Error(images, expected["expected.images"]!.array.map(Double.init)), 1e-4, "\(name) images")
    }
  }

  private func vector(_ line: Substring) throws -> [Double] {
    let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
    return (object["embedding"] as! [NSNumber]).map(\.doubleValue)
  }

  func testEmbedTextsAndImagesAsUnitVectors() throws {
    let run = try runCaption(["embed", "--model", joint, "--text", "a red circle", "--text", "blue square"])
    XCTAssertEqual(run.status, 0, run.stderr)
    let lines = run.stdout.split(separator: "\n")
    XCTAssertEqual(lines.count, 2)
    XCTAssertTrue(lines[0].hasPrefix("{\"text\": \"a red circle\", \"embedding\": ["))
    for line in lines {
      let v = try vector(line)
      XCTAssertEqual(v.count, 5)
      XCTAssertEqual(v.reduce(0) { $0 + $1 * $1 }, 1, accuracy: 1e-5)
    }
    let images = try runCaption([
      "embed", "--model", joint, examples + "/000000.png", examples + "/000001.png",
    ])
    XCTAssertEqual(images.status, 0, images.stderr)
    let imageLines = images.stdout.split(separator: "\n")
    XCTAssertEqual(imageLines.count, 2)
    XCTAssertTrue(imageLines[1].hasPrefix("{\"image\": \"\(examples)/000001.png\", \"embedding\": ["))
    XCTAssertEqual(try vector(imageLines[0]).reduce(0) { $0 + $1 * $1 }, 1, accuracy: 1e-5)
    // images and --text together: a usage error
    XCTAssertEqual(try runCaption(["embed", "--model", joint, "--text", "a", examples]).status, 64)
  }

  func testBadQueriesAndModelsAreOneLineErrors() throws {
    for (query, reason) in [
      ("zebra giraffe", "no word of the text is in the model's vocabulary"), ("", "the text holds no word"),
      (" ,.; ", "the text holds no word"),
    ] {
      let run = try runCaption(["search", "--model", joint, examples, query])
      XCTAssertEqual(run.status, 1, query)
      XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, run.stderr)
      XCTAssertTrue(run.stderr.hasPrefix("caption: query: " + reason), run.stderr)
      XCTAssertEqual(run.stdout, "")
    }
    // a captioner without the retrieval part
    let plain = fixturePath("parity/lstm.model.safetensors")
    let run = try runCaption(["embed", "--model", plain, "--text", "a red circle"])
    XCTAssertEqual(run.status, 1)
    XCTAssertTrue(run.stderr.contains("the model has no retrieval part"), run.stderr)
    XCTAssertEqual(run.stderr.split(separator: "\n").count, 1)
    // 100 000 words: a defined result (the first 100 words), not a crash; one argument of the
    // command line holds at most 128 KiB, so the command gets 20 000 words
    let space = try JointSpace(modelPath: joint)
    let huge = Array(repeating: "red circle", count: 50_000).joined(separator: " ")
    XCTAssertEqual(try space.words(huge).count, JointSpace.maximumQueryWords)
    XCTAssertEqual(
      try space.textVector(huge),
      try space.textVector(Array(repeating: "red circle", count: 50).joined(separator: " ")))
    let long = Array(repeating: "red circle", count: 10_000).joined(separator: " ")
    let longRun = try runCaption(["search", "--model", joint, examples, long, "--top", "1"], timeout: 60)
    XCTAssertEqual(longRun.status, 0, longRun.stderr)
    XCTAssertEqual(longRun.stdout.split(separator: "\n").count, 1)
  }

  func testIndexUpdatesOnlyChangedFilesAndSearchMatchesTheFolder() throws {
    let folder = temporaryFolder()
    let images = folder + "/images"
    try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: true)
    for name in ["000000.png", "000001.png", "000002.png", "000003.png"] {
      try FileManager.default.copyItem(atPath: examples + "/" + name, toPath: images + "/" + name)
    }
    try Data("not a png".utf8).write(to: URL(fileURLWithPath: images + "/broken.png"))
    let index = folder + "/shapes.index"
    let first = try runCaption(["index", images, "--out", index, "--model", joint])
    XCTAssertEqual(first.status, 0, first.stderr)
    XCTAssertTrue(first.stderr.contains("\(index): 4 images (4 encoded, 0 kept), 1 skipped"), first.stderr)
    XCTAssertTrue(first.stderr.contains("caption: skipped \(images)/broken.png: "), first.stderr)
    // searching the index and the folder give the same ranking and scores
    let query = "a red circle left of a blue square"
    let fromIndex = try runCaption([
      "search", "--index", index, "--model", joint, query, "--json", "--top", "3",
    ])
    XCTAssertEqual(fromIndex.status, 0, fromIndex.stderr)
    let fromFolder = try runCaption(["search", "--model", joint, images, query, "--json", "--top", "3"])
    XCTAssertEqual(fromFolder.stdout, fromIndex.stdout)
    XCTAssertTrue(fromFolder.stderr.contains("skipped 1 images that could not be read"), fromFolder.stderr)
    let scores = try fromIndex.stdout.split(separator: "\n").map {
      (try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any])["score"] as! Double
    }
    XCTAssertEqual(scores.count, 3)
    XCTAssertEqual(scores, scores.sorted(by: >))
    let plain = try runCaption(["search", "--index", index, "--model", joint, query, "--top", "1"])
    XCTAssertTrue(plain.stdout.hasPrefix(String(format: "%.4f ", scores[0]) + images + "/0000"), plain.stdout)
    XCTAssertEqual(plain.stdout.split(separator: "\n").count, 1)
    // unchanged files are kept; a changed file is encoded again; a removed one is dropped
    let again = try runCaption(["index", images, "--out", index, "--model", joint])
    XCTAssertTrue(again.stderr.contains("4 images (0 encoded, 4 kept)"), again.stderr)
    try FileManager.default.removeItem(atPath: images + "/000003.png")
    try FileManager.default.copyItem(atPath: examples + "/000004.png", toPath: images + "/000003.png")
    let changed = try runCaption(["index", images, "--out", index, "--model", joint])
    XCTAssertTrue(changed.stderr.contains("4 images (1 encoded, 3 kept)"), changed.stderr)
    // another model's index, a corrupt index
    let other = try runCaption(["search", "--index", index, "--model", otherJoint, query])
    XCTAssertEqual(other.status, 1)
    XCTAssertTrue(
      other.stderr.hasPrefix("caption: \(index): the index was made with another model"), other.stderr)
    try Data("garbage".utf8).write(to: URL(fileURLWithPath: index))
    let corrupt = try runCaption(["search", "--index", index, "--model", joint, query])
    XCTAssertEqual(corrupt.status, 1)
    XCTAssertEqual(corrupt.stderr.split(separator: "\n").count, 1, corrupt.stderr)
    XCTAssertTrue(corrupt.stderr.hasPrefix("caption: \(index): not an image index"), corrupt.stderr)
    // a model file is not an index
    let notIndex = try runCaption(["search", "--index", joint, "--model", joint, query])
    XCTAssertEqual(notIndex.status, 1)
    XCTAssertTrue(notIndex.stderr.contains("not an image index"), notIndex.stderr)
  }
}
