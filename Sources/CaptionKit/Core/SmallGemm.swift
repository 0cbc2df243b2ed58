import CKernels

/// Products of a few rows by a weight matrix in PyTorch's layout W [n, k] (`nn.Linear`, the
/// recurrent weights): what one decoder step does for 1 (greedy) to K (beam) hypotheses per image.
///
///     c [m, n] = beta · c + bias + a [m, k] · Wᵀ
///
/// CKernels' `ck_small_gemm` reads each row of W once for all m rows; with few rows the step is
/// bound by streaming the weights (8.3 MB a step in the bench decoder), which OpenBLAS 0.3.21's
/// sgemm does at a fraction of the speed (it packs W first, whatever m is). The columns are shared
/// out between the compute threads (`Parallel.threads`) through CKernels' fork-join pool, whose
/// threads spin between the products of a step (a GCD hand-off costs about as much as a product).
public enum SmallGemm {
  /// The most rows `BLAS.linear` and `Linear` give the small-row kernel. Measured with AVX-512 on
  /// 2048 × 512 weights, 2 threads: 0.28× the time of `Gemm` (which packs W at every call) at 8
  /// rows, 0.6× at 16, even at 32, 1.07× at 48, and `Gemm` ahead for the encoder's 32 × 4096 input;
  /// against OpenBLAS's sgemm, 0.3–0.6× from 8 to 48 rows.
  public static let maxRows = 16

  /// Multiply-adds (m·n·k) below which one thread does the whole product (about 5 µs of work).
  static let minimumParallelWork = 1 << 17

  /// c [m, n] = beta · c + bias + a [m, k] · wᵀ for w [n, k] (row strides lda, ldw, ldc) with
  /// `ck_small_gemm`, any m (fast for few rows), the columns shared out over the compute threads
  /// when the product is large enough. `bias` [n] may be nil; beta = 0 does not read c.
  public static func multiply(
    m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, weight: UnsafePointer<Float>, ldw: Int,
    bias: UnsafePointer<Float>? = nil, beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    guard m > 0 && n > 0 else { return }
    let threads = m * n * k < minimumParallelWork ? 1 : Parallel.threads
    ck_small_gemm_threads(
      Int32(threads), Int32(m), Int32(n), Int32(k), a, Int32(lda), weight, Int32(ldw), bias, beta, c,
      Int32(ldc))
  }
}

extension BLAS {
  /// y [m, n] = beta · y + bias + x [m, k] · Wᵀ for weights W [n, k] (PyTorch's [out, in]; row
  /// strides ldx, ldw, ldy): `SmallGemm` up to `SmallGemm.maxRows` rows (decoder steps), OpenBLAS's
  /// sgemm beyond (beam search over many images). `bias` [n] may be nil; beta = 0 does not read y.
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
