"""Input checks shared by the non-contrastive, clustering and distillation losses.

Every loss turns its array arguments into Tensors here and checks dtype, device and shape at
the boundary, so a wrong input raises with the argument's name instead of broadcasting silently
or failing deep inside NumPy.
"""
from __future__ import annotations

from .. import backend
from .._checks import check_ndim
from ..autograd.tensor import Tensor


def as_float_tensor(name, value):
    """``value`` (a Tensor or an array) as a floating Tensor; raises naming ``name`` otherwise."""
    if isinstance(value, Tensor):
        t = value
    elif backend.is_array(value):
        t = Tensor(value)
    else:
        raise TypeError(f"{name} must be a Tensor or an array, got {type(value).__name__}")
    if t.dtype.kind != "f":
        raise TypeError(f"{name} must have a floating dtype, got {t.dtype}")
    return t


def matrix(name, value, what="(N, D)"):
    """A 2-D floating Tensor."""
    return check_ndim(as_float_tensor(name, value), name, 2, what)


def like(name, t, ref_name, ref, shape=None):
    """``t`` shares ``ref``'s dtype and device (and has ``shape`` when given)."""
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} (to match {ref_name}), "
                         f"got {tuple(t.shape)}")
    if t.dtype != ref.dtype:
        raise TypeError(f"{name} has dtype {t.dtype} but {ref_name} has dtype {ref.dtype}; "
                        f"cast one of them")
    if t.device != ref.device:
        raise ValueError(f"{name} is on {t.device} but {ref_name} is on {ref.device}")
    return t


def tensor_list(name, values, what="(B, K)", min_len=1):
    """A non-empty list or tuple of 2-D Tensors of one shape, dtype and device."""
    if isinstance(values, (Tensor,)) or backend.is_array(values):
        raise TypeError(f"{name} must be a list or tuple of {what} Tensors (one per crop), "
                        f"got a single {type(values).__name__}; wrap it in a list")
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"{name} must be a list or tuple of {what} Tensors, got {type(values).__name__}")
    if len(values) < min_len:
        raise ValueError(f"{name} must hold at least {min_len} Tensor(s), got {len(values)}")
    out = [matrix(f"{name}[{i}]", v, what) for i, v in enumerate(values)]
    if 0 in out[0].shape:
        raise ValueError(f"{name}[0] must have at least one row and one column {what}, "
                         f"got shape {tuple(out[0].shape)}")
    for i, t in enumerate(out[1:], 1):
        like(f"{name}[{i}]", t, f"{name}[0]", out[0], shape=out[0].shape)
    return out
