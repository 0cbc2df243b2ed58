// Winograd F(4×4, 3×3) convolution, forward only, block by block, for one thread's share of a
// batch: 36 multiplies per 4×4 output tile where F(2×2, 3×3) (winograd.c) does 64 and direct
// convolution 144. The gradients stay with F(2×2, 3×3), whose transforms are cheaper to invert.
//
// Per output tile (4×4, at rows 4ty…4ty+3, columns 4tx…4tx+3) and its 6×6 input patch d (rows
// 4ty−1…4ty+4, columns 4tx−1…4tx+4, zero outside the image):
//   Y = Aᵀ [ U ⊙ (Bᵀ d B) ] A,  U = G g Gᵀ, summed over input channels      (Lavin & Gray, 2015)
//   Bᵀ = [4 0 −5 0 1 0; 0 −4 −4 1 1 0; 0 4 −4 −1 1 0; 0 −2 −1 2 1 0; 0 2 −1 −2 1 0; 0 4 0 −5 0 1]
//   G  = [¼ 0 0; −⅙ −⅙ −⅙; −⅙ ⅙ −⅙; 1/24 1/12 ⅙; 1/24 −1/12 ⅙; 0 0 1]
//   Aᵀ = [1 1 1 1 1 0; 0 1 −1 2 −2 0; 0 1 1 4 4 0; 0 1 −1 8 −8 1]
// (the interpolation points 0, ±1, ±2 and ∞). For each of the 36 positions ξ of the 6×6
// transformed tile the channel sum is the product
//   M[ξ] [Cout, n] = U[ξ] [Cout, Cin] · V[ξ] [Cin, n]        (n = the tiles of one block)
// run by winograd_shared.h's register-blocked loops.
//
// Blocks, layouts and instantiation follow winograd.c. Phase planes: a padded input row r is
// kept as four planes P_k[j] = row[4j + k − 1] (k = 0…3, zero outside the row), so that columns
// 4tx − 1 … 4tx + 4 of the patches of 16 neighbouring tiles are the plain vectors P0[tx…],
// P1[tx…], P2[tx…], P3[tx…], P0[tx + 1…], P1[tx + 1…].

#include "CKernels.h"

#include <string.h>

#include "winograd_shared.h"

// MARK: - Geometry

/// Padded input rows of a block of `rows` tile rows.
INLINE int padded_rows4(int rows) { return 4 * rows + 2; }

/// Floats in the scratch: V (with its spare rows), M, the four phase planes of a block's padded
/// rows, one staged row.
static size_t scratch_floats4(const geometry *g) {
  size_t slabs = (size_t)36 * (size_t)(g->cin + 1 + g->cout) * (size_t)g->ld;
  size_t planes = (size_t)4 * (size_t)padded_rows4(g->rows) * (size_t)g->plane_width;
  return slabs + planes + (size_t)4 * (size_t)g->plane_width;
}

size_t ck_winograd4_scratch(const ck_conv_shape *shape) {
  geometry g = make_geometry(shape, 4);
  return scratch_floats4(&g);
}

// MARK: - Rows: phase planes, output rows of 4 interleaved tiles

/// planes[k · pw + j] = row[4j + k − 1] for j < pw (0 outside the row; row may be NULL). staged:
/// 4 · pw floats of scratch.
INLINE void split_row4(const float *row, int width, float *planes, int pw, float *staged) {
  if (!row) {
    memset(planes, 0, sizeof(float) * (size_t)(4 * pw));
    return;
  }
  // staged[i] = row[i − 1]: the zero column left of the row, the row, zeros to 4 · pw.
  staged[0] = 0;
  memcpy(staged + 1, row, sizeof(float) * (size_t)width);
  memset(staged + 1 + width, 0, sizeof(float) * (size_t)(4 * pw - 1 - width));
  for (int j = 0; j < pw; j += 16) {
    const float *s = staged + 4 * j;
    v16 a = load(s), b = load(s + 16), c = load(s + 32), d = load(s + 48);
    v16 even = evens(a, b), even2 = evens(c, d), odd = odds(a, b), odd2 = odds(c, d);
    store(planes + j, evens(even, even2));          // 4i
    store(planes + pw + j, evens(odd, odd2));       // 4i + 1
    store(planes + 2 * pw + j, odds(even, even2));  // 4i + 2
    store(planes + 3 * pw + j, odds(odd, odd2));    // 4i + 3
  }
}

/// row[x0 + 4i + k] = y[k][i] for the 16 tiles i, dropping columns ≥ width.
INLINE void store_quad(float *row, int x0, int width, const v16 y[4]) {
  v16 a = interleave_low(y[0], y[2]), b = interleave_high(y[0], y[2]);
  v16 c = interleave_low(y[1], y[3]), d = interleave_high(y[1], y[3]);
  v16 out[4] = {interleave_low(a, c), interleave_high(a, c), interleave_low(b, d),
                interleave_high(b, d)};
  if (x0 + 64 <= width) {
    for (int q = 0; q < 4; q++) store(row + x0 + 16 * q, out[q]);
    return;
  }
  for (int q = 0; q < 4 && x0 + 16 * q < width; q++) {
    int count = width - (x0 + 16 * q);
    if (count >= 16)
      store(row + x0 + 16 * q, out[q]);
    else
      store_first(row + x0 + 16 * q, count, out[q]);
  }
}

// MARK: - Transforms of one block

/// Bᵀ x for a 6-vector x (of vectors): out[0 … 5].
INLINE void input_rows(const v16 x[6], v16 out[6]) {
  const v16 four = splat(4.0f), five = splat(5.0f), two = splat(2.0f);
  v16 a = x[4] - four * x[2], b = x[3] - four * x[1];  // for rows 1 and 2
  v16 c = x[4] - x[2], d = two * (x[3] - x[1]);        // for rows 3 and 4
  out[0] = four * x[0] - five * x[2] + x[4];
  out[1] = a + b;
  out[2] = a - b;
  out[3] = c + d;
  out[4] = c - d;
  out[5] = four * x[1] - five * x[3] + x[5];
}

/// V[ξ] = (Bᵀ d B)[ξ] for every tile of the block (tile rows ty0 … ty0 + rows − 1 of `count`
/// images side by side, image i's tiles from i · rows · tiles_w) and input channel. V[ξ] is kept in
/// strips of 16 tiles (store_in_strips, winograd_shared.h).
INLINE void input_transform4(const geometry *g, const float *images, int count, int ty0, int rows,
                             float *v, float *planes, float *staged) {
  const int pw = g->plane_width, tw = g->tiles_w;
  const size_t strip = (size_t)(g->cin + 1) * 16, position = (size_t)(g->cin + 1) * g->ld;
  const size_t in_size = (size_t)g->cin * g->height * g->width;
  for (int ci = 0; ci < g->cin; ci++) {
    for (int i = 0; i < count; i++) {
      const float *plane = images + i * in_size + (size_t)ci * g->height * g->width;
      for (int r = 0; r < padded_rows4(rows); r++) {
        int y = 4 * ty0 - 1 + r;
        const float *row = y >= 0 && y < g->height ? plane + (size_t)y * g->width : NULL;
        split_row4(row, g->width, planes + (size_t)4 * r * pw, pw, staged);
      }
      float *target = v + (size_t)ci * 16;
      for (int tr = 0; tr < rows; tr++) {
        for (int tx = 0; tx < tw; tx += 16) {
          // d B along each of the 6 patch rows.
          v16 h[6][6];
          for (int r = 0; r < 6; r++) {
            const float *p = planes + (size_t)4 * (4 * tr + r) * pw + tx;
            v16 d[6] = {load(p), load(p + pw), load(p + 2 * pw), load(p + 3 * pw), load(p + 1),
                        load(p + pw + 1)};
            input_rows(d, h[r]);
          }
          // Bᵀ (·) down each column.
          const int t = (i * rows + tr) * tw + tx;
          for (int c = 0; c < 6; c++) {
            v16 column[6] = {h[0][c], h[1][c], h[2][c], h[3][c], h[4][c], h[5][c]}, out[6];
            input_rows(column, out);
            for (int k = 0; k < 6; k++)
              store_in_strips(target + (6 * k + c) * position, strip, t, out[k]);
          }
        }
      }
    }
  }
}

/// Aᵀ m for a 6-vector m (of vectors): out[0 … 3].
INLINE void output_rows(const v16 m[6], v16 out[4]) {
  v16 sum12 = m[1] + m[2], sum34 = m[3] + m[4];
  v16 difference12 = m[1] - m[2], difference34 = m[3] - m[4];
  out[0] = m[0] + sum12 + sum34;
  out[1] = difference12 + splat(2.0f) * difference34;
  out[2] = sum12 + splat(4.0f) * sum34;
  out[3] = difference12 + splat(8.0f) * difference34 + m[5];
}

/// Output planes co_begin … co_end − 1 of the block's tiles: Y = Aᵀ M A + bias, then the ReLU
/// when asked.
INLINE void output_transform4(const geometry *g, const float *m, const float *bias, float *image,
                              int ty0, int rows, int co_begin, int co_end) {
  const int tw = g->tiles_w, stride = g->cout * g->ld, width = g->width;
  for (int co = co_begin; co < co_end; co++) {
    float *plane = image + (size_t)co * g->height * width;
    const float *source = m + (size_t)co * g->ld;
    const v16 b = splat(bias[co]);
    for (int tr = 0; tr < rows; tr++) {
      int y0 = 4 * (ty0 + tr);
      for (int tx = 0; tx < tw; tx += 16) {
        const float *s = source + tr * tw + tx;
        // Aᵀ M down each column c.
        v16 top[4][6];
        for (int c = 0; c < 6; c++) {
          v16 column[6], out[4];
          for (int i = 0; i < 6; i++) column[i] = load(s + (size_t)(6 * i + c) * stride);
          output_rows(column, out);
          for (int j = 0; j < 4; j++) top[j][c] = out[j];
        }
        // (·) A along each row j: output row y0 + j.
        for (int j = 0; j < 4 && y0 + j < g->height; j++) {
          v16 y[4];
          output_rows(top[j], y);
          for (int k = 0; k < 4; k++) {
            y[k] += b;
            if (g->relu) y[k] = __builtin_elementwise_max(y[k], zero());
          }
          store_quad(plane + (size_t)(y0 + j) * width, 4 * tx, width, y);
        }
      }
    }
  }
}

// MARK: - The pass over a thread's images

/// Tile rows row_begin … row_end − 1 of each image in blocks of g.rows, or (small maps) g.group
/// whole images side by side in one block; output channels co_begin … co_end − 1.
INLINE void forward4_pass(const blocking k, const ck_conv_shape *shape, const float *u,
                          const float *bias, const float *input, float *output, int images,
                          int row_begin, int row_end, int co_begin, int co_end, float *scratch) {
  const geometry g = make_geometry(shape, 4);
  float *v = scratch;
  float *m = v + (size_t)36 * (g.cin + 1) * g.ld;
  float *planes = m + (size_t)36 * g.cout * g.ld;
  float *staged = planes + (size_t)4 * padded_rows4(g.rows) * g.plane_width;
  const size_t in_size = (size_t)g.cin * g.height * g.width;
  const size_t out_size = (size_t)g.cout * g.height * g.width;
  for (int first = 0; first < images; first += g.group) {
    const int count = min_int(g.group, images - first);
    for (int ty0 = row_begin; ty0 < row_end; ty0 += g.rows) {
      const int rows = min_int(g.rows, row_end - ty0), tiles = rows * g.tiles_w;
      const int n = round16(count * tiles);
      input_transform4(&g, input + first * in_size, count, ty0, rows, v, planes, staged);
      for (int xi = 0; xi < 36; xi++)
        product(k.rows, k.vectors, 0, A_ROWS, co_end - co_begin, n, g.cin,
                u + ((size_t)xi * g.cout + co_begin) * g.cin, g.cin,
                v + (size_t)xi * (g.cin + 1) * g.ld, 16, (size_t)(g.cin + 1) * 16,
                m + ((size_t)xi * g.cout + co_begin) * g.ld, g.ld);
      for (int i = 0; i < count; i++)
        output_transform4(&g, m + i * tiles, bias, output + (first + i) * out_size, ty0, rows,
                          co_begin, co_end);
    }
  }
}

#define FORWARD4_PARAMS                                                                            \
  (const ck_conv_shape *shape, const float *u, const float *bias, const float *input,             \
   float *output, int images, int row_begin, int row_end, int channel_begin, int channel_end,     \
   float *scratch)
#define FORWARD4_ARGS                                                                              \
  (shape, u, bias, input, output, images, row_begin, row_end, channel_begin, channel_end, scratch)

/// forward4_pass with one instruction set's register blocking (winograd_shared.h).
#define FORWARD4_WITH(NAME, BLOCKING)                                                              \
  INLINE void NAME FORWARD4_PARAMS {                                                               \
    const blocking k = BLOCKING;                                                                   \
    forward4_pass(k, shape, u, bias, input, output, images, row_begin, row_end, channel_begin,     \
                  channel_end, scratch);                                                           \
  }
FORWARD4_WITH(forward4_baseline, BLOCKING_BASELINE)
FORWARD4_WITH(forward4_avx2, BLOCKING_AVX2)
FORWARD4_WITH(forward4_avx512, BLOCKING_AVX512)

CK_INSTANTIATE_EACH(ck_winograd4_forward, FORWARD4_PARAMS, FORWARD4_ARGS, forward4_baseline,
                    forward4_avx2, forward4_avx512)

// MARK: - Weight transform

/// G x for a 3-vector x (of vectors): out[0 … 5].
INLINE void weight_rows(const v16 x[3], v16 out[6]) {
  const v16 sixth = splat(1.0f / 6), quarter = splat(0.25f);
  v16 outer = x[0] + x[2];
  out[0] = quarter * x[0];
  out[1] = -sixth * (outer + x[1]);
  out[2] = -sixth * (outer - x[1]);
  v16 a = splat(1.0f / 24) * x[0] + sixth * x[2], b = splat(1.0f / 12) * x[1];
  out[3] = a + b;
  out[4] = a - b;
  out[5] = x[2];
}

INLINE void winograd4_weights(const float *weight, int kernels, float *u) {
  for (int k = 0; k < kernels; k += 16) {
    const int count = min_int(16, kernels - k);
    v16 g[9], out[36];
    load_taps(weight, k, count, g);
    // G g, column by column, then (·) Gᵀ along each of its 6 rows.
    v16 gg[6][3];
    for (int c = 0; c < 3; c++) {
      v16 column[3] = {g[c], g[3 + c], g[6 + c]}, rows[6];
      weight_rows(column, rows);
      for (int r = 0; r < 6; r++) gg[r][c] = rows[r];
    }
    for (int r = 0; r < 6; r++) weight_rows(gg[r], out + 6 * r);
    store_positions(out, 36, kernels, k, count, u);
  }
}

CK_INSTANTIATE(ck_winograd4_weights, (const float *weight, int kernels, float *u),
               (weight, kernels, u), winograd4_weights)
