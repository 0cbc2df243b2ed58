import FoundationEssentials
import Glibc

/// The per-row arithmetic shared by the decoders, on one row of logits `[V]` in place.
///
/// Order of use for each row: `logSumExp` on the full logits (so reported log-probabilities are
/// those of the plain softmax), then `banTokens` (sets banned logits to −∞, skipping them in the
/// choice without renormalising), then a choice (`argmax`, `selectTop`). The chosen token is never
/// banned, so its logit is intact and its log-probability is `logit − logSumExp`.
enum TokenChoice {
  /// log Σ_j exp(logit_j), stable: max + log Σ exp(logit_j − max), the sum over 8 Float lanes
  /// (each term in (0, 1], one of them 1: relative error ~1e-7), then in Double.
  static func logSumExp(_ row: UnsafeMutablePointer<Float>, count: Int) -> Double {
    var maximum = -Float.infinity
    for j in 0..<count where row[j] > maximum { maximum = row[j] }
    guard maximum.isFinite else { return Double(maximum) }
    var lanes = SIMD8<Float>(repeating: 0)
    var j = 0
    while j + 8 <= count {
      let x = UnsafeRawPointer(row + j).loadUnaligned(as: SIMD8<Float>.self)
      lanes += expOfNonPositive(x - SIMD8(repeating: maximum))
      j += 8
    }
    var sum = Double(lanes.sum())
    while j < count {
      sum += Double(expOfNonPositive(SIMD8(repeating: row[j] - maximum))[0])
      j += 1
    }
    return Double(maximum) + log(sum)
  }

  /// e^x for x ≤ 0, eight at a time, to ~1e-7 relative (Cephes' expf): x = n·ln2 + r with
  /// n = round(x / ln2), |r| ≤ ln2/2; e^r by a degree-6 polynomial; 2^n from exponent bits.
  /// x is clamped to [−87, 0] (e^−87 ≈ 1.6e−38, still normal), which also maps NaN to e^−87.
  @inline(__always)
  static func expOfNonPositive(_ input: SIMD8<Float>) -> SIMD8<Float> {
    let low = SIMD8<Float>(repeating: -87)
    var x = input.replacing(with: low, where: .!(input .> low))  // NaN and < −87 → −87
    x = x.replacing(with: 0, where: x .> 0)
    // n = round(x·log2 e) by the 1.5·2^23 trick: its low mantissa bits then hold n
    let magic = SIMD8<Float>(repeating: 12_582_912)
    let shifted = x * 1.442_695_04 + magic
    let n = shifted - magic
    let r = x - n * 0.693_359_375 + n * 2.121_944_4e-4  // x − n·ln2, ln2 split in two parts
    var p = SIMD8<Float>(repeating: 1.987_569_15e-4)
    p = p * r + 1.398_199_95e-3
    p = p * r + 8.333_451_9e-3
    p = p * r + 4.166_579_59e-2
    p = p * r + 1.666_666_55e-1
    p = p * r + 5.000_000_12e-1
    let expR = p * (r * r) + r + 1
    // 2^n: the exponent field n + 127, n = (bits of shifted) − (bits of magic) in [−126, 0]
    let nBits = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- 0x4B40_0000
    let scale = unsafeBitCast((nBits &+ 127) &<< 23, to: SIMD8<Float>.self)
    return expR * scale
  }

  /// Sets to −∞ the logits of the tokens that may not come next: `<pad>` and `<start>` always,
  /// `<unk>` when `forbidUnk`, and with `blockRepeatedTrigrams` every w such that
  /// (history[n−2], history[n−1], w) already occurs in `history`. `<end>` is never banned.
  static func banTokens(
    _ row: UnsafeMutablePointer<Float>, count: Int, history: [Int], options: DecodingOptions
  ) {
    if Vocabulary.pad < count { row[Vocabulary.pad] = -.infinity }
    if Vocabulary.start < count { row[Vocabulary.start] = -.infinity }
    if options.forbidUnk && Vocabulary.unk < count { row[Vocabulary.unk] = -.infinity }
    let n = history.count
    if options.blockRepeatedTrigrams && n >= 2 {
      let a = history[n - 2]
      let b = history[n - 1]
      // trigram starting at i: (history[i], history[i+1], history[i+2]), for i + 2 < n
      var i = 0
      while i + 2 < n {
        if history[i] == a && history[i + 1] == b {
          let w = history[i + 2]
          if w >= 0 && w < count && w != Vocabulary.end { row[w] = -.infinity }
        }
        i += 1
      }
    }
  }

  /// The index of the largest logit above −∞ (the lowest index on ties); `<end>` when none is.
  static func argmax(_ row: UnsafeMutablePointer<Float>, count: Int) -> Int {
    var best = Vocabulary.end
    var bestValue = -Float.infinity
    for j in 0..<count where row[j] > bestValue {
      best = j
      bestValue = row[j]
    }
    return best
  }

  /// Partial selection: the (at most) `k` largest logits above −∞, largest first (lower index first
  /// on ties), into `indices` (cleared first). O(V + insertions·k), no sort of the row.
  /// When no logit is above −∞, `<end>` alone.
  static func selectTop(
    _ row: UnsafeMutablePointer<Float>, count: Int, k: Int, into indices: inout [Int]
  ) {
    indices.removeAll(keepingCapacity: true)
    guard k > 0 else { return }
    for j in 0..<count {
      let value = row[j]
      guard value > -.infinity else { continue }  // also skips NaN
      if indices.count == k {
        guard value > row[indices[k - 1]] else { continue }
        indices.removeLast()
      }
      // insert after every entry ≥ value (keeps earlier indices first on ties)
      var position = indices.count
      while position > 0 && row[indices[position - 1]] < value { position -= 1 }
      indices.insert(j, at: position)
    }
    if indices.isEmpty { indices.append(Vocabulary.end) }
  }
}
