"""The reverse-mode autodiff engine: Tensor, Function, primitives and composites."""
from . import ops  # noqa: F401  (installs the Tensor operators)
from .gradcheck import GradcheckError, gradcheck, gradgradcheck  # noqa: F401
from .ops import (  # noqa: F401
    abs, add, astype, broadcast_to, cat, clamp, clip, concatenate, div, eq, erf, exp, expand_dims,
    flatten, ge, getitem, gt, le, log, log1p, lt, matmul, max, maximum, mean, min, minimum, mul, ne,
    neg, pad, permute, pow, reshape, sigmoid, sign, sqrt, squeeze, stack, std, sub, sum, sum_to,
    swapaxes, tanh, to_device, transpose, unsqueeze, var, where,
)
from .tensor import (  # noqa: F401
    Function, Tensor, as_tensor, backward, enable_grad, grad, is_grad_enabled, no_grad,
    set_grad_enabled, tensor,
)
