import Foundation
import XCTest

@testable import CaptionKit

/// Counts calls and records reports from the loader's threads.
final class LoaderProbe: @unchecked Sendable {
  private let lock = NSLock()
  private var _loads: [String] = []
  private var _skips: [(String, String)] = []

  var loads: [String] { lock.withLock { _loads } }
  var skips: [(String, String)] { lock.withLock { _skips } }
  func recordLoad(_ path: String) { lock.withLock { _loads.append(path) } }
  func recordSkip(_ path: String, _ reason: String) { lock.withLock { _skips.append((path, reason)) } }
}

/// The input pipeline: batch layout, determinism across worker counts, resume, failures, the cache,
/// clean shutdown, and whether the workers load in parallel and ahead of the consumer.
final class BatchLoaderTests: XCTestCase {
  let size = 4

  /// Pixel (y, x, c) of image `id`: a pattern every test can recompute.
  static func pixel(id: Int, y: Int, x: Int, c: Int, size: Int) -> UInt8 {
    UInt8((id * 37 + (y * size + x) * 3 + c) % 256)
  }

  /// A fake `Preprocess.load`: paths `img/<id>`; ids in `failing` throw.
  func fakeLoader(probe: LoaderProbe, failing: Set<Int> = []) -> @Sendable (String) throws -> RGBImage {
    let size = self.size
    return { path in
      probe.recordLoad(path)
      let id = Int(path.split(separator: "/").last!)!
      if failing.contains(id) { throw CaptionError(.corrupt, path: path, "broken on purpose") }
      var pixels = [UInt8](repeating: 0, count: size * size * 3)
      for y in 0..<size {
        for x in 0..<size {
          for c in 0..<3 {
            pixels[(y * size + x) * 3 + c] = BatchLoaderTests.pixel(id: id, y: y, x: x, c: c, size: size)
          }
        }
      }
      return RGBImage(width: size, height: size, pixels: pixels)
    }
  }

  /// `count` images `img/<id>` with ids 100…; image i has (i % 3) + 1 captions of distinct words.
  func makeData(count: Int) -> (images: [DatasetImage], captions: [[EncodedCaption]]) {
    var images: [DatasetImage] = []
    var captions: [[EncodedCaption]] = []
    for i in 0..<count {
      images.append(DatasetImage(id: 100 + i, path: "img/\(100 + i)", split: .train, captions: []))
      captions.append(
        (0..<(i % 3 + 1)).map { k in EncodedCaption(tokens: Array(repeating: 4 + k, count: 1 + (i + k) % 5)) }
      )
    }
    return (images, captions)
  }

  func makeLoader(
    count: Int = 23, batch: Int = 5, k: Int = 2, workers: Int, seed: UInt64 = 9, shuffle: Bool = true,
    probe: LoaderProbe, failing: Set<Int> = [], cache: String? = nil, captions: [[EncodedCaption]]? = nil
  ) throws -> BatchLoader {
    let data = makeData(count: count)
    return try BatchLoader(
      images: data.images, captions: captions ?? data.captions, batchSize: batch, captionsPerImage: k,
      imageSize: size, shuffle: shuffle, seed: seed, workers: workers, cachePath: cache,
      load: fakeLoader(probe: probe, failing: failing),
      onSkip: { probe.recordSkip($0, $1) })
  }

  /// Everything observable about a batch, for comparisons.
  struct Snapshot: Equatable {
    var epoch, index: Int
    var ids: [Int]
    var pixels: [Float]
    var steps: Int
    var input, target: [Int]
  }

  func drain(_ loader: BatchLoader, epoch: Int, from: Int = 0) -> [Snapshot] {
    loader.startEpoch(epoch, fromBatch: from)
    var result: [Snapshot] = []
    while let b = loader.next() {
      result.append(
        Snapshot(
          epoch: b.epoch, index: b.index, ids: b.imageIds, pixels: b.images.array, steps: b.steps,
          input: b.inputTokens, target: b.targetTokens))
    }
    return result
  }

  // MARK: - Layout

  func testTokenLayoutIsTimeMajorWithStartEndAndPads() {
    // Rows: [7 8 9], [5], [6 6].
    let layout = TrainingBatch.tokenLayout([[7, 8, 9], [5], [6, 6]])
    XCTAssertEqual(layout.steps, 4)
    let s = 1, e = 2, p = 0
    XCTAssertEqual(
      layout.input,
      [
        s, s, s,  // t = 0
        7, 5, 6,  // t = 1
        8, p, 6,  // t = 2
        9, p, p,  // t = 3
      ])
    XCTAssertEqual(
      layout.target,
      [
        7, 5, 6,
        8, e, 6,
        9, p, e,
        e, p, p,
      ])
  }

  func testBatchPixelsCaptionsAndNormalisation() throws {
    let probe = LoaderProbe()
    let loader = try makeLoader(count: 7, batch: 3, k: 2, workers: 1, shuffle: false, probe: probe)
    XCTAssertEqual(loader.batchesPerEpoch, 3)
    loader.startEpoch(0)
    let data = makeData(count: 7)
    var seen: [Int] = []
    while let batch = loader.next() {
      XCTAssertEqual(batch.images.shape, [batch.batchSize, 3, size, size])
      XCTAssertEqual(batch.rows, batch.batchSize * 2)
      for (r, id) in batch.imageIds.enumerated() {
        XCTAssertEqual(batch.imageIndices[r], id - 100)
        // CHW, (v / 255 − mean) / std: bit for bit what inference computes from the same pixels.
        let expected = Preprocess.tensor(try fakeLoader(probe: LoaderProbe())("img/\(id)"))
        for c in 0..<3 {
          for y in 0..<size {
            for x in 0..<size {
              let v = Float(BatchLoaderTests.pixel(id: id, y: y, x: x, c: c, size: size))
              let value = batch.images[((r * 3 + c) * size + y) * size + x]
              XCTAssertEqual(
                value, (v / 255 - Preprocess.imagenetMean[c]) / Preprocess.imagenetStd[c], accuracy: 1e-6)
              XCTAssertEqual(value, expected[(c * size + y) * size + x])
            }
          }
        }
        // The two rows of image r hold captions of that image; distinct when it has two or more.
        let available = data.captions[id - 100].map(\.tokens)
        var rowsOfImage: [[Int]] = []
        for k in 0..<2 {
          let row = r * 2 + k
          var words: [Int] = []
          for t in 0..<batch.steps where batch.targetTokens[t * batch.rows + row] > Vocabulary.end {
            words.append(batch.targetTokens[t * batch.rows + row])
          }
          XCTAssertTrue(available.contains(words), "row \(row): \(words) not among \(available)")
          XCTAssertEqual(batch.inputTokens[row], Vocabulary.start)
          XCTAssertEqual(batch.targetTokens[words.count * batch.rows + row], Vocabulary.end)
          rowsOfImage.append(words)
        }
        if available.count >= 2 { XCTAssertNotEqual(rowsOfImage[0], rowsOfImage[1]) }
      }
      let longest = batch.imageIds.flatMap { data.captions[$0 - 100].map(\.tokens.count) }.max()!
      XCTAssertLessThanOrEqual(batch.steps, longest + 1)
      seen += batch.imageIds
    }
    XCTAssertEqual(seen, Array(100..<107))  // no shuffle: file order, last batch short
  }

  // MARK: - Order

  func testSameSeedSameBatchesForAnyWorkerCount() throws {
    let probe = LoaderProbe()
    let one = try makeLoader(workers: 1, probe: probe)
    let three = try makeLoader(workers: 3, probe: probe)
    let inline = try makeLoader(workers: 0, probe: probe)
    for epoch in 0..<2 {
      let reference = drain(one, epoch: epoch)
      XCTAssertEqual(reference.count, 5)
      XCTAssertEqual(reference.flatMap(\.ids).sorted(), Array(100..<123))  // every image once
      XCTAssertEqual(drain(three, epoch: epoch), reference)
      XCTAssertEqual(drain(inline, epoch: epoch), reference)
    }
    // Epochs differ, and another seed gives another order.
    let epoch0 = drain(one, epoch: 0).flatMap(\.ids)
    XCTAssertNotEqual(drain(one, epoch: 1).flatMap(\.ids), epoch0)
    let other = try makeLoader(workers: 2, seed: 10, probe: probe)
    XCTAssertNotEqual(drain(other, epoch: 0).flatMap(\.ids), epoch0)
  }

  /// The order and the caption draws of two epochs for seed 9, written down: a change in the
  /// loader's random stream (which would change every training run) is noticed.
  func testEpochOrderAndCaptionDrawsArePinned() throws {
    let loader = try makeLoader(workers: 0, probe: LoaderProbe())
    // Captions of image i are k = 0, 1, 2 made of word 4 + k: a row's first target says which one.
    func drawn(_ batches: [Snapshot]) -> [Int] {
      batches.flatMap { b in (0..<b.ids.count * 2).map { b.target[$0] - 4 } }
    }
    // Per epoch: the image ids in order, then the caption drawn for each row.
    let pinned: [[[Int]]] = [
      [
        [
          101, 122, 109, 102, 108, 114, 111, 119, 100, 105, 118, 115, 110, 113, 106, 112, 103, 107, 121, 104,
          117, 120, 116,
        ],
        [
          0, 1, 1, 0, 0, 0, 2, 1, 2, 0, 1, 2, 0, 1, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0,
          0, 1, 0, 0, 0, 1, 0, 1, 2, 0, 1, 0, 1,
        ],
      ],
      [
        [
          103, 110, 105, 116, 115, 118, 100, 102, 120, 119, 117, 112, 107, 113, 109, 111, 104, 122, 114, 108,
          106, 101, 121,
        ],
        [
          0, 0, 0, 1, 0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 1, 0, 2, 1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 2, 1,
          0, 0, 1, 0, 2, 1, 2, 0, 0, 0, 1, 0, 0,
        ],
      ],
    ]
    for (epoch, expected) in pinned.enumerated() {
      let batches = drain(loader, epoch: epoch)
      XCTAssertEqual([batches.flatMap(\.ids), drawn(batches)], expected, "epoch \(epoch)")
    }
  }

  func testResumeFromBatchGivesTheRemainingBatches() throws {
    let probe = LoaderProbe()
    let loader = try makeLoader(workers: 2, probe: probe)
    let full = drain(loader, epoch: 3)
    let resumed = try makeLoader(workers: 2, probe: probe)
    XCTAssertEqual(drain(resumed, epoch: 3, from: 2), Array(full[2...]))
    // Restarting mid-stream on the same loader, and asking past the end.
    XCTAssertEqual(drain(loader, epoch: 3, from: 4), Array(full[4...]))
    XCTAssertEqual(drain(loader, epoch: 3, from: 5), [])
    // The epoch after continues the stream (prefetched) and equals a fresh loader's.
    XCTAssertEqual(drain(loader, epoch: 4), drain(resumed, epoch: 4))
  }

  /// A validation-style loader (the same epoch restarted) decodes nothing past its epoch's end; a
  /// training-style loader, once it went on to the next epoch, builds ahead across epoch ends.
  func testBuildingAheadAcrossEpochEndsOnlyWhenEpochsFollowOn() throws {
    let validation = LoaderProbe()
    let val = try makeLoader(count: 10, batch: 5, k: 1, workers: 2, probe: validation)
    for _ in 0..<3 {
      XCTAssertEqual(drain(val, epoch: 0).count, 2)
      Thread.sleep(forTimeInterval: 0.05)
      XCTAssertEqual(validation.loads.count % 10, 0)  // whole epochs only
    }
    XCTAssertEqual(validation.loads.count, 30)

    let training = LoaderProbe()
    let train = try makeLoader(count: 10, batch: 5, k: 1, workers: 2, probe: training)
    _ = drain(train, epoch: 0)
    Thread.sleep(forTimeInterval: 0.05)
    XCTAssertEqual(training.loads.count, 10)  // not yet known to go on
    _ = drain(train, epoch: 1)
    var waited = 0
    // Epochs 2 and 3 are built ahead, unasked: the prefetch window is 4 batches of 5, and no more.
    while training.loads.count < 40 && waited < 200 {
      Thread.sleep(forTimeInterval: 0.01)
      waited += 1
    }
    Thread.sleep(forTimeInterval: 0.05)
    XCTAssertEqual(training.loads.count, 40)
  }

  // MARK: - Failures

  func testFailingImagesAreReportedOnceSkippedAndCounted() throws {
    let probe = LoaderProbe()
    let failing: Set<Int> = [101, 107, 108]
    let loader = try makeLoader(
      count: 12, batch: 3, k: 1, workers: 2, shuffle: false, probe: probe, failing: failing)
    let first = drain(loader, epoch: 0)
    let second = drain(loader, epoch: 1)
    for batches in [first, second] {
      XCTAssertEqual(Set(batches.flatMap(\.ids)), Set(100..<112).subtracting(failing))
    }
    // Batches 100–102 and 106–108 shrink; none is empty.
    XCTAssertEqual(first.map(\.ids.count), [2, 3, 1, 3])
    XCTAssertEqual(loader.skippedCount, 3)
    XCTAssertEqual(Set(probe.skips.map(\.0)), ["img/101", "img/107", "img/108"])
    XCTAssertEqual(probe.skips.count, 3)  // once each, over two epochs
    XCTAssertTrue(probe.skips.allSatisfy { $0.1 == "broken on purpose" })
    XCTAssertEqual(probe.loads.filter { $0 == "img/101" }.count, 1)  // not retried
  }

  func testBatchOfOnlyFailuresIsPassedOverAndWrongSizeIsAFailure() throws {
    let probe = LoaderProbe()
    let loader = try makeLoader(
      count: 6, batch: 2, k: 1, workers: 1, shuffle: false, probe: probe, failing: [102, 103])
    XCTAssertEqual(drain(loader, epoch: 0).map(\.index), [0, 2])
    // A loader that returns the wrong size.
    let data = makeData(count: 2)
    let wrong = try BatchLoader(
      images: data.images, captions: data.captions, batchSize: 2, captionsPerImage: 1, imageSize: size,
      shuffle: false, seed: 1, workers: 1, load: { _ in RGBImage(width: 3, height: 4) },
      onSkip: { probe.recordSkip($0, $1) })
    XCTAssertEqual(drain(wrong, epoch: 0), [])
    XCTAssertEqual(wrong.skippedCount, 2)
    XCTAssertTrue(probe.skips.last!.1.contains("3×4"), probe.skips.last!.1)
  }

  func testImagesWithoutCaptionsAreNotSampled() throws {
    let probe = LoaderProbe()
    var captions = makeData(count: 6).captions
    captions[2] = []
    captions[4] = []
    let loader = try makeLoader(count: 6, batch: 10, k: 3, workers: 1, probe: probe, captions: captions)
    XCTAssertEqual(loader.sampleCount, 4)
    let batches = drain(loader, epoch: 0)
    XCTAssertEqual(Set(batches.flatMap(\.ids)), [100, 101, 103, 105])
    // K = 0: every image, no tokens (for captioning a split).
    let all = try makeLoader(count: 6, batch: 10, k: 0, workers: 1, probe: probe, captions: captions)
    let plain = drain(all, epoch: 0)
    XCTAssertEqual(plain.flatMap(\.ids).sorted(), Array(100..<106))
    XCTAssertEqual(plain[0].steps, 0)
  }

  func testInvalidArguments() {
    let probe = LoaderProbe()
    XCTAssertThrowsError(try makeLoader(batch: 0, workers: 1, probe: probe))
    XCTAssertThrowsError(try makeLoader(workers: -1, probe: probe))
    XCTAssertThrowsError(try makeLoader(batch: 1 << 30, workers: 1, probe: probe))  // > 2 GB a batch
    XCTAssertThrowsError(try makeLoader(workers: 1, probe: probe, captions: []))
    XCTAssertThrowsError(try makeLoader(workers: 1, probe: probe, cache: "/nonexistent-folder/x.cache")) {
      XCTAssertEqual(($0 as? CaptionError)?.path, "/nonexistent-folder/x.cache")
    }
  }

  // MARK: - Cache

  func testCacheRoundTripsAndReplacesLoading() throws {
    let folder = temporaryFolder()
    let cache = folder + "/train.cache"
    let failing: Set<Int> = [104]
    let reference = try makeLoader(workers: 2, probe: LoaderProbe(), failing: failing)
    let expected = [drain(reference, epoch: 0), drain(reference, epoch: 1)]

    // First run: builds the cache in epoch 0 (one load per image), reads it in epoch 1 (no loads).
    let probe = LoaderProbe()
    let building = try makeLoader(workers: 1, probe: probe, failing: failing, cache: cache)
    XCTAssertFalse(building.cacheIsComplete)
    XCTAssertEqual(drain(building, epoch: 0), expected[0])
    XCTAssertTrue(building.cacheIsComplete)
    XCTAssertNil(building.cacheError)
    XCTAssertTrue(FileManager.default.fileExists(atPath: cache))
    XCTAssertEqual(probe.loads.count, 23)
    XCTAssertEqual(drain(building, epoch: 1), expected[1])
    XCTAssertEqual(probe.loads.count, 23)
    // Only the cache itself is left in the folder (the temporary file was renamed).
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder), ["train.cache"])

    // Second run, three workers: nothing loaded, the same batches, the failed image still reported.
    let again = LoaderProbe()
    let reading = try makeLoader(workers: 3, probe: again, failing: failing, cache: cache)
    XCTAssertTrue(reading.cacheIsComplete)
    XCTAssertEqual(drain(reading, epoch: 1), expected[1])
    XCTAssertEqual(drain(reading, epoch: 0), expected[0])
    XCTAssertEqual(again.loads.count, 0)
    XCTAssertEqual(again.skips.map(\.0), ["img/104"])
    XCTAssertEqual(reading.skippedCount, 1)

    // Another image list (or image size) does not reuse the file: it is rebuilt.
    let other = LoaderProbe()
    let rebuilt = try makeLoader(count: 10, workers: 2, probe: other, cache: cache)
    XCTAssertFalse(rebuilt.cacheIsComplete)
    _ = drain(rebuilt, epoch: 0)
    XCTAssertEqual(other.loads.count, 10)
    XCTAssertTrue(rebuilt.cacheIsComplete)
  }

  func testTruncatedCacheIsRebuiltAndUnfinishedCacheLeavesNoFile() throws {
    let folder = temporaryFolder()
    let cache = folder + "/c.cache"
    do {
      let loader = try makeLoader(workers: 1, probe: LoaderProbe(), cache: cache)
      _ = drain(loader, epoch: 0)
    }
    let handle = FileHandle(forUpdatingAtPath: cache)!
    let size = try handle.seekToEnd()
    try handle.truncate(atOffset: size - 5)
    try handle.close()
    let probe = LoaderProbe()
    do {
      let loader = try makeLoader(workers: 2, probe: probe, cache: cache)
      XCTAssertFalse(loader.cacheIsComplete)
      loader.startEpoch(0, fromBatch: 3)  // stop before every image was seen
      _ = loader.next()
    }
    XCTAssertGreaterThan(probe.loads.count, 0)
    // The damaged file is left as it was and the unfinished temporary file is removed.
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder), ["c.cache"])
  }

  // MARK: - Threads

  func testStopEndsWorkerThreads() throws {
    /// The process's threads that the loaders named as their workers (the process has others, which
    /// come and go: the Dispatch pool's, the kernels').
    func threadCount() -> Int {
      let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
      return tasks.filter { task in
        let name = (try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8)) ?? ""
        return name.hasPrefix("caption.load.")
      }.count
    }
    // Workers of loaders that earlier tests dropped leave shortly after their stop returns.
    XCTAssertTrue(eventually { threadCount() == 0 }, "\(threadCount()) workers left from before")
    for round in 0..<5 {
      let loader = try makeLoader(workers: 3, probe: LoaderProbe())
      loader.startEpoch(0)
      _ = loader.next()  // workers busy prefetching; deinit must stop them
      // The workers, by name, once each has started.
      if round == 0 { XCTAssertTrue(eventually { threadCount() == 3 }, "\(threadCount()) workers") }
    }
    let explicit = try makeLoader(workers: 3, probe: LoaderProbe())
    explicit.stop()
    explicit.stop()
    XCTAssertNil(explicit.next())
    // Threads leave shortly after `finished.leave()`; give them a moment.
    XCTAssertTrue(eventually { threadCount() == 0 }, "\(threadCount()) workers still running")
  }

  // MARK: - Overlap

  /// Polls `condition` until it holds or 30 s pass (a guard against a hang, not a measure).
  func eventually(_ condition: () -> Bool) -> Bool {
    for _ in 0..<30_000 {
      if condition() { return true }
      Thread.sleep(forTimeInterval: 0.001)
    }
    return condition()
  }

  /// Two workers load at the same time: the first load waits until a second is in flight (at most
  /// 30 s), and the most loads in flight at once are counted: 2, never more than the workers.
  func testTwoWorkersLoadAtTheSameTime() throws {
    let gate = LoadGate(opensAt: 2)
    let plain = fakeLoader(probe: LoaderProbe())
    let data = makeData(count: 64)
    let loader = try BatchLoader(
      images: data.images, captions: data.captions, batchSize: 8, captionsPerImage: 1, imageSize: size,
      shuffle: true, seed: 3, workers: 2,
      load: { path in
        gate.enter()
        defer { gate.leave() }
        return try plain(path)
      }, onSkip: { _, _ in })
    XCTAssertEqual(drain(loader, epoch: 0).count, 8)
    XCTAssertFalse(gate.timedOut, "the loads never overlapped")
    XCTAssertEqual(gate.mostInFlight, 2)
  }

  /// While the consumer works on a batch the workers build the following ones, up to the prefetch
  /// window (4 batches) and no further: before the consumer asks for batch k, the images of batches
  /// k..<k+4 are loaded, without its asking. So a consumer that takes as long as the loading finds its
  /// batches ready.
  func testWorkersLoadAheadOfTheConsumerUpToTheWindow() throws {
    let probe = LoaderProbe()
    let loader = try makeLoader(count: 40, batch: 5, k: 1, workers: 2, shuffle: false, probe: probe)
    loader.startEpoch(0)
    for k in 0..<8 {
      let window = min(40, (k + 4) * 5)
      XCTAssertTrue(eventually { probe.loads.count >= window }, "batch \(k): \(probe.loads.count) loads")
      XCTAssertEqual(probe.loads.count, window, "batch \(k)")
      XCTAssertEqual(loader.next()?.index, k)
    }
    XCTAssertNil(loader.next())
  }
}

/// Counts loads in flight; each waits, until `opensAt` are in flight at once (or 30 s pass), then
/// the gate stays open.
final class LoadGate: @unchecked Sendable {
  private let condition = NSCondition()
  private let opensAt: Int
  private var inFlight = 0
  private var open = false
  private(set) var mostInFlight = 0
  private(set) var timedOut = false

  init(opensAt: Int) { self.opensAt = opensAt }

  func enter() {
    condition.lock()
    defer { condition.unlock() }
    inFlight += 1
    mostInFlight = max(mostInFlight, inFlight)
    if inFlight >= opensAt { open = true }
    condition.broadcast()
    let deadline = Date(timeIntervalSinceNow: 30)
    while !open {
      if !condition.wait(until: deadline) {
        timedOut = true
        open = true
      }
    }
  }

  func leave() {
    condition.lock()
    inFlight -= 1
    condition.unlock()
  }
}
