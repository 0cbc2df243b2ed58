import Foundation

/// The per-row arithmetic shared by the decoders, on one row of logits `[V]` in place.
///
/// Order of use for each row: `logSumExp` on the full logits (so reported log-probabilities are
/// those of the plain softmax), then `banTokens` (sets banned logits to −∞, skipping them in the
/// choice without renormalising), then a choice (`argmax`, `selectTop`). The chosen token is never
/// banned, so its logit is intact and its log-probability is `logit − logSumExp`.
enum TokenChoice {
  /// log Σ_j exp(logit_j), stable: max + log Σ exp(logit_j − max), accumulated in Double.
  static func logSumExp(_ row: UnsafeMutablePointer<Float>, count: Int) -> Double {
    var maximum = -Float.infinity
    for j in 0..<count where row[j] > maximum { maximum = row[j] }
    guard maximum.isFinite else { return Double(maximum) }
    var sum = 0.0
    for j in 0..<count { sum += Double(expf(row[j] - maximum)) }
    return Double(maximum) + log(sum)
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
