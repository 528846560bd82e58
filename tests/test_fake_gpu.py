"""A slice of the suite again, on a strict CPU stand-in for CuPy (``tests/_fake_cupy.py``).

CI has no GPU, yet every device path must hold the seam: no NumPy array may meet a CuPy one
and nothing may convert a device array to NumPy implicitly. This runs a representative slice
of the suite in a subprocess with ``NPJEM_DEVICE=cuda`` and ``NPJEM_FAKE_GPU=1``, where the
fake raises exactly where CuPy would: the engine (every operator and grad mode), convolutions
(first and second order), the contrastive losses, every method's training step (views, BN,
MoCo's queue and EMA, PIRL's memory bank), the augmentations, the DataLoader and the state
buffers. The Hypothesis profile ``device-paths`` draws three examples per property: the paths
are the same for every example, the values are checked by the CPU run.

The whole suite on the fake GPU (minutes) is one command away::

    NPJEM_FAKE_GPU=1 NPJEM_DEVICE=cuda python3 -m pytest -q tests

and a real GPU run (``NPJEM_DEVICE=cuda`` with CuPy) is still the final check.
"""
import os
import subprocess
import sys

import pytest

from npjem import backend

TESTS = os.path.dirname(os.path.abspath(__file__))

SLICE = [
    "autograd/test_engine_semantics.py",
    "autograd/test_functional_edges.py",
    "nn/test_nn_conv.py",
    "losses/test_contrastive.py",
    "methods",
    "data/test_augment.py",
    "data/test_datasets.py::test_dataloader_batches_cover_the_data_once_per_epoch",
    "test_state.py",
]
# Long chains test the engine's iteration, not the device, and the second-order convolution
# tests run the same device kernels as the first-order ones: the CPU run covers them.
DESELECT = "not long_chain and not grad_of_grad_through_conv_energy and not twice_differentiable"


def test_fake_gpu_arrays_refuse_numpy_and_implicit_conversion():
    import numpy as np

    sys.path.insert(0, TESTS)
    import _fake_cupy

    cp = _fake_cupy._FakeCupy()
    a = cp.arange(3.0)
    assert backend._is_cupy_array(a) and not isinstance(a, np.ndarray)
    with pytest.raises(TypeError, match="Unsupported type"):
        a + np.ones(3)
    with pytest.raises(TypeError, match="Unsupported type"):
        cp.concatenate([a, np.ones(3)])
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(a)
    assert type(a.sum()) is _fake_cupy.ndarray and a.sum().ndim == 0  # 0-d arrays, as CuPy
    np.testing.assert_array_equal((a * 2).get(), [0.0, 2.0, 4.0])
    host = np.ones(2)
    b = cp.asarray(host)
    host[0] = 5.0  # a transfer copies
    np.testing.assert_array_equal(b.get(), [1.0, 1.0])
    with pytest.raises(AttributeError, match="errstate"):
        cp.errstate  # noqa: B018  (CuPy has none at its top level)


def test_the_slice_names_existing_tests():
    for part in SLICE:
        path = os.path.join(TESTS, part.split("::")[0])
        assert os.path.exists(path), f"{part} is gone: update SLICE"


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("NPJEM_FAKE_GPU") == "1" or backend.default_device() != "cpu",
                    reason="the suite is already running on a (fake) device")
def test_a_slice_of_the_suite_passes_on_the_fake_gpu():
    env = dict(os.environ, NPJEM_FAKE_GPU="1", NPJEM_DEVICE="cuda", HYPOTHESIS_PROFILE="device-paths")
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "--tb=short", "-k", DESELECT,
           *(os.path.join(TESTS, part) for part in SLICE)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200, cwd=os.path.dirname(TESTS))
    assert r.returncode == 0, "the slice failed on the fake GPU:\n" + r.stdout[-8000:] + r.stderr[-2000:]
    assert " passed" in r.stdout, r.stdout[-2000:]
