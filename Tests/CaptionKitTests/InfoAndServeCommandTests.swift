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
    XCTAssertEqual((object["parameters"] as? [String: Any])?["total"] as? Int, 1_362_923)
    let preprocessing = try XCTUnwrap(object["preprocessing"] as? [String: Any])
    XCTAssertEqual(preprocessing["mean"] as? [Double], [0.485, 0.456, 0.406])
    XCTAssertEqual((object["provenance"] as? [String: Any])?["epochs"] as? Int, 14)
    XCTAssertEqual(run.stdout.filter { $0 == "\n" }.count, 1, "one line")
  }
}
