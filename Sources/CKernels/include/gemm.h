// Single-precision matrix products with a packed right operand, vectorised; see gemm.c.
#ifndef CK_GEMM_H
#define CK_GEMM_H

#include <stddef.h>

/// Floats of op(B) [k, n] packed by ck_gemm_pack: k · 16 per panel of 16 columns, ⌈n / 16⌉ panels.
size_t ck_gemm_packed_size(int k, int n);

/// Packs the column panels panel_begin … panel_end − 1 of op(B) [k, n]:
///   packed[q · 16k + p · 16 + jj] = op(B)[p, 16q + jj]  (0 past column n − 1),
/// where op(B) = b [k, n] (row stride ldb), or with trans_b op(B) = bᵀ for b [n, k].
void ck_gemm_pack(const float *b, int ldb, int trans_b, int k, int n, int panel_begin,
                  int panel_end, float *packed);

/// c [m, n] (row stride ldc) = op(A) · op(B), or += when accumulate, for the columns of the
/// panels panel_begin … panel_end − 1 only (threads take disjoint ranges; an even panel_begin
/// keeps the AVX-512 kernel's pairs of panels). op(A) [m, k] = a [m, k] (row stride lda), or with
/// trans_a aᵀ for a [k, m]; op(B) packed by ck_gemm_pack. Each element sums its k products in
/// the same order whatever the panel range.
void ck_gemm_packed(int m, int n, int k, const float *a, int lda, int trans_a,
                    const float *packed, float *c, int ldc, int accumulate, int panel_begin,
                    int panel_end);

#endif
