"""Data sets: procedural shapes, scikit-learn's digits, image folders, 2-D toy densities.

Everything here is host-side data loading. Image data sets are returned as host NumPy
arrays (``float32``, NCHW, values in [0, 1]); a ``DataLoader`` moves each batch to the
device with ``backend.to_device``. The 2-D toy densities are the exception: they draw
with an ``npjem.random.Generator`` on its own device and evaluate ``log_density`` with the
array module of their input, so an energy-based model can be trained and scored on a GPU.

``shapes`` is the built-in default image data set: 32x32 RGB pictures of ten shape classes
whose colours, position, scale, rotation and clutter are all drawn independently of the
label, so a model has to learn shape.
"""
from __future__ import annotations

import hashlib
import math
import os
import tempfile
import warnings
from typing import ClassVar

import numpy as np

from .. import backend
from .. import random as nrandom
from .._checks import check_choice, check_int, check_real

__all__ = [
    "Dataset", "shapes", "SHAPE_CLASSES", "digits", "image_folder", "toy2d", "DataLoader",
    "default_cache_dir",
]


# ====================================================================== Dataset

class Dataset:
    """Images with labels: ``images`` float32 (N, C, H, W) in [0, 1], ``labels`` int64 (N,).

    ``dataset[i]`` is the pair ``(images[i], labels[i])``; an index array or a slice gives a
    pair of arrays. ``classes`` names the labels (``classes[label]``).
    """

    def __init__(self, images, labels, classes, name: str = ""):
        images = np.asarray(images)  # host
        labels = np.asarray(labels)  # host
        if images.ndim != 4:
            raise ValueError(f"images must have shape (N, C, H, W), got {images.shape}")
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"labels must have shape ({images.shape[0]},) to match images, got {labels.shape}")
        self.images = images
        self.labels = labels
        self.classes = list(classes)
        self.name = name

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index):
        return self.images[index], self.labels[index]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        return (f"Dataset({self.name or 'unnamed'!s}: {n} images of {c}x{h}x{w}, "
                f"{self.num_classes} classes)")


# ====================================================================== validation helpers

def _check_split(split) -> str:
    return check_choice(split, "split", ("train", "test"))


# ====================================================================== shapes

SHAPE_CLASSES = (
    "circle", "square", "triangle", "star", "cross",
    "ring", "pentagon", "heart", "arrow", "crescent",
)

# Bump whenever the drawing changes, so that old cache files are never reused.
SHAPES_VERSION = 1
_SHAPES_DEFAULT_N = {"train": 10_000, "test": 2_000}
_SUPERSAMPLE = 4          # draw at 4x resolution, then box-filter down (antialiased edges)
_EQ_RADIUS = (0.12, 0.20)  # radius of the disc of equal area, as a fraction of the image side
_CENTRE = (0.35, 0.65)     # range of the shape's area centroid, as a fraction of the side
_MIN_CONTRAST = 0.35       # minimum Euclidean RGB distance between foreground and background
_PIXEL_NOISE = 0.02        # std of the Gaussian pixel noise, in [0, 1] units


def _regular(k: int, radius: float = 1.0, phase: float = 0.0):
    t = phase + 2.0 * np.pi * np.arange(k) / k  # host
    return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)  # host


def _star(points: int = 5, inner: float = 0.45):
    t = np.pi / 2 + np.pi * np.arange(2 * points) / points  # host
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)  # host
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)  # host


def _cross(half_width: float = 0.3):
    a, b = half_width, 1.0
    return np.array([  # host
        (a, b), (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a),
        (-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a)], dtype=np.float64)


def _heart(k: int = 96):
    t = 2.0 * np.pi * np.arange(k) / k  # host
    x = 16.0 * np.sin(t) ** 3
    y = 13.0 * np.cos(t) - 5.0 * np.cos(2 * t) - 2.0 * np.cos(3 * t) - np.cos(4 * t)
    return np.stack([x, -y], axis=1) / 16.0  # host; image y axis points down: keep the lobes on top


def _arrow():
    return np.array([  # host
        (-0.8, -0.25), (0.15, -0.25), (0.15, -0.65), (0.9, 0.0),
        (0.15, 0.65), (0.15, 0.25), (-0.8, 0.25)], dtype=np.float64)


def _crescent(k: int = 64, offset: float = 0.55, inner: float = 0.75):
    """The unit disc minus a disc of radius ``inner`` centred at (offset, 0), as one polygon."""
    # The two circles meet where x = (1 + offset^2 - inner^2) / (2 offset).
    xm = (1.0 + offset ** 2 - inner ** 2) / (2.0 * offset)
    a_out = math.acos(xm)                       # outer arc runs from a_out to 2 pi - a_out
    a_in = math.acos((xm - offset) / inner)     # inner arc, seen from its own centre
    t_out = np.linspace(a_out, 2.0 * np.pi - a_out, k)  # host
    t_in = np.linspace(2.0 * np.pi - a_in, a_in, k)  # host  (back along the inside)
    outer = np.stack([np.cos(t_out), np.sin(t_out)], axis=1)  # host
    inside = np.stack([offset + inner * np.cos(t_in), inner * np.sin(t_in)], axis=1)  # host
    return np.concatenate([outer, inside[1:-1]], axis=0)  # host


def _area_centroid(poly):
    """Signed area and area centroid of a simple polygon (shoelace formula)."""
    x, y = poly[:, 0], poly[:, 1]
    xs, ys = np.roll(x, -1), np.roll(y, -1)
    cross = x * ys - xs * y
    area = cross.sum() / 2.0
    cx = ((x + xs) * cross).sum() / (6.0 * area)
    cy = ((y + ys) * cross).sum() / (6.0 * area)
    return area, np.array([cx, cy])  # host


def _unit_shapes():
    """Each class as (filled polygons, hole polygons), centred on its area centroid, area pi.

    Equal areas and centred centroids mean that neither the amount of foreground colour nor
    the position of the foreground tells the classes apart.
    """
    raw = {
        "circle": ([_regular(96)], []),
        "square": ([_regular(4, phase=np.pi / 4)], []),
        "triangle": ([_regular(3, phase=-np.pi / 2)], []),
        "star": ([_star()], []),
        "cross": ([_cross()], []),
        "ring": ([_regular(96)], [_regular(96, radius=0.6)]),
        "pentagon": ([_regular(5, phase=-np.pi / 2)], []),
        "heart": ([_heart()], []),
        "arrow": ([_arrow()], []),
        "crescent": ([_crescent()], []),
    }
    out = []
    for name in SHAPE_CLASSES:
        fills, holes = raw[name]
        total, moment = 0.0, np.zeros(2)  # host
        for sign, polys in ((1.0, fills), (-1.0, holes)):
            for p in polys:
                a, c = _area_centroid(p)
                total += sign * abs(a)
                moment += sign * abs(a) * c
        centre = moment / total
        scale = math.sqrt(math.pi / total)
        out.append(([(p - centre) * scale for p in fills], [(p - centre) * scale for p in holes]))
    return out


def default_cache_dir() -> str:
    """``NPJEM_CACHE`` if set, else ``~/.cache/npjem``."""
    env = os.environ.get("NPJEM_CACHE", "").strip()
    return env if env else os.path.join(os.path.expanduser("~"), ".cache", "npjem")


def _shapes_seed(seed: int, split: str) -> np.random.SeedSequence:
    # Train and test draw from different streams of the same seed; the split's name is hashed
    # so that no (seed, split) pair collides with another seed's other split.
    tag = int.from_bytes(hashlib.sha256(f"npjem.shapes.{split}".encode()).digest()[:8], "little")
    return np.random.SeedSequence([seed, tag, SHAPES_VERSION])


#: The nuisances ``shapes(without=...)`` can switch off, one cue at a time: cues that survive the
#: views and tell one image from another without telling its class.
SHAPES_NUISANCES = ("clutter", "colour", "noise")
#: The colour pair every image gets under ``without=("colour",)``: light grey on dark grey.
_FIXED_FG, _FIXED_BG = (0.85, 0.85, 0.85), (0.15, 0.15, 0.15)


def _draw_shapes(n: int, seed: int, split: str, size: int, without=()):
    """Draw ``n`` images (uint8 NHWC) and their labels; all randomness from one SeedSequence.

    ``without`` switches nuisances off (``SHAPES_NUISANCES``). Every variable is still drawn, so
    a variant differs from the default images in that one cue and nothing else.
    """
    from PIL import Image, ImageDraw  # Pillow only when images are drawn

    rng = np.random.default_rng(_shapes_seed(seed, split))
    k = len(SHAPE_CLASSES)
    counts = np.full(k, n // k, dtype=np.int64)  # host
    counts[: n % k] += 1
    labels = rng.permutation(np.repeat(np.arange(k, dtype=np.int64), counts))  # host

    # Every nuisance variable is drawn for all images at once and independently of the label.
    big = size * _SUPERSAMPLE
    radius = rng.uniform(*_EQ_RADIUS, size=n) * big
    centre = rng.uniform(*_CENTRE, size=(n, 2)) * big
    angle = rng.uniform(0.0, 2.0 * np.pi, size=n)
    fg = rng.random((n, 3))
    bg = rng.random((n, 3))
    bad = np.linalg.norm(fg - bg, axis=1) < _MIN_CONTRAST
    while bad.any():  # rejection sampling of the pair keeps it independent of the label
        m = int(bad.sum())
        fg[bad], bg[bad] = rng.random((m, 3)), rng.random((m, 3))
        bad = np.linalg.norm(fg - bg, axis=1) < _MIN_CONTRAST
    if "colour" in without:
        fg, bg = np.broadcast_to(_FIXED_FG, fg.shape), np.broadcast_to(_FIXED_BG, bg.shape)
    fg8 = np.rint(fg * 255).astype(np.uint8)
    bg8 = np.rint(bg * 255).astype(np.uint8)
    # Clutter: up to four small strokes or dots in random colours, anywhere in the picture.
    max_clutter = 4
    n_clutter = rng.integers(0, max_clutter + 1, size=n)
    c_kind = rng.integers(0, 2, size=(n, max_clutter))           # 0: stroke, 1: dot
    c_pos = rng.uniform(0.0, big, size=(n, max_clutter, 2))
    c_len = rng.uniform(1.5, 5.0, size=(n, max_clutter)) * _SUPERSAMPLE
    c_dir = rng.uniform(0.0, 2.0 * np.pi, size=(n, max_clutter))
    c_rad = rng.uniform(0.5, 1.1, size=(n, max_clutter)) * _SUPERSAMPLE
    c_col = rng.integers(0, 256, size=(n, max_clutter, 3))
    noise_seed = rng.integers(0, 2**63 - 1)

    unit = _unit_shapes()
    out = np.empty((n, size, size, 3), dtype=np.uint8)  # host
    line_width = max(1, _SUPERSAMPLE)
    for i in range(n):
        fills, holes = unit[labels[i]]
        c, s = math.cos(angle[i]), math.sin(angle[i])
        rot = np.array([[c, s], [-s, c]]) * radius[i]  # host  (row vectors: p @ rot)
        im = Image.new("RGB", (big, big), tuple(int(v) for v in bg8[i]))
        draw = ImageDraw.Draw(im)
        f_col, b_col = tuple(int(v) for v in fg8[i]), tuple(int(v) for v in bg8[i])
        for p in fills:
            draw.polygon((p @ rot + centre[i]).ravel().tolist(), fill=f_col)
        for p in holes:
            draw.polygon((p @ rot + centre[i]).ravel().tolist(), fill=b_col)
        for j in range(0 if "clutter" in without else int(n_clutter[i])):
            col = tuple(int(v) for v in c_col[i, j])
            x0, y0 = c_pos[i, j]
            if c_kind[i, j] == 0:
                dx, dy = c_len[i, j] * math.cos(c_dir[i, j]), c_len[i, j] * math.sin(c_dir[i, j])
                draw.line((x0, y0, x0 + dx, y0 + dy), fill=col, width=line_width)
            else:
                r = c_rad[i, j]
                draw.ellipse((x0 - r, y0 - r, x0 + r, y0 + r), fill=col)
        out[i] = np.asarray(im.reduce(_SUPERSAMPLE))  # host; box filter: exact area averaging

    if "noise" not in without:
        noise = np.random.default_rng(noise_seed).standard_normal(out.shape, dtype=np.float32)
        noisy = out.astype(np.float32) + noise * np.float32(_PIXEL_NOISE * 255.0)
        out = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return out, labels


def _shapes_cache_path(cache_dir: str, split: str, n: int, seed: int, size: int, without=()) -> str:
    variant = "".join(f"_no{w}" for w in SHAPES_NUISANCES if w in without)
    name = f"shapes_v{SHAPES_VERSION}_{split}_n{n}_seed{seed}_size{size}{variant}.npz"
    return os.path.join(cache_dir, name)


def _load_shapes_cache(path: str, n: int, size: int):
    """The cached (images, labels), or ``None`` when the file is missing or not valid."""
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            images, labels, version = f["images"], f["labels"], int(f["version"])
        if (version != SHAPES_VERSION or images.dtype != np.uint8
                or images.shape != (n, size, size, 3) or labels.dtype != np.int64
                or labels.shape != (n,) or labels.min() < 0 or labels.max() >= len(SHAPE_CLASSES)):
            raise ValueError("unexpected contents")
        return images, labels
    except Exception as exc:  # truncated, corrupt, wrong contents: draw again
        warnings.warn(f"shapes: cache file {path} is not valid ({exc}); regenerating it",
                      RuntimeWarning, stacklevel=3)
        return None


def _save_atomically(path: str, **arrays) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def shapes(split: str = "train", n: int | None = None, seed: int = 0, cache_dir: str | None = None,
           size: int = 32, without=()) -> Dataset:
    """The built-in image data set: procedurally drawn RGB pictures of ten shape classes.

    Classes (``SHAPE_CLASSES``): circle, square, triangle, star, cross, ring, pentagon,
    heart, arrow, crescent. Each image is drawn with Pillow at 4x resolution and reduced with
    a box filter (antialiased edges). Position, scale, rotation, foreground and background
    colours (at least ``0.35`` apart in RGB), clutter (up to four small strokes or dots) and
    pixel noise are drawn independently of the label, and every shape has the same area, so
    neither colour nor position nor the amount of foreground carries label information.

    The classes are balanced (counts differ by at most one when ``n`` is not a multiple of
    ten) and shuffled. ``seed`` and ``split`` fix the images: the two splits draw from
    different random streams. Default sizes are 10,000 (train) and 2,000 (test).

    The images are cached as ``.npz`` in ``cache_dir`` (else ``$NPJEM_CACHE``, else
    ``~/.cache/npjem``), written atomically; a corrupt cache file is drawn again. Pass
    ``cache_dir=False`` to neither read nor write a cache.

    ``without`` switches nuisances off, one cue at a time, for controlled experiments
    (``SHAPES_NUISANCES``): ``"clutter"`` (no strokes or dots), ``"colour"`` (every image light
    grey on dark grey instead of its own colour pair), ``"noise"`` (no pixel noise). All other
    variables are drawn as for the default images, so a variant differs in that cue alone.

    Returns a ``Dataset`` with ``images`` float32 (n, 3, size, size) in [0, 1] on the host.
    """
    split = _check_split(split)
    if isinstance(without, str):
        without = (without,)
    if not isinstance(without, (tuple, list, set, frozenset)):
        raise ValueError(f"without must be a tuple of nuisances from {SHAPES_NUISANCES}, got {without!r}")
    for w in without:
        check_choice(w, "without", SHAPES_NUISANCES)
    without = tuple(w for w in SHAPES_NUISANCES if w in without)
    n = _SHAPES_DEFAULT_N[split] if n is None else check_int(n, "n", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    size = check_int(size, "size", minimum=8)
    if cache_dir is not None and cache_dir is not False and not isinstance(cache_dir, (str, os.PathLike)):
        raise ValueError(f"cache_dir must be a path, None or False, got {cache_dir!r}")

    cached = None
    path = None
    if cache_dir is not False:
        path = _shapes_cache_path(os.fspath(cache_dir) if cache_dir is not None else default_cache_dir(),
                                  split, n, seed, size, without)
        cached = _load_shapes_cache(path, n, size)
    if cached is None:
        images8, labels = _draw_shapes(n, seed, split, size, **({"without": without} if without else {}))
        if path is not None:
            try:
                _save_atomically(path, images=images8, labels=labels,
                                 version=np.array(SHAPES_VERSION))  # host
            except OSError as exc:
                warnings.warn(f"shapes: could not write the cache file {path}: {exc}",
                              RuntimeWarning, stacklevel=2)
    else:
        images8, labels = cached
    images = images8.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
    name = f"shapes-{split}" + "".join(f"-no{w}" for w in without)
    return Dataset(np.ascontiguousarray(images), labels, SHAPE_CLASSES, name=name)


# ====================================================================== digits

def digits(split: str = "train", size: int = 8, seed: int = 0, test_fraction: float = 0.2,
           channels: int = 1) -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download).

    The split is stratified: in each class a ``test_fraction`` share (rounded) goes to the
    test split, chosen by a permutation drawn from ``seed``. Images are scaled from 0..16
    to [0, 1], upsampled bilinearly (``scipy.ndimage.zoom``, order 1) to ``size`` x ``size``
    when ``size != 8``, and have 1 channel or the gray channel repeated 3 times.
    """
    split = _check_split(split)
    size = check_int(size, "size", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    channels = check_choice(check_int(channels, "channels", minimum=None), "channels", (1, 3))
    check_real(test_fraction, "test_fraction", low=0.0, high=1.0, low_open=True, high_open=True)
    try:
        from sklearn.datasets import load_digits  # optional dependency
    except ImportError as exc:
        raise ImportError("digits needs scikit-learn: pip install 'npjem[datasets]'") from exc

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float64) / 16.0  # host
    labels = np.asarray(bunch.target, dtype=np.int64)  # host
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x6469676974]))
    test_idx = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        test_idx.append(members[: round(float(test_fraction) * members.size)])
    in_test = np.zeros(labels.shape[0], dtype=bool)  # host
    in_test[np.concatenate(test_idx)] = True  # host
    keep = np.flatnonzero(in_test if split == "test" else ~in_test)
    images, labels = images[keep], labels[keep]
    if size != 8:
        from scipy.ndimage import zoom

        images = zoom(images, (1.0, size / 8.0, size / 8.0), order=1, mode="nearest", grid_mode=True)
    images = np.clip(images, 0.0, 1.0).astype(np.float32)[:, None]
    if channels == 3:
        images = np.repeat(images, 3, axis=1)
    return Dataset(np.ascontiguousarray(images), labels, [str(d) for d in range(10)],
                   name=f"digits-{split}")


# ====================================================================== image_folder

def image_folder(path, size: int = 32) -> Dataset:
    """Images in class sub-folders (``path/<class>/<image>``), as RGB ``size`` x ``size``.

    Classes are the sub-folder names, sorted; files inside a class folder (sub-folders
    included) are read in sorted order with Pillow, converted to RGB and resized with
    antialiasing. Hidden entries (names starting with ``.``) are ignored. Every other file
    must be a readable image: unreadable files, and files lying directly in ``path`` outside
    any class folder, raise one ``ValueError`` that lists all of them by name.
    """
    from PIL import Image

    size = check_int(size, "size", minimum=1)
    root = os.fspath(path)
    if not os.path.isdir(root):
        raise ValueError(f"path {root!r} is not a directory")
    entries = sorted(e for e in os.listdir(root) if not e.startswith("."))
    classes = [e for e in entries if os.path.isdir(os.path.join(root, e))]
    loose = [e for e in entries if not os.path.isdir(os.path.join(root, e))]
    if not classes:
        raise ValueError(f"path {root!r} contains no class folders (expected path/<class>/<image>)")

    images, labels, bad, empty = [], [], [], []
    bad.extend(f"{name} (file outside any class folder)" for name in loose)
    for label, cls in enumerate(classes):
        found = 0
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, cls)):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fname in sorted(f for f in filenames if not f.startswith(".")):
                full = os.path.join(dirpath, fname)
                rel = os.path.relpath(full, root)
                try:
                    with Image.open(full) as im:
                        im = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
                        arr = np.asarray(im, dtype=np.uint8)  # host
                except Exception as exc:  # not an image, truncated, unsupported …
                    bad.append(f"{rel} ({type(exc).__name__}: {exc})")
                    continue
                images.append(arr)
                labels.append(label)
                found += 1
        if found == 0:
            empty.append(cls)
    if bad:
        raise ValueError(f"image_folder({root!r}): {len(bad)} file(s) could not be read as images: "
                         + "; ".join(bad))
    if empty:
        raise ValueError(f"image_folder({root!r}): class folder(s) without images: {', '.join(empty)}")
    stacked = np.stack(images).transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)  # host
    return Dataset(np.ascontiguousarray(stacked), np.asarray(labels, dtype=np.int64),  # host
                   classes, name=os.path.basename(os.path.normpath(root)))


# ====================================================================== 2-D toy densities

def _as_points(x):
    """``x`` as a (n, 2) float64 array on its own device, plus the shape to restore."""
    xp = backend.get_array_module(x)
    x = x if backend.is_array(x) else np.asarray(x)  # host  (lists and tuples)
    if x.ndim < 1 or x.shape[-1] != 2:
        raise ValueError(f"x must have shape (..., 2), got {tuple(x.shape)}")
    return xp, x.reshape(-1, 2).astype(xp.float64, copy=False), x.shape[:-1], x.dtype


def _result(xp, logp, lead_shape, dtype):
    out_dtype = dtype if np.dtype(dtype).kind == "f" else np.float64
    return logp.reshape(lead_shape).astype(out_dtype, copy=False)


def _logsumexp_rows(a, xp):
    m = a.max(axis=1, keepdims=True)
    m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))  # rows that are all -inf stay -inf
    return (m + xp.log(xp.exp(a - m).sum(axis=1, keepdims=True)))[:, 0]


class Toy2D:
    """A 2-D density: ``sample(n, generator)``, ``log_density(x)``, ``energy(x) = -log_density(x)``.

    ``bounds`` is a square ``(lo, hi)`` that holds all but a negligible part of the mass
    (for plots and for numerical integration).
    """

    name = ""
    bounds = (-4.0, 4.0)

    def sample(self, n: int, generator=None, dtype=None):
        n = check_int(n, "n", minimum=0)
        gen = nrandom.as_generator(generator)
        dt = np.dtype(backend.default_dtype() if dtype is None else dtype)
        if dt.kind != "f":
            raise ValueError(f"dtype must be a floating dtype, got {dt}")
        return self._sample(n, gen).astype(dt, copy=False)

    def _sample(self, n, gen):
        raise NotImplementedError

    def log_density(self, x):
        raise NotImplementedError

    def energy(self, x):
        """The energy of the normalized density: ``-log_density(x)``."""
        return -self.log_density(x)

    def __repr__(self):
        return f"toy2d.get({self.name!r})"


class EightGaussians(Toy2D):
    """Eight isotropic Gaussians (std ``std``) at equal angles on a circle of ``radius``; exact density."""

    name = "8gaussians"

    def __init__(self, radius: float = 2.0, std: float = 0.2):
        self.radius, self.std = float(radius), float(std)
        angles = np.arange(8) * (np.pi / 4)  # host
        self._centres = self.radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)  # host

    def _sample(self, n, gen):
        xp = gen.xp
        k = gen.integers(0, 8, size=n)
        centres = xp.asarray(self._centres)[k]
        return centres + self.std * gen.standard_normal((n, 2), dtype=np.float64)

    def log_density(self, x):
        xp, pts, lead, dtype = _as_points(x)
        centres = xp.asarray(self._centres)
        d2 = ((pts[:, None, :] - centres[None, :, :]) ** 2).sum(axis=-1)
        log_comp = -d2 / (2 * self.std ** 2) - math.log(2 * math.pi * self.std ** 2) - math.log(8)
        return _result(xp, _logsumexp_rows(log_comp, xp), lead, dtype)


class Checkerboard(Toy2D):
    """Uniform on the 8 dark unit cells of a 4x4 checkerboard over [-2, 2]^2; exact density.

    A cell ``[i, i+1) x [j, j+1)`` (``i, j`` in -2..1) is dark when ``i + j`` is even; the
    density is 1/8 there and 0 (log density ``-inf``) everywhere else.
    """

    name = "checkerboard"
    bounds = (-2.5, 2.5)

    def __init__(self):
        cells = [(i, j) for i in range(-2, 2) for j in range(-2, 2) if (i + j) % 2 == 0]
        self._cells = np.array(cells, dtype=np.float64)  # host

    def _sample(self, n, gen):
        xp = gen.xp
        k = gen.integers(0, 8, size=n)
        return xp.asarray(self._cells)[k] + gen.random((n, 2), dtype=np.float64)

    def log_density(self, x):
        xp, pts, lead, dtype = _as_points(x)
        cell = xp.floor(pts)
        inside = ((cell >= -2) & (cell <= 1)).all(axis=1)
        dark = (cell.sum(axis=1) % 2) == 0
        logp = xp.full(pts.shape[0], -math.inf, dtype=xp.float64)
        logp[inside & dark] = -math.log(8.0)
        return _result(xp, logp, lead, dtype)


class CurveMixture(Toy2D):
    """Points on curves plus Gaussian noise: ``x = c_k(s) + sigma_k(s) * eps``.

    A curve ``k`` is chosen with probability ``weights[k]``, its parameter ``s`` in [0, 1)
    is drawn from the latent density ``latent_pdf`` (uniform unless given; ``latent_icdf``
    is its inverse CDF, applied to a uniform draw) and ``eps`` is standard normal in 2-D.
    The density is the mixture over curves of the integral over ``s``; ``log_density``
    evaluates that integral with the midpoint rule on ``M`` points of each curve: a
    logsumexp over Gaussians centred on the curve, weighted by the latent density (weights
    renormalized to sum to one). It is thus a normalized density (a finite Gaussian mixture)
    that differs from the exact integral only by the discretization. ``resolution=None``
    picks, per curve, the smallest power of two ``M`` for which neighbouring curve points
    lie at most ``sigma / 3`` apart: the Gaussian kernel is then smooth on the scale of the
    spacing, and the relative error is below 1e-6 except within a few ``sigma`` of a
    curve's two ends, where it reaches a few percent. An integer fixes ``M`` for every curve.
    """

    def __init__(self, name, curves, weights, sigma, bounds=(-4.0, 4.0), resolution=None,
                 latent_pdf=None, latent_icdf=None):
        if (latent_pdf is None) != (latent_icdf is None):
            raise ValueError("latent_pdf and latent_icdf must be given together")
        self.name = name
        self._curves = list(curves)          # each: (s, xp) -> (len(s), 2)
        w = np.asarray(weights, dtype=np.float64)  # host
        if w.shape != (len(self._curves),) or (w <= 0).any():
            raise ValueError(f"weights must be {len(self._curves)} positive numbers, got {weights!r}")
        self._weights = w / w.sum()
        self._sigma = sigma                   # (k, s, xp) -> std per point (array or float)
        self._pdf, self._icdf = latent_pdf, latent_icdf
        self.bounds = bounds
        self.resolution = None if resolution is None else check_int(resolution, "resolution", minimum=2)
        self._grid = None

    def _points_per_curve(self, k) -> int:
        if self.resolution is not None:
            return self.resolution
        m = 64
        while m < (1 << 16):
            s = (np.arange(m) + 0.5) / m  # host
            step = np.linalg.norm(np.diff(self._curves[k](s, np), axis=0), axis=1)
            sig = np.broadcast_to(self._sigma(k, s, np), s.shape)
            if (step / np.minimum(sig[1:], sig[:-1])).max() <= 1.0 / 3.0:
                break
            m *= 2
        return m

    def _grid_host(self):
        """Curve points, their noise std and log mixture weights, on the host (computed once)."""
        if self._grid is None:
            centres, sig, logw = [], [], []
            for k, curve in enumerate(self._curves):
                m = self._points_per_curve(k)
                s = (np.arange(m) + 0.5) / m  # host
                if self._pdf is None:
                    q = np.ones(m)  # host
                else:
                    q = np.asarray(self._pdf(s, np), dtype=np.float64)  # host
                centres.append(curve(s, np))
                sig.append(np.broadcast_to(self._sigma(k, s, np), s.shape))
                with np.errstate(divide="ignore"):
                    logw.append(math.log(self._weights[k]) + np.log(q / q.sum()))
            self._grid = (np.concatenate(centres), np.concatenate(sig), np.concatenate(logw))  # host
        return self._grid

    @property
    def num_components(self) -> int:
        """The number of Gaussians in the mixture that ``log_density`` evaluates."""
        return int(self._grid_host()[0].shape[0])

    def _sample(self, n, gen):
        xp = gen.xp
        cum = xp.asarray(np.cumsum(self._weights))
        k = xp.searchsorted(cum[:-1], gen.random(n, dtype=np.float64), side="right")
        u = gen.random(n, dtype=np.float64)
        if self._icdf is not None:
            u = self._icdf(u, xp)
        out = xp.zeros((n, 2), dtype=xp.float64)
        std = xp.zeros(n, dtype=xp.float64)
        for j, curve in enumerate(self._curves):
            sel = k == j
            out = xp.where(sel[:, None], curve(u, xp), out)
            std = xp.where(sel, xp.broadcast_to(xp.asarray(self._sigma(j, u, xp)), u.shape), std)
        return out + std[:, None] * gen.standard_normal((n, 2), dtype=np.float64)

    def log_density(self, x):
        xp, pts, lead, dtype = _as_points(x)
        c_h, s_h, w_h = self._grid_host()
        centres, sig, logw = xp.asarray(c_h), xp.asarray(s_h), xp.asarray(w_h)
        log_norm = logw - xp.log(2 * math.pi * sig ** 2)
        inv2 = 1.0 / (2 * sig ** 2)
        c2 = (centres ** 2).sum(axis=1)
        out = xp.empty(pts.shape[0], dtype=xp.float64)
        chunk = max(1, (1 << 21) // centres.shape[0])  # bounded memory: chunk x points <= 2M
        for s in range(0, pts.shape[0], chunk):
            p = pts[s:s + chunk]
            # |p - c|^2 by the expansion (one matrix product); clipped against round-off.
            d2 = xp.maximum((p ** 2).sum(axis=1)[:, None] - 2.0 * (p @ centres.T) + c2[None, :], 0.0)
            out[s:s + chunk] = _logsumexp_rows(log_norm - d2 * inv2, xp)
        return _result(xp, out, lead, dtype)


def _moons(std=0.15, resolution=None):
    # scikit-learn's two moons, scaled by 2 and centred: upper arc and a shifted lower arc.
    def upper(u, xp):
        t = np.pi * u
        return xp.stack([2 * (xp.cos(t) - 0.5), 2 * (xp.sin(t) - 0.25)], axis=-1)

    def lower(u, xp):
        t = np.pi * u
        return xp.stack([2 * (0.5 - xp.cos(t)), 2 * (0.25 - xp.sin(t))], axis=-1)

    return CurveMixture("moons", [upper, lower], [1, 1], lambda k, u, xp: std,
                        resolution=resolution)


def _rings(radii=(0.5, 1.0, 1.5, 2.0), std=0.08, resolution=None):
    # Concentric circles; a ring's weight is proportional to its length (uniform along arcs).
    def ring(r):
        def c(u, xp):
            t = 2 * np.pi * u
            return xp.stack([r * xp.cos(t), r * xp.sin(t)], axis=-1)
        return c

    return CurveMixture("rings", [ring(r) for r in radii], list(radii), lambda k, u, xp: std,
                        bounds=(-3.0, 3.0), resolution=resolution)


def _swissroll(std=0.1, resolution=None):
    # scikit-learn's swiss roll in 2-D: t uniform on [1.5 pi, 4.5 pi], (t cos t, t sin t) / 5.
    def roll(u, xp):
        t = 1.5 * np.pi * (1 + 2 * u)
        return xp.stack([t * xp.cos(t), t * xp.sin(t)], axis=-1) / 5.0

    return CurveMixture("swissroll", [roll], [1], lambda k, u, xp: std, resolution=resolution)


def _pinwheel(arms=5, std0=0.05, std_slope=0.08, curl=0.9, resolution=None):
    # Five arms that curl as they leave the centre and fan out (noise grows with radius).
    def arm(k):
        base = 2 * np.pi * k / arms

        def c(u, xp):
            r = 0.4 + 2.2 * u
            a = base + curl * (r - 0.4)
            return xp.stack([r * xp.cos(a), r * xp.sin(a)], axis=-1)
        return c

    return CurveMixture("pinwheel", [arm(k) for k in range(arms)], [1] * arms,
                        lambda k, u, xp: std0 + std_slope * (0.4 + 2.2 * u), resolution=resolution)


def _spirals(std=0.1, resolution=None):
    # Two interleaved spirals, angle t = 3 pi s with s drawn from the density 2 s on [0, 1)
    # (s = sqrt(u)): points spread evenly over the area the spiral sweeps.
    def spiral(sign):
        def c(s, xp):
            t = 3 * np.pi * s
            return sign * xp.stack([-t * xp.cos(t), t * xp.sin(t)], axis=-1) / 3.0
        return c

    return CurveMixture("2spirals", [spiral(1.0), spiral(-1.0)], [1, 1], lambda k, s, xp: std,
                        resolution=resolution, latent_pdf=lambda s, xp: 2.0 * s,
                        latent_icdf=lambda u, xp: xp.sqrt(u))


class _Toy2DRegistry:
    """``toy2d.get(name)``, ``toy2d.names()``; each density also as an attribute (``toy2d.moons``)."""

    _factories: ClassVar[dict] = {
        "8gaussians": EightGaussians,
        "checkerboard": Checkerboard,
        "moons": _moons,
        "rings": _rings,
        "swissroll": _swissroll,
        "pinwheel": _pinwheel,
        "2spirals": _spirals,
    }
    Toy2D = Toy2D
    CurveMixture = CurveMixture
    EightGaussians = EightGaussians
    Checkerboard = Checkerboard

    def names(self):
        return list(self._factories)

    def get(self, name: str, **kwargs) -> Toy2D:
        """A new density by name; keyword arguments (``std``, ``radius`` …) go to its constructor."""
        key = str(name).lower().replace("_", "").replace("-", "").replace(" ", "")
        aliases = {"eightgaussians": "8gaussians", "twomoons": "moons", "spirals": "2spirals",
                   "twospirals": "2spirals", "circles": "rings"}
        key = aliases.get(key, key)
        if key not in self._factories:
            raise ValueError(f"name must be one of {self.names()}, got {name!r}")
        return self._factories[key](**kwargs)

    def __getattr__(self, attr):
        factories = type(self)._factories
        key = {"eight_gaussians": "8gaussians", "two_spirals": "2spirals"}.get(attr, attr)
        if key in factories:
            return factories[key]()
        raise AttributeError(attr)

    def __repr__(self):
        return f"toy2d({', '.join(self.names())})"


toy2d = _Toy2DRegistry()


# ====================================================================== DataLoader

class DataLoader:
    """Mini-batches of ``images`` (and ``labels``), moved to ``device``.

    Each iteration over the loader is one epoch. With ``shuffle=True`` every epoch draws a
    new permutation from ``generator`` (an ``npjem.random.Generator``, a seed, or ``None``
    for the CPU default generator), so a seed reproduces the whole sequence of epochs.
    Yields ``(x, y)`` when labels are given, else ``x``. A ``Dataset`` may be passed as
    ``images``; its labels are used unless ``labels`` is given.
    """

    def __init__(self, images, labels=None, batch_size: int = 256, shuffle: bool = True,
                 drop_last: bool = False, generator=None, device=None):
        if isinstance(images, Dataset):
            images, labels = images.images, (images.labels if labels is None else labels)
        if not (backend.is_array(images) or hasattr(images, "__len__")):
            raise ValueError(f"images must be an array, got {type(images).__name__}")
        if not backend.is_array(images):
            images = np.asarray(images)  # host
        if images.ndim < 1 or images.shape[0] == 0:
            raise ValueError(f"images must hold at least one example, got shape {tuple(images.shape)}")
        if labels is not None:
            if not backend.is_array(labels):
                labels = np.asarray(labels)  # host
            if labels.ndim < 1 or labels.shape[0] != images.shape[0]:
                raise ValueError(f"labels must have {images.shape[0]} entries to match images, "
                                 f"got shape {tuple(labels.shape)}")
        self.batch_size = check_int(batch_size, "batch_size", minimum=1)
        for name, flag in (("shuffle", shuffle), ("drop_last", drop_last)):
            if not isinstance(flag, (bool, np.bool_)):
                raise ValueError(f"{name} must be a bool, got {flag!r}")
        self.images, self.labels = images, labels
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.device = backend.normalize_device(device)
        self.generator = nrandom.as_generator(generator, device="cpu") if shuffle else None

    @property
    def num_examples(self) -> int:
        return int(self.images.shape[0])

    def __len__(self) -> int:
        n, b = self.num_examples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def _take(self, array, idx):
        xp = backend.get_array_module(array)
        if isinstance(idx, slice):
            batch = array[idx]
        else:
            batch = array[xp.asarray(idx)]
        return backend.to_device(batch, self.device)

    def __iter__(self):
        n, b = self.num_examples, self.batch_size
        order = backend.to_numpy(self.generator.permutation(n)) if self.shuffle else None
        for i in range(len(self)):
            lo, hi = i * b, min(n, (i + 1) * b)
            idx = slice(lo, hi) if order is None else order[lo:hi]
            x = self._take(self.images, idx)
            if self.labels is None:
                yield x
            else:
                yield x, self._take(self.labels, idx)

    def __repr__(self):
        return (f"DataLoader({self.num_examples} examples, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, device={self.device!r})")
