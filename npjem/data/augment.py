"""Batched, seeded image augmentations and view makers for joint-embedding SSL.

Every transform works on a whole batch of images ``x`` of shape ``(N, C, H, W)``, a floating
NumPy or CuPy array with values in ``[0, 1]``. The array module ``xp`` is taken from ``x``
(``backend.get_array_module``), so the same line runs on the CPU and on a GPU; every array
made here is made with that ``xp``. Random parameters are drawn **per sample** from an
explicit generator, and the work is vectorised over the batch (the only Python loops run
over a handful of kernel taps, channels or colour operations, never over images).

A transform is a callable object::

    out = T(x, generator=None)          # generator: None, an int seed or npjem.random.Generator
    params = T.sample_params(x.shape, generator)   # the per-sample draws, as xp arrays
    out = T.apply(x, params)            # deterministic given params; T(x, g) == apply(x, sample_params(x.shape, g))

``sample_params`` exists so that tests (and curious readers) can check the draws: crop
boxes, jitter factors, blur widths and the per-sample "was it applied" masks.

Conventions (torchvision's unless said otherwise):

- ``RandomResizedCrop`` samples its box as torchvision does (10 tries, then a centre crop)
  and resamples with bilinear interpolation, ``align_corners=False``, without antialiasing
  (torchvision's tensor path antialiases when it shrinks; at CIFAR sizes crops are mostly
  enlarged, where the two agree).
- ``ColorJitter`` applies brightness, contrast, saturation and hue in a **random order drawn
  per sample** (torchvision draws one order per call, and it is called once per image, so
  per sample is the same distribution). Each factor is drawn per sample; the result is
  clamped to ``[0, 1]``.
- Grayscale uses the ITU-R 601-2 luma weights 0.299, 0.587, 0.114 (PIL's; torchvision's
  tensor path uses 0.2989).
- Colour operations (``ColorJitter``, ``RandomGrayscale``, ``rgb_to_hsv``, …) need ``C == 3``;
  flips, crops, blur, solarize, noise and ``Normalize`` work for any ``C``.
- The dtype is kept: float32 in, float32 out (factors are cast to ``x.dtype`` before use).
"""
from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod

import numpy as np

from .. import backend
from .. import random as npr
from .._checks import check_int, check_probability, check_real

__all__ = [
    # functional helpers
    "rgb_to_grayscale", "rgb_to_hsv", "hsv_to_rgb", "adjust_brightness", "adjust_contrast",
    "adjust_saturation", "adjust_hue", "gaussian_blur", "resized_crop", "rotate",
    # transforms
    "Transform", "RandomResizedCrop", "RandomHorizontalFlip", "RandomVerticalFlip", "RandomRotation", "ColorJitter", "RandomGrayscale",
    "GaussianBlur", "Solarize", "RandomInvert", "GaussianNoise", "Normalize", "Compose", "RandomApply",
    # view makers
    "TwoViews", "simclr_views", "byol_views", "MultiCrop", "random_patch_mask", "Jigsaw",
]

GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma

_F64 = np.float64


# ====================================================================== validation helpers

def _check_images(x, name="x", channels=None):
    """Raise ``ValueError`` unless ``x`` is a floating ``(N, C, H, W)`` array."""
    if not backend.is_array(x):
        raise ValueError(f"{name} must be a NumPy or CuPy array of shape (N, C, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got shape {tuple(x.shape)}")
    if x.dtype.kind != "f":
        raise ValueError(f"{name} must be a floating array with values in [0, 1], got dtype {x.dtype}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channels (RGB), got shape {tuple(x.shape)}")
    return x


def _check_range(value, name, lo_bound=-math.inf, hi_bound=math.inf, positive=False):
    """A ``(lo, hi)`` pair of floats with ``lo_bound <= lo <= hi <= hi_bound``."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (min, max) of numbers, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"{name} must be a finite pair with min <= max, got {value!r}")
    if lo < lo_bound or hi > hi_bound or (positive and lo <= 0):
        bound = "> 0" if positive else f"within [{lo_bound}, {hi_bound}]"
        raise ValueError(f"{name} must lie {bound}, got {value!r}")
    return lo, hi


def _check_scale(value, name):
    """An area-fraction range ``(lo, hi)`` with ``0 <= lo <= hi <= 1`` and ``hi > 0``."""
    lo, hi = _check_range(value, name, 0.0, 1.0)
    if hi <= 0:
        raise ValueError(f"{name} must have max > 0, got {value!r}")
    return lo, hi


def _check_size(size, name="size"):
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = (size, size)
    try:
        h, w = size
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a pair (height, width), got {size!r}") from None
    return check_int(h, name), check_int(w, name)


def _generator_for(x, generator):
    """The ``npjem.random.Generator`` to draw with, on the device of ``x``."""
    g = npr.as_generator(generator, device=backend.device_of(x))
    if g.xp is not backend.get_array_module(x):
        raise ValueError(
            f"generator draws on {g.device!r} but x lives on {backend.device_of(x)!r}; "
            "pass a generator made for the device of x"
        )
    return g


def _per_sample(values, x):
    """``values`` (a scalar or an ``(N,)`` array) as ``x.dtype``, shaped to broadcast on ``(N, C, H, W)``."""
    xp = backend.get_array_module(x)
    v = xp.asarray(values, dtype=x.dtype)
    return v.reshape((-1,) + (1,) * (x.ndim - 1)) if v.ndim == 1 else v


def _bernoulli(g, n, p):
    """A boolean ``(n,)`` mask, True with probability ``p`` (one uniform draw per sample)."""
    return g.random(n, dtype=_F64) < p


def _apply_on(x, mask, fn):
    """``fn`` applied to the samples where ``mask`` holds (a copy of ``x`` elsewhere).

    Only the selected samples are computed (a gather, the op, a scatter), so a transform
    applied with p = 0.1 costs a tenth of the full batch.
    """
    xp = backend.get_array_module(x)
    sel = xp.nonzero(mask)[0]
    if int(sel.size) == 0:
        return x.copy()
    if int(sel.size) == x.shape[0]:
        return fn(x, sel)
    out = x.copy()
    sub = fn(x[sel], sel)
    if sub.shape != out[sel].shape:
        raise ValueError(
            f"a transform applied to part of a batch must keep the image shape; got "
            f"{tuple(sub.shape[1:])} from {tuple(x.shape[1:])}"
        )
    out[sel] = sub
    return out


# ====================================================================== functional helpers

def rgb_to_grayscale(x, num_output_channels=1):
    """Luma ``0.299 R + 0.587 G + 0.114 B`` of ``(..., 3, H, W)`` images, keeping the channel axis.

    ``num_output_channels=3`` repeats the luma in three equal channels.
    """
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(f"x must have 3 channels on axis -3, got shape {tuple(x.shape)}")
    if num_output_channels not in (1, 3):
        raise ValueError(f"num_output_channels must be 1 or 3, got {num_output_channels!r}")
    wr, wg, wb = GRAY_WEIGHTS
    gray = (wr * x[..., 0:1, :, :] + wg * x[..., 1:2, :, :] + wb * x[..., 2:3, :, :]).astype(x.dtype, copy=False)
    if num_output_channels == 3:
        xp = backend.get_array_module(x)
        gray = xp.broadcast_to(gray, x.shape).copy()
    return gray


def rgb_to_hsv(x):
    """RGB → HSV on axis -3 of ``(..., 3, H, W)`` images in ``[0, 1]``; H, S, V all in ``[0, 1]``.

    Same formulas as torchvision: ``V = max``, ``S = (max − min) / max`` (0 where max == min),
    ``H = ((the sector offset + difference ratio) / 6) mod 1``, with H = 0 for grays.
    """
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(f"x must have 3 channels on axis -3, got shape {tuple(x.shape)}")
    xp = backend.get_array_module(x)
    r, g, b = x[..., 0, :, :], x[..., 1, :, :], x[..., 2, :, :]
    maxc = xp.maximum(xp.maximum(r, g), b)
    minc = xp.minimum(xp.minimum(r, g), b)
    delta = maxc - minc
    gray = delta == 0
    one = xp.ones((), dtype=x.dtype)
    s = delta / xp.where(gray, one, maxc)
    d = xp.where(gray, one, delta)
    rc, gc, bc = (maxc - r) / d, (maxc - g) / d, (maxc - b) / d
    h = xp.where(maxc == r, bc - gc, xp.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = xp.where(gray, xp.zeros((), dtype=x.dtype), h)
    h = (h / 6.0 + 1.0) % 1.0
    return xp.stack([h, s, maxc], axis=-3).astype(x.dtype, copy=False)


def hsv_to_rgb(x):
    """HSV → RGB on axis -3, the inverse of :func:`rgb_to_hsv`.

    Closed form: channel ``c = V − V·S·clip(min(k, 4 − k), 0, 1)`` with
    ``k = (n + 6H) mod 6`` and ``n = 5, 3, 1`` for R, G, B.
    """
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(f"x must have 3 channels on axis -3, got shape {tuple(x.shape)}")
    xp = backend.get_array_module(x)
    h6 = x[..., 0, :, :] * 6.0
    s, v = x[..., 1, :, :], x[..., 2, :, :]
    vs = v * s
    chans = []
    for n in (5.0, 3.0, 1.0):
        k = (h6 + n) % 6.0
        chans.append(v - vs * xp.clip(xp.minimum(k, 4.0 - k), 0.0, 1.0))
    return xp.clip(xp.stack(chans, axis=-3), 0.0, 1.0).astype(x.dtype, copy=False)


def _blend(x, other, factor):
    """``clamp(factor·x + (1 − factor)·other, 0, 1)`` with ``factor`` per sample (torchvision's _blend)."""
    xp = backend.get_array_module(x)
    f = _per_sample(factor, x)
    return xp.clip(f * x + (1.0 - f) * other, 0.0, 1.0)


def adjust_brightness(x, factor):
    """``clamp(factor · x)``: 0 gives black, 1 the original; ``factor`` scalar or ``(N,)``."""
    xp = backend.get_array_module(x)
    return xp.clip(_per_sample(factor, x) * x, 0.0, 1.0)


def adjust_contrast(x, factor):
    """Blend each image with the mean of its grayscale: 0 gives a uniform gray image, 1 the original.

    ``x`` is ``(N, 3, H, W)`` (mean of the luma) or ``(N, 1, H, W)`` (mean of the image).
    """
    _check_images(x)
    if x.shape[1] == 3:
        gray = rgb_to_grayscale(x)
    elif x.shape[1] == 1:
        gray = x
    else:
        raise ValueError(f"x must have 1 or 3 channels for contrast, got shape {tuple(x.shape)}")
    mean = gray.mean(axis=(1, 2, 3), keepdims=True).astype(x.dtype, copy=False)
    return _blend(x, mean, factor)


def adjust_saturation(x, factor):
    """Blend each RGB image with its grayscale: 0 gives gray, 1 the original, 2 doubles saturation."""
    _check_images(x, channels=3)
    return _blend(x, rgb_to_grayscale(x), factor)


def adjust_hue(x, hue_factor):
    """Rotate the hue of RGB images by ``hue_factor`` (in turns, within [-0.5, 0.5]; scalar or ``(N,)``)."""
    _check_images(x, channels=3)
    xp = backend.get_array_module(x)
    hsv = rgb_to_hsv(x)
    shift = xp.asarray(hue_factor, dtype=x.dtype)
    if shift.ndim == 1:
        shift = shift.reshape(-1, 1, 1)
    h = (hsv[:, 0] + shift) % 1.0
    hsv = xp.stack([h, hsv[:, 1], hsv[:, 2]], axis=1)
    return hsv_to_rgb(hsv)


def _gaussian_kernels(sigma, radius, xp, dtype):
    """``(N, 2·radius + 1)`` normalised Gaussian taps, one row per sigma."""
    t = xp.arange(-radius, radius + 1, dtype=_F64)
    s = xp.asarray(sigma, dtype=_F64).reshape(-1, 1)
    w = xp.exp(-0.5 * (t[None, :] / s) ** 2)
    w /= w.sum(axis=1, keepdims=True)
    return w.astype(dtype)


def gaussian_blur(x, sigma, kernel_size):
    """Separable Gaussian blur with a per-sample ``sigma`` (scalar or ``(N,)``) and reflect padding.

    Each pass pads by ``r = kernel_size // 2`` with ``mode='reflect'`` (the edge pixel is not
    repeated, as in torch) and sums ``kernel_size`` shifted slices weighted by the
    per-sample taps. ``kernel_size`` must be odd and ``r`` below the image's height and width.
    """
    _check_images(x)
    xp = backend.get_array_module(x)
    k = check_int(kernel_size, "kernel_size")
    if k % 2 == 0:
        raise ValueError(f"kernel_size must be odd, got {k}")
    n, _, hgt, wid = x.shape
    r = k // 2
    if r >= hgt or r >= wid:
        raise ValueError(f"kernel_size {k} is too large for images of size {hgt}x{wid} (needs kernel_size // 2 < size)")
    if r == 0 or n == 0:
        return x.copy()
    sig = xp.broadcast_to(xp.asarray(sigma, dtype=_F64), (n,))
    w = _gaussian_kernels(sig, r, xp, x.dtype)  # (N, k)
    out = x
    for axis in (3, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (r, r)
        padded = xp.pad(out, pad, mode="reflect")
        size = out.shape[axis]
        acc = None
        for t in range(k):
            sl = [slice(None)] * 4
            sl[axis] = slice(t, t + size)
            term = w[:, t].reshape(n, 1, 1, 1) * padded[tuple(sl)]
            acc = term if acc is None else acc + term
        out = acc
    return out


def resized_crop(x, top, left, height, width, size):
    """Crop box ``(top, left, height, width)`` of each sample (``(N,)`` integer arrays), resized to ``size``.

    Bilinear, ``align_corners=False``: output pixel ``o`` samples the crop at
    ``(o + 0.5)·h/out − 0.5`` (clamped to the crop), so a box the size of the output is copied
    exactly. The four neighbours are gathered with one flat ``take`` each, for the whole batch.
    """
    _check_images(x)
    xp = backend.get_array_module(x)
    out_h, out_w = _check_size(size)
    n, c, hgt, wid = x.shape

    def axis_coords(start, length, out_len):
        start = xp.asarray(start).astype(xp.int64).reshape(n, 1)
        length = xp.asarray(length).astype(xp.int64).reshape(n, 1)
        o = xp.arange(out_len, dtype=_F64)[None, :]
        src = (o + 0.5) * (length.astype(_F64) / out_len) - 0.5
        src = xp.clip(src, 0.0, (length - 1).astype(_F64))
        i0 = xp.floor(src).astype(xp.int64)
        i1 = xp.minimum(i0 + 1, length - 1)
        frac = (src - i0).astype(x.dtype)
        return i0 + start, i1 + start, frac

    y0, y1, wy = axis_coords(top, height, out_h)  # (N, out_h)
    x0, x1, wx = axis_coords(left, width, out_w)  # (N, out_w)
    flat = xp.ascontiguousarray(x).reshape(-1)
    base = ((xp.arange(n, dtype=xp.int64)[:, None] * c + xp.arange(c, dtype=xp.int64)[None, :]) * (hgt * wid))
    base = base[:, :, None, None]
    r0, r1 = (y0 * wid)[:, None, :, None], (y1 * wid)[:, None, :, None]
    c0, c1 = x0[:, None, None, :], x1[:, None, None, :]
    wy = wy[:, None, :, None]
    wx = wx[:, None, None, :]
    top_row = (1.0 - wx) * xp.take(flat, base + r0 + c0) + wx * xp.take(flat, base + r0 + c1)
    bot_row = (1.0 - wx) * xp.take(flat, base + r1 + c0) + wx * xp.take(flat, base + r1 + c1)
    return (1.0 - wy) * top_row + wy * bot_row


def rotate(x, angle, padding_mode="border"):
    """Each sample rotated counter-clockwise by ``angle`` degrees (a number or an ``(N,)`` array) about its centre.

    Bilinear, on the pixel-centre grid (``align_corners=False``): output pixel ``p`` samples the
    input at ``R(−angle)·(p − c) + c`` with ``c = ((H − 1)/2, (W − 1)/2)``, so angle 0 is an
    exact copy and 90° moves pixels exactly as ``rot90`` does. Samples that fall outside the
    image take the nearest edge pixel (``padding_mode="border"``, as ``grid_sample``; right for
    pictures on a plain background) or zero (``"zeros"``, torchvision's ``fill=0``).
    """
    _check_images(x)
    if padding_mode not in ("border", "zeros"):
        raise ValueError(f"padding_mode must be 'border' or 'zeros', got {padding_mode!r}")
    xp = backend.get_array_module(x)
    n, c, hgt, wid = x.shape
    theta = xp.asarray(angle, dtype=_F64)
    if theta.ndim == 0:
        theta = xp.full((n,), float(theta), dtype=_F64)
    if theta.shape != (n,):
        raise ValueError(f"angle must be a number or an array of shape ({n},), got shape {tuple(theta.shape)}")
    theta = xp.deg2rad(theta)[:, None, None]
    cy, cx = (hgt - 1) / 2.0, (wid - 1) / 2.0
    dy = xp.arange(hgt, dtype=_F64)[None, :, None] - cy
    dx = xp.arange(wid, dtype=_F64)[None, None, :] - cx
    # Rows grow downwards: an on-screen counter-clockwise turn by theta reads output (dy, dx)
    # from input (cos·dy + sin·dx, −sin·dy + cos·dx); at 90° that is rot90's (dx, −dy).
    cos, sin = xp.cos(theta), xp.sin(theta)
    sy = cos * dy + sin * dx + cy  # (N, H, W)
    sx = -sin * dy + cos * dx + cx
    y0 = xp.floor(sy)
    x0 = xp.floor(sx)
    wy = (sy - y0).astype(x.dtype)
    wx = (sx - x0).astype(x.dtype)
    y0 = y0.astype(xp.int64)
    x0 = x0.astype(xp.int64)
    flat = xp.ascontiguousarray(x).reshape(n, c, hgt * wid)
    out = xp.zeros_like(x)
    for ry, rx, weight in ((0, 0, (1 - wy) * (1 - wx)), (0, 1, (1 - wy) * wx),
                           (1, 0, wy * (1 - wx)), (1, 1, wy * wx)):
        yy, xx = y0 + ry, x0 + rx
        if padding_mode == "zeros":
            inside = (yy >= 0) & (yy < hgt) & (xx >= 0) & (xx < wid)
            weight = weight * inside.astype(x.dtype)
        idx = xp.clip(yy, 0, hgt - 1) * wid + xp.clip(xx, 0, wid - 1)  # (N, H, W)
        taps = xp.take_along_axis(flat, xp.broadcast_to(idx.reshape(n, 1, -1), (n, c, hgt * wid)), axis=2)
        out += weight[:, None] * taps.reshape(n, c, hgt, wid)
    return out


# ====================================================================== transforms

class Transform(ABC):
    """A batched random transform: ``T(x, generator=None)``.

    Subclasses define ``sample_params(shape, generator)`` (per-sample draws as a dict of ``xp``
    arrays) and ``apply(x, params)`` (deterministic). ``__call__`` checks ``x``, makes the
    generator for the device of ``x`` and chains the two.
    """

    channels = None  # required number of channels, if any

    def __call__(self, x, generator=None):
        _check_images(x, channels=self.channels)
        g = _generator_for(x, generator)
        return self.apply(x, self.sample_params(x.shape, g))

    @abstractmethod
    def sample_params(self, shape, generator=None, device=None):
        """Per-sample parameters for a batch of ``shape`` ``(N, C, H, W)``."""

    @abstractmethod
    def apply(self, x, params):
        """The transform of ``x`` with the given parameters."""

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._repr_args().items())
        return f"{type(self).__name__}({args})"

    def _repr_args(self):
        return {}


class RandomResizedCrop(Transform):
    """Crop a random box of each image and resize it to ``size`` (bilinear), as torchvision.

    Box sampling per sample: area fraction ``s ~ U(scale)``, aspect ratio ``r`` log-uniform in
    ``ratio``, ``w = round(sqrt(s·H·W·r))``, ``h = round(sqrt(s·H·W/r))``; the first of 10 tries
    that fits in the image wins (all 10 are drawn at once), and a sample whose 10 tries all fail
    gets torchvision's fallback, a centre crop with the ratio clamped into ``ratio``. The top-left
    corner is uniform over the positions that keep the box inside.
    """

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0)):
        self.size = _check_size(size, "size")
        self.scale = _check_scale(scale, "scale")
        self.ratio = _check_range(ratio, "ratio", positive=True)

    def _repr_args(self):
        return {"size": self.size, "scale": self.scale, "ratio": self.ratio}

    def sample_params(self, shape, generator=None, device=None):
        """``top, left, height, width`` (int64, ``(N,)``), the accepted ``scale`` and ``ratio`` draws
        (float64) and ``fallback`` (bool, the centre-crop samples, whose scale/ratio are the box's)."""
        g = npr.as_generator(generator, device)
        xp = g.xp
        n, hgt, wid = shape[0], shape[-2], shape[-1]
        area = float(hgt * wid)
        tries = 10
        lo, hi = self.scale
        s = lo + (hi - lo) * g.random((n, tries), dtype=_F64)
        lr0, lr1 = math.log(self.ratio[0]), math.log(self.ratio[1])
        r = xp.exp(lr0 + (lr1 - lr0) * g.random((n, tries), dtype=_F64))
        w = xp.round(xp.sqrt(area * s * r)).astype(xp.int64)
        h = xp.round(xp.sqrt(area * s / r)).astype(xp.int64)
        ok = (w > 0) & (w <= wid) & (h > 0) & (h <= hgt)
        first = xp.argmax(ok.astype(xp.int8), axis=1)  # the first try that fits
        rows = xp.arange(n)
        fits = ok[rows, first]
        # torchvision's fallback: the whole image, its ratio clamped into `ratio`.
        in_ratio = wid / hgt
        if in_ratio < self.ratio[0]:
            fw, fh = wid, int(round(wid / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            fw, fh = int(round(hgt * self.ratio[1])), hgt
        else:
            fw, fh = wid, hgt
        height = xp.where(fits, h[rows, first], fh)
        width = xp.where(fits, w[rows, first], fw)
        scale = xp.where(fits, s[rows, first], (fh * fw) / area)
        ratio = xp.where(fits, r[rows, first], fw / fh)
        u = g.random((2, n), dtype=_F64)
        top = xp.minimum(xp.floor(u[0] * (hgt - height + 1)).astype(xp.int64), hgt - height)
        left = xp.minimum(xp.floor(u[1] * (wid - width + 1)).astype(xp.int64), wid - width)
        top = xp.where(fits, top, (hgt - fh) // 2)
        left = xp.where(fits, left, (wid - fw) // 2)
        return {"top": top, "left": left, "height": height, "width": width,
                "scale": scale, "ratio": ratio, "fallback": ~fits}

    def apply(self, x, params):
        return resized_crop(x, params["top"], params["left"], params["height"], params["width"], self.size)


class _RandomPerSample(Transform):
    """Apply ``_transform`` to each sample with probability ``p`` (one draw per sample, under ``key``)."""

    key = "apply"

    def __init__(self, p):
        self.p = check_probability(p, "p")

    def _repr_args(self):
        return {"p": self.p}

    def sample_params(self, shape, generator=None, device=None):
        g = npr.as_generator(generator, device)
        return {self.key: _bernoulli(g, shape[0], self.p)}

    def _transform(self, x):
        raise NotImplementedError

    def apply(self, x, params):
        xp = backend.get_array_module(x)
        return xp.where(params[self.key].reshape(-1, 1, 1, 1), self._transform(x), x)


class RandomHorizontalFlip(_RandomPerSample):
    """Mirror each image left–right with probability ``p``."""

    key = "flip"

    def __init__(self, p=0.5):
        super().__init__(p)

    def _transform(self, x):
        return x[..., ::-1]


class RandomVerticalFlip(_RandomPerSample):
    """Mirror each image top–bottom with probability ``p``."""

    key = "flip"

    def __init__(self, p=0.5):
        super().__init__(p)

    def _transform(self, x):
        return x[..., ::-1, :]

class RandomRotation(Transform):
    """Rotate each image by ``angle ~ U(degrees)`` (counter-clockwise, about its centre) with probability ``p``.

    ``degrees`` is a number ``d`` (the range ``(−d, d)``, as torchvision) or a ``(min, max)``
    pair. Bilinear; ``padding_mode`` as in ``rotate`` (``"border"`` by default, where
    torchvision fills with 0: on pictures drawn on a plain background a black corner would tell
    the network which view was rotated).
    """

    def __init__(self, degrees, p=1.0, padding_mode="border"):
        if isinstance(degrees, numbers.Real) and not isinstance(degrees, bool):
            if degrees < 0:
                raise ValueError(f"degrees must be >= 0 when a single number, got {degrees!r}")
            degrees = (-float(degrees), float(degrees))
        self.degrees = _check_range(degrees, "degrees")
        self.p = check_probability(p, "p")
        if padding_mode not in ("border", "zeros"):
            raise ValueError(f"padding_mode must be 'border' or 'zeros', got {padding_mode!r}")
        self.padding_mode = padding_mode

    def _repr_args(self):
        return {"degrees": self.degrees, "p": self.p, "padding_mode": self.padding_mode}

    def sample_params(self, shape, generator=None, device=None):
        g = npr.as_generator(generator, device)
        n = shape[0]
        lo, hi = self.degrees
        return {"rotate": _bernoulli(g, n, self.p), "angle": lo + (hi - lo) * g.random(n, dtype=_F64)}

    def apply(self, x, params):
        return _apply_on(x, params["rotate"],
                         lambda xs, sel: rotate(xs, params["angle"][sel], self.padding_mode))


def _jitter_range(value, name, center, bound, clip_first):
    """torchvision's ``_check_input``: a number v ≥ 0 gives ``[center − v, center + v]``
    (clipped at 0 for factors); a pair is taken as is. ``None`` when the range is ``{center}``."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        v = float(value)
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a non-negative number or a pair (min, max), got {value!r}")
        lo, hi = center - v, center + v
        if clip_first:
            lo = max(lo, 0.0)
    else:
        lo, hi = _check_range(value, name)
    if lo < bound[0] or hi > bound[1]:
        raise ValueError(f"{name} values must lie within [{bound[0]}, {bound[1]}], got {value!r}")
    if lo == hi == center:
        return None
    return lo, hi


class ColorJitter(Transform):
    """Random brightness, contrast, saturation and hue, with probability ``p`` per sample.

    Semantics of torchvision's ``ColorJitter`` (factors ``~ U[max(0, 1 − v), 1 + v]``, hue shift
    ``~ U[−h, h]`` with ``h ≤ 0.5``, or explicit ``(min, max)`` pairs):

    - brightness: ``clamp(b · x)``
    - contrast: blend with the mean of the image's grayscale, ``clamp(c·x + (1 − c)·mean)``
    - saturation: blend with the grayscale image, ``clamp(s·x + (1 − s)·gray)``
    - hue: ``H ← (H + h) mod 1`` in HSV space

    The four operations run in a random order drawn **per sample** (``order``, an ``(N, 4)``
    permutation of 0 = brightness, 1 = contrast, 2 = saturation, 3 = hue). An operation whose
    strength is 0 is skipped, so ``ColorJitter(0, 0, 0, 0)`` is the identity. ``p`` (default 0.8)
    folds in the usual ``RandomApply(ColorJitter(...), p=0.8)`` of the SSL recipes; ``p=1`` is
    torchvision's bare ``ColorJitter``.
    """

    channels = 3
    _NAMES = ("brightness", "contrast", "saturation", "hue")

    def __init__(self, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, p=0.8):
        self.brightness = _jitter_range(brightness, "brightness", 1.0, (0.0, math.inf), True)
        self.contrast = _jitter_range(contrast, "contrast", 1.0, (0.0, math.inf), True)
        self.saturation = _jitter_range(saturation, "saturation", 1.0, (0.0, math.inf), True)
        self.hue = _jitter_range(hue, "hue", 0.0, (-0.5, 0.5), False)
        self.p = check_probability(p, "p")

    def _repr_args(self):
        return {k: getattr(self, k) for k in self._NAMES + ("p",)}

    def sample_params(self, shape, generator=None, device=None):
        """``apply`` (bool ``(N,)``), ``order`` (int ``(N, 4)``) and one float64 ``(N,)`` factor per
        enabled operation (``None`` for a disabled one)."""
        g = npr.as_generator(generator, device)
        xp = g.xp
        n = shape[0]
        params = {"apply": _bernoulli(g, n, self.p),
                  "order": xp.argsort(g.random((n, 4), dtype=_F64), axis=1)}
        for name in self._NAMES:
            rng = getattr(self, name)
            params[name] = None if rng is None else rng[0] + (rng[1] - rng[0]) * g.random(n, dtype=_F64)
        return params

    def apply(self, x, params):
        _check_images(x, channels=3)
        xp = backend.get_array_module(x)
        ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
        out = x.copy()
        active = params["apply"]
        order = params["order"]
        for step in range(4):
            for op, fn in enumerate(ops):
                factor = params[self._NAMES[op]]
                if factor is None:
                    continue
                sel = xp.nonzero(active & (order[:, step] == op))[0]
                if int(sel.size) == 0:
                    continue
                out[sel] = fn(out[sel], factor[sel])
        return out


class RandomGrayscale(_RandomPerSample):
    """Replace each RGB image by its luma (three equal channels) with probability ``p``."""

    channels = 3
    key = "gray"

    def __init__(self, p=0.1):
        super().__init__(p)

    def _transform(self, x):
        _check_images(x, channels=3)
        return rgb_to_grayscale(x)


class GaussianBlur(Transform):
    """Separable Gaussian blur with ``sigma ~ U(sigma)`` per sample, applied with probability ``p``.

    ``kernel_size`` (odd) fixes the number of taps, as torchvision; ``None`` uses
    ``2·ceil(3·sigma_max) + 1`` taps (±3σ of the widest kernel, like PIL's radius-σ blur of the
    SimCLR/BYOL/DINO recipes), shortened when the image is too small for reflect padding.
    Sigma is in pixels: the recipes' (0.1, 2.0) at 224 px is a much stronger blur at 32 px.
    """

    def __init__(self, kernel_size=None, sigma=(0.1, 2.0), p=0.5):
        if kernel_size is not None:
            kernel_size = check_int(kernel_size, "kernel_size")
            if kernel_size % 2 == 0:
                raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.kernel_size = kernel_size
        if isinstance(sigma, numbers.Real) and not isinstance(sigma, bool):
            sigma = (sigma, sigma)
        self.sigma = _check_range(sigma, "sigma", positive=True)
        self.p = check_probability(p, "p")

    def _repr_args(self):
        return {"kernel_size": self.kernel_size, "sigma": self.sigma, "p": self.p}

    def kernel_size_for(self, shape):
        """The number of taps used on images of ``shape``."""
        if self.kernel_size is not None:
            return self.kernel_size
        radius = min(int(math.ceil(3.0 * self.sigma[1])), shape[-2] - 1, shape[-1] - 1)
        return 2 * max(radius, 0) + 1

    def sample_params(self, shape, generator=None, device=None):
        g = npr.as_generator(generator, device)
        n = shape[0]
        lo, hi = self.sigma
        return {"blur": _bernoulli(g, n, self.p), "sigma": lo + (hi - lo) * g.random(n, dtype=_F64)}

    def apply(self, x, params):
        k = self.kernel_size_for(x.shape)
        return _apply_on(x, params["blur"], lambda xs, sel: gaussian_blur(xs, params["sigma"][sel], k))


class Solarize(Transform):
    """Invert the pixels at or above ``threshold`` (``x ← 1 − x`` where ``x ≥ threshold``) with probability ``p``."""

    def __init__(self, threshold=0.5, p=0.5):
        self.threshold = check_real(threshold, "threshold", low=0.0, high=1.0)
        self.p = check_probability(p, "p")

    def _repr_args(self):
        return {"threshold": self.threshold, "p": self.p}

    def sample_params(self, shape, generator=None, device=None):
        g = npr.as_generator(generator, device)
        return {"solarize": _bernoulli(g, shape[0], self.p)}

    def apply(self, x, params):
        xp = backend.get_array_module(x)
        hit = params["solarize"].reshape(-1, 1, 1, 1) & (x >= self.threshold)
        return xp.where(hit, 1.0 - x, x)


class RandomInvert(_RandomPerSample):
    """Replace each image by its negative ``1 − x`` with probability ``p`` (torchvision's ``RandomInvert``)."""

    key = "invert"

    def __init__(self, p=0.5):
        super().__init__(p)

    def _transform(self, x):
        return 1.0 - x


class GaussianNoise(Transform):
    """Add ``N(0, std²)`` noise; ``std`` a number or a ``(min, max)`` range drawn per sample.

    No clamp by default: the noisy images of denoising autoencoders and denoising score
    matching must keep their Gaussian law. ``clip=True`` clamps to ``[0, 1]``.
    """

    def __init__(self, std=0.1, clip=False, p=1.0):
        if isinstance(std, numbers.Real) and not isinstance(std, bool):
            std = (std, std)
        self.std = _check_range(std, "std", 0.0, math.inf)
        self.clip = bool(clip)
        self.p = check_probability(p, "p")

    def _repr_args(self):
        return {"std": self.std, "clip": self.clip, "p": self.p}

    def sample_params(self, shape, generator=None, device=None, dtype=None):
        """``std`` (float64 ``(N,)``, 0 for the samples left clean) and the ``noise`` itself, standard
        normal of ``shape`` in ``dtype`` (npjem's default dtype when None; ``__call__`` passes ``x.dtype``)."""
        g = npr.as_generator(generator, device)
        n = shape[0]
        lo, hi = self.std
        std = lo + (hi - lo) * g.random(n, dtype=_F64)
        std = g.xp.where(_bernoulli(g, n, self.p), std, 0.0)
        return {"std": std, "noise": g.standard_normal(tuple(shape), dtype=dtype)}

    def apply(self, x, params):
        xp = backend.get_array_module(x)
        out = x + _per_sample(params["std"], x) * params["noise"].astype(x.dtype, copy=False)
        return xp.clip(out, 0.0, 1.0) if self.clip else out

    def __call__(self, x, generator=None):
        _check_images(x)
        g = _generator_for(x, generator)
        return self.apply(x, self.sample_params(x.shape, g, dtype=x.dtype))


class Normalize:
    """``(x − mean) / std`` per channel; ``inverse`` undoes it. Not random (``generator`` is ignored)."""

    def __init__(self, mean, std):
        mean = np.atleast_1d(np.asarray(mean, dtype=_F64))
        std = np.atleast_1d(np.asarray(std, dtype=_F64))
        if mean.ndim != 1 or not np.all(np.isfinite(mean)):
            raise ValueError(f"mean must be a finite number or a sequence of one per channel, got {mean!r}")
        if std.ndim != 1 or not np.all(np.isfinite(std)) or np.any(std <= 0):
            raise ValueError(f"std must be positive finite numbers, one per channel, got {std!r}")
        if mean.size != std.size and 1 not in (mean.size, std.size):
            raise ValueError(f"mean and std must have the same length, got {mean.size} and {std.size}")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __repr__(self):
        return f"Normalize(mean={self.mean}, std={self.std})"

    def _stats(self, x):
        _check_images(x)
        c = x.shape[1]
        for name, v in (("mean", self.mean), ("std", self.std)):
            if len(v) not in (1, c):
                raise ValueError(f"{name} has {len(v)} values but x has {c} channels")
        xp = backend.get_array_module(x)
        mean = xp.asarray(self.mean, dtype=x.dtype).reshape(1, -1, 1, 1)
        std = xp.asarray(self.std, dtype=x.dtype).reshape(1, -1, 1, 1)
        return mean, std

    def __call__(self, x, generator=None):
        mean, std = self._stats(x)
        return (x - mean) / std

    def inverse(self, x):
        """``x · std + mean``: normalised images back to ``[0, 1]``."""
        mean, std = self._stats(x)
        return x * std + mean


class Compose:
    """Apply transforms in sequence, all drawing from the same generator."""

    def __init__(self, transforms):
        transforms = list(transforms)
        for i, t in enumerate(transforms):
            if not callable(t):
                raise ValueError(f"transforms[{i}] must be callable as t(x, generator=...), got {t!r}")
        self.transforms = transforms

    def __repr__(self):
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"

    def __call__(self, x, generator=None):
        _check_images(x)
        g = _generator_for(x, generator)  # made once: an int seed must not restart every step
        for t in self.transforms:
            x = t(x, generator=g)
        return x


class RandomApply:
    """Apply ``transform`` to each sample with probability ``p`` (only the chosen samples are computed).

    ``transform`` must keep the image shape.
    """

    def __init__(self, transform, p=0.5):
        if not callable(transform):
            raise ValueError(f"transform must be callable as t(x, generator=...), got {transform!r}")
        self.transform = transform
        self.p = check_probability(p, "p")

    def __repr__(self):
        return f"RandomApply({self.transform!r}, p={self.p})"

    def __call__(self, x, generator=None):
        _check_images(x)
        g = _generator_for(x, generator)
        mask = _bernoulli(g, x.shape[0], self.p)
        return _apply_on(x, mask, lambda xs, sel: self.transform(xs, generator=g))


# ====================================================================== view makers

class TwoViews:
    """Two augmented views of the same batch: ``(transform1(x), transform2(x))``.

    ``transform2=None`` reuses ``transform1`` (a symmetric recipe, SimCLR/MoCo/SimSiam/Barlow
    Twins/VICReg); an asymmetric recipe (BYOL) passes two.
    """

    def __init__(self, transform1, transform2=None):
        if not callable(transform1):
            raise ValueError(f"transform1 must be callable, got {transform1!r}")
        if transform2 is not None and not callable(transform2):
            raise ValueError(f"transform2 must be callable or None, got {transform2!r}")
        self.transform1 = transform1
        self.transform2 = transform1 if transform2 is None else transform2

    def __repr__(self):
        return f"TwoViews({self.transform1!r}, {self.transform2!r})"

    def __call__(self, x, generator=None):
        _check_images(x)
        g = _generator_for(x, generator)
        return self.transform1(x, generator=g), self.transform2(x, generator=g)


def simclr_views(size=32, scale=(0.08, 1.0), strength=0.5, blur=False):
    """SimCLR's augmentation, the CIFAR-10 recipe by default (paper §B.9, code's README flags).

    RandomResizedCrop(size, scale=(0.08, 1)) (SimCLR keeps 0.08 at 32 px; some CIFAR ports use
    0.2) → horizontal flip p=0.5 → ColorJitter(0.8s, 0.8s, 0.8s, 0.2s) with p=0.8 →
    grayscale p=0.2, where the colour strength ``s = 0.5`` on CIFAR (0.4/0.4/0.4/0.1; ImageNet
    uses ``s = 1``: 0.8/0.8/0.8/0.2). No blur at 32 px (``blur=True`` adds the ImageNet
    recipe's blur, p=0.5, sigma (0.1, 2)). Brightness is torchvision's multiplicative factor
    (SimCLR's TF v1 code adds a brightness delta instead). No normalisation: compose
    :class:`Normalize` after it if the backbone wants it.
    """
    s = float(strength)
    steps = [
        RandomResizedCrop(size, scale=scale),
        RandomHorizontalFlip(0.5),
        ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=0.8),
        RandomGrayscale(0.2),
    ]
    if blur:
        steps.append(GaussianBlur(sigma=(0.1, 2.0), p=0.5))
    return TwoViews(Compose(steps))


def byol_views(size=32, scale=(0.08, 1.0), blur_sigma=(0.1, 2.0)):
    """BYOL's asymmetric pair of augmentations (paper Table 6; lightly's BYOLTransform defaults).

    Both views: RandomResizedCrop(size, scale=(0.08, 1)) → flip p=0.5 → ColorJitter(0.4, 0.4,
    0.2, 0.1) p=0.8 → grayscale p=0.2 → Gaussian blur (sigma ``blur_sigma`` in pixels) with
    p = 1.0 (view 1) / 0.1 (view 2) → solarize (threshold 0.5) with p = 0.0 / 0.2.
    """

    def view(blur_p, solarize_p):
        steps = [
            RandomResizedCrop(size, scale=scale),
            RandomHorizontalFlip(0.5),
            ColorJitter(0.4, 0.4, 0.2, 0.1, p=0.8),
            RandomGrayscale(0.2),
            GaussianBlur(sigma=blur_sigma, p=blur_p),
        ]
        if solarize_p > 0:
            steps.append(Solarize(0.5, p=solarize_p))
        return Compose(steps)

    return TwoViews(view(1.0, 0.0), view(0.1, 0.2))


class MultiCrop:
    """DINO/SwAV multi-crop: ``[global_1, global_2, local_1, …, local_n]``.

    Two global crops (``RandomResizedCrop(global_size, global_scale)``) and ``n_local`` local
    crops (``RandomResizedCrop(local_size, local_scale)``), each followed by DINO's photometric
    recipe (``main_dino.py``): flip p=0.5, ColorJitter(0.4, 0.4, 0.2, 0.1) p=0.8, grayscale
    p=0.2, then blur with p = 1.0 (global 1), 0.1 (global 2), 0.5 (locals) and solarize p=0.2 on
    global 2 only. ``photometric=False`` keeps only crop and flip (to compose your own, e.g.
    SwAV's). DINO's defaults at 224 px are 2 × 224 (0.4, 1) + 8 × 96 (0.05, 0.4); the defaults
    here are the CIFAR-sized analogue.
    """

    def __init__(self, global_size=32, local_size=16, n_local=4, global_scale=(0.4, 1.0),
                 local_scale=(0.05, 0.4), photometric=True, blur_sigma=(0.1, 2.0)):
        self.global_size = _check_size(global_size, "global_size")
        self.local_size = _check_size(local_size, "local_size")
        self.n_local = check_int(n_local, "n_local", minimum=0)
        self.global_scale = _check_scale(global_scale, "global_scale")
        self.local_scale = _check_scale(local_scale, "local_scale")
        self.photometric = bool(photometric)

        def pipeline(size, scale, blur_p, solarize_p):
            steps = [RandomResizedCrop(size, scale=scale), RandomHorizontalFlip(0.5)]
            if self.photometric:
                steps += [ColorJitter(0.4, 0.4, 0.2, 0.1, p=0.8), RandomGrayscale(0.2),
                          GaussianBlur(sigma=blur_sigma, p=blur_p)]
                if solarize_p > 0:
                    steps.append(Solarize(0.5, p=solarize_p))
            return Compose(steps)

        self.global1 = pipeline(self.global_size, self.global_scale, 1.0, 0.0)
        self.global2 = pipeline(self.global_size, self.global_scale, 0.1, 0.2)
        self.local = pipeline(self.local_size, self.local_scale, 0.5, 0.0)

    def __repr__(self):
        return (f"MultiCrop(global_size={self.global_size}, local_size={self.local_size}, n_local={self.n_local}, "
                f"global_scale={self.global_scale}, local_scale={self.local_scale}, photometric={self.photometric})")

    def __call__(self, x, generator=None):
        _check_images(x)
        g = _generator_for(x, generator)
        views = [self.global1(x, generator=g), self.global2(x, generator=g)]
        views += [self.local(x, generator=g) for _ in range(self.n_local)]
        return views


def random_patch_mask(n, grid, mask_ratio, generator=None, device=None):
    """Boolean ``(n, num_patches)`` mask with exactly ``round(mask_ratio · num_patches)`` True per row.

    ``grid`` is the number of patches per side (an int, or ``(rows, cols)``); patches are in
    raster order. Each row masks a uniformly random subset: the patches whose random key ranks
    among the ``k`` smallest (an argsort of an ``(n, num_patches)`` key array, no loop). This is
    the uniform masking of MAE / data2vec 2.0; data2vec 1.0's vision model masks BEiT-style
    blocks (ratio 0.6), which this does not reproduce. ``round`` is Python's (halves to even).
    """
    n = check_int(n, "n", minimum=0)
    rows, cols = _check_size(grid, "grid")
    mask_ratio = check_real(mask_ratio, "mask_ratio", low=0.0, high=1.0)
    g = npr.as_generator(generator, device)
    xp = g.xp
    num = rows * cols
    k = int(round(float(mask_ratio) * num))
    keys = g.random((n, num), dtype=_F64)
    ranks = xp.argsort(xp.argsort(keys, axis=1), axis=1)
    return ranks < k


def _spread_permutations(n_perm, n_items, seed):
    """``n_perm`` distinct permutations of ``n_items``, chosen greedily to be far apart in Hamming distance.

    Noroozi & Favaro's recipe for jigsaw permutation sets: start from one permutation, then keep
    adding the candidate whose smallest Hamming distance to the chosen ones is largest. The
    candidates are all permutations when there are at most 5040, otherwise a seeded random pool of
    distinct ones. Built on the host at construction (a small constant table).
    """
    g = npr.default_rng(seed, device="cpu")
    total = math.factorial(n_items)
    if total <= 5040:
        import itertools  # noqa: PLC0415

        pool = np.array(list(itertools.permutations(range(n_items))), dtype=np.int64)
        pool = pool[g.permutation(total)]
    else:
        size = max(4096, 4 * n_perm)
        pool = np.unique(np.argsort(g.random((size, n_items), dtype=_F64), axis=1), axis=0)
        pool = pool[g.permutation(pool.shape[0])]
    if n_perm > pool.shape[0]:
        raise ValueError(f"n_permutations must be at most {pool.shape[0]} for {n_items} patches, got {n_perm}")
    chosen = [0]
    min_dist = (pool != pool[0]).sum(axis=1)
    for _ in range(n_perm - 1):
        nxt = int(np.argmax(min_dist))
        chosen.append(nxt)
        min_dist = np.minimum(min_dist, (pool != pool[nxt]).sum(axis=1))
    return pool[chosen]


class Jigsaw:
    """PIRL's jigsaw view: the image cut into ``grid × grid`` tiles, shuffled per sample.

    The top-left ``grid·cell`` square of each image is split into cells of
    ``cell = (H // grid, W // grid)`` pixels; from each cell a ``tile_size`` tile is cropped at a
    random offset (``tile_size=None``: the whole cell, no offset; PIRL crops 64 px tiles out of
    85 px cells so that the network cannot match tile edges). Each sample then draws a
    permutation index ``j`` into a fixed set ``self.permutations`` (``(n_permutations, grid²)``,
    chosen once from ``permutation_seed`` to be far apart, as in Noroozi & Favaro; default
    ``min(100, (grid²)!)`` permutations) and its
    tiles are reordered::

        patches[n, k] = tiles[n, permutations[j_n, k]]        # tiles in raster order

    so ``tiles = patches[:, argsort(permutations[j_n])]`` undoes it. Returns
    ``(patches, j)`` with ``patches`` of shape ``(N, grid², C, h, w)`` and ``j`` int64 ``(N,)``.
    ``transform`` (optional, e.g. a :class:`Compose` of colour jitter) is applied to every tile,
    on the ``(N·grid², C, h, w)`` batch of tiles. PIRL itself is invariant to the order (it
    embeds the concatenated tile features); the index is returned for jigsaw *prediction*.
    """

    def __init__(self, grid=3, tile_size=None, n_permutations=None, permutation_seed=0, transform=None):
        self.grid = check_int(grid, "grid", minimum=2)
        self.tile_size = None if tile_size is None else _check_size(tile_size, "tile_size")
        if n_permutations is None:
            n_permutations = min(100, math.factorial(self.grid * self.grid))
        self.n_permutations = check_int(n_permutations, "n_permutations")
        if transform is not None and not callable(transform):
            raise ValueError(f"transform must be callable or None, got {transform!r}")
        self.transform = transform
        self.permutations = _spread_permutations(self.n_permutations, self.grid * self.grid, int(permutation_seed))

    def __repr__(self):
        return (f"Jigsaw(grid={self.grid}, tile_size={self.tile_size}, n_permutations={self.n_permutations}, "
                f"transform={self.transform!r})")

    def _geometry(self, shape):
        hgt, wid = shape[-2], shape[-1]
        ch, cw = hgt // self.grid, wid // self.grid
        if ch < 1 or cw < 1:
            raise ValueError(f"images of size {hgt}x{wid} are too small for a {self.grid}x{self.grid} jigsaw")
        th, tw = (ch, cw) if self.tile_size is None else self.tile_size
        if th > ch or tw > cw:
            raise ValueError(f"tile_size {(th, tw)} is larger than the cells {(ch, cw)} of {hgt}x{wid} images")
        return ch, cw, th, tw

    def sample_params(self, shape, generator=None, device=None):
        """``perm_index`` (int64 ``(N,)``) and tile offsets ``off_y``, ``off_x`` (int64 ``(N, grid²)``,
        indexed by the tile's raster position in the original image)."""
        g = npr.as_generator(generator, device)
        xp = g.xp
        n = shape[0]
        ch, cw, th, tw = self._geometry(shape)
        gg = self.grid * self.grid
        idx = xp.minimum(xp.floor(g.random(n, dtype=_F64) * self.n_permutations).astype(xp.int64),
                         self.n_permutations - 1)
        u = g.random((2, n, gg), dtype=_F64)
        off_y = xp.minimum(xp.floor(u[0] * (ch - th + 1)).astype(xp.int64), ch - th)
        off_x = xp.minimum(xp.floor(u[1] * (cw - tw + 1)).astype(xp.int64), cw - tw)
        return {"perm_index": idx, "off_y": off_y, "off_x": off_x}

    def apply(self, x, params):
        """``(patches, perm_index)`` for the given parameters (no per-tile ``transform``)."""
        _check_images(x)
        xp = backend.get_array_module(x)
        n, c, hgt, wid = x.shape
        ch, cw, th, tw = self._geometry(x.shape)
        perms = xp.asarray(self.permutations)[params["perm_index"]]  # (N, G²): source tile per slot
        rows = xp.arange(n)[:, None]
        src = perms
        top = (src // self.grid) * ch + params["off_y"][rows, src]  # (N, G²)
        left = (src % self.grid) * cw + params["off_x"][rows, src]
        dy = xp.arange(th, dtype=xp.int64)
        dx = xp.arange(tw, dtype=xp.int64)
        nc = (xp.arange(n, dtype=xp.int64)[:, None] * c + xp.arange(c, dtype=xp.int64)[None, :]) * hgt
        # flat index of x[n, c, top + dy, left + dx], shape (N, G², C, th, tw)
        idx = ((nc[:, None, :, None, None] + top[:, :, None, None, None] + dy[None, None, None, :, None]) * wid
               + left[:, :, None, None, None] + dx[None, None, None, None, :])
        patches = xp.take(xp.ascontiguousarray(x).reshape(-1), idx)
        return patches, params["perm_index"]

    def __call__(self, x, generator=None):
        _check_images(x)
        g = _generator_for(x, generator)
        patches, idx = self.apply(x, self.sample_params(x.shape, g))
        if self.transform is not None:
            n, gg = patches.shape[:2]
            flat = self.transform(patches.reshape((n * gg,) + patches.shape[2:]), generator=g)
            patches = flat.reshape((n, gg) + flat.shape[1:])
        return patches, idx
