"""``BatchNorm1d``, ``BatchNorm2d`` and ``LayerNorm``, with PyTorch's parameters, buffers and semantics."""
from __future__ import annotations

import numbers

import numpy as np

from .. import backend
from ..autograd.tensor import Tensor
from . import functional as F
from .._checks import check_int, check_positive, check_probability
from ._utils import filled
from .module import Module, Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm"]


class _BatchNorm(Module):
    """Normalise each channel (axis 1) with batch statistics in training, running ones in eval.

    Training: y = (x − μ_B)/√(σ²_B + ε)·γ + β with the biased batch variance; the running
    statistics move by ``momentum`` towards μ_B and the *unbiased* variance σ²_B·n/(n − 1).
    ``momentum=None`` makes them cumulative averages (factor 1/num_batches_tracked), as PyTorch.
    Eval: the running statistics replace the batch ones. With ``track_running_stats=False``
    batch statistics are used in both modes and there are no buffers.
    """

    _expected_dims: tuple = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 device=None, dtype=None):
        super().__init__()
        self.num_features = check_int(num_features, "num_features")
        check_positive(eps, "eps", allow_zero=True)
        if momentum is not None:
            check_probability(momentum, "momentum")
        self.eps = eps
        self.momentum = momentum
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        c = self.num_features
        if self.affine:
            self.weight = Parameter(filled((c,), 1.0, device, dtype))
            self.bias = Parameter(filled((c,), 0.0, device, dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            xp = backend.xp_for_device(device)
            self.register_buffer("running_mean", Tensor(filled((c,), 0.0, device, dtype)))
            self.register_buffer("running_var", Tensor(filled((c,), 1.0, device, dtype)))
            self.register_buffer("num_batches_tracked", Tensor(xp.zeros((), dtype=np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            self.weight.data[...] = 1
            self.bias.data[...] = 0

    def _check_input(self, x):
        if x.ndim not in self._expected_dims:
            dims = " or ".join(f"{d}D" for d in self._expected_dims)
            raise ValueError(f"{type(self).__name__}: expected {dims} input, got {x.ndim}D input "
                             f"of shape {tuple(x.shape)}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}: input has {x.shape[1]} channels (axis 1), expected "
                             f"num_features={self.num_features}")

    def forward(self, input):  # noqa: A002
        self._check_input(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked.data)
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        keep = not self.training or self.track_running_stats
        return F.batch_norm(
            input,
            self.running_mean if keep else None,
            self.running_var if keep else None,
            self.weight, self.bias, use_batch, factor, self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) inputs over N (and L)."""

    _expected_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) inputs over N, H and W."""

    _expected_dims = (4,)


class LayerNorm(Module):
    """y = (x − mean)/√(var + ε)·γ + β over the trailing ``normalized_shape`` axes (biased var)."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None,
                 dtype=None):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (int(normalized_shape),)
        self.normalized_shape = tuple(check_int(s, "normalized_shape") for s in normalized_shape)
        self.eps = eps
        self.elementwise_affine = bool(elementwise_affine)
        if self.elementwise_affine:
            self.weight = Parameter(filled(self.normalized_shape, 1.0, device, dtype))
            if bias:
                self.bias = Parameter(filled(self.normalized_shape, 0.0, device, dtype))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self):
        if self.weight is not None:
            self.weight.data[...] = 1
        if self.bias is not None:
            self.bias.data[...] = 0

    def forward(self, input):  # noqa: A002
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
