#!/usr/bin/env python3
"""Converts a torchvision VGG state dict into a `caption` encoder file (docs/SPEC.md §3a).

    python3 scripts/import_torchvision_vgg.py WEIGHTS --arch vgg16 --out ENCODER.safetensors

WEIGHTS is the file as a user downloads it: torchvision's `.pth` (e.g. vgg16-397923af.pth) or a
safetensors file of the same state dict. Only VGG without batch norm (vgg11, vgg13, vgg16, vgg19):
the convolutions `features.N.weight/bias` become `encoder.conv{k}.weight/bias`; the classifier is
dropped. The metadata holds the layer list, `image_size` 224 and ImageNet's mean and std, which is
how torchvision's VGG weights were trained. Needs torch (and safetensors for a safetensors input);
`caption` itself reads the torchvision names too, so this is only needed for `.pth` files.
"""
import argparse
import json
import sys

import torch

CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def fail(path, reason):
    print(f"import_torchvision_vgg: {path}: {reason}", file=sys.stderr)
    sys.exit(1)


def read_state_dict(path):
    with open(path, "rb") as f:
        magic = f.read(8)
    if len(magic) == 8 and int.from_bytes(magic, "little") < 100_000_000:
        try:
            from safetensors.torch import load_file
            return load_file(path)
        except ImportError:
            fail(path, "reading a safetensors file needs the safetensors package (pip install safetensors)")
        except Exception:
            pass  # not safetensors after all: try torch's format
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        fail(path, f"neither a safetensors file nor a torch checkpoint: {str(error).splitlines()[0][:200]}")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        fail(path, "does not hold a state dict")
    return state


def convert(state, arch, path):
    """The torchvision VGG `features` convolutions, in order, checked against the configuration."""
    if not any(k.startswith("features.") and k.endswith(".weight") for k in state):
        fail(path, "not a torchvision VGG: no features.N.weight tensors (ResNet and others cannot be read)")
    if any(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in state):
        fail(path, "a network with batch norm: only VGG without batch norm (vgg11, vgg13, vgg16, vgg19)")
    convs = sorted({int(k.split(".")[1]) for k in state if k.startswith("features.")})
    config = CONFIGS[arch]
    expected, index = [], 0
    for item in config:
        if item == "M":
            index += 1
        else:
            expected.append((index, item))
            index += 2  # conv, ReLU
    if convs != [i for i, _ in expected]:
        fail(path, f"its convolutions sit at features {convs}, not where {arch} has them")
    tensors, channels = {}, 3
    for k, (i, out) in enumerate(expected):
        weight, bias = state[f"features.{i}.weight"], state.get(f"features.{i}.bias")
        if bias is None or tuple(weight.shape) != (out, channels, 3, 3) or tuple(bias.shape) != (out,):
            fail(path, f"features.{i} has shape {tuple(weight.shape)}, {arch} needs {(out, channels, 3, 3)} and a bias")
        tensors[f"encoder.conv{k}.weight"] = weight.detach().to(torch.float32).contiguous()
        tensors[f"encoder.conv{k}.bias"] = bias.detach().to(torch.float32).contiguous()
        channels = out
    metadata = {
        "format": "caption-encoder",
        "version": "1",
        "layers": json.dumps(config, separators=(",", ":")),
        "preprocess": json.dumps({"image_size": 224, "mean": IMAGENET_MEAN, "std": IMAGENET_STD},
                                 separators=(",", ":")),
        "source": f"torchvision {arch}",
    }
    return tensors, metadata


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", help="torchvision VGG state dict (.pth or .safetensors)")
    parser.add_argument("--arch", required=True, choices=sorted(CONFIGS))
    parser.add_argument("--out", required=True, help="the caption encoder file to write")
    args = parser.parse_args()
    try:
        from safetensors.torch import save_file
    except ImportError:
        fail(args.out, "writing needs the safetensors package (pip install safetensors)")
    tensors, metadata = convert(read_state_dict(args.weights), args.arch, args.weights)
    temporary = args.out + ".tmp"
    save_file(tensors, temporary, metadata=metadata)
    import os
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # as any new file (safetensors writes it readable by its owner only)
    os.replace(temporary, args.out)  # atomic: a half-written encoder file is never left at OUT
    print(f"wrote {args.out}: {args.arch}, {len(tensors) // 2} convolutions", file=sys.stderr)


if __name__ == "__main__":
    main()
