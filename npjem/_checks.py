"""Argument checks every layer of npjem uses, in the spirit of scikit-learn's ``check_scalar``.

Each check takes the value and the argument's name as the user typed it, returns the value in
its canonical form (an ``int``, a ``float``, a NumPy dtype, a tuple) and otherwise raises with a
message that names the argument and says what was expected::

    n = check_int(n_iters, "n_iters")                       # int >= 1
    eps = check_real(epsilon, "epsilon", low=0, low_open=True)
    p = check_probability(p, "p")
    how = check_choice(reduction, "reduction", ("mean", "sum", "none"))
    X = check_estimator_input(X, "X", accept_sparse=True)  # the estimators' input rule

A wrong *type* raises :class:`ArgumentTypeError`, which is both a ``TypeError`` (what Python and
scikit-learn raise for it) and a ``ValueError`` (so a caller that catches bad arguments as
``ValueError`` catches every one of them). A value of the right type that is out of range raises
``ValueError``. Booleans are never numbers here: ``True`` is not a count or a temperature.

This module imports nothing from npjem, so every other module can use it.
"""
from __future__ import annotations

import math
import numbers
import operator

import numpy as np

__all__ = [
    "ArgumentTypeError", "check_int", "check_real", "check_positive", "check_probability",
    "check_choice", "check_bool", "check_float_dtype", "check_ndim", "check_shape",
    "is_sparse", "check_estimator_input",
]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a ``TypeError`` that is also a ``ValueError``)."""


def _is_bool(value):
    return isinstance(value, (bool, np.bool_))


def check_int(value, name, minimum=1, maximum=None):
    """An integer (Python or NumPy) with ``minimum <= value <= maximum``; returns an ``int``.

    ``minimum`` defaults to 1 (a positive count); pass ``minimum=0`` for a non-negative one and
    ``minimum=None`` for no lower bound.
    """
    if _is_bool(value):
        raise ArgumentTypeError(f"{name} must be an integer, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise ArgumentTypeError(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and v < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be an integer <= {maximum}, got {v}")
    return v


def check_real(value, name, low=None, high=None, *, low_open=False, high_open=False, finite=True):
    """A real number within ``[low, high]`` (an end is open when ``low_open`` / ``high_open``).

    NaN is always refused, infinities unless ``finite=False``. Returns a ``float``.
    """
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if math.isnan(v):
        raise ValueError(f"{name} must be a number, got NaN")
    if finite and math.isinf(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value!r}")
    return v


def check_positive(value, name, allow_zero=False):
    """A finite real number > 0 (>= 0 with ``allow_zero``); returns a ``float``."""
    return check_real(value, name, low=0.0, low_open=not allow_zero)


def check_probability(value, name):
    """A real number in [0, 1]; returns a ``float``."""
    return check_real(value, name, low=0.0, high=1.0)


def check_choice(value, name, options):
    """One of ``options`` (compared with ``==``); returns it unchanged."""
    options = tuple(options)
    # A list or an array is unhashable and compares element-wise: refuse it as a choice.
    if isinstance(value, (list, dict, set, np.ndarray)) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(repr(o) for o in options)}, "
                         f"got {value!r}")
    return value


def check_bool(value, name):
    """A ``bool`` (or NumPy bool); returns a ``bool``. 0 and 1 are not flags."""
    if not _is_bool(value):
        raise ArgumentTypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_float_dtype(dtype, name="dtype", default=None):
    """A floating NumPy dtype (``None`` means ``default``); returns the ``np.dtype``."""
    if dtype is None:
        dtype = default
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise ArgumentTypeError(f"{name} must be a floating dtype, got {dtype!r}") from None
    if dt.kind != "f":
        raise ArgumentTypeError(f"{name} must be a floating dtype, got {dt}")
    return dt


def check_ndim(a, name, ndim, what=None):
    """``a`` (an array or a Tensor) has ``ndim`` dimensions (an int or a tuple of allowed ones).

    ``what`` describes the expected layout in the message, e.g. ``"(N, D)"``.
    """
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if a.ndim not in allowed:
        dims = " or ".join(f"{d}-D" for d in allowed)
        layout = f" with shape {what}" if what else ""
        raise ValueError(f"{name} must be {dims}{layout}, got shape {tuple(a.shape)}")
    return a


def check_shape(a, name, shape):
    """``a`` has ``shape``, where ``None`` in ``shape`` matches any size on that axis."""
    got = tuple(a.shape)
    want = tuple(shape)
    if len(got) != len(want) or any(w is not None and g != w for g, w in zip(got, want)):
        shown = "(" + ", ".join("*" if w is None else str(w) for w in want) + ("," if len(want) == 1 else "") + ")"
        raise ValueError(f"{name} must have shape {shown}, got {got}")
    return a


def is_sparse(value):
    """Whether ``value`` is a ``scipy.sparse`` (or ``cupyx.scipy.sparse``) matrix or array.

    Recognised by its class's module, so that this module need not import SciPy.
    """
    return "scipy.sparse" in type(value).__module__ and hasattr(value, "toarray")


def check_estimator_input(X, name, accept_sparse=False):
    """The one input rule of npjem's scikit-learn-like estimators (the RBM, K-means, sparse coding).

    - A floating array keeps its dtype (float32 stays float32: the caller chose it).
    - An integer or boolean array becomes **float64**, as scikit-learn's estimators convert it
      (their ``dtype=[np.float64, np.float32]``): counts and pixel values are data, not indices,
      and float64 loses none of them.
    - A ``scipy.sparse`` matrix is returned (integer ones as float64) where ``accept_sparse``;
      otherwise it raises a one-line ``TypeError`` that says to pass ``X.toarray()``.
    - Anything else (a Tensor, a list) is returned unchanged for the caller's own checks.
    """
    if is_sparse(X):
        if not accept_sparse:
            raise ArgumentTypeError(f"{name} is a sparse matrix ({type(X).__name__}), which this estimator "
                                    f"does not take; pass {name}.toarray()")
    dtype = getattr(X, "dtype", None)
    if dtype is not None and hasattr(X, "astype") and np.dtype(dtype).kind in "biu":
        return X.astype(np.float64)
    return X
