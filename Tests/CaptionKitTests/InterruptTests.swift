import CShims
import XCTest

@testable import CaptionKit

/// Ctrl-C/SIGTERM while training sets up (a big captions.json or scenes.json being read and
/// tokenised): every long loop over the input looks for it, so the run exits 130 at once.
final class InterruptTests: XCTestCase {
  override func tearDown() { caption_set_interrupt_requested(0) }

  /// Throws `Interrupted` when `body` runs with the flag set; the same body without it succeeds.
  func assertStopsWhenInterrupted(
    _ what: String, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void
  ) {
    XCTAssertNoThrow(try body(), what, file: file, line: line)
    caption_set_interrupt_requested(1)
    defer { caption_set_interrupt_requested(0) }
    XCTAssertThrowsError(try body(), what, file: file, line: line) { error in
      XCTAssertTrue(error is Interrupted, "\(what): \(error)", file: file, line: line)
    }
  }

  func testEveryReaderOfABigInputStopsWhenInterrupted() throws {
    let count = 2 * Interrupted.checkEvery
    let numbers = Array("[" + (0..<count).map(String.init).joined(separator: ",") + "]").map {
      $0.asciiValue!
    }
    assertStopsWhenInterrupted("JSON") { _ = try JSONValue.parse(numbers, file: "n.json") }

    // Each reader's loop over entries, on a document parsed before the flag is set.
    func parsed(_ text: String) throws -> JSONObject {
      try XCTUnwrap(JSONValue.parse(Array(text.utf8), file: "d.json").objectValue)
    }
    let karpathy = try parsed(
      "{\"images\": ["
        + (0..<8).map {
          "{\"filename\": \"\($0).png\", \"split\": \"train\", \"sentences\": [{\"raw\": \"a b\"}]}"
        }
        .joined(separator: ",") + "]}")
    assertStopsWhenInterrupted("Karpathy") {
      _ = try KarpathyReader.read(json: karpathy, file: "d.json", imageFolder: "")
    }
    let coco = try parsed(
      "{\"images\": [{\"id\": 1, \"file_name\": \"1.jpg\"}], \"annotations\": [{\"image_id\": 1, \"caption\": \"a b\"}]}"
    )
    assertStopsWhenInterrupted("COCO") {
      _ = try COCOReader.read(json: coco, file: "d.json", imageFolder: "", split: .train)
    }
    let tokens = (0..<count).map { "\($0 % 10).jpg#\($0 / 10)\ta dog" }.joined(separator: "\n")
    let trainList = temporaryFolder() + "/train.txt"
    try Data((0..<10).map { "\($0).jpg\n" }.joined().utf8).write(to: URL(fileURLWithPath: trainList))
    assertStopsWhenInterrupted("Flickr8k") {
      _ = try Flickr8kReader.read(
        text: tokens, file: "t.txt", imageFolder: "", trainList: trainList, valList: nil, testList: nil)
    }
    let scenes = Data("{\"images\": [{\"image_id\": 0, \"filename\": \"0.png\", \"objects\": []}]}".utf8)
    assertStopsWhenInterrupted("scenes") { _ = try Scenes.parse(scenes, path: "scenes.json") }
    let images = (0..<8).map { DatasetImage(id: $0, path: "", split: .train, captions: ["a red circle"]) }
    assertStopsWhenInterrupted("tokenising") { _ = try CaptionEncoding.tokenize(images) }
  }

  /// The command: SIGTERM while a 30 MB captions.json is read and tokenised ends `train` with exit
  /// 130 within a second (before, it ran on through the phase: 1.5 s seen here, 0.1 s after).
  func testTrainExitsPromptlyWhenSignalledDuringSetUp() throws {
    let folder = temporaryFolder() + "/big"
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    let words = ["a", "red", "blue", "circle", "square", "left", "of", "two", "small", "the"]
    var text = "{\"images\": ["
    for i in 0..<60_000 {
      let raw = (0..<10).map { words[(i * 7 + $0 * 3) % words.count] }.joined(separator: " ")
      let sentence = "{\"raw\": \"\(raw)\", \"tokens\": []}"
      text += (i == 0 ? "" : ",") + "{\"filename\": \"\(i).png\", \"split\": \"train\", \"sentences\": ["
      text += Array(repeating: sentence, count: 5).joined(separator: ",") + "]}"
    }
    text += "]}"
    XCTAssertGreaterThan(text.utf8.count, 25_000_000)
    try Data(text.utf8).write(to: URL(fileURLWithPath: folder + "/captions.json"))

    let files = TrainingFiles(out: folder + "/run/m.safetensors")
    let process = Process()
    process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
      .appendingPathComponent("caption")
    process.arguments = ["train", "--data", folder, "--out", files.best, "--epochs", "1"]
    let stderrPath = folder + "/stderr.txt"
    FileManager.default.createFile(atPath: stderrPath, contents: nil)
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: stderrPath))
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    // The lock exists once the handlers are installed and the data is being read.
    let start = Date()
    while !FileManager.default.fileExists(atPath: files.lock) && process.isRunning
      && Date().timeIntervalSince(start) < 60
    {
      usleep(5_000)
    }
    usleep(300_000)
    XCTAssertTrue(process.isRunning, "set-up ended before the signal")
    let signalled = Date()
    kill(process.processIdentifier, SIGTERM)
    while process.isRunning && Date().timeIntervalSince(signalled) < 30 { usleep(5_000) }
    let took = Date().timeIntervalSince(signalled)
    if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    process.waitUntilExit()
    XCTAssertEqual(process.terminationStatus, 130)
    XCTAssertLessThan(took, 1.0)
    let stderr = try String(contentsOfFile: stderrPath, encoding: .utf8)
    // On a fast machine the data is read before the signal comes, and set-up has printed its
    // notices about it (no scenes.json: which losses and defaults apply); nothing else before the
    // one closing line.
    let lines = stderr.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    XCTAssertEqual(lines.suffix(2), ["interrupted before the first step: nothing was saved", ""], stderr)
    XCTAssertTrue(lines.dropLast(2).allSatisfy { $0.hasPrefix("no scenes.json") }, stderr)
    XCTAssertFalse(FileManager.default.fileExists(atPath: files.log))
  }
}
