#!/usr/bin/env bash
# The main job on a fresh machine: install, build, get the data, train a VAE with an
# energy-based prior (SNELBO) on static binary MNIST, evaluate and sample it.
#   RUN_DIR=runs/main EPOCHS=20 scripts/main.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
scripts/setup.sh
scripts/build.sh
bin="${BUILD_DIR:-$here/build}/apps/vae-ebm"
run="${RUN_DIR:-runs/main-$(date +%Y%m%d-%H%M%S)}"
"$bin" train --run-dir "$run" --prior ebm --objective snelbo --latent 16 \
  --lr 1e-3 --prior-lr 2e-4 --beta1 0.9 --lr-decay 1.0 --samples 1 --epochs "${EPOCHS:-20}" --eval-every 5
"$bin" evaluate "$run" --samples 100
"$bin" sample "$run"
echo
echo "results: $run/evaluation.json (bounds), $run/metrics.jsonl (training log),"
echo "         $run/samples/*.png (prior samples, reconstructions), $run/checkpoints/ (best.pt, latest)"
