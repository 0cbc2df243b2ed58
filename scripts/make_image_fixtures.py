#!/usr/bin/env python3
"""Makes the image decoder's test fixtures (Tests/CaptionKitTests/Fixtures/image/).

Independent references for the Swift tests, so they need no Python:
- png_checksums.json: for every good PNG of the test corpus (Fixtures/corpus/), width, height and
  the FNV-1a 64 hash of the SPEC §4 RGB bytes, computed from pypng's raw samples (palette expanded,
  gray replicated, alpha/tRNS dropped, 16-bit -> round(v*255/65535), 1/2/4-bit gray -> v*255/(2^b-1),
  no gamma, no sBIT);
- jpeg_ref_*.png: Pillow's decodes of the corpus JPEGs (full scale and the 1/4 and 1/8 DCT scales);
- made files the corpus lacks, each with a reference: CMYK and YCCK JPEGs (Adobe-inverted), JPEGs
  with little-endian EXIF orientation 1..8, JPEGs with 4:4:4 / 4:2:2 / 4:2:0 chroma, restart markers
  and progressive coding, a 16-bit RGBA PNG (plain and interlaced), a 16-bit gray PNG holding all
  65536 values.

Usage (from the repository root): python3 -m venv /work/venv-image && /work/venv-image/bin/pip install
pypng pillow numpy && /work/venv-image/bin/python scripts/make_image_fixtures.py
"""

import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import png
from PIL import Image, ImageOps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTDATA = os.path.join(ROOT, "Tests", "CaptionKitTests", "Fixtures", "corpus")
OUT = os.path.join(ROOT, "Tests", "CaptionKitTests", "Fixtures", "image")


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def png_reference_rgb(path):
    """SPEC §4 RGB bytes of a PNG from pypng's raw samples."""
    reader = png.Reader(filename=path)
    width, height, rows, info = reader.read()
    planes, depth = info["planes"], info["bitdepth"]
    samples = np.array([list(row) for row in rows], dtype=np.int64).reshape(height, width, planes)
    if info.get("palette") and planes == 1 and not info["greyscale"]:
        palette = np.array([entry[:3] for entry in info["palette"]], dtype=np.int64)
        rgb = palette[samples[:, :, 0]]
    else:
        if depth == 16:
            samples = (samples * 255 + 32767) // 65535  # round(v*255/65535); never exactly half
        elif depth < 8:
            samples = samples * 255 // ((1 << depth) - 1)  # exact: bit replication
        if info["greyscale"]:
            rgb = np.repeat(samples[:, :, :1], 3, axis=2)
        else:
            rgb = samples[:, :, :3]
    return width, height, rgb.astype(np.uint8).tobytes()


def good_pngs():
    found = []
    for folder in ["pngsuite", "libpng/pngsuite", "libpng/testpngs"]:
        base = os.path.join(TESTDATA, folder)
        for directory, subdirs, files in os.walk(base):
            subdirs[:] = [d for d in subdirs if d not in ("badpal", "crashers")]
            for name in sorted(files):
                if name.endswith(".png") and not (folder == "pngsuite" and name.startswith("x")):
                    found.append(os.path.relpath(os.path.join(directory, name), TESTDATA))
    return sorted(found)


def write_png_rgb(path, array):
    height, width, _ = array.shape
    with open(path, "wb") as f:
        png.Writer(width, height, greyscale=False, bitdepth=8).write(f, array.reshape(height, width * 3).tolist())


def make_png_checksums(made):
    table = {}
    for relative in good_pngs():
        width, height, rgb = png_reference_rgb(os.path.join(TESTDATA, relative))
        table[relative] = {"width": width, "height": height, "fnv1a64": fnv1a64(rgb)}
    for relative in made:
        width, height, rgb = png_reference_rgb(os.path.join(OUT, relative))
        table["made/" + relative] = {"width": width, "height": height, "fnv1a64": fnv1a64(rgb)}
    with open(os.path.join(OUT, "png_checksums.json"), "w") as f:
        json.dump(table, f, indent=1, sort_keys=True)
        f.write("\n")
    print("png_checksums.json:", len(table), "files")


def make_jpeg_references():
    for name in ["testorig", "testimgint", "testimgari", "testimgp", "testimggray", "testimgcrop", "testimgfst100"]:
        image = Image.open(os.path.join(TESTDATA, "jpeg", name + ".jpg")).convert("RGB")
        write_png_rgb(os.path.join(OUT, "jpeg_ref_%s.png" % name), np.asarray(image))
    # Reduced DCT scales through Pillow's draft mode (libjpeg scale 1/4 and 1/8).
    for denominator in [4, 8]:
        image = Image.open(os.path.join(TESTDATA, "jpeg", "testorig.jpg"))
        image.draft("RGB", (image.width // denominator, image.height // denominator))
        assert image.size == ((227 + denominator - 1) // denominator, (149 + denominator - 1) // denominator), image.size
        write_png_rgb(os.path.join(OUT, "jpeg_ref_testorig_scale%d.png" % denominator), np.asarray(image.convert("RGB")))


def smooth_test_picture(width, height, seed):
    """An asymmetric picture (gradients, a bright corner block) so every orientation differs."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    picture = np.zeros((height, width, 3), dtype=np.float64)
    picture[:, :, 0] = 255 * x / (width - 1)
    picture[:, :, 1] = 255 * y / (height - 1)
    picture[:, :, 2] = 128 + 60 * np.sin(x / 5.0) * np.cos(y / 7.0)
    picture[: height // 3, : width // 4] = [250, 250, 40]
    picture += rng.normal(0, 2, picture.shape)
    return np.clip(np.round(picture), 0, 255).astype(np.uint8)


def make_cmyk_and_ycck():
    rng = np.random.default_rng(5)
    height, width = 40, 56
    y, x = np.mgrid[0:height, 0:width]
    cmyk = np.zeros((height, width, 4), dtype=np.float64)  # true ink amounts, 0 = no ink
    cmyk[:, :, 0] = 255 * x / (width - 1)
    cmyk[:, :, 1] = 255 * y / (height - 1)
    cmyk[:, :, 2] = 127 + 100 * np.sin(x / 6.0)
    cmyk[:, :, 3] = 60 + 50 * np.cos(y / 5.0)
    cmyk += rng.normal(0, 1.5, cmyk.shape)
    cmyk = np.clip(np.round(cmyk), 0, 255).astype(np.uint8)
    # Pillow stores CMYK inverted (Adobe) with an Adobe marker.
    Image.fromarray(cmyk, "CMYK").save(os.path.join(OUT, "cmyk.jpg"), quality=95)
    # YCCK through libjpeg itself (helper in C), fed the stored (inverted) values.
    with tempfile.TemporaryDirectory() as temporary:
        helper = os.path.join(temporary, "ycck")
        subprocess.check_call(["cc", "-O2", "-o", helper, os.path.join(ROOT, "scripts", "make_image_ycck.c"), "-ljpeg"])
        raw = os.path.join(temporary, "in.cmyk")
        with open(raw, "wb") as f:
            f.write((255 - cmyk).tobytes())
        subprocess.check_call([helper, str(width), str(height), raw, os.path.join(OUT, "ycck.jpg")])
    for name in ["cmyk", "ycck"]:
        decoded = Image.open(os.path.join(OUT, name + ".jpg"))
        assert decoded.mode == "CMYK", decoded.mode
        ink = np.asarray(decoded).astype(np.int64)  # Pillow un-inverts: true ink amounts
        stored = 255 - ink  # what libjpeg returns
        rgb = (stored[:, :, :3] * stored[:, :, 3:4] + 127) // 255  # round(C*K/255)
        write_png_rgb(os.path.join(OUT, name + "_ref.png"), rgb.astype(np.uint8))


def exif_le(orientation):
    """An APP1 Exif payload, little-endian TIFF, IFD0 holding only Orientation (SHORT, count 1)."""
    tiff = b"II*\x00" + struct.pack("<I", 8)
    tiff += struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    return b"Exif\x00\x00" + tiff


def make_exif_le():
    picture = smooth_test_picture(48, 32, seed=3)
    for orientation in range(1, 9):
        path = os.path.join(OUT, "exif_le_%d.jpg" % orientation)
        Image.fromarray(picture, "RGB").save(path, quality=95, exif=exif_le(orientation))
        upright = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        write_png_rgb(os.path.join(OUT, "exif_le_%d_ref.png" % orientation), np.asarray(upright))


def make_jpeg_variants():
    """Chroma subsamplings, restart markers and a progressive file, with Pillow's decodes."""
    picture = smooth_test_picture(61, 45, seed=7)  # odd sizes: partial MCUs on both axes
    variants = {
        "jpeg_444": dict(subsampling="4:4:4"),
        "jpeg_422": dict(subsampling="4:2:2"),
        "jpeg_420": dict(subsampling="4:2:0"),
        "jpeg_restart": dict(subsampling="4:2:0", restart_marker_rows=1),
        "jpeg_progressive": dict(subsampling="4:2:0", progressive=True),
    }
    for name, options in variants.items():
        path = os.path.join(OUT, name + ".jpg")
        Image.fromarray(picture, "RGB").save(path, quality=90, **options)
        write_png_rgb(os.path.join(OUT, name + "_ref.png"), np.asarray(Image.open(path).convert("RGB")))


def make_16bit_pngs():
    rng = np.random.default_rng(11)
    height, width = 23, 37
    rgba = rng.integers(0, 65536, size=(height, width, 4), dtype=np.int64)
    with open(os.path.join(OUT, "rgba16.png"), "wb") as f:
        png.Writer(width, height, alpha=True, greyscale=False, bitdepth=16).write(f, rgba.reshape(height, -1).tolist())
    with open(os.path.join(OUT, "rgba16_interlaced.png"), "wb") as f:
        png.Writer(width, height, alpha=True, greyscale=False, bitdepth=16, interlace=True).write(
            f, rgba.reshape(height, -1).tolist()
        )
    every_value = np.arange(65536, dtype=np.int64).reshape(256, 256)
    with open(os.path.join(OUT, "gray16_all_values.png"), "wb") as f:
        png.Writer(256, 256, greyscale=True, bitdepth=16).write(f, every_value.tolist())
    return ["rgba16.png", "rgba16_interlaced.png", "gray16_all_values.png"]


def main():
    if not os.path.isdir(TESTDATA):
        sys.exit("test corpus not found at " + TESTDATA)
    os.makedirs(OUT, exist_ok=True)
    made = make_16bit_pngs()
    make_png_checksums(made)
    make_jpeg_references()
    make_cmyk_and_ycck()
    make_exif_le()
    make_jpeg_variants()


if __name__ == "__main__":
    main()
