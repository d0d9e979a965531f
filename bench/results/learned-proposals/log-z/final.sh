#!/bin/bash
# issue 13: log Z of the snl13 energies, AIS from the base (5000 temperatures, adaptive step) on
# the full test split, and AIS from a flow fitted to the energy (reverse KL + refinement).
B="${BIN:-build/apps/vae-ebm}"  # run with a copy of the binary at commit 8e3a4c5
cd "$(dirname "${BASH_SOURCE[0]}")/../../../.."  # the repository root
stream=$1
for r in vae-ebm-posthoc vae-ebm-snelbo-flow-reverse-kl vae-ebm-fce vae-ebm-nce-flow vae-ebm-score-matching; do
  s=$(date +%s)
  if [ "$stream" = ais ]; then
    out=runs/snl13/$r/ais-adaptive; mkdir -p $out
    $B evaluate runs/snl13/$r --quality-samples 0 --threads 1 --out $out --log-z-method ais --ais-temperatures 5000 --ais-chains 1000 > $out/eval.txt 2>&1
  else
    out=runs/snl13/$r/flow-ais; mkdir -p $out
    $B evaluate runs/snl13/$r --limit 10 --samples 2 --quality-samples 0 --normaliser learned --threads 1 --out $out --log-z-method flow-ais --flow-steps 2000 --flow-refine-steps 1000 --ais-temperatures 1000 --ais-chains 500 > $out/eval.txt 2>&1
  fi
  echo "$r $stream :: $(grep -E '^  log Z' $out/eval.txt) :: $(( $(date +%s) - s )) s"
done
