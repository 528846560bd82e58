"""``Linear``, ``Identity``, ``Flatten`` and ``Dropout``."""
from __future__ import annotations


from .. import backend
from .. import random as nrandom
from ..autograd import ops
from . import functional as F
from . import init
from .._checks import check_int
from ._utils import empty_parameter
from .module import Module

__all__ = ["Linear", "Identity", "Flatten", "Dropout"]


class Identity(Module):
    """Returns its input; accepts and ignores any constructor arguments (as PyTorch)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):  # noqa: A002
        return input


class Linear(Module):
    """y = x Wᵀ + b with W of shape (out_features, in_features).

    Initialisation as PyTorch: W ~ U(−1/√in, 1/√in) (kaiming_uniform with a = √5) and
    b ~ U(−1/√in, 1/√in), drawn from ``generator`` (a seed, a Generator, or the device default).
    """

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None, generator=None):
        super().__init__()
        self.in_features = check_int(in_features, "in_features")
        self.out_features = check_int(out_features, "out_features")
        self.weight = empty_parameter((self.out_features, self.in_features), device, dtype)
        if bias:
            self.bias = empty_parameter((self.out_features,), device, dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters(generator)

    def reset_parameters(self, generator=None):
        init.reset_weight_and_bias_(self.weight, self.bias, generator)

    def forward(self, input):  # noqa: A002
        if input.shape[-1] != self.in_features:
            raise ValueError(f"Linear: input has {input.shape[-1]} features in its last axis, expected "
                             f"in_features={self.in_features} (input shape {tuple(input.shape)})")
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Flatten(Module):
    """Flattens axes ``start_dim``..``end_dim`` into one (default: all but the batch axis)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def forward(self, input):  # noqa: A002
        return ops.flatten(input, self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Dropout(Module):
    """Inverted dropout in training mode (zero with probability p, scale the rest by 1/(1−p));
    the identity in eval mode.

    ``generator`` (seed or Generator) makes the masks reproducible; None draws from the
    device's default generator. ``inplace`` is accepted for PyTorch's signature; the result is
    computed out of place either way.
    """

    def __init__(self, p=0.5, inplace=False, generator=None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = float(p)
        self.inplace = bool(inplace)
        self._generator_arg = generator
        self._generators = {}

    def _generator(self, device):
        """One generator per device, derived deterministically from the one given."""
        if self._generator_arg is None:
            return None
        g = self._generators.get(device)
        if g is None:
            if not self._generators:
                g = nrandom.as_generator(self._generator_arg, device)
                if g.device != device:  # a Generator made for another device: derive one here
                    g = nrandom.Generator(int(g.integers(0, 2**63 - 1)), device)
            else:
                first = next(iter(self._generators.values()))
                g = nrandom.Generator(int(first.integers(0, 2**63 - 1)), device)
            self._generators[device] = g
        return g

    def forward(self, input):  # noqa: A002
        if not self.training or self.p == 0.0:
            return input
        device = backend.device_of(input)
        return F.dropout(input, self.p, training=True, generator=self._generator(device))

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"
