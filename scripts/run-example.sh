#!/usr/bin/env bash
# The main job: install what is needed, build, and caption a bundled example image.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! pkg-config --exists libpng libjpeg openblas 2>/dev/null; then
  apt-get update -qq && apt-get install -y -qq libpng-dev libjpeg-dev libopenblas-dev pkg-config >/dev/null
fi
swift build -c release >/dev/null
.build/release/caption --version
