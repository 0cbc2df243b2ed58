import CaptionKit
import Foundation
import Hummingbird
import HummingbirdTesting
import XCTest

@testable import caption_serve

/// `GET /v1/search` over an index of the bundled model, against `caption search --index`; the
/// start-up refusals; and `familiar` in caption answers against `caption describe --json`.
final class ServeSearchTests: XCTestCase {
  static let photo = packageRoot + "/Tests/CaptionKitTests/Fixtures/corpus/exif/Landscape_1.jpg"
  var folder = ""
  var index = ""

  override func setUpWithError() throws {
    folder = NSTemporaryDirectory() + "serve-search-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    index = folder + "/sample.index"
    let made = try runTool("caption", ["index", sampleImages, "--out", index, "--model", bundledModel])
    XCTAssertEqual(made.status, 0, made.stderr)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(atPath: folder)
  }

  func makeApplication(search: ImageSearch?, metrics: ServeMetrics = ServeMetrics()) throws
    -> some ApplicationProtocol
  {
    BLAS.setThreads(1)
    return buildApplication(
      captioner: try Captioner(modelPath: bundledModel), modelPath: bundledModel, settings: testSettings(),
      metrics: metrics, search: search)
  }

  /// `caption search --index --json` as (path, score) pairs, best first.
  func cliSearch(_ query: String, top: Int) throws -> [SearchHit] {
    let run = try runTool(
      "caption", ["search", "--index", index, "--model", bundledModel, query, "--json", "--top", String(top)])
    XCTAssertEqual(run.status, 0, run.stderr)
    return try run.stdout.split(separator: UInt8(ascii: "\n")).map { try SearchHit(Data($0)) }
  }

  func testSearchRanksAsCaptionSearch() async throws {
    let metrics = ServeMetrics()
    let search = try ImageSearch(indexPath: index, modelPath: bundledModel, capacity: 8)
    XCTAssertEqual(search.count, 200)
    let app = try makeApplication(search: search, metrics: metrics)
    let queries: [(text: String, top: Int?)] = [
      ("two red circles left of a blue star", 5), ("a green square", nil), ("hearts", 200),
      ("a small yellow triangle above a big purple circle", 1000), ("circle circle circle", 1),
    ]
    var expected: [[SearchHit]] = []
    for query in queries { expected.append(try cliSearch(query.text, top: query.top ?? 10)) }
    let wanted = expected
    try await app.test(.router) { client in
      for (query, want) in zip(queries, wanted) {
        var parameters = "q=" + query.text.replacingOccurrences(of: " ", with: "+")
        if let top = query.top { parameters += "&top=\(top)" }
        try await client.execute(uri: "/v1/search?" + parameters, method: .get) { response in
          XCTAssertEqual(response.status, .ok, text(response.body))
          XCTAssertEqual(response.headers[.contentType], "application/json")
          let object = try XCTUnwrap(
            try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any])
          let results = try XCTUnwrap(object["results"] as? [[String: Any]])
          let hits = try results.map { try SearchHit(object: $0) }
          XCTAssertEqual(hits.count, min(query.top ?? 10, 200), query.text)
          XCTAssertEqual(hits, want, query.text)
        }
      }
      // percent-encoded text reads as the same query
      try await client.execute(
        uri: "/v1/search?q=two%20red%20circles%20left%20of%20a%20blue%20star&top=5", method: .get
      ) {
        response in
        let object = try XCTUnwrap(
          try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any])
        let results = try XCTUnwrap(object["results"] as? [[String: Any]])
        XCTAssertEqual(try results.map { try SearchHit(object: $0) }, wanted[0])
      }
      try await client.execute(uri: "/", method: .get) { response in
        let page = text(response.body)
        XCTAssertTrue(page.contains("<input id=\"query\""), "a search box")
        XCTAssertTrue(page.contains("/v1/search?"))
        XCTAssertFalse(page.contains("<img id=\"result"), "results are listed, not shown")
      }
    }
    XCTAssertTrue(
      metrics.text().contains(#"caption_http_requests_total{endpoint="/v1/search",status="200"} 6"#),
      metrics.text())
  }

  func testBadSearchesAreRefusedWithTheCommandLinesMessages() async throws {
    let search = try ImageSearch(indexPath: index, modelPath: bundledModel, capacity: 8)
    let app = try makeApplication(search: search)
    // the command line's messages for a text of no word and of no known word
    let empty = try runTool("caption", ["search", "--index", index, "--model", bundledModel, ""])
    let unknown = try runTool(
      "caption", ["search", "--index", index, "--model", bundledModel, "zebra xylophone"])
    XCTAssertEqual(empty.status, 1)
    XCTAssertEqual(unknown.status, 1)
    let cases: [(uri: String, message: String?)] = [
      ("/v1/search", nil), ("/v1/search?top=3", nil), ("/v1/search?q=", oneLine(empty.stderr)),
      ("/v1/search?q=+++", oneLine(empty.stderr)), ("/v1/search?q=zebra+xylophone", oneLine(unknown.stderr)),
      ("/v1/search?q=circle&top=0", nil), ("/v1/search?q=circle&top=ten", nil),
      ("/v1/search?q=circle&top=1001", nil), ("/v1/search?q=circle&colour=red", nil),
      ("/v1/search?q=circle&q=star", nil), ("/v1/search?q=%ZZ", nil),
    ]
    try await app.test(.router) { client in
      for (uri, message) in cases {
        try await client.execute(uri: uri, method: .get) { response in
          XCTAssertEqual(response.status, .badRequest, uri)
          let object =
            try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
          let error = try XCTUnwrap(object?["error"] as? String, "\(uri): \(text(response.body))")
          if let message { XCTAssertEqual("caption: " + error, message, uri) }
        }
      }
      try await client.execute(uri: "/v1/search?q=circle", method: .post) {
        XCTAssertEqual($0.status, .methodNotAllowed)
      }
    }
  }

  func testWithoutAnIndexSearchIs404AndThePageHasNoSearchBox() async throws {
    let app = try makeApplication(search: nil)
    try await app.test(.router) { client in
      try await client.execute(uri: "/v1/search?q=circle", method: .get) { response in
        XCTAssertEqual(response.status, .notFound)
        XCTAssertTrue(text(response.body).contains("no image index"), text(response.body))
      }
      try await client.execute(uri: "/", method: .get) { response in
        XCTAssertFalse(text(response.body).contains("id=\"query\""))
        XCTAssertFalse(text(response.body).contains("/v1/search"))
      }
    }
  }

  /// An index of another model, a corrupt index, or no index file: one line, exit 1, the same
  /// reason `caption search --index` gives.
  func testBadIndexesAreRefusedAtStartUp() throws {
    let other = folder + "/other.safetensors"  // the bundled model with another calibration: another hash
    let calibrated = try runTool(
      "caption",
      ["calibrate", packageRoot + "/datasets/shapes/examples", "--model", bundledModel, "--out", other])
    XCTAssertEqual(calibrated.status, 0, calibrated.stderr)
    let corrupt = folder + "/corrupt.index"
    var content = try bytes(of: index)
    content.removeLast(100)
    try Data(content).write(to: URL(fileURLWithPath: corrupt))
    for (model, file) in [(other, index), (bundledModel, corrupt), (bundledModel, folder + "/none.index")] {
      let served = try runTool(
        "caption-serve", ["--model", model, "--index", file, "--port", "0"], timeout: 30)
      let searched = try runTool("caption", ["search", "--index", file, "--model", model, "circle"])
      XCTAssertEqual(served.status, 1, file)
      XCTAssertEqual(searched.status, 1, file)
      XCTAssertEqual(served.stdout.count, 0, "it never listened")
      XCTAssertEqual(served.stderr.split(separator: "\n").count, 1, served.stderr)
      XCTAssertTrue(served.stderr.hasPrefix("caption-serve: "), served.stderr)
      XCTAssertEqual(
        served.stderr.dropFirst("caption-serve: ".count), searched.stderr.dropFirst("caption: ".count), file)
    }
  }

  /// `familiar` is what `describe --json` says for the same image: a shapes scene is familiar, a
  /// photograph is not.
  func testFamiliarIsDescribesVerdict() async throws {
    let scene = try sampleImagePaths(1)[0]
    let expected = try describeJSON([scene], options: []) + describeJSON([Self.photo], options: [])
    XCTAssertEqual(expected.map(\.familiar), [true, false])
    let app = try makeApplication(search: nil)
    let images = [try bytes(of: scene), try bytes(of: Self.photo)]
    try await app.test(.router) { client in
      for (image, want) in zip(images, expected) {
        let line = try await captionLine(image, type: "application/octet-stream", from: client)
        XCTAssertEqual(line.tokens, want.tokens)
        XCTAssertEqual(line.logprob, want.logprob, accuracy: 1e-5)
        XCTAssertEqual(line.familiar, want.familiar)
      }
    }
  }
}

/// One result of a search: `{"image": PATH, "score": FLOAT}`.
struct SearchHit: Equatable {
  var image: String
  var score: Double

  init(_ json: Data) throws {
    try self.init(object: try XCTUnwrap(try JSONSerialization.jsonObject(with: json) as? [String: Any]))
  }

  init(object: [String: Any]) throws {
    XCTAssertEqual(object.count, 2, "\(object)")
    image = try XCTUnwrap(object["image"] as? String)
    score = try XCTUnwrap(object["score"] as? Double)
  }
}

/// A message of one line, without its newline (nil when it is not one line).
func oneLine(_ text: String) -> String? {
  let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
  return lines.count == 2 && lines[1].isEmpty ? String(lines[0]) : nil
}
