"""Maximum-likelihood training of an energy with MCMC negatives: CD-k, persistent CD, replay buffer.

The gradient of the negative log-likelihood of p(x) = exp(−E(x)) / Z is

    ∇θ L = E_data[∇θ E(x)] − E_model[∇θ E(x)]

(push the energy down on data, up where the model puts mass). The second expectation is
estimated with negatives x₋ drawn by a few MCMC steps and *detached*: no gradient flows
through the sampler. The surrogate loss whose θ-gradient is that estimate, with Du & Mordatch's
(2019) regulariser that keeps energies near zero, is :func:`contrastive_divergence_loss`:

    L = mean E(x₊) − mean E(x₋) + α · mean(E(x₊)² + E(x₋)²)

Where the chains start decides the method (:class:`CDNegatives`, :class:`PersistentNegatives`,
:class:`ReplayBuffer`):

* **CD-k** (Hinton 2002): k steps from the data batch itself. Cheap and stable, but it only
  shapes the energy near the data: modes far away are never visited.
* **Persistent CD** (PCD / SML, Tieleman 2008): particles that are never reset; each update
  continues their chains by k steps. The chains mix because the energy changes under them.
* **Replay buffer** (Du & Mordatch 2019): a buffer of past samples; each update draws a batch
  from it, restarts a fraction of them (5 % in IGEBM and JEM) from uniform noise in a box, runs
  k steps and writes the results back.

The diagnostics watched in the literature (Nijkamp et al. 2020) are recorded per step: the
energy difference E_data − E_samples (≈ 0 at a stationary point of the ML objective, strongly
negative when the sampler cannot keep up) and the mean ‖∇ₓE‖ along the chain.
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np

from .. import backend
from .. import random as nrandom
from .._checks import check_bool, check_choice, check_int, check_positive, check_probability, check_real
from ..autograd import Tensor
from .samplers import Langevin

__all__ = [
    "contrastive_divergence_loss", "CDNegatives", "PersistentNegatives", "ReplayBuffer",
    "train_ebm", "History",
]


def contrastive_divergence_loss(e_pos, e_neg, alpha=0.0):
    """mean E(x₊) − mean E(x₋) + α · mean(E(x₊)² + E(x₋)²), a scalar Tensor.

    ``e_pos`` (N₊,) are the energies of data, ``e_neg`` (N₋,) those of detached MCMC negatives;
    the θ-gradient of the first two terms is the maximum-likelihood gradient estimate. The
    regulariser is Du & Mordatch's (2019): it keeps the energies' scale bounded (the ML loss
    alone is invariant to adding a constant to E and can drift); IGEBM hard-codes α = 1,
    JEM and short-run EBMs use α = 0. With N₊ ≠ N₋ the squared term averages each set on its
    own, mean E₊² + mean E₋².
    """
    for name, e in (("e_pos", e_pos), ("e_neg", e_neg)):
        if not isinstance(e, Tensor):
            raise TypeError(f"{name} must be a Tensor of energies, got {type(e).__name__}")
        if e.ndim != 1 or e.shape[0] < 1:
            raise ValueError(f"{name} must be a non-empty 1-D Tensor of energies (N,), got shape {tuple(e.shape)}")
    alpha = check_positive(alpha, "alpha", allow_zero=True)
    loss = e_pos.mean() - e_neg.mean()
    if alpha > 0:
        loss = loss + alpha * ((e_pos ** 2).mean() + (e_neg ** 2).mean())
    return loss


def _check_box(box):
    try:
        lo, hi = box
    except (TypeError, ValueError):
        raise ValueError(f"box must be a pair (low, high), got {box!r}") from None
    lo, hi = check_real(lo, "box[0]"), check_real(hi, "box[1]")
    if not lo < hi:
        raise ValueError(f"box must satisfy low < high, got {box!r}")
    return lo, hi


def _uniform(gen, shape, box, dtype):
    return gen.uniform(box[0], box[1], size=shape, dtype=dtype)


def _raw(x, name):
    if isinstance(x, Tensor):
        return x.data
    if backend.is_array(x):
        return x
    raise TypeError(f"{name} must be an array or a Tensor, got {type(x).__name__}")


def _run_sampler(sampler, energy, x0, k, gen):
    out = sampler(energy, x0, k, gen, return_info=True)
    x, info = out
    return _raw(x, "the sampler's samples"), info


class CDNegatives:
    """CD-k: negatives from k sampler steps started at the data batch."""

    name = "cd"

    def __call__(self, energy, x_pos, sampler, k, gen):
        return _run_sampler(sampler, energy, x_pos, k, gen)

    def __repr__(self):
        return "CDNegatives()"


class PersistentNegatives:
    """Persistent CD: ``n_particles`` chains kept between updates.

    The particles start as uniform noise in ``box`` (or, with ``init="data"``, at the first
    batch, repeated to ``n_particles``). Each update continues ``batch`` of them, chosen
    uniformly without replacement (all of them when ``n_particles`` equals the batch size, as
    in Tieleman 2008), by k sampler steps and stores the results back: ``particles`` holds
    the chains' current states.
    """

    name = "pcd"

    def __init__(self, n_particles, box=(-4.0, 4.0), init="uniform"):
        self.n_particles = check_int(n_particles, "n_particles")
        self.box = _check_box(box)
        self.init = check_choice(init, "init", ("uniform", "data"))
        self.particles = None

    def _initialise(self, x_pos, gen):
        shape = (self.n_particles,) + tuple(x_pos.shape[1:])
        if self.init == "uniform":
            self.particles = _uniform(gen, shape, self.box, x_pos.dtype)
        else:
            reps = -(-self.n_particles // x_pos.shape[0])
            xp = backend.get_array_module(x_pos)
            self.particles = xp.concatenate([x_pos] * reps, axis=0)[: self.n_particles].copy()

    def __call__(self, energy, x_pos, sampler, k, gen):
        if self.particles is None:
            self._initialise(x_pos, gen)
        elif tuple(self.particles.shape[1:]) != tuple(x_pos.shape[1:]):
            raise ValueError(f"the data's states have shape {tuple(x_pos.shape[1:])} but the persistent "
                             f"particles have {tuple(self.particles.shape[1:])}")
        m = min(x_pos.shape[0], self.n_particles)
        if m == self.n_particles:
            idx = None
            start = self.particles
        else:
            idx = gen.permutation(self.n_particles)[:m]
            start = self.particles[idx]
        x, info = _run_sampler(sampler, energy, start, k, gen)
        if idx is None:
            self.particles = x.copy()
        else:
            self.particles[idx] = x
        return x, info

    def __repr__(self):
        return f"PersistentNegatives(n_particles={self.n_particles}, box={self.box}, init={self.init!r})"


class ReplayBuffer:
    """Du & Mordatch's replay buffer of past negatives.

    ``buffer`` holds ``size`` states, filled with uniform noise in ``box`` at the first call
    (JEM's choice; IGEBM fills its buffer as it goes). Each update draws a batch of indices
    uniformly (with replacement), restarts each drawn state from uniform noise in ``box`` with
    probability ``reinit_fraction`` (IGEBM and JEM: 0.05), runs k sampler steps from there and
    writes the results back at the drawn indices. ``last_reinitialised`` records how many were
    restarted in the last update.
    """

    name = "replay"

    def __init__(self, size=10000, reinit_fraction=0.05, box=(-4.0, 4.0)):
        self.size = check_int(size, "size")
        self.reinit_fraction = check_probability(reinit_fraction, "reinit_fraction")
        self.box = _check_box(box)
        self.buffer = None
        self.last_reinitialised = 0

    def __call__(self, energy, x_pos, sampler, k, gen):
        shape = tuple(x_pos.shape[1:])
        if self.buffer is None:
            self.buffer = _uniform(gen, (self.size,) + shape, self.box, x_pos.dtype)
        elif tuple(self.buffer.shape[1:]) != shape:
            raise ValueError(f"the data's states have shape {shape} but the buffer holds "
                             f"{tuple(self.buffer.shape[1:])}")
        xp = backend.get_array_module(x_pos)
        m = x_pos.shape[0]
        idx = gen.integers(0, self.size, size=m)
        start = self.buffer[idx]
        fresh = gen.random(m, dtype=x_pos.dtype) < self.reinit_fraction
        noise = _uniform(gen, start.shape, self.box, x_pos.dtype)
        start = xp.where(fresh.reshape((m,) + (1,) * len(shape)), noise, start)
        self.last_reinitialised = int(fresh.sum())
        x, info = _run_sampler(sampler, energy, start, k, gen)
        self.buffer[idx] = x
        return x, info

    def __repr__(self):
        return f"ReplayBuffer(size={self.size}, reinit_fraction={self.reinit_fraction}, box={self.box})"


class History(dict):
    """Per-step records of :func:`train_ebm`: ``loss``, ``energy_gap`` (mean E_data − mean
    E_samples), ``grad_norm`` (mean ‖∇ₓE‖ along the chains, when the sampler reports it),
    ``acceptance`` (when it reports one, else NaN), ``epoch`` and ``time``; plus ``steps``."""

    @property
    def steps(self):
        return len(self["loss"])

    @property
    def seconds(self):
        return self["time"][-1] if self["time"] else 0.0


def _params(energy):
    fn = getattr(energy, "parameters", None)
    return list(fn()) if callable(fn) else []


def train_ebm(energy, data, optimizer, method="cd", k=10, sampler=None, *, steps=None, epochs=None,
              batch_size=128, alpha=0.1, box=None, n_particles=None, buffer_size=10000,
              reinit_fraction=0.05, negatives=None, generator=None, progress=True, log_every=50,
              callback=None):
    """Train ``energy`` by maximum likelihood with MCMC negatives; returns a :class:`History`.

    One step::

        x₊ = next shuffled batch of data
        x₋ = negatives(energy, x₊, sampler, k)      # CD-k, PCD or the replay buffer; detached
        loss = mean E(x₊) − mean E(x₋) + α mean(E(x₊)² + E(x₋)²)
        optimizer.zero_grad(); loss.backward(); optimizer.step()

    Args:
        energy: a callable Tensor (N, D) → (N,) whose trainable parameters ``optimizer`` updates
            (an ``npjem.nn.Module``, usually).
        data: array or Tensor (n, D) of training states (on the energy's device).
        optimizer: an ``npjem.optim`` optimizer (``zero_grad()``, ``step()``).
        method: ``"cd"`` (chains from the data), ``"pcd"`` (persistent particles) or
            ``"replay"`` (Du & Mordatch's buffer). Ignored when ``negatives`` is given.
        k: sampler steps per update (≥ 1).
        sampler: ``sampler(energy, x, n_steps, generator, return_info=True) -> (x, info)``
            (:class:`~npjem.ebm.samplers.Langevin`, :class:`~npjem.ebm.samplers.MALA`);
            ``None`` means ``Langevin(step_size=0.01)`` (coupled noise, targets exp(−E)),
            clamped to ``box`` when one is given.
        steps, epochs: the budget, exactly one of them: optimizer steps in all, or passes over
            ``data`` (each a fresh shuffle, ⌊n / batch_size⌋ full batches).
        batch_size: data states per step (the negatives are as many).
        alpha: weight of the α(E₊² + E₋²) regulariser (≥ 0; IGEBM uses 1).
        box: ``(low, high)`` for uniform noise (PCD's start, the buffer's restarts); default
            the data's range widened by 10 % on each side.
        n_particles: PCD's number of persistent chains (default ``batch_size``).
        buffer_size, reinit_fraction: the replay buffer's size and restart probability.
        negatives: a :class:`CDNegatives`, :class:`PersistentNegatives` or :class:`ReplayBuffer`
            to use (and keep: its particles or buffer persist across calls), instead of a new
            one built from ``method``.
        generator: seed or generator on the data's device (batches, noise, chains).
        progress: a tqdm bar on a terminal, else a log line every ``log_every`` steps on stderr;
            ``False`` prints nothing.
        callback: ``callback(record)`` after every step with ``{"step", "epoch", "loss",
            "energy_gap", "grad_norm", "history", "negatives"}``; returning ``True`` stops.

    Raises ``FloatingPointError`` naming the step when the loss is NaN or infinite (before the
    update, so the parameters are those of the last good step).
    """
    if not callable(energy):
        raise TypeError(f"energy must be callable, got {type(energy).__name__}")
    for attr in ("zero_grad", "step"):
        if not callable(getattr(optimizer, attr, None)):
            raise TypeError(f"optimizer must have a {attr}() method, got {type(optimizer).__name__}")
    x_all = _raw(data, "data")
    if x_all.ndim < 2:
        raise ValueError(f"data must be a batch of states (n, D), got shape {tuple(x_all.shape)}")
    if np.dtype(x_all.dtype).kind != "f":
        raise ValueError(f"data must be a floating array, got dtype {x_all.dtype}")
    n = x_all.shape[0]
    batch_size = check_int(batch_size, "batch_size")
    if batch_size > n:
        raise ValueError(f"batch_size must be at most the number of data states ({n}), got {batch_size}")
    k = check_int(k, "k")
    alpha = check_positive(alpha, "alpha", allow_zero=True)
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps and epochs")
    per_epoch = n // batch_size
    if steps is not None:
        total = check_int(steps, "steps")
    else:
        total = check_int(epochs, "epochs") * per_epoch
    log_every = check_int(log_every, "log_every")
    progress = check_bool(progress, "progress")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
    params = _params(energy)
    if params:
        dev = params[0].device
        if backend.device_of(x_all) != dev:
            x_all = backend.to_device(x_all, dev)
        if x_all.dtype != params[0].dtype:
            x_all = x_all.astype(params[0].dtype)
    gen = nrandom.as_generator(generator, backend.device_of(x_all))
    if box is None:
        lo, hi = float(x_all.min()), float(x_all.max())
        pad = 0.1 * max(hi - lo, 1e-12)
        box = (lo - pad, hi + pad)
    box = _check_box(box)
    if sampler is None:
        sampler = Langevin(step_size=0.01, clamp=box)
    elif not callable(sampler):
        raise TypeError(f"sampler must be callable, got {type(sampler).__name__}")
    if negatives is None:
        method = check_choice(method, "method", ("cd", "pcd", "replay"))
        if method == "cd":
            negatives = CDNegatives()
        elif method == "pcd":
            negatives = PersistentNegatives(batch_size if n_particles is None else n_particles, box=box)
        else:
            negatives = ReplayBuffer(buffer_size, reinit_fraction, box=box)
    elif not callable(negatives):
        raise TypeError(f"negatives must be callable, got {type(negatives).__name__}")

    history = History(loss=[], energy_gap=[], grad_norm=[], acceptance=[], epoch=[], time=[])
    name = type(energy).__name__
    bar = None
    if progress and sys.stderr.isatty():
        from tqdm.auto import tqdm  # noqa: PLC0415  (only when a bar is shown)

        bar = tqdm(total=total, desc=f"{name} {getattr(negatives, 'name', '')}".strip(), unit="step")
    start_time = time.perf_counter()
    if hasattr(energy, "train") and callable(energy.train):
        energy.train()
    step = 0
    epoch = 0
    try:
        while step < total:
            order = gen.permutation(n)
            for b in range(per_epoch):
                x_pos = x_all[order[b * batch_size:(b + 1) * batch_size]]
                x_neg, info = negatives(energy, x_pos, sampler, k, gen)
                e_pos = energy(Tensor(x_pos))
                e_neg = energy(Tensor(x_neg))
                loss = contrastive_divergence_loss(e_pos, e_neg, alpha)
                value = float(loss.item())
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"the loss is {value} at step {step} (epoch {epoch}, 0-based); lower the "
                        "learning rate or the sampler's step size, or raise alpha")
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                gap = float(e_pos.data.mean() - e_neg.data.mean())
                gnorm = info.get("grad_norm") or []
                gnorm = sum(gnorm) / len(gnorm) if gnorm else float("nan")
                acc = info.get("acceptance", float("nan"))
                history["loss"].append(value)
                history["energy_gap"].append(gap)
                history["grad_norm"].append(gnorm)
                history["acceptance"].append(float(acc))
                history["epoch"].append(epoch)
                history["time"].append(time.perf_counter() - start_time)
                step += 1
                if progress and (step % log_every == 0 or step == 1 or step == total):
                    recent = history["loss"][-log_every:]
                    avg = sum(recent) / len(recent)
                    if bar is not None:
                        bar.set_postfix(loss=f"{avg:.4f}", gap=f"{gap:.3f}", grad=f"{gnorm:.3g}", refresh=False)
                    else:
                        print(f"{name} {getattr(negatives, 'name', '')} step {step}/{total} epoch {epoch}: "
                              f"loss {avg:.4f} E_data-E_samples {gap:.3f} |grad_x E| {gnorm:.3g} "
                              f"({history['time'][-1]:.0f}s)", file=sys.stderr, flush=True)
                if bar is not None:
                    bar.update(1)
                stop = False
                if callback is not None:
                    record = {"step": step - 1, "epoch": epoch, "loss": value, "energy_gap": gap,
                              "grad_norm": gnorm, "history": history, "negatives": negatives}
                    stop = callback(record) is True
                if stop:
                    total = step
                if step >= total:
                    break
            epoch += 1
    finally:
        if bar is not None:
            bar.close()
    return history
