/// One decoded caption (SPEC §2 `describe --json`, §3 decoding).
public struct DecodedCaption: Equatable, Sendable {
  /// The emitted word ids, without `<start>` and `<end>`.
  public var tokens: [Int]
  /// The sum of the natural-log probabilities of the emitted tokens under the model's plain softmax
  /// (temperature 1, no top-k, no banned tokens removed), `<end>` included when it was emitted.
  public var logprob: Double
  /// False when the caption was cut at `maxLength` steps (then `logprob` has no `<end>` term).
  public var endedWithEnd: Bool
  /// Set when reranking chose it (SPEC §3b): its cosine with the image and its score.
  public var rerank: RerankScore? = nil

  public init(tokens: [Int], logprob: Double, endedWithEnd: Bool) {
    self.tokens = tokens
    self.logprob = logprob
    self.endedWithEnd = endedWithEnd
  }

  /// The number of decoder steps that produced it: the words plus `<end>` when emitted.
  public var steps: Int { tokens.count + (endedWithEnd ? 1 : 0) }

  /// The words of `tokens` under `vocabulary`.
  public func words(_ vocabulary: Vocabulary) -> [String] {
    tokens.map(vocabulary.word)
  }
}

/// A reranked caption's figures (SPEC §3b): `score = logprob / steps + λ · cosine`.
public struct RerankScore: Equatable, Sendable {
  /// The cosine of the caption's sentence vector and the image's vector in the joint space.
  public var cosine: Double
  public var score: Double

  public init(cosine: Double, score: Double) {
    self.cosine = cosine
    self.score = score
  }
}

/// How to decode: greedy (`beamSize` ≤ 1), beam search, or sampling.
///
/// Beam search ranks finished captions by `logprob / steps^α` (α = `lengthPenaltyAlpha`, steps = words
/// plus `<end>`). The default α = 0 ranks by plain log-probability, as Show-and-Tell and neuraltalk2 do:
/// with beams of 3–5 and captions of ~10 words the short-caption bias is small, the figure ranked is
/// the figure reported, beam 1 is exactly greedy, and stopping early is exact. α = 0.7 (GNMT's choice)
/// or 1 (mean log-probability) favour longer captions.
public struct DecodingOptions: Equatable, Sendable {
  /// At most this many decoder steps, `<end>` included (SPEC §3).
  public var maxLength: Int
  /// Never emit `<unk>` (its probability still counts in the softmax).
  public var forbidUnk: Bool
  /// Never emit a word that would repeat a trigram already in the caption.
  public var blockRepeatedTrigrams: Bool
  /// Hypotheses kept per image; 1 is greedy.
  public var beamSize: Int
  /// α of the length normalisation `logprob / steps^α` used to rank finished beams (≥ 0).
  public var lengthPenaltyAlpha: Double
  /// Sample each token instead of searching.
  public var sample: Bool
  /// Sampling temperature: probabilities ∝ exp(logit / T).
  public var temperature: Double
  /// Sample among the k most likely allowed tokens only; 0 means all.
  public var topK: Int
  /// The sampling seed; image i of a batch draws from its own stream derived from
  /// (seed, streamOffset + i).
  public var seed: UInt64
  /// The stream of the batch's first image: a caller cutting a long list into batches passes each
  /// batch's position in the list, so that captions do not depend on the batch size.
  public var streamOffset: Int
  /// When set (one entry per image), image i draws from stream `imageStreams[i]` instead of
  /// `streamOffset + i`: images of several requests decoded together keep the streams they would
  /// have alone.
  public var imageStreams: [Int]? = nil
  /// Rerank this many beam candidates by `logprob / steps + rerankWeight · cosine` (SPEC §3b); 0:
  /// off. Needs `beamSize == rerank`, no sampling, and a model with a retrieval part.
  public var rerank: Int = 0
  /// λ of reranking; nil takes the model's calibrated `retrieval.rerank_weight`.
  public var rerankWeight: Double? = nil

  public init(
    maxLength: Int = 20, forbidUnk: Bool = false, blockRepeatedTrigrams: Bool = false,
    beamSize: Int = 3, lengthPenaltyAlpha: Double = 0, sample: Bool = false,
    temperature: Double = 1, topK: Int = 0, seed: UInt64 = 0, streamOffset: Int = 0
  ) {
    self.maxLength = maxLength
    self.forbidUnk = forbidUnk
    self.blockRepeatedTrigrams = blockRepeatedTrigrams
    self.beamSize = beamSize
    self.lengthPenaltyAlpha = lengthPenaltyAlpha
    self.sample = sample
    self.temperature = temperature
    self.topK = topK
    self.seed = seed
    self.streamOffset = streamOffset
  }

  /// The widest beam accepted (the logits alone take B·K·V floats).
  public static let maximumBeamSize = 100
  /// The longest caption asked for, in decoder steps.
  public static let maximumLength = 100

  /// Throws `invalidArgument` naming the first option out of range (by its `describe` flag). The
  /// command line checks this when it parses; the decoders trap on options that do not pass.
  public func validate() throws {
    func bad(_ option: String, _ reason: String) -> CaptionError {
      CaptionError(.invalidArgument, path: option, reason)
    }
    guard maxLength >= 1 && maxLength <= DecodingOptions.maximumLength else {
      throw bad("--max-length", "must be from 1 to \(DecodingOptions.maximumLength), got \(maxLength)")
    }
    guard beamSize >= 1 && beamSize <= DecodingOptions.maximumBeamSize else {
      throw bad("--beam", "must be from 1 to \(DecodingOptions.maximumBeamSize), got \(beamSize)")
    }
    guard lengthPenaltyAlpha.isFinite, lengthPenaltyAlpha >= 0 else {
      throw bad("--length-penalty", "must be a number ≥ 0, got \(lengthPenaltyAlpha)")
    }
    guard temperature.isFinite, temperature > 0 else {
      throw bad("--temperature", "must be a number > 0, got \(temperature)")
    }
    guard topK >= 0 else { throw bad("--top-k", "must be 0 (all) or more, got \(topK)") }
    guard rerank >= 0 && rerank <= DecodingOptions.maximumBeamSize else {
      throw bad("--rerank", "must be from 1 to \(DecodingOptions.maximumBeamSize), got \(rerank)")
    }
    if rerank > 0 {
      guard !sample else { throw bad("--rerank", "reranks beam candidates and cannot be used with --sample") }
      guard beamSize == rerank else {
        throw bad("--rerank", "\(rerank) decodes with beam \(rerank), not --beam \(beamSize)")
      }
    }
    if let rerankWeight, !(rerankWeight.isFinite && rerankWeight >= 0) {
      throw bad("--rerank-weight", "must be a number ≥ 0, got \(rerankWeight)")
    }
  }

  /// Traps unless `validate()` passes: a caller passing options no flag lets through is a mistake.
  func require() {
    do { try validate() } catch { preconditionFailure("DecodingOptions: \(error)") }
  }
}
