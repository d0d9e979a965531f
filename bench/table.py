#!/usr/bin/env python3
"""Collects evaluation.json of each run in a directory into a Markdown table."""
import json
import os
import sys

out = sys.argv[1]
rows = ["vae", "vae-mog", "vae-ebm-posthoc", "vae-ebm-snelbo", "vae-ebm-detached"]
paper = {"vae": "-89.10", "vae-mog": "-88.73", "vae-ebm-posthoc": "-88.11", "vae-ebm-snelbo": "-87.09",
         "vae-ebm-detached": "n/a"}
timings = {}
if os.path.exists(os.path.join(out, "timings.txt")):
    for line in open(os.path.join(out, "timings.txt")):
        name, t = line.split()
        timings[name] = int(t.split("=")[1])

print("| row | test bound (nats) | ± s.e. | IW bound | ± s.e. | log Z (IS) ± s.e. [ESS] | b | train s | SNL paper |")
print("|---|---|---|---|---|---|---|---|---|")
for name in rows:
    path = os.path.join(out, name, "evaluation.json")
    if not os.path.exists(path):
        continue
    ev = json.load(open(path))
    est = {e["estimator"].split("_")[0]: e for e in ev["estimates"]}
    bound = est.get("SNELBO") or est.get("ELBO")
    iw = est.get("SN-IWAE") or est.get("IWAE")
    lz = ev.get("log_z")
    lz_text = f"{lz['value']:.3f} ± {lz['std_error']:.3f} [{lz['ess']:.0f}/{lz['count']}]" if lz else "exact"
    b = f"{ev['b']:.3f}" if "b" in ev else ""
    print(f"| {name} | {bound['estimator']} {bound['value']:.2f} | {bound['std_error']:.2f} | "
          f"{iw['estimator']} {iw['value']:.2f} | {iw['std_error']:.2f} | {lz_text} | {b} | "
          f"{timings.get(name, '')} | {paper[name]} |")
