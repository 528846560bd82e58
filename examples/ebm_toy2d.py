"""Train an MLP energy on 2-D toy densities with CD-k, persistent CD and a replay buffer.

    python examples/ebm_toy2d.py [--datasets 8gaussians rings checkerboard] [--methods cd pcd replay]
                                 [--steps 1500] [--out runs/ebm_toy2d] [--seed 0]

For every (data set, method) it trains ``MLPEnergy(2, hidden=(128, 128))`` by maximum likelihood
with Langevin negatives (``npjem.ebm.train_ebm``), writes a PNG of the learned density exp(−E)/Z
with short-run samples on top and the true density beside it, and prints a table of test NLLs
(nats per point): the learned density's (normalised on a 400² grid), the true density's (its
entropy, from ``toy2d``'s exact log-density) and the best single Gaussian's (the floor to beat).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import npjem  # noqa: E402
from npjem import optim  # noqa: E402
from npjem.data import toy2d  # noqa: E402
from npjem.ebm import (  # noqa: E402
    Langevin, MLPEnergy, PersistentNegatives, gaussian_nll, grid_nll, langevin, plot_landscape, train_ebm,
)

# Langevin settings per data set: the step must resolve the narrowest feature (σ = 0.08 for the
# rings, 0.2 for 8 Gaussians, the cell edges of the checkerboard), the noise is coupled (ULA).
SETTINGS = {
    "8gaussians": dict(step_size=2e-3),
    "rings": dict(step_size=1e-3),
    "checkerboard": dict(step_size=2e-3),
}
K = {"cd": 10, "pcd": 10, "replay": 20}


def run(name, method, steps=1500, seed=0, out=None, batch_size=256, lr=2e-3, alpha=0.01, k=None,
        step_size=None, hidden=(128, 128), buffer_size=2048, n_particles=None, pcd_init="uniform", n_train=20000,
        n_test=5000, progress=True):
    """Train one energy; returns a dict of NLLs, timings and the PNG path (None without ``out``)."""
    density = toy2d.get(name)
    lo, hi = density.bounds
    train = density.sample(n_train, generator=seed, dtype=np.float32)
    test = density.sample(n_test, generator=seed + 1000, dtype=np.float64)
    energy = MLPEnergy(2, hidden=hidden, activation="swish", dtype=np.float32, generator=seed)
    opt = optim.Adam(energy.parameters(), lr=lr, betas=(0.0, 0.999))
    eta = SETTINGS.get(name, {}).get("step_size", 2e-3) if step_size is None else step_size
    k = K[method] if k is None else k
    sampler = Langevin(step_size=eta, clamp=(lo, hi))
    # PCD's particles start as uniform noise in the box (train_ebm's default) or at the data.
    negatives = (PersistentNegatives(batch_size if n_particles is None else n_particles, box=(lo, hi),
                                     init=pcd_init) if method == "pcd" else None)
    t0 = time.perf_counter()
    hist = train_ebm(energy, train, opt, method, k=k, sampler=sampler, steps=steps, batch_size=batch_size,
                     alpha=alpha, box=(lo, hi), buffer_size=buffer_size, n_particles=n_particles,
                     reinit_fraction=0.05, negatives=negatives, generator=seed,
                     progress=progress, log_every=max(1, steps // 10))
    seconds = time.perf_counter() - t0
    result = {
        "data": name, "method": method, "k": k, "steps": steps, "step_size": eta, "seconds": seconds,
        "n_particles": n_particles, "buffer_size": buffer_size, "pcd_init": pcd_init,
        "nll": grid_nll(energy, test, (lo, hi), 400),
        "nll_true": float(-np.mean(density.log_density(test))),
        "nll_gaussian": gaussian_nll(train, test),
        "energy_gap_last": float(np.mean(hist["energy_gap"][-50:])),
        "grad_norm_last": float(np.mean(hist["grad_norm"][-50:])),
        "png": None,
    }
    if out is not None:
        os.makedirs(out, exist_ok=True)
        # Samples to show: 500 Langevin steps from uniform noise (what the model generates).
        g = npjem.random.default_rng(seed + 1, "cpu")
        start = g.uniform(lo, hi, size=(1000, 2), dtype=np.float32)
        samples = langevin(energy, start, 500, eta, generator=g, clamp=(lo, hi))
        path = os.path.join(out, f"{name}_{method}.png")
        plot_landscape(energy, path, (lo, hi), samples=samples, density=density, resolution=200,
                       title=f"{name}, {method} (k={k}), test NLL {result['nll']:.3f}")
        result["png"] = path
    return result


def table(results):
    lines = ["| data | method | k | steps | NLL learned | NLL true | NLL Gaussian | learned − true | time (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['data']} | {r['method']} | {r['k']} | {r['steps']} | {r['nll']:.3f} | "
                     f"{r['nll_true']:.3f} | {r['nll_gaussian']:.3f} | {r['nll'] - r['nll_true']:+.3f} | "
                     f"{r['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description="MLP energies on 2-D toy densities: CD-k, PCD, replay buffer.")
    ap.add_argument("--datasets", nargs="+", default=["8gaussians", "rings", "checkerboard"])
    ap.add_argument("--methods", nargs="+", default=["cd", "pcd", "replay"], choices=["cd", "pcd", "replay"])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--k", type=int, default=None, help="sampler steps per update (default per method)")
    ap.add_argument("--step-size", type=float, default=None, help="Langevin step (default per data set)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--buffer-size", type=int, default=2048, help="replay buffer size")
    ap.add_argument("--n-particles", type=int, default=None, help="PCD chains (default: the batch size)")
    ap.add_argument("--pcd-init", default="uniform", choices=["uniform", "data"], help="where PCD's chains start")
    ap.add_argument("--out", default="runs/ebm_toy2d")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    results = []
    for name in args.datasets:
        for method in args.methods:
            r = run(name, method, steps=args.steps, seed=args.seed, out=args.out, batch_size=args.batch_size,
                    lr=args.lr, alpha=args.alpha, k=args.k, step_size=args.step_size,
                    buffer_size=args.buffer_size, n_particles=args.n_particles,
                    pcd_init=args.pcd_init)
            print(f"{name} {method}: NLL {r['nll']:.3f} (true {r['nll_true']:.3f}, Gaussian "
                  f"{r['nll_gaussian']:.3f}) in {r['seconds']:.0f}s -> {r['png']}", flush=True)
            results.append(r)
    print(table(results))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"command": " ".join(sys.argv), "results": results}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
