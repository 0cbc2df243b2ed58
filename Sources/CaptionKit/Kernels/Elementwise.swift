/// Elementwise kernels over contiguous `Float` buffers: plain loops the compiler vectorises.
public enum Elementwise {
  /// y += x
  @inline(__always)
  public static func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<count { y[i] += x[i] }
  }

  /// y += alpha · x
  @inline(__always)
  public static func axpy(
    _ alpha: Float, _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int
  ) {
    for i in 0..<count { y[i] += alpha * x[i] }
  }

  /// x *= alpha
  @inline(__always)
  public static func scale(_ x: UnsafeMutablePointer<Float>, by alpha: Float, count: Int) {
    for i in 0..<count { x[i] *= alpha }
  }

  /// Σ x², accumulated in Double (for norms of large tensors).
  public static func sumOfSquares(_ x: UnsafePointer<Float>, count: Int) -> Double {
    // Float partial sums over blocks keep the loop vectorised; blocks are summed in Double.
    var total = 0.0
    var start = 0
    while start < count {
      let end = min(start + 4096, count)
      var partial: Float = 0
      for i in start..<end { partial += x[i] * x[i] }
      total += Double(partial)
      start = end
    }
    return total
  }

  /// Σ x, accumulated in Double.
  public static func sum(_ x: UnsafePointer<Float>, count: Int) -> Double {
    var total = 0.0
    var start = 0
    while start < count {
      let end = min(start + 4096, count)
      var partial: Float = 0
      for i in start..<end { partial += x[i] }
      total += Double(partial)
      start = end
    }
    return total
  }
}

extension Tensor {
  /// self += other (same element count).
  public func add(_ other: Tensor) {
    precondition(other.count == count, "Tensor.add: \(other.shape) into \(shape)")
    Elementwise.add(other.pointer, into: pointer, count: count)
  }

  /// self *= alpha
  public func scale(by alpha: Float) {
    Elementwise.scale(pointer, by: alpha, count: count)
  }

  /// The same memory seen with another shape of the same element count (a view; no copy).
  public func reshaped(_ newShape: [Int]) -> Tensor {
    precondition(newShape.reduce(1, *) == count, "Tensor.reshaped: \(shape) to \(newShape)")
    return view(offset: 0, shape: newShape)
  }
}

/// Returns `existing` when it already has `shape`, else a new zero tensor of that shape: the way
/// every layer keeps its output and gradient workspaces alive while the batch shape is unchanged.
@inline(__always)
public func reuseWorkspace(_ existing: inout Tensor?, shape: [Int]) -> Tensor {
  if let tensor = existing, tensor.shape == shape { return tensor }
  let tensor = Tensor(zeros: shape)
  existing = tensor
  return tensor
}
