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
