#!/usr/bin/env bash
# Renders the shapes training set and trains on it: how models/shapes.safetensors was made.
#
#   bash scripts/train-shapes.sh [OUT_DIR]        (default: runs/shapes)
#
# 110 000 scenes (seed 1: 88 000 train, 11 000 val, 11 000 test), then `caption train` with its
# default settings: 14 epochs, 2 captions per image, the auxiliary word loss (weight 10) and, since
# the data has scenes.json, the auxiliary scene loss (weight 3) and mention loss (weight 0.05).
# About 28 minutes on the project's 2-core machine when it is otherwise idle (see README).
# Writes OUT_DIR/shapes.safetensors (best by validation CIDEr-D), its .latest files and JSON-lines
# log. The bundled models/shapes.safetensors is OUT_DIR/shapes.latest.safetensors, the weights at
# the end of training (README says why).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/shapes}
if ! pkg-config --exists libpng libjpeg openblas 2>/dev/null; then
  apt-get update -qq && apt-get install -y -qq libpng-dev libjpeg-dev libopenblas-dev pkg-config >/dev/null
fi
swift build -c release 2>&1 | tail -1 >&2
caption=.build/release/caption
data=data/shapes-110k
if [ ! -f "$data/captions.json" ]; then
  "$caption" dataset shapes --out "$data" --count 110000 --seed 1
fi
"$caption" train --data "$data" --out "$out/shapes.safetensors"
echo "the bundled model corresponds to $out/shapes.latest.safetensors (the weights at the end of training)"
