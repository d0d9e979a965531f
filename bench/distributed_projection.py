#!/usr/bin/env python3
"""Projects data-parallel training to 8 and 64 ranks from what bench/distributed.sh measured.

    bench/distributed_projection.py OUT_DIR

Reads OUT_DIR/runs.txt (step times: one process with one thread at batch 128, 64, 16 and 2;
the 2-rank runs' time in collectives) and OUT_DIR/allreduce.txt (bench_allreduce on 2 local
ranks), writes OUT_DIR/measured.json (the inputs) and OUT_DIR/projection.md.

The model (the assumptions are printed into projection.md as well):
- one rank per core, each as fast as one core here; the ranks on a ring whose every hop
  crosses the network (the worst placement);
- a step is the rank's compute, then the collectives, not overlapped (the trainer all-reduces
  after the backward pass): T(W) = t1(b) + c + t_ring(n, W) + k * t_small(W), where
  t1(b) is one process's step with one thread at the rank's batch b (measured),
  c the copy of the gradients into the flat bucket and back (measured on loopback: the
  per-parameter all-reduce less the flat one of the same size),
  t_ring(n, W) = 2 (W-1)/W * 4n / beta + 2 (W-1) alpha (Gloo's ring all-reduce: a reduce-scatter
  and an all-gather of W-1 steps each), n the gradient's floats,
  t_small(W) = 2 (W-1) alpha, for each of k small collectives a step (the loss's all-reduce, the
  time and stop flag's, and SNELBO's log-sum-exp all-gather).
- strong scaling: global batch 128, b = 128 / W (measured at 128, 64, 16, 2 for W = 1, 2, 8, 64);
  weak scaling: b = 128 on every rank, global batch 128 W.
- beta and alpha: loopback as fitted to the sweep here (2 ranks, one machine); for networks,
  line rate and alpha = 50 us a message (TCP through one switch; Gloo reaches less than line
  rate in practice, so the network rows are optimistic for the communication).
"""
import json
import os
import sys

NETWORKS = [("10 Gb/s", 10e9 / 8, 50e-6), ("25 Gb/s", 25e9 / 8, 50e-6), ("100 Gb/s", 100e9 / 8, 50e-6)]
SMALL = {"gaussian": 2, "snelbo": 3, "mcmc": 2}
BATCH_OF = {1: 128, 2: 64, 8: 16, 64: 2}


def ring(n, w, beta, alpha):
    return 2 * (w - 1) / w * 4 * n / beta + 2 * (w - 1) * alpha


def main():
    out = sys.argv[1]
    runs = {}
    for line in open(os.path.join(out, "runs.txt")):
        net, obj, layout, batch, steps, train, coll = line.split()
        runs[(net, obj, layout, int(batch))] = (float(train) / int(steps), float(coll) / int(steps))
    ar = {}
    for line in open(os.path.join(out, "allreduce.txt")):
        parts = line.split()
        if len(parts) == 2:
            try:
                ar[parts[0]] = float(parts[1])
            except ValueError:
                ar[parts[0]] = parts[1]
    # Loopback: alpha from one float (t = 2 alpha at W = 2), beta from the slope of the sweep's
    # large sizes (t = 4n / beta + 2 alpha at W = 2), least squares on medians.
    alpha = ar["sweep_1_ms_median"] / 1e3 / 2
    pts = [(n, ar[f"sweep_{n}_ms_median"] / 1e3) for n in (100000, 1000000, 4000000) if f"sweep_{n}_ms_median" in ar]
    mx = sum(n for n, _ in pts) / len(pts)
    my = sum(t for _, t in pts) / len(pts)
    slope = sum((n - mx) * (t - my) for n, t in pts) / sum((n - mx) ** 2 for n, _ in pts)
    beta = 4 / slope
    nets = [("loopback (here)", beta, alpha)] + NETWORKS
    measured = {"loopback_alpha_s": alpha, "loopback_beta_bytes_per_s": beta, "allreduce": ar,
                "step_seconds": {" ".join(map(str, k)): v for k, v in runs.items()}}
    rows = []
    lines = []
    for net in ("mlp", "conv"):
        for obj in ("gaussian", "snelbo", "mcmc"):
            if (net, obj, "1x1", 128) not in runs:
                continue
            prior = "gaussian" if obj == "gaussian" else "ebm"
            n = ar[f"{net}_{prior}_floats"]
            copy = max(0.0, (ar[f"{net}_{prior}_ms_median"] - ar[f"{net}_{prior}_flat_ms_median"]) / 1e3)
            t1 = {w: runs[(net, obj, "1x1", b)][0] for w, b in BATCH_OF.items() if (net, obj, "1x1", b) in runs}
            measured_2 = runs.get((net, obj, "2x1", 128))

            def step(w, b_time, beta, alpha):
                comm = copy + ring(n, w, beta, alpha) + SMALL[obj] * 2 * (w - 1) * alpha
                return b_time + comm, comm
            proj = {}
            for name, b, a in nets:
                for w in (2, 8, 64):
                    if w in t1:
                        proj[(name, "strong", w)] = step(w, t1[w], b, a)
                    proj[(name, "weak", w)] = step(w, t1[1], b, a)
            rows.append((net, obj, n, copy, t1, measured_2, proj))
    measured["projection"] = {f"{r[0]} {r[1]} {k[0]} {k[1]} W={k[2]}": v for r in rows for k, v in r[6].items()}
    json.dump(measured, open(os.path.join(out, "measured.json"), "w"), indent=1, sort_keys=True)

    lines.append(f"Loopback, 2 ranks (fitted to bench_allreduce's sweep): alpha = {1e6 * alpha:.0f} us a message, "
                 f"beta = {8 * beta / 1e9:.1f} Gb/s ({beta / 1e9:.2f} GB/s).\n")
    lines.append("Check of the model at W = 2 on loopback (global batch 128): measured 2 ranks x 1 thread against "
                 "the model's t1(64) + collectives.\n")
    lines.append("| network | objective | gradient (M floats) | copy c (ms) | measured step, 2x1 (ms) | of which collectives (ms) | model (ms) | of which collectives (ms) |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for net, obj, n, copy, t1, m2, proj in rows:
        p = proj.get(("loopback (here)", "strong", 2))
        ms = f"{1e3 * m2[0]:.1f} | {1e3 * m2[1]:.1f}" if m2 else "- | -"
        ps = f"{1e3 * p[0]:.1f} | {1e3 * p[1]:.1f}" if p else "- | -"
        lines.append(f"| {net} | {obj} | {n / 1e6:.2f} | {1e3 * copy:.2f} | {ms} | {ps} |")
    for mode, title in (("strong", "Strong scaling: global batch 128, each rank 128 / W images (16 at W = 8, 2 at W = 64)"),
                        ("weak", "Weak scaling: 128 images on every rank (global batch 128 W)")):
        lines.append(f"\n{title}. images/s, with the speed-up over one process with one thread at batch 128 "
                     "in brackets, and the collectives' share of the step.\n")
        lines.append("| network | objective | 1 rank: images/s | link | W = 8 | share | W = 64 | share |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for net, obj, n, copy, t1, m2, proj in rows:
            base = 128 / t1[1]
            for i, (name, _, _) in enumerate(nets):
                cells = []
                for w in (8, 64):
                    if (name, mode, w) not in proj:
                        cells += ["-", "-"]
                        continue
                    t, comm = proj[(name, mode, w)]
                    images = (128 if mode == "strong" else 128 * w) / t
                    cells += [f"{images:.0f} ({images / base:.1f}x)", f"{100 * comm / t:.0f}%"]
                head = f"| {net} | {obj} | {base:.0f} |" if i == 0 else "| | | |"
                lines.append(f"{head} {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    open(os.path.join(out, "projection.md"), "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
