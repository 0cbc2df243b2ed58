#!/usr/bin/env bash
# Describe against ONNX Runtime's CPU provider, back to back on this machine: for each preset,
# `caption bench --preset P --steps 7` (its describe_ms, the median of 21 runs) and scripts/onnx_describe.py (the same network
# exported from scripts/torch_reference.py: encoder with the image terms, and one decoder step),
# alternating for ROUNDS rounds, then the medians. torch, onnx and onnxruntime are installed from
# PyPI into .venv-onnx (git-ignored) on first use; not part of CI.
#
#   bash scripts/onnx_peer.sh [ROUNDS] [PRESET…]      # defaults: 3 rounds; default vgg16-224
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
shift || true
presets=("$@")
[ ${#presets[@]} -gt 0 ] || presets=(default vgg16-224)
threads=${THREADS:-2}

if [ ! -x .venv-onnx/bin/python ]; then python3 -m venv .venv-onnx; fi
.venv-onnx/bin/python -c 'import torch, onnx, onnxruntime, numpy' 2>/dev/null \
  || .venv-onnx/bin/pip install -q torch onnx onnxruntime numpy
swift build -c release --product caption >/dev/null 2>&1 || swift build -c release --product caption
caption=.build/release/caption

value() { sed -n "s/^$1=//p" | tail -1; }
median() { sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }

field() { grep -m1 "^$1" /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'; }
echo "CPU: $(field 'model name') (family $(field 'cpu family') model $(field 'model')), kernels: $($caption bench --steps 1 --length 1 --batch 1 2>/dev/null | sed -n 's/.*kernels //p'), threads $threads, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
printf '%-12s %12s %14s %12s %10s\n' preset caption_ms onnxruntime_ms pytorch_ms ours/ort
for preset in "${presets[@]}"; do
  ours=() ort=() eager=()
  for _ in $(seq "$rounds"); do
    ours+=("$($caption bench --preset "$preset" --steps 7 --threads "$threads" | value describe_ms)")
    out=$(cd scripts && ../.venv-onnx/bin/python onnx_describe.py --preset "$preset" --threads "$threads" --runs 20)
    ort+=("$(echo "$out" | value onnxruntime_describe_ms)")
    eager+=("$(echo "$out" | value pytorch_describe_ms)")
  done
  a=$(printf '%s\n' "${ours[@]}" | median)
  b=$(printf '%s\n' "${ort[@]}" | median)
  c=$(printf '%s\n' "${eager[@]}" | median)
  printf '%-12s %12s %14s %12s %10.2f\n' "$preset" "$a" "$b" "$c" "$(awk -v a="$a" -v b="$b" 'BEGIN {print a / b}')"
done
