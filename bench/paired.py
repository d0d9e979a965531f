#!/usr/bin/env python3
"""Paired differences of test bounds between evaluated runs (issue 3's "gain over the VAE").

    bench/paired.py BASELINE_RUN RUN [RUN ...]

Each run directory must hold the evaluation.json and per-image evaluation-test.h5 written by
`vae-ebm evaluate`. For each RUN and each kind of bound (the K-sample bound, ELBO_K or
SNELBO_K, and the importance-weighted one, IWAE_K or SN-IWAE_K) this prints the mean over the
test images of RUN's bound minus BASELINE's, with its standard error. The images are the same,
so the error is that of the per-image differences, far smaller than either bound's own. An
energy prior's bound holds one log Z estimate fixed over the split, which shifts every image
alike: its standard error (evaluation.json) is added in quadrature. Needs h5py
(scripts/setup.sh --bench).
"""
import json
import math
import sys

import h5py
import numpy as np


def load(run):
    try:
        with open(f"{run}/evaluation.json") as f:
            meta = json.load(f)
        with h5py.File(f"{run}/evaluation-{meta['split']}.h5", "r") as f:
            arrays = {name: np.asarray(f[name], dtype=np.float64) for name in f.keys()}
    except (OSError, KeyError, ValueError) as e:
        sys.exit(f"paired.py: {run} is not an evaluated run (vae-ebm evaluate {run}): {e}")
    log_z_se = meta.get("log_z", {}).get("std_error", 0.0) or 0.0
    return meta, arrays, log_z_se


def kind(name):
    """'bound', 'importance-weighted' or None, from a per-image array's name such as SNELBO_10."""
    base = name.rpartition("_")[0]
    if base in ("ELBO", "SNELBO"):
        return "bound"
    if base in ("IWAE", "SN-IWAE"):
        return "importance-weighted"
    return None


def main(argv):
    if len(argv) < 3:
        sys.exit("usage: bench/paired.py BASELINE_RUN RUN [RUN ...]")
    base_meta, base, base_se = load(argv[1])
    base_by_kind = {kind(n): (n, a) for n, a in base.items() if kind(n)}
    print(f"baseline {argv[1]}: {base_meta['images']} {base_meta['split']} images")
    print("| run | bound | run - baseline (nats) | s.e. of the per-image differences | log Z s.e. (both) | total s.e. |")
    print("|---|---|---|---|---|---|")
    for run in argv[2:]:
        meta, arrays, se = load(run)
        if meta["split"] != base_meta["split"]:
            sys.exit(f"paired.py: {run} was evaluated on {meta['split']}, the baseline on {base_meta['split']}")
        for name, values in sorted(arrays.items(), key=lambda item: kind(item[0]) != "bound"):
            k = kind(name)
            if k not in base_by_kind:
                continue
            base_name, base_values = base_by_kind[k]
            if values.shape != base_values.shape:
                sys.exit(f"paired.py: {run} has {values.shape[0]} images in {name}, the baseline {base_values.shape[0]}")
            if not np.all(np.isfinite(values)) or not np.all(np.isfinite(base_values)):
                sys.exit(f"paired.py: {run}'s {name} or the baseline's {base_name} holds NaN or infinite values")
            d = values - base_values
            d_se = d.std(ddof=1) / math.sqrt(d.size)
            z_se = math.hypot(se, base_se)
            print(f"| {run} | {name} - {base_name} | {d.mean():+.3f} | {d_se:.3f} | {z_se:.3f} | {math.hypot(d_se, z_se):.3f} |")


if __name__ == "__main__":
    main(sys.argv)
