#!/usr/bin/env bash
# The four SNL rows on 8-bit data with a likelihood for it (issue 18): bits/dim, nats, log Z.
#   bench/likelihood_table.sh OUT_DIR DATASET [EPOCHS] [ROW ...]
# DATASET: fashion-mnist (28x28 grey) or colour-mnist (32x32x3), both 8-bit levels, modelled
# by the discretised logistic (LIKELIHOOD, default logistic). Rows (default all four): vae
# (Gaussian prior), vae-mog (mixture prior), vae-ebm-posthoc (an energy prior fitted post hoc
# to the vae row for EPOCHS/4 epochs) and vae-ebm-snelbo (energy prior trained jointly by
# SNELBO with a flow proposal trained by reverse KL to the energy: the recipe of issue 13).
# MLP 512,512, latent 16, Adam 3e-4 on a cosine schedule after 1,000 warm-up steps (the constant
# rate swung by up to 1,000 nats between validations: bench/results/settling), batch 128, seed 0,
# THREADS threads (default 1). Each row is
# evaluated on the test set with K = EVAL_K (default 100); an energy row's log Z comes from
# evaluate's `auto` method, printed with its ESS, and is checked by forward AIS (AIS_CHAINS,
# default 2000, AIS_TEMPERATURES, default 5000; records in OUT_DIR/ROW/ais/). Writes
# OUT_DIR/table.md, OUT_DIR/paired.md (bench/paired.py: each row's gain over vae, paired over
# the test images; needs h5py) and, per row, OUT_DIR/ROW/samples/*.png.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${BUILD_DIR:-$here/build}/apps/vae-ebm"
out="${1:?usage: bench/likelihood_table.sh OUT_DIR DATASET [EPOCHS] [ROW ...]}"
dataset="${2:?usage: bench/likelihood_table.sh OUT_DIR DATASET [EPOCHS] [ROW ...]}"
epochs="${3:-30}"
shift $(( $# >= 3 ? 3 : $# ))
rows=("$@")
[ ${#rows[@]} -gt 0 ] || rows=(vae vae-mog vae-ebm-posthoc vae-ebm-snelbo)
k="${EVAL_K:-100}"
threads="${THREADS:-1}"
mkdir -p "$out"
common=(--dataset "$dataset" --likelihood "${LIKELIHOOD:-logistic}" --architecture mlp --hidden 512,512 --latent 16
        --batch-size 128 --lr 3e-4 --beta1 0.9 --lr-schedule cosine --lr-warmup-steps 1000 --samples 1 --eval-every 5
        --seed 0 --validation-log-z is
        --log-every 60 --threads "$threads" --epochs "$epochs")
ebm=(--prior ebm --energy-hidden 200,200,200 --prior-lr 1e-4)

run() {  # name, command and flags...
  local name="$1"; shift
  local dir="$out/$name"
  if ! grep -qs '"event":"finished"' "$dir/metrics.jsonl"; then
    rm -rf "$dir"
    local t0=$(date +%s)
    "$bin" "$@" 2> "$out/$name.log"
    echo "$name train_seconds=$(( $(date +%s) - t0 ))" >> "$out/timings.txt"
  fi
  if [ ! -f "$dir/evaluation.json" ]; then
    "$bin" evaluate "$dir" --samples "$k" --threads "$threads" --quality-samples 0 > "$out/$name.eval.txt"
    "$bin" sample "$dir" --threads "$threads" > /dev/null
  fi
  if grep -q '^prior=ebm' "$dir/config.ini" && [ ! -f "$dir/ais/evaluation.json" ]; then
    "$bin" evaluate "$dir" --samples "$k" --threads "$threads" --quality-samples 0 --log-z-method ais --out "$dir/ais" \
        --ais-chains "${AIS_CHAINS:-2000}" --ais-temperatures "${AIS_TEMPERATURES:-5000}" > "$out/$name.eval-ais.txt"
  fi
}

for row in "${rows[@]}"; do
  case "$row" in
    vae) run vae train --run-dir "$out/vae" "${common[@]}" --prior gaussian ;;
    vae-mog) run vae-mog train --run-dir "$out/vae-mog" "${common[@]}" --prior mog --prior-lr 3e-4 ;;
    vae-ebm-posthoc)
      run vae-ebm-posthoc fit-prior "$out/vae" --run-dir "$out/vae-ebm-posthoc" "${ebm[@]}" --lr-schedule exponential --lr-decay 1.0 \
          --beta1 0.9 --batch-size 128 --epochs "$(( epochs / 4 > 0 ? epochs / 4 : 1 ))" --eval-every 5 --seed 0 --validation-log-z is \
          --log-every 60 --threads "$threads" ;;
    vae-ebm-snelbo)
      run vae-ebm-snelbo train --run-dir "$out/vae-ebm-snelbo" "${common[@]}" "${ebm[@]}" --proposal flow \
          --flow-fit reverse-kl ;;
    *) echo "likelihood_table.sh: unknown row '$row'" >&2; exit 2 ;;
  esac
done

/usr/bin/env python3 - "$out" "${rows[@]}" > "$out/table.md" <<'PY'
import json, os, sys
out, rows = sys.argv[1], sys.argv[2:]
def est(record, name, units):
    for e in record["estimates"]:
        if e["estimator"].startswith(name) and e.get("units") == units:
            return e
    return None
def cell(e, digits):
    return "n/a" if e is None or e.get("value") is None else f"{e['value']:.{digits}f} ± {e['std_error']:.{digits}f}"
first = json.load(open(os.path.join(out, rows[0], "evaluation.json")))
print(f"Test set of {first['dataset']}, {first['images']} images, K = {first['samples_K']}; likelihood: "
      f"{first.get('likelihood', '?')}; bounds on: {first.get('bounds_on', '?')}.\n")
print("| row | bound (bits/dim) | IWAE-type bound (bits/dim) | bound (nats) | IWAE-type bound (nats) | log Z (method, ESS) | log Z by AIS (ESS), its bound (bits/dim) |")
print("|---|---|---|---|---|---|---|")
for row in rows:
    r = json.load(open(os.path.join(out, row, "evaluation.json")))
    bound = [e for e in r["estimates"] if e.get("units") == "nats"][0]["estimator"].split("_")[0]
    iw = [e for e in r["estimates"] if e.get("units") == "nats"][1]["estimator"].split("_")[0]
    lz = r.get("log_z")
    def log_z_text(record):
        lz = record.get("log_z")
        return "" if not lz else (f"{lz['value']:.3f} ± {lz['std_error']:.3f} ({lz['estimator']}, "
                                  f"ESS {lz.get('ess', float('nan')):.0f} of {lz['count']})")
    ais_path = os.path.join(out, row, "ais", "evaluation.json")
    ais_text = ""
    if os.path.exists(ais_path):
        a = json.load(open(ais_path))
        ais_text = log_z_text(a) + ", " + cell(est(a, bound + '_', 'bits/dim'), 4)
    print(f"| {row} | {cell(est(r, bound + '_', 'bits/dim'), 4)} | {cell(est(r, iw + '_', 'bits/dim'), 4)} | "
          f"{cell(est(r, bound + '_', 'nats'), 2)} | {cell(est(r, iw + '_', 'nats'), 2)} | {log_z_text(r)} | {ais_text} |")
PY
if [ "${rows[0]}" = vae ] && [ ${#rows[@]} -gt 1 ]; then
  others=()
  for row in "${rows[@]:1}"; do others+=("$out/$row"); done
  { echo "Gain over vae in nats, paired over the test images (bench/paired.py $out/vae ${others[*]}):"; echo
    echo '```'; /usr/bin/python3 "$here/bench/paired.py" "$out/vae" "${others[@]}"; echo '```'; } > "$out/paired.md" ||
    echo "likelihood_table.sh: bench/paired.py failed (h5py missing? scripts/setup.sh --bench)" >&2
fi
cat "$out/table.md"
