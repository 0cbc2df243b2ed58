import CaptionKit
import Foundation

/// Threads that run closures in arrival order: image decoding, beside the model's own thread.
final class WorkerThreads: @unchecked Sendable {
  private let condition = NSCondition()
  private var jobs: [@Sendable () -> Void] = []
  private var next = 0  // jobs[next...] are waiting

  init(count: Int, name: String) {
    for index in 0..<max(count, 1) {
      let thread = Thread { [self] in work() }
      thread.name = "\(name)-\(index)"
      thread.start()
    }
  }

  /// `body`'s result, computed on one of the threads.
  func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
      condition.lock()
      jobs.append { continuation.resume(with: Result { try body() }) }
      condition.signal()
      condition.unlock()
    }
  }

  private func work() {
    while true {
      condition.lock()
      while next == jobs.count { condition.wait() }
      let job = jobs[next]
      next += 1
      if next == jobs.count {  // all taken: reuse the storage
        jobs.removeAll(keepingCapacity: true)
        next = 0
      }
      condition.unlock()
      job()
    }
  }
}

/// Admits caption requests up to a capacity, decodes their images on worker threads and captions
/// them in batches on one model thread.
///
/// Batching: a request that arrives while the model is idle starts at once. When a batch ends and
/// requests are waiting, the next batch takes up to `maxBatch` of them, first waiting (at most until
/// the oldest has waited `maxDelay`) for images still being decoded to join. A batch is one
/// encoder pass and one decode per distinct set of options (`Captioner.caption(images:options:)`).
final class CaptionQueue: @unchecked Sendable {
  private struct Job {
    let image: RGBImage
    let options: DecodingOptions
    let arrived: Date
    let done: CheckedContinuation<(DecodedCaption, FamiliarVerdict), Never>
  }

  let capacity: Int
  /// Bytes of request bodies held at once (being received, or waiting to be decoded) at most.
  let bodyBudget: Int
  let maxBatch: Int
  let maxDelay: TimeInterval
  private let captioner: Captioner  // its model is used on the model thread only
  private let familiarity: Familiarity?  // the model's calibration (SPEC §3c), if it has one
  private let decoders: WorkerThreads
  private let metrics: ServeMetrics
  private let condition = NSCondition()
  private var admitted = 0  // requests holding a slot: decoding, waiting or being captioned
  private var decoding = 0  // images being decoded for admitted requests
  private var heldBodyBytes = 0
  private var waiting: [Job] = []

  /// λ of a `rerank` request (SPEC §3b): `given`, else the model's calibrated weight. A 400 when the
  /// model has no retrieval part or no calibrated weight.
  func rerankWeight(given: Double?) throws -> Double {
    do {
      return try Reranker.weight(given: given, config: captioner.modelFile.config, path: "the model")
    } catch let error as CaptionError {
      throw ServeError(.badRequest, "rerank: " + error.reason)
    }
  }

  init(captioner: Captioner, settings: ServeSettings, metrics: ServeMetrics) {
    self.captioner = captioner
    familiarity = Familiarity(file: captioner.modelFile)
    capacity = settings.queue
    bodyBudget = settings.bodyBudget
    maxBatch = settings.maxBatch
    maxDelay = Double(settings.maxDelayMilliseconds) / 1000
    decoders = WorkerThreads(count: settings.decoders, name: "decode")
    self.metrics = metrics
    let model = Thread { [self] in captionBatches() }
    model.name = "model"
    model.stackSize = 64 << 20
    model.start()
  }

  /// The words of the model's captions.
  var vocabulary: Vocabulary { captioner.vocabulary }

  /// Takes a slot for a request; false when the queue is full (the request is refused).
  func admit() -> Bool {
    condition.lock()
    defer { condition.unlock() }
    guard admitted < capacity else { return false }
    admitted += 1
    metrics.queueDepth.set(Double(admitted))
    return true
  }

  /// Gives back the slot of `admit`.
  func leave() {
    condition.lock()
    admitted -= 1
    metrics.queueDepth.set(Double(admitted))
    condition.unlock()
  }

  /// Counts `count` more bytes of a body held in memory; false (nothing counted) when that would go
  /// over the budget.
  func holdBody(_ count: Int) -> Bool {
    condition.lock()
    defer { condition.unlock() }
    guard heldBodyBytes + count <= bodyBudget else { return false }
    heldBodyBytes += count
    return true
  }

  /// Gives back bytes counted by `holdBody`.
  func releaseBody(_ count: Int) {
    condition.lock()
    heldBodyBytes -= count
    condition.unlock()
  }

  /// True while a request would be admitted.
  var hasRoom: Bool {
    condition.lock()
    defer { condition.unlock() }
    return admitted < capacity
  }

  /// The caption of an uploaded image (the caller holds a slot) and its familiarity verdict: the
  /// image is decoded on a worker thread, then captioned with the next batch. Throws the decoder's
  /// `CaptionError`.
  func caption(bytes: [UInt8], options: DecodingOptions) async throws -> (DecodedCaption, FamiliarVerdict) {
    changeDecoding(by: 1)
    let image: RGBImage
    do {
      let captioner = UncheckedCaptioner(captioner)
      image = try await decoders.run { try captioner.value.load(bytes: bytes, name: "upload") }
    } catch {
      changeDecoding(by: -1)  // the model thread may be waiting for this image
      throw error
    }
    return await withCheckedContinuation { done in
      enqueue(Job(image: image, options: options, arrived: Date(), done: done))
    }
  }

  private func changeDecoding(by change: Int) {
    condition.lock()
    decoding += change
    condition.signal()
    condition.unlock()
  }

  /// A decoded image joins the waiting ones.
  private func enqueue(_ job: Job) {
    condition.lock()
    decoding -= 1
    waiting.append(job)
    condition.signal()
    condition.unlock()
  }

  private func captionBatches() {
    while true {
      condition.lock()
      var wasIdle = false
      while waiting.isEmpty {
        wasIdle = true
        condition.wait()
      }
      if !wasIdle {
        let deadline = waiting[0].arrived.addingTimeInterval(maxDelay)
        while waiting.count < maxBatch && decoding > 0 && condition.wait(until: deadline) {}
      }
      let batch = Array(waiting.prefix(maxBatch))
      waiting.removeFirst(batch.count)
      condition.unlock()

      let (captions, familiar) = captioner.caption(
        images: batch.map(\.image), options: batch.map(\.options), familiarity: familiarity)
      metrics.batchSize.record(Double(batch.count))
      metrics.imagesCaptioned.increment(by: Int64(batch.count))
      for (i, (job, caption)) in zip(batch, captions).enumerated() {
        job.done.resume(returning: (caption, FamiliarVerdict(familiar?[i])))
      }
    }
  }
}

/// The captioner handed to a decoding thread, which only reads its configuration and decoder.
private struct UncheckedCaptioner: @unchecked Sendable {
  let value: Captioner
  init(_ value: Captioner) { self.value = value }
}
