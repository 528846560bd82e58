import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# CI runs on 2 cores under a time budget: fewer examples there, no deadline (first calls
# pay for imports and caches). Locally the default profile draws more.
settings.register_profile(
    "ci", max_examples=15, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# The fake-GPU slice (tests/test_fake_gpu.py) checks device paths, not values: a few examples
# walk the same code paths.
settings.register_profile(
    "device-paths", max_examples=3, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# The default profile is derandomized too, so the README's test command gives the same result on
# every run; HYPOTHESIS_PROFILE=explore draws fresh random examples to hunt for new edge cases.
settings.register_profile(
    "dev", max_examples=40, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "explore", max_examples=200, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# NPJEM_FAKE_GPU=1 hands npjem a strict CPU stand-in for CuPy (tests/_fake_cupy.py), so that
# NPJEM_DEVICE=cuda runs the device paths of the whole suite on a machine without a GPU.
if os.environ.get("NPJEM_FAKE_GPU") == "1":
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    import _fake_cupy
    from npjem import backend as _backend

    _fake_cupy.install(_backend)

settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture
def device():
    """The device the suite runs on: ``NPJEM_DEVICE`` (``cuda`` skips when no GPU is present)."""
    from npjem import backend

    dev = backend.default_device()
    if dev != "cpu" and not backend.cupy_available():
        pytest.skip("NPJEM_DEVICE asks for a GPU but CuPy or a GPU is not available")
    return dev


@pytest.fixture
def xp(device):
    from npjem import backend

    return backend.xp_for_device(device)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
