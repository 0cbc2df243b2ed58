import Foundation

extension CaptionDecoder {
  /// Samples each token from softmax(logits / T) over the allowed tokens (with `topK` > 0, over the
  /// k most likely of them), T = `temperature`. Image i draws from its own seeded stream, so a
  /// caption depends only on (seed, streamOffset + i, the model), not on the other images of the
  /// batch (`imageStreams[i]` replaces streamOffset + i when given).
  /// The reported log-probability is still that of the plain softmax (T = 1, no top-k).
  /// A temperature ≤ 0 (or not finite) is taken as its limit T → 0: the greedy choice.
  public static func sample<M: StepModel>(
    model: M, imageVectors: Tensor, options: DecodingOptions
  ) -> [DecodedCaption] {
    let imageCount = imageVectors.shape.first ?? 0
    let temperature = options.temperature
    guard temperature > 0 && temperature.isFinite else {
      return greedy(model: model, imageVectors: imageVectors, options: options)
    }
    var streams = (0..<imageCount).map {
      let stream = options.imageStreams?[$0] ?? options.streamOffset &+ $0
      return SamplingStream(seed: options.seed, stream: UInt64(bitPattern: Int64(stream)))
    }
    var pool: [Int] = []  // the tokens drawn from, at one row
    var weights: [Double] = []  // their unnormalised probabilities exp((logit − max) / T)
    let V = model.vocabularySize
    pool.reserveCapacity(V)
    weights.reserveCapacity(V)
    let inverseT = 1 / temperature

    return chooseEachStep(model: model, imageVectors: imageVectors, options: options) {
      row, count, image in
      if options.topK > 0 && options.topK < count {
        TokenChoice.selectTop(row, count: count, k: options.topK, into: &pool)
      } else {
        pool.removeAll(keepingCapacity: true)
        for j in 0..<count where row[j] > -.infinity { pool.append(j) }
        if pool.isEmpty { return Vocabulary.end }
      }
      var maximum = -Float.infinity
      for j in pool where row[j] > maximum { maximum = row[j] }
      guard maximum.isFinite else { return TokenChoice.argmax(row, count: count) }
      weights.removeAll(keepingCapacity: true)
      var total = 0.0
      for j in pool {
        let w = exp(Double(row[j] - maximum) * inverseT)  // ≤ 1; the maximum gives 1
        weights.append(w)
        total += w
      }
      // inverse CDF: the first token whose cumulative weight exceeds u · total
      let threshold = streams[image].nextUniform() * total
      var cumulative = 0.0
      for (index, w) in weights.enumerated() {
        cumulative += w
        if threshold < cumulative { return pool[index] }
      }
      return pool[weights.lastIndex { $0 > 0 } ?? 0]  // rounding at the very top of the range
    }
  }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a small, fast, seedable generator; one stream per image.
struct SamplingStream {
  private var state: UInt64

  init(seed: UInt64, stream: UInt64) {
    // distinct starting points for distinct (seed, stream) pairs
    state = seed ^ (stream &* 0xD1B5_4A32_D192_ED03) ^ 0x5851_F42D_4C95_7F2D
  }

  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// Uniform in [0, 1) with 53 random bits.
  mutating func nextUniform() -> Double {
    Double(next() >> 11) * 0x1p-53
  }
}
