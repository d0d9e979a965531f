#!/usr/bin/env python3
"""Sample-quality scores of the runs of a directory as a Markdown table.

    bench/quality_table.py OUT_DIR ROW [ROW ...]"""
import json
import os
import sys


def main():
    out, rows = sys.argv[1], sys.argv[2:]
    print("| row | Fréchet distance | KID (mean ± sd over subsets) | precision | recall | density | coverage |")
    print("|---|---|---|---|---|---|---|")
    sha = None
    for name in rows:
        path = os.path.join(out, name, "evaluation.json")
        if not os.path.exists(path):
            continue
        q = json.load(open(path)).get("sample_quality")
        if not q:
            continue
        sha = q.get("feature_network_sha256", sha)
        fd, kid, p = q["frechet_distance"], q["kid"], q["prdc"]
        print(f"| {name} | {fd['value']:.2f} | {kid['value']:.3f} ± {kid['std']:.3f} | {p['precision']:.3f} | "
              f"{p['recall']:.3f} | {p['density']:.3f} | {p['coverage']:.3f} |")
    if sha:
        print(f"\nFeature network SHA-256: `{sha}`")


if __name__ == "__main__":
    main()
