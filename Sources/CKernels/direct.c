// Direct 3×3 convolution (stride 1, padding 1), forward, for layers with few input channels (the
// first layer reads RGB: Cin = 3, where im2col's product has only 27 terms and Winograd's
// transforms outweigh its products):
//   y[co][y][x] = bias[co] + Σ_{ci, ky, kx} w[co][ci][ky][kx] · in[ci][y + ky − 1][x + kx − 1]
// then the ReLU when asked. Register blocking: ROWS output channels × VECTORS 16-pixel vectors of
// one output row (the Winograd products' at AVX2 and baseline, winograd_shared.h; 8 × 1 at
// AVX-512, below); each input vector is loaded once per tap and shared by the ROWS channels.
// Input rows are staged with a zero column on each side, a few output rows at a time, so that
// every load is a plain vector.

#include "CKernels.h"

#include <string.h>

#include "winograd_shared.h"

/// Output rows per staged chunk.
enum { CHUNK_ROWS = 8 };

/// Floats per staged row: a zero, the row, zeros up to the last vector's reach.
INLINE int staged_width(int width) { return round16(width) + 48; }

size_t ck_direct_relu_mask_words(const ck_conv_shape *shape) {
  return direct_mask_word(shape, shape->out_channels, 0, 0);  // one past the last channel's rows
}

size_t ck_direct_scratch(const ck_conv_shape *shape) {
  return (size_t)shape->in_channels * (CHUNK_ROWS + 2) * (size_t)staged_width(shape->width);
}

/// staged[(ci · (rows + 2) + r) · sw + 1 + x] = input[ci][y0 − 1 + r][x] (0 outside the image),
/// for r < rows + 2.
INLINE void stage_rows(const ck_conv_shape *s, const float *image, int y0, int rows,
                       float *staged) {
  const int sw = staged_width(s->width);
  for (int ci = 0; ci < s->in_channels; ci++)
    for (int r = 0; r < rows + 2; r++) {
      float *target = staged + ((size_t)ci * (rows + 2) + r) * sw;
      const int y = y0 - 1 + r;
      memset(target, 0, sizeof(float) * (size_t)sw);
      if (y >= 0 && y < s->height)
        memcpy(target + 1, image + ((size_t)ci * s->height + y) * s->width,
               sizeof(float) * (size_t)s->width);
    }
}

/// Output channels co … co + ROWS − 1, rows y0 … y0 + rows − 1, from the staged chunk; and, where
/// mask is not NULL, their bits of the image's ReLU mask (which outputs are above 0: per output
/// channel and row, 16 pixels to a word).
INLINE void direct_panel(const int ROWS, const int VECTORS, const ck_conv_shape *s,
                         const float *weight, const float *bias, const float *staged, int y0,
                         int rows, int co, float *image_out, uint16_t *mask) {
  const int cin = s->in_channels, width = s->width, sw = staged_width(width);
  const size_t plane = (size_t)s->height * width;
  const float *w = weight + (size_t)co * cin * 9;  // w[(r · Cin + ci) · 9 + tap]
  for (int y = 0; y < rows; y++) {
    for (int x = 0; x < width; x += 16 * VECTORS) {
      v16 acc[8][2];
#pragma clang loop unroll(full)
      for (int r = 0; r < ROWS; r++) acc[r][0] = acc[r][1] = splat(bias[co + r]);
      for (int ci = 0; ci < cin; ci++) {
        for (int ky = 0; ky < 3; ky++) {
          const float *row = staged + ((size_t)ci * (rows + 2) + y + ky) * sw + x;
#pragma clang loop unroll(full)
          for (int kx = 0; kx < 3; kx++) {
            v16 in0 = load(row + kx), in1 = VECTORS == 2 ? load(row + kx + 16) : zero();
#pragma clang loop unroll(full)
            for (int r = 0; r < ROWS; r++) {
              v16 tap = splat(w[((size_t)r * cin + ci) * 9 + ky * 3 + kx]);
              acc[r][0] += tap * in0;
              if (VECTORS == 2) acc[r][1] += tap * in1;
            }
          }
        }
      }
#pragma clang loop unroll(full)
      for (int r = 0; r < ROWS; r++) {
        float *target = image_out + (size_t)(co + r) * plane + (size_t)(y0 + y) * width + x;
        for (int v = 0; v < VECTORS; v++) {
          v16 out = s->relu ? maximum(acc[r][v], zero()) : acc[r][v];
          const int left = width - x - 16 * v;
          if (left >= 16)
            store(target + 16 * v, out);
          else if (left > 0)
            store_first(target + 16 * v, left, out);
          if (mask && left > 0)
            mask[direct_mask_word(s, co + r, y0 + y, x + 16 * v)] = positive_bits(out);
        }
      }
    }
  }
}

/// Rows row_begin … row_end − 1 of one image, every output channel.
INLINE void direct_pass(const blocking k, const ck_conv_shape *s, const float *weight,
                        const float *bias, const float *image, float *image_out,
                        uint16_t *relu_mask, int row_begin, int row_end, float *scratch) {
  uint16_t *mask = s->relu ? relu_mask : NULL;
  for (int y0 = row_begin; y0 < row_end; y0 += CHUNK_ROWS) {
    const int rows = min_int(CHUNK_ROWS, row_end - y0);
    stage_rows(s, image, y0, rows, scratch);
    int co = 0;
    for (; co + k.rows <= s->out_channels; co += k.rows)
      direct_panel(k.rows, k.vectors, s, weight, bias, scratch, y0, rows, co, image_out, mask);
    for (; co < s->out_channels; co++)
      direct_panel(1, k.vectors, s, weight, bias, scratch, y0, rows, co, image_out, mask);
  }
}

#define DIRECT_PARAMS                                                                              \
  (const ck_conv_shape *shape, const float *weight, const float *bias, const float *image,        \
   float *image_out, uint16_t *relu_mask, int row_begin, int row_end, float *scratch)
#define DIRECT_ARGS (shape, weight, bias, image, image_out, relu_mask, row_begin, row_end, scratch)

/// AVX-512's blocking: 8 output channels × one vector. The products' 8 × 2 (two vectors of one row,
/// each tap's weight shared by both) ran slower here. VGG-16's first layer, batch 8, two threads,
/// stand-alone (Zen 4): at 224 px 8.9–9.1 → 7.2–7.4 ms (65% → 80–82% of the peak), at 128 px
/// (32 output channels) 1.40–1.44 → 1.16 ms, at 64 px 0.38–0.39 → 0.32–0.33 ms; 6 × 1, 4 × 2, 12 ×
/// 1 and 16 × 1 fell between.
#define DIRECT_BLOCKING_AVX512 {8, 1, 0}

/// direct_pass with one instruction set's register blocking.
#define DIRECT_WITH(NAME, BLOCKING)                                                                \
  INLINE void NAME DIRECT_PARAMS {                                                                 \
    const blocking k = BLOCKING;                                                                   \
    direct_pass(k, shape, weight, bias, image, image_out, relu_mask, row_begin, row_end, scratch); \
  }
DIRECT_WITH(direct_baseline, BLOCKING_BASELINE)
DIRECT_WITH(direct_avx2, BLOCKING_AVX2)
DIRECT_WITH(direct_avx512, DIRECT_BLOCKING_AVX512)

CK_INSTANTIATE_EACH(ck_direct_forward, DIRECT_PARAMS, DIRECT_ARGS, direct_baseline, direct_avx2,
                    direct_avx512)
