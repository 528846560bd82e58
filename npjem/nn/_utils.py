"""Small helpers shared by the layers: argument checks and parameter allocation."""
from __future__ import annotations

import numbers

import numpy as np

from .. import backend
from .._checks import check_float_dtype as _check_float_dtype
from .module import Parameter


def check_float_dtype(dtype):
    return _check_float_dtype(dtype, "dtype", default=backend.default_dtype())


def empty_parameter(shape, device=None, dtype=None):
    """An uninitialised Parameter of ``shape`` on ``device`` (npjem's default dtype unless given)."""
    xp = backend.xp_for_device(device)
    return Parameter(xp.empty(tuple(shape), dtype=check_float_dtype(dtype)))


def filled(shape, value, device=None, dtype=None):
    xp = backend.xp_for_device(device)
    return xp.full(tuple(shape), value, dtype=check_float_dtype(dtype))


def pair(v, name):
    if isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, bool):
        return (int(v), int(v))
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(
            isinstance(a, (numbers.Integral, np.integer)) and not isinstance(a, bool) for a in v):
        return (int(v[0]), int(v[1]))
    raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")
