#!/bin/bash
# Would `auto` be safe trying forward AIS from the base (the defaults: 100 chains, 1,000
# temperatures, adapted step) before it fits a flow? For each trained energy, three seeds of that
# estimate, against the reference (AIS from the base, 5,000 temperatures, 1,000-2,000 chains).
#   bench/results/learned-proposals/log-z/auto-study/run.sh RUN_DIR...
B="${BIN:-build/apps/vae-ebm}"
tmp=$(mktemp -d)
for d in "$@"; do
  for seed in 1 2 3; do
    s=$(date +%s.%N)
    "$B" evaluate "$d" --limit 10 --samples 2 --quality-samples 0 --threads 1 --out "$tmp" \
        --log-z-method ais --seed "$seed" > "$tmp/eval.txt" 2>&1 || { echo "$d failed"; cat "$tmp/eval.txt"; continue; }
    line=$(grep -E '^  log Z' "$tmp/eval.txt" | head -1 | sed 's/.*)//')
    printf '%s seed=%s %s  %.1f s\n' "$d" "$seed" "$(echo $line)" "$(echo "$(date +%s.%N) - $s" | bc)"
  done
done
rm -rf "$tmp"
