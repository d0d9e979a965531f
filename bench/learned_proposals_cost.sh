#!/usr/bin/env bash
# Issue 13's cost figures: images/s of a training step with each learned proposal or objective
# beside the base-proposal SNELBO step (bench_train, side by side in one run on one thread),
# and the wall time of `evaluate` with each log-Z method on one trained energy prior.
#   bench/learned_proposals_cost.sh RUN_DIR [SECONDS]
# RUN_DIR: a trained energy-prior run (e.g. runs/snl13/vae-ebm-snelbo-flow-reverse-kl).
# Run it on a quiet machine: the figures are wall times.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$here/build}"
run="${1:?usage: bench/learned_proposals_cost.sh RUN_DIR [SECONDS]}"
seconds="${2:-20}"
echo "# $(date -u +%F) $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores), commit $(git -C "$here" rev-parse --short HEAD)"
echo "## training step: MLP 784-512-512, latent 16, energy 16-200-200-200-1, batch 256, binary MNIST, 1 thread"
step() {  # label, flags...
  local label="$1"; shift
  local rate
  rate=$("$build/bench/bench_train" --data binary-mnist --threads 1 --seconds "$seconds" --skip-matmul "$@" |
         sed -n 's/^train_images_per_second //p')
  echo "$label images_per_second=$rate"
}
step "snelbo base" --objective snelbo
step "snelbo flow reverse-kl" --objective snelbo --proposal flow --flow-fit reverse-kl
step "snelbo flow ml" --objective snelbo --proposal flow --flow-fit ml
step "snelbo flow mix" --objective snelbo --proposal flow --flow-fit mix
step "nce base" --objective nce
step "nce flow" --objective nce --nce-noise flow
step "fce" --objective fce
step "score-matching" --objective score-matching
step "flow prior (exact)" --prior flow
echo "## evaluate $run, K = 100, 10,000 test images, 1 thread"
for method in is flow ais; do
  t0=$(date +%s.%N)
  "$build/apps/vae-ebm" evaluate "$run" --samples 100 --threads 1 --quality-samples 0 --log-z-method "$method" \
      --out "$(mktemp -d)" > /tmp/learned-proposals-eval-$method.txt 2>/dev/null
  t1=$(date +%s.%N)
  echo "evaluate --log-z-method $method seconds=$(echo "$t1 - $t0" | bc) $(grep -m1 'log Z' /tmp/learned-proposals-eval-$method.txt | tr -s ' ')"
done
