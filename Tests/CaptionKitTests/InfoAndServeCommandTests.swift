import Foundation
import XCTest

@testable import CaptionKit

/// `caption info --json` and the hand-over of `caption serve` to the server executable.
final class InfoAndServeCommandTests: XCTestCase {
  func testInfoJSONHoldsWhatInfoSays() throws {
    let model = packageRoot + "/models/shapes.safetensors"
    let run = try runCaption(["info", "--json", model])
    XCTAssertEqual(run.status, 0, run.stderr)
    let object = try XCTUnwrap(
      try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
    XCTAssertEqual(
      Set(object.keys), ["model", "config", "vocabulary", "parameters", "preprocessing", "provenance"])
    XCTAssertEqual(object["model"] as? String, model)
    let config = try XCTUnwrap(object["config"] as? [String: Any])
    XCTAssertEqual(config["image_size"] as? Int, 64)
    XCTAssertEqual(config["cell"] as? String, "lstm")
    XCTAssertEqual((object["vocabulary"] as? [String: Any])?["size"] as? Int, 91)
    XCTAssertEqual((object["parameters"] as? [String: Any])?["total"] as? Int, 1_583_531)
    let preprocessing = try XCTUnwrap(object["preprocessing"] as? [String: Any])
    XCTAssertEqual(preprocessing["mean"] as? [Double], [0.485, 0.456, 0.406])
    XCTAssertEqual((object["provenance"] as? [String: Any])?["epochs"] as? Int, 14)
    XCTAssertEqual(run.stdout.filter { $0 == "\n" }.count, 1, "one line")
  }

  func testServeWithoutTheServerExecutableSaysHowToBuildIt() throws {
    let folder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    let lonely = temporaryFolder()
    try FileManager.default.copyItem(
      atPath: folder.appendingPathComponent("caption").path, toPath: lonely + "/caption")
    let process = Process()
    process.executableURL = URL(fileURLWithPath: lonely + "/caption")
    process.arguments = ["serve", "--port", "0"]
    let errors = Pipe()
    process.standardError = errors
    process.standardOutput = Pipe()
    try process.run()
    let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    XCTAssertEqual(process.terminationStatus, 1)
    XCTAssertTrue(text.contains("swift build -c release --product caption-serve"), text)
  }

  func testServeHandsEveryArgumentToTheServer() throws {
    let folder = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    guard FileManager.default.isExecutableFile(atPath: folder.appendingPathComponent("caption-serve").path)
    else {
      XCTFail("caption-serve is not built beside caption in \(folder.path) (swift test builds it)")
      return
    }
    let help = try runCaption(["serve", "--help"])
    XCTAssertEqual(help.status, 0, help.stderr)
    XCTAssertTrue(help.stdout.contains("--max-batch"), help.stdout)  // the server's help, not caption's
    let usage = try runCaption(["serve", "--max-batch", "0"])
    XCTAssertEqual(usage.status, 64, usage.stderr)
    XCTAssertTrue(usage.stderr.contains("--max-batch"), usage.stderr)
  }
}
