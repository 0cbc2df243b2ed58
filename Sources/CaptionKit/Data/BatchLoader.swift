import CShims
import Dispatch
import FoundationEssentials
import Glibc

/// The input pipeline: background workers load and normalise images into a bounded queue of ready
/// batches, in an order that depends only on the seed and the epoch.
///
/// Usage:
///
///     let loader = try BatchLoader(images: train, captions: encoded, batchSize: 32, ...)
///     for epoch in 0..<epochs {
///       loader.startEpoch(epoch)            // or startEpoch(epoch, fromBatch: saved) to resume
///       while let batch = loader.next() { … train on batch; save batch.index + 1 for --resume … }
///     }
///
/// - Order: epoch e visits the images with captions (all images when `captionsPerImage` is 0) in a
///   permutation drawn from (seed, e) (file order when `shuffle` is false); batch b holds positions
///   `b·B ..< (b+1)·B` of it; its K captions per image are drawn from (seed, e, b). So the batches are
///   the same for any worker count and timing, and `startEpoch(e, fromBatch: b)` continues a run exactly.
/// - Failures: an image whose `load` throws (or returns a size other than S×S) is reported once through
///   `onSkip(path, reason)` (called on a worker thread), counted in `skippedCount`, and left out of every batch (a batch shrinks; a
///   batch left empty is passed over).
/// - Memory: at most `prefetch` batches are built ahead of the consumer (each worker also holds one
///   B·S·S·3-byte scratch buffer).
/// - Epoch ends: once the consumer has gone on from an epoch's end to the next epoch
///   (`startEpoch(e + 1)`), the workers build ahead across later epoch ends too, so training finds
///   batches ready after validation. A loader that restarts the same epoch (a validation loader)
///   never builds ahead past the end of its epoch, so it decodes nothing between validations.
/// - Cache (`cachePath`): see `ImageCache`. The first pass writes every image it loads; later epochs and
///   runs read them from the file without calling `load`.
/// - Features (`useFeatures`): in the epochs it names, an image whose record the feature cache holds
///   is not loaded: the batch carries its features instead (`TrainingBatch.features`), and the
///   images of the other rows (`rowsToEncode`) for the trainer to encode and store.
/// - Threads: `workers` threads (0 builds each batch on the caller's thread, in `next()`). `stop()` or
///   deinit ends them; `next()` and `startEpoch` must be called from one thread at a time, never
///   from `load` or `onSkip`.
public final class BatchLoader {
  private let pipeline: LoaderPipeline

  public init(
    images: [DatasetImage], captions: [[EncodedCaption]], batchSize: Int, captionsPerImage: Int,
    imageSize: Int, mean: [Float] = Preprocess.imagenetMean, std: [Float] = Preprocess.imagenetStd,
    shuffle: Bool, seed: UInt64, workers: Int = 2, prefetch: Int = 4, dropLast: Bool = false,
    cachePath: String? = nil, shard: LoaderShard = LoaderShard(),
    load: @escaping @Sendable (String) throws -> RGBImage,
    onSkip: @escaping @Sendable (String, String) -> Void
  ) throws {
    func invalid(_ what: String, _ reason: String) -> CaptionError {
      CaptionError(.invalidArgument, path: what, reason)
    }
    guard captions.count == images.count else {
      throw invalid("captions", "\(captions.count) caption lists for \(images.count) images")
    }
    guard batchSize >= 1 else { throw invalid("--batch", "must be at least 1, not \(batchSize)") }
    guard captionsPerImage >= 0 else {
      throw invalid("captions per image", "must not be negative (\(captionsPerImage))")
    }
    guard imageSize >= 1 && imageSize <= 4096 else {
      throw invalid("image size", "\(imageSize) is outside 1...4096")
    }
    guard mean.count == 3, std.count == 3, std.allSatisfy({ $0 > 0 && $0.isFinite }),
      mean.allSatisfy(\.isFinite)
    else { throw invalid("preprocess", "mean and std need 3 finite values each, std positive") }
    guard workers >= 0 && workers <= 64 else { throw invalid("--workers", "\(workers) is outside 0...64") }
    guard batchSize * imageSize * imageSize * 3 <= 1 << 31 else {
      throw invalid("--batch", "a batch of \(batchSize) images of \(imageSize)×\(imageSize) needs over 2 GB")
    }

    // The images a batch can hold: with captions, unless no captions are wanted.
    let samples = images.indices.filter { captionsPerImage == 0 || !captions[$0].isEmpty }
    var cache: ImageCache?
    if let cachePath {
      cache = try ImageCache(
        path: cachePath, imageSize: imageSize, ids: samples.map { images[$0].id },
        paths: samples.map { images[$0].path })
    }
    pipeline = LoaderPipeline(
      images: images, captions: captions, samples: samples, batchSize: batchSize,
      captionsPerImage: captionsPerImage, imageSize: imageSize, mean: mean, std: std, shuffle: shuffle,
      seed: seed, workers: workers, prefetch: max(prefetch, workers, 1), dropLast: dropLast,
      cache: cache, shard: shard, load: load, onSkip: onSkip)
    pipeline.startWorkers()
  }

  deinit { pipeline.stop() }

  /// Batches in an epoch (the last one may be short unless `dropLast`).
  public var batchesPerEpoch: Int { pipeline.batchesPerEpoch }
  /// Images the batches draw from (those with at least one caption when K > 0).
  public var sampleCount: Int { pipeline.samples.count }
  /// The images it loads from (all of them, whatever the shard).
  var images: [DatasetImage] { pipeline.images }
  /// Distinct images that failed to load so far.
  public var skippedCount: Int { pipeline.skippedCount }
  /// True once the cache file is complete at its path (false without a cache).
  public var cacheIsComplete: Bool { pipeline.cache?.isComplete ?? false }
  /// Why the cache could not be finished, if it could not (the loader goes on without it).
  public var cacheError: CaptionError? { pipeline.cache?.error }

  /// From now on, batches of the epochs for which `epochs` is true read the features of the images
  /// whose records `cache` holds (record `firstRecord + i` for image i of the loader's list) instead
  /// of loading them. Call before `startEpoch`; batches already built stay as they are.
  public func useFeatures(
    _ cache: FeatureCache, firstRecord: Int, inEpochs epochs: @escaping @Sendable (Int) -> Bool
  ) {
    pipeline.setFeatures(LoaderFeatures(cache: cache, firstRecord: firstRecord, inEpochs: epochs))
  }

  /// Starts (or continues) epoch `epoch` at batch `fromBatch` (0...batchesPerEpoch).
  public func startEpoch(_ epoch: Int, fromBatch: Int = 0) {
    pipeline.start(epoch: epoch, batch: min(max(fromBatch, 0), pipeline.batchesPerEpoch))
  }

  /// The next batch of the epoch, waiting for the workers if needed; nil at the end of the epoch
  /// (or before `startEpoch`, or after `stop`).
  public func next() -> TrainingBatch? { pipeline.next() }

  /// Ends the worker threads (waits for each to finish the batch in hand). Idempotent.
  public func stop() { pipeline.stop() }
}

/// The shared state of a loader and its workers. `@unchecked Sendable`: the configuration is
/// immutable; every mutable field below `condition` is read and written only while holding it.
final class LoaderPipeline: @unchecked Sendable {
  // Configuration (immutable).
  let images: [DatasetImage]
  let captions: [[EncodedCaption]]
  let samples: [Int]
  let batchSize: Int
  let captionsPerImage: Int
  let imageSize: Int
  let shuffle: Bool
  let seed: UInt64
  let workers: Int
  let prefetch: Int
  let batchesPerEpoch: Int
  let cache: ImageCache?
  let shard: LoaderShard
  let load: @Sendable (String) throws -> RGBImage
  let onSkip: @Sendable (String, String) -> Void
  /// The normalisation (`Preprocess.normalize`), per channel.
  let mean: [Float]
  let std: [Float]

  // Mutable state, under `condition`.
  private let condition = Condition()
  private var features: LoaderFeatures?
  private var stopped = false
  private var generation = 0
  /// The stream of batches: (startEpoch, startBatch), then on through later epochs.
  private var stream: (epoch: Int, batch: Int)?
  private var currentEpoch = 0
  /// Whether workers may build batches of the epoch after `currentEpoch` (see the epoch-end note).
  private var buildAhead = false
  /// Stream positions: the next to hand to a worker, the next to return.
  private var nextClaim = 0
  private var consumed = 0
  private var ready: [Int: TrainingBatch?] = [:]
  private var orders: [Int: [Int]] = [:]
  private var failed = Set<Int>()
  private let finished = DispatchGroup()

  init(
    images: [DatasetImage], captions: [[EncodedCaption]], samples: [Int], batchSize: Int,
    captionsPerImage: Int, imageSize: Int, mean: [Float], std: [Float], shuffle: Bool, seed: UInt64,
    workers: Int, prefetch: Int, dropLast: Bool, cache: ImageCache?, shard: LoaderShard,
    load: @escaping @Sendable (String) throws -> RGBImage,
    onSkip: @escaping @Sendable (String, String) -> Void
  ) {
    self.images = images
    self.captions = captions
    self.samples = samples
    self.batchSize = batchSize
    self.captionsPerImage = captionsPerImage
    self.imageSize = imageSize
    self.shuffle = shuffle
    self.seed = seed
    self.workers = workers
    self.prefetch = prefetch
    self.batchesPerEpoch =
      dropLast ? samples.count / batchSize : (samples.count + batchSize - 1) / batchSize
    self.cache = cache
    self.shard = shard
    self.load = load
    self.onSkip = onSkip
    self.mean = mean
    self.std = std
  }

  var skippedCount: Int {
    condition.lock()
    defer { condition.unlock() }
    return failed.count
  }

  func startWorkers() {
    for w in 0..<workers {
      finished.enter()
      // Named from inside the thread, as Linux wants (at most 15 bytes kept): `top -H`, a debugger
      // and the tests see the loader's workers as such.
      let name = "caption.load.\(w)"
      // image decoders may use deep stacks: as much as the main thread's (startThread's 8 MB)
      startThread { [self] in
        caption_name_current_thread(name)
        workerLoop()
        finished.leave()
      }
    }
  }

  func stop() {
    condition.lock()
    let first = !stopped
    stopped = true
    ready.removeAll()
    condition.broadcast()
    condition.unlock()
    if first {
      finished.wait()
      cache?.discardIfIncomplete()
    }
  }

  /// (epoch, batch) of stream position `s`. Requires `stream` and batchesPerEpoch > 0.
  private func position(_ s: Int) -> (epoch: Int, batch: Int) {
    let (epoch0, batch0) = stream!
    let left = batchesPerEpoch - batch0
    if s < left { return (epoch0, batch0 + s) }
    let later = s - left
    return (epoch0 + 1 + later / batchesPerEpoch, later % batchesPerEpoch)
  }

  func setFeatures(_ features: LoaderFeatures) {
    condition.lock()
    self.features = features
    condition.unlock()
  }

  /// The feature cache when epoch `epoch` reads from it (under the lock).
  private func features(inEpoch epoch: Int) -> LoaderFeatures? {
    guard let features, features.inEpochs(epoch) else { return nil }
    return features
  }

  func start(epoch: Int, batch: Int) {
    condition.lock()
    defer { condition.unlock() }
    let continuing = stream != nil && batchesPerEpoch > 0 && position(consumed) == (epoch, batch)
    if continuing && batch == 0 && epoch == currentEpoch + 1 { buildAhead = true }
    if !continuing && epoch <= currentEpoch { buildAhead = false }
    currentEpoch = epoch
    condition.broadcast()
    if continuing { return }
    generation += 1
    stream = (epoch, batch)
    nextClaim = 0
    consumed = 0
    ready.removeAll()
    orders.removeAll()
    condition.broadcast()
  }

  func next() -> TrainingBatch? {
    condition.lock()
    defer { condition.unlock() }
    while true {
      guard !stopped, stream != nil, batchesPerEpoch > 0 else { return nil }
      let (epoch, batch) = position(consumed)
      guard epoch == currentEpoch else { return nil }
      let built: TrainingBatch?
      if workers == 0 {
        let order = self.order(epoch)
        let features = self.features(inEpoch: epoch)
        condition.unlock()
        let scratch = UnsafeMutablePointer<UInt8>.allocate(capacity: batchSize * imageSize * imageSize * 3)
        built = build(epoch: epoch, batch: batch, order: order, features: features, scratch: scratch)
        scratch.deallocate()
        condition.lock()
      } else {
        let generationWaited = generation
        while !stopped && generation == generationWaited && ready[consumed] == nil { condition.wait() }
        guard !stopped, generation == generationWaited, let slot = ready.removeValue(forKey: consumed)
        else { continue }
        built = slot
      }
      consumed += 1
      condition.broadcast()
      if let built { return built }
    }
  }

  /// The sample order of an epoch (computed once, under the lock).
  private func order(_ epoch: Int) -> [Int] {
    if let known = orders[epoch] { return known }
    var order = Array(0..<samples.count)
    if shuffle {
      var random = SeededGenerator(mixing: seed, UInt64(bitPattern: Int64(epoch)), 0x5EED)
      for i in stride(from: order.count - 1, to: 0, by: -1) {
        order.swapAt(i, random.below(i + 1))
      }
    }
    orders = orders.filter { $0.key >= currentEpoch }
    orders[epoch] = order
    return order
  }

  private func workerLoop() {
    let scratch = UnsafeMutablePointer<UInt8>.allocate(capacity: batchSize * imageSize * imageSize * 3)
    defer { scratch.deallocate() }
    condition.lock()
    while !stopped {
      guard stream != nil, batchesPerEpoch > 0, nextClaim < consumed + prefetch,
        buildAhead || position(nextClaim).epoch == currentEpoch
      else {
        condition.wait()
        continue
      }
      let s = nextClaim
      nextClaim += 1
      let claimedGeneration = generation
      let (epoch, batch) = position(s)
      let order = self.order(epoch)
      let features = self.features(inEpoch: epoch)
      condition.unlock()
      let built = build(epoch: epoch, batch: batch, order: order, features: features, scratch: scratch)
      condition.lock()
      if generation == claimedGeneration && !stopped {
        ready[s] = .some(built)
        condition.broadcast()
      }
    }
    condition.unlock()
  }

  /// Records a failed image; reports it the first time.
  private func fail(sample: Int, reason: String) {
    condition.lock()
    let first = failed.insert(sample).inserted
    condition.unlock()
    if first { onSkip(images[samples[sample]].path, reason) }
  }

  private func isFailed(_ sample: Int) -> Bool {
    condition.lock()
    defer { condition.unlock() }
    return failed.contains(sample)
  }

  /// Builds batch `batch` of an epoch (with a shard: this rank's share of it): loads its images into
  /// `scratch` (B·S·S·3 bytes), draws the captions, normalises. Nil when every image of the batch
  /// failed; with a shard of several ranks, an empty batch instead (the ranks must stay in step).
  /// With `features`, the images whose records the cache holds are read from it, not loaded.
  func build(
    epoch: Int, batch: Int, order: [Int], features: LoaderFeatures?, scratch: UnsafeMutablePointer<UInt8>
  ) -> TrainingBatch? {
    let wholeBatch = Array(order[batch * batchSize..<min((batch + 1) * batchSize, order.count)])
    let pixelsPerImage = imageSize * imageSize * 3

    // Captions first, for every member of the whole batch, so that neither a failed image nor the
    // shard changes the others' draws.
    var random = SeededGenerator(mixing: seed, UInt64(bitPattern: Int64(epoch)), UInt64(batch))
    let allChosen = wholeBatch.map { chooseCaptions(captions[samples[$0]], &random) }
    let share = shard.rows(of: wholeBatch.count)
    let members = Array(wholeBatch[share])
    let chosen = Array(allChosen[share])

    var kept: [Int] = []  // positions in `members` of the batch's rows
    var loaded: [Int] = []  // rows whose pixels are in scratch[loaded.count]
    var cached: [Int] = []  // rows whose features the cache holds
    for (m, sample) in members.enumerated() {
      if isFailed(sample) { continue }
      if let features, features.cache.isFilled(features.firstRecord + samples[sample]) {
        cached.append(kept.count)
        kept.append(m)
        continue
      }
      let slot = scratch + loaded.count * pixelsPerImage
      if let cache, cache.status(sample) != .missing {
        if cache.status(sample) == .failed {
          fail(sample: sample, reason: "failed to load when the cache \(cache.path) was built")
          continue
        }
        do {
          try cache.read(sample, into: slot)
          loaded.append(kept.count)
          kept.append(m)
          continue
        } catch {
          // Fall through to loading the image itself.
        }
      }
      let path = images[samples[sample]].path
      do {
        let image = try load(path)
        guard image.width == imageSize, image.height == imageSize,
          image.pixels.count == pixelsPerImage
        else {
          throw CaptionError(
            .corrupt, path: path,
            "the loader gave \(image.width)×\(image.height) pixels, not \(imageSize)×\(imageSize)")
        }
        image.pixels.withUnsafeBufferPointer { slot.update(from: $0.baseAddress!, count: pixelsPerImage) }
        cache?.store(sample, pixels: slot)
        loaded.append(kept.count)
        kept.append(m)
      } catch {
        let reason =
          (error as? CaptionError).map { $0.reason } ?? String(describing: error)
        cache?.storeFailure(sample)
        fail(sample: sample, reason: reason)
      }
    }
    guard !kept.isEmpty || shard.ranks > 1 else { return nil }

    // [M, 3, S, S] from the M loaded HWC images [S, S, 3] (M = B without the feature cache).
    let tensor = Tensor(zeros: [loaded.count, 3, imageSize, imageSize])
    for row in 0..<loaded.count {
      Preprocess.normalize(
        pixels: scratch + row * pixelsPerImage, count: imageSize * imageSize, mean: mean, std: std,
        into: tensor.pointer + row * pixelsPerImage)
    }
    var rowsOfWords: [[Int]] = []
    rowsOfWords.reserveCapacity(kept.count * captionsPerImage)
    for m in kept { rowsOfWords.append(contentsOf: chosen[m]) }
    let layout = TrainingBatch.tokenLayout(rowsOfWords)
    let imageIndices = kept.map { samples[members[$0]] }
    var result = TrainingBatch(
      epoch: epoch, index: batch, images: tensor,
      imageIds: kept.map { images[samples[members[$0]]].id },
      imageIndices: imageIndices, captionsPerImage: captionsPerImage,
      steps: layout.steps, inputTokens: layout.input, targetTokens: layout.target)
    if let features {
      // [B, F]: the cached rows now, the loaded ones once the trainer has encoded them.
      let width = features.cache.featureCount
      let rows = Tensor(zeros: [kept.count, width])
      for row in cached {
        features.cache.read(features.firstRecord + imageIndices[row], into: rows.pointer + row * width)
      }
      result.features = rows
      result.rowsToEncode = loaded
    }
    return result
  }

  /// K captions of one image: without replacement when it has at least K, else all of them (in a
  /// random order) and the rest drawn with replacement.
  private func chooseCaptions(_ available: [EncodedCaption], _ random: inout SeededGenerator) -> [[Int]] {
    let k = captionsPerImage
    guard k > 0, !available.isEmpty else { return [] }
    var picks = Array(0..<available.count)
    for i in 0..<min(k, picks.count) {  // partial Fisher–Yates
      picks.swapAt(i, i + random.below(picks.count - i))
    }
    var result = picks.prefix(k).map { available[$0].tokens }
    while result.count < k { result.append(available[random.below(available.count)].tokens) }
    return result
  }
}

/// A loader's view of the feature cache: where its records start, and the epochs that read them.
struct LoaderFeatures: Sendable {
  let cache: FeatureCache
  let firstRecord: Int
  let inEpochs: @Sendable (Int) -> Bool
}

/// The share of every batch one rank of a data-parallel run loads: rank r of N takes rows
/// ⌊r·b/N⌋ ..< ⌊(r+1)·b/N⌋ of a batch of b, so the shares differ by at most one image (also in an
/// epoch's short last batch, where a share may be empty).
public struct LoaderShard: Sendable {
  public var rank: Int
  public var ranks: Int

  public init(rank: Int = 0, ranks: Int = 1) {
    precondition(ranks >= 1 && rank >= 0 && rank < ranks, "LoaderShard: rank \(rank) of \(ranks)")
    self.rank = rank
    self.ranks = ranks
  }

  public func rows(of count: Int) -> Range<Int> { rank * count / ranks..<(rank + 1) * count / ranks }
}
