#!/usr/bin/env bash
# The design choices, measured: each recurrent cell (image at every step) and the LSTM with the
# image at the first step only, trained with the default settings on the same data (the bundled
# model's 110 000 scenes) for the same number of steps, then evaluated on a test set rendered with
# an unseen seed. Prints a Markdown table. 5 000 steps take about 4 minutes per LSTM run on the
# project's 2-core machine.
#
#   bash scripts/compare_cells.sh [STEPS] [OUT_DIR]      (default: 5000 steps, runs/cells)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-5000}
out=${2:-runs/cells}
swift build -c release >/dev/null
caption=.build/release/caption
[ -f data/shapes-110k/captions.json ] || "$caption" dataset shapes --out data/shapes-110k --count 110000 --seed 1
[ -f data/shapes-fresh/captions.json ] || "$caption" dataset shapes --out data/shapes-fresh --count 1000 --seed 77 --val 0 --test 1
mkdir -p "$out"
echo "| cell | image input | steps | train time (s) | CIDEr-D | object F1 | attribute acc. | relation acc. |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for run in rnn:every lstm:every peephole:every coupled:every gru:every lstm:first; do
  cell=${run%%:*}
  input=${run##*:}
  model="$out/$cell-$input.safetensors"
  start=$(date +%s)
  "$caption" train --data data/shapes-110k --out "$model" --cell "$cell" --image-input "$input" \
    --max-steps "$steps" --epochs 100 --val-images 300 --val-every 100 >"$out/$cell-$input.train.log" 2>&1
  seconds=$(( $(date +%s) - start ))
  # The weights at the last step (the best-by-validation file may be from an earlier epoch).
  json=$("$caption" evaluate --model "${model%.safetensors}.latest.safetensors" --data data/shapes-fresh --beam 1 --json)
  python3 - "$json" "$cell" "$input" "$steps" "$seconds" <<'PY'
import json, sys
s = json.loads(sys.argv[1])
cell, inp, steps, secs = sys.argv[2:6]
cols = [cell, inp, steps, secs] + ["%.3f" % s[k] for k in ("CIDEr-D", "object-F1", "attribute-accuracy", "relation-accuracy")]
print("| " + " | ".join(cols) + " |")
PY
done
