"""Composite functions written in terms of the primitives in ``ops``.

Every function here is differentiable to any order because its pieces are. Argument names
and defaults follow ``torch.nn.functional``.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from .._checks import check_choice
from . import ops
from .ops import exp, log, sqrt, where
from .tensor import Function, Tensor, as_tensor, is_grad_enabled

__all__ = [
    "relu", "leaky_relu", "gelu", "silu", "softplus", "sigmoid", "tanh", "logsumexp", "softmax",
    "log_softmax", "norm", "normalize", "cosine_similarity", "cross_entropy", "nll_loss",
    "mse_loss", "smooth_l1_loss", "layer_norm", "linear", "dropout", "one_hot",
    "binary_cross_entropy_with_logits",
]

sigmoid = ops.sigmoid
tanh = ops.tanh


def _check_reduction(reduction):
    check_choice(reduction, "reduction", ("mean", "sum", "none"))


def _reduce(loss, reduction):
    _check_reduction(reduction)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


class _ReLU(Function):
    """max(x, 0); the gradient is gy·[x > 0], 0 at x = 0 as in PyTorch.

    A primitive rather than ``where(x > 0, x, 0)``: NumPy's ``maximum`` and a mask multiply
    run several times faster than ``where`` on large activations. The mask is a constant, so
    the second derivative is 0 (and exact) away from the kink. Large arrays are done in
    pieces along the first axis, several threads at once (``backend.parallel_for``).
    """

    def forward(self, x):
        xp = backend.get_array_module(x)
        if x.ndim == 0:
            return xp.maximum(x, 0)
        y = xp.empty_like(x)  # x's memory layout (a convolution's output is channels-last)

        def piece(a, b):
            xp.maximum(x[a:b], 0, out=y[a:b])

        backend.parallel_for(xp, x.shape[0], piece, _rows_per_piece(x))
        return y

    def backward(self, gy):
        x = self.inputs[0]
        if is_grad_enabled() or x.ndim == 0:
            mask = x.xp.asarray(x.data > 0)  # a 0-d comparison gives a NumPy scalar, not an array
            if gy.xp.isfinite(gy.data).all():
                return gy * Tensor(mask)
            return where(mask, gy, 0.0)  # inf·0 would turn a masked-out infinity into NaN
        xp, xd, g = gy.xp, x.data, gy.data
        gx = xp.empty_like(xd, dtype=g.dtype)

        def piece(a, b):
            mask, ga = xd[a:b] > 0, g[a:b]
            if xp.isfinite(ga).all():
                xp.multiply(ga, mask, out=gx[a:b])
            else:  # inf·0 would turn a masked-out infinity into NaN
                gx[a:b] = xp.where(mask, ga, 0.0)

        backend.parallel_for(xp, xd.shape[0], piece, _rows_per_piece(xd))
        return Tensor(gx)


# Elementwise passes over large arrays are cut into pieces of about this many bytes along the
# first axis, for threads (backend.parallel_for): enough work to pay for a hand-off, small
# enough to stay in a core's cache between the steps of a fused pass.
_PIECE_BYTES = 1 << 20


def _rows_per_piece(a):
    per_row = a.nbytes // max(a.shape[0], 1)
    return max(1, _PIECE_BYTES // max(per_row, 1))


def relu(x):
    """max(x, 0); the gradient at 0 is 0, as in PyTorch."""
    return _ReLU()(as_tensor(x))


class _SiLU(Function):
    """y = x·σ(x); ∂y/∂x = σ(x)·(1 + x·(1 − σ(x))), as ``torch.nn.functional.silu``'s backward.

    One primitive rather than ``x * sigmoid(x)``: the composite records two ops forward and
    five backward, each with its temporaries and its Python, and the swish MLP of a Langevin
    sampler is made of little else (``benchmarks/langevin.py``). σ is computed as
    ``ops.sigmoid`` computes it (tanh form), in place, and kept for the backward, so the
    forward values are the composite's bit for bit; the backward groups the same terms
    differently (last-bit float differences). Under ``create_graph`` the backward is
    written with Tensor operations and σ recomputed from x, so it is differentiable again.
    """

    def forward(self, x):
        xp = backend.get_array_module(x)
        s = xp.tanh(x * 0.5)
        s *= 0.5
        s += 0.5
        self._s = s
        return x * s

    def backward(self, gy):
        x = self.inputs[0]
        if is_grad_enabled():
            s = ops.sigmoid(x)
            return gy * (s * ((1.0 - s) * x + 1.0))
        s = self._s
        g = 1.0 - s
        g *= x.data
        g += 1.0
        g *= s
        g *= gy.data
        return Tensor(backend.get_array_module(g).asarray(g))  # a 0-d input makes NumPy scalars


def silu(x):
    """x·σ(x) (swish), ``torch.nn.functional.silu``; differentiable to any order."""
    return _SiLU()(as_tensor(x))


def leaky_relu(x, negative_slope=0.01):
    x = as_tensor(x)
    return where(x.data > 0, x, x * negative_slope)


def gelu(x, approximate="none"):
    """x Φ(x) (``approximate='none'``, PyTorch's default) or its tanh approximation."""
    x = as_tensor(x)
    if approximate == "none":
        return x * (ops.erf(x * (1.0 / np.sqrt(2.0))) + 1.0) * 0.5
    if approximate == "tanh":
        c = np.sqrt(2.0 / np.pi)
        return x * 0.5 * (ops.tanh((x + x * x * x * 0.044715) * c) + 1.0)
    raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")


class _Softplus(Function):
    """log(1 + exp(x)), computed as max(x, 0) + log1p(exp(−|x|)) so it never overflows.

    A fused primitive rather than that composite: the composite's pieces (max, |x|) have
    kinks at 0 that cancel in the first derivative but not in the second (at x = 0 exactly it
    gave 0 instead of σ'(0) = 1/4). The backward σ(x) is itself differentiable, so every order
    is right everywhere.
    """

    def forward(self, x):
        xp = backend.get_array_module(x)
        return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))

    def backward(self, gy):
        return gy * ops.sigmoid(self.inputs[0])


def softplus(x, beta=1.0, threshold=20.0):
    """log(1 + exp(βx)) / β, evaluated stably (never overflows).

    PyTorch switches to the identity above ``threshold``; the stable form needs no switch and
    agrees with it to float precision there.
    """
    x = as_tensor(x)
    bx = x * beta if beta != 1.0 else x
    y = _Softplus()(bx)
    return y * (1.0 / beta) if beta != 1.0 else y


def logsumexp(x, axis=-1, keepdims=False):
    """log Σ exp(x) along ``axis``, with the (detached) max subtracted first for stability."""
    x = as_tensor(x)
    m = x.data.max(axis=axis, keepdims=True)
    xp = backend.get_array_module(m)
    m = xp.where(xp.isfinite(m), m, 0).astype(x.dtype, copy=False)  # all −inf rows stay −inf
    s = log(exp(x - Tensor(m)).sum(axis=axis, keepdims=True)) + Tensor(m)
    return s if keepdims else ops.squeeze(s, axis)


def softmax(x, axis=-1):
    x = as_tensor(x)
    m = Tensor(x.data.max(axis=axis, keepdims=True))
    e = exp(x - m)
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    x = as_tensor(x)
    return x - logsumexp(x, axis=axis, keepdims=True)


def norm(x, axis=-1, keepdims=False, eps=0.0):
    """Euclidean norm along ``axis``. ``eps`` inside the square root keeps the gradient finite at 0."""
    x = as_tensor(x)
    s = (x * x).sum(axis=axis, keepdims=keepdims)
    return sqrt(s + eps) if eps else sqrt(s)


def normalize(x, p=2.0, axis=-1, eps=1e-12):
    """x / max(‖x‖₂, eps) along ``axis``, as ``torch.nn.functional.normalize`` (p=2 only).

    At x = 0 the result and its gradient are 0 (the norm is clamped, as in PyTorch).
    """
    if p != 2 and p != 2.0:
        raise ValueError(f"normalize supports p=2 only, got p={p}")
    x = as_tensor(x)
    n2 = (x * x).sum(axis=axis, keepdims=True)
    tiny = n2.data <= eps * eps
    # sqrt is evaluated on a safe value where the norm is clamped, so no inf*0 appears in backward.
    n = where(tiny, eps, sqrt(where(tiny, 1.0, n2)))
    return x / n


def cosine_similarity(x1, x2, axis=-1, eps=1e-8):
    """x1·x2 / (max(‖x1‖, eps) · max(‖x2‖, eps)), as current PyTorch (each norm clamped separately)."""
    x1, x2 = as_tensor(x1), as_tensor(x2)
    if x1.shape[axis] != x2.shape[axis]:
        raise ValueError(f"cosine_similarity: x1 has {x1.shape[axis]} features, x2 has {x2.shape[axis]}")
    return (normalize(x1, axis=axis, eps=eps) * normalize(x2, axis=axis, eps=eps)).sum(axis=axis)


def one_hot(labels, num_classes, dtype=None):
    """A constant one-hot Tensor of shape labels.shape + (num_classes,)."""
    lab = labels.data if isinstance(labels, Tensor) else labels
    xp = backend.get_array_module(lab)
    lab = xp.asarray(lab)
    dt = backend.default_dtype() if dtype is None else dtype
    return Tensor((lab[..., None] == xp.arange(num_classes)).astype(dt))


def nll_loss(log_probs, target, reduction="mean"):
    """−log_probs[i, target[i]] averaged, as ``F.nll_loss`` (integer targets)."""
    log_probs = as_tensor(log_probs)
    tgt = target.data if isinstance(target, Tensor) else target
    xp = log_probs.xp
    tgt = xp.asarray(tgt)
    if log_probs.ndim != 2:
        raise ValueError(f"log_probs must be 2-D (N, C), got shape {log_probs.shape}")
    n, c = log_probs.shape
    if tgt.shape != (n,):
        raise ValueError(f"target must have shape ({n},), got {tgt.shape}")
    if tgt.dtype.kind not in "iu":
        raise ValueError(f"integer target expected, got dtype {tgt.dtype}")
    if tgt.size and (int(tgt.min()) < 0 or int(tgt.max()) >= c):
        raise ValueError(f"target values must lie in [0, {c}), got range [{int(tgt.min())}, {int(tgt.max())}]")
    picked = log_probs[xp.arange(n), tgt]
    return _reduce(-picked, reduction)


def cross_entropy(logits, target, reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy of ``logits`` (N, C) with integer targets (N,) or soft targets (N, C).

    −Σ_c q_c log softmax(z)_c per row, q = one-hot or the given distribution, optionally
    smoothed as in PyTorch: q ← (1 − ε) q + ε / C.
    """
    logits = as_tensor(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must be 2-D (N, C), got shape {logits.shape}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    logp = log_softmax(logits, axis=1)
    tgt = target.data if isinstance(target, Tensor) else target
    tgt = logits.xp.asarray(tgt)
    if tgt.dtype.kind == "f":
        if tgt.shape != logits.shape:
            raise ValueError(f"soft target must have the logits' shape {logits.shape}, got {tgt.shape}")
        q = as_tensor(target, logits) if isinstance(target, Tensor) else Tensor(tgt.astype(logits.dtype))
        if label_smoothing:
            q = q * (1.0 - label_smoothing) + label_smoothing / logits.shape[1]
        return _reduce(-(q * logp).sum(axis=1), reduction)
    nll = nll_loss(logp, tgt, reduction="none")
    if label_smoothing:
        nll = nll * (1.0 - label_smoothing) - logp.mean(axis=1) * label_smoothing
    return _reduce(nll, reduction)


def binary_cross_entropy_with_logits(logits, target, reduction="mean"):
    """softplus(z) − y z, the stable form of −y log σ(z) − (1−y) log(1−σ(z))."""
    logits = as_tensor(logits)
    target = as_tensor(target, logits)
    if logits.shape != target.shape:
        raise ValueError(f"logits shape {logits.shape} and target shape {target.shape} differ")
    return _reduce(softplus(logits) - logits * target, reduction)


def mse_loss(input, target, reduction="mean"):  # noqa: A002 - PyTorch's name
    input, target = as_tensor(input), as_tensor(target, as_tensor(input))
    if input.shape != target.shape:
        raise ValueError(f"mse_loss: input shape {input.shape} and target shape {target.shape} differ")
    d = input - target
    return _reduce(d * d, reduction)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):  # noqa: A002
    """0.5 d²/β where |d| < β, |d| − 0.5β elsewhere (PyTorch's ``smooth_l1_loss``)."""
    input, target = as_tensor(input), as_tensor(target, as_tensor(input))
    if input.shape != target.shape:
        raise ValueError(f"smooth_l1_loss: input shape {input.shape} and target shape {target.shape} differ")
    if beta < 0:
        raise ValueError(f"beta must be non-negative, got {beta}")
    d = input - target
    ad = ops.abs(d)
    if beta == 0:
        return _reduce(ad, reduction)
    return _reduce(where(ad.data < beta, d * d * (0.5 / beta), ad - 0.5 * beta), reduction)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """(x − mean) / sqrt(var + eps) over the trailing ``normalized_shape`` axes (biased variance)."""
    x = as_tensor(x)
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    k = len(normalized_shape)
    if tuple(x.shape[-k:]) != tuple(normalized_shape):
        raise ValueError(f"layer_norm: input shape {x.shape} does not end with normalized_shape {tuple(normalized_shape)}")
    axes = tuple(range(x.ndim - k, x.ndim))
    mu = x.mean(axis=axes, keepdims=True)
    d = x - mu
    v = (d * d).mean(axis=axes, keepdims=True)
    y = d / sqrt(v + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


class _Linear(Function):
    """y = x Wᵀ (+ b) for x of shape (..., in) and W of shape (out, in).

    One primitive so that the weight gradient gyᵀx comes out of its GEMM in W's own layout:
    through ``matmul(x, transpose(W))`` it arrives as a transposed view, which must then be
    copied to become ``W.grad`` (a fifth of an MLP step's time, measured by
    benchmarks/engine.py). The backward is written with Tensor operations, so it is
    differentiable again.
    """

    def forward(self, x, w, b=None):
        y = backend.matmul(x, w.T)
        if b is None:
            return y
        if b.dtype == y.dtype:
            y += b
            return y
        return y + b

    def backward(self, gy):
        x, w = self.inputs[0], self.inputs[1]
        need = self.needs_input_grad
        gx = ops.matmul(gy, w) if need[0] else None
        gw = None
        if need[1]:
            rows = ops.reshape(gy, (-1, gy.shape[-1])) if gy.ndim != 2 else gy
            cols = ops.reshape(x, (-1, x.shape[-1])) if x.ndim != 2 else x
            gw = ops.matmul(ops.transpose(rows), cols)
        if len(self.inputs) == 2:
            return gx, gw
        gb = ops.sum_to(gy, self.inputs[2].shape) if need[2] else None
        return gx, gw, gb


def linear(x, weight, bias=None):
    """x Wᵀ + b with PyTorch's weight layout (out_features, in_features); x is (..., in_features)."""
    x, weight = as_tensor(x), as_tensor(weight)
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input of shape {x.shape} does not end in in_features = {weight.shape[1]} "
                         f"(weight shape {weight.shape})")
    if bias is None:
        return _Linear()(x, weight)
    bias = as_tensor(bias)
    if bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    return _Linear()(x, weight, bias)


def dropout(x, p=0.5, training=True, generator=None):
    """Inverted dropout: zero with probability ``p`` and scale the rest by 1/(1−p)."""
    from .. import random as nrandom

    if not 0.0 <= p < 1.0:
        if p == 1.0 and training:
            return as_tensor(x) * 0.0
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    x = as_tensor(x)
    if not training or p == 0.0:
        return x
    g = nrandom.as_generator(generator, x.device)
    keep = g.random(x.shape, dtype=x.dtype) >= p
    return x * Tensor((keep / (1.0 - p)).astype(x.dtype, copy=False))
