// Adam (Kingma & Ba 2015) with PyTorch's bias correction and decoupled weight decay, 16 elements
// at a time. Memory-bound: it streams the parameter, its gradient and both moments once.

#include "adam.h"

#include "vector16.h"

// No fused multiply-adds: each product and sum rounds as in the scalar formula (adam.h).
#pragma clang fp contract(off)

INLINE v16 adam_lanes(v16 p, v16 g, v16 *m, v16 *v, const ck_adam_constants *k) {
  g = g * splat(k->gradient_scale);
  p = p * splat(k->decay);
  *m = splat(k->beta1) * *m + splat(k->one_minus_beta1) * g;
  *v = splat(k->beta2) * *v + splat(k->one_minus_beta2) * g * g;
  v16 denominator =
      __builtin_elementwise_sqrt(*v) * splat(k->inverse_root_correction2) +
      splat(k->epsilon);
  return p - splat(k->step_size) * *m / denominator;
}

INLINE void adam_update(float *param, const float *grad, float *m, float *v, size_t count,
                           const ck_adam_constants *k) {
  size_t i = 0;
  for (; i + 16 <= count; i += 16) {
    v16 mi = load(m + i), vi = load(v + i);
    store(param + i, adam_lanes(load(param + i), load(grad + i), &mi, &vi, k));
    store(m + i, mi);
    store(v + i, vi);
  }
  if (i < count) {
    int rest = (int)(count - i);
    v16 mi = load_first(m + i, rest, 0), vi = load_first(v + i, rest, 0);
    v16 p = adam_lanes(load_first(param + i, rest, 0), load_first(grad + i, rest, 0),
                        &mi, &vi, k);
    store_first(param + i, rest, p);
    store_first(m + i, rest, mi);
    store_first(v + i, rest, vi);
  }
}

CK_INSTANTIATE(ck_adam_update,
               (float *param, const float *grad, float *m, float *v, size_t count,
                const ck_adam_constants *constants),
               (param, grad, m, v, count, constants), adam_update)
