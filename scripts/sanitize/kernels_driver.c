// Runs every C kernel (Sources/CKernels) at every instruction set the CPU has, and the image shims
// (Sources/CShims) over the files named on the command line, for scripts/sanitize.sh to build with
// AddressSanitizer and UndefinedBehaviorSanitizer. Sizes are odd on purpose (vector remainders).
// The products are also checked against a double reference; exit 1 on a mismatch.
#include "CKernels.h"
#include "ForkJoin.h"
#include "SmallGemm.h"
#include "adam.h"
#include "gemm.h"
#include "image_shims.h"
#include "lstm.h"
#include "peephole.h"
#include "softmax.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

/// Floats from a small generator of our own, in [-1, 1).
static float *random_floats(size_t count, unsigned seed) {
  float *x = malloc(count * sizeof *x);
  unsigned s = seed * 2654435761u + 1;
  for (size_t i = 0; i < count; i++) {
    s = s * 1664525u + 1013904223u;
    x[i] = (float)(s >> 8) / (float)(1u << 23) - 1.0f;
  }
  return x;
}

/// Relative L2 error of `got` against `want` must be under 1e-4.
static void check(const char *what, int isa, const float *got, const double *want, size_t count) {
  double error = 0, norm = 0;
  for (size_t i = 0; i < count; i++) {
    error += (got[i] - want[i]) * (got[i] - want[i]);
    norm += want[i] * want[i];
  }
  double relative = sqrt(error / (norm > 0 ? norm : 1));
  if (!(relative < 1e-4)) {
    printf("FAIL %s (isa %d): relative L2 error %g\n", what, isa, relative);
    failures++;
  }
}

static void gemm(int isa) {
  const int m = 5, n = 37, k = 19;
  for (int trans_a = 0; trans_a < 2; trans_a++) {
    for (int trans_b = 0; trans_b < 2; trans_b++) {
      float *a = random_floats((size_t)m * k, 1), *b = random_floats((size_t)k * n, 2);
      float *c = random_floats((size_t)m * n, 3);
      double *want = malloc(sizeof(double) * m * n);
      for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
          double sum = c[i * n + j];  // accumulate
          for (int p = 0; p < k; p++) {
            sum += (double)(trans_a ? a[p * m + i] : a[i * k + p]) * (trans_b ? b[j * k + p] : b[p * n + j]);
          }
          want[i * n + j] = sum;
        }
      }
      float *packed = malloc(ck_gemm_packed_size(k, n) * sizeof(float));
      int panels = (n + 15) / 16;
      ck_gemm_pack(b, trans_b ? k : n, trans_b, k, n, 0, panels, packed);
      ck_gemm_packed(m, n, k, a, trans_a ? m : k, trans_a, packed, c, n, 1, 0, panels);
      check("ck_gemm_packed", isa, c, want, (size_t)m * n);
      free(a), free(b), free(c), free(want), free(packed);
    }
  }
}

static void small_gemm(int isa) {
  const int m = 3, n = 37, k = 19;
  float *a = random_floats((size_t)m * k, 4), *b = random_floats((size_t)n * k, 5);
  float *bias = random_floats(n, 6), *c = random_floats((size_t)m * n, 7);
  double *want = malloc(sizeof(double) * m * n);
  for (int i = 0; i < m; i++) {
    for (int j = 0; j < n; j++) {
      double sum = 0.5 * c[i * n + j] + bias[j];
      for (int p = 0; p < k; p++) sum += (double)a[i * k + p] * b[j * k + p];
      want[i * n + j] = sum;
    }
  }
  float *c2 = malloc(sizeof(float) * m * n);
  memcpy(c2, c, sizeof(float) * m * n);
  ck_small_gemm(m, 0, n, k, a, k, b, k, bias, 0.5f, c, n);
  check("ck_small_gemm", isa, c, want, (size_t)m * n);
  ck_small_gemm_threads(2, m, n, k, a, k, b, k, bias, 0.5f, c2, n);
  check("ck_small_gemm_threads", isa, c2, want, (size_t)m * n);
  free(a), free(b), free(bias), free(c), free(c2), free(want);
}

static void softmax(int isa) {
  const int rows = 3, classes = 37;
  float *z = random_floats((size_t)rows * classes, 8);
  float *p = malloc(sizeof(float) * rows * classes), row_max[3], row_sum[3];
  double *want = malloc(sizeof(double) * rows * classes);
  for (int r = 0; r < rows; r++) {
    double top = -INFINITY, sum = 0;
    for (int j = 0; j < classes; j++) top = fmax(top, z[r * classes + j]);
    for (int j = 0; j < classes; j++) sum += exp(z[r * classes + j] - top);
    for (int j = 0; j < classes; j++) want[r * classes + j] = exp(z[r * classes + j] - top) / sum;
  }
  ck_softmax_rows(z, p, rows, classes, row_max, row_sum);
  check("ck_softmax_rows", isa, p, want, (size_t)rows * classes);
  free(z), free(p), free(want);
}

static void adam(void) {
  const size_t count = 37;
  float *param = random_floats(count, 9), *grad = random_floats(count, 10);
  float *m = calloc(count, sizeof(float)), *v = calloc(count, sizeof(float));
  ck_adam_constants constants = {0.9f, 0.999f, 0.1f, 0.001f, 1e-3f, 1.0f / sqrtf(0.001f), 1e-8f, 1.0f, 0.5f};
  for (int step = 0; step < 3; step++) ck_adam_update(param, grad, m, v, count, &constants);
  free(param), free(grad), free(m), free(v);
}

static void recurrent(void) {
  const int batch = 2, hidden = 19;
  size_t cells = (size_t)batch * hidden;
  float *gates = random_floats(4 * cells, 11), *c_prev = random_floats(cells, 12);
  float *c = malloc(cells * sizeof(float)), *tanh_c = malloc(cells * sizeof(float));
  float *h = malloc(cells * sizeof(float)), *dpre = malloc(4 * cells * sizeof(float));
  float *dc = random_floats(cells, 13), *dh = random_floats(cells, 14);
  ck_lstm_forward(gates, c_prev, c, tanh_c, h, batch, hidden);
  ck_lstm_backward(dpre, dc, dh, gates, c_prev, tanh_c, batch, hidden);
  float *peep = random_floats(3 * (size_t)hidden, 15), *dpeep = calloc(3 * (size_t)hidden, sizeof(float));
  float *gates2 = random_floats(4 * cells, 16);
  ck_peephole_forward(gates2, peep, c_prev, c, tanh_c, h, batch, hidden);
  ck_peephole_backward(dpre, dc, dpeep, dh, gates2, peep, c_prev, c, tanh_c, batch, hidden);
  free(gates), free(c_prev), free(c), free(tanh_c), free(h), free(dpre), free(dc), free(dh);
  free(peep), free(dpeep), free(gates2);
}

static void convolution(int isa) {
  const int images = 2;
  ck_conv_shape shape = {3, 5, 7, 9, 2, 1};
  size_t in = (size_t)shape.in_channels * shape.height * shape.width;
  size_t out = (size_t)shape.out_channels * shape.height * shape.width;
  float *input = random_floats(images * in, 17), *weight = random_floats((size_t)shape.out_channels * shape.in_channels * 9, 18);
  float *bias = random_floats(shape.out_channels, 19);
  float *u = malloc(16 * (size_t)shape.out_channels * shape.in_channels * sizeof(float));
  float *output = malloc(images * out * sizeof(float));
  float *scratch = malloc(ck_winograd_scratch(&shape) * sizeof(float));
  ck_winograd_weights(weight, shape.out_channels * shape.in_channels, 0,
                      shape.out_channels * shape.in_channels, u);
  ck_winograd_forward(&shape, u, bias, input, output, images, 0, (shape.height + 1) / 2, 0,
                      shape.out_channels, scratch);
  double *want = malloc(images * out * sizeof(double));
  for (int b = 0; b < images; b++)
    for (int o = 0; o < shape.out_channels; o++)
      for (int y = 0; y < shape.height; y++)
        for (int x = 0; x < shape.width; x++) {
          double sum = bias[o];
          for (int i = 0; i < shape.in_channels; i++)
            for (int dy = -1; dy <= 1; dy++)
              for (int dx = -1; dx <= 1; dx++) {
                int yy = y + dy, xx = x + dx;
                if (yy < 0 || yy >= shape.height || xx < 0 || xx >= shape.width) continue;
                sum += (double)input[b * in + ((size_t)i * shape.height + yy) * shape.width + xx] *
                       weight[(((size_t)o * shape.in_channels + i) * 3 + dy + 1) * 3 + dx + 1];
              }
          want[b * out + ((size_t)o * shape.height + y) * shape.width + x] = sum > 0 ? sum : 0;
        }
  check("ck_winograd_forward", isa, output, want, images * out);
  // F(4×4, 3×3): the output channels in two calls, as two threads share one image.
  float *u4 = malloc(36 * (size_t)shape.out_channels * shape.in_channels * sizeof(float));
  float *output4 = malloc(images * out * sizeof(float));
  float *scratch4 = malloc(ck_winograd4_scratch(&shape) * sizeof(float));
  ck_winograd4_weights(weight, shape.out_channels * shape.in_channels, 0,
                       shape.out_channels * shape.in_channels, u4);
  ck_winograd4_forward(&shape, u4, bias, input, output4, images, 0, (shape.height + 3) / 4, 0, 3,
                       scratch4);
  ck_winograd4_forward(&shape, u4, bias, input, output4, images, 0, (shape.height + 3) / 4, 3,
                       shape.out_channels, scratch4);
  check("ck_winograd4_forward", isa, output4, want, images * out);
  free(u4), free(output4), free(scratch4);
  // The direct forward (a first layer's), each image's rows in two calls, as two threads share them.
  float *output_direct = malloc(images * out * sizeof(float));
  float *scratch_direct = malloc(ck_direct_scratch(&shape) * sizeof(float));
  for (int b = 0; b < images; b++) {
    ck_direct_forward(&shape, weight, bias, input + b * in, output_direct + b * out, 0,
                      shape.height / 2, scratch_direct);
    ck_direct_forward(&shape, weight, bias, input + b * in, output_direct + b * out,
                      shape.height / 2, shape.height, scratch_direct);
  }
  check("ck_direct_forward", isa, output_direct, want, images * out);
  free(output_direct), free(scratch_direct);
  float *output_grad = random_floats(images * out, 20), *input_grad = malloc(images * in * sizeof(float));
  int padded = (shape.in_channels + 15) / 16 * 16;
  float *u_grad = calloc(16 * (size_t)shape.out_channels * padded, sizeof(float));
  float *bias_grad = calloc(shape.out_channels, sizeof(float));
  ck_winograd_backward(&shape, u, input, output, output_grad, input_grad, u_grad, bias_grad, images, scratch);
  // dU's padded rows, as two threads' partial sums (the same one twice), an output channel
  // range each: a check of memory, not of values.
  float *weight_grad2 = calloc((size_t)shape.out_channels * shape.in_channels * 9, sizeof(float));
  ck_winograd_weights_backward(u_grad, 2, 0, shape.out_channels, shape.in_channels, 0, 2,
                               weight_grad2);
  ck_winograd_weights_backward(u_grad, 2, 0, shape.out_channels, shape.in_channels, 2,
                               shape.out_channels, weight_grad2);
  free(weight_grad2);
  // F(4×4, 3×3)'s gradients: the input gradient against F(2×2, 3×3)'s, the weight transform's
  // adjoint run.
  float *input_grad4 = malloc(images * in * sizeof(float));
  float *u_grad4 = calloc(36 * (size_t)shape.out_channels * padded, sizeof(float));
  float *bias_grad4 = calloc(shape.out_channels, sizeof(float));
  float *scratch4b = malloc(ck_winograd4_scratch(&shape) * sizeof(float));
  float *u4b = malloc(36 * (size_t)shape.out_channels * shape.in_channels * sizeof(float));
  ck_winograd4_weights(weight, shape.out_channels * shape.in_channels, 0,
                       shape.out_channels * shape.in_channels, u4b);
  ck_winograd4_backward(&shape, u4b, input, output, output_grad, input_grad4, u_grad4, bias_grad4,
                        images, scratch4b);
  double *want_grad = malloc(images * in * sizeof(double));
  for (size_t i = 0; i < images * in; i++) want_grad[i] = input_grad[i];
  check("ck_winograd4_backward", isa, input_grad4, want_grad, images * in);
  float *weight_grad4 = calloc((size_t)shape.out_channels * shape.in_channels * 9, sizeof(float));
  ck_winograd4_weights_backward(u_grad4, 1, 0, shape.out_channels, shape.in_channels, 0,
                                shape.out_channels, weight_grad4);
  free(input_grad4), free(u_grad4), free(bias_grad4), free(scratch4b), free(u4b), free(want_grad);
  free(weight_grad4);
  float *weight_grad = calloc((size_t)shape.out_channels * shape.in_channels * 9, sizeof(float));
  float *direct_scratch = malloc(ck_conv3x3_weight_grad_scratch(&shape) * sizeof(float));
  ck_conv3x3_weight_grad(&shape, input, output, output_grad, weight_grad, bias_grad, images, direct_scratch);
  free(input), free(weight), free(bias), free(u), free(output), free(scratch), free(want);
  free(output_grad), free(input_grad), free(u_grad), free(bias_grad), free(weight_grad), free(direct_scratch);
}

/// The weight transforms of 40 kernels in two calls (kernels 0 … 31, as two groups of 16 loaded
/// whole, then the last 8), against the direct product G g Gᵀ of F(2×2, 3×3); F(4×4)'s split calls
/// run for memory only (ConvKernelTests checks its values).
static void weight_transforms(int isa) {
  const int kernels = 40;
  float *weight = random_floats((size_t)kernels * 9, 23), *u = malloc(16 * (size_t)kernels * sizeof(float));
  float *u4 = malloc(36 * (size_t)kernels * sizeof(float));
  ck_winograd_weights(weight, kernels, 0, 32, u);
  ck_winograd_weights(weight, kernels, 32, kernels, u);
  ck_winograd4_weights(weight, kernels, 0, 32, u4);
  ck_winograd4_weights(weight, kernels, 32, kernels, u4);
  static const double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  double *want = malloc(16 * (size_t)kernels * sizeof(double));
  for (int k = 0; k < kernels; k++)
    for (int r = 0; r < 4; r++)
      for (int c = 0; c < 4; c++) {
        double sum = 0;
        for (int i = 0; i < 3; i++)
          for (int j = 0; j < 3; j++) sum += G[r][i] * weight[(size_t)k * 9 + 3 * i + j] * G[c][j];
        want[(size_t)(4 * r + c) * kernels + k] = sum;
      }
  check("ck_winograd_weights", isa, u, want, 16 * (size_t)kernels);
  free(weight), free(u), free(u4), free(want);
}

static void count_part(void *context, int part) { __atomic_fetch_add((int *)context, part + 1, __ATOMIC_RELAXED); }

static void fork_join(void) {
  int sum = 0;
  ck_fork_join(2, 100, count_part, &sum);
  if (sum != 5050) {
    printf("FAIL ck_fork_join: %d\n", sum);
    failures++;
  }
}

/// Decodes a file through the shim it claims to be, then encodes the pixels both ways and decodes them.
static void image(const char *path) {
  FILE *file = fopen(path, "rb");
  if (!file) return;
  fseek(file, 0, SEEK_END);
  long size = ftell(file);
  fseek(file, 0, SEEK_SET);
  uint8_t *bytes = malloc(size > 0 ? (size_t)size : 1);
  size_t got = fread(bytes, 1, (size_t)size, file);
  fclose(file);
  caption_image_result result;
  memset(&result, 0, sizeof result);
  if (got >= 2 && bytes[0] == 0xFF && bytes[1] == 0xD8) {
    caption_jpeg_decode(bytes, got, 64000000, 0, &result);
    caption_image_result_free(&result);
    memset(&result, 0, sizeof result);
    caption_jpeg_decode(bytes, got, 64000000, 16, &result);  // a reduced DCT scale
  } else {
    caption_png_decode(bytes, got, 64000000, &result);
  }
  if (result.error == 0 && result.width <= 512 && result.height <= 512) {
    caption_encoded png, jpeg;
    memset(&png, 0, sizeof png);
    memset(&jpeg, 0, sizeof jpeg);
    caption_png_encode(result.pixels, result.width, result.height, &png);
    caption_jpeg_encode(result.pixels, result.width, result.height, 90, &jpeg);
    caption_image_result again;
    memset(&again, 0, sizeof again);
    if (png.error == 0) caption_png_decode(png.bytes, png.length, 64000000, &again);
    if (png.error != 0 || again.error != 0 || again.width != result.width ||
        memcmp(again.pixels, result.pixels, (size_t)result.width * result.height * 3) != 0) {
      printf("FAIL PNG round trip of %s\n", path);
      failures++;
    }
    caption_image_result_free(&again);
    caption_encoded_free(&png);
    caption_encoded_free(&jpeg);
  }
  caption_image_result_free(&result);
  free(bytes);
}

int main(int argc, char **argv) {
  int best = ck_isa();
  for (int isa = 0; isa <= best; isa++) {
    ck_set_isa(isa);
    gemm(isa);
    small_gemm(isa);
    softmax(isa);
    adam();
    recurrent();
    convolution(isa);
    weight_transforms(isa);
  }
  ck_set_isa(-1);
  fork_join();
  for (int i = 1; i < argc; i++) image(argv[i]);
  printf("kernels at ISA levels 0-%d, %d image files: %s\n", best, argc - 1, failures ? "FAILED" : "clean");
  return failures ? 1 : 0;
}
