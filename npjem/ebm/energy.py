r"""Energy functions, free energies over a latent variable, and the Gibbs distribution.

An energy F(x) (or F(x, y) for an input x and an answer y) is a scalar that is low where the
data are and high elsewhere (NYU Deep Learning notes, ch. 8-1 "Contrastive Methods in Energy-Based Models"). The modules here map a batch
to one energy per sample and are ordinary :class:`npjem.nn.Module`\ s with PyTorch-style
parameters, so an optimizer trains them and a sampler differentiates them in x:

* :class:`MLPEnergy`: vectors (N, D) → (N,);
* :class:`ConvEnergy`: images (N, C, H, W) → (N,);
* :class:`ConditionalEnergy`: F(x, y) for a discrete answer y ∈ {0, …, K−1} or a continuous
  one y ∈ R^{D_y}; ``energies_all`` gives the (N, K) energies of every answer, what the loss
  functionals in :mod:`npjem.losses.functionals` and the exact NLL need.

Their activations are smooth by default (swish): Langevin samplers need ∇ₓE, and objectives
such as score matching differentiate ∇ₓE again, which a ReLU network makes piecewise constant.

The functions act on a Tensor of energies:

* free energy over a latent z, at zero temperature, F_∞ = min_z E(z) (:func:`free_energy_min`),
  and at inverse temperature β as the normalised soft-min (:func:`free_energy`)::

      F_β = −(1/β) log (1/N_z) Σ_z exp(−β E(z))

  which lies in [min_z E, mean_z E], tends to the min as β → ∞ and to the mean as β → 0. (The
  NYU Deep Learning notes of spring 2020, week 7, "Energy-Based Models", section "Inference",
  write F_∞ = argmin_z E — it is the min, a value.) Without the 1/N_z, −(1/β) log Σ_z
  exp(−βE) is the free energy whose Gibbs distribution is the marginal over z; the two differ
  by the constant log(N_z)/β, which no Gibbs distribution sees.
* the Gibbs distribution over a discrete answer set (:func:`gibbs`),
  P(y | x) = exp(−β F(x, y)) / Σ_{y'} exp(−β F(x, y')), and its exact negative log-likelihood
  (:func:`nll`), −log P(y^i | x) = β F(x, y^i) + log Σ_{y'} exp(−β F(x, y')), in nats. LeCun et
  al.'s (2006) loss functional divides this by β (:func:`npjem.losses.nll_mmi`); this function
  does not. (The spring-2020 NYU Deep Learning notes drop the log in week 7, "SSL, EBM with details and
  examples", section "Training an Energy-Based Model", and the minus sign of the exponent in week
  11, "Loss Functions (cont.) and Loss Functions for Energy Based Models", section "Negative
  Log-Likelihood Loss".)
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import backend
from .. import random as nrandom
from .._checks import check_choice, check_int, check_real
from ..autograd import functional as F
from ..autograd import ops
from ..autograd.tensor import Tensor
from ..losses._inputs import as_float_tensor
from ..losses.functionals import _all_answers, _pick, _reduce, _target
from ..nn import Conv2d, Linear, Module, ReLU, Sequential, SiLU, Softplus, Tanh

__all__ = [
    "ACTIVATIONS", "MLPEnergy", "ConvEnergy", "ConditionalEnergy", "free_energy_min",
    "free_energy", "gibbs", "nll",
]

ACTIVATIONS = ("swish", "softplus", "elu", "tanh", "relu")


class ELU(Module):
    """x for x > 0, exp(x) − 1 otherwise (α = 1): smooth enough for ∇ₓE, C¹ at 0."""

    def forward(self, input):  # noqa: A002
        neg = ops.exp(ops.minimum(input, 0.0)) - 1.0  # exp of min(x, 0): never overflows
        # x = 0 takes the identity branch: min(x, 0) ties there and would share its slope, 1/2
        return ops.where(input.data >= 0, input, neg)


def _activation(name):
    check_choice(name, "activation", ACTIVATIONS)
    return {"swish": SiLU, "softplus": Softplus, "elu": ELU, "tanh": Tanh, "relu": ReLU}[name]()


def _hidden(hidden):
    if isinstance(hidden, (numbers.Integral, np.integer)) and not isinstance(hidden, bool):
        hidden = (hidden,)
    if not isinstance(hidden, (tuple, list)):
        raise ValueError(f"hidden must be a tuple of positive ints (the hidden widths), got {hidden!r}")
    return tuple(check_int(h, "hidden") for h in hidden)


def _mlp(in_features, hidden, out_features, activation, device, dtype, g):
    layers, width = [], in_features
    for h in hidden:
        layers += [Linear(width, h, device=device, dtype=dtype, generator=g), _activation(activation)]
        width = h
    layers.append(Linear(width, out_features, device=device, dtype=dtype, generator=g))
    return Sequential(*layers)


def _generator(generator, device):
    # One Generator shared by all layers, so that a seed gives different draws per layer.
    return nrandom.as_generator(generator, backend.normalize_device(device) if device is not None else None)


def _input(name, x, module, ndim, layout):
    """``x`` as a Tensor of the module's dtype and device, with ``ndim`` axes and N >= 1."""
    if isinstance(x, Tensor):
        t = x
    elif backend.is_array(x):
        t = Tensor(x)
    else:
        raise TypeError(f"{name} must be a Tensor or an array, got {type(x).__name__}")
    if t.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {layout}, got shape {tuple(t.shape)}")
    if t.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one sample, got shape {tuple(t.shape)}")
    p = next(module.parameters())
    if t.dtype != p.dtype:
        raise TypeError(f"{name} has dtype {t.dtype} but the energy's parameters are {p.dtype}; "
                        f"cast one of them (e.g. model.double())")
    if t.device != p.device:
        raise ValueError(f"{name} is on {t.device} but the energy's parameters are on {p.device}")
    return t


# ---------------------------------------------------------------- energy modules

class MLPEnergy(Module):
    r"""E(x) = MLP(x) ∈ R for x ∈ R^D: Linear → activation per hidden width, then Linear → 1.

    ``forward(x)`` maps (N, D) to the (N,) energies. ``activation`` is one of ``"swish"``
    (x·σ(x), the default), ``"softplus"``, ``"elu"``, ``"tanh"`` (all smooth) or ``"relu"``
    (piecewise linear: its ∇ₓE is piecewise constant and its second derivative in x is zero,
    so avoid it for score matching). ``hidden=()`` gives the linear energy wᵀx + b.
    Parameters are drawn as PyTorch's ``nn.Linear`` from ``generator`` (a seed or a
    :class:`npjem.random.Generator`). State-dict keys: ``net.{2i}.weight``, ``net.{2i}.bias``.
    """

    def __init__(self, in_features, hidden=(64, 64), activation="swish", *, device=None, dtype=None,
                 generator=None):
        super().__init__()
        self.in_features = check_int(in_features, "in_features")
        self.hidden = _hidden(hidden)
        self.activation = check_choice(activation, "activation", ACTIVATIONS)
        self.net = _mlp(self.in_features, self.hidden, 1, activation, device, dtype,
                        _generator(generator, device))

    def forward(self, x):
        x = _input("x", x, self, 2, "(N, D)")
        if x.shape[1] != self.in_features:
            raise ValueError(f"x must have shape (N, {self.in_features}) (in_features), got {tuple(x.shape)}")
        return ops.reshape(self.net(x), (x.shape[0],))

    def extra_repr(self):
        return f"in_features={self.in_features}, hidden={self.hidden}, activation={self.activation!r}"


class ConvEnergy(Module):
    r"""E(x) ∈ R for images x of shape (C, H, W): k×k convolutions with an activation, global
    average pooling, then Linear → 1.

    Block i maps C_{i−1} → ``widths[i]`` channels with stride ``strides[i]`` and padding ⌊k/2⌋.
    There is no batch normalisation, on purpose: it would make one image's energy depend on
    the others in the batch (data and negatives would share statistics). ``forward(x)`` maps
    (N, C, H, W) to the (N,) energies. ``activation`` as in :class:`MLPEnergy` (default swish).
    State-dict keys: ``features.{2i}`` (conv), ``fc``.
    """

    def __init__(self, in_channels=1, widths=(16, 32, 64), strides=(1, 2, 2), kernel_size=3,
                 activation="swish", *, device=None, dtype=None, generator=None):
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels")
        self.widths = _hidden(widths)
        if not self.widths:
            raise ValueError("widths must hold at least one channel count")
        self.strides = _hidden(strides)
        if len(self.strides) != len(self.widths):
            raise ValueError(f"strides must have one entry per width ({len(self.widths)}), got {strides!r}")
        self.kernel_size = check_int(kernel_size, "kernel_size")
        self.activation = check_choice(activation, "activation", ACTIVATIONS)
        g = _generator(generator, device)
        layers, c = [], self.in_channels
        for w, s in zip(self.widths, self.strides):
            layers += [Conv2d(c, w, self.kernel_size, stride=s, padding=self.kernel_size // 2, device=device,
                              dtype=dtype, generator=g), _activation(activation)]
            c = w
        self.features = Sequential(*layers)
        self.fc = Linear(c, 1, device=device, dtype=dtype, generator=g)

    def forward(self, x):
        x = _input("x", x, self, 4, "(N, C, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x must have {self.in_channels} channels (in_channels), got shape {tuple(x.shape)}")
        h = self.features(x).mean(axis=(2, 3))
        return ops.reshape(self.fc(h), (x.shape[0],))

    def extra_repr(self):
        return (f"in_channels={self.in_channels}, widths={self.widths}, strides={self.strides}, "
                f"activation={self.activation!r}")


class ConditionalEnergy(Module):
    r"""F(x, y): the energy of answer y for input x, for a discrete or a continuous answer.

    Give exactly one of

    * ``num_classes=K``: y ∈ {0, …, K−1}. An MLP maps x to K outputs, the energies of the K
      answers (a classifier whose logits are −F: P(y | x) = softmax(−β F(x, ·))). ``forward(x, y)``
      takes integer y of shape (N,); ``energies_all(x)`` returns all (N, K) energies.
    * ``y_features=D_y``: y ∈ R^{D_y}. An MLP maps the concatenation [x, y] to one energy.
      ``forward(x, y)`` takes y of shape (N, D_y); ``energies_all(x, answers)`` evaluates
      every input against each of K candidate answers (K, D_y), giving (N, K) — a grid or a
      sample of the answer space, for :func:`npjem.losses.most_offending` or an NLL over it.

    ``hidden``, ``activation``, ``device``, ``dtype``, ``generator`` as in :class:`MLPEnergy`.
    """

    def __init__(self, in_features, num_classes=None, y_features=None, hidden=(64, 64), activation="swish",
                 *, device=None, dtype=None, generator=None):
        super().__init__()
        if (num_classes is None) == (y_features is None):
            raise ValueError("ConditionalEnergy needs exactly one of num_classes (a discrete answer) and "
                             f"y_features (a continuous one), got num_classes={num_classes!r}, "
                             f"y_features={y_features!r}")
        self.in_features = check_int(in_features, "in_features")
        self.num_classes = None if num_classes is None else check_int(num_classes, "num_classes")
        self.y_features = None if y_features is None else check_int(y_features, "y_features")
        self.hidden = _hidden(hidden)
        self.activation = check_choice(activation, "activation", ACTIVATIONS)
        g = _generator(generator, device)
        if self.num_classes is not None:
            self.net = _mlp(self.in_features, self.hidden, self.num_classes, activation, device, dtype, g)
        else:
            self.net = _mlp(self.in_features + self.y_features, self.hidden, 1, activation, device, dtype, g)

    @property
    def discrete(self):
        return self.num_classes is not None

    def _x(self, x):
        x = _input("x", x, self, 2, "(N, D_x)")
        if x.shape[1] != self.in_features:
            raise ValueError(f"x must have shape (N, {self.in_features}) (in_features), got {tuple(x.shape)}")
        return x

    def _y(self, name, y, rows):
        if not isinstance(y, Tensor):
            if not backend.is_array(y):
                raise TypeError(f"{name} must be a Tensor or an array of answers, got {type(y).__name__}")
            y = Tensor(y)
        if y.ndim != 2 or (rows is not None and y.shape[0] != rows) or y.shape[1] != self.y_features:
            shown = "(" + ("K" if rows is None else str(rows)) + f", {self.y_features})"
            raise ValueError(f"{name} must have shape {shown} (y_features={self.y_features}), got {tuple(y.shape)}")
        p = next(self.parameters())
        if y.dtype != p.dtype:
            raise TypeError(f"{name} has dtype {y.dtype} but the energy's parameters are {p.dtype}")
        if y.device != p.device:
            raise ValueError(f"{name} is on {y.device} but the energy's parameters are on {p.device}")
        return y

    def energies_all(self, x, answers=None):
        """(N, K) energies F(x_n, y_k) of every answer: all K classes, or the K rows of ``answers``."""
        x = self._x(x)
        if self.discrete:
            if answers is not None:
                raise ValueError("answers is only for a continuous answer (y_features); a discrete "
                                 "ConditionalEnergy scores all its num_classes answers")
            return self.net(x)
        if answers is None:
            raise ValueError("energies_all of a continuous answer needs answers, the (K, y_features) candidates")
        a = self._y("answers", answers, None)
        if a.shape[0] < 1:
            raise ValueError("answers must hold at least one candidate, got shape (0, ...)")
        n, k = x.shape[0], a.shape[0]
        xs = ops.broadcast_to(ops.reshape(x, (n, 1, self.in_features)), (n, k, self.in_features))
        ys = ops.broadcast_to(ops.reshape(a, (1, k, self.y_features)), (n, k, self.y_features))
        xy = ops.reshape(ops.concatenate([xs, ys], axis=2), (n * k, self.in_features + self.y_features))
        return ops.reshape(self.net(xy), (n, k))

    def forward(self, x, y):
        """(N,) energies F(x_n, y_n)."""
        x = self._x(x)
        if self.discrete:
            e = self.net(x)
            return _pick(e, _target(y, x.shape[0], self.num_classes, e, name="y"))
        y = self._y("y", y, x.shape[0])
        return ops.reshape(self.net(ops.concatenate([x, y], axis=1)), (x.shape[0],))

    def extra_repr(self):
        ans = f"num_classes={self.num_classes}" if self.discrete else f"y_features={self.y_features}"
        return f"in_features={self.in_features}, {ans}, hidden={self.hidden}, activation={self.activation!r}"


# ---------------------------------------------------------------- free energies, Gibbs, NLL

def _axis(axis, t):
    a = check_int(axis, "axis", minimum=None)
    if not -t.ndim <= a < t.ndim:
        raise ValueError(f"axis {a} is out of range for energies of shape {tuple(t.shape)}")
    a %= t.ndim
    if t.shape[a] < 1:
        raise ValueError(f"energies must have at least one entry along axis {a}, got shape {tuple(t.shape)}")
    return a


def _energies(energies):
    t = as_float_tensor("energies", energies)
    if t.ndim < 1:
        raise ValueError("energies must have at least one axis (the latent or answer axis), got a 0-d value")
    return t


def free_energy_min(energies, axis=-1):
    r"""Zero-temperature free energy F_∞ = min_z E(z) along ``axis`` (the latent variable's).

    ``energies`` holds E(x, y, z) for a discrete z or for sampled values of z along ``axis``.
    Differentiable: the gradient goes to the minimising z (shared evenly at ties).
    """
    t = _energies(energies)
    return t.min(axis=_axis(axis, t))


def free_energy(energies, beta=1.0, axis=-1):
    r"""Soft-min free energy F_β = −(1/β) log (1/N_z) Σ_z exp(−β E(z)) along ``axis``.

    The 1/N_z normalisation (the mean, not the sum, inside the log) makes F_β a soft minimum:
    min_z E <= F_β <= mean_z E, non-increasing in β, → min as β → ∞ and → mean as β → 0. Its
    gradient in E(z) is the Gibbs weight softmax(−βE)_z: non-negative, summing to 1.
    ``beta=math.inf`` gives :func:`free_energy_min`. Computed as
    −(logsumexp(−βE) − log N_z) / β, which neither overflows nor underflows for energies of
    any size.

    Args:
        energies: a Tensor (or array) of energies, the latent variable z along ``axis``.
        beta: β > 0, the inverse temperature (``math.inf`` allowed).
        axis: the z axis (default last).
    """
    t = _energies(energies)
    a = _axis(axis, t)
    b = check_real(beta, "beta", low=0.0, low_open=True, finite=False)
    if math.isinf(b):
        return t.min(axis=a)
    return (F.logsumexp(t * (-b), axis=a) - math.log(t.shape[a])) * (-1.0 / b)


def gibbs(energies, beta=1.0, axis=-1):
    r"""The Gibbs distribution P(y) = exp(−β E(y)) / Σ_{y'} exp(−β E(y')) over ``axis``.

    For ``energies`` of shape (N, K) (``ConditionalEnergy.energies_all``), row n is P(y | x_n)
    over the K answers. Each row sums to 1; computed as softmax(−βE), stably.
    """
    t = _energies(energies)
    a = _axis(axis, t)
    b = check_real(beta, "beta", low=0.0, low_open=True)
    return F.softmax(t * (-b), axis=a)


def nll(energies, target, beta=1.0, reduction="mean"):
    r"""Exact negative log-likelihood −log P(y^i | x^i) of the Gibbs distribution, in nats.

    ::

        nll = β E(x^i, y^i) + log Σ_{y ∈ 𝒴} exp(−β E(x^i, y))

    over a discrete answer set given by all its energies (N, K). This is the cross-entropy of
    the logits −βE at the target (``F.cross_entropy(-beta * E, target)``). LeCun et al.'s NLL
    loss functional puts 1/β in front of the log instead — L = E + (1/β) log Σ exp(−βE) =
    nll / β — to keep it in units of energy: that one is :func:`npjem.losses.nll_mmi`.

    Args:
        energies: (N, K) energies of every answer. target: (N,) integer index of the answer.
        beta: β > 0 (default 1). reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
    """
    t = _all_answers(energies)
    lab = _target(target, *t.shape, t)
    b = check_real(beta, "beta", low=0.0, low_open=True)
    return _reduce(_pick(t, lab) * b + F.logsumexp(t * (-b), axis=1), reduction)
