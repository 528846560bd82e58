"""Train an MLP energy on 2-D toy densities with the objectives that need no sampling.

    python examples/ebm_objectives_toy2d.py [--datasets 8gaussians rings checkerboard]
        [--objectives nce sm ssm dsm] [--steps 1500] [--out runs/ebm_objectives_toy2d] [--seed 0]

For every (data set, objective) it trains ``MLPEnergy(2, hidden=(128, 128))`` with one of

* ``nce``: noise-contrastive estimation against the Gaussian fitted to the data (its covariance
  widened ×1.5²; ``--nce-noise uniform``: uniform on the box), the log-normaliser c learned beside
  the energy, ν = 1 (``--nce-ratio``);
* ``sm``: exact score matching (two Hessian rows per batch in 2-D);
* ``ssm``: sliced score matching, variance-reduced, one Rademacher direction;
* ``dsm``: denoising score matching at one noise level σ (``--sigma``, default 0.05);

writes a PNG of the learned density exp(−E)/Z beside the true one, and prints a table of test NLLs
(nats per point): the learned density's (normalised on a 400² grid), the true density's, and the
best single Gaussian's (the floor). Ratio matching, pseudo-likelihood and MPF are for binary data
and are not run here. Samples on the PNG: 500 Langevin steps from uniform noise.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import npjem  # noqa: E402
from npjem import Tensor, optim  # noqa: E402
from npjem.data import toy2d  # noqa: E402
from npjem.ebm import MLPEnergy, gaussian_nll, grid_nll, langevin, plot_landscape  # noqa: E402
from npjem.ebm import objectives as O  # noqa: E402

OBJECTIVES = ("nce", "sm", "ssm", "dsm")
LANGEVIN_STEP = {"8gaussians": 2e-3, "rings": 1e-3, "checkerboard": 2e-3}


class UniformNoise:
    """The NCE noise: uniform on the square box (log-density −log of its area inside it)."""

    def __init__(self, bounds):
        self.lo, self.hi = bounds

    def sample(self, n, rng):
        return rng.uniform(self.lo, self.hi, size=(n, 2))

    def log_density(self, x):
        return np.full(x.shape[0], -2.0 * np.log(self.hi - self.lo))


class GaussianNoise:
    """The NCE noise: N(m, C) with its exact log-density (host float64, cast to the data dtype)."""

    def __init__(self, data, widen=1.5):
        self.mean = data.mean(axis=0)
        self.cov = np.cov(data.T) * widen ** 2
        self.chol = np.linalg.cholesky(self.cov)
        self.logdet = float(np.linalg.slogdet(2 * np.pi * self.cov)[1])

    def sample(self, n, rng):
        return self.mean + rng.standard_normal((n, 2)) @ self.chol.T

    def log_density(self, x):
        r = np.linalg.solve(self.chol, (x - self.mean).T)
        return -0.5 * (r ** 2).sum(axis=0) - 0.5 * self.logdet


def run(name, objective, steps=1500, seed=0, out=None, batch_size=256, lr=1e-3, sigma=0.05, hidden=(128, 128),
        n_train=20000, n_test=5000, log_every=250, cosine=False, nce_noise="gaussian", nce_ratio=1):
    """Train one energy with one objective; returns a dict of NLLs, timings and the PNG path."""
    density = toy2d.get(name)
    lo, hi = density.bounds
    dt = np.float32
    train = density.sample(n_train, generator=seed, dtype=np.float64)
    test = density.sample(n_test, generator=seed + 1000, dtype=np.float64)
    energy = MLPEnergy(2, hidden=hidden, activation="swish", dtype=dt, generator=seed)
    params = list(energy.parameters())
    log_z = None
    if objective == "nce":
        log_z = npjem.nn.Parameter(np.zeros((), dtype=dt))
        params.append(log_z)
        noise = GaussianNoise(train) if nce_noise == "gaussian" else UniformNoise((lo, hi))
    opt = optim.Adam(params, lr=lr)
    rng = np.random.default_rng(seed)  # host: minibatch order and NCE noise
    gen = npjem.random.default_rng(seed + 7, "cpu")
    losses = []
    t0 = time.perf_counter()
    for step in range(steps):
        if cosine:  # decay the learning rate to 0 along a half cosine: the last steps average the noise
            for group in opt.param_groups:
                group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * step / steps))
        xb = train[rng.integers(0, n_train, batch_size)]
        x = Tensor(xb.astype(dt))
        if objective == "nce":
            yb = noise.sample(nce_ratio * batch_size, rng)  # ν = nce_ratio noise points per data point
            loss = O.nce(energy, x, Tensor(yb.astype(dt)), Tensor(noise.log_density(xb).astype(dt)),
                         Tensor(noise.log_density(yb).astype(dt)), log_z)
        elif objective == "sm":
            loss = O.score_matching(energy, x)
        elif objective == "ssm":
            loss = O.sliced_score_matching(energy, x, variance_reduction=True, generator=gen)
        else:
            loss = O.denoising_score_matching(energy, x, sigma, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
        if not math.isfinite(losses[-1]):
            raise FloatingPointError(f"{name} {objective}: loss {losses[-1]} at step {step}")
        if log_every and (step + 1) % log_every == 0:
            print(f"  {name} {objective} step {step + 1}: loss {np.mean(losses[-log_every:]):.4f}",
                  file=sys.stderr, flush=True)
    seconds = time.perf_counter() - t0
    result = {
        "data": name, "objective": objective, "steps": steps, "batch_size": batch_size, "lr": lr, "cosine": cosine,
        "sigma": sigma if objective == "dsm" else None,
        "nce_noise": nce_noise if objective == "nce" else None,
        "nce_ratio": nce_ratio if objective == "nce" else None, "seconds": seconds,
        "nll": grid_nll(energy, test, (lo, hi), 400),
        "nll_true": float(-np.mean(density.log_density(test))),
        "nll_gaussian": gaussian_nll(train, test),
        "loss_last": float(np.mean(losses[-100:])),
        "log_z_nce": float(log_z.item()) if log_z is not None else None,
        "log_z_grid": float(npjem.ebm.grid_log_partition(energy, (lo, hi), 400)),
        "png": None,
    }
    if out is not None:
        os.makedirs(out, exist_ok=True)
        g = npjem.random.default_rng(seed + 1, "cpu")
        start = g.uniform(lo, hi, size=(1000, 2), dtype=dt)
        eta = LANGEVIN_STEP.get(name, 2e-3)
        samples = langevin(energy, start, 500, eta, generator=g, clamp=(lo, hi))
        path = os.path.join(out, f"{name}_{objective}.png")
        plot_landscape(energy, path, (lo, hi), samples=samples, density=density, resolution=200,
                       title=f"{name}, {objective}, test NLL {result['nll']:.3f}")
        result["png"] = path
    return result


def table(results):
    lines = ["| data | objective | steps, lr | NLL learned | NLL true | NLL Gaussian | learned − true | time (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lr = f"{r['lr']:g}" + (" cosine" if r.get("cosine") else "")
        lines.append(f"| {r['data']} | {r['objective']} | {r['steps']}, {lr} | {r['nll']:.3f} | {r['nll_true']:.3f} | "
                     f"{r['nll_gaussian']:.3f} | {r['nll'] - r['nll_true']:+.3f} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description="MLP energies on 2-D toy densities: NCE, SM, SSM, DSM.")
    ap.add_argument("--datasets", nargs="+", default=["8gaussians", "rings", "checkerboard"])
    ap.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=OBJECTIVES)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--sigma", type=float, default=0.05, help="DSM noise level")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--out", default="runs/ebm_objectives_toy2d")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cosine", action="store_true", help="cosine learning-rate decay to 0")
    ap.add_argument("--nce-noise", default="gaussian", choices=["gaussian", "uniform"],
                    help="NCE noise: the data's Gaussian widened x1.5, or uniform on the box")
    ap.add_argument("--nce-ratio", type=int, default=1, help="NCE noise points per data point (ν)")
    args = ap.parse_args(argv)
    results = []
    for name in args.datasets:
        for objective in args.objectives:
            r = run(name, objective, steps=args.steps, seed=args.seed, out=args.out, batch_size=args.batch_size,
                    lr=args.lr, sigma=args.sigma, cosine=args.cosine, nce_noise=args.nce_noise,
                    nce_ratio=args.nce_ratio)
            print(f"{name} {objective}: NLL {r['nll']:.3f} (true {r['nll_true']:.3f}, Gaussian "
                  f"{r['nll_gaussian']:.3f}) in {r['seconds']:.0f}s -> {r['png']}", flush=True)
            results.append(r)
    print(table(results))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"command": " ".join(sys.argv), "results": results}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
