"""PNG charts on the host: training curves and 2-D scatter plots of embeddings.

Two renderers behind one small API:

* ``"pillow"`` draws with Pillow alone (a dependency of npjem): axes, ticks, tick labels,
  axis labels, title and legend with ``ImageDraw`` and Pillow's default font;
* ``"matplotlib"`` uses matplotlib's Agg canvas (the ``[plot]`` extra), without pyplot, so
  nothing global (the pyplot backend, open figures) is touched.

``backend="auto"`` (the default) picks matplotlib when it can be imported, else Pillow. Both
write a PNG of exactly ``size`` pixels (width, height).

    plot.line_chart({"loss": losses}, "loss.png", title="SimCLR", xlabel="epoch")
    plot.curves({"loss": {"train": losses}, "effective rank": {"h": rank_h, "z": rank_z}},
                "curves.png", x=epochs, xlabel="epoch")
    plot.scatter(plot.pca_2d(h), labels, class_names, "embeddings.png", title="test set")

Inputs may be NumPy or CuPy arrays or lists; they are copied to the host first
(``backend.to_numpy``). Non-finite y values leave a gap in a line.
"""
from __future__ import annotations

import math
import os

import numpy as np

from . import backend as _backend
from ._checks import check_choice, check_int

__all__ = ["line_chart", "curves", "scatter", "pca_2d", "available_backends", "PALETTE", "DASHED_PALETTE"]

#: Ten distinguishable colours (the "tab10" cycle), used in order for series and classes.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
#: Dark tones for the dashed series (baselines), none close to one of the ten solid colours (no
#: grey: the tenth solid one is grey): black, plum, dark teal, dark olive, dark amber, navy, dark red.
DASHED_PALETTE = ("#000000", "#6a1b4d", "#00585e", "#556b2f", "#a05a00", "#1a237e", "#8b0000")
_BACKENDS = ("auto", "pillow", "matplotlib")
_LEGEND_INSIDE = 8  # matplotlib draws a legend of more series beside its panel


def _has_matplotlib():
    import importlib.util  # noqa: PLC0415

    return importlib.util.find_spec("matplotlib") is not None


def available_backends():
    """The renderers usable here: ``("pillow",)`` or ``("pillow", "matplotlib")``."""
    return ("pillow", "matplotlib") if _has_matplotlib() else ("pillow",)


def _resolve_backend(name):
    check_choice(name, "backend", _BACKENDS)
    if name == "auto":
        return "matplotlib" if _has_matplotlib() else "pillow"
    if name == "matplotlib" and not _has_matplotlib():
        raise ImportError("backend='matplotlib' needs matplotlib: pip install 'npjem[plot]'")
    return name


def _check_size(size):
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise ValueError(f"size must be (width, height) in whole pixels, each >= 100, got {size!r}")
    return check_int(size[0], "size's width", minimum=100), check_int(size[1], "size's height", minimum=100)


def _host_1d(values, name):
    a = np.asarray(_backend.to_numpy(values) if _backend.is_array(values) else values, dtype=np.float64)  # host
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of numbers, got shape {a.shape}")
    return a


def _panels(panels, x):
    """Checked ``[(title, [(name, xs, ys)])]`` from ``{title: {name: ys}}``."""
    if not isinstance(panels, dict) or not panels:
        raise ValueError("panels must be a non-empty dict {panel title: {series name: values}}")
    out = []
    shared_x = None if x is None else _host_1d(x, "x")
    for title, series in panels.items():
        if not isinstance(series, dict) or not series:
            raise ValueError(f"panel {title!r} must be a non-empty dict {{series name: values}}")
        rows = []
        for name, values in series.items():
            own_x = None
            if isinstance(values, tuple) and len(values) == 2:  # (xs, ys): a series with its own x
                own_x, values = _host_1d(values[0], f"series {name!r}'s x"), values[1]
            ys = _host_1d(values, f"series {name!r}")
            xs = own_x if own_x is not None else (
                np.arange(1, ys.size + 1, dtype=np.float64) if shared_x is None else shared_x)  # host
            if xs.size != ys.size:
                raise ValueError(f"series {name!r} has {ys.size} values but x has {xs.size}")
            rows.append((str(name), xs, ys))
        out.append((str(title), rows))
    return out


def pca_2d(points):
    """The first two principal components of ``points`` (n, d), as a host (n, 2) array.

    Centred, via the SVD; each component's sign is fixed so that its largest-magnitude
    loading is positive (the picture does not flip between runs of the same data). A
    one-dimensional input gets a zero second coordinate.
    """
    a = np.asarray(_backend.to_numpy(points) if _backend.is_array(points) else points, dtype=np.float64)  # host
    if a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(f"points must have shape (n, d) with n >= 2, got {a.shape}")
    a = a - a.mean(axis=0)
    _, _, vt = np.linalg.svd(a, full_matrices=False)
    k = min(2, vt.shape[0])
    comps = vt[:k]
    signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])  # host
    comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
    out = np.zeros((a.shape[0], 2))  # host
    out[:, :k] = a @ comps.T
    return out


# ====================================================================== public API

def line_chart(series, path, *, x=None, title=None, xlabel=None, ylabel=None, size=(640, 420), backend="auto",
               dashed=()):
    """One panel of lines: ``series`` is ``{name: y values}`` sharing ``x`` (default 1..n), or
    ``{name: (xs, ys)}`` for series with x values of their own; ``dashed`` names the series
    drawn dashed (baselines).

    Writes a PNG of ``size`` (width, height) pixels at ``path`` and returns ``path``.
    """
    return curves({title or "": series}, path, x=x, xlabel=xlabel, ylabels=None if ylabel is None else [ylabel],
                  size=size, backend=backend, dashed=dashed)


def curves(panels, path, *, x=None, title=None, xlabel=None, ylabels=None, size=None, backend="auto", dashed=()):
    """Panels side by side, each a set of lines: ``panels`` is ``{panel title: {name: ys}}``
    (or ``{name: (xs, ys)}``).

    ``x`` is shared by every series (default 1..n); ``ylabels`` optionally names each panel's
    y axis; the series named in ``dashed`` are drawn dashed. ``size`` defaults to 400 x 380
    pixels per panel. Returns ``path``.
    """
    rows = _panels(panels, x)
    dashed = frozenset(dashed)
    if ylabels is not None and len(ylabels) != len(rows):
        raise ValueError(f"ylabels must name each of the {len(rows)} panels, got {len(ylabels)}")
    size = _check_size(size if size is not None else (400 * len(rows), 380))
    which = _resolve_backend(backend)
    path = os.fspath(path)
    if which == "matplotlib":
        _mpl_curves(rows, path, title, xlabel, ylabels, size, dashed)
    else:
        _pil_curves(rows, path, title, xlabel, ylabels, size, dashed)
    return path


def scatter(points, labels, names, path, *, title=None, xlabel="PC 1", ylabel="PC 2", size=(760, 560),
            backend="auto"):
    """Points (n, 2) coloured by integer class ``labels`` (n,), with a legend of ``names``.

    ``names[c]`` is the name of class c; every label must index ``names``. At most
    ``len(PALETTE)`` (10) classes get distinct colours; more cycle. Returns ``path``.
    """
    p = np.asarray(_backend.to_numpy(points) if _backend.is_array(points) else points, dtype=np.float64)  # host
    if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] == 0:
        raise ValueError(f"points must have shape (n, 2) with n >= 1, got {p.shape}")
    lab = np.asarray(_backend.to_numpy(labels) if _backend.is_array(labels) else labels)  # host
    if lab.shape != (p.shape[0],) or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be {p.shape[0]} integers (one per point), got shape {lab.shape}, "
                         f"dtype {lab.dtype}")
    names = [str(n) for n in names]
    if lab.min() < 0 or lab.max() >= len(names):
        raise ValueError(f"labels must lie in [0, {len(names)}) to index names, got {lab.min()}..{lab.max()}")
    size = _check_size(size)
    which = _resolve_backend(backend)
    path = os.fspath(path)
    if which == "matplotlib":
        _mpl_scatter(p, lab, names, path, title, xlabel, ylabel, size)
    else:
        _pil_scatter(p, lab, names, path, title, xlabel, ylabel, size)
    return path


# ====================================================================== matplotlib

def _mpl_figure(size):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    dpi = 100
    fig = Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig, dpi


def _mpl_save(fig, path, dpi, size):
    fig.savefig(path, dpi=dpi, format="png")
    _fix_size(path, size)


def _fix_size(path, size):
    # Figure sizes in inches can round a pixel off; the promise is an image of exactly `size`.
    from PIL import Image  # noqa: PLC0415

    with Image.open(path) as im:
        if im.size == size:
            return
        fixed = im.convert("RGB").resize(size, Image.Resampling.BILINEAR)
    fixed.save(path, format="PNG")


def _mpl_curves(rows, path, title, xlabel, ylabels, size, dashed=frozenset()):
    fig, dpi = _mpl_figure(size)
    axes = fig.subplots(1, len(rows), squeeze=False)[0]
    for i, (ax, (ptitle, series)) in enumerate(zip(axes, rows)):
        for colour, (name, xs, ys) in zip(_series_colours(series, dashed), series):
            ax.plot(xs, ys, color=colour, marker="o" if xs.size <= 30 else None,
                    markersize=3, linewidth=1.5, label=name, linestyle="--" if name in dashed else "-")
        ax.set_title(ptitle, fontsize=10)
        if xlabel:
            ax.set_xlabel(xlabel)
        if ylabels is not None:
            ax.set_ylabel(ylabels[i])
        ax.grid(True, alpha=0.3)
        if all(_integral(xs) for _, xs, _ in series):
            from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(series) > _LEGEND_INSIDE:  # a long legend would hide lines: beside the panel instead
            ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        elif len(series) > 1:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    _mpl_save(fig, path, dpi, size)


def _mpl_scatter(p, lab, names, path, title, xlabel, ylabel, size):
    fig, dpi = _mpl_figure(size)
    ax = fig.add_subplot(1, 1, 1)
    for c, name in enumerate(names):
        sel = lab == c
        if sel.any():
            ax.scatter(p[sel, 0], p[sel, 1], s=8, alpha=0.7, color=PALETTE[c % len(PALETTE)], label=name,
                       linewidths=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, markerscale=2, frameon=False)
    fig.tight_layout()
    _mpl_save(fig, path, dpi, size)


# ====================================================================== Pillow

def _font(px):
    from PIL import ImageFont  # noqa: PLC0415

    try:
        return ImageFont.load_default(size=px)  # a scalable font (Pillow >= 10.1 with FreeType)
    except TypeError:  # older Pillow: the fixed bitmap font
        return ImageFont.load_default()


def _text_size(draw, text, font):
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def _integral(values):
    """True when every value is a whole number (epochs, steps): ticks then fall on integers."""
    v = np.asarray(values, dtype=np.float64)  # host
    return bool(np.all(np.isfinite(v)) and np.all(v == np.round(v)))


def _series_colours(series, dashed):
    """Each series' colour: the solid ones take ``PALETTE`` in order and the dashed ones
    ``DASHED_PALETTE`` in order, each cycling on its own."""
    out, solid, dash = [], 0, 0
    for name, _, _ in series:
        if name in dashed:
            out.append(DASHED_PALETTE[dash % len(DASHED_PALETTE)])
            dash += 1
        else:
            out.append(PALETTE[solid % len(PALETTE)])
            solid += 1
    return out


def _nice_ticks(lo, hi, count=5, integer=False):
    """Round tick values (1, 2, 2.5 or 5 times a power of ten) covering [lo, hi]; whole numbers
    only with ``integer``."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, count)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    if integer:
        step = max(1.0, float(math.ceil(step)))
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    t = first
    while t <= hi + 1e-9 * step:
        ticks.append(0.0 if abs(t) < 1e-12 * step else t)
        t += step
    return ticks


def _fmt_tick(v):
    return f"{v:.4g}"


def _limits(values, pad=0.05):
    v = values[np.isfinite(values)]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = float(v.min()), float(v.max())
    if hi == lo:
        half = abs(lo) * 0.1 or 0.5
        return lo - half, hi + half
    d = (hi - lo) * pad
    return lo - d, hi + d


class _Axes:
    """A plotting box inside a Pillow image: data → pixel mapping, frame, ticks, labels."""

    def __init__(self, draw, box, xlim, ylim, font, integer_x=False):
        self.draw, self.font = draw, font
        self.x0, self.y0, self.x1, self.y1 = box
        self.xlim, self.ylim = xlim, ylim
        self.integer_x = integer_x

    def px(self, x, y):
        (a, b), (c, d) = self.xlim, self.ylim
        u = self.x0 + (x - a) / (b - a) * (self.x1 - self.x0)
        v = self.y1 - (y - c) / (d - c) * (self.y1 - self.y0)
        return u, v

    def frame(self, xlabel=None, ylabel=None, title=None, image=None):
        d, f = self.draw, self.font
        grid, ink = (232, 232, 232), (40, 40, 40)
        for t in _nice_ticks(*self.xlim, integer=self.integer_x):
            u, _ = self.px(t, self.ylim[0])
            if self.x0 - 0.5 <= u <= self.x1 + 0.5:
                d.line([(u, self.y0), (u, self.y1)], fill=grid)
                d.line([(u, self.y1), (u, self.y1 + 4)], fill=ink)
                w, h = _text_size(d, _fmt_tick(t), f)
                d.text((u - w / 2, self.y1 + 6), _fmt_tick(t), fill=ink, font=f)
        for t in _nice_ticks(*self.ylim):
            _, v = self.px(self.xlim[0], t)
            if self.y0 - 0.5 <= v <= self.y1 + 0.5:
                d.line([(self.x0, v), (self.x1, v)], fill=grid)
                d.line([(self.x0 - 4, v), (self.x0, v)], fill=ink)
                w, h = _text_size(d, _fmt_tick(t), f)
                d.text((self.x0 - 7 - w, v - h / 2 - 2), _fmt_tick(t), fill=ink, font=f)
        d.rectangle([self.x0, self.y0, self.x1, self.y1], outline=ink)
        if xlabel:
            w, h = _text_size(d, xlabel, f)
            d.text(((self.x0 + self.x1) / 2 - w / 2, self.y1 + 24), xlabel, fill=ink, font=f)
        if title:
            w, h = _text_size(d, title, f)
            d.text(((self.x0 + self.x1) / 2 - w / 2, self.y0 - h - 10), title, fill=ink, font=f)
        if ylabel and image is not None:
            _vertical_text(image, ylabel, (self.x0 - 62, (self.y0 + self.y1) / 2), f, ink)


def _vertical_text(image, text, centre, font, fill):
    from PIL import Image, ImageDraw  # noqa: PLC0415

    probe = ImageDraw.Draw(image)
    w, h = _text_size(probe, text, font)
    tile = Image.new("RGBA", (w + 4, h + 8), (255, 255, 255, 0))
    ImageDraw.Draw(tile).text((2, 0), text, fill=fill, font=font)
    tile = tile.rotate(90, expand=True)
    image.paste(tile, (int(centre[0] - tile.width / 2), int(centre[1] - tile.height / 2)), tile)


def _rgb(hex_colour):
    h = hex_colour.lstrip("#")
    return tuple(int(h[i:i + 2], 16) for i in (0, 2, 4))


def _legend_size(draw, entries, font):
    w = max(_text_size(draw, name, font)[0] for name, _ in entries) + 24
    h = sum(max(18, _text_size(draw, name, font)[1] + 6) for name, _ in entries)
    return w, h


def _legend_corner(box, size, points, pad=6):
    """The inner corner of ``box`` where a legend of ``size`` covers the fewest ``points``."""
    x0, y0, x1, y1 = box
    w, h = size
    corners = [(x0 + pad, y0 + pad), (x1 - pad - w, y0 + pad), (x0 + pad, y1 - pad - h), (x1 - pad - w, y1 - pad - h)]
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2) if len(points) else np.zeros((0, 2))  # host

    def covered(c):
        inside = ((pts[:, 0] >= c[0] - pad) & (pts[:, 0] <= c[0] + w + pad)
                  & (pts[:, 1] >= c[1] - pad) & (pts[:, 1] <= c[1] + h + pad))
        return int(inside.sum())

    return min(corners, key=covered)  # ties keep the order: top left first


def _legend(draw, entries, x, y, font, marker="line", frame=False, dashed=frozenset()):
    """Legend rows ``[(name, colour)]`` from (x, y) downwards, the names in ``dashed`` with a
    dashed sample; returns the bottom y."""
    if frame:
        w, h = _legend_size(draw, entries, font)
        draw.rectangle([x - 4, y - 2, x + w + 4, y + h + 2], fill=(255, 255, 255), outline=(200, 200, 200))
    for name, colour in entries:
        w, h = _text_size(draw, name, font)
        cy = y + 8
        if marker == "line" and name in dashed:
            for a in (0, 11):
                draw.line([(x + a, cy), (x + a + 7, cy)], fill=colour, width=3)
        elif marker == "line":
            draw.line([(x, cy), (x + 18, cy)], fill=colour, width=3)
        else:
            draw.ellipse([x + 5, cy - 5, x + 15, cy + 5], fill=colour)
        draw.text((x + 24, cy - h / 2 - 3), name, fill=(40, 40, 40), font=font)
        y += max(18, h + 6)
    return y


def _dashes(run, on=7.0, off=5.0):
    """The pieces of a polyline to draw for a dashed line: ``on`` pixels drawn, ``off`` skipped."""
    pieces, cur, drawn, left = [], [run[0]], True, on
    for (x0, y0), (x1, y1) in zip(run[:-1], run[1:]):
        seg = math.hypot(x1 - x0, y1 - y0)
        t = 0.0
        while seg - t > left:
            t += left
            p = (x0 + (x1 - x0) * t / seg, y0 + (y1 - y0) * t / seg)
            if drawn:
                pieces.append(cur + [p])
            cur, drawn = [p], not drawn
            left = on if drawn else off
        left -= seg - t
        cur.append((x1, y1))
    if drawn and len(cur) > 1:
        pieces.append(cur)
    return pieces


def _pil_curves(rows, path, title, xlabel, ylabels, size, dashed=frozenset()):
    from PIL import Image, ImageDraw  # noqa: PLC0415

    width, height = size
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font, big = _font(12), _font(14)
    top = 28 if title else 8
    if title:
        w, _ = _text_size(draw, title, big)
        draw.text((width / 2 - w / 2, 6), title, fill=(20, 20, 20), font=big)
    panel_w = width / len(rows)
    left_margin = 78 if ylabels is not None else 62
    for i, (ptitle, series) in enumerate(rows):
        box = (int(i * panel_w + left_margin), top + 28, int((i + 1) * panel_w - 16), height - 52)
        xs_all = np.concatenate([xs for _, xs, _ in series])
        ys_all = np.concatenate([ys for _, _, ys in series])
        ax = _Axes(draw, box, _limits(xs_all, 0.03), _limits(ys_all), font, integer_x=_integral(xs_all))
        ax.frame(xlabel, ylabels[i] if ylabels is not None else None, ptitle, img)
        drawn = []
        colours = [_rgb(c) for c in _series_colours(series, dashed)]
        for colour, (name, xs, ys) in zip(colours, series):
            pts = [ax.px(a, b) if math.isfinite(b) else None for a, b in zip(xs, ys)]
            for q0, q1 in zip(pts[:-1], pts[1:]):  # where the lines run, for placing the legend
                if q0 is not None and q1 is not None:
                    drawn.extend((q0[0] + t * (q1[0] - q0[0]), q0[1] + t * (q1[1] - q0[1]))
                                 for t in np.linspace(0.0, 1.0, 25))  # host
            run = []
            for q in pts + [None]:
                if q is None:
                    if len(run) > 1:
                        for piece in (_dashes(run) if name in dashed else [run]):
                            draw.line(piece, fill=colour, width=2, joint="curve")
                    run = []
                else:
                    run.append(q)
            if xs.size <= 30:
                for q in pts:
                    if q is not None:
                        draw.ellipse([q[0] - 2.5, q[1] - 2.5, q[0] + 2.5, q[1] + 2.5], fill=colour)
        if len(series) > 1:
            entries = [(name, colour) for colour, (name, _, _) in zip(colours, series)]
            x, y = _legend_corner(box, _legend_size(draw, entries, font), drawn)
            _legend(draw, entries, x, y, font, frame=True, dashed=dashed)
    img.save(path, format="PNG")


def _pil_scatter(p, lab, names, path, title, xlabel, ylabel, size):
    from PIL import Image, ImageDraw  # noqa: PLC0415

    width, height = size
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = _font(12)
    legend_w = max(_text_size(draw, n, font)[0] for n in names) + 44
    box = (70, 36 if title else 16, width - legend_w - 16, height - 52)
    ax = _Axes(draw, box, _limits(p[:, 0]), _limits(p[:, 1]), font)
    ax.frame(xlabel, ylabel, title, img)
    # Translucent dots on an overlay, so dense clusters read darker than sparse ones.
    overlay = Image.new("RGBA", size, (255, 255, 255, 0))
    od = ImageDraw.Draw(overlay)
    r = 2.5
    order = np.random.default_rng(0).permutation(p.shape[0])  # host; no class is drawn last on top of all
    for k in order:
        u, v = ax.px(p[k, 0], p[k, 1])
        od.ellipse([u - r, v - r, u + r, v + r], fill=_rgb(PALETTE[lab[k] % len(PALETTE)]) + (170,))
    img.paste(overlay, (0, 0), overlay)
    draw = ImageDraw.Draw(img)
    present = [c for c in range(len(names)) if (lab == c).any()]
    _legend(draw, [(names[c], _rgb(PALETTE[c % len(PALETTE)])) for c in present], width - legend_w,
            box[1] + 4, font, marker="dot")
    img.save(path, format="PNG")
