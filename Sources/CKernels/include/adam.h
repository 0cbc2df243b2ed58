// The Adam update (CaptionKit's Adam) as a vectorised kernel; see adam.c.
#ifndef CK_ADAM_H
#define CK_ADAM_H

#include <stddef.h>

/// The per-step constants of one Adam update (the same for every element).
typedef struct {
  float beta1;
  float beta2;
  /// 1 − β₁ and 1 − β₂, as the caller rounds them.
  float one_minus_beta1;
  float one_minus_beta2;
  /// lr / (1 − β₁ᵗ).
  float step_size;
  /// 1 / √(1 − β₂ᵗ).
  float inverse_root_correction2;
  float epsilon;
  /// 1 − lr·λ (decoupled weight decay; 1 without it).
  float decay;
  /// The gradient is read as g · gradient_scale (global-norm clipping; 1 without it).
  float gradient_scale;
} ck_adam_constants;

/// For i < count, in this order and float arithmetic without fused multiply-adds (so every
/// instruction set gives the bits of the scalar formula):
///   g = grad[i] · gradient_scale,  p = param[i] · decay,
///   m[i] = β₁ m[i] + (1 − β₁) g,  v[i] = β₂ v[i] + (1 − β₂) g g,
///   param[i] = p − step_size · m[i] / (√v[i] · inverse_root_correction2 + ε).
void ck_adam_update(float *param, const float *grad, float *m, float *v, size_t count,
                    const ck_adam_constants *constants);

#endif
