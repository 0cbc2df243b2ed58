#!/usr/bin/env bash
# Renders the shapes training sets and trains on them: exactly how models/shapes.safetensors was made.
#
#   bash scripts/train-shapes.sh [OUT_DIR]        (default: runs/shapes)
#
# Stage 1: `caption train` with its default settings (12 epochs over 20 000 scenes, seed 1; the
#          auxiliary word loss on, weight 10) — about 10 minutes on the project's 2-core machine.
# Stages 2 and 3: 5 more epochs each over 40 000 new scenes (seeds 2 and 3) from the previous
#          stage's latest weights (--init), with a fresh warm-up and cosine schedule at 1e-3 — about
#          8 minutes each. Shape words are the slowest part to learn (see README); fresh scenes keep
#          them improving where the first set starts to overfit.
# Writes OUT_DIR/stage1/, OUT_DIR/stage2/ and OUT_DIR/shapes.safetensors (best by validation
# CIDEr-D), each with its .latest files and JSON-lines log.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/shapes}
if ! pkg-config --exists libpng libjpeg openblas 2>/dev/null; then
  apt-get update -qq && apt-get install -y -qq libpng-dev libjpeg-dev libopenblas-dev pkg-config >/dev/null
fi
swift build -c release 2>&1 | tail -1 >&2
caption=.build/release/caption
if [ ! -f data/shapes-train/captions.json ]; then
  "$caption" dataset shapes --out data/shapes-train --count 20000 --seed 1
fi
for seed in 2 3; do
  if [ ! -f "data/shapes-train$seed/captions.json" ]; then
    "$caption" dataset shapes --out "data/shapes-train$seed" --count 40000 --seed "$seed"
  fi
done
"$caption" train --data data/shapes-train --out "$out/stage1/shapes.safetensors"
"$caption" train --data data/shapes-train2 --out "$out/stage2/shapes.safetensors" \
  --init "$out/stage1/shapes.latest.safetensors" --epochs 5 --lr 1e-3 --warmup 100
"$caption" train --data data/shapes-train3 --out "$out/shapes.safetensors" \
  --init "$out/stage2/shapes.latest.safetensors" --epochs 5 --lr 1e-3 --warmup 100
