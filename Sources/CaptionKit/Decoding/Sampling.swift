import FoundationEssentials
import Glibc

extension CaptionDecoder {
  /// Samples each token from softmax(logits / T) over the allowed tokens (with `topK` > 0, over the
  /// k most likely of them), T = `temperature`. Image i draws from its own seeded stream, so a
  /// caption depends only on (seed, streamOffset + i, the model), not on the other images of the
  /// batch (`imageStreams[i]` replaces streamOffset + i when given).
  /// The reported log-probability is still that of the plain softmax (T = 1, no top-k).
  public static func sample<M: StepModel>(
    model: M, imageVectors: Tensor, options: DecodingOptions
  ) -> [DecodedCaption] {
    options.require()
    let imageCount = imageVectors.shape.first ?? 0
    // Image i's stream starts at seed ⊕ (s·0xD1B5…) ⊕ 0x5851…, s = streamOffset + i: distinct starting
    // points for distinct (seed, stream) pairs.
    var streams = (0..<imageCount).map {
      let stream = UInt64(bitPattern: Int64(options.imageStreams?[$0] ?? options.streamOffset &+ $0))
      return SeededGenerator(seed: options.seed ^ (stream &* 0xD1B5_4A32_D192_ED03) ^ 0x5851_F42D_4C95_7F2D)
    }
    var pool: [Int] = []  // the tokens drawn from, at one row
    var weights: [Double] = []  // their unnormalised probabilities exp((logit − max) / T)
    let V = model.vocabularySize
    pool.reserveCapacity(V)
    weights.reserveCapacity(V)
    let inverseT = 1 / options.temperature

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
      let threshold = streams[image].nextUnitDouble() * total
      var cumulative = 0.0
      for (index, w) in weights.enumerated() {
        cumulative += w
        if threshold < cumulative { return pool[index] }
      }
      return pool[weights.lastIndex { $0 > 0 } ?? 0]  // rounding at the very top of the range
    }
  }
}
