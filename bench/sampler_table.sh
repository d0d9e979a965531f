#!/usr/bin/env bash
# Sample quality of each prior under each sampler (issue 28): FD, KID, PRDC and the classifier
# score of 10,000 generated images against the test set, with each sampler's wall time per
# 10,000 draws and its diagnostic.
#   bench/sampler_table.sh OUT_DIR [EPOCHS] [ROW ...]
# Rows (default: all): vae (Gaussian prior), posthoc (an energy prior fitted post hoc to the vae
# row by SNELBO, base proposal), joint (the main job's recipe: an energy prior trained jointly by
# SNELBO with a flow proposal trained by reverse KL), long-run (an energy prior trained jointly by
# long-run MCMC, 200 Langevin steps of 0.1 from the base for each step's negatives, energy L2 1,
# stopped after MCMC_BUDGET seconds of steps, default 600: its steps cost far more than the
# others'), long-run-hmc (the same objective with persistent chains continued by 2 HMC
# trajectories of 10 leapfrog steps of 0.1 each step, --mcmc-sampler hmc; the same budget), and three variants of the joint row that try to close holes in training (issue 28):
# joint-defensive50 (half the proposal samples from the base, not 10%), joint-flow4 (4 Adam
# steps of the flow's reverse-KL fit per training step, not 1) and joint-l2 (the penalty
# ENERGY_L2 (mean f(z_post)^2 + mean f(z_proposal)^2), default 0.01); joint-boundB (the
# energy bounded, --energy-bound B: f = B tanh(g / B)); joint-annealT (Zhat by AIS from the
# flow mixture over T temperatures, one MALA step of ANNEAL_STEP, default 0.3, at each
# intermediate one: --proposal-anneal T). Every row shares the main job's networks
# and optimiser (scripts/main.sh), EPOCHS (default 20) and the seed SEED (default 0); energy rows are scored with every
# sampler, the vae row with its exact one. Needs the feature classifier
# (vae-ebm train-classifier --dataset binary-mnist). The table goes to OUT_DIR/table.md.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${BUILD_DIR:-$here/build}/apps/vae-ebm"
out="${1:?usage: bench/sampler_table.sh OUT_DIR [EPOCHS] [ROW ...]}"
epochs="${2:-20}"
shift $(( $# >= 2 ? 2 : $# ))
rows=("$@")
[ ${#rows[@]} -gt 0 ] || rows=(vae posthoc joint long-run)
threads="${THREADS:-1}"
mkdir -p "$out"
joint=(--prior ebm --objective snelbo --proposal flow --flow-fit reverse-kl --prior-lr 2e-4 --on-divergence warn)
recipe=(--latent 16 --lr 1e-3 --beta1 0.9 --lr-decay 1.0 --samples 1 --epochs "$epochs" --eval-every 5
        --seed "${SEED:-0}" --threads "$threads")

train_row() {  # name, command and flags...
  local name="$1"; shift
  grep -qs '"event":"finished"' "$out/$name/metrics.jsonl" && return
  rm -rf "$out/$name"
  "$bin" "$@" --run-dir "$out/$name" 2> "$out/$name.train.log"
}

# Quality only: the bounds of each row are the business of the other tables, so they are
# computed here on 100 test images with a cheap log Z (recorded, not reported). Energy rows are
# scored with every sampler in one evaluate (--sampler all: one flow, fitted once where the run
# has none), the vae row with its exact sampler.
score() {  # row, sampler ("all" or "exact")
  local row="$1" sampler="$2" dir="$out/$1/quality"
  [ -f "$dir/evaluation.json" ] && return
  mkdir -p "$dir"
  local choice=(--sampler "$sampler")
  [ "$sampler" = exact ] && choice=()
  "$bin" evaluate "$out/$row" --out "$dir" "${choice[@]}" --limit 100 --samples 2 --log-z-method is \
      --log-z-samples 1000 --threads "$threads" > "$dir/evaluate.txt"
}

for row in "${rows[@]}"; do
  case "$row" in
    vae) train_row vae train "${recipe[@]}" --prior gaussian ;;
    joint) train_row joint train "${recipe[@]}" "${joint[@]}" ;;
    # Issue 28's training-side variants of the joint row.
    joint-defensive50) train_row "$row" train "${recipe[@]}" "${joint[@]}" --proposal-base-fraction 0.5 ;;
    joint-flow4) train_row "$row" train "${recipe[@]}" "${joint[@]}" --proposal-flow-steps 4 ;;
    joint-l2) train_row "$row" train "${recipe[@]}" "${joint[@]}" --energy-l2 "${ENERGY_L2:-0.01}" ;;
    joint-anneal*) train_row "$row" train "${recipe[@]}" "${joint[@]}" --proposal-anneal "${row#joint-anneal}" \
                     --proposal-anneal-step "${ANNEAL_STEP:-0.3}" ;;
    joint-bound*) train_row "$row" train "${recipe[@]}" "${joint[@]}" --energy-bound "${row#joint-bound}" ;;
    long-run) train_row long-run train "${recipe[@]}" --prior ebm --objective long-run-mcmc --energy-l2 1 \
                --prior-lr 2e-4 --time-budget "${MCMC_BUDGET:-600}" ;;
    long-run-hmc) train_row long-run-hmc train "${recipe[@]}" --prior ebm --objective long-run-mcmc --persistent \
                    --mcmc-sampler hmc --mcmc-steps 20 --energy-l2 1 --prior-lr 2e-4 --time-budget "${MCMC_BUDGET:-600}" ;;
    posthoc) train_row posthoc fit-prior "$out/vae" --prior ebm --prior-lr 2e-4 --lr 1e-3 --beta1 0.9 --lr-schedule exponential --lr-decay 1.0 \
               --epochs "$epochs" --eval-every 5 --seed 0 --threads "$threads" ;;
    *) echo "unknown row $row" >&2; exit 2 ;;
  esac
  if grep -q '^prior=ebm' "$out/$row/config.ini"; then
    score "$row" all
    "$bin" sample "$out/$row" --sampler all --threads "$threads" > "$out/$row/sample.txt"
  else
    score "$row" exact
  fi
done
python3 "$here/bench/sampler_table.py" "$out" > "$out/table.md"
cat "$out/table.md"
