#!/usr/bin/env bash
# The test command: set-up (idempotent), build, then every GoogleTest suite via ctest.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$here/scripts/setup.sh"
# The library reports, it does not print (issue 27): what the training loop has to say goes to a
# listener (vae/trainer.h), and apps/ prints it.
if (cd "$here" && grep -rnE 'std::(cout|cerr)|fprintf\((stdout|stderr)|\bprintf\(|\bputs\(' \
      --include='*.cpp' --include='*.h' vae prior estimators data | grep -vE '^[^:]+:[0-9]+:\s*//'); then
  echo "test.sh: the lines above print from library code (vae/, prior/, estimators/, data/); tell a listener instead" >&2
  exit 1
fi
# ... and does not spell the command line's flags: it names an option ("the logistic likelihood",
# OptionError's name), and apps/ says which flag that is.
if (cd "$here" && grep -rnE '"[^"]*--[a-z][^"]*"' \
      --include='*.cpp' --include='*.h' vae prior estimators data | grep -vE '^[^:]+:[0-9]+:\s*//'); then
  echo "test.sh: the lines above spell a --flag in library code (vae/, prior/, estimators/, data/); name the option and let apps/ spell it" >&2
  exit 1
fi
"$here/scripts/build.sh"
cd "${BUILD_DIR:-$here/build}"
# setup.sh has fetched the data: tests that need it must not skip.
export VAE_EBM_REQUIRE_DATA=1
ctest -j2 --output-on-failure
# libFuzzer on the parsers, 60 s each (fuzz/README.md), built with both cores, then in two
# streams side by side (each harness is one process on one core). idx, config and report (what
# `vae-ebm report` reads from a run directory) fail the run on any finding. hdf5 and checkpoint
# reach crashes inside libhdf5 1.10.8 and LibTorch's unpickler (bench/results/fuzz/README.md:
# reproduced with h5py and torch.jit.load), so they run past their crashes and report them
# without failing the run.
JOBS=2 "$here/scripts/fuzz.sh" --build idx config report hdf5 checkpoint
"$here/scripts/fuzz.sh" 60 idx config report &
gating=$!
FUZZ_FLAGS="-fork=1 -ignore_crashes=1" "$here/scripts/fuzz.sh" 60 hdf5 checkpoint ||
  echo "test.sh: the hdf5/checkpoint fuzzers found crashes (known ones in libhdf5 and LibTorch: fuzz/README.md); not failing the run" >&2
wait "$gating"
