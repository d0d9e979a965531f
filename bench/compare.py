#!/usr/bin/python3
"""C++ (build/bench/bench_train) against the plain PyTorch reference (bench/reference/vae_ebm_ref.py)
on the same settings: MLP 784-512-512, latent 16, K = 1, batch 256, random Bernoulli(0.13)
data of MNIST's shape, for every objective, and the SNL conv networks (batch 128, K = 1 and
the paper's K = 10); then Langevin steps/s on the energy prior alone and the IWAE_1000
evaluation time.

Two kernel settings (issue 19). "same": Python is started with OPENBLAS_CORETYPE set to the
kernel the C++ program chose, so both run the same BLAS kernel: the implementations' speed.
"defaults": each as a user starts it, the C++ program choosing its kernel at start-up and
Python on whatever OpenBLAS picks by itself. Where the two coincide (OpenBLAS's own detection
already picks the best kernel), the defaults are not run again and the report says so. Every
run records the OpenBLAS core name it ran on.

C++ and Python runs alternate (which one goes first alternates too), so both see the same
contention on a shared machine; each run is its own process. For every objective, thread
count and repeat the ratio C++/Python of images/s is taken between the two adjacent runs;
the table gives min/median/max over repeats. Each implementation is also given its best
thread count (by median) and compared best against best.

  bench/compare.py [--repeats 3] [--seconds 4] [--threads 1,2] [--objectives all]
                   [--eval-images 500] [--full-eval] [--out bench/results/speed/compare/compare-DATE.md]

Writes the report (Markdown, with the command, date, machine and versions) and the raw runs
(JSON) to bench/results/speed/compare/, and prints the report.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def relative(text):
    """Commands and process lines as recorded: paths relative to the repository root."""
    return text.replace(ROOT + "/", "").replace(ROOT, ".")

CASES = {  # name: flags common to both implementations
    "exact": ["--objective", "exact"],
    "snelbo": ["--objective", "snelbo"],
    "short-run-mcmc": ["--objective", "short-run-mcmc"],
    "long-run-mcmc": ["--objective", "long-run-mcmc"],
    "long-run-mcmc-persistent": ["--objective", "long-run-mcmc", "--persistent"],
    "nce": ["--objective", "nce"],
    "conv": ["--objective", "exact", "--architecture", "conv", "--batch", "128"],
    "conv-k10": ["--objective", "exact", "--architecture", "conv", "--batch", "128", "--samples", "10"],
}


def parse_kv(text):
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*) (-?[0-9.eE+-]+|nan|inf)\b", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def run(cmd, env=None):
    t0 = time.time()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if p.returncode != 0:
        sys.stderr.write(f"compare: FAILED ({p.returncode}): {shlex.join(cmd)}\n{p.stderr[-2000:]}\n")
        return None
    kv = parse_kv(p.stdout)
    kv["wall_seconds"] = time.time() - t0
    m = re.search(r"^blas_kernel=(\S+)", p.stdout, re.M)
    kv["blas_kernel"] = m.group(1) if m else "unknown"
    return kv


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip()
    except OSError:
        return ""


def machine_info(python):
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = sh("awk '/MemTotal/ {printf \"%.1f GB\", $2/1048576}' /proc/meminfo")
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "nproc": sh("nproc"),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "libtorch": sh("dpkg-query -W -f='${Version}' libtorch1.13 2>/dev/null || dpkg-query -W -f='${Version}' libtorch-dev"),
        "python_torch": sh(f"{python} -c 'import torch; print(torch.__version__)'"),
        "python": sh(f"{python} --version"),
        "openblas": sh("dpkg-query -W -f='${Version}' libopenblas0-pthread"),
        "git_commit": sh(f"git -C {shlex.quote(ROOT)} rev-parse --short HEAD") + (
            " (dirty tree)" if sh(f"git -C {shlex.quote(ROOT)} status --porcelain --untracked-files=no") else ""),
    }


def cpu_ticks(pid):
    """utime + stime of a process in clock ticks, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def busy_processes(limit=5, window=1.0):
    """Other processes using CPU now (the machine may be shared), measured over `window`
    seconds from /proc (ps's %cpu is an average over each process's life), and processes
    that are stopped (SIGSTOP, e.g. paused for the benchmark), listed as such."""
    me = os.getpid()
    rows = []
    for line in sh("ps -eo pid,stat,args --no-headers").splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and int(parts[0]) != me:
            rows.append((int(parts[0]), parts[1], parts[2]))
    before = {pid: cpu_ticks(pid) for pid, _, _ in rows}
    time.sleep(window)
    hz = os.sysconf("SC_CLK_TCK")
    busy, stopped = [], []
    for pid, stat, args in rows:
        if stat.startswith("T"):
            if before[pid] is not None and before[pid] > 0:
                stopped.append(f"stopped: {relative(args)[:110]}")
            continue
        after = cpu_ticks(pid)
        if before[pid] is None or after is None:
            continue
        pct = 100.0 * (after - before[pid]) / hz / window
        if pct >= 10:
            busy.append((pct, f"{pct:.0f}% cpu: {relative(args)[:110]}"))
    busy.sort(reverse=True)
    return [b for _, b in busy[:limit]] + stopped[:limit]


def spread(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    fmt = (lambda x: f"{x:.0f}") if max(abs(x) for x in xs) >= 100 else (lambda x: f"{x:.3g}")
    return f"{fmt(min(xs))} / {fmt(statistics.median(xs))} / {fmt(max(xs))}"


def percent(xs):
    """min / median / max of fractions, as percentages."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return "n/a"
    return f"{100 * min(xs):.0f}% / {100 * statistics.median(xs):.0f}% / {100 * max(xs):.0f}%"


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=4.0, help="measured seconds per run (after warm-up)")
    p.add_argument("--threads", default="1,2", help="OpenBLAS thread counts to try (LibTorch's pool stays at 1)")
    p.add_argument("--objectives", default="all", help="comma-separated subset of: " + ", ".join(CASES))
    p.add_argument("--langevin-repeats", type=int, default=3)
    p.add_argument("--eval-images", type=int, default=500, help="images of the IWAE_1000 comparison (0: skip)")
    p.add_argument("--full-eval", action="store_true", help="also time the C++ IWAE_1000 on 10,000 images once")
    p.add_argument("--build-dir", default=os.environ.get("BUILD_DIR", os.path.join(ROOT, "build")))
    p.add_argument("--python", default="/usr/bin/python3", help="interpreter with Debian's python3-torch")
    p.add_argument("--out", default="")
    a = p.parse_args()

    threads = [int(t) for t in a.threads.split(",")]
    cases = list(CASES) if a.objectives == "all" else a.objectives.split(",")
    for c in cases:
        if c not in CASES:
            p.error(f"unknown objective case {c} (valid: {', '.join(CASES)})")
    cpp = os.path.join(a.build_dir, "bench", "bench_train")
    cpp_langevin = os.path.join(a.build_dir, "bench", "bench_langevin")
    cpp_eval = os.path.join(a.build_dir, "bench", "bench_eval")
    ref = [a.python, os.path.join(HERE, "reference", "vae_ebm_ref.py")]
    for exe in (cpp, cpp_langevin, cpp_eval, os.path.join(a.build_dir, "bench", "bench_ops")):
        if not os.access(exe, os.X_OK):
            p.error(f"{exe} not found: build it (ninja -C {a.build_dir} bench/bench_train bench/bench_langevin bench/bench_eval bench/bench_ops)")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = a.out or os.path.join(HERE, "results", "speed", "compare", f"compare-{stamp}.md")
    command = shlex.join([sys.argv[0]] + sys.argv[1:])
    info = machine_info(a.python)
    info["load_start"] = os.getloadavg()
    info["busy_start"] = busy_processes()
    # Neither implementation may pick up other thread settings from the environment.
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(k, None)
    common = ["--seconds", str(a.seconds), "--warmup", "2", "--steps", "3"]

    # The kernels: the C++ program's choice, and Python's own.
    def kernel_of(cmd, environment):
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=environment)
        m = re.search(r"^blas_kernel=(\S+)", p.stdout, re.M)
        return m.group(1) if m else "unknown"
    cpp_kernel = kernel_of([cpp, "--steps", "1", "--warmup", "0", "--skip-matmul", "--data-images", "256"], env)
    py_kernel = kernel_of(ref + ["--kernel-only"], env)
    env_same = dict(env)
    if cpp_kernel not in ("unknown", "none"):
        env_same["OPENBLAS_CORETYPE"] = cpp_kernel
    modes = {"same": env_same}
    if py_kernel != cpp_kernel:
        modes["defaults"] = env
    info["cpp_kernel"], info["python_kernel_by_default"] = cpp_kernel, py_kernel
    info["openblas_coretype_in_environment"] = os.environ.get("OPENBLAS_CORETYPE", "(unset)")

    runs = []  # dicts: impl, mode, case, threads, repeat, metrics
    t_start = time.time()
    for r in range(a.repeats):
        for ci, case in enumerate(cases):
            for t in threads:
                # The C++ program runs alike in both modes; only Python's kernel differs.
                jobs = [("cpp", "same")] + [("py", mode) for mode in modes]
                shift = (r + ci + t) % len(jobs)
                for impl, mode in jobs[shift:] + jobs[:shift]:  # who goes first rotates
                    flags = CASES[case] + common + ["--threads", str(t)]
                    cmd = {"cpp": [cpp] + flags, "py": ref + flags}[impl]
                    m = run(cmd, modes[mode])
                    prefix = "OPENBLAS_CORETYPE=" + modes[mode]["OPENBLAS_CORETYPE"] + " " if (
                        impl == "py" and "OPENBLAS_CORETYPE" in modes[mode]) else ""
                    runs.append({"impl": impl, "mode": mode, "case": case, "threads": t, "repeat": r, "metrics": m,
                                 "command": prefix + relative(shlex.join(cmd))})
                    ips = m.get("train_images_per_second") if m else None
                    sys.stderr.write(f"[{time.time() - t_start:6.0f}s] r{r} {case:26s} t{t} {impl:3s} {mode:8s} "
                                     f"{m.get('blas_kernel') if m else ''} {ips if ips is not None else 'FAILED'} img/s\n")

    def get(impl, case, t, key="train_images_per_second", mode="same"):
        """Per repeat (list indexed by repeat) of one metric."""
        if impl == "cpp":
            mode = "same"
        if mode not in modes:
            mode = "same"
        out = [None] * a.repeats
        for x in runs:
            if (x["impl"], x["mode"], x["case"], x["threads"], x["repeat"]) == (impl, mode, case, t, x["repeat"]) \
                    and x["metrics"]:
                out[x["repeat"]] = x["metrics"].get(key)
        return out

    def kernels(impl, mode="same"):
        return ", ".join(sorted({x["metrics"]["blas_kernel"] for x in runs
                                 if x["impl"] == impl and x["mode"] == mode and x["metrics"]})) or "n/a"

    def ratios(c_list, p_list):
        return [c / q if c is not None and q else None for c, q in zip(c_list, p_list)]

    def normalised(impl, case, t):
        ips, mm = get(impl, case, t), get(impl, case, t, "matmul_gflops")
        return [i / m if i is not None and m else None for i, m in zip(ips, mm)]

    best = {}
    for case in cases:
        for impl in ("cpp", "py"):
            best[(impl, case)] = max(threads, key=lambda t: med(get(impl, case, t)))
        best[("py-defaults", case)] = max(threads, key=lambda t: med(get("py", case, t, mode="defaults")))

    # Langevin steps/s: the library (hand gradient, split chains; one group; autograd), the Python loop.
    lang = []
    lt = best.get(("cpp", "short-run-mcmc"), threads[0]) if "short-run-mcmc" in cases else threads[0]
    lt_py = best.get(("py", "short-run-mcmc"), threads[0]) if "short-run-mcmc" in cases else threads[0]
    for r in range(a.langevin_repeats):
        for settings in (["--mcmc-steps", "60", "--mcmc-step-size", "0.4"], ["--mcmc-steps", "200", "--mcmc-step-size", "0.1"]):
            steps, size = settings[1], settings[3]
            cc = [cpp_langevin, "--chains", "256", "--steps", steps, "--step-size", size, "--threads", str(lt), "--seconds", "1.5"]
            pc = ref + ["--langevin", "--chains", "256"] + settings + ["--threads", str(lt_py), "--seconds", "1.5"]
            for impl, cmd in (("cpp", cc), ("py", pc)) if r % 2 == 0 else (("py", pc), ("cpp", cc)):
                lang.append({"impl": impl, "steps": int(steps), "repeat": r, "metrics": run(cmd, modes["same"]), "command": relative(shlex.join(cmd))})
        sys.stderr.write(f"[{time.time() - t_start:6.0f}s] langevin repeat {r} done\n")

    # IWAE_1000 on --eval-images images (untrained model, chunks as estimators/bounds.cpp).
    evals = []
    if a.eval_images > 0:
        for r in range(2):
            cc = [cpp_eval, "--images", str(a.eval_images), "--samples", "1000", "--threads", str(best.get(("cpp", "exact"), 1))]
            pc = ref + ["--eval", "--images", str(a.eval_images), "--eval-samples", "1000", "--threads",
                        str(best.get(("py", "exact"), 1))]
            for impl, cmd in (("cpp", cc), ("py", pc)) if r % 2 == 0 else (("py", pc), ("cpp", cc)):
                evals.append({"impl": impl, "repeat": r, "metrics": run(cmd, modes["same"]), "command": relative(shlex.join(cmd))})
            sys.stderr.write(f"[{time.time() - t_start:6.0f}s] eval repeat {r} done\n")
    ops = []
    for r in range(a.langevin_repeats):
        cmd = [os.path.join(a.build_dir, "bench", "bench_ops"), "--threads", str(max(threads))]
        ops.append({"repeat": r, "metrics": run(cmd, env), "command": relative(shlex.join(cmd))})
    full_eval = None
    if a.full_eval:
        cc = [cpp_eval, "--images", "10000", "--samples", "1000", "--threads", str(best.get(("cpp", "exact"), 1))]
        full_eval = {"metrics": run(cc, env), "command": relative(shlex.join(cc))}

    info["load_end"] = os.getloadavg()
    info["busy_end"] = busy_processes()
    info["elapsed_seconds"] = round(time.time() - t_start)

    # ---- Report.
    L = []
    L.append(f"# C++ vs plain PyTorch throughput ({info['date']})\n")
    L.append(f"Command: `{command}` (from the repository root)\n")
    L.append("| | |\n|---|---|")
    for k in ("date", "host", "nproc", "cpu", "memory", "kernel", "libtorch", "python_torch", "python", "openblas", "git_commit",
              "cpp_kernel", "python_kernel_by_default", "openblas_coretype_in_environment"):
        L.append(f"| {k} | {info[k]} |")
    L.append(f"| load average (1/5/15 min) at start | {' / '.join(f'{x:.2f}' for x in info['load_start'])} |")
    L.append(f"| load average at end | {' / '.join(f'{x:.2f}' for x in info['load_end'])} |")
    L.append(f"| elapsed | {info['elapsed_seconds']} s |")
    L.append("")
    if any(not b.startswith("stopped") for b in info["busy_start"] + info["busy_end"]):
        L.append("**The machine was shared**: other processes used CPU during the runs, so absolute figures are "
                 "contended; C++ and Python runs alternate so that both see the same contention. Busy at start:")
        L += [f"- {b}" for b in info["busy_start"]]
        L.append("\nBusy at end:")
        L += [f"- {b}" for b in info["busy_end"]]
        L.append("")
    elif info["busy_start"] or info["busy_end"]:
        L.append("Other jobs were stopped (SIGSTOP) for the run; none used CPU. At start:")
        L += [f"- {b}" for b in info["busy_start"]]
        L.append("\nAt end:")
        L += [f"- {b}" for b in info["busy_end"]]
        L.append("")
    L.append(f"Settings: MLP 784-512-512, latent 16, K = 1, batch 256, Adam (betas 0.5/0.999), random Bernoulli(0.13) "
             f"data of shape [10240, 784]; energy 16-200-200-200-1 LeakyReLU 0.2; short-run 60 Langevin steps of 0.4, "
             f"long-run 200 of 0.1, 256 chains; persistent buffer 10,000, 5% re-drawn. LibTorch's OpenMP pool 1 "
             f"thread, OpenBLAS N threads, in both. {a.repeats} repeats x {a.seconds:g} s measured per run after 2 "
             f"warm-up steps. Spread = min / median / max over repeats.\n")

    L.append("Conv cases: the SNL reference networks (vae/networks.cpp), batch 128, Gaussian prior, K = 1 "
             "(`conv`) and K = 10 (`conv-k10`).\n")
    L.append("## Training images per second, each implementation at its best thread count\n")
    L.append(f"Kernels: C++ {kernels('cpp')}; Python on the same kernel {kernels('py')}" +
             (f"; Python on its defaults {kernels('py', 'defaults')}." if "defaults" in modes else
              f". Python's own OpenBLAS choice is {py_kernel}, the same kernel, so the defaults column repeats "
              "the same-kernel one (not run twice).") + "\n")
    L.append("| case | C++ img/s (min/med/max) | threads | Python img/s, same kernel (min/med/max) | threads | **ratio, same kernel** (min/med/max) | ratio normalised by each run's matmul rate (median) | Python img/s, defaults | threads | **ratio, defaults** (min/med/max) |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for case in cases:
        tc, tp, td = best[("cpp", case)], best[("py", case)], best[("py-defaults", case)]
        c, q, d = get("cpp", case, tc), get("py", case, tp), get("py", case, td, mode="defaults")
        rn = ratios(normalised("cpp", case, tc), normalised("py", case, tp))
        L.append(f"| {case} | {spread(c)} | {tc} | {spread(q)} | {tp} | {spread(ratios(c, q))} | {med(rn):.3g} | "
                 f"{spread(d)} | {td} | {spread(ratios(c, d))} |")
    L.append("")
    for t in threads:
        L.append(f"## OpenBLAS threads = {t}\n")
        L.append("| case (same kernel) | C++ img/s | Python img/s | ratio C++/Python (min/med/max) | C++ step GFLOP/s (med) | C++ matmul GFLOP/s (med) | C++ step / matmul (min/med/max) | Python step GFLOP/s (med) | Python matmul GFLOP/s (med) | Python step / matmul (min/med/max) | peak RSS MB C++ / Python |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for case in cases:
            c, q = get("cpp", case, t), get("py", case, t)
            L.append(f"| {case} | {spread(c)} | {spread(q)} | {spread(ratios(c, q))} | "
                     f"{med(get('cpp', case, t, 'train_step_gflops')):.1f} | {med(get('cpp', case, t, 'matmul_gflops')):.1f} | "
                     f"{percent(get('cpp', case, t, 'train_step_fraction_of_matmul'))} | "
                     f"{med(get('py', case, t, 'train_step_gflops')):.1f} | {med(get('py', case, t, 'matmul_gflops')):.1f} | "
                     f"{percent(get('py', case, t, 'train_step_fraction_of_matmul'))} | "
                     f"{med(get('cpp', case, t, 'peak_rss_mb')):.0f} / {med(get('py', case, t, 'peak_rss_mb')):.0f} |")
        L.append("")
    L.append("Step GFLOP/s counts only the matrix products of a step (forward, weight and input gradients; "
             "elementwise work not counted), divided by the mean step time. The matmul rate is that of "
             "[256,784]x[784,512], measured in the same process in blocks of 6 products after every 4 steps; "
             "step / matmul is the median over those blocks of the block's step rate over its product rate "
             "(each repeat gives one median; the column spreads them).\n")

    L.append(f"## Langevin on the energy prior alone (256 chains; C++ threads {lt}, Python threads {lt_py})\n")
    L.append("| steps x size | C++ library steps/s (hand gradient, chains split over the threads) | C++ one group of chains | C++ generic autograd sampler | Python autograd loop steps/s | library/Python (min/med/max) | C++ matmul-only floor steps/s, one group (med) |")
    L.append("|---|---|---|---|---|---|---|")
    for steps in (60, 200):
        def lget(impl, key):
            out = [None] * a.langevin_repeats
            for x in lang:
                if x["impl"] == impl and x["steps"] == steps and x["metrics"]:
                    out[x["repeat"]] = x["metrics"].get(key)
            return out
        lib, py = lget("cpp", "langevin_steps_per_second"), lget("py", "langevin_steps_per_second")
        floor = [1e6 / u if u else None for u in lget("cpp", "matmul_floor_us_per_step")]
        L.append(f"| {steps} x {0.4 if steps == 60 else 0.1} | {spread(lib)} | "
                 f"{spread(lget('cpp', 'langevin_one_group_steps_per_second'))} | "
                 f"{spread(lget('cpp', 'langevin_autograd_steps_per_second'))} | {spread(py)} | "
                 f"{spread(ratios(lib, py))} | {med(floor):.0f} |")
    checks = [x["metrics"] for x in lang if x["impl"] == "cpp" and x["metrics"]]
    if checks:
        L.append(f"\nChecks (bench_langevin): hand-derived gradient vs autograd in float64, max relative error "
                 f"{max(c.get('check_grad_vs_autograd_float64_rel', float('nan')) for c in checks):.2g}; vs central "
                 f"finite differences {max(c.get('check_grad_vs_finite_diff_float64_rel', float('nan')) for c in checks):.2g}; "
                 f"chains (same generator, float32, max abs difference): hand gradient vs autograd "
                 f"{max(c.get('check_chains_hand_vs_autograd_float32_max_abs', float('nan')) for c in checks):.2g}, "
                 f"split vs one group {max(c.get('check_chains_split_vs_one_group_float32_max_abs', float('nan')) for c in checks):.2g}.\n")

    if evals:
        L.append(f"## IWAE_1000 evaluation, {a.eval_images} images (untrained model, 5 images x 1000 samples per chunk)\n")
        L.append("| | seconds (per repeat) | images/s | extrapolated to 10,000 images | peak RSS MB |")
        L.append("|---|---|---|---|---|")
        for impl, label in (("cpp", "C++ evaluate_bounds"), ("py", "Python loop")):
            ms = [x["metrics"] for x in evals if x["impl"] == impl and x["metrics"]]
            if ms:
                secs = [m["eval_seconds"] for m in ms]
                L.append(f"| {label} | {', '.join(f'{s:.1f}' for s in secs)} | {med([m['eval_images_per_second'] for m in ms]):.1f} | "
                         f"{med(secs) * 10000 / a.eval_images:.0f} s | {med([m['peak_rss_mb'] for m in ms]):.0f} |")
        cm = [x["metrics"] for x in evals if x["impl"] == "cpp" and x["metrics"]]
        if cm:
            m = cm[-1]
            L.append(f"\nC++ chunk breakdown (one chunk of 5 images x 1000 samples): decoder {m['chunk_decoder_seconds'] * 1e3:.1f} ms "
                     f"({m['chunk_decoder_gflops']:.0f} GFLOP/s), Bernoulli log-likelihood {m['chunk_loglik_seconds'] * 1e3:.1f} ms "
                     f"(the former BCE form {m['chunk_loglik_bce_seconds'] * 1e3:.1f} ms, einsum form "
                     f"{m['chunk_loglik_einsum_seconds'] * 1e3:.1f} ms, max difference {m['check_loglik_forms_max_abs_diff']:.2g} nats), "
                     f"encoder {m['chunk_encoder_seconds'] * 1e3:.2f} ms, sampling {m['chunk_sample_seconds'] * 1e3:.2f} ms, "
                     f"rest {m['chunk_rest_seconds'] * 1e3:.2f} ms.\n")
    om = [x["metrics"] for x in ops if x["metrics"]]
    if om:
        L.append(f"## Non-matrix-product parts of a step (bench_ops, {max(threads)} threads; min / median / max over runs)\n")
        L.append("| what | LibTorch's | the library's | speed-up | check |")
        L.append("|---|---|---|---|---|")
        col = lambda k: [m[k] * 1e3 for m in om]
        L.append(f"| Adam step, 1.35M VAE parameters, fresh gradients (ms) | {spread(col('adam_libtorch_seconds'))} | {spread(col('adam_fused_seconds'))} | "
                 f"{spread([m['adam_fused_speedup'] for m in om])} | max parameter difference after 20 steps "
                 f"{max(m['check_adam_fused_max_abs_diff_after_20_steps'] for m in om):.2g} (lr 1e-4) |")
        L.append(f"| Adam step after 300 zero-gradient steps (denormal moments) (ms) | {spread(col('adam_libtorch_zero_grads_seconds'))} | "
                 f"{spread(col('adam_fused_zero_grads_seconds'))} | "
                 f"{spread([m['adam_libtorch_zero_grads_seconds'] / m['adam_fused_zero_grads_seconds'] for m in om])} | |")
        L.append(f"| Bernoulli log-likelihood forward + backward, [256, 784] (ms) | {spread(col('loglik_bce_fwd_bwd_seconds'))} | "
                 f"{spread(col('loglik_softplus_autograd_fwd_bwd_seconds'))} (x.l - softplus by autograd) / {spread(col('loglik_library_fwd_bwd_seconds'))} (the library's: one-expression backward, rows split over the threads) | "
                 f"{spread([m['loglik_bce_fwd_bwd_seconds'] / m['loglik_library_fwd_bwd_seconds'] for m in om])} | "
                 f"values {max(m['check_loglik_max_abs_diff'] for m in om):.2g} nats, gradients {max(m['check_loglik_grad_max_abs_diff'] for m in om):.2g} |")
        L.append("")
    if full_eval and full_eval["metrics"]:
        m = full_eval["metrics"]
        L.append(f"Full C++ IWAE_1000 on 10,000 images: **{m['eval_seconds']:.1f} s** "
                 f"({m['eval_images_per_second']:.1f} images/s, peak RSS {m['peak_rss_mb']:.0f} MB); `{full_eval['command']}`\n")

    L.append("## Commands of one repeat\n")
    seen = set()
    for x in runs + lang + evals:
        key = (x["impl"], x.get("mode"), x.get("case", "langevin" if "steps" in x else "eval"), x.get("threads"),
               x.get("steps"))
        if x["repeat"] == 0 and key not in seen:
            seen.add(key)
            L.append(f"    {x['command']}")
    L.append("")
    report = "\n".join(L)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write(report)
    with open(os.path.splitext(out)[0] + ".json", "w") as f:
        json.dump({"command": command, "info": info, "runs": runs, "langevin": lang, "eval": evals,
                   "ops": ops, "full_eval": full_eval}, f, indent=1)
    print(report)
    sys.stderr.write(f"compare: wrote {out} and {os.path.splitext(out)[0]}.json\n")


if __name__ == "__main__":
    main()
