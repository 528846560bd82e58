"""Collapse diagnostics measured on each training batch, cheaply, for the methods without negatives.

A method without negative pairs can reach the trivial solutions the NYU notes describe (ch. 8-2, "VicReg:"): complete
collapse (every input has the same embedding) and dimensional collapse (the embeddings span
few directions). The loss alone does not always show it: SimSiam's loss reaches its minimum −1
at complete collapse. Each of these methods therefore records, after every ``forward``, the
std of its L2-normalised embeddings over the batch (SimSiam's monitor, Chen & He 2021 Fig. 2:
≈ 1/√d when spread, 0 when collapsed) in ``method.diagnostics``, with its own loss terms;
:func:`npjem.methods.fit`'s ``callback`` can collect them, and ``npjem pretrain`` reports the full
diagnostics (RankMe effective rank, std) of the trained features.
"""
from __future__ import annotations

import math

from .. import backend
from ..autograd import Tensor


def embedding_std(z):
    """Mean over dimensions of the std (ddof=1) over the batch of the L2-normalised rows of ``z``.

    A Python float: 0 at complete collapse, about ``1/sqrt(d)`` for rows spread on the sphere;
    NaN for a batch of one row (no spread to measure).
    """
    arr = z.data if isinstance(z, Tensor) else z
    if arr.shape[0] < 2:
        return math.nan
    xp = backend.get_array_module(arr)
    a = arr.astype(xp.float64)
    u = a / xp.maximum(xp.sqrt((a * a).sum(axis=1, keepdims=True)), 1e-12)
    return float(backend.to_numpy(u.std(axis=0, ddof=1).mean()))


def as_float(t):
    """A scalar Tensor (or array) as a Python float, on the host."""
    arr = t.data if isinstance(t, Tensor) else t
    return float(backend.to_numpy(arr))
