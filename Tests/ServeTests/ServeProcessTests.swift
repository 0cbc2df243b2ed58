import CaptionKit
import Foundation
import XCTest

/// A real `caption-serve` process on a free loopback port: hostile requests, slow connections and
/// stop signals. Every wait is bounded by socket timeouts.
final class ServeProcessTests: XCTestCase {
  static let corpus = packageRoot + "/Tests/CaptionKitTests/Fixtures/corpus"

  /// One request and the status it must get (for 200, the caption's words too).
  struct Probe: Sendable {
    var name: String
    var send: @Sendable (RawConnection) -> Void
    var status: Set<Int>
    var words: [String]? = nil
  }

  func testHostileRequestsAmongGoodOnesLeaveTheServerUpAndItsMemoryFlat() throws {
    let server = try ServerProcess(arguments: [
      "--idle-timeout", "1", "--max-body-mb", "1", "--max-pixels", "4000000",
    ])
    let good = try goodProbes()
    let hostile = try hostileProbes()
    // warm-up: the same mix, so that every thread and buffer the server uses has been used
    let warmUp = (0..<120).map { $0 % 2 == 0 ? good[$0 / 2 % good.count] : hostile[$0 / 2 % hostile.count] }
    XCTAssertEqual(run(warmUp, port: server.port), [])
    let afterWarmUp = server.residentKB()
    // 1 000 requests: every third is good, the rest hostile (the slow ones once in 40)
    var probes: [Probe] = []
    for index in 0..<1000 {
      if index % 3 == 0 {
        probes.append(good[index / 3 % good.count])
      } else {
        probes.append(hostile[index % hostile.count])
      }
    }
    XCTAssertEqual(run(probes, port: server.port), [])
    let health = exchange(port: server.port, rawRequest("GET", "/healthz"))
    XCTAssertEqual(health?.status, 200, "the server is still up")
    let afterwards = server.residentKB()
    XCTAssertGreaterThan(afterWarmUp, 0)
    XCTAssertLessThanOrEqual(
      Double(afterwards), Double(afterWarmUp) * 1.2,
      "resident memory grew from \(afterWarmUp) kB to \(afterwards) kB")
  }

  func testSlowConnectionsDoNotStopOthersAndTimeOut() throws {
    let server = try ServerProcess(arguments: ["--idle-timeout", "3"])
    var slow: [RawConnection] = []
    for index in 0..<200 {
      guard let connection = RawConnection(port: server.port, timeout: 10) else {
        XCTFail("connection \(index) refused")
        return
      }
      if index % 2 == 0 {
        connection.send("POST /v1/captions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")  // half a head
      } else {
        connection.send(
          "POST /v1/captions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n\u{89}PNG")
      }
      slow.append(connection)
    }
    let good = try goodProbes()
    XCTAssertEqual(
      run(Array(good.prefix(20)), port: server.port, workers: 2), [], "served beside the slow ones")
    // each slow connection is closed by the server once the idle timeout has passed
    var open = 0
    for connection in slow where !connection.closedByPeer() { open += 1 }
    XCTAssertEqual(open, 0, "slow connections still open 10 s after their last byte")
  }

  func testSIGTERMWithRequestsInFlightAnswersThemAndExitsCleanly() throws {
    try checkStop(signal: SIGTERM)
  }

  func testSIGINTWithRequestsInFlightAnswersThemAndExitsCleanly() throws {
    try checkStop(signal: SIGINT)
  }

  /// 16 caption requests in flight and one body that never ends, then `signal`: every request is
  /// answered 200 or 503, the process exits 0 within 5 s, and it listened on loopback only.
  func checkStop(signal: Int32) throws {
    let server = try ServerProcess()
    XCTAssertEqual(server.host, "127.0.0.1", "binds to loopback unless told otherwise")
    let image = try bytes(of: try sampleImagePaths(1)[0])
    let stuck = try XCTUnwrap(RawConnection(port: server.port))
    stuck.send("POST /v1/captions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000\r\n\r\n\u{89}PNG")
    let connections = (0..<16).compactMap { _ in RawConnection(port: server.port) }
    XCTAssertEqual(connections.count, 16)
    for connection in connections {
      connection.send(
        rawRequest("POST", "/v1/captions?beam=20", headers: ["Content-Type: image/png"], body: image))
    }
    // signal once the server has read all 16 (each is then being captioned or answered), or after 5 s
    for _ in 0..<500 {
      let metrics = exchange(port: server.port, rawRequest("GET", "/metrics"))?.bodyText ?? ""
      let held = metricValue(metrics, "caption_queue_depth") ?? 0
      let answered =
        metricValue(metrics, #"caption_http_requests_total{endpoint="/v1/captions",status="200"}"#) ?? 0
      if held + answered >= 16 { break }
      usleep(10_000)
    }
    let start = Date()
    let status = server.stop(signal: signal, timeout: 5)
    XCTAssertEqual(status, 0, "exit status (nil: still running after 5 s)")
    XCTAssertLessThan(Date().timeIntervalSince(start), 5.5)
    for (index, connection) in connections.enumerated() {
      let answer = connection.readResponse()
      XCTAssertTrue(
        [200, 503].contains(answer?.status ?? 0), "request \(index): \(String(describing: answer?.status))")
    }
  }

  // MARK: - The probes

  func goodProbes() throws -> [Probe] {
    let paths = try sampleImagePaths(4)
    let expected = try paths.map { try describeJSON([$0], options: [])[0] }
    var probes: [Probe] = []
    for (path, line) in zip(paths, expected) {
      let image = try bytes(of: path)
      probes.append(
        Probe(
          name: "good " + path,
          send: {
            $0.send(rawRequest("POST", "/v1/captions", headers: ["Content-Type: image/png"], body: image))
          },
          status: [200], words: line.tokens))
    }
    return probes
  }

  func hostileProbes() throws -> [Probe] {
    let png = try bytes(of: try sampleImagePaths(1)[0])
    let jpeg = try bytes(of: Self.corpus + "/jpeg/testorig.jpg")
    let randomBytes = noise(count: 20_000, seed: 5)
    func post(_ name: String, _ target: String, _ type: String, _ body: [UInt8], _ status: Int) -> Probe {
      Probe(
        name: name,
        send: { $0.send(rawRequest("POST", target, headers: ["Content-Type: " + type], body: body)) },
        status: [status])
    }
    func raw(_ name: String, _ text: [UInt8], _ status: Set<Int>) -> Probe {
      Probe(name: name, send: { $0.send(text) }, status: status)
    }
    let hugeHeader = rawRequest(
      "GET", "/healthz", headers: ["X-Filler: " + String(repeating: "a", count: 200_000)])
    let neverEnding =
      Array(
        "POST /v1/captions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
          .utf8)
      + Array("4\r\n".utf8) + Array(png.prefix(4)) + Array("\r\n".utf8)
    var chunkedOver = Array(
      "POST /v1/captions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
        .utf8)
    for _ in 0..<40 {
      chunkedOver += Array("8000\r\n".utf8) + [UInt8](repeating: 1, count: 0x8000) + [13, 10]
    }
    chunkedOver += Array("0\r\n\r\n".utf8)
    var probes = [
      post("truncated PNG", "/v1/captions", "image/png", Array(png.prefix(200)), 422),
      post("truncated JPEG", "/v1/captions", "image/jpeg", Array(jpeg.prefix(jpeg.count / 3)), 422),
      post("PNG bomb", "/v1/captions", "image/png", pngClaiming(png, width: 60_000, height: 60_000), 422),
      post("JPEG bomb", "/v1/captions", "image/jpeg", jpegClaiming(jpeg, width: 65_000, height: 65_000), 422),
      post("random bytes", "/v1/captions", "image/jpeg", randomBytes, 415),
      post("wrong type", "/v1/captions", "text/plain", png, 415),
      post("bad beam", "/v1/captions?beam=-3", "image/png", png, 400),
      post("unknown parameter", "/v1/captions?path=/etc/passwd", "image/png", png, 400),
      post("bad temperature", "/v1/captions?sample&temperature=inf", "image/png", png, 400),
      post("no image field", "/v1/captions", "multipart/form-data; boundary=b", Array("--b--\r\n".utf8), 400),
      post(
        "body over the limit", "/v1/captions", "application/octet-stream",
        [UInt8](repeating: 0, count: 1_100_000), 413),
      raw("chunked body over the limit", chunkedOver, [413]),
      raw("huge header", hugeHeader, [400, 431]),
      raw("not HTTP", Array("HELLO THERE\r\n\r\n".utf8), [400]),
      raw("wrong method", rawRequest("DELETE", "/v1/captions"), [405]),
      raw("no such path", rawRequest("GET", "/../../etc/passwd"), [404]),
    ]
    // the slowest kind last: it waits for the idle timeout
    probes += [raw("chunked body that never ends", neverEnding, [408])]
    return probes
  }

  /// Runs `probes` over `workers` threads, each on its own connection; the failures, as text.
  func run(_ probes: [Probe], port: Int, workers: Int = 8) -> [String] {
    let failures = LockedList()
    DispatchQueue.concurrentPerform(iterations: workers) { worker in
      for index in stride(from: worker, to: probes.count, by: workers) {
        let probe = probes[index]
        guard let connection = RawConnection(port: port, timeout: 10) else {
          failures.append("\(probe.name): connection refused")
          continue
        }
        probe.send(connection)
        guard let answer = connection.readResponse() else {
          failures.append("\(probe.name): no answer")
          continue
        }
        if !probe.status.contains(answer.status) {
          failures.append("\(probe.name): status \(answer.status), \(answer.bodyText)")
        } else if let words = probe.words {
          let line = try? CaptionLine(json: Data(answer.body))
          if line?.tokens != words { failures.append("\(probe.name): \(answer.bodyText), expected \(words)") }
        } else if answer.status != 400 || answer.headers["content-type"] == "application/json" {
          // every answer of the application is JSON with an error (bare 400s come from the HTTP parser)
          let object = try? JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any]
          if object?["error"] as? String == nil { failures.append("\(probe.name): body \(answer.bodyText)") }
        }
      }
    }
    return failures.values
  }
}

/// `png` with its header claiming `width` × `height` (the header's CRC recomputed).
func pngClaiming(_ png: [UInt8], width: UInt32, height: UInt32) -> [UInt8] {
  var bytes = png
  // signature (8), IHDR length (4), "IHDR" (4), width (4), height (4), 5 more bytes, CRC (4)
  for (offset, value) in [(16, width), (20, height)] {
    for k in 0..<4 { bytes[offset + k] = UInt8(truncatingIfNeeded: value >> (24 - 8 * UInt32(k))) }
  }
  let crc = crc32(bytes[12..<29])
  for k in 0..<4 { bytes[29 + k] = UInt8(truncatingIfNeeded: crc >> (24 - 8 * UInt32(k))) }
  return bytes
}

/// `jpeg` with its frame header (SOF0..SOF2) claiming `width` × `height`.
func jpegClaiming(_ jpeg: [UInt8], width: UInt16, height: UInt16) -> [UInt8] {
  var bytes = jpeg
  for index in 0..<(bytes.count - 9) where bytes[index] == 0xFF && (0xC0...0xC2).contains(bytes[index + 1]) {
    // marker (2), length (2), precision (1), height (2), width (2)
    bytes[index + 5] = UInt8(height >> 8)
    bytes[index + 6] = UInt8(height & 0xFF)
    bytes[index + 7] = UInt8(width >> 8)
    bytes[index + 8] = UInt8(width & 0xFF)
    break
  }
  return bytes
}

/// CRC-32 as PNG chunks use it (ISO 3309, reflected, polynomial 0xEDB88320).
func crc32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
  var crc: UInt32 = 0xFFFF_FFFF
  for byte in bytes {
    crc ^= UInt32(byte)
    for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
  }
  return ~crc
}

/// Strings gathered from several threads.
final class LockedList: @unchecked Sendable {
  private let lock = NSLock()
  private var items: [String] = []
  func append(_ item: String) { lock.withLock { items.append(item) } }
  var values: [String] { lock.withLock { items } }
}
