// PNG decoding and encoding through libpng's classic API, with errors returned instead of longjmp
// into Swift.
//
// The simplified png_image API cannot give SPEC §4's raw samples (it linearises 16-bit data,
// applies gAMA and composites alpha), so the transforms are set one by one here.
// Ancillary chunks are all skipped unread: none affects SPEC §4's pixels, and libpng would
// otherwise allocate the length a (possibly forged) text or profile chunk claims.
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "image_shims.h"

/// Where the reader is in the caller's bytes, and how a failure should be classed.
typedef struct {
  const uint8_t *data;
  size_t size;
  size_t offset;
  int ran_out;  // the read function was asked for bytes past the end
  int error;    // CAPTION_IMAGE_* chosen before calling png_error, or 0 (then: corrupt)
  char message[240];
  size_t library_bytes;  // what libpng holds now, through shim_png_malloc
  size_t library_peak;   // the most it held at once
} png_reader;

/// libpng's allocations, counted in the reader: each block carries its size in front of it.
typedef union {
  size_t size;
  max_align_t alignment;
} png_block_header;

static png_voidp shim_png_malloc(png_structp png, png_alloc_size_t size) {
  png_reader *reader = (png_reader *)png_get_mem_ptr(png);
  if (size > SIZE_MAX - sizeof(png_block_header)) return NULL;
  png_block_header *block = malloc(sizeof(png_block_header) + size);
  if (!block) return NULL;
  block->size = size;
  if (reader) {
    reader->library_bytes += size;
    if (reader->library_bytes > reader->library_peak) reader->library_peak = reader->library_bytes;
  }
  return block + 1;
}

static void shim_png_free(png_structp png, png_voidp pointer) {
  if (!pointer) return;
  png_reader *reader = (png_reader *)png_get_mem_ptr(png);
  png_block_header *block = (png_block_header *)pointer - 1;
  if (reader) reader->library_bytes -= block->size;
  free(block);
}

static void shim_png_error(png_structp png, png_const_charp message) {
  png_reader *reader = (png_reader *)png_get_error_ptr(png);
  if (reader->message[0] == 0) snprintf(reader->message, sizeof reader->message, "%s", message);
  png_longjmp(png, 1);
}

static void shim_png_warning(png_structp png, png_const_charp message) {
  (void)png;
  (void)message;  // benign (e.g. "iCCP: known incorrect sRGB profile"): never printed
}

static void shim_png_read(png_structp png, png_bytep out, size_t length) {
  png_reader *reader = (png_reader *)png_get_io_ptr(png);
  if (length > reader->size - reader->offset) {
    reader->ran_out = 1;
    reader->error = CAPTION_IMAGE_TRUNCATED;
    png_error(png, "file ends early");
  }
  memcpy(out, reader->data + reader->offset, length);
  reader->offset += length;
}

/// The ancillary chunks libpng knows; listed so they are handled as unknown, i.e. discarded.
static const png_byte known_ancillary_chunks[] =
    "bKGD\0cHRM\0cICP\0eXIf\0gAMA\0hIST\0iCCP\0iTXt\0oFFs\0pCAL\0pHYs\0sBIT\0sCAL\0sPLT\0"
    "sRGB\0sTER\0tEXt\0tIME\0zTXt\0";

void caption_png_decode(const uint8_t *data, size_t size, int64_t max_pixels,
                        caption_image_result *result) {
  memset(result, 0, sizeof *result);
  // The pixel budget from the IHDR bytes themselves (the first chunk, at offset 8), so a bomb
  // is named as such even when the rest of the file is missing.
  if (size >= 24 && memcmp(data + 12, "IHDR", 4) == 0) {
    uint32_t w = (uint32_t)data[16] << 24 | (uint32_t)data[17] << 16 | (uint32_t)data[18] << 8 | data[19];
    uint32_t h = (uint32_t)data[20] << 24 | (uint32_t)data[21] << 16 | (uint32_t)data[22] << 8 | data[23];
    if ((int64_t)w * (int64_t)h > max_pixels) {
      result->error = CAPTION_IMAGE_TOO_LARGE;
      snprintf(result->message, sizeof result->message,
               "%ux%u pixels is more than the limit of %lld", w, h, (long long)max_pixels);
      return;
    }
  }
  png_reader reader = {.data = data, .size = size};
  png_structp png = NULL;
  png_infop info = NULL;
  // Changed after setjmp and needed after a longjmp: volatile (C11 7.13.2.1).
  uint8_t *volatile pixels = NULL;
  png_bytep *volatile rows = NULL;

  png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, &reader, shim_png_error, shim_png_warning,
                                 &reader, shim_png_malloc, shim_png_free);
  if (png) info = png_create_info_struct(png);
  if (!png || !info) {
    png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
    result->error = CAPTION_IMAGE_TOO_LARGE;
    snprintf(result->message, sizeof result->message, "out of memory starting libpng");
    return;
  }
  if (setjmp(png_jmpbuf(png))) {
    free(pixels);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    result->library_peak_bytes = reader.library_peak;
    result->error = reader.error ? reader.error : CAPTION_IMAGE_CORRUPT;
    snprintf(result->message, sizeof result->message, "%s", reader.message);
    return;
  }
  png_set_read_fn(png, &reader, shim_png_read);
  // Dimensions are limited by the pixel budget below, not by libpng's 1,000,000-per-side default.
  png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
  png_set_chunk_cache_max(png, 1000);
  png_set_chunk_malloc_max(png, 8u << 20);
  png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, 0);
  png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, known_ancillary_chunks,
                              (int)(sizeof known_ancillary_chunks / 5));

  png_read_info(png, info);
  png_uint_32 width = 0, height = 0;
  int bit_depth = 0, color_type = 0, interlace = 0;
  png_get_IHDR(png, info, &width, &height, &bit_depth, &color_type, &interlace, NULL, NULL);
  if ((int64_t)width * (int64_t)height > max_pixels) {
    reader.error = CAPTION_IMAGE_TOO_LARGE;
    snprintf(reader.message, sizeof reader.message,
             "%ux%u pixels is more than the limit of %lld", width, height, (long long)max_pixels);
    png_longjmp(png, 1);
  }

  // To 8-bit RGB from the raw samples (SPEC §4): palette and low-bit gray expanded (tRNS would
  // become alpha, which is then dropped), 16-bit scaled by round(v·255/65535), gray replicated.
  png_set_expand(png);
  png_set_scale_16(png);
  png_set_strip_alpha(png);
  png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != (size_t)width * 3 || png_get_bit_depth(png, info) != 8) {
    snprintf(reader.message, sizeof reader.message, "unexpected PNG row layout after transforms");
    png_longjmp(png, 1);
  }

  pixels = malloc((size_t)width * (size_t)height * 3);
  rows = malloc(sizeof(png_bytep) * (size_t)height);
  if (!pixels || !rows) {
    reader.error = CAPTION_IMAGE_TOO_LARGE;
    snprintf(reader.message, sizeof reader.message, "out of memory for %ux%u pixels", width,
             height);
    png_longjmp(png, 1);
  }
  for (png_uint_32 y = 0; y < height; y++) rows[y] = pixels + (size_t)y * (size_t)width * 3;
  png_read_image(png, rows);
  png_read_end(png, NULL);  // the chunks after IDAT, their CRCs and IEND

  png_destroy_read_struct(&png, &info, NULL);
  free(rows);
  result->library_peak_bytes = reader.library_peak;
  result->pixels = pixels;
  result->width = (int)width;
  result->height = (int)height;
  result->error = CAPTION_IMAGE_OK;
}

/// A growing output buffer for png_set_write_fn.
typedef struct {
  uint8_t *bytes;
  size_t length;
  size_t capacity;
  int failed;
} png_writer;

static void shim_png_write(png_structp png, png_bytep in, size_t length) {
  png_writer *writer = (png_writer *)png_get_io_ptr(png);
  if (writer->length + length > writer->capacity) {
    size_t capacity = writer->capacity ? writer->capacity : 4096;
    while (capacity < writer->length + length) capacity *= 2;
    uint8_t *grown = realloc(writer->bytes, capacity);
    if (!grown) {
      writer->failed = 1;
      png_error(png, "out of memory while encoding PNG");
    }
    writer->bytes = grown;
    writer->capacity = capacity;
  }
  memcpy(writer->bytes + writer->length, in, length);
  writer->length += length;
}

static void shim_png_flush(png_structp png) { (void)png; }

void caption_png_encode(const uint8_t *rgb, int width, int height, caption_encoded *out) {
  memset(out, 0, sizeof *out);
  png_reader messages = {0};  // only its message field is used, by shim_png_error
  png_writer writer = {0};
  png_structp png =
      png_create_write_struct(PNG_LIBPNG_VER_STRING, &messages, shim_png_error, shim_png_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!png || !info) {
    png_destroy_write_struct(png ? &png : NULL, NULL);
    out->error = CAPTION_IMAGE_TOO_LARGE;
    snprintf(out->message, sizeof out->message, "out of memory starting libpng");
    return;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    free(writer.bytes);
    out->error = CAPTION_IMAGE_CORRUPT;
    snprintf(out->message, sizeof out->message, "%s", messages.message);
    return;
  }
  png_set_write_fn(png, &writer, shim_png_write, shim_png_flush);
  png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_RGB,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < height; y++) {
    png_write_row(png, (png_const_bytep)(rgb + (size_t)y * (size_t)width * 3));
  }
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  out->bytes = writer.bytes;
  out->length = writer.length;
  out->error = CAPTION_IMAGE_OK;
}
