// A matrix product for few rows against a weight matrix in PyTorch's [out, in] layout: what one
// decoder step does (greedy: 1 row; beam search: K rows). Dispatched like the kernels of
// CKernels.h (ck_isa / ck_set_isa choose the instruction set).
#ifndef CK_SMALL_GEMM_H
#define CK_SMALL_GEMM_H

/// c[i][j] = beta · c[i][j] + bias[j] + Σ_p a[i][p] · b[j][p]   for i < m, n_begin ≤ j < n_end:
/// C [m, n] = beta C + 1 biasᵀ + A [m, k] · Bᵀ with B [n, k] row-major (leading dimensions lda,
/// ldb, ldc). `bias` may be NULL (no term); beta = 0 does not read C. Each row of B is read from
/// memory once for all m rows: up to ~4 rows the cost is that of streaming B, beyond it that of the
/// m · n · k multiply-adds (still ahead of OpenBLAS's sgemm up to ~64 rows, see small_gemm.c).
/// Threads may share one product by taking disjoint column ranges n_begin … n_end − 1.
void ck_small_gemm(int m, int n_begin, int n_end, int k, const float *a, int lda, const float *b,
                   int ldb, const float *bias, float beta, float *c, int ldc);

/// The same product over all columns, shared out between up to `threads` threads (the caller and
/// ForkJoin.h's pool threads) in ranges of whole 4-column blocks.
void ck_small_gemm_threads(int threads, int m, int n, int k, const float *a, int lda, const float *b,
                           int ldb, const float *bias, float beta, float *c, int ldc);

#endif
