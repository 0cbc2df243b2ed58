// Image decoding and encoding through libjpeg and libpng.
//
// Why C: both libraries report fatal errors by longjmp (libjpeg's default even calls exit()),
// and Swift cannot call setjmp. Each function below runs one whole decode or encode under its
// own setjmp and turns every failure into an error code plus a message, never a crash or exit.
#ifndef CAPTION_IMAGE_SHIMS_H
#define CAPTION_IMAGE_SHIMS_H
#include <stddef.h>
#include <stdint.h>

/// What went wrong, mirrored by CaptionError.Kind in Swift.
enum {
  CAPTION_IMAGE_OK = 0,
  CAPTION_IMAGE_TRUNCATED = 1,    // the data ends early
  CAPTION_IMAGE_CORRUPT = 2,      // malformed data, bad checksum, data-loss warning
  CAPTION_IMAGE_TOO_LARGE = 3,    // header beyond the pixel budget, or out of memory
  CAPTION_IMAGE_UNSUPPORTED = 4,  // e.g. 12-bit JPEG, unknown colour space
};

/// A decoded image (8-bit RGB, rows top to bottom) or an error.
typedef struct {
  uint8_t *pixels;  // height * width * 3 bytes, malloc'd; release with caption_image_result_free
  int width;
  int height;
  uint8_t *exif;  // JPEG only: the first APP1 "Exif" payload (malloc'd copy) or NULL
  size_t exif_length;
  int error;           // CAPTION_IMAGE_*
  char message[240];   // the library's reason when error != 0
  size_t library_peak_bytes;  // PNG only: the most bytes libpng held at once (pixels aside)
} caption_image_result;

/// Frees the buffers of a result (safe on a zeroed or failed result).
void caption_image_result_free(caption_image_result *result);

/// Decodes a JPEG held in memory to 8-bit RGB (grayscale replicated, CMYK/YCCK converted with
/// Adobe's inverted convention). Refuses headers with more than `max_pixels` pixels before any
/// pixel buffer is allocated. If `min_shorter_side` > 0, decodes at the smallest DCT scale k/8
/// whose shorter side is still >= min_shorter_side (full scale when none is).
/// libjpeg's data-loss warnings (premature end, hit marker, must resync) are errors.
void caption_jpeg_decode(const uint8_t *data, size_t size, int64_t max_pixels,
                         int min_shorter_side, caption_image_result *result);

/// Decodes a PNG held in memory to 8-bit RGB from the raw samples: palette expanded, gray
/// replicated, alpha and tRNS dropped, 16-bit scaled by round(v * 255 / 65535), no gamma.
/// Ancillary chunks are skipped unread (no allocation for their claimed length).
void caption_png_decode(const uint8_t *data, size_t size, int64_t max_pixels,
                        caption_image_result *result);

/// An encoded file in memory, or an error.
typedef struct {
  uint8_t *bytes;  // malloc'd; release with caption_encoded_free
  size_t length;
  int error;
  char message[240];
} caption_encoded;

void caption_encoded_free(caption_encoded *encoded);

/// Encodes 8-bit RGB (rows top to bottom) as PNG (no filtering choice beyond libpng's default).
void caption_png_encode(const uint8_t *rgb, int width, int height, caption_encoded *out);

/// Encodes 8-bit RGB as baseline JPEG with 4:2:0 chroma at `quality` (1...100).
void caption_jpeg_encode(const uint8_t *rgb, int width, int height, int quality,
                         caption_encoded *out);

#endif
