#!/usr/bin/env bash
# The sanitizer runs of docs/robustness.md:
#   bash scripts/sanitize.sh kernels [IMAGE_FOLDER...]   # C kernels and image shims: ASan + UBSan
#   bash scripts/sanitize.sh tests [swift test options]  # the test suite under AddressSanitizer
# (no argument: both). swiftc has no UndefinedBehaviorSanitizer on Linux, so UBSan covers the C
# code only; the Swift code traps on overflow and out-of-range indexing in release builds anyway.
set -euo pipefail
cd "$(dirname "$0")/.."

kernels() {
  # Every kernel at every instruction set the CPU has, then the shims over the fixture images
  # (and any folders given). Every report is fatal (-fno-sanitize-recover).
  local driver=.build-sanitize/kernels-driver
  mkdir -p .build-sanitize
  clang -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
    -ISources/CKernels/include -ISources/CShims/include $(pkg-config --cflags libpng libjpeg) \
    Sources/CKernels/*.c Sources/CShims/*.c scripts/sanitize/kernels_driver.c \
    $(pkg-config --libs libpng libjpeg) -lm -lpthread -o "$driver" 2>&1 | grep -v 'Cannot export local symbol' >&2 || true
  [ -x "$driver" ] || { echo "sanitize.sh: the kernel driver did not build" >&2; exit 1; }
  find Tests/CaptionKitTests/Fixtures "$@" -type f \( -name '*.png' -o -name '*.jpg' -o -name '*.jpeg' \) -print0 |
    xargs -0 env UBSAN_OPTIONS=print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 "$driver"
}

tests() {
  # Its own scratch path: the instrumented build does not replace the normal one. Leak checking is
  # off: the Swift runtime's and Foundation's caches live until exit and would be reported.
  # CAPTION_SANITIZE=1 links `caption` dynamically (Package.swift says why).
  CAPTION_SANITIZE=1 OPENBLAS_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=0 \
    swift test -c release --sanitize address --scratch-path .build-sanitize "$@"
}

case ${1:-all} in
  kernels) shift; kernels "$@" ;;
  tests) shift; tests "$@" ;;
  all) kernels && tests ;;
  *) echo "usage: bash scripts/sanitize.sh [kernels [FOLDER...] | tests [swift test options]]" >&2; exit 64 ;;
esac
