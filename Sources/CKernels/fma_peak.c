// The machine's FP32 peak as the kernels can reach it: a block of independent multiply-adds with
// nothing else in the loop (PeakFlops.h). Twelve accumulators cover the FMA latency (4 cycles) on
// two FMA pipes with room to spare, and stay in registers at every width (AVX2 has 16 ymm).

#include "CKernels.h"
#include "PeakFlops.h"

#pragma clang diagnostic ignored "-Wpsabi"

enum { CHAINS = 12 };

/// One width's loop: acc ← acc · m + a, CHAINS independent chains of `W`-float vectors. With m just
/// below 1 and a small the values stay normal and bounded, so no denormal slows a pipe down.
#define FMA_LOOP(NAME, TARGET, W, FUSED)                                                           \
  TARGET static float NAME(long iterations) {                                                      \
    typedef float vec __attribute__((vector_size(4 * W)));                                         \
    vec acc[CHAINS];                                                                               \
    vec m, a;                                                                                      \
    for (int j = 0; j < W; j++) {                                                                  \
      m[j] = 0.999999f;                                                                            \
      a[j] = 1e-6f;                                                                                \
    }                                                                                              \
    for (int c = 0; c < CHAINS; c++)                                                               \
      for (int j = 0; j < W; j++) acc[c][j] = (float)(c + j);                                      \
    for (long i = 0; i < iterations; i++) {                                                        \
      for (int c = 0; c < CHAINS; c++) acc[c] = FUSED;                                             \
    }                                                                                              \
    float sum = 0;                                                                                 \
    for (int c = 0; c < CHAINS; c++)                                                               \
      for (int j = 0; j < W; j++) sum += acc[c][j];                                                \
    return sum;                                                                                    \
  }

#if defined(__x86_64__)
#define CK_AVX2 __attribute__((target("avx2,fma")))
#define CK_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")))
FMA_LOOP(chains_avx512, CK_AVX512, 16, __builtin_elementwise_fma(acc[c], m, a))
FMA_LOOP(chains_avx2, CK_AVX2, 8, __builtin_elementwise_fma(acc[c], m, a))
// Baseline x86-64 has no FMA: a multiply and an add, counted as two operations.
FMA_LOOP(chains_generic, , 4, acc[c] * m + a)
#else
FMA_LOOP(chains_generic, , 4, acc[c] * m + a)
#endif

int ck_peak_flops_per_iteration(void) {
#if defined(__x86_64__)
  switch (ck_isa()) {
  case CK_ISA_AVX512: return CHAINS * 16 * 2;
  case CK_ISA_AVX2: return CHAINS * 8 * 2;
  default: break;
  }
#endif
  return CHAINS * 4 * 2;
}

float ck_peak_flops_run(long iterations) {
#if defined(__x86_64__)
  switch (ck_isa()) {
  case CK_ISA_AVX512: return chains_avx512(iterations);
  case CK_ISA_AVX2: return chains_avx2(iterations);
  default: break;
  }
#endif
  return chains_generic(iterations);
}
