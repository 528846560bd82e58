"""Tests of npjem.ebm.plot: grid log-partition and NLL against closed forms, the Gaussian floor,
and PNGs of the requested size from both renderers."""
import math

import numpy as np
import pytest

from npjem import Tensor
from npjem.data import toy2d
from npjem.ebm.plot import energy_grid, gaussian_nll, grid_log_partition, grid_nll, plot_landscape

Image = pytest.importorskip("PIL.Image")


class Gaussian:
    """E(x) = ‖x − m‖²/(2s²) + shift: Z = 2πs² e^{−shift}."""

    def __init__(self, m=(0.5, -0.25), s=0.7, shift=0.0):
        self.m, self.s, self.shift = np.asarray(m), s, shift

    def __call__(self, x):
        d = x - Tensor(x.xp.asarray(self.m))
        return (d * d).sum(axis=1) / (2 * self.s ** 2) + self.shift


def toy_energy(density):
    """A toy2d density's exact energy −log p as an energy on Tensors."""
    return lambda x: Tensor(x.xp.asarray(density.energy(x.data)))


def test_grid_log_partition_of_a_gaussian():
    log_z = grid_log_partition(Gaussian(s=0.7, shift=1.5), (-6, 6), resolution=300)
    assert log_z == pytest.approx(math.log(2 * math.pi * 0.49) - 1.5, abs=1e-6)


def test_grid_nll_is_the_exact_nll_and_ignores_constant_shifts():
    x = np.random.default_rng(0).standard_normal((500, 2)) * 0.7 + [0.5, -0.25]
    exact = np.mean(((x - [0.5, -0.25]) ** 2).sum(1) / (2 * 0.49)) + math.log(2 * math.pi * 0.49)
    assert grid_nll(Gaussian(), x, (-6, 6), 300) == pytest.approx(exact, abs=1e-6)
    assert grid_nll(Gaussian(shift=-40.0), x, (-6, 6), 300) == pytest.approx(exact, abs=1e-6)


def test_toy_density_normalises_on_its_box():
    d = toy2d.get("8gaussians")
    assert grid_log_partition(toy_energy(d), d.bounds, 400) == pytest.approx(0.0, abs=2e-3)


def test_gaussian_nll_is_the_fitted_gaussians_entropy_on_its_own_data():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4000, 2)) @ np.array([[1.0, 0.3], [0.0, 0.5]])
    cov = np.cov(x.T, bias=True)
    entropy = 0.5 * np.log(np.linalg.det(2 * math.pi * math.e * cov))
    assert gaussian_nll(x, x) == pytest.approx(entropy, abs=1e-10)
    # on 8 Gaussians the single Gaussian is far worse than the truth
    d = toy2d.get("8gaussians")
    tr, te = d.sample(4000, generator=0), d.sample(4000, generator=1)
    assert gaussian_nll(tr, te) > -np.mean(d.log_density(te)) + 1.0


def test_energy_grid_layout():
    c, e = energy_grid(lambda x: x[:, 0] * 1.0 + x[:, 1] * 10.0, (0, 4), resolution=4)
    np.testing.assert_allclose(c, [0.5, 1.5, 2.5, 3.5])
    assert e[0, 1] == pytest.approx(1.5 + 5.0) and e[2, 0] == pytest.approx(0.5 + 25.0)


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_pillow_png_has_the_size_and_shows_the_mode(tmp_path):
    d = toy2d.get("8gaussians")
    path = tmp_path / "landscape.png"
    out = plot_landscape(Gaussian(m=(0.0, 0.0), s=0.5), path, (-3, 3), samples=d.sample(200, generator=0),
                         density=d, resolution=60, size=(400, 216), backend="pillow", title="test")
    assert out == path and png_size(path) == (400, 216)
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    left = img[16:, :200]
    centre, corner = left[100, 100], left[5, 5]
    assert centre.sum() > corner.sum() + 200                  # bright mode in the middle
    right = img[16:, 200:]
    assert right[100, 100].sum() < right[100, 100 + int(2 / 6 * 200)].sum()  # truth: dark centre, bright mode


def test_pillow_png_puts_high_y_at_the_top_and_draws_the_samples(tmp_path):
    path = tmp_path / "up.png"
    plot_landscape(Gaussian(m=(0.0, 2.0), s=0.5), path, (-3, 3), samples=np.array([[-2.0, -2.0]]),
                   resolution=60, size=(216, 216), backend="pillow")
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)[16:]
    side = img.shape[0]
    top, bottom = img[int(side / 6), side // 2], img[int(5 * side / 6), side // 2]
    assert top.sum() > bottom.sum() + 200                     # the mode at y = 2 is drawn high
    red = (img[..., 0] == 255) & (img[..., 1] == 60)
    rows, cols = np.nonzero(red)
    assert red.sum() > 0 and rows.mean() > 0.75 * side and cols.mean() < 0.25 * side   # sample at (-2, -2)


@pytest.mark.parametrize("with_density", [False, True])
def test_matplotlib_png_has_the_size(tmp_path, with_density):
    pytest.importorskip("matplotlib")
    path = tmp_path / "m.png"
    plot_landscape(Gaussian(), path, (-3, 3), samples=np.zeros((5, 2)),
                   density=toy2d.get("rings") if with_density else None, resolution=40, size=(500, 260),
                   backend="matplotlib")
    assert png_size(path) == (500, 260)
    Image.open(path).verify()


def test_plot_on_the_device_of_the_energy(tmp_path, device, xp):
    from npjem.ebm import MLPEnergy
    energy = MLPEnergy(2, hidden=(8,), device=device, dtype=np.float64, generator=0)
    samples = xp.zeros((3, 2))
    plot_landscape(energy, tmp_path / "d.png", (-2, 2), samples=samples, resolution=20, size=(120, 80),
                   backend="pillow")
    assert png_size(tmp_path / "d.png") == (120, 80)
    assert math.isfinite(grid_nll(energy, samples, (-2, 2), 50))


@pytest.mark.parametrize("kwargs, match", [
    (dict(bounds=(1, -1)), "bounds"),
    (dict(bounds=3), "bounds"),
    (dict(resolution=1), "resolution"),
    (dict(size=(10, 400)), r"size\[0\]"),
    (dict(size=400), "size"),
    (dict(backend="svg"), "backend"),
    (dict(samples=np.zeros((3, 3))), "samples"),
])
def test_plot_names_bad_arguments(tmp_path, kwargs, match):
    args = dict(bounds=(-3, 3), resolution=10, backend="pillow")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        plot_landscape(Gaussian(), tmp_path / "x.png", **args)


def test_bad_paths_points_and_energies_raise(tmp_path):
    with pytest.raises(ValueError, match="folder does not exist"):
        plot_landscape(Gaussian(), tmp_path / "missing" / "x.png", (-1, 1), backend="pillow")
    with pytest.raises(ValueError, match="x must have shape"):
        grid_nll(Gaussian(), np.zeros((3, 3)), (-1, 1))
    with pytest.raises(ValueError, match="energy must map"):
        grid_log_partition(lambda x: x.sum(), (-1, 1), 10)
    with pytest.raises(ValueError, match="singular"):
        gaussian_nll(np.ones((5, 2)), np.ones((5, 2)))
    with pytest.raises(TypeError, match="density"):
        plot_landscape(Gaussian(), tmp_path / "x.png", (-1, 1), density=3, backend="pillow", resolution=10)
