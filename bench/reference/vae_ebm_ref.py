#!/usr/bin/python3
"""Plain PyTorch reference of the vae-ebm training step, for throughput comparison.

Written the way a researcher would write it: nn.Sequential MLPs, Adam, a loop over
in-memory tensors, torch.autograd.grad for Langevin. The same networks and objectives as
the C++ library (MATH.md sections 2-4): MLP VAE 784-512-512, latent 16, K = 1, batch 256;
energy prior f: 16-200-200-200-1, LeakyReLU 0.2, no bias on the last layer, learned b.

  snelbo          E_q log p0 - E_q f - b - exp(-b) Zhat + 1, Zhat from S = batch base samples
  short-run-mcmc  E_q log p0 - E_q f + mean f(z_neg), z_neg: 60 Langevin steps of 0.4 from p0
  long-run-mcmc   the same with 200 steps of 0.1; --persistent: a buffer of 10,000 chains,
                  each step continuing 256 of them (5% re-drawn from p0 first)
  nce             logistic loss of detached posterior samples against base noise, the
                  encoder trained through E_q log p0 - E_q f - b (gradient through z only)
  exact           Gaussian prior, closed-form E_q log p0

Modes (each prints `key value` lines like build/bench/bench_train):
  vae_ebm_ref.py --objective NAME [--persistent] [--seconds S] [--threads N] ...  training
  vae_ebm_ref.py --langevin [--chains 256] [--mcmc-steps 200] [--mcmc-step-size 0.1]
  vae_ebm_ref.py --eval [--images 10000] [--eval-samples 1000]                   IWAE_K time
  --profile adds torch.profiler's table of the ops (self CPU time) on stderr.

Threads: torch.set_num_threads(1) (LibTorch's OpenMP pool) and --threads N given to
OpenBLAS by openblas_set_num_threads, found in the loaded BLAS library: the C++ policy.
Run it with Debian's interpreter (/usr/bin/python3) and python3-torch.
"""
import argparse
import ctypes
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

LOG2PI = math.log(2 * math.pi)


def set_threads(n):
    """Also prints the OpenBLAS kernel as bench_train does (`blas_kernel=NAME`): this script
    runs on whatever OpenBLAS chose, or OPENBLAS_CORETYPE says."""
    torch.set_num_threads(1)
    done, core = False, "none"
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "blas" in line}
    for path in sorted(paths):
        lib = ctypes.CDLL(path)
        if hasattr(lib, "openblas_set_num_threads"):
            lib.openblas_set_num_threads(int(n))
            done = True
        if hasattr(lib, "openblas_get_corename"):
            lib.openblas_get_corename.restype = ctypes.c_char_p
            core = lib.openblas_get_corename().decode()
    if not done:
        print("warning: openblas_set_num_threads not found; OpenBLAS threads left as they are", file=sys.stderr)
    print(f"blas_kernel={core} openblas_own={core}")


def mlp(sizes, act):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


class VAE(nn.Module):
    def __init__(self, latent=16, hidden=(512, 512)):
        super().__init__()
        self.latent = latent
        self.encoder = mlp([784, *hidden, 2 * latent], nn.ReLU)
        self.decoder = mlp([latent, *reversed(hidden), 784], nn.ReLU)

    def encode(self, x):
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        return mu, logvar


class ConvVAE(nn.Module):
    """The SNL reference networks for 28x28 images, as vae/networks.cpp builds them."""

    def __init__(self, latent=16):
        super().__init__()
        self.latent = latent
        enc_act, dec_act = (lambda: nn.LeakyReLU(0.3)), (lambda: nn.LeakyReLU(0.01))
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, 5, 2, 2), enc_act(), nn.Conv2d(32, 64, 5, 2, 2), enc_act(),
            nn.Conv2d(64, 128, 5, 2, 2), enc_act(), nn.Flatten(), nn.Linear(2048, 2 * latent))
        self.decoder_net = nn.Sequential(
            nn.ConvTranspose2d(latent, 512, 4, 1, 0), dec_act(), nn.ConvTranspose2d(512, 256, 3, 2, 1), dec_act(),
            nn.ConvTranspose2d(256, 128, 4, 2, 1), dec_act(), nn.ConvTranspose2d(128, 1, 4, 2, 1))

    def encode(self, x):
        mu, logvar = self.encoder(x.reshape(-1, 1, 28, 28)).chunk(2, dim=-1)
        return mu, logvar

    def decoder(self, z):
        out = self.decoder_net(z.reshape(-1, self.latent, 1, 1))
        return out.reshape(*z.shape[:-1], 784)


class EnergyPrior(nn.Module):
    def __init__(self, latent=16, hidden=(200, 200, 200), slope=0.2):
        super().__init__()
        layers, d = [], latent
        for h in hidden:
            layers += [nn.Linear(d, h), nn.LeakyReLU(slope)]
            d = h
        layers.append(nn.Linear(d, 1, bias=False))
        self.f = nn.Sequential(*layers)
        self.b = nn.Parameter(torch.zeros(()))

    def energy(self, z):
        return self.f(z).squeeze(-1)

    def potential(self, z):  # U(z) = f(z) + |z|^2 / 2
        return self.energy(z) + 0.5 * (z * z).sum(-1)


def langevin(prior, z, steps, step_size, noise=1.0):
    for _ in range(steps):
        z = z.detach().requires_grad_(True)
        grad, = torch.autograd.grad(prior.potential(z).sum(), z)
        z = z - 0.5 * step_size ** 2 * grad + noise * step_size * torch.randn_like(z)
    return z.detach()


def bernoulli_log_likelihood(logits, x):
    return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)


class Trainer:
    def __init__(self, args):
        self.args = args
        self.vae = ConvVAE(args.latent) if args.architecture == "conv" else VAE(args.latent)
        self.prior = EnergyPrior(args.latent) if args.objective != "exact" else None
        self.opt = torch.optim.Adam(self.vae.parameters(), lr=1e-4, betas=(0.5, 0.999))
        self.prior_opt = (torch.optim.Adam(self.prior.parameters(), lr=2e-5, betas=(0.5, 0.999))
                          if self.prior is not None else None)
        self.steps, self.step_size = {
            "short-run-mcmc": (60, 0.4), "long-run-mcmc": (200, 0.1)}.get(args.objective, (0, 0.0))
        if args.mcmc_steps:
            self.steps = args.mcmc_steps
        if args.mcmc_step_size:
            self.step_size = args.mcmc_step_size
        self.buffer = torch.randn(args.buffer_size, args.latent) if args.persistent else None

    def log_prior(self, mu, logvar, z):
        """The objective's E_q[log p(z)] term per image: [B]."""
        a, prior, d = self.args, self.prior, mu.shape[-1]
        cross = -0.5 * (mu * mu + logvar.exp()).sum(-1) - 0.5 * d * LOG2PI  # E_q log p0, closed form
        if a.objective == "exact":
            return cross
        if a.objective == "snelbo":
            s = a.base_samples or mu.shape[0]
            log_z_hat = torch.logsumexp(-prior.energy(torch.randn(s, d)), 0) - math.log(s)
            return cross - prior.energy(z).mean(0) - prior.b - torch.exp(log_z_hat - prior.b) + 1
        if a.objective in ("short-run-mcmc", "long-run-mcmc"):
            n = a.negatives or mu.shape[0]
            if self.buffer is not None:
                idx = torch.randint(len(self.buffer), (n,))
                start = self.buffer[idx]
                fresh = torch.rand(n, 1) < a.reinit_fraction
                start = torch.where(fresh, torch.randn_like(start), start)
            else:
                start = torch.randn(n, d)
            z_neg = langevin(prior, start, self.steps, self.step_size)
            if self.buffer is not None:
                self.buffer[idx] = z_neg
            return cross - prior.energy(z).mean(0) + prior.energy(z_neg).mean()
        if a.objective == "nce":
            pos = z.detach().reshape(-1, d)
            noise = torch.randn(len(pos), d)  # base noise, nu = 1: log p0 - log p_n = 0, log nu = 0
            logit_pos = -prior.energy(pos) - prior.b
            logit_noise = -prior.energy(noise) - prior.b
            nce = F.logsigmoid(logit_pos).mean() + F.logsigmoid(-logit_noise).mean()
            f_z = prior.energy(z)
            f_through_z = f_z - prior.energy(z.detach()) + f_z.detach()  # gradient through z only
            return cross - f_through_z.mean(0) - prior.b.detach() + nce
        raise ValueError(f"unknown objective {a.objective}")

    def step(self, x):
        mu, logvar = self.vae.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(self.args.samples, *mu.shape)  # [K, B, D]
        reconstruction = bernoulli_log_likelihood(self.vae.decoder(z), x).mean(0)
        entropy = 0.5 * (logvar + 1 + LOG2PI).sum(-1)
        loss = -(reconstruction + entropy + self.log_prior(mu, logvar, z)).mean()
        self.opt.zero_grad()
        if self.prior_opt:
            self.prior_opt.zero_grad()
        loss.backward()
        self.opt.step()
        if self.prior_opt:
            self.prior_opt.step()
        return loss


def matmul_gflops(reps=400):
    a, b = torch.randn(256, 784), torch.randn(784, 512)
    c = torch.empty(256, 512)
    for _ in range(20):
        torch.mm(a, b, out=c)
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b, out=c)
    return 2.0 * 256 * 784 * 512 * reps / (time.perf_counter() - t0) / 1e9


def mlp_flops(widths, n, forward, weight_grad, input_grad):
    """Matrix-product flops, counted as in bench/bench_common.h."""
    total = 0.0
    for i in range(len(widths) - 1):
        macs = widths[i] * widths[i + 1] * n
        total += 2 * macs * (forward + weight_grad)
        if (i > 0 and (weight_grad or input_grad)) or (i == 0 and input_grad):
            total += 2 * macs
    return total


def conv_step_flops(latent, batch, k):
    """As bench/bench_common.h: the reference conv networks' multiply-adds per image, forward,
    times 3 for a training step (less the encoder's gradient with respect to the images)."""
    enc = [14 * 14 * 32 * 25, 7 * 7 * 64 * 25 * 32, 4 * 4 * 128 * 25 * 64, 2048 * 2 * latent]
    dec = [latent * 512 * 16, 4 * 4 * 512 * 256 * 9, 7 * 7 * 256 * 128 * 16, 14 * 14 * 128 * 16]
    return 2.0 * ((2 * enc[0] + 3 * sum(enc[1:])) * batch + 3 * sum(dec) * batch * k)


def step_flops(a):
    b, kb, d = a.batch, a.samples * a.batch, a.latent
    if a.architecture == "conv":
        flops = conv_step_flops(d, b, a.samples)
    else:
        flops = mlp_flops([784, 512, 512, 2 * d], b, 1, 1, 0) + mlp_flops([d, 512, 512, 784], kb, 1, 1, 1)
    ew = [d, 200, 200, 200, 1]
    n = a.negatives or b
    steps = a.mcmc_steps or (60 if a.objective == "short-run-mcmc" else 200)
    if a.objective == "snelbo":
        flops += mlp_flops(ew, a.base_samples or b, 1, 1, 0) + mlp_flops(ew, kb, 1, 1, 1)
    elif a.objective in ("short-run-mcmc", "long-run-mcmc"):
        # The library evaluates the gradient steps + 1 times; this loop `steps` times.
        flops += steps * mlp_flops(ew, n, 1, 0, 1) + mlp_flops(ew, n, 1, 1, 0) + mlp_flops(ew, kb, 1, 1, 1)
    elif a.objective == "nce":
        flops += 3 * mlp_flops(ew, kb, 1, 1, 0) + mlp_flops(ew, kb, 1, 1, 1)
    return flops


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def profile_table(fn, steps):
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            fn()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25), file=sys.stderr)


def run_train(a):
    torch.manual_seed(a.seed)
    data = torch.bernoulli(torch.full((max(1, a.data_images // a.batch) * a.batch, 784), 0.13))
    n_batches = len(data) // a.batch
    trainer = Trainer(a)
    it = [0]

    def one():
        i = it[0] % n_batches
        it[0] += 1
        trainer.step(data[i * a.batch:(i + 1) * a.batch])

    for _ in range(a.warmup):
        one()
    # As bench_train: after every 4 steps a block of 6 products [256,784]x[784,512], so that
    # the step's rate and the product's are measured under the same conditions.
    flops = step_flops(a)
    mm_a, mm_b, mm_c = torch.randn(256, 784), torch.randn(784, 512), torch.empty(256, 512)
    times, block_mm, block_fraction = [], [], []
    secs = block_secs = 0.0
    t0 = time.perf_counter()
    steps = 0
    while steps < a.steps or time.perf_counter() - t0 < a.seconds:
        ts = time.perf_counter()
        one()
        dt = time.perf_counter() - ts
        times.append(dt)
        secs += dt
        block_secs += dt
        steps += 1
        if steps % 4 == 0 and not a.skip_matmul:
            torch.mm(mm_a, mm_b, out=mm_c)
            tm = time.perf_counter()
            for _ in range(6):
                torch.mm(mm_a, mm_b, out=mm_c)
            mm = 2.0 * 256 * 784 * 512 * 6 / (time.perf_counter() - tm) / 1e9
            block_mm.append(mm)
            block_fraction.append(flops * 4 / block_secs / 1e9 / mm)
            block_secs = 0.0
    times.sort()
    print(f"threads={a.threads} prior={'gaussian' if a.objective == 'exact' else 'ebm'} objective={a.objective} "
          f"batch={a.batch} K={a.samples} architecture={a.architecture} "
          f"hidden={'-' if a.architecture == 'conv' else '512,512'} latent={a.latent} persistent={int(a.persistent)} data=random")
    print(f"train_images_per_second {steps * a.batch / secs:.0f}")
    print(f"train_steps {steps}")
    print(f"step_seconds_mean {secs / steps:.6f}")
    print(f"step_seconds_min {times[0]:.6f}")
    print(f"step_seconds_median {times[len(times) // 2]:.6f}")
    print(f"step_gflop {flops / 1e9:.3f}")
    print(f"train_step_gflops {flops / (secs / steps) / 1e9:.1f}")
    if block_fraction:
        print(f"matmul_gflops {sorted(block_mm)[len(block_mm) // 2]:.1f}")
        print(f"train_step_fraction_of_matmul {sorted(block_fraction)[len(block_fraction) // 2]:.3f}")
        print(f"interleaved_blocks {len(block_fraction)}")
    if a.profile:
        profile_table(one, 5)


def run_langevin(a):
    torch.manual_seed(a.seed)
    prior = EnergyPrior(a.latent)
    steps = a.mcmc_steps or 200
    step_size = a.mcmc_step_size or 0.1
    start = torch.randn(a.chains, a.latent)
    langevin(prior, start, steps, step_size)  # warm-up
    calls, t0 = 0, time.perf_counter()
    while calls < 1 or time.perf_counter() - t0 < a.seconds:
        langevin(prior, start, steps, step_size)
        calls += 1
    rate = calls * steps / (time.perf_counter() - t0)
    flop = mlp_flops([a.latent, 200, 200, 200], a.chains, 1, 0, 1)
    print(f"chains={a.chains} steps={steps} step_size={step_size} latent={a.latent} threads={a.threads}")
    print(f"langevin_steps_per_second {rate:.0f}")
    print(f"langevin_us_per_step {1e6 / rate:.1f}")
    print(f"langevin_gflops {flop * rate / 1e9:.1f}")
    if a.profile:
        profile_table(lambda: langevin(prior, start, 20, step_size), 1)


@torch.no_grad()
def run_eval(a):
    torch.manual_seed(a.seed)
    vae = VAE(a.latent).eval()
    images = torch.bernoulli(torch.full((a.images, 784), 0.13))
    k = a.eval_samples
    chunk = max(1, (1 << 22) // (k * 784))  # as estimators/bounds.cpp
    t0 = time.perf_counter()
    iwae = []
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk]
        mu, logvar = vae.encode(x)
        std = torch.exp(0.5 * logvar)
        z = mu + std * torch.randn(k, *mu.shape)
        log_px = bernoulli_log_likelihood(vae.decoder(z), x)
        log_pz = -0.5 * (z * z).sum(-1) - 0.5 * a.latent * LOG2PI
        log_qz = (-0.5 * (LOG2PI + logvar + (z - mu) ** 2 / std ** 2)).sum(-1)
        iwae.append(torch.logsumexp((log_px + log_pz - log_qz).double(), 0) - math.log(k))
    secs = time.perf_counter() - t0
    iwae = torch.cat(iwae)
    print(f"images={a.images} samples={k} chunk_images={chunk} threads={a.threads}")
    print(f"eval_seconds {secs:.2f}")
    print(f"eval_images_per_second {a.images / secs:.1f}")
    print(f"IWAE_{k} {iwae.mean().item():.4f} (se {iwae.std().item() / math.sqrt(len(iwae)):.4f})")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--objective", default="exact",
                   choices=["exact", "snelbo", "short-run-mcmc", "long-run-mcmc", "nce"])
    p.add_argument("--persistent", action="store_true")
    p.add_argument("--mcmc-steps", type=int, default=0)
    p.add_argument("--mcmc-step-size", type=float, default=0.0)
    p.add_argument("--negatives", type=int, default=0)
    p.add_argument("--base-samples", type=int, default=0)
    p.add_argument("--buffer-size", type=int, default=10000)
    p.add_argument("--reinit-fraction", type=float, default=0.05)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--samples", type=int, default=1)
    p.add_argument("--architecture", choices=["mlp", "conv"], default="mlp")
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=3, help="at least this many measured steps")
    p.add_argument("--seconds", type=float, default=0.0, help="and at least this many seconds")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--data-images", type=int, default=10240)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--kernel-only", action="store_true", help="print the OpenBLAS kernel and stop")
    p.add_argument("--skip-matmul", action="store_true")
    p.add_argument("--langevin", action="store_true", help="Langevin steps/s on the energy prior alone")
    p.add_argument("--chains", type=int, default=256)
    p.add_argument("--eval", action="store_true", help="IWAE_K evaluation time")
    p.add_argument("--images", type=int, default=10000)
    p.add_argument("--eval-samples", type=int, default=1000)
    a = p.parse_args()
    if a.persistent and a.objective != "long-run-mcmc":
        p.error("--persistent goes with long-run-mcmc")
    set_threads(a.threads)
    if a.kernel_only:
        return
    # Training measures the product's rate between its steps (run_train).
    mm = None if a.skip_matmul or not (a.langevin or a.eval) else matmul_gflops()
    if mm is not None:
        print(f"matmul_gflops {mm:.1f}")
    if a.langevin:
        run_langevin(a)
    elif a.eval:
        run_eval(a)
    else:
        run_train(a)
    print(f"peak_rss_mb {peak_rss_mb():.1f}")


if __name__ == "__main__":
    main()
