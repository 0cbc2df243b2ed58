import CShims
import FoundationEssentials
import Glibc

/// What one step of a data-parallel run adds up over the ranks.
struct GroupStep {
  /// The whole batch's caption cross-entropy (mean over all its target tokens) and objective.
  var loss: Float
  var objective: Float
  var termLosses: [Float?]
  /// Images of the whole batch (0: every image failed on every rank; no step is taken).
  var images: Int
  /// Some rank was asked to stop (Ctrl-C/SIGTERM): every rank stops after this step.
  var stop: Bool
}

extension TrainingSession {
  /// Before the first step of a run of several processes: the ranks must have been started alike
  /// (options, data, model), then all take rank 0's weights, heads and optimiser moments.
  func joinGroup() throws {
    guard group.size > 1 else { return }
    var fingerprint = Fingerprint()
    var shared = options
    // How the work is run may differ per host.
    (shared.threads, shared.workers) = (0, 0)
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys  // the same text in every process
    if let json = try? encoder.encode(shared) { fingerprint.add(String(decoding: json, as: UTF8.self)) }
    fingerprint.add(String(describing: model.config))
    for index in 0..<vocabulary.count { fingerprint.add(vocabulary.word(index)) }
    fingerprint.add("\(trainLoader.sampleCount) \(valImages.count) \(step) \(epoch) \(batchInEpoch)")
    // The data itself, not only its size: every image's id, file and captions (a few MB of text
    // for COCO; the pixels are not read).
    for image in trainLoader.images + valImages {
      fingerprint.add("\(image.id) \(image.path)")
      for caption in image.captions { fingerprint.add(caption) }
    }
    try group.agree(on: fingerprint.value, what: "set of options, data or model")
    try group.broadcast(
      objective.trainableParameters.map(\.value) + optimizer.moments.flatMap { [$0.m, $0.v] })
  }

  /// The forward and backward pass of this rank's share of `batch`, then the gradients summed over
  /// the ranks (every rank ends with the same gradient: the whole batch's). The losses are
  /// normalised by the whole batch's counts (target tokens; auxiliary rows), so that the sum equals
  /// a single process's gradient of the whole batch. Only the gradients of `parameters`, those the
  /// step trains (not frozen convolutions), are computed and exchanged.
  func stepInGroup(_ batch: TrainingBatch, parameters: [Parameter]) throws -> GroupStep {
    let terms = objective.terms
    let hasImages = batch.batchSize > 0
    if hasImages { _ = objective.forward(batch, training: true, generator: &dropoutGenerator) }
    try objective.exchangeRetrievalLosses(hasRows: hasImages)
    // [caption tokens, Σ caption loss, images, stop requests, then per term: rows, Σ loss]
    var totals = [Double](repeating: 0, count: 4 + 2 * terms.count)
    if hasImages {
      let tokens = Double(model.crossEntropy.countedTargets)
      (totals[0], totals[1], totals[2]) = (
        tokens, Double(objective.captionLoss) * tokens, Double(batch.batchSize)
      )
      for (i, term) in terms.enumerated() {
        if let termLoss = objective.termLosses[i], let head = (term as? AuxiliaryTerm)?.auxiliary {
          let rows = Double(head.crossEntropy.keptRows)
          (totals[4 + 2 * i], totals[5 + 2 * i]) = (rows, Double(termLoss) * rows)
        }
      }
    }
    totals[3] = caption_interrupt_requested() != 0 ? 1 : 0
    try totals.withUnsafeMutableBufferPointer { try group.sum($0, scratch: &gatheredTotals) }

    model.crossEntropy.normaliser = Int(totals[0])
    var termLosses = [Float?](repeating: nil, count: terms.count)
    for (i, term) in terms.enumerated() {
      (term as? AuxiliaryTerm)?.auxiliary.crossEntropy.normaliser = Int(totals[4 + 2 * i])
      if totals[4 + 2 * i] > 0 { termLosses[i] = Float(totals[5 + 2 * i] / totals[4 + 2 * i]) }
      if term is RetrievalTerm { termLosses[i] = objective.termLosses[i] }  // the whole batch's already
    }
    zeroGradients(parameters)
    // The gradients summed over the ranks, bucket by bucket: with overlap, each bucket's sum starts
    // while the backward pass goes on below it.
    if gradientBuckets?.parameters.count != parameters.count {
      gradientBuckets = GradientBuckets(parameters: parameters, bucketBytes: group.bucketBytes, group: group)
    }
    let buckets = gradientBuckets!
    buckets.beginStep()
    if hasImages { objective.backward(gradientsFinal: group.bucketBytes > 0 ? buckets.gradientsFinal : nil) }
    try buckets.finish()
    let loss = totals[0] > 0 ? Float(totals[1] / totals[0]) : 0
    let objectiveTotal = zip(terms, termLosses).reduce(loss) { $0 + $1.0.weight * ($1.1 ?? 0) }
    return GroupStep(
      loss: loss, objective: objectiveTotal, termLosses: termLosses, images: Int(totals[2]),
      stop: totals[3] > 0)
  }
}

extension TrainingSession {
  /// After each rank has validated its batches: rank 0 gathers the sums of the batches' losses and
  /// the captions ([image id, length, tokens…] each), scores them as one process would, and sends
  /// the metrics to every rank (so that every rank keeps the same best model).
  func validateInGroup(lossSum: Double, batches: Int, candidateTokens: [Int32]) throws -> [String: Double] {
    // The counts first, then the captions, padded to the longest rank's (and one more value, so that
    // no buffer is empty).
    let counts = [lossSum, Double(batches), Double(candidateTokens.count)]
    var allCounts = [Double](repeating: 0, count: 3 * group.size)
    try counts.withUnsafeBytes { mine in
      try allCounts.withUnsafeMutableBytes { try group.gather(mine, into: $0) }
    }
    var longest = [stride(from: 2, to: allCounts.count, by: 3).map { Int(allCounts[$0]) }.max()! + 1]
    try longest.withUnsafeMutableBytes { try group.broadcast($0) }
    let padded = candidateTokens + [Int32](repeating: 0, count: longest[0] - candidateTokens.count)
    var allTokens = [Int32](repeating: 0, count: group.size * padded.count)
    try padded.withUnsafeBytes { mine in
      try allTokens.withUnsafeMutableBytes { try group.gather(mine, into: $0) }
    }

    // [batches, val_loss, has captions, CIDEr-D, BLEU-4], rank 0's, to every rank.
    var result = [Double](repeating: 0, count: 5)
    if group.isWriter {
      var candidates: [Int: [String]] = [:]
      for rank in 0..<group.size {
        var i = rank * padded.count
        let end = i + Int(allCounts[3 * rank + 2])
        while i < end {
          let (id, length) = (Int(allTokens[i]), Int(allTokens[i + 1]))
          candidates[id] = allTokens[(i + 2)..<(i + 2 + length)].map { vocabulary.word(Int($0)) }
          i += 2 + length
        }
      }
      let totalBatches = stride(from: 1, to: allCounts.count, by: 3).reduce(0) { $0 + allCounts[$1] }
      if totalBatches > 0 {
        let totalLoss = stride(from: 0, to: allCounts.count, by: 3).reduce(0) { $0 + allCounts[$1] }
        let metrics = try scoreValidation(
          lossSum: totalLoss, batches: Int(totalBatches), candidates: candidates)
        result = [
          totalBatches, metrics["val_loss"]!, metrics["val_CIDEr-D"] == nil ? 0 : 1,
          metrics["val_CIDEr-D"] ?? 0,
          metrics["val_BLEU-4"] ?? 0,
        ]
      }
    }
    try result.withUnsafeMutableBytes { try group.broadcast($0) }
    // No batch on any rank: every rank fails alike.
    if result[0] == 0 { return try scoreValidation(lossSum: 0, batches: 0, candidates: [:]) }
    var metrics = ["val_loss": result[1]]
    if result[2] != 0 { (metrics["val_CIDEr-D"], metrics["val_BLEU-4"]) = (result[3], result[4]) }
    return metrics
  }
}

/// An objective term scored by an `AuxiliaryHead` (all of today's): its row count is what a
/// data-parallel run adds up over the ranks.
protocol AuxiliaryTerm {
  var auxiliary: AuxiliaryHead { get }
}

extension WordLoss: AuxiliaryTerm {}
extension SceneLoss: AuxiliaryTerm {}
extension MentionLoss: AuxiliaryTerm {}
