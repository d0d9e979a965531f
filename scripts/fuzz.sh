#!/usr/bin/env bash
# libFuzzer harnesses of the four parsers (fuzz/README.md). Configures and builds build-fuzz/
# with clang (ASan + coverage; idempotent), makes the seed corpus where fuzz/corpus/TARGET/ is
# empty, then runs each harness SECONDS_EACH seconds, one after another.
#   scripts/fuzz.sh [SECONDS_EACH] [TARGET...]   default 60 s each; TARGET: idx hdf5 checkpoint config report
#   scripts/fuzz.sh --make-seeds [TARGET...]     (re)writes fuzz/corpus/TARGET/ and exits
#   scripts/fuzz.sh --build [TARGET...]          builds the harnesses (and missing seeds) and exits,
#                                                so that two runs can then fuzz side by side
# Exits 1 if any harness crashed (or leaked, timed out, ran out of memory), naming the input it saved.
# Environment: FUZZ_BUILD_DIR (default <repo>/build-fuzz), JOBS (build jobs, default 1),
# FUZZ_FLAGS (more libFuzzer flags, e.g. "-jobs=2" or "-only_ascii=1").
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${FUZZ_BUILD_DIR:-$here/build-fuzz}"
all_targets=(idx hdf5 checkpoint config report)

make_seeds_only=0
build_only=0
seconds=60
if [ "${1:-}" = "--make-seeds" ]; then
  make_seeds_only=1; shift
elif [ "${1:-}" = "--build" ]; then
  build_only=1; shift
elif [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then
  seconds="$1"; shift
fi
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
  case " ${all_targets[*]} " in
    *" $t "*) ;;
    *) echo "fuzz.sh: unknown target '$t' (expected: ${all_targets[*]}; SECONDS_EACH comes first)" >&2; exit 2 ;;
  esac
done
if [ "$seconds" -lt 1 ]; then echo "fuzz.sh: SECONDS_EACH must be at least 1" >&2; exit 2; fi

# ASan, for every harness (and the vae-ebm runs that make seeds):
#  - allocator_may_return_null=1, max_allocation_size_mb=2048: a size read from a file can ask
#    for terabytes (libhdf5 allocates what a corrupt header says; h5_read and LibTorch make a
#    tensor of the stored shape). Beyond 2 GiB malloc returns NULL, as it does on a machine
#    without the memory, and the reader must turn that into an error; without this, ASan (or
#    libFuzzer's -malloc_limit_mb) stops the run at the first such input, though nothing is wrong
#    with the memory accesses. Real out-of-bounds accesses, use-after-free and double-free are
#    still reported. (detect_container_overflow and alloc_dealloc_mismatch need no change:
#    libstdc++ has no container annotations unless asked, and no mismatch has been reported.)
asan_common="allocator_may_return_null=1:max_allocation_size_mb=2048"
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}$asan_common"
# One thread each (LibTorch's intra-op pool, OpenBLAS): deterministic, and leaves the cores to others.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# ---- build ----
needs_vae_ebm=0
for t in "${targets[@]}"; do
  case "$t" in
    checkpoint|config|report)
      if [ "$make_seeds_only" = 1 ] || [ -z "$(ls -A "$here/fuzz/corpus/$t" 2>/dev/null)" ]; then needs_vae_ebm=1; fi ;;
  esac
done
# clang and its libFuzzer/ASan runtime (Debian: clang, and libclang-rt-14-dev, which clang only
# recommends).
if ! command -v clang++ >/dev/null 2>&1; then
  echo "fuzz.sh: clang++ not found (Debian: apt-get install clang libclang-rt-14-dev)" >&2; exit 2
fi
if [ ! -f "$(clang++ -print-file-name="libclang_rt.fuzzer-$(uname -m).a")" ]; then
  echo "fuzz.sh: clang's libFuzzer runtime is missing (Debian: apt-get install libclang-rt-14-dev)" >&2; exit 2
fi
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  echo "fuzz: configuring $build_dir with clang" >&2
  cmake -S "$here" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    "-DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link,address -g" \
    "-DCMAKE_CXX_FLAGS=-fsanitize=fuzzer-no-link,address -g" \
    -DVAE_EBM_BUILD_TESTS=OFF -DVAE_EBM_BUILD_BENCH=OFF -DVAE_EBM_BUILD_FUZZ=ON >/dev/null
fi
build_targets=()
[ "$make_seeds_only" = 0 ] && for t in "${targets[@]}"; do build_targets+=("fuzz_$t"); done
[ "$needs_vae_ebm" = 1 ] && build_targets+=(vae-ebm)
if [ ${#build_targets[@]} -gt 0 ]; then
  # One job at low priority by default: each torch translation unit needs ~1 GB and a core.
  nice -n 19 cmake --build "$build_dir" -j "${JOBS:-1}" --target "${build_targets[@]}"
fi

# ---- seed corpus ----
corpus_of() { echo "$here/fuzz/corpus/$1"; }

# Removes the generated seeds of a corpus directory; regression-* inputs (what a harness once
# crashed or hung on, fuzz/README.md) stay.
clear_seeds() {
  mkdir -p "$1"
  find "$1" -maxdepth 1 -type f ! -name 'regression-*' -delete
}

make_file_seeds() {  # idx | hdf5: small files written by fuzz/make_seeds.py (hdf5: h5py)
  local out; out="$(corpus_of "$1")"
  clear_seeds "$out"
  /usr/bin/python3 "$here/fuzz/make_seeds.py" "$1" "$out"
}

# Trains tiny runs with this tree's own vae-ebm, so that the checkpoint and config seeds have the
# format the code under test writes. The first run's model is the one fuzz/checkpoint.cpp builds:
# MLP on 4x4 images, hidden 8, latent 2, energy prior with hidden 8.
train_runs_dir=""
tiny_run() {  # runs "$@", its output to the log named after --run-dir; shows the log if it fails
  local dir="" prev=""
  for a in "$@"; do [ "$prev" = "--run-dir" ] && dir="$a"; prev="$a"; done
  "$@" >"$dir.log" 2>&1 || { cat "$dir.log" >&2; echo "fuzz: seed run failed: $*" >&2; exit 1; }
}
train_tiny_runs() {
  [ -n "$train_runs_dir" ] && return
  train_runs_dir="$build_dir/fuzz-seed-runs"
  rm -rf "$train_runs_dir"; mkdir -p "$train_runs_dir"
  local data; data="$(corpus_of hdf5)/binary-4x4.h5"
  [ -f "$data" ] || make_file_seeds hdf5
  local common=(--dataset "hdf5:$data" --hidden 8 --latent 2 --batch-size 4 --eval-samples 1
                --threads 1 --blas-kernel keep)
  # The program's own exit: a leak report there is not what these runs are for.
  local run=(tiny_run env ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" "$build_dir/apps/vae-ebm" train)
  echo "fuzz: training tiny runs for the checkpoint and config seeds in $train_runs_dir" >&2
  "${run[@]}" "${common[@]}" --run-dir "$train_runs_dir/ebm" --prior ebm --energy-hidden 8 \
    --log-z-samples 16 --epochs 2 --keep-checkpoints 1
  "${run[@]}" "${common[@]}" --run-dir "$train_runs_dir/mog" --prior mog --mog-components 3 \
    --detach-posterior --lr 0.001 --max-steps 1
  "${run[@]}" "${common[@]}" --run-dir "$train_runs_dir/mcmc" --prior ebm --energy-hidden 4,4 \
    --objective long-run-mcmc --persistent --buffer-size 8 --mcmc-steps 2 --log-z-samples 16 \
    --max-steps 1
}

make_checkpoint_seeds() {
  train_tiny_runs
  local out; out="$(corpus_of checkpoint)"
  clear_seeds "$out"
  cp "$train_runs_dir/ebm/checkpoints/best.pt" "$out/ebm-hidden8-latent2.pt"
  # The same checkpoint without its SHA-256 envelope (data/archive.cpp reads both): mutations of
  # a sealed file stop at the seal check, so this one is what lets libFuzzer reach the model's
  # tensors. The payload is the largest stored entry of the outer archive's zip.
  /usr/bin/python3 - "$out/ebm-hidden8-latent2.pt" "$out/ebm-hidden8-latent2-unsealed.pt" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    names = [i for i in z.infolist() if "/data/" in i.filename]
    keys = [i.filename for i in z.infolist() if i.filename.endswith("data.pkl")]
    inner = z.read(max(names, key=lambda i: i.file_size)) if names else b""
    pickled = z.read(keys[0]) if keys else b""
if b"sealed_payload" in pickled and inner[:2] == b"PK":
    open(sys.argv[2], "wb").write(inner)
PY
  # Another model's checkpoint (a mixture prior): refused with a shape or key error.
  cp "$train_runs_dir/mog/checkpoints/best.pt" "$out/mog-hidden8-latent2.pt" 2>/dev/null ||
    cp "$(ls "$train_runs_dir"/mog/checkpoints/step-*.pt | tail -n1)" "$out/mog-hidden8-latent2.pt"
}

make_config_seeds() {
  train_tiny_runs
  local out; out="$(corpus_of config)"
  clear_seeds "$out"
  local r
  # Paths under this checkout are written relative to it, as a user's would be.
  for r in ebm mog mcmc; do sed "s|$here/||g" "$train_runs_dir/$r/config.ini" >"$out/$r.ini"; done
  # Boost's config-file syntax beyond key=value lines: comments, spaces around '=', a section
  # (its keys become "section.key", refused here).
  printf '%s\n' '# hand-written' 'epochs = 3' 'hidden=16,16  # trailing comment' 'prior=mog' \
    'mog-components=4' '' '[objective]' 'name=exact' >"$out/sections.ini"
}

# The report harness's input: a selector byte (0 config.ini, 1 metrics.jsonl, 2 evaluation.json)
# then the file, from the tiny runs (fuzz/report.cpp).
make_report_seeds() {
  train_tiny_runs
  local out; out="$(corpus_of report)"
  clear_seeds "$out"
  local r
  for r in ebm mog; do
    { printf '\x00'; sed "s|$here/||g" "$train_runs_dir/$r/config.ini"; } >"$out/$r-config.ini"
    { printf '\x01'; cat "$train_runs_dir/$r/metrics.jsonl"; } >"$out/$r-metrics.jsonl"
  done
  env ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" "$build_dir/apps/vae-ebm" evaluate "$train_runs_dir/ebm" --samples 2 \
    --quality-samples 0 --log-z-method is --log-z-samples 16 --threads 1 >"$train_runs_dir/ebm-evaluate.log" 2>&1 ||
    { cat "$train_runs_dir/ebm-evaluate.log" >&2; echo "fuzz: seed evaluation failed" >&2; exit 1; }
  { printf '\x02'; sed "s|$here/||g" "$train_runs_dir/ebm/evaluation.json"; } >"$out/ebm-evaluation.json"
}

make_seeds() {
  case "$1" in
    idx|hdf5) make_file_seeds "$1" ;;
    checkpoint) make_checkpoint_seeds ;;
    config) make_config_seeds ;;
    report) make_report_seeds ;;
  esac
  echo "fuzz: seed corpus $(corpus_of "$1"): $(ls "$(corpus_of "$1")" | wc -l) files" >&2
}

for t in "${targets[@]}"; do
  if [ "$make_seeds_only" = 1 ] || [ -z "$(ls -A "$(corpus_of "$t")" 2>/dev/null)" ]; then make_seeds "$t"; fi
done
[ "$make_seeds_only" = 1 ] || [ "$build_only" = 1 ] && exit 0

# ---- fuzzing ----
# Leak detection stays on where every allocation on the path is ours, Boost's or zlib's (idx,
# config). libhdf5 and LibTorch leak on malformed files by themselves (fuzz/README.md has the
# stacks): with detection on, the hdf5 and checkpoint runs stop at their first such input (and
# each one costs a scan of the whole heap), so these two run without it, in libFuzzer's check
# after each input and in ASan's at exit (fork mode's jobs exit after each run).
# FUZZ_DETECT_LEAKS=1 keeps it on for every target.
detects_leaks() {
  [ "${FUZZ_DETECT_LEAKS:-0}" = 1 ] && return 0
  case "$1" in hdf5|checkpoint) return 1 ;; *) return 0 ;; esac
}
failed=()
for t in "${targets[@]}"; do
  out="$build_dir/fuzz-out/$t"
  artifacts="$out/artifacts-$(date +%Y%m%d-%H%M%S)"
  mkdir -p "$out/corpus" "$artifacts"
  log="$out/last.log"
  echo "fuzz: $t for ${seconds}s (log $log)" >&2
  leaks=1; detects_leaks "$t" || leaks=0
  rc=0
  # shellcheck disable=SC2086
  ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=$leaks" timeout -k 30 $((seconds + 300)) \
    nice -n 19 "$build_dir/fuzz/fuzz_$t" \
    -max_total_time="$seconds" -timeout=60 -rss_limit_mb=2048 -print_final_stats=1 \
    -detect_leaks="$leaks" -artifact_prefix="$artifacts/" ${FUZZ_FLAGS:-} \
    "$out/corpus" "$(corpus_of "$t")" >"$log" 2>&1 || rc=$?
  # The input files of harness processes that crashed (a crash skips the harness's own clean-up;
  # fuzz/fuzz_support.h names them vae-ebm-fuzz-TARGET-PID[.ext]).
  for f in /dev/shm/vae-ebm-fuzz-"$t"-* /tmp/vae-ebm-fuzz-"$t"-*; do
    [ -e "$f" ] || continue
    pid="${f##*-}"; pid="${pid%%.*}"
    kill -0 "$pid" 2>/dev/null || rm -rf "$f"  # a file, or a run directory (the report harness)
  done
  # The last status line: executions, coverage (cov), features (ft), corpus size.
  grep -E '^#[0-9]+' "$log" | tail -n 1 >&2 || true
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" >&2 || true
  found="$(find "$artifacts" -type f | sort)"
  if [ "$rc" -ne 0 ] || [ -n "$found" ]; then
    tail -n 80 "$log" >&2
    echo "fuzz: $t FAILED (exit $rc); input(s) saved:" >&2
    if [ -n "$found" ]; then echo "$found" | sed 's/^/  /' >&2; else echo "  (none: see $log)" >&2; fi
    echo "fuzz: reproduce with ASAN_OPTIONS=$ASAN_OPTIONS:detect_leaks=$leaks $build_dir/fuzz/fuzz_$t INPUT" >&2
    failed+=("$t")
  else
    rmdir "$artifacts"
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${targets[*]}: no crash in ${seconds}s each" >&2
