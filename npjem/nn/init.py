"""Parameter initialisations, as ``torch.nn.init``, drawn from an explicit generator.

Each function fills a Tensor's array in place (on its device, in its dtype) and returns the
Tensor. ``generator`` is an ``npjem.random.Generator``, an int seed, or None for the
device's default generator (``npjem.random.manual_seed``). The draws differ from PyTorch's
(a different bit generator); the distributions are the same.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from .. import random as nrandom
from ..autograd.tensor import Tensor

__all__ = [
    "reset_weight_and_bias_",
    "calculate_gain", "calculate_fan_in_and_fan_out", "uniform_", "normal_", "trunc_normal_",
    "constant_", "ones_", "zeros_", "eye_", "xavier_uniform_", "xavier_normal_",
    "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
]


def _check(tensor):
    if not isinstance(tensor, Tensor):
        raise TypeError(f"tensor must be an npjem Tensor, got {type(tensor).__name__}")
    if tensor.dtype.kind != "f":
        raise TypeError(f"tensor must be floating, got dtype {tensor.dtype}")


def _gen(generator, tensor):
    g = nrandom.as_generator(generator, tensor.device)
    if g.device != tensor.device:
        raise ValueError(f"generator is on {g.device} but the tensor is on {tensor.device}")
    return g


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for ``nonlinearity`` (PyTorch's table): relu √2, tanh 5/3,
    leaky_relu √(2 / (1 + slope²)) with slope ``param`` (default 0.01), selu 3/4, linear 1."""
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = float(param)
        else:
            raise ValueError(f"negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1.0 + slope * slope))
    if nonlinearity == "selu":
        return 3.0 / 4.0
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def calculate_fan_in_and_fan_out(tensor):
    """fan_in = shape[1]·receptive field, fan_out = shape[0]·receptive field (PyTorch's rule)."""
    shape = tuple(tensor.shape)
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need a tensor of at least 2 dimensions, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _fill(tensor, values):
    tensor.data[...] = values.astype(tensor.dtype, copy=False)
    return tensor


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """Fill with U(a, b)."""
    _check(tensor)
    if not a <= b:
        raise ValueError(f"uniform_: need a <= b, got a={a}, b={b}")
    u = _gen(generator, tensor).random(tensor.shape, dtype=tensor.dtype)
    return _fill(tensor, u * (b - a) + a)


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    """Fill with N(mean, std²)."""
    _check(tensor)
    if std < 0:
        raise ValueError(f"normal_: std must be non-negative, got {std}")
    z = _gen(generator, tensor).standard_normal(tensor.shape, dtype=tensor.dtype)
    return _fill(tensor, z * std + mean)


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
    """Fill with N(mean, std²) truncated to [a, b] (absolute bounds, as PyTorch), by inverse CDF."""
    _check(tensor)
    if not a < b:
        raise ValueError(f"trunc_normal_: need a < b, got a={a}, b={b}")
    if std <= 0:
        raise ValueError(f"trunc_normal_: std must be positive, got {std}")

    def cdf(v):
        return 0.5 * (1.0 + math.erf((v - mean) / (std * math.sqrt(2.0))))

    lo, hi = cdf(a), cdf(b)
    u = _gen(generator, tensor).random(tensor.shape, dtype=np.float64)
    p = u * (hi - lo) + lo
    xp = backend.get_array_module(p)
    z = math.sqrt(2.0) * backend.erfinv(2.0 * p - 1.0)
    return _fill(tensor, xp.clip(z * std + mean, a, b))


def constant_(tensor, val):
    _check(tensor)
    tensor.data[...] = val
    return tensor


def ones_(tensor):
    return constant_(tensor, 1.0)


def zeros_(tensor):
    return constant_(tensor, 0.0)


def eye_(tensor):
    """The identity in a 2-D tensor (ones on the diagonal of a rectangle)."""
    _check(tensor)
    if tensor.ndim != 2:
        raise ValueError(f"eye_ needs a 2-D tensor, got shape {tensor.shape}")
    tensor.data[...] = tensor.xp.eye(*tensor.shape, dtype=tensor.dtype)
    return tensor


def xavier_uniform_(tensor, gain=1.0, generator=None):
    """U(−a, a) with a = gain·√(6 / (fan_in + fan_out)) (Glorot & Bengio)."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    a = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -a, a, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    """N(0, σ²) with σ = gain·√(2 / (fan_in + fan_out))."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def _kaiming_std(tensor, a, mode, nonlinearity):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    fan = fan_in if mode == "fan_in" else fan_out
    if fan == 0:
        raise ValueError(f"cannot initialise a tensor with zero {mode} (shape {tensor.shape})")
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """U(−b, b) with b = √3 · gain(a) / √fan (He et al.). Linear and Conv2d use a = √5, which
    gives b = 1/√fan_in."""
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """N(0, σ²) with σ = gain(a) / √fan."""
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity), generator)


def orthogonal_(tensor, gain=1.0, generator=None):
    """A (semi-)orthogonal matrix from the QR decomposition of a Gaussian one (sign-corrected),
    reshaped to the tensor (first axis = rows), times ``gain``."""
    _check(tensor)
    if tensor.ndim < 2:
        raise ValueError(f"orthogonal_ needs at least 2 dimensions, got shape {tensor.shape}")
    rows = tensor.shape[0]
    cols = tensor.size // rows
    g = _gen(generator, tensor)
    flat = g.standard_normal((rows, cols), dtype=np.float64)
    xp = backend.get_array_module(flat)
    if rows < cols:
        flat = flat.T
    q, r = xp.linalg.qr(flat)
    q = q * xp.sign(xp.diag(r))
    if rows < cols:
        q = q.T
    return _fill(tensor, (q * gain).reshape(tensor.shape))


def reset_weight_and_bias_(weight, bias=None, generator=None):
    """PyTorch's default for Linear and Conv: W ~ kaiming_uniform(a=√5) = U(±1/√fan_in), b ~ U(±1/√fan_in)."""
    g = _gen(generator, weight)
    kaiming_uniform_(weight, a=math.sqrt(5), generator=g)
    if bias is not None:
        fan_in, _ = calculate_fan_in_and_fan_out(weight)
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        uniform_(bias, -bound, bound, generator=g)
