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
  /// How many regions each slot has had (for tests: a reserved pass allocates once).
  private(set) var allocations = Array(repeating: 0, count: Slot.allCases.count)

  public init() {}

  /// Grows `slot`'s region to `count` floats at once when smaller: a pass that knows its largest
  /// request (an encoder's inference) so takes one region, not one more per larger layer.
  public func reserve(_ slot: Slot, count: Int) {
    if count > capacity(slot) { allocate(slot, count: count) }
  }

  /// The floats `slot`'s region holds now.
  func capacity(_ slot: Slot) -> Int { regions[slot.rawValue]?.count ?? 0 }

  /// A view of `shape` into `slot`'s region, which grows (its old contents dropped) when too small.
  public func buffer(_ slot: Slot, shape: [Int]) -> Tensor {
    let count = shape.reduce(1, *)
    if count > capacity(slot) { allocate(slot, count: count) }
    return regions[slot.rawValue]!.view(shape: shape)
  }

  private func allocate(_ slot: Slot, count: Int) {
    regions[slot.rawValue] = nil  // the old region goes first
    regions[slot.rawValue] = Tensor(zeros: [count])
    allocations[slot.rawValue] += 1
  }
}
