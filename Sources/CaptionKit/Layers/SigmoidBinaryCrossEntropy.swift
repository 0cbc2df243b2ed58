import Foundation

/// Independent sigmoids with binary cross-entropy (multi-label), averaged over the counted entries:
/// every row, and the columns from `firstColumn` on (the columns before it are left out).
///
/// loss = (1/M) Σ_{i, j ≥ first} [ max(z_ij, 0) − z_ij·y_ij + log(1 + exp(−|z_ij|)) ]
///        (= −y log σ(z) − (1 − y) log(1 − σ(z)), in a form that never overflows),
/// dL/dz_ij = (σ(z_ij) − y_ij) / M for counted entries, 0 for the others.  M = N · (C − first).
public final class SigmoidBinaryCrossEntropy {
  private var logitsGrad: Tensor?  // [N, C]
  private var probabilities: Tensor?  // σ(logits) [N, C]
  private var targets: Tensor?  // [N, C], each 0 or 1
  private var firstColumn = 0

  public init() {}

  /// The mean loss of `logits` [N, C] against `targets` [N, C] (values in [0, 1]).
  public func forward(logits: Tensor, targets: Tensor, firstColumn: Int = 0) -> Float {
    precondition(
      logits.shape.count == 2 && logits.shape == targets.shape,
      "SigmoidBinaryCrossEntropy: logits \(logits.shape), targets \(targets.shape)")
    let (rows, columns) = (logits.shape[0], logits.shape[1])
    precondition(firstColumn >= 0 && firstColumn < columns)
    let probabilities = reuseWorkspace(&self.probabilities, shape: logits.shape)
    self.targets = targets
    self.firstColumn = firstColumn
    var total = 0.0
    for r in 0..<rows {
      let z = logits.pointer + r * columns
      let y = targets.pointer + r * columns
      let p = probabilities.pointer + r * columns
      for j in 0..<columns {
        let e = expf(-abs(z[j]))  // in (0, 1]
        p[j] = z[j] >= 0 ? 1 / (1 + e) : e / (1 + e)
        if j >= firstColumn { total += Double(max(z[j], 0) - z[j] * y[j] + log1pf(e)) }
      }
    }
    return Float(total / Double(rows * (columns - firstColumn)))
  }

  /// dL/dlogits [N, C] for the last forward's mean loss.
  public func backward() -> Tensor {
    guard let probabilities, let targets else {
      preconditionFailure("SigmoidBinaryCrossEntropy.backward before forward")
    }
    let (rows, columns) = (probabilities.shape[0], probabilities.shape[1])
    let grad = reuseWorkspace(&self.logitsGrad, shape: probabilities.shape)
    let scale = 1 / Float(rows * (columns - firstColumn))
    for r in 0..<rows {
      let p = probabilities.pointer + r * columns
      let y = targets.pointer + r * columns
      let g = grad.pointer + r * columns
      for j in 0..<columns { g[j] = j < firstColumn ? 0 : (p[j] - y[j]) * scale }
    }
    return grad
  }
}
