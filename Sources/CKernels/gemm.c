// C = op(A) · op(B) with op(B) packed into panels of 16 columns (each panel k × 16, row p holding
// op(B)[p, 16q … 16q + 15]), so that the product streams a panel with plain vector loads; a weight
// used at every time step is packed once.
//
// Register tile: ROWS rows × VECTORS panels of C in ROWS · VECTORS 16-float accumulators,
//   acc[r][v] += op(A)[i + r, p] · panel_v[p]   for p over the block's depth,
// op(A) read in place (one broadcast per row and p). Blocks: depth KC (a tile's panel rows stay in
// L1/L2), rows MC (the A block stays in L2 while the panels of a thread pass by).
// Per instruction set (CK_INSTANTIATE_EACH): AVX-512 8 × 2 (16 of 32 registers), AVX2 + FMA 6 × 1
// (12 of 16: a vector is two registers), baseline 2 × 1 (8 of 16 SSE registers).

#include "gemm.h"

#include "vector16.h"

enum { KC = 512, MC = 256 };

INLINE int min_of(int a, int b) { return a < b ? a : b; }

size_t ck_gemm_packed_size(int k, int n) { return (size_t)((n + 15) / 16) * 16 * (size_t)k; }

// MARK: - Packing

INLINE void pack(const float *b, int ldb, int trans_b, int k, int n, int panel_begin,
                 int panel_end, float *packed) {
  for (int q = panel_begin; q < panel_end; q++) {
    int j0 = 16 * q, cols = min_of(16, n - j0);
    float *panel = packed + (size_t)q * 16 * (size_t)k;
    if (!trans_b) {
      for (int p = 0; p < k; p++) {
        const float *row = b + (size_t)p * ldb + j0;
        store(panel + 16 * p, cols == 16 ? load(row) : load_first(row, cols, 0));
      }
      continue;
    }
    // op(B)[p, j] = b[j, p]: 16 × 16 blocks of b (rows j0 …, columns p0 …) transposed
    for (int p0 = 0; p0 < k; p0 += 16) {
      int depth = min_of(16, k - p0);
      v16 x[16];
      for (int i = 0; i < 16; i++) {
        const float *row = b + (size_t)(j0 + i) * ldb + p0;
        x[i] = i >= cols ? zero() : depth == 16 ? load(row) : load_first(row, depth, 0);
      }
      transpose16(x);
      for (int i = 0; i < depth; i++) store(panel + 16 * (p0 + i), x[i]);
    }
  }
}

CK_INSTANTIATE(ck_gemm_pack,
               (const float *b, int ldb, int trans_b, int k, int n, int panel_begin,
                int panel_end, float *packed),
               (b, ldb, trans_b, k, n, panel_begin, panel_end, packed), pack)

// MARK: - Products

/// The first `cols` (0 … 16, else 16) floats of p, zero after.
INLINE v16 load_columns(const float *p, int cols) {
  return cols >= 16 ? load(p) : load_first(p, cols < 0 ? 0 : cols, 0);
}

INLINE void store_columns(float *p, int cols, v16 v) {
  if (cols >= 16)
    store(p, v);
  else if (cols > 0)
    store_first(p, cols, v);
}

/// c [ROWS, cols] (+)= op(A) tile · the tile's VECTORS panels over `depth` products:
/// op(A)[r, p] = a[r · a_row + p · a_col]; panel v row p at panel + v · panel_stride + 16p.
INLINE void tile(const int ROWS, const int VECTORS, int depth, const float *a, size_t a_row,
                 size_t a_col, const float *panel, size_t panel_stride, float *c, int ldc,
                 int cols, int add) {
  v16 acc[8][2];
#pragma clang loop unroll(full)
  for (int r = 0; r < ROWS; r++) {
#pragma clang loop unroll(full)
    for (int v = 0; v < VECTORS; v++)
      acc[r][v] = add ? load_columns(c + (size_t)r * ldc + 16 * v, cols - 16 * v) : zero();
  }
  for (int p = 0; p < depth; p++) {
    v16 b[2];
#pragma clang loop unroll(full)
    for (int v = 0; v < VECTORS; v++) b[v] = load(panel + v * panel_stride + 16 * (size_t)p);
#pragma clang loop unroll(full)
    for (int r = 0; r < ROWS; r++) {
      v16 x = splat(a[r * a_row + p * a_col]);
#pragma clang loop unroll(full)
      for (int v = 0; v < VECTORS; v++) acc[r][v] += x * b[v];
    }
  }
#pragma clang loop unroll(full)
  for (int r = 0; r < ROWS; r++) {
#pragma clang loop unroll(full)
    for (int v = 0; v < VECTORS; v++)
      store_columns(c + (size_t)r * ldc + 16 * v, cols - 16 * v, acc[r][v]);
  }
}

INLINE void product(const int ROWS, const int VECTORS, int m, int n, int k, const float *a,
                    int lda, int trans_a, const float *packed, float *c, int ldc, int accumulate,
                    int panel_begin, int panel_end) {
  size_t a_row = trans_a ? 1 : (size_t)lda, a_col = trans_a ? (size_t)lda : 1;
  size_t panel_stride = (size_t)16 * (size_t)k;
  for (int p0 = 0; p0 < k; p0 += KC) {
    int depth = min_of(KC, k - p0);
    int add = accumulate || p0 > 0;
    for (int i0 = 0; i0 < m; i0 += MC) {
      int rows = min_of(MC, m - i0);
      for (int q = panel_begin; q < panel_end; q += VECTORS) {
        int cols = n - 16 * q;  // columns left from this panel on (store_columns clamps)
        const float *panel = packed + (size_t)q * panel_stride + 16 * (size_t)p0;
        const float *a0 = a + (size_t)i0 * a_row + (size_t)p0 * a_col;
        float *c0 = c + (size_t)i0 * ldc + 16 * q;
        int pair = VECTORS == 2 && q + 1 < panel_end;
        int i = 0;
        for (; i + ROWS <= rows; i += ROWS) {
          const float *ai = a0 + (size_t)i * a_row;
          float *ci = c0 + (size_t)i * ldc;
          if (pair)
            tile(ROWS, 2, depth, ai, a_row, a_col, panel, panel_stride, ci, ldc, cols, add);
          else
            tile(ROWS, 1, depth, ai, a_row, a_col, panel, panel_stride, ci, ldc, cols, add);
        }
        for (; i < rows; i++) {
          const float *ai = a0 + (size_t)i * a_row;
          float *ci = c0 + (size_t)i * ldc;
          if (pair)
            tile(1, 2, depth, ai, a_row, a_col, panel, panel_stride, ci, ldc, cols, add);
          else
            tile(1, 1, depth, ai, a_row, a_col, panel, panel_stride, ci, ldc, cols, add);
        }
      }
    }
  }
}

#define PRODUCT_PARAMS                                                                             \
  (int m, int n, int k, const float *a, int lda, int trans_a, const float *packed, float *c,      \
   int ldc, int accumulate, int panel_begin, int panel_end)
#define PRODUCT_ARGS (m, n, k, a, lda, trans_a, packed, c, ldc, accumulate, panel_begin, panel_end)

INLINE void product_2x1 PRODUCT_PARAMS { product(2, 1, m, n, k, a, lda, trans_a, packed, c, ldc, accumulate, panel_begin, panel_end); }
INLINE void product_6x1 PRODUCT_PARAMS { product(6, 1, m, n, k, a, lda, trans_a, packed, c, ldc, accumulate, panel_begin, panel_end); }
INLINE void product_8x2 PRODUCT_PARAMS { product(8, 2, m, n, k, a, lda, trans_a, packed, c, ldc, accumulate, panel_begin, panel_end); }

CK_INSTANTIATE_EACH(ck_gemm_packed, PRODUCT_PARAMS, PRODUCT_ARGS, product_2x1, product_6x1,
                    product_8x2)
