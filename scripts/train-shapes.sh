#!/usr/bin/env bash
# Renders the shapes training set and trains on it: how models/shapes.safetensors was made.
#
#   bash scripts/train-shapes.sh [--force] [OUT_DIR]        (default: runs/shapes)
#
# 110 000 scenes (seed 1: 88 000 train, 11 000 val, 11 000 test), then `caption train` with its
# default settings: 14 epochs, 2 captions per image, the auxiliary word loss (weight 10) and, since
# the data has scenes.json, the auxiliary scene loss (weight 3) and mention loss (weight 0.05).
# About 28 minutes on the project's 2-core machine when it is otherwise idle (see README).
# Writes OUT_DIR/shapes.safetensors (best by validation CIDEr-D), its .latest files and JSON-lines
# log. The bundled models/shapes.safetensors is OUT_DIR/shapes.latest.safetensors, the weights at
# the end of training (README says why).
#
# Run again after an interruption, it continues the run (`caption train --resume`, from
# OUT_DIR/shapes.latest.state); over files of a run it cannot continue it stops, unless --force,
# which starts the run over. The rendering is skipped once data/shapes-110k is complete (a stopped
# rendering leaves nothing there). CAPTION=path/to/caption uses that executable instead of building.
# RETRIEVAL=W trains the retrieval part jointly with weight W (`--retrieval W`; docs/retrieval.md,
# "Trained jointly"); a continued run keeps the settings it was started with.
set -euo pipefail
cd "$(dirname "$0")/.."
force=0
if [ "${1:-}" = "--force" ]; then
  force=1
  shift
fi
out=${1:-runs/shapes}
if [ -z "${CAPTION:-}" ]; then
  if ! pkg-config --exists libpng libjpeg openblas 2>/dev/null; then
    apt-get update -qq && apt-get install -y -qq libpng-dev libjpeg-dev libopenblas-dev pkg-config >/dev/null
  fi
  swift build -c release 2>&1 | tail -1 >&2
fi
caption=${CAPTION:-.build/release/caption}
data=data/shapes-110k
if [ ! -f "$data/captions.json" ]; then
  # --force: a folder left by an older, unfinished rendering holds images without captions.json.
  "$caption" dataset shapes --out "$data" --count 110000 --seed 1 --force
fi
flags=()
if [ "$force" = 0 ]; then
  if [ -f "$out/shapes.latest.state" ]; then
    echo "continuing the run in $out (--force starts it over)" >&2
    flags=(--resume)
  else
    for file in "$out/shapes.safetensors" "$out/shapes.latest.safetensors" "$out/shapes.log.jsonl"; do
      if [ -e "$file" ]; then
        echo "train-shapes.sh: $file exists without the state to continue its run; --force starts over" >&2
        exit 1
      fi
    done
  fi
fi
if [ ${#flags[@]} = 0 ] && [ -n "${RETRIEVAL:-}" ]; then
  flags=(--retrieval "$RETRIEVAL")  # a continued run keeps the settings it started with
fi
"$caption" train --data "$data" --out "$out/shapes.safetensors" ${flags[@]+"${flags[@]}"}
echo "the bundled model corresponds to $out/shapes.latest.safetensors (the weights at the end of training)"
