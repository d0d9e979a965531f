#!/usr/bin/env bash
# The test command: set-up (idempotent), build, then every GoogleTest suite via ctest.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$here/scripts/setup.sh"
"$here/scripts/build.sh"
cd "${BUILD_DIR:-$here/build}"
ctest -j2 --output-on-failure
