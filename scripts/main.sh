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
# Joint SNELBO with a flow proposal trained towards the energy prior (docs/MATH.md 8.4): +1.6
# nats of test SNELBO over the base proposal on this recipe (bench/results/flow-proposal/).
"$bin" train --run-dir "$run" --prior ebm --objective snelbo --proposal flow --flow-fit reverse-kl --latent 16 \
  --lr 1e-3 --prior-lr 2e-4 --beta1 0.9 --lr-decay 1.0 --samples 1 --epochs "${EPOCHS:-20}" --eval-every 5
"$bin" sample "$run" --sampler all
"$bin" evaluate "$run" --samples 100 --report
echo
echo "results: $run/report.html (the run's page: curves, bounds, samples), $run/evaluation.json (bounds),"
echo "         $run/metrics.jsonl (training log), $run/samples/*.png, $run/checkpoints/ (best.pt, latest)"
