import CShims
import Foundation

extension TrainingSession {
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
    var recentLoss: Float = 0  // the caption cross-entropy
    var recentObjective: Float = 0  // the weighted total
    var recentTermLoss = [Float](repeating: 0, count: objective.terms.count)
    var recentTermCount = [Int](repeating: 0, count: objective.terms.count)
    var recentCount = 0
    var interrupted = false
    var stoppedEarly = false

    epochLoop: while epoch < options.epochs {
      trainLoader.startEpoch(epoch, fromBatch: batchInEpoch)
      var epochLoss = 0.0  // for choosing the best model when there is no validation split
      var epochSteps = 0
      var stepStart = Date()  // includes the wait for the batch: the pipeline's speed shows too
      while let batch = trainLoader.next() {
        let lr = options.schedule.rate(
          base: options.learningRate, step: step, totalSteps: scheduleSteps, epoch: epoch, options: options)
        zeroGradients(objective.trainableParameters)
        let loss = objective.forward(batch, training: true, generator: &dropoutGenerator)
        objective.backward()
        // global-norm clipping, applied by Adam as it reads the gradients
        let clip =
          options.clip > 0
          ? clippingFactor(norm: gradientNorm(objective.trainableParameters), maxNorm: options.clip) : 1
        optimizer.step(learningRate: lr, gradientScale: clip)
        step += 1
        batchInEpoch = batch.index + 1  // a batch whose images all failed is skipped by the loader
        let seconds = Date().timeIntervalSince(stepStart)
        stepStart = Date()
        trainSeconds += seconds
        imagesSeen += batch.imageIds.count
        recentLoss += loss
        recentObjective += objective.total
        for (i, termLoss) in objective.termLosses.enumerated() {
          if let termLoss {
            recentTermLoss[i] += termLoss
            recentTermCount[i] += 1
          }
        }
        recentCount += 1
        epochLoss += Double(loss)
        epochSteps += 1
        let imagesPerSecond = trainSeconds > 0 ? Double(imagesSeen) / trainSeconds : 0
        let stepsLeft = Double(totalSteps - step)
        let secondsLeft = stepsLeft * trainSeconds / Double(max(imagesSeen, 1)) * Double(options.batchSize)
        progress?(
          TrainProgress(
            epoch: epoch + 1, epochs: options.epochs, batch: batchInEpoch,
            batchesPerEpoch: batchesPerEpoch, step: step, totalSteps: totalSteps, loss: loss,
            imagesPerSecond: imagesPerSecond, secondsLeft: secondsLeft))
        if step % options.logEvery == 0 || batchInEpoch == batchesPerEpoch {
          let meanLoss = recentLoss / Float(max(recentCount, 1))
          var line: [String: Any] = [
            "step": step, "epoch": epoch + 1, "loss": Double(meanLoss), "lr": Double(lr),
            "images_per_s": imagesPerSecond,
          ]
          if !objective.terms.isEmpty {
            line["objective"] = Double(recentObjective / Float(max(recentCount, 1)))
            for (i, term) in objective.terms.enumerated() where recentTermCount[i] > 0 {
              line[term.name + "_loss"] = Double(recentTermLoss[i] / Float(recentTermCount[i]))
            }
          }
          appendLog(line)
          if progress == nil {
            log(
              String(
                format: "epoch %d/%d step %d/%d loss %.4f lr %.2e %.1f images/s", epoch + 1,
                options.epochs, step, totalSteps, meanLoss, lr, imagesPerSecond))
          }
          recentLoss = 0
          recentObjective = 0
          recentTermLoss = recentTermLoss.map { _ in 0 }
          recentTermCount = recentTermCount.map { _ in 0 }
          recentCount = 0
        }
        if caption_interrupt_requested() != 0 {
          interrupted = true
          break epochLoop
        }
        if options.maxSteps > 0 && step >= options.maxSteps {
          stoppedEarly = true
          break epochLoop
        }
      }
      // End of an epoch: validate, keep the best, save the latest.
      epoch += 1
      batchInEpoch = 0
      if epoch % options.valEvery == 0 || epoch == options.epochs {
        let metrics = try validate()
        var line: [String: Any] = ["step": step, "epoch": epoch]
        for (key, value) in metrics { line[key] = value }
        appendLog(line)
        log(
          "epoch \(epoch): "
            + metrics.sorted { $0.key < $1.key }.map { String(format: "%@ %.4f", $0.key, $0.value) }.joined(
              separator: ", "))
        let score =
          metrics["val_CIDEr-D"] ?? -(metrics["val_loss"] ?? epochLoss / Double(max(epochSteps, 1)))
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
      if options.keepEvery > 0 && epoch % options.keepEvery == 0 {
        try saveModel(to: files.snapshot(epoch: epoch), metrics: [:])
      }
      try saveLatest()
      if options.patience > 0 && epochsWithoutImprovement >= options.patience {
        log("no improvement for \(options.patience) validations: stopping early")
        break
      }
    }
    if interrupted || stoppedEarly {
      try saveLatest()
      if bestEpoch == nil { try saveModel(to: files.best, metrics: [:]) }
    }
    try writeLog()
    return TrainSummary(
      interrupted: interrupted, epochsDone: epoch, steps: step, bestEpoch: bestEpoch,
      bestMetrics: bestMetrics, seconds: Date().timeIntervalSince(started),
      imagesPerSecond: trainSeconds > 0 ? Double(imagesSeen) / trainSeconds : 0,
      skippedImages: trainLoader.skippedCount + (valLoader?.skippedCount ?? 0), files: files)
  }

  /// Validation loss, and greedy captions scored with CIDEr-D and BLEU-4 against the references.
  func validate() throws -> [String: Double] {
    guard let valLoader else { return [:] }
    valLoader.startEpoch(0, fromBatch: 0)
    var lossSum = 0.0
    var batches = 0
    var candidates: [Int: [String]] = [:]
    var noDropout = SeededGenerator(seed: 0)
    let options = DecodingOptions(maxLength: self.options.maxLength, beamSize: 1)
    while let batch = valLoader.next() {
      let loss = model.forward(
        images: batch.images, captionsPerImage: batch.captionsPerImage, steps: batch.steps,
        inputTokens: batch.inputTokens, targetTokens: batch.targetTokens, training: false,
        generator: &noDropout)
      lossSum += Double(loss)
      batches += 1
      // v from the forward pass just made (the encoder runs once per batch).
      let captions = CaptionDecoder.greedy(
        model: model, imageVectors: model.lastImageVectors, options: options)
      for (id, caption) in zip(batch.imageIds, captions) {
        candidates[id] = caption.tokens.map { vocabulary.word($0) }
      }
    }
    var metrics: [String: Double] = ["val_loss": lossSum / Double(max(batches, 1))]
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
    if !metrics.isEmpty { object["metrics"] = metrics }
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    return String(decoding: data, as: UTF8.self)
  }

  func saveModel(to path: String, metrics: [String: Double]) throws {
    var file = ModelFile(
      config: model.config, vocabulary: vocabulary, mean: mean, std: std,
      provenance: provenance(metrics: metrics), tensors: [:])
    file.tensors = Dictionary(uniqueKeysWithValues: model.namedTensors.map { ($0.name, $0.tensor) })
    try file.save(path: path)
  }

  /// The latest model, then the state that points at it (optimiser moments, counters, generator).
  func saveLatest() throws {
    try saveModel(to: files.latest, metrics: [:])
    let optionsJSON = String(decoding: try JSONEncoder().encode(options), as: UTF8.self)
    let bestJSON = String(decoding: try JSONEncoder().encode(bestMetrics), as: UTF8.self)
    var metadata: [String: String] = [
      "format": "caption-train-state", "version": "1", "options": optionsJSON,
      "step": String(step), "epoch": String(epoch), "batch": String(batchInEpoch),
      "rng": String(dropoutGenerator.state), "best_score": String(bestScore),
      "stale_epochs": String(epochsWithoutImprovement), "best_metrics": bestJSON,
      "adam_steps": String(optimizer.stepCount),
    ]
    if let bestEpoch { metadata["best_epoch"] = String(bestEpoch) }
    let names = objective.namedTrainableParameters.map { $0.0 }
    let heads = objective.termParameters.map { (name: $0.0, tensor: $0.1.value) }
    try Safetensors.write(
      path: files.state, tensors: optimizer.namedMoments(names: names) + heads, metadata: metadata)
    try writeLog()
  }

  func appendLog(_ object: [String: Any]) {
    if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
      logLines.append(String(decoding: data, as: UTF8.self))
      try? writeLog()
    }
  }

  func writeLog() throws {
    try AtomicFile.write(Data((logLines.joined(separator: "\n") + "\n").utf8), to: files.log)
  }
}
