"""Regularised latent-variable EBMs: K-means, sparse coding (ISTA, FISTA, LISTA), the VAE.

An energy E(y, z) over data y and a latent z gives the free energy F(y) = min_z E(y, z). Left
alone, a flexible decoder gives every y zero energy (any y is reconstructed by some z). The
models here need no contrastive term because the *architecture or a regulariser limits the
volume of low energy* (the NYU Deep Learning course's week-8 notes):

* K-means: z is one-hot, so only the K prototypes have zero energy, F(y) = min_k ‖y − w_k‖².
* Sparse coding: E(y, z) = ½‖y − Wz‖² + λ‖z‖₁; the L1 penalty keeps the number of active
  atoms, hence the dimension of the low-energy set, small. F(y) is a Lasso problem, solved by
  ISTA / FISTA, or amortised by a learned encoder (LISTA).
* The VAE: z is not minimised over but sampled around the encoder's output ("fuzzy balls"),
  and the KL term keeps the balls from shrinking to points or drifting away; its free energy
  F(y) = E_q[−log p(y|z)] + KL(q(z|y) ‖ N(0, I)) = −ELBO ≥ −log p(y).

All three are trained by pushing the energy of the data down only.

Errata in the NYU Deep Learning notes of spring 2020, week 8, the sparse-coding lecture (08-2),
sections "Sparse Coding" and "LISTA", corrected here: the sparse-coding energy carries the ½ (the ISTA step
1/L, with L = λ_max(WᵀW), is the Lipschitz constant of ∇ of ½‖y − Wz‖²), and LISTA's update is
z ← Shrink(W_eᵀy **+** S z), S = I − WᵀW/L (the notes print "− S z", which is not ISTA).

Shapes: data y is (N, D); a dictionary W is (D, K), its columns are the atoms; codes z are
(N, K), so a reconstruction is z Wᵀ.
"""
from __future__ import annotations

import math
import sys
import time
import warnings

import numpy as np

from ..losses._inputs import batch
from .. import backend
from .. import random as nrandom
from .._checks import (ArgumentTypeError, check_bool, check_choice, check_estimator_input, check_int,
                       check_positive, check_shape)
from ..exceptions import ConvergenceWarning
from ..autograd import functional as F
from ..autograd import ops
from ..autograd.tensor import Tensor, grad, no_grad
from ..nn import Linear, Module, Parameter, Sequential, SiLU, Tanh

__all__ = [
    "KMeansEnergy", "shrink", "sparse_coding_energy", "lipschitz_constant", "ista", "fista", "LISTA",
    "fit_lista", "dictionary_learning", "gaussian_kl", "VAE",
]


# ------------------------------------------------------------------ helpers

def _batch(value, name="y"):
    """``value`` as a floating Tensor (N, D), N, D >= 1: integer arrays become float64 and sparse
    matrices are refused with a hint (:func:`npjem._checks.check_estimator_input`)."""
    return batch(name, check_estimator_input(value, name))


def _dictionary(W, y, name="W"):
    W = _batch(W, name)
    if W.shape[0] != y.shape[1]:
        raise ValueError(f"{name} must have shape (D, K) with D = {y.shape[1]} rows (the columns of y), "
                         f"got {tuple(W.shape)}")
    if W.device != y.device or W.dtype != y.dtype:
        raise ValueError(f"{name} ({W.dtype} on {W.device}) must match y ({y.dtype} on {y.device})")
    return W


class _Progress:
    """A tqdm bar on a terminal, a line to stderr every ``log_every`` steps otherwise."""

    def __init__(self, total, desc, show, log_every):
        self.show, self.desc, self.log_every, self.bar = show, desc, log_every, None
        if show and sys.stderr.isatty():
            from tqdm.auto import tqdm  # noqa: PLC0415  (only when a bar is shown)

            self.bar = tqdm(total=total, desc=desc, unit="it")

    def update(self, step, **values):
        if not self.show:
            return
        text = " ".join(f"{k}={v:.5g}" for k, v in values.items())
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(text, refresh=False)
        elif step % self.log_every == 0:
            print(f"{self.desc} {step}: {text}", file=sys.stderr)

    def close(self):
        if self.bar is not None:
            self.bar.close()


# ------------------------------------------------------------------ K-means

class KMeansEnergy(Module):
    """K-means read as an energy: E(y, z) = ‖y − Wz‖² with z one-hot, F(y) = min_k ‖y − w_k‖².

    Only the K prototypes w_k (rows of ``weight``, shape (K, D)) have zero energy, and the energy
    grows quadratically around each: the low-energy volume is limited by construction, so
    training only pushes the energy of the data down, either by Lloyd's coordinate descent
    (assign, then move each prototype to its points' mean) or by gradient descent through the
    min (its gradient reaches only the winning prototype). Both never increase Σ F(y_i)
    (gradient steps with ``lr <= 1/2`` on the mean energy).

    ``forward(y)`` returns F(y), shape (N,); ``forward(y, beta)`` the soft-min free energy
    −(1/β) log (1/K) Σ_k exp(−β‖y − w_k‖²), which tends to the min as β → ∞.
    """

    def __init__(self, n_clusters, n_features, device=None, dtype=None, generator=None):
        super().__init__()
        self.n_clusters = check_int(n_clusters, "n_clusters")
        self.n_features = check_int(n_features, "n_features")
        xp = backend.xp_for_device(device)
        dt = np.dtype(backend.default_dtype() if dtype is None else dtype)
        g = nrandom.as_generator(generator, backend.normalize_device(device))
        self.weight = Parameter(xp.asarray(g.standard_normal((self.n_clusters, self.n_features), dtype=dt)))

    def _check(self, y):
        y = _batch(y)
        if y.shape[1] != self.n_features:
            raise ValueError(f"y must have {self.n_features} features (n_features), got shape {tuple(y.shape)}")
        return y

    def distances(self, y):
        """‖y_i − w_k‖², shape (N, K) (computed from differences: exact, never negative)."""
        y = self._check(y)
        diff = ops.unsqueeze(y, 1) - ops.unsqueeze(self.weight, 0)
        return (diff * diff).sum(axis=2)

    def forward(self, y, beta=None):
        d = self.distances(y)
        if beta is None:
            return d.min(axis=1)
        beta = check_positive(beta, "beta")
        return -(F.logsumexp(-beta * d, axis=1) - math.log(self.n_clusters)) * (1.0 / beta)

    def assign(self, y):
        """The index of each point's nearest prototype, an integer array (N,)."""
        with no_grad():
            return self.distances(y).data.argmin(axis=1)

    def _sample_weight(self, y, sample_weight):
        """``sample_weight`` as an array (N,) in y's dtype on y's device; None stays None (unit weights)."""
        if sample_weight is None:
            return None
        w = sample_weight.data if isinstance(sample_weight, Tensor) else sample_weight
        w = backend.asarray(check_estimator_input(w, "sample_weight"), device=y.device)
        check_shape(w, "sample_weight", (y.shape[0],))
        w = w.astype(y.dtype, copy=False)
        lo, total = float(w.min()), float(w.sum())
        if not math.isfinite(total) or lo < 0 or total <= 0:
            raise ValueError("sample_weight must be finite and non-negative with a positive sum, "
                             f"got values in [{lo}, {float(w.max())}]")
        return w

    def _check_enough_points(self, y, w):
        if y.shape[0] < self.n_clusters:
            raise ValueError(f"y must hold at least n_clusters = {self.n_clusters} points, got {y.shape[0]}")
        if w is not None and int((w > 0).sum()) < self.n_clusters:
            raise ValueError(f"sample_weight must give at least n_clusters = {self.n_clusters} points a "
                             f"positive weight, got {int((w > 0).sum())}")

    @staticmethod
    def _equal(w):
        """No weights, or all equal: a draw ∝ w is uniform, and takes the unweighted draws so that
        unit (or constant) weights give the unweighted fit exactly, as in scikit-learn."""
        return w is None or bool((w == w[0]).all())

    @staticmethod
    def _host_choice(p, g, size=None, replace=True):
        """Indices drawn ∝ the host probabilities ``p``, seeded from ``g`` (a categorical draw
        over N points: the host does it on either device)."""
        return np.random.default_rng(int(g.integers(0, 2**31 - 1))).choice(p.size, size, replace, p=p)  # host

    def init_kmeans_plusplus(self, y, generator=None, sample_weight=None):
        """k-means++ seeding (Arthur & Vassilvitskii 2007): each new prototype is a data point
        drawn with probability ∝ its squared distance to the nearest chosen one (times its
        ``sample_weight``; the first one ∝ the weight, uniformly without weights)."""
        y = self._check(y)
        w = self._sample_weight(y, sample_weight)
        self._check_enough_points(y, w)
        g = nrandom.as_generator(generator, y.device)
        xp, a = y.xp, y.data
        pw = None if w is None else backend.to_numpy(w).astype(np.float64)  # host
        if self._equal(w):
            first = int(g.integers(0, a.shape[0]))
        else:
            first = int(self._host_choice(pw / pw.sum(), g))
        chosen = [first]
        d2 = ((a - a[chosen[0]]) ** 2).sum(axis=1)
        for _ in range(1, self.n_clusters):
            p = backend.to_numpy(d2 if w is None else d2 * w)  # host: a categorical draw over N points
            total = p.sum()
            if total > 0:
                p = p / total
            else:  # every point sits on a chosen one: any point will do (a weighted one)
                p = np.full(p.shape, 1.0 / p.size) if w is None else pw / pw.sum()  # host
            k = int(self._host_choice(p, g))
            chosen.append(k)
            d2 = xp.minimum(d2, ((a - a[k]) ** 2).sum(axis=1))
        self.weight.data = a[xp.asarray(chosen)].astype(self.weight.dtype, copy=True)
        return self

    def init_random(self, y, generator=None, sample_weight=None):
        """scikit-learn's ``init="random"``: K distinct data points drawn uniformly (∝ their
        ``sample_weight`` when given) become the prototypes."""
        y = self._check(y)
        w = self._sample_weight(y, sample_weight)
        self._check_enough_points(y, w)
        g = nrandom.as_generator(generator, y.device)
        xp, a = y.xp, y.data
        if self._equal(w):
            idx = g.permutation(a.shape[0])[:self.n_clusters]
        else:
            p = backend.to_numpy(w).astype(np.float64)  # host
            idx = self._host_choice(p / p.sum(), g, size=self.n_clusters, replace=False)
        self.weight.data = a[xp.asarray(idx)].astype(self.weight.dtype, copy=True)
        return self

    def _relocate_empty(self, a, z, w, counts, sums):
        """Give each empty cluster (zero total weight) the point farthest from its own prototype,
        taken out of that point's cluster, as scikit-learn's Lloyd does: a prototype left in
        place would stay empty for good. ``counts`` and ``sums`` are updated in place."""
        xp = backend.get_array_module(a)
        empty = np.flatnonzero(backend.to_numpy(counts <= 0))  # host: a handful of indices
        if empty.size == 0:
            return
        diff = a - self.weight.data[z]
        dist = (diff * diff).sum(axis=1)
        if w is not None:  # a point of weight zero cannot hold a cluster
            dist = xp.where(w > 0, dist, -1.0)
        far = backend.to_numpy(xp.argsort(-dist)[:empty.size])  # host: farthest first
        for j, i in zip(empty.tolist(), far.tolist()):
            if float(dist[i]) < 0:
                break
            old = int(z[i])
            moved, mass = (a[i], 1.0) if w is None else (a[i] * w[i], w[i])
            sums[old] -= moved
            counts[old] -= mass
            sums[j] = moved
            counts[j] = mass

    def lloyd_step(self, y, sample_weight=None):
        """One Lloyd iteration: assign each point, move each prototype to its points' (weighted)
        mean; an empty cluster takes the point farthest from its prototype (scikit-learn's
        relocation). Returns the assignments (before the relocation)."""
        y = self._check(y)
        w = self._sample_weight(y, sample_weight)
        xp, a = y.xp, y.data
        z = self.assign(y)
        onehot = (z[:, None] == xp.arange(self.n_clusters)[None, :]).astype(y.dtype)
        if w is None:
            counts, sums = onehot.sum(axis=0), onehot.T @ a
        else:
            counts, sums = w @ onehot, onehot.T @ (a * w[:, None])
        self._relocate_empty(a, z, w, counts, sums)
        keep = counts <= 0  # emptied by a relocation (its only point moved): stays
        self.weight.data = xp.where(keep[:, None], self.weight.data, sums / xp.where(keep, 1, counts)[:, None])
        return z

    @property
    def cluster_centers_(self):
        """The prototypes (K, D), scikit-learn's name for ``weight``."""
        return self.weight.data

    def _mean_energy(self, y, w):
        with no_grad():
            f = self(y)
            return float(f.mean().item()) if w is None else float((f.data * w).sum() / w.sum())

    def _descend(self, y, w, n_iter, method, lr, tol):
        """One run from the current prototypes: (mean energy before each step and after the
        last, whether the decrease fell to ``tol`` before ``n_iter`` steps)."""
        history = [self._mean_energy(y, w)]
        for _ in range(n_iter):
            if method == "lloyd":
                self.lloyd_step(y, w)
            else:
                f = self(y)
                loss = f.mean() if w is None else (f * Tensor(w)).sum() * (1.0 / float(w.sum()))
                (g,) = grad(loss, self.weight)
                self.weight.data = self.weight.data - lr * g.data
            history.append(self._mean_energy(y, w))
            if history[-2] - history[-1] <= tol:
                return history, True
        return history, False

    def fit(self, y, n_iter=100, method="lloyd", lr=0.5, init="k-means++", tol=0.0, generator=None, n_init=1,
            sample_weight=None):
        """Push the energy of ``y`` down; returns ``{"energy": [mean F(y) before each step and after the last]}``.

        ``method="lloyd"`` (coordinate descent, which the NYU notes of spring 2020, week 7, "Latent Variable EBM example: K-means", find "better and faster") or ``"gradient"``
        (a step of ``lr`` on the mean energy, its gradient taken by the engine through the
        min). ``init``: ``"k-means++"`` or ``"random"`` (K distinct data points) seed the
        prototypes from the data first, ``None`` keeps them. A run stops when the energy
        decreases by less than ``tol`` in a step; one that reaches ``n_iter`` steps first warns
        with :class:`npjem.ConvergenceWarning`.

        ``n_init`` runs from as many seedings (drawn in turn from ``generator``) and keeps the one
        of lowest energy (scikit-learn's inertia), whose history is returned. ``sample_weight``
        (N,) weighs each point in the energy, the seeding and the means (an integer weight is the
        point repeated). Afterwards ``inertia_`` = Σ_i w_i F(y_i), ``n_iter_`` (steps of the kept
        run) and ``labels_`` (the nearest prototype of each point) are set, as in scikit-learn.
        """
        y = self._check(y)
        n_iter = check_int(n_iter, "n_iter")
        check_choice(method, "method", ("lloyd", "gradient"))
        check_choice(init, "init", ("k-means++", "random", None))
        lr = check_positive(lr, "lr")
        tol = check_positive(tol, "tol", allow_zero=True)
        n_init = check_int(n_init, "n_init")
        w = self._sample_weight(y, sample_weight)
        if init is None and n_init > 1:
            warnings.warn(f"init=None starts every run from the same prototypes: n_init={n_init} would "
                          "repeat one run, so it runs once", RuntimeWarning, stacklevel=2)
            n_init = 1
        g = nrandom.as_generator(generator, y.device)
        best = None
        for _ in range(n_init):
            if init == "k-means++":
                self.init_kmeans_plusplus(y, g, w)
            elif init == "random":
                self.init_random(y, g, w)
            history, converged = self._descend(y, w, n_iter, method, lr, tol)
            if best is None or history[-1] < best[0][-1]:
                best = (history, converged, self.weight.data.copy() if n_init > 1 else self.weight.data)
        history, converged, self.weight.data = best
        if not converged:
            warnings.warn(f"K-means stopped at n_iter={n_iter} steps before its energy decrease fell to "
                          f"tol={tol}; raise n_iter or tol", ConvergenceWarning, stacklevel=2)
        with no_grad():
            f = self(y).data
        self.inertia_ = float(f.sum() if w is None else (f * w).sum())
        self.n_iter_ = len(history) - 1
        self.labels_ = self.assign(y)
        return {"energy": history}


# ------------------------------------------------------------------ sparse coding

def shrink(v, theta):
    """Soft thresholding Shrink_θ(v) = sign(v)·max(|v| − θ, 0), the proximal map of θ‖·‖₁.

    Written as relu(v − θ) − relu(−v − θ) so that it is differentiable in v and in θ (LISTA
    learns θ).
    """
    return F.relu(v - theta) - F.relu(-v - theta)


def _shrink(v, theta, xp, positive=False):
    if positive:  # the proximal map of θ‖z‖₁ plus the constraint z ≥ 0: shrink, then project
        return xp.maximum(v - theta, 0)
    return xp.sign(v) * xp.maximum(xp.abs(v) - theta, 0)


def sparse_coding_energy(y, z, W, lam):
    """E(y, z) = ½‖y − Wz‖² + λ‖z‖₁ per sample, shape (N,). The 2020 notes' week 8 drops the ½; see the module."""
    lam = check_positive(lam, "lam", allow_zero=True)
    y = _batch(y)
    W = _dictionary(W, y)
    z = _batch(z, "z")
    if tuple(z.shape) != (y.shape[0], W.shape[1]):
        raise ValueError(f"z must have shape ({y.shape[0]}, {W.shape[1]}) (N, K), got {tuple(z.shape)}")
    r = y - z @ W.transpose()
    return 0.5 * (r * r).sum(axis=1) + lam * ops.abs(z).sum(axis=1)


def lipschitz_constant(W):
    """L = λ_max(WᵀW) = ‖W‖₂², the Lipschitz constant of z ↦ Wᵀ(Wz − y)."""
    W = _batch(W, "W")
    w = W.data
    return float(W.xp.linalg.eigvalsh(w.T @ w)[-1])


def _lasso_setup(y, W, lam, n_iter, z0):
    lam = check_positive(lam, "lam", allow_zero=True)
    n_iter = check_int(n_iter, "n_iter", minimum=0)
    y = _batch(y)
    W = _dictionary(W, y)
    xp = y.xp
    if z0 is None:
        z = xp.zeros((y.shape[0], W.shape[1]), dtype=y.dtype)
    else:
        z0 = _batch(z0, "z0")
        if tuple(z0.shape) != (y.shape[0], W.shape[1]):
            raise ValueError(f"z0 must have shape ({y.shape[0]}, {W.shape[1]}) (N, K), got {tuple(z0.shape)}")
        z = z0.data.astype(y.dtype, copy=True)
    L = lipschitz_constant(W)
    if L == 0:
        raise ValueError("W must not be all zeros (its Lipschitz constant is 0)")
    return y.data, W.data, lam, n_iter, z, L, xp


def _objective(y, W, z, lam, xp):
    r = y - z @ W.T
    return float((0.5 * (r * r).sum(axis=1) + lam * xp.abs(z).sum(axis=1)).mean())


def _proximal_gradient(name, y, W, lam, n_iter, z0, return_objective, tol, positive, accelerated):
    """ISTA (``accelerated=False``) or FISTA on the batch; see :func:`ista` and :func:`fista`."""
    y, W, lam, n_iter, z, L, xp = _lasso_setup(y, W, lam, n_iter, z0)
    tol = None if tol is None else check_positive(tol, "tol", allow_zero=True)
    positive = check_bool(positive, "positive")
    WtY, G = (y @ W) / L, (W.T @ W) / L
    obj = [_objective(y, W, z, lam, xp)] if return_objective else None
    u, t = z, 1.0
    converged = tol is None
    for _ in range(n_iter):
        z_new = _shrink(u - u @ G + WtY, lam / L, xp, positive)
        if accelerated:
            t_new = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
            u = z_new + ((t - 1.0) / t_new) * (z_new - z)
            t = t_new
        else:
            u = z_new
        # The step is measured against the codes' size, so that tol does not depend on the scale of y.
        step = None if tol is None else float(xp.abs(z_new - z).max())
        z = z_new
        if return_objective:
            obj.append(_objective(y, W, z, lam, xp))
        if tol is not None and step <= tol * float(xp.abs(z).max()):
            converged = True
            break
    if not converged:
        warnings.warn(f"{name} stopped at n_iter={n_iter} before its largest code change fell to tol={tol} "
                      "times its largest code; raise n_iter or tol", ConvergenceWarning, stacklevel=3)
    return (Tensor(z), np.asarray(obj)) if return_objective else Tensor(z)  # host objective


def ista(y, W, lam, n_iter=100, z0=None, return_objective=False, tol=None, positive=False):
    """ISTA: proximal gradient descent on the sparse-coding energy, z ↦ F(y) = min_z E(y, z).

        z ← Shrink_{λ/L}(z − (1/L) Wᵀ(Wz − y)),     L = λ_max(WᵀW)

    (Daubechies, Defrise & De Mol 2004). The energy never increases; E(z_k) − E* = O(1/k).
    Runs on the arrays of ``y`` (no graph); every sample's problem is solved at once.

    Args:
        y: data (N, D); W: dictionary (D, K), atoms as columns; lam: λ ≥ 0.
        n_iter: iterations (the most, with ``tol``); z0: the starting codes (N, K) (default zeros).
        return_objective: also return the mean energy over the batch before each iteration
            and after the last, a host array of (iterations run) + 1 values.
        tol: ``None`` (default) runs exactly ``n_iter`` iterations, as an unrolled solver (and
            LISTA's initialisation) needs; a number stops as soon as the largest change of a code
            in one iteration is at most ``tol`` times the largest code, and warns with
            :class:`npjem.ConvergenceWarning` when ``n_iter`` iterations end before that.
        positive: constrain the codes to z ≥ 0 (scikit-learn's ``sparse_encode(positive=True)``):
            the proximal step becomes max(v − λ/L, 0), soft thresholding then projection.

    Inputs follow scikit-learn's rule: integer arrays become float64, sparse matrices are refused
    with a hint to pass ``.toarray()``.

    Returns the codes, a Tensor (N, K) (and the objective).
    """
    return _proximal_gradient("ista", y, W, lam, n_iter, z0, return_objective, tol, positive, accelerated=False)


def fista(y, W, lam, n_iter=100, z0=None, return_objective=False, tol=None, positive=False):
    """FISTA (Beck & Teboulle 2009): ISTA's step at an extrapolated point.

        z_k = Shrink_{λ/L}(u_k − (1/L) Wᵀ(W u_k − y)),    t_{k+1} = (1 + √(1 + 4 t_k²)) / 2,
        u_{k+1} = z_k + ((t_k − 1) / t_{k+1}) (z_k − z_{k−1}),     u_1 = z_0, t_1 = 1,

    so E(z_k) − E* ≤ 2L‖z_0 − z*‖² / (k + 1)², against ISTA's O(1/k); the energy is not
    monotone along the way. Arguments (``tol``, ``positive`` included) and returns as :func:`ista`.
    """
    return _proximal_gradient("fista", y, W, lam, n_iter, z0, return_objective, tol, positive, accelerated=True)


class LISTA(Module):
    """Learned ISTA (Gregor & LeCun 2010): an encoder that predicts sparse codes in K steps.

        b = W_eᵀ y,     z_1 = Shrink_θ(b),     z_{t+1} = Shrink_θ(b + S z_t),   t < K

    with W_e (D, K) (``weight_e``), S (K, K) and per-code thresholds θ (K,) all learned, by
    backpropagation through the K unrolled steps. Initialised from a dictionary W with
    W_e = W/L, S = I − WᵀW/L, θ = λ/L (:meth:`from_dictionary`), it *is* K steps of ISTA from
    z = 0; training makes a few steps do the work of many. The sign is **+ S z**: ISTA's step is
    z − (1/L)Wᵀ(Wz − y) = (I − WᵀW/L) z + Wᵀy/L (the 2020 notes' week 8, "LISTA", print "− S z").
    """

    def __init__(self, n_features, n_atoms, n_steps=3, device=None, dtype=None, generator=None):
        super().__init__()
        self.n_features = check_int(n_features, "n_features")
        self.n_atoms = check_int(n_atoms, "n_atoms")
        self.n_steps = check_int(n_steps, "n_steps")
        xp = backend.xp_for_device(device)
        dt = np.dtype(backend.default_dtype() if dtype is None else dtype)
        g = nrandom.as_generator(generator, backend.normalize_device(device))
        scale = 1.0 / math.sqrt(self.n_features)
        self.weight_e = Parameter(xp.asarray(g.standard_normal((self.n_features, self.n_atoms), dtype=dt) * scale))
        self.S = Parameter(xp.eye(self.n_atoms, dtype=dt) * 0.5)
        self.theta = Parameter(xp.full((self.n_atoms,), 0.1, dtype=dt))

    @classmethod
    def from_dictionary(cls, W, lam, n_steps=3):
        """LISTA equal to ``n_steps`` ISTA iterations from z = 0 with dictionary W and penalty λ."""
        W = _batch(W, "W")
        lam = check_positive(lam, "lam", allow_zero=True)
        L = lipschitz_constant(W)
        d, k = W.shape
        model = cls(d, k, n_steps, device=W.device, dtype=W.dtype, generator=0)
        xp, w = W.xp, W.data
        model.weight_e.data = (w / L).astype(W.dtype, copy=True)
        model.S.data = xp.eye(k, dtype=W.dtype) - (w.T @ w) / L
        model.theta.data = xp.full((k,), lam / L, dtype=W.dtype)
        return model

    def forward(self, y):
        y = _batch(y)
        if y.shape[1] != self.n_features:
            raise ValueError(f"y must have {self.n_features} features (n_features), got shape {tuple(y.shape)}")
        b = y @ self.weight_e
        z = shrink(b, self.theta)
        for _ in range(self.n_steps - 1):
            z = shrink(b + z @ self.S.transpose(), self.theta)
        return z


def fit_lista(lista, y, W, lam, *, n_epochs=50, lr=1e-3, batch_size=64, target="codes", target_iter=500,
              generator=None, progress=False, log_every=10):
    """Train a :class:`LISTA` encoder on data ``y`` for dictionary W and penalty λ.

    ``target="codes"`` (Gregor & LeCun): regress on the optimal codes z* = argmin_z E(y, z)
    (FISTA, ``target_iter`` iterations), loss mean ½‖LISTA(y) − z*‖²; ``target="energy"``:
    minimise the sparse-coding energy of the predicted codes, mean E(y, LISTA(y)), which needs
    no solver. Adam at ``lr``, minibatches of ``batch_size`` in a fresh random order each epoch.
    Returns ``{"loss": [mean loss per epoch], "energy": [mean E(y, LISTA(y)) after each epoch]}``.
    """
    from ..optim import Adam  # noqa: PLC0415  (optim sits beside nn; only training needs it)

    if not isinstance(lista, LISTA):
        raise ArgumentTypeError(f"lista must be a LISTA module, got {type(lista).__name__}")
    y = _batch(y)
    W = _dictionary(W, y)
    lam = check_positive(lam, "lam", allow_zero=True)
    n_epochs = check_int(n_epochs, "n_epochs")
    lr = check_positive(lr, "lr")
    batch_size = check_int(batch_size, "batch_size")
    check_choice(target, "target", ("codes", "energy"))
    show = check_bool(progress, "progress")
    g = nrandom.as_generator(generator, y.device)
    zstar = fista(y, W, lam, n_iter=check_int(target_iter, "target_iter")).data if target == "codes" else None
    opt = Adam(lista.parameters(), lr=lr)
    n = y.shape[0]
    hist = {"loss": [], "energy": []}
    bar = _Progress(n_epochs, "LISTA", show, log_every)
    try:
        for epoch in range(n_epochs):
            order = g.permutation(n)
            total = 0.0
            for s in range(0, n, batch_size):
                idx = order[s:s + batch_size]
                yb = Tensor(y.data[idx])
                z = lista(yb)
                if target == "codes":
                    r = z - Tensor(zstar[idx])
                    loss = 0.5 * (r * r).sum(axis=1).mean()
                else:
                    loss = sparse_coding_energy(yb, z, W.detach(), lam).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.item()) * len(idx)
            with no_grad():
                energy = float(sparse_coding_energy(y, lista(y), W.detach(), lam).mean().item())
            hist["loss"].append(total / n)
            hist["energy"].append(energy)
            bar.update(epoch + 1, loss=total / n, energy=energy)
    finally:
        bar.close()
    return hist


def dictionary_learning(y, n_atoms, lam, *, n_iter=30, code_iter=50, W0=None, init="svd", generator=None,
                        progress=True, log_every=5, tol=1e-8, positive_code=False, positive_dict=False):
    """Learn a sparse-coding dictionary by pushing the free energy of the data down.

    Alternates (Olshausen & Field 1996; the dictionary step of Mairal et al. 2009):

    1. codes: Z ← FISTA on E(y, z) = ½‖y − Wz‖² + λ‖z‖₁ (``code_iter`` iterations, warm-started
       from the previous codes);
    2. dictionary: one pass of block coordinate descent over the atoms on ½‖Y − ZWᵀ‖²_F with
       A = ZᵀZ, B = YᵀZ: w_k ← w_k + (b_k − W a_k) / A_kk, then **normalised to unit length**.
       Without the normalisation W → ∞ and z → 0 would lower λ‖z‖₁ for free; an atom no code
       uses is re-drawn from a random data point.

    The objective is scikit-learn's ``DictionaryLearning`` one divided by N (``alpha`` = λ),
    which constrains ‖w_k‖ ≤ 1 where this keeps ‖w_k‖ = 1 (the normalisation of the 2020 notes' week 8, "Sparse Coding").

    Stops, as scikit-learn's ``dict_learning``, when an alternation lowers the objective by less
    than ``tol`` times its value (``tol=0``: only if it rises; ``None``: never), and warns with
    :class:`npjem.ConvergenceWarning` when ``n_iter`` alternations end first. The inner FISTA runs
    are warm-started and inexact by design and do not warn.

    Args:
        y: data (N, D). n_atoms: K. lam: λ > 0.
        n_iter: alternations. code_iter: FISTA iterations per alternation.
        W0: initial dictionary (D, K), normalised; overrides ``init``.
        init: without ``W0``, ``"svd"`` (the top right singular vectors of y, as scikit-learn;
            random data points fill in beyond the rank) or ``"data"`` (K random data points).
        generator: seed or Generator (initialisation, re-drawn atoms).
        progress: a bar on a terminal, a line every ``log_every`` iterations otherwise.
        tol: relative decrease of the objective that stops the alternations (sklearn's 1e-8).
        positive_code: codes z ≥ 0 (FISTA's proximal step projects, see :func:`ista`).
        positive_dict: atoms w_k ≥ 0: each block-coordinate update is projected on the orthant
            before it is normalised (as sklearn's ``_update_dict`` clips); the initial atoms are
            projected too (each SVD vector first signed so that it sums to ≥ 0).

    Inputs follow scikit-learn's rule: integer arrays become float64, sparse matrices are refused
    with a hint to pass ``.toarray()``.

    Returns ``(W, codes, history)``: the dictionary Tensor (D, K), the codes Tensor (N, K), and
    ``{"objective": [mean E(y, z) after each alternation], "time": [seconds since the start]}``.
    """
    y = _batch(y)
    k = check_int(n_atoms, "n_atoms")
    lam = check_positive(lam, "lam")
    n_iter = check_int(n_iter, "n_iter")
    code_iter = check_int(code_iter, "code_iter")
    show = check_bool(progress, "progress")
    tol = None if tol is None else check_positive(tol, "tol", allow_zero=True)
    positive_code = check_bool(positive_code, "positive_code")
    positive_dict = check_bool(positive_dict, "positive_dict")
    g = nrandom.as_generator(generator, y.device)
    xp, a = y.xp, y.data
    n, d = a.shape

    def unit(cols):
        norms = xp.sqrt((cols * cols).sum(axis=0, keepdims=True))
        return cols / xp.maximum(norms, 1e-12)

    check_choice(init, "init", ("svd", "data"))
    if W0 is None:
        W = unit(a[g.permutation(n)[:k] if k <= n else g.integers(0, n, size=k)].T.copy())
        if init == "svd":
            vt = xp.linalg.svd(a, full_matrices=False)[2]
            r = min(k, vt.shape[0])
            W[:, :r] = vt[:r].T
            if positive_dict:  # a singular vector's sign is arbitrary: keep the side with more mass
                W[:, :r] *= xp.where(W[:, :r].sum(axis=0) < 0, -1.0, 1.0)
    else:
        W = unit(_dictionary(W0, y, "W0").data.astype(a.dtype, copy=True))
        if W.shape[1] != k:
            raise ValueError(f"W0 must have n_atoms = {k} columns, got {W.shape[1]}")
    if positive_dict:
        W = unit(xp.maximum(W, 0))
    z = xp.zeros((n, k), dtype=a.dtype)
    converged = tol is None
    hist = {"objective": [], "time": []}
    start = time.perf_counter()
    bar = _Progress(n_iter, "dictionary", show, log_every)
    try:
        for it in range(n_iter):
            z = fista(Tensor(a), Tensor(W), lam, n_iter=code_iter, z0=Tensor(z), positive=positive_code).data
            A, B = z.T @ z, a.T @ z
            for j in range(k):
                if float(A[j, j]) < 1e-12:
                    W[:, j] = a[int(g.integers(0, n))]
                else:
                    W[:, j] = W[:, j] + (B[:, j] - W @ A[:, j]) / A[j, j]
                if positive_dict:
                    W[:, j] = xp.maximum(W[:, j], 0)
                W[:, j] = W[:, j] / max(float(xp.sqrt((W[:, j] ** 2).sum())), 1e-12)
            hist["objective"].append(_objective(a, W, z, lam, xp))
            hist["time"].append(time.perf_counter() - start)
            bar.update(it + 1, objective=hist["objective"][-1])
            obj = hist["objective"]
            if tol is not None and len(obj) >= 2 and obj[-2] - obj[-1] < tol * obj[-1]:
                converged = True
                break
    finally:
        bar.close()
    if not converged:
        warnings.warn(f"dictionary_learning stopped at n_iter={n_iter} alternations before the objective's "
                      f"relative decrease fell below tol={tol}; raise n_iter or tol", ConvergenceWarning,
                      stacklevel=2)
    return Tensor(W), Tensor(z), hist


# ------------------------------------------------------------------ the VAE's free energy

def gaussian_kl(mu, logvar):
    """KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σ_j (μ_j² + σ_j² − log σ_j² − 1) per row, shape (N,).

    As an energy term: a spring pulling each code's centre to the origin (μ²) and a term that
    keeps its variance near 1 (σ² − log σ², minimal at σ = 1), so the fuzzy balls can neither
    shrink to points nor fly apart.
    """
    return 0.5 * (mu * mu + ops.exp(logvar) - logvar - 1.0).sum(axis=1)


_ACTIVATIONS = {"tanh": Tanh, "silu": SiLU, "swish": SiLU}


class VAE(Module):
    """A small variational autoencoder, read as an energy-based model (Kingma & Welling 2014).

    The encoder maps y to a Gaussian q(z|y) = N(μ(y), diag σ²(y)); a code is *sampled* around
    μ, z = μ + σ ⊙ ε (reparameterised, so the gradient flows through the sample), and the
    decoder reconstructs y from it. The free energy

        F(y) = E_{q(z|y)}[ C(y, Dec(z)) ] + KL(q(z|y) ‖ N(0, I)) = −ELBO(y) ≥ −log p(y)

    uses the negative log-likelihood of the decoder as the reconstruction energy C:
    ``likelihood="gaussian"``: ½‖y − Dec(z)‖²/σ_x² + (D/2) log(2πσ_x²) (real data, σ_x =
    ``sigma``); ``"bernoulli"``: the binary cross-entropy of Dec(z) as logits (binary data or
    [0, 1] intensities such as digits). Training minimises the mean F over the data, pushing
    energy down only; the sampling noise and the KL limit the low-energy volume.

    ``hidden=()`` makes encoder and decoder linear (probabilistic PCA's model, whose exact
    log-likelihood is known: the tests use it).
    """

    def __init__(self, in_features, latent_features=2, hidden=(64,), likelihood="gaussian", sigma=1.0,
                 activation="tanh", device=None, dtype=None, generator=None):
        super().__init__()
        self.in_features = check_int(in_features, "in_features")
        self.latent_features = check_int(latent_features, "latent_features")
        hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
        self.hidden = tuple(check_int(h, f"hidden[{i}]") for i, h in enumerate(hidden))
        self.likelihood = check_choice(likelihood, "likelihood", ("gaussian", "bernoulli"))
        self.sigma = check_positive(sigma, "sigma")
        act = _ACTIVATIONS[check_choice(activation, "activation", tuple(_ACTIVATIONS))]
        g = nrandom.as_generator(generator, backend.normalize_device(device))
        kw = dict(device=device, dtype=dtype)

        def mlp(sizes):
            layers = []
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
                layers.append(Linear(a, b, generator=g, **kw))
                if i < len(sizes) - 2:
                    layers.append(act())
            return Sequential(*layers)

        self.encoder = mlp((self.in_features,) + self.hidden + (2 * self.latent_features,))
        self.decoder = mlp((self.latent_features,) + self.hidden[::-1] + (self.in_features,))

    def _check(self, y):
        y = _batch(y)
        if y.shape[1] != self.in_features:
            raise ValueError(f"y must have {self.in_features} features (in_features), got shape {tuple(y.shape)}")
        return y

    def encode(self, y):
        """(μ, log σ²) of q(z|y), each (N, latent_features)."""
        h = self.encoder(self._check(y))
        k = self.latent_features
        return h[:, :k], h[:, k:]

    def decode(self, z):
        """The decoder's output: the mean (gaussian) or the logits (bernoulli) of p(y|z)."""
        return self.decoder(z)

    def reconstruction_energy(self, y, out):
        """C(y, Dec(z)) = −log p(y|z) per sample, (N,), from the decoder's output ``out``."""
        if self.likelihood == "gaussian":
            r = y - out
            const = 0.5 * self.in_features * math.log(2 * math.pi * self.sigma ** 2)
            return 0.5 * (r * r).sum(axis=1) * (1.0 / self.sigma ** 2) + const
        return F.binary_cross_entropy_with_logits(out, y, reduction="none").sum(axis=1)

    def free_energy(self, y, generator=None, n_samples=1):
        """F(y) = E_q[C(y, Dec(z))] + KL(q ‖ N(0, I)), shape (N,), the expectation estimated
        with ``n_samples`` reparameterised codes per point (the KL in closed form)."""
        y = self._check(y)
        n_samples = check_int(n_samples, "n_samples")
        g = nrandom.as_generator(generator, y.device)
        mu, logvar = self.encode(y)
        std = ops.exp(0.5 * logvar)
        n, k = mu.shape
        eps = Tensor(y.xp.asarray(g.standard_normal((n_samples, n, k), dtype=y.dtype)))
        z = (ops.unsqueeze(mu, 0) + ops.unsqueeze(std, 0) * eps).reshape(n_samples * n, k)
        yy = ops.broadcast_to(ops.unsqueeze(y, 0), (n_samples,) + tuple(y.shape)).reshape(n_samples * n, -1)
        rec = self.reconstruction_energy(yy, self.decode(z)).reshape(n_samples, n).mean(axis=0)
        return rec + gaussian_kl(mu, logvar)

    def forward(self, y, generator=None):
        """The training loss: the mean free energy of the batch (one code sample per point)."""
        return self.free_energy(y, generator).mean()

    def sample(self, n, generator=None):
        """Decoder outputs for n codes drawn from the prior N(0, I): means, or probabilities."""
        n = check_int(n, "n")
        p = next(iter(self.parameters()))
        g = nrandom.as_generator(generator, p.device)
        z = Tensor(p.xp.asarray(g.standard_normal((n, self.latent_features), dtype=p.dtype)))
        with no_grad():
            out = self.decode(z)
        return out if self.likelihood == "gaussian" else ops.sigmoid(out)
