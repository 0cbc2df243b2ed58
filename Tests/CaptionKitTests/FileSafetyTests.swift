import Foundation
import XCTest

@testable import CaptionKit

/// Writing replaces only regular files (links are followed, devices and FIFOs written through), and
/// every file that must be a regular one is checked before it is opened (a FIFO never blocks).
final class FileSafetyTests: XCTestCase {
  let bytes: [UInt8] = Array("caption bytes\n".utf8)

  func fileType(_ path: String) -> mode_t {
    var info = stat()
    XCTAssertEqual(lstat(path, &info), 0, path)
    return info.st_mode & S_IFMT
  }

  func contents(_ path: String) -> [UInt8] {
    Array(FileManager.default.contents(atPath: path) ?? Data())
  }

  func makeFIFO(_ path: String) {
    XCTAssertEqual(mkfifo(path, 0o644), 0, "mkfifo \(path)")
  }

  // MARK: Writing

  func testRegularFilesAreReplacedAndNothingIsLeftBeside() throws {
    let folder = temporaryFolder()
    try AtomicFile.write(bytes, to: folder + "/new.txt")
    XCTAssertEqual(contents(folder + "/new.txt"), bytes)
    try AtomicFile.write([1, 2, 3], to: folder + "/new.txt")
    XCTAssertEqual(contents(folder + "/new.txt"), [1, 2, 3])
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder), ["new.txt"])
  }

  func testASymbolicLinkStaysALinkAndItsTargetGetsTheBytes() throws {
    let folder = temporaryFolder()
    let elsewhere = temporaryFolder()
    try AtomicFile.write([0], to: elsewhere + "/target.json")
    XCTAssertEqual(symlink(elsewhere + "/target.json", folder + "/absolute.json"), 0)
    XCTAssertEqual(
      symlink("../" + (elsewhere as NSString).lastPathComponent + "/target.json", folder + "/relative.json"),
      0)
    for link in [folder + "/absolute.json", folder + "/relative.json"] {
      try AtomicFile.write(bytes + Array(link.utf8), to: link)
      XCTAssertEqual(fileType(link), S_IFLNK, "\(link) is still a link")
      XCTAssertEqual(contents(elsewhere + "/target.json"), bytes + Array(link.utf8))
    }
    // A dangling link: its target is created, the link kept.
    XCTAssertEqual(symlink("made.json", folder + "/dangling.json"), 0)
    try AtomicFile.write(bytes, to: folder + "/dangling.json")
    XCTAssertEqual(fileType(folder + "/dangling.json"), S_IFLNK)
    XCTAssertEqual(contents(folder + "/made.json"), bytes)
    // A model through a link.
    let model = folder + "/model.safetensors"
    XCTAssertEqual(symlink(elsewhere + "/real.safetensors", model), 0)
    try Safetensors.write(path: model, tensors: [("w", randomTensor([2, 3], seed: 1))], metadata: [:])
    XCTAssertEqual(fileType(model), S_IFLNK)
    XCTAssertEqual(try Safetensors.read(path: elsewhere + "/real.safetensors").tensors["w"]?.shape, [2, 3])
  }

  /// A character device is written in place. As root a rename would replace the device itself, so
  /// the test writes to its own copy of /dev/null when it can make one, else to /dev/null.
  func testACharacterDeviceIsWrittenThroughAndStaysADevice() throws {
    var device = "/dev/null"
    if geteuid() == 0 {
      let copy = temporaryFolder() + "/null"
      if mknod(copy, S_IFCHR | 0o666, dev_t((1 << 8) | 3)) == 0 { device = copy }
    }
    guard device != "/dev/null" || geteuid() != 0 else {
      throw XCTSkip("root without mknod: writing to /dev/null itself would risk it")
    }
    try AtomicFile.write(bytes, to: device)
    XCTAssertEqual(fileType(device), S_IFCHR, "\(device) is still a character device")

    XCTAssertThrowsError(try AtomicFile.write(bytes, to: "/dev/full")) { error in
      let error = error as? CaptionError
      XCTAssertEqual(error?.path, "/dev/full")
      XCTAssertTrue(error?.reason.contains("No space left") ?? false, "\(String(describing: error))")
    }
    XCTAssertEqual(fileType("/dev/full"), S_IFCHR)
  }

  func testAFIFOGetsTheBytes() throws {
    let fifo = temporaryFolder() + "/pipe"
    makeFIFO(fifo)
    let received = LockedData()
    Thread.detachNewThread {
      received.set(FileHandle(forReadingAtPath: fifo)?.readDataToEndOfFile() ?? Data())
    }
    try AtomicFile.write(bytes, to: fifo)
    let deadline = Date(timeIntervalSinceNow: 60)
    while !received.isSet && Date() < deadline { usleep(10_000) }
    XCTAssertTrue(received.isSet, "the reader got nothing: the FIFO was not written")
    XCTAssertEqual(Array(received.value), bytes)
    XCTAssertEqual(fileType(fifo), S_IFIFO)
    if !received.isSet, let unblock = FileHandle(forWritingAtPath: fifo) { try unblock.close() }
  }

  func testFoldersAndBadNamesAreRefusedInOneLine() throws {
    let folder = temporaryFolder()
    XCTAssertThrowsError(try AtomicFile.write(bytes, to: folder)) {
      XCTAssertEqual(($0 as? CaptionError)?.kind, .notAFile)
    }
    XCTAssertThrowsError(try AtomicFile.write(bytes, to: folder + "/a\0b")) {
      XCTAssertTrue(($0 as? CaptionError)?.reason.contains("NUL") ?? false)
    }
    try AtomicFile.write(bytes, to: folder + "/file")
    XCTAssertThrowsError(try Folders.make(folder + "/file/sub")) {
      XCTAssertEqual(($0 as? CaptionError)?.path, folder + "/file")
    }
  }

  func testTheImageCacheFollowsALink() throws {
    let folder = temporaryFolder()
    var options = TrainerTests.tinyOptions(out: folder + "/m.safetensors")
    options.epochs = 1
    options.cache = folder + "/cache"
    XCTAssertEqual(symlink(folder + "/stored.train", folder + "/cache.train"), 0)
    _ = try Trainer(options: options, log: { _ in }).run(resume: false)
    XCTAssertEqual(fileType(folder + "/cache.train"), S_IFLNK)
    XCTAssertEqual(fileType(folder + "/stored.train"), S_IFREG)
  }

  func testPreprocessAndEvaluateWriteThroughLinks() throws {
    let folder = temporaryFolder()
    for name in ["seen.png", "results.json", "references.json", "report.html"] {
      XCTAssertEqual(symlink(folder + "/real-" + name, folder + "/" + name), 0)
    }
    let image = TrainerTests.dataFolder + "/images/000000.png"
    let preprocess = try runCaption(["preprocess", image, "--out", folder + "/seen.png"])
    XCTAssertEqual(preprocess.status, 0, preprocess.stderr)
    let evaluate = try runCaption([
      "evaluate", "--model", CommandTests.model, "--data", TrainerTests.dataFolder, "--split", "val",
      "--results", folder + "/results.json", "--references-out", folder + "/references.json",
      "--report", folder + "/report.html",
    ])
    XCTAssertEqual(evaluate.status, 0, evaluate.stderr)
    for name in ["seen.png", "results.json", "references.json", "report.html"] {
      XCTAssertEqual(fileType(folder + "/" + name), S_IFLNK, name)
      XCTAssertFalse(contents(folder + "/real-" + name).isEmpty, name)
    }
  }

  // MARK: Reading

  func testFilesThatMustBeRegularAreCheckedBeforeTheyAreOpened() throws {
    let folder = temporaryFolder()
    makeFIFO(folder + "/fifo")
    XCTAssertThrowsError(try RegularFile.open(folder + "/fifo")) { error in
      XCTAssertEqual((error as? CaptionError)?.kind, .notAFile)
      XCTAssertEqual((error as? CaptionError)?.description, folder + "/fifo: not a regular file (a FIFO)")
    }
    XCTAssertThrowsError(try RegularFile.read("/dev/zero", maximumBytes: 10, what: "a test file")) {
      XCTAssertEqual(($0 as? CaptionError)?.reason, "not a regular file (a character device)")
    }
    XCTAssertThrowsError(try RegularFile.read(folder, maximumBytes: 10, what: "a test file")) {
      XCTAssertEqual(($0 as? CaptionError)?.kind, .notAFile)
    }
    try AtomicFile.write(bytes, to: folder + "/small")
    XCTAssertEqual(try RegularFile.read(folder + "/small", maximumBytes: 100, what: "a test file"), bytes)
    XCTAssertThrowsError(try RegularFile.read(folder + "/small", maximumBytes: 3, what: "a test file")) {
      XCTAssertEqual(($0 as? CaptionError)?.kind, .tooLarge)
    }
    // The size limit of an image file cannot overflow, whatever the pixel budget.
    let image = TrainerTests.dataFolder + "/images/000000.png"
    XCTAssertEqual(try ImageDecoder(maxPixels: .max).decode(path: image).width, 16)
    // A NUL byte would make the system open "small".
    XCTAssertThrowsError(try RegularFile.read(folder + "/small\0.png", maximumBytes: 100, what: "an image")) {
      XCTAssertTrue(($0 as? CaptionError)?.reason.contains("NUL") ?? false)
    }
  }

  /// Each of these used to block forever in `open`: run as subprocesses, bounded in time.
  func testAFIFOInPlaceOfAFileIsAnErrorNotAHang() throws {
    let folder = temporaryFolder()
    let fifo = folder + "/fifo"
    makeFIFO(fifo)
    let out = folder + "/m.safetensors"
    let image = TrainerTests.dataFolder + "/images/000000.png"
    let tiny = ["--image-size", "16", "--layers", "4,M", "--dv", "8", "--embed", "8", "--hidden", "12"]

    // A dataset folder whose captions.json, or scenes.json, is a FIFO.
    let fifoCaptions = folder + "/captions-fifo"
    let fifoScenes = folder + "/scenes-fifo"
    for (copy, name) in [(fifoCaptions, "captions.json"), (fifoScenes, "scenes.json")] {
      try FileManager.default.copyItem(atPath: TrainerTests.dataFolder, toPath: copy)
      try FileManager.default.removeItem(atPath: copy + "/" + name)
      makeFIFO(copy + "/" + name)
    }
    makeFIFO(folder + "/cache.train")

    let runs: [(arguments: [String], names: String)] = [
      (["info", fifo], fifo),
      (["describe", "--model", fifo, image], fifo),
      (["evaluate", "--model", fifo, "--data", TrainerTests.dataFolder, "--split", "val"], fifo),
      (["train", "--data", TrainerTests.dataFolder, "--init", fifo, "--out", out], fifo),
      (["train", "--data", fifoCaptions, "--out", out] + tiny, fifoCaptions + "/captions.json"),
      (
        ["evaluate", "--model", CommandTests.model, "--data", fifoScenes, "--split", "val"],
        fifoScenes + "/scenes.json"
      ),
      (
        ["train", "--data", TrainerTests.dataFolder, "--cache", folder + "/cache", "--out", out] + tiny,
        folder + "/cache.train"
      ),
      (["score", "--results", fifo, "--references", fifo], fifo),
    ]
    for (arguments, names) in runs {
      let run = try runCaption(arguments, timeout: 120)
      XCTAssertEqual(run.status, 1, "\(arguments): \(run.stderr)")
      // train's log lines have no prefix; the error is the one line that has it.
      let errors = run.stderr.split(separator: "\n").filter { $0.hasPrefix("caption: ") }
      XCTAssertEqual(errors, ["caption: " + names + ": not a regular file (a FIFO)"], "\(arguments)")
    }
  }

  func testErrorsAboutFilesAndFoldersAreOneLineOfOurOwn() throws {
    let folder = temporaryFolder()
    try AtomicFile.write(bytes, to: folder + "/file")
    let train = try runCaption([
      "train", "--data", TrainerTests.dataFolder, "--out", folder + "/file/m.safetensors",
      "--image-size", "16", "--layers", "4,M", "--dv", "8", "--embed", "8", "--hidden", "12",
    ])
    XCTAssertEqual(train.status, 1)
    XCTAssertTrue(
      train.stderr.hasSuffix("caption: \(folder)/file: exists and is not a folder\n"), train.stderr)
    XCTAssertFalse(train.stderr.contains("couldn"), train.stderr)

    let score = try runCaption(["score", "--results", "/dev/zero", "--references", "/dev/zero"])
    XCTAssertEqual(score.status, 1)
    XCTAssertEqual(score.stderr, "caption: /dev/zero: not a regular file (a character device)\n")
  }
}
