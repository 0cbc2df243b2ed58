// Winograd F(2×2, 3×3) convolution, block by block, for one thread's share of a batch.
//
// Per output tile (2×2, at rows 2ty…2ty+1, columns 2tx…2tx+1) and its 4×4 input patch d
// (rows 2ty−1…2ty+2, columns 2tx−1…2tx+2, zero outside the image):
//   Y = Aᵀ [ U ⊙ (Bᵀ d B) ] A,  U = G g Gᵀ, summed over input channels      (Lavin & Gray, 2015)
//   Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1],  Aᵀ = [1 1 1 0; 0 1 −1 −1].
// For each of the 16 positions ξ of the 4×4 transformed tile the channel sum is a product
//   M[ξ] [Cout, n] = U[ξ] [Cout, Cin] · V[ξ] [Cin, n]        (n = the tiles of one block)
// and the backward pass is the adjoint of each stage:
//   dM = A dY Aᵀ,  dU[ξ] += dM[ξ] · V[ξ]ᵀ,  dV[ξ] = U[ξ]ᵀ · dM[ξ],  dd = B dV Bᵀ (patches overlap).
//
// A block is a few rows of tiles of one image, so that V and M (16 × channels × n floats) stay in
// the core's cache between the transforms and the products; the products are this file's own
// register-blocked loops (no BLAS call per block).
//
// All vector code is written once on 16-float vectors (clang's vector extensions) inside
// always-inline functions, and instantiated three times by the wrappers at the end: with AVX-512
// (one register per vector), with AVX2 + FMA (two), and for the baseline target (four SSE
// registers). ck_isa() picks the best the CPU has. The helpers and products shared with the
// F(4×4, 3×3) kernels (winograd4.c) are in winograd_shared.h.
//
// Layouts: images NCHW; M and dV slabs [16][channels][ld], tile t of a block at column t
// (row-major over the block's tile rows: t = (ty − ty0) · tiles_w + tx); V and dM slabs
// [16][channels + 1][ld] in strips of 16 tiles (store_in_strips, winograd_shared.h), which the
// products read in order.
// Even/odd planes: a padded input row r is kept as E[j] = row[2j − 1] and O[j] = row[2j] (zero
// outside the row), so that the columns 2tx − 1, 2tx, 2tx + 1, 2tx + 2 of the patches of 16
// neighbouring tiles are the plain vectors E[tx…], O[tx…], E[tx + 1…], O[tx + 1…].

#include "CKernels.h"

#include <stdatomic.h>
#include <string.h>

#include "winograd_shared.h"

// MARK: - Geometry

size_t ck_winograd_scratch(const ck_conv_shape *shape) {
  geometry g = make_geometry(shape, 2);
  return scratch_floats(&g, 16);
}

// MARK: - Rows: split into even/odd planes, merge back, pairs of output rows

/// The four planes of a row, `stride` floats apart: E[j] = row[2j − 1], O[j] = row[2j],
/// E[j + 1], O[j + 1], for j < plane_width (0 outside the row; row may be NULL), plane_width =
/// round16(⌈width/2⌉) + 16. The shifted planes are built from neighbouring vectors in registers
/// (a load across two recent stores would wait for them).
INLINE void split_row(const float *row, int width, float *planes, size_t stride, int plane_width) {
  if (!row) {
    for (int k = 0; k < 4; k++) memset(planes + k * stride, 0, sizeof(float) * (size_t)plane_width);
    return;
  }
  // even: O[j …] = row[2j …], odd: E[j + 1 …] = row[2j + 1 …]; the previous vectors' too.
  v16 even_before = zero(), odd_before = zero();
  int j = 0;
  for (; j < plane_width; j += 16) {
    v16 a = zero(), b = zero();
    if (2 * j + 32 <= width) {
      a = load(row + 2 * j);
      b = load(row + 2 * j + 16);
    } else if (2 * j < width) {
      load_partial(row + 2 * j, width - 2 * j, &a, &b);
    }
    const v16 even = evens(a, b), odd = odds(a, b);
    store(planes + j, from_lane15(odd_before, odd));
    store(planes + stride + j, even);
    store(planes + 2 * stride + j, odd);
    if (j > 0) store(planes + 3 * stride + j - 16, from_lane1(even_before, even));
    even_before = even, odd_before = odd;
  }
  store(planes + 3 * stride + j - 16, from_lane1(even_before, zero()));
}

/// One padded row of the input gradient: row[x] = (or +=, when add) E[(x + 1)/2] for odd x,
/// O[x/2] for even x, x < width, where E and O sum the patches of the tile rows that cover the
/// row, `first` and `second` (NULL: none), each four tile-order planes cw floats apart at that tile
/// row: E[j] = Σ a[0][j] + a[2][j − 1], O[j] = Σ a[1][j] + a[3][j − 1] (a[k][j] = 0 for j ≥ tw).
/// All in registers, 16 tiles (32 columns) at a time; each vector of the row is written once.
INLINE void merge_row(float *row, int width, int tw, const float *first, const float *second,
                      size_t cw, int add, int in_lanes) {
  (void)in_lanes;  // pairs, not quads: its interleaves are the 16-float ones
  v16 carry2 = zero(), carry3 = zero(), high_before = zero();  // from the previous 16 tiles
  for (int j = 0; 2 * j - 16 < width; j += 16) {
    const v16i lanes = first_lanes(tw - j);
    v16 a[4];
    for (int k = 0; k < 4; k++) {
      a[k] = select(lanes, load(first + k * cw + j));
      if (second) a[k] += select(lanes, load(second + k * cw + j));
    }
    const v16 e = a[0] + from_lane15(carry2, a[2]), o = a[1] + from_lane15(carry3, a[3]);
    carry2 = a[2], carry3 = a[3];
    // E[j + i], O[j + i] are row[2j − 1 + 2i], row[2j + 2i]: interleaved, then one lane down.
    const v16 low = interleave_low(e, o), high = interleave_high(e, o);
    if (j > 0) store_row_part(row, 2 * j - 16, width, from_lane1(high_before, low), add);
    store_row_part(row, 2 * j, width, from_lane1(low, high), add);
    high_before = high;
  }
}

/// row[x0 + 2i] = a[i], row[x0 + 2i + 1] = b[i], dropping columns ≥ width.
INLINE void store_pair(float *row, int x0, int width, v16 a, v16 b) {
  v16 low = interleave_low(a, b), high = interleave_high(a, b);
  if (x0 + 32 <= width) {
    store(row + x0, low);
    store(row + x0 + 16, high);
  } else if (x0 < width) {
    store_partial(row + x0, width - x0, low, high);
  }
}

/// a[i] = row[x0 + 2i], b[i] = row[x0 + 2i + 1] (0 past width).
INLINE void load_pair(const float *row, int x0, int width, v16 *a, v16 *b) {
  v16 low, high;
  if (x0 + 32 <= width) {
    low = load(row + x0);
    high = load(row + x0 + 16);
  } else if (x0 < width) {
    load_partial(row + x0, width - x0, &low, &high);
  } else {
    low = high = zero();
  }
  *a = evens(low, high);
  *b = odds(low, high);
}

// MARK: - Tile-order planes

// A block's transforms run on 16 consecutive tiles t … t + 15 (t = tr · tiles_w + tx within one
// image) whatever the width of a tile row, so that small maps fill the vectors as large ones do
// (8 × 8: four tile rows of 4 per vector). For that, the values each tile needs are first laid
// out in tile order: a tile-order plane holds one float per tile of rows + 1 tile rows, at
// j · tiles_w + tx, and planes are g.compact floats apart (32 spare: a block's last vector runs on
// past its tiles, a split row past its plane). Padded input row p = 2j + s (s = 0, 1) of the
// block gives the four planes q[s][k] of its tile row j: k = 0: E[tx], 1: O[tx], 2: E[tx + 1],
// 3: O[tx + 1]. Patch row r (0 … 3) of tiles t … t + 15, columns 2tx − 1 … 2tx + 2, is then the
// plain vectors q[r & 1][k][t + (r >> 1) · tiles_w …], k = 0 … 3. The outputs go the other way:
// each tile's outputs into tile-order planes, then interleaved into the image's rows.

/// q [2][4][compact] (see above) of one channel's plane, padded rows 2·ty0 − 1 … 2·(ty0 + rows)
/// (zero outside the image). Each row is split straight into its planes; split_row writes
/// plane_width floats of each, running on into the next rows (written after it) and, for the last,
/// into the spare floats.
INLINE void tile_planes(const geometry *g, const float *plane, int ty0, int rows, float *q) {
  const int tw = g->tiles_w;
  const size_t cw = (size_t)g->compact;
  for (int p = 0; p < 2 * rows + 2; p++) {
    const int y = 2 * ty0 - 1 + p;
    float *target = q + (size_t)(p & 1) * 4 * cw + (size_t)(p >> 1) * tw;
    split_row(image_row(g, plane, y), g->width, target, cw, g->plane_width);
  }
}

// MARK: - Transforms of one block (tile rows ty0 … ty0 + rows − 1 of one image)

/// V[ξ] = (Bᵀ d B)[ξ] for every tile of the block (`count` images side by side, image i's tiles
/// from i · rows · tiles_w) and input channel, in strips (store_in_strips). q: the tile-order
/// planes (8 · g.compact floats).
INLINE void input_transform(const geometry *g, const float *images, int count, int ty0, int rows,
                            float *v, float *q) {
  const int tw = g->tiles_w, tiles = rows * tw;
  const size_t cw = (size_t)g->compact;
  const size_t strip = (size_t)(g->cin + 1) * 16, position = (size_t)(g->cin + 1) * g->ld;
  for (int ci = 0; ci < g->cin; ci++) {
    float *target = v + (size_t)ci * 16;
    for (int i = 0; i < count; i++) {
      tile_planes(g, images + i * g->in_stride + (size_t)ci * g->height * g->width, ty0, rows, q);
      for (int t = 0; t < tiles; t += 16) {
        // d B along each of the 4 patch rows: [d0 − d2, d1 + d2, d2 − d1, d1 − d3].
        v16 h[4][4];
        for (int r = 0; r < 4; r++) {
          const float *s = q + (size_t)(r & 1) * 4 * cw + t + (r >> 1) * tw;
          v16 d0 = load(s), d1 = load(s + cw), d2 = load(s + 2 * cw), d3 = load(s + 3 * cw);
          h[r][0] = d0 - d2;
          h[r][1] = d1 + d2;
          h[r][2] = d2 - d1;
          h[r][3] = d1 - d3;
        }
        // Bᵀ (·) down each column.
        const int at = i * tiles + t;
        for (int c = 0; c < 4; c++) {
          store_in_strips(0, target + (0 + c) * position, strip, at, h[0][c] - h[2][c]);
          store_in_strips(0, target + (4 + c) * position, strip, at, h[1][c] + h[2][c]);
          store_in_strips(0, target + (8 + c) * position, strip, at, h[2][c] - h[1][c]);
          store_in_strips(0, target + (12 + c) * position, strip, at, h[1][c] - h[3][c]);
        }
      }
    }
  }
}

/// Output planes of the block's tiles: Y = Aᵀ M A + bias, then the ReLU when asked. y: 4 tile-order
/// planes (y[2a + b][t] is output (2ty + a, 2tx + b) of tile t), interleaved into the rows after.
INLINE void output_transform(const geometry *g, const float *m, const float *bias, float *image,
                             int ty0, int rows, int co_begin, int co_end, float *y) {
  const int tw = g->tiles_w, tiles = rows * tw, width = g->width;
  const size_t stride = position_stride(g->cout, g->ld), cw = (size_t)g->compact;
  for (int co = co_begin; co < co_end; co++) {
    float *plane = image + (size_t)co * g->height * width;
    const float *source = m + (size_t)co * g->ld;
    const v16 b = splat(bias[co]);
    for (int t = 0; t < tiles; t += 16) {
      const float *s = source + t;
      // Aᵀ M: rows [m0 + m1 + m2, m1 − m2 − m3] for each column c.
      v16 top[4], bottom[4];
      for (int c = 0; c < 4; c++) {
        v16 m0 = load(s + (0 + c) * stride), m1 = load(s + (4 + c) * stride);
        v16 m2 = load(s + (8 + c) * stride), m3 = load(s + (12 + c) * stride);
        top[c] = m0 + m1 + m2;
        bottom[c] = m1 - m2 - m3;
      }
      // (·) A along each row.
      v16 out[4] = {top[0] + top[1] + top[2] + b, top[1] - top[2] - top[3] + b,
                    bottom[0] + bottom[1] + bottom[2] + b, bottom[1] - bottom[2] - bottom[3] + b};
      for (int k = 0; k < 4; k++)
        store(y + k * cw + t, g->relu ? __builtin_elementwise_max(out[k], zero()) : out[k]);
    }
    for (int tr = 0; tr < rows; tr++) {
      const int row = 2 * (ty0 + tr);
      for (int tx = 0; tx < tw; tx += 16) {
        const float *s = y + tr * tw + tx;
        store_pair(plane + (size_t)row * width, 2 * tx, width, load(s), load(s + cw));
        if (row + 1 < g->height)
          store_pair(plane + (size_t)(row + 1) * width, 2 * tx, width, load(s + 2 * cw),
                     load(s + 3 * cw));
      }
    }
  }
}

/// dM = A dY Aᵀ per tile (dY masked where the ReLU output is 0) of the block (`count` images side
/// by side, as input_transform), in strips (store_in_strips); bias_grad[co] += the block's sum of
/// the masked dY. d: 4 tile-order planes of the masked dY, as output_transform's y.
INLINE void output_transform_backward(const geometry *g, const float *output_grads,
                                      const float *outputs, int count, float *dm, float *bias_grad,
                                      int ty0, int rows, float *d) {
  const int tw = g->tiles_w, tiles = rows * tw, width = g->width;
  const size_t plane_size = (size_t)g->height * width, out_size = (size_t)g->cout * plane_size;
  const size_t strip = (size_t)(g->cout + 1) * 16, position = (size_t)(g->cout + 1) * g->ld;
  const size_t cw = (size_t)g->compact;
  for (int co = 0; co < g->cout; co++) {
    float *target = dm + (size_t)co * 16;
    v16 sum = zero();
    for (int i = 0; i < count; i++) {
      const float *grad = output_grads + i * out_size + co * plane_size;
      const float *out = g->relu ? outputs + i * out_size + co * plane_size : NULL;
      // Tile rows into the planes (a row's last vector runs on into the next, written after it;
      // its lanes past the image are 0).
      for (int tr = 0; tr < rows; tr++) {
        const int row = 2 * (ty0 + tr);
        const int has_bottom = row + 1 < g->height;
        for (int tx = 0; tx < tw; tx += 16) {
          v16 e[4] = {zero(), zero(), zero(), zero()};
          load_pair(grad + (size_t)row * width, 2 * tx, width, &e[0], &e[1]);
          if (has_bottom) load_pair(grad + (size_t)(row + 1) * width, 2 * tx, width, &e[2], &e[3]);
          if (out) {
            v16 o[4] = {zero(), zero(), zero(), zero()};
            load_pair(out + (size_t)row * width, 2 * tx, width, &o[0], &o[1]);
            if (has_bottom) load_pair(out + (size_t)(row + 1) * width, 2 * tx, width, &o[2], &o[3]);
            for (int k = 0; k < 4; k++) e[k] = select(o[k] > zero(), e[k]);
          }
          sum += (e[0] + e[1]) + (e[2] + e[3]);
          for (int k = 0; k < 4; k++) store(d + k * cw + tr * tw + tx, e[k]);
        }
      }
      for (int t = 0; t < tiles; t += 16) {
        v16 e00 = load(d + t), e01 = load(d + cw + t), e10 = load(d + 2 * cw + t);
        v16 e11 = load(d + 3 * cw + t);
        // A dY: column p (from the tile's left outputs) and q (right), rows 0…3.
        v16 p[4] = {e00, e00 + e10, e00 - e10, -e10};
        v16 q[4] = {e01, e01 + e11, e01 - e11, -e11};
        // (·) Aᵀ along each row: [p, p + q, p − q, −q].
        const int at = i * tiles + t;
        for (int r = 0; r < 4; r++) {
          store_in_strips(0, target + (4 * r + 0) * position, strip, at, p[r]);
          store_in_strips(0, target + (4 * r + 1) * position, strip, at, p[r] + q[r]);
          store_in_strips(0, target + (4 * r + 2) * position, strip, at, p[r] - q[r]);
          store_in_strips(0, target + (4 * r + 3) * position, strip, at, -q[r]);
        }
      }
    }
    bias_grad[co] += horizontal_sum(sum);
  }
}

/// The block's share of the input gradient: Σ over its tiles of B dV Bᵀ placed at the tile's
/// patch. Rows shared with the previous block of the image (the first two padded rows when
/// ty0 > 0) are added to what that block wrote; the others are overwritten. Each tile's patch row
/// r, columns k (E[tx], O[tx], E[tx + 1], O[tx + 1]), goes to tile-order plane a[r][k] (16 planes,
/// cw floats apart), then each padded row is merged from the one or two tile rows whose patches
/// cover it (merge_rows, merge_row).
INLINE void input_transform_backward(const geometry *g, const float *dv, float *image, int ty0,
                                     int rows, float *a) {
  const int tw = g->tiles_w, tiles = rows * tw;
  const size_t stride = position_stride(g->cin, g->ld), cw = (size_t)g->compact;
  for (int ci = 0; ci < g->cin; ci++) {
    const float *source = dv + (size_t)ci * g->ld;
    for (int t = 0; t < tiles; t += 16) {
      // Lanes past the block hold the next image's tiles: masked out.
      const v16i lanes = first_lanes(tiles - t);
      v16 w[4][4];
      for (int i = 0; i < 4; i++)
        for (int c = 0; c < 4; c++) w[i][c] = select(lanes, load(source + t + (4 * i + c) * stride));
      // B dV: rows [w0, w1 − w2 + w3, w1 + w2 − w0, −w3].
      v16 x[4][4];
      for (int c = 0; c < 4; c++) {
        x[0][c] = w[0][c];
        x[1][c] = w[1][c] - w[2][c] + w[3][c];
        x[2][c] = w[1][c] + w[2][c] - w[0][c];
        x[3][c] = -w[3][c];
      }
      // (·) Bᵀ along each row gives patch row r's E[tx], O[tx], E[tx + 1], O[tx + 1].
      for (int r = 0; r < 4; r++) {
        float *target = a + (size_t)4 * r * cw + t;
        store(target, x[r][0]);
        store(target + cw, x[r][1] - x[r][2] + x[r][3]);
        store(target + 2 * cw, x[r][1] + x[r][2] - x[r][0]);
        store(target + 3 * cw, -x[r][3]);
      }
    }
    merge_rows(2, 4, merge_row, g, ty0, rows, a, image + (size_t)ci * g->height * g->width, NULL,
               0);
  }
}

// MARK: - Passes over a thread's images

/// Blocks: tile rows row_begin … row_end − 1 of each image in blocks of g.rows, or (small maps)
/// g.group whole images side by side in one block, image after image along the tiles; output
/// channels co_begin … co_end − 1 (the products take those rows of U).
INLINE void forward_pass(const blocking k, const ck_conv_shape *shape, const float *u,
                         const float *bias, const float *input, float *output, int images,
                         int row_begin, int row_end, int co_begin, int co_end, float *scratch) {
  const geometry g = make_geometry(shape, 2);
  const workspace w = split_scratch(&g, 16, scratch);
  const size_t out_size = (size_t)g.cout * g.height * g.width;
  for (int first = 0; first < images; first += g.group) {
    const int count = min_int(g.group, images - first);
    for (int ty0 = row_begin; ty0 < row_end; ty0 += g.rows) {
      const int rows = min_int(g.rows, row_end - ty0), tiles = rows * g.tiles_w;
      input_transform(&g, input + first * g.in_stride, count, ty0, rows, w.v, w.q);
      forward_products(k, &g, 16, count * tiles, co_begin, co_end, u, w.v, w.m);
      for (int i = 0; i < count; i++)
        output_transform(&g, w.m + i * tiles, bias, output + (first + i) * out_size, ty0, rows,
                         co_begin, co_end, w.q);
    }
  }
}

/// As forward_pass, over every tile row (a block's input gradient adds to the rows it shares with
/// the previous block of its image, which must have been done before it; dU is written by the
/// first block and added to by the others). u: the forward's U (ck_winograd_weights).
INLINE void backward_pass(const blocking k, const ck_conv_shape *shape, const float *u,
                          const float *input, const float *output, const float *output_grad,
                          float *input_grad, float *u_grad, float *bias_grad, int images,
                          float *scratch) {
  const geometry g = make_geometry(shape, 2);
  const workspace w = split_scratch(&g, 16, scratch);
  float *v = w.v, *dm = w.m; // v: V, then dV
  const size_t out_size = (size_t)g.cout * g.height * g.width;
  if (images <= 0) zero_weight_gradient(&g, 16, u_grad);
  for (int first = 0; first < images; first += g.group) {
    const int count = min_int(g.group, images - first);
    for (int ty0 = 0; ty0 < g.tiles_h; ty0 += g.rows) {
      const int rows = min_int(g.rows, g.tiles_h - ty0), tiles = rows * g.tiles_w;
      const size_t offset = first * out_size;
      output_transform_backward(&g, output_grad + offset, g.relu ? output + offset : NULL, count,
                                dm, bias_grad, ty0, rows, w.q);
      input_transform(&g, input + first * g.in_stride, count, ty0, rows, v, w.q);
      const int accumulate = first > 0 || ty0 > 0;  // the thread's first block writes dU
      gradient_products(k, &g, 16, count * tiles, u, v, dm, w.t, u_grad, accumulate,
                        input_grad ? v : NULL);
      if (!input_grad) continue;
      for (int i = 0; i < count; i++)
        input_transform_backward(&g, v + i * tiles, input_grad + (first + i) * g.in_stride, ty0, rows,
                                 w.q);
    }
  }
}

// MARK: - Direct weight gradient (few input channels)

/// Output channels a pass of the direct weight gradient takes at most.
enum { GRAD_CHANNELS_MAX = 3 };

/// Floats per row of the staged input planes: a zero, the row, zeros up to the last vector's reach.
INLINE int staged_input_width(int width) { return round16(width) + 16; }

/// scratch[ci · plane + (y + 1) · pw + 1 + x] = input[ci][y][x] for one image: its planes with a
/// zero border (zeroed once: the border and the columns past the row stay 0).
INLINE void stage_input(const ck_conv_shape *s, const float *image, float *scratch) {
  const int width = s->width, pw = staged_input_width(width);
  const size_t plane = (size_t)(s->height + 2) * pw, pixels = (size_t)s->height * width;
  for (int ci = 0; ci < s->in_channels; ci++)
    for (int y = 0; y < s->height; y++)
      memcpy(scratch + ci * plane + (size_t)(y + 1) * pw + 1,
             image + ci * pixels + (size_t)y * width, sizeof(float) * (size_t)width);
}

/// With the ReLU, image `image`'s ReLU mask (NULL without the ReLU or without a mask: the
/// outputs are read instead).
INLINE const uint16_t *relu_words(const ck_conv_shape *s, const uint16_t *relu_mask, int image) {
  if (!s->relu || !relu_mask) return NULL;
  return relu_mask + (size_t)image * ck_direct_relu_mask_words(s);
}

/// d, output channel co's dY at row y, columns x … x + 15 (x a multiple of 16; `left` of them in
/// the row), masked by the ReLU: by the image's mask where there is one, else by the outputs from
/// column x on (`out`; NULL without the ReLU: d as it is). For the staged kernel's first pass
/// (weight_grad_inline keeps its own loads in its loop: through this helper its AVX-512 pass
/// looked slower, 8.5 against 10.0 ms, best of three training profiles on a noisy host).
INLINE v16 relu_masked(const ck_conv_shape *s, v16 d, const uint16_t *mask, int co, int y, int x,
                       const float *out, int left) {
  if (mask) return select(lanes_of_bits(mask[direct_mask_word(s, co, y, x)]), d);
  if (!out) return d;
  const v16 o = left >= 16 ? load(out) : load_first(out, left, 0.0f);
  return select(o > zero(), d);
}

/// dW[co][ci][ky][kx] += Σ over pixels of dY[co][y][x] · x[ci][y + ky − 1][x + kx − 1] and
/// dbias[co] += Σ dY[co] (dY masked by the ReLU), 16 columns at a time: for each group of up to 3
/// output channels and each input channel, 27 vector accumulators (channel × tap) sharing each
/// input load, reduced at the end; the masked dY of the group's channels loaded for each input
/// channel (from the L2 after the first). For instruction sets with 32 registers of 16 floats
/// (AVX-512): there the 27 accumulators, 3 gradients and an input fit, and the pass is about as
/// fast as the memory brings dY and the ReLU's mask (or the outputs) in.
INLINE void weight_grad_inline(const ck_conv_shape *s, const float *input, const float *output,
                               const uint16_t *relu_mask, const float *output_grad,
                               float *weight_grad, float *bias_grad, int images, float *scratch) {
  const int cin = s->in_channels, cout = s->out_channels, height = s->height, width = s->width;
  const int pw = staged_input_width(width);
  const size_t plane = (size_t)(height + 2) * pw, pixels = (size_t)height * width;
  memset(scratch, 0, sizeof(float) * (size_t)cin * plane);
  for (int image = 0; image < images; image++) {
    stage_input(s, input + (size_t)image * cin * pixels, scratch);
    for (int co0 = 0; co0 < cout; co0 += 3) {
      const int group = min_int(3, cout - co0);
      const float *grad = output_grad + ((size_t)image * cout + co0) * pixels;
      const uint16_t *mask = relu_words(s, relu_mask, image);
      const float *out = s->relu && !mask ? output + ((size_t)image * cout + co0) * pixels : NULL;
      v16 bias_sum[3] = {zero(), zero(), zero()};
      for (int ci = 0; ci < cin; ci++) {
        v16 acc[27];
        for (int t = 0; t < 27; t++) acc[t] = zero();
        for (int y = 0; y < height; y++) {
          for (int x0 = 0; x0 < width; x0 += 16) {
            const size_t at = (size_t)y * width + x0;
            // The masked output gradients of the group's channels (0 for missing ones).
            v16 g[3];
#pragma clang loop unroll(full)
            for (int c = 0; c < 3; c++) {
              g[c] = zero();
              if (c >= group) continue;
              v16 o, unused;
              if (x0 + 16 <= width) {
                g[c] = load(grad + c * pixels + at);
                if (out) o = load(out + c * pixels + at);
              } else {
                load_partial(grad + c * pixels + at, width - x0, &g[c], &unused);
                if (out) load_partial(out + c * pixels + at, width - x0, &o, &unused);
              }
              if (out) g[c] = select(o > zero(), g[c]);
              if (mask)
                g[c] = select(lanes_of_bits(mask[direct_mask_word(s, co0 + c, y, x0)]), g[c]);
              if (ci == 0) bias_sum[c] += g[c];
            }
            const float *p = scratch + (size_t)ci * plane + (size_t)y * pw + x0;
#pragma clang loop unroll(full)
            for (int ky = 0; ky < 3; ky++)
#pragma clang loop unroll(full)
              for (int kx = 0; kx < 3; kx++) {
                v16 x = load(p + (size_t)ky * pw + kx);
#pragma clang loop unroll(full)
                for (int c = 0; c < 3; c++) acc[c * 9 + ky * 3 + kx] += g[c] * x;
              }
          }
        }
        for (int c = 0; c < group; c++)
          for (int t = 0; t < 9; t++)
            weight_grad[((size_t)(co0 + c) * cin + ci) * 9 + t] += horizontal_sum(acc[c * 9 + t]);
      }
      for (int c = 0; c < group; c++) bias_grad[co0 + c] += horizontal_sum(bias_sum[c]);
    }
  }
}

/// g[c][y][x] = dY[co + c][y][x] for one row y, 0 where the ReLU output is 0 (by the image's
/// mask, or else its outputs, when not NULL) and for x ≥ width, 0 for count ≤ c < C (g: C planes
/// `plane` floats apart, rows round16(width) floats apart); bias[c] += the row's sum. grads,
/// outputs: one image's [Cout, H, W]; mask: its ReLU mask (ck_direct_relu_mask_words).
INLINE void stage_gradient_row(const int C, const ck_conv_shape *s, const float *grads,
                               const float *outputs, const uint16_t *mask, int co, int count,
                               int y, float *g, size_t plane, v16 *bias) {
  const int width = s->width, gw = round16(width);
  const size_t pixels = (size_t)s->height * width;
  for (int c = 0; c < C; c++) {
    float *target = g + c * plane + (size_t)y * gw;
    if (c >= count) {
      memset(target, 0, sizeof(float) * (size_t)gw);
      continue;
    }
    const size_t at = (size_t)(co + c) * pixels + (size_t)y * width;
    const float *grad = grads + at, *out = outputs ? outputs + at : NULL;
    for (int x0 = 0; x0 < gw; x0 += 16) {
      const int left = width - x0;
      const v16 d = left >= 16 ? load(grad + x0) : load_first(grad + x0, left, 0.0f);
      const v16 masked = relu_masked(s, d, mask, co + c, y, x0, out ? out + x0 : NULL, left);
      bias[c] += masked;
      store(target + x0, masked);
    }
  }
}

/// sums[c][kx] = Σ over y, x of g[c][y][x] · rows[y · pw + x + kx] for c < C, kx < 3 (g: C
/// planes of staged output gradients, rows from `rows` on pw floats apart), in 8-float vectors;
/// with STAGE, each row of g is first staged (stage_gradient_row).
INLINE void kernel_row_sums(const int C, const int STAGE, const ck_conv_shape *s,
                            const float *grads, const float *outputs, const uint16_t *mask, int co,
                            int count, v16 *bias, const float *rows, float *g, size_t grad_plane,
                            float sums[][3]) {
  const int pw = staged_input_width(s->width), gw = round16(s->width);
  v8 acc[GRAD_CHANNELS_MAX][3];
#pragma clang loop unroll(full)
  for (int c = 0; c < C; c++) acc[c][0] = acc[c][1] = acc[c][2] = (v8){0};
  for (int y = 0; y < s->height; y++) {
    if (STAGE) stage_gradient_row(C, s, grads, outputs, mask, co, count, y, g, grad_plane, bias);
    const float *row = rows + (size_t)y * pw, *grad_row = g + (size_t)y * gw;
    for (int x0 = 0; x0 < gw; x0 += 8) {
      v8 d[GRAD_CHANNELS_MAX];
#pragma clang loop unroll(full)
      for (int c = 0; c < C; c++) d[c] = load8(grad_row + c * grad_plane + x0);
#pragma clang loop unroll(full)
      for (int kx = 0; kx < 3; kx++) {
        const v8 x = load8(row + x0 + kx);
#pragma clang loop unroll(full)
        for (int c = 0; c < C; c++) acc[c][kx] += d[c] * x;
      }
    }
  }
  for (int c = 0; c < C; c++)
    for (int kx = 0; kx < 3; kx++) sums[c][kx] = horizontal_sum8(acc[c][kx]);
}

/// The direct weight gradient for instruction sets whose registers hold 8 floats (AVX2: 16 of
/// them, where weight_grad_inline's 27 accumulators of 16 floats would take 54 and spill). Each
/// pass takes C output channels and one kernel row of one input channel (kernel_row_sums): C × 3
/// accumulators of 8 floats, C gradients and an input (AVX2, C = 3: 13 registers). The masked dY
/// of the C channels is staged row by row in the first of the 3 · Cin passes and read back from
/// the L2 by the others. VGG-16's first layer at 224 px, batch 8, two threads, AVX2 (on Zen 4):
/// 16.7–17.9 → 11.3–11.9 ms in the training profile (the memory's floor for dY and the outputs,
/// 206 MB, is about 10).
INLINE void weight_grad_staged(const int C, const ck_conv_shape *s, const float *input,
                               const float *output, const uint16_t *relu_mask,
                               const float *output_grad, float *weight_grad, float *bias_grad,
                               int images, float *scratch) {
  const int cin = s->in_channels, cout = s->out_channels, height = s->height, width = s->width;
  const int pw = staged_input_width(width), gw = round16(width);
  const size_t plane = (size_t)(height + 2) * pw, pixels = (size_t)height * width;
  const size_t grad_plane = (size_t)height * gw;
  float *g = scratch + (size_t)cin * plane;
  memset(scratch, 0, sizeof(float) * (size_t)cin * plane);
  for (int image = 0; image < images; image++) {
    stage_input(s, input + (size_t)image * cin * pixels, scratch);
    const float *grads = output_grad + (size_t)image * cout * pixels;
    const uint16_t *mask = relu_words(s, relu_mask, image);
    const float *outputs = s->relu && !mask ? output + (size_t)image * cout * pixels : NULL;
    for (int co0 = 0; co0 < cout; co0 += C) {
      const int group = min_int(C, cout - co0);
      v16 bias[GRAD_CHANNELS_MAX] = {zero(), zero(), zero()};
      for (int ci = 0; ci < cin; ci++)
        for (int ky = 0; ky < 3; ky++) {
          float sums[GRAD_CHANNELS_MAX][3];
          const float *rows = scratch + (size_t)ci * plane + (size_t)ky * pw;
          if (ci == 0 && ky == 0)
            kernel_row_sums(C, 1, s, grads, outputs, mask, co0, group, bias, rows, g, grad_plane,
                            sums);
          else
            kernel_row_sums(C, 0, s, NULL, NULL, NULL, co0, group, NULL, rows, g, grad_plane, sums);
          for (int c = 0; c < group; c++)
            for (int kx = 0; kx < 3; kx++)
              weight_grad[((size_t)(co0 + c) * cin + ci) * 9 + 3 * ky + kx] += sums[c][kx];
        }
      for (int c = 0; c < group; c++) bias_grad[co0 + c] += horizontal_sum(bias[c]);
    }
  }
}

size_t ck_conv3x3_weight_grad_scratch(const ck_conv_shape *shape) {
  return (size_t)shape->in_channels * (size_t)(shape->height + 2) *
             (size_t)staged_input_width(shape->width) +
         (size_t)GRAD_CHANNELS_MAX * (size_t)shape->height * (size_t)round16(shape->width);
}

// MARK: - Weight transform

/// G x for a 3-vector x (of vectors), G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1]: out[0 … 3].
INLINE void weight_rows(const v16 x[3], v16 out[4]) {
  const v16 half = splat(0.5f);
  out[0] = x[0];
  out[1] = half * (x[0] + x[1] + x[2]);
  out[2] = half * (x[0] - x[1] + x[2]);
  out[3] = x[2];
}

CK_WEIGHT_TRANSFORM(ck_winograd_weights, 4, weight_rows)

/// Gᵀ x for a 4-vector x (of vectors): [x0 + ½(x1 + x2), ½(x1 − x2), ½(x1 + x2) + x3] (weight_rows'
/// adjoint).
INLINE void adjoint_weight_rows(const v16 x[4], v16 out[3]) {
  const v16 half = splat(0.5f);
  out[0] = x[0] + half * (x[1] + x[2]);
  out[1] = half * (x[1] - x[2]);
  out[2] = half * (x[1] + x[2]) + x[3];
}

INLINE void winograd_weights_backward(const float *u_grad, int parts, size_t part_stride,
                                      int out_channels, int in_channels, int co_begin, int co_end,
                                      float *weight_grad) {
  add_weight_gradients(4, adjoint_weight_rows, u_grad, parts, part_stride, out_channels,
                       in_channels, co_begin, co_end, weight_grad);
}

CK_INSTANTIATE(ck_winograd_weights_backward,
               (const float *u_grad, int parts, size_t part_stride, int out_channels,
                int in_channels, int co_begin, int co_end, float *weight_grad),
               (u_grad, parts, part_stride, out_channels, in_channels, co_begin, co_end,
                weight_grad),
               winograd_weights_backward)

// MARK: - Instantiations and dispatch

typedef void (*forward_fn)(const ck_conv_shape *, const float *, const float *, const float *,
                           float *, int, int, int, int, int, float *);
typedef void (*backward_fn)(const ck_conv_shape *, const float *, const float *,
                            const float *, const float *, float *, float *, float *, int, float *);
typedef void (*weight_grad_fn)(const ck_conv_shape *, const float *, const float *,
                               const uint16_t *, const float *, float *, float *, int, float *);

#define INSTANTIATE(NAME, TARGET, BLOCKING, GRAD_STAGED)                                           \
  TARGET static void forward_##NAME(const ck_conv_shape *s, const float *u, const float *bias,     \
                                    const float *input, float *output, int images, int row_begin,  \
                                    int row_end, int co_begin, int co_end, float *scratch) {       \
    const blocking k = BLOCKING;                                                                   \
    forward_pass(k, s, u, bias, input, output, images, row_begin, row_end, co_begin, co_end,       \
                 scratch);                                                                         \
  }                                                                                                \
  TARGET static void backward_##NAME(const ck_conv_shape *s, const float *u,                       \
                                     const float *input, const float *output,                      \
                                     const float *output_grad, float *input_grad, float *u_grad,   \
                                     float *bias_grad, int images, float *scratch) {               \
    const blocking k = BLOCKING;                                                                   \
    backward_pass(k, s, u, input, output, output_grad, input_grad, u_grad, bias_grad, images,      \
                  scratch);                                                                        \
  }                                                                                                \
  TARGET static void weight_grad_##NAME(const ck_conv_shape *s, const float *input,                \
                                        const float *output, const uint16_t *relu_mask,            \
                                        const float *output_grad, float *weight_grad,              \
                                        float *bias_grad, int images, float *scratch) {            \
    if (GRAD_STAGED > 0)                                                                           \
      weight_grad_staged(GRAD_STAGED, s, input, output, relu_mask, output_grad, weight_grad,       \
                         bias_grad, images, scratch);                                              \
    else                                                                                           \
      weight_grad_inline(s, input, output, relu_mask, output_grad, weight_grad, bias_grad, images, \
                         scratch);                                                                 \
  }

// GRAD_STAGED: the output channels a pass of weight_grad_staged takes (registers of 8 floats or
// fewer), or 0 for weight_grad_inline (AVX-512).
INSTANTIATE(generic, , BLOCKING_BASELINE, 1)

#if defined(__x86_64__)
INSTANTIATE(avx2, CK_AVX2, BLOCKING_AVX2, 3)
INSTANTIATE(avx512, CK_AVX512, BLOCKING_AVX512, 0)
#endif

/// One instruction set's passes.
typedef struct {
  forward_fn forward;
  backward_fn backward;
  weight_grad_fn weight_grad;
} variant;

static int best_isa(void) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return CK_ISA_AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CK_ISA_AVX2;
#endif
  return CK_ISA_GENERIC;
}

/// -1 until first asked.
static atomic_int chosen_isa = -1;

int ck_isa(void) {
  int isa = atomic_load(&chosen_isa);
  if (isa < 0) {
    isa = best_isa();
    atomic_store(&chosen_isa, isa);
  }
  return isa;
}

void ck_set_isa(int level) {
  int best = best_isa();
  atomic_store(&chosen_isa, level < 0 || level > best ? best : level);
}

/// The instantiation for the level in use.
static const variant *current_variant(void) {
  static const variant variants[] = {
      {forward_generic, backward_generic, weight_grad_generic},
#if defined(__x86_64__)
      {forward_avx2, backward_avx2, weight_grad_avx2},
      {forward_avx512, backward_avx512, weight_grad_avx512},
#endif
  };
  return &variants[ck_isa()];
}

void ck_winograd_forward(const ck_conv_shape *shape, const float *u, const float *bias,
                         const float *input, float *output, int images, int row_begin,
                         int row_end, int channel_begin, int channel_end, float *scratch) {
  current_variant()->forward(shape, u, bias, input, output, images, row_begin, row_end,
                             channel_begin, channel_end, scratch);
}

void ck_winograd_backward(const ck_conv_shape *shape, const float *u, const float *input,
                          const float *output, const float *output_grad, float *input_grad,
                          float *u_grad, float *bias_grad, int images, float *scratch) {
  current_variant()->backward(shape, u, input, output, output_grad, input_grad, u_grad, bias_grad,
                              images, scratch);
}

void ck_conv3x3_weight_grad(const ck_conv_shape *shape, const float *input, const float *output,
                            const uint16_t *relu_mask, const float *output_grad,
                            float *weight_grad, float *bias_grad, int images, float *scratch) {
  current_variant()->weight_grad(shape, input, output, relu_mask, output_grad, weight_grad,
                                 bias_grad, images, scratch);
}
