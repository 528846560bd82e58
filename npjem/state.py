"""State that is not trained by gradient: MoCo's queue of keys and the NPID/PIRL memory bank.

Both hold one ``xp`` array on their device (``.data``), change it in place only in their update
methods (called after the optimiser step, as the original code does), and hand out constant
Tensors: nothing here records a graph, so the losses see them as stop-gradient inputs.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import backend
from . import random as nrandom
from ._checks import check_float_dtype, check_int, check_probability
from .autograd.tensor import Tensor

__all__ = ["Queue", "MemoryBank"]


def _float_dtype(dtype):
    return check_float_dtype(dtype, "dtype", default=backend.default_dtype())


def _normalize_rows(a, eps=1e-12):
    """a / max(‖a‖, eps) row-wise (``torch.nn.functional.normalize``'s clamp)."""
    xp = backend.get_array_module(a)
    n = xp.sqrt((a * a).sum(axis=-1, keepdims=True))
    return a / xp.maximum(n, eps)


def _rows(name, value, dim, dtype, xp, device):
    """``value`` (Tensor or array) as an (n, dim) array of ``dtype`` on this state's device."""
    arr = value.data if isinstance(value, Tensor) else value
    if not backend.is_array(arr):
        raise TypeError(f"{name} must be a Tensor or an array, got {type(value).__name__}")
    if backend.get_array_module(arr) is not xp:
        raise ValueError(f"{name} is on {backend.device_of(arr)} but this state lives on {device}")
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"{name} must have shape (n, {dim}), got {tuple(arr.shape)}")
    if arr.dtype != dtype:
        # Silent casts are how lightly's float32 bank leaked into float64 graphs: refuse them.
        raise TypeError(f"{name} has dtype {arr.dtype} but this state holds {dtype}; cast it first")
    return arr


class Queue:
    """A FIFO of the last ``size`` keys (MoCo's dictionary), stored as ``(size, dim)`` rows.

    ``Queue(size, dim)`` starts full of random unit vectors (MoCo: ``randn(dim, K)`` normalised
    per key; lightly: the same per row). ``enqueue(keys)`` is called after the loss, with the
    batch's keys: they overwrite the oldest entries at the pointer, which then advances by the
    batch size modulo ``size``. A batch need not divide ``size``: a batch that runs past the end
    wraps around to the start, so the queue always holds exactly the ``size`` most recent keys
    (when ``size`` is a multiple of the batch, the slots are those of MoCo, which asserts
    ``K % N == 0``; lightly instead truncates the batch at the end of the buffer and resets the
    pointer to 0, dropping the rest of that batch). A batch larger than ``size`` keeps its last
    ``size`` keys.

    Attributes:
        data: the ``(size, dim)`` ring buffer in slot order, what MoCo's ``queue.T`` holds.
        ptr: the slot the next key goes to (the oldest entry).

    ``tensor()`` returns the contents in FIFO order (oldest first) as a constant Tensor; the
    loss does not depend on the order of the negatives, so ``Tensor(queue.data)`` serves too.
    """

    def __init__(self, size, dim, generator=None, device=None, dtype=None):
        self.size = check_int(size, "size")
        self.dim = check_int(dim, "dim")
        self.dtype = _float_dtype(dtype)
        self.device = backend.normalize_device(device)
        self.xp = backend.xp_for_device(self.device)
        g = nrandom.as_generator(generator, self.device)
        if g.xp is not self.xp:
            raise ValueError(f"generator draws on {g.device} but the queue lives on {self.device}")
        self.data = _normalize_rows(g.standard_normal((self.size, self.dim), dtype=self.dtype))
        self.ptr = 0

    def __len__(self):
        return self.size

    def enqueue(self, keys):
        """Write ``keys`` (n, dim) over the n oldest entries, in order; returns ``self``."""
        keys = _rows("keys", keys, self.dim, self.dtype, self.xp, self.device)
        n = keys.shape[0]
        if n == 0:
            return self
        if n >= self.size:
            # Only the newest `size` keys survive; keep the slot arithmetic of one long write.
            start = (self.ptr + n - self.size) % self.size
            keys = keys[n - self.size:]
            slots = (start + self.xp.arange(self.size)) % self.size
        else:
            slots = (self.ptr + self.xp.arange(n)) % self.size
        self.data[slots] = keys
        self.ptr = (self.ptr + n) % self.size
        return self

    def tensor(self):
        """The queue's contents oldest first, as a constant (size, dim) Tensor (a copy)."""
        return Tensor(self.xp.roll(self.data, -self.ptr, axis=0))

    def __repr__(self):
        return f"Queue(size={self.size}, dim={self.dim}, ptr={self.ptr}, dtype={self.dtype}, device={self.device!r})"


class MemoryBank:
    """One stored embedding per training sample (NPID, PIRL), updated by momentum.

    Rows start as random unit vectors: uniform on [−s, s]^dim with s = 1/sqrt(dim/3), then
    L2-normalised (vissl ``norm_init``, lemniscate). After each optimiser step the rows of the
    batch's samples move towards their new embeddings and are renormalised::

        m_I ← (μ m_I + (1 − μ) f_I) / ‖μ m_I + (1 − μ) f_I‖        μ = ``momentum`` (PIRL: 0.5)

    Only the indexed rows change. ``f_I`` is used as given (PIRL passes the normalised f(v_I)).

    Attributes:
        data: the ``(size, dim)`` array of rows on the bank's device.
        momentum: μ ∈ [0, 1]; 0 replaces a row by the normalised new embedding.
    """

    def __init__(self, size, dim, momentum=0.5, generator=None, device=None, dtype=None):
        self.size = check_int(size, "size")
        self.dim = check_int(dim, "dim")
        self.momentum = check_probability(momentum, "momentum")
        self.dtype = _float_dtype(dtype)
        self.device = backend.normalize_device(device)
        self.xp = backend.xp_for_device(self.device)
        self.generator = nrandom.as_generator(generator, self.device)
        if self.generator.xp is not self.xp:
            raise ValueError(f"generator draws on {self.generator.device} but the bank lives on {self.device}")
        s = 1.0 / np.sqrt(self.dim / 3.0)
        u = self.generator.uniform(-s, s, size=(self.size, self.dim), dtype=self.dtype)
        self.data = _normalize_rows(u.astype(self.dtype, copy=False))

    def __len__(self):
        return self.size

    def _indices(self, name, indices, allow_empty=True):
        idx = indices.data if isinstance(indices, Tensor) else indices
        if not backend.is_array(idx):
            idx = np.asarray(idx)  # host: a list or a Python int
        if backend.get_array_module(idx) is not self.xp:
            idx = backend.to_device(backend.to_numpy(idx), self.device)
        if idx.dtype.kind not in "iu":
            if idx.size == 0:
                idx = idx.astype(np.int64)
            else:
                raise ValueError(f"{name} must hold integers, got dtype {idx.dtype}")
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= self.size):
            raise ValueError(f"{name} must lie in [0, {self.size}), got range [{int(idx.min())}, {int(idx.max())}]")
        return idx

    def __getitem__(self, indices):
        """Rows at ``indices`` (any integer shape S) as a constant Tensor of shape S + (dim,)."""
        return Tensor(self.data[self._indices("indices", indices)])

    def update(self, indices, features):
        """Momentum-update the rows ``indices`` (n,) with ``features`` (n, dim); returns ``self``."""
        idx = self._indices("indices", indices)
        if idx.ndim != 1:
            raise ValueError(f"indices must be 1-D (one per feature row), got shape {tuple(idx.shape)}")
        feats = _rows("features", features, self.dim, self.dtype, self.xp, self.device)
        if feats.shape[0] != idx.shape[0]:
            raise ValueError(f"features must have shape ({idx.shape[0]}, {self.dim}) (one row per index), "
                             f"got {tuple(feats.shape)}")
        if self.xp.unique(idx).size != idx.size:
            # Two updates of one row in one step have no defined order (index_copy_ in vissl).
            raise ValueError("indices must not repeat within one update")
        mu = self.momentum
        self.data[idx] = _normalize_rows(self.data[idx] * mu + feats * (1.0 - mu))
        return self

    def sample_indices(self, shape, exclude=None, generator=None):
        """Indices drawn uniformly with replacement from the rows not in ``exclude``.

        ``shape`` is an int or a tuple (e.g. (B, K) for K negatives per sample, as vissl draws).
        ``exclude`` (any integer array, repeats allowed) removes rows from the draw, e.g. the
        batch's own indices (the PIRL paper draws D_N from the data set without image I);
        vissl excludes nothing (``exclude=None``). Uses ``generator``, or the bank's own
        generator when None.
        """
        g = self.generator if generator is None else nrandom.as_generator(generator, self.device)
        if g.xp is not self.xp:
            raise ValueError(f"generator draws on {g.device} but the bank lives on {self.device}")
        shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
        for s in shape:
            check_int(s, "shape", minimum=0)
        xp = self.xp
        if exclude is None:
            return g.integers(0, self.size, size=shape)
        ex = xp.unique(self._indices("exclude", exclude).ravel())
        allowed = self.size - int(ex.size)
        if allowed < 1:
            raise ValueError(f"exclude removes all {self.size} rows of the bank; nothing left to sample")
        r = g.integers(0, allowed, size=shape)
        # The r-th allowed row is r + #{excluded e : e − rank(e) ≤ r} (ex is sorted and unique).
        shift = ex - xp.arange(ex.size)
        return r + xp.searchsorted(shift, r, side="right")

    def sample_negatives(self, n, exclude=None, generator=None):
        """``n`` rows drawn uniformly with replacement (not in ``exclude``), as a constant Tensor.

        ``n`` is an int (shape (n, dim), negatives shared by the batch) or a tuple such as
        (B, K) (shape (B, K, dim), K per sample). Use :meth:`sample_indices` and indexing when
        the indices are needed too.
        """
        return self[self.sample_indices(n, exclude=exclude, generator=generator)]

    def __repr__(self):
        return (f"MemoryBank(size={self.size}, dim={self.dim}, momentum={self.momentum}, "
                f"dtype={self.dtype}, device={self.device!r})")
