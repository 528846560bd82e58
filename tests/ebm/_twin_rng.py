"""Shared pieces of the EBM twins: random draws made once and fed to npjem and to its twin, and
the worst relative difference between npjem's numbers and the reference's.

A twin test draws every random number the reference loop uses (batch orders, buffer indices,
restart masks, uniform restarts, Langevin noise, Bernoulli uniforms) once, in float64, by what
it means. npjem receives them through :class:`ScriptedGenerator`, an ``npjem.random.Generator``
whose draws come from those queues instead of a PRNG: npjem's public API already takes a
generator, so no library hook is needed. Each queue checks that npjem asks for the shape (and
range) the reference uses, and ``assert_consumed`` that it asked for every draw and no more:
an extra or a missing draw is a difference between npjem and the reference, not noise.

The references run on the CPU (PyTorch, scikit-learn), so the twins make npjem's models with
``device="cpu"``: the comparison is the same under ``NPJEM_DEVICE=cuda``.
"""
from collections import deque

import numpy as np

from npjem import random as nrandom


class ScriptedGenerator(nrandom.Generator):
    """An npjem CPU generator that hands out pre-drawn float64 arrays, one queue per kind.

    ``kinds`` maps a method name (``"random"``, ``"uniform"``, ``"standard_normal"``,
    ``"integers"``, ``"permutation<n>"``) to the list of arrays that successive calls return;
    ``uniform`` entries are ``(low, high, values)``, the values already in [low, high), and
    ``permutation`` queues are named by their length (``permutation32=[...]``).
    """

    def __init__(self, **kinds):
        super().__init__(0, "cpu")
        self._queues = {name: deque(values) for name, values in kinds.items()}

    def _next(self, kind, shape):
        queue = self._queues.get(kind)
        if not queue:
            raise AssertionError(f"npjem asked for one more {kind} draw (shape {shape}) than the reference makes")
        return queue.popleft()

    @staticmethod
    def _shape(size):
        if size is None:
            return ()
        return (size,) if isinstance(size, (int, np.integer)) else tuple(size)

    @staticmethod
    def _float64(dtype):
        # The twins run in float64; a float32 request would be a change of precision.
        assert dtype is None or np.dtype(dtype) == np.float64, f"a draw in {dtype}, expected float64"

    def _array(self, kind, size):
        shape = self._shape(size)
        value = self._next(kind, shape)
        assert value.shape == shape, f"npjem drew {kind} of shape {shape}, the reference {value.shape}"
        return value.copy()

    def random(self, size=None, dtype=None):
        self._float64(dtype)
        return self._array("random", size)

    def standard_normal(self, size=None, dtype=None):
        self._float64(dtype)
        return self._array("standard_normal", size)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=None):
        self._float64(dtype)
        shape = self._shape(size)
        lo, hi, value = self._next("uniform", shape)
        assert (lo, hi) == (low, high), f"npjem drew uniform on [{low}, {high}), the reference on [{lo}, {hi})"
        assert value.shape == shape, f"npjem drew uniform of shape {shape}, the reference {value.shape}"
        return value.copy()

    def integers(self, low, high=None, size=None):
        lo, hi = (0, low) if high is None else (low, high)
        value = self._array("integers", size)
        assert lo <= value.min() and value.max() < hi, f"a scripted integer draw outside [{lo}, {hi})"
        return value

    def permutation(self, n):
        # Keyed by n: a trainer shuffles its data (n rows) and its particles (another n) at
        # interleaved moments, and each queue keeps the order of its own kind.
        value = self._next(f"permutation{n}", (n,))
        assert sorted(value.tolist()) == list(range(n)), f"a scripted permutation is not one of range({n})"
        return value.copy()

    def spawn(self):
        raise AssertionError("a scripted generator cannot be spawned: every draw must come from its queues")

    def assert_consumed(self):
        left = {kind: len(q) for kind, q in self._queues.items() if q}
        assert not left, f"npjem made fewer draws than the reference: left over {left}"


class Worst:
    """The largest relative difference seen, with where it was seen (for the report and the docs)."""

    def __init__(self, rtol=1e-9, atol=0.0):
        self.rtol, self.atol = rtol, atol
        self.value, self.where = 0.0, None

    def check(self, what, ours, reference):
        ours = np.asarray(ours, dtype=np.float64)
        reference = np.asarray(reference, dtype=np.float64)
        assert ours.shape == reference.shape, f"{what}: shapes {ours.shape} and {reference.shape}"
        diff = np.abs(ours - reference)
        # Where the reference is (rounding away from) 0 there is no relative scale: the
        # element passes within atol there, as in numpy.allclose (atol 0: relative only).
        scaled = np.abs(reference) > self.atol
        rel = np.zeros(diff.shape)
        rel[scaled] = diff[scaled] / np.abs(reference[scaled])
        bad = diff > self.atol + self.rtol * np.abs(reference)
        worst = float(rel.max()) if rel.size else 0.0
        if worst > self.value:
            self.value, self.where = worst, what
        if bad.any():
            score = np.where(bad, diff / np.maximum(np.abs(reference), np.finfo(np.float64).tiny), -1.0)
            i = np.unravel_index(int(np.argmax(score)), score.shape) if score.ndim else ()
            raise AssertionError(f"{what}: relative difference {float(score[i]):.3g} > {self.rtol:g} at {i}: "
                                 f"npjem {ours[i]!r}, reference {reference[i]!r} (atol at 0: {self.atol:g})")
        return worst


def check_steps(worst, ours, reference, held_name="held"):
    """Snapshots ``{"loss", "params": {name: array}, "opt": {index: {name: array}}}`` (and,
    when not None, ``"held"``: particles or buffer) compared step by step with ``worst``."""
    assert len(ours) == len(reference)
    for step, (a, b) in enumerate(zip(ours, reference)):
        worst.check(f"step {step} loss", a["loss"], b["loss"])
        assert a["params"].keys() == b["params"].keys()
        for name in b["params"]:
            worst.check(f"step {step} {name}", a["params"][name], b["params"][name])
        assert a["opt"].keys() == b["opt"].keys()
        for i in b["opt"]:
            assert a["opt"][i].keys() == b["opt"][i].keys(), f"optimizer state names {a['opt'][i].keys()}"
            for n in b["opt"][i]:
                worst.check(f"step {step} optimizer state {i} {n}", a["opt"][i][n], b["opt"][i][n])
        if b.get("held") is not None:
            worst.check(f"step {step} {held_name}", a["held"], b["held"])
    return worst
