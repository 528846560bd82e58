"""npjem: energy-based models and joint-embedding self-supervised learning from scratch.

A tiny reverse-mode autodiff engine on NumPy (CuPy on a GPU), and on it every loss,
sampler and method of the field, each written to read like its equation.
"""
from . import backend, random  # noqa: F401
from .autograd import functional  # noqa: F401
from .autograd import *  # noqa: F401,F403
from .autograd import Function, Tensor, backward, enable_grad, grad, no_grad, tensor  # noqa: F401
from .autograd.gradcheck import GradcheckError, gradcheck, gradgradcheck  # noqa: F401
from .exceptions import ConvergenceWarning  # noqa: F401
from .backend import default_dtype, get_array_module, set_default_dtype, to_numpy  # noqa: F401
from .backend import get_num_threads, set_num_threads  # noqa: F401
from .factory import arange, empty, full, ones, ones_like, rand, randn, zeros, zeros_like  # noqa: F401

__version__ = "0.1.0"
from .serialization import load, save  # noqa: F401,E402
from . import losses, nn, optim, state  # noqa: F401,E402  (npjem.nn like torch.nn)
