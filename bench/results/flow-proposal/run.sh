#!/usr/bin/env bash
# Issue 13: the main job's recipe (MLP VAE, latent 16, joint SNELBO, 20 epochs) with each flow
# fit of --proposal flow, evaluated with log Z from a flow fitted to the final energy. The base
# proposal's row is the main job itself (runs/main-check-20261129b, README).
#   bench/results/flow-proposal/run.sh OUT_DIR
set -euo pipefail
out="${1:?OUT_DIR}"
mkdir -p "$out"
bin=build/apps/vae-ebm
for fit in mix reverse-kl ml; do
  "$bin" train --run-dir "$out/flow-$fit" --prior ebm --objective snelbo --latent 16 \
    --lr 1e-3 --prior-lr 2e-4 --beta1 0.9 --lr-decay 1.0 --samples 1 --epochs 20 --eval-every 5 --validation-log-z is \
    --proposal flow --flow-fit "$fit" --log-every 30 2> "$out/flow-$fit.train.txt"
  "$bin" evaluate "$out/flow-$fit" --samples 100 --log-z-method flow --quality-samples 0 > "$out/flow-$fit.eval.txt"
done
