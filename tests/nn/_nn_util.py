"""Shared helpers of the nn tests: the device under test and float64 tensor factories."""
import numpy as np
import pytest

import npjem
from npjem import backend

DEVICE = backend.default_device()
skip_without_device = pytest.mark.skipif(
    DEVICE != "cpu" and not backend.cupy_available(),
    reason="NPJEM_DEVICE asks for a GPU that is not available")


def T(a, requires_grad=True, dtype=np.float64):
    """A float64 leaf Tensor on the device under test."""
    return npjem.tensor(np.asarray(a, dtype=dtype), device=DEVICE, requires_grad=requires_grad)


def host(t):
    """A host NumPy array from a Tensor or an array."""
    return backend.to_numpy(t)


def rng(seed=0):
    return np.random.default_rng(seed)
