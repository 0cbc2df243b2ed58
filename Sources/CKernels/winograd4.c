// Winograd F(4×4, 3×3) convolution, block by block, for one thread's share of a batch: 36
// multiplies per 4×4 output tile where F(2×2, 3×3) (winograd.c) does 64 and direct convolution
// 144.
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
// run by winograd_shared.h's register-blocked loops. The backward pass is the adjoint of each
// stage, as in winograd.c: dM = A dY Aᵀ, dU[ξ] += dM[ξ] · V[ξ]ᵀ, dV[ξ] = U[ξ]ᵀ · dM[ξ],
// dd = B dV Bᵀ (6×6 patches overlapping by 2), dg = Gᵀ dU G.
//
// Blocks, layouts, tile-order planes and instantiation follow winograd.c. Phase planes: a padded
// input row r is split into four planes P_k[j] = row[4j + k − 1] (k = 0…3, zero outside the row),
// so that columns 4tx − 1 … 4tx + 4 of a tile's patch are P0[tx], P1[tx], P2[tx], P3[tx],
// P0[tx + 1], P1[tx + 1]; laid out in tile order, those of 16 consecutive tiles are plain vectors.
// The input transform keeps no phase planes: it splits each padded row in registers and stores
// its six columns already transformed along the row (d B), once per row.

#include "CKernels.h"

#include <limits.h>
#include <string.h>

#include "winograd_shared.h"

// MARK: - Geometry

/// Padded input rows of a block of `rows` tile rows.
INLINE int padded_rows4(int rows) { return 4 * rows + 2; }

size_t ck_winograd4_scratch(const ck_conv_shape *shape) {
  geometry g = make_geometry(shape, 4);
  return scratch_floats(&g, 36);
}

// MARK: - The ReLU's mask

// The forward of a layer with a ReLU also writes, per image, which outputs are above 0: for each
// output channel, row y and phase k (0 … 3: the row's columns 4·tx + k), one bit per tile column
// tx, 16 to a word, as the transforms hold a row (tile-order planes). The backward masks dY with
// it instead of reading the outputs again: 1/32 of their bytes.

/// Whether the forward writes the mask and the backward reads it: with the ReLU or the max-pool.
INLINE int has_mask(const geometry *g) { return g->relu || g->pool; }

/// Words per row and phase: the tile columns in groups of 16.
INLINE int mask_groups(const geometry *g) { return (g->tiles_w + 15) / 16; }

/// Words of one image's mask.
INLINE size_t mask_words(const geometry *g) {
  return (size_t)g->cout * (size_t)g->height * 4 * (size_t)mask_groups(g);
}

/// The word of one image's mask that holds phase k of tile columns tx … tx + 15 (tx a multiple of
/// 16) of output channel co's row y.
INLINE size_t mask_word(const geometry *g, int co, int y, int k, int tx) {
  const size_t row = (size_t)co * (size_t)g->height + (size_t)y;
  return (row * 4 + (size_t)k) * (size_t)mask_groups(g) + (size_t)(tx / 16);
}

size_t ck_winograd4_relu_mask_words(const ck_conv_shape *shape) {
  const geometry g = make_geometry(shape, 4);
  return mask_words(&g);
}

// MARK: - Rows: phase planes, output rows of 4 interleaved tiles

// The transforms below pass on `in_lanes`, their blocking's (winograd_shared.h): whether a row's
// 4 × 16 interleaves run in 128-bit lanes (vector16.h).

/// Floats 4i + k of out[0 … 3] are y[k][i] (i = 0 … 15): 16-float interleaves, or with in_lanes
/// (the blocking's) interleave4_in_lanes.
INLINE void interleave4(const v16 y[4], v16 out[4], int in_lanes) {
  if (in_lanes) {
    interleave4_in_lanes(y, out);
    return;
  }
  v16 a = interleave_low(y[0], y[2]), b = interleave_high(y[0], y[2]);
  v16 c = interleave_low(y[1], y[3]), d = interleave_high(y[1], y[3]);
  out[0] = interleave_low(a, c), out[1] = interleave_high(a, c);
  out[2] = interleave_low(b, d), out[3] = interleave_high(b, d);
}

/// interleave4's inverse: out[k][i] = float 4i + k of in[0 … 3].
INLINE void deinterleave4(const v16 in[4], v16 out[4], int in_lanes) {
  if (in_lanes) {
    deinterleave4_in_lanes(in, out);
    return;
  }
  v16 even = evens(in[0], in[1]), even2 = evens(in[2], in[3]);
  v16 odd = odds(in[0], in[1]), odd2 = odds(in[2], in[3]);
  out[0] = evens(even, even2), out[1] = evens(odd, odd2);
  out[2] = odds(even, even2), out[3] = odds(odd, odd2);
}

/// out[k][i] = row[x0 + 4i + k] for the 16 tiles i (0 past width). WHOLE (a constant): the caller
/// knows x0 + 64 ≤ width, and the partial loads are compiled out.
INLINE void load_quad(const int WHOLE, const float *row, int x0, int width, v16 out[4],
                      int in_lanes) {
  v16 a, b, c, d;
  if (WHOLE || x0 + 64 <= width) {
    a = load(row + x0), b = load(row + x0 + 16), c = load(row + x0 + 32), d = load(row + x0 + 48);
  } else if (x0 + 32 <= width) {
    a = load(row + x0), b = load(row + x0 + 16);
    load_partial(row + x0 + 32, width - x0 - 32, &c, &d);
  } else {
    load_partial(row + x0, width - x0, &a, &b);
    c = d = zero();
  }
  const v16 row_part[4] = {a, b, c, d};
  deinterleave4(row_part, out, in_lanes);
}

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

/// transform_row4's tiles j … j + 15 (j a multiple of 16, 4j < width); WHOLE: their 64 floats lie
/// in the row.
INLINE void row_step4(const int WHOLE, const float *row, int width, float *planes, size_t stride,
                      int j, int in_lanes) {
  const int x0 = 4 * j;
  v16 quad[4];
  load_quad(WHOLE, row, x0, width, quad, in_lanes);
  // row[x0 − 1] and row[x0 + 64]: d_0 of the first of these tiles, d_5 of the last.
  const float before = x0 > 0 ? row[x0 - 1] : 0.0f;
  const float after = x0 + 64 < width ? row[x0 + 64] : 0.0f;
  const v16 d[6] = {from_lane15(splat(before), quad[3]), quad[0], quad[1], quad[2], quad[3],
                    from_lane1(quad[0], splat(after))};
  v16 h[6];
  input_rows(d, h);
  for (int k = 0; k < 6; k++) store(planes + k * stride + j, h[k]);
}

/// A padded row's patch rows, transformed along the row: with d_c[j] = row[4j + c − 1] (c = 0 … 5;
/// 0 outside the row, and row may be NULL) the row's part of tile j's patch, planes[k · stride + j]
/// = (Bᵀ d[j])_k, the row of d B, for j < pw (a multiple of 16). d_1 … d_4 are row[4j … 4j + 3]
/// (deinterleaved from four vectors); d_0[j] = d_4[j − 1] and d_5[j] = d_1[j + 1] are d_4 and d_1
/// shifted by one tile, the float they take from the neighbouring 16 tiles read on its own. Tiles
/// past the row are written as zeros without a transform. (The neighbours' vectors were loaded a
/// step ahead and kept in registers: at AVX2, whose 16 do not hold a step's, 25 of its 97
/// instructions moved vectors to and from the stack. With tile_planes4's shorter rows, counted with
/// callgrind (one image, AVX2): the input transform's instructions 18–22% fewer at VGG-16's 224 to
/// 28 px and 26% at 14; the whole forward's at 224 px, 64 → 64, 2.5%.) Each padded row is so
/// transformed once, where a whole 6 × 6 transform per tile transforms rows 4ty + 3 and 4ty + 4
/// twice (two tile rows' patches hold them) and holds 36 values between its two passes, more than
/// the 32 registers. Two threads, 4 images each, the variants alternating in one process, AVX-512:
/// VGG-16's 224-px forward (64 → 64, with its pool) 50.4 → 45.8 ms.
INLINE void transform_row4(const float *row, int width, float *planes, size_t stride, int pw,
                           int in_lanes) {
  if (!row) {  // a padding row
    for (int k = 0; k < 6; k++) memset(planes + k * stride, 0, sizeof(float) * (size_t)pw);
    return;
  }
  int j = 0;
  for (; j < pw && 4 * j + 64 <= width; j += 16)
    row_step4(1, row, width, planes, stride, j, in_lanes);
  if (j < pw && 4 * j < width) row_step4(0, row, width, planes, stride, j, in_lanes), j += 16;
  // Tiles from j on lie past the row (4j ≥ width): the padding of the products' vectors, whose
  // values no output reads. (A padding row in this loop, width 0, took 0.4% more instructions in
  // the forward than its own memset.)
  for (; j < pw; j += 16)
    for (int k = 0; k < 6; k++) store(planes + k * stride + j, zero());
}

/// row[x0 + 4i + k] = y[k][i] for the 16 tiles i, dropping columns ≥ width.
INLINE void store_quad(float *row, int x0, int width, const v16 y[4], int in_lanes) {
  v16 out[4];
  interleave4(y, out, in_lanes);
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

/// Tile-order planes (winograd.c explains them) of one channel's plane, padded rows
/// 4·ty0 − 1 … 4·(ty0 + rows): padded row p = 4j + s (s = 0 … 3) of tile row j gives the six
/// planes q[s][k] (k = 0 … 5) of its patch rows transformed, (d B)_k (transform_row4). Patch row r
/// (0 … 5) of tiles t … t + 15 is then q[r & 3][k][t + (r >> 2) · tiles_w …]. Each row's planes
/// run on into the next rows' (written after it, and for the last into the spare floats), as far
/// as input_columns4 reads them: its vectors of 16 tiles end at round16(rows · tiles_w), a plane's
/// last row is read tiles_w further on. The same rows of `next` (the plane transformed next, or
/// NULL) are asked for as it goes (prefetch_row).
INLINE void tile_planes4(const geometry *g, const float *plane, int ty0, int rows, float *q,
                         const float *next, int in_lanes) {
  const int tw = g->tiles_w;
  const size_t cw = (size_t)g->compact;
  // A row's planes from its first tile: tiles_w, and for the last row the vectors' padding
  // (transform_row4 measures the gain). Rows were transformed to plane_width, round16(tiles_w) +
  // 16: at 224 px 80 tiles for 56, at 56 and 14 px 32 for 14 and 4.
  const int pw = round16(tw + round16(rows * tw) - rows * tw);
  for (int p = 0; p < padded_rows4(rows); p++) {
    const int y = 4 * ty0 - 1 + p;
    prefetch_row(0, g, next, y);
    float *target = q + (size_t)(p & 3) * 6 * cw + (size_t)(p >> 2) * tw;
    transform_row4(image_row(g, plane, y), g->width, target, cw, pw, in_lanes);
  }
}

/// Bᵀ (d B) down each of the six columns of the patches in the planes q (tile_planes4) of one
/// channel's tile rows (rows of them), for the block's tiles from `at` on, into that channel's rows
/// of V (target) in strips (store_in_strips; STARTS: at is a multiple of 16, so every store starts
/// a strip).
INLINE void input_columns4(const geometry *g, int rows, int at, float *target, const float *q,
                           const int STARTS) {
  const int tw = g->tiles_w, tiles = rows * tw;
  const size_t cw = (size_t)g->compact;
  const size_t strip = (size_t)(g->cin + 1) * 16, position = (size_t)(g->cin + 1) * g->ld;
  for (int t = 0; t < tiles; t += 16) {
    for (int c = 0; c < 6; c++) {
      v16 column[6], out[6];
      for (int r = 0; r < 6; r++)
        column[r] = load(q + (size_t)((r & 3) * 6 + c) * cw + t + (r >> 2) * tw);
      input_rows(column, out);
      for (int k = 0; k < 6; k++)
        store_in_strips(STARTS, target + (6 * k + c) * position, strip, at + t, out[k]);
    }
  }
}

/// V[ξ] = (Bᵀ d B)[ξ] of input channel ci for tile rows ty0 … ty0 + rows − 1 of one image (`image`:
/// its first channel's plane), into the block's tiles from `at` on, 16 tiles at a time in tile
/// order: d B row by row into the planes (tile_planes4), then Bᵀ (d B) down each of its six
/// columns. V[ξ] is kept in strips of 16 tiles (store_in_strips, winograd_shared.h); a part's last
/// vector runs on into the tiles of the part after it, written after it. q: 24 tile-order planes;
/// next: the plane transformed next (prefetch_row), or NULL.
INLINE void input_part4(const geometry *g, const float *image, int ci, int ty0, int rows, int at,
                        float *v, float *q, const float *next, int in_lanes) {
  const size_t plane = (size_t)g->height * g->width;
  tile_planes4(g, image + ci * plane, ty0, rows, q, next, in_lanes);
  // A part that starts a strip (every part at 224 and 112 px) stores whole strip rows only. One
  // thread, 4 images of 224 px, 64 → 64 channels, AVX2 (Zen 3): the input transform 11.2–12.3 →
  // 9.3–9.8 ms.
  if ((at & 15) == 0)
    input_columns4(g, rows, at, v + (size_t)ci * 16, q, 1);
  else
    input_columns4(g, rows, at, v + (size_t)ci * 16, q, 0);
}

/// V[ξ] for every tile of the block (tile rows ty0 … ty0 + rows − 1 of `count` images side by
/// side, image i's tiles from i · rows · tiles_w) and input channel (input_part4).
INLINE void input_transform4(const geometry *g, const float *images, int count, int ty0, int rows,
                             float *v, float *q, int in_lanes) {
  const size_t plane = (size_t)g->height * g->width;
  for (int ci = 0; ci < g->cin; ci++)
    for (int i = 0; i < count; i++)
      input_part4(g, images + i * g->in_stride, ci, ty0, rows, i * rows * g->tiles_w, v, q,
                  next_plane(images, g->in_stride, plane, i, count, ci, g->cin), in_lanes);
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

/// The geometry of the stored output planes (for prefetch_row): with the pool, the pooled map's.
INLINE geometry output_geometry(const geometry *g) {
  geometry out = *g;
  if (g->pool) out.height /= 2, out.width /= 2;
  return out;
}

/// Floats of one output plane as the layer stores it: H · W, or with the max-pool (H/2) · (W/2).
INLINE size_t output_plane(const geometry *g) {
  const geometry out = output_geometry(g);
  return (size_t)out.height * (size_t)out.width;
}

/// The 2 × 2 max-pool of one output channel's rows of the block, from its 16 tile-order planes y
/// (output_transform4): pooled row 2·ty + i (i = 0, 1) of tile row ty, columns 2·tx + h (h = 0,
/// 1), is the largest of outputs (4ty + 2i + a, 4tx + 2h + b), a, b = 0, 1 (a window lies in one
/// tile), written into `pooled` [H/2, W/2]. Where mask is not NULL, its bits of those outputs mark
/// the one each window takes (the first largest in row-major order, as MaxPool2D) if it is above
/// 0 (without the ReLU: always): the outputs the backward hands the pooled gradient to.
/// `next`: the pooled plane written next (prefetch_row), or NULL.
INLINE void pool_rows4(const geometry *g, const float *y, float *pooled, uint16_t *mask, int co,
                       const float *next, int ty0, int rows) {
  const geometry out = output_geometry(g);
  const int tw = g->tiles_w;
  const size_t cw = (size_t)g->compact;
  for (int tr = 0; tr < rows; tr++)
    for (int i = 0; i < 2 && 2 * (ty0 + tr) + i < out.height; i++) {
      const int py = 2 * (ty0 + tr) + i, top = 4 * (ty0 + tr) + 2 * i;
      prefetch_row(1, &out, next, py);
      for (int tx = 0; tx < tw; tx += 16) {
        // Plane 4j + k holds output (4ty + j, 4tx + k): the window's top row is j = 2i.
        const float *s = y + (size_t)(8 * i) * cw + tr * tw + tx;
        v16 best[2];
        uint16_t taken[2][4];  // [a][k]: output (top + a, 4tx + k) is its window's
        for (int h = 0; h < 2; h++) {
          const float *window = s + (size_t)(2 * h) * cw;
          const v16 x00 = load(window), x01 = load(window + cw);
          const v16 x10 = load(window + 4 * cw), x11 = load(window + 5 * cw);
          // A later candidate is taken only where it is strictly larger.
          const v16i take01 = x01 > x00;
          v16 m = __builtin_elementwise_max(x00, x01);
          const v16i take10 = x10 > m;
          m = __builtin_elementwise_max(m, x10);
          const v16i take11 = x11 > m;
          m = __builtin_elementwise_max(m, x11);
          const v16i keep = g->relu ? m > zero() : ~(v16i){0};
          taken[0][2 * h] = lane_bits(keep & ~take01 & ~take10 & ~take11);
          taken[0][2 * h + 1] = lane_bits(keep & take01 & ~take10 & ~take11);
          taken[1][2 * h] = lane_bits(keep & take10 & ~take11);
          taken[1][2 * h + 1] = lane_bits(keep & take11);
          best[h] = m;
        }
        float *row = pooled + (size_t)py * out.width;
        store_row_part(row, 2 * tx, out.width, interleave_low(best[0], best[1]), 0);
        store_row_part(row, 2 * tx + 16, out.width, interleave_high(best[0], best[1]), 0);
        if (mask)
          for (int a = 0; a < 2; a++)
            for (int k = 0; k < 4; k++) mask[mask_word(g, co, top + a, k, tx)] = taken[a][k];
      }
    }
}

/// Output planes co_begin … co_end − 1 of the block's tiles: Y = Aᵀ M A + bias, then the ReLU
/// when asked, 16 tiles at a time in tile order into 16 tile-order planes y (y[4j + k][t]: output
/// (4ty + j, 4tx + k) of tile t), interleaved into the rows after (or, with the pool, pooled:
/// pool_rows4); and, where mask is not NULL, the image's mask of those rows.
INLINE void output_transform4(const geometry *g, const float *m, const float *bias, float *image,
                              uint16_t *mask, int ty0, int rows, int co_begin, int co_end,
                              float *y, int in_lanes) {
  const int tw = g->tiles_w, tiles = rows * tw, width = g->width;
  const size_t stride = position_stride(g->cout, g->ld), cw = (size_t)g->compact;
  for (int co = co_begin; co < co_end; co++) {
    float *plane = image + (size_t)co * output_plane(g);
    const float *source = m + (size_t)co * g->ld;
    const v16 b = splat(bias[co]);
    for (int t = 0; t < tiles; t += 16) {
      // Aᵀ M down each column c.
      v16 top[4][6];
      for (int c = 0; c < 6; c++) {
        v16 column[6], out[4];
        for (int i = 0; i < 6; i++) {
          const float *p = source + t + (6 * i + c) * stride;
          column[i] = load(p);
          if (co + 1 < co_end) prefetch_next_row(p, g->ld);
        }
        output_rows(column, out);
        for (int j = 0; j < 4; j++) top[j][c] = out[j];
      }
      // (·) A along each row j.
      for (int j = 0; j < 4; j++) {
        v16 out[4];
        output_rows(top[j], out);
        for (int k = 0; k < 4; k++) {
          out[k] += b;
          if (g->relu) out[k] = __builtin_elementwise_max(out[k], zero());
          store(y + (4 * j + k) * cw + t, out[k]);
        }
      }
    }
    // The next channel's rows are asked for as these are written (prefetch_row).
    const float *next = next_plane(image, 0, output_plane(g), 0, 1, co, co_end);
    if (g->pool) {
      pool_rows4(g, y, plane, mask, co, next, ty0, rows);
      continue;
    }
    for (int tr = 0; tr < rows; tr++) {
      const int y0 = 4 * (ty0 + tr);
      for (int j = 0; j < 4 && y0 + j < g->height; j++) {
        prefetch_row(1, g, next, y0 + j);
        for (int tx = 0; tx < tw; tx += 16) {
          const float *s = y + 4 * j * cw + tr * tw + tx;
          v16 quad[4] = {load(s), load(s + cw), load(s + 2 * cw), load(s + 3 * cw)};
          store_quad(plane + (size_t)(y0 + j) * width, 4 * tx, width, quad, in_lanes);
          if (mask)
            for (int k = 0; k < 4; k++)
              mask[mask_word(g, co, y0 + j, k, tx)] = positive_bits(quad[k]);
        }
      }
    }
  }
}

// MARK: - The pass over a thread's images

/// One part of a block: tile rows ty0 … ty0 + rows − 1 of image `image`, its tiles from `at` on.
typedef struct {
  int image, ty0, rows, at;
} block_part;

/// The parts of the block of `rows` (< tiles_h) tile rows from row `first` of a thread's images'
/// rows taken one after another (image i's row ty is row i · tiles_h + ty): the rest of one image,
/// then the first rows of the next (at most two parts). Returns how many.
INLINE int block_parts(const geometry *g, int first, int rows, block_part parts[2]) {
  int count = 0, at = 0;
  while (rows > 0) {
    const int image = first / g->tiles_h, ty0 = first % g->tiles_h;
    const int taken = min_int(rows, g->tiles_h - ty0);
    parts[count++] = (block_part){image, ty0, taken, at};
    at += taken * g->tiles_w, first += taken, rows -= taken;
  }
  return count;
}

/// Whether a forward over every tile row of several images runs its blocks on from one image into
/// the next (block_parts): blocks of part of an image, g.rows not dividing an image's tile rows
/// (Conv2D.leastPaddedRows counts such blocks' columns the same way when it sizes them).
/// Each block then fills g.rows · tiles_w tiles, where the blocks of one image leave a short one
/// at its end whose last vector of columns is partly padding: VGG-16's 56-px maps (14 tile rows
/// of 14 tiles) in blocks of 8 rows took 112 and 84 tiles an image, computed as 112 and 96
/// columns, and now take 112 every block (4 images: 784 tiles in 784 columns, against 832; on a
/// Zen 5, whose half vectors of 8 floats cost as much as whole ones, the padding was 6% of the
/// products). Zen 5, two threads on their own 4 images, alternating in one process, best of 8:
/// AVX-512 128 → 256 10.70–11.05 → 10.45–10.55 ms, 256 → 256 21.16–21.56 → 20.88–21.02; AVX2 1–2%
/// faster. Training profile (AVX-512), four alternating rounds, each layer's best: conv4 11.88 →
/// 10.98 ms, conv5 23.70 → 22.49, conv6 23.02 → 22.62.
INLINE int runs_on(const geometry *g, int images, int row_begin, int row_end) {
  return images > 1 && row_begin == 0 && row_end == g->tiles_h && g->rows < g->tiles_h &&
         g->tiles_h % g->rows != 0;
}

/// Tile rows row_begin … row_end − 1 of each image in blocks of g.rows (running on from one image
/// into the next: runs_on), or (small maps) g.group whole images side by side in one block; output
/// channels co_begin … co_end − 1.
/// Only the blocks block_begin … block_end − 1 of the pass, counted in the order it runs them
/// (ck_winograd4_forward_blocks), are computed: threads may claim blocks one at a time.
INLINE void forward4_pass(const blocking k, const ck_conv_shape *shape, const float *u,
                          const float *bias, const float *input, float *output,
                          uint16_t *relu_mask, int images, int row_begin, int row_end,
                          int co_begin, int co_end, int block_begin, int block_end,
                          float *scratch) {
  const geometry g = make_geometry(shape, 4);
  const workspace w = split_scratch(&g, 36, scratch);
  float *v = w.v, *m = w.m, *q = w.q;
  const size_t out_size = (size_t)g.cout * output_plane(&g);
  const size_t plane = (size_t)g.height * g.width;
  uint16_t *mask = has_mask(&g) ? relu_mask : NULL;
  if (runs_on(&g, images, row_begin, row_end)) {
    const int total = images * g.tiles_h;
    for (int first = 0, block = 0; first < total; first += g.rows, block++) {
      if (block < block_begin || block >= block_end) continue;
      block_part parts[2];
      const int count = block_parts(&g, first, min_int(g.rows, total - first), parts);
      const block_part last = parts[count - 1];
      // Each part asks for its own rows of its image's next channel (next_plane would name the
      // other part's image, whose rows in the block are other rows).
      for (int ci = 0; ci < g.cin; ci++)
        for (int p = 0; p < count; p++) {
          const float *image = input + parts[p].image * g.in_stride;
          input_part4(&g, image, ci, parts[p].ty0, parts[p].rows, parts[p].at, v, q,
                      ci + 1 < g.cin ? image + (ci + 1) * plane : NULL, k.in_lanes);
        }
      forward_products(k, &g, 36, last.at + last.rows * g.tiles_w, co_begin, co_end, u, v, m);
      for (int p = 0; p < count; p++) {
        const int i = parts[p].image;
        output_transform4(&g, m + parts[p].at, bias, output + i * out_size,
                          mask ? mask + i * mask_words(&g) : NULL, parts[p].ty0, parts[p].rows,
                          co_begin, co_end, q, k.in_lanes);
      }
    }
    return;
  }
  int block = 0;
  for (int first = 0; first < images; first += g.group) {
    const int count = min_int(g.group, images - first);
    for (int ty0 = row_begin; ty0 < row_end; ty0 += g.rows, block++) {
      if (block < block_begin || block >= block_end) continue;
      const int rows = min_int(g.rows, row_end - ty0), tiles = rows * g.tiles_w;
      input_transform4(&g, input + first * g.in_stride, count, ty0, rows, v, q, k.in_lanes);
      forward_products(k, &g, 36, count * tiles, co_begin, co_end, u, v, m);
      for (int i = 0; i < count; i++)
        output_transform4(&g, m + i * tiles, bias, output + (first + i) * out_size,
                          mask ? mask + (first + i) * mask_words(&g) : NULL, ty0, rows, co_begin,
                          co_end, q, k.in_lanes);
    }
  }
}

#define FORWARD4_PARAMS                                                                            \
  (const ck_conv_shape *shape, const float *u, const float *bias, const float *input,              \
   float *output, uint16_t *relu_mask, int images, int row_begin, int row_end, int channel_begin,  \
   int channel_end, int block_begin, int block_end, float *scratch)
#define FORWARD4_ARGS                                                                              \
  (shape, u, bias, input, output, relu_mask, images, row_begin, row_end, channel_begin,            \
   channel_end, block_begin, block_end, scratch)

/// forward4_pass with one instruction set's register blocking (winograd_shared.h).
#define FORWARD4_WITH(NAME, BLOCKING)                                                              \
  INLINE void NAME FORWARD4_PARAMS {                                                               \
    const blocking k = BLOCKING;                                                                   \
    forward4_pass(k, shape, u, bias, input, output, relu_mask, images, row_begin, row_end,         \
                  channel_begin, channel_end, block_begin, block_end, scratch);                    \
  }
FORWARD4_WITH(forward4_baseline, BLOCKING_BASELINE)
FORWARD4_WITH(forward4_avx2, BLOCKING_AVX2)
FORWARD4_WITH(forward4_avx512, BLOCKING_AVX512)

CK_INSTANTIATE_EACH(ck_winograd4_forward_range, FORWARD4_PARAMS, FORWARD4_ARGS, forward4_baseline,
                    forward4_avx2, forward4_avx512)

void ck_winograd4_forward(const ck_conv_shape *shape, const float *u, const float *bias,
                          const float *input, float *output, uint16_t *relu_mask, int images,
                          int row_begin, int row_end, int channel_begin, int channel_end,
                          float *scratch) {
  ck_winograd4_forward_range(shape, u, bias, input, output, relu_mask, images, row_begin, row_end,
                             channel_begin, channel_end, 0, INT_MAX, scratch);
}

int ck_winograd4_forward_blocks(const ck_conv_shape *shape, int images) {
  const geometry g = make_geometry(shape, 4);
  if (images < 1) return 0;
  if (runs_on(&g, images, 0, g.tiles_h)) return (images * g.tiles_h + g.rows - 1) / g.rows;
  return (images + g.group - 1) / g.group * ((g.tiles_h + g.rows - 1) / g.rows);
}

// MARK: - Backward: transforms of one block

/// A x for a 4-vector x (of vectors), A = (Aᵀ)ᵀ [6 × 4]: out[0 … 5].
INLINE void adjoint_output_rows(const v16 x[4], v16 out[6]) {
  v16 even = x[0] + x[2], odd = x[1] + x[3];
  v16 even4 = x[0] + splat(4.0f) * x[2], odd4 = splat(2.0f) * x[1] + splat(8.0f) * x[3];
  out[0] = x[0];
  out[1] = even + odd;
  out[2] = even - odd;
  out[3] = even4 + odd4;
  out[4] = even4 - odd4;
  out[5] = x[3];
}

/// B x for a 6-vector x (of vectors), B = (Bᵀ)ᵀ [6 × 6]: out[0 … 5].
INLINE void adjoint_input_rows(const v16 x[6], v16 out[6]) {
  const v16 two = splat(2.0f), four = splat(4.0f), five = splat(5.0f);
  v16 a = x[2] - x[1], b = x[4] - x[3];  // for columns 1 and 3
  out[0] = four * x[0];
  out[1] = four * (a + x[5]) + two * b;
  out[2] = -(five * x[0] + four * (x[1] + x[2]) + x[3] + x[4]);
  out[3] = -(a + two * b + five * x[5]);
  out[4] = x[0] + x[1] + x[2] + x[3] + x[4];
  out[5] = x[5];
}

/// out[k][i] = row[x0 + 2i + k / 2] for the 16 tiles i (x0 < width; 0 past width): a pooled
/// row's gradient at the four columns 4i + k its windows cover.
INLINE void load_pooled_quad(const float *row, int x0, int width, v16 out[4]) {
  v16 a, b;
  if (x0 + 32 <= width)
    a = load(row + x0), b = load(row + x0 + 16);
  else
    load_partial(row + x0, width - x0, &a, &b);
  out[0] = out[1] = evens(a, b);
  out[2] = out[3] = odds(a, b);
}

/// dM = A dY Aᵀ of one output channel's tiles of one image from its 16 tile-order planes d of dY
/// (output_transform_backward4), into that channel's rows of dM (target) from tile `at` on, in
/// strips (store_in_strips; STARTS: at is a multiple of 16, so every store starts a strip).
INLINE void dm_columns4(const geometry *g, int tiles, int at, const float *d, float *target,
                        const int STARTS) {
  const size_t strip = (size_t)(g->cout + 1) * 16, position = (size_t)(g->cout + 1) * g->ld;
  const size_t cw = (size_t)g->compact;
  for (int t = 0; t < tiles; t += 16) {
    // A dY down each column k, then (·) Aᵀ along each of the 6 rows.
    v16 columns[4][6];
    for (int k = 0; k < 4; k++) {
      v16 x[4] = {load(d + k * cw + t), load(d + (4 + k) * cw + t), load(d + (8 + k) * cw + t),
                  load(d + (12 + k) * cw + t)};
      adjoint_output_rows(x, columns[k]);
    }
    for (int r = 0; r < 6; r++) {
      v16 x[4] = {columns[0][r], columns[1][r], columns[2][r], columns[3][r]}, out[6];
      adjoint_output_rows(x, out);
      for (int c = 0; c < 6; c++)
        store_in_strips(STARTS, target + (6 * r + c) * position, strip, at + t, out[c]);
    }
  }
}

/// dM = A dY Aᵀ per tile of the block (`count` images side by side, as input_transform4), dY
/// masked where the mask (`masks`: the images' one after another; NULL without ReLU and pool) is
/// clear: the ReLU's output was 0, or with the pool the output is not its window's (dY is then
/// read from the pooled map's gradient: load_pooled_quad); in strips (store_in_strips), for
/// output channels co_begin … co_end − 1; bias_grad[co] += the block's sum of the masked dY
/// (unless bias_grad is NULL).
/// d: 16 tile-order planes of the masked dY (d[4j + k][t]: output (4ty + j, 4tx + k) of tile t).
INLINE void output_transform_backward4(const geometry *g, const float *output_grads,
                                       const uint16_t *masks, int count, float *dm,
                                       float *bias_grad, int ty0, int rows, int co_begin,
                                       int co_end, float *d, int in_lanes) {
  const int tw = g->tiles_w, tiles = rows * tw, width = g->width;
  const geometry out = output_geometry(g);
  const size_t plane_size = output_plane(g), out_size = (size_t)g->cout * plane_size;
  const size_t cw = (size_t)g->compact;
  for (int co = co_begin; co < co_end; co++) {
    float *target = dm + (size_t)co * 16;
    v16 sum = zero();
    for (int i = 0; i < count; i++) {
      const float *grad = output_grads + i * out_size + co * plane_size;
      const uint16_t *mask = masks ? masks + i * mask_words(g) : NULL;
      // The plane read next (prefetch_row): the next image's, or the next channel's first.
      const float *next_grad = next_plane(output_grads, out_size, plane_size, i, count, co, co_end);
      // Tile rows into the planes (a row's last vector runs on into the next, written after it;
      // its lanes past the image are 0).
      for (int tr = 0; tr < rows; tr++)
        for (int j = 0; j < 4; j++) {
          const int y = 4 * (ty0 + tr) + j;
          if (!g->pool || j % 2 == 0) prefetch_row(0, &out, next_grad, g->pool ? y / 2 : y);
          for (int tx = 0; tx < tw; tx += 16) {
            v16 e[4] = {zero(), zero(), zero(), zero()};
            if (y < g->height) {
              if (g->pool)
                load_pooled_quad(grad + (size_t)(y / 2) * out.width, 2 * tx, out.width, e);
              else
                load_quad(0, grad + (size_t)y * width, 4 * tx, width, e, in_lanes);
              if (mask)
                for (int k = 0; k < 4; k++)
                  e[k] = select(lanes_of_bits(mask[mask_word(g, co, y, k, tx)]), e[k]);
            }
            sum += (e[0] + e[1]) + (e[2] + e[3]);
            for (int k = 0; k < 4; k++) store(d + (4 * j + k) * cw + tr * tw + tx, e[k]);
          }
        }
      // As the input transform's columns (input_part4): an image whose tiles start a strip (a
      // block's first, and every one where an image fills whole strips) stores whole strip rows.
      if (((i * tiles) & 15) == 0)
        dm_columns4(g, tiles, i * tiles, d, target, 1);
      else
        dm_columns4(g, tiles, i * tiles, d, target, 0);
    }
    if (bias_grad) bias_grad[co] += horizontal_sum(sum);
  }
}

/// One padded row of the input gradient: row[x] = (or +=, when add) P_k[j] for x = 4j + k − 1 <
/// width, where the phase planes sum the patches of the tile rows that cover the row, `first`
/// and `second` (NULL: none), each six tile-order planes cw floats apart at that tile row holding
/// its patch row r as B dV left it, b[c] (c = 0 … 5), still to be multiplied by Bᵀ along the row:
/// with a = B (Σ b) (the sum first: B is linear, so one row transform for both tile rows),
///   P0[j] = a[0][j] + a[4][j − 1],  P1[j] = a[1][j] + a[5][j − 1],  P2[j] = a[2][j],
///   P3[j] = a[3][j]   (a[k][j] = 0 for j ≥ tw).
/// All in registers, 16 tiles (64 columns) at a time; each vector of the row is written once.
INLINE void merge_row4(float *row, int width, int tw, const float *first, const float *second,
                       size_t cw, int add, int in_lanes) {
  v16 carry4 = zero(), carry5 = zero(), last_before = zero();  // from the previous 16 tiles
  for (int j = 0; 4 * j - 16 < width; j += 16) {
    const v16i lanes = first_lanes(tw - j);
    v16 b[6], a[6];
    for (int c = 0; c < 6; c++) {
      b[c] = select(lanes, load(first + c * cw + j));
      if (second) b[c] += select(lanes, load(second + c * cw + j));
    }
    adjoint_input_rows(b, a);
    v16 p[4] = {a[0] + from_lane15(carry4, a[4]), a[1] + from_lane15(carry5, a[5]), a[2], a[3]};
    carry4 = a[4], carry5 = a[5];
    // y[4i + k] = P_k[j + i] is row[4j − 1 + 4i + k]: interleaved, then one lane down.
    v16 y[4];
    interleave4(p, y, in_lanes);
    if (j > 0) store_row_part(row, 4 * j - 16, width, from_lane1(last_before, y[0]), add);
    for (int q = 0; q < 3; q++)
      store_row_part(row, 4 * j + 16 * q, width, from_lane1(y[q], y[q + 1]), add);
    last_before = y[3];
  }
}

/// The block's share of the input gradient: Σ over its tiles of B dV Bᵀ placed at the tile's 6 × 6
/// patch. Rows shared with the previous block of the image (the first two padded rows when ty0 > 0)
/// are added to what that block wrote; the others are overwritten. Each tile's B dV, row r, column
/// c, goes to tile-order plane a[r][c] (36 planes, cw floats apart), then each padded row is merged
/// from the one or two tile rows whose patches cover it and multiplied by Bᵀ along the row there
/// (merge_rows, merge_row4): once per padded row, where the whole 6 × 6 transform here would do it
/// for each of the 6 patch rows of each tile row (and hold 36 values between its two passes, more
/// than the 32 registers). VGG-16's training profile, AVX-512, 12 alternating rounds, each one's
/// best: the 224-px backward (64 → 64) 99.2 → 94.7 ms.
INLINE void input_transform_backward4(const geometry *g, const float *dv, float *image, int ty0,
                                      int rows, float *a, int in_lanes) {
  const int tiles = rows * g->tiles_w;
  const size_t stride = position_stride(g->cin, g->ld), cw = (size_t)g->compact;
  for (int ci = 0; ci < g->cin; ci++) {
    const float *source = dv + (size_t)ci * g->ld;
    for (int t = 0; t < tiles; t += 16) {
      // Lanes past the block hold the next image's tiles: masked out.
      const v16i lanes = first_lanes(tiles - t);
      // B dV down each column c.
      for (int c = 0; c < 6; c++) {
        v16 x[6], column[6];
        for (int r = 0; r < 6; r++) {
          const float *p = source + t + (6 * r + c) * stride;
          x[r] = select(lanes, load(p));
          if (ci + 1 < g->cin) prefetch_next_row(p, g->ld);
        }
        adjoint_input_rows(x, column);
        for (int r = 0; r < 6; r++) store(a + (6 * r + c) * cw + t, column[r]);
      }
    }
    const size_t plane = (size_t)g->height * g->width;
    merge_rows(4, 6, merge_row4, g, ty0, rows, a, image + ci * plane,
               next_plane(image, 0, plane, 0, 1, ci, g->cin), in_lanes);
  }
}

// MARK: - Backward: the pass over a thread's images

/// Whether the threads of a backward that share out input channels can share one dM, computed
/// once (ck_winograd4_output_grads) instead of by each: the whole batch in one block (whole images
/// side by side) and each image's tiles filling whole vectors, so that each output channel's rows
/// of dM are written by the thread that has the channel alone (store_in_strips then never runs on
/// into a neighbouring row) and no column past the block needs zeroing.
INLINE int dm_shareable(const geometry *g, int images) {
  return images >= 1 && g->rows == g->tiles_h && images <= g->group &&
         (g->tiles_h * g->tiles_w) % 16 == 0;
}

int ck_winograd4_shares_dm(const ck_conv_shape *shape, int images) {
  const geometry g = make_geometry(shape, 4);
  return dm_shareable(&g, images);
}

/// ck_winograd4_output_grads for one instruction set (no products: of the blocking only in_lanes
/// is used).
INLINE void output_grads4(const blocking k, const ck_conv_shape *shape, const uint16_t *relu_mask,
                          const float *output_grad, float *bias_grad, int images, int co_begin,
                          int co_end, float *scratch, float *dm_scratch) {
  const geometry g = make_geometry(shape, 4);
  if (!dm_shareable(&g, images)) return;
  const workspace own = split_scratch(&g, 36, scratch), shared = split_scratch(&g, 36, dm_scratch);
  output_transform_backward4(&g, output_grad, has_mask(&g) ? relu_mask : NULL, images, shared.m,
                             bias_grad, 0, g.tiles_h, co_begin, co_end, own.q, k.in_lanes);
}

#define OUTPUT_GRADS4_PARAMS                                                                       \
  (const ck_conv_shape *shape, const uint16_t *relu_mask, const float *output_grad,                \
   float *bias_grad, int images, int co_begin, int co_end, float *scratch, float *dm_scratch)
#define OUTPUT_GRADS4_ARGS                                                                         \
  (shape, relu_mask, output_grad, bias_grad, images, co_begin, co_end, scratch, dm_scratch)

/// output_grads4 with one instruction set's blocking.
#define OUTPUT_GRADS4_WITH(NAME, BLOCKING)                                                         \
  INLINE void NAME OUTPUT_GRADS4_PARAMS {                                                          \
    const blocking k = BLOCKING;                                                                   \
    output_grads4(k, shape, relu_mask, output_grad, bias_grad, images, co_begin, co_end, scratch,  \
                  dm_scratch);                                                                     \
  }
OUTPUT_GRADS4_WITH(output_grads4_baseline, BLOCKING_BASELINE)
OUTPUT_GRADS4_WITH(output_grads4_avx2, BLOCKING_AVX2)
OUTPUT_GRADS4_WITH(output_grads4_avx512, BLOCKING_AVX512)

CK_INSTANTIATE_EACH(ck_winograd4_output_grads, OUTPUT_GRADS4_PARAMS, OUTPUT_GRADS4_ARGS,
                    output_grads4_baseline, output_grads4_avx2, output_grads4_avx512)

/// As forward4_pass over every tile row: dM, V (then dV), dU += dM · Vᵀ (the first block writes
/// it), dV = Uᵀ · dM, the input gradient (a block's adds to the rows it shares with the previous
/// block of its image, done before it), for input channels channel_begin … channel_end − 1: dM of
/// every output channel (or, with dm_scratch, the dM ck_winograd4_output_grads left there); V,
/// dV, dU's columns and the input gradient of those channels only. u: the forward's U
/// (ck_winograd4_weights).
INLINE void backward4_pass(const blocking k, const ck_conv_shape *shape, const float *u,
                           const float *input, const uint16_t *relu_mask,
                           const float *output_grad, float *input_grad, float *u_grad,
                           float *bias_grad, int images, int channel_begin, int channel_end,
                           float *scratch, float *dm_scratch) {
  geometry g = make_geometry(shape, 4);
  const workspace w = split_scratch(&g, 36, scratch);
  const int shared = dm_scratch && dm_shareable(&g, images);
  float *v = w.v, *dm = shared ? split_scratch(&g, 36, dm_scratch).m : w.m;  // v: V, then dV
  const size_t plane = (size_t)g.height * g.width;
  // A range of the input channels: V, dV and their transposes hold its channels, U's strips from
  // its first on are read; U, dU and the images keep the layer's strides (make_geometry's u_cin,
  // du_ld, in_stride).
  g.cin = channel_end - channel_begin;
  g.ldu = round16(g.cin);
  // dU's strips of 16 channels each hold all 36 positions (gradient_products).
  u += (size_t)(channel_begin / 16) * u_strip(g.cout), u_grad += (size_t)36 * channel_begin;
  input += channel_begin * plane;
  if (input_grad) input_grad += channel_begin * plane;
  const size_t out_size = (size_t)g.cout * output_plane(&g);
  const uint16_t *masks = has_mask(&g) ? relu_mask : NULL;
  if (images <= 0) zero_weight_gradient(&g, 36, u_grad);
  for (int first = 0; first < images; first += g.group) {
    const int count = min_int(g.group, images - first);
    for (int ty0 = 0; ty0 < g.tiles_h; ty0 += g.rows) {
      const int rows = min_int(g.rows, g.tiles_h - ty0), tiles = rows * g.tiles_w;
      const size_t offset = first * out_size;
      if (!shared)
        output_transform_backward4(&g, output_grad + offset,
                                   masks ? masks + first * mask_words(&g) : NULL, count, dm,
                                   bias_grad, ty0, rows, 0, g.cout, w.q, k.in_lanes);
      input_transform4(&g, input + first * g.in_stride, count, ty0, rows, v, w.q, k.in_lanes);
      const int accumulate = first > 0 || ty0 > 0;  // the thread's first block writes dU
      gradient_products(k, &g, 36, count * tiles, u, v, dm, w.t, u_grad, accumulate,
                        input_grad ? v : NULL);
      if (!input_grad) continue;
      for (int i = 0; i < count; i++)
        input_transform_backward4(&g, v + i * tiles, input_grad + (first + i) * g.in_stride, ty0,
                                  rows, w.q, k.in_lanes);
    }
  }
}

#define BACKWARD4_PARAMS                                                                           \
  (const ck_conv_shape *shape, const float *u, const float *input, const uint16_t *relu_mask,      \
   const float *output_grad, float *input_grad, float *u_grad, float *bias_grad, int images,       \
   int channel_begin, int channel_end, float *scratch, float *dm_scratch)
#define BACKWARD4_ARGS                                                                             \
  (shape, u, input, relu_mask, output_grad, input_grad, u_grad, bias_grad, images,                \
   channel_begin, channel_end, scratch, dm_scratch)

/// backward4_pass with one instruction set's register blocking (winograd_shared.h).
#define BACKWARD4_WITH(NAME, BLOCKING)                                                             \
  INLINE void NAME BACKWARD4_PARAMS {                                                              \
    const blocking k = BLOCKING;                                                                   \
    backward4_pass(k, shape, u, input, relu_mask, output_grad, input_grad, u_grad, bias_grad,      \
                   images, channel_begin, channel_end, scratch, dm_scratch);                       \
  }
BACKWARD4_WITH(backward4_baseline, BLOCKING_BASELINE)
BACKWARD4_WITH(backward4_avx2, BLOCKING_AVX2)
BACKWARD4_WITH(backward4_avx512, BLOCKING_AVX512)

CK_INSTANTIATE_EACH(ck_winograd4_backward, BACKWARD4_PARAMS, BACKWARD4_ARGS, backward4_baseline,
                    backward4_avx2, backward4_avx512)

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

CK_WEIGHT_TRANSFORM(ck_winograd4_weights, 6, weight_rows)

/// Gᵀ x for a 6-vector x (of vectors): out[0 … 2] (weight_rows' adjoint).
INLINE void adjoint_weight_rows(const v16 x[6], v16 out[3]) {
  const v16 sixth = splat(1.0f / 6);
  v16 sum12 = x[1] + x[2], sum34 = x[3] + x[4];
  out[0] = splat(0.25f) * x[0] - sixth * sum12 + splat(1.0f / 24) * sum34;
  out[1] = sixth * (x[2] - x[1]) + splat(1.0f / 12) * (x[3] - x[4]);
  out[2] = sixth * (sum34 - sum12) + x[5];
}

INLINE void winograd4_weights_backward(const float *u_grad, int parts, size_t part_stride,
                                       int out_channels, int in_channels, int co_begin, int co_end,
                                       float *weight_grad) {
  add_weight_gradients(6, adjoint_weight_rows, u_grad, parts, part_stride, out_channels,
                       in_channels, co_begin, co_end, weight_grad);
}

CK_INSTANTIATE(ck_winograd4_weights_backward,
               (const float *u_grad, int parts, size_t part_stride, int out_channels,
                int in_channels, int co_begin, int co_end, float *weight_grad),
               (u_grad, parts, part_stride, out_channels, in_channels, co_begin, co_end,
                weight_grad),
               winograd4_weights_backward)
