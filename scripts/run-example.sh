#!/usr/bin/env bash
# The main job: install what is needed, build in release, and caption the bundled example images
# with the bundled model (models/shapes.safetensors).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! pkg-config --exists libpng libjpeg openblas 2>/dev/null; then
  apt-get update -qq && apt-get install -y -qq libpng-dev libjpeg-dev libopenblas-dev pkg-config >/dev/null
fi
swift build -c release --product caption 2>&1 | tail -1 >&2
.build/release/caption describe datasets/shapes/examples/
