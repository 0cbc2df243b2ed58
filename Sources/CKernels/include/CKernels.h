// Hand-vectorised compute kernels, compiled three times (AVX-512, AVX2 + FMA, baseline x86-64 or
// the host's default) and dispatched at run time on what the CPU supports.
#ifndef CKERNELS_H
#define CKERNELS_H

#include <stddef.h>
#include <stdint.h>

/// Instruction-set levels of the kernels (ck_isa / ck_set_isa).
enum { CK_ISA_GENERIC = 0, CK_ISA_AVX2 = 1, CK_ISA_AVX512 = 2 };

/// The level in use: the best the CPU supports, unless ck_set_isa chose a lower one.
int ck_isa(void);

/// Forces a level (clamped to what the CPU supports); a negative value restores the best.
/// For tests, which run every variant against the reference.
void ck_set_isa(int level);

/// One 3×3 convolution layer (stride 1, padding 1). For Winograd F(2×2, 3×3), done block by block:
/// a block is `block_rows` rows of 2×2 output tiles of one image (or, when block_rows exceeds the
/// ⌈H/2⌉ tile rows of an image, block_rows / ⌈H/2⌉ whole images), small enough that its
/// transformed input V [16, Cin, n] and output M [16, Cout, n] stay in the core's cache.
typedef struct {
  int in_channels;
  int out_channels;
  int height;
  int width;
  /// Tile rows per block (at least 1; see above for more than an image's).
  int block_rows;
  /// Whether a ReLU follows the convolution (forward: applied; backward: masks the gradient).
  int relu;
  /// Whether a 2 × 2 max-pool (stride 2) follows, fused (F(4×4) only: ck_winograd4_forward and
  /// ck_winograd4_backward; H and W even): the forward writes the pooled map [Cout, H/2, W/2] and
  /// marks in the mask the output each window takes; the backward reads the pooled map's gradient.
  int pool;
} ck_conv_shape;

/// Floats of scratch one thread needs for ck_winograd_forward / ck_winograd_backward.
size_t ck_winograd_scratch(const ck_conv_shape *shape);

/// u = G g Gᵀ for every 3 × 3 kernel g of weight [Cout, Cin, 3, 3] (row-major), [16, Cout, Cin]
/// kept in strips of 16 input channels, each Cout + 1 rows of 16 floats: U[ξ][co][ci] at
/// u[((ξ · S + ci / 16) · (Cout + 1) + co) · 16 + ci % 16], S = ⌈Cin / 16⌉ (16 · S · (Cout + 1)
/// · 16 floats; the lanes past Cin 0, the spare rows not written), what the forward and the
/// backward both read. Writes groups begin … end − 1 of 16 kernels, group q holding output channel
/// q / S's input channels 16 (q % S) … (all: 0 … Cout · S): threads share the groups out.
void ck_winograd_weights(const float *weight, int out_channels, int in_channels, int begin,
                         int end, float *u);
/// weight_grad [Cout, Cin, 3, 3] += Gᵀ dU G (the adjoint of ck_winograd_weights) for output
/// channels co_begin … co_end − 1, dU the sum of `parts` partial sums u_grad + p · part_stride,
/// each as ck_winograd_backward writes them.
void ck_winograd_weights_backward(const float *u_grad, int parts, size_t part_stride,
                                  int out_channels, int in_channels, int co_begin, int co_end,
                                  float *weight_grad);

/// output[b] = ReLU?(conv(input[b]) + bias) for `images` images (NCHW), output rows
/// 2·row_begin … 2·row_end − 1 (tile rows row_begin … row_end − 1; all: 0 … ⌈H/2⌉) of output
/// channels channel_begin … channel_end − 1 (all: 0 … Cout), so that threads can share one image
/// by rows or by channels.
/// u: the transformed weights (ck_winograd_weights).
void ck_winograd_forward(const ck_conv_shape *shape, const float *u, const float *bias,
                         const float *input, float *output, int images, int row_begin,
                         int row_end, int channel_begin, int channel_end, float *scratch);

/// The gradients of the forward for `images` images:
/// - u_grad = dL/dU (overwritten), round16(Cin) · 16 · Cout floats: per output channel, strips of
///   16 input channels, each the 16 positions' 16 floats one after another (dU[co][ξ][ci] at
///   ((co · round16(Cin) / 16 + ci / 16) · 16 + ξ) · 16 + ci % 16; columns Cin and up 0; the
///   caller maps it back with ck_winograd_weights_backward),
/// - bias_grad [Cout] += dL/dbias,
/// - input_grad [images, Cin, H, W] = dL/dinput (overwritten; skipped when NULL).
/// u: the forward's U (ck_winograd_weights). output: the forward's output (read for the ReLU mask
/// when shape->relu).
void ck_winograd_backward(const ck_conv_shape *shape, const float *u, const float *input,
                          const float *output, const float *output_grad, float *input_grad,
                          float *u_grad, float *bias_grad, int images, float *scratch);

/// Floats of scratch one thread needs for ck_winograd4_forward or ck_winograd4_backward
/// (block_rows counts rows of 4×4 tiles).
size_t ck_winograd4_scratch(const ck_conv_shape *shape);

/// u = G g Gᵀ of Winograd F(4×4, 3×3), [36, Cout, Cin] in strips of 16 input channels, groups
/// begin … end − 1 of 16 kernels, as ck_winograd_weights.
void ck_winograd4_weights(const float *weight, int out_channels, int in_channels, int begin,
                          int end, float *u);

/// ck_winograd_forward through Winograd F(4×4, 3×3): output rows 4·row_begin … 4·row_end − 1
/// (tile rows of 4; all: 0 … ⌈H/4⌉), output channels channel_begin … channel_end − 1. Over all
/// tile rows of several images, blocks of part of an image whose block_rows do not divide its
/// tile rows run on from one image into the next (each block then holds block_rows tile rows).
/// u: ck_winograd4_weights' U. With the ReLU or the max-pool (shape->relu,
/// shape->pool) and relu_mask not NULL, also writes those outputs' bits of the mask that
/// ck_winograd4_backward reads (ck_winograd4_relu_mask_words an image, the images' masks one
/// after another): whether the output is above 0 (with the pool also: and is the one its window
/// takes). With the pool, output is [images, Cout, H/2, W/2].
void ck_winograd4_forward(const ck_conv_shape *shape, const float *u, const float *bias,
                          const float *input, float *output, uint16_t *relu_mask, int images,
                          int row_begin, int row_end, int channel_begin, int channel_end,
                          float *scratch);
/// The blocks of ck_winograd4_forward over every tile row and output channel of `images` images,
/// counted in the order it runs them (runs on from one image into the next included).
int ck_winograd4_forward_blocks(const ck_conv_shape *shape, int images);
/// ck_winograd4_forward computing only blocks block_begin … block_end − 1 of its pass, counted in
/// the order it runs them (over every tile row: ck_winograd4_forward_blocks): threads that claim
/// blocks one at a time, each with its own scratch, share out a batch by how fast each runs.
void ck_winograd4_forward_range(const ck_conv_shape *shape, const float *u, const float *bias,
                                const float *input, float *output, uint16_t *relu_mask, int images,
                                int row_begin, int row_end, int channel_begin, int channel_end,
                                int block_begin, int block_end, float *scratch);
/// 16-bit words of one image's ReLU mask (which outputs are above 0) in ck_winograd4_forward.
size_t ck_winograd4_relu_mask_words(const ck_conv_shape *shape);

/// ck_winograd_backward through Winograd F(4×4, 3×3), u the forward's U (ck_winograd4_weights)
/// and u_grad laid out as ck_winograd_backward's with 36
/// positions (overwritten), for input channels channel_begin … channel_end − 1 (all: 0 … Cin;
/// threads may share out ranges that begin at multiples of 16): u_grad's columns and input_grad's
/// planes of those channels only. bias_grad may be NULL (no bias gradient). The scratch is
/// ck_winograd4_scratch's.
/// dm_scratch: NULL, or (threads sharing out input channels, ck_winograd4_shares_dm) the scratch
/// into which ck_winograd4_output_grads wrote dM for every output channel: read instead of
/// computing it (bias_grad is then not added to).
/// relu_mask: with the ReLU or the pool, the images' masks as ck_winograd4_forward wrote them (dY
/// is taken as 0 where the mask is clear); not read without either. With the pool, output_grad
/// is the pooled map's [images, Cout, H/2, W/2], each the gradient of its window's marked output.
void ck_winograd4_backward(const ck_conv_shape *shape, const float *u, const float *input,
                           const uint16_t *relu_mask, const float *output_grad, float *input_grad,
                           float *u_grad, float *bias_grad, int images, int channel_begin,
                           int channel_end, float *scratch, float *dm_scratch);
/// Whether threads running ck_winograd4_backward over ranges of input channels for these `images`
/// can share one dM: the batch fits one block (whole images side by side) whose images' tiles
/// fill whole 16-tile vectors (VGG-16's 14-px maps: 4 × 4 tiles).
int ck_winograd4_shares_dm(const ck_conv_shape *shape, int images);
/// dM of ck_winograd4_backward for output channels co_begin … co_end − 1 of all `images` images
/// (threads share the output channels out, then, once all are done, call ck_winograd4_backward
/// with dm_scratch), into dm_scratch (one thread's scratch, the same for every call; `scratch`
/// is the caller's own, for its planes), and bias_grad[co] += dL/dbias for those channels (NULL:
/// skipped). Does nothing unless ck_winograd4_shares_dm.
void ck_winograd4_output_grads(const ck_conv_shape *shape, const uint16_t *relu_mask,
                               const float *output_grad, float *bias_grad, int images,
                               int co_begin, int co_end, float *scratch, float *dm_scratch);
/// ck_winograd_weights_backward for F(4×4, 3×3): u_grad's partial sums as ck_winograd4_backward
/// writes them.
void ck_winograd4_weights_backward(const float *u_grad, int parts, size_t part_stride,
                                   int out_channels, int in_channels, int co_begin, int co_end,
                                   float *weight_grad);
/// Floats of scratch one thread needs for ck_direct_forward (block_rows is not used).
size_t ck_direct_scratch(const ck_conv_shape *shape);

/// image_out = ReLU?(conv(image) + bias) for one image (NCHW: [Cin, H, W] → [Cout, H, W]), output
/// rows row_begin … row_end − 1, computed directly: for a first layer with few input channels
/// (RGB). weight [Cout, Cin, 3, 3] as the layer keeps it. With the ReLU and relu_mask not NULL,
/// also writes those rows' bits of the image's ReLU mask (which outputs are above 0; per output
/// channel and row, 16 pixels to a word: ck_direct_relu_mask_words an image), which
/// ck_conv3x3_weight_grad reads.
void ck_direct_forward(const ck_conv_shape *shape, const float *weight, const float *bias,
                       const float *image, float *image_out, uint16_t *relu_mask, int row_begin,
                       int row_end, float *scratch);
/// 16-bit words of one image's ReLU mask in ck_direct_forward.
size_t ck_direct_relu_mask_words(const ck_conv_shape *shape);

/// Floats of scratch one thread needs for ck_conv3x3_weight_grad (block_rows is not used).
size_t ck_conv3x3_weight_grad_scratch(const ck_conv_shape *shape);

/// weight_grad [Cout, Cin, 3, 3] += dL/dweight and bias_grad [Cout] += dL/dbias of the same
/// convolution over `images` images, computed directly (no transform, no input gradient): for a
/// first layer with few input channels (RGB), where the products of im2col and Winograd are too
/// thin. With the ReLU, dY is masked by relu_mask (the images' masks as ck_direct_forward wrote
/// them, one after another) or, where that is NULL, by the forward's output.
void ck_conv3x3_weight_grad(const ck_conv_shape *shape, const float *input, const float *output,
                            const uint16_t *relu_mask, const float *output_grad,
                            float *weight_grad, float *bias_grad, int images, float *scratch);

#endif
