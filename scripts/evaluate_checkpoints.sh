#!/usr/bin/env bash
# Evaluates every model in a folder (e.g. the --keep-every snapshots NAME.epochEEE.safetensors and
# the best/latest models) at several beam sizes, into one CSV and one Markdown table.
#
#   scripts/evaluate_checkpoints.sh RUN_DIR DATA [SPLIT] [BEAMS] [OUT_PREFIX]
#   scripts/evaluate_checkpoints.sh runs datasets/shapes/sample test "1 3 5" runs/checkpoints
#
# Writes OUT_PREFIX.csv and OUT_PREFIX.md (default: RUN_DIR/checkpoints.{csv,md}).
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,8p' "$0" >&2
  exit 64
fi
run_dir=$1
data=$2
split=${3:-test}
beams=${4:-"1 3"}
out=${5:-$run_dir/checkpoints}
here=$(cd "$(dirname "$0")/.." && pwd)
caption=${CAPTION:-$here/.build/release/caption}
[ -x "$caption" ] || { echo "build first: swift build -c release (or set CAPTION=...)" >&2; exit 1; }

keys=(BLEU-1 BLEU-2 BLEU-3 BLEU-4 ROUGE-L CIDEr-D object-F1 attribute-accuracy count-accuracy relation-accuracy)
tmp_csv=$(mktemp "$(dirname "$out")/.csv.XXXXXX")
tmp_md=$(mktemp "$(dirname "$out")/.md.XXXXXX")
trap 'rm -f "$tmp_csv" "$tmp_md"' EXIT
(IFS=,; echo "model,beam,${keys[*]}") > "$tmp_csv"
{
  printf '| model | beam |'; printf ' %s |' "${keys[@]}"; echo
  printf '| --- | --- |'; printf ' --- |%.0s' "${keys[@]}"; echo
} > "$tmp_md"

shopt -s nullglob
models=("$run_dir"/*.safetensors)
[ ${#models[@]} -gt 0 ] || { echo "$run_dir: no .safetensors models" >&2; exit 1; }
for model in "${models[@]}"; do
  for beam in $beams; do
    echo "evaluating $(basename "$model") beam $beam" >&2
    json=$("$caption" evaluate --model "$model" --data "$data" --split "$split" --beam "$beam" --json)
    row=$(python3 -c '
import json, sys
scores = json.loads(sys.argv[1])
print(",".join("%.4f" % scores[k] if k in scores else "" for k in sys.argv[2:]))' "$json" "${keys[@]}")
    echo "$(basename "$model"),$beam,$row" >> "$tmp_csv"
    echo "| $(basename "$model") | $beam | ${row//,/ | } |" >> "$tmp_md"
  done
done
mv "$tmp_csv" "$out.csv"
mv "$tmp_md" "$out.md"
trap - EXIT
echo "wrote $out.csv and $out.md" >&2
