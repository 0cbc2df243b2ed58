import CKernels
import FoundationEssentials
import Glibc

/// Softmax followed by the cross-entropy loss, averaged over the rows whose target is not
/// `ignoreIndex` (SPEC §3: mean over the non-pad target tokens of the batch).
///
/// loss = (1/M) Σ_{i: t_i ≠ ignore} −log softmax(z_i)[t_i],  M = number of counted rows;
/// dL/dz_i = (softmax(z_i) − onehot(t_i)) / M for counted rows, 0 for ignored ones.
public final class SoftmaxCrossEntropy {
  /// softmax(logits) [N, V], kept for backward (and readable by callers).
  public private(set) var probabilities: Tensor?
  private var logitsGrad: Tensor?  // [N, V]
  private var targets: [Int] = []
  private var ignoreIndex = 0
  private var rowMaxima: [Float] = []  // [N] max_j z_ij of the last forward
  private var rowSums: [Float] = []  // [N] Σ_j e^(z_ij − max)
  /// The number of rows counted in the last forward (targets ≠ ignoreIndex).
  public private(set) var countedTargets = 0
  /// What `backward` divides by in place of `countedTargets` (nil: that): a data-parallel run sets
  /// the count over every rank's share of the batch, so that the ranks' gradients sum to the whole
  /// batch's.
  public var normaliser: Int?

  public init() {}

  /// The mean loss over counted rows (0 when none is counted). Targets must lie in 0..<V.
  public func forward(logits: Tensor, targets: [Int], ignoreIndex: Int = 0) -> Float {
    precondition(
      logits.shape.count == 2 && logits.shape[0] == targets.count,
      "SoftmaxCrossEntropy: logits \(logits.shape) for \(targets.count) targets")
    let (rows, classes) = (logits.shape[0], logits.shape[1])
    let probabilities = reuseWorkspace(&self.probabilities, shape: logits.shape)
    self.targets.removeAll(keepingCapacity: true)
    self.targets.append(contentsOf: targets)
    self.ignoreIndex = ignoreIndex
    if rowMaxima.count != rows {
      rowMaxima = [Float](repeating: 0, count: rows)
      rowSums = rowMaxima
    }
    // Stable softmax (vectorised C, rows split over the threads): p = e^(z − max) / Σ e^(z − max).
    rowMaxima.withUnsafeMutableBufferPointer { maxima in
      rowSums.withUnsafeMutableBufferPointer { sums in
        let (maxima, sums) = (UncheckedSendable(maxima.baseAddress!), UncheckedSendable(sums.baseAddress!))
        Parallel.forRanges(rows, minimumPerPart: 64) { range in
          ck_softmax_rows(
            logits.pointer + range.lowerBound * classes, probabilities.pointer + range.lowerBound * classes,
            Int32(range.count), Int32(classes), maxima.value + range.lowerBound, sums.value + range.lowerBound
          )
        }
      }
    }
    var total = 0.0
    var counted = 0
    for r in 0..<rows {
      let target = targets[r]
      if target == ignoreIndex { continue }
      precondition(
        target >= 0 && target < classes, "SoftmaxCrossEntropy: target \(target) outside 0..<\(classes)")
      // −log p_t = log Σ exp(z − max) − (z_t − max), exact even when p_t underflows.
      total += Double(logf(rowSums[r]) - (logits[r * classes + target] - rowMaxima[r]))
      counted += 1
    }
    countedTargets = counted
    return counted == 0 ? 0 : Float(total / Double(counted))
  }

  /// dL/dlogits [N, V] for the last forward's mean loss.
  public func backward() -> Tensor {
    guard let probabilities = probabilities else {
      preconditionFailure("SoftmaxCrossEntropy.backward before forward")
    }
    let (rows, classes) = (probabilities.shape[0], probabilities.shape[1])
    let grad = reuseWorkspace(&self.logitsGrad, shape: probabilities.shape)
    let divisor = normaliser ?? countedTargets
    let scale: Float = divisor == 0 ? 0 : 1 / Float(divisor)
    for r in 0..<rows {
      let g = grad.pointer + r * classes
      let target = targets[r]
      if target == ignoreIndex {
        g.update(repeating: 0, count: classes)
        continue
      }
      let p = probabilities.pointer + r * classes
      for j in 0..<classes { g[j] = p[j] * scale }
      g[target] -= scale
    }
    return grad
  }
}
