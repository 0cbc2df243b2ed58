// Helper for make_image_fixtures.py: writes a YCCK JPEG from raw CMYK bytes (Adobe-inverted
// values, as stored), since Pillow cannot write YCCK. Usage: make_image_ycck W H in.cmyk out.jpg
#include <stdio.h>
#include <stdlib.h>

#include <jpeglib.h>

int main(int argc, char **argv) {
  if (argc != 5) return 2;
  int width = atoi(argv[1]), height = atoi(argv[2]);
  size_t size = (size_t)width * height * 4;
  unsigned char *cmyk = malloc(size);
  FILE *in = fopen(argv[3], "rb");
  if (!cmyk || !in || fread(cmyk, 1, size, in) != size) return 1;
  fclose(in);
  FILE *out = fopen(argv[4], "wb");
  if (!out) return 1;
  struct jpeg_compress_struct cinfo;
  struct jpeg_error_mgr err;
  cinfo.err = jpeg_std_error(&err);
  jpeg_create_compress(&cinfo);
  jpeg_stdio_dest(&cinfo, out);
  cinfo.image_width = width;
  cinfo.image_height = height;
  cinfo.input_components = 4;
  cinfo.in_color_space = JCS_CMYK;
  jpeg_set_defaults(&cinfo);
  jpeg_set_colorspace(&cinfo, JCS_YCCK);  // writes an Adobe marker with transform 2
  jpeg_set_quality(&cinfo, 95, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = cmyk + (size_t)cinfo.next_scanline * width * 4;
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  fclose(out);
  free(cmyk);
  return 0;
}
