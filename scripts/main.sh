#!/usr/bin/env bash
# The main job on a fresh machine: install, build, get the data, train a VAE with an
# energy-based prior (SNELBO) on static binary MNIST, sample and evaluate it, and write its report.
#   RUN_DIR=runs/main EPOCHS=20 scripts/main.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
scripts/setup.sh
scripts/build.sh vae-ebm
bin="${BUILD_DIR:-$here/build}/apps/vae-ebm"
run="${RUN_DIR:-runs/main-$(date +%Y%m%d-%H%M%S)}"
# The main job's recipe (recipes/binary-mnist-ebm-4min.ini, measured in recipes/README.md): joint
# SNELBO with a flow proposal trained towards the energy prior (docs/MATH.md 8.4).
"$bin" train --config recipes/binary-mnist-ebm-4min.ini --run-dir "$run" --epochs "${EPOCHS:-20}"
"$bin" sample "$run" --sampler all
"$bin" evaluate "$run" --samples 100 --report
echo
echo "results: $run/report.html (the run's page: curves, bounds, samples), $run/evaluation.json (bounds),"
echo "         $run/metrics.jsonl (training log), $run/samples/*.png, $run/checkpoints/ (best.pt, latest)"
