// C [m, n] = beta C + bias + A [m, k] · Bᵀ for few rows m and B [n, k] row-major (SmallGemm.h).
//
// A decoder step multiplies 1 (greedy) to K (beam) rows by weights of several MB, which come from
// L3 or memory. The loop below reads each B row from memory once and forms all m dot products
// with it:
//   for a block of NR rows of B (NR · k floats, small enough to stay in L1):
//     for each group of up to MR rows of A:
//       MR × NR accumulators over k, 16 floats at a time, then a horizontal sum each:
//       c[i][j] = beta c[i][j] + bias[j] + Σ_p a[i][p] b[j][p].
// The first group of a block brings the B rows in; the others (m > MR) read them from L1. Up to
// ~4 rows the time is that of streaming B; beyond, that of the m · n · k multiply-adds. Measured
// on the bench decoder's weights (8.3 MB a step; one thread, AVX-512, Zen 5): 1 row 77 µs, 5 rows
// 115 µs, against 90 µs for OpenBLAS 0.3.21's sgemv (one row) and 690 µs for its sgemm at 5 rows
// (it packs B whatever m is); 0.66 ms against 1.27 ms for sgemm at 32 rows.
//
// Vectors are 16 floats (vector16.h): one register with AVX-512, two with AVX2 + FMA, four SSE
// registers in the baseline build; MR and NR per instruction set keep the accumulators in
// registers. The last step over k loads zero-padded partial vectors.

#include "ForkJoin.h"
#include "SmallGemm.h"

#include "vector16.h"

/// The largest MR and NR of any instantiation (sizes of the accumulator arrays).
#define MAX_MR 6
#define MAX_NR 8

/// The tile of C at rows a … a + MR − 1 and columns b … b + NR − 1 (pointers already offset).
INLINE void tile(const int MR, const int NR, int k, const float *a, int lda, const float *b,
                 int ldb, const float *bias, float beta, float *c, int ldc) {
  v16 acc[MAX_MR][MAX_NR];
#pragma clang loop unroll(full)
  for (int i = 0; i < MR; i++)
#pragma clang loop unroll(full)
    for (int j = 0; j < NR; j++) acc[i][j] = zero();
  int p = 0;
  for (; p + 16 <= k; p += 16) {
    v16 w[MAX_NR];
#pragma clang loop unroll(full)
    for (int j = 0; j < NR; j++) w[j] = load(b + (size_t)j * ldb + p);
#pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++) {
      v16 x = load(a + (size_t)i * lda + p);
#pragma clang loop unroll(full)
      for (int j = 0; j < NR; j++) acc[i][j] += x * w[j];
    }
  }
  if (p < k) {
    const int count = k - p;
    v16 w[MAX_NR];
#pragma clang loop unroll(full)
    for (int j = 0; j < NR; j++) w[j] = load_first(b + (size_t)j * ldb + p, count, 0);
#pragma clang loop unroll(full)
    for (int i = 0; i < MR; i++) {
      v16 x = load_first(a + (size_t)i * lda + p, count, 0);
#pragma clang loop unroll(full)
      for (int j = 0; j < NR; j++) acc[i][j] += x * w[j];
    }
  }
#pragma clang loop unroll(full)
  for (int i = 0; i < MR; i++) {
#pragma clang loop unroll(full)
    for (int j = 0; j < NR; j++) {
      float sum = horizontal_sum(acc[i][j]);
      if (bias) sum += bias[j];
      float *target = c + (size_t)i * ldc + j;
      *target = beta == 0 ? sum : beta * *target + sum;
    }
  }
}

/// All m rows of C against one block of NR rows of B: groups of MR rows, then the rest as one
/// smaller tile.
INLINE void block(const int MR, const int NR, int m, int k, const float *a, int lda,
                  const float *b, int ldb, const float *bias, float beta, float *c, int ldc) {
  int i = 0;
  for (; i + MR <= m; i += MR)
    tile(MR, NR, k, a + (size_t)i * lda, lda, b, ldb, bias, beta, c + (size_t)i * ldc, ldc);
  const float *ar = a + (size_t)i * lda;
  float *cr = c + (size_t)i * ldc;
  // m − i < MR rows are left; each branch is a tile of a fixed size (dead ones vanish).
  switch (m - i) {
  case 1: tile(1, NR, k, ar, lda, b, ldb, bias, beta, cr, ldc); break;
  case 2: if (MR > 2) tile(2, NR, k, ar, lda, b, ldb, bias, beta, cr, ldc); break;
  case 3: if (MR > 3) tile(3, NR, k, ar, lda, b, ldb, bias, beta, cr, ldc); break;
  case 4: if (MR > 4) tile(4, NR, k, ar, lda, b, ldb, bias, beta, cr, ldc); break;
  case 5: if (MR > 5) tile(5, NR, k, ar, lda, b, ldb, bias, beta, cr, ldc); break;
  default: break;
  }
}

/// Columns n_begin … n_end − 1: blocks of NR rows of B, then single rows.
INLINE void small_gemm(const int MR, const int NR, int m, int n_begin, int n_end, int k,
                       const float *a, int lda, const float *b, int ldb, const float *bias,
                       float beta, float *c, int ldc) {
  int j = n_begin;
  for (; j + NR <= n_end; j += NR)
    block(MR, NR, m, k, a, lda, b + (size_t)j * ldb, ldb, bias ? bias + j : NULL, beta, c + j, ldc);
  for (; j < n_end; j++)
    block(MR, 1, m, k, a, lda, b + (size_t)j * ldb, ldb, bias ? bias + j : NULL, beta, c + j, ldc);
}

// MARK: - Instantiations and dispatch

#define SMALL_PARAMS                                                                               \
  (int m, int n_begin, int n_end, int k, const float *a, int lda, const float *b, int ldb,        \
   const float *bias, float beta, float *c, int ldc)
#define SMALL_ARGS (m, n_begin, n_end, k, a, lda, b, ldb, bias, beta, c, ldc)

// Tile shapes (MR × NR) measured on the bench decoder's weights (Zen 5, one thread).

/// Baseline: a vector is 4 SSE registers: 2 × 1 accumulators.
INLINE void small_gemm_2x1 SMALL_PARAMS {
  small_gemm(2, 1, m, n_begin, n_end, k, a, lda, b, ldb, bias, beta, c, ldc);
}

/// AVX2: 2 registers per vector: 1 × 6, 2 × 3 or 3 × 2 accumulators (12 of 16 registers).
INLINE void small_gemm_3x2 SMALL_PARAMS {
  if (m == 1)
    small_gemm(1, 6, m, n_begin, n_end, k, a, lda, b, ldb, bias, beta, c, ldc);
  else if (m <= 2)
    small_gemm(2, 3, m, n_begin, n_end, k, a, lda, b, ldb, bias, beta, c, ldc);
  else
    small_gemm(3, 2, m, n_begin, n_end, k, a, lda, b, ldb, bias, beta, c, ldc);
}

/// AVX-512: 1 register per vector: 2 × 8, 4 × 4 or 6 × 4 accumulators (up to 24 of 32
/// registers). With one or two rows, eight rows of B streamed at once keep more loads in flight:
/// a greedy step (8.3 MB) took 0.85× the time of 4 × 4 tiles, two rows 0.95× (Zen 4, one thread).
INLINE void small_gemm_6x4 SMALL_PARAMS {
  if (m <= 2)
    small_gemm(2, 8, m, n_begin, n_end, k, a, lda, b, ldb, bias, beta, c, ldc);
  else if (m <= 4)
    small_gemm(4, 4, m, n_begin, n_end, k, a, lda, b, ldb, bias, beta, c, ldc);
  else
    small_gemm(6, 4, m, n_begin, n_end, k, a, lda, b, ldb, bias, beta, c, ldc);
}

CK_INSTANTIATE_EACH(ck_small_gemm, SMALL_PARAMS, SMALL_ARGS, small_gemm_2x1, small_gemm_3x2,
                    small_gemm_6x4)

// MARK: - Threads

/// The arguments of ck_small_gemm_threads, for its parts.
typedef struct {
  int m, n, k, lda, ldb, ldc, parts;
  const float *a, *b, *bias;
  float beta;
  float *c;
} split_product;

/// Part `part` of `parts`: columns of whole 8-column blocks (the widest tile).
static void product_part(void *context, int part) {
  const split_product *s = context;
  const int blocks = (s->n + 7) / 8;
  int begin = 8 * (int)((long)blocks * part / s->parts);
  int end = 8 * (int)((long)blocks * (part + 1) / s->parts);
  ck_small_gemm(s->m, begin, end < s->n ? end : s->n, s->k, s->a, s->lda, s->b, s->ldb, s->bias,
                s->beta, s->c, s->ldc);
}

void ck_small_gemm_threads(int threads, int m, int n, int k, const float *a, int lda, const float *b,
                           int ldb, const float *bias, float beta, float *c, int ldc) {
  split_product s = {m, n, k, lda, ldb, ldc, threads < 1 ? 1 : threads, a, b, bias, beta, c};
  ck_fork_join(threads, s.parts, product_part, &s);
}
