#!/usr/bin/env bash
# Issue 29: the Fashion-MNIST rows under the settled colour-mnist recipe (bench/results/settling),
# 10 epochs, then the test bounds (K = 100) and forward AIS for the energy rows.
#   runs/i29f/rows.sh a   # vae, then post hoc, then their evaluations
#   runs/i29f/rows.sh b   # joint, then its evaluations
set -euo pipefail
bin=${BIN:-/tmp/bin3/vae-ebm}
out=runs/i29f
common="--dataset fashion-mnist --likelihood logistic --architecture mlp --hidden 512,512 --latent 16
  --batch-size 128 --lr 3e-4 --beta1 0.9 --samples 1 --eval-every 1 --seed 0 --validation-log-z is
  --log-every 60 --threads 1 --epochs 10 --lr-schedule cosine --lr-warmup-steps 1000"
evaluate() {
  local dir=$out/$1
  "$bin" evaluate "$dir" --samples 100 --threads 1 --quality-samples 0 > "$out/$1.eval.txt"
  if grep -q '^prior=ebm' "$dir/config.ini"; then
    "$bin" evaluate "$dir" --samples 100 --threads 1 --quality-samples 0 --log-z-method ais --out "$dir/ais" \
        --ais-chains 2000 --ais-temperatures 5000 > "$out/$1.eval-ais.txt"
  fi
}
case $1 in
  a)
    $bin train --run-dir $out/f-vae $common --prior gaussian > $out/f-vae.log 2>&1
    $bin fit-prior $out/f-vae --run-dir $out/f-posthoc --prior ebm --energy-hidden 200,200,200 \
      --prior-lr 1e-4 --lr-schedule exponential --lr-decay 1.0 --beta1 0.9 --batch-size 128 --epochs 2 --eval-every 1 --seed 0 \
      --validation-log-z is --threads 1 > $out/f-posthoc.log 2>&1
    evaluate f-vae; evaluate f-posthoc ;;
  b)
    $bin train --run-dir $out/f-snelbo $common --prior ebm --energy-hidden 200,200,200 --prior-lr 1e-4 \
      --proposal flow --flow-fit reverse-kl --prior-start-epoch 2 > $out/f-snelbo.log 2>&1
    evaluate f-snelbo ;;
esac
