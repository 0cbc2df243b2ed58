#!/usr/bin/env bash
# Renders the shapes training set, trains on it and calibrates the result: how
# models/shapes.safetensors was made.
#
#   bash scripts/train-shapes.sh [--force] [OUT_DIR]        (default: runs/shapes)
#
# 110 000 scenes (seed 1: 88 000 train, 11 000 val, 11 000 test), then `caption train` with its
# default settings and the retrieval part trained jointly (`--retrieval 1`, docs/retrieval.md):
# 14 epochs, 2 captions per image, the auxiliary word loss (weight 10) and, since the data has
# scenes.json, the auxiliary scene loss (weight 3) and mention loss (weight 0.05). About an hour on
# the project's 2-core AVX-512 machine when it is otherwise idle (docs/results.md).
# Writes OUT_DIR/shapes.safetensors (best by validation CIDEr-D), its .latest files and JSON-lines
# log, then OUT_DIR/shapes.bundled.safetensors: the weights at the end of training
# (shapes.latest.safetensors) with the familiarity threshold calibrated on 4 000 scenes of seed 3
# and the rerank weight λ on 1 000 validation scenes of seed 11 (`caption calibrate`). That file is
# the bundled model.
#
# Run again after an interruption, it continues the run (`caption train --resume`, from
# OUT_DIR/shapes.latest.state); over files of a run it cannot continue it stops, unless --force,
# which starts the run over. The renderings are skipped once complete (a stopped rendering leaves
# nothing there). CAPTION=path/to/caption uses that executable instead of building.
# RETRIEVAL=W sets the retrieval part's weight (default 1; 0 trains the captioner alone, and λ is
# then not calibrated); a continued run keeps the settings it was started with.
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
render() {  # FOLDER, then `caption dataset shapes`'s options
  local folder=$1
  shift
  if [ ! -f "$folder/captions.json" ]; then
    # --force: a folder left by an older, unfinished rendering holds images without captions.json.
    "$caption" dataset shapes --out "$folder" "$@" --force
  fi
}
data=data/shapes-110k
render "$data" --count 110000 --seed 1
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
retrieval=${RETRIEVAL:-1}
if [ ${#flags[@]} = 0 ] && [ "$retrieval" != 0 ]; then
  flags=(--retrieval "$retrieval")  # a continued run keeps the settings it started with
fi
"$caption" train --data "$data" --out "$out/shapes.safetensors" ${flags[@]+"${flags[@]}"}

# The calibrations of the bundled file, on scenes no test set uses.
render data/shapes-cal3 --count 4000 --seed 3
calibrate=(calibrate --model "$out/shapes.latest.safetensors" --out "$out/shapes.bundled.safetensors")
if "$caption" info --json "$out/shapes.latest.safetensors" | grep -q '"retrieval":{'; then
  render data/shapes-cal11 --count 1000 --seed 11 --val 1 --test 0
  calibrate+=(--rerank-data data/shapes-cal11)
fi
"$caption" "${calibrate[@]}" data/shapes-cal3/images
echo "the bundled model corresponds to $out/shapes.bundled.safetensors"
