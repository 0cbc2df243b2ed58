// Private to CKernels: 16-float vectors, their basic helpers (winograd.c and the others), e^x, σ
// and tanh, and the per-instruction-set instantiation of the kernels besides winograd.c (adam.c,
// gemm.c, lstm.c, softmax.c).
//
// Each kernel is written once as an always-inline function on 16-float vectors (clang's vector
// extensions); CK_INSTANTIATE compiles it three times, as winograd.c does (AVX-512: one register
// per vector, AVX2 + FMA: two, baseline x86-64: four SSE registers), and defines the public entry
// point that calls the variant for ck_isa().
#ifndef CK_VECTOR16_H
#define CK_VECTOR16_H

#include "CKernels.h"

#include <string.h>

// The helpers take and return 16-float vectors; they are always inlined, so the AVX2 variants'
// warning that such arguments would change the calling convention does not apply.
#pragma clang diagnostic ignored "-Wpsabi"

typedef float v16 __attribute__((vector_size(64)));
typedef int v16i __attribute__((vector_size(64)));
typedef float v8 __attribute__((vector_size(32)));
typedef float v4 __attribute__((vector_size(16)));

#define INLINE static inline __attribute__((always_inline))

INLINE v16 load(const float *p) {
  v16 v;
  memcpy(&v, p, sizeof v);
  return v;
}

INLINE void store(float *p, v16 v) { memcpy(p, &v, sizeof v); }

INLINE v8 load8(const float *p) {
  v8 v;
  memcpy(&v, p, sizeof v);
  return v;
}

INLINE void store8(float *p, v8 v) { memcpy(p, &v, sizeof v); }

INLINE v16 splat(float x) { return (v16){x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x}; }

INLINE v16 zero(void) { return splat(0.0f); }

/// a0, b0, a1, b1, …, a7, b7.
INLINE v16 interleave_low(v16 a, v16 b) {
  return __builtin_shufflevector(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
}

/// a8, b8, …, a15, b15.
INLINE v16 interleave_high(v16 a, v16 b) {
  return __builtin_shufflevector(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
}

// MARK: - 4 × 16 interleaves in 128-bit lanes

// Where a vector is several registers (AVX2: two of 8 floats, baseline: four of 4), a shuffle
// across all 16 floats costs several instructions. The interleaves below (four rows of 16 floats to
// 64 floats in column order, and back) are a 4 × 4 transpose in each 128-bit lane and moves of
// whole lanes: 24 shuffles at AVX2 where interleave_low/high's take 88 (32 against 64 at
// baseline). At AVX-512 the 16-float shuffles are one instruction each and stay. With them and
// transpose16_in_lanes, VGG-16's training profile at AVX2 (on the Zen 4, batch 8, four alternating
// runs, each layer's best): every layer's backward 0.4–7.5 ms faster (224 px 101.7 → 95.9, 112 px
// 95.0 → 89.9, 56 px 92.6–96.6 → 88.7–89.1), every forward up to 1.0 ms.

/// The low or high 8 floats of x.
INLINE v8 low8(v16 x) { return __builtin_shufflevector(x, x, 0, 1, 2, 3, 4, 5, 6, 7); }
INLINE v8 high8(v16 x) { return __builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15); }

/// low ‖ high.
INLINE v16 join8(v8 low, v8 high) {
  return __builtin_shufflevector(low, high, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}

/// Transposes r[0 … 3] as two 4 × 4 blocks, one in each 128-bit lane, in place.
INLINE void transpose4_in_lanes(v8 r[4]) {
  v8 a = __builtin_shufflevector(r[0], r[1], 0, 8, 1, 9, 4, 12, 5, 13);
  v8 b = __builtin_shufflevector(r[0], r[1], 2, 10, 3, 11, 6, 14, 7, 15);
  v8 c = __builtin_shufflevector(r[2], r[3], 0, 8, 1, 9, 4, 12, 5, 13);
  v8 d = __builtin_shufflevector(r[2], r[3], 2, 10, 3, 11, 6, 14, 7, 15);
  r[0] = __builtin_shufflevector(a, c, 0, 1, 8, 9, 4, 5, 12, 13);
  r[1] = __builtin_shufflevector(a, c, 2, 3, 10, 11, 6, 7, 14, 15);
  r[2] = __builtin_shufflevector(b, d, 0, 1, 8, 9, 4, 5, 12, 13);
  r[3] = __builtin_shufflevector(b, d, 2, 3, 10, 11, 6, 7, 14, 15);
}

/// The first 4 floats (lane 0) of a then of b, or (upper) their last 4.
INLINE v8 lanes_of(v8 a, v8 b, int upper) {
  return upper ? __builtin_shufflevector(a, b, 4, 5, 6, 7, 12, 13, 14, 15)
               : __builtin_shufflevector(a, b, 0, 1, 2, 3, 8, 9, 10, 11);
}

/// out[q] = y[0][i], y[1][i], y[2][i], y[3][i] for i = 4q … 4q + 3: floats 4i + k of out are
/// y[k][i].
INLINE void interleave4_in_lanes(const v16 y[4], v16 out[4]) {
  for (int h = 0; h < 2; h++) {
    // Lane 0 of r[k] after the transpose: column i of y for i = 8h + k, lane 1: i = 8h + 4 + k.
    v8 r[4];
    for (int k = 0; k < 4; k++) r[k] = h ? high8(y[k]) : low8(y[k]);
    transpose4_in_lanes(r);
    out[2 * h] = join8(lanes_of(r[0], r[1], 0), lanes_of(r[2], r[3], 0));
    out[2 * h + 1] = join8(lanes_of(r[0], r[1], 1), lanes_of(r[2], r[3], 1));
  }
}

/// interleave4_in_lanes' inverse: y[k][i] = float 4i + k of in[0 … 3].
INLINE void deinterleave4_in_lanes(const v16 in[4], v16 y[4]) {
  v8 half[2][4];
  for (int h = 0; h < 2; h++) {
    const v8 first = low8(in[2 * h]), second = high8(in[2 * h]);
    const v8 third = low8(in[2 * h + 1]), fourth = high8(in[2 * h + 1]);
    v8 *r = half[h];
    r[0] = lanes_of(first, third, 0), r[1] = lanes_of(first, third, 1);
    r[2] = lanes_of(second, fourth, 0), r[3] = lanes_of(second, fourth, 1);
    transpose4_in_lanes(r);
  }
  for (int k = 0; k < 4; k++) y[k] = join8(half[0][k], half[1][k]);
}

/// Transposes the 8 × 8 block whose rows are r[0 … 7], in place: its 4 × 4 quarters in lanes, then
/// lanes exchanged.
INLINE void transpose8(v8 r[8]) {
  v8 top[4] = {r[0], r[1], r[2], r[3]}, bottom[4] = {r[4], r[5], r[6], r[7]};
  transpose4_in_lanes(top);
  transpose4_in_lanes(bottom);
  for (int k = 0; k < 4; k++) {
    r[k] = lanes_of(top[k], bottom[k], 0);
    r[4 + k] = lanes_of(top[k], bottom[k], 1);
  }
}

/// transpose16 as four 8 × 8 blocks (transpose8), for a vector of several registers: 96 shuffles at
/// AVX2 where transpose16's 64 interleaves take about 350.
INLINE void transpose16_in_lanes(v16 x[16]) {
  v8 block[4][8];  // rows 0 … 7 and 8 … 15, columns 0 … 7 and 8 … 15: [2 · (rows) + (columns)]
  for (int i = 0; i < 8; i++) {
    block[0][i] = low8(x[i]), block[1][i] = high8(x[i]);
    block[2][i] = low8(x[8 + i]), block[3][i] = high8(x[8 + i]);
  }
  for (int b = 0; b < 4; b++) transpose8(block[b]);
  for (int r = 0; r < 8; r++) {
    x[r] = join8(block[0][r], block[2][r]);
    x[8 + r] = join8(block[1][r], block[3][r]);
  }
}

/// Transposes the 16 × 16 block whose rows are x[0 … 15], in place: four perfect shuffles of the
/// rows.
INLINE void transpose16(v16 x[16]) {
  for (int round = 0; round < 4; round++) {
    v16 y[16];
    for (int i = 0; i < 8; i++) {
      y[2 * i] = interleave_low(x[i], x[i + 8]);
      y[2 * i + 1] = interleave_high(x[i], x[i + 8]);
    }
    for (int i = 0; i < 16; i++) x[i] = y[i];
  }
}

/// The lanes' sum of 8 floats, as a tree (4 + 4, then 2 + 2, …).
INLINE float horizontal_sum8(v8 a) {
  v4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  return (b[0] + b[2]) + (b[1] + b[3]);
}

/// The lanes' sum, as a tree (8 + 8, 4 + 4, …).
INLINE float horizontal_sum(v16 v) {
  return horizontal_sum8(__builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                         __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15));
}

INLINE float max_lane(v16 v) { return __builtin_reduce_max(v); }

INLINE v16 maximum(v16 a, v16 b) { return __builtin_elementwise_max(a, b); }

INLINE v16 minimum(v16 a, v16 b) { return __builtin_elementwise_min(a, b); }

/// Lane-wise a < b ? x : y.
INLINE v16 select_less(v16 a, v16 b, v16 x, v16 y) {
  v16i mask = a < b;
  return (v16)((mask & (v16i)x) | (~mask & (v16i)y));
}

/// p[0 … count − 1] (count ≤ 16) in the first lanes, `fill` in the others.
INLINE v16 load_first(const float *p, int count, float fill) {
  float staged[16];
  for (int i = 0; i < 16; i++) staged[i] = i < count ? p[i] : fill;
  return load(staged);
}

/// p[0 … count − 1] = the first count (≤ 16) lanes of v.
INLINE void store_first(float *p, int count, v16 v) {
  float staged[16];
  store(staged, v);
  for (int i = 0; i < count; i++) p[i] = staged[i];
}

/// e^x, lane-wise, relative error below 2.5e-7 for x in [−87, 88]; 0 below −87 (where e^x
/// < 1.7e-38: subnormal results are flushed), e^88.3 ≈ 2.2e38 above 88.3 (no infinity).
///   n = round(x / ln 2), r = x − n ln 2 (ln 2 in two parts, Cody & Waite), |r| ≤ ln2 / 2;
///   e^x = 2ⁿ · e^r, e^r by its Taylor polynomial to r⁷ (next term < 5.3e-9 e^r), Horner form;
///   2ⁿ built in the exponent bits (n in −126 … 127).
INLINE v16 exp16(v16 x) {
  const v16 low = splat(-87.0f), high = splat(88.3f);
  v16 xc = minimum(maximum(x, low), high);
  // round to nearest by adding and removing 1.5 · 2²³ (|x / ln 2| < 2²²)
  const v16 shifter = splat(12582912.0f);
  v16 n = (xc * splat(1.44269504088896341f) + shifter) - shifter;
  v16 r = xc - n * splat(0.693359375f);  // ln 2 high part (exact in n · it)
  r = r - n * splat(-2.12194440e-4f);      // ln 2 − high part
  v16 p = splat(1.0f / 5040);
  p = p * r + splat(1.0f / 720);
  p = p * r + splat(1.0f / 120);
  p = p * r + splat(1.0f / 24);
  p = p * r + splat(1.0f / 6);
  p = p * r + splat(0.5f);
  p = p * r + splat(1.0f);
  p = p * r + splat(1.0f);
  v16i bits = (__builtin_convertvector(n, v16i) + 127) << 23;
  v16 scaled = p * (v16)bits;
  return select_less(x, low, splat(0.0f), scaled);
}

/// σ(x) = 1 / (1 + e^(−x)).
INLINE v16 sigmoid16(v16 x) { return 1.0f / (1.0f + exp16(-x)); }

/// tanh x = 1 − 2 / (e^(2x) + 1), absolute error ≤ 3e-7, ±1 at large |x|; for |x| < 1/8, where
/// that form loses relative accuracy, the odd Taylor series x − x³/3 + 2x⁵/15 − 17x⁷/315 (next
/// term < 2e-10 relative), as Activation.tanh in Swift.
INLINE v16 tanh16(v16 x) {
  v16 viaExp = 1.0f - 2.0f / (exp16(2.0f * x) + 1.0f);
  v16 x2 = x * x;
  v16 series =
      x * (1.0f + x2 * (-1.0f / 3 + x2 * (2.0f / 15 + x2 * (-17.0f / 315))));
  v16 magnitude = maximum(x, -x);
  return select_less(magnitude, splat(0.125f), series, viaExp);
}

// MARK: - Instantiation

#define CK_AVX2 __attribute__((target("avx2,fma")))
#define CK_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")))

/// Defines `void NAME PARAMS` running, for the instruction set ck_isa() names, `GENERIC ARGS`,
/// `AVX2 ARGS` or `AVX512 ARGS` compiled for it (ARGS: PARAMS' names in parentheses; the three are
/// INLINE functions, or one function for all).
#if defined(__x86_64__)
#define CK_INSTANTIATE_EACH(NAME, PARAMS, ARGS, GENERIC, AVX2, AVX512)                              \
  static void NAME##_generic PARAMS { GENERIC ARGS; }                                              \
  CK_AVX2 static void NAME##_avx2 PARAMS { AVX2 ARGS; }                                            \
  CK_AVX512 static void NAME##_avx512 PARAMS { AVX512 ARGS; }                                      \
  void NAME PARAMS {                                                                               \
    switch (ck_isa()) {                                                                            \
    case CK_ISA_AVX512: NAME##_avx512 ARGS; break;                                                 \
    case CK_ISA_AVX2: NAME##_avx2 ARGS; break;                                                     \
    default: NAME##_generic ARGS; break;                                                           \
    }                                                                                              \
  }
#else
#define CK_INSTANTIATE_EACH(NAME, PARAMS, ARGS, GENERIC, AVX2, AVX512)                              \
  void NAME PARAMS { GENERIC ARGS; }
#endif

/// CK_INSTANTIATE_EACH with one body for every instruction set.
#define CK_INSTANTIATE(NAME, PARAMS, ARGS, BODY) CK_INSTANTIATE_EACH(NAME, PARAMS, ARGS, BODY, BODY, BODY)

#endif
