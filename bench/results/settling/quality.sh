#!/usr/bin/env bash
# Issue 29 part 4: sample quality and colour coverage of the colour-mnist rows (bench/results/settling).
#   runs/i29/quality.sh a|b [draws|means]
set -u
bin=${BIN:-/tmp/bin3/vae-ebm}
images=${2:-draws}
q() { row=$1 sampler=$2
  tag=$sampler; [ "$images" = draws ] || tag=$images-$sampler
  "$bin" evaluate runs/i29/$row --out runs/i29/$row/quality-$tag --sampler $sampler --quality-images $images \
    --limit 100 --samples 2 --log-z-method is --log-z-samples 1000 --threads 1 > runs/i29/$row.quality-$tag.txt 2>&1; }
case ${1:-a} in
  a) q c-vae hmc; q c-snelbo hmc ;;
  b) q c-posthoc hmc; q c-snelbo flow-sir ;;
esac
