"""2-D energy landscapes: the learned density exp(−E)/Z on a grid, to PNG, and its grid NLL.

For an energy over R² the partition function can be computed numerically, which turns a 2-D
EBM into a model with an exact(ly enough) likelihood:

    log Z ≈ log Σ_cells exp(−E(c)) · ΔA      (midpoint rule over a fine grid on a box)
    NLL(x) = E(x) + log Z

:func:`grid_log_partition` and :func:`grid_nll` compute these; the mass outside the box is
ignored (pick a box that holds the data: ``toy2d`` densities carry one as ``bounds``). The NLL of
held-out samples under the learned density, next to the true density's NLL (its entropy) and
next to the best single Gaussian's (:func:`gaussian_nll`), is the metric of the 2-D results.

:func:`plot_landscape` renders exp(−E) as a heatmap with samples on top and, optionally, the
true density beside it, to a PNG of exactly ``size`` pixels: with matplotlib when it is
installed (``pip install npjem[plot]``), otherwise with Pillow alone.
"""
from __future__ import annotations

import math
import os

import numpy as np

from .. import backend
from .._checks import check_choice, check_int, check_real
from ..autograd import Tensor, no_grad

__all__ = ["energy_grid", "grid_log_partition", "grid_nll", "gaussian_nll", "plot_landscape"]


def _check_bounds(bounds):
    try:
        lo, hi = bounds
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be a pair (low, high), got {bounds!r}") from None
    lo, hi = check_real(lo, "bounds[0]"), check_real(hi, "bounds[1]")
    if not lo < hi:
        raise ValueError(f"bounds must satisfy low < high, got {bounds!r}")
    return lo, hi


def _device_dtype(energy):
    fn = getattr(energy, "parameters", None)
    if callable(fn):
        for p in fn():
            return p.device, p.dtype
    return "cpu", np.dtype(np.float64)


def _evaluate(energy, pts, chunk=65536):
    """E at host points (n, 2), evaluated on the energy's device under no_grad; host float64 (n,)."""
    device, dtype = _device_dtype(energy)
    xp = backend.xp_for_device(device)
    out = np.empty(pts.shape[0])  # host
    with no_grad():
        for s in range(0, pts.shape[0], chunk):
            x = xp.asarray(pts[s:s + chunk], dtype=dtype)
            e = energy(Tensor(x))
            if not isinstance(e, Tensor) or tuple(e.shape) != (x.shape[0],):
                raise ValueError("energy must map a Tensor (N, 2) to a Tensor of N energies, "
                                 f"got {type(e).__name__} of shape {tuple(getattr(e, 'shape', ()))}")
            out[s:s + chunk] = backend.to_numpy(e.data)
    return out


def energy_grid(energy, bounds, resolution=200):
    """E on the cell centres of a ``resolution``² grid over the square ``bounds``² (host arrays).

    Returns ``(centres, E)``: the 1-D cell centres (the same on both axes) and E of shape
    (resolution, resolution), ``E[i, j]`` at (x = centres[j], y = centres[i]).
    """
    lo, hi = _check_bounds(bounds)
    r = check_int(resolution, "resolution", minimum=2)
    c = lo + (np.arange(r) + 0.5) * (hi - lo) / r  # host
    xx, yy = np.meshgrid(c, c)  # host
    pts = np.stack([xx.ravel(), yy.ravel()], axis=1)  # host
    return c, _evaluate(energy, pts).reshape(r, r)


def _logsumexp(a):
    m = a.max()
    return float(m + np.log(np.exp(a - m).sum()))  # host


def grid_log_partition(energy, bounds, resolution=400):
    """log Z = log ∫_box exp(−E) by the midpoint rule on a ``resolution``² grid (a float).

    Refine the grid until the value stops moving (a smooth learned energy is stable to
    < 0.01 nats at 400² on the toy boxes).
    """
    lo, hi = _check_bounds(bounds)
    _, e = energy_grid(energy, (lo, hi), resolution)
    cell = ((hi - lo) / e.shape[0]) ** 2
    return _logsumexp(-e.ravel()) + math.log(cell)


def grid_nll(energy, x, bounds, resolution=400):
    """Mean NLL, E(x) + log Z, of the 2-D points ``x`` under exp(−E)/Z normalised on the box.

    ``x`` is an array or Tensor (n, 2). Points outside the box are scored by the same formula
    (the density there is exp(−E)/Z, although Z only counts the box).
    """
    a = backend.to_numpy(x.data if isinstance(x, Tensor) else x)
    if a.ndim != 2 or a.shape[1] != 2 or a.shape[0] < 1:
        raise ValueError(f"x must have shape (n, 2) with n >= 1, got {tuple(a.shape)}")
    log_z = grid_log_partition(energy, bounds, resolution)
    return float(_evaluate(energy, a.astype(np.float64)).mean() + log_z)


def gaussian_nll(train, test):
    """Mean NLL of ``test`` under the maximum-likelihood Gaussian fitted to ``train`` (any D).

    The floor a learned density must beat: a Gaussian captures the mean and covariance and
    nothing else.
    """
    tr = backend.to_numpy(train.data if isinstance(train, Tensor) else train).astype(np.float64)
    te = backend.to_numpy(test.data if isinstance(test, Tensor) else test).astype(np.float64)
    if tr.ndim != 2 or tr.shape[0] < 2:
        raise ValueError(f"train must have shape (n, D) with n >= 2, got {tuple(tr.shape)}")
    if te.ndim != 2 or te.shape[1] != tr.shape[1]:
        raise ValueError(f"test must have shape (n, {tr.shape[1]}), got {tuple(te.shape)}")
    mu = tr.mean(axis=0)
    cov = np.atleast_2d(np.cov(tr.T, bias=True))
    sign, logdet = np.linalg.slogdet(cov)
    if sign <= 0:
        raise ValueError("train has a singular covariance: a Gaussian cannot be fitted")
    d = te - mu
    maha = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)
    return float(0.5 * (maha.mean() + logdet + tr.shape[1] * math.log(2 * math.pi)))


# ------------------------------------------------------------------------------ rendering

# viridis at 9 stops (perceptually uniform, readable in grey); interpolated linearly.
_VIRIDIS = np.array([  # host
    [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
    [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]], dtype=np.float64)


def _colour(v):
    """Map values in [0, 1] to RGB uint8 with the viridis stops."""
    v = np.clip(v, 0.0, 1.0) * (len(_VIRIDIS) - 1)
    i = np.minimum(v.astype(int), len(_VIRIDIS) - 2)
    t = (v - i)[..., None]
    return (_VIRIDIS[i] * (1 - t) + _VIRIDIS[i + 1] * t).round().astype(np.uint8)


def _log_density_fn(density):
    if density is None:
        return None
    fn = getattr(density, "log_density", density)
    if not callable(fn):
        raise TypeError(f"density must have a log_density method or be callable, got {type(density).__name__}")
    return fn


def _panels(energy, density, bounds, resolution):
    """[(title, normalised density image (r, r), row 0 at the top)] for the learned and true densities."""
    lo, hi = bounds
    c, e = energy_grid(energy, bounds, resolution)
    cell = ((hi - lo) / resolution) ** 2
    logp = -e - (_logsumexp(-e.ravel()) + math.log(cell))
    panels = [("learned exp(-E)/Z", np.exp(logp))]
    log_density = _log_density_fn(density)
    if log_density is not None:
        xx, yy = np.meshgrid(c, c)  # host
        pts = np.stack([xx.ravel(), yy.ravel()], axis=1)  # host
        lp = backend.to_numpy(log_density(pts)).reshape(resolution, resolution)
        panels.append(("true density", np.exp(lp)))
    return [(t, p[::-1]) for t, p in panels]  # image rows run from high y to low y


def _samples_host(samples, limit=3000):
    if samples is None:
        return None
    a = backend.to_numpy(samples.data if isinstance(samples, Tensor) else samples)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"samples must have shape (n, 2), got {tuple(a.shape)}")
    return a[:limit]


def _render_pillow(panels, samples, bounds, size, title, path):
    from PIL import Image, ImageDraw  # noqa: PLC0415

    w, h = size
    n = len(panels)
    top = 16                                   # a strip for the titles
    pw = w // n
    canvas = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    lo, hi = bounds
    side = min(pw, h - top)                    # square panels, centred in their slot
    for k, (name, img) in enumerate(panels):
        x0, y0 = k * pw + (pw - side) // 2, top + (h - top - side) // 2
        vmax = img.max() if img.max() > 0 else 1.0
        rgb = Image.fromarray(_colour(img / vmax)).resize((side, side), Image.Resampling.NEAREST)
        canvas.paste(rgb, (x0, y0))
        label = name if (k or not title) else f"{title}: {name}"
        draw.text((k * pw + 4, 2), label, fill=(0, 0, 0))
        if k == 0 and samples is not None:
            inside = ((samples >= lo) & (samples <= hi)).all(axis=1)
            px = x0 + (samples[inside, 0] - lo) / (hi - lo) * (side - 1)
            py = y0 + (hi - samples[inside, 1]) / (hi - lo) * (side - 1)
            for u, v in zip(px, py):
                draw.ellipse((u - 1, v - 1, u + 1, v + 1), fill=(255, 60, 60))
    canvas.save(path, format="PNG")


def _render_matplotlib(panels, samples, bounds, size, title, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    dpi = 100
    fig = Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    lo, hi = bounds
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for k, (ax, (name, img)) in enumerate(zip(axes, panels)):
        ax.imshow(img, extent=(lo, hi, lo, hi), cmap="viridis", interpolation="nearest")
        if k == 0 and samples is not None:
            ax.scatter(samples[:, 0], samples[:, 1], s=1.5, c="#ff3c3c", linewidths=0)
            ax.set_xlim(lo, hi)
            ax.set_ylim(lo, hi)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=dpi, format="png")


def plot_landscape(energy, path, bounds, *, samples=None, density=None, resolution=200, size=(800, 400),
                   title=None, backend="auto"):
    """Write a PNG of exp(−E)/Z on the square ``bounds``², ``samples`` on top, ``density`` beside it.

    Args:
        energy: callable Tensor (N, 2) → (N,) (evaluated under ``no_grad`` on its device).
        path: the PNG file to write (its folder must exist).
        bounds: ``(low, high)``, the square box shown (``toy2d`` densities carry ``.bounds``).
        samples: optional (n, 2) array or Tensor drawn on the learned panel (at most 3000).
        density: optional true density, an object with ``log_density(points)`` (a ``toy2d``
            density) or a callable on host (n, 2) points; drawn as a second panel.
        resolution: grid cells per axis.
        size: ``(width, height)`` of the PNG in pixels; the file has exactly this size.
        title: optional title.
        backend: ``"matplotlib"``, ``"pillow"`` or ``"auto"`` (matplotlib when installed).

    Returns the path written. Each panel is scaled to its own maximum.
    """
    lo, hi = _check_bounds(bounds)
    resolution = check_int(resolution, "resolution", minimum=2)
    try:
        width, height = size
    except (TypeError, ValueError):
        raise ValueError(f"size must be a pair (width, height), got {size!r}") from None
    width, height = check_int(width, "size[0]", minimum=32), check_int(height, "size[1]", minimum=32)
    backend_name = check_choice(backend, "backend", ("auto", "matplotlib", "pillow"))
    if backend_name == "auto":
        try:
            import matplotlib  # noqa: F401,PLC0415
            backend_name = "matplotlib"
        except ImportError:
            backend_name = "pillow"
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    if not os.path.isdir(folder):
        raise ValueError(f"path's folder does not exist: {folder}")
    panels = _panels(energy, density, (lo, hi), resolution)
    pts = _samples_host(samples)
    render = _render_matplotlib if backend_name == "matplotlib" else _render_pillow
    render(panels, pts, (lo, hi), (width, height), title, path)
    return path
