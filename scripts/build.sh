#!/usr/bin/env bash
# Configures and builds vae-ebm (Release) into $BUILD_DIR (default: <repo>/build).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${BUILD_DIR:-$here/build}"
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S "$here" -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
# Two jobs: each torch translation unit needs ~1 GB and one core. Arguments name targets
# (scripts/main.sh builds only vae-ebm); none builds everything, tests and benchmarks included.
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build "$build_dir" -j "${JOBS:-2}" "${targets[@]}"
echo "build: $build_dir/apps/vae-ebm" >&2
