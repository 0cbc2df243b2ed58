#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer with AddressSanitizer) of every reader of bytes the project did
# not write: docs/robustness.md has the targets, the figures and how to turn a crash into a test.
#
#   bash scripts/fuzz.sh SECONDS [TARGET...]     # every target when none is named, one after another
#
# Builds Sources/caption-fuzz (only when CAPTION_FUZZ=1) in its own scratch path, .build-fuzz, then
# runs each target for SECONDS from the committed seeds (scripts/fuzz-corpus/TARGET) and the test
# fixtures. What it learns stays in .fuzz/ (ignored): corpus/TARGET (grown corpus), crashes/TARGET
# (inputs that failed), logs/TARGET.log, and one summary line per target in summary.tsv. Exit status
# 1 when a target failed.
set -euo pipefail
cd "$(dirname "$0")/.."

all=(safetensors json dataset scenes tokenizer png jpeg request)
usage() {
  echo "usage: bash scripts/fuzz.sh SECONDS [TARGET...]   (targets: ${all[*]})" >&2
  exit 64
}
[ $# -ge 1 ] || usage
seconds=$1
shift
[[ $seconds =~ ^[1-9][0-9]*$ ]] || usage
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
for target in "${targets[@]}"; do
  [[ " ${all[*]} " == *" $target "* ]] || usage
done

# The fuzzing build: Swift and C both instrumented for coverage and checked by AddressSanitizer.
# -enable-testing lets the targets reach the library's internal readers (@testable import); lld,
# because gold fails on the instrumented objects (an internal error in its DWARF reader).
CAPTION_FUZZ=1 swift build -c release --scratch-path .build-fuzz --product caption-fuzz \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld \
  -Xcc -fsanitize=fuzzer-no-link,address >&2
fuzzer=.build-fuzz/release/caption-fuzz

fixtures=Tests/CaptionKitTests/Fixtures
# Seeds beyond the committed ones: read only (libFuzzer adds new inputs to the first folder only).
extra_seeds() {
  case $1 in
    safetensors) echo "$fixtures/safetensors" ;;
    dataset) echo "$fixtures/data/bad $fixtures/data/flickr8k" ;;
    png) echo "$fixtures/corpus/libpng/testpngs $fixtures/corpus/pngsuite" ;;
    jpeg) echo "$fixtures/corpus/jpeg $fixtures/image" ;;
  esac
}

mkdir -p .fuzz/logs
status=0
for target in "${targets[@]}"; do
  mkdir -p ".fuzz/corpus/$target" ".fuzz/crashes/$target"
  scratch=$(mktemp -d)  # the targets that read a path write their input here
  log=".fuzz/logs/$target.log"
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: more than 2 GB is a memory fault.
  # shellcheck disable=SC2046
  if TMPDIR=$scratch CAPTION_FUZZ_TARGET=$target "$fuzzer" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=".fuzz/crashes/$target/" \
    ".fuzz/corpus/$target" "scripts/fuzz-corpus/$target" $(extra_seeds "$target") >"$log" 2>&1; then
    result=clean
  else
    result="FAILED (see $log and .fuzz/crashes/$target/)"
    status=1
  fi
  rm -rf "$scratch"
  # libFuzzer's last status line (#N ... cov: C ft: F corp: ...) and its final statistics.
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corpus=$(sed -n 's/.* corp: \([^ ]*\).*/\1/p' <<<"$last")
  printf '%s\t%s s\t%s executions\t%s exec/s\tcov %s\tft %s\tcorpus %s\t%s\n' "$target" "$seconds" \
    "${runs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corpus:-?}" "$result" | tee -a .fuzz/summary.tsv
done
exit "$status"
