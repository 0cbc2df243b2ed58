#!/usr/bin/env bash
# Renders the shapes training set and trains a model on it with the default settings: how
# models/shapes.safetensors was made.
#
#   bash scripts/train-shapes.sh [OUT_DIR]        (default: runs/shapes)
#
# Writes OUT_DIR/shapes.safetensors (best by validation CIDEr-D), its .latest files and log.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/shapes}
if ! pkg-config --exists libpng libjpeg openblas 2>/dev/null; then
  apt-get update -qq && apt-get install -y -qq libpng-dev libjpeg-dev libopenblas-dev pkg-config >/dev/null
fi
swift build -c release >/dev/null
caption=.build/release/caption
if [ ! -f data/shapes-train/captions.json ]; then
  "$caption" dataset shapes --out data/shapes-train --count 20000 --seed 1
fi
"$caption" train --data data/shapes-train --out "$out/shapes.safetensors" "${@:2}"
