"""MCMC samplers for energy-based models: Langevin dynamics, MALA, Metropolis–Hastings, block Gibbs.

An energy here is any callable ``E`` that maps a Tensor of states ``x`` of shape (N, D) (or
(N, ...)) to a Tensor of N energies; the chains target the Gibbs density p(x) ∝ exp(−E(x)).
Every sampler takes the energy, a start (an array or a Tensor; its array module decides the
device) and a ``generator`` (a seed or an :mod:`npjem.random` generator on that device), runs
``n_steps`` steps on all N chains at once, and returns the final states as a Tensor that
carries no graph. With ``return_info=True`` it returns ``(x, info)``, where ``info`` holds the
diagnostics the literature watches along the chain:

* ``"grad_norm"``: the mean over chains of ‖∇ₓE‖ at each step (Langevin, MALA);
* ``"energy"``: the mean energy of the chains after each step;
* ``"acceptance"``: the fraction of accepted proposals over all steps and chains (MALA,
  Metropolis–Hastings), and ``"acceptance_per_step"``.

A sampler never records a graph for the energy's parameters: ∇ₓE is taken with
``npjem.grad(E(x).sum(), x)`` on a fresh leaf ``x``, which computes the gradient of ``x`` only
and never touches a parameter's ``.grad``; energies for accept/reject steps are evaluated under
``no_grad``. Training code can therefore sample between ``zero_grad`` and ``backward``.

Langevin dynamics, two parametrisations::

    x ← x − η ∇ₓE(x) + σ ξ,   ξ ~ N(0, I)

* coupled (``noise_scale=None``): σ = √(2η), the unadjusted Langevin algorithm (ULA). It
  targets exp(−E) up to an O(η) bias: on E = x²/(2s²) the stationary variance is
  s² / (1 − η/(2s²)); it diverges when η > 2/λ_max(∇²E). Written with ε = σ it is the
  textbook x ← x − (ε²/2)∇E + εξ.
* decoupled (``noise_scale`` given): image EBMs take a large step on the gradient and little
  noise, which targets exp(−E/T) with temperature T = σ²/(2η), nearly noiseless descent:

  ==================================  =====================  ===============  ================
  reference code                      step η                 noise σ          ∇ₓE clip
  ==================================  =====================  ===============  ================
  IGEBM (Du & Mordatch 2019), CIFAR   10, 60 steps           0.005            0.01 elementwise
  JEM (Grathwohl et al. 2019)         1, 20 steps            0.01             none
  short-run (Nijkamp et al. 2019)     1, 100 steps           0.01             none
  ==================================  =====================  ===============  ================

  IGEBM's ``train.py`` adds the noise *before* taking ∇ₓE (x̃ = x + σξ, x ← x̃ − η∇ₓE(x̃)), JEM
  and the short-run code after it; ``noise_first=True`` selects IGEBM's order.

MALA adds a Metropolis–Hastings correction to the coupled Langevin proposal, which removes the
O(η) bias; its acceptance rate tends to one as η shrinks. Metropolis–Hastings with single-bit
flips samples an energy over binary states {0, 1}^D; block Gibbs alternates the two
conditionals of a restricted Boltzmann machine.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from .. import random as nrandom
from .._checks import check_bool, check_int, check_positive, check_real
from ..autograd import Tensor, grad, no_grad

__all__ = [
    "energy_and_grad", "langevin", "mala", "metropolis_hastings", "block_gibbs",
    "Langevin", "MALA", "MetropolisHastings",
]


# ---------------------------------------------------------------------------------- helpers

def _start(x, name="x"):
    """The raw float array behind a start given as an array or a Tensor (a copy: never aliased)."""
    if isinstance(x, Tensor):
        a = x.data
    elif backend.is_array(x):
        a = x
    else:
        raise TypeError(f"{name} must be an array or a Tensor, got {type(x).__name__}")
    if a.ndim < 2:
        raise ValueError(f"{name} must hold a batch of states, shape (N, D) or (N, ...), got shape {tuple(a.shape)}")
    if a.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one chain, got shape {tuple(a.shape)}")
    if np.dtype(a.dtype).kind != "f":
        raise ValueError(f"{name} must be a floating array, got dtype {a.dtype}")
    return a.copy()


def _generator(generator, a):
    """A generator on the device of ``a`` (a seed becomes one there)."""
    device = backend.device_of(a)
    gen = nrandom.as_generator(generator, device)
    if gen.xp is not backend.get_array_module(a):
        raise ValueError(f"generator draws on {gen.device!r} but the chains live on {device!r}; "
                         "pass a generator made for the chains' device")
    return gen


def _energy_values(energy, t, n):
    e = energy(t)
    if not isinstance(e, Tensor):
        raise TypeError(f"energy must return a Tensor, got {type(e).__name__}")
    if tuple(e.shape) != (n,):
        raise ValueError(f"energy must return one value per state, shape ({n},), got {tuple(e.shape)}")
    return e


def energy_and_grad(energy, x):
    """E(x) and ∇ₓE(x) as raw arrays, without recording a graph for the energy's parameters.

    ``x`` is a raw array of N states; the gradient is taken on a fresh leaf with
    ``npjem.grad(E(x).sum(), x)``, so no parameter's ``.grad`` is written.
    """
    leaf = Tensor(x, requires_grad=True)
    e = _energy_values(energy, leaf, x.shape[0])
    if not e.requires_grad:
        raise ValueError("energy(x) does not depend on x (its output requires no gradient); "
                         "a gradient-based sampler needs a differentiable energy")
    (g,) = grad(e.sum(), leaf)
    return e.data, g.data


def _energy_no_grad(energy, x):
    with no_grad():
        return _energy_values(energy, Tensor(x), x.shape[0]).data


def _row_norm(g, xp):
    return xp.sqrt((g.reshape(g.shape[0], -1) ** 2).sum(axis=1))


def _check_box(clamp):
    if clamp is None:
        return None
    try:
        lo, hi = clamp
    except (TypeError, ValueError):
        raise ValueError(f"clamp must be None or a pair (low, high), got {clamp!r}") from None
    lo, hi = check_real(lo, "clamp[0]"), check_real(hi, "clamp[1]")
    if not lo < hi:
        raise ValueError(f"clamp must satisfy low < high, got {clamp!r}")
    return lo, hi


def _done(x, info, return_info):
    out = Tensor(x)
    return (out, info) if return_info else out


# ---------------------------------------------------------------------------------- Langevin

def langevin(energy, x, n_steps, step_size, noise_scale=None, generator=None, *, grad_clip=None,
             clamp=None, noise_first=False, return_info=False):
    """Langevin dynamics x ← x − η∇ₓE(x) + σξ on N parallel chains started at ``x``.

    Args:
        energy: callable, Tensor (N, D) → Tensor (N,).
        x: the start, an array or Tensor (N, D) (or (N, ...)); its device and dtype are kept.
        n_steps: number of steps (≥ 0; 0 returns the start).
        step_size: η > 0, the step on −∇ₓE.
        noise_scale: σ ≥ 0. ``None`` couples it to the step, σ = √(2η) (the unadjusted Langevin
            algorithm, which targets exp(−E)); a number decouples them as image EBMs do
            (target exp(−E/T), T = σ²/(2η)).
        generator: seed or :class:`npjem.random.Generator` on the chains' device.
        grad_clip: clip every component of ∇ₓE to [−c, c] before the step (IGEBM's
            ``proj_norm``), bounding each move to η·c plus noise; ``None`` for no clip.
        clamp: ``(low, high)``: clamp the states into this box after every step (IGEBM clamps
            images to [0, 1]); ``None`` for no clamp.
        noise_first: where the noise goes in a step. ``False`` (default): after the gradient
            step, x ← x − η∇ₓE(x) + σξ, as JEM's ``sample_q`` and Nijkamp et al.'s short-run
            and ``ebm-anatomy`` code. ``True``: before it, x̃ = x + σξ, x ← x̃ − η∇ₓE(x̃), as
            Du & Mordatch's IGEBM ``train.py`` (the gradient is taken at the noisy point, so
            each step ends on a descent step). The same noise gives different samples, but
            without ``clamp`` it is one Markov chain looked at in two places: the default's
            states are IGEBM's plus the next step's noise.
        return_info: also return the diagnostics dict (``grad_norm`` — mean ‖∇ₓE‖ before
            clipping — and ``energy``, one entry per step, both at the point where ∇ₓE is
            taken).
    """
    n_steps = check_int(n_steps, "n_steps", minimum=0)
    eta = check_positive(step_size, "step_size")
    sigma = math.sqrt(2.0 * eta) if noise_scale is None else check_positive(noise_scale, "noise_scale",
                                                                             allow_zero=True)
    clip = None if grad_clip is None else check_positive(grad_clip, "grad_clip")
    box = _check_box(clamp)
    noise_first = check_bool(noise_first, "noise_first")
    return_info = check_bool(return_info, "return_info")
    x = _start(x)
    xp = backend.get_array_module(x)
    gen = _generator(generator, x)
    info = {"grad_norm": [], "energy": []}
    for _ in range(n_steps):
        if noise_first and sigma > 0:
            x = x + sigma * gen.standard_normal(x.shape, dtype=x.dtype)
        e, g = energy_and_grad(energy, x)
        if return_info:  # float() waits for a GPU at every step: only when asked for
            info["grad_norm"].append(float(_row_norm(g, xp).mean()))
        if clip is not None:
            g = xp.clip(g, -clip, clip)
        x = x - eta * g
        if not noise_first and sigma > 0:
            x = x + sigma * gen.standard_normal(x.shape, dtype=x.dtype)
        if box is not None:
            x = xp.clip(x, box[0], box[1])
        if return_info:
            info["energy"].append(float(e.mean()))
    return _done(x, info, return_info)


# ---------------------------------------------------------------------------------- MALA

def mala(energy, x, n_steps, step_size, generator=None, *, return_info=False):
    """The Metropolis-adjusted Langevin algorithm on N parallel chains started at ``x``.

    Proposal y = x − η∇E(x) + √(2η)ξ, with log q(y | x) = −‖y − x + η∇E(x)‖² / (4η) + const;
    accepted with probability min(1, exp(E(x) − E(y) + log q(x | y) − log q(y | x))), per
    chain. The chain then targets exp(−E) exactly, for any η; the acceptance rate (in
    ``info["acceptance"]``) tends to one as η → 0 and falls as η grows (tune η for ≈ 0.57 in
    high dimension).

    Args as :func:`langevin` (no decoupled noise, clipping or clamping: each would break the
    detailed balance that the correction restores). ``info`` holds ``acceptance``,
    ``acceptance_per_step``, ``grad_norm`` and ``energy``.
    """
    n_steps = check_int(n_steps, "n_steps", minimum=0)
    eta = check_positive(step_size, "step_size")
    return_info = check_bool(return_info, "return_info")
    x = _start(x)
    xp = backend.get_array_module(x)
    gen = _generator(generator, x)
    n = x.shape[0]
    info = {"grad_norm": [], "energy": [], "acceptance_per_step": []}
    e_x, g_x = energy_and_grad(energy, x) if n_steps else (None, None)
    for _ in range(n_steps):
        info["grad_norm"].append(float(_row_norm(g_x, xp).mean()))
        y = x - eta * g_x + math.sqrt(2.0 * eta) * gen.standard_normal(x.shape, dtype=x.dtype)
        e_y, g_y = energy_and_grad(energy, y)
        fwd = ((y - x + eta * g_x).reshape(n, -1) ** 2).sum(axis=1)   # −4η log q(y|x)
        bwd = ((x - y + eta * g_y).reshape(n, -1) ** 2).sum(axis=1)   # −4η log q(x|y)
        log_alpha = (e_x - e_y) + (fwd - bwd) / (4.0 * eta)
        # log u < log α with u ~ U(0, 1]; 1 − U[0,1) is never 0, so log is finite.
        u = 1.0 - gen.random(n, dtype=x.dtype)
        accept = xp.log(u) < log_alpha
        shape = (n,) + (1,) * (x.ndim - 1)
        x = xp.where(accept.reshape(shape), y, x)
        g_x = xp.where(accept.reshape(shape), g_y, g_x)
        e_x = xp.where(accept, e_y, e_x)
        info["acceptance_per_step"].append(float(accept.mean()))
        info["energy"].append(float(e_x.mean()))
    steps = info["acceptance_per_step"]
    info["acceptance"] = sum(steps) / len(steps) if steps else float("nan")
    return _done(x, info, return_info)


# ---------------------------------------------------------------------------------- binary MH

def metropolis_hastings(energy, x, n_steps, generator=None, *, return_info=False):
    """Metropolis–Hastings with single-bit flips for an energy over binary states {0, 1}^D.

    At each step every chain proposes flipping one bit chosen uniformly at random (a symmetric
    proposal) and accepts with probability min(1, exp(E(x) − E(x'))). ``n_steps`` counts
    proposals per chain (D of them make one sweep). Energies are evaluated under ``no_grad``.

    Args as :func:`langevin`; ``x`` must hold only 0s and 1s (a floating array). ``info``
    holds ``acceptance``, ``acceptance_per_step`` and ``energy``.
    """
    n_steps = check_int(n_steps, "n_steps", minimum=0)
    return_info = check_bool(return_info, "return_info")
    x = _start(x)
    xp = backend.get_array_module(x)
    if not bool(((x == 0) | (x == 1)).all()):
        raise ValueError("x must hold binary states (only 0s and 1s)")
    gen = _generator(generator, x)
    n = x.shape[0]
    flat = x.reshape(n, -1)
    d = flat.shape[1]
    rows = xp.arange(n)
    info = {"energy": [], "acceptance_per_step": []}
    e_x = _energy_no_grad(energy, x) if n_steps else None
    for _ in range(n_steps):
        j = gen.integers(0, d, size=n)
        prop = flat.copy()
        prop[rows, j] = 1.0 - prop[rows, j]
        e_p = _energy_no_grad(energy, prop.reshape(x.shape))
        u = 1.0 - gen.random(n, dtype=x.dtype)
        accept = xp.log(u) < (e_x - e_p)
        flat = xp.where(accept[:, None], prop, flat)
        e_x = xp.where(accept, e_p, e_x)
        info["acceptance_per_step"].append(float(accept.mean()))
        info["energy"].append(float(e_x.mean()))
    steps = info["acceptance_per_step"]
    info["acceptance"] = sum(steps) / len(steps) if steps else float("nan")
    return _done(flat.reshape(x.shape), info, return_info)


# ---------------------------------------------------------------------------------- block Gibbs

def _rbm_method(rbm, *names):
    for name in names:
        fn = getattr(rbm, name, None)
        if callable(fn):
            return fn
    raise TypeError(f"rbm must have a method {' or '.join(names)} (a Bernoulli RBM's conditional), "
                    f"got {type(rbm).__name__}")


def _probabilities(p):
    return p.data if isinstance(p, Tensor) else p


def block_gibbs(rbm, v, n_steps, generator=None, *, return_info=False):
    """Block Gibbs sampling of a Bernoulli–Bernoulli RBM: h ~ P(h | v), then v ~ P(v | h).

    All hidden units are independent given the visible ones and vice versa, so one step draws
    a whole layer at once. ``rbm`` supplies the two conditionals as probabilities,
    ``mean_hiddens(v)`` = P(h = 1 | v) and ``mean_visibles(h)`` = P(v = 1 | h) (the names of
    :class:`npjem.ebm.BernoulliRBM` and scikit-learn's), as arrays or Tensors; the Bernoulli
    draws are made here with ``generator``. ``n_steps`` full v → h → v sweeps are run from
    ``v``; the returned Tensor holds binary visible states, and ``info`` (with
    ``return_info``) holds ``"h"``, the last hidden sample, so (v, h) is a draw of the joint
    chain. (:meth:`BernoulliRBM.sample` runs the same sweeps on the RBM's own generator.)
    """
    n_steps = check_int(n_steps, "n_steps", minimum=0)
    return_info = check_bool(return_info, "return_info")
    prob_h = _rbm_method(rbm, "mean_hiddens")
    prob_v = _rbm_method(rbm, "mean_visibles")
    v = _start(v, "v")
    gen = _generator(generator, v)
    h = None
    for _ in range(n_steps):
        ph = _probabilities(prob_h(v))
        h = (gen.random(ph.shape, dtype=ph.dtype) < ph).astype(ph.dtype)
        pv = _probabilities(prob_v(h))
        v = (gen.random(pv.shape, dtype=pv.dtype) < pv).astype(pv.dtype)
    info = {"h": None if h is None else Tensor(h)}
    return _done(v, info, return_info)


# ---------------------------------------------------------------------------------- configured samplers

class Langevin:
    """Langevin dynamics with fixed settings: ``Langevin(step_size, noise_scale, grad_clip, clamp,
    noise_first)`` (see :func:`langevin`; ``noise_first=True`` is IGEBM's order).

    Calling it as ``sampler(energy, x, n_steps, generator, return_info=False)`` runs
    :func:`langevin`; training procedures (:func:`npjem.ebm.training.train_ebm`) take one.
    """

    def __init__(self, step_size, noise_scale=None, grad_clip=None, clamp=None, noise_first=False):
        self.step_size = check_positive(step_size, "step_size")
        self.noise_scale = None if noise_scale is None else check_positive(noise_scale, "noise_scale",
                                                                           allow_zero=True)
        self.grad_clip = None if grad_clip is None else check_positive(grad_clip, "grad_clip")
        self.clamp = _check_box(clamp)
        self.noise_first = check_bool(noise_first, "noise_first")

    def __call__(self, energy, x, n_steps, generator=None, return_info=False):
        return langevin(energy, x, n_steps, self.step_size, self.noise_scale, generator,
                        grad_clip=self.grad_clip, clamp=self.clamp, noise_first=self.noise_first,
                        return_info=return_info)

    def __repr__(self):
        return (f"Langevin(step_size={self.step_size}, noise_scale={self.noise_scale}, "
                f"grad_clip={self.grad_clip}, clamp={self.clamp}, noise_first={self.noise_first})")


class MALA:
    """MALA with a fixed step: ``MALA(step_size)(energy, x, n_steps, generator, return_info)``."""

    def __init__(self, step_size):
        self.step_size = check_positive(step_size, "step_size")

    def __call__(self, energy, x, n_steps, generator=None, return_info=False):
        return mala(energy, x, n_steps, self.step_size, generator, return_info=return_info)

    def __repr__(self):
        return f"MALA(step_size={self.step_size})"


class MetropolisHastings:
    """Single-bit-flip Metropolis–Hastings as a sampler object (binary states)."""

    def __call__(self, energy, x, n_steps, generator=None, return_info=False):
        return metropolis_hastings(energy, x, n_steps, generator, return_info=return_info)

    def __repr__(self):
        return "MetropolisHastings()"
