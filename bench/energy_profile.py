#!/usr/bin/env python3
"""The energy f of an exported energy prior where it matters (issue 28): at the encoder's
posterior means and draws for the MNIST test images, at N(0, I) draws, and along rays past the
data (the posterior draws scaled by 1.5, 2 and 3), with the mean |z| of each set.

    vae-ebm export RUN --out model.h5
    /usr/bin/python3 bench/energy_profile.py model.h5 [data-cache/mnist/t10k-images-idx3-ubyte]

A LeakyReLU MLP is linear far from the origin, so an unbounded f keeps falling along some rays;
--energy-bound B caps it at -B (docs/MATH.md section 1). Binarises the test images by one
Bernoulli draw (seed 0), not by the run's own static binarisation: the figures are descriptive.
Needs h5py and numpy; MLP encoders only.
"""
import sys

import h5py
import numpy as np


def main(model_path, images_path):
    m = h5py.File(model_path, "r")
    attr = lambda k: m.attrs[k].decode() if isinstance(m.attrs[k], bytes) else m.attrs[k]
    if attr("prior") != "ebm" or attr("architecture") != "mlp":
        sys.exit("energy_profile.py: needs an MLP run with an energy prior")
    act = {"relu": lambda x: np.maximum(x, 0), "tanh": np.tanh}[attr("activation")]
    slope = float(m.attrs["energy_slope"])
    bound = float(m.attrs["energy_bound"]) if "energy_bound" in m.attrs else 0.0

    def net(prefix, x, a):
        layers = sorted(int(k) for k in m[prefix].keys())
        for i, k in enumerate(layers):
            x = x @ m[f"{prefix}/{k}/weight"][()].T
            if f"{prefix}/{k}/bias" in m:
                x = x + m[f"{prefix}/{k}/bias"][()]
            if i < len(layers) - 1:
                x = a(x)
        return x

    def energy(z):
        g = net("prior/f", z, lambda x: np.where(x > 0, x, slope * x))[:, 0]
        return bound * np.tanh(g / bound) if bound > 0 else g

    raw = np.fromfile(images_path, dtype=np.uint8)[16:].reshape(-1, 784) / 255.0
    rng = np.random.default_rng(0)
    x = (rng.random(raw.shape) < raw).astype(np.float32)
    h = net("encoder/net", x, act)
    d = h.shape[1] // 2
    mu, sd = h[:, :d], np.exp(0.5 * h[:, d:])
    draws = mu + sd * rng.standard_normal(mu.shape)
    base = rng.standard_normal((10000, d))
    print(f"energy bound {bound:g}" if bound > 0 else "energy unbounded")
    print("| points | mean \\|z\\| | f mean | f sd | f min | f max |")
    print("|---|---|---|---|---|---|")
    sets = [("posterior means", mu), ("posterior draws", draws), ("N(0, I) draws", base)]
    sets += [(f"posterior draws x {s:g}", draws * s) for s in (1.5, 2, 3)]
    for name, z in sets:
        f = energy(z)
        print(f"| {name} | {np.linalg.norm(z, axis=1).mean():.2f} | {f.mean():.2f} | {f.std():.2f} | "
              f"{f.min():.2f} | {f.max():.2f} |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "data-cache/mnist/t10k-images-idx3-ubyte")
