import Foundation
import XCTest

@testable import CaptionKit

/// Messages and output lines: control characters from file names, words and stdin are escaped, long
/// names are cut, and every error is one line of our own that names the file and the reason.
final class MessageTests: XCTestCase {
  func testControlCharactersAreEscaped() {
    XCTAssertEqual(PrintableText.escaped("plain/name.png"), "plain/name.png")
    XCTAssertEqual(
      PrintableText.escaped("a\nb\r\tc\0d\u{1B}[31m\u{7F}\u{85}é\\n"),
      "a\\nb\\r\\tc\\0d\\u{1b}[31m\\u{7f}\\u{85}é\\n")
  }

  func testLongNamesAreCut() {
    let exact = String(repeating: "x", count: PrintableText.maximumNameLength)
    XCTAssertEqual(PrintableText.name(exact), exact)
    let long = String(repeating: "y", count: 5_000_000)
    let cut = PrintableText.name(long)
    XCTAssertEqual(cut.unicodeScalars.count, PrintableText.maximumNameLength)
    XCTAssertEqual(cut, String(repeating: "y", count: PrintableText.maximumNameLength - 1) + "…")
    let controls = PrintableText.name(String(repeating: "\u{1B}", count: 1000))
    XCTAssertEqual(controls.unicodeScalars.count, PrintableText.maximumNameLength)
    XCTAssertTrue(controls.hasSuffix("…"))
  }

  func testAnErrorIsOneShortLine() {
    let error = CaptionError(.unreadable, path: "images/a\nfake: caption\u{1B}[2J.png", "bad\nthing\0")
    XCTAssertEqual(error.description, "images/a\\nfake: caption\\u{1b}[2J.png: bad\\nthing\\0")
    let long = CaptionError(
      .unreadable, path: String(repeating: "d/", count: 100_000), String(repeating: "r", count: 100_000))
    XCTAssertFalse(long.description.contains("\n"))
    XCTAssertLessThanOrEqual(
      long.description.unicodeScalars.count,
      PrintableText.maximumNameLength + 2 + PrintableText.maximumReasonLength)
  }

  func testDescribeLinesEscapeNamesAndWords() {
    let line = DescribeOutput.plainLine(
      path: "x\ny.png", caption: "a \u{1B}]0;title\u{07} dog", bare: false)
    XCTAssertEqual(line, "x\\ny.png: a \\u{1b}]0;title\\u{7} dog")
    let json = DescribeOutput.jsonLine(path: "x\u{1B}.png", tokens: ["\u{9B}2J"], logprob: -1)
    XCTAssertFalse(json.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) })
    XCTAssertTrue(json.contains("\\u001b") && json.contains("\\u009b"), json)
  }

  /// Trains one step, lets `change` alter the training state's tensors and metadata, writes it back,
  /// and returns the error a resume then ends with (the state's path checked), or nil.
  private func resumeError(
    _ change: (_ tensors: [String: Tensor], _ metadata: inout [String: String]) throws -> Void
  ) throws -> CaptionError? {
    let out = temporaryFolder() + "/m.safetensors"
    var options = TrainerTests.tinyOptions(out: out)
    options.maxSteps = 1
    _ = try Trainer(options: options, log: { _ in }).run(resume: false)
    let files = TrainingFiles(out: out)
    let state = try Safetensors.read(path: files.state)
    var metadata = state.metadata
    try change(state.tensors, &metadata)
    try Safetensors.write(
      path: files.state,
      tensors: state.tensors.sorted { $0.key < $1.key }.map { (name: $0.key, tensor: $0.value) },
      metadata: metadata)
    do {
      _ = try Trainer(options: options, log: { _ in }).run(resume: true)
      return nil
    } catch let error as CaptionError {
      XCTAssertEqual(error.path, files.state)
      return error
    }
  }

  func testABadOptionsEntryInTheStateIsNamed() throws {
    let error = try XCTUnwrap(try resumeError { _, metadata in metadata["options"] = "{\"data\": 5}" })
    XCTAssertTrue(error.reason.hasPrefix("options: at data: "), error.reason)
    XCTAssertFalse(error.description.contains("\n"))
  }

  /// A training state whose saved weights hold a NaN does not resume: one error naming the state and
  /// the tensor (`SafetensorsFile.nonFinite`, noted as the state is read).
  func testANonFiniteWeightInTheStateIsNamed() throws {
    var name = ""
    let error = try XCTUnwrap(
      try resumeError { tensors, _ in
        name = try XCTUnwrap(tensors.keys.sorted().first { $0.hasPrefix("model.") })
        tensors[name]![0] = .nan
      })
    XCTAssertEqual(error.reason, "tensor \"\(name)\" holds a value that is not finite")
  }

  func testStandardInputPathsAreEscapedCutAndNeverCutShortAtANUL() throws {
    let folder = temporaryFolder()
    let image = folder + "/x.png"
    try FileManager.default.copyItem(atPath: TrainerTests.dataFolder + "/images/000000.png", toPath: image)
    let escape = folder + "/\u{1B}[2Jfake: caption.png"
    let long = folder + "/" + String(repeating: "n", count: 5000) + ".png"
    let run = try runCaption(
      ["describe", "--model", CommandTests.model, "-"],
      stdin: image + "\0.jpg\n" + escape + "\n" + long + "\n")
    XCTAssertEqual(run.status, 1)
    XCTAssertEqual(run.stdout, "", "the NUL path is not x.png")
    let lines = run.stderr.split(separator: "\n").map(String.init)
    guard lines.count == 3 else { return XCTFail("not one line per path: \(run.stderr)") }
    XCTAssertEqual(lines[0], "caption: " + image + "\\0.jpg: the file name holds a NUL byte")
    XCTAssertEqual(lines[1], "caption: " + folder + "/\\u{1b}[2Jfake: caption.png: no such file")
    XCTAssertLessThan(lines[2].count, 300, "a long name is cut")
    XCTAssertTrue(lines[2].contains("…"))
  }

  func testDatasetFileNamesAreEscapedAndCutInEvaluate() throws {
    let copy = temporaryFolder() + "/data"
    try FileManager.default.copyItem(atPath: TrainerTests.dataFolder, toPath: copy)
    let captions = copy + "/captions.json"
    var text = try String(contentsOfFile: captions, encoding: .utf8)
    guard let range = text.range(of: "\"filename\":\"images/") else {
      return XCTFail("no filename in \(captions)")
    }
    text.insert(contentsOf: "bad\\u001b[2J\\nname" + String(repeating: "n", count: 300), at: range.upperBound)
    try text.write(toFile: captions, atomically: true, encoding: .utf8)
    for split in ["train", "val"] {
      let run = try runCaption([
        "evaluate", "--model", CommandTests.model, "--data", copy, "--split", split,
      ])
      guard run.stderr.contains("bad") else { continue }  // the renamed image is in the other split
      XCTAssertEqual(run.status, 0, run.stderr)
      XCTAssertFalse(run.stderr.contains("\u{1B}"), run.stderr)
      let line = run.stderr.split(separator: "\n").first { $0.contains("bad") } ?? ""
      XCTAssertTrue(
        line.hasPrefix("caption: skipped " + copy + "/images/bad\\u{1b}[2J\\nnamennn"), run.stderr)
      XCTAssertTrue(line.hasSuffix("…: cannot open: File name too long"), run.stderr)
      return
    }
    XCTFail("no split reported the renamed image")
  }
}
