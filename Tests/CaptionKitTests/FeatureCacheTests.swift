import Foundation
import XCTest

@testable import CaptionKit

/// 40 shapes images of 16 px in a folder of their own (8 validation images); without scenes.json,
/// data as a photo dataset has it.
private func tinyData(seed: UInt64, format: ShapesImageFormat, scenes: Bool = true) throws -> String {
  let folder = temporaryFolder() + "/shapes"
  try ShapesDataset.generate(
    outputFolder: folder, count: 40, seed: seed, imageSize: 16, format: format, valFraction: 0.2,
    testFraction: 0, log: { _ in })
  if !scenes { try FileManager.default.removeItem(atPath: folder + "/scenes.json") }
  return folder
}

/// The feature cache of a frozen encoder (SPEC §8 `NAME.features`): the same training as without
/// it, no image read once it is filled, kept across a stop, and one-line refusals of a cache made
/// for another encoder or cut short.
final class FeatureCacheTests: XCTestCase {
  /// Tiny shapes data of its own (the tests move its images away).
  private func dataFolder() throws -> String { try tinyData(seed: 5, format: .png) }

  private func frozenOptions(data: String, out: String, seed: UInt64 = 1) -> TrainOptions {
    var options = TrainerTests.tinyOptions(out: out)
    options.data = data
    options.freezeEncoder = true
    options.epochs = 3
    options.wordLoss = 1
    options.seed = seed
    return options
  }

  private func relativeDifference(_ a: [Float], _ b: [Float]) -> Double {
    var difference = 0.0
    var norm = 0.0
    for (x, y) in zip(a, b) {
      difference += Double(x - y) * Double(x - y)
      norm += Double(y) * Double(y)
    }
    return (difference / max(norm, 1e-30)).squareRoot()
  }

  private func assertSameWeights(
    _ path: String, _ reference: String, file: StaticString = #filePath, line: UInt = #line
  )
    throws
  {
    let a = try ModelFile.load(path: path)
    let b = try ModelFile.load(path: reference)
    XCTAssertEqual(Set(a.tensors.keys), Set(b.tensors.keys), file: file, line: line)
    // The familiarity calibration is not a weight: a run whose validation reads cached features
    // has no block means and calibrates on v instead (SPEC §3c).
    for (name, tensor) in b.tensors where !name.hasPrefix("familiarity.") {
      let difference = relativeDifference(a.tensors[name]!.array, tensor.array)
      XCTAssertLessThanOrEqual(difference, 1e-5, "\(name)", file: file, line: line)
    }
  }

  /// Three frozen epochs with the cache train the same weights as without it; the cache ends with
  /// every training and validation image stored; epochs after the first read no image at all.
  func testCachedTrainingEqualsPixelTrainingAndReadsNoImageOnceFilled() throws {
    let data = try dataFolder()
    let folder = temporaryFolder()
    var plain = frozenOptions(data: data, out: folder + "/plain.safetensors")
    plain.noFeatureCache = true
    _ = try Trainer(options: plain, log: { _ in }).run(resume: false)
    XCTAssertFalse(FileManager.default.fileExists(atPath: folder + "/plain.features"))

    // The first epoch and its validation fill the cache (32 training images in batches of 8, then
    // 8 validation images); one step into the second, the images are moved away, and the run goes
    // on without them.
    var cached = frozenOptions(data: data, out: folder + "/cached.safetensors")
    cached.maxSteps = 5
    var lines: [String] = []
    _ = try Trainer(options: cached, log: { lines.append($0) }).run(resume: false)
    let cachePath = folder + "/cached.features"
    XCTAssertTrue(lines.contains("feature cache \(cachePath): 0 of 40 images stored"), "\(lines)")
    let images = data + "/images"
    let hidden = data + "/images-away"
    XCTAssertEqual(rename(images, hidden), 0)
    defer { rename(hidden, images) }
    cached.maxSteps = 0
    lines = []
    _ = try Trainer(options: cached, log: { lines.append($0) }).run(resume: true)
    XCTAssertTrue(lines.contains("feature cache \(cachePath): 40 of 40 images stored"), "\(lines)")
    try assertSameWeights(TrainingFiles(out: cached.out).latest, TrainingFiles(out: plain.out).latest)
    let cachedModel = try ModelFile.load(path: TrainingFiles(out: cached.out).latest)
    let plainModel = try ModelFile.load(path: TrainingFiles(out: plain.out).latest)
    XCTAssertEqual(cachedModel.config.familiarFeatures, .imageVector)
    XCTAssertEqual(plainModel.config.familiarFeatures, .blockMeans)
    let size = try FileManager.default.attributesOfItem(atPath: cachePath)[.size] as! Int
    XCTAssertEqual(size, FeatureCache.layout(count: 40, featureCount: 4 * 8 * 8).size)
  }

  /// A run stopped in the middle of its first epoch keeps the features it stored; resumed, it fills
  /// the rest and ends as a run never stopped.
  func testAnInterruptedFillResumes() throws {
    let data = try dataFolder()
    let folder = temporaryFolder()
    let straight = frozenOptions(data: data, out: folder + "/straight.safetensors")
    _ = try Trainer(options: straight, log: { _ in }).run(resume: false)
    var stopped = frozenOptions(data: data, out: folder + "/stopped.safetensors")
    stopped.maxSteps = 2
    _ = try Trainer(options: stopped, log: { _ in }).run(resume: false)
    let key = try FeatureCacheTests.key(of: folder + "/stopped.features")
    let partial = try FeatureCache(
      path: folder + "/stopped.features", key: key, featureCount: 256, count: 40, replaceStale: false)
    XCTAssertEqual(partial.filledCount, 16)  // two batches of 8, no validation yet
    stopped.maxSteps = 0
    var lines: [String] = []
    _ = try Trainer(options: stopped, log: { lines.append($0) }).run(resume: true)
    XCTAssertTrue(lines.contains { $0.hasSuffix("stopped.features: 16 of 40 images stored") }, "\(lines)")
    try assertSameWeights(TrainingFiles(out: stopped.out).latest, TrainingFiles(out: straight.out).latest)
  }

  /// The key stored in a cache file's header.
  static func key(of path: String) throws -> UInt64 {
    let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
    return bytes.withUnsafeBytes {
      UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
    }
  }

  /// Another encoder (another seed for the convolutions) at an explicit path is refused, naming the
  /// file; at the default path the stale cache is replaced and said so. A truncated cache, or a
  /// file that is no cache, is refused.
  func testStaleTruncatedAndForeignCachesAreRefused() throws {
    let data = try dataFolder()
    let folder = temporaryFolder()
    let explicit = folder + "/shared.features"
    var first = frozenOptions(data: data, out: folder + "/a.safetensors")
    first.featureCache = explicit
    first.maxSteps = 1
    _ = try Trainer(options: first, log: { _ in }).run(resume: false)
    var other = frozenOptions(data: data, out: folder + "/b.safetensors", seed: 2)
    other.featureCache = explicit
    other.maxSteps = 1
    XCTAssertThrowsError(try Trainer(options: other, log: { _ in }).run(resume: false)) { error in
      let error = error as! CaptionError
      XCTAssertEqual(error.path, explicit)
      XCTAssertTrue(
        error.reason.contains("made by another encoder, preprocessing or image list"), error.reason)
      XCTAssertFalse(error.description.contains("\n"))
    }

    // The default path: replaced, with a line saying why.
    var again = frozenOptions(data: data, out: folder + "/a.safetensors", seed: 2)
    again.maxSteps = 1
    let defaultPath = folder + "/a.features"
    XCTAssertEqual(link(explicit, defaultPath), 0)  // a's old cache at its default path
    var lines: [String] = []
    _ = try Trainer(options: again, log: { lines.append($0) }).run(resume: false)
    XCTAssertTrue(
      lines.contains(
        "\(defaultPath): made by another encoder, preprocessing or image list: replaced by an empty one"),
      "\(lines)")

    // Cut short.
    XCTAssertEqual(truncate(explicit, 5000), 0)
    first.maxSteps = 1
    XCTAssertThrowsError(try Trainer(options: first, log: { _ in }).run(resume: false)) { error in
      let error = error as! CaptionError
      XCTAssertEqual(error.kind, .truncated)
      XCTAssertEqual(error.path, explicit)
      XCTAssertTrue(error.reason.contains("the feature cache has 5000 bytes"), error.reason)
    }
    XCTAssertEqual(truncate(explicit, 10), 0)
    XCTAssertThrowsError(try Trainer(options: first, log: { _ in }).run(resume: false)) { error in
      XCTAssertEqual((error as! CaptionError).kind, .truncated)
    }
    // Not a cache.
    try Data(repeating: 7, count: 9000).write(to: URL(fileURLWithPath: explicit))
    XCTAssertThrowsError(try Trainer(options: first, log: { _ in }).run(resume: false)) { error in
      let error = error as! CaptionError
      XCTAssertEqual(error.path, explicit)
      XCTAssertTrue(error.reason.contains("not a feature cache"), error.reason)
    }
    var both = first
    both.noFeatureCache = true
    XCTAssertThrowsError(try both.validate())
  }

  /// The file itself: records read back as stored, flags survive a reopen, a mismatch is refused.
  func testRecordsRoundTripThroughTheFile() throws {
    let path = temporaryFolder() + "/f.features"
    let cache = try FeatureCache(path: path, key: 42, featureCount: 3, count: 5, replaceStale: false)
    XCTAssertEqual(cache.filledCount, 0)
    let record: [Float] = [1.5, -2, 3.25]
    try cache.store(3, features: record)
    let reopened = try FeatureCache(path: path, key: 42, featureCount: 3, count: 5, replaceStale: false)
    XCTAssertEqual(reopened.filledCount, 1)
    XCTAssertTrue(reopened.isFilled(3))
    XCTAssertFalse(reopened.isFilled(2))
    var out = [Float](repeating: 0, count: 3)
    reopened.read(3, into: &out)
    XCTAssertEqual(out, record)
    XCTAssertThrowsError(
      try FeatureCache(path: path, key: 43, featureCount: 3, count: 5, replaceStale: false))
    XCTAssertThrowsError(
      try FeatureCache(path: path, key: 42, featureCount: 4, count: 5, replaceStale: false))
    XCTAssertThrowsError(
      try FeatureCache(path: path, key: 42, featureCount: 3, count: 6, replaceStale: false))
    var replaced: [String] = []
    let fresh = try FeatureCache(
      path: path, key: 43, featureCount: 3, count: 5, replaceStale: true, stale: { replaced.append($0) })
    XCTAssertEqual(fresh.filledCount, 0)
    XCTAssertEqual(replaced.count, 1)
  }
}

/// Data without scenes.json (photos) gets the photo defaults (SPEC §8), only where an option still
/// holds the shapes default; the run logs which were applied, and explicit values win.
final class PhotoDefaultsTests: XCTestCase {
  private func photoData() throws -> String { try tinyData(seed: 8, format: .jpg, scenes: false) }

  private func savedOptions(_ out: String) throws -> TrainOptions {
    let state = try Safetensors.read(path: TrainingFiles(out: out).state)
    return try JSONDecoder().decode(
      TrainOptions.self, from: Data(try XCTUnwrap(state.metadata["options"]).utf8))
  }

  func testPhotoDefaultsApplyOnlyWhereNotSet() throws {
    let data = try photoData()
    let folder = temporaryFolder()
    let shapes = TrainOptions(data: "", out: "")
    var generator = SeededGenerator(seed: 3)
    let weight = Tensor(zeros: [4, 3, 3, 3])
    Initialization.uniform(weight, bound: 0.3, using: &generator)
    let encoder = folder + "/tiny.encoder.safetensors"
    try EncoderFile(
      source: .encoder, layers: [.conv(4), .maxPool], imageSize: 16, mean: [0.5, 0.5, 0.5],
      std: [0.25, 0.25, 0.25], convolutions: [(weight, Tensor(zeros: [4]))]
    ).save(path: encoder)

    var plain = TrainOptions(data: data, out: folder + "/plain.safetensors")
    (plain.encoderInit, plain.dv, plain.embed, plain.hidden) = (encoder, 8, 8, 8)
    (plain.batchSize, plain.threads, plain.workers, plain.maxSteps) = (8, 1, 1, 1)
    var lines: [String] = []
    _ = try Trainer(options: plain, log: { lines.append($0) }).run(resume: false)
    XCTAssertTrue(
      lines.contains(
        "no scenes.json: the defaults for photos apply (docs/photos.md): --min-count 5 --lr 0.0004 "
          + "--epochs 20 --freeze-encoder --pool avg"), "\(lines)")
    let applied = try savedOptions(plain.out)
    XCTAssertEqual(applied.minCount, 5)
    XCTAssertEqual(applied.learningRate, 4e-4)
    XCTAssertEqual(applied.epochs, 20)
    XCTAssertEqual(applied.freezeEncoder, true)
    XCTAssertEqual(applied.pool, .avg)
    XCTAssertTrue(
      FileManager.default.fileExists(atPath: folder + "/plain.features"), "frozen: features cached")

    // Given values win; fine-tuning gets the convolutions' own small rate.
    var given = plain.with(out: folder + "/given.safetensors")
    (given.minCount, given.learningRate, given.epochs, given.finetuneEncoderAfter) = (3, 1e-3, 2, 1)
    lines = []
    _ = try Trainer(options: given, log: { lines.append($0) }).run(resume: false)
    XCTAssertTrue(
      lines.contains(
        "no scenes.json: the defaults for photos apply (docs/photos.md): --pool avg --encoder-lr 1e-5"),
      "\(lines)")
    let kept = try savedOptions(given.out)
    XCTAssertEqual([kept.minCount, kept.epochs], [3, 2])
    XCTAssertEqual(kept.learningRate, 1e-3)
    XCTAssertNil(kept.freezeEncoder)
    XCTAssertEqual(kept.encoderLearningRate, 1e-5)
    XCTAssertNotEqual(shapes.minCount, 5, "the shapes defaults differ")

    // Shapes data (scenes.json present) keeps the shapes defaults.
    var onShapes = plain.with(data: TrainerTests.dataFolder).with(out: folder + "/shapes.safetensors")
    onShapes.minCount = 1
    lines = []
    _ = try Trainer(options: onShapes, log: { lines.append($0) }).run(resume: false)
    XCTAssertFalse(lines.contains { $0.hasPrefix("no scenes.json") }, "\(lines)")
    XCTAssertEqual(try savedOptions(onShapes.out).learningRate, shapes.learningRate)
  }
}
