#!/usr/bin/env python3
"""Sample-quality scores of the runs of a directory as a Markdown table, one line per run and
sampler (energy rows evaluated with --sampler all have one per sampler; others the one they
were scored with). Reads each row's evaluation.json, or evaluation-is.json where the table
scripts kept the scored evaluation under that name.

    bench/quality_table.py OUT_DIR ROW [ROW ...]"""
import json
import os
import sys


def scored(out, name):
    for file in ("evaluation.json", "evaluation-is.json"):
        path = os.path.join(out, name, file)
        if os.path.exists(path):
            record = json.load(open(path))
            if record.get("sample_quality"):
                return record
    return None


def main():
    out, rows = sys.argv[1], sys.argv[2:]
    print("| row | sampler | Fréchet distance | KID (mean ± sd over subsets) | precision | recall | density | coverage |"
          " s per 10,000 |")
    print("|---|---|---|---|---|---|---|---|---|")
    sha = None
    for name in rows:
        record = scored(out, name)
        if not record:
            continue
        by_sampler = record.get("sample_quality_by_sampler") or {
            record["sample_quality"].get("sampler", {}).get("sampler", "-"): record["sample_quality"]}
        for sampler, q in by_sampler.items():
            sha = q.get("feature_network_sha256", sha)
            fd, kid, p = q["frechet_distance"], q["kid"], q["prdc"]
            seconds = q.get("sampler_seconds_per_10000")
            print(f"| {name} | {sampler} | {fd['value']:.2f} | {kid['value']:.3f} ± {kid['std']:.3f} | "
                  f"{p['precision']:.3f} | {p['recall']:.3f} | {p['density']:.3f} | {p['coverage']:.3f} | "
                  f"{'-' if seconds is None else f'{seconds:.1f}'} |")
    if sha:
        print(f"\nFeature network SHA-256: `{sha}`")


if __name__ == "__main__":
    main()
