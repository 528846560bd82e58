"""Tensor factories (``zeros``, ``randn`` …) on a device, in npjem's default dtype."""
from __future__ import annotations

import numpy as np

from . import backend
from . import random as nrandom
from .autograd.tensor import Tensor

__all__ = ["zeros", "ones", "full", "empty", "arange", "zeros_like", "ones_like", "randn", "rand"]


def _dt(dtype):
    return np.dtype(backend.default_dtype() if dtype is None else dtype)


def _make(fn, shape, dtype, device, requires_grad, *args):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    xp = backend.xp_for_device(device)
    return Tensor(getattr(xp, fn)(shape, *args, dtype=_dt(dtype)), requires_grad=requires_grad)


def zeros(*shape, dtype=None, device=None, requires_grad=False):
    return _make("zeros", shape, dtype, device, requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad=False):
    return _make("ones", shape, dtype, device, requires_grad)


def empty(*shape, dtype=None, device=None, requires_grad=False):
    return _make("empty", shape, dtype, device, requires_grad)


def full(shape, fill_value, dtype=None, device=None, requires_grad=False):
    xp = backend.xp_for_device(device)
    return Tensor(xp.full(tuple(shape), fill_value, dtype=_dt(dtype)), requires_grad=requires_grad)


def arange(start, stop=None, step=1, dtype=None, device=None):
    xp = backend.xp_for_device(device)
    if stop is None:
        start, stop = 0, start
    dt = dtype if dtype is not None else (np.int64 if all(isinstance(v, int) for v in (start, stop, step))
                                          else backend.default_dtype())
    return Tensor(xp.arange(start, stop, step, dtype=dt))


def zeros_like(t, dtype=None, requires_grad=False):
    return Tensor(t.xp.zeros_like(t.data, dtype=dtype), requires_grad=requires_grad)


def ones_like(t, dtype=None, requires_grad=False):
    return Tensor(t.xp.ones_like(t.data, dtype=dtype), requires_grad=requires_grad)


def randn(*shape, generator=None, dtype=None, device=None, requires_grad=False):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    g = nrandom.as_generator(generator, device)
    return Tensor(g.standard_normal(shape, dtype=_dt(dtype)), requires_grad=requires_grad)


def rand(*shape, generator=None, dtype=None, device=None, requires_grad=False):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    g = nrandom.as_generator(generator, device)
    return Tensor(g.random(shape, dtype=_dt(dtype)), requires_grad=requires_grad)
