import CaptionKit
import Foundation
import Hummingbird
import HummingbirdTesting
import XCTest

@testable import caption_serve

/// The endpoints, in-process through Hummingbird's test client (no socket) and once over loopback.
final class ServeRouterTests: XCTestCase {
  func makeApplication(_ settings: ServeSettings = testSettings(), metrics: ServeMetrics = ServeMetrics())
    throws
    -> some ApplicationProtocol
  {
    BLAS.setThreads(1)
    let captioner = try Captioner(
      modelPath: bundledModel, decoder: ImageDecoder(maxPixels: settings.maxPixels))
    return buildApplication(
      captioner: captioner, modelPath: bundledModel, settings: settings, metrics: metrics)
  }

  func testHealthReadinessModelMetricsAndPage() async throws {
    let app = try makeApplication()
    try await app.test(.router) { client in
      try await client.execute(uri: "/healthz", method: .get) { response in
        XCTAssertEqual(response.status, .ok)
        XCTAssertEqual(response.headers[.contentType], "application/json")
      }
      try await client.execute(uri: "/readyz", method: .get) { XCTAssertEqual($0.status, .ok) }
      try await client.execute(uri: "/v1/model", method: .get) { response in
        XCTAssertEqual(response.status, .ok)
        let expected = try ModelFile.load(path: bundledModel).summaryJSON(path: bundledModel)
        XCTAssertEqual(text(response.body), expected)
      }
      let image = try bytes(of: try sampleImagePaths(1)[0])
      try await post(image, to: client, expecting: .ok)
      try await client.execute(uri: "/nowhere", method: .get) { XCTAssertEqual($0.status, .notFound) }
      try await client.execute(uri: "/metrics", method: .get) { response in
        XCTAssertEqual(response.status, .ok)
        let body = text(response.body)
        for name in [
          "caption_http_requests_total", "caption_http_request_duration_seconds_bucket",
          "caption_batch_size_bucket",
          "caption_queue_depth", "caption_images_captioned_total 1",
        ] {
          XCTAssertTrue(body.contains(name), "\(name) missing from\n\(body)")
        }
        XCTAssertTrue(
          body.contains(#"caption_http_requests_total{endpoint="/v1/captions",status="200"} 1"#), body)
        XCTAssertTrue(
          body.contains(#"caption_http_requests_total{endpoint="unmatched",status="404"} 1"#), body)
      }
      try await client.execute(uri: "/", method: .get) { response in
        XCTAssertEqual(response.status, .ok)
        let page = text(response.body)
        XCTAssertTrue(page.contains("<input id=\"file\" type=\"file\""))
        XCTAssertTrue(page.contains("/v1/captions"))
        XCTAssertFalse(page.contains("src=\"http"), "no external assets")
        XCTAssertFalse(page.contains("href=\"http"), "no external assets")
      }
    }
  }

  func testFailuresAreJSONWithTheirStatus() async throws {
    var settings = testSettings()
    settings.maxBodyBytes = 1 << 20
    settings.maxPixels = 1000  // below the 64×64 samples
    let app = try makeApplication(settings)
    let png = try bytes(of: try sampleImagePaths(1)[0])
    let randomBytes = noise(count: 5000, seed: 3)
    let cases: [(String, HTTPRequest.Method, String?, [UInt8]?, HTTPResponse.Status)] = [
      ("/nowhere", .get, nil, nil, .notFound),
      ("/v1/captions", .get, nil, nil, .methodNotAllowed),
      ("/healthz", .post, nil, nil, .methodNotAllowed),
      ("/v1/search?q=circle", .get, nil, nil, .notFound),
      ("/v1/captions?colour=red", .post, "image/png", png, .badRequest),
      ("/v1/captions?beam=0", .post, "image/png", png, .badRequest),
      ("/v1/captions?beam=three", .post, "image/png", png, .badRequest),
      ("/v1/captions?temperature=-1", .post, "image/png", png, .badRequest),
      ("/v1/captions?temperature=nan", .post, "image/png", png, .badRequest),
      ("/v1/captions?sample=maybe", .post, "image/png", png, .badRequest),
      ("/v1/captions?seed=-1", .post, "image/png", png, .badRequest),
      ("/v1/captions?beam=1&beam=2", .post, "image/png", png, .badRequest),
      ("/v1/captions?rerank=4&beam=3", .post, "image/png", png, .badRequest),
      ("/v1/captions?rerank=4&sample", .post, "image/png", png, .badRequest),
      ("/v1/captions?rerank_weight=1", .post, "image/png", png, .badRequest),
      ("/v1/captions?rerank=0", .post, "image/png", png, .badRequest),
      ("/v1/captions?rerank=3&rerank_weight=-1", .post, "image/png", png, .badRequest),
      ("/v1/captions?rerank=3&rerank_weight=inf", .post, "image/png", png, .badRequest),
      ("/v1/captions", .post, "image/png", [], .badRequest),
      ("/v1/captions", .post, "multipart/form-data; boundary=x", Array("--x--\r\n".utf8), .badRequest),
      ("/v1/captions", .post, "text/plain", png, .unsupportedMediaType),
      ("/v1/captions", .post, "application/json", Array("{}".utf8), .unsupportedMediaType),
      ("/v1/captions", .post, "image/png", randomBytes, .unsupportedMediaType),
      ("/v1/captions", .post, "image/png", Array(png.prefix(100)), .unprocessableContent),
      ("/v1/captions", .post, "image/png", png, .unprocessableContent),  // over the pixel budget
      (
        "/v1/captions", .post, "application/octet-stream", [UInt8](repeating: 7, count: 1_500_000),
        .contentTooLarge
      ),
    ]
    try await app.test(.router) { client in
      for (uri, method, type, body, status) in cases {
        var headers: HTTPFields = [:]
        if let type { headers[.contentType] = type }
        try await client.execute(
          uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(bytes: $0) }
        ) {
          response in
          XCTAssertEqual(response.status, status, "\(method) \(uri) \(type ?? "")")
          XCTAssertEqual(response.headers[.contentType], "application/json", uri)
          let object =
            try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
          XCTAssertNotNil(object?["error"] as? String, "\(uri): \(text(response.body))")
          if status == .methodNotAllowed { XCTAssertNotNil(response.headers[.allow], uri) }
        }
      }
    }
  }

  /// An application over a queue the test holds.
  func makeApplication(queueing settings: ServeSettings) throws -> (some ApplicationProtocol, CaptionQueue) {
    let metrics = ServeMetrics()
    let queue = CaptionQueue(
      captioner: try Captioner(modelPath: bundledModel), settings: settings, metrics: metrics)
    let router = buildRouter(queue: queue, modelJSON: "{}", settings: settings, metrics: metrics)
    return (
      Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0))), queue
    )
  }

  func testAFullQueueIsNotReadyAndRefusesWithRetryAfter() async throws {
    var settings = testSettings()
    settings.queue = 1
    let (app, queue) = try makeApplication(queueing: settings)
    let image = try bytes(of: try sampleImagePaths(1)[0])
    XCTAssertTrue(queue.admit())  // the one slot, taken
    try await app.test(.router) { client in
      try await client.execute(uri: "/readyz", method: .get) {
        XCTAssertEqual($0.status, .serviceUnavailable)
      }
      try await post(image, to: client, expecting: .serviceUnavailable)
      queue.leave()
      try await client.execute(uri: "/readyz", method: .get) { XCTAssertEqual($0.status, .ok) }
      try await post(image, to: client, expecting: .ok)
    }
  }

  func testBodiesBeyondTheMemoryBudgetAreRefused() async throws {
    var settings = testSettings()
    settings.maxBodyBytes = 1 << 20
    let (app, queue) = try makeApplication(queueing: settings)
    let image = try bytes(of: try sampleImagePaths(1)[0])
    XCTAssertEqual(queue.bodyBudget, 8 << 20)
    XCTAssertTrue(queue.holdBody(queue.bodyBudget - 100))  // other uploads hold nearly all of it
    try await app.test(.router) { client in
      try await post(image, to: client, expecting: .serviceUnavailable)
      queue.releaseBody(queue.bodyBudget - 100)
      for _ in 0..<3 {  // each request gives its bytes back
        try await post(image, to: client, expecting: .ok)
      }
    }
    XCTAssertTrue(queue.holdBody(queue.bodyBudget), "every byte given back")
  }

  func testMultipartFieldNamedImage() async throws {
    let app = try makeApplication()
    let path = try sampleImagePaths(1)[0]
    let png = try bytes(of: path)
    let expected = try describeJSON([path], options: [])[0]
    var body = Array("--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n".utf8)
    body += Array("--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n".utf8)
    body += Array("Content-Type: image/png\r\n\r\n".utf8) + png + Array("\r\n--XyZ--\r\n".utf8)
    let multipart = body
    try await app.test(.router) { client in
      let line = try await captionLine(multipart, type: "multipart/form-data; boundary=XyZ", from: client)
      XCTAssertEqual(line.tokens, expected.tokens)
    }
  }

  /// Concurrent requests with mixed options share batches and each still gets what describe --json
  /// gives with its options.
  func testConcurrentMixedRequestsEqualDescribe() async throws {
    var settings = testSettings()
    settings.maxDelayMilliseconds = 50
    settings.maxBatch = 8
    let metrics = ServeMetrics()
    let app = try makeApplication(settings, metrics: metrics)
    let paths = try sampleImagePaths(8)
    let optionSets: [(query: String, arguments: [String])] = [
      ("", []),
      ("beam=1", ["--beam", "1"]),
      ("beam=5&max_length=6", ["--beam", "5", "--max-length", "6"]),
      (
        "sample=true&temperature=1.5&top_k=8&seed=9",
        ["--sample", "--temperature", "1.5", "--top-k", "8", "--seed", "9"]
      ),
      ("sample&seed=1", ["--sample", "--seed", "1"]),
      ("forbid_unk=1&block_trigrams=true&beam=2", ["--forbid-unk", "--block-trigrams", "--beam", "2"]),
      ("rerank=4", ["--rerank", "4"]),
      ("rerank=3&rerank_weight=5&beam=3", ["--rerank", "3", "--rerank-weight", "5"]),
    ]
    var expected: [[CaptionLine]] = []
    for options in optionSets {
      // each image alone, as describe captions a lone image
      expected.append(try paths.map { try describeJSON([$0], options: options.arguments)[0] })
    }
    let images = try paths.map { try bytes(of: $0) }
    let lonely = expected
    try await app.test(.router) { client in
      try await withThrowingTaskGroup(of: (Int, Int, CaptionLine).self) { group in
        for set in optionSets.indices {
          for image in images.indices {
            group.addTask {
              try await client.execute(
                uri: "/v1/captions?" + optionSets[set].query, method: .post,
                headers: [.contentType: "image/png"], body: ByteBuffer(bytes: images[image])
              ) { response in
                XCTAssertEqual(response.status, .ok, text(response.body))
                return (set, image, try CaptionLine(json: Data(response.body.readableBytesView)))
              }
            }
          }
        }
        for try await (set, image, line) in group {
          let want = lonely[set][image]
          XCTAssertEqual(line.tokens, want.tokens, "\(optionSets[set].query) image \(image)")
          XCTAssertEqual(
            line.logprob, want.logprob, accuracy: 1e-5, "\(optionSets[set].query) image \(image)")
          XCTAssertEqual(line.cosine == nil, want.cosine == nil, "\(optionSets[set].query)")
          XCTAssertEqual(line.cosine ?? 0, want.cosine ?? 0, accuracy: 1e-5, "\(optionSets[set].query)")
          XCTAssertEqual(line.rerankScore ?? 0, want.rerankScore ?? 0, accuracy: 1e-5)
        }
      }
    }
    let report = metrics.text()
    let batches = try XCTUnwrap(metricValue(report, "caption_batch_size_count"))
    let captioned = try XCTUnwrap(metricValue(report, "caption_images_captioned_total"))
    XCTAssertEqual(captioned, Double(optionSets.count * paths.count))
    XCTAssertLessThan(batches, captioned, "no request shared a batch")
  }

  func testLiveServerOnLoopback() async throws {
    let app = try makeApplication()
    let path = try sampleImagePaths(1)[0]
    let expected = try describeJSON([path], options: ["--beam", "1"])[0]
    try await app.test(.live) { client in
      try await client.execute(
        uri: "/v1/captions?beam=1", method: .post, headers: [.contentType: "image/png"],
        body: ByteBuffer(bytes: try bytes(of: path))
      ) { response in
        XCTAssertEqual(response.status, .ok)
        let object = try XCTUnwrap(
          try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any])
        XCTAssertEqual(object["caption"] as? String, expected.tokens.joined(separator: " "))
        XCTAssertEqual(object["familiar"] as? Bool, expected.familiar)
      }
    }
  }
}

/// POSTs a PNG to /v1/captions and checks the answer's status (and `Retry-After: 1` with a 503).
func post(_ image: [UInt8], to client: some TestClientProtocol, expecting status: HTTPResponse.Status)
  async throws
{
  try await client.execute(
    uri: "/v1/captions", method: .post, headers: [.contentType: "image/png"], body: ByteBuffer(bytes: image)
  ) { response in
    XCTAssertEqual(response.status, status, text(response.body))
    if status == .serviceUnavailable { XCTAssertEqual(response.headers[.retryAfter], "1") }
  }
}

/// POSTs a body to /v1/captions and reads the 200 answer.
func captionLine(_ body: [UInt8], type: String, from client: some TestClientProtocol) async throws
  -> CaptionLine
{
  try await client.execute(
    uri: "/v1/captions", method: .post, headers: [.contentType: type], body: ByteBuffer(bytes: body)
  ) { response in
    XCTAssertEqual(response.status, .ok, text(response.body))
    return try CaptionLine(json: Data(response.body.readableBytesView))
  }
}

func text(_ buffer: ByteBuffer) -> String { String(decoding: buffer.readableBytesView, as: UTF8.self) }

/// The value of an unlabelled sample in Prometheus's text format.
func metricValue(_ report: String, _ name: String) -> Double? {
  for line in report.split(separator: "\n") where line.hasPrefix(name + " ") {
    return Double(line.split(separator: " ")[1])
  }
  return nil
}

/// `count` bytes of seeded noise (a 64-bit linear congruential generator's high bytes).
func noise(count: Int, seed: UInt64) -> [UInt8] {
  var state = seed
  return (0..<count).map { _ in
    state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
    return UInt8(truncatingIfNeeded: state >> 56)
  }
}
