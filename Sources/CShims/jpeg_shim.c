// JPEG decoding and encoding through libjpeg(-turbo), with errors returned instead of exit().
//
// libjpeg reports fatal errors through err->error_exit, whose default prints and calls exit().
// Ours longjmps back into the function that started the work (the pattern of libjpeg-turbo's
// example.c). Warnings come through emit_message(-1): the data-loss ones (SPEC §4) are errors too.
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#include "image_shims.h"

void caption_image_result_free(caption_image_result *result) {
  free(result->pixels);
  result->pixels = NULL;
  free(result->exif);
  result->exif = NULL;
  result->exif_length = 0;
}

void caption_encoded_free(caption_encoded *encoded) {
  free(encoded->bytes);
  encoded->bytes = NULL;
  encoded->length = 0;
}

/// libjpeg's error manager extended with where to jump back and what to report.
typedef struct {
  struct jpeg_error_mgr base;
  jmp_buf jump;
  int error;  // CAPTION_IMAGE_*
  char message[JMSG_LENGTH_MAX];
} shim_error_mgr;

/// A progressive file may hold any number of scans, each a full pass over the coefficients;
/// more than this is refused so a crafted file cannot keep the decoder busy for minutes.
enum { MAX_SCANS = 500 };

typedef struct {
  struct jpeg_progress_mgr base;
  j_decompress_ptr cinfo;
} shim_progress_mgr;

static int error_kind_for(int msg_code) {
  switch (msg_code) {
    case JERR_INPUT_EMPTY:
    case JERR_INPUT_EOF:
    case JWRN_JPEG_EOF:
      return CAPTION_IMAGE_TRUNCATED;
    case JERR_BAD_PRECISION:
    case JERR_CONVERSION_NOTIMPL:
    case JERR_NOT_COMPILED:
      return CAPTION_IMAGE_UNSUPPORTED;
    case JERR_OUT_OF_MEMORY:
    case JERR_NO_BACKING_STORE:
    case JERR_IMAGE_TOO_BIG:
      return CAPTION_IMAGE_TOO_LARGE;
    default:
      return CAPTION_IMAGE_CORRUPT;
  }
}

static void shim_error_exit(j_common_ptr cinfo) {
  shim_error_mgr *err = (shim_error_mgr *)cinfo->err;
  err->error = error_kind_for(err->base.msg_code);
  if (err->base.msg_code == JERR_BAD_PRECISION) {
    snprintf(err->message, sizeof err->message,
             "unsupported JPEG precision %d (the system's libjpeg reads 8-bit JPEGs only)",
             err->base.msg_parm.i[0]);
  } else {
    err->base.format_message(cinfo, err->message);
  }
  longjmp(err->jump, 1);
}

/// msg_level -1 is a warning; 0 and up are trace messages (ignored, never printed).
static void shim_emit_message(j_common_ptr cinfo, int msg_level) {
  if (msg_level != -1) return;
  int code = cinfo->err->msg_code;
  if (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER || code == JWRN_MUST_RESYNC) {
    shim_error_exit(cinfo);
  }
  cinfo->err->num_warnings++;
}

static void shim_output_message(j_common_ptr cinfo) { (void)cinfo; }

static void shim_progress(j_common_ptr common) {
  shim_progress_mgr *progress = (shim_progress_mgr *)common->progress;
  j_decompress_ptr cinfo = progress->cinfo;
  if (cinfo->is_decompressor && cinfo->input_scan_number > MAX_SCANS) {
    shim_error_mgr *err = (shim_error_mgr *)common->err;
    err->error = CAPTION_IMAGE_CORRUPT;
    snprintf(err->message, sizeof err->message, "more than %d progressive scans", MAX_SCANS);
    longjmp(err->jump, 1);
  }
}

static void install_error_manager(shim_error_mgr *err) {
  jpeg_std_error(&err->base);
  err->base.error_exit = shim_error_exit;
  err->base.emit_message = shim_emit_message;
  err->base.output_message = shim_output_message;
  err->error = CAPTION_IMAGE_OK;
  err->message[0] = 0;
}

static void copy_message(char *destination, size_t capacity, const char *source) {
  snprintf(destination, capacity, "%s", source);
}

/// Copies the first APP1 marker that starts with "Exif\0\0" (its payload after that tag).
static void keep_exif(j_decompress_ptr cinfo, caption_image_result *result) {
  for (jpeg_saved_marker_ptr marker = cinfo->marker_list; marker; marker = marker->next) {
    if (marker->marker != JPEG_APP0 + 1 || marker->data_length < 6) continue;
    if (memcmp(marker->data, "Exif\0\0", 6) != 0) continue;
    size_t length = marker->data_length - 6;
    result->exif = malloc(length > 0 ? length : 1);
    if (!result->exif) return;
    memcpy(result->exif, marker->data + 6, length);
    result->exif_length = length;
    return;
  }
}

void caption_jpeg_decode(const uint8_t *data, size_t size, int64_t max_pixels,
                         int min_shorter_side, caption_image_result *result) {
  memset(result, 0, sizeof *result);
  struct jpeg_decompress_struct cinfo;
  shim_error_mgr err;
  shim_progress_mgr progress;
  // Changed after setjmp and needed after a longjmp: volatile (C11 7.13.2.1).
  uint8_t *volatile pixels = NULL;

  cinfo.err = &err.base;
  install_error_manager(&err);
  if (setjmp(err.jump)) {
    free(pixels);
    caption_image_result_free(result);
    result->error = err.error;
    copy_message(result->message, sizeof result->message, err.message);
    jpeg_destroy_decompress(&cinfo);
    return;
  }
  jpeg_create_decompress(&cinfo);
  progress.base.progress_monitor = shim_progress;
  progress.cinfo = &cinfo;
  cinfo.progress = &progress.base;
  jpeg_mem_src(&cinfo, (const unsigned char *)data, (unsigned long)size);
  jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);
  jpeg_read_header(&cinfo, TRUE);
  keep_exif(&cinfo, result);  // now: saved markers live in the image pool, freed by finish

  // The pixel budget, from the header, before libjpeg allocates anything image-sized.
  int64_t header_pixels = (int64_t)cinfo.image_width * (int64_t)cinfo.image_height;
  if (header_pixels > max_pixels) {
    err.error = CAPTION_IMAGE_TOO_LARGE;
    snprintf(err.message, sizeof err.message, "%ux%u pixels is more than the limit of %lld",
             cinfo.image_width, cinfo.image_height, (long long)max_pixels);
    longjmp(err.jump, 1);
  }

  // CMYK and YCCK: libjpeg gives CMYK, converted below (Adobe inverted, SPEC §4).
  int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  if (cmyk) {
    cinfo.out_color_space = JCS_CMYK;
  } else if (cinfo.jpeg_color_space == JCS_GRAYSCALE || cinfo.jpeg_color_space == JCS_YCbCr ||
             cinfo.jpeg_color_space == JCS_RGB) {
    cinfo.out_color_space = JCS_RGB;
  } else {
    err.error = CAPTION_IMAGE_UNSUPPORTED;
    snprintf(err.message, sizeof err.message, "unsupported JPEG colour space (%d components)",
             cinfo.num_components);
    longjmp(err.jump, 1);
  }

  // The smallest DCT scale k/8 whose shorter side is still at least min_shorter_side (SPEC §4).
  cinfo.scale_num = 8;
  cinfo.scale_denom = 8;
  if (min_shorter_side > 0) {
    for (unsigned k = 1; k <= 8; k++) {
      cinfo.scale_num = k;
      jpeg_calc_output_dimensions(&cinfo);
      JDIMENSION shorter =
          cinfo.output_width < cinfo.output_height ? cinfo.output_width : cinfo.output_height;
      if ((int64_t)shorter >= min_shorter_side) break;
    }
  }
  jpeg_start_decompress(&cinfo);

  int width = (int)cinfo.output_width;
  int height = (int)cinfo.output_height;
  int components = cinfo.output_components;
  if (width <= 0 || height <= 0 || components != (cmyk ? 4 : 3)) {
    err.error = CAPTION_IMAGE_CORRUPT;
    snprintf(err.message, sizeof err.message, "unexpected JPEG output (%dx%d, %d components)",
             width, height, components);
    longjmp(err.jump, 1);
  }
  pixels = malloc((size_t)width * (size_t)height * 3);
  if (!pixels) {
    err.error = CAPTION_IMAGE_TOO_LARGE;
    snprintf(err.message, sizeof err.message, "out of memory for %dx%d pixels", width, height);
    longjmp(err.jump, 1);
  }

  if (!cmyk) {
    while (cinfo.output_scanline < cinfo.output_height) {
      JSAMPROW row = pixels + (size_t)cinfo.output_scanline * (size_t)width * 3;
      jpeg_read_scanlines(&cinfo, &row, 1);
    }
  } else {
    // One CMYK row at a time from libjpeg's pool (freed with cinfo), converted into pixels:
    // R = round(C·K/255), G = round(M·K/255), B = round(Y·K/255); (n + 127) / 255 rounds half up.
    JSAMPARRAY cmyk_row =
        (*cinfo.mem->alloc_sarray)((j_common_ptr)&cinfo, JPOOL_IMAGE, (JDIMENSION)width * 4, 1);
    while (cinfo.output_scanline < cinfo.output_height) {
      uint8_t *out = pixels + (size_t)cinfo.output_scanline * (size_t)width * 3;
      jpeg_read_scanlines(&cinfo, cmyk_row, 1);
      const uint8_t *in = cmyk_row[0];
      for (int x = 0; x < width; x++) {
        unsigned k = in[4 * x + 3];
        out[3 * x + 0] = (uint8_t)((in[4 * x + 0] * k + 127) / 255);
        out[3 * x + 1] = (uint8_t)((in[4 * x + 1] * k + 127) / 255);
        out[3 * x + 2] = (uint8_t)((in[4 * x + 2] * k + 127) / 255);
      }
    }
  }
  jpeg_finish_decompress(&cinfo);  // reads to EOI: a truncated tail still warns JWRN_JPEG_EOF
  jpeg_destroy_decompress(&cinfo);

  result->pixels = pixels;
  result->width = width;
  result->height = height;
  result->error = CAPTION_IMAGE_OK;
}

void caption_jpeg_encode(const uint8_t *rgb, int width, int height, int quality,
                         caption_encoded *out) {
  memset(out, 0, sizeof *out);
  struct jpeg_compress_struct cinfo;
  shim_error_mgr err;
  unsigned char *volatile buffer = NULL;
  unsigned long buffer_size = 0;

  cinfo.err = &err.base;
  install_error_manager(&err);
  if (setjmp(err.jump)) {
    out->error = err.error == CAPTION_IMAGE_OK ? CAPTION_IMAGE_CORRUPT : err.error;
    copy_message(out->message, sizeof out->message, err.message);
    jpeg_destroy_compress(&cinfo);
    free(buffer);
    return;
  }
  jpeg_create_compress(&cinfo);
  // jpeg_mem_dest writes the (re)allocated buffer's address through this pointer.
  jpeg_mem_dest(&cinfo, (unsigned char **)&buffer, &buffer_size);
  cinfo.image_width = (JDIMENSION)width;
  cinfo.image_height = (JDIMENSION)height;
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality < 1 ? 1 : (quality > 100 ? 100 : quality), TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = (JSAMPROW)(rgb + (size_t)cinfo.next_scanline * (size_t)width * 3);
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  out->bytes = buffer;
  out->length = buffer_size;
  out->error = CAPTION_IMAGE_OK;
}
