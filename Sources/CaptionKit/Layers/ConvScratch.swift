/// Working memory that the convolutions of one encoder share, since they run one after another:
/// the kernels' per-thread scratch, the per-thread partial sums of the weight gradients and
/// im2col's columns. Each region grows to the largest request and is handed out as a view of the
/// shape asked for; its contents do not outlive the call that asked. (Each layer keeps its own
/// Winograd transform U, from its forward to its backward: Conv2DWinograd.swift.)
///
/// Layers owning these buffers each kept one copy per layer, with the transforms of the weights:
/// VGG-16 at 224 px, batch 8, training peaked at 2.21 GB that way against 1.60 GB shared.
public final class ConvScratch {
  public enum Slot: Int, CaseIterable {
    /// CKernels' per-thread scratch of the blocked Winograd or direct kernels.
    case kernel
    /// Per-thread partial sums of the weight gradient (dU, or direct dW) and of the bias gradient.
    case weightPartials, biasPartials
    /// im2col's columns [K, G·HW] and one chunk's output or gradient [Cout, G·HW].
    case columns, chunk
  }

  private var regions: [Tensor?] = Array(repeating: nil, count: Slot.allCases.count)

  public init() {}

  /// A view of `shape` into `slot`'s region, which grows (its old contents dropped) when too small.
  public func buffer(_ slot: Slot, shape: [Int]) -> Tensor {
    let count = shape.reduce(1, *)
    if let base = regions[slot.rawValue], base.count >= count {
      return base.view(shape: shape)
    }
    let base = Tensor(zeros: [count])
    regions[slot.rawValue] = base
    return base.view(shape: shape)
  }
}
