#!/usr/bin/env python3
"""Collects the runs of a study directory into a Markdown table.

    bench/table.py OUT_DIR ROW [ROW ...]

Each ROW is a run directory name inside OUT_DIR holding evaluation.json and metrics.jsonl."""
import json
import os
import sys

PAPER = {"vae": "-89.10", "vae-mog": "-88.73", "vae-ebm-posthoc": "-88.11", "vae-ebm-snelbo": "-87.09"}


def num(v, digits=2):
    """JSON null (NaN or an infinity in the C++ report) prints as n/a."""
    return "n/a" if v is None else f"{v:.{digits}f}"


def method(log_z):
    """AIS (from the base or a flow) or IS (from the base or a flow), from the estimator's name."""
    name = log_z.get("estimator", "")
    if "AIS" in name:
        return "AIS from a flow" if "forward from flow" in name else "AIS"
    return "IS from a flow" if name.startswith(("IS(flow", "IS(trained flow")) else "IS"


def finished_record(run):
    path = os.path.join(run, "metrics.jsonl")
    last = None
    if not os.path.exists(path):  # a recorded study keeps it in runs.tar.xz (tar -xJf it first)
        return None
    for line in open(path):
        rec = json.loads(line)
        if rec.get("event") in ("finished", "interrupted"):
            last = rec
    return last


def config(run):
    out = {}
    for line in open(os.path.join(run, "config.ini")):
        if "=" in line and not line.startswith("#"):
            k, v = line.rstrip("\n").split("=", 1)
            out[k] = v
    return out


def main():
    out, rows = sys.argv[1], sys.argv[2:]
    print("| row | test bound (nats) ± s.e. | importance-weighted ± s.e. | log Z ± s.e. [ESS / n] | b learned / used | "
          "the bound with the second log Z estimate (evaluation-is.json, or ais/evaluation.json) [ESS / n] | train s | train images/s | SNL paper |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in rows:
        run = os.path.join(out, name)
        path = os.path.join(run, "evaluation.json")
        if not os.path.exists(path):
            continue
        ev = json.load(open(path))
        # Nats only: evaluate also records bits/dim rows under the same estimator names.
        est = {e["estimator"].split("_")[0]: e for e in ev["estimates"] if e.get("units", "nats") == "nats"}
        bound = est.get("SNELBO") or est.get("ELBO")
        iw = est.get("SN-IWAE") or est.get("IWAE")
        lz = ev.get("log_z")
        lz_text = f"{method(lz)} {num(lz['value'], 3)} ± {num(lz['std_error'], 3)} [{num(lz.get('ess'), 0)} / {lz['count']}]" if lz else "exact prior"
        is_text = ""
        is_path = os.path.join(run, "evaluation-is.json")
        if not os.path.exists(is_path):
            is_path = os.path.join(run, "ais", "evaluation.json")  # bench/mcmc_study.sh's second evaluation
        if os.path.exists(is_path):  # the same bound with log Z by the second estimator
            ev_is = json.load(open(is_path))
            bound_is = next(e for e in ev_is["estimates"]
                            if e["estimator"].startswith("SNELBO") and e.get("units", "nats") == "nats")
            lz_is = ev_is["log_z"]
            how = lz_is.get("estimator", "").split("(")[0] or "IS"
            is_text = f"{num(bound_is['value'])} (log Z {how} {num(lz_is['value'], 3)} [{num(lz_is.get('ess'), 0)} / {lz_is['count']}])"
        b = ""
        if "b" in ev:
            used = ev["b_used"]["value"] if "b_used" in ev else ev["b"]
            b = f"{num(ev['b'], 3)} / {num(used, 3)}"
        fin = finished_record(run) or {}
        cfg = config(run)
        train_s = fin.get("train_seconds", fin.get("seconds", float("nan")))  # older runs: wall time with validation
        rate = fin.get("step", 0) * int(cfg.get("batch-size", "0")) / train_s if train_s == train_s and train_s > 0 else float("nan")
        print(f"| {name} | {bound['estimator']} {num(bound['value'])} ± {num(bound['std_error'])} | "
              f"{iw['estimator']} {num(iw['value'])} ± {num(iw['std_error'])} | {lz_text} | {b} | {is_text} | "
              f"{train_s:.0f} | {rate:.0f} | {PAPER.get(name, '')} |")


if __name__ == "__main__":
    main()
