/// The bidirectional hinge ranking loss of the joint space (Karpathy & Fei-Fei 2015; VSE++ for the
/// hardest negative), over one batch of B images u [B, D] and R = B·K sentences s [R, D], sentence r
/// describing image r / K. With scores S[b, r] = u_b · s_r and margin m, for each of the R matching
/// pairs (b, r):
///
///     image → text:  c(r')  = max(0, m − S[b, r] + S[b, r'])    over sentences r' of other images
///     text → image:  c'(b') = max(0, m − S[b, r] + S[b', r])    over other images b'
///
/// `sum`: loss = (1/R) Σ_pairs (Σ_r' c(r') + Σ_b' c'(b'));  `hardest`: the same with each sum replaced
/// by its maximum (the hardest negative only). The hardest-negative form collapses when switched on
/// from the start, so training begins with `sum` (SPEC §8, `--retrieval-hard-after`).
public final class RankingLoss {
  public enum Negatives: String, Sendable { case sum, hardest }

  public let margin: Float
  private var images = Tensor(zeros: [0])  // [B, D] (a copy of the forward's input)
  private var sentences = Tensor(zeros: [0])  // [R, D]
  private var scores = Tensor(zeros: [0])  // [B, R]
  private var scoreGrad = Tensor(zeros: [0])  // [B, R]
  private var imageGrad = Tensor(zeros: [0])  // [B, D]
  private var sentenceGrad = Tensor(zeros: [0])  // [R, D]
  private let packed = PackedMatrix()  // the right operand of the product being computed

  public init(margin: Float) { self.margin = margin }

  /// The loss of unit vectors `images` [B, D] and `sentences` [B·K, D]; keeps what `backward` needs.
  public func forward(images u: Tensor, sentences s: Tensor, negatives: Negatives) -> Float {
    let (B, D, R) = (u.shape[0], u.shape[1], s.shape[0])
    precondition(R % B == 0 && s.shape[1] == D, "RankingLoss: \(u.shape) images, \(s.shape) sentences")
    let K = R / B
    if images.shape != [B, D] || sentences.shape != [R, D] {
      images = Tensor(zeros: [B, D])
      sentences = Tensor(zeros: [R, D])
      scores = Tensor(zeros: [B, R])
      scoreGrad = Tensor(zeros: [B, R])
      imageGrad = Tensor(zeros: [B, D])
      sentenceGrad = Tensor(zeros: [R, D])
    }
    images.copy(from: u)
    sentences.copy(from: s)
    // S = u sᵀ [B, R]
    Gemm.multiply(
      transA: false, transB: true, m: B, n: R, k: D, a: u.pointer, lda: D, b: s.pointer, ldb: D,
      accumulate: false, c: scores.pointer, ldc: R, workspace: packed)
    var total = 0.0
    scoreGrad.fill(0)
    for r in 0..<R {
      let b = r / K
      // image → text: the other images' sentences, in image b's row of S
      total += hinges(
        pair: b * R + r, negatives: (0..<R).lazy.filter { $0 / K != b }.map { b * R + $0 }, negatives)
      // text → image: the other images, in sentence r's column of S
      total += hinges(
        pair: b * R + r, negatives: (0..<B).lazy.filter { $0 != b }.map { $0 * R + r }, negatives)
    }
    return Float(total / Double(R))
  }

  /// The hinges of one matching pair (an index into S) against its negatives (indices into S): their
  /// sum, or the hardest alone; adds their gradient, 1/R per hinge, into dS.
  private func hinges(pair: Int, negatives: some Sequence<Int>, _ mode: Negatives) -> Double {
    let (S, dS) = (scores.pointer, scoreGrad.pointer)
    let share = 1 / Float(scores.shape[1])
    var total = 0.0
    var hardest = (cost: Float(0), index: -1)
    for negative in negatives {
      let cost = margin - S[pair] + S[negative]
      guard cost > 0 else { continue }
      if mode == .sum {
        total += Double(cost)
        dS[negative] += share
        dS[pair] -= share
      } else if cost > hardest.cost {
        hardest = (cost, negative)
      }
    }
    if hardest.index >= 0 {
      total += Double(hardest.cost)
      dS[hardest.index] += share
      dS[pair] -= share
    }
    return total
  }

  /// The gradients on the forward's images [B, D] and sentences [R, D] (workspaces).
  public func backward() -> (imageGrad: Tensor, sentenceGrad: Tensor) {
    let (B, D, R) = (images.shape[0], images.shape[1], sentences.shape[0])
    // du = dS s [B, D];  ds = dSᵀ u [R, D]
    Gemm.multiply(
      transA: false, transB: false, m: B, n: D, k: R, a: scoreGrad.pointer, lda: R, b: sentences.pointer,
      ldb: D, accumulate: false, c: imageGrad.pointer, ldc: D, workspace: packed)
    Gemm.multiply(
      transA: true, transB: false, m: R, n: D, k: B, a: scoreGrad.pointer, lda: R, b: images.pointer, ldb: D,
      accumulate: false, c: sentenceGrad.pointer, ldc: D, workspace: packed)
    return (imageGrad, sentenceGrad)
  }
}
