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
