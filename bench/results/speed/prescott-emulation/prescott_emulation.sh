#!/usr/bin/env bash
# What a user sees where OpenBLAS falls back to Prescott by itself (the Intel Xeon of issue 19),
# emulated on a machine where it does not: plain PyTorch is started with OPENBLAS_CORETYPE=Prescott
# (its default there), the C++ program with the same variable unset (it then runs its own choice,
# which on that machine is the best kernel, as on this one). Alternating runs, 2 threads.
#   bench/results/speed/prescott-emulation/prescott_emulation.sh [REPEATS] > prescott_emulation.txt
set -euo pipefail
cd "$(dirname "$0")/../../../.."
repeats="${1:-2}"
for r in $(seq 1 "$repeats"); do
  for case in "--objective exact" "--objective snelbo" "--objective short-run-mcmc" \
              "--objective exact --architecture conv --batch 128"; do
    cpp=$(env -u OPENBLAS_CORETYPE build/bench/bench_train $case --threads 2 --seconds 4 --steps 3 --warmup 2 2>/dev/null)
    py=$(OPENBLAS_CORETYPE=Prescott /usr/bin/python3 bench/reference/vae_ebm_ref.py $case --threads 2 --seconds 4 --steps 3 --warmup 2 2>/dev/null)
    c=$(awk '/^train_images_per_second/ {print $2}' <<<"$cpp"); p=$(awk '/^train_images_per_second/ {print $2}' <<<"$py")
    ck=$(grep -o 'blas_kernel=[A-Za-z0-9_]*' <<<"$cpp"); pk=$(grep -o 'blas_kernel=[A-Za-z0-9_]*' <<<"$py")
    printf 'repeat %s | %-52s | C++ %s %6s img/s | Python %s %6s img/s | ratio %.2f\n' "$r" "$case" "$ck" "$c" "$pk" "$p" \
      "$(echo "$c / $p" | bc -l)"
  done
done
