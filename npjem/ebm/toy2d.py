"""One run of an EBM objective on a 2-D toy density: train, measure the grid NLL, draw the landscape.

:func:`run` trains ``MLPEnergy(2, hidden=(128, 128))`` on a ``npjem.data.toy2d`` density with one
of the objectives below, then reports the test NLL (nats per point) of the learned density
exp(−E)/Z (Z by a 400² grid over the density's box), next to the true density's NLL (its
entropy, from the exact log-density) and the best single Gaussian's (the floor any model must
beat), and, with ``out``, writes a PNG of the landscape with model samples on top and the true
density beside it.

Objectives:

* ``cd``, ``pcd``, ``replay``: maximum likelihood with Langevin negatives
  (:func:`npjem.ebm.train_ebm`): chains started at the data (CD-k), persistent particles, or Du &
  Mordatch's replay buffer; the α(E₊² + E₋²) regulariser;
* ``nce``: noise-contrastive estimation against the data's Gaussian widened ×1.5 (or uniform on
  the box), the log-normaliser learned beside the energy;
* ``sm``: exact score matching; ``ssm``: sliced score matching (variance-reduced, Rademacher);
  ``dsm``: denoising score matching at one noise level σ.

``npjem ebm OBJECTIVE --data NAME`` runs it from the command line; the examples
``examples/ebm_toy2d.py`` and ``examples/ebm_objectives_toy2d.py`` run the whole table.
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np

from .. import optim
from .. import random as nrandom
from .._checks import check_choice, check_int, check_positive
from ..autograd import Tensor
from ..data import toy2d
from ..nn import Parameter
from . import objectives as O
from .energy import MLPEnergy
from .plot import gaussian_nll, grid_log_partition, grid_nll, plot_landscape
from .samplers import MALA, Langevin, langevin
from .training import PersistentNegatives, train_ebm

__all__ = ["OBJECTIVES", "SAMPLING", "run", "table"]

SAMPLING = ("cd", "pcd", "replay")
OBJECTIVES = SAMPLING + ("nce", "sm", "ssm", "dsm")
# Langevin steps per data set: a step must resolve the narrowest feature (σ = 0.08 for the rings,
# 0.2 for 8 Gaussians, the checkerboard's cell edges); the noise is coupled (ULA).
LANGEVIN_STEP = {"8gaussians": 2e-3, "rings": 1e-3, "checkerboard": 2e-3}
K = {"cd": 10, "pcd": 10, "replay": 20}
LR = {"cd": 2e-3, "pcd": 2e-3, "replay": 2e-3, "nce": 1e-3, "sm": 1e-3, "ssm": 1e-3, "dsm": 1e-3}


class UniformNoise:
    """NCE's noise: uniform on the square box (log-density −log of its area inside it)."""

    def __init__(self, bounds):
        self.lo, self.hi = bounds

    def sample(self, n, rng):
        return rng.uniform(self.lo, self.hi, size=(n, 2))

    def log_density(self, x):
        return np.full(x.shape[0], -2.0 * np.log(self.hi - self.lo))  # host


class GaussianNoise:
    """NCE's noise: N(m, C) fitted to the data with C widened by ``widen``², exact log-density."""

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


def _train_without_sampling(energy, objective, train, steps, batch_size, lr, sigma, cosine, nce_noise, nce_ratio,
                            seed, bounds, progress, label):
    dt = np.float32
    params = list(energy.parameters())
    log_z = None
    if objective == "nce":
        log_z = Parameter(np.zeros((), dtype=dt))  # host: a CPU run
        params.append(log_z)
        noise = GaussianNoise(train) if nce_noise == "gaussian" else UniformNoise(bounds)
    opt = optim.Adam(params, lr=lr)
    rng = np.random.default_rng(seed)  # host: minibatch order and NCE's noise
    gen = nrandom.default_rng(seed + 7, "cpu")
    losses = []
    log_every = max(1, steps // 10)
    for step in range(steps):
        if cosine:  # a half cosine down to 0: the last steps average the gradient noise
            for group in opt.param_groups:
                group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * step / steps))
        xb = train[rng.integers(0, len(train), batch_size)]
        x = Tensor(xb.astype(dt))
        if objective == "nce":
            yb = noise.sample(nce_ratio * batch_size, rng)  # ν noise points per data point
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
            raise FloatingPointError(f"{label}: the loss is {losses[-1]} at step {step + 1}; lower the "
                                     f"learning rate (lr={lr:g})")
        if progress and (step + 1) % log_every == 0:
            print(f"  {label} step {step + 1}/{steps}: loss {np.mean(losses[-log_every:]):.4f}",
                  file=sys.stderr, flush=True)
    return {"loss_last": float(np.mean(losses[-100:])),
            "log_z_nce": float(log_z.item()) if log_z is not None else None}


def run(data, objective, *, steps=1500, seed=0, out=None, batch_size=256, lr=None, hidden=(128, 128),
        alpha=0.01, k=None, sampler="langevin", step_size=None, buffer_size=2048, n_particles=None,
        pcd_init="uniform", sigma=0.05,
        cosine=False, nce_noise="gaussian",
        nce_ratio=1, n_train=20000, n_test=5000, grid=400, sample_steps=500, progress=True):
    """Train one MLP energy on ``data`` with ``objective``; a dict of NLLs, timings and the PNG path.

    ``out`` is a folder for ``<data>_<objective>.png`` (None: no picture); ``grid`` is the side of
    the grid that normalises exp(−E) for the NLL; ``sample_steps`` the Langevin steps of the 1,000
    samples drawn on the PNG. ``lr`` defaults to the
    objective's (2e-3 with sampling, 1e-3 without); ``k`` (Langevin steps per update) to 10 for
    CD and PCD, 20 for the replay buffer; ``step_size`` (Langevin's ε²/2) to the data set's.
    ``sampler`` is ``"langevin"`` (unadjusted, clamped to the box) or ``"mala"`` (with its
    Metropolis–Hastings correction). PCD keeps ``n_particles`` chains (default: the batch size) started as uniform noise in the box
    or, with ``pcd_init="data"``, at data points.
    """
    check_choice(data, "data", toy2d.names())
    check_choice(objective, "objective", OBJECTIVES)
    steps = check_int(steps, "steps")
    grid = check_int(grid, "grid", minimum=2)
    batch_size = check_int(batch_size, "batch_size", minimum=2)
    lr = LR[objective] if lr is None else check_positive(lr, "lr")
    sigma = check_positive(sigma, "sigma")
    check_choice(nce_noise, "nce_noise", ("gaussian", "uniform"))
    nce_ratio = check_int(nce_ratio, "nce_ratio")
    density = toy2d.get(data)
    lo, hi = density.bounds
    # The sampling objectives train on float32 draws, the others on float64 ones (NCE fits its noise
    # to them); each is the draw its documented results were measured with. Three points at least:
    # the Gaussian floor needs a non-singular covariance of the 2-D training points.
    train = density.sample(check_int(n_train, "n_train", minimum=3), generator=seed,
                           dtype=np.float32 if objective in SAMPLING else np.float64)
    test = density.sample(check_int(n_test, "n_test"), generator=seed + 1000, dtype=np.float64)
    energy = MLPEnergy(2, hidden=hidden, activation="swish", dtype=np.float32, generator=seed)
    eta = LANGEVIN_STEP.get(data, 2e-3) if step_size is None else check_positive(step_size, "step_size")
    label = f"{data} {objective}"
    t0 = time.perf_counter()
    result = {"data": data, "objective": objective, "steps": steps, "batch_size": batch_size, "lr": lr,
              "seed": seed}
    if objective in SAMPLING:
        k = K[objective] if k is None else check_int(k, "k")
        check_choice(pcd_init, "pcd_init", ("uniform", "data"))
        chain = (Langevin(step_size=eta, clamp=(lo, hi)) if check_choice(sampler, "sampler", ("langevin", "mala"))
                 == "langevin" else MALA(eta))
        opt = optim.Adam(energy.parameters(), lr=lr, betas=(0.0, 0.999))
        negatives = (PersistentNegatives(batch_size if n_particles is None else check_int(n_particles, "n_particles"),
                                         box=(lo, hi), init=pcd_init) if objective == "pcd" else None)
        hist = train_ebm(energy, train, opt, objective, k=k,
                         sampler=chain, steps=steps, batch_size=batch_size,
                         alpha=alpha, box=(lo, hi), buffer_size=buffer_size, n_particles=n_particles,
                         reinit_fraction=0.05, negatives=negatives, generator=seed, progress=progress,
                         log_every=max(1, steps // 10))
        result.update(k=k, sampler=sampler, step_size=eta, alpha=alpha, n_particles=n_particles, pcd_init=pcd_init,
                      buffer_size=buffer_size,
                      energy_gap_last=float(np.mean(hist["energy_gap"][-50:])),
                      grad_norm_last=float(np.mean(hist["grad_norm"][-50:])))
    else:
        result.update(_train_without_sampling(energy, objective, train, steps, batch_size, lr, sigma, cosine,
                                              nce_noise, nce_ratio, seed, (lo, hi), progress, label))
        result.update(cosine=cosine, sigma=sigma if objective == "dsm" else None,
                      nce_noise=nce_noise if objective == "nce" else None,
                      nce_ratio=nce_ratio if objective == "nce" else None)
    result.update(
        seconds=time.perf_counter() - t0,
        nll=grid_nll(energy, test, (lo, hi), grid),
        nll_true=float(-np.mean(density.log_density(test))),
        nll_gaussian=gaussian_nll(train, test),
        log_z_grid=float(grid_log_partition(energy, (lo, hi), grid)),
        png=None,
    )
    if out is not None:
        import os  # noqa: PLC0415

        os.makedirs(out, exist_ok=True)
        # What the model generates: Langevin chains started at uniform noise.
        g = nrandom.default_rng(seed + 1, "cpu")
        start = g.uniform(lo, hi, size=(1000, 2), dtype=np.float32)
        samples = langevin(energy, start, check_int(sample_steps, "sample_steps"), eta, generator=g, clamp=(lo, hi))
        path = os.path.join(out, f"{data}_{objective}.png")
        extra = f" (k={result['k']})" if objective in SAMPLING else ""
        plot_landscape(energy, path, (lo, hi), samples=samples, density=density, resolution=200,
                       title=f"{data}, {objective}{extra}, test NLL {result['nll']:.3f}")
        result["png"] = path
    return result


def table(results):
    """A markdown table of :func:`run` results."""
    lines = ["| data | objective | steps | NLL learned | NLL true | NLL Gaussian | learned − true | time (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['data']} | {r['objective']} | {r['steps']} | {r['nll']:.3f} | {r['nll_true']:.3f} | "
                     f"{r['nll_gaussian']:.3f} | {r['nll'] - r['nll_true']:+.3f} | {r['seconds']:.0f} |")
    return "\n".join(lines)
