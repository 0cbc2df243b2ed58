// Helpers shared by the Winograd kernels (winograd.c: F(2×2, 3×3); winograd4.c: F(4×4, 3×3)):
// lane shuffles, partial loads and stores, the geometry, the register-blocked products of the
// transformed tiles and the backward's transposes. All INLINE, instantiated by each kernel's
// wrappers for its instruction set.
#ifndef CK_WINOGRAD_SHARED_H
#define CK_WINOGRAD_SHARED_H

#include <stdint.h>

#include "vector16.h"

// MARK: - Vector helpers

/// Elements 0, 2, …, 30 of the 32 floats a ‖ b.
INLINE v16 evens(v16 a, v16 b) {
  return __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
}

/// Elements 1, 3, …, 31 of a ‖ b.
INLINE v16 odds(v16 a, v16 b) {
  return __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}

/// (a ‖ b)[15 + i]: a's last lane, then b's first 15.
INLINE v16 from_lane15(v16 a, v16 b) {
  return __builtin_shufflevector(a, b, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30);
}

/// (a ‖ b)[1 + i]: a's last 15 lanes, then b's first.
INLINE v16 from_lane1(v16 a, v16 b) {
  return __builtin_shufflevector(a, b, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);
}

/// row[x … x + 15] = (or +=, when add) value, dropping columns ≥ width.
INLINE void store_row_part(float *row, int x, int width, v16 value, int add) {
  if (x >= width) return;
  if (x + 16 <= width) {
    store(row + x, add ? value + load(row + x) : value);
    return;
  }
  const int count = width - x;
  if (add) value += load_first(row + x, count, 0);
  store_first(row + x, count, value);
}

/// x where mask lanes are set, else 0.
INLINE v16 select(v16i mask, v16 x) { return (v16)(mask & (v16i)x); }

typedef _Bool b16 __attribute__((ext_vector_type(16)));

/// Bit i set where lane i of `lanes` (a comparison's) is set.
INLINE uint16_t lane_bits(v16i lanes) {
  return __builtin_bit_cast(uint16_t, __builtin_convertvector(lanes, b16));
}

/// Bit i set where lane i of x is above 0 (a ReLU's output that passed its input on).
INLINE uint16_t positive_bits(v16 x) { return lane_bits(x > zero()); }

/// Lane i all ones where bit i of `bits` is set, else 0: positive_bits' lanes back.
INLINE v16i lanes_of_bits(uint16_t bits) {
  const v16i bit = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768};
  return (((v16i){0} + (int)bits) & bit) != 0;
}

/// Lanes 0…count−1 set (count clamped to 0…16).
INLINE v16i first_lanes(int count) {
  const v16i index = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  v16i n = {count, count, count, count, count, count, count, count,
            count, count, count, count, count, count, count, count};
  return index < n;
}

INLINE int round16(int n) { return (n + 15) & ~15; }

/// The word of one image's ReLU mask from the direct forward (ck_direct_relu_mask_words: per
/// output channel and row, one bit per pixel, 16 to a word) that holds pixels x … x + 15 (x a
/// multiple of 16) of output channel co's row y; the direct weight gradient reads it.
INLINE size_t direct_mask_word(const ck_conv_shape *s, int co, int y, int x) {
  const size_t row = (size_t)co * (size_t)s->height + (size_t)y;
  return row * (size_t)(round16(s->width) / 16) + (size_t)(x / 16);
}

/// p[0 … count − 1] (count < 32) as two vectors, zero past count: whole vectors where possible.
INLINE void load_partial(const float *p, int count, v16 *low, v16 *high) {
  float staged[16] = {0};
  const float *tail = p;
  if (count >= 16) {
    *low = load(p);
    tail = p + 16;
    count -= 16;
  }
  for (int i = 0; i < count; i++) staged[i] = tail[i];
  if (tail == p) {
    *low = load(staged);
    *high = zero();
  } else {
    *high = load(staged);
  }
}

/// p[0 … count − 1] = the first count (< 32) floats of low ‖ high.
INLINE void store_partial(float *p, int count, v16 low, v16 high) {
  if (count >= 16) {
    store(p, low);
    p += 16;
    count -= 16;
    low = high;
  }
  float staged[16];
  store(staged, low);
  for (int i = 0; i < count; i++) p[i] = staged[i];
}

INLINE int min_int(int a, int b) { return a < b ? a : b; }

// MARK: - Stores past the caches

/// How a kernel stores a vector: written, added to what the memory holds, or written past the
/// caches (a non-temporal store: the target 64-byte aligned).
enum { C_WRITE = 0, C_ADD = 1, C_STREAM = 2 };

/// *target = x as C_MODE says.
INLINE void store_sum(const int C_MODE, float *target, v16 x) {
  if (C_MODE == C_ADD)
    store(target, x + load(target));
  else if (C_MODE == C_STREAM)
    __builtin_nontemporal_store(x, (v16 *)target);
  else
    store(target, x);
}

/// Whether a buffer of `bytes` that a kernel writes whole, and that is next read by the products
/// or by other threads, goes past the caches: 16 MB or more, more than the L3 keeps for it (VGG-16's
/// 512-channel layers: U and a thread's dU of 19–38 MB). Each store then writes its line without
/// first reading it from memory; the writer fences (`__builtin_ia32_sfence`) before anyone reads.
INLINE int past_caches(size_t bytes) { return bytes >= (16u << 20); }

/// The 64-byte alignment a non-temporal store of a vector needs.
INLINE int line_aligned(const void *p) { return ((uintptr_t)p & 63) == 0; }

// MARK: - Geometry

typedef struct {
  int cin, cout, height, width, relu, pool;
  int tiles_h, tiles_w;
  int rows;        // tile rows per block
  int group;       // images per block (more than 1 only when a block holds whole images)
  int plane_width; // floats per row of winograd.c's E and O planes (winograd4.c: tile_planes4)
  int ld;          // row stride of the V and M slabs
  int ldu;         // row stride of a transposed V slab (backward): round16(Cin)
  int u_cin;       // U's Cin (u_position): all of the layer's
  int du_ld;       // dU's input-channel columns: the layer's round16(Cin)
  size_t in_stride; // floats from one input image to the next: the layer's Cin · H · W
  int compact;     // floats from one tile-order plane to the next (winograd.c explains them)
} geometry;

/// The geometry of `tile` × `tile` output tiles (2: winograd.c, 4: winograd4.c).
INLINE geometry make_geometry(const ck_conv_shape *s, int tile) {
  geometry g;
  g.cin = s->in_channels;
  g.cout = s->out_channels;
  g.height = s->height;
  g.width = s->width;
  g.relu = s->relu;
  g.pool = s->pool;
  g.tiles_h = (s->height + tile - 1) / tile;
  g.tiles_w = (s->width + tile - 1) / tile;
  g.rows = s->block_rows < 1 ? 1 : min_int(s->block_rows, g.tiles_h);
  g.group = s->block_rows > g.tiles_h ? s->block_rows / g.tiles_h : 1;
  // Vectors start at tx = 0, 16, … and read up to index tx + 16.
  g.plane_width = round16(g.tiles_w) + 16;
  // The last vector of a tile row may run 15 tiles past the block.
  g.ld = round16(g.group * g.rows * g.tiles_w) + 16;
  g.ldu = round16(g.cin);
  g.u_cin = g.cin;
  g.du_ld = g.ldu;
  g.in_stride = (size_t)g.cin * (size_t)g.height * (size_t)g.width;
  g.compact = (g.rows + 1) * g.tiles_w + 32;
  return g;
}

/// The scratch of one thread (`positions`: 16 or 36), laid out for the layer's geometry: V [ξ,
/// Cin + 1, ld] (then dV), M or dM [ξ, Cout + 1, ld] (in strips, each with its spare row;
/// position_stride apart), `positions` tile-order planes, Vᵀ [ld, ldu] for one position ξ. A
/// backward over a range of the input channels keeps this layout (its V fills part of its
/// region), so that dM lies at the same place in every thread's scratch
/// (ck_winograd4_output_grads writes into another thread's).
typedef struct {
  float *v, *m, *q, *t;
} workspace;

/// Floats in that scratch.
INLINE size_t scratch_floats(const geometry *g, int positions) {
  size_t slabs = (size_t)positions * (size_t)(g->cin + 1 + g->cout + 1) * (size_t)g->ld;
  size_t planes = (size_t)positions * (size_t)g->compact;
  return slabs + planes + (size_t)g->ld * (size_t)g->ldu;
}

INLINE workspace split_scratch(const geometry *g, int positions, float *scratch) {
  workspace w;
  w.v = scratch;
  w.m = w.v + (size_t)positions * (g->cin + 1) * g->ld;
  w.q = w.m + (size_t)positions * (g->cout + 1) * g->ld;
  w.t = w.q + (size_t)positions * g->compact;
  return w;
}

/// Floats from one position's slab of M [C, ld] (or dV) to the next: C · ld and one vector more.
/// An output transform (and the input gradient's) loads the same tiles of every position at once;
/// at C · ld, a multiple of 1024 floats whenever C is a multiple of 64, those 36 (16) loads would
/// all fall 4 KB apart, in one set of the L1's (8 ways), and evict one another. One VGG-16 forward
/// layer, one thread, AVX-512: 64 → 64 channels at 224 px, its output transform 14.9 → 7.5–9.0 ms;
/// 128 → 128 at 112 px 8.7 → 4.8 ms. (The slabs have room: each holds C + 1 rows.)
INLINE size_t position_stride(int channels, int ld) { return (size_t)channels * ld + 16; }

/// Register blocking of the products for one instruction set: ROWS × VECTORS accumulators; and
/// `in_lanes`: whether the transforms' 4 × 16 interleaves run in 128-bit lanes
/// (interleave4_in_lanes, vector16.h), where a vector is several registers.
typedef struct {
  int rows, vectors, in_lanes;
} blocking;

// The blockings of both kernels. Baseline: a vector is 4 SSE registers (16 in all), 2 × 1
// accumulators. AVX2: 2 registers per vector, 6 × 1 (12 of 16 registers). AVX-512: 1 register per
// vector, 8 × 2 (16 of 32).
#define BLOCKING_BASELINE {2, 1, 1}
#define BLOCKING_AVX2 {6, 1, 1}
#define BLOCKING_AVX512 {8, 2, 0}

// MARK: - Weight transforms: one kernel per lane

// Both kernels keep U = G g Gᵀ [positions, Cout, Cin] in strips of 16 input channels, each strip
// Cout + 1 rows of 16 floats (the output channels, then a spare row, as V's strips): U[ξ][co][ci]
// at u[ξ · u_position + (ci / 16) · u_strip + co · 16 + ci % 16], the lanes past Cin zero. The
// forward's products read U[ξ] [Cout, Cin] in strips of their k (A_STRIPS: a panel's rows lie
// together in each strip, one line each; without the spare row, strips Cout · 64 bytes apart, a
// multiple of 4 KB, would put all of a panel's lines of a row in one set of the L1's), the
// backward's dV = U[ξ]ᵀ · dM[ξ] reads the same floats as Uᵀ [Cin, Cout] whose strips of 16 rows
// hold each step's rows side by side (A_PANELS: a panel reads U straight through, a line a step).
// One transform serves both passes, so the backward takes the forward's U.

/// Floats from one strip of U to the next: Cout + 1 rows of 16.
INLINE int u_strip(int out_channels) { return 16 * (out_channels + 1); }

/// Floats of U from one position to the next.
INLINE size_t u_position(int out_channels, int in_channels) {
  return (size_t)u_strip(out_channels) * (size_t)((in_channels + 15) / 16);
}

/// g[t] = tap t (row-major 3 × 3) of kernels first … first + count − 1 of weight [kernels, 3, 3],
/// kernel first + i in lane i (0 past count). A whole group with a kernel after its last loads each
/// kernel's 9 taps and the next 7 floats as one vector and transposes the 16 (in 128-bit lanes
/// with `in_lanes`, the blocking's: transpose16_in_lanes); otherwise one float at a time.
INLINE void load_taps(const float *weight, int kernels, size_t first, int count, v16 g[9],
                      int in_lanes) {
  if (count == 16 && first + 17 <= (size_t)kernels) {
    v16 x[16];
    for (int i = 0; i < 16; i++) x[i] = load(weight + (first + (size_t)i) * 9);
    if (in_lanes)
      transpose16_in_lanes(x);
    else
      transpose16(x);
    for (int t = 0; t < 9; t++) g[t] = x[t];
    return;
  }
  float taps[9][16] = {{0}};
  for (int i = 0; i < count; i++)
    for (int t = 0; t < 9; t++) taps[t][i] = weight[(first + (size_t)i) * 9 + t];
  for (int t = 0; t < 9; t++) g[t] = load(taps[t]);
}

/// du[ξ] lane i = Σ_p dU_p[co][ξ][ci + i] for the `positions` positions ξ, summed over the `parts`
/// partial sums dU_p = u_grad + p · part_stride (ci a multiple of 16). The backward kernels write
/// each in strips of 16 input channels, all positions of a strip together (gradient_products):
/// dU_p[co][ξ][ci] at ((co · round16(Cin) / 16 + ci / 16) · positions + ξ) · 16 + ci % 16, so that
/// the sums read each partial straight through (lanes past Cin come from the padding, unused).
INLINE void sum_partials(const float *u_grad, int parts, size_t part_stride, int positions,
                         int in_channels, int co, int ci, v16 *du) {
  const size_t strips = (size_t)round16(in_channels) / 16;
  const float *source = u_grad + ((size_t)co * strips + (size_t)ci / 16) * positions * 16;
  for (int xi = 0; xi < positions; xi++) {
    v16 sum = zero();
    for (int p = 0; p < parts; p++) sum += load(source + (size_t)p * part_stride + xi * 16);
    du[xi] = sum;
  }
}

/// weight[k + i][t] += g[t] lane i for i < count (weight [kernels, 3, 3]): load_taps' adjoint,
/// one float at a time (vectors of 16 floats from each kernel's first tap on would overlap, and
/// each addition would wait on the store before it).
INLINE void add_taps(const v16 g[9], int k, int count, float *weight) {
  float taps[9][16];
  for (int t = 0; t < 9; t++) store(taps[t], g[t]);
  for (int i = 0; i < count; i++)
    for (int t = 0; t < 9; t++) weight[(size_t)(k + i) * 9 + t] += taps[t][i];
}

/// G or Gᵀ applied to one column or row of 16 kernels' taps: G x (3 → n, n = tile + 2) or its
/// adjoint Gᵀ x (n → 3). Each kernel file passes its own (weight_rows, adjoint_weight_rows).
typedef void (*rows_fn)(const v16 *x, v16 *out);

/// out [n · n] = G g Gᵀ for the 16 kernels of g (load_taps): G g column by column, then (·) Gᵀ
/// along each of its n rows (`weight_rows`: G's rows).
INLINE void transform_kernels(const int n, rows_fn weight_rows, const v16 g[9], v16 *out) {
  v16 gg[6][3];
  for (int c = 0; c < 3; c++) {
    v16 column[3] = {g[c], g[3 + c], g[6 + c]}, rows[6];
    weight_rows(column, rows);
    for (int r = 0; r < n; r++) gg[r][c] = rows[r];
  }
  for (int r = 0; r < n; r++) weight_rows(gg[r], out + n * r);
}

/// u = G g Gᵀ [n · n, Cout, Cin] in strips of 16 input channels (u_position) for the groups of 16
/// kernels begin … end − 1 of weight [Cout, Cin, 3, 3]: group q holds output channel q / S's input
/// channels 16 (q % S) … (S = ⌈Cin / 16⌉; lanes past Cin zero), so that the groups follow the
/// weights' order. The body of both weight transforms (n 4 or 6). Each group's transform at a
/// position is one whole vector of U; a large U (past_caches: F(4×4) from 256 → 512 channels on,
/// F(2×2) at 512 → 512) is written past the caches. Two threads, 512 → 512: a thread's share 4.0 →
/// 3.3 ms.
INLINE void transform_weights(const int n, rows_fn weight_rows, const float *weight,
                              int out_channels, int in_channels, int begin, int end, float *u,
                              int in_lanes) {
  const int strips = (in_channels + 15) / 16;
  const size_t position = u_position(out_channels, in_channels);
  const int stream = past_caches(sizeof(float) * (size_t)n * n * position);
  for (int q = begin; q < end; q++) {
    const int co = q / strips, ci = 16 * (q % strips);
    v16 g[9], out[36];
    load_taps(weight, out_channels * in_channels, (size_t)co * in_channels + ci,
              min_int(16, in_channels - ci), g, in_lanes);
    transform_kernels(n, weight_rows, g, out);
    float *target = u + (size_t)(ci / 16) * u_strip(out_channels) + (size_t)co * 16;
    for (int xi = 0; xi < n * n; xi++, target += position)
      store_sum(stream && line_aligned(target) ? C_STREAM : C_WRITE, target, out[xi]);
  }
  if (stream) __builtin_ia32_sfence();
}

#define WEIGHTS_PARAMS                                                                             \
  (const float *weight, int out_channels, int in_channels, int begin, int end, float *u)
#define WEIGHTS_ARGS (weight, out_channels, in_channels, begin, end, u)

/// transform_weights with one instruction set's blocking (its transposes: load_taps).
#define WEIGHTS_WITH(NAME, N, WEIGHT_ROWS, BLOCKING)                                               \
  INLINE void NAME WEIGHTS_PARAMS {                                                                \
    const blocking k = BLOCKING;                                                                   \
    transform_weights(N, WEIGHT_ROWS, weight, out_channels, in_channels, begin, end, u,            \
                      k.in_lanes);                                                                 \
  }

/// A weight transform's entry point NAME (ck_winograd_weights, ck_winograd4_weights: tiles of
/// N × N positions, WEIGHT_ROWS its G's rows) at every instruction set. At AVX2, where a 16-float
/// vector is two registers, load_taps' transposes in 128-bit lanes took two threads' transform of
/// 512 → 512 channels from 1.03–1.24 to 0.88–1.05 ms (best of 20 calls, alternating, three runs;
/// the AVX-512 transform 0.83–0.90, about as fast as the memory takes U's 38 MB).
#define CK_WEIGHT_TRANSFORM(NAME, N, WEIGHT_ROWS)                                                  \
  WEIGHTS_WITH(NAME##_for_baseline, N, WEIGHT_ROWS, BLOCKING_BASELINE)                             \
  WEIGHTS_WITH(NAME##_for_avx2, N, WEIGHT_ROWS, BLOCKING_AVX2)                                     \
  WEIGHTS_WITH(NAME##_for_avx512, N, WEIGHT_ROWS, BLOCKING_AVX512)                                 \
  CK_INSTANTIATE_EACH(NAME, WEIGHTS_PARAMS, WEIGHTS_ARGS, NAME##_for_baseline, NAME##_for_avx2,    \
                      NAME##_for_avx512)

/// weight_grad [Cout, Cin, 3, 3] += Gᵀ dU G for output channels co_begin … co_end − 1, 16 input
/// channels at a time, dU the threads' partial sums as sum_partials reads them: Gᵀ dU column by
/// column, then (·) G along each of its 3 rows (`adjoint_rows`: Gᵀ). transform_weights' adjoint.
INLINE void add_weight_gradients(const int n, rows_fn adjoint_rows, const float *u_grad, int parts,
                                 size_t part_stride, int out_channels, int in_channels,
                                 int co_begin, int co_end, float *weight_grad) {
  for (int co = co_begin; co < co_end; co++)
    for (int ci = 0; ci < in_channels; ci += 16) {
      v16 du[36], rows[3][6], g[9];
      sum_partials(u_grad, parts, part_stride, n * n, in_channels, co, ci, du);
      for (int c = 0; c < n; c++) {
        v16 column[6], out[3];
        for (int r = 0; r < n; r++) column[r] = du[n * r + c];
        adjoint_rows(column, out);
        for (int r = 0; r < 3; r++) rows[r][c] = out[r];
      }
      for (int r = 0; r < 3; r++) adjoint_rows(rows[r], g + 3 * r);
      add_taps(g, co * in_channels + ci, min_int(16, in_channels - ci), weight_grad);
    }
}

// MARK: - Slabs in strips

// The transformed inputs V[ξ] [Cin, tiles] (and, backward, dM[ξ] [Cout, tiles]) are kept in strips
// of 16 tiles, each strip C + 1 rows of 16 floats (the C channels, then a spare row): tile t of
// channel c at V[ξ] + (t / 16) · (C + 1) · 16 + c · 16 + t % 16, so that a product's 16-column
// steps read consecutive floats. A slab of a position holds ld / 16 strips (one more than the
// block's tiles fill, for the last store's lanes).

/// Tiles t … t + 15 of one channel's row of such a slab (row: the channel's row in strip 0; strip:
/// floats from one strip to the next). The whole vector is stored at tile t, running on into the
/// next channel's row of the strip (stored after this one: the channels are written in order) or
/// the spare row; lanes past the strip's end are also merged into the first columns of the next
/// strip's row. STARTS (a constant): the caller knows t is a multiple of 16, so x fills one
/// strip's row whole and the merge is compiled out. A loop whose stores all start strips so holds
/// no merge path: with one, AVX2's code of the forward's input transform kept its pointers and
/// several vectors on the stack.
INLINE void store_in_strips(const int STARTS, float *row, size_t strip, int t, v16 x) {
  const int offset = STARTS ? 0 : t & 15;
  float *p = row + (size_t)(t >> 4) * strip + offset;
  // The channel after next stores 32 floats on: its line is asked for now. The transforms write
  // every position's strips at once (hundreds of lines at a time, too many streams for the
  // hardware to foresee); so asked, each store finds its line. VGG-16's 28 px, 512 channels, two
  // threads, AVX-512: the backward's dM and V transforms 14.5–17.6 → 12.7–14.1 ms a thread.
  // Into the L2 only (prefetcht1): between the ask and the store the transform writes a whole
  // channel of the block (36 lines for each of its tile vectors), so a line asked into the L1
  // was often pushed out again, and pushed out lines it was about to use. Two threads, the
  // variants alternating in one process, AVX-512: the backward's dM transform at 112 px (128 →
  // 128, 4 images) 7.6–8.3 → 6.3–6.8 ms a thread and its V transform 5.5–6.2 → 5.1–5.3; at 56 px
  // (128 → 256) 4.4–4.5 → 3.3–3.9 and 2.0–2.2 → 1.8; the forward's input transform at 56 and 28 px
  // 2.25 → 2.00 and 3.73 → 3.50 ms; at 224 px unchanged.
  __builtin_prefetch(p + 32, 0, 2);
  store(p, x);
  if (offset == 0) return;
  float *q = p + strip - 16;  // its lanes 16 − offset … 15: the next strip's columns 0 … offset − 1
  const v16i keep = first_lanes(16 - offset);
  store(q, (v16)((keep & (v16i)load(q)) | (~keep & (v16i)x)));
}

// MARK: - Products

/// How a product's left operand a [m, k] is stored: strips of 16 columns (a[i][p] at a[(p / 16) ·
/// lda + i · 16 + p % 16]: U in the forward, dM in dU's products; lda the floats from one strip to
/// the next) or strips of 16 rows, each step's rows side by side (a[i][p] at a[(i / 16) · lda + p ·
/// 16 + i % 16]: U read as Uᵀ in dV's products). A panel of A_PANELS lies inside one strip of rows
/// (product), so that its floats are a[p · 16 + r] from the strip's row i % 16.
enum { A_STRIPS = 0, A_PANELS = 1 };

/// How many steps ahead of its sum an A_PANELS panel asks for a's lines (prefetch_a).
enum { A_PANELS_AHEAD = 128 };

/// Where a's steps p0 … p0 + 15 (p0 a multiple of 16) begin: a strip of columns (A_STRIPS), or
/// (A_PANELS) 16 steps of a strip of rows.
INLINE const float *a_steps(const int A_LAYOUT, const float *a, int lda, int p0) {
  return A_LAYOUT == A_PANELS ? a + (size_t)p0 * 16 : a + (size_t)(p0 >> 4) * lda;
}

/// a[i][p0 + q] (q < 16) from a_steps' `steps`.
INLINE float element(const int A_LAYOUT, const float *steps, int i, int q) {
  return A_LAYOUT == A_PANELS ? steps[q * 16 + i] : steps[i * 16 + q];
}

/// Asks for lines of a product's left operand a ahead of its steps p0 … p0 + 15, where the hardware
/// does not foresee them: with A_STRIPS, the next panel's rows (ROWS on), a line of each, so
/// that they are in cache when the panel starts. The last panel's lines lie past a's end: their
/// addresses are computed as integers (no pointer past the array is formed), and a prefetch never
/// faults. A panel's ROWS lines of a strip lie together, the next panel's right after them, but
/// the strips far apart: each new strip of a panel's first sum waited for its lines.
/// - U in the forward, read from memory (VGG-16's layers of 512 channels, 38 MB). One thread, 512
///   → 512 at 14 px, 4 images (U then kept in rows, asked for likewise): the forward's products
///   13.1 → 11.5 ms at AVX-512, 13.6 → 12.3 at AVX2; at 28 px 38.8 → 36.5.
/// - The backward's dM, left operand of the dU products, from the L3 (a block's dM, 2–8 MB a
///   thread, is past the L2; its strips (Cout + 1) · 64 bytes apart). Two threads on their own
///   images, the variants alternating in one process, AVX-512 (Zen 4): the dU products at 56 px
///   128 → 256 (4 images) 20.9–21.8 → 18.6–19.4 ms a thread, 256 → 256 67.2–69.7 → 62.3–63.8 (a
///   slow hour); at 112 px 64 → 128 (2 images) 11.9–12.0 → 9.5–10.1, 128 → 128 21.8–22.8 →
///   19.5–19.9; at 224 and 28 px unchanged.
/// With A_PANELS (Uᵀ in the dV products), a panel reads a straight through, a line a step; its
/// first sum (`first`: the first columns) reads them first, from the L3 or memory (U of 4.7–38 MB
/// at VGG-16's 56–14 px), and asks for the 16 lines A_PANELS_AHEAD steps on (the steps past a
/// strip's end are the next strip's first). Zen 5, where a step's multiply-adds take half the
/// time they take on Zen 4, waited for them: two threads on their own images, 8 images, AVX-512,
/// the variants alternating in one process, the dV products at 56 px (256 → 256) 17.3–17.9 →
/// 15.3–15.9 ms a thread (78–80% → 87–91% of its peak), at 28 px (512 → 512) 17.7–17.9 →
/// 15.1–15.7, at 14 px (512 → 512, 8 images a thread) 7.35 → 4.70; AVX2 1–9% faster, 224 px as
/// before.
INLINE void prefetch_a(const int ROWS, const int A_LAYOUT, const float *a, int lda, int p0,
                       int first) {
  const uintptr_t base = (uintptr_t)a;
  if (A_LAYOUT == A_PANELS) {
    if (!first) return;
#pragma clang loop unroll(full)
    for (int s = 0; s < 16; s++) {
      const size_t at = (size_t)(p0 + A_PANELS_AHEAD + s) * 16;
      __builtin_prefetch((const void *)(base + sizeof(float) * at), 0, 3);
    }
    return;
  }
  // The next panel's row r at step p0: a[ROWS + r][p0].
  const size_t strip_start = (size_t)(p0 >> 4) * lda;
#pragma clang loop unroll(full)
  for (int r = 0; r < ROWS; r++) {
    const size_t at = strip_start + (size_t)(ROWS + r) * 16;
    __builtin_prefetch((const void *)(base + sizeof(float) * at), 0, 3);
  }
}

/// Asks, as a sum that adds to c starts (C_ADD: dU after a thread's first block), for the lines
/// of c the next sum adds to: the columns after this sum's in the same ROWS rows, or after the
/// last the next panel's first. Those lines are a few KB apart (dU's layout: sum_partials), so the
/// hardware does not foresee them, and loaded only once the sum is done, from the L3 or memory
/// (the block's V and dM push dU out of L2), they would each wait there; asked for this early,
/// they come during the sum. Two threads, VGG-16's backward at batch 8, AVX-512, best of three
/// alternating runs: 224 px 104–106 → 102–105 ms, 56 px 96–98 → 94–98; in the training profile
/// the 56-px layers' backward 56–62% → 59–66% of the peak by multiplies done (AVX2: no change).
/// (Addresses past c's end are computed as integers, as in prefetch_a.)
INLINE void prefetch_c(const int ROWS, const int VECTORS, const int C_MODE, const float *c, int ldc,
                       size_t c_strip, int j, int n) {
  if (C_MODE != C_ADD) return;
  const uintptr_t base = (uintptr_t)c;
  const int next = j + 16 * VECTORS;  // the next sum of these rows starts there, if next < n
#pragma clang loop unroll(full)
  for (int r = 0; r < ROWS; r++)
#pragma clang loop unroll(full)
    for (int v = 0; v < VECTORS; v++) {
      const size_t at = next < n ? (size_t)r * ldc + (size_t)(next / 16 + v) * c_strip
                                 : (size_t)(ROWS + r) * ldc + (size_t)v * c_strip;
      __builtin_prefetch((const void *)(base + sizeof(float) * at), 1, 3);
    }
}

/// Runs STEP, a statement on the step index q, for q = 0 … count − 1: the steps of one group of a
/// product's sums (count ≤ 16). A whole group of 16 is unrolled: the loop's counter and test were 4
/// of a step's 24 instructions at AVX2 (6 × 1 vectors; 4 of 17 in product_half's), and each group
/// worked out its step count anew. Counted with callgrind, one 224-px image (64 → 64, AVX2): the
/// forward 159.4 → 140.0 M instructions, the backward 323.3 → 283.3 M. One thread, the forward of
/// VGG-16's layers at AVX2 (Zen 3), alternating runs in both orders: 224 px (64 → 64) 3–6% faster,
/// 112 px (128 → 128) 4–6%, 56 px (256 → 256) 8–10%, 14 px (512 → 512) 4–6%, 28 px (512 → 512)
/// −3 to +7%; the backward at 224 and 56 px unchanged within the noise.
#define FOR_STEPS(count, STEP)                                                                     \
  do {                                                                                             \
    if ((count) == 16) {                                                                           \
      _Pragma("clang loop unroll(full)") for (int q = 0; q < 16; q++) STEP;                        \
    } else {                                                                                       \
      for (int q = 0; q < (count); q++) STEP;                                                      \
    }                                                                                              \
  } while (0)

/// acc[r] += a[r][p0 + q] · b0 for the ROWS rows r: step q of a group (a's steps from `steps`,
/// a_steps).
INLINE void sum_step(const int ROWS, const int A_LAYOUT, const float *steps, int q, v16 b0,
                     v16 acc[8]) {
#pragma clang loop unroll(full)
  for (int r = 0; r < ROWS; r++) acc[r] += splat(element(A_LAYOUT, steps, r, q)) * b0;
}

/// sum_step in 8-float vectors (product_half).
INLINE void half_step(const int ROWS, const int A_LAYOUT, const float *steps, int q, v8 b0,
                      v8 acc[8]) {
#pragma clang loop unroll(full)
  for (int r = 0; r < ROWS; r++) {
    const float x = element(A_LAYOUT, steps, r, q);
    acc[r] += (v8){x, x, x, x, x, x, x, x} * b0;
  }
}

/// c[i][j] = Σ_p a[i][p] · b[p][j] for `ROWS` rows i and the 8 columns j of one strip of b and c
/// (as product_panel's) that count, in 8-float vectors; c's other 8 columns of the strip = 0.
/// product_panel's last vector when a block's tiles fill at most 8 of its 16 columns (VGG-16's
/// 196-tile blocks at 56 and 28 px: 12 of 13 vectors full): half the multiply-adds of a 16-float
/// vector (an AVX-512 vector is 2 of Zen 4's 256-bit FMA operations, one here; an AVX2 vector two
/// registers, one here). With dU's sums over the filled tiles only (gradient_products), two
/// threads, 8 images, four alternating stand-alone runs at AVX-512: backward at 28 px 512 → 512
/// 86.1–90.0 → 83.5–87.2 ms, 256 → 512 45.0–47.2 → 43.8–44.8, at 56 px (256 → 256) the products
/// 78.0–81.8 → 76.3–78.9 ms a thread; the forward's products at 28 px (256 → 512) 18.0–18.2 →
/// 17.6–18.0. At AVX2 (three runs) the 28- and 56-px backward 94–108 → 92–109 and 99–125 → 92–105.
INLINE void product_half(const int ROWS, const int C_MODE, const int A_LAYOUT, int k,
                         const float *a, int lda, const float *b, int ldb, float *c, int ldc,
                         int first) {
  v8 acc[8];
#pragma clang loop unroll(full)
  for (int r = 0; r < ROWS; r++) acc[r] = (v8){0};
  for (int p0 = 0; p0 < k; p0 += 16) {
    const float *as = a_steps(A_LAYOUT, a, lda, p0);
    prefetch_a(ROWS, A_LAYOUT, a, lda, p0, first);
    const float *row = b + (size_t)p0 * ldb;
    FOR_STEPS(min_int(16, k - p0),
              half_step(ROWS, A_LAYOUT, as, q, load8(row + (size_t)q * ldb), acc));
  }
#pragma clang loop unroll(full)
  for (int r = 0; r < ROWS; r++) {
    v16 wide = zero();
    memcpy(&wide, &acc[r], sizeof acc[r]);
    store_sum(C_MODE, c + (size_t)r * ldc, wide);
  }
}

/// c[i][j] = Σ_p a[i][p] · b[p][j] (stored as C_MODE says) for `ROWS` rows i and n columns (n a
/// multiple of 16), with `VECTORS` (1 or 2) 16-float vectors of columns per step; ROWS × VECTORS
/// accumulators. Only the first `valid` columns count: a vector with at most 8 of them computes
/// those 8 only (product_half) and writes 0 in the other 8.
/// a is stored as A_LAYOUT says; the sums run over k 16 steps at a time (a_steps), each step's a at
/// fixed offsets (with its index worked out at every step, AVX2's forward products were 2–4%
/// slower on U in strips). b is kept in strips of 16 columns: b[p][j] at
/// b[(j / 16) · strip + p · ldb + j % 16] (a plain row-major b: strip = 16); c likewise, c[i][j] at
/// c[(j / 16) · c_strip + i · ldc + j % 16].
INLINE void product_panel(const int ROWS, const int VECTORS, const int C_MODE, const int A_LAYOUT,
                          int n, int valid, int k, const float *a, int lda, const float *b,
                          int ldb, size_t strip, float *c, int ldc, size_t c_strip) {
  int j = 0;
  if (VECTORS == 2) {
    // Pairs while the second vector has more than 8 columns that count. Their steps keep the
    // loop that FOR_STEPS unrolls for one vector: only AVX-512 (8 × 2) takes pairs, and unrolled
    // they have not been timed on an AVX-512 machine.
    for (; j + 32 <= n && valid - (j + 16) > 8; j += 32) {
      v16 acc[8][2];
#pragma clang loop unroll(full)
      for (int r = 0; r < ROWS; r++) acc[r][0] = acc[r][1] = zero();
      prefetch_c(ROWS, 2, C_MODE, c, ldc, c_strip, j, n);
      for (int p0 = 0; p0 < k; p0 += 16) {
        const float *as = a_steps(A_LAYOUT, a, lda, p0);
        prefetch_a(ROWS, A_LAYOUT, a, lda, p0, j == 0);
        for (int q = 0; q < min_int(16, k - p0); q++) {
          const float *row = b + (size_t)(j / 16) * strip + (size_t)(p0 + q) * ldb;
          v16 b0 = load(row), b1 = load(row + strip);
#pragma clang loop unroll(full)
          for (int r = 0; r < ROWS; r++) {
            v16 x = splat(element(A_LAYOUT, as, r, q));
            acc[r][0] += x * b0;
            acc[r][1] += x * b1;
          }
        }
      }
#pragma clang loop unroll(full)
      for (int r = 0; r < ROWS; r++) {
        float *target = c + (size_t)r * ldc + (size_t)(j / 16) * c_strip;
        store_sum(C_MODE, target, acc[r][0]);
        store_sum(C_MODE, target + c_strip, acc[r][1]);
      }
    }
  }
  for (; j < n; j += 16) {
    if (valid - j <= 8) {
      product_half(ROWS, C_MODE, A_LAYOUT, k, a, lda, b + (size_t)(j / 16) * strip, ldb,
                   c + (size_t)(j / 16) * c_strip, ldc, j == 0);
      continue;
    }
    v16 acc[8];
#pragma clang loop unroll(full)
    for (int r = 0; r < ROWS; r++) acc[r] = zero();
    prefetch_c(ROWS, 1, C_MODE, c, ldc, c_strip, j, n);
    for (int p0 = 0; p0 < k; p0 += 16) {
      const float *as = a_steps(A_LAYOUT, a, lda, p0);
      prefetch_a(ROWS, A_LAYOUT, a, lda, p0, j == 0);
      const float *row = b + (size_t)(j / 16) * strip + (size_t)p0 * ldb;
      FOR_STEPS(min_int(16, k - p0),
                sum_step(ROWS, A_LAYOUT, as, q, load(row + (size_t)q * ldb), acc));
    }
#pragma clang loop unroll(full)
    for (int r = 0; r < ROWS; r++) {
      float *target = c + (size_t)r * ldc + (size_t)(j / 16) * c_strip;
      store_sum(C_MODE, target, acc[r]);
    }
  }
}

/// a's rows i … of A_LAYOUT's storage (A_PANELS: i < 16).
INLINE const float *rows_from(const int A_LAYOUT, const float *a, int i) {
  return A_LAYOUT == A_PANELS ? a + i : a + (size_t)i * 16;
}

/// c [m, n] = a [m, k] · b [k, n], stored as C_MODE says (a stored as A_LAYOUT says, b and c in strips
/// as in product_panel; n a multiple of 16, of which the first `valid` count; A_PANELS: m ≤ 16).
/// Panels of ROWS rows, then the rows left in panels of 4 and 2 rows, then 1: a panel of one row
/// waits each step on its own last multiply-add (one chain of accumulators), so AVX2's panels of 6
/// rows, which leave 4 of 64, 128 or 256 rows and 2 of 512, paid 4 single rows at a quarter of the
/// speed. Two threads, 8 images, AVX2, best of 4–6 alternating runs: at 224 px (64 → 64) the
/// forward's products 36.9 → 33.3 ms a thread, the backward's 86.3 → 76.1; at 56 px (256 → 256)
/// the forward's 38.2 → 37.1.
INLINE void product_rows(const int ROWS, const int VECTORS, const int C_MODE, const int A_LAYOUT,
                         int m, int n, int valid, int k, const float *a, int lda, const float *b,
                         int ldb, size_t strip, float *c, int ldc, size_t c_strip) {
  int i = 0;
// A panel of R rows from row i.
#define PANEL(R)                                                                                   \
  product_panel(R, VECTORS, C_MODE, A_LAYOUT, n, valid, k, rows_from(A_LAYOUT, a, i), lda, b, ldb, \
                strip, c + (size_t)i * ldc, ldc, c_strip)
  for (; i + ROWS <= m; i += ROWS) PANEL(ROWS);
  if (ROWS > 4 && i + 4 <= m) PANEL(4), i += 4;
  if (ROWS > 2 && i + 2 <= m) PANEL(2), i += 2;
  for (; i < m; i++) PANEL(1);
#undef PANEL
}

/// product_rows over any m: with A_PANELS, strip by strip of 16 rows (lda floats apart), each in
/// panels that stay inside it (AVX2's: 6, 6 and 4 rows).
INLINE void product(const int ROWS, const int VECTORS, const int C_MODE, const int A_LAYOUT,
                    int m, int n, int valid, int k, const float *a, int lda, const float *b,
                    int ldb, size_t strip, float *c, int ldc, size_t c_strip) {
  if (A_LAYOUT == A_STRIPS) {
    product_rows(ROWS, VECTORS, C_MODE, A_STRIPS, m, n, valid, k, a, lda, b, ldb, strip, c, ldc,
                 c_strip);
    return;
  }
  for (int i = 0; i < m; i += 16)
    product_rows(ROWS, VECTORS, C_MODE, A_PANELS, min_int(16, m - i), n, valid, k,
                 a + (size_t)(i / 16) * lda, lda, b, ldb, strip, c + (size_t)i * ldc, ldc, c_strip);
}

// MARK: - Transposes

/// target[c · 16 + r] = source[r · 16 + c] for r, c < 16, at AVX2 (in_lanes): as four 8 × 8 blocks,
/// each loaded, transposed (transpose8) and stored on its own, in 8 registers. transpose16_in_lanes
/// holds all 16 rows, 32 registers at AVX2, and so moved half of them through the stack: of its
/// 309 instructions 96 read or wrote the stack, where these take 165 (callgrind, AVX2).
INLINE void transpose_in_blocks(const float *source, float *target) {
  for (int bi = 0; bi < 2; bi++)
    for (int bj = 0; bj < 2; bj++) {
      v8 r[8];
      for (int i = 0; i < 8; i++) r[i] = load8(source + (size_t)(8 * bi + i) * 16 + 8 * bj);
      transpose8(r);
      for (int i = 0; i < 8; i++) store8(target + (size_t)(8 * bj + i) * 16 + 8 * bi, r[i]);
    }
}

/// t = aᵀ for a [rows, n] kept in strips of 16 columns (a_strip floats apart, rows 16 floats apart,
/// as V), written in strips of 16 columns too: t[p][j] at t[(j / 16) · t_strip + p · 16 + j % 16]
/// for p < n, j < round16(rows) (columns rows … round16(rows) − 1 zeros); n a multiple of 16.
/// in_lanes: the blocking's (transpose16_in_lanes).
INLINE void transpose(int rows, int n, const float *a, size_t a_strip, float *t, size_t t_strip,
                      int in_lanes) {
  for (int r0 = 0; r0 < rows; r0 += 16) {
    for (int j = 0; j < n; j += 16) {
      v16 x[16];
      const float *source = a + (size_t)(j / 16) * a_strip;
      float *target = t + (size_t)(r0 / 16) * t_strip + (size_t)j * 16;
      if (in_lanes && r0 + 16 <= rows) {
        transpose_in_blocks(source + (size_t)r0 * 16, target);
        continue;
      }
      for (int i = 0; i < 16; i++)
        x[i] = r0 + i < rows ? load(source + (size_t)(r0 + i) * 16) : zero();
      if (in_lanes)
        transpose16_in_lanes(x);
      else
        transpose16(x);
      for (int i = 0; i < 16; i++) store(target + (size_t)i * 16, x[i]);
    }
  }
}

/// Zeroes columns (tiles) from … to − 1 of `positions` slabs of `channels` rows kept in strips (V,
/// dM: store_in_strips): the tiles past a block, up to the products' multiple of 16, so that they
/// add nothing to the sums over tiles.
INLINE void zero_strip_columns(float *v, int positions, int channels, int ld, int from, int to) {
  const size_t strip = (size_t)(channels + 1) * 16;
  for (int xi = 0; xi < positions; xi++)
    for (int t = from; t < to; t = (t | 15) + 1) {
      const int end = min_int(to, (t | 15) + 1);
      float *column = v + (size_t)xi * (channels + 1) * ld + (size_t)(t / 16) * strip + t % 16;
      for (int ci = 0; ci < channels; ci++)
        memset(column + (size_t)ci * 16, 0, sizeof(float) * (size_t)(end - t));
    }
}

// MARK: - A block's products at every position

/// M[ξ] [co_begin … co_end − 1, n] = U[ξ] [those rows, Cin] · V[ξ] [Cin, n] for the `positions`
/// positions ξ of a block of `filled` tiles, n = round16(filled) (product_half: the last vector
/// when the tiles fill at most 8 of its 16 columns). U in strips of 16 input channels
/// (u_position); V in strips [positions][Cin + 1][ld]; M's rows ld floats apart, its positions
/// position_stride apart.
INLINE void forward_products(const blocking k, const geometry *g, int positions, int filled,
                             int co_begin, int co_end, const float *u, const float *v, float *m) {
  const int n = round16(filled);
  for (int xi = 0; xi < positions; xi++)
    product(k.rows, k.vectors, C_WRITE, A_STRIPS, co_end - co_begin, n, filled, g->cin,
            u + (size_t)xi * u_position(g->cout, g->u_cin) + (size_t)co_begin * 16,
            u_strip(g->cout), v + (size_t)xi * (g->cin + 1) * g->ld, 16, (size_t)(g->cin + 1) * 16,
            m + xi * position_stride(g->cout, g->ld) + (size_t)co_begin * g->ld, g->ld, 16);
}

/// The backward's products of a block whose V and dM fill `filled` tiles, at each of the
/// `positions` positions ξ (the columns past the block, up to n = round16(filled), zeroed first):
///   dU[ξ] [Cout, Cin] = (or +=, when accumulate) dM[ξ] [Cout, filled] · V[ξ]ᵀ [filled, Cin]
///   (summed over the filled tiles only: VGG-16's 196-tile blocks at 56 and 28 px, 12 of 208
///   steps fewer), V[ξ] transposed
///   first into `transposed` ([ld, ldu]), so that the sum over tiles runs down the product's k and
///   needs no horizontal additions; dU [Cout, du_ld / 16, positions, 16] (sum_partials);
///   then, unless dv is NULL, dV[ξ] [Cin, n] = U[ξ]ᵀ · dM[ξ] into dv (rows ld floats apart,
///   positions position_stride; it may be v's memory: dV[ξ] ends inside V[ξ]'s slab, and V[ξ] is
///   in `transposed` by then).
/// Both products of a position run one after the other, so that the second reads dM[ξ] from the
/// L2 (a block's dM, 2–8 MB a thread at 224–28 px, is past it; all dU products first, then all dV,
/// read it from memory twice). VGG-16's training profile at batch 8, AVX-512, four alternating
/// runs, each layer's best: backward at 224 px 100.7 → 94.5 ms, 112 px (64 → 128) 48.2 → 44.1,
/// 56 px (256 → 256) 93.1–96.3 → 90.3–90.6, 28 px (512 → 512) 90.0–90.2 → 87.6–88.5; AVX2: 56 px
/// 95.8–98.5 → 91.8–94.3, 28 px 92.8–92.9 → 90.6–90.9, 224 px 103.7 → 101.8.
/// V and dM in strips ([positions][C + 1][ld]). u: the forward's U (u_position), which dV's
/// product reads as Uᵀ (A_PANELS): each step's rows side by side, the floats in order. (Before, a
/// second weight transform wrote Uᵀ in rows at each step for dV to read along them; U kept in rows
/// and read down its columns put each step's 8 (AVX-512) or 6 (AVX2) floats in a line of their own,
/// Cout floats from the last, and one panel's lines in a few of the L1's sets: AVX2's dV products
/// at 28 px (512 → 512) 54.9 ms a thread against 40.5 along Uᵀ's rows.) Cin may be a range of the
/// layer's input channels (a thread's share, from a multiple of 16): u and u_grad then point at
/// the range's first strip of each.
INLINE void gradient_products(const blocking k, const geometry *g, int positions, int filled,
                              const float *u, float *v, float *dm, float *transposed,
                              float *u_grad, int accumulate, float *dv) {
  const int n = round16(filled);
  // dU in strips of 16 input channels, each holding the positions one after another (sum_partials).
  const int du_row = positions * g->du_ld;  // from one output channel's row of dU[ξ] to the next
  const size_t du_strip = (size_t)positions * 16;
  // A large dU (past_caches), written rather than added to, goes past the caches; the sums over
  // the threads' parts (sum_partials) read it from memory either way. Its offsets are multiples
  // of 16 floats, so its first vector's alignment is every vector's. Stand-alone, one thread, 36
  // products of 512 × 128 tiles × 256 channels: 78–84% → 89–91% of the thread's peak; VGG-16's
  // training profile, AVX-512, best of four alternating runs (twice): the 14-px layers' backward
  // 36.6–36.8 → 32.5–35.0 ms and 39.4–40.2 → 35.5–35.7 ms.
  const size_t du_bytes = sizeof(float) * (size_t)positions * g->cout * g->ldu;
  const int stream = !accumulate && past_caches(du_bytes) && line_aligned(u_grad);
  const int du_mode = accumulate ? C_ADD : stream ? C_STREAM : C_WRITE;
  zero_strip_columns(dm, positions, g->cout, g->ld, filled, n);
  zero_strip_columns(v, positions, g->cin, g->ld, filled, n);
  for (int xi = 0; xi < positions; xi++) {
    const float *dm_xi = dm + (size_t)xi * (g->cout + 1) * g->ld;
    transpose(g->cin, n, v + (size_t)xi * (g->cin + 1) * g->ld, (size_t)(g->cin + 1) * 16,
              transposed, (size_t)g->ld * 16, k.in_lanes);
    // The mode only picks the stores after each sum: no cost inside the product's loop.
    product(k.rows, k.vectors, du_mode, A_STRIPS, g->cout, g->ldu, g->ldu, filled, dm_xi,
            (g->cout + 1) * 16, transposed, 16, (size_t)g->ld * 16, u_grad + (size_t)xi * 16,
            du_row, du_strip);
    if (dv)
      product(k.rows, k.vectors, C_WRITE, A_PANELS, g->cin, n, filled, g->cout,
              u + (size_t)xi * u_position(g->cout, g->u_cin), u_strip(g->cout), dm_xi, 16,
              (size_t)(g->cout + 1) * 16, dv + xi * position_stride(g->cin, g->ld), g->ld, 16);
  }
  // Non-temporal stores are not ordered with the others: fenced before the threads meet to sum dU.
  if (stream) __builtin_ia32_sfence();
}

/// dU = 0 in a thread's columns 0 … ldu − 1 (its strips: gradient_products' layout): what a
/// backward over no images writes.
INLINE void zero_weight_gradient(const geometry *g, int positions, float *u_grad) {
  for (size_t co = 0; co < (size_t)g->cout; co++)
    memset(u_grad + co * positions * g->du_ld, 0, sizeof(float) * (size_t)positions * g->ldu);
}

// MARK: - Rows of a block

/// Row y of an image plane, or NULL outside the image (a padded row of zeros).
INLINE const float *image_row(const geometry *g, const float *plane, int y) {
  return y >= 0 && y < g->height ? plane + (size_t)y * g->width : NULL;
}

/// Asks for every line of row y of `plane` (NULL, or y outside the image: nothing) to come into the
/// L2, with intent to write when `write`: the row a transform reads or writes one channel (or
/// image) later. A transform reads or writes each channel's rows of a block (a few KB, contiguous)
/// once, crossing into a new 4 KB page every few rows; the hardware prefetchers stop at a page's
/// end, so where the images come from memory (112–224 px) each new page waited on it. Asked for a
/// channel ahead, the lines are there when it starts. VGG-16 at batch 8, two threads, AVX-512, best
/// of three alternating runs: 224 px forward 52.6–54.5 → 46.6–48.0 ms (input transform 12–13 →
/// 8.1–8.4 ms, output 7.0–8.1 → 5.5–5.7), backward 105–118 → 94–102 ms; 56 and 28 px unchanged.
INLINE void prefetch_row(const int write, const geometry *g, const float *plane, int y) {
  const float *start = plane ? image_row(g, plane, y) : NULL;
  if (!start) return;
  const uintptr_t row = (uintptr_t)start, end = row + sizeof(float) * (size_t)g->width;
  for (uintptr_t line = row & ~(uintptr_t)63; line < end; line += 64) {
    if (write)
      __builtin_prefetch((const void *)line, 1, 1);
    else
      __builtin_prefetch((const void *)line, 0, 1);
  }
}

/// The plane a transform takes after image i's channel c, walking channels outer and images inner
/// (`count` images `image_stride` floats apart, `channels` channels `plane` floats apart from
/// `images`), or NULL after the last: the `next` that prefetch_row asks for.
INLINE const float *next_plane(const float *images, size_t image_stride, size_t plane, int i,
                               int count, int c, int channels) {
  if (i + 1 < count) return images + (size_t)(i + 1) * image_stride + (size_t)c * plane;
  return c + 1 < channels ? images + (size_t)(c + 1) * plane : NULL;
}

/// Asks for the line `ld` floats on from p into the L2: a slab's next row (M or dV: the next
/// channel's), read when the transform reading these comes to that channel. An output transform
/// (and the input gradient's) reads 36 such rows at once, more streams than the hardware
/// prefetchers follow, from the L3 where a block's slabs (2–8 MB a thread) have gone.
/// VGG-16's forward at batch 8, two threads, AVX-512, three alternating runs: the output transform
/// at 56 px (128 → 256) 2.5–2.9 → 1.8–1.9 ms, at 28 px (256 → 512) 3.1–3.6 → 2.1–2.3 ms.
INLINE void prefetch_next_row(const float *p, int ld) {
  __builtin_prefetch((const void *)((uintptr_t)p + sizeof(float) * (size_t)ld), 0, 1);
}

/// The input gradient's tile-order planes that cover padded row p of a block of `rows` tile rows,
/// for `tile` × `tile` output tiles (patches of tile + 2 rows, one every `tile` rows): patch row
/// p % tile of tile row p / tile (if inside the block), and patch row p % tile + tile of the tile
/// row above (if it has one). Patch row r of tile row tr: a + kinds · r · cw + tr · tiles_w (the
/// `kinds` planes of a patch row, cw floats apart). *first is NULL only when neither exists.
INLINE void covering_planes(const geometry *g, int tile, int kinds, int rows, int p, const float *a,
                            const float **first, const float **second) {
  const size_t cw = (size_t)g->compact;
  const int r = p % tile, tr = p / tile;
  *first = tr < rows ? a + (size_t)kinds * r * cw + (size_t)tr * g->tiles_w : NULL;
  *second = r < 2 && tr > 0 ? a + (size_t)kinds * (r + tile) * cw + (size_t)(tr - 1) * g->tiles_w
                            : NULL;
  if (!*first) *first = *second, *second = NULL;
}

/// Writes one channel's rows of a block's input gradient: each padded row tile · ty0 − 1 …
/// tile · (ty0 + rows) inside the image merged by `merge` (merge_row, merge_row4) from the
/// tile-order planes a of the one or two tile rows whose patches cover it (covering_planes);
/// the rows shared with the previous block of the image (the first two, when ty0 > 0) are added
/// to what that block wrote, the others overwritten. The same rows of `next` (the plane written
/// next, or NULL) are asked for as it goes (prefetch_row).
INLINE void merge_rows(const int tile, const int kinds,
                       void (*merge)(float *, int, int, const float *, const float *, size_t, int,
                                     int),
                       const geometry *g, int ty0, int rows, const float *a, float *plane,
                       const float *next, int in_lanes) {
  for (int p = 0; p < tile * rows + 2; p++) {
    const int y = tile * ty0 - 1 + p;
    prefetch_row(1, g, next, y);
    if (y < 0 || y >= g->height) continue;
    const float *first, *second;
    covering_planes(g, tile, kinds, rows, p, a, &first, &second);
    merge(plane + (size_t)y * g->width, g->width, g->tiles_w, first, second, (size_t)g->compact,
          ty0 > 0 && p < 2, in_lanes);
  }
}

#endif
