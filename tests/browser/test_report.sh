#!/usr/bin/env bash
# `vae-ebm report` in a real browser (headless Chromium): trains two tiny runs (a Gaussian VAE
# and an energy prior) on a small labelled HDF5 data set, evaluates them, writes their
# two-run page, opens it, and checks that
#   - the page loads without a console message or script error;
#   - every chart and image section is drawn: as many <svg> and <img> as the sections expect,
#     every image decoded (naturalWidth > 0), every chart of some size with lines or markers;
#   - the comparison table is there, with a row per run and kind of bound;
#   - a screenshot is not blank where the first chart, the first image and the latent-space
#     scatter are (pixel spread and colour in those regions).
# The page has no script of its own: a probe is put into a copy of it to count what the
# browser drew and write the counts into the DOM, which --dump-dom prints.
#
#   tests/browser/test_report.sh VAE_EBM_BINARY HELPER_BINARY   (ctest runs it: label "browser")
# Exits 77, which ctest reports as skipped, when no Chromium is installed.
set -euo pipefail

vae_ebm=$1
helper=$2
browser=""
for candidate in chromium chromium-browser google-chrome; do
  if command -v "$candidate" >/dev/null 2>&1; then
    browser=$(command -v "$candidate")
    break
  fi
done
if [ -z "$browser" ]; then
  echo "SKIPPED: no Chromium to open the report in (Debian: apt-get install -y chromium)"
  exit 77
fi

here="$(cd "${BASH_SOURCE[0]%/*}" && pwd)"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vae-ebm-browser-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
run() {  # a vae-ebm command; its output is shown when it fails
  if ! "$vae_ebm" "$@" >>"$tmp/commands.log" 2>&1; then
    tail -n 30 "$tmp/commands.log" >&2
    fail "vae-ebm $*"
  fi
}

# ---- Two tiny runs, evaluated; one with the sample grids of `vae-ebm sample`, one without ---
"$helper" data "$tmp/data.h5"
train=(--dataset "hdf5:$tmp/data.h5" --hidden 32 --latent 3 --batch-size 32 --epochs 4 --eval-samples 2
       --log-z-samples 256 --log-every 0.001 --threads 1)
run train "${train[@]}" --prior gaussian --run-dir "$tmp/vae"
run train "${train[@]}" --prior ebm --energy-hidden 16,16 --run-dir "$tmp/ebm"
run evaluate "$tmp/vae" --samples 5 --quality-samples 0 --threads 1
run evaluate "$tmp/ebm" --samples 5 --log-z-samples 1000 --quality-samples 0 --threads 1 --report
run sample "$tmp/vae" --count 16 --threads 1
# An energy prior trained jointly and one fitted post hoc to the VAE, each by SNELBO with a flow
# proposal, so that their checkpoints hold a flow and every sampler has a grid on the page.
flow=(--prior ebm --energy-hidden 16,16 --objective snelbo --proposal flow --flow-fit reverse-kl)
run train "${train[@]}" "${flow[@]}" --run-dir "$tmp/joint"
run fit-prior "$tmp/vae" "${flow[@]}" --epochs 4 --eval-samples 2 --log-z-samples 256 --threads 1 --run-dir "$tmp/posthoc"
for dir in joint posthoc; do
  run evaluate "$tmp/$dir" --samples 5 --log-z-samples 1000 --quality-samples 0 --threads 1
done
run report "$tmp/joint" "$tmp/posthoc" --out "$tmp/samplers.html" --threads 1
start=$(date +%s%N)
run report "$tmp/vae" "$tmp/ebm" --out "$tmp/report.html" --threads 1
echo "two-run report written in $(( ($(date +%s%N) - start) / 1000000 )) ms ($(du -k "$tmp/report.html" | cut -f1) KB)"

# ---- The browser ------------------------------------------------------------------------------
width=1280
chrome() {  # chrome OUTPUT_PREFIX ARGS...: Chromium's stdout and stderr go to files
  local out=$1
  shift
  timeout 120 "$browser" --headless --disable-gpu --no-sandbox --user-data-dir="$tmp/profile" \
    --enable-logging=stderr --v=0 --force-device-scale-factor=1 --hide-scrollbars "$@" \
    >"$out.out" 2>"$out.err" || fail "chromium $* (exit $?): $(tail -n 5 "$out.err")"
}

# check PAGE RUNS IMAGES CHARTS COMPARISON_ROWS: loads a copy of PAGE with the probe
# (tests/browser/probe.py puts it in and reads its counts) and checks what it counted.
check() {
  local page=$1 runs=$2 images=$3 charts=$4 rows=$5 name
  name=$(basename "$(dirname "$page")")-$(basename "$page" .html)
  /usr/bin/python3 "$here/probe.py" inject "$page" "$tmp/$name.probed.html"
  chrome "$tmp/$name.dom" --window-size=$width,2000 --virtual-time-budget=10000 --dump-dom "file://$tmp/$name.probed.html"
  if grep -a ':CONSOLE' "$tmp/$name.dom.err"; then
    fail "$name: console messages while loading the page (above)"
  fi
  /usr/bin/python3 "$here/probe.py" check "$tmp/$name.dom.out" "$tmp/$name.probe.json" \
    --runs "$runs" --images "$images" --charts "$charts" --comparison-rows "$rows"
}

# screenshot PAGE: the whole page as one PNG; each region the probe found must be drawn.
screenshot() {
  local page=$1 name height
  name=$(basename "$(dirname "$page")")-$(basename "$page" .html)
  height=$(/usr/bin/python3 "$here/probe.py" field "$tmp/$name.probe.json" height)
  height=$(( height < 16000 ? height : 16000 ))
  chrome "$tmp/$name.shot" --window-size=$width,"$height" --virtual-time-budget=10000 \
    --screenshot="$tmp/$name.png" "file://$page"
  [ -s "$tmp/$name.png" ] || fail "$name: no screenshot"
  for region in chart image scatter; do
    local box stats
    box=$(/usr/bin/python3 "$here/probe.py" field "$tmp/$name.probe.json" "$region")
    # shellcheck disable=SC2086
    stats=$("$helper" region "$tmp/$name.png" $box)
    echo "$name: $region at [$box]: $stats"
    /usr/bin/python3 "$here/probe.py" drawn "$region" $stats || fail "$name: the $region region of the screenshot is blank"
  done
}

# The two-run page: for the Gaussian VAE 3 sample grids from its samples/ (prior means and
# draws, reconstructions), 7 training charts (loss and validation bound against steps and
# seconds, throughput, the gradient norm, the learning rate) and the latent space; for the
# energy prior 4 grids drawn for the page (one per sampler that needs no flow: langevin, mala,
# hmc; reconstructions) and the chain strip, 9 training charts (those 7, log Z and b, ESS), the
# chains' trace and the latent space; 2 comparison charts. The comparison table: 2 runs x 2
# kinds of bound.
check "$tmp/report.html" 2 8 21 4
screenshot "$tmp/report.html"
# The page `evaluate --report` wrote for the energy prior alone.
check "$tmp/ebm/report.html" 1 5 11 0
screenshot "$tmp/ebm/report.html"
# The samplers page (issue 28): for the joint and the post-hoc energy, one grid per sampler (8),
# reconstructions and the chain strip each, every one decoded and drawn; 19 charts (the joint
# run 11 as above; the post-hoc run 6: validation bound against steps and seconds, log Z, ESS,
# the chains' trace, the latent space; 2 comparison charts).
grep -q "Left out: the flow samplers" "$tmp/samplers.html" && fail "samplers.html: flow samplers left out"
for name in langevin mala hmc flow flow-sir flow-langevin flow-mala transport; do
  [ "$(grep -o "alt=\"prior samples: $name\"" "$tmp/samplers.html" | wc -l)" = 2 ] || fail "samplers.html: no grid of $name for both runs"
done
check "$tmp/samplers.html" 2 20 19 4
screenshot "$tmp/samplers.html"
echo "PASS: the report loads in $("$browser" --version 2>/dev/null | head -n 1) without errors, every section drawn"
