#!/usr/bin/env bash
# Checks caption's VGG encoder against torchvision's on real photos (scripts/torchvision_parity.py):
# installs torch, torchvision, safetensors and pillow from PyPI into .venv-torch (git-ignored),
# builds caption in release, runs the check. Usage: bash scripts/check_torchvision_parity.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-torch/bin/python ]; then
  python3 -m venv .venv-torch
fi
.venv-torch/bin/python -c 'import torch, safetensors, PIL, numpy' 2>/dev/null \
  || .venv-torch/bin/pip install -q torch safetensors pillow numpy
.venv-torch/bin/python -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torchvision") is None)' \
  || .venv-torch/bin/pip install -q --no-deps torchvision
swift build -c release --product caption
.venv-torch/bin/python scripts/torchvision_parity.py "${1:-runs/parity}"
