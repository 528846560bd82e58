"""The Hypothesis strategies of npjem.testing draw what they promise."""
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npjem import testing as nt


@given(shape=nt.shapes(min_dims=1, max_dims=3, min_side=2, max_side=4))
def test_shapes_within_bounds(shape):
    assert 1 <= len(shape) <= 3 and all(2 <= s <= 4 for s in shape)


@given(shape=nt.shapes(max_dims=4, max_side=4, max_size=20))
def test_shapes_max_size(shape):
    assert math.prod(shape) <= 20


@given(data=st.data(), shape=nt.shapes(max_dims=3, max_side=3))
def test_broadcastable_shapes(data, shape):
    other = data.draw(nt.broadcastable_shapes(shape))
    np.broadcast_shapes(shape, other)  # raises if they do not broadcast


@given(pair=nt.broadcastable_pairs(max_dims=3, max_side=3))
def test_broadcastable_pairs(pair):
    a, b = pair
    out = np.broadcast_shapes(a, b)
    assert len(out) == max(len(a), len(b))


def test_broadcastable_pairs_draw_real_broadcasting():
    seen = []

    @given(pair=nt.broadcastable_pairs(min_dims=1, max_dims=2, max_side=3))
    def collect(pair):
        seen.append(pair)

    collect()
    assert any(a != b for a, b in seen)  # not only equal shapes


@given(data=st.data(), shape=nt.shapes(max_dims=3, max_side=3))
def test_arrays_bounds_dtype(data, shape):
    x = data.draw(nt.arrays(shape, min_value=-2, max_value=1))
    assert x.shape == shape and x.dtype == np.float64
    assert np.all((x >= -2) & (x <= 1))
    y = data.draw(nt.arrays(shape, dtype=np.float32))
    assert y.dtype == np.float32 and np.all(np.isfinite(y))
    b = data.draw(nt.arrays(shape, dtype=bool))
    assert b.dtype == bool
    i = data.draw(nt.arrays(shape, dtype=np.int64, min_value=0, max_value=5))
    assert i.dtype == np.int64 and np.all((i >= 0) & (i <= 5))


@given(x=st.data(), kinks=st.lists(st.floats(-2, 2), min_size=1, max_size=3),
       margin=st.floats(0.01, 0.3))
def test_values_away_from(x, kinks, margin):
    v = x.draw(nt.values_away_from(kinks, margin))
    assert -3 <= v <= 3
    assert all(abs(v - k) >= margin - 1e-12 for k in kinks)


def test_values_away_from_rejects_an_empty_range():
    with pytest.raises(ValueError, match="no value"):
        nt.values_away_from([0.0], 5.0, min_value=-1, max_value=1)


@given(data=st.data(), shape=nt.shapes(min_dims=1, max_dims=3, max_side=4))
def test_distinct_and_positive_arrays(data, shape):
    x = data.draw(nt.distinct_arrays(shape, min_gap=0.1))
    v = np.sort(x.ravel())
    assert np.all(np.diff(v) >= 0.1 - 1e-9)
    p = data.draw(nt.positive_arrays(shape))
    assert np.all(p >= 0.1)


@given(data=st.data(), ndim=st.integers(0, 4))
def test_axes_are_valid_for_numpy(data, ndim):
    axis = data.draw(nt.axes(ndim))
    x = np.ones((2,) * ndim)
    x.sum(axis=axis)  # raises for an invalid or repeated axis
    if isinstance(axis, tuple):
        assert len({a % max(ndim, 1) for a in axis}) == len(axis)


def test_npjem_imports_without_hypothesis():
    # npjem must not need Hypothesis: only npjem.testing does.
    code = ("import sys; sys.modules['hypothesis'] = None; import npjem; "
            "assert 'npjem.testing' not in sys.modules; print('ok')")
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=False)
    assert out.stdout.strip() == "ok", out.stderr
    code = "import sys; sys.modules['hypothesis'] = None; import npjem.testing"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=False)
    assert "pip install" in out.stderr
