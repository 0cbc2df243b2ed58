import FoundationEssentials
import Glibc

/// Independent sigmoids with binary cross-entropy (multi-label), summed over columns with a weight
/// per column and averaged over rows:
///
/// loss = (1/N) Σ_i Σ_j w_j · [ max(z_ij, 0) − z_ij·y_ij + log(1 + exp(−|z_ij|)) ]
///        (the bracket = −y log σ(z) − (1 − y) log(1 − σ(z)), in a form that never overflows),
/// dL/dz_ij = w_j · (σ(z_ij) − y_ij) / N.
///
/// With w_j = 1/C for every column this is the plain mean; a weight 0 leaves a column out, and
/// 1/|group| per column gives each group of columns the weight of one mean. A row mask leaves rows
/// out: N is then the number of rows it keeps (their loss and gradient only).
public final class SigmoidBinaryCrossEntropy {
  private var logitsGrad: Tensor?  // [N, C]
  private var probabilities: Tensor?  // σ(logits) [N, C]
  private var targets: Tensor?  // [N, C], each 0 or 1
  private var columnWeights: [Float] = []  // [C]
  private var rowMask: [Bool]? = nil  // [N]: true for the rows kept (nil: every row)
  /// The rows the last forward kept.
  public private(set) var keptRows = 0
  /// What `backward` divides by in place of `keptRows` (nil: that), as `SoftmaxCrossEntropy`'s.
  public var normaliser: Int?

  public init() {}

  /// The loss of `logits` [N, C] against `targets` [N, C] (values in [0, 1]) with `columnWeights`
  /// [C] (nil: 1/C each, the mean over all entries), over the rows `rowMask` [N] keeps (nil: all).
  public func forward(logits: Tensor, targets: Tensor, columnWeights: [Float]? = nil, rowMask: [Bool]? = nil)
    -> Float
  {
    precondition(
      logits.shape.count == 2 && logits.shape == targets.shape,
      "SigmoidBinaryCrossEntropy: logits \(logits.shape), targets \(targets.shape)")
    let (rows, columns) = (logits.shape[0], logits.shape[1])
    let weights = columnWeights ?? [Float](repeating: 1 / Float(columns), count: columns)
    precondition(
      weights.count == columns, "SigmoidBinaryCrossEntropy: \(weights.count) weights, \(columns) columns")
    let probabilities = reuseWorkspace(&self.probabilities, shape: logits.shape)
    precondition(rowMask == nil || rowMask!.count == rows, "SigmoidBinaryCrossEntropy: row mask size")
    self.targets = targets
    self.columnWeights = weights
    self.rowMask = rowMask
    keptRows = rowMask.map { mask in mask.filter { $0 }.count } ?? rows
    var total = 0.0
    for r in 0..<rows where rowMask?[r] ?? true {
      let z = logits.pointer + r * columns
      let y = targets.pointer + r * columns
      let p = probabilities.pointer + r * columns
      for j in 0..<columns {
        let e = expf(-abs(z[j]))  // in (0, 1]
        p[j] = z[j] >= 0 ? 1 / (1 + e) : e / (1 + e)
        if weights[j] != 0 { total += Double(weights[j] * (max(z[j], 0) - z[j] * y[j] + log1pf(e))) }
      }
    }
    return Float(total / Double(max(keptRows, 1)))
  }

  /// dL/dlogits [N, C] for the last forward's loss.
  public func backward() -> Tensor {
    guard let probabilities, let targets else {
      preconditionFailure("SigmoidBinaryCrossEntropy.backward before forward")
    }
    let (rows, columns) = (probabilities.shape[0], probabilities.shape[1])
    let grad = reuseWorkspace(&self.logitsGrad, shape: probabilities.shape)
    let inverseRows = 1 / Float(max(normaliser ?? keptRows, 1))
    for r in 0..<rows {
      let p = probabilities.pointer + r * columns
      let y = targets.pointer + r * columns
      let g = grad.pointer + r * columns
      let kept: Float = rowMask?[r] ?? true ? 1 : 0
      for j in 0..<columns { g[j] = kept * columnWeights[j] * (p[j] - y[j]) * inverseRows }
    }
    return grad
  }
}
