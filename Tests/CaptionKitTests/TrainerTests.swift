import CShims
import XCTest

@testable import CaptionKit

/// `caption train` on a tiny rendered dataset: it learns, it resumes exactly, an interruption leaves
/// a loadable checkpoint, and bad datasets are clear errors.
final class TrainerTests: XCTestCase {
  static let dataFolder: String = {
    let folder = temporaryFolder() + "/shapes"
    try! ShapesDataset.generate(
      outputFolder: folder, count: 40, seed: 3, imageSize: 16, format: .png, valFraction: 0.2,
      testFraction: 0, log: { _ in })
    return folder
  }()

  func tinyOptions(out: String) -> TrainOptions { TrainerTests.tinyOptions(out: out) }

  static func tinyOptions(out: String) -> TrainOptions {
    var options = TrainOptions(data: TrainerTests.dataFolder, out: out)
    options.imageSize = 16
    options.layers = [.conv(4), .maxPool]
    options.dv = 8
    options.embed = 8
    options.hidden = 12
    options.batchSize = 8
    options.captionsPerImage = 2
    options.epochs = 2
    options.warmupSteps = 1
    options.learningRate = 1e-2
    options.threads = 1
    options.workers = 1
    options.logEvery = 1
    options.valImages = 8
    options.minCount = 1
    return options
  }

  func losses(_ logPath: String) throws -> [Double] {
    try String(contentsOfFile: logPath, encoding: .utf8).split(separator: "\n").compactMap {
      let object = try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
      return (object?["loss"] as? NSNumber)?.doubleValue
    }
  }

  func testTrainingLowersTheLossAndWritesSpecFiles() throws {
    let out = temporaryFolder() + "/m.safetensors"
    var options = tinyOptions(out: out)
    options.epochs = 20
    options.hidden = 32
    options.embed = 16
    let summary = try Trainer(options: options, log: { _ in }).run(resume: false)
    XCTAssertFalse(summary.interrupted)
    XCTAssertEqual(summary.epochsDone, 20)
    let files = TrainingFiles(out: out)
    for path in [files.best, files.latest, files.state, files.log] {
      XCTAssertTrue(FileManager.default.fileExists(atPath: path), path)
    }
    let loss = try losses(files.log)
    XCTAssertGreaterThan(loss.count, 10)
    // The mean of the last three logged losses is well below the first.
    let last = loss.suffix(3).reduce(0, +) / 3
    XCTAssertLessThan(last, loss[0] * 0.75, "loss \(loss[0]) → \(last)")
    // Validation lines carry SPEC §8's keys; the best model loads and has its provenance.
    let log = try String(contentsOfFile: files.log, encoding: .utf8)
    XCTAssertTrue(
      log.contains("\"val_CIDEr-D\"") && log.contains("\"val_loss\"") && log.contains("\"images_per_s\""))
    let best = try ModelFile.load(path: files.best)
    XCTAssertNotNil(best.provenanceStep)
  }

  /// With the word, scene and mention losses on (their heads live only in the training state), so
  /// that they resume too.
  func testInterruptedRunResumesToTheSameWeights() throws {
    func tinyOptions(out: String) -> TrainOptions {
      var options = TrainerTests.tinyOptions(out: out)
      options.wordLoss = 5
      options.sceneLoss = 2
      options.mentionLoss = 1
      return options
    }
    let straightOut = temporaryFolder() + "/straight.safetensors"
    _ = try Trainer(options: tinyOptions(out: straightOut), log: { _ in }).run(resume: false)
    let straight = try ModelFile.load(path: TrainingFiles(out: straightOut).latest)
    let straightLog = try String(contentsOfFile: TrainingFiles(out: straightOut).log, encoding: .utf8)
    XCTAssertTrue(
      straightLog.contains("\"scene_loss\"") && straightLog.contains("\"word_loss\"")
        && straightLog.contains("\"mention_loss\""))

    // Interrupted after its first step (as by Ctrl-C), then resumed.
    let out = temporaryFolder() + "/resumed.safetensors"
    caption_set_interrupt_requested(1)
    let first = try Trainer(options: tinyOptions(out: out), log: { _ in }).run(resume: false)
    caption_set_interrupt_requested(0)
    XCTAssertTrue(first.interrupted)
    XCTAssertEqual(first.steps, 1)
    let files = TrainingFiles(out: out)
    XCTAssertEqual(try ModelFile.load(path: files.latest).provenanceStep, 1)
    XCTAssertNoThrow(try ModelFile.load(path: files.best))

    // Resume with a step limit part-way into the second epoch, then resume again to the end.
    var limited = tinyOptions(out: out)
    limited.maxSteps = 6
    let second = try Trainer(options: limited, log: { _ in }).run(resume: true)
    XCTAssertEqual(second.steps, 6)
    let third = try Trainer(options: tinyOptions(out: out), log: { _ in }).run(resume: true)
    XCTAssertFalse(third.interrupted)
    let resumed = try ModelFile.load(path: files.latest)
    XCTAssertEqual(resumed.provenanceStep, straight.provenanceStep)
    for (name, tensor) in straight.tensors {
      let other = try XCTUnwrap(resumed.tensors[name])
      let differing = zip(other.array, tensor.array).filter { $0 != $1 }.count
      XCTAssertEqual(differing, 0, "\(name): \(differing) of \(tensor.count) weights differ after resume")
    }
  }

  func testBadDatasetsAreClearErrors() throws {
    let folder = temporaryFolder()
    let broken = folder + "/broken.json"
    try Data("{\"images\": [ {\"filename\": \"a.png\", \"split\": \"train\"".utf8).write(
      to: URL(fileURLWithPath: broken))
    XCTAssertThrowsError(
      try Trainer(options: tinyOptions(out: folder + "/m.safetensors").with(data: broken), log: { _ in }).run(
        resume: false)
    ) {
      let error = $0 as? CaptionError
      XCTAssertEqual(error?.kind, .badDataset)
      XCTAssertEqual(error?.path, broken)
    }
    XCTAssertThrowsError(
      try Trainer(
        options: tinyOptions(out: folder + "/m.safetensors").with(data: folder + "/missing"), log: { _ in }
      )
      .run(resume: false))
    // Resuming where nothing was saved names the state file.
    XCTAssertThrowsError(
      try Trainer(options: tinyOptions(out: folder + "/none.safetensors"), log: { _ in }).run(resume: true)
    ) {
      XCTAssertTrue(($0 as? CaptionError)?.path.hasSuffix("none.latest.state") ?? false)
    }
  }
}

extension TrainOptions {
  func with(data: String) -> TrainOptions {
    var copy = self
    copy.data = data
    return copy
  }
}
