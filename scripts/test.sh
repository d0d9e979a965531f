#!/usr/bin/env bash
# The test command: set-up (idempotent), build, then every GoogleTest suite via ctest.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$here/scripts/setup.sh"
"$here/scripts/build.sh"
cd "${BUILD_DIR:-$here/build}"
# setup.sh has fetched the data: tests that need it must not skip.
export VAE_EBM_REQUIRE_DATA=1
ctest -j2 --output-on-failure
