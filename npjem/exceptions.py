"""Warnings and errors npjem raises itself, in one place (scikit-learn's ``sklearn.exceptions``).

``npjem.ConvergenceWarning`` is exported at top level, so a user silences or escalates it as a
scikit-learn user does::

    import warnings, npjem
    warnings.simplefilter("error", npjem.ConvergenceWarning)   # a run that stops early fails

``ArgumentTypeError`` (a bad argument's type) lives in :mod:`npjem._checks`, beside the checks that
raise it, and is re-exported here.
"""
from __future__ import annotations

from ._checks import ArgumentTypeError

__all__ = ["ConvergenceWarning", "ArgumentTypeError"]


class ConvergenceWarning(UserWarning):
    """An iterative estimator stopped at its iteration limit before reaching its tolerance.

    Raised by ISTA and FISTA (with a ``tol``), dictionary learning and K-means: the result is
    the last iterate, usable but not converged; raise the iteration limit or the tolerance.
    """
