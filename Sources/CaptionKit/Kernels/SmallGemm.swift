import CKernels

/// Products of a few rows by a weight matrix in PyTorch's layout W [n, k] (`nn.Linear`, the
/// recurrent weights): what one decoder step does for 1 (greedy) to K (beam) hypotheses.
///
///     c [m, n] = beta · c + bias + a [m, k] · Wᵀ
///
/// Up to `maxRows` rows, CKernels' `ck_small_gemm` reads each row of W once for all m rows (the
/// step is bound by streaming the weights); larger products go to OpenBLAS's sgemm, which packs W
/// first (worth it only when many rows share the packing: training). The columns are shared out
/// over the compute threads when the product is large enough.
public enum SmallGemm {
  /// The most rows that take the small-row kernel. Measured on the bench decoder's weights
  /// (2048×256, 2048×512, 1000×512, one thread, AVX-512): 0.17 ms at 8 rows and 0.34 at 16 against
  /// 0.61 and 0.84 for sgemm; past 16 rows A no longer fits in L1 beside the weight rows.
  public static let maxRows = 16

  /// Multiply-adds (m·n·k) below which one thread does the whole product: handing half to a second
  /// thread costs a few µs.
  static let minimumParallelWork = 1 << 17

  /// c [m, n] = beta · c + bias + a [m, k] · wᵀ for w [n, k] (row strides lda, ldw, ldc) with
  /// `ck_small_gemm`, any m (fast for few rows), columns shared out over the compute threads when
  /// the product is large enough. `bias` [n] may be nil; beta = 0 does not read c.
  public static func multiply(
    m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, weight: UnsafePointer<Float>, ldw: Int,
    bias: UnsafePointer<Float>? = nil, beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    guard m > 0 && n > 0 else { return }
    let parts = m * n * k < minimumParallelWork ? 1 : Parallel.threads
    // Parts of whole 4-column blocks (the kernel's widest tile).
    let blocks = (n + 3) / 4
    Parallel.ranges(blocks, parts: parts) { _, range in
      ck_small_gemm(
        Int32(m), Int32(range.lowerBound * 4), Int32(min(n, range.upperBound * 4)), Int32(k), a,
        Int32(lda), weight, Int32(ldw), bias, beta, c, Int32(ldc))
    }
  }
}

extension BLAS {
  /// y [m, n] = beta · y + bias + x [m, k] · Wᵀ for weights W [n, k] (PyTorch's [out, in]; row
  /// strides ldx, ldw, ldy): `SmallGemm` up to `SmallGemm.maxRows` rows (decoder steps), OpenBLAS's
  /// sgemm beyond (training). `bias` [n] may be nil; beta = 0 does not read y.
  public static func linear(
    m: Int, n: Int, k: Int, x: UnsafePointer<Float>, ldx: Int, weight: UnsafePointer<Float>, ldw: Int,
    bias: UnsafePointer<Float>? = nil, beta: Float = 0, y: UnsafeMutablePointer<Float>, ldy: Int
  ) {
    if m <= SmallGemm.maxRows {
      SmallGemm.multiply(
        m: m, n: n, k: k, a: x, lda: ldx, weight: weight, ldw: ldw, bias: bias, beta: beta, c: y, ldc: ldy)
      return
    }
    var beta = beta
    if let bias {
      // y = beta y + bias, then += x Wᵀ
      for r in 0..<m {
        let row = y + r * ldy
        if beta == 0 {
          row.update(from: bias, count: n)
        } else {
          for j in 0..<n { row[j] = beta * row[j] + bias[j] }
        }
      }
      beta = 1
    }
    gemm(
      transA: false, transB: true, m: m, n: n, k: k, a: x, lda: ldx, b: weight, ldb: ldw, beta: beta, c: y,
      ldc: ldy)
  }
}
