#!/usr/bin/env bash
# Runs one recipe as its README row was measured: train it, evaluate the best checkpoint on the
# test split with K = 1,000 posterior samples, and print the row (bounds with standard errors,
# log Z with its ESS, training time, images/s, peak memory of each command).
#   recipes/run.sh recipes/binary-mnist-vae-iw-4min.ini runs/recipes/vae-iw [more train flags]
# BIN names the binary (default build/apps/vae-ebm), THREADS the threads of both commands (default:
# the binary's); the extra flags go to train.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,6p' "$0"; exit 2; }
recipe=$1 run=$2
shift 2
bin=${BIN:-build/apps/vae-ebm}
[ -f "$recipe" ] || { echo "recipes/run.sh: no recipe file $recipe" >&2; exit 2; }
[ ! -e "$run" ] || { echo "recipes/run.sh: $run exists; give a new run directory" >&2; exit 2; }
mkdir -p "$(dirname "$run")"
threads=()
[ -z "${THREADS:-}" ] || threads=(--threads "$THREADS")
/usr/bin/time -v -o "$run.train.time" "$bin" train --config "$recipe" --run-dir "$run" "${threads[@]}" "$@"
/usr/bin/time -v -o "$run.evaluate.time" "$bin" evaluate "$run" --samples 1000 --quality-samples 0 "${threads[@]}"
python3 - "$recipe" "$run" <<'PY'
import json, sys
recipe, run = sys.argv[1:3]
record = json.load(open(run + "/evaluation.json"))
events = [json.loads(line) for line in open(run + "/metrics.jsonl")]
finished = [e for e in events if e.get("event") == "finished"][-1]
rates = [e["images_per_second"] for e in events if e.get("event") == "train"]
def peak(path):
    for line in open(path):
        if "Maximum resident set size" in line:
            return int(line.split(":")[1]) / 1024**2
def est(name):
    e = next(e for e in record["estimates"] if e["estimator"] == name)
    return "%s %.2f ± %.2f" % (name, e["value"], e["std_error"])
names = [e["estimator"] for e in record["estimates"]]
bound = next(n for n in names if n.endswith("ELBO_1000"))
iw = next(n for n in names if n.endswith("IWAE_1000"))
lz = record.get("log_z")
log_z = "exact" if not lz else "%.3f ± %.3f [ESS %.0f of %d, %s]" % (lz["value"], lz["std_error"], lz["ess"], lz["count"], lz["estimator"])
print("| `%s` | %s | %s | %s | %.0f s (%d steps) | %.0f | %.1f, %.1f GiB |" % (
    recipe.split("/")[-1], est(bound), est(iw), log_z, finished["train_seconds"], finished["step"],
    sorted(rates)[len(rates) // 2], peak(run + ".train.time"), peak(run + ".evaluate.time")))
PY
