#!/usr/bin/env python3
"""Safetensors fixtures for Tests/CaptionKitTests/SafetensorsTests.swift.

  python scripts/make_safetensors_fixture.py
      writes Tests/CaptionKitTests/Fixtures/safetensors/python.safetensors with the real Python
      `safetensors` library (pip install safetensors numpy). The Swift test rebuilds the same values
      from the formulas below and compares them bit for bit.

  python scripts/make_safetensors_fixture.py --check-ours
      loads Tests/CaptionKitTests/Fixtures/safetensors/ours.safetensors (written by OUR Swift writer,
      see SafetensorsTests.testWriterReproducesCommittedFile) with the Python library and with a
      plain JSON parser, and checks it holds the same tensors and metadata.
"""
import json
import os
import struct
import sys

import numpy as np
from safetensors.numpy import load_file, save_file
from safetensors import safe_open

FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "CaptionKitTests",
                      "Fixtures", "safetensors")


def fixture_tensors():
    """The tensors both files hold; SafetensorsTests.swift computes the same values."""
    ramp = (np.arange(24, dtype=np.float32) * np.float32(0.25) - np.float32(3)).reshape(2, 3, 4)
    # Bit patterns that a text round trip would lose: -0, the smallest subnormal, the largest float,
    # 0.1 (not exact in binary), +inf, a quiet NaN with a payload.
    special = np.array([0x80000000, 0x00000001, 0x7F7FFFFF, 0x3DCCCCCD, 0x7F800000, 0x7FC12345],
                       dtype=np.uint32).view(np.float32)
    return {
        "b.ramp": ramp,                                   # [2, 3, 4]
        "a.special": special,                             # [6]
        "c.scalar": np.array(1.5, dtype=np.float32),      # [] (one element)
        "d.empty": np.zeros((0, 3), dtype=np.float32),    # [0, 3] (no bytes)
    }


METADATA = {"format": "caption-test", "note": "written by \"python\"\nsafetensors"}


def write_python_fixture():
    path = os.path.join(FOLDER, "python.safetensors")
    save_file(fixture_tensors(), path, metadata=METADATA)
    print("wrote", path, os.path.getsize(path), "bytes")


def check_ours():
    path = os.path.join(FOLDER, "ours.safetensors")
    # 1. The header parses with a plain JSON parser and is padded to a multiple of 8.
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0, f"header length {n} is not a multiple of 8"
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    assert header["__metadata__"] == METADATA, header["__metadata__"]
    # 2. The Python library loads it with the same values and metadata.
    loaded = load_file(path)
    expected = fixture_tensors()
    assert sorted(loaded) == sorted(expected), sorted(loaded)
    for name, value in expected.items():
        got = loaded[name]
        assert got.dtype == np.float32 and got.shape == value.shape, (name, got.dtype, got.shape)
        assert got.tobytes() == value.tobytes(), name
    with safe_open(path, framework="np") as f:
        assert f.metadata() == METADATA, f.metadata()
    print("ok:", path, "loads in safetensors", __import__("safetensors").__version__,
          "with identical bytes and metadata")


if __name__ == "__main__":
    if "--check-ours" in sys.argv:
        check_ours()
    else:
        write_python_fixture()
