/// Caption reranking with the joint space (SPEC §3b): beam search with beam N gives N candidates,
/// and the one with the highest
///
///     score = logprob / steps + λ · cosine(sentence vector of the caption, image vector)
///
/// is chosen (steps = words plus `<end>` when emitted; the first on ties, in the order the beam
/// finished them). `describe`, `evaluate`, `calibrate`, training and `Captioner` (so a server) use it.
public struct Reranker {
  public let retrieval: RetrievalModel

  /// The λ a calibration tries (SPEC §3b), smallest first: ties keep the smaller.
  public static let calibrationWeights: [Double] = [0, 0.5, 1, 2, 4, 8]
  /// The candidates per image a training run calibrates with, and `calibrate`'s default.
  public static let calibrationCandidates = 10

  public init(retrieval: RetrievalModel) { self.retrieval = retrieval }

  public static func score(logprob: Double, steps: Int, cosine: Double, weight: Double) -> Double {
    logprob / Double(max(steps, 1)) + weight * cosine
  }

  /// The cosine of every candidate with its image: `imageVectors` are the captioner's v ([n, Dv]),
  /// `candidates[i]` image i's captions. All captions go through the sentence encoder as one batch.
  public func cosines(imageVectors: Tensor, candidates: [[DecodedCaption]]) -> [[Double]] {
    let imageCount = candidates.count
    precondition(imageVectors.shape.first == imageCount, "one list of candidates per image")
    let rows = candidates.reduce(0) { $0 + $1.count }
    guard rows > 0 else { return candidates.map { _ in [] } }
    let u = retrieval.images.forward(imageVectors).clone()  // [n, D] unit rows
    let lengths = candidates.flatMap { $0.map(\.tokens.count) }
    let steps = max(lengths.max() ?? 1, 1)
    var tokens = [Int](repeating: Vocabulary.pad, count: steps * rows)  // [T, R] time-major
    var r = 0
    for list in candidates {
      for caption in list {
        for (t, token) in caption.tokens.enumerated() { tokens[t * rows + r] = token }
        r += 1
      }
    }
    let s = retrieval.sentences.forward(tokens: tokens, steps: steps, lengths: lengths)  // [R, D]
    let d = retrieval.config.dim
    var result: [[Double]] = []
    result.reserveCapacity(imageCount)
    r = 0
    for (image, list) in candidates.enumerated() {
      var row: [Double] = []
      for _ in list {
        var dot = 0.0
        for j in 0..<d { dot += Double(u.pointer[image * d + j]) * Double(s.pointer[r * d + j]) }
        row.append(dot)
        r += 1
      }
      result.append(row)
    }
    return result
  }

  /// The candidate with the highest score (the first on ties), its `rerank` set; an empty list gives
  /// an empty caption.
  public static func choose(_ candidates: [DecodedCaption], cosines: [Double], weight: Double)
    -> DecodedCaption
  {
    precondition(candidates.count == cosines.count, "one cosine per candidate")
    var best: DecodedCaption? = nil
    for (caption, cosine) in zip(candidates, cosines) {
      let score = score(logprob: caption.logprob, steps: caption.steps, cosine: cosine, weight: weight)
      if best == nil || score > best!.rerank!.score {
        best = caption
        best!.rerank = RerankScore(cosine: cosine, score: score)
      }
    }
    return best ?? DecodedCaption(tokens: [], logprob: 0, endedWithEnd: false)
  }

  /// Beam candidates (`options.rerank` of them) reranked with `options.rerankWeight`, which must be
  /// set (`weight(given:file:path:)` resolves it).
  public func decode<M: StepModel>(model: M, imageVectors: Tensor, options: DecodingOptions)
    -> [DecodedCaption]
  {
    guard let weight = options.rerankWeight, options.rerank > 0 else {
      preconditionFailure("Reranker.decode needs options.rerank and options.rerankWeight")
    }
    let candidates = CaptionDecoder.beamCandidates(model: model, imageVectors: imageVectors, options: options)
    let cosines = cosines(imageVectors: imageVectors, candidates: candidates)
    return zip(candidates, cosines).map { Reranker.choose($0, cosines: $1, weight: weight) }
  }

  /// λ for `--rerank`: `given` (`--rerank-weight`), else the model's `retrieval.rerank_weight`. A
  /// model without the retrieval part, or without a calibrated λ when none is given, is an error
  /// naming `path`.
  public static func weight(given: Double?, config: ModelConfig, path: String) throws -> Double {
    guard let retrieval = config.retrieval else { throw CaptionError.noRetrievalPart(path: path) }
    if let given { return given }
    guard let stored = retrieval.rerankWeight else {
      throw CaptionError(
        .badModel, path: path,
        "the model has no calibrated rerank_weight (give --rerank-weight, or calibrate one: "
          + "caption calibrate --rerank-data DATA --out MODEL)")
    }
    return Double(stored)
  }
}

/// The choice of λ (SPEC §3b): the weight of `Reranker.calibrationWeights` whose reranked captions
/// score the highest CIDEr-D against the references (the smallest on ties).
public struct RerankCalibration: Equatable, Sendable {
  public var weight: Double
  /// CIDEr-D of the reranked captions for each weight tried, in order.
  public var scores: [(weight: Double, ciderD: Double)]
  /// The images the choice was made on.
  public var images: Int

  public static func == (a: RerankCalibration, b: RerankCalibration) -> Bool {
    a.weight == b.weight && a.images == b.images && a.scores.map(\.weight) == b.scores.map(\.weight)
      && a.scores.map(\.ciderD) == b.scores.map(\.ciderD)
  }

  /// `candidates[i]` and `cosines[i]` are those of image `imageIds[i]`, whose tokenised references
  /// `references` hold.
  public static func choose(
    candidates: [[DecodedCaption]], cosines: [[Double]], imageIds: [Int], references: [Int: [[String]]],
    vocabulary: Vocabulary, weights: [Double] = Reranker.calibrationWeights
  ) -> RerankCalibration {
    var scores: [(weight: Double, ciderD: Double)] = []
    let scored = Set(imageIds)
    let references = references.filter { scored.contains($0.key) }  // document frequencies: these images'
    for weight in weights {
      var chosen: [Int: [String]] = [:]
      for (i, id) in imageIds.enumerated() {
        chosen[id] = Reranker.choose(candidates[i], cosines: cosines[i], weight: weight).words(vocabulary)
      }
      let ciderD = CaptionMetrics.score(candidates: chosen, references: references).ciderD
      scores.append((weight, ciderD))
    }
    var best = 0
    for i in scores.indices where scores[i].ciderD > scores[best].ciderD { best = i }
    return RerankCalibration(weight: scores[best].weight, scores: scores, images: imageIds.count)
  }

  /// Decodes `candidateCount` beam candidates for each image vector (`imageVectors` [n, Dv], image
  /// i being `imageIds[i]`), `batchSize` images at a time, and chooses λ on them.
  public static func calibrate<M: StepModel>(
    model: M, retrieval: RetrievalModel, imageVectors: Tensor, imageIds: [Int],
    references: [Int: [[String]]], vocabulary: Vocabulary, maxLength: Int,
    candidateCount: Int = Reranker.calibrationCandidates, batchSize: Int = 32
  ) -> RerankCalibration {
    let dv = imageVectors.shape[1]
    let reranker = Reranker(retrieval: retrieval)
    let options = DecodingOptions(maxLength: maxLength, beamSize: candidateCount)
    var candidates: [[DecodedCaption]] = []
    var cosines: [[Double]] = []
    for start in stride(from: 0, to: imageIds.count, by: batchSize) {
      let count = min(batchSize, imageIds.count - start)
      let batch = Tensor(
        shape: [count, dv], values: Array(imageVectors.buffer[start * dv..<(start + count) * dv]))
      let decoded = CaptionDecoder.beamCandidates(model: model, imageVectors: batch, options: options)
      candidates += decoded
      cosines += reranker.cosines(imageVectors: batch, candidates: decoded)
    }
    return choose(
      candidates: candidates, cosines: cosines, imageIds: imageIds, references: references,
      vocabulary: vocabulary)
  }
}

extension RerankCalibration {
  /// Chooses λ for `captioner`'s model (which must have the retrieval part) on dataset images with
  /// their references: the images are loaded and encoded `batchSize` at a time (unreadable ones
  /// skipped and counted), then `calibrate` runs on their vectors. Nil when no image could be read.
  public static func calibrate(
    captioner: Captioner, images: [DatasetImage], maxLength: Int = 20,
    candidateCount: Int = Reranker.calibrationCandidates, batchSize: Int = 32,
    progress: ((_ done: Int, _ total: Int) -> Void)? = nil
  ) -> (calibration: RerankCalibration?, skipped: Int) {
    guard let retrieval = captioner.model.retrieval else { preconditionFailure("no retrieval part") }
    var vectors: [Float] = []  // [n, Dv] row by row
    var ids: [Int] = []
    var references: [Int: [[String]]] = [:]
    var skipped = 0
    for start in stride(from: 0, to: images.count, by: batchSize) {
      var loaded: [RGBImage] = []
      for image in images[start..<min(start + batchSize, images.count)] {
        guard let pixels = try? captioner.load(path: image.path) else {
          skipped += 1
          continue
        }
        loaded.append(pixels)
        ids.append(image.id)
        references[image.id] = image.captions.map { PTBTokenizer.tokenize($0) }
      }
      if !loaded.isEmpty { vectors += captioner.encode(loaded).array }
      progress?(min(start + batchSize, images.count), images.count)
    }
    guard !ids.isEmpty else { return (nil, skipped) }
    let calibration = calibrate(
      model: captioner.model, retrieval: retrieval,
      imageVectors: Tensor(shape: [ids.count, vectors.count / ids.count], values: vectors), imageIds: ids,
      references: references, vocabulary: captioner.vocabulary, maxLength: maxLength,
      candidateCount: candidateCount, batchSize: batchSize)
    return (calibration, skipped)
  }

  /// Puts λ into `file`'s config as `retrieval.rerank_weight`, nothing else changed.
  public func store(in file: inout ModelFile) {
    precondition(file.config.retrieval != nil, "a model without the retrieval part has no λ")
    file.config.retrieval?.rerankWeight = Float(weight)
  }
}
