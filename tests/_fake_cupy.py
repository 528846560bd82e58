"""A strict stand-in for CuPy on the CPU, so that the one seam can be tested without a GPU.

``NPJEM_FAKE_GPU=1`` (with ``NPJEM_DEVICE=cuda``) makes ``tests/conftest.py`` hand this module to
``npjem.backend`` as if it were CuPy. Its arrays hold NumPy arrays but behave, where it matters
for the seam, as CuPy's do:

- they are not ``numpy.ndarray`` (``isinstance(a, np.ndarray)`` is False) and their type is
  called ``ndarray`` in a module whose name starts with ``cupy``, as ``backend`` checks;
- a NumPy array never meets one: an operator, a ufunc, an ``xp`` function or an array method
  given a NumPy array raises ``TypeError`` (CuPy: "Unsupported type <class 'numpy.ndarray'>"),
  except the host-to-device creators (``asarray``, ``array``, ``ascontiguousarray``), which
  copy as a transfer does, and index arrays;
- nothing converts them to NumPy implicitly (``np.asarray(a)`` raises, as CuPy's
  "Implicit conversion to a NumPy array is not allowed"); ``.get()`` and ``asnumpy`` copy
  them to the host;
- full reductions and scalar indexing give 0-d arrays, not NumPy scalars; the arrays are
  unhashable; they pickle through the host.

It models few of CuPy's own gaps (NumPy's error-state functions; not, e.g., ``histogram`` with
array bins), and no kernels, streams or memory: the real GPU run (``NPJEM_DEVICE=cuda`` on a
machine with CuPy) remains the final check.
"""
from __future__ import annotations

import sys
import types

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

__all__ = ["install"]

_MIXED = "Unsupported type <class 'numpy.ndarray'>: a NumPy array met a (fake) CuPy array"
_IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. "
             "Please use `.get()` to construct a NumPy array explicitly.")


def _unwrap(x, strict=True):
    if type(x) is ndarray:
        return x._a
    if isinstance(x, np.ndarray):
        if strict:
            raise TypeError(_MIXED)
        return x
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, strict) for v in x)
    return x


def _unwrap_index(key):
    # Index arrays may come from the host (CuPy copies them over); slices and ints pass.
    if isinstance(key, tuple):
        return tuple(_unwrap(k, strict=False) for k in key)
    return _unwrap(key, strict=False)


def _wrap(r):
    if isinstance(r, np.ndarray):
        return ndarray(r)
    if isinstance(r, np.generic) and not isinstance(r, (np.str_, np.bytes_)):
        return ndarray(np.asarray(r))  # CuPy gives 0-d arrays, not NumPy scalars
    if isinstance(r, (np.random.Generator, np.random.RandomState)):
        return _Proxy(r)  # a device generator: its draws are device arrays
    if isinstance(r, tuple):
        return tuple(_wrap(v) for v in r)
    if isinstance(r, list):
        return [_wrap(v) for v in r]
    return r


class _Device:
    def __init__(self, device=None):
        self.id = 0 if device is None else int(getattr(device, "id", device))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def use(self):
        return self

    def synchronize(self):
        pass


class ndarray(NDArrayOperatorsMixin):
    """A device array of the fake GPU: a NumPy array that refuses to mix with NumPy ones."""

    __slots__ = ("_a",)
    __hash__ = None

    def __init__(self, a):
        if not isinstance(a, np.ndarray):
            raise TypeError("fake cupy.ndarray wraps a NumPy array")
        object.__setattr__(self, "_a", a)

    # -- the protocol NumPy uses to hand operations over
    def __array__(self, *args, **kwargs):
        raise TypeError(_IMPLICIT)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        out = kwargs.get("out")
        if out is not None:
            if any(type(o) is not ndarray for o in out):
                raise TypeError("`out` must be a tuple or `cupy.ndarray`")
            kwargs["out"] = tuple(o._a for o in out)
        raw = tuple(_unwrap(x) for x in inputs)
        r = getattr(ufunc, method)(*raw, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(r)

    def __array_function__(self, func, types_, args, kwargs):
        return _wrap(func(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))

    # -- what is not an operator
    def get(self, stream=None, order="C", out=None):
        return np.array(self._a, order=order)

    @property
    def device(self):
        return _Device(0)

    @property
    def T(self):
        return ndarray(self._a.T)

    @property
    def real(self):
        return ndarray(self._a.real)

    @property
    def imag(self):
        return ndarray(self._a.imag)

    @property
    def shape(self):
        return self._a.shape

    @property
    def dtype(self):
        return self._a.dtype

    @property
    def ndim(self):
        return self._a.ndim

    @property
    def size(self):
        return self._a.size

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr) if isinstance(attr, np.ndarray) else attr

        def method(*args, **kwargs):
            return _wrap(attr(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))

        return method

    def __getitem__(self, key):
        return _wrap(self._a[_unwrap_index(key)])

    def __setitem__(self, key, value):
        self._a[_unwrap_index(key)] = _unwrap(value)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (ndarray(np.asarray(v)) for v in self._a)

    def __bool__(self):
        return bool(self._a)

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __index__(self):
        return self._a.__index__()

    def __complex__(self):
        return complex(self._a)

    def __format__(self, spec):
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)

    def __repr__(self):
        return "fake-cupy " + repr(self._a)

    def __copy__(self):
        return ndarray(self._a.copy())

    def __deepcopy__(self, memo):
        return ndarray(self._a.copy())

    def __reduce__(self):
        return (_from_host, (self._a,))  # CuPy pickles through the host too

    def __dlpack__(self, *args, **kwargs):
        return self._a.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


ndarray.__module__ = "cupy_fake"


def _from_host(a):
    return ndarray(np.array(a, copy=True))


class _Proxy:
    """Wraps a NumPy object (a ufunc, a Generator, a submodule) so that what it returns is fake."""

    def __init__(self, obj):
        self._obj = obj

    def __call__(self, *args, **kwargs):
        return _wrap(self._obj(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))

    def __getattr__(self, name):
        attr = getattr(self._obj, name)
        if name == "at" and isinstance(self._obj, np.ufunc):
            def at(a, indices, values=None):
                if type(a) is not ndarray:
                    raise TypeError(_MIXED)
                args = (a._a, _unwrap_index(indices)) + (() if values is None else (_unwrap(values),))
                attr(*args)

            return at
        if isinstance(attr, types.ModuleType):
            return _Proxy(attr)
        if isinstance(attr, type) or not callable(attr):
            return attr
        return _Proxy(attr)


def _asarray(obj, dtype=None, order=None):
    if type(obj) is ndarray:
        return obj if dtype is None or obj.dtype == dtype else ndarray(obj._a.astype(dtype))
    if isinstance(obj, (list, tuple)) and any(type(v) is ndarray for v in obj):
        raise TypeError(_MIXED)
    return ndarray(np.array(obj, dtype=dtype, order=order or "K", copy=True))


def _array(obj, dtype=None, copy=True, order="K", ndmin=0):
    if type(obj) is ndarray:
        return ndarray(np.array(obj._a, dtype=dtype, copy=True, order=order, ndmin=ndmin))
    if isinstance(obj, (list, tuple)) and any(type(v) is ndarray for v in obj):
        raise TypeError(_MIXED)
    return ndarray(np.array(obj, dtype=dtype, copy=True, order=order, ndmin=ndmin))


def _ascontiguousarray(obj, dtype=None):
    a = _asarray(obj, dtype)
    return a if a._a.flags.c_contiguous else ndarray(np.ascontiguousarray(a._a))


def _asnumpy(a, stream=None, order="C", out=None):
    return a.get() if type(a) is ndarray else np.asarray(a, order=order)


# NumPy names CuPy does not have at its top level (error-state control lives in cupyx and
# has no GPU counterpart for NumPy's floating-point flags).
_NOT_IN_CUPY = frozenset({"errstate", "seterr", "geterr", "seterrcall", "geterrcall"})


class _FakeCupy(types.ModuleType):
    """The ``cupy`` namespace: NumPy's, made strict, plus ``cuda`` and ``asnumpy``."""

    ndarray = ndarray
    asarray = staticmethod(_asarray)
    array = staticmethod(_array)
    ascontiguousarray = staticmethod(_ascontiguousarray)
    asnumpy = staticmethod(_asnumpy)
    __version__ = "fake"

    def __init__(self):
        super().__init__("cupy_fake", __doc__)
        runtime = types.SimpleNamespace(
            getDeviceCount=lambda: 1,
            getDeviceProperties=lambda i: {"name": b"fake GPU (NumPy on the CPU)"},
        )
        self.cuda = types.SimpleNamespace(
            Device=_Device, runtime=runtime, get_current_stream=lambda: _Device(0),
            Stream=types.SimpleNamespace(null=_Device(0)),
        )
        self.random = _Proxy(np.random)

    def get_array_module(self, *args):
        return self if any(type(a) is ndarray for a in args) else np

    def __getattr__(self, name):
        if name in _NOT_IN_CUPY:
            raise AttributeError(f"module 'cupy' has no attribute {name!r} (CuPy lacks it; see cupyx)")
        attr = getattr(np, name)
        if isinstance(attr, type) or not callable(attr) and not isinstance(attr, types.ModuleType):
            return attr  # dtypes, constants (cupy.float32 is numpy.float32)
        return _Proxy(attr)


def install(backend):
    """Make ``backend`` (``npjem.backend``) see the fake as CuPy; also ``cupyx.scipy.special``."""
    import scipy.special

    fake = _FakeCupy()
    special = types.ModuleType("cupyx.scipy.special")
    for name in ("erf", "erfinv", "gammaln", "digamma", "logsumexp", "expit", "log_ndtr", "ndtr"):
        if hasattr(scipy.special, name):
            setattr(special, name, _Proxy(getattr(scipy.special, name)))
    cupyx = types.ModuleType("cupyx")
    cupyx_scipy = types.ModuleType("cupyx.scipy")
    cupyx_scipy.special = special
    cupyx.scipy = cupyx_scipy
    for mod_name, mod in (("cupyx", cupyx), ("cupyx.scipy", cupyx_scipy), ("cupyx.scipy.special", special)):
        sys.modules.setdefault(mod_name, mod)
    backend._cupy = fake
    backend._cupy_checked = True
    return fake
