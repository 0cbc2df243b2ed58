import CShims
import FoundationEssentials
import Glibc

extension TrainingSession {
  /// The prefix of the model's weights in the state file (`model.<tensor>`).
  static let weightPrefix = "model."

  /// Called between writing the latest model and its state (a test stands a kill in there).
  nonisolated(unsafe) static var beforeStateWrite: (() throws -> Void)?

  /// The loop: epochs of steps, validation, checkpoints; stops early on Ctrl-C/SIGTERM (saving first).
  func train(
    log: @escaping (String) -> Void, progress: ((TrainProgress) -> Void)?, started: Date
  ) throws -> TrainSummary {
    caption_install_interrupt_handlers()
    let batchesPerEpoch = trainLoader.batchesPerEpoch
    // The schedule spans all epochs; --max-steps only stops early (so a limited run resumes exactly).
    let scheduleSteps = options.epochs * batchesPerEpoch
    let totalSteps = options.maxSteps > 0 ? min(options.maxSteps, scheduleSteps) : scheduleSteps
    var imagesSeen = 0
    var trainSeconds = 0.0
    var stepsThisRun = 0
    var interrupted = false
    var stoppedEarly = false

    try openFeatureCache(log: log)
    epochLoop: while epoch < options.epochs {
      trainLoader.startEpoch(epoch, fromBatch: batchInEpoch)
      let firstBatch = batchInEpoch
      epochStarted = Date()
      // Frozen convolutions: no gradient, no update, no place in the clipping norm.
      let frozen = options.encoderFrozen(inEpoch: epoch) || options.retrievalOnly == true
      model.encoder.trainsConvolutions = !frozen
      objective.startEpoch(
        epoch, retrievalHardAfter: options.retrievalHardAfter ?? TrainOptions.defaultRetrievalHardAfter)
      let trained = frozen ? namedParameters.map(\.1) : objective.trainableParameters
      var stepsThisEpoch = 0
      var stepStart = Date()  // includes the wait for the batch: the pipeline's speed shows too
      while var batch = trainLoader.next() {
        encodeMissingFeatures(&batch, firstRecord: 0)
        let lr = options.schedule.rate(
          base: options.learningRate, step: step, totalSteps: scheduleSteps, epoch: epoch, options: options)
        // One process: forward and backward of the batch. Several: of this rank's share, the
        // gradients then summed over the ranks (DataParallel.swift).
        var stopRequested = false
        let loss: Float
        let objectiveTotal: Float
        let termLosses: [Float?]
        var batchImages = batch.imageIds.count
        if group.size > 1 {
          let summed = try stepInGroup(batch, parameters: trained)
          (loss, objectiveTotal, termLosses) = (summed.loss, summed.objective, summed.termLosses)
          (batchImages, stopRequested) = (summed.images, summed.stop)
        } else {
          zeroGradients(trained)
          loss = objective.forward(batch, training: true, generator: &dropoutGenerator)
          (objectiveTotal, termLosses) = (objective.total, objective.termLosses)
        }
        guard loss.isFinite, objectiveTotal.isFinite else {
          throw diverged(atStep: step + 1, "the loss is not finite")
        }
        if group.size == 1 {
          objective.backward()
        } else if batchImages == 0 {
          // every image of the batch failed on every rank: no step, as in a single process
          batchInEpoch = batch.index + 1
          if stopRequested {
            interrupted = true
            break epochLoop
          }
          continue
        }
        // global-norm clipping, applied by Adam as it reads the gradients
        let clip =
          options.clip > 0 ? clippingFactor(norm: gradientNorm(trained), maxNorm: options.clip) : 1
        optimizer.step(learningRate: lr, gradientScale: clip)
        if !frozen {
          let encoderRate = options.schedule.rate(
            base: options.encoderLearningRate ?? options.learningRate, step: step, totalSteps: scheduleSteps,
            epoch: epoch, options: options)
          encoderOptimizer.step(learningRate: encoderRate, gradientScale: clip)
        }
        step += 1
        batchInEpoch = batch.index + 1  // a batch whose images all failed is skipped by the loader
        let seconds = Date().timeIntervalSince(stepStart)
        stepStart = Date()
        trainSeconds += seconds
        imagesSeen += batchImages
        stepsThisRun += 1
        stepsThisEpoch += 1
        interval.add(loss: loss, objective: objectiveTotal, termLosses: termLosses)
        epochLoss += Double(loss)
        epochSteps += 1
        let imagesPerSecond = trainSeconds > 0 ? Double(imagesSeen) / trainSeconds : 0
        let stepsLeft = Double(totalSteps - step)
        // Known once a step after the first (which includes the start-up) has been timed.
        let secondsLeft =
          stepsThisRun >= 2
          ? stepsLeft * trainSeconds / Double(max(imagesSeen, 1)) * Double(options.batchSize) : nil
        if group.isWriter {
          progress?(
            TrainProgress(
              epoch: epoch + 1, epochs: options.epochs, batch: batchInEpoch,
              batchesPerEpoch: batchesPerEpoch, step: step, totalSteps: totalSteps, loss: loss,
              imagesPerSecond: imagesPerSecond, secondsLeft: secondsLeft))
        }
        if step % options.logEvery == 0 || batchInEpoch == batchesPerEpoch {
          let meanLoss = interval.loss / Float(max(interval.steps, 1))
          var line: [String: Any] = [
            "step": step, "epoch": epoch + 1, "loss": Double(meanLoss), "lr": Double(lr),
            "images_per_s": imagesPerSecond,
          ]
          if group.size > 1 { line["ranks"] = group.size }
          if !objective.terms.isEmpty {
            line["objective"] = Double(interval.objective / Float(max(interval.steps, 1)))
            for (i, term) in objective.terms.enumerated() where interval.termSteps[i] > 0 {
              line[term.name + "_loss"] = Double(interval.termLoss[i] / Float(interval.termSteps[i]))
            }
          }
          try appendLog(line)
          if progress == nil && group.isWriter {
            log(
              String(
                cFormat: "epoch %ld/%ld step %ld/%ld loss %.4f lr %.2e %.1f images/s", epoch + 1,
                options.epochs, step, totalSteps, meanLoss, lr, imagesPerSecond)
                + (secondsLeft.map { " ETA " + TrainProgress.clock($0) } ?? ""))
          }
          interval = LoggedInterval(terms: objective.terms.count)
        }
        if group.size > 1 ? stopRequested : caption_interrupt_requested() != 0 {
          interrupted = true
          break epochLoop
        }
        if options.maxSteps > 0 && step >= options.maxSteps {
          stoppedEarly = true
          break epochLoop
        }
      }
      if firstBatch == 0 && stepsThisEpoch == 0 {
        throw CaptionError(
          .badDataset, path: options.data,
          "none of the training images could be read: nothing to learn from")
      }
      // End of an epoch: validate, keep the best, save the latest.
      let lastBatch = batchInEpoch
      epoch += 1
      batchInEpoch = 0
      if epoch % options.valEvery == 0 || epoch == options.epochs {
        guard let metrics = try validate() else {
          // Stopped during validation: saved as at the epoch's last step, so that --resume validates.
          (epoch, batchInEpoch) = (epoch - 1, lastBatch)
          interrupted = true
          break epochLoop
        }
        var line: [String: Any] = ["step": step, "epoch": epoch, "epoch_s": currentEpochSeconds]
        if group.size > 1 { line["ranks"] = group.size }
        for (key, value) in metrics { line[key] = value }
        try appendLog(line)
        if group.isWriter {
          log(
            "epoch \(epoch): "
              + metrics.sorted { $0.key < $1.key }.map { $0.key + String(cFormat: " %.4f", $0.value) }.joined(
                separator: ", "))
        }
        // --retrieval-only keeps the captioner, so its captions cannot choose: the retrieval rsum does
        let score =
          (options.retrievalOnly == true ? metrics["val_rsum"] : nil) ?? metrics["val_CIDEr-D"]
          ?? -(metrics["val_loss"] ?? epochLoss / Double(max(epochSteps, 1)))
        if score > bestScore {
          bestScore = score
          bestEpoch = epoch
          bestMetrics = metrics
          epochsWithoutImprovement = 0
          try saveModel(to: files.best, metrics: metrics)
        } else {
          epochsWithoutImprovement += 1
        }
      }
      (epochLoss, epochSteps, epochSeconds) = (0, 0, 0)
      epochStarted = Date()
      if options.keepEvery > 0 && epoch % options.keepEvery == 0 {
        try saveModel(to: files.snapshot(epoch: epoch), metrics: [:])
      }
      try saveLatest()
      if options.patience > 0 && epochsWithoutImprovement >= options.patience {
        if group.isWriter { log("no improvement for \(options.patience) validations: stopping early") }
        break
      }
    }
    // The best model is only ever one a validation (or, without one, an epoch's loss) chose.
    if interrupted || stoppedEarly { try saveLatest() }
    return TrainSummary(
      interrupted: interrupted, epochsDone: epoch, steps: step, bestEpoch: bestEpoch,
      bestMetrics: bestMetrics, seconds: Date().timeIntervalSince(started),
      imagesPerSecond: trainSeconds > 0 ? Double(imagesSeen) / trainSeconds : 0,
      skippedImages: trainLoader.skippedCount + (valLoader?.skippedCount ?? 0), files: files)
  }

  /// Validation loss, and greedy captions scored with CIDEr-D and BLEU-4 against the references;
  /// nil when Ctrl-C/SIGTERM stopped it (checked before each batch).
  func validate() throws -> [String: Double]? {
    guard let valLoader else { return [:] }
    if let featureCache {
      // The validation images' records follow the training images'; read while still frozen.
      let frozen = !model.encoder.trainsConvolutions
      valLoader.useFeatures(featureCache, firstRecord: trainImages.count, inEpochs: { _ in frozen })
    }
    valLoader.startEpoch(0, fromBatch: 0)
    var lossSum = 0.0
    var batches = 0
    var candidates: [Int: [String]] = [:]
    var candidateTokens: [Int32] = []  // in a group: [image id, length, tokens…] per caption
    var noDropout = SeededGenerator(seed: 0)
    let options = DecodingOptions(maxLength: self.options.maxLength, beamSize: 1)
    // In a group rank r validates batches r, r+N, … (whole batches: the same losses and captions as
    // one process), rank 0 adds them up (`validateInGroup`), and a stop is agreed at the next
    // step instead.
    let stops = group.size == 1
    var joint = (images: [Float](), sentences: [Float](), imageOf: [Int]())  // the retrieval part's vectors
    var batchIndex = -1
    var imageVectors: [Float] = []  // every validation image's v (rerank and, from features, familiarity)
    // Every validation image's block means, for the familiarity calibration, while every batch came
    // through the convolutions (images read from the feature cache have none: v stands in).
    var blockMeans: [Float]? = []
    var imageIds: [Int] = []  // their ids, for the rerank calibration
    while !stops || caption_interrupt_requested() == 0, var batch = valLoader.next() {
      batchIndex += 1
      if batchIndex % group.size != group.rank { continue }
      encodeMissingFeatures(&batch, firstRecord: trainImages.count)
      let loss = model.forward(
        images: batch.images, features: batch.features, captionsPerImage: batch.captionsPerImage,
        steps: batch.steps,
        inputTokens: batch.inputTokens, targetTokens: batch.targetTokens, training: false,
        generator: &noDropout)
      lossSum += Double(loss)
      batches += 1
      imageVectors += model.lastImageVectors.array
      if batch.features == nil { blockMeans? += model.encoder.blockMeans.array } else { blockMeans = nil }
      imageIds += batch.imageIds
      // v from the forward pass just made (the encoder runs once per batch).
      let captions = CaptionDecoder.greedy(
        model: model, imageVectors: model.lastImageVectors, options: options)
      for (id, caption) in zip(batch.imageIds, captions) {
        candidates[id] = caption.tokens.map { vocabulary.word($0) }
        if group.size > 1 {
          candidateTokens += [Int32(id), Int32(caption.tokens.count)] + caption.tokens.map(Int32.init)
        }
      }
      if let retrieval = model.retrieval {
        let rows = batch.imageIds.count * batch.captionsPerImage
        let lengths = RetrievalModel.lengths(targets: batch.targetTokens, steps: batch.steps, rows: rows)
        let firstImage = joint.images.count / retrieval.config.dim
        joint.imageOf += (0..<rows).map { firstImage + $0 / batch.captionsPerImage }
        joint.sentences +=
          retrieval.sentences.forward(
            tokens: batch.targetTokens, steps: batch.steps, lengths: lengths
          ).array
        joint.images += retrieval.images.forward(model.lastImageVectors).array
      }
    }
    if stops && caption_interrupt_requested() != 0 { return nil }
    // In a group, each rank calibrates on the validation images of its own batches (rank 0's
    // calibration is the one saved).
    let dv = model.config.dv
    if imageVectors.count >= 4 * dv {  // Familiarity.calibrate needs four images
      if let blockMeans {
        let width = model.config.blockMeansWidth
        let means = Tensor(shape: [blockMeans.count / width, width], values: blockMeans)
        familiarity = (step, Familiarity.calibrate(vectors: means, features: .blockMeans))
      } else {
        let vectors = Tensor(shape: [imageVectors.count / dv, dv], values: imageVectors)
        familiarity = (step, Familiarity.calibrate(vectors: vectors, features: .imageVector))
      }
    }
    if group.size > 1 {
      var metrics = try validateInGroup(lossSum: lossSum, batches: batches, candidateTokens: candidateTokens)
      if model.retrieval != nil {
        try validateRetrievalInGroup(
          joint: joint, imageVectors: imageVectors, imageIds: imageIds, into: &metrics)
      }
      return metrics
    }
    var metrics = try scoreValidation(lossSum: lossSum, batches: batches, candidates: candidates)
    if !joint.imageOf.isEmpty {
      retrievalMetrics(joint: joint, imageVectors: imageVectors, imageIds: imageIds, into: &metrics)
    }
    return metrics
  }

  /// The retrieval part's validation: R@K over the validation images and their captions, and λ of
  /// reranking (beam candidates of every validation image, scored for each λ of the grid).
  func retrievalMetrics(
    joint: (images: [Float], sentences: [Float], imageOf: [Int]), imageVectors: [Float], imageIds: [Int],
    into metrics: inout [String: Double]
  ) {
    guard let retrieval = model.retrieval else { return }
    let dim = retrieval.config.dim
    let recalls = RetrievalMetrics.evaluate(
      images: Tensor(shape: [joint.images.count / dim, dim], values: joint.images),
      sentences: Tensor(shape: [joint.imageOf.count, dim], values: joint.sentences), imageOf: joint.imageOf)
    for (key, value) in recalls { metrics["val_" + key] = value }
    var references: [Int: [[String]]] = [:]
    for image in valImages { references[image.id] = image.captions.map { PTBTokenizer.tokenize($0) } }
    let calibration = RerankCalibration.calibrate(
      model: model, retrieval: retrieval,
      imageVectors: Tensor(shape: [imageIds.count, model.config.dv], values: imageVectors),
      imageIds: imageIds,
      references: references, vocabulary: vocabulary, maxLength: self.options.maxLength)
    rerankCalibration = (step, calibration)
    metrics["val_rerank_weight"] = calibration.weight
  }

  /// `retrievalMetrics` in a group: rank 0 gathers every rank's vectors (each rank validated its own
  /// batches), computes them as one process would, and sends the figures to every rank (so that
  /// every rank keeps the same best model).
  func validateRetrievalInGroup(
    joint: (images: [Float], sentences: [Float], imageOf: [Int]), imageVectors: [Float], imageIds: [Int],
    into metrics: inout [String: Double]
  ) throws {
    guard let retrieval = model.retrieval else { return }
    let dim = retrieval.config.dim
    let images = try group.gatherRows(joint.images, width: dim, everywhere: false)
    let sentences = try group.gatherRows(joint.sentences, width: dim, everywhere: false)
    // each rank's image indices, moved past the images of the ranks before it
    let imageOf = try group.gatherRows(joint.imageOf.map(Float.init), width: 1, everywhere: false)
    let vectors = try group.gatherRows(imageVectors, width: model.config.dv, everywhere: false)
    let ids = try group.gatherRows(imageIds.map(Float.init), width: 1, everywhere: false)
    let keys = RetrievalMetrics.keys.map { "val_" + $0 } + ["val_rerank_weight"]
    var values = [Double](repeating: .nan, count: keys.count + 1)  // the last: whether there are any
    if group.isWriter && !imageOf.rows.isEmpty {
      var all = (images: images.rows, sentences: sentences.rows, imageOf: [Int]())
      var (first, row) = (0, 0)
      for rank in 0..<group.size {
        for _ in 0..<imageOf.counts[rank] {
          all.imageOf.append(first + Int(imageOf.rows[row]))
          row += 1
        }
        first += images.counts[rank]
      }
      var found: [String: Double] = [:]
      retrievalMetrics(
        joint: all, imageVectors: vectors.rows, imageIds: ids.rows.map { Int($0) }, into: &found)
      values = keys.map { found[$0] ?? .nan } + [1]
    }
    try values.withUnsafeMutableBytes { try group.broadcast($0) }
    if values[keys.count] == 1 {
      for (key, value) in zip(keys, values) { metrics[key] = value }
    }
  }

  /// The metrics of the validation split from the sum of its batches' losses and the captions.
  func scoreValidation(lossSum: Double, batches: Int, candidates: [Int: [String]]) throws -> [String: Double]
  {
    guard batches > 0 else {
      throw CaptionError(
        .badDataset, path: self.options.valData ?? self.options.data,
        "none of the \(valImages.count) validation images could be read")
    }
    var metrics: [String: Double] = ["val_loss": lossSum / Double(batches)]
    if !candidates.isEmpty {
      var references: [Int: [[String]]] = [:]
      for image in valImages where candidates[image.id] != nil {
        references[image.id] = image.captions.map { PTBTokenizer.tokenize($0) }
      }
      let scores = CaptionMetrics.score(candidates: candidates, references: references)
      metrics["val_CIDEr-D"] = scores.ciderD
      metrics["val_BLEU-4"] = scores.bleu[3]
    }
    return metrics
  }

  // MARK: Files

  func provenance(metrics: [String: Double]) -> String {
    var object: [String: Any] = [
      "command": "caption train", "data": options.data, "epochs": epoch, "step": step,
      "seed": options.seed,
    ]
    if group.size > 1 { object["ranks"] = group.size }
    if !metrics.isEmpty { object["metrics"] = metrics.filter { $0.value.isFinite } }  // JSON has no NaN
    return (try? JSONText.encode(object, escapingSlashes: true)) ?? "{}"
  }

  /// The error that ends a run whose loss or weights stopped being finite: nothing is saved over
  /// the latest finite checkpoint, which the message names.
  func diverged(atStep step: Int, _ cause: String) -> CaptionError {
    let kept =
      savedStep.map { "the latest finite checkpoint is \(files.latest) (step \($0))" }
      ?? "no checkpoint was saved"
    return CaptionError(.invalidArgument, path: "", "training diverged at step \(step) (\(cause)); \(kept)")
  }

  /// Refuses to save weights (or trained heads) that hold a NaN or an infinity.
  func checkFinite() throws {
    if let (name, _) = objective.namedTrainableParameters.first(where: { !$0.1.value.allFinite }) {
      throw diverged(atStep: step, "\(name) is not finite")
    }
  }

  func saveModel(to path: String, metrics: [String: Double]) throws {
    try checkFinite()
    guard group.isWriter else { return }
    var file = ModelFile(
      config: model.config, vocabulary: vocabulary, mean: mean, std: std,
      provenance: provenance(metrics: metrics), tensors: [:])
    file.tensors = Dictionary(uniqueKeysWithValues: model.namedTensors.map { ($0.name, $0.tensor) })
    // The calibration of these very weights, or none (an --init file's is for other weights).
    if let familiarity, familiarity.step == step {
      familiarity.calibration.store(in: &file)
    } else {
      Familiarity.remove(from: &file)
    }
    if let rerankCalibration, rerankCalibration.step == step {
      rerankCalibration.calibration.store(in: &file)
    } else {
      file.config.retrieval?.rerankWeight = nil
    }
    try file.save(path: path)
  }

  /// The latest model, then the state that points at it (optimiser moments, counters, generator).
  func saveLatest() throws {
    try saveModel(to: files.latest, metrics: [:])
    featureCache?.synchronize()  // the features stored so far survive with the checkpoint
    guard group.isWriter else {
      savedStep = step
      return
    }
    try TrainingSession.beforeStateWrite?()
    let optionsJSON: String
    let bestJSON: String
    do {
      optionsJSON = String(decoding: try JSONEncoder().encode(options), as: UTF8.self)
      bestJSON = String(
        decoding: try JSONEncoder().encode(bestMetrics.filter { $0.value.isFinite }), as: UTF8.self)
    } catch {
      throw CaptionError(.io, path: files.state, "cannot encode the training options: \(error)")
    }
    var metadata: [String: String] = [
      "format": "caption-train-state", "version": "1", "options": optionsJSON,
      "step": String(step), "epoch": String(epoch), "batch": String(batchInEpoch),
      "rng": String(dropoutGenerator.state), "best_score": String(bestScore),
      "stale_epochs": String(epochsWithoutImprovement), "best_metrics": bestJSON,
      "adam_steps": String(optimizer.stepCount), "log_interval": interval.saved,
      "epoch_loss": "\(epochLoss) \(epochSteps)", "epoch_seconds": String(currentEpochSeconds),
      "encoder_adam_steps": String(encoderOptimizer.stepCount),
    ]
    if let bestEpoch { metadata["best_epoch"] = String(bestEpoch) }
    let moments =
      optimizer.namedMoments(names: namedParameters.map { $0.0 })
      + encoderOptimizer.namedMoments(names: namedConvolutionParameters.map { $0.0 })
    let heads = objective.termParameters.map { (name: $0.0, tensor: $0.1.value) }
    let weights = model.namedTensors.map { (name: TrainingSession.weightPrefix + $0.name, tensor: $0.tensor) }
    try Safetensors.write(
      path: files.state, tensors: moments + heads + weights, metadata: metadata)
    savedStep = step
  }

  /// The wall time of the current epoch so far, also across a `--resume` (SPEC §8's `epoch_s`).
  var currentEpochSeconds: Double { epochSeconds + Date().timeIntervalSince(epochStarted) }

  /// Adds one line to the log with a single write (a stopped run leaves whole lines only).
  func appendLog(_ object: [String: Any]) throws {
    guard group.isWriter else { return }
    guard let line = try? JSONText.encode(object, escapingSlashes: true) else {
      return  // a NaN loss has no JSON form: that line is left out
    }
    try TrainingLog.append(line, to: files.log)
  }
}

/// The JSON-lines log of a run (SPEC §8): appended a line at a time; on `--resume`, cut back once
/// to the lines up to the resumed step.
enum TrainingLog {
  static func append(_ line: String, to path: String) throws {
    let descriptor = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
    guard descriptor >= 0 else {
      throw CaptionError(.io, path: path, "cannot open the log: \(String(cString: strerror(errno)))")
    }
    defer { close(descriptor) }
    let bytes = Array((line + "\n").utf8)
    var written = -1
    repeat {
      written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
    } while written < 0 && errno == EINTR
    guard written == bytes.count else {
      let reason =
        written < 0 ? String(cString: strerror(errno)) : "only \(written) of \(bytes.count) bytes written"
      throw CaptionError(.io, path: path, "cannot write the log: \(reason)")
    }
  }

  /// Rewrites the log (atomically) with its lines whose `step` is at most `step`; a missing log
  /// stays missing.
  static func truncate(_ path: String, toStep step: Int) throws {
    guard FileManager.default.fileExists(atPath: path) else { return }
    let text = String(
      decoding: try RegularFile.read(path, maximumBytes: Int.max, what: "training log"), as: UTF8.self)
    let kept = text.split(separator: "\n").filter { line in
      guard case .object(let object)? = try? JSONValue.parse(Array(line.utf8), file: path),
        let lineStep = object["step"]?.integerValue
      else { return false }
      return lineStep <= step
    }
    try AtomicFile.write(Data(kept.map { $0 + "\n" }.joined().utf8), to: path)
  }
}

/// The steps since the last logged line: their summed losses make the next line's means. Saved with
/// the state, so that a resumed run logs the same lines as one that was never stopped.
struct LoggedInterval {
  var steps = 0
  /// Σ caption cross-entropy.
  var loss: Float = 0
  /// Σ weighted total.
  var objective: Float = 0
  /// Per auxiliary term: Σ loss over the steps it was computed, and how many.
  var termLoss: [Float]
  var termSteps: [Int]

  init(terms: Int) {
    termLoss = [Float](repeating: 0, count: terms)
    termSteps = [Int](repeating: 0, count: terms)
  }

  mutating func add(loss: Float, objective: Float, termLosses: [Float?]) {
    steps += 1
    self.loss += loss
    self.objective += objective
    for (i, termLoss) in termLosses.enumerated() {
      if let termLoss {
        self.termLoss[i] += termLoss
        termSteps[i] += 1
      }
    }
  }

  /// `steps loss objective` then `loss steps` per term; Float's description reads back exactly.
  var saved: String {
    ([String(steps), String(loss), String(objective)]
      + zip(termLoss, termSteps).flatMap { [String($0), String($1)] }).joined(separator: " ")
  }

  init?(saved: String, terms: Int) {
    let fields = saved.split(separator: " ").map(String.init)
    guard fields.count == 3 + 2 * terms, let steps = Int(fields[0]), let loss = Float(fields[1]),
      let objective = Float(fields[2])
    else { return nil }
    self.init(terms: terms)
    self.steps = steps
    self.loss = loss
    self.objective = objective
    for i in 0..<terms {
      guard let termLoss = Float(fields[3 + 2 * i]), let termSteps = Int(fields[4 + 2 * i]) else {
        return nil
      }
      self.termLoss[i] = termLoss
      self.termSteps[i] = termSteps
    }
  }
}
