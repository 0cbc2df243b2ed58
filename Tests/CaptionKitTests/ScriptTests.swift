import Foundation
import XCTest

@testable import CaptionKit

/// scripts/train-shapes.sh run with a stand-in `caption` (CAPTION=…) that records its arguments:
/// what the script decides to run, not the training itself.
final class ScriptTests: XCTestCase {
  /// Runs the script with `arguments`; returns its exit status, stderr, and the argument lines the
  /// stand-in received (one line per call).
  func runTrainShapes(_ arguments: [String], environment: [String: String] = [:]) throws -> (
    status: Int32, stderr: String, calls: [String]
  ) {
    let folder = temporaryFolder()
    let record = folder + "/calls"
    let fake = folder + "/caption"
    try Data("#!/usr/bin/env bash\necho \"$*\" >> \"\(record)\"\n".utf8).write(to: URL(fileURLWithPath: fake))
    chmod(fake, 0o755)
    let run = try runBash(
      [packageRoot + "/scripts/train-shapes.sh"] + arguments,
      environment: environment.merging(["CAPTION": fake]) { $1 })
    let calls = (try? String(contentsOfFile: record, encoding: .utf8)) ?? ""
    return (run.status, run.stderr, calls.split(separator: "\n").map(String.init))
  }

  func trainCall(_ calls: [String]) -> String? { calls.first { $0.hasPrefix("train ") } }

  func testTrainShapesContinuesAnInterruptedRunAndRefusesToOverwriteOne() throws {
    // A new folder: a new run.
    let fresh = temporaryFolder() + "/run"
    var run = try runTrainShapes([fresh])
    XCTAssertEqual(run.status, 0, run.stderr)
    XCTAssertEqual(trainCall(run.calls), "train --data data/shapes-110k --out \(fresh)/shapes.safetensors")

    // The state of an interrupted run: continued.
    let interrupted = temporaryFolder()
    for name in ["shapes.latest.state", "shapes.latest.safetensors", "shapes.log.jsonl"] {
      FileManager.default.createFile(atPath: interrupted + "/" + name, contents: Data([1]))
    }
    run = try runTrainShapes([interrupted])
    XCTAssertEqual(run.status, 0, run.stderr)
    XCTAssertEqual(
      trainCall(run.calls), "train --data data/shapes-110k --out \(interrupted)/shapes.safetensors --resume")

    // A run's files without its state: refused, nothing trained; --force starts over.
    let orphaned = temporaryFolder()
    FileManager.default.createFile(atPath: orphaned + "/shapes.log.jsonl", contents: Data([1]))
    run = try runTrainShapes([orphaned])
    XCTAssertEqual(run.status, 1)
    XCTAssertNil(trainCall(run.calls))
    XCTAssertTrue(run.stderr.contains("\(orphaned)/shapes.log.jsonl exists"), run.stderr)
    for folder in [orphaned, interrupted] {
      run = try runTrainShapes(["--force", folder])
      XCTAssertEqual(run.status, 0, run.stderr)
      XCTAssertEqual(trainCall(run.calls), "train --data data/shapes-110k --out \(folder)/shapes.safetensors")
    }
    // RETRIEVAL=W: the retrieval part trained jointly; a continued run keeps its saved settings.
    run = try runTrainShapes([fresh + "-joint"], environment: ["RETRIEVAL": "1"])
    XCTAssertEqual(run.status, 0, run.stderr)
    XCTAssertEqual(
      trainCall(run.calls),
      "train --data data/shapes-110k --out \(fresh)-joint/shapes.safetensors --retrieval 1")
    run = try runTrainShapes([interrupted], environment: ["RETRIEVAL": "1"])
    XCTAssertEqual(
      trainCall(run.calls),
      "train --data data/shapes-110k --out \(interrupted)/shapes.safetensors --resume")
  }
}
