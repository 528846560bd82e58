"""The convolutional denoising autoencoder as a pretraining method: the generative baseline.

Before it presents joint embeddings, the NYU Deep Learning notes (ch. 15-1, "Joint Embedding
Methods — Contrastive", section "Generative Models") set self-supervised pretraining against a
generative route: corrupt the image, reconstruct the clean one, keep the encoder. Their "Issues:"
is that reconstruction is a harder task than the downstream one, so the encoder spends its
capacity on details (every pixel of the clutter) that do not tell the classes apart.

Here the encoder is the same backbone BB the joint-embedding methods train (probed the same
way), and a small decoder maps its pooled features h = BB(x̃) back to an image::

    x̃ = C(x)                  Gaussian noise x + σε, or masking noise (a fraction ν of the entries set to 0)
    r(x̃) = Dec(BB(x̃))         Linear → reshape → [ConvTranspose2d(×2) → BN → ReLU]… → Conv2d 3×3
    L = mean_n ‖x_n − r(x̃_n)‖²          the reconstruction energy, summed over C·H·W

The corruption and the energy are :mod:`npjem.ebm.dae`'s (:func:`~npjem.ebm.dae.corrupt`,
:func:`~npjem.ebm.dae.reconstruction_energy`), the one home of the DAE's math: on the flattened
batch this is exactly the vector DAE's energy. The decoder starts from the *pooled* features on
purpose: the probe reads those, so they must carry what the reconstruction needs.
"""
from __future__ import annotations

from .. import random as nrandom
from .._checks import check_int
from ..autograd import Tensor
from ..ebm.dae import check_corruption, corrupt, reconstruction_energy
from ..nn.activation import ReLU
from ..nn.container import Sequential
from ..nn.conv import Conv2d, ConvTranspose2d
from ..nn.linear import Linear
from ..nn.module import Module
from ..nn.norm import BatchNorm2d
from .base import Method
from .simclr import _feature_dim

__all__ = ["DAE", "DAEViews", "ImageDecoder"]


class DAEViews:
    """The DAE's view maker: ``(x, x̃)``, the clean batch (after an optional augmentation ``base``)
    and its corruption, drawn with the run's generator."""

    def __init__(self, corruption="gaussian", noise=0.5, base=None):
        self.corruption, self.noise = check_corruption(corruption, noise)
        if base is not None and not callable(base):
            raise TypeError(f"base must be a view function views(x, generator) or None, got {type(base).__name__}")
        self.base = base

    def __call__(self, x, generator=None):
        g = nrandom.as_generator(generator, _device(x))
        if self.base is not None:
            out = self.base(x, generator=g)
            x = out[0] if isinstance(out, (tuple, list)) else out
        return x, corrupt(x, self.corruption, self.noise, generator=g)

    def __repr__(self):
        return f"DAEViews(corruption={self.corruption!r}, noise={self.noise}, base={self.base!r})"


def _device(x):
    from .. import backend  # noqa: PLC0415

    return backend.device_of(x)


class ImageDecoder(Module):
    """Pooled features (N, F) → images (N, C, H, W).

    Linear(F, w₀·s·s) → ReLU → reshape (N, w₀, s, s), then for each later width wᵢ a
    ConvTranspose2d(wᵢ₋₁, wᵢ, 4, stride 2, padding 1) (doubling the size) → BN → ReLU, then a
    Conv2d(w_last, C, 3, padding 1) to the image's channels; s = H / 2^(len(widths) − 1).
    """

    def __init__(self, in_features, image_shape=(3, 32, 32), widths=(64, 32, 16), device=None, dtype=None,
                 generator=None):
        super().__init__()
        c, h, w = (check_int(v, "image_shape") for v in image_shape)
        widths = tuple(check_int(v, "widths") for v in widths)
        if not widths:
            raise ValueError("widths must hold at least one width")
        n_up = len(widths) - 1
        if h % (2 ** n_up) or w % (2 ** n_up):
            raise ValueError(f"image_shape {tuple(image_shape)}: H and W must be divisible by 2^{n_up} "
                             f"for {len(widths)} widths")
        self.image_shape, self.widths = (c, h, w), widths
        self.start = (h // 2 ** n_up, w // 2 ** n_up)
        g = nrandom.as_generator(generator, device)
        self.fc = Linear(check_int(in_features, "in_features"), widths[0] * self.start[0] * self.start[1],
                         device=device, dtype=dtype, generator=g)
        layers = []
        for a, b in zip(widths, widths[1:]):
            layers += [ConvTranspose2d(a, b, 4, stride=2, padding=1, bias=False, device=device, dtype=dtype,
                                       generator=g), BatchNorm2d(b, device=device, dtype=dtype), ReLU()]
        layers.append(Conv2d(widths[-1], c, 3, padding=1, device=device, dtype=dtype, generator=g))
        self.up = Sequential(*layers)
        self.relu = ReLU()

    def forward(self, h):
        x = self.relu(self.fc(h))
        return self.up(x.reshape((x.shape[0], self.widths[0]) + self.start))


class DAE(Method):
    """A denoising autoencoder on images, its encoder the shared backbone BB (see the module).

    Args:
        backbone: BB, images → (N, F) features (``num_features`` = F).
        image_shape: (C, H, W) of the images to reconstruct.
        corruption: ``"gaussian"`` (σ = ``noise``) or ``"masking"`` (fraction ν = ``noise``), or
            ``"salt_and_pepper"``.
        noise: σ or ν (0.5 and 0.5 are Vincent et al.'s middle of the road for images in [0, 1]).
        decoder_widths: the decoder's widths (:class:`ImageDecoder`).
        decoder: a decoder of your own (features → images), instead of :class:`ImageDecoder`.
        views: a view maker returning ``(x, x̃)``; default :class:`DAEViews` with ``corruption`` and
            ``noise`` (pass ``DAEViews(..., base=...)`` to augment the clean image first).
    """

    def __init__(self, backbone, image_shape=(3, 32, 32), corruption="gaussian", noise=0.5,
                 decoder_widths=(64, 32, 16), feature_dim=None, decoder=None, views=None, generator=None):
        views = DAEViews(corruption, noise) if views is None else views
        super().__init__(backbone, views)
        self.corruption, self.noise = check_corruption(corruption, noise)
        if decoder is None:
            p = next(iter(backbone.parameters()), None)
            decoder = ImageDecoder(_feature_dim(backbone, feature_dim), image_shape, decoder_widths,
                                   device=None if p is None else p.device, dtype=None if p is None else p.dtype,
                                   generator=generator)
        if not isinstance(decoder, Module):
            raise TypeError(f"decoder must be an npjem.nn.Module, got {type(decoder).__name__}")
        self.decoder = decoder
        self.diagnostics = {}

    def reconstruct(self, x_tilde):
        """r(x̃) = Dec(BB(x̃))."""
        return self.decoder(self.backbone(x_tilde))

    def forward(self, x, x_tilde):
        x = x if isinstance(x, Tensor) else Tensor(x)
        r = self.reconstruct(x_tilde)
        if tuple(r.shape) != tuple(x.shape):
            raise ValueError(f"the decoder gives images of shape {tuple(r.shape)[1:]} but x is "
                             f"{tuple(x.shape)[1:]}: set image_shape")
        loss = reconstruction_energy(x.detach(), r).mean()
        self.diagnostics = {"loss": float(loss.item())}
        return loss

    def extra_repr(self):
        return f"corruption={self.corruption!r}, noise={self.noise}"
