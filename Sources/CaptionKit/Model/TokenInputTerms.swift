/// The decoder's first-layer input terms of the tokens fed so far, for a model whose weights no
/// longer change (`CaptionModel.fixWeights`): token w's term is what the first recurrent layer adds
/// for input embed[w], its biases plus embed[w] · W_ihᵀ ([G·H], `RecurrentLayer.inputTerms`).
///
/// A decoder step feeds one token per row, and a token's term never changes, so each is computed
/// the first time its token is fed and then read back: a greedy step reads one row of G·H floats
/// instead of streaming all of W_ih (2 MB of the 8.3 MB a step streams at the bench's sizes).
/// At most `maximumBytes` of terms are kept; tokens beyond that take the product at every step.
final class TokenInputTerms {
  /// The most memory the kept terms take (8 MB for the bench's 1 000 tokens × 2 048 gates).
  static let maximumBytes = 64 << 20

  let width: Int  // G·H
  let capacity: Int  // the most tokens kept
  private var row: [Int32]  // per token: its row in `terms`, or −1
  private let terms: Tensor  // [capacity, width]: pages touched only as rows are filled
  private var used = 0
  // The embeddings [M, E] and terms [M, width] of a step's tokens not yet kept; they grow to the
  // most such tokens a step has had, and are not reallocated below that.
  private var missingInputs = Tensor(zeros: [0])
  private var missingTerms = Tensor(zeros: [0])

  init(vocabularySize: Int, width: Int, maximumBytes: Int = TokenInputTerms.maximumBytes) {
    self.width = width
    capacity = min(vocabularySize, maximumBytes / (4 * max(width, 1)))
    row = [Int32](repeating: -1, count: vocabularySize)
    terms = Tensor(zeros: [capacity, width])
  }

  /// The number of tokens whose terms are kept.
  var keptTokens: Int { used }

  /// Writes token `tokens[r]`'s term to row r of `output` [R, width]: kept ones are copied, the
  /// others computed together (one product for all of them, each token once) and kept while
  /// there is room.
  func fill(tokens: [Int], embedding: Tensor, layer: RecurrentLayer, into output: Tensor) {
    let e = embedding.shape[1]
    var missing: [Int] = []  // distinct tokens without a kept term, in order of first use
    for token in tokens where row[token] < 0 && !missing.contains(token) { missing.append(token) }
    if !missing.isEmpty {
      let m = missing.count
      if missingInputs.count < m * e {
        missingInputs = Tensor(zeros: [m * e])
        missingTerms = Tensor(zeros: [m * width])
      }
      for (i, token) in missing.enumerated() {
        (missingInputs.pointer + i * e).update(from: embedding.pointer + token * e, count: e)
      }
      layer.inputTerms(rows: m, input: missingInputs.pointer, into: missingTerms.pointer)
      for (i, token) in missing.enumerated() where used < capacity {
        (terms.pointer + used * width).update(from: missingTerms.pointer + i * width, count: width)
        row[token] = Int32(used)
        used += 1
      }
    }
    for (r, token) in tokens.enumerated() {
      let target = output.pointer + r * width
      if row[token] >= 0 {
        target.update(from: terms.pointer + Int(row[token]) * width, count: width)
      } else {
        target.update(from: missingTerms.pointer + missing.firstIndex(of: token)! * width, count: width)
      }
    }
  }
}
