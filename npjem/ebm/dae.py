"""The denoising autoencoder (Vincent et al. 2008) read as an energy-based model.

A clean x is corrupted to x̃ ~ C(x̃ | x), encoded h = s(W x̃ + b_h) and decoded r(x̃) = W' h + b_r,
with W' = Wᵀ (tied weights) or a matrix of its own. Training minimises the reconstruction
error of the *clean* input,

    L = E_x E_{x̃|x} ‖x − r(x̃)‖²,

and the trained model defines the reconstruction energy E(x) = ‖x − r(x)‖², which is low on
the data manifold and grows away from it: the corrupted points are the contrastive samples
whose energy is pushed up (ch. 8-1 of the NYU notes, "Denoising autoencoder", views the DAE as a contrastive method). Its
residual is a score estimate: for Gaussian corruption of variance σ², the optimal r is
E[x | x̃] = x̃ + σ² ∇ log q_σ(x̃) (Tweedie / Miyasawa; q_σ the data density convolved with the
noise), so (r(x) − x) / σ² estimates ∇ₓ log p(x) for small σ (Alain & Bengio 2014) and
r(x̃) − x̃ points back towards the manifold. For Gaussian data N(μ, S) the optimum is linear:
r*(x̃) = μ + S (S + σ²I)⁻¹ (x̃ − μ).

Corruptions (each takes an explicit generator and returns an array like its input):

- ``gaussian_noise``: x̃ = x + σ ε, ε ~ N(0, I) (``noise`` = σ);
- ``masking_noise``: a fixed fraction ν of each row's entries, chosen at random, set to 0
  (Vincent et al. 2008's "masking noise"; ``noise`` = ν);
- ``salt_and_pepper_noise``: a fraction ν of each row's entries set to their minimum or
  maximum (0 or 1 by default) by a fair coin (Vincent et al. 2010).

Vectors and images alike: a batch is (N, D) or (N, C, H, W); "a row" is one sample, all its
entries, so an image batch is corrupted and scored exactly as its flattened (N, C·H·W) batch.
:func:`reconstruction_energy` is the energy both paths use. This file holds the DAE's math;
:class:`npjem.methods.DAE` is the convolutional DAE on images whose encoder is probed like the
joint-embedding methods' backbones (the generative baseline of the NYU notes, ch. 15-1, "Joint
Embedding Methods — Contrastive", section "Generative Models"), built on these functions.
"""
from __future__ import annotations

import math
import sys
import time

from .. import backend, optim
from .. import random as nrandom
from .._checks import (check_bool, check_choice, check_int, check_ndim, check_positive,
                       check_probability, check_real)
from ..autograd import functional as F
from ..autograd.tensor import Tensor
from ..nn.linear import Linear
from ..nn.module import Module, Parameter

__all__ = ["gaussian_noise", "masking_noise", "salt_and_pepper_noise", "reconstruction_energy", "corrupt",
           "CORRUPTIONS", "DenoisingAutoencoder"]


# ---------------------------------------------------------------- corruptions

def _array(x, name="x", images=False):
    data = x.data if isinstance(x, Tensor) else x
    if not backend.is_array(data):
        raise TypeError(f"{name} must be an array or a Tensor, got {type(x).__name__}")
    if data.dtype.kind != "f":
        raise TypeError(f"{name} must have a floating dtype, got {data.dtype}")
    if images:
        check_ndim(data, name, (2, 4), "(N, D) or (N, C, H, W)")
    else:
        check_ndim(data, name, 2, "(N, D)")
    return data


def _rows(a):
    """(N, ...) → (N, D): one row per sample (a view when ``a`` is contiguous)."""
    return a.reshape(a.shape[0], -1)


def reconstruction_energy(x, r):
    """E = ‖x − r‖² per sample, summed over every non-batch axis: shape (N,).

    ``x`` and ``r`` are Tensors (or arrays) of one shape, (N, D) vectors or (N, C, H, W) images;
    an image batch has the energy of its flattened batch.
    """
    x = x if isinstance(x, Tensor) else Tensor(_array(x, "x", images=True))
    r = r if isinstance(r, Tensor) else Tensor(_array(r, "r", images=True))
    if tuple(x.shape) != tuple(r.shape):
        raise ValueError(f"r must have x's shape {tuple(x.shape)}, got {tuple(r.shape)}")
    d = x - r
    return (d * d).sum(axis=tuple(range(1, len(x.shape))))


def _like(x, arr):
    return Tensor(arr) if isinstance(x, Tensor) else arr


def _gen(generator, arr):
    g = nrandom.as_generator(generator, backend.device_of(arr))
    if g.device != backend.device_of(arr):
        raise ValueError(f"generator is on {g.device} but x is on {backend.device_of(arr)}")
    return g


def gaussian_noise(x, sigma, generator=None):
    """x̃ = x + σ ε with ε ~ N(0, I); x (N, D) or (N, C, H, W), σ >= 0."""
    a = _array(x, images=True)
    sigma = check_positive(sigma, "sigma", allow_zero=True)
    g = _gen(generator, a)
    return _like(x, a + g.standard_normal(a.shape, dtype=a.dtype) * a.dtype.type(sigma))


def _fixed_fraction_mask(shape, fraction, g, dtype):
    """A boolean mask with exactly round(fraction · D) True entries per row, at random places."""
    n, d = shape
    m = int(round(fraction * d))
    xp = g.xp
    if m == 0:
        return xp.zeros(shape, dtype=bool)
    # the m smallest of D uniforms per row are a uniformly random m-subset
    u = g.random(shape, dtype=dtype)
    kth = xp.sort(u, axis=1)[:, m - 1:m]
    return u <= kth


def masking_noise(x, fraction, generator=None):
    """Set round(ν·D) randomly chosen entries of each row to 0 (ν = ``fraction`` in [0, 1]); an
    image's row is all its C·H·W entries."""
    a = _array(x, images=True)
    fraction = check_probability(fraction, "fraction")
    g = _gen(generator, a)
    mask = _fixed_fraction_mask(_rows(a).shape, fraction, g, a.dtype).reshape(a.shape)
    return _like(x, a * (~mask).astype(a.dtype))


def salt_and_pepper_noise(x, fraction, generator=None, low=0.0, high=1.0):
    """Set round(ν·D) randomly chosen entries of each row to ``low`` or ``high`` (fair coin)."""
    a = _array(x, images=True)
    fraction = check_probability(fraction, "fraction")
    low, high = check_real(low, "low"), check_real(high, "high")
    if not low < high:
        raise ValueError(f"low must be < high, got low={low}, high={high}")
    g = _gen(generator, a)
    xp = g.xp
    mask = _fixed_fraction_mask(_rows(a).shape, fraction, g, a.dtype).reshape(a.shape)
    coin = g.random(a.shape, dtype=a.dtype) < 0.5
    value = xp.where(coin, a.dtype.type(high), a.dtype.type(low))
    return _like(x, xp.where(mask, value, a))


#: The corruptions by name; ``noise`` is σ for ``"gaussian"`` and the fraction ν for the others.
CORRUPTIONS = {"gaussian": gaussian_noise, "masking": masking_noise, "salt_and_pepper": salt_and_pepper_noise}
_CORRUPTIONS = CORRUPTIONS


def check_corruption(corruption, noise):
    """(corruption, noise) checked: a known name, and σ ≥ 0 or a fraction ν in [0, 1]."""
    corruption = check_choice(corruption, "corruption", tuple(CORRUPTIONS))
    noise = (check_positive(noise, "noise", allow_zero=True) if corruption == "gaussian"
             else check_probability(noise, "noise"))
    return corruption, noise


def corrupt(x, corruption, noise, generator=None):
    """x̃ from ``x`` (vectors or images) by the named corruption with level ``noise``."""
    corruption, noise = check_corruption(corruption, noise)
    return CORRUPTIONS[corruption](x, noise, generator=generator)
_ACTIVATIONS = {"sigmoid": F.sigmoid, "tanh": F.tanh, "relu": F.relu, "identity": lambda t: t}


# ---------------------------------------------------------------- the model

class DenoisingAutoencoder(Module):
    """r(x̃) = dec(s(W x̃ + b_h)), trained to reconstruct x from its corruption x̃.

    Args:
        n_visible, n_hidden: sizes of x and of the code h.
        tied: decode with Wᵀ (Vincent et al.'s choice) or with a weight of its own.
        activation: the code's nonlinearity s: ``"sigmoid"``, ``"tanh"``, ``"relu"`` or
            ``"identity"`` (a linear DAE).
        output_activation: the same choices for the reconstruction (``"identity"``: real data
            and squared error; ``"sigmoid"``: data in [0, 1]).
        corruption: ``"gaussian"``, ``"masking"`` or ``"salt_and_pepper"``.
        noise: σ of the Gaussian noise, or the fraction ν of corrupted entries.
        device, dtype, generator: as for ``npjem.nn.Linear`` (the initial weights).

    ``encoder`` is a ``Linear(n_visible, n_hidden)``; untied, ``decoder`` is a
    ``Linear(n_hidden, n_visible)``; tied, ``decoder_bias`` (n_visible,) is the only decoder
    parameter.
    """

    def __init__(self, n_visible, n_hidden, tied=True, activation="sigmoid", output_activation="identity",
                 corruption="gaussian", noise=0.1, device=None, dtype=None, generator=None):
        super().__init__()
        self.n_visible = check_int(n_visible, "n_visible")
        self.n_hidden = check_int(n_hidden, "n_hidden")
        self.tied = check_bool(tied, "tied")
        self.activation = check_choice(activation, "activation", tuple(_ACTIVATIONS))
        self.output_activation = check_choice(output_activation, "output_activation", tuple(_ACTIVATIONS))
        self.corruption, self.noise = check_corruption(corruption, noise)
        g = nrandom.as_generator(generator, device)
        self.encoder = Linear(self.n_visible, self.n_hidden, device=device, dtype=dtype, generator=g)
        if self.tied:
            xp = backend.get_array_module(self.encoder.weight.data)
            self.decoder_bias = Parameter(xp.zeros(self.n_visible, dtype=self.encoder.weight.dtype))
        else:
            self.decoder = Linear(self.n_hidden, self.n_visible, device=device, dtype=dtype, generator=g)

    def _input(self, x, name="x"):
        t = x if isinstance(x, Tensor) else Tensor(_array(x, name))
        check_ndim(t, name, 2, "(N, n_visible)")
        if t.shape[1] != self.n_visible:
            raise ValueError(f"{name} must have n_visible={self.n_visible} columns, got shape {tuple(t.shape)}")
        if t.shape[0] == 0:
            raise ValueError(f"{name} must have at least one row, got shape {tuple(t.shape)}")
        return t

    def encode(self, x):
        """h = s(W x + b_h), shape (N, n_hidden)."""
        return _ACTIVATIONS[self.activation](self.encoder(self._input(x)))

    def decode(self, h):
        """W' h + b_r through the output activation, shape (N, n_visible)."""
        if self.tied:
            out = F.linear(h, self.encoder.weight.T, self.decoder_bias)
        else:
            out = self.decoder(h)
        return _ACTIVATIONS[self.output_activation](out)

    def forward(self, x):
        """The reconstruction r(x) (no corruption: corrupt first with :meth:`corrupt`)."""
        return self.decode(self.encode(x))

    def corrupt(self, x, generator=None):
        """x̃ drawn from the model's corruption of x (an array or a Tensor, returned alike)."""
        x = x.detach() if isinstance(x, Tensor) else x
        return _CORRUPTIONS[self.corruption](x, self.noise, generator=generator)

    def reconstruction_energy(self, x, x_tilde=None):
        """E = ‖x − r(x̃)‖² per row (x̃ = x when not given: the energy of x itself), shape (N,)."""
        x = self._input(x)
        r = self(x if x_tilde is None else self._input(x_tilde, "x_tilde"))
        if x_tilde is not None and tuple(r.shape) != tuple(x.shape):
            raise ValueError(f"x_tilde must have x's shape {tuple(x.shape)}, got {tuple(r.shape)}")
        return reconstruction_energy(x, r)

    def training_loss(self, x, generator=None, indices=None):
        """The denoising objective, mean over the batch of ‖x − r(x̃)‖², x̃ drawn afresh."""
        x = self._input(x)
        x_tilde = self.corrupt(x.data, generator=generator)
        return self.reconstruction_energy(x, x_tilde).mean()

    def score(self, x):
        """(r(x) − x) / σ², the DAE's estimate of ∇ₓ log p(x) (Gaussian corruption only)."""
        if self.corruption != "gaussian" or self.noise == 0:
            raise ValueError("score needs Gaussian corruption with noise (σ) > 0, got "
                             f"corruption={self.corruption!r}, noise={self.noise}")
        x = self._input(x)
        return (self(x) - x) * (1.0 / self.noise ** 2)

    def fit(self, X, epochs=10, batch_size=128, lr=1e-3, optimizer=None, generator=None, progress=True):
        """Train on the rows of X with Adam (or the given ``npjem.optim`` optimizer), shuffled
        mini-batches, fresh corruption each step. Returns a history: per step ``loss`` and
        ``epoch``, and ``time`` in seconds since the start."""
        X = _array(X, "X")
        epochs = check_int(epochs, "epochs")
        batch_size = check_int(batch_size, "batch_size")
        lr = check_positive(lr, "lr")
        progress = check_bool(progress, "progress")
        self._input(X, "X")
        g = _gen(generator, X)
        opt = optimizer if optimizer is not None else optim.Adam(self.parameters(), lr=lr)
        history = {"loss": [], "epoch": [], "time": []}
        n = X.shape[0]
        steps_per_epoch = math.ceil(n / batch_size)
        bar = None
        if progress and sys.stderr.isatty():
            from tqdm.auto import tqdm  # noqa: PLC0415

            bar = tqdm(total=epochs * steps_per_epoch, desc=type(self).__name__, unit="step")
        start = time.perf_counter()
        try:
            for epoch in range(epochs):
                order = g.permutation(n)
                for s in range(0, n, batch_size):
                    loss = self.training_loss(X[order[s:s + batch_size]], generator=g)
                    value = float(loss.item())
                    if not math.isfinite(value):
                        raise FloatingPointError(f"the DAE loss is {value} at epoch {epoch}; lower lr")
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    history["loss"].append(value)
                    history["epoch"].append(epoch)
                    history["time"].append(time.perf_counter() - start)
                    if bar is not None:
                        bar.set_postfix(loss=f"{value:.4f}", refresh=False)
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return history

    def extra_repr(self):
        return (f"n_visible={self.n_visible}, n_hidden={self.n_hidden}, tied={self.tied}, "
                f"activation={self.activation!r}, corruption={self.corruption!r}, noise={self.noise}")
