import CaptionKit
import Foundation
import XCTest

@testable import caption_serve

/// The repository's root (this file is Tests/ServeTests/ServeSupport.swift).
let packageRoot: String = URL(fileURLWithPath: #filePath)
  .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

let bundledModel = packageRoot + "/models/shapes.safetensors"
let sampleImages = packageRoot + "/datasets/shapes/sample/images"

/// The executables `swift test` builds beside the test bundle.
func builtExecutable(_ name: String) -> String {
  URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name).path
}

/// The first `count` sample images, sorted by name.
func sampleImagePaths(_ count: Int) throws -> [String] {
  try FileManager.default.contentsOfDirectory(atPath: sampleImages).sorted().prefix(count).map {
    sampleImages + "/" + $0
  }
}

func bytes(of path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) }

/// One line of `caption describe --json`, or of the server's 200 answer.
struct CaptionLine: Equatable {
  var tokens: [String]
  var logprob: Double
  /// `familiar`: true, false, or nil for null.
  var familiar: Bool?
  /// `cosine` and `rerank_score`, present for a reranked caption only.
  var cosine: Double?
  var rerankScore: Double?

  init(json: Data) throws {
    let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: json) as? [String: Any])
    tokens = try XCTUnwrap(
      object["tokens"] as? [String], "no tokens in \(String(decoding: json, as: UTF8.self))")
    logprob = try XCTUnwrap(object["logprob"] as? Double)
    let verdict = try XCTUnwrap(object["familiar"], "no familiar in \(String(decoding: json, as: UTF8.self))")
    familiar = verdict is NSNull ? nil : try XCTUnwrap(verdict as? Bool)
    cosine = object["cosine"] as? Double
    rerankScore = object["rerank_score"] as? Double
    XCTAssertEqual(cosine == nil, rerankScore == nil, String(decoding: json, as: UTF8.self))
  }
}

/// A finished run of one of the built executables.
struct ToolRun {
  var status: Int32
  var stdout: Data
  var stderr: String
}

/// Runs `caption` or `caption-serve` with `arguments` (one compute thread), killed after `timeout`
/// seconds.
func runTool(_ name: String, _ arguments: [String], timeout: TimeInterval = 60) throws -> ToolRun {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: builtExecutable(name))
  process.arguments = arguments
  var environment = ProcessInfo.processInfo.environment
  environment["OPENBLAS_NUM_THREADS"] = "1"
  process.environment = environment
  // stderr into a file, so that neither pipe can fill up while the other is read
  let errorPath = NSTemporaryDirectory() + "serve-tests-stderr-\(UUID().uuidString)"
  FileManager.default.createFile(atPath: errorPath, contents: nil)
  defer { try? FileManager.default.removeItem(atPath: errorPath) }
  let output = Pipe()
  process.standardOutput = output
  process.standardError = FileHandle(forWritingAtPath: errorPath)
  try process.run()
  let pid = process.processIdentifier
  let killer = DispatchWorkItem { kill(pid, SIGKILL) }
  DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: killer)
  let data = output.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  killer.cancel()
  let errors = (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? ""
  return ToolRun(status: process.terminationStatus, stdout: data, stderr: errors)
}

/// `caption describe --json` of `paths` (one run, so the images share describe's batches).
func describeJSON(_ paths: [String], options: [String]) throws -> [CaptionLine] {
  let run = try runTool("caption", ["describe", "--json", "--model", bundledModel] + options + paths)
  XCTAssertEqual(run.status, 0, run.stderr)
  return try run.stdout.split(separator: UInt8(ascii: "\n")).map { try CaptionLine(json: Data($0)) }
}

/// Settings for tests: loopback, any free port, short timeouts.
func testSettings() -> ServeSettings {
  var settings = ServeSettings()
  settings.port = 0
  settings.idleTimeout = 2
  return settings
}

// MARK: - A real server process

/// `caption-serve` started on a free loopback port; stopped (SIGKILL) when released if still running.
final class ServerProcess {
  let process = Process()
  private(set) var port = 0
  private(set) var host = ""
  private let output = Pipe()

  init(arguments: [String] = [], file: StaticString = #filePath, line: UInt = #line) throws {
    process.executableURL = URL(fileURLWithPath: builtExecutable("caption-serve"))
    process.arguments = ["--model", bundledModel, "--port", "0"] + arguments
    var environment = ProcessInfo.processInfo.environment
    environment["OPENBLAS_NUM_THREADS"] = "1"
    process.environment = environment
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    try process.run()
    // "caption-serve: listening on http://HOST:PORT (model ...)"
    var text = ""
    let deadline = Date().addingTimeInterval(20)
    while !text.contains("\n") && Date() < deadline && process.isRunning {
      let chunk = output.fileHandleForReading.availableData
      if chunk.isEmpty { break }
      text += String(decoding: chunk, as: UTF8.self)
    }
    guard let range = text.range(of: "listening on http://"),
      let address = text[range.upperBound...].split(separator: " ").first,
      let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...])
    else {
      XCTFail("the server did not say where it listens: \(text)", file: file, line: line)
      throw CaptionError(.unreadable, path: "caption-serve", "did not start")
    }
    self.host = String(address[..<colon])
    self.port = port
  }

  deinit {
    if process.isRunning {
      kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
    }
  }

  /// The server's resident memory in kB (VmRSS).
  func residentKB() -> Int {
    let status =
      (try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)) ?? ""
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
      return Int(line.split(separator: " ")[1]) ?? 0
    }
    return 0
  }

  /// Sends `signal` and waits at most `timeout` seconds for the exit; the exit status, nil if still
  /// running.
  func stop(signal: Int32, timeout: TimeInterval) -> Int32? {
    kill(process.processIdentifier, signal)
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(10_000) }
    return process.isRunning ? nil : process.terminationStatus
  }
}

// MARK: - A raw HTTP/1.1 client over a loopback socket (to send what no polite client sends)

/// A response as read off the socket.
struct RawResponse {
  var status: Int
  var headers: [String: String]  // names lower-cased
  var body: [UInt8]
  var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// One TCP connection to 127.0.0.1:port, with a receive timeout.
final class RawConnection {
  let socket: Int32

  init?(port: Int, timeout: TimeInterval = 10) {
    socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard socket >= 0 else { return nil }
    var time = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - floor(timeout)) * 1e6))
    setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(socket, SOL_SOCKET, SO_SNDTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
      }
    }
    if connected != 0 {
      close(socket)
      return nil
    }
  }

  deinit { close(socket) }

  /// Writes all of `bytes`; false when the peer is gone.
  @discardableResult
  func send(_ bytes: [UInt8]) -> Bool {
    var sent = 0
    while sent < bytes.count {
      let n = bytes[sent...].withUnsafeBytes {
        Glibc.send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
      }
      if n < 0 && errno == EINTR { continue }
      if n <= 0 { return false }
      sent += n
    }
    return true
  }

  @discardableResult
  func send(_ text: String) -> Bool { send(Array(text.utf8)) }

  /// Reads one response (Content-Length framed); nil on timeout or a connection closed first.
  func readResponse() -> RawResponse? {
    var buffer: [UInt8] = []
    let separator: [UInt8] = [13, 10, 13, 10]
    var headEnd: Int? = nil
    while headEnd == nil {
      guard readMore(into: &buffer) else { return nil }
      headEnd = find(separator, in: buffer)
    }
    let head = String(decoding: buffer[..<headEnd!], as: UTF8.self).split(separator: "\r\n")
    let statusWords = head.first?.split(separator: " ") ?? []
    guard statusWords.count >= 2, let status = Int(statusWords[1]) else { return nil }
    var headers: [String: String] = [:]
    for line in head.dropFirst() {
      guard let colon = line.firstIndex(of: ":") else { continue }
      headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
        in: .whitespaces)
    }
    let length = Int(headers["content-length"] ?? "0") ?? 0
    let bodyStart = headEnd! + 4
    while buffer.count < bodyStart + length {
      guard readMore(into: &buffer) else { return nil }
    }
    return RawResponse(status: status, headers: headers, body: Array(buffer[bodyStart..<bodyStart + length]))
  }

  /// True when the server closes the connection within the receive timeout (reads give 0).
  func closedByPeer() -> Bool {
    var scratch = [UInt8](repeating: 0, count: 4096)
    while true {
      let n = recv(socket, &scratch, scratch.count, 0)
      if n == 0 { return true }
      if n < 0 { return errno == ECONNRESET }
    }
  }

  private func readMore(into buffer: inout [UInt8]) -> Bool {
    var chunk = [UInt8](repeating: 0, count: 65536)
    let n = recv(socket, &chunk, chunk.count, 0)
    guard n > 0 else { return false }
    buffer += chunk[..<n]
    return true
  }

  private func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
    guard haystack.count >= needle.count else { return nil }
    for index in 0...(haystack.count - needle.count)
    where haystack[index..<index + needle.count].elementsEqual(needle) {
      return index
    }
    return nil
  }
}

/// A whole request: head lines, Content-Length when a body is given, and the body.
func rawRequest(
  _ method: String, _ target: String, headers: [String] = [], body: [UInt8]? = nil
) -> [UInt8] {
  var head = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
  for header in headers { head += header + "\r\n" }
  if let body { head += "Content-Length: \(body.count)\r\n" }
  head += "\r\n"
  return Array(head.utf8) + (body ?? [])
}

/// Sends one request on a new connection and reads its answer.
func exchange(port: Int, _ request: [UInt8], timeout: TimeInterval = 10) -> RawResponse? {
  guard let connection = RawConnection(port: port, timeout: timeout) else { return nil }
  connection.send(request)
  return connection.readResponse()
}
