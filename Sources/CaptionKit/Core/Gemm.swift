import CKernels

/// op(B) [k, n] packed into column panels for CKernels' product (ck_gemm_pack), with the source it
/// came from (for the OpenBLAS fallback). A layer keeps one for a weight it multiplies at every
/// time step, and one as the workspace of its other products; the storage grows, never shrinks.
public final class PackedMatrix {
  private var storage = Tensor(zeros: [0])
  /// The packed floats (valid after `pack` when `Gemm.usesKernels`).
  var pointer: UnsafePointer<Float> { UnsafePointer(storage.pointer) }
  private(set) var source: UnsafePointer<Float>?
  private(set) var ldb = 0
  private(set) var transB = false
  private(set) var k = 0
  private(set) var n = 0
  /// Whether `pack` has packed all of op(B) for the kernel (not when it ran without AVX-512).
  private(set) var isPacked = false

  public init() {}

  /// Column panels of 16.
  var panels: Int { (n + 15) / 16 }

  /// Sets the shape and source and makes room; packs nothing (see `pack`).
  func reserve(b: UnsafePointer<Float>, ldb: Int, transB: Bool, k: Int, n: Int) {
    (source, self.ldb, self.transB, self.k, self.n) = (b, ldb, transB, k, n)
    isPacked = false
    let size = ck_gemm_packed_size(Int32(k), Int32(n))
    if storage.count < size { storage = Tensor(zeros: [size]) }
  }

  /// Packs panels `range` of op(B) (b [k, n], or bᵀ for b [n, k] with transB).
  func pack(panels range: Range<Int>) {
    ck_gemm_pack(
      source, Int32(ldb), transB ? 1 : 0, Int32(k), Int32(n), Int32(range.lowerBound),
      Int32(range.upperBound), storage.pointer)
  }

  /// Packs all of op(B), the panels split over the threads. `b` must stay unchanged while the
  /// packed matrix is in use (the fallback reads it).
  public func pack(b: UnsafePointer<Float>, ldb: Int, transB: Bool, k: Int, n: Int) {
    reserve(b: b, ldb: ldb, transB: transB, k: k, n: n)
    guard Gemm.usesKernels else { return }
    Gemm.splitPanels(self.panels, work: k * n * 16) { pack(panels: $0) }
    isPacked = true
  }
}

/// The training step's matrix products, C [m, n] = op(A) · op(B) (+ C), row-major.
///
/// With AVX-512 they run on CKernels' packed kernel (gemm.c): op(B) packed into panels of 16
/// columns, the threads taking disjoint ranges of panels (each packing its own, then multiplying),
/// so no element's sum depends on the thread count. OpenBLAS's Haswell kernels, which
/// OPENBLAS_CORETYPE=Haswell selects on the project's machines, run these shapes at about half the
/// speed (single thread: ~125 against ~250 GFLOP/s at the bench's LSTM and output-layer shapes). The
/// AVX2 and baseline variants are slower than OpenBLAS's there, so without AVX-512 (and for fewer
/// than 8 rows, where a GEMV or OpenBLAS's small-matrix path does better) OpenBLAS takes the product,
/// unless it is small (`smallProductWork`).
public enum Gemm {
  /// Whether products run on CKernels' kernel (the instruction set in use is AVX-512).
  static var usesKernels: Bool { ck_isa() == Int32(CK_ISA_AVX512) }

  /// Products below this many multiply-adds run on one thread (a dispatch costs ~10 µs).
  static let threadingWork = 1 << 19

  /// Products of at most this many multiply-adds take the kernel at every instruction set: OpenBLAS
  /// would save microseconds on them, and loading it costs a process milliseconds. `describe` of
  /// one image then never loads it (its first convolution's product, 4 096 × 16 × 27 at 64 px, is
  /// its only one of 8 rows or more).
  static let smallProductWork = 1 << 21

  /// Whether a product of m rows, n columns and depth k runs on the kernel (else on OpenBLAS).
  static func takesKernel(m: Int, n: Int, k: Int) -> Bool {
    m >= 8 && k > 0 && (usesKernels || m * n * k <= smallProductWork)
  }

  /// Splits `panels` column panels into ranges with even bounds (the AVX-512 tile covers two) over
  /// the threads, when `work` multiply-adds are worth it.
  static func splitPanels(_ panels: Int, work: Int, _ body: (Range<Int>) -> Void) {
    let pairs = (panels + 1) / 2
    let parts = work >= threadingWork ? min(Parallel.workers, pairs) : 1
    Parallel.ranges(pairs, parts: parts) { _, range in
      body(2 * range.lowerBound..<min(2 * range.upperBound, panels))
    }
  }

  /// C [m, n] (row stride ldc) = op(A) · op(B), or += when `accumulate`. op(A) [m, k] is a [m, k]
  /// (row stride lda) or aᵀ for a [k, m] with transA; likewise op(B) [k, n]. `workspace` holds
  /// the packed op(B).
  public static func multiply(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int, accumulate: Bool, c: UnsafeMutablePointer<Float>, ldc: Int,
    workspace: PackedMatrix
  ) {
    workspace.reserve(b: b, ldb: ldb, transB: transB, k: k, n: n)
    multiply(
      transA: transA, m: m, a: a, lda: lda, packed: workspace, packFirst: true, accumulate: accumulate, c: c,
      ldc: ldc)
  }

  /// The same with op(B) packed already (`PackedMatrix.pack`).
  public static func multiply(
    transA: Bool, m: Int, a: UnsafePointer<Float>, lda: Int, packed: PackedMatrix, accumulate: Bool,
    c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    multiply(
      transA: transA, m: m, a: a, lda: lda, packed: packed, packFirst: false, accumulate: accumulate, c: c,
      ldc: ldc)
  }

  private static func multiply(
    transA: Bool, m: Int, a: UnsafePointer<Float>, lda: Int, packed: PackedMatrix, packFirst: Bool,
    accumulate: Bool, c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    let (k, n) = (packed.k, packed.n)
    guard m > 0 && n > 0 else { return }
    guard takesKernel(m: m, n: n, k: k) && (packFirst || packed.isPacked) else {
      BLAS.gemm(
        transA: transA, transB: packed.transB, m: m, n: n, k: k, a: a, lda: lda, b: packed.source!,
        ldb: packed.ldb, beta: accumulate ? 1 : 0, c: c, ldc: ldc)
      return
    }
    let (a, c) = (UncheckedSendable(a), UncheckedSendable(c))
    splitPanels(packed.panels, work: m * n * k) { range in
      if packFirst { packed.pack(panels: range) }
      ck_gemm_packed(
        Int32(m), Int32(n), Int32(k), a.value, Int32(lda), transA ? 1 : 0, packed.pointer, c.value,
        Int32(ldc), accumulate ? 1 : 0, Int32(range.lowerBound), Int32(range.upperBound))
    }
  }
}
