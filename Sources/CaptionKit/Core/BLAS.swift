import COpenBLAS

/// Everything matrix-shaped goes through `gemm` (row-major, OpenBLAS) or `linear` (SmallGemm.swift:
/// products by a weight matrix, few rows in CKernels, many in OpenBLAS).
public enum BLAS {
  /// C[m×n] = alpha · op(A) · op(B) + beta · C, where op(A) is m×k and op(B) is k×n.
  /// `lda`, `ldb`, `ldc` are the row strides of A, B, C as stored.
  @inline(__always)
  public static func gemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    cblas_sgemm(
      CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
      blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c,
      blasint(ldc))
  }

  /// The number of threads OpenBLAS uses from now on.
  public static func setThreads(_ count: Int) {
    openblas_set_num_threads(Int32(max(1, count)))
  }
}
