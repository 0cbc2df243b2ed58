// Stable softmax, 16 classes at a time: three passes over a row (maximum, exponentials and their
// sum, scaling), the row staying in L1 between them.

#include "softmax.h"

#include "vector16.h"

INLINE void softmax_row(const float *z, float *p, int classes, float *row_max, float *row_sum) {
  int full = classes / 16 * 16, rest = classes - full;
  v16 maxima = splat(-__builtin_inff());
  for (int j = 0; j < full; j += 16) maxima = maximum(maxima, load(z + j));
  if (rest) maxima = maximum(maxima, load_first(z + full, rest, -__builtin_inff()));
  float m = max_lane(maxima);
  v16 shift = splat(m);
  v16 sums = splat(0);
  for (int j = 0; j < full; j += 16) {
    v16 e = exp16(load(z + j) - shift);
    store(p + j, e);
    sums += e;
  }
  if (rest) {
    // padding lanes hold −∞: e^(−∞) = 0 adds nothing
    v16 e = exp16(load_first(z + full, rest, -__builtin_inff()) - shift);
    store_first(p + full, rest, e);
    sums += e;
  }
  float s = horizontal_sum(sums);
  v16 inverse = splat(1.0f / s);
  for (int j = 0; j < full; j += 16) store(p + j, load(p + j) * inverse);
  for (int j = full; j < classes; j++) p[j] *= 1.0f / s;
  *row_max = m;
  *row_sum = s;
}

INLINE void softmax_rows(const float *logits, float *probabilities, int rows, int classes,
                            float *row_max, float *row_sum) {
  for (int r = 0; r < rows; r++) {
    size_t offset = (size_t)r * (size_t)classes;
    softmax_row(logits + offset, probabilities + offset, classes, row_max + r, row_sum + r);
  }
}

CK_INSTANTIATE(ck_softmax_rows,
               (const float *logits, float *probabilities, int rows, int classes, float *row_max,
                float *row_sum),
               (logits, probabilities, rows, classes, row_max, row_sum), softmax_rows)
