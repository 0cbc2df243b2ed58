import Foundation

/// A dense, row-major `Float` tensor over one contiguous allocation.
///
/// A class, so that kernels can hold its pointer while writing and workspaces are reused without
/// copy-on-write surprises. A tensor either owns its memory or is a view into another tensor's
/// (`view(offset:shape:)`), which it keeps alive.
public final class Tensor {
  /// The sizes of the dimensions, outermost first.
  public let shape: [Int]
  /// The number of elements, the product of `shape`.
  public let count: Int
  /// The first element. Stable for the tensor's life.
  public let pointer: UnsafeMutablePointer<Float>
  private let base: Tensor?
  /// What `calloc` returned, for an owning tensor (`pointer` is it rounded up to 64 bytes).
  private let allocation: UnsafeMutableRawPointer?

  /// The alignment of an owning tensor's first element: a cache line, one AVX-512 vector. calloc
  /// alone gives 16 bytes (its large blocks start 16 bytes into a page), so that every vector
  /// load of the kernels straddled two cache lines: stand-alone on the Zen 4, F(4×4) layers ran
  /// 13–25% slower forward and 8–16% backward that way.
  static let alignment = 64

  /// A tensor of zeros.
  public init(zeros shape: [Int]) {
    precondition(shape.allSatisfy { $0 >= 0 }, "Tensor: negative dimension in \(shape)")
    self.shape = shape
    self.count = shape.reduce(1, *)
    // calloc: a large block comes zeroed from the kernel and its pages are only touched when
    // first written, so a model's parameters (replaced when a file is loaded) and gradients
    // (untouched by inference) cost no page faults until they are used. One vector more than
    // asked for leaves room to round the start up to `alignment`.
    let extra = Tensor.alignment / MemoryLayout<Float>.stride
    guard let memory = calloc(max(count, 1) + extra, MemoryLayout<Float>.stride) else {
      fatalError("Tensor: out of memory allocating \(count) floats for shape \(shape)")
    }
    let address = Int(bitPattern: memory)
    let aligned = (address + Tensor.alignment - 1) / Tensor.alignment * Tensor.alignment
    self.pointer = (memory + (aligned - address)).bindMemory(to: Float.self, capacity: max(count, 1))
    self.allocation = memory
    self.base = nil
  }

  /// A tensor holding `values` (their count must match the shape).
  public convenience init(shape: [Int], values: [Float]) {
    self.init(zeros: shape)
    precondition(values.count == count, "Tensor: \(values.count) values for shape \(shape)")
    values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: count) }
  }

  private init(viewOf base: Tensor, offset: Int, shape: [Int]) {
    self.shape = shape
    self.count = shape.reduce(1, *)
    precondition(offset >= 0 && offset + count <= base.count, "Tensor view out of range")
    self.pointer = base.pointer + offset
    self.base = base
    self.allocation = nil
  }

  deinit {
    free(allocation)  // nil for a view
  }

  /// A view of `count(shape)` elements starting at `offset`; writes go to this tensor.
  public func view(offset: Int = 0, shape: [Int]) -> Tensor {
    Tensor(viewOf: self, offset: offset, shape: shape)
  }

  public var buffer: UnsafeMutableBufferPointer<Float> {
    UnsafeMutableBufferPointer(start: pointer, count: count)
  }

  /// A copy of the elements as an array (for tests and file output; not for hot loops).
  public var array: [Float] { Array(buffer) }

  /// No NaN and no infinity among the values.
  public var allFinite: Bool { buffer.allSatisfy { $0.isFinite } }

  public subscript(index: Int) -> Float {
    get { pointer[index] }
    set { pointer[index] = newValue }
  }

  public func fill(_ value: Float) {
    pointer.update(repeating: value, count: count)
  }

  public func copy(from other: Tensor) {
    precondition(other.count == count, "Tensor.copy: \(other.shape) into \(shape)")
    pointer.update(from: other.pointer, count: count)
  }

  /// A new tensor with the same shape and elements.
  public func clone() -> Tensor {
    let result = Tensor(zeros: shape)
    result.copy(from: self)
    return result
  }
}

/// A trainable tensor: its value, its gradient (same shape), and its name under SPEC §3
/// relative to the layer that owns it (`weight`, `bias`, `weight_ih`, ...).
public final class Parameter {
  public var name: String
  /// The weights. Replaced (not copied into) when a model file is loaded: layers must read
  /// `parameter.value` at each use and never keep the tensor itself.
  public var value: Tensor
  public let grad: Tensor

  public init(name: String, shape: [Int]) {
    self.name = name
    self.value = Tensor(zeros: shape)
    self.grad = Tensor(zeros: shape)
  }

  public var shape: [Int] { value.shape }
}
