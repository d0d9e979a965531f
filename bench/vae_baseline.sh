#!/usr/bin/env bash
# Issue 2's benchmark: the MLP VAE with a Gaussian prior on static binary MNIST, trained
# and evaluated on the test set; prints the wall time. bench/vae_baseline.sh OUT_DIR
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${BUILD_DIR:-$here/build}/apps/vae-ebm"
out="${1:?usage: bench/vae_baseline.sh OUT_DIR}"
t0=$(date +%s)
"$bin" train --run-dir "$out" --dataset binary-mnist --prior gaussian --latent 32 --hidden 512,512 \
  --batch-size 128 --lr 3e-4 --beta1 0.9 --lr-decay 0.99 --epochs "${EPOCHS:-150}" --eval-every 5 --seed 0 \
  --log-every 60 --threads "${THREADS:-1}"
t1=$(date +%s)
"$bin" evaluate "$out" --samples 100 --threads "${THREADS:-1}"
echo "train_seconds=$((t1 - t0))"
