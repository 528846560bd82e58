"""The whole suite again, on a strict CPU stand-in for CuPy (``tests/_fake_cupy.py``).

CI has no GPU, yet every device path must hold the seam: no NumPy array may meet a CuPy one
and nothing may convert a device array to NumPy implicitly. This runs the suite in a
subprocess with ``NPJEM_DEVICE=cuda`` and ``NPJEM_FAKE_GPU=1``, where the fake raises exactly
where CuPy would. A real GPU run (``NPJEM_DEVICE=cuda`` with CuPy) is still the final check.
"""
import os
import subprocess
import sys

import pytest

from npjem import backend

TESTS = os.path.dirname(os.path.abspath(__file__))


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


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("NPJEM_FAKE_GPU") == "1" or backend.default_device() != "cpu",
                    reason="the suite is already running on a (fake) device")
def test_the_suite_passes_on_the_fake_gpu():
    env = dict(os.environ, NPJEM_FAKE_GPU="1", NPJEM_DEVICE="cuda")
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "--tb=short", TESTS,
           "--deselect", f"{os.path.join(TESTS, 'test_fake_gpu.py')}::test_the_suite_passes_on_the_fake_gpu"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3000, cwd=os.path.dirname(TESTS))
    assert r.returncode == 0, "the suite failed on the fake GPU:\n" + r.stdout[-8000:] + r.stderr[-2000:]
