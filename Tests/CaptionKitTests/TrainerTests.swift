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

  /// A progress callback that stands for Ctrl-C after a step (set-up is not interrupted).
  static let interruptAfterEachStep: @Sendable (TrainProgress) -> Void = { _ in
    caption_set_interrupt_requested(1)
  }

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

  /// The log's lines without their timings (`images_per_s`, `epoch_s`), for comparing two runs.
  func untimedLogLines(_ logPath: String) throws -> [NSDictionary] {
    try String(contentsOfFile: logPath, encoding: .utf8).split(separator: "\n").map {
      var object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
      object["images_per_s"] = nil
      object["epoch_s"] = nil
      return object as NSDictionary
    }
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
    // Each validation line has the epoch's wall time; no step line has it.
    let lines = log.split(separator: "\n").map {
      try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
    }
    let validations = lines.filter { $0["val_loss"] != nil }
    XCTAssertEqual(validations.count, 20)
    for line in validations {
      let seconds = try XCTUnwrap((line["epoch_s"] as? NSNumber)?.doubleValue)
      XCTAssertTrue(seconds > 0 && seconds < 600, "epoch_s \(seconds)")
    }
    XCTAssertTrue(lines.filter { $0["val_loss"] == nil }.allSatisfy { $0["epoch_s"] == nil })
    let best = try ModelFile.load(path: files.best)
    XCTAssertNotNil(best.provenanceStep)
    // every validation calibrates the familiarity score (SPEC §3c) of the weights it saves
    XCTAssertNotNil(Familiarity(file: best))
    XCTAssertNotNil(Familiarity(file: try ModelFile.load(path: files.latest)))
  }

  /// With the word, scene and mention losses on (their heads live only in the training state), so
  /// that they resume too.
  func testInterruptedRunResumesToTheSameWeights() throws {
    func tinyOptions(out: String) -> TrainOptions {
      var options = TrainerTests.tinyOptions(out: out)
      options.wordLoss = 5
      options.sceneLoss = 2
      options.mentionLoss = 1
      options.logEvery = 3  // lines whose steps straddle the stops: their means must not change
      return options
    }
    let straightOut = temporaryFolder() + "/straight.safetensors"
    _ = try Trainer(options: tinyOptions(out: straightOut), log: { _ in }).run(resume: false)
    let straightLines = try untimedLogLines(TrainingFiles(out: straightOut).log)
    let straight = try ModelFile.load(path: TrainingFiles(out: straightOut).latest)
    let straightLog = try String(contentsOfFile: TrainingFiles(out: straightOut).log, encoding: .utf8)
    XCTAssertTrue(
      straightLog.contains("\"scene_loss\"") && straightLog.contains("\"word_loss\"")
        && straightLog.contains("\"mention_loss\""))

    // Interrupted after its first step (as by Ctrl-C), then resumed.
    let out = temporaryFolder() + "/resumed.safetensors"
    let first = try Trainer(
      options: tinyOptions(out: out), log: { _ in }, progress: TrainerTests.interruptAfterEachStep
    ).run(resume: false)
    caption_set_interrupt_requested(0)
    XCTAssertTrue(first.interrupted)
    XCTAssertEqual(first.steps, 1)
    let files = TrainingFiles(out: out)
    XCTAssertEqual(try ModelFile.load(path: files.latest).provenanceStep, 1)
    XCTAssertFalse(FileManager.default.fileExists(atPath: files.best), "no validation has chosen a model")

    // Resume with a step limit part-way into the second epoch, then resume again to the end.
    var limited = tinyOptions(out: out)
    limited.maxSteps = 6
    let second = try Trainer(options: limited, log: { _ in }).run(resume: true)
    XCTAssertEqual(second.steps, 6)
    let third = try Trainer(options: tinyOptions(out: out), log: { _ in }).run(resume: true)
    XCTAssertFalse(third.interrupted)
    let resumed = try ModelFile.load(path: files.latest)
    XCTAssertEqual(resumed.provenanceStep, straight.provenanceStep)
    // The log is the uninterrupted run's, line for line (timings aside).
    XCTAssertEqual(try untimedLogLines(files.log), straightLines)
    XCTAssertEqual(straightLines.count, 6)  // steps 3, 4, 6, 8 and two validations
    for (name, tensor) in straight.tensors {
      let other = try XCTUnwrap(resumed.tensors[name])
      let differing = zip(other.array, tensor.array).filter { $0 != $1 }.count
      XCTAssertEqual(differing, 0, "\(name): \(differing) of \(tensor.count) weights differ after resume")
    }
  }

  /// A run stopped before its first validation (by a step limit or Ctrl-C) writes its latest model
  /// and state but no best model; the validation that follows writes it. Without a validation split
  /// the epoch's training loss chooses it, at the epoch's end.
  func testNoBestModelBeforeAValidationChoseOne() throws {
    for valImages in [8, 0] {
      let out = temporaryFolder() + "/m.safetensors"
      let files = TrainingFiles(out: out)
      var options = tinyOptions(out: out)
      options.valImages = valImages
      options.maxSteps = 3  // of 4 per epoch
      let stopped = try Trainer(options: options, log: { _ in }).run(resume: false)
      XCTAssertNil(stopped.bestEpoch)
      XCTAssertTrue(FileManager.default.fileExists(atPath: files.latest))
      XCTAssertFalse(FileManager.default.fileExists(atPath: files.best), "valImages \(valImages)")

      options.maxSteps = 0
      let interrupted = try Trainer(
        options: options, log: { _ in }, progress: TrainerTests.interruptAfterEachStep
      ).run(resume: true)
      caption_set_interrupt_requested(0)
      XCTAssertTrue(interrupted.interrupted)
      XCTAssertEqual(interrupted.steps, 4)  // the epoch's last step, then the stop before validating
      XCTAssertFalse(FileManager.default.fileExists(atPath: files.best), "valImages \(valImages)")

      let finished = try Trainer(options: options, log: { _ in }).run(resume: true)
      XCTAssertNotNil(finished.bestEpoch)
      // The same choice as a run never stopped (the epoch's loss so far is kept with the state).
      let straight = try Trainer(
        options: options.with(out: temporaryFolder() + "/straight.safetensors"), log: { _ in }
      ).run(resume: false)
      XCTAssertEqual(finished.bestEpoch, straight.bestEpoch, "valImages \(valImages)")
      let best = try ModelFile.load(path: files.best)
      XCTAssertEqual(best.provenanceStep, 4 * (finished.bestEpoch ?? 0))
      // Only a validation's metrics go with it (none without a validation split).
      XCTAssertEqual(best.provenance?.contains("val_loss"), valImages > 0)
    }
  }

  /// Before the first step the trainer names what it is doing (for a terminal's status line); the
  /// time left is unknown after one step and known from the second, in the progress and in the
  /// plain log lines.
  func testStatusBeforeTheFirstStepAndTheTimeLeft() throws {
    var options = tinyOptions(out: temporaryFolder() + "/m.safetensors")
    options.maxSteps = 3
    var statuses: [String] = []
    var progress: [TrainProgress] = []
    _ = try Trainer(
      options: options, log: { _ in }, progress: { progress.append($0) }, status: { statuses.append($0) }
    ).run(resume: false)
    XCTAssertEqual(statuses.first, "loading \(TrainerTests.dataFolder)")
    XCTAssertEqual(statuses.last, "preparing captions 40/40 images")  // 32 train and 8 val
    XCTAssertEqual(progress.map { $0.secondsLeft == nil }, [true, false, false])
    XCTAssertEqual(progress.last?.secondsLeft, 0)

    var lines: [String] = []
    _ = try Trainer(options: options, log: { lines.append($0) }).run(resume: false)
    let stepLines = lines.filter { $0.hasPrefix("epoch 1/2 step") }
    XCTAssertEqual(stepLines.count, 3)
    XCTAssertFalse(stepLines[0].contains("ETA"), stepLines[0])
    XCTAssertTrue(stepLines[1].contains(" ETA 0:00:"), stepLines[1])
    XCTAssertTrue(stepLines[2].hasSuffix(" ETA 0:00:00"), stepLines[2])
    XCTAssertEqual(TrainProgress.clock(3725.4), "1:02:05")
  }

  /// An output folder that cannot be made is a CaptionError naming it (not Foundation's text).
  func testAnOutputFolderThatCannotBeMadeNamesIt() throws {
    let blocker = temporaryFolder() + "/file"
    XCTAssertTrue(FileManager.default.createFile(atPath: blocker, contents: Data([1])))
    XCTAssertThrowsError(
      try Trainer(options: tinyOptions(out: blocker + "/runs/m.safetensors"), log: { _ in }).run(
        resume: false)
    ) {
      let error = $0 as? CaptionError
      XCTAssertEqual(error?.kind, .io)
      XCTAssertTrue(error?.path.hasPrefix(blocker) ?? false, "\($0)")
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

  func with(out: String) -> TrainOptions {
    var copy = self
    copy.out = out
    return copy
  }
}
