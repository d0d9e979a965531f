#!/usr/bin/env python3
"""The table of bench/sampler_table.sh: one line per row and sampler, from each
OUT/ROW/quality/evaluation.json (sample_quality_by_sampler, or the exact prior's sample_quality),
then, for the rows that have OUT/ROW/bounds/evaluation.json (evaluate --samples 20 on the whole
test set), their bounds with standard errors and log Z with its ESS.
Usage: bench/sampler_table.py OUT_DIR"""
import json
import os
import sys


def main(out):
    print("| row | sampler | FD | KID | precision | recall | density | coverage | classifier score |"
          " s per 10,000 | diagnostic |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in sorted(os.listdir(out)):
        base = os.path.join(out, row)
        if not os.path.isdir(base):
            continue
        path = os.path.join(base, "quality", "evaluation.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            record = json.load(f)
        by_sampler = record.get("sample_quality_by_sampler")
        if not by_sampler:
            by_sampler = {"exact": record["sample_quality"]} if "sample_quality" in record else {}
        for name, q in by_sampler.items():
            s = q.get("sampler", {})
            diagnostic = ""
            if "acceptance" in s:
                diagnostic = "acceptance %.3f" % s["acceptance"]
            elif "resampling_ess_fraction" in s:
                diagnostic = "resampling ESS %.1f%%" % (100 * s["resampling_ess_fraction"])
            p = q["prdc"]
            score = q.get("classifier_score", {}).get("value", float("nan"))
            print("| %s | %s | %.1f | %.1f | %.3f | %.3f | %.3f | %.3f | %.2f | %.1f | %s |" % (
                row, name, q["frechet_distance"]["value"], q["kid"]["value"],
                p["precision"], p["recall"], p["density"], p["coverage"], score,
                q.get("sampler_seconds_per_10000", float("nan")), diagnostic))

    bounds = []
    for row in sorted(os.listdir(out)):
        path = os.path.join(out, row, "bounds", "evaluation.json")
        if os.path.isfile(path):
            with open(path) as f:
                bounds.append((row, json.load(f)))
    if not bounds:
        return
    print()
    print("| row | test images | bound | value ± s.e. (nats) | log Z ± s.e. | log Z ESS | log Z estimator |")
    print("|---|---:|---|---:|---:|---:|---|")
    for row, record in bounds:
        z = record.get("log_z") or {}
        z_text = "%.3f ± %.3f" % (z["value"], z["std_error"]) if z else "exact (0)"
        ess = "%.0f of %d" % (z["ess"], z["count"]) if z else ""
        for e in record["estimates"]:
            if e.get("units") != "nats" or "ELBO" not in e["estimator"] and "IWAE" not in e["estimator"]:
                continue
            print("| %s | %d | %s | %.2f ± %.2f | %s | %s | %s |" % (
                row, record["images"], e["estimator"], e["value"], e["std_error"], z_text, ess,
                z.get("estimator", "")))


if __name__ == "__main__":
    main(sys.argv[1])
