#!/usr/bin/env python3
"""Writes the tiny torchvision-layout VGG fixtures that the Swift tests read (no torch needed):

    Tests/CaptionKitTests/Fixtures/vgg/tiny_vgg.safetensors       features.N.* of a VGG whose
        configuration is [4, M, 8, 8, M, 8, M] (conv, ReLU, pool at the indices torchvision's
        VGG.features gives them), plus a small classifier.0.* that the reader must skip;
    Tests/CaptionKitTests/Fixtures/vgg/tiny_vgg_bn.safetensors    the same with batch norm
        (features.1.running_mean, num_batches_tracked as I64), which must be refused;
    Tests/CaptionKitTests/Fixtures/vgg/tiny_resnet.safetensors    ResNet-style names, refused.

Weights are seeded He-normal values (Python's own random, so the files are reproducible anywhere).
"""
import json
import math
import os
import random
import struct
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "CaptionKitTests",
                   "Fixtures", "vgg")
CONFIG = [4, "M", 8, 8, "M", 8, "M"]


def write_safetensors(path, tensors):
    """tensors: list of (name, dtype, shape, bytes); sorted by name as the Python library writes."""
    header, offset, blobs = {}, 0, []
    for name, dtype, shape, data in sorted(tensors, key=lambda t: t[0]):
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def f32(shape, values):
    return ("F32", shape, struct.pack("<%df" % len(values), *values))


def vgg_tensors(rng, batch_norm):
    """features.N.* in torchvision's numbering: conv, [bn], relu, and a pool after each "M"."""
    tensors, index, channels = [], 0, 3
    for item in CONFIG:
        if item == "M":
            index += 1
            continue
        fan_in = channels * 9
        weight = [rng.gauss(0, math.sqrt(2 / fan_in)) for _ in range(item * fan_in)]
        bias = [rng.uniform(-0.1, 0.1) for _ in range(item)]
        tensors.append((f"features.{index}.weight",) + f32([item, channels, 3, 3], weight))
        tensors.append((f"features.{index}.bias",) + f32([item], bias))
        index += 1
        if batch_norm:
            for key in ("weight", "bias", "running_mean", "running_var"):
                tensors.append((f"features.{index}.{key}",) + f32([item], [1.0] * item))
            tensors.append((f"features.{index}.num_batches_tracked", "I64", [], struct.pack("<q", 0)))
            index += 1
        index += 1  # ReLU
        channels = item
    classifier = [rng.uniform(-0.05, 0.05) for _ in range(5 * channels)]
    tensors.append(("classifier.0.weight",) + f32([5, channels], classifier))
    tensors.append(("classifier.0.bias",) + f32([5], [0.0] * 5))
    return tensors


def main():
    os.makedirs(OUT, exist_ok=True)
    write_safetensors(os.path.join(OUT, "tiny_vgg.safetensors"), vgg_tensors(random.Random(20), False))
    write_safetensors(os.path.join(OUT, "tiny_vgg_bn.safetensors"), vgg_tensors(random.Random(20), True))
    rng = random.Random(21)
    resnet = [("conv1.weight",) + f32([4, 3, 3, 3], [rng.gauss(0, 0.1) for _ in range(108)]),
              ("bn1.running_mean",) + f32([4], [0.0] * 4),
              ("layer1.0.conv1.weight",) + f32([4, 4, 3, 3], [rng.gauss(0, 0.1) for _ in range(144)]),
              ("fc.weight",) + f32([5, 4], [0.0] * 20)]
    write_safetensors(os.path.join(OUT, "tiny_resnet.safetensors"), resnet)
    for name in sorted(os.listdir(OUT)):
        print(name, os.path.getsize(os.path.join(OUT, name)), "bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
