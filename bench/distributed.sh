#!/usr/bin/env bash
# Data-parallel training against one process on this machine (issue 14): images/s of
#   1 process x 2 threads   vs   2 ranks x 1 thread (torchrun, Gloo on loopback)
# for the MLP (784-512-512, latent 16) and the SNL conv networks, with the Gaussian prior and
# with the energy prior trained by SNELBO (base proposal), batch 128 (global), on binary MNIST.
#   bench/distributed.sh OUT_DIR [MLP_STEPS] [CONV_STEPS]
# images/s = steps x batch / train_seconds (the `finished` record: the summed step times, which
# for two ranks include the all-reduces). Writes OUT_DIR/table.md.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${BUILD_DIR:-$here/build}/apps/vae-ebm"
out="${1:?usage: bench/distributed.sh OUT_DIR [MLP_STEPS] [CONV_STEPS]}"
mlp_steps="${2:-300}"; conv_steps="${3:-20}"
mkdir -p "$out"
rate() {  # run dir, steps -> images/s
  /usr/bin/env python3 - "$1/metrics.jsonl" "$2" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("event") == "finished":
        print(f"{int(sys.argv[2]) * 128 / r['train_seconds']:.0f}")
PY
}
echo "| network | prior | 1 process x 2 threads (images/s) | 2 ranks x 1 thread (images/s) | ratio |" > "$out/table.md"
echo "|---|---|---|---|---|" >> "$out/table.md"
for net in mlp conv; do
  steps=$([ "$net" = mlp ] && echo "$mlp_steps" || echo "$conv_steps")
  for prior in gaussian ebm; do
    flags=(--dataset binary-mnist --architecture "$net" --latent 16 --prior "$prior" --batch-size 128
           --max-steps "$steps" --eval-every 1000 --eval-samples 1 --log-z-samples 256 --seed 0)
    [ "$prior" = ebm ] && flags+=(--objective snelbo --proposal base)
    one="$out/$net-$prior-1x2"; two="$out/$net-$prior-2x1"
    rm -rf "$one" "$two"
    "$bin" train "${flags[@]}" --threads 2 --run-dir "$one" 2> "$one.log"
    torchrun --standalone --nproc_per_node 2 --redirects 1 --tee 1 --no_python \
        "$bin" train "${flags[@]}" --threads 1 --run-dir "$two" > "$two.log" 2>&1
    a=$(rate "$one" "$steps"); b=$(rate "$two" "$steps")
    echo "| $net | $prior | $a | $b | $(python3 -c "print(f'{$b / $a:.2f}')") |" >> "$out/table.md"
  done
done
cat "$out/table.md"
