"""Hypothesis strategies to property-test code written with npjem (and npjem itself).

Import it explicitly (``from npjem import testing``); ``import npjem`` never imports it, so
npjem works without Hypothesis installed.

Typical use, a gradient check over drawn shapes and values::

    from hypothesis import given
    from npjem import testing as nt
    import npjem

    @given(nt.arrays(nt.shapes(max_dims=3), elements=nt.values_away_from([0.0], 0.1)))
    def test_abs(x):
        assert npjem.gradcheck(npjem.abs, [x])

Non-differentiable points (kinks) are avoided by construction rather than filtered out:
``values_away_from`` draws only from the intervals between the kinks, ``distinct_arrays``
draws values on a grid so that no two are closer than ``min_gap`` (for max/min/sort, whose
gradient jumps at ties), and ``positive_arrays`` stays inside the domain of log and sqrt.
"""
from __future__ import annotations

import math

import numpy as np

from ._checks import check_int

try:
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "npjem.testing needs Hypothesis: pip install 'hypothesis>=6.50' (or npjem[test])") from e

__all__ = [
    "arrays",
    "axes",
    "broadcastable_pairs",
    "broadcastable_shapes",
    "distinct_arrays",
    "positive_arrays",
    "shapes",
    "values_away_from",
]


def _check_bounds(min_dims, max_dims, min_side, max_side):
    check_int(max_dims, "max_dims", minimum=check_int(min_dims, "min_dims", minimum=0))
    check_int(max_side, "max_side", minimum=check_int(min_side, "min_side", minimum=0))


def shapes(min_dims=0, max_dims=4, min_side=1, max_side=4, *, max_size=None):
    """Array shapes with ``min_dims..max_dims`` axes of length ``min_side..max_side``.

    ``max_size`` caps the number of elements (keeps full-mode gradient checks, which cost two
    evaluations per element, fast).
    """
    _check_bounds(min_dims, max_dims, min_side, max_side)
    s = hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)
    if max_size is not None:
        s = s.filter(lambda shp: math.prod(shp) <= max_size)
    return s


def broadcastable_shapes(shape, min_dims=0, max_dims=None, min_side=1, max_side=None):
    """Shapes that broadcast against ``shape`` (size-1 axes and missing leading axes drawn).

    The result of broadcasting may be larger than ``shape`` (a drawn axis of length n against
    a 1 in ``shape``); use ``broadcast_to``-style tests when that matters.
    """
    shape = tuple(int(s) for s in shape)
    max_dims = max(len(shape), min_dims) if max_dims is None else max_dims
    max_side = max(max(shape, default=1), min_side) if max_side is None else max_side
    _check_bounds(min_dims, max_dims, min_side, max_side)
    return hnp.broadcastable_shapes(shape, min_dims=min_dims, max_dims=max_dims,
                                    min_side=min_side, max_side=max_side)


def broadcastable_pairs(min_dims=0, max_dims=4, min_side=1, max_side=4):
    """Pairs ``(shape_a, shape_b)`` that broadcast together (NumPy's rules), both directions.

    Size-1 axes and missing leading axes appear on either side, so a pair such as
    ``((3, 1), (4,))`` — broadcast to ``(3, 4)`` — is drawn as readily as equal shapes.
    """
    _check_bounds(min_dims, max_dims, min_side, max_side)
    return hnp.mutually_broadcastable_shapes(
        num_shapes=2, min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side,
    ).map(lambda bs: tuple(bs.input_shapes))


def values_away_from(kinks=(0.0,), margin=0.1, min_value=-3.0, max_value=3.0):
    """Floats in ``[min_value, max_value]`` at distance ≥ ``margin`` from every kink.

    Draws from the intervals between the excluded neighbourhoods (never by filtering), so
    e.g. ``values_away_from([0.0], 0.1)`` gives x with |x| ≥ 0.1: central differences with a
    step of 1e-6 never cross the kink of abs or relu.
    """
    if margin < 0:
        raise ValueError(f"margin must be non-negative, got {margin}")
    if min_value > max_value:
        raise ValueError(f"min_value={min_value} is larger than max_value={max_value}")
    ks = sorted(float(k) for k in kinks)
    intervals, lo = [], float(min_value)
    for k in ks:
        hi = k - margin
        if hi >= lo:
            intervals.append((lo, min(hi, max_value)))
        lo = max(lo, k + margin)
    if lo <= max_value:
        intervals.append((lo, float(max_value)))
    intervals = [(a, b) for a, b in intervals if a <= b]
    if not intervals:
        raise ValueError(f"no value in [{min_value}, {max_value}] is at least {margin} away from {ks}")
    return st.one_of(*[st.floats(a, b, allow_nan=False, allow_infinity=False) for a, b in intervals])


def arrays(shape, dtype=np.float64, *, min_value=-3.0, max_value=3.0, elements=None, unique=False):
    """Arrays of ``shape`` (a tuple or a strategy of tuples) with finite bounded values.

    ``elements`` (a strategy) replaces the default ``floats(min_value, max_value)``; float32
    arrays draw float32-representable values.
    """
    dt = np.dtype(dtype)
    if elements is None:
        if dt.kind == "f":
            elements = st.floats(min_value, max_value, allow_nan=False, allow_infinity=False,
                                 width=min(dt.itemsize * 8, 64))
        elif dt.kind in "iu":
            elements = st.integers(math.ceil(min_value), math.floor(max_value))
        elif dt.kind == "b":
            elements = st.booleans()
        else:
            raise ValueError(f"arrays: unsupported dtype {dt}")
    return hnp.arrays(dt, shape, elements=elements, unique=unique)


def distinct_arrays(shape, dtype=np.float64, *, min_gap=0.05, min_value=-3.0, max_value=3.0):
    """Arrays whose values are pairwise at least ``min_gap`` apart (no ties, by construction).

    Values lie on the grid min_value + k·min_gap, drawn without repetition, so that the
    maximum of any subset is unique and a perturbation smaller than min_gap/2 never changes it.
    """
    if min_gap <= 0:
        raise ValueError(f"min_gap must be positive, got {min_gap}")
    n = math.floor((max_value - min_value) / min_gap)
    grid = st.integers(0, n).map(lambda k: min_value + k * min_gap)
    return hnp.arrays(np.dtype(dtype), shape, elements=grid, unique=True)


def positive_arrays(shape, dtype=np.float64, *, min_value=0.1, max_value=3.0):
    """Arrays with values in ``[min_value, max_value]``, ``min_value > 0`` (log, sqrt, division)."""
    if min_value <= 0:
        raise ValueError(f"min_value must be positive, got {min_value}")
    return arrays(shape, dtype, min_value=min_value, max_value=max_value)


def axes(ndim, *, allow_none=True, allow_int=True, allow_negative=True, min_size=0, max_size=None):
    """Valid ``axis`` arguments for a tensor of ``ndim`` dimensions.

    Draws ``None`` (all axes), a single int, or a tuple of distinct axes (possibly empty), with
    negative spellings when ``allow_negative``.
    """
    if ndim < 0:
        raise ValueError(f"ndim must be non-negative, got {ndim}")
    max_size = ndim if max_size is None else min(max_size, ndim)
    one = st.integers(-ndim if allow_negative else 0, ndim - 1) if ndim else st.nothing()

    def spell(a):
        return a if a >= 0 else a + ndim  # canonical positive form for uniqueness

    options = [st.lists(one, min_size=min(min_size, max_size), max_size=max_size,
                        unique_by=spell).map(tuple)]
    if allow_int and ndim and min_size <= 1:
        options.append(one)
    if allow_none:
        options.append(st.none())
    return st.one_of(*options)
