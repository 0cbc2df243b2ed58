import Foundation
import XCTest

@testable import CaptionKit

final class CaptionerPrefetchTests: XCTestCase {
  /// The path found before parsing is the one the parsed command reads: `--model FILE` and
  /// `--model=FILE` (the last one given) as given, else the default search; help, a version,
  /// a bare `--model` and a failed search give none.
  func testPathFromRawArguments() {
    func path(_ arguments: [String]) -> String? {
      CaptionerPrefetch.path(forArguments: arguments, locate: { $0 ?? "default.safetensors" })
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
      CaptionerPrefetch.path(
        forArguments: ["x.png"],
        locate: { _ in throw CaptionError(.unreadable, path: "models/shapes.safetensors", "no model found") })
    )
  }

  /// A prefetch of the path the command resolves gives the captioner a build of its own would:
  /// the same model file and the same captions; a prefetch of another path is not used; a
  /// prefetch's error is the one a build gives.
  func testPrefetchedCaptionerIsTheOneTheCommandWouldBuild() throws {
    let bundled = packageRoot + "/models/shapes.safetensors"
    let prefetch = CaptionerPrefetch(arguments: ["--model", bundled, "photo.jpg"], locate: { $0 ?? "" })
    XCTAssertTrue(prefetch.isPreparing)
    let prefetched = try prefetch.captioner(path: bundled)
    let built = try Captioner(modelPath: bundled)
    XCTAssertEqual(prefetched.modelFile.config, built.modelFile.config)
    XCTAssertEqual(prefetched.vocabulary.words, built.vocabulary.words)
    XCTAssertEqual(Set(prefetched.modelFile.tensors.keys), Set(built.modelFile.tensors.keys))
    for (name, tensor) in built.modelFile.tensors {
      XCTAssertEqual(prefetched.modelFile.tensors[name]!.array, tensor.array, name)
    }
    let examples = try FileManager.default.contentsOfDirectory(
      atPath: packageRoot + "/datasets/shapes/examples"
    ).sorted().prefix(4).map { packageRoot + "/datasets/shapes/examples/" + $0 }
    XCTAssertEqual(examples.count, 4)
    for options in [DecodingOptions(), DecodingOptions(beamSize: 1)] {
      let mine = prefetched.caption(paths: examples, options: options).map { try? $0.get().tokens }
      let theirs = built.caption(paths: examples, options: options).map { try? $0.get().tokens }
      XCTAssertEqual(mine, theirs)
      XCTAssertFalse(mine.contains(nil))
    }

    // The command resolved another path: that file is read, not the prefetched one.
    let folder = temporaryFolder()
    let other = folder + "/other.safetensors"
    _ = FileManager.default.createFile(atPath: other, contents: Data("not a model".utf8))
    let mismatched = CaptionerPrefetch(arguments: ["--model", bundled], locate: { $0 ?? "" })
    XCTAssertThrowsError(try mismatched.captioner(path: other)) { error in
      XCTAssertEqual((error as? CaptionError)?.path, other)
    }

    // A missing file: the same one-line error either way.
    let missing = folder + "/missing.safetensors"
    let failing = CaptionerPrefetch(arguments: ["--model=" + missing], locate: { $0 ?? "" })
    var prefetchError = ""
    var buildError = ""
    XCTAssertThrowsError(try failing.captioner(path: missing)) { prefetchError = "\($0)" }
    XCTAssertThrowsError(try Captioner(modelPath: missing)) { buildError = "\($0)" }
    XCTAssertEqual(prefetchError, buildError)
    XCTAssertTrue(prefetchError.contains(missing), prefetchError)

    // Arguments that name no model to read ahead (help): the command's path is built then.
    let none = CaptionerPrefetch(arguments: ["--help"], locate: { $0 ?? "" })
    XCTAssertEqual(try none.captioner(path: bundled).modelFile.config, built.modelFile.config)
  }
}
