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

  /// target = Σ_k source[k·length ..< (k + 1)·length] for k < slices (each element summed in order
  /// of k), split by element over the threads when large.
  public static func sumSlices(
    _ source: UnsafePointer<Float>, slices: Int, length: Int, into target: UnsafeMutablePointer<Float>
  ) {
    guard slices > 0 else {
      target.update(repeating: 0, count: length)
      return
    }
    let (source, target) = (UncheckedSendable(source), UncheckedSendable(target))
    // a thread's share should be worth the dispatch (~10 µs): 2¹⁸ additions take ~50 µs
    let parts = slices * length >= 1 << 18 ? Parallel.workers : 1
    Parallel.ranges(length, parts: parts) { _, range in
      let (s, t) = (source.value + range.lowerBound, target.value + range.lowerBound)
      t.update(from: s, count: range.count)
      for k in 1..<slices { add(s + k * length, into: t, count: range.count) }
    }
  }

  /// Σ x², accumulated in Double (for norms of large tensors).
  public static func sumOfSquares(_ x: UnsafePointer<Float>, count: Int) -> Double {
    blockedSum(x, count: count) { $0 * $0 }
  }

  /// Σ x, accumulated in Double.
  public static func sum(_ x: UnsafePointer<Float>, count: Int) -> Double {
    blockedSum(x, count: count) { $0 }
  }

  /// The mean of x (count > 0), summed in vectors and in Double (`sum`).
  public static func mean(_ x: UnsafePointer<Float>, count: Int) -> Float {
    Float(sum(x, count: count) / Double(count))
  }

  /// Σ f(x): 8 Float lanes over blocks of 4096 elements (so the loop vectorises), blocks summed in
  /// Double.
  @inline(__always)
  static func blockedSum(
    _ x: UnsafePointer<Float>, count: Int, _ f: (SIMD8<Float>) -> SIMD8<Float>
  ) -> Double {
    let raw = UnsafeRawPointer(x)
    var total = 0.0
    var start = 0
    while start + 8 <= count {
      let end = min(start + 4096, count - count % 8)
      var lanes = SIMD8<Float>()
      var i = start
      while i < end {
        lanes += f(raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self))
        i += 8
      }
      total += Double(lanes.sum())
      start = end
    }
    for i in start..<count { total += Double(f(SIMD8(repeating: x[i]))[0]) }
    return total
  }

  /// target = mask > 0 ? source : 0 (the backward of a ReLU whose output is `mask`).
  @inline(__always)
  public static func copyWherePositive(
    _ source: UnsafePointer<Float>, mask: UnsafePointer<Float>, into target: UnsafeMutablePointer<Float>,
    count: Int
  ) {
    let (s, m, t) = (UnsafeRawPointer(source), UnsafeRawPointer(mask), UnsafeMutableRawPointer(target))
    var i = 0
    while i + 8 <= count {
      let values = s.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
      let activations = m.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
      t.storeBytes(
        of: values.replacing(with: 0, where: activations .<= 0), toByteOffset: 4 * i, as: SIMD8<Float>.self)
      i += 8
    }
    while i < count {
      target[i] = mask[i] > 0 ? source[i] : 0
      i += 1
    }
  }

  /// target = max(source + b, 0) (bias then ReLU), or source + b when `relu` is false. May be in place.
  @inline(__always)
  public static func addBias(
    _ source: UnsafePointer<Float>, _ b: Float, relu: Bool, into target: UnsafeMutablePointer<Float>,
    count: Int
  ) {
    let (s, t) = (UnsafeRawPointer(source), UnsafeMutableRawPointer(target))
    let bias = SIMD8<Float>(repeating: b)
    let zero = SIMD8<Float>()
    var i = 0
    while i + 8 <= count {
      var value = s.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self) + bias
      if relu { value = value.replacing(with: zero, where: value .< zero) }
      t.storeBytes(of: value, toByteOffset: 4 * i, as: SIMD8<Float>.self)
      i += 8
    }
    while i < count {
      target[i] = relu ? max(source[i] + b, 0) : source[i] + b
      i += 1
    }
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
