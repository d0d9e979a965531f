#!/usr/bin/env bash
# Issue 4's equal-budget study on static binary MNIST: the energy prior learned by SNELBO,
# short-run MCMC, long-run MCMC (fresh and persistent chains) and NCE, each given the same
# wall-clock budget of training steps (validation excluded) with the same networks; and
# issue 13's rows: SNELBO with the flow proposal (reverse KL), NCE with flow noise, FCE and
# denoising score matching. Each energy row is evaluated twice, with log Z by evaluate's
# default (IS from the base, or a flow) and by forward AIS (evaluation-ais.json), so that a row
# is rankable when the two agree.
#   bench/mcmc_study.sh OUT_DIR [SECONDS]
#   ROWS="snelbo-flow fce" bench/mcmc_study.sh OUT_DIR [SECONDS]   # only these rows (no tables)
# Then the noise study: prior samples of one trained EBM after Langevin with eta = 1 and 0.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${BUILD_DIR:-$here/build}/apps/vae-ebm"
out="${1:?usage: bench/mcmc_study.sh OUT_DIR [SECONDS]}"
budget="${2:-300}"
k="${EVAL_K:-100}"
threads="${THREADS:-1}"
mkdir -p "$out"
common=(--dataset binary-mnist --architecture mlp --hidden 512,512 --latent 16 --batch-size 128
        --lr 3e-4 --beta1 0.9 --lr-decay 1.0 --samples 1 --epochs 1000 --time-budget "$budget"
        --eval-every 5 --seed 0 --log-every 60 --threads "$threads" --validation-log-z is
        --prior ebm --energy-hidden 200,200,200 --prior-lr 1e-4)

run() {  # name, flags...
  local name="$1"; shift
  if [ -n "${ROWS:-}" ] && [[ " $ROWS " != *" $name "* ]]; then return; fi
  if [ -f "$out/$name/evaluation.json" ]; then echo "study: $name done already" >&2; return; fi
  rm -rf "$out/$name"
  "$bin" train --run-dir "$out/$name" "${common[@]}" "$@" 2> "$out/$name.log"
  "$bin" evaluate "$out/$name" --samples "$k" --threads "$threads" --out "$out/$name/ais" --log-z-method ais \
      --quality-samples 0 --ais-chains "${AIS_CHAINS:-2000}" --ais-temperatures "${AIS_TEMPERATURES:-5000}" \
      > "$out/$name.eval-ais.txt"
  "$bin" evaluate "$out/$name" --samples "$k" --threads "$threads" > "$out/$name.eval.txt"
}

run snelbo            --objective snelbo
# Without the energy penalty both MCMC objectives ran away here (f below -10^5 within 5
# epochs: the jointly trained encoder chases low energy where the chains do not reach).
mcmc=(--energy-l2 "${ENERGY_L2:-1}")
run short-run-mcmc    --objective short-run-mcmc "${mcmc[@]}"
run long-run-mcmc     --objective long-run-mcmc "${mcmc[@]}"
run long-run-persistent --objective long-run-mcmc --persistent "${mcmc[@]}"
run nce               --objective nce
run snelbo-flow       --objective snelbo --proposal flow --flow-fit reverse-kl
run nce-flow          --objective nce --nce-noise flow
run fce               --objective fce
run score-matching    --objective score-matching
[ -n "${ROWS:-}" ] && exit 0

python3 "$here/bench/table.py" "$out" snelbo short-run-mcmc long-run-mcmc long-run-persistent nce snelbo-flow nce-flow \
    fce score-matching > "$out/table.md"
"$bin" report "$out"/{snelbo,short-run-mcmc,long-run-mcmc,long-run-persistent,nce,snelbo-flow,nce-flow,fce,score-matching} \
    --format markdown --threads "$threads" > "$out/paired.md"

# The noise study: the same trained EBM sampled with eta = 1 (Langevin) and eta = 0 (gradient flow).
for name in snelbo long-run-persistent; do
  for eta in 1 0; do
    "$bin" sample "$out/$name" --out "$out/$name/samples-eta$eta" --sampler langevin --langevin-noise "$eta" --threads "$threads" \
      > "$out/$name/samples-eta$eta.txt"
  done
done
cat "$out/table.md"
