import Foundation
import XCTest

@testable import CaptionKit

final class ModelLocatorTests: XCTestCase {
  func testModelLookupFollowsSpecOrder() throws {
    let root = temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: root) }
    let fm = FileManager.default
    // root/install/models/shapes.safetensors, root/install/bin/caption, root/links/caption → it
    try fm.createDirectory(atPath: root + "/install/models", withIntermediateDirectories: true)
    try fm.createDirectory(atPath: root + "/install/bin", withIntermediateDirectories: true)
    try fm.createDirectory(atPath: root + "/links", withIntermediateDirectories: true)
    try fm.createDirectory(atPath: root + "/work/models", withIntermediateDirectories: true)
    try fm.createDirectory(atPath: root + "/empty", withIntermediateDirectories: true)
    _ = fm.createFile(atPath: root + "/install/models/shapes.safetensors", contents: Data([0]))
    _ = fm.createFile(atPath: root + "/install/bin/caption", contents: Data([0]))
    _ = fm.createFile(atPath: root + "/work/models/shapes.safetensors", contents: Data([0]))
    _ = fm.createFile(atPath: root + "/mine.safetensors", contents: Data([0]))
    try fm.createSymbolicLink(
      atPath: root + "/links/caption", withDestinationPath: root + "/install/bin/caption")

    func locate(_ explicit: String?, _ environment: [String: String], cwd: String, exe: String?) throws
      -> String
    {
      try ModelLocator.locate(
        explicit: explicit, environment: environment, currentDirectory: cwd, executablePath: exe)
    }
    let exe = root + "/links/caption"
    XCTAssertEqual(
      try locate(
        "given.safetensors", ["CAPTION_MODEL": root + "/mine.safetensors"], cwd: root + "/work", exe: exe),
      "given.safetensors")
    XCTAssertEqual(
      try locate(nil, ["CAPTION_MODEL": root + "/mine.safetensors"], cwd: root + "/work", exe: exe),
      root + "/mine.safetensors")
    XCTAssertThrowsError(
      try locate(nil, ["CAPTION_MODEL": root + "/gone.safetensors"], cwd: root + "/work", exe: exe)
    ) {
      XCTAssertEqual(($0 as? CaptionError)?.path, root + "/gone.safetensors")
    }
    XCTAssertThrowsError(try locate(nil, ["CAPTION_MODEL": ""], cwd: root + "/work", exe: exe))
    XCTAssertEqual(try locate(nil, [:], cwd: root + "/work", exe: exe), "models/shapes.safetensors")
    // not in the current directory: found above the executable's real path (through the symlink)
    var realRoot = root
    if let resolved = realpath(root, nil) {
      realRoot = String(cString: resolved)
      free(resolved)
    }
    XCTAssertEqual(
      try locate(nil, [:], cwd: root + "/empty", exe: exe), realRoot + "/install/models/shapes.safetensors")
    XCTAssertThrowsError(try locate(nil, [:], cwd: root + "/empty", exe: root + "/empty/caption")) {
      let error = $0 as? CaptionError
      XCTAssertTrue(error?.reason.contains("--model") ?? false)
    }
    XCTAssertNotNil(ModelLocator.executablePath())
  }
}
