import Foundation
import XCTest

@testable import CaptionKit

/// The command line's stdout: a failed write is exit 1 with one line, not a silent exit 0; a closed
/// pipe stays quiet.
final class StandardOutputTests: XCTestCase {
  func testAFailedWriteToStandardOutputIsAnError() throws {
    let folder = temporaryFolder()
    let prepare = try runCaption([
      "evaluate", "--model", CommandTests.model, "--data", TrainerTests.dataFolder, "--split", "val",
      "--results", folder + "/results.json", "--references-out", folder + "/references.json",
    ])
    XCTAssertEqual(prepare.status, 0, prepare.stderr)
    let image = TrainerTests.dataFolder + "/images/000000.png"
    for arguments in [
      ["describe", "--json", "--model", CommandTests.model, image],
      ["describe", "--model", CommandTests.model, TrainerTests.dataFolder + "/images"],
      ["info", CommandTests.model],
      [
        "evaluate", "--model", CommandTests.model, "--data", TrainerTests.dataFolder, "--split", "val",
        "--json",
      ],
      ["score", "--results", folder + "/results.json", "--references", folder + "/references.json"],
    ] {
      let run = try runCaption(arguments, stdoutFile: "/dev/full", timeout: 300)
      XCTAssertEqual(run.status, 1, "\(arguments)")
      XCTAssertEqual(
        run.stderr, "caption: standard output: write failed: No space left on device\n", "\(arguments)")
    }
  }

  func testAClosedPipeEndsDescribeQuietly() throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
      .appendingPathComponent("caption")
    process.arguments = ["describe", "--model", CommandTests.model, TrainerTests.dataFolder + "/images"]
    let output = Pipe()
    let errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    try output.fileHandleForReading.close()  // nobody reads: the first write meets a closed pipe
    let stderr = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    XCTAssertEqual(process.terminationReason, .exit)
    XCTAssertEqual(process.terminationStatus, 0)
    XCTAssertEqual(String(decoding: stderr, as: UTF8.self), "")
  }
}
