import Foundation
import XCTest

@testable import CaptionKit

final class ModelPrefetchTests: XCTestCase {
  /// The path found before parsing is the one the parsed command reads: `--model FILE` and
  /// `--model=FILE` (the last one given) as given, else the default search; help, a version,
  /// a bare `--model` and a failed search give none.
  func testPathFromRawArguments() {
    func path(_ arguments: [String]) -> String? {
      ModelPrefetch.path(forArguments: arguments, locate: { $0 ?? "default.safetensors" })
    }
    XCTAssertEqual(path(["photo.jpg"]), "default.safetensors")
    XCTAssertEqual(path([]), "default.safetensors")
    XCTAssertEqual(path(["--model", "m.safetensors", "photo.jpg"]), "m.safetensors")
    XCTAssertEqual(path(["photo.jpg", "--beam", "3", "--model=m.safetensors"]), "m.safetensors")
    XCTAssertEqual(path(["--model", "a", "--json", "--model", "b", "x.png"]), "b")
    XCTAssertEqual(path(["--model=", "x.png"]), "")
    XCTAssertEqual(path(["x.png", "--", "--model", "m.safetensors"]), "default.safetensors")
    XCTAssertNil(path(["x.png", "--model"]))
    XCTAssertNil(path(["--help"]))
    XCTAssertNil(path(["x.png", "-h"]))
    XCTAssertNil(path(["--version"]))
    XCTAssertNil(
      ModelPrefetch.path(
        forArguments: ["x.png"],
        locate: { _ in throw CaptionError(.unreadable, path: "models/shapes.safetensors", "no model found") })
    )
  }

  /// A prefetch of the path the command resolves gives the same model file a read would; a
  /// prefetch of another path is not used; a prefetch's error is the one a read gives.
  func testPrefetchedFileIsTheOneTheCommandWouldRead() throws {
    let bundled = packageRoot + "/models/shapes.safetensors"
    let prefetch = ModelPrefetch(arguments: ["--model", bundled, "photo.jpg"], locate: { $0 ?? "" })
    XCTAssertTrue(prefetch.isReading)
    let prefetched = try prefetch.modelFile(path: bundled)
    let read = try ModelFile.load(path: bundled)
    XCTAssertEqual(prefetched.config, read.config)
    XCTAssertEqual(prefetched.vocabulary.words, read.vocabulary.words)
    XCTAssertEqual(Set(prefetched.tensors.keys), Set(read.tensors.keys))
    for (name, tensor) in read.tensors {
      XCTAssertEqual(prefetched.tensors[name]!.array, tensor.array, name)
    }

    // The command resolved another path: that file is read, not the prefetched one.
    let folder = temporaryFolder()
    let other = folder + "/other.safetensors"
    _ = FileManager.default.createFile(atPath: other, contents: Data("not a model".utf8))
    let mismatched = ModelPrefetch(arguments: ["--model", bundled], locate: { $0 ?? "" })
    XCTAssertThrowsError(try mismatched.modelFile(path: other)) { error in
      XCTAssertEqual((error as? CaptionError)?.path, other)
    }

    // A missing file: the same one-line error either way.
    let missing = folder + "/missing.safetensors"
    let failing = ModelPrefetch(arguments: ["--model=" + missing], locate: { $0 ?? "" })
    var prefetchError = ""
    var readError = ""
    XCTAssertThrowsError(try failing.modelFile(path: missing)) { prefetchError = "\($0)" }
    XCTAssertThrowsError(try ModelFile.load(path: missing)) { readError = "\($0)" }
    XCTAssertEqual(prefetchError, readError)
    XCTAssertTrue(prefetchError.contains(missing), prefetchError)

    // Arguments that name no model to read ahead (help): the command's path is read then.
    let none = ModelPrefetch(arguments: ["--help"], locate: { $0 ?? "" })
    XCTAssertEqual(try none.modelFile(path: bundled).config, read.config)
  }
}
