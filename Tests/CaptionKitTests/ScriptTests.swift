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
    // With FAKE_RETRIEVAL set, `info --json` shows a model with a retrieval part.
    let script = """
      #!/usr/bin/env bash
      echo "$*" >> "\(record)"
      if [ "$1" = info ] && [ -n "${FAKE_RETRIEVAL:-}" ]; then echo '{"config":{"retrieval":{"cell":"gru"}}}'; fi

      """
    try Data(script.utf8).write(to: URL(fileURLWithPath: fake))
    chmod(fake, 0o755)
    let run = try runBash(
      [packageRoot + "/scripts/train-shapes.sh"] + arguments,
      environment: environment.merging(["CAPTION": fake]) { $1 })
    let calls = (try? String(contentsOfFile: record, encoding: .utf8)) ?? ""
    return (run.status, run.stderr, calls.split(separator: "\n").map(String.init))
  }

  func trainCall(_ calls: [String]) -> String? { calls.first { $0.hasPrefix("train ") } }
  func calibrateCall(_ calls: [String]) -> String? { calls.first { $0.hasPrefix("calibrate ") } }

  func testTrainShapesContinuesAnInterruptedRunAndRefusesToOverwriteOne() throws {
    // A new folder: a new run.
    let fresh = temporaryFolder() + "/run"
    var run = try runTrainShapes([fresh])
    XCTAssertEqual(run.status, 0, run.stderr)
    XCTAssertEqual(
      trainCall(run.calls), "train --data data/shapes-110k --out \(fresh)/shapes.safetensors --retrieval 1")
    // then the calibrations of the bundled file (no λ: this stand-in's model has no retrieval part)
    XCTAssertEqual(
      calibrateCall(run.calls),
      "calibrate --model \(fresh)/shapes.latest.safetensors --out \(fresh)/shapes.bundled.safetensors "
        + "data/shapes-cal3/images")
    // (the renderings run unless this checkout has them already)
    if !FileManager.default.fileExists(atPath: packageRoot + "/data/shapes-cal3/captions.json") {
      XCTAssertTrue(run.calls.contains("dataset shapes --out data/shapes-cal3 --count 4000 --seed 3 --force"))
    }

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
      XCTAssertEqual(
        trainCall(run.calls), "train --data data/shapes-110k --out \(folder)/shapes.safetensors --retrieval 1"
      )
    }
    // RETRIEVAL=W sets the part's weight (0: the captioner alone); a continued run keeps its
    // saved settings; a model with the part gets its λ calibrated too.
    run = try runTrainShapes([fresh + "-alone"], environment: ["RETRIEVAL": "0"])
    XCTAssertEqual(run.status, 0, run.stderr)
    XCTAssertEqual(
      trainCall(run.calls), "train --data data/shapes-110k --out \(fresh)-alone/shapes.safetensors")
    run = try runTrainShapes([interrupted], environment: ["RETRIEVAL": "2", "FAKE_RETRIEVAL": "1"])
    XCTAssertEqual(
      trainCall(run.calls),
      "train --data data/shapes-110k --out \(interrupted)/shapes.safetensors --resume")
    XCTAssertEqual(
      calibrateCall(run.calls),
      "calibrate --model \(interrupted)/shapes.latest.safetensors --out \(interrupted)/shapes.bundled.safetensors "
        + "--rerank-data data/shapes-cal11 data/shapes-cal3/images")
    if !FileManager.default.fileExists(atPath: packageRoot + "/data/shapes-cal11/captions.json") {
      XCTAssertTrue(
        run.calls.contains(
          "dataset shapes --out data/shapes-cal11 --count 1000 --seed 11 --val 1 --test 0 --force"))
    }
  }
}
