#!/usr/bin/env python3
"""Validation bound against training CPU time for a set of runs: the curve of a recipe.

    bench/curve.py RUN_DIR [RUN_DIR ...] > curve.md

For each run, one row per validation event of metrics.jsonl: training seconds (steps only,
validation excluded), epoch, the validation bound (ELBO_K or SNELBO_K with K as validated)
and, for energy priors, the log Z estimate behind it with its effective sample size (a
bound whose log Z rests on a handful of samples is optimistic). The test bound of the
run's evaluation.json closes each run's rows."""
import json
import os
import sys


def main():
    runs = sys.argv[1:]
    if not runs:
        sys.exit(__doc__)
    print("| run | train s | epoch | validation bound (nats) | log Z [ESS / S] |")
    print("|---|---|---|---|---|")
    for run in runs:
        name = os.path.basename(os.path.normpath(run))
        for line in open(os.path.join(run, "metrics.jsonl")):
            rec = json.loads(line)
            if rec.get("event") != "validation":
                continue
            lz = rec.get("log_z")
            lz_text = f"{lz['value']:.3f} [{lz.get('ess', float('nan')):.0f} / {lz['count']}]" if lz else ""
            secs = rec.get("train_seconds")
            secs_text = f"{secs:.0f}" if secs is not None else "n/a"
            v = rec["validation"]
            print(f"| {name} | {secs_text} | {rec['epoch']} | {v['estimator']} {v['value']:.2f} | {lz_text} |")
        path = os.path.join(run, "evaluation.json")
        if os.path.exists(path):
            ev = json.load(open(path))
            bound = ev["estimates"][0]
            lz = ev.get("log_z")
            lz_text = f"{lz['value']:.3f} [{lz.get('ess', float('nan')):.0f} / {lz['count']}] {lz['estimator']}" if lz else ""
            print(f"| {name} | test | | **{bound['estimator']} {bound['value']:.2f} ± {bound['std_error']:.2f}** | {lz_text} |")


if __name__ == "__main__":
    main()
