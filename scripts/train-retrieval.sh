#!/usr/bin/env bash
# Gives the bundled model its retrieval part (SPEC §3b) cheaply: the ranking loss alone, trained on
# the frozen bundled captioner (`--retrieval-only`: its tensors are copied unchanged, so its captions
# do not change), on a shapes dataset rendered with the training seed of scripts/train-shapes.sh.
#
#   bash scripts/train-retrieval.sh [OUT_DIR]        (default: runs/retrieval)
#
# Run on a models/shapes.safetensors that already has the part, it trains that part further (the
# bundled one was made from the captioner alone, whose retrieval part was then new).
# Writes OUT_DIR/shapes.safetensors (best by validation rsum) and its .latest files and log; the
# bundled models/shapes.safetensors is OUT_DIR/shapes.safetensors with its provenance set to the
# captioner's, the retrieval run's added under "retrieval" (docs/retrieval.md). CAPTION=path/to/caption
# uses that executable instead of building. COUNT (default 30000), EPOCHS (default 5) and MAX_STEPS
# (default 1501: the bundled run stopped after the validation of epoch 2) size the run.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/retrieval}
if [ -z "${CAPTION:-}" ]; then
  swift build -c release 2>&1 | tail -1 >&2
fi
caption=${CAPTION:-.build/release/caption}
count=${COUNT:-30000}
data=data/shapes-retrieval-$count
if [ ! -f "$data/captions.json" ]; then
  "$caption" dataset shapes --out "$data" --count "$count" --seed 1 --force
fi
mkdir -p "$out"
"$caption" train --data "$data" --init models/shapes.safetensors --retrieval 1 --retrieval-only \
  --epochs "${EPOCHS:-5}" --max-steps "${MAX_STEPS:-1501}" --out "$out/shapes.safetensors"
