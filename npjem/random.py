"""Explicit, seeded random generators, one per device.

Every function in npjem that draws takes a ``generator`` (or a seed). No hidden global state:
a seed reproduces a run. A CPU generator is a ``numpy.random.Generator`` (PCG64); a CUDA
generator is a ``cupy.random.Generator`` seeded the same way, so code calls the same
methods (``random``, ``standard_normal``, ``integers``, ``permutation`` …) on either.
"""
from __future__ import annotations

import numpy as np

from . import backend

__all__ = ["Generator", "default_rng", "manual_seed", "get_generator", "as_generator"]


class Generator:
    """A seeded generator bound to a device; ``xp`` is the array module it draws on.

    ``float32`` is asked of the underlying generators where they support it, so float32
    models do not draw float64 and then cast.
    """

    def __init__(self, seed=None, device=None):
        self.device = backend.normalize_device(device)
        self.xp = backend.xp_for_device(self.device)
        self.seed = seed
        if self.xp is np:
            self._g = np.random.default_rng(seed)
        else:
            self._g = self.xp.random.default_rng(seed)

    # The methods below mirror numpy.random.Generator; dtypes default to npjem's default.
    def _dt(self, dtype):
        return np.dtype(backend.default_dtype() if dtype is None else dtype)

    def random(self, size=None, dtype=None):
        dt = self._dt(dtype)
        if dt in (np.float32, np.float64):
            return self._g.random(size, dtype=dt)
        return self._g.random(size).astype(dt)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=None):
        u = self.random(size, dtype)
        return u * (high - low) + low if (low, high) != (0.0, 1.0) else u

    def standard_normal(self, size=None, dtype=None):
        dt = self._dt(dtype)
        if dt in (np.float32, np.float64):
            return self._g.standard_normal(size, dtype=dt)
        return self._g.standard_normal(size).astype(dt)

    def normal(self, loc=0.0, scale=1.0, size=None, dtype=None):
        z = self.standard_normal(size, dtype)
        return z * scale + loc

    def integers(self, low, high=None, size=None):
        if self.xp is np:
            return self._g.integers(low, high, size=size)
        if high is None:
            low, high = 0, low
        # cupy's Generator.integers exists in recent versions; fall back to legacy API.
        try:
            return self._g.integers(low, high, size=size)
        except AttributeError:  # pragma: no cover - GPU only
            return self.xp.random.randint(low, high, size=size)

    def permutation(self, n):
        if self.xp is np:
            return self._g.permutation(n)
        return self.xp.asarray(np.random.default_rng(int(self.integers(0, 2**31 - 1))).permutation(n))

    def bernoulli(self, p, size=None, dtype=None):
        return (self.random(size, dtype) < p).astype(self._dt(dtype))

    def choice(self, n, size=None, replace=True, p=None):
        if self.xp is np:
            return self._g.choice(n, size=size, replace=replace, p=p)
        host = np.random.default_rng(int(self.integers(0, 2**31 - 1)))
        p_host = None if p is None else backend.to_numpy(p)
        return self.xp.asarray(host.choice(n, size=size, replace=replace, p=p_host))

    def spawn(self):
        """A new independent generator on the same device, drawn from this one."""
        return Generator(int(self.integers(0, 2**63 - 1)), self.device)

    def __repr__(self):
        return f"Generator(seed={self.seed!r}, device={self.device!r})"


_default_generators: dict = {}


def manual_seed(seed: int) -> None:
    """Reset the per-device default generators (used only where no generator is passed)."""
    _default_generators.clear()
    _default_generators["_seed"] = int(seed)


def get_generator(device=None) -> Generator:
    """The default generator of ``device``, seeded from ``manual_seed`` (0 unless set)."""
    device = backend.normalize_device(device)
    if device not in _default_generators:
        _default_generators[device] = Generator(_default_generators.get("_seed", 0), device)
    return _default_generators[device]


def default_rng(seed=None, device=None) -> Generator:
    """A new generator, like ``numpy.random.default_rng``, on ``device``."""
    return Generator(seed, device)


def as_generator(generator=None, device=None) -> Generator:
    """A ``Generator`` from ``None`` (the device default), an int seed, or a Generator.

    A ``numpy.random.Generator`` is accepted on the CPU and wrapped.
    """
    if generator is None:
        return get_generator(device)
    if isinstance(generator, Generator):
        return generator
    if isinstance(generator, (int, np.integer)):
        return Generator(int(generator), device)
    if isinstance(generator, np.random.Generator):
        g = Generator.__new__(Generator)
        g.device, g.xp, g.seed, g._g = "cpu", np, None, generator
        return g
    raise TypeError(f"generator must be None, an int seed or an npjem.random.Generator, got {type(generator).__name__}")
