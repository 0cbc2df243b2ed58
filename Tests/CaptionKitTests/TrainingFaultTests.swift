import CShims
import XCTest

@testable import CaptionKit

/// Training under faults: divergence, a kill between the two files of a save, two runs on one
/// output, data that cannot be read, a damaged state file, a stop during validation.
final class TrainingFaultTests: XCTestCase {
  func tinyOptions(out: String) -> TrainOptions { TrainerTests.tinyOptions(out: out) }

  /// A copy of the tiny dataset whose images are all gone.
  func datasetWithoutImages() throws -> String {
    let folder = temporaryFolder() + "/noimages"
    try FileManager.default.copyItem(atPath: TrainerTests.dataFolder, toPath: folder)
    try FileManager.default.removeItem(atPath: folder + "/images")
    return folder
  }

  func reason(_ body: () throws -> Void) -> String {
    do { try body() } catch let error as CaptionError { return error.description } catch {
      return "\(error)"
    }
    return "no error"
  }

  func testDivergenceEndsTheRunWithoutSavingNonFiniteWeights() throws {
    let out = temporaryFolder() + "/m.safetensors"
    var options = tinyOptions(out: out)
    options.learningRate = 3e38
    options.warmupSteps = 0
    options.clip = 0
    let message = reason { _ = try Trainer(options: options, log: { _ in }).run(resume: false) }
    XCTAssertTrue(message.contains("training diverged at step "), message)
    XCTAssertTrue(message.contains("no checkpoint was saved"), message)
    let files = TrainingFiles(out: out)
    for path in [files.best, files.latest, files.state] {
      XCTAssertFalse(FileManager.default.fileExists(atPath: path), path)
    }
  }

  func testAModelWithNonFiniteWeightsIsRefusedNamingTheTensor() throws {
    var file = try ModelFile.load(path: CommandTests.model)
    let name = file.tensors.keys.sorted()[0]
    let poisoned = file.tensors[name]!.clone()
    poisoned[0] = .nan
    file.tensors[name] = poisoned
    let path = temporaryFolder() + "/nan.safetensors"
    try file.save(path: path)
    let message = reason { _ = try ModelFile.load(path: path) }
    XCTAssertTrue(message.contains("\"\(name)\"") && message.contains("not finite"), message)
  }

  /// A save stopped after the latest model was replaced but before its state was: the state alone
  /// still resumes, to the same weights as a run never stopped; a write's leftover is removed.
  func testAKillBetweenTheModelAndItsStateStillResumesExactly() throws {
    let straightOut = temporaryFolder() + "/straight.safetensors"
    _ = try Trainer(options: tinyOptions(out: straightOut), log: { _ in }).run(resume: false)
    let straight = try ModelFile.load(path: TrainingFiles(out: straightOut).latest)

    let out = temporaryFolder() + "/killed.safetensors"
    let files = TrainingFiles(out: out)
    _ = try Trainer(
      options: tinyOptions(out: out), log: { _ in }, progress: TrainerTests.interruptAfterEachStep
    ).run(resume: false)  // saved at step 1
    caption_set_interrupt_requested(0)
    struct Killed: Error {}
    TrainingSession.beforeStateWrite = { throw Killed() }
    defer { TrainingSession.beforeStateWrite = nil }
    XCTAssertThrowsError(try Trainer(options: tinyOptions(out: out), log: { _ in }).run(resume: true))
    TrainingSession.beforeStateWrite = nil
    XCTAssertNotEqual(try ModelFile.load(path: files.latest).provenanceStep, 1, "the model was replaced")
    let leftover = files.folder + "/.killed.latest.state.tmp-1-2"
    let stranger = files.folder + "/.other.latest.state.tmp-1-2"
    for path in [leftover, stranger] {
      XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: nil))
    }

    let resumed = try Trainer(options: tinyOptions(out: out), log: { _ in }).run(resume: true)
    XCTAssertFalse(resumed.interrupted)
    XCTAssertFalse(FileManager.default.fileExists(atPath: leftover))
    XCTAssertTrue(FileManager.default.fileExists(atPath: stranger), "another run's file stays")
    let latest = try ModelFile.load(path: files.latest)
    XCTAssertEqual(latest.provenanceStep, straight.provenanceStep)
    for (name, tensor) in straight.tensors {
      XCTAssertEqual(latest.tensors[name]?.array, tensor.array, name)
    }
  }

  /// The second process is refused while the first holds the output's lock.
  func testASecondRunOnTheSameOutputIsRefused() throws {
    let folder = temporaryFolder()
    let out = folder + "/m.safetensors"
    let files = TrainingFiles(out: out)
    let descriptor = open(files.lock, O_RDWR | O_CREAT, 0o644)
    XCTAssertGreaterThanOrEqual(descriptor, 0)
    XCTAssertEqual(flock(descriptor, LOCK_EX | LOCK_NB), 0)
    let arguments = [
      "train", "--data", TrainerTests.dataFolder, "--out", out, "--image-size", "16", "--layers", "4,M",
      "--dv", "8", "--embed", "8", "--hidden", "12", "--epochs", "1", "--threads", "1", "--workers", "1",
    ]
    let refused = try runCaption(arguments, timeout: 300)
    XCTAssertEqual(refused.status, 1, refused.stderr)
    XCTAssertTrue(refused.stderr.contains("another training run is writing this output"), refused.stderr)
    XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1, refused.stderr)
    XCTAssertFalse(FileManager.default.fileExists(atPath: files.log))
    close(descriptor)
    let alone = try runCaption(arguments, timeout: 300)
    XCTAssertEqual(alone.status, 0, alone.stderr)
  }

  func testNoReadableImageIsAnError() throws {
    let data = try datasetWithoutImages()
    var options = tinyOptions(out: temporaryFolder() + "/m.safetensors")
    options.data = data
    let message = reason { _ = try Trainer(options: options, log: { _ in }).run(resume: false) }
    XCTAssertTrue(message.contains("none of the training images could be read"), message)
    XCTAssertFalse(FileManager.default.fileExists(atPath: options.out))

    let evaluate = try runCaption([
      "evaluate", "--model", CommandTests.model, "--data", data, "--split", "val",
    ])
    XCTAssertEqual(evaluate.status, 1, evaluate.stdout)
    XCTAssertTrue(
      evaluate.stderr.contains("none of the 8 images of the val split could be read"), evaluate.stderr)
    XCTAssertEqual(evaluate.stdout, "")
  }

  /// Each counter of the state refused when it is not a number, naming its key.
  func testAStateWithAGarbageCounterIsRefusedNamingTheKey() throws {
    let out = temporaryFolder() + "/m.safetensors"
    let files = TrainingFiles(out: out)
    var options = tinyOptions(out: out)
    options.maxSteps = 1
    _ = try Trainer(options: options, log: { _ in }).run(resume: false)
    let saved = try Safetensors.read(path: files.state)
    for key in ["step", "epoch", "batch", "rng", "adam_steps", "stale_epochs", "best_score", "best_metrics"] {
      var metadata = saved.metadata
      metadata[key] = "garbage"
      try Safetensors.write(
        path: files.state, tensors: saved.tensors.map { (name: $0.key, tensor: $0.value) }, metadata: metadata
      )
      let message = reason { _ = try Trainer(options: options, log: { _ in }).run(resume: true) }
      XCTAssertTrue(message.contains(key) && message.contains("garbage"), "\(key): \(message)")
    }
  }

  /// Ctrl-C/SIGTERM is seen before each validation batch.
  func testValidationStopsWhenInterrupted() throws {
    let out = temporaryFolder() + "/m.safetensors"
    let session = try TrainingSession.start(
      options: tinyOptions(out: out), files: TrainingFiles(out: out), log: { _ in })
    XCTAssertNotNil(try session.validate())
    caption_set_interrupt_requested(1)
    defer { caption_set_interrupt_requested(0) }
    XCTAssertNil(try session.validate())
  }

  /// A scene of `count` objects drawn from `seed`.
  func randomScene(count: Int, seed: UInt64) -> Scene {
    var generator = SeededGenerator(seed: seed)
    let shapes = ["circle", "square", "star"]
    let colors = ["red", "blue"]
    let objects = (0..<count).map { _ in
      SceneObject(
        shape: shapes[Int(generator.next() % 3)], color: colors[Int(generator.next() % 2)], size: "small",
        x: Double(generator.next() % 64), y: Double(generator.next() % 64), bbox: [0, 0, 1, 1])
    }
    return Scene(imageId: 0, filename: "0.png", objects: objects)
  }

  /// The relations of a scene, found by testing every pair of objects.
  func pairwiseRelations(_ scene: Scene, labels: SceneLabels) -> Set<Int> {
    var yes = Set<Int>()
    let relations = PairRelation.allCases
    for a in scene.objects.indices {
      for b in scene.objects.indices where b != a {
        let (subject, object) = (scene.objects[a], scene.objects[b])
        let sa = labels.shapes.firstIndex(of: subject.shape)!
        let sb = labels.shapes.firstIndex(of: object.shape)!
        for (r, relation) in relations.enumerated()
        where relation.holds(subject: (subject.x, subject.y), object: (object.x, object.y), size: 64) {
          yes.insert(labels.relationsStart + (sa * labels.shapes.count + sb) * relations.count + r)
        }
      }
    }
    return yes
  }

  /// The scene loss's answers: the same as testing every pair, with work that does not grow with
  /// the square of the objects.
  func testSceneAnswersAreLinearInTheObjects() throws {
    for (count, seed) in [(1, 1), (2, 2), (3, 3), (5, 4), (12, 5), (40, 6)] as [(Int, UInt64)] {
      let scene = randomScene(count: count, seed: seed)
      let labels = SceneLabels(scenes: [scene])
      let relations = Set(labels.answers(scene).filter { $0 >= labels.relationsStart })
      XCTAssertEqual(relations, pairwiseRelations(scene, labels: labels), "\(count) objects")
    }
    let crowded = randomScene(count: 3000, seed: 7)
    let labels = SceneLabels(scenes: [crowded])
    SceneLabels.relationChecks = 0
    _ = labels.answers(crowded)
    // 3 shapes: 9 ordered pairs of shapes × 4 relations × 2 extremes, not 3000² pairs of objects.
    XCTAssertLessThanOrEqual(SceneLabels.relationChecks, 9 * 4 * 2)
  }

  /// Ctrl-C/SIGTERM during set-up stops it with nothing written (the command line exits 130).
  func testSetUpStopsWhenInterrupted() throws {
    var options = tinyOptions(out: temporaryFolder() + "/m.safetensors")
    options.sceneLoss = 1
    caption_set_interrupt_requested(1)
    defer { caption_set_interrupt_requested(0) }
    XCTAssertThrowsError(try Trainer(options: options, log: { _ in }).run(resume: false)) { error in
      XCTAssertTrue(error is Interrupted, "\(error)")
    }
    XCTAssertFalse(FileManager.default.fileExists(atPath: TrainingFiles(out: options.out).log))
  }

  /// A huge caption costs its first `maximumCaptionCharacters` characters of words, not its size.
  func testOnlyTheStartOfALongCaptionIsTokenised() throws {
    let long = String(repeating: "a ", count: 500_000)
    let image = DatasetImage(id: 0, path: "0.png", split: .train, captions: [long, "a red circle"])
    let tokens = try CaptionEncoding.tokenize([image])[0]
    XCTAssertEqual(tokens[0].count, CaptionEncoding.maximumCaptionCharacters / 2)
    XCTAssertEqual(tokens[1], ["a", "red", "circle"])
  }

  /// A JSON file over the limit is refused before it is read (a sparse file: no disk used).
  func testJSONFilesOverTheLimitAreRefused() throws {
    let folder = temporaryFolder() + "/huge"
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    let big = folder + "/captions.json"
    XCTAssertTrue(FileManager.default.createFile(atPath: big, contents: nil))
    XCTAssertEqual(truncate(big, off_t(JSONValue.maximumFileBytes + 1)), 0)
    let message = reason { _ = try Dataset.load(data: folder) }
    XCTAssertTrue(message.contains("\(JSONValue.maximumFileBytes) bytes"), message)
    let score = try runCaption(["score", "--results", big, "--references", big])
    XCTAssertEqual(score.status, 1)
    XCTAssertTrue(score.stderr.contains("\(JSONValue.maximumFileBytes) bytes"), score.stderr)
  }

  /// A folder the run cannot write its files in fails at the start, not at the first save.
  func testAnUnwritableOutputFolderFailsAtOnce() throws {
    let folder = temporaryFolder() + "/blocked"
    let files = TrainingFiles(out: folder + "/m.safetensors")
    try FileManager.default.createDirectory(atPath: files.lock, withIntermediateDirectories: true)
    var options = tinyOptions(out: files.best)
    let message = reason { _ = try Trainer(options: options, log: { _ in }).run(resume: false) }
    XCTAssertTrue(message.hasPrefix(folder + ": cannot write the run's files here"), message)
    XCTAssertFalse(FileManager.default.fileExists(atPath: files.log))
    if geteuid() != 0 {  // a read-only folder binds everyone but root
      let readOnly = temporaryFolder() + "/readonly"
      try FileManager.default.createDirectory(atPath: readOnly, withIntermediateDirectories: true)
      chmod(readOnly, 0o555)
      defer { chmod(readOnly, 0o755) }
      options.out = readOnly + "/m.safetensors"
      let message = reason { _ = try Trainer(options: options, log: { _ in }).run(resume: false) }
      XCTAssertTrue(message.contains("cannot write the run's files here"), message)
    }
  }
}
