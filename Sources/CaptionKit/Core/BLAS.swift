import FoundationEssentials
import Glibc

/// Everything matrix-shaped goes through `gemm` (row-major, OpenBLAS) or `linear` (SmallGemm.swift:
/// products by a weight matrix, few rows in CKernels, many in OpenBLAS).
///
/// OpenBLAS is loaded on the first product that needs it, not when the program starts: loading it
/// maps three libraries, and its initialisation allocates its buffers and starts a thread that the
/// process must then wait for at exit, several milliseconds of a short command. With AVX-512 the
/// project's kernels take every product of `describe`, which then never loads it.
public enum BLAS {
  /// The compute threads: `setThreads`, else OpenBLAS's own default (OPENBLAS_NUM_THREADS,
  /// GOTO_NUM_THREADS or OMP_NUM_THREADS, at most the processors available; all of them without).
  public static var threads: Int {
    lock.lock()
    defer { lock.unlock() }
    return chosenThreads ?? defaultThreads
  }

  /// The number of threads OpenBLAS and the project's kernels use from now on.
  public static func setThreads(_ count: Int) {
    lock.lock()
    chosenThreads = max(1, count)
    let loaded = isLoaded
    lock.unlock()
    if loaded { openBLAS.setThreads(Int32(max(1, count))) }
  }

  /// C[m×n] = alpha · op(A) · op(B) + beta · C, where op(A) is m×k and op(B) is k×n.
  /// `lda`, `ldb`, `ldc` are the row strides of A, B, C as stored.
  @inline(__always)
  public static func gemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    openBLAS.sgemm(
      rowMajor, transA ? trans : noTrans, transB ? trans : noTrans, Int32(m), Int32(n), Int32(k),
      alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
  }

  // MARK: loading

  // The CBLAS constants (cblas.h) and the two entry points used, as OpenBLAS's LP64 build declares
  // them (blasint is a 32-bit int).
  private static let rowMajor: Int32 = 101
  private static let noTrans: Int32 = 111
  private static let trans: Int32 = 112
  private typealias Sgemm =
    @convention(c) (
      Int32, Int32, Int32, Int32, Int32, Int32, Float, UnsafePointer<Float>?, Int32,
      UnsafePointer<Float>?, Int32, Float, UnsafeMutablePointer<Float>?, Int32
    ) -> Void
  private typealias SetThreads = @convention(c) (Int32) -> Void

  private struct Library {
    let sgemm: Sgemm
    let setThreads: SetThreads
  }

  private static let lock = Lock()  // guards the two below
  nonisolated(unsafe) private static var isLoaded = false
  nonisolated(unsafe) private static var chosenThreads: Int?

  /// OpenBLAS, loaded and set to `threads` on first use (a static `let` is initialised once, on
  /// first access, whichever thread gets there).
  private static let openBLAS: Library = {
    let library = load()
    lock.lock()
    isLoaded = true
    let count = chosenThreads ?? defaultThreads
    lock.unlock()
    library.setThreads(Int32(count))
    return library
  }()

  /// A missing library is a broken installation: one line and exit status 1, as for a bad file.
  private static func load() -> Library {
    let name = "libopenblas.so.0"
    guard let handle = dlopen(name, RTLD_NOW | RTLD_LOCAL),
      let sgemm = dlsym(handle, "cblas_sgemm"),
      let setThreads = dlsym(handle, "openblas_set_num_threads")
    else {
      let reason = dlerror().map { String(cString: $0) } ?? "not found"
      StandardError.write("caption: cannot load OpenBLAS (\(name)): \(reason); install libopenblas0\n")
      exit(1)
    }
    return Library(
      sgemm: unsafeBitCast(sgemm, to: Sgemm.self), setThreads: unsafeBitCast(setThreads, to: SetThreads.self))
  }

  /// OpenBLAS's rule for its default thread count, so that the count is known without loading it.
  private static let defaultThreads: Int = {
    let processors = max(1, ProcessInfo.processInfo.activeProcessorCount)
    let environment = ProcessInfo.processInfo.environment
    for name in ["OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"] {
      if let value = environment[name].flatMap({ Int($0.trimmingWhitespace()) }), value > 0 {
        return min(value, processors)
      }
    }
    return processors
  }()
}
