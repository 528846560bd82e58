"""Tests of npjem.data.datasets: shapes, digits, image_folder, 2-D toy densities, DataLoader."""
import math
import os
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npjem import backend
from npjem import random as nrandom
from npjem.data import datasets as ds
from npjem.data.datasets import DataLoader, Dataset, digits, image_folder, shapes, toy2d

K = len(ds.SHAPE_CLASSES)


# ====================================================================== shapes

@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("npjem-cache"))


@pytest.fixture(scope="module")
def small(cache):
    return shapes("train", n=400, seed=0, cache_dir=cache)


@pytest.fixture(scope="module")
def probe_set():
    """2,000 images for the classifier tests (no cache: drawing them takes a fraction of a second)."""
    return shapes("train", n=2000, seed=11, cache_dir=False)


def test_shapes_array_contract(small):
    assert isinstance(small, Dataset)
    assert small.images.shape == (400, 3, 32, 32)
    assert small.images.dtype == np.float32
    assert small.labels.dtype == np.int64 and small.labels.shape == (400,)
    assert small.images.min() >= 0.0 and small.images.max() <= 1.0
    assert small.images.flags["C_CONTIGUOUS"]
    assert small.classes == list(ds.SHAPE_CLASSES) and len(small.classes) >= 8
    assert len(set(small.classes)) == len(small.classes)
    assert len(small) == 400
    x, y = small[7]
    np.testing.assert_array_equal(x, small.images[7])
    assert y == small.labels[7]
    xb, yb = small[np.array([3, 1])]  # host
    assert xb.shape == (2, 3, 32, 32) and list(yb) == [small.labels[3], small.labels[1]]


def test_shapes_is_balanced_and_shuffled(small):
    np.testing.assert_array_equal(np.bincount(small.labels, minlength=K), np.full(K, 400 // K))  # host
    # Shuffled: not sorted by class, and no long run of one class.
    assert np.any(np.diff(small.labels) < 0)
    runs = np.flatnonzero(np.diff(small.labels) != 0)
    assert np.diff(runs).max() < 15


@given(st.integers(1, 37))
def test_shapes_counts_differ_by_at_most_one(n):
    d = shapes(n=n, seed=2, cache_dir=False, size=8)
    counts = np.bincount(d.labels, minlength=K)
    assert counts.sum() == n and counts.max() - counts.min() <= 1


def test_shapes_images_are_not_blank(small):
    # Every image shows a shape: the foreground and the background differ clearly.
    spread = small.images.reshape(400, 3, -1).max(axis=2) - small.images.reshape(400, 3, -1).min(axis=2)
    assert (spread.max(axis=1) > 0.2).all()
    # No two images are the same.
    flat = small.images.reshape(400, -1)
    assert len({row.tobytes() for row in flat}) == 400


def test_shapes_deterministic_from_seed_and_cache_round_trip(small, cache):
    again = shapes("train", n=400, seed=0, cache_dir=False)  # drawn afresh, not read
    np.testing.assert_array_equal(again.images, small.images)
    np.testing.assert_array_equal(again.labels, small.labels)
    other = shapes("train", n=400, seed=1, cache_dir=False)
    assert not np.array_equal(other.images, small.images)


def test_cache_file_is_written_then_read(tmp_path, monkeypatch):
    first = shapes("test", n=30, seed=4, cache_dir=str(tmp_path), size=16)
    files = os.listdir(tmp_path)
    assert len(files) == 1 and files[0].endswith(".npz")
    name = files[0]
    for part in ("shapes", f"v{ds.SHAPES_VERSION}", "test", "n30", "seed4", "size16"):
        assert part in name
    # The second call must come from the cache: drawing is made to fail.
    def no_drawing(*args, **kwargs):
        raise AssertionError("shapes drew images although a valid cache file exists")

    monkeypatch.setattr(ds, "_draw_shapes", no_drawing)
    second = shapes("test", n=30, seed=4, cache_dir=str(tmp_path), size=16)
    np.testing.assert_array_equal(second.images, first.images)
    np.testing.assert_array_equal(second.labels, first.labels)
    assert second.images.dtype == np.float32


@pytest.mark.parametrize("damage", ["garbage", "truncate", "wrong_shape"])
def test_corrupt_cache_is_regenerated(tmp_path, damage):
    ref = shapes("train", n=20, seed=5, cache_dir=str(tmp_path), size=16)
    (path,) = [os.path.join(tmp_path, f) for f in os.listdir(tmp_path)]
    if damage == "garbage":
        with open(path, "wb") as f:
            f.write(b"this is not an npz file")
    elif damage == "truncate":
        with open(path, "rb") as f:
            head = f.read(200)
        with open(path, "wb") as f:
            f.write(head)
    else:
        np.savez(path, images=np.zeros((3, 16, 16, 3), np.uint8),  # host
                 labels=np.zeros(3, np.int64), version=np.array(ds.SHAPES_VERSION))  # host
    with pytest.warns(RuntimeWarning, match="regenerating"):
        again = shapes("train", n=20, seed=5, cache_dir=str(tmp_path), size=16)
    np.testing.assert_array_equal(again.images, ref.images)
    np.testing.assert_array_equal(again.labels, ref.labels)
    # The file was rewritten with valid contents, and no temporary file is left behind.
    assert os.listdir(tmp_path) == [os.path.basename(path)]
    with np.load(path) as f:
        assert f["images"].shape == (20, 16, 16, 3)


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NPJEM_CACHE", str(tmp_path / "env-cache"))
    assert ds.default_cache_dir() == str(tmp_path / "env-cache")
    shapes("train", n=10, seed=0, size=8)
    assert len(os.listdir(tmp_path / "env-cache")) == 1
    monkeypatch.delenv("NPJEM_CACHE")
    assert ds.default_cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "npjem")


def test_train_and_test_splits_differ(cache):
    tr = shapes("train", n=200, seed=0, cache_dir=cache)
    te = shapes("test", n=200, seed=0, cache_dir=cache)
    train_rows = {row.tobytes() for row in tr.images.reshape(200, -1)}
    assert not any(row.tobytes() in train_rows for row in te.images.reshape(200, -1))
    np.testing.assert_array_equal(np.bincount(te.labels, minlength=K), np.full(K, 20))  # host


def test_default_sizes(monkeypatch):
    requested = []

    def record(n, seed, split, size):  # stands in for the drawing: only the request matters here
        requested.append((n, split, size))
        return np.zeros((n, size, size, 3), np.uint8), np.arange(n, dtype=np.int64) % K  # host

    monkeypatch.setattr(ds, "_draw_shapes", record)
    assert len(shapes("train", cache_dir=False)) == 10_000
    assert len(shapes("test", cache_dir=False)) == 2_000
    assert requested == [(10_000, "train", 32), (2_000, "test", 32)]


def test_image_size_argument():
    d = shapes("train", n=10, seed=0, cache_dir=False, size=20)
    assert d.images.shape == (10, 3, 20, 20)


@pytest.mark.parametrize("kwargs, argument", [
    ({"split": "val"}, "split"),
    ({"split": None}, "split"),
    ({"n": -1}, "n"),
    ({"n": 0}, "n"),
    ({"n": 2.5}, "n"),
    ({"n": True}, "n"),
    ({"seed": -3}, "seed"),
    ({"seed": "0"}, "seed"),
    ({"size": 4}, "size"),
    ({"cache_dir": 123}, "cache_dir"),
])
def test_shapes_rejects_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        shapes(**{"cache_dir": False, **kwargs})


# ---------------------------------------------------------------- label information

def softmax_regression_accuracy(features, labels, steps=400, lr=0.5, l2=1e-3):
    """Held-out accuracy of multinomial logistic regression trained by gradient descent."""
    f = (features - features.mean(0)) / (features.std(0) + 1e-8)
    f = np.concatenate([f, np.ones((len(f), 1))], axis=1)  # host
    n_train = int(0.8 * len(f))
    ftr, ytr, fte, yte = f[:n_train], labels[:n_train], f[n_train:], labels[n_train:]
    w = np.zeros((f.shape[1], K))  # host
    onehot = np.eye(K)[ytr]  # host
    for _ in range(steps):
        z = ftr @ w
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        w -= lr * (ftr.T @ (p - onehot) / n_train + l2 * w)
    return float((np.argmax(fte @ w, axis=1) == yte).mean())


def nearest_mean_accuracy(features, labels):
    f = (features - features.mean(0)) / (features.std(0) + 1e-8)
    n_train = int(0.8 * len(f))
    means = np.stack([f[:n_train][labels[:n_train] == k].mean(0) for k in range(K)])  # host
    d2 = ((f[n_train:, None, :] - means[None]) ** 2).sum(-1)
    return float((d2.argmin(1) == labels[n_train:]).mean())


def foreground(images):
    """Pixels that differ from the background colour, taken as the median of the border."""
    border = np.concatenate([images[:, :, 0, :], images[:, :, -1, :],  # host
                             images[:, :, :, 0], images[:, :, :, -1]], axis=2)
    bg = np.median(border, axis=2)
    return np.abs(images - bg[:, :, None, None]).sum(axis=1) > 0.3


def test_colour_carries_no_label_information(probe_set):
    x, y = probe_set.images.astype(np.float64), probe_set.labels
    chance = 1.0 / K
    mean_rgb = x.mean(axis=(2, 3))
    hist = np.stack([np.concatenate([np.histogram(img[c], bins=8, range=(0, 1))[0] for c in range(3)])  # host
                     for img in x]) / (x.shape[2] * x.shape[3])
    for feats in (mean_rgb, hist):
        assert softmax_regression_accuracy(feats, y) < 2 * chance
        assert nearest_mean_accuracy(feats, y) < 2 * chance


def test_position_and_area_carry_no_label_information(probe_set):
    x, y = probe_set.images.astype(np.float64), probe_set.labels
    mask = foreground(x)
    area = mask.sum(axis=(1, 2)).astype(np.float64)
    rows, cols = np.mgrid[0:32, 0:32]
    centroid = np.stack([(mask * rows).sum((1, 2)) / area, (mask * cols).sum((1, 2)) / area], axis=1)  # host
    chance = 1.0 / K
    assert softmax_regression_accuracy(centroid, y) < 2 * chance
    assert nearest_mean_accuracy(centroid, y) < 2 * chance
    assert softmax_regression_accuracy(area[:, None], y) < 2 * chance


def test_shape_does_carry_label_information(probe_set):
    # The control for the two tests above: the same classifier on a crude, colour- and
    # position-free shape descriptor (the radial profile of the foreground around its
    # centroid, in units of its equal-area radius) is far above chance.
    x, y = probe_set.images.astype(np.float64), probe_set.labels
    mask = foreground(x)
    area = mask.sum(axis=(1, 2)).astype(np.float64)
    rows, cols = np.mgrid[0:32, 0:32]
    cr = (mask * rows).sum((1, 2)) / area
    cc = (mask * cols).sum((1, 2)) / area
    r = np.hypot(rows[None] - cr[:, None, None], cols[None] - cc[:, None, None])
    r /= np.sqrt(area / np.pi)[:, None, None]
    profile = np.stack([np.histogram(r[i][mask[i]], bins=12, range=(0, 2.4))[0]  # host
                        for i in range(len(x))]) / area[:, None]
    assert softmax_regression_accuracy(profile, y) > 4.0 / K


# ====================================================================== digits

def test_digits_splits_and_values():
    pytest.importorskip("sklearn")
    tr, te = digits("train"), digits("test")
    assert len(tr) + len(te) == 1797
    assert abs(len(te) - 0.2 * 1797) <= 10  # stratified rounding per class
    assert tr.images.shape == (len(tr), 1, 8, 8) and tr.images.dtype == np.float32
    assert tr.labels.dtype == np.int64 and tr.classes == [str(d) for d in range(10)]
    assert tr.images.min() >= 0.0 and tr.images.max() <= 1.0 and tr.images.max() > 0.9
    # Stratified: every class is in both splits in about the same proportion.
    frac = np.bincount(te.labels, minlength=10) / (np.bincount(te.labels, minlength=10)
                                                   + np.bincount(tr.labels, minlength=10))
    assert np.all(np.abs(frac - 0.2) < 0.01)
    # The splits are disjoint and together hold every source image exactly once.
    from sklearn.datasets import load_digits

    src = load_digits()
    ref = sorted((img.astype(np.float32) / 16).tobytes() + bytes([t]) for img, t in
                 zip(src.images, src.target))
    both = sorted([img.tobytes() + bytes([t]) for img, t in zip(tr.images[:, 0], tr.labels)]
                  + [img.tobytes() + bytes([t]) for img, t in zip(te.images[:, 0], te.labels)])
    assert both == ref


def test_digits_deterministic_seeded_size_and_channels():
    pytest.importorskip("sklearn")
    a, b = digits("test", seed=3), digits("test", seed=3)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    c = digits("test", seed=4)
    assert {img.tobytes() for img in a.images} != {img.tobytes() for img in c.images}
    big = digits("test", seed=3, size=32, channels=3)
    assert big.images.shape == (len(a), 3, 32, 32) and big.images.dtype == np.float32
    np.testing.assert_array_equal(big.images[:, 0], big.images[:, 2])
    assert big.images.min() >= 0.0 and big.images.max() <= 1.0
    # Upsampling keeps the picture: block means of the 32x32 image follow the 8x8 original.
    blocks = big.images[:, 0].reshape(len(a), 8, 4, 8, 4).mean(axis=(2, 4))
    corr = np.corrcoef(blocks.ravel(), a.images[:, 0].ravel())[0, 1]
    assert corr > 0.95
    np.testing.assert_array_equal(big.labels, a.labels)


@pytest.mark.parametrize("kwargs, argument", [
    ({"split": "validation"}, "split"), ({"size": 0}, "size"), ({"channels": 2}, "channels"),
    ({"test_fraction": 0.0}, "test_fraction"), ({"test_fraction": 1.5}, "test_fraction"),
])
def test_digits_rejects_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        digits(**kwargs)


def test_digits_without_sklearn_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"digits needs scikit-learn: pip install 'npjem\[datasets\]'"):
        digits()


# ====================================================================== image_folder

def _write_image(path, size, colour, fmt="PNG"):
    from PIL import Image

    Image.new("RGB", size, colour).save(path, format=fmt)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "pictures"
    (root / "dogs").mkdir(parents=True)
    (root / "cats").mkdir()
    _write_image(root / "cats" / "a.png", (40, 30), (255, 0, 0))
    _write_image(root / "cats" / "b.jpg", (16, 16), (0, 0, 255), fmt="JPEG")
    _write_image(root / "dogs" / "c.png", (64, 64), (0, 255, 0))
    from PIL import Image

    Image.new("L", (20, 20), 128).save(root / "dogs" / "gray.png")      # gray becomes RGB
    Image.new("RGBA", (20, 20), (10, 20, 30, 40)).save(root / "dogs" / "alpha.png")
    return root


def test_image_folder_reads_classes_sorted(folder):
    d = image_folder(folder, size=12)
    assert d.classes == ["cats", "dogs"]
    assert d.images.shape == (5, 3, 12, 12) and d.images.dtype == np.float32
    np.testing.assert_array_equal(d.labels, [0, 0, 1, 1, 1])
    # Files in sorted order within a class: cats/a.png (red), cats/b.jpg (blue); dogs: alpha, c, gray.
    np.testing.assert_allclose(d.images[0].mean(axis=(1, 2)), [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(d.images[1].mean(axis=(1, 2)), [0, 0, 1], atol=0.02)
    np.testing.assert_allclose(d.images[3].mean(axis=(1, 2)), [0, 1, 0], atol=1e-6)
    np.testing.assert_allclose(d.images[4], 128 / 255, atol=1e-6)
    assert d.images.min() >= 0.0 and d.images.max() <= 1.0


def test_image_folder_names_bad_files(folder):
    (folder / "dogs" / "notes.txt").write_text("not a picture")
    with open(folder / "cats" / "a.png", "rb") as f:
        head = f.read(30)
    (folder / "cats" / "broken.png").write_bytes(head)  # a truncated PNG
    with pytest.raises(ValueError) as err:
        image_folder(folder)
    msg = str(err.value)
    assert "notes.txt" in msg and "broken.png" in msg
    assert "a.png (" not in msg  # the good files are not listed


def test_image_folder_names_files_outside_class_folders(folder):
    (folder / "README.md").write_text("about these pictures")
    with pytest.raises(ValueError, match="README.md"):
        image_folder(folder)


def test_image_folder_ignores_hidden_entries(folder):
    (folder / "cats" / ".DS_Store").write_bytes(b"\x00\x01")
    (folder / ".cache").mkdir()
    assert image_folder(folder, size=8).classes == ["cats", "dogs"]


def test_image_folder_empty_and_missing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty"):
        image_folder(empty)
    with pytest.raises(ValueError, match="no class folders"):
        image_folder(empty)
    with pytest.raises(ValueError, match="missing"):
        image_folder(tmp_path / "missing")
    (empty / "only-class").mkdir()
    with pytest.raises(ValueError, match="only-class"):
        image_folder(empty)
    with pytest.raises(ValueError, match="size"):
        image_folder(tmp_path, size=0)


# ====================================================================== toy2d

NAMES = ["8gaussians", "checkerboard", "moons", "rings", "swissroll", "pinwheel", "2spirals"]


def test_toy2d_names_and_lookup():
    assert toy2d.names() == NAMES
    assert toy2d.get("two_moons").name == "moons"
    assert toy2d.get("8Gaussians").name == "8gaussians"
    assert toy2d.eight_gaussians.name == "8gaussians"
    with pytest.raises(ValueError, match="name"):
        toy2d.get("banana")


def grid(density, h):
    lo, hi = density.bounds
    g = np.arange(lo + h / 2, hi, h)  # host  (cell midpoints: no checkerboard edge on a node)
    return np.stack(np.meshgrid(g, g, indexing="ij"), axis=-1).reshape(-1, 2)  # host


@pytest.fixture(scope="module")
def grids():
    """Each density on a midpoint grid over its bounds: (grid points, log density, cell area)."""
    out = {}
    for name in NAMES:
        d = toy2d.get(name)
        h = 0.05
        pts = grid(d, h)
        out[name] = (pts, d.log_density(pts), h * h)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_toy2d_sample_shape_and_reproducible(name, device):
    d = toy2d.get(name)
    a = d.sample(500, nrandom.default_rng(7, device=device))
    b = d.sample(500, nrandom.default_rng(7, device=device))
    c = d.sample(500, nrandom.default_rng(8, device=device))
    assert a.shape == (500, 2) and a.dtype == np.float32
    assert backend.device_of(a) == device
    a, b, c = backend.to_numpy(a), backend.to_numpy(b), backend.to_numpy(c)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.isfinite(a).all()
    assert d.sample(3, 5, dtype=np.float64).dtype == np.float64
    assert d.sample(0, 5).shape == (0, 2)


@pytest.mark.parametrize("name", NAMES)
def test_toy2d_log_density_integrates_to_one(name, grids):
    _, logp, cell = grids[name]
    assert abs(np.exp(logp).sum() * cell - 1.0) < 0.02


@pytest.mark.parametrize("name", NAMES)
def test_toy2d_samples_follow_the_density(name, grids):
    # The sampler and log_density describe the same distribution: (1) histograms of samples
    # match the grid-integrated probabilities of 10x10 cells (whose edges fall between grid
    # nodes, a whole number of grid steps apart); (2) the mean log density at the
    # samples matches the integral of p log p (minus the entropy).
    d = toy2d.get(name)
    pts, logp, cell = grids[name]
    x_dev = d.sample(100_000, nrandom.default_rng(1), dtype=np.float64)  # on the suite's device
    x = backend.to_numpy(x_dev)  # host: the histograms are computed with NumPy
    lo, hi = d.bounds
    edges = np.linspace(lo, hi, 11)  # host
    emp, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=[edges, edges])
    p = np.exp(logp)
    ref, _, _ = np.histogram2d(pts[:, 0], pts[:, 1], bins=[edges, edges], weights=p * cell)
    assert 0.5 * np.abs(emp / len(x) - ref).sum() < 0.02  # sampling noise alone: about 0.01
    ls = backend.to_numpy(d.log_density(x_dev[:4000]))
    neg_entropy = np.sum(np.where(p > 0, p * np.where(p > 0, logp, 0.0), 0.0)) * cell
    se = ls.std() / math.sqrt(len(ls))
    assert abs(ls.mean() - neg_entropy) < 5 * se + 0.01


@pytest.mark.parametrize("name", NAMES)
def test_toy2d_log_density_higher_at_samples_than_far_away(name, device):
    d = toy2d.get(name)
    xp = backend.xp_for_device(device)
    x = d.sample(300, nrandom.default_rng(3, device=device), dtype=np.float64)
    far = xp.asarray([[6.0, 6.0], [-7.0, 0.5], [0.0, 9.0]])
    at_samples, at_far = d.log_density(x), d.log_density(far)
    assert backend.device_of(at_samples) == device
    assert at_samples.shape == (300,) and at_samples.dtype == np.float64
    assert bool(xp.isfinite(at_samples).all())
    assert float(at_samples.min()) > float(at_far.max()) + 5
    np.testing.assert_allclose(backend.to_numpy(d.energy(far)), -backend.to_numpy(at_far))


def test_toy2d_log_density_shapes_dtypes_and_errors():
    d = toy2d.get("moons")
    x = np.random.default_rng(0).standard_normal((4, 5, 2))  # host
    lp = d.log_density(x)
    assert lp.shape == (4, 5)
    np.testing.assert_allclose(lp.ravel(), d.log_density(x.reshape(-1, 2)))
    assert d.log_density(x.astype(np.float32)).dtype == np.float32
    assert d.log_density([[0.0, 0.0]]).shape == (1,)
    assert d.log_density(np.zeros((2, 2), dtype=np.int64)).dtype == np.float64  # host
    with pytest.raises(ValueError, match="x"):
        d.log_density(np.zeros((5, 3)))  # host
    with pytest.raises(ValueError, match="n"):
        d.sample(-1)


def test_eight_gaussians_is_the_exact_mixture():
    from scipy.stats import multivariate_normal

    d = toy2d.get("8gaussians")
    x = np.random.default_rng(1).uniform(-3, 3, size=(50, 2))
    angles = np.arange(8) * np.pi / 4  # host
    ref = sum(multivariate_normal(2.0 * np.array([np.cos(a), np.sin(a)]), 0.04).pdf(x)  # host
              for a in angles) / 8
    np.testing.assert_allclose(np.exp(d.log_density(x)), ref, rtol=1e-10)


@given(st.floats(-3, 3), st.floats(-3, 3), st.integers(0, 7))
def test_eight_gaussians_is_symmetric_under_eighth_turns(px, py, k):
    d = toy2d.get("8gaussians")
    a = k * np.pi / 4
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])  # host
    x = np.array([[px, py]])  # host
    np.testing.assert_allclose(d.log_density(x @ rot.T), d.log_density(x), rtol=1e-9, atol=1e-9)


def test_checkerboard_is_exactly_piecewise_uniform():
    d = toy2d.get("checkerboard")
    x = np.array([[-1.5, -1.5], [-0.5, -1.5], [0.5, 0.5], [1.9, -0.1], [2.5, 0.5], [-0.2, 0.3]])  # host
    expected = np.array([-math.log(8), -np.inf, -math.log(8), -math.log(8), -np.inf, -np.inf])  # host
    np.testing.assert_array_equal(d.log_density(x), expected)


def test_curve_densities_converge_with_resolution():
    # The midpoint rule with the automatic resolution agrees with one 16 times finer.
    for name in ("moons", "2spirals"):
        d = toy2d.get(name)
        fine = toy2d.get(name, resolution=8 * d.num_components)
        assert fine.num_components == 16 * d.num_components  # two curves each
        x = d.sample(500, 2, dtype=np.float64)
        coarse_lp, fine_lp = backend.to_numpy(d.log_density(x)), backend.to_numpy(fine.log_density(x))
        np.testing.assert_allclose(np.exp(coarse_lp), np.exp(fine_lp),
                                   rtol=0.05)
        np.testing.assert_allclose(np.median(np.abs(coarse_lp - fine_lp)), 0.0,
                                   atol=1e-6)


# ====================================================================== DataLoader

def test_dataloader_batches_cover_the_data_once_per_epoch(device):
    x = np.arange(50, dtype=np.float32).reshape(10, 5)  # host
    y = np.arange(10, dtype=np.int64)  # host
    loader = DataLoader(x, y, batch_size=4, generator=0, device=device)
    assert len(loader) == 3
    epochs = []
    for _ in range(2):
        batches = list(loader)
        assert [len(b[1]) for b in batches] == [4, 4, 2]
        for xb, yb in batches:
            assert backend.device_of(xb) == device and backend.device_of(yb) == device
            np.testing.assert_array_equal(backend.to_numpy(xb), x[backend.to_numpy(yb)])
        order = np.concatenate([backend.to_numpy(yb) for _, yb in batches])  # host
        np.testing.assert_array_equal(np.sort(order), y)
        epochs.append(order)
    assert not np.array_equal(epochs[0], epochs[1])  # a new permutation each epoch


def test_dataloader_is_reproducible_from_a_seed():
    x = np.arange(100, dtype=np.float32)[:, None]  # host

    def orders(seed):
        loader = DataLoader(x, batch_size=7, generator=seed)
        return [np.concatenate([backend.to_numpy(b[:, 0]) for b in loader]) for _ in range(3)]  # host

    for a, b in zip(orders(5), orders(5)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(orders(5)[0], orders(6)[0])
    g1, g2 = nrandom.default_rng(9), nrandom.default_rng(9)
    np.testing.assert_array_equal(backend.to_numpy(next(iter(DataLoader(x, generator=g1)))),
                                  backend.to_numpy(next(iter(DataLoader(x, generator=g2)))))


@given(n=st.integers(1, 60), batch_size=st.integers(1, 20), drop_last=st.booleans(),
       shuffle=st.booleans())
def test_dataloader_lengths(n, batch_size, drop_last, shuffle):
    x = np.arange(n)  # host
    loader = DataLoader(x, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, generator=1)
    batches = [backend.to_numpy(b) for b in loader]  # host
    assert len(batches) == len(loader)
    full, rest = divmod(n, batch_size)
    assert len(loader) == full + (rest > 0 and not drop_last)
    assert all(len(b) == batch_size for b in batches[:full])
    seen = np.concatenate(batches) if batches else np.array([], dtype=x.dtype)  # host
    assert len(np.unique(seen)) == len(seen)
    if not drop_last:
        np.testing.assert_array_equal(np.sort(seen), x)
    if not shuffle:
        np.testing.assert_array_equal(seen, x[:len(seen)])


def test_dataloader_takes_a_dataset(small):
    loader = DataLoader(small, batch_size=128, shuffle=False)
    xb, yb = next(iter(loader))
    np.testing.assert_array_equal(backend.to_numpy(xb), small.images[:128])
    np.testing.assert_array_equal(backend.to_numpy(yb), small.labels[:128])
    assert len(loader) == 4


@pytest.mark.parametrize("kwargs, argument", [
    ({"batch_size": 0}, "batch_size"), ({"batch_size": -2}, "batch_size"),
    ({"batch_size": 2.0}, "batch_size"), ({"batch_size": True}, "batch_size"),
    ({"labels": np.zeros(9)}, "labels"), ({"labels": np.zeros(11)}, "labels"),  # host
    ({"shuffle": "yes"}, "shuffle"), ({"drop_last": 1}, "drop_last"),
    ({"images": np.zeros((0, 3))}, "images"), ({"device": "tpu"}, "device"),  # host
])
def test_dataloader_rejects_bad_arguments(kwargs, argument):
    args = {"images": np.zeros((10, 3)), **kwargs}  # host
    with pytest.raises(ValueError, match=argument):
        DataLoader(**args)


# ---------------------------------------------------------------- nuisances switched off

def test_each_nuisance_switches_off_alone():
    kw = dict(split="train", n=20, seed=3, cache_dir=False, size=16)
    base = shapes(**kw)
    noclutter = shapes(**kw, without=("clutter",))
    nocolour = shapes(**kw, without="colour")
    nonoise = shapes(**kw, without=("noise",))
    for variant in (noclutter, nocolour, nonoise):
        np.testing.assert_array_equal(variant.labels, base.labels)  # same draws, same labels
        assert not np.array_equal(variant.images, base.images)
    # without noise, the images are the default ones before their noise (σ = 0.02): within 6σ
    assert np.abs(nonoise.images - base.images).max() <= 6 * 0.02 + 1 / 255
    # without colour, every image uses the same two colours (up to antialiasing and the noise)
    nc = shapes(**kw, without=("colour", "noise"))
    corners = nc.images[:, :, 0, 0]
    assert {tuple(np.round(c * 255)) for c in corners} <= {(38.0, 38.0, 38.0), (217.0, 217.0, 217.0)}
    # without clutter and noise, a picture holds at most the two colours of its pair and their blends
    clean = shapes(**kw, without=("clutter", "colour", "noise"))
    px = np.round(clean.images * 255).transpose(0, 2, 3, 1).reshape(-1, 3)
    assert (px[:, 0] == px[:, 1]).all() and (px[:, 1] == px[:, 2]).all()  # grey only: no coloured strokes
    assert nocolour.name == "shapes-train-nocolour" and clean.name == "shapes-train-noclutter-nocolour-nonoise"


def test_a_variant_has_its_own_cache_file(tmp_path):
    shapes("test", n=10, seed=0, cache_dir=str(tmp_path), size=16)
    shapes("test", n=10, seed=0, cache_dir=str(tmp_path), size=16, without=("noise",))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and any(n.endswith("_nonoise.npz") for n in names)


@pytest.mark.parametrize("without", [("blur",), 3])
def test_an_unknown_nuisance_is_named(without):
    with pytest.raises(ValueError, match="without"):
        shapes("test", n=10, cache_dir=False, size=16, without=without)
