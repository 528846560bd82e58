"""Activation layers: ``ReLU``, ``LeakyReLU``, ``GELU``, ``SiLU``, ``Tanh``, ``Sigmoid``, ``Softplus``.

``inplace`` is accepted where PyTorch has it (so model definitions port unchanged); the
result is computed out of place either way, which gives the same values and gradients.
"""
from __future__ import annotations

from ..autograd import ops
from . import functional as F
from .module import Module

__all__ = ["ReLU", "LeakyReLU", "GELU", "SiLU", "Tanh", "Sigmoid", "Softplus"]


class ReLU(Module):
    """max(x, 0); gradient 0 at 0 (PyTorch's choice)."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = bool(inplace)

    def forward(self, input):  # noqa: A002
        return F.relu(input)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class LeakyReLU(Module):
    """x for x > 0, negative_slope·x otherwise."""

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope = float(negative_slope)
        self.inplace = bool(inplace)

    def forward(self, input):  # noqa: A002
        return F.leaky_relu(input, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class GELU(Module):
    """x·Φ(x) (``approximate='none'``) or its tanh approximation (``'tanh'``)."""

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, input):  # noqa: A002
        return F.gelu(input, approximate=self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class SiLU(Module):
    """x·σ(x) (swish)."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = bool(inplace)

    def forward(self, input):  # noqa: A002
        return F.silu(input)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class Tanh(Module):
    def forward(self, input):  # noqa: A002
        return ops.tanh(input)


class Sigmoid(Module):
    def forward(self, input):  # noqa: A002
        return ops.sigmoid(input)


class Softplus(Module):
    """log(1 + exp(βx))/β, computed stably for every x (no threshold switch needed)."""

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        if beta <= 0:
            raise ValueError(f"beta must be positive, got {beta}")
        self.beta, self.threshold = float(beta), float(threshold)

    def forward(self, input):  # noqa: A002
        return F.softplus(input, beta=self.beta, threshold=self.threshold)

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"
