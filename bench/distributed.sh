#!/usr/bin/env bash
# Data-parallel training against one process on this machine (issue 14). For the MLP (784-512-512,
# latent 16) and the SNL conv networks, each with the Gaussian prior, the energy prior trained by
# SNELBO (base proposal) and the energy prior trained by short-run MCMC (the README's defaults:
# 60 Langevin steps of size 0.4, as many negatives as images), global batch 128, binary MNIST:
#   1. images/s of 1 process x 2 threads against 2 ranks x 1 thread (torchrun, Gloo on
#      loopback), and the 2-rank run's time in collectives (the `finished` record's
#      allreduce_seconds) as a share of its step time;
#   2. one process with one thread at batch 128, 64, 16 and 2: the compute of one rank of
#      1, 2, 8 and 64 at global batch 128 (the projection's input);
#   3. bench_allreduce under torchrun: the gradient all-reduce alone, and a sweep of sizes;
#   4. bench/distributed_projection.py: the projection to 8 and 64 ranks (projection.md).
#   bench/distributed.sh OUT_DIR [MLP_STEPS] [CONV_STEPS]
# images/s = steps x batch / train_seconds (the `finished` record: the summed step times, which
# for two ranks include the collectives inside the step). SKIP_COMPUTE=1 skips part 2,
# SKIP_ALLREDUCE=1 part 3, ROWS="mlp:gaussian conv:mcmc" limits the rows (for smoke tests).
# Writes OUT_DIR/table.md, compute.md, allreduce.txt, measured.json and projection.md.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$here/build}"
bin="$build/apps/vae-ebm"
out="${1:?usage: bench/distributed.sh OUT_DIR [MLP_STEPS] [CONV_STEPS]}"
mlp_steps="${2:-300}"; conv_steps="${3:-80}"
rows="${ROWS:-mlp:gaussian mlp:snelbo mlp:mcmc conv:gaussian conv:snelbo conv:mcmc}"
py=/usr/bin/python3
torchrun=(torchrun --standalone --nproc_per_node 2 --redirects 1 --tee 1 --no_python)
mkdir -p "$out"
{ date -u +"date %Y-%m-%dT%H:%M:%SZ"; echo "commit $(git -C "$here" rev-parse --short HEAD)$(git -C "$here" diff --quiet HEAD -- . || echo ' (with uncommitted changes)')"
  echo "uptime $(uptime)"; } > "$out/machine.txt"
# A run's `finished` record as `train_seconds allreduce_seconds` (0 for one process).
finished() {
  $py - "$1/metrics.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("event") == "finished":
        print(r["train_seconds"], r.get("allreduce_seconds", 0))
PY
}
flags_of() {  # net objective steps batch
  local f=(--dataset binary-mnist --architecture "$1" --latent 16 --batch-size "$4" --max-steps "$3"
           --eval-every 1000 --eval-samples 1 --log-z-samples 256 --validation-log-z is --seed 0)
  case "$2" in
    gaussian) f+=(--prior gaussian) ;;
    snelbo) f+=(--prior ebm --objective snelbo --proposal base) ;;
    mcmc) f+=(--prior ebm --objective short-run-mcmc) ;;
  esac
  echo "${f[@]}"
}
: > "$out/runs.txt"  # net objective layout batch steps train_seconds allreduce_seconds
echo "| network | objective | 1 process x 2 threads (images/s) | 2 ranks x 1 thread (images/s) | ratio | ms/step 1x2 | ms/step 2x1 | of which in collectives (ms) | collectives' share |" > "$out/table.md"
echo "|---|---|---|---|---|---|---|---|---|" >> "$out/table.md"
for row in $rows; do
  net="${row%%:*}"; obj="${row#*:}"
  steps=$([ "$net" = mlp ] && echo "$mlp_steps" || echo "$conv_steps")
  read -r -a flags <<< "$(flags_of "$net" "$obj" "$steps" 128)"
  one="$out/$net-$obj-1x2"; two="$out/$net-$obj-2x1"
  rm -rf "$one" "$two"
  "$bin" train "${flags[@]}" --threads 2 --run-dir "$one" 2> "$one.log"
  "${torchrun[@]}" "$bin" train "${flags[@]}" --threads 1 --run-dir "$two" > "$two.log" 2>&1
  read -r a _ < <(finished "$one"); read -r b c < <(finished "$two")
  echo "$net $obj 1x2 128 $steps $a 0" >> "$out/runs.txt"
  echo "$net $obj 2x1 128 $steps $b $c" >> "$out/runs.txt"
  $py - "$net" "$obj" "$steps" "$a" "$b" "$c" >> "$out/table.md" <<'PY'
import sys
net, obj, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
a, b, c = map(float, sys.argv[4:7])
print(f"| {net} | {obj} | {steps * 128 / a:.0f} | {steps * 128 / b:.0f} | {a / b:.2f} | {1e3 * a / steps:.1f} | "
      f"{1e3 * b / steps:.1f} | {1e3 * c / steps:.1f} | {100 * c / b:.0f}% |")
PY
done
cat "$out/table.md"
if [ "${SKIP_COMPUTE:-0}" != 1 ]; then
  # One rank's compute: one process, one thread, at the batch a rank of W holds at global 128.
  echo "| network | objective | batch 128 (ms/step) | 64 | 16 | 2 |" > "$out/compute.md"
  echo "|---|---|---|---|---|---|" >> "$out/compute.md"
  for row in $rows; do
    net="${row%%:*}"; obj="${row#*:}"
    steps=$([ "$net" = mlp ] && echo "$mlp_steps" || echo "$conv_steps")
    line="| $net | $obj |"
    for batch in 128 64 16 2; do
      read -r -a flags <<< "$(flags_of "$net" "$obj" "$steps" "$batch")"
      dir="$out/$net-$obj-1x1-b$batch"; rm -rf "$dir"
      "$bin" train "${flags[@]}" --threads 1 --run-dir "$dir" 2> "$dir.log"
      read -r a _ < <(finished "$dir")
      echo "$net $obj 1x1 $batch $steps $a 0" >> "$out/runs.txt"
      line="$line $($py -c "print(f'{1e3 * $a / $steps:.2f}')") |"
    done
    echo "$line" >> "$out/compute.md"
  done
  cat "$out/compute.md"
fi
if [ "${SKIP_ALLREDUCE:-0}" != 1 ]; then
  "${torchrun[@]}" "$build/bench/bench_allreduce" --reps "${ALLREDUCE_REPS:-200}" > "$out/allreduce.log" 2>&1
  # Rank 0's `key value` lines (torchrun's --tee prefixes them with "[0]:" or "[default0]:").
  sed -n 's/^\[\(default\)\?0\]://p' "$out/allreduce.log" | grep -v '^blas_kernel' > "$out/allreduce.txt"
  cat "$out/allreduce.txt"
fi
# The projection needs parts 2 and 3 (from this run or an earlier one into OUT_DIR).
if [ -f "$out/allreduce.txt" ] && [ -f "$out/compute.md" ]; then
  $py "$here/bench/distributed_projection.py" "$out"
fi
