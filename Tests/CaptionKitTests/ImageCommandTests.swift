import Foundation
import XCTest

@testable import CaptionKit

/// `caption preprocess` end to end: the built executable beside the test bundle.
final class ImageCommandTests: XCTestCase {
  func testPreprocessWritesWhatTheNetworkSees() throws {
    let folder = temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let source = try corpusFile("exif/Portrait_6.jpg")
    let out = folder + "/seen.png"
    XCTAssertEqual(try runCaption(["preprocess", source, "--out", out, "--size", "48"]).status, 0)
    let written = try ImageDecoder().decode(path: out)
    XCTAssertEqual(written, try Preprocess.load(path: source, size: 48))
    XCTAssertEqual([written.width, written.height], [48, 48])

    let ppm = folder + "/full.ppm"
    XCTAssertEqual(try runCaption(["preprocess", source, "--out", ppm, "--no-resize"]).status, 0)
    let bytes = try readBytes(ppm)
    XCTAssertEqual(Array(bytes.prefix(15)), Array("P6\n1200 1800\n25".utf8))
    XCTAssertEqual(bytes.count, "P6\n1200 1800\n255\n".utf8.count + 1200 * 1800 * 3)
    // Only the output itself in the folder: the write went through a temporary file and a rename.
    XCTAssertEqual(
      try FileManager.default.contentsOfDirectory(atPath: folder).sorted(), ["full.ppm", "seen.png"])
  }

  func testPreprocessExitStatuses() throws {
    let folder = temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let out = folder + "/x.png"
    let bad = try corpusFile("pngsuite/xcsn0g01.png")
    let failed = try runCaption(["preprocess", bad, "--out", out])
    XCTAssertEqual(failed.status, 1)
    XCTAssertEqual(failed.stderr.split(separator: "\n").count, 1, failed.stderr)
    XCTAssertTrue(failed.stderr.contains(bad), failed.stderr)
    XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    XCTAssertEqual(try runCaption(["preprocess", folder, "--out", out]).status, 1)
    let good = try corpusFile("jpeg/testorig.jpg")
    XCTAssertEqual(try runCaption(["preprocess", good, "--out", out, "--size", "0"]).status, 64)
    XCTAssertEqual(try runCaption(["preprocess", good, "--out", out, "--bogus"]).status, 64)
    XCTAssertEqual(
      try runCaption(["preprocess", good, "--out", out, "--size", "8", "--no-resize"]).status, 64)
    XCTAssertEqual(try runCaption(["preprocess", good]).status, 64)
  }
}
