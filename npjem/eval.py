"""Evaluating frozen representations: linear probe, k-NN classifier, collapse diagnostics.

Every function here reads features from a NumPy array, a CuPy array, or any object with a
``.data`` array (an npjem ``Tensor``); nothing here is differentiated, so the ``Tensor`` is
unwrapped and its graph ignored.

* :func:`linear_probe` fits a multinomial logistic regression on frozen features with
  SciPy's L-BFGS-B (host-side code: the features are copied to the host).
* :func:`knn_accuracy` is the weighted k-nearest-neighbour classifier of InstDisc
  (Wu et al. 2018) as used by DINO's ``knn_classifier``; it runs on the array module of its
  inputs, so it works on a GPU too.
* :func:`embedding_std`, :func:`singular_values`, :func:`effective_rank`,
  :func:`alignment`, :func:`uniformity` and :func:`collapse_report` measure the collapse
  that joint-embedding methods try to avoid (all rows of H_x equal, or H_x
  confined to a low-dimensional subspace: "dimensional collapse").

* :func:`fine_tune` trains a backbone together with a linear head by cross-entropy (the
  notes' "finetuning" evaluation, and the supervised ceiling); it imports the layers and
  optimizers when it is called, so importing this module needs only ``backend`` and ``random``.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from scipy.optimize import minimize

from . import backend
from . import random as _random
from ._checks import check_int, check_positive

__all__ = [
    "ProbeResult", "linear_probe", "probe_objective", "DEFAULT_L2_GRID",
    "knn_predict", "knn_accuracy",
    "embedding_std", "singular_values", "effective_rank", "alignment", "uniformity",
    "collapse_report", "FineTuneResult", "fine_tune",
]

# The grid that ``linear_probe(..., l2="auto")`` searches (log-spaced, weak to strong).
DEFAULT_L2_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)

_NORMALIZE_EPS = 1e-12  # as torch.nn.functional.normalize: x / max(||x||, eps)
_RANKME_EPS = 1e-7      # the epsilon added to p_k in RankMe's reference code


# ---------------------------------------------------------------- input checks

def _unwrap(a):
    """The raw array behind ``a``: arrays stay, ``Tensor``-likes give ``.data``, lists become NumPy."""
    if backend.is_array(a):
        return a
    data = getattr(a, "data", None)
    if data is not None and backend.is_array(data):
        return data
    return np.asarray(a)  # host: Python lists, scalars


def _check_features(a, name, *, min_rows=1):
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (n, d), got shape {tuple(a.shape)}")
    if a.shape[0] < min_rows or a.shape[1] == 0:
        need = "at least one row" if min_rows <= 1 else f"at least {min_rows} rows"
        raise ValueError(f"{name} must be non-empty with {need} and at least one column, "
                         f"got shape {tuple(a.shape)}")
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}")
    xp = backend.get_array_module(a)
    if a.dtype.kind == "f" and not bool(xp.isfinite(a).all()):
        raise ValueError(f"{name} contains NaN or infinity")
    return a


def _check_labels(a, name, n, features_name):
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of integer labels, got shape {tuple(a.shape)}")
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")
    if a.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} labels but {features_name} has {n} rows")
    return a


def _check_same_dim(ref, other, ref_name, other_name):
    if ref.shape[1] != other.shape[1]:
        raise ValueError(f"{other_name} has {other.shape[1]} columns but {ref_name} has {ref.shape[1]}")


def _common_xp(*arrays):
    """The array module of the inputs and the inputs moved onto it (CuPy wins over NumPy)."""
    xp = backend.get_array_module(*arrays)
    return xp, tuple(a if backend.get_array_module(a) is xp else xp.asarray(a) for a in arrays)


def _l2_normalize(z, xp):
    """Rows divided by ``max(||row||_2, eps)``; a zero row stays zero."""
    norms = xp.sqrt((z * z).sum(axis=1, keepdims=True))
    return z / xp.maximum(norms, _NORMALIZE_EPS)


# ---------------------------------------------------------------- linear probe

def probe_objective(params, features, labels, num_classes, l2):
    """Value and gradient of the linear probe's objective (host NumPy, float64).

    With ``W`` of shape ``(d, K)``, ``b`` of shape ``(K,)`` and ``params = concat(W.ravel(), b)``::

        J(W, b) = (1/n) sum_i [ logsumexp_k(x_i W + b)_k - (x_i W + b)_{y_i} ] + (l2/2) ||W||_F^2

    the mean softmax cross-entropy plus an L2 penalty on the weights only (the bias is not
    penalised). The gradient is analytic: with ``P = softmax(XW + b)`` and ``Y`` one-hot,
    ``dJ/dW = X^T (P - Y) / n + l2 W`` and ``dJ/db = sum_i (P - Y)_i / n``.

    ``labels`` are class indices in ``[0, num_classes)``. Returns ``(value, gradient)``.
    """
    X = np.asarray(features, dtype=np.float64)  # host
    y = np.asarray(labels)  # host
    theta = np.asarray(params, dtype=np.float64)  # host
    K = operator.index(num_classes)
    if X.ndim != 2:
        raise ValueError(f"features must be a 2-D array of shape (n, d), got shape {X.shape}")
    if y.ndim != 1 or y.shape[0] != X.shape[0] or y.dtype.kind not in "iu":
        raise ValueError(f"labels must be {X.shape[0]} integer class indices, got {y.dtype} {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= K):
        raise ValueError(f"labels must lie in [0, {K}), got range [{y.min()}, {y.max()}]")
    if theta.shape != ((X.shape[1] + 1) * K,):
        raise ValueError(f"params must have shape ({(X.shape[1] + 1) * K},) = ((d + 1) * K,), "
                         f"got {theta.shape}")
    return _objective(theta, X, y, K, float(l2))


def _objective(theta, X, y, K, l2):
    n, d = X.shape
    W = theta[: d * K].reshape(d, K)
    b = theta[d * K:]
    logits = X @ W + b
    shifted = logits - logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(shifted).sum(axis=1))
    rows = np.arange(n)  # host
    value = float(np.mean(lse - shifted[rows, y]) + 0.5 * l2 * np.sum(W * W))
    G = np.exp(shifted - lse[:, None])   # softmax probabilities P
    G[rows, y] -= 1.0                     # P - Y
    G /= n
    grad = np.concatenate([(X.T @ G + l2 * W).ravel(), G.sum(axis=0)])  # host
    return value, grad


def _standardizer(X, standardize):
    """Train mean and scale; a (near-)constant column keeps scale 1 instead of dividing by ~0."""
    d = X.shape[1]
    if not standardize:
        return np.zeros(d), np.ones(d)  # host
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    tiny = std <= 1e-8 * np.maximum(1.0, np.abs(mean))
    return mean, np.where(tiny, 1.0, std)  # host


def _fit(X, y_idx, K, l2, standardize, max_iter, tol):
    """Fit on raw host features; return coefficients folded back into the raw feature space."""
    mean, scale = _standardizer(X, standardize)
    Z = (X - mean) / scale
    d = X.shape[1]
    theta0 = np.zeros((d + 1) * K)  # host: zero init, so the fit is deterministic
    res = minimize(_objective, theta0, args=(Z, y_idx, K, l2), jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "gtol": tol, "maxfun": max(15000, 10 * max_iter)})
    W = res.x[: d * K].reshape(d, K)
    b = res.x[d * K:]
    # x W' + b' == ((x - mean) / scale) W + b
    coef = W / scale[:, None]
    intercept = b - (mean / scale) @ W
    return coef, intercept, float(res.fun), int(res.nit), bool(res.success)


@dataclass(frozen=True)
class ProbeResult:
    """What :func:`linear_probe` returns.

    ``coef`` ``(d, K)`` and ``intercept`` ``(K,)`` act on the *raw* features (the
    standardisation is folded in), so ``features @ coef + intercept`` are the logits and
    ``classes[argmax]`` the prediction. ``l2_scores`` maps each l2 tried to its held-out
    accuracy when ``l2="auto"``, and is ``None`` otherwise.
    """

    accuracy: float
    train_accuracy: float
    coef: np.ndarray
    intercept: np.ndarray
    classes: np.ndarray
    l2: float
    loss: float
    n_iter: int
    converged: bool
    l2_scores: Optional[dict] = field(default=None)

    def decision_function(self, features):
        """Logits ``(n, K)`` (host NumPy) for raw features of any accepted kind."""
        X = _check_features(backend.to_numpy(_unwrap(features)), "features")
        if X.shape[1] != self.coef.shape[0]:
            raise ValueError(f"features has {X.shape[1]} columns but the probe was fit on "
                             f"{self.coef.shape[0]}")
        return X.astype(np.float64) @ self.coef + self.intercept

    def predict_proba(self, features):
        logits = self.decision_function(features)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, features):
        """Predicted labels (host NumPy, taken from ``classes``); ties go to the first class."""
        return self.classes[np.argmax(self.decision_function(features), axis=1)]


def _accuracy(pred, labels):
    return float(np.mean(pred == labels))


def _stratified_split(y_idx, K, val_fraction, generator):
    """Hold out ``floor(val_fraction * n_c)`` random samples of each class c (never all of them)."""
    gen = _random.as_generator(generator, "cpu")
    val = []
    for c in range(K):
        members = np.flatnonzero(y_idx == c)
        n_val = int(math.floor(val_fraction * members.shape[0]))
        val.append(members[gen.permutation(members.shape[0])[:n_val]])
    val = np.sort(np.concatenate(val))  # host
    keep = np.ones(y_idx.shape[0], dtype=bool)  # host
    keep[val] = False
    return np.flatnonzero(keep), val


def linear_probe(train_features, train_labels, test_features, test_labels, l2=1e-4, *,
                 standardize=True, max_iter=1000, tol=1e-6, l2_grid=None, val_fraction=0.2,
                 generator=0):
    """Multinomial logistic regression on frozen features; returns a :class:`ProbeResult`.

    Minimises :func:`probe_objective` (mean softmax cross-entropy + ``(l2/2)||W||^2``, the
    bias unpenalised) with ``scipy.optimize.minimize(method="L-BFGS-B")`` and its analytic
    gradient, from zero: the same inputs give the same weights. With ``standardize`` the
    features are centred and scaled by the train mean and standard deviation (a constant
    column keeps scale 1), and the same transform is applied to the test features.

    The penalty is per sample: scikit-learn's ``LogisticRegression(C=C)`` minimises
    ``C * sum_i CE_i + ||W||^2 / 2``, which is this objective with ``l2 = 1 / (C * n_train)``
    (scikit-learn's default ``C=1`` on 50,000 samples is ``l2=2e-5``).

    ``l2="auto"`` holds out a stratified ``val_fraction`` of the train set (drawn with
    ``generator``, an int seed or an ``npjem.random.Generator``), fits each value of
    ``l2_grid`` (default :data:`DEFAULT_L2_GRID`) on the rest with statistics of the rest,
    picks the best held-out accuracy (ties: lower held-out cross-entropy), and refits on the
    whole train set with it.

    ``max_iter`` bounds the L-BFGS-B iterations and ``tol`` is its projected-gradient
    tolerance (``gtol``); ``converged`` in the result says whether SciPy reported success.

    Labels are any integers; the classes are those of ``train_labels`` (at least two), and
    a test label never seen in training counts as an error. Inputs may be NumPy or CuPy
    arrays or objects with ``.data``; the fit runs on the host in float64.
    """
    Xtr = _check_features(backend.to_numpy(_unwrap(train_features)), "train_features")
    ytr = _check_labels(backend.to_numpy(_unwrap(train_labels)), "train_labels", Xtr.shape[0],
                        "train_features")
    Xte = _check_features(backend.to_numpy(_unwrap(test_features)), "test_features")
    yte = _check_labels(backend.to_numpy(_unwrap(test_labels)), "test_labels", Xte.shape[0],
                        "test_features")
    _check_same_dim(Xtr, Xte, "train_features", "test_features")
    max_iter = check_int(max_iter, "max_iter")
    tol = check_positive(tol, "tol")
    Xtr = Xtr.astype(np.float64)
    Xte = Xte.astype(np.float64)

    classes, y_idx = np.unique(ytr, return_inverse=True)
    K = classes.shape[0]
    if K < 2:
        raise ValueError(f"train_labels must contain at least two classes, got {K}")

    l2_scores = None
    if isinstance(l2, str):
        if l2 != "auto":
            raise ValueError(f"l2 must be a non-negative number or 'auto', got {l2!r}")
        grid = DEFAULT_L2_GRID if l2_grid is None else tuple(float(v) for v in l2_grid)
        if not grid or any(not (v >= 0.0 and math.isfinite(v)) for v in grid):
            raise ValueError(f"l2_grid must be a non-empty sequence of non-negative numbers, got {l2_grid!r}")
        vf = float(val_fraction)
        if not 0.0 < vf < 1.0:
            raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction!r}")
        fit_idx, val_idx = _stratified_split(y_idx, K, vf, generator)
        if val_idx.shape[0] == 0:
            raise ValueError(f"val_fraction={vf} holds out no sample of train_labels, so "
                             f"l2='auto' has nothing to validate on; raise it or pass a number for l2")
        l2_scores = {}
        best = None
        for value in grid:
            coef, intercept, _, _, _ = _fit(Xtr[fit_idx], y_idx[fit_idx], K, value, standardize,
                                            max_iter, tol)
            logits = Xtr[val_idx] @ coef + intercept
            acc = _accuracy(np.argmax(logits, axis=1), y_idx[val_idx])
            shifted = logits - logits.max(axis=1, keepdims=True)
            nll = float(np.mean(np.log(np.exp(shifted).sum(axis=1))
                                - shifted[np.arange(val_idx.shape[0]), y_idx[val_idx]]))  # host
            l2_scores[value] = acc
            key = (-acc, nll)
            if best is None or key < best[0]:
                best = (key, value)
        l2 = best[1]
    else:
        try:
            l2 = float(l2)
        except (TypeError, ValueError):
            raise ValueError(f"l2 must be a non-negative number or 'auto', got {l2!r}") from None
        if not (l2 >= 0.0 and math.isfinite(l2)):
            raise ValueError(f"l2 must be a non-negative finite number or 'auto', got {l2!r}")

    coef, intercept, loss, n_iter, converged = _fit(Xtr, y_idx, K, l2, standardize, max_iter, tol)
    return ProbeResult(
        accuracy=_accuracy(classes[np.argmax(Xte @ coef + intercept, axis=1)], yte),
        train_accuracy=_accuracy(classes[np.argmax(Xtr @ coef + intercept, axis=1)], ytr),
        coef=coef, intercept=intercept, classes=classes, l2=float(l2), loss=loss,
        n_iter=n_iter, converged=converged, l2_scores=l2_scores,
    )


# ---------------------------------------------------------------- k nearest neighbours

def _knn_inputs(train_features, train_labels, test_features, k, temperature, num_classes,
                batch_size):
    xtr = _check_features(_unwrap(train_features), "train_features")
    ytr = _check_labels(_unwrap(train_labels), "train_labels", xtr.shape[0], "train_features")
    xte = _check_features(_unwrap(test_features), "test_features")
    _check_same_dim(xtr, xte, "train_features", "test_features")
    k = check_int(k, "k")
    if k > xtr.shape[0]:
        raise ValueError(f"k must be at most the number of train samples ({xtr.shape[0]}), got {k}")
    temperature = check_positive(temperature, "temperature")
    batch_size = check_int(batch_size, "batch_size")
    xp, (xtr, ytr, xte) = _common_xp(xtr, ytr, xte)
    lo, hi = int(ytr.min()), int(ytr.max())
    if lo < 0:
        raise ValueError(f"train_labels must be non-negative class indices, got {lo}")
    if num_classes is None:
        num_classes = hi + 1
    else:
        num_classes = check_int(num_classes, "num_classes")
        if hi >= num_classes:
            raise ValueError(f"num_classes={num_classes} is too small: train_labels reach {hi}")
    return xp, xtr, ytr, xte, k, temperature, num_classes, batch_size


def knn_predict(train_features, train_labels, test_features, k=20, temperature=0.07,
                num_classes=None, batch_size=256):
    """Weighted k-NN predictions (on the inputs' array module) for each row of ``test_features``.

    Features are L2-normalised; the similarity is the cosine ``s_ij = <x_i, x_j>``. Each test
    row takes its ``k`` most similar train rows, and each neighbour votes for its label with
    weight ``exp(s_ij / temperature)`` (InstDisc, Wu et al. 2018; DINO's ``knn_classifier``
    with its defaults k=20, T=0.07). The weights are computed as
    ``exp((s_ij - max_j s_ij) / temperature)``, the same up to a positive factor per test row,
    so no temperature overflows. The prediction is the class with the largest summed weight
    (ties: the lowest class index). ``num_classes`` defaults to ``max(train_labels) + 1``.

    Test rows are processed ``batch_size`` at a time, so memory is ``O(batch_size * n_train)``.
    Float32 inputs are computed in float32 and anything else in float64.
    """
    xp, xtr, ytr, xte, k, T, C, bs = _knn_inputs(train_features, train_labels, test_features, k,
                                                 temperature, num_classes, batch_size)
    return _knn_predict(xp, xtr, ytr, xte, k, T, C, bs)


def _knn_predict(xp, xtr, ytr, xte, k, T, C, bs):
    dtype = xp.result_type(xtr.dtype, xte.dtype, xp.float32)
    train = _l2_normalize(xtr.astype(dtype, copy=False), xp)
    ytr = ytr.astype(xp.int64, copy=False)
    n_train = train.shape[0]
    preds = []
    for start in range(0, xte.shape[0], bs):
        q = _l2_normalize(xte[start:start + bs].astype(dtype, copy=False), xp)
        sim = q @ train.T                                           # (b, n_train)
        if k < n_train:
            idx = xp.argpartition(-sim, k - 1, axis=1)[:, :k]       # the k largest, unordered
            top = xp.take_along_axis(sim, idx, axis=1)
        else:
            idx = xp.broadcast_to(xp.arange(n_train), sim.shape)
            top = sim
        weights = xp.exp((top - top.max(axis=1, keepdims=True)) / T)
        b = sim.shape[0]
        # votes[r, c] = sum of the weights of row r's neighbours labelled c, as one bincount.
        key = (xp.arange(b)[:, None] * C + ytr[idx]).ravel()
        votes = xp.bincount(key, weights=weights.ravel().astype(xp.float64),
                            minlength=b * C).reshape(b, C)
        preds.append(xp.argmax(votes, axis=1))
    return xp.concatenate(preds)


def knn_accuracy(train_features, train_labels, test_features, test_labels, k=20,
                 temperature=0.07, num_classes=None, batch_size=256):
    """Top-1 accuracy (a Python float) of :func:`knn_predict` on ``test_labels``.

    A test label that is not a train class counts as an error.
    """
    xp, xtr, ytr, xte, k, T, C, bs = _knn_inputs(train_features, train_labels, test_features, k,
                                                 temperature, num_classes, batch_size)
    yte = _check_labels(_unwrap(test_labels), "test_labels", xte.shape[0], "test_features")
    yte = yte if backend.get_array_module(yte) is xp else xp.asarray(yte)
    pred = _knn_predict(xp, xtr, ytr, xte, k, T, C, bs)
    return float((pred == yte).mean())


# ---------------------------------------------------------------- collapse diagnostics

def _embeddings(z, name, min_rows=1):
    z = _check_features(_unwrap(z), name, min_rows=min_rows)
    xp = backend.get_array_module(z)
    return xp, z.astype(xp.float64)


def embedding_std(z):
    """Mean over dimensions of the per-dimension std of the L2-normalised embeddings.

    SimSiam's collapse monitor (Chen & He 2021, Fig. 2): complete collapse (every row the
    same direction) gives 0; rows spread isotropically on the unit sphere give about
    ``1/sqrt(d)``. The std is the unbiased one (``ddof=1``, as ``torch.std``), so ``z`` needs
    at least two rows. Returns a Python float.
    """
    xp, z = _embeddings(z, "z", min_rows=2)
    u = _l2_normalize(z, xp)
    return float(u.std(axis=0, ddof=1).mean())


def singular_values(z, center=True):
    """Singular values (descending, host NumPy) of the embedding matrix ``z`` ``(n, d)``.

    With ``center`` (the default) the column means are subtracted first, so the spectrum is
    that of the embeddings' covariance (``sigma_k^2 / n`` are its eigenvalues), the spectrum
    plotted to show dimensional collapse (Jing et al. 2022). ``min(n, d)`` values.
    """
    xp, z = _embeddings(z, "z")
    if center:
        z = z - z.mean(axis=0, keepdims=True)
    return backend.to_numpy(xp.linalg.svd(z, compute_uv=False))


def effective_rank(z, center=False, eps=_RANKME_EPS):
    """RankMe (Garrido et al. 2023): ``exp(-sum_k p_k log p_k)``, ``p_k = sigma_k / sum sigma + eps``.

    ``sigma_k`` are the singular values of the embedding matrix, uncentred as in the paper
    (``center=True`` uses the centred matrix of :func:`singular_values` instead). Between
    about 1 and ``min(n, d)``: about ``d`` for isotropic embeddings, about 1 for rank-one
    embeddings. Singular values below ``max(n, d) * eps_float64 * ||z||_F`` are rounding
    noise and are set to zero; when none is left (an all-zero matrix, or complete collapse
    with ``center=True``) the rank is 0. Returns a Python float.
    """
    eps = float(eps)
    if not (eps >= 0.0 and math.isfinite(eps)):
        raise ValueError(f"eps must be a non-negative finite number, got {eps!r}")
    xp, z = _embeddings(z, "z")
    scale = float(xp.sqrt((z * z).sum()))
    if center:
        z = z - z.mean(axis=0, keepdims=True)
    s = backend.to_numpy(xp.linalg.svd(z, compute_uv=False))
    s = np.where(s > max(z.shape) * np.finfo(np.float64).eps * scale, s, 0.0)  # host
    total = s.sum()
    if total == 0.0:
        return 0.0
    p = s / total + eps
    return float(np.exp(-np.sum(p * np.log(p))))


def alignment(z1, z2, alpha=2):
    """Alignment (Wang & Isola 2020): ``E_i ||f(x_i) - f(y_i)||_2^alpha`` over positive pairs.

    Row ``i`` of ``z1`` and row ``i`` of ``z2`` are a positive pair (two views of one sample);
    both are L2-normalised first. 0 for identical pairs, 4^(alpha/2) at most. Python float.
    """
    alpha = check_positive(alpha, "alpha")
    xp, a = _embeddings(z1, "z1")
    _, b = _embeddings(z2, "z2")
    if a.shape != b.shape:
        raise ValueError(f"z1 and z2 must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    xp, (a, b) = _common_xp(a, b)
    diff = _l2_normalize(a, xp) - _l2_normalize(b, xp)
    dist = xp.sqrt((diff * diff).sum(axis=1))
    return float((dist ** alpha).mean())


def uniformity(z, t=2, batch_size=1024):
    """Uniformity (Wang & Isola 2020): ``log E_{i<j} exp(-t ||f(x_i) - f(x_j)||_2^2)``.

    Over all pairs ``i < j`` of L2-normalised rows, as their ``torch.pdist`` code; at most 0
    (complete collapse), lower is more uniform. Two antipodal points give ``-4t``. The mean
    of exponentials is accumulated as a log-sum-exp over blocks of ``batch_size`` rows, so
    memory is ``O(batch_size * n)``. Needs at least two rows; returns a Python float.
    """
    t = check_positive(t, "t")
    batch_size = check_int(batch_size, "batch_size")
    xp, z = _embeddings(z, "z", min_rows=2)
    u = _l2_normalize(z, xp)
    sq = (u * u).sum(axis=1)
    n = u.shape[0]
    cols = xp.arange(n)
    run_max, run_sum = -math.inf, 0.0
    for start in range(0, n - 1, batch_size):
        block = u[start:start + batch_size]
        rows = xp.arange(start, start + block.shape[0])
        d2 = xp.maximum(sq[start:start + block.shape[0], None] + sq[None, :] - 2.0 * (block @ u.T), 0.0)
        a = xp.where(cols[None, :] > rows[:, None], -t * d2, -xp.inf)
        m = float(a.max())
        if m == -math.inf:
            continue
        new_max = max(run_max, m)
        run_sum = run_sum * math.exp(run_max - new_max) + float(xp.exp(a - new_max).sum())
        run_max = new_max
    pairs = n * (n - 1) / 2.0
    return run_max + math.log(run_sum) - math.log(pairs)


def collapse_report(z1, z2=None, t=2, alpha=2):
    """The diagnostics above, in one dict of Python numbers (and one host array).

    Single-view diagnostics are computed on ``z1``: ``embedding_std`` (with its isotropic
    reference ``1/sqrt(d)`` as ``embedding_std_isotropic``), ``effective_rank`` (RankMe,
    uncentred), ``effective_rank_centered``, ``singular_values`` (centred) and
    ``uniformity``; ``n`` and ``dim`` give the shape. With a second view ``z2`` (row i of
    each a positive pair) the report adds ``alignment``.
    """
    _, a = _embeddings(z1, "z1", min_rows=2)
    report = {
        "n": int(a.shape[0]),
        "dim": int(a.shape[1]),
        "embedding_std": embedding_std(a),
        "embedding_std_isotropic": 1.0 / math.sqrt(a.shape[1]),
        "effective_rank": effective_rank(a),
        "effective_rank_centered": effective_rank(a, center=True),
        "singular_values": singular_values(a),
        "uniformity": uniformity(a, t=t),
    }
    if z2 is not None:
        report["alignment"] = alignment(a, z2, alpha=alpha)
    return report


# ---------------------------------------------------------------- fine-tuning

@dataclass(frozen=True)
class FineTuneResult:
    """What :func:`fine_tune` returns.

    ``accuracy`` and ``train_accuracy`` are top-1 accuracies (Python floats) of the trained
    backbone + head on the test and (unaugmented) train images; ``losses`` the per-step
    training cross-entropies; ``head`` the trained ``Linear`` (it predicts the index into
    ``classes``); ``model`` the ``Sequential(backbone, head)``.
    """

    accuracy: float
    train_accuracy: float
    losses: list
    head: object
    model: object
    classes: np.ndarray


def _predict(model, images, batch_size, device, dtype):
    """Arg-max class index of ``model`` on host ``images``, in eval mode, in chunks."""
    from .autograd import Tensor, no_grad  # noqa: PLC0415

    preds = []
    with no_grad():
        for lo in range(0, images.shape[0], batch_size):
            chunk = backend.to_device(images[lo:lo + batch_size], device).astype(dtype, copy=False)
            logits = model(Tensor(chunk)).data
            preds.append(backend.to_numpy(logits.argmax(axis=1)))
    return np.concatenate(preds)  # host


def fine_tune(backbone, train_images, train_labels, test_images, test_labels, *, epochs=10, lr=1e-3,
              batch_size=256, optimizer="adam", weight_decay=0.0, momentum=0.9, warmup_epochs=0,
              augment=None, train_backbone=True, feature_dim=None, generator=0, progress=False, epoch_callback=None):
    """Train ``backbone`` + a new linear head on labelled images by cross-entropy; test accuracy.

    The notes' "finetuning" evaluation (NYU Deep Learning notes, ch. 15-1, "Step2: Evaluation": a downstream-task head on the
    representation, *without* the stop-gradient before the encoder): logits = W·BB(x) + b,
    loss = mean cross-entropy, every parameter of the backbone and the head trained (with
    ``train_backbone=False`` only the head is, on features computed in eval mode: a linear
    probe trained by SGD/Adam). Started from a random backbone it is the supervised baseline.

    The backbone is trained **in place** (pass ``copy.deepcopy(backbone)`` to keep the
    original); its parameters' device and dtype are used for the data and the head.

    Args:
        backbone: an ``npjem.nn.Module`` mapping (N, C, H, W) images to (N, F) features.
        train_images, test_images: (N, C, H, W) arrays (host or device), values as the
            backbone expects; train_labels, test_labels: (N,) integers. The classes are those
            of ``train_labels`` (at least two); a test label never seen in training counts as
            an error.
        epochs: passes over the training set; ``batch_size``: images per step (the last,
            smaller batch of an epoch is kept).
        lr: base learning rate, decayed to 0 by a per-step cosine after ``warmup_epochs`` of
            linear warmup (``npjem.optim.WarmupCosine``).
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"`` (with ``momentum``, Nesterov off);
            ``weight_decay`` is passed to it.
        augment: optional ``augment(x, generator=g) -> x`` applied to each training batch (for
            example ``Compose([RandomResizedCrop(32, scale=(0.2, 1)), RandomHorizontalFlip()])``).
        feature_dim: the backbone's output width (default ``backbone.num_features``, else
            measured on two images).
        generator: seed (or ``npjem.random.Generator``) for the head's initial weights, the
            shuffling and the augmentations.
        progress: print one line per epoch (mean loss) to stderr.
        epoch_callback: called as ``epoch_callback(epoch, backbone)`` after each epoch (1-based),
            for probes during training; it must leave the backbone's training state alone (the
            next epoch sets train mode again).

    Returns a :class:`FineTuneResult`; raises ``FloatingPointError`` if the loss becomes NaN or
    infinite (naming the step).
    """
    import sys  # noqa: PLC0415

    from . import optim  # noqa: PLC0415
    from .autograd import Tensor, no_grad  # noqa: PLC0415
    from .autograd import functional as AF  # noqa: PLC0415
    from .data.datasets import DataLoader  # noqa: PLC0415
    from .nn import Linear, Module, Sequential  # noqa: PLC0415

    if not isinstance(backbone, Module):
        raise TypeError(f"backbone must be an npjem.nn.Module, got {type(backbone).__name__}")
    params = list(backbone.parameters())
    if not params:
        raise ValueError("backbone has no parameters")
    device, dtype = params[0].device, params[0].dtype
    xtr = _unwrap(train_images)
    xte = _unwrap(test_images)
    for name, x in (("train_images", xtr), ("test_images", xte)):
        if x.ndim != 4 or x.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty (N, C, H, W) array, got shape {tuple(x.shape)}")
        if x.dtype.kind != "f":
            raise ValueError(f"{name} must hold floating values, got dtype {x.dtype}")
    if xtr.shape[1:] != xte.shape[1:]:
        raise ValueError(f"test_images have shape {tuple(xte.shape[1:])} per image but train_images "
                         f"{tuple(xtr.shape[1:])}")
    ytr = _check_labels(backend.to_numpy(_unwrap(train_labels)), "train_labels", xtr.shape[0], "train_images")
    yte = _check_labels(backend.to_numpy(_unwrap(test_labels)), "test_labels", xte.shape[0], "test_images")
    epochs = check_int(epochs, "epochs")
    batch_size = check_int(batch_size, "batch_size")
    lr = check_positive(lr, "lr")
    if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be a non-negative integer, got {warmup_epochs!r}")
    if augment is not None and not callable(augment):
        raise TypeError(f"augment must be callable as augment(x, generator=g), got {type(augment).__name__}")
    if epoch_callback is not None and not callable(epoch_callback):
        raise TypeError(f"epoch_callback must be callable or None, got {type(epoch_callback).__name__}")
    opt_name = str(optimizer).lower()
    if opt_name not in ("adam", "adamw", "sgd"):
        raise ValueError(f"optimizer must be 'adam', 'adamw' or 'sgd', got {optimizer!r}")

    classes, y_idx = np.unique(ytr, return_inverse=True)
    k = classes.shape[0]
    if k < 2:
        raise ValueError(f"train_labels must contain at least two classes, got {k}")
    gen = _random.as_generator(generator, device)

    if feature_dim is None:
        feature_dim = getattr(backbone, "num_features", None)
    if feature_dim is None:
        was = backbone.training
        backbone.eval()
        with no_grad():
            probe = backend.to_device(xtr[:2], device).astype(dtype, copy=False)
            feature_dim = int(backbone(Tensor(probe)).shape[1])
        backbone.train(was)
    feature_dim = check_int(feature_dim, "feature_dim")
    head = Linear(feature_dim, k, generator=gen).to(device, dtype)
    model = Sequential(backbone, head)

    trainable = (list(backbone.parameters()) if train_backbone else []) + list(head.parameters())
    trainable = [p for p in trainable if p.requires_grad]
    if opt_name == "sgd":
        opt = optim.SGD(trainable, lr=lr, momentum=momentum, weight_decay=weight_decay)
    elif opt_name == "adamw":
        opt = optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    else:
        opt = optim.Adam(trainable, lr=lr, weight_decay=weight_decay)
    # The loader shuffles on the host with its own seed, drawn from ``gen``.
    loader = DataLoader(xtr, y_idx.astype(np.int64), batch_size=batch_size, shuffle=True,
                        generator=int(gen.integers(0, 2**31 - 1)), device=device)
    total = epochs * len(loader)
    warmup = min(warmup_epochs * len(loader), total - 1)
    sched = optim.WarmupCosine(opt, total_steps=total, warmup_steps=warmup)

    losses = []
    step = 0
    was_training = backbone.training
    try:
        for epoch in range(epochs):
            model.train()
            if not train_backbone:
                backbone.eval()
            for x, y in loader:
                x = x.astype(dtype, copy=False)
                if augment is not None:
                    x = augment(x, generator=gen)
                if train_backbone:
                    feats = backbone(Tensor(x))
                else:
                    with no_grad():
                        feats = Tensor(backbone(Tensor(x)).data)
                loss = AF.cross_entropy(head(feats), y)
                value = float(loss.item())
                if not math.isfinite(value):
                    raise FloatingPointError(f"fine_tune: the loss is {value} at step {step} (epoch {epoch}); "
                                             "lower lr or check the inputs")
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                losses.append(value)
                step += 1
            if progress:
                per = len(loader)
                print(f"fine_tune epoch {epoch + 1}/{epochs}: loss {sum(losses[-per:]) / per:.4f}",
                      file=sys.stderr, flush=True)
            if epoch_callback is not None:
                epoch_callback(epoch + 1, backbone)
        model.eval()
        pred_te = classes[_predict(model, xte, 512, device, dtype)]
        pred_tr = classes[_predict(model, xtr, 512, device, dtype)]
    finally:
        backbone.train(was_training)
        head.train(was_training)
    return FineTuneResult(accuracy=_accuracy(pred_te, yte), train_accuracy=_accuracy(pred_tr, ytr), losses=losses,
                          head=head, model=model, classes=classes)
