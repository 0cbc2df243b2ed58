import Foundation
import XCTest

@testable import CaptionKit

/// The `caption` executable end to end: describe's outputs and exit statuses, usage errors (64),
/// bad files (1 and one line on stderr), train and evaluate on a tiny dataset.
final class CommandTests: XCTestCase {
  static let model: String = {
    let folder = temporaryFolder()
    var options = TrainerTests.tinyOptions(out: folder + "/tiny.safetensors")
    options.epochs = 1
    _ = try! Trainer(options: options, log: { _ in }).run(resume: false)
    return folder + "/tiny.safetensors"
  }()

  var image: String { TrainerTests.dataFolder + "/images/000000.png" }

  func testDescribeOneFileGivesTheBareCaption() throws {
    let run = try runCaption(["describe", "--model", CommandTests.model, image])
    XCTAssertEqual(run.status, 0, run.stderr)
    let lines = run.stdout.split(separator: "\n")
    XCTAssertEqual(lines.count, 1)
    XCTAssertFalse(lines[0].hasPrefix(image), "one file: the bare caption")
  }

  func testDescribeJSONAndAFailedImage() throws {
    let missing = temporaryFolder() + "/missing.png"
    let run = try runCaption(["describe", "--json", "--model", CommandTests.model, image, missing])
    XCTAssertEqual(run.status, 1, "an image failed")
    let lines = run.stdout.split(separator: "\n").map { String($0) }
    XCTAssertEqual(lines.count, 2)
    let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
    XCTAssertEqual(first["image"] as? String, image)
    XCTAssertNotNil(first["tokens"] as? [String])
    XCTAssertLessThan((first["logprob"] as? Double) ?? 1, 0)
    XCTAssertEqual(
      (first["tokens"] as? [String])?.joined(separator: " "), first["caption"] as? String)
    let second = try JSONSerialization.jsonObject(with: Data(lines[1].utf8)) as! [String: Any]
    XCTAssertEqual(second["image"] as? String, missing)
    XCTAssertNotNil(second["error"] as? String)
    XCTAssertEqual(run.stderr.split(separator: "\n").count, 1)
    XCTAssertTrue(run.stderr.contains(missing))
  }

  func testDescribeReadsPathsFromStandardInput() throws {
    let second = TrainerTests.dataFolder + "/images/000001.png"
    let run = try runCaption(
      ["describe", "--model", CommandTests.model, "-"], stdin: image + "\n" + second + "\n")
    XCTAssertEqual(run.status, 0, run.stderr)
    let lines = run.stdout.split(separator: "\n")
    XCTAssertEqual(lines.count, 2)
    XCTAssertTrue(lines[0].hasPrefix(image + ": "))
    XCTAssertTrue(lines[1].hasPrefix(second + ": "))
  }

  /// A folder without images, or empty standard input: one line naming it, exit 1 (not silence).
  func testDescribeWithNothingToCaptionIsAnError() throws {
    let empty = temporaryFolder()
    _ = FileManager.default.createFile(atPath: empty + "/notes.txt", contents: Data([1]))
    let nothing: [(arguments: [String], stdin: String?, subject: String)] = [
      ([empty], nil, empty), (["-"], "", "-"), (["-"], "\n \n", "-"),
    ]
    for (arguments, stdin, subject) in nothing {
      let run = try runCaption(["describe", "--model", CommandTests.model] + arguments, stdin: stdin)
      XCTAssertEqual(run.status, 1, "\(arguments)")
      XCTAssertEqual(run.stdout, "")
      XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, run.stderr)
      XCTAssertTrue(run.stderr.hasPrefix("caption: \(subject): no images found"), run.stderr)
    }
  }

  /// A train whose output folder cannot be made: one line naming the folder, exit 1.
  func testTrainOutputFolderErrorIsOneLine() throws {
    let blocker = temporaryFolder() + "/file"
    XCTAssertTrue(FileManager.default.createFile(atPath: blocker, contents: Data([1])))
    let run = try runCaption([
      "train", "--data", TrainerTests.dataFolder, "--out", blocker + "/runs/m.safetensors", "--max-steps",
      "1",
    ])
    XCTAssertEqual(run.status, 1)
    XCTAssertEqual(run.stderr, "caption: \(blocker): exists and is not a folder\n")
  }

  func testBadModelAndUsageErrors() throws {
    let folder = temporaryFolder()
    let bad = folder + "/bad.safetensors"
    try Data("not a model".utf8).write(to: URL(fileURLWithPath: bad))
    let badModel = try runCaption(["describe", "--model", bad, image])
    XCTAssertEqual(badModel.status, 1)
    XCTAssertEqual(badModel.stderr.split(separator: "\n").count, 1)
    XCTAssertTrue(badModel.stderr.contains(bad))

    XCTAssertEqual(try runCaption(["describe", "--beam", "0", image]).status, 64)
    XCTAssertEqual(try runCaption(["describe", "--no-such-option", image]).status, 64)
    XCTAssertEqual(try runCaption(["train", "--data", folder]).status, 64, "--out is required")
    XCTAssertEqual(
      try runCaption(["train", "--data", folder, "--out", folder + "/m.safetensors", "--layers", "3,X"])
        .status,
      64)
    for bad in [
      ["--word-loss", "-1"], ["--scene-loss", "-2"], ["--mention-loss", "-1"], ["--beta2", "1"],
    ] {
      let result = try runCaption(["train", "--data", folder, "--out", folder + "/m.safetensors"] + bad)
      XCTAssertEqual(result.status, 64, "\(bad)")
    }
    let missingData = try runCaption([
      "train", "--data", folder + "/nothing", "--out", folder + "/m.safetensors",
    ])
    XCTAssertEqual(missingData.status, 1)
    XCTAssertTrue(missingData.stderr.contains(folder + "/nothing"))
    let version = try runCaption(["--version"])
    XCTAssertEqual(version.status, 0)
    XCTAssertFalse(version.stdout.isEmpty)
  }

  func testEvaluateJSONHasTheSpecKeys() throws {
    let run = try runCaption([
      "evaluate", "--model", CommandTests.model, "--data", TrainerTests.dataFolder, "--split", "val",
      "--json",
    ])
    XCTAssertEqual(run.status, 0, run.stderr)
    let object = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as! [String: Double]
    for key in [
      "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr-D", "object-F1", "attribute-accuracy",
      "count-accuracy", "relation-accuracy",
    ] {
      XCTAssertNotNil(object[key], key)
    }
  }
}
