/// The captioner as its own image–sentence ranker (SPEC §2 `evaluate --retrieval --ranker
/// generative`): the score of image n and caption m is the caption's log-probability given the
/// image per step, teacher-forced,
///
///     score(n, m) = (1/(L+1)) · Σ_{t ≤ L} log softmax(logits_t)[w_t],   w_{L} = <end>
///
/// (L words, then `<end>`; the same figure as `describe`'s `logprob / steps` for that caption).
public enum GenerativeRanker {
  /// The scores of every caption of `captions` (word ids) under every image vector of `imageVectors`
  /// ([N, Dv]), as an [N, M] row-major array: each image runs all the captions as one batch of rows.
  /// `pairs(n)` limits image n to the captions it is compared with (the others stay −∞).
  public static func scores<M: StepModel>(
    model: M, imageVectors: Tensor, captions: [[Int]], pairs: (Int) -> Range<Int>
  ) -> [Float] {
    let (imageCount, dv) = (imageVectors.shape[0], imageVectors.shape[1])
    let captionCount = captions.count
    let V = model.vocabularySize
    var result = [Float](repeating: -.infinity, count: imageCount * captionCount)
    for n in 0..<imageCount {
      let range = pairs(n)
      let rows = range.count
      guard rows > 0 else { continue }
      // image n's vector once per caption
      let repeated = Tensor(zeros: [rows, dv])
      for r in 0..<rows { (repeated.pointer + r * dv).update(from: imageVectors.pointer + n * dv, count: dv) }
      var state = model.initialState(imageVectors: repeated)
      let logits = Tensor(zeros: [rows, V])
      let lengths = range.map { captions[$0].count }
      let steps = (lengths.max() ?? 0) + 1  // the words, then <end>
      var sums = [Double](repeating: 0, count: rows)
      var feed = [Int](repeating: Vocabulary.start, count: rows)
      for t in 0..<steps {
        model.step(tokens: feed, state: &state, logits: logits)
        for (r, m) in range.enumerated() where t <= lengths[r] {
          let row = logits.pointer + r * V
          let target = t < lengths[r] ? captions[m][t] : Vocabulary.end
          sums[r] += Double(row[target]) - TokenChoice.logSumExp(row, count: V)
        }
        for (r, m) in range.enumerated() { feed[r] = t < lengths[r] ? captions[m][t] : Vocabulary.pad }
      }
      for (r, m) in range.enumerated() {
        result[n * captionCount + m] = Float(sums[r] / Double(lengths[r] + 1))
      }
    }
    return result
  }
}
