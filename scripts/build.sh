#!/usr/bin/env bash
# Configures (once) and builds Sekisho into ./build, warnings as errors (the project's own
# builds; meson.build leaves them warnings for others). Extra arguments go to `meson setup`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f build/build.ninja ]; then
  meson setup build -Dwerror=true "$@"
fi
meson compile -C build
