"""Clustering losses: Sinkhorn–Knopp equipartition and SwAV's swapped prediction (the "Clustering
methods" of the NYU Deep Learning notes, ch. 8-2 "Regularized Latent Variable Energy Based Models").

SwAV avoids collapse by quantising the embedding space: each sample is softly assigned to K
prototypes, and the assignments of a batch are forced to use every prototype equally often.
A collapsed network, which maps every input to the same point, would put the whole batch on one
prototype; the equipartition constraint forbids that. The constraint is an entropic optimal
transport problem between the B samples (mass 1/B each) and the K prototypes (mass 1/K each),
solved by the Sinkhorn–Knopp iterations below. The loss then asks each crop to predict the
assignment ("code") computed from another crop of the same image.

``sinkhorn_knopp`` works on any (B, K) score matrix, so it also clusters a point cloud into K
equal groups (``sinkhorn_clusters``).
"""
from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np

from .. import backend
from .. import random as nrandom
from .._checks import check_choice, check_int, check_positive
from ..autograd import functional as F
from ..autograd.tensor import Tensor
from ._inputs import like, matrix, tensor_list

__all__ = ["sinkhorn_knopp", "swav", "sinkhorn_clusters", "BalancedClusters"]


# ---------------------------------------------------------------- Sinkhorn–Knopp

def _marginal(name, value, size, like_array):
    xp = backend.get_array_module(like_array)
    m = value.data if isinstance(value, Tensor) else value
    if not backend.is_array(m):
        raise TypeError(f"{name} must be a Tensor or an array of shape ({size},), got {type(value).__name__}")
    if backend.device_of(m) != backend.device_of(like_array):
        raise ValueError(f"{name} is on {backend.device_of(m)} but scores is on {backend.device_of(like_array)}")
    if m.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},), got {tuple(m.shape)}")
    m = m.astype(like_array.dtype, copy=False)
    if not bool(xp.all(xp.isfinite(m))) or not bool(xp.all(m > 0)):
        raise ValueError(f"{name} must hold positive finite masses")
    total = float(m.sum())
    if abs(total - 1.0) > math.sqrt(np.finfo(like_array.dtype).eps):
        raise ValueError(f"{name} must sum to 1 (a probability vector), got a sum of {total!r}")
    return m / m.sum()  # removes the rounding left in the sum


def _lse(a, axis, xp):
    m = a.max(axis=axis, keepdims=True)
    return m + xp.log(xp.exp(a - m).sum(axis=axis, keepdims=True))


def sinkhorn_knopp(scores, epsilon=0.05, n_iters=3, *, log_domain=False, tol=None, max_iters=1000,
                   row_marginals=None, col_marginals=None):
    r"""SwAV's equipartitioned soft assignment of B samples to K prototypes (no gradient).

    With the scores s (B × K; in SwAV the cosine similarities between the normalised
    embeddings and the prototypes), the assignment is the entropic optimal-transport plan

        P = argmax_{P ∈ U(r, c)}  ⟨P, s⟩ + ε H(P),     U(r, c) = {P ≥ 0 : P 1_K = r, Pᵀ 1_B = c}

    whose solution is P = diag(u) exp(s/ε) diag(v). The default marginals are SwAV's: every
    sample has mass r_b = 1/B and every prototype the same share c_k = 1/K (equipartition).
    The iterations are SwAV's (``main_swav.py``), written for the K × B matrix Q = Pᵀ::

        Q ← exp(s / ε)ᵀ;   Q ← Q / Σ Q
        repeat n_iters times:
            Q ← Q / (row sums of Q) · c         (prototypes first: each row sums to c_k = 1/K)
            Q ← Q / (column sums of Q) · r      (then samples: each column sums to r_b = 1/B)
        return (Q / r)ᵀ                          (B × K: SwAV's (Q · B)ᵀ, each row sums to 1)

    so the returned codes are per-sample distributions over the prototypes (each row sums to
    1 exactly) and the plan itself is ``codes * r[:, None]``. After a few iterations the
    prototype marginals are only approximately equal; ``tol`` iterates to convergence.

    The result carries no gradient: SwAV computes it under ``torch.no_grad()`` from detached
    scores, and the codes are targets.

    Args:
        scores: (B, K) Tensor or array (B samples, possibly with queue rows prepended, as SwAV
            does when its queue is full: pass ``cat([queue_scores, scores])`` and keep the last
            B rows of the result).
        epsilon: ε > 0, the entropic regularisation (SwAV: 0.05). Smaller ε gives sharper codes.
        n_iters: number of iterations (SwAV: 3); with ``tol``, the minimum number.
        log_domain: iterate on log Q with log-sum-exp (stable for any ε). The plain form
            computes exp(s/ε), which overflows in float32 for ε < max|s| / 88.7 (≈ 0.0113 for
            |s| ≤ 1) and in float64 for ε < max|s| / 709.8; there this function raises and
            names ``log_domain``. Where both are finite they agree to rounding.
        tol: when given, keep iterating (after ``n_iters``) until every prototype marginal is
            within ``tol`` of its target, relatively: max_k |Σ_b P_bk / c_k − 1| ≤ tol (the
            sample marginals are exact after each iteration); at most ``max_iters`` iterations,
            with a ``RuntimeWarning`` if that is not enough.
        max_iters: the cap for ``tol``.
        row_marginals: (B,) positive sample masses r summing to 1 (default 1/B each).
        col_marginals: (K,) positive prototype shares c summing to 1 (default 1/K each).

    Returns the (B, K) codes, a Tensor without gradient if ``scores`` is a Tensor, an array
    otherwise, in the dtype and on the device of ``scores``.

    Matching other code::

        | code                                                | call                                 |
        |-----------------------------------------------------|--------------------------------------|
        | SwAV main_swav.py distributed_sinkhorn, one device  | sinkhorn_knopp(s, 0.05, 3)           |
        | lightly 1.6.0 sinkhorn (omits the /K: the next      | sinkhorn_knopp(s, 0.05, 3)           |
        |   column step cancels it)                           |   (equal to 2e-16)                   |
        | solo-learn SinkhornKnopp                            | sinkhorn_knopp(s, 0.05, 3)           |
        | POT ot.sinkhorn(a, b, M, reg), M = −s               | sinkhorn_knopp(s, reg, tol=...,      |
        |   (the plan, iterated to convergence)               |   row_marginals=a, col_marginals=b)  |
        |                                                     |   * a[:, None]                       |
    """
    is_tensor = isinstance(scores, Tensor)
    s = matrix("scores", scores, "(B, K)").data
    xp = backend.get_array_module(s)
    n_samples, n_protos = s.shape
    if n_samples < 1 or n_protos < 1:
        raise ValueError(f"scores must have at least one sample and one prototype, got shape {s.shape}")
    if not bool(xp.all(xp.isfinite(s))):
        raise ValueError("scores must be finite")
    epsilon = check_positive(epsilon, "epsilon")
    n_iters = check_int(n_iters, "n_iters")
    max_iters = check_int(max_iters, "max_iters")
    if tol is not None:
        tol = check_positive(tol, "tol")
    r = None if row_marginals is None else _marginal("row_marginals", row_marginals, n_samples, s)
    c = None if col_marginals is None else _marginal("col_marginals", col_marginals, n_protos, s)

    if log_domain:
        codes = _sinkhorn_log(s, epsilon, n_iters, tol, max_iters, r, c, xp)
    else:
        codes = _sinkhorn_plain(s, epsilon, n_iters, tol, max_iters, r, c, xp)
    return Tensor(codes) if is_tensor else codes


def _iterations(n_iters, tol, max_iters, error):
    """Run the iteration count SwAV-style, or on to ``tol``; ``error()`` measures after each one."""
    it = 0
    while True:
        yield it
        it += 1
        if it < n_iters:
            continue
        if tol is None:
            return
        err = error()
        if err <= tol:
            return
        if it >= max(max_iters, n_iters):
            warnings.warn(f"sinkhorn_knopp stopped after {it} iterations with a prototype marginal "
                          f"error of {err:.3g} > tol={tol:g}; raise max_iters or epsilon",
                          RuntimeWarning, stacklevel=4)  # past this generator, the iteration, sinkhorn_knopp
            return


def _sinkhorn_plain(s, eps, n_iters, tol, max_iters, r, c, xp):
    n_samples, n_protos = s.shape
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # host: NumPy warnings only
        q = xp.exp(s / eps).T                                   # K x B
        q /= q.sum()
        state = {}

        def error():
            target = (1.0 / n_protos) if c is None else c[:, None]
            return float(xp.abs(state["rows"] / target - 1).max())

        for _ in _iterations(n_iters, tol, max_iters, error):
            q /= q.sum(axis=1, keepdims=True)
            q = q / n_protos if c is None else q * c[:, None]
            q /= q.sum(axis=0, keepdims=True)
            q = q / n_samples if r is None else q * r[None, :]
            if tol is not None:
                state["rows"] = q.sum(axis=1, keepdims=True)
            if not bool(xp.all(xp.isfinite(q))):
                break
        out = (q * n_samples).T if r is None else (q / r[None, :]).T
    if not bool(xp.all(xp.isfinite(out))):
        raise FloatingPointError(
            f"sinkhorn_knopp: exp(scores / epsilon) over- or underflowed in {s.dtype} "
            f"(epsilon={eps:g}, max |score| = {float(xp.abs(s).max()):.3g}); use log_domain=True")
    return out


def _sinkhorn_log(s, eps, n_iters, tol, max_iters, r, c, xp):
    n_samples, n_protos = s.shape
    log_q = s.T / eps                                           # K x B
    log_q = log_q - _lse(log_q.reshape(1, -1), 1, xp).reshape(1, 1)
    log_c = -math.log(n_protos) if c is None else xp.log(c)[:, None]
    log_r = -math.log(n_samples) if r is None else xp.log(r)[None, :]
    state = {}

    def error():
        return float(xp.abs(xp.exp(state["rows"] - log_c) - 1).max())

    for _ in _iterations(n_iters, tol, max_iters, error):
        log_q = log_q - _lse(log_q, 1, xp) + log_c
        log_q = log_q - _lse(log_q, 0, xp) + log_r
        if tol is not None:
            state["rows"] = _lse(log_q, 1, xp)
    return xp.exp(log_q - log_r).T


# ---------------------------------------------------------------- SwAV

def swav(scores, codes, temperature=0.1, *, crops_for_assign=None, reduction="mean"):
    r"""SwAV's swapped prediction loss over any number of crops (Caron et al. 2020).

    With V crops, their prototype scores s_v (B × K, cosine similarities of the normalised
    embeddings with the normalised prototypes) and the Sinkhorn codes q_i of the crops that get
    codes (``crops_for_assign``; SwAV: the two 224-pixel crops, 0 and 1), every other crop must
    predict them::

        ℓ(q_i, s_j) = −(1/B) Σ_b Σ_k q_{i,bk} log softmax(s_{j,b} / τ)_k
        L = (1/|A|) Σ_{i ∈ A} (1/(V − 1)) Σ_{j ≠ i} ℓ(q_i, s_j)      (reduction="mean")
        L = Σ_{i ∈ A} Σ_{j ≠ i} ℓ(q_i, s_j)                          (reduction="sum")

    The mean is SwAV's averaging (``main_swav.py``: each sub-loss divided by V − 1, the total
    by the number of assignment crops), the default. The NYU Deep Learning notes (ch. 8-2,
    "Regularized Latent Variable Energy Based Models", section "Clustering methods", SwAV)
    minimise "the sum of two crossentropy functions" for two views, ℓ(q_x, s_y) + ℓ(q_y, s_x):
    ``reduction="sum"``, twice the mean for two crops (|A| = V = 2). Both have the same
    minimiser; the sum doubles the gradient, which SGD or LARS (not Adam) feel as twice the lr.

    The codes are targets: they are detached here, so the gradient reaches the scores only
    (pass them already computed with :func:`sinkhorn_knopp`).

    Args:
        scores: a list or tuple of V ≥ 2 (B, K) Tensors, the scores of each crop, in crop order.
        codes: a list or tuple of (B, K) codes, one per assignment crop (rows summing to 1).
        temperature: τ > 0 (SwAV: 0.1).
        crops_for_assign: the crop index of each entry of ``codes`` (default 0, 1, …,
            len(codes) − 1: the first crops, as in SwAV).
        reduction: ``"mean"`` (SwAV's code) or ``"sum"`` (the notes' sum of cross-entropies).

    Returns a scalar Tensor. Collapse: when every sample has the same score row s, Sinkhorn's
    equipartition spreads each code uniformly over the K prototypes, and the loss is the
    cross-entropy of the uniform distribution with softmax(s/τ), at least log K (equal for
    constant scores). SwAV's README reads a loss stuck at log K as collapse.

    Matching other code::

        | code                                                 | call                                   |
        |------------------------------------------------------|----------------------------------------|
        | SwAV main_swav.py (crops_for_assign 0 1)             | swav(scores, [q0, q1], 0.1)            |
        | lightly 1.6.0 SwaVLoss()(high, low): a code for      | swav(high + low,                       |
        |   every high-resolution crop                         |      [sinkhorn_knopp(h) for h in high])|
        | solo-learn swav_loss_func                            | swav(scores, codes, 0.1)               |

    lightly's ``SwaVPrototypes`` is an ``nn.Linear`` with a bias, the original prototypes have
    none (the scores are then not cosine similarities); that difference lives in the method,
    not in this loss.
    """
    scores = tensor_list("scores", scores, "(B, K)", min_len=2)
    codes = tensor_list("codes", codes, "(B, K)", min_len=1)
    n_views = len(scores)
    like("codes[0]", codes[0], "scores[0]", scores[0], shape=scores[0].shape)
    tau = check_positive(temperature, "temperature")
    how = check_choice(reduction, "reduction", ("mean", "sum"))
    if crops_for_assign is None:
        crops = list(range(len(codes)))
        if len(codes) > n_views:
            raise ValueError(f"codes has {len(codes)} entries but there are only {n_views} crops in scores")
    else:
        if not isinstance(crops_for_assign, (list, tuple)):
            raise TypeError(f"crops_for_assign must be a list or tuple of crop indices, got {crops_for_assign!r}")
        crops = [check_int(i, f"crops_for_assign[{k}]", minimum=0, maximum=n_views - 1)
                 for k, i in enumerate(crops_for_assign)]
        if len(crops) != len(codes):
            raise ValueError(f"crops_for_assign has {len(crops)} entries, codes has {len(codes)}")
        if len(set(crops)) != len(crops):
            raise ValueError(f"crops_for_assign must not repeat a crop, got {list(crops_for_assign)}")

    log_p = [F.log_softmax(s * (1.0 / tau), axis=1) for s in scores]
    total = None
    for q, i in zip(codes, crops):
        q = q.detach()
        sub = None
        for j in range(n_views):
            if j == i:
                continue
            term = -(q * log_p[j]).sum(axis=1).mean()
            sub = term if sub is None else sub + term
        if how == "mean":
            sub = sub * (1.0 / (n_views - 1))
        total = sub if total is None else total + sub
    return total * (1.0 / len(codes)) if how == "mean" else total


# ---------------------------------------------------------------- balanced clustering

class BalancedClusters(NamedTuple):
    """The result of :func:`sinkhorn_clusters`.

    ``labels`` (N,) int64 hard labels with group sizes ⌊N/K⌋ or ⌈N/K⌉; ``centroids`` (K, d)
    the mean of each group; ``codes`` (N, K) the last soft (Sinkhorn) assignment.
    """

    labels: object
    centroids: object
    codes: object


def _balanced_round(codes, n_clusters):
    """Hard labels from a soft plan, each group of size ⌊N/K⌋ or ⌈N/K⌉ (greedy, largest first)."""
    q = backend.to_numpy(codes)
    n = q.shape[0]
    base, extra = divmod(n, n_clusters)
    counts = np.zeros(n_clusters, dtype=np.int64)  # host
    labels = np.full(n, -1, dtype=np.int64)  # host
    left = n
    for flat in np.argsort(-q, axis=None, kind="stable"):
        i, k = divmod(int(flat), n_clusters)
        if labels[i] >= 0:
            continue
        if counts[k] < base or (counts[k] == base and extra > 0):
            if counts[k] == base:
                extra -= 1
            labels[i] = k
            counts[k] += 1
            left -= 1
            if left == 0:
                break
    return labels


def sinkhorn_clusters(points, n_clusters, *, epsilon=0.05, n_steps=30, generator=None):
    r"""Cluster a point cloud into K groups of equal size with Sinkhorn–Knopp.

    Balanced soft k-means: start from K points drawn with ``generator``, then ``n_steps`` times

        s_nk = −‖x_n − μ_k‖² / max_{n,k} ‖x_n − μ_k‖²        (scores in [−1, 0], so ε is unit-free)
        Q    = sinkhorn_knopp(s, ε, log_domain=True, tol=1e-6, max_iters=500)   (mass 1/K each)
        μ_k  = Σ_n Q_nk x_n / Σ_n Q_nk

    and finally round Q to hard labels, each group taking ⌊N/K⌋ or ⌈N/K⌉ points (greedily, the
    most confident assignments first), with the centroids recomputed as the group means. Plain
    k-means puts a boundary halfway between centroids whatever the group sizes; here the
    equipartition moves it so that dense regions are split between groups. This is the
    constraint that keeps SwAV from collapsing, applied to points instead of embeddings.

    Args:
        points: (N, d) array or Tensor, N ≥ n_clusters.
        n_clusters: K ≥ 1.
        epsilon: ε of the assignment (relative to the largest squared distance).
        n_steps: the number of assignment/update steps.
        generator: an ``npjem.random`` generator (or a seed) for the initial centroids.

    Returns ``BalancedClusters(labels, centroids, codes)`` on the device of ``points``.
    """
    x = matrix("points", points, "(N, d)").data
    xp = backend.get_array_module(x)
    n = x.shape[0]
    k = check_int(n_clusters, "n_clusters")
    if n < k:
        raise ValueError(f"points has {n} rows, fewer than n_clusters={k}")
    epsilon = check_positive(epsilon, "epsilon")
    n_steps = check_int(n_steps, "n_steps")
    gen = nrandom.as_generator(generator, backend.device_of(x))

    centroids = x[xp.asarray(gen.choice(n, size=k, replace=False))]
    codes = None
    for _ in range(n_steps):
        d2 = ((x[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
        scale = float(d2.max())
        if scale == 0:
            raise ValueError("points are all equal: there is nothing to cluster")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a loose tol is fine between updates
            codes = sinkhorn_knopp(-d2 / scale, epsilon, 1, log_domain=True, tol=1e-6, max_iters=500)
        centroids = (codes.T @ x) / codes.sum(axis=0)[:, None]
    labels = xp.asarray(_balanced_round(codes, k))
    onehot = (labels[:, None] == xp.arange(k)[None, :]).astype(x.dtype)
    centroids = (onehot.T @ x) / onehot.sum(axis=0)[:, None]
    return BalancedClusters(labels, centroids, codes)
