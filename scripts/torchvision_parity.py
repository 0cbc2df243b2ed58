#!/usr/bin/env python3
"""The parity check of `caption`'s encoder against torchvision's VGG `features` (run by
scripts/check_torchvision_parity.sh, which makes the virtual environment and builds `caption`).

For each architecture: a seeded random torchvision VGG (conv biases random too, so they count), its
state dict saved as `.pth` and as safetensors in torchvision's names; the `.pth` converted by
import_torchvision_vgg.py; then `caption features` on real photos with both files, at 224 px and at
another size, against `model.features` on the same input tensor. Also checks that torchvision's
ToTensor + Normalize of the pixels `caption preprocess` writes equals `caption`'s input tensor.
Prints one line per case; exits 1 if any relative L2 error is over 1e-4.
"""
import os
import subprocess
import sys
import types

import torch
from safetensors.torch import load_file, save_file

try:
    import torchvision
except RuntimeError:
    # PyPI's torchvision is built against CUDA torch; with the CPU torch wheel its C extension (nms
    # and other detection ops) cannot load. VGG itself is pure Python: skip the ops' registration.
    for name in [m for m in sys.modules if m.startswith("torchvision")]:
        del sys.modules[name]
    sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
    import torchvision
from PIL import Image
from torchvision import transforms

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAPTION = os.environ.get("CAPTION", os.path.join(ROOT, ".build", "release", "caption"))
IMAGES = [os.path.join(ROOT, "Tests/CaptionKitTests/Fixtures/corpus", p) for p in (
    "jpeg/testorig.jpg", "exif/Landscape_1.jpg", "exif/Portrait_6.jpg")]
TOLERANCE = 1e-4


def relative_l2(ours, reference):
    ours, reference = ours.double(), reference.double()
    return ((ours - reference).norm() / reference.norm().clamp_min(1e-300)).item()


def run(*args):
    subprocess.run([CAPTION, *args], check=True)


def main():
    work = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "runs", "parity")
    os.makedirs(work, exist_ok=True)
    torch.set_num_threads(2)
    worst = 0.0
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}; images: "
          + ", ".join(os.path.relpath(p, ROOT) for p in IMAGES))
    for arch, sizes in (("vgg11", (224, 160)), ("vgg16", (224, 160))):
        torch.manual_seed(0)
        model = getattr(torchvision.models, arch)(weights=None).eval()
        with torch.no_grad():
            for layer in model.features:
                if isinstance(layer, torch.nn.Conv2d):
                    layer.bias.uniform_(-0.1, 0.1)
        pth = os.path.join(work, f"{arch}.pth")
        torch.save(model.state_dict(), pth)
        named = os.path.join(work, f"{arch}.torchvision.safetensors")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, named)
        encoder = os.path.join(work, f"{arch}.encoder.safetensors")
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "import_torchvision_vgg.py"), pth,
                        "--arch", arch, "--out", encoder], check=True)
        for size in sizes:
            for label, path in (("converted .pth", encoder), ("torchvision names", named)):
                out = os.path.join(work, f"{arch}.{size}.features.safetensors")
                run("features", *IMAGES, "--encoder", path, "--image-size", str(size), "--out", out)
                result = load_file(out)
                with torch.no_grad():
                    reference = model.features(result["input"])
                error = relative_l2(result["features"], reference)
                worst = max(worst, error)
                print(f"{arch} {size}px {label}: features {tuple(reference.shape)} relative L2 {error:.2e}")
            # The input: caption's normalised tensor against torchvision's transforms of its pixels.
            normalize = transforms.Compose([transforms.ToTensor(), transforms.Normalize(
                [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
            inputs = []
            for k, image in enumerate(IMAGES):
                png = os.path.join(work, f"seen{k}.png")
                run("preprocess", image, "--size", str(size), "--out", png)
                inputs.append(normalize(Image.open(png).convert("RGB")))
            error = relative_l2(result["input"], torch.stack(inputs))
            worst = max(worst, error)
            print(f"{arch} {size}px input vs torchvision ToTensor+Normalize: relative L2 {error:.2e}")
    print(f"worst relative L2 {worst:.2e} (tolerance {TOLERANCE:g})")
    sys.exit(0 if worst <= TOLERANCE else 1)


if __name__ == "__main__":
    main()
