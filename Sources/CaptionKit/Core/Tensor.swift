import FoundationEssentials
import Glibc

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
  /// Where the elements live, and what the tensor gives back when it goes.
  private enum Memory {
    /// Another tensor's, kept alive by this view.
    case view(of: Tensor)
    /// What `calloc` returned (`pointer` is it rounded up to `alignment`).
    case heap(UnsafeMutableRawPointer)
    /// A mapping of its own (`largeBytes` or more): its start and length, for `munmap`.
    case mapping(start: UnsafeMutableRawPointer, length: Int)
  }
  private let memory: Memory

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
    let bytes = count * MemoryLayout<Float>.stride
    if bytes >= Tensor.largeBytes, let mapping = Tensor.mapLarge(bytes: bytes) {
      self.pointer = mapping.start.bindMemory(to: Float.self, capacity: count)
      self.memory = .mapping(start: mapping.start, length: mapping.length)
      return
    }
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
    self.memory = .heap(memory)
  }

  /// Tensors of at least this many bytes get a mapping of their own, whole 2 MB pages on 2 MB
  /// boundaries, which the kernel is asked to back with 2 MB pages where it can. A first write to
  /// a 4 KB page costs a page fault: 2.6 µs each on the AVX2 Zen 3 (0.66 ms a MB, more than the
  /// copy that caused it), where a 2 MB page costs one fault and its zeroing (0.04 ms a MB on
  /// pages the machine has used before). A one-image `caption describe` first writes 17 MB (the
  /// model's tensors, the weight transforms, the layers' working memory): 28 → 18 ms for the whole
  /// process there. The pages are still taken only when first written, so a tensor never touched
  /// (a gradient in inference) costs nothing; rounding up to whole 2 MB pages costs memory where a
  /// tensor is written through (`caption bench`'s training, peak 226 → 248 MB), and mapping the
  /// exact length instead, which leaves 4 KB pages past the last 2 MB boundary and for tensors of
  /// 1–2 MB, gave back most of the gain (describe 19 → 22 ms).
  static let largeBytes = 1 << 20
  static let hugePageBytes = 2 << 20

  /// A fresh zeroed mapping of at least `bytes`, starting on a 2 MB boundary and advised to use
  /// 2 MB pages; nil if the system refuses it (the caller falls back to calloc).
  private static func mapLarge(bytes: Int) -> (start: UnsafeMutableRawPointer, length: Int)? {
    let length = (bytes + hugePageBytes - 1) / hugePageBytes * hugePageBytes
    // Map one huge page more than needed, then unmap what lies before the first boundary and
    // after the tensor's pages.
    let mapped = length + hugePageBytes
    guard let raw = mmap(nil, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
      raw != UnsafeMutableRawPointer(bitPattern: -1)
    else { return nil }
    let address = Int(bitPattern: raw)
    let head = (hugePageBytes - address % hugePageBytes) % hugePageBytes
    if head > 0 { munmap(raw, head) }
    let tail = mapped - head - length
    if tail > 0 { munmap(raw + head + length, tail) }
    let start = raw + head
    _ = madvise(start, length, MADV_HUGEPAGE)  // advice only: 4 KB pages if refused
    return (start, length)
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
    self.memory = .view(of: base)
  }

  deinit {
    switch memory {
    case .view: break
    case .heap(let allocation): free(allocation)
    case .mapping(let start, let length): munmap(start, length)
    }
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
  public var allFinite: Bool { Tensor.allFinite(UnsafePointer(pointer), count: count) }

  /// No NaN and no infinity among `count` floats from `values`.
  public static func allFinite(_ values: UnsafePointer<Float>, count: Int) -> Bool {
    // A value is NaN or infinite when its exponent bits are all ones. Adding one to the lowest
    // exponent bit of the masked exponent carries into the sign bit for that exponent only, so the
    // OR of those sums over a chunk has its sign bit set exactly when the chunk holds such a
    // value: an AND, an add and an OR a vector, even at SSE2. The chunk's largest masked exponent
    // needs an unsigned 32-bit max, which SSE2 lacks: 0.7 ms for a model's 6.5 MB at the baseline
    // instruction set, against 0.16–0.5 ms this way; testing each value and stopping at the first
    // bad one took 1.7 ms.
    let exponentBits: UInt32 = 0x7f80_0000
    let lowestExponentBit: UInt32 = 0x0080_0000
    let chunk = 16_384  // values (64 KB) scanned between the checks for a bad one
    var start = 0
    while start < count {
      let end = min(start + chunk, count)
      var carries: UInt32 = 0
      for i in start..<end { carries |= (values[i].bitPattern & exponentBits) &+ lowestExponentBit }
      if carries & 0x8000_0000 != 0 { return false }
      start = end
    }
    return true
  }

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

/// One zeroed storage handed out in consecutive views, each starting on a 64-byte boundary: many
/// tensors kept together for good, at the cost of one allocation.
final class TensorArena {
  private let storage: Tensor
  private var used = 0

  init(count: Int) { storage = Tensor(zeros: [max(count, 1)]) }

  /// A view of `shape`'s elements, nil when the storage has no room left for it.
  func nextView(shape: [Int]) -> Tensor? {
    let count = shape.reduce(1, *)
    let alignedFloats = Tensor.alignment / MemoryLayout<Float>.stride
    guard used + count <= storage.count else { return nil }
    let view = storage.view(offset: used, shape: shape)
    used += (count + alignedFloats - 1) / alignedFloats * alignedFloats
    return view
  }
}
