"""Primitive operations: forward on ``xp`` arrays, backward in Tensor operations.

Kinks follow PyTorch, so gradients compared against PyTorch agree exactly:

* ``relu``/``abs``/``sign`` at 0: gradient 0.
* ``maximum``/``minimum`` at a tie: the gradient is split evenly between the two inputs.
* ``max``/``min`` reductions at ties: the gradient is split evenly among the tied elements
  (as ``torch.amax``; ``torch.max(dim)`` instead sends all of it to one index).
* ``clip`` at a bound: the gradient passes (``lo <= x <= hi`` counts as inside).
* ``pow(a, b)`` with respect to ``b`` where ``a <= 0``: 0.
* ``sqrt`` at 0: ``inf``, as in PyTorch; ``functional.normalize`` guards with ``eps``.
* ``std`` at zero variance: gradient 0, as in PyTorch.
"""
from __future__ import annotations

import builtins
import numbers

import numpy as np

from .. import backend
from .tensor import Function, Tensor, as_tensor

_basic_index_types = (int, np.integer, slice, type(None), type(Ellipsis))


def _shape_error(op, a, b):
    return ValueError(f"{op}: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be broadcast together")


def _binary(op, fn, a, b):
    try:
        return fn(a, b)
    except ValueError as e:
        if "broadcast" in str(e):
            raise _shape_error(op, a, b) from None
        raise


# ------------------------------------------------------------------------ arithmetic

class Add(Function):
    def forward(self, a, b):
        return _binary("add", lambda u, v: u + v, a, b)

    def backward(self, gy):
        return gy, gy


class Sub(Function):
    def forward(self, a, b):
        return _binary("sub", lambda u, v: u - v, a, b)

    def backward(self, gy):
        return gy, (-gy if self.needs_input_grad[1] else None)


class Mul(Function):
    def forward(self, a, b):
        return _binary("mul", lambda u, v: u * v, a, b)

    def backward(self, gy):
        a, b = self.inputs
        return (gy * b if self.needs_input_grad[0] else None,
                gy * a if self.needs_input_grad[1] else None)


class Div(Function):
    def forward(self, a, b):
        return _binary("div", lambda u, v: u / v, a, b)

    def backward(self, gy):
        a, b = self.inputs
        ga = gy / b if self.needs_input_grad[0] else None
        gb = -gy * a / (b * b) if self.needs_input_grad[1] else None
        return ga, gb


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class PowScalar(Function):
    def __init__(self, c):
        self.c = c

    def forward(self, x):
        return x ** self.c

    def backward(self, gy):
        (x,) = self.inputs
        c = self.c
        if c == 2:
            return gy * x * 2
        if c == 1:
            return gy
        if c == 0:
            return gy * 0
        return gy * c * x ** (c - 1)


class Pow(Function):
    def forward(self, a, b):
        return _binary("pow", lambda u, v: u ** v, a, b)

    def backward(self, gy):
        a, b = self.inputs
        ga = gy * b * a ** (b - 1) if self.needs_input_grad[0] else None
        gb = None
        if self.needs_input_grad[1]:
            pos = a > 0
            gb = gy * self.output() * log(where(pos, a, 1.0)) * pos.astype(a.dtype)
        return ga, gb


class Exp(Function):
    def forward(self, x):
        xp = backend.get_array_module(x)
        return xp.exp(x)

    def backward(self, gy):
        return gy * self.output()


class Log(Function):
    def forward(self, x):
        xp = backend.get_array_module(x)
        return xp.log(x)

    def backward(self, gy):
        return gy / self.inputs[0]


class Log1p(Function):
    def forward(self, x):
        xp = backend.get_array_module(x)
        return xp.log1p(x)

    def backward(self, gy):
        return gy / (self.inputs[0] + 1.0)


class Sqrt(Function):
    def forward(self, x):
        xp = backend.get_array_module(x)
        return xp.sqrt(x)

    def backward(self, gy):
        return gy / (self.output() * 2.0)


class Abs(Function):
    def forward(self, x):
        xp = backend.get_array_module(x)
        return xp.abs(x)

    def backward(self, gy):
        return gy * sign(self.inputs[0])


class Tanh(Function):
    def forward(self, x):
        xp = backend.get_array_module(x)
        return xp.tanh(x)

    def backward(self, gy):
        y = self.output()
        return gy * (1.0 - y * y)


class Sigmoid(Function):
    def forward(self, x):
        xp = backend.get_array_module(x)
        # tanh form: no overflow for large |x|, unlike 1 / (1 + exp(-x)).
        return xp.tanh(x * 0.5) * 0.5 + 0.5

    def backward(self, gy):
        y = self.output()
        return gy * y * (1.0 - y)


class Erf(Function):
    def forward(self, x):
        return backend.erf(x).astype(x.dtype, copy=False)

    def backward(self, gy):
        x = self.inputs[0]
        return gy * (2.0 / np.sqrt(np.pi)) * exp(-(x * x))


class Maximum(Function):
    def forward(self, a, b):
        xp = backend.get_array_module(a, b)
        return _binary("maximum", xp.maximum, a, b)

    def backward(self, gy):
        a, b = self.inputs
        share = (a.data > b.data) + 0.5 * (a.data == b.data)
        share = Tensor(share.astype(gy.dtype, copy=False))
        return (gy * share if self.needs_input_grad[0] else None,
                gy * (1.0 - share) if self.needs_input_grad[1] else None)


class Minimum(Function):
    def forward(self, a, b):
        xp = backend.get_array_module(a, b)
        return _binary("minimum", xp.minimum, a, b)

    def backward(self, gy):
        a, b = self.inputs
        share = (a.data < b.data) + 0.5 * (a.data == b.data)
        share = Tensor(share.astype(gy.dtype, copy=False))
        return (gy * share if self.needs_input_grad[0] else None,
                gy * (1.0 - share) if self.needs_input_grad[1] else None)


class Where(Function):
    def forward(self, cond, a, b):
        xp = backend.get_array_module(a, b)
        if cond.dtype != bool:
            cond = cond.astype(bool)
        self._cond = cond
        try:
            return xp.where(cond, a, b)
        except ValueError:
            raise ValueError(
                f"where: shapes {cond.shape}, {a.shape} and {b.shape} cannot be broadcast together") from None

    def backward(self, gy):
        c = Tensor(self._cond)
        return (None,
                where(c, gy, 0.0) if self.needs_input_grad[1] else None,
                where(c, 0.0, gy) if self.needs_input_grad[2] else None)


class Clip(Function):
    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def forward(self, x):
        xp = backend.get_array_module(x)
        lo = -np.inf if self.lo is None else self.lo
        hi = np.inf if self.hi is None else self.hi
        return xp.clip(x, lo, hi).astype(x.dtype, copy=False)

    def backward(self, gy):
        x = self.inputs[0].data
        inside = True
        if self.lo is not None:
            inside = x >= self.lo
        if self.hi is not None:
            inside = inside & (x <= self.hi)
        return where(Tensor(inside), gy, 0.0)


class AsType(Function):
    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)

    def forward(self, x):
        self._in = x.dtype
        return x.astype(self.dtype)

    def backward(self, gy):
        return gy.astype(self._in)


class ToDevice(Function):
    def __init__(self, device):
        self.device = backend.normalize_device(device)

    def forward(self, x):
        self._in = backend.device_of(x)
        return backend.to_device(x, self.device)

    def backward(self, gy):
        return to_device(gy, self._in)


# ------------------------------------------------------------------------ linear algebra

class MatMul(Function):
    """``a @ b`` for arrays of two or more dimensions (batch dimensions broadcast)."""

    def forward(self, a, b):
        return backend.matmul(a, b)

    def backward(self, gy):
        a, b = self.inputs
        ga = gy @ swapaxes(b, -1, -2) if self.needs_input_grad[0] else None
        gb = swapaxes(a, -1, -2) @ gy if self.needs_input_grad[1] else None
        return ga, gb


# ------------------------------------------------------------------------ reductions

def _norm_axis(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axis = (int(axis),)
    out = []
    for a in axis:
        if not -ndim <= a < builtins.max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
        out.append(a % ndim if ndim else 0)
    return tuple(sorted(set(out)))


def _keepdims_shape(shape, axes):
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


class Sum(Function):
    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self._axes = _norm_axis(self.axis, x.ndim)
        self._shape = x.shape
        return x.sum(axis=self._axes, keepdims=self.keepdims)

    def backward(self, gy):
        if not self.keepdims:
            gy = reshape(gy, _keepdims_shape(self._shape, self._axes))
        return broadcast_to(gy, self._shape)


class Max(Function):
    """Max over ``axis``; at ties the gradient is split evenly (as ``torch.amax``)."""

    fn = "max"

    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        if x.size == 0:
            raise ValueError(f"{self.fn} of an empty tensor (shape {x.shape})")
        self._axes = _norm_axis(self.axis, x.ndim)
        return getattr(x, self.fn)(axis=self._axes, keepdims=self.keepdims)

    def backward(self, gy):
        x = self.inputs[0]
        y = self.output().data
        if not self.keepdims:
            shape = _keepdims_shape(x.shape, self._axes)
            y = y.reshape(shape)
            gy = reshape(gy, shape)
        mask = x.data == y
        share = mask / mask.sum(axis=self._axes, keepdims=True)
        return gy * Tensor(share.astype(x.dtype, copy=False))


class Min(Max):
    fn = "min"


# ------------------------------------------------------------------------ shapes

class Reshape(Function):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self._in = x.shape
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} into {self.shape}") from None

    def backward(self, gy):
        return reshape(gy, self._in)


class Transpose(Function):
    def __init__(self, axes):
        self.axes = axes

    def forward(self, x):
        if self.axes is not None and sorted(a % x.ndim for a in self.axes) != list(range(x.ndim)):
            raise ValueError(f"transpose: axes {self.axes} are not a permutation of {x.ndim} dimensions")
        return x.transpose(self.axes)

    def backward(self, gy):
        if self.axes is None:
            return transpose(gy)
        inv = np.argsort([a % gy.ndim for a in self.axes])  # host: a permutation of axes
        return transpose(gy, tuple(int(i) for i in inv))


class BroadcastTo(Function):
    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        xp = backend.get_array_module(x)
        self._in = x.shape
        try:
            return xp.broadcast_to(x, self.shape)
        except ValueError:
            raise ValueError(f"broadcast_to: cannot broadcast shape {x.shape} to {self.shape}") from None

    def backward(self, gy):
        return sum_to(gy, self._in)


def _sum_to_axes(shape, target):
    """Axes to sum so that an array of ``shape`` reduces to ``target`` (and keepdims axes)."""
    lead = len(shape) - len(target)
    if lead < 0:
        return None
    keep = []
    for i, t in enumerate(target):
        s = shape[lead + i]
        if t == s:
            continue
        if t != 1:
            return None
        keep.append(lead + i)
    return tuple(range(lead)), tuple(keep)


class SumTo(Function):
    """Sum a broadcast gradient back to ``shape``: the one place broadcasting is undone."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        self._in = x.shape
        axes = _sum_to_axes(x.shape, self.shape)
        if axes is None:
            raise ValueError(f"sum_to: shape {x.shape} does not broadcast from {self.shape}")
        lead, keep = axes
        y = x.sum(axis=lead + keep, keepdims=True) if lead or keep else x
        if lead:
            y = y.reshape(y.shape[len(lead):])
        assert y.shape == self.shape, (y.shape, self.shape)
        return y

    def backward(self, gy):
        return broadcast_to(gy, self._in)


def _is_basic_index(index):
    if not isinstance(index, tuple):
        index = (index,)
    return all(isinstance(i, _basic_index_types) for i in index)


def _unwrap_index(index, xp):
    if isinstance(index, Tensor):
        index = index.data
    if isinstance(index, list) or (isinstance(index, np.ndarray) and xp is not np):
        # host labels index a GPU tensor (logits[arange(n), labels]): move them along
        return xp.asarray(index)
    if isinstance(index, tuple):
        return tuple(_unwrap_index(i, xp) for i in index)
    return index


class GetItem(Function):
    def __init__(self, index):
        self.index = index

    def forward(self, x):
        self._shape = x.shape
        return x[self.index]

    def backward(self, gy):
        return GetItemGrad(self.index, self._shape)(gy)


class GetItemGrad(Function):
    """Scatter ``gy`` into zeros of ``shape`` at ``index`` (repeated indices add up)."""

    def __init__(self, index, shape):
        self.index, self.shape = index, shape

    def forward(self, gy):
        xp = backend.get_array_module(gy)
        gx = xp.zeros(self.shape, dtype=gy.dtype)
        idx = self.index if isinstance(self.index, tuple) else (self.index,)
        if _is_basic_index(idx) or all(getattr(i, "dtype", None) == bool for i in idx
                                       if not isinstance(i, _basic_index_types)):
            gx[self.index] = gy  # no index repeats: plain assignment
            return gx
        ints = [i for i in idx]
        if all(backend.is_array(i) and i.dtype.kind in "iu" for i in ints) and len(ints) <= gx.ndim:
            # x[i0, i1, …] picks whole trailing blocks: flatten to one row index and scatter rows.
            k = len(ints)
            arrs = xp.broadcast_arrays(*ints)
            lead = self.shape[:k]
            arrs = [xp.where(a < 0, a + n, a) for a, n in zip(arrs, lead)]
            flat = xp.ravel_multi_index(tuple(arrs), lead) if k > 1 else arrs[0]
            rows = gx.reshape((int(np.prod(lead)),) + self.shape[k:])
            backend.scatter_add(rows, flat.ravel(), gy.reshape((flat.size,) + self.shape[k:]))
            return gx
        backend.scatter_add(gx, self.index, gy)
        return gx

    def backward(self, ggx):
        return getitem(ggx, self.index)


class Concatenate(Function):
    def __init__(self, axis):
        self.axis = axis

    def forward(self, *xs):
        xp = backend.get_array_module(*xs)
        try:
            y = xp.concatenate(xs, axis=self.axis)
        except (ValueError, IndexError):  # IndexError/AxisError: an axis some input lacks
            raise ValueError(
                f"concatenate: shapes {[x.shape for x in xs]} do not fit along axis {self.axis}") from None
        self._sizes = [x.shape[self.axis] for x in xs]
        return y

    def backward(self, gy):
        out, start = [], 0
        ax = self.axis % gy.ndim
        for n, need in zip(self._sizes, self.needs_input_grad):
            if need:
                sl = (slice(None),) * ax + (slice(start, start + n),)
                out.append(getitem(gy, sl))
            else:
                out.append(None)
            start += n
        return tuple(out)


class Pad(Function):
    def __init__(self, pad_width, value):
        self.pad_width, self.value = pad_width, value

    def forward(self, x):
        xp = backend.get_array_module(x)
        return xp.pad(x, self.pad_width, mode="constant", constant_values=self.value)

    def backward(self, gy):
        sl = tuple(slice(b, s - a) for (b, a), s in zip(self.pad_width, gy.shape))
        return getitem(gy, sl)


# ------------------------------------------------------------------------ public functions

def _t(x, like=None):
    return as_tensor(x, like)


def add(a, b):
    return Add()(a, b)


def sub(a, b):
    return Sub()(a, b)


def mul(a, b):
    return Mul()(a, b)


def div(a, b):
    return Div()(a, b)


def neg(x):
    return Neg()(x)


def pow(a, b):  # noqa: A001 - mirrors the operator
    if isinstance(b, numbers.Number) and not isinstance(b, bool):
        if isinstance(b, np.generic):  # np.float64(2): a scalar like 2.0, never a dtype promotion
            b = b.item()
        return PowScalar(b)(a)
    return Pow()(a, b)


def exp(x):
    return Exp()(x)


def log(x):
    return Log()(x)


def log1p(x):
    return Log1p()(x)


def sqrt(x):
    return Sqrt()(x)


def abs(x):  # noqa: A001
    return Abs()(x)


def tanh(x):
    return Tanh()(x)


def sigmoid(x):
    return Sigmoid()(x)


def erf(x):
    return Erf()(x)


def maximum(a, b):
    return Maximum()(a, b)


def minimum(a, b):
    return Minimum()(a, b)


def where(cond, a, b):
    """``cond ? a : b`` elementwise; ``cond`` is not differentiated."""
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    if like is not None:
        a, b = _t(a, like), _t(b, like)
    cond = cond if isinstance(cond, Tensor) else Tensor(cond) if backend.is_array(cond) else _t(cond, like)
    return Where()(cond.detach(), a, b)


def clip(x, lo=None, hi=None):
    """Clamp to ``[lo, hi]`` (either may be None); the gradient passes on the bounds."""
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"clip: lo={lo} is larger than hi={hi}")
    return Clip(lo, hi)(x)


clamp = clip


def sign(x):
    """Sign of ``x`` (0 at 0), not differentiated."""
    x = _t(x)
    return Tensor(x.xp.sign(x.data))


def astype(x, dtype):
    x = _t(x)
    if np.dtype(dtype) == x.dtype:
        return x
    return AsType(dtype)(x)


def to_device(x, device):
    return ToDevice(device)(x)


def matmul(a, b):
    """``a @ b`` with NumPy's rules: 1-D operands are promoted and the added axis removed."""
    a, b = _t(a, b if isinstance(b, Tensor) else None), _t(b, a if isinstance(a, Tensor) else None)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must have at least one dimension, got shapes {a.shape} and {b.shape}")
    ka = a.shape[-1]
    kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if ka != kb:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align ({ka} != {kb})")
    sq_a, sq_b = a.ndim == 1, b.ndim == 1
    if sq_a:
        a = reshape(a, (1, ka))
    if sq_b:
        b = reshape(b, (kb, 1))
    try:
        y = MatMul()(a, b)
    except ValueError:
        raise ValueError(f"matmul: batch shapes of {a.shape} and {b.shape} cannot be broadcast together") from None
    if sq_a and sq_b:
        return reshape(y, ())
    if sq_a:
        return reshape(y, y.shape[:-2] + y.shape[-1:])
    if sq_b:
        return reshape(y, y.shape[:-1])
    return y


def sum(x, axis=None, keepdims=False):  # noqa: A001
    return Sum(axis, keepdims)(x)


def mean(x, axis=None, keepdims=False):
    x = _t(x)
    n = int(np.prod([x.shape[a] for a in _norm_axis(axis, x.ndim)])) if x.ndim else 1
    if n == 0:
        raise ValueError(f"mean over an empty axis of a tensor of shape {x.shape}")
    return sum(x, axis, keepdims) * (1.0 / n)


def var(x, axis=None, keepdims=False, ddof=0):
    """Variance with ``ddof`` degrees of freedom removed (NumPy's convention; ddof=1 is unbiased)."""
    x = _t(x)
    n = int(np.prod([x.shape[a] for a in _norm_axis(axis, x.ndim)])) if x.ndim else 1
    if n - ddof <= 0:
        raise ValueError(f"var: need more than ddof={ddof} elements along axis {axis}, got {n}")
    d = x - mean(x, axis, keepdims=True)
    return sum(d * d, axis, keepdims) * (1.0 / (n - ddof))


def std(x, axis=None, keepdims=False, ddof=0):
    """sqrt(var); where the variance is exactly 0 the gradient is 0 (as PyTorch), not NaN.

    sqrt'(0) is infinite and every deviation is 0 there, so the plain chain rule gives
    inf·0 = NaN (a collapsed batch of features would poison the whole gradient).
    """
    v = var(x, axis, keepdims, ddof)
    zero = v.data == 0
    return where(zero, 0.0, sqrt(where(zero, 1.0, v)))


def max(x, axis=None, keepdims=False):  # noqa: A001
    return Max(axis, keepdims)(x)


def min(x, axis=None, keepdims=False):  # noqa: A001
    return Min(axis, keepdims)(x)


def reshape(x, *shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    x = _t(x)
    if tuple(shape) == x.shape:
        return x
    return Reshape(tuple(shape))(x)


def flatten(x, start_dim=0, end_dim=-1):
    x = _t(x)
    nd = x.ndim
    s, e = start_dim % builtins.max(nd, 1), end_dim % builtins.max(nd, 1)
    shape = x.shape[:s] + (int(np.prod(x.shape[s:e + 1])),) + x.shape[e + 1:]
    return reshape(x, shape)


def transpose(x, axes=None):
    return Transpose(None if axes is None else tuple(axes))(x)


def permute(x, *axes):
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    return transpose(x, axes)


def swapaxes(x, a1, a2):
    x = _t(x)
    axes = list(range(x.ndim))
    axes[a1], axes[a2] = axes[a2], axes[a1]
    return transpose(x, axes)


def squeeze(x, axis=None):
    x = _t(x)
    if axis is None:
        return reshape(x, tuple(s for s in x.shape if s != 1))
    axes = _norm_axis(axis, x.ndim)
    for a in axes:
        if x.shape[a] != 1:
            raise ValueError(f"squeeze: axis {a} has size {x.shape[a]}, not 1")
    return reshape(x, tuple(s for i, s in enumerate(x.shape) if i not in axes))


def unsqueeze(x, axis):
    x = _t(x)
    nd = x.ndim + 1
    if not -nd <= axis < nd:
        raise ValueError(f"unsqueeze: axis {axis} is out of range for {x.ndim} dimensions")
    axis %= nd
    return reshape(x, x.shape[:axis] + (1,) + x.shape[axis:])


expand_dims = unsqueeze


def broadcast_to(x, shape):
    x = _t(x)
    if tuple(shape) == x.shape:
        return x
    return BroadcastTo(shape)(x)


def sum_to(x, shape):
    x = _t(x)
    if tuple(shape) == x.shape:
        return x
    return SumTo(shape)(x)


def getitem(x, index):
    x = _t(x)
    return GetItem(_unwrap_index(index, x.xp))(x)


def concatenate(tensors, axis=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concatenate: need at least one tensor")
    like = next((t for t in tensors if isinstance(t, Tensor)), None)
    return Concatenate(axis)(*[_t(t, like) for t in tensors])


cat = concatenate


def stack(tensors, axis=0):
    tensors = [_t(t) for t in tensors]
    if not tensors:
        raise ValueError("stack: need at least one tensor")
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"stack: all tensors must have the same shape, got {sorted(shapes)}")
    return concatenate([unsqueeze(t, axis) for t in tensors], axis=axis)


def pad(x, pad_width, value=0.0):
    """Constant padding with NumPy's ``pad_width`` (one ``(before, after)`` pair per axis)."""
    x = _t(x)
    if isinstance(pad_width, int):
        pad_width = ((pad_width, pad_width),) * x.ndim
    pad_width = tuple((int(b), int(a)) for b, a in pad_width)
    if len(pad_width) != x.ndim or any(b < 0 or a < 0 for b, a in pad_width):
        raise ValueError(f"pad: pad_width must give non-negative (before, after) for each of {x.ndim} axes, got {pad_width}")
    return Pad(pad_width, value)(x)


# ------------------------------------------------------------------------ comparisons

def _compare(name):
    def cmp(a, b):
        like = a if isinstance(a, Tensor) else b
        a, b = _t(a, like), _t(b, like)
        return Tensor(_binary(name, lambda u, v: getattr(u, f"__{name}__")(v), a.data, b.data))
    cmp.__name__ = name
    return cmp


lt, le, gt, ge, eq, ne = (_compare(n) for n in ("lt", "le", "gt", "ge", "eq", "ne"))


# ------------------------------------------------------------------------ Tensor methods

def _install():
    T = Tensor
    T.__add__ = lambda s, o: add(s, o)
    T.__radd__ = lambda s, o: add(o if isinstance(o, Tensor) else _t(o, s), s)
    T.__sub__ = lambda s, o: sub(s, o)
    T.__rsub__ = lambda s, o: sub(_t(o, s), s)
    T.__mul__ = lambda s, o: mul(s, o)
    T.__rmul__ = lambda s, o: mul(_t(o, s), s)
    T.__truediv__ = lambda s, o: div(s, o)
    T.__rtruediv__ = lambda s, o: div(_t(o, s), s)
    T.__neg__ = lambda s: neg(s)
    T.__pos__ = lambda s: s
    T.__pow__ = lambda s, o: pow(s, o)
    T.__rpow__ = lambda s, o: pow(_t(o, s), s)
    T.__matmul__ = lambda s, o: matmul(s, o)
    T.__rmatmul__ = lambda s, o: matmul(_t(o, s), s)
    T.__abs__ = lambda s: abs(s)
    T.__getitem__ = lambda s, i: getitem(s, i)
    T.__lt__ = lambda s, o: lt(s, o)
    T.__le__ = lambda s, o: le(s, o)
    T.__gt__ = lambda s, o: gt(s, o)
    T.__ge__ = lambda s, o: ge(s, o)
    T.__eq__ = lambda s, o: eq(s, o)
    T.__ne__ = lambda s, o: ne(s, o)
    T.__hash__ = object.__hash__
    T.exp, T.log, T.log1p, T.sqrt, T.tanh, T.sigmoid, T.abs = exp, log, log1p, sqrt, tanh, sigmoid, abs
    T.sum = lambda s, axis=None, keepdims=False: sum(s, axis, keepdims)
    T.mean = lambda s, axis=None, keepdims=False: mean(s, axis, keepdims)
    T.var = lambda s, axis=None, keepdims=False, ddof=0: var(s, axis, keepdims, ddof)
    T.std = lambda s, axis=None, keepdims=False, ddof=0: std(s, axis, keepdims, ddof)
    T.max = lambda s, axis=None, keepdims=False: max(s, axis, keepdims)
    T.min = lambda s, axis=None, keepdims=False: min(s, axis, keepdims)
    T.reshape = reshape
    T.view = reshape
    T.flatten = flatten
    T.transpose = lambda s, *axes: transpose(s, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else (axes or None))
    T.permute = permute
    T.swapaxes = swapaxes
    T.squeeze = squeeze
    T.unsqueeze = unsqueeze
    T.broadcast_to = broadcast_to
    T.expand = lambda s, *shape: broadcast_to(s, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)
    T.sum_to = sum_to
    T.clip = clip
    T.clamp = clip
    T.astype = astype
    T.matmul = matmul
    T.pow = pow
    T.T = property(lambda s: transpose(s))
    T.mT = property(lambda s: swapaxes(s, -1, -2))


_install()
