"""npjem.ebm.plot by value (the survivors of a whole mutmut run of the file): the viridis map at
its stops, the Pillow panels' geometry pixel by pixel, which samples are drawn and where, the grid
NLL's pieces and the argument checks at their edges."""
import math

import numpy as np
import pytest

from npjem import Tensor
from npjem.ebm import plot as P

Image = pytest.importorskip("PIL.Image")

STOPS = P._VIRIDIS


def test_colour_map_hits_its_stops_and_interpolates_between_them():
    # Nine stops at 0, 1/8, ..., 1; halfway between two stops is their mean (rounded).
    v = np.array([0.0, 0.125, 0.5, 1.0, 1.0 / 16, -0.5, 1.5])
    rgb = P._colour(v)
    assert rgb.dtype == np.uint8 and rgb.shape == (7, 3)
    np.testing.assert_array_equal(rgb[:4], STOPS[[0, 1, 4, 8]])
    np.testing.assert_array_equal(rgb[4], np.round((STOPS[0] + STOPS[1]) / 2))
    np.testing.assert_array_equal(rgb[5:], STOPS[[0, 8]])        # clipped to [0, 1]


def _render(panels, samples=None, size=(200, 116), bounds=(-1.0, 1.0), title=None, tmp_path=None):
    path = tmp_path / "r.png"
    P._render_pillow(panels, samples, bounds, size, title, path)
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def test_pillow_panels_side_by_side_each_scaled_to_its_maximum(tmp_path):
    # 200 × 116 px, two panels: a 16-px title strip, then two 100-px squares side by side; a 2 × 2
    # image is blown up into 50-px blocks (nearest neighbour), each panel divided by its maximum.
    a = np.array([[0.0, 1.0], [0.5, 0.25]])
    b = np.array([[0.0, 2.0], [4.0, 1.0]])
    img = _render([("a", a), ("b", b)], tmp_path=tmp_path)
    assert img.shape == (116, 200, 3)
    for k, panel in enumerate((a, b)):
        expected = P._colour(panel / panel.max())
        for i in range(2):
            for j in range(2):
                block = img[16 + 50 * i:16 + 50 * (i + 1), 100 * k + 50 * j:100 * k + 50 * (j + 1)]
                if k == 0 and i == 0 and j == 0:
                    block = block[:, 30:]                 # the title text sits at the top left
                np.testing.assert_array_equal(block[5:], np.broadcast_to(expected[i, j], block[5:].shape))


def test_pillow_panel_is_centred_in_its_slot_and_an_empty_one_is_dark(tmp_path):
    # 300 × 116 px, one panel: a 100-px square centred in the 300-px slot (x from 100 to 199),
    # white around it; an all-zero density is drawn at the map's bottom colour (no 0/0).
    img = _render([("zero", np.zeros((4, 4)))], size=(300, 116), tmp_path=tmp_path)
    np.testing.assert_array_equal(img[20:, 100:200], np.broadcast_to(STOPS[0], (96, 100, 3)))
    assert (img[20:, :100] == 255).all() and (img[20:, 200:] == 255).all()


def test_pillow_samples_are_red_dots_where_they_lie_and_only_inside_the_box(tmp_path):
    # Box [−1, 1]², panel at x ∈ [0, 100), y ∈ [16, 116): a point (u, v) is drawn at
    # x = (u + 1)/2 · 99, y = 16 + (1 − v)/2 · 99. Points on the box's edge are inside.
    samples = np.array([[0.0, 0.0], [-1.0, 1.0], [1.5, 0.0], [0.0, -1.2]])
    img = _render([("a", np.ones((2, 2)))], samples=samples, size=(100, 116), tmp_path=tmp_path)
    red = (img[..., 0] == 255) & (img[..., 1] == 60) & (img[..., 2] == 60)
    rows, cols = np.nonzero(red)
    centre, corner = rows > 40, rows <= 40
    # (0, 0) at (65.5, 49.5) and (−1, 1) at (16, 0): a dot of radius 1 around each, nothing else.
    assert abs(rows[centre].mean() - 65.5) <= 0.6 and abs(cols[centre].mean() - 49.5) <= 0.6
    assert abs(rows[corner].mean() - 16) <= 0.6 and cols[corner].max() <= 1
    assert rows.max() <= 67 and cols.max() <= 51   # nothing for (1.5, 0) or (0, −1.2)


def test_samples_are_taken_from_arrays_or_tensors_at_most_3000():
    a = np.arange(6002.0).reshape(3001, 2)
    np.testing.assert_array_equal(P._samples_host(a), a[:3000])
    np.testing.assert_array_equal(P._samples_host(Tensor(a)), a[:3000])
    assert P._samples_host(None) is None


class _Recorder:
    """E(x) = x₀ + 10 x₁, recording the dtype and batch sizes it is called with."""

    def __init__(self):
        self.calls = []

    def __call__(self, x):
        self.calls.append((x.dtype, x.shape[0]))
        return x[:, 0] + x[:, 1] * 10.0


def test_energy_is_evaluated_in_float64_in_chunks_without_parameters():
    e = _Recorder()
    pts = np.arange(14.0).reshape(7, 2)
    out = P._evaluate(e, pts, chunk=3)
    np.testing.assert_array_equal(out, pts[:, 0] + 10 * pts[:, 1])
    assert e.calls == [(np.float64, 3), (np.float64, 3), (np.float64, 1)]
    assert out.dtype == np.float64


def test_energy_with_parameters_is_evaluated_in_their_dtype():
    from npjem.ebm import MLPEnergy

    energy = MLPEnergy(2, hidden=(3,), dtype=np.float32, generator=0)
    assert P._device_dtype(energy) == ("cpu", np.float32)
    c, e = P.energy_grid(energy, (-1, 1), resolution=3)
    x = np.stack(np.meshgrid(c, c), axis=-1).reshape(-1, 2).astype(np.float32)
    np.testing.assert_array_equal(e.ravel(), energy(Tensor(x)).data.astype(np.float64))


def test_log_partition_is_stable_far_from_zero():
    # E = ‖x‖²/(2·0.49) + 1000: log Z = log(2π·0.49) − 1000, not −inf.
    def gauss(x):
        return (x * x).sum(axis=1) * (1 / 0.98) + 1000.0

    assert P.grid_log_partition(gauss, (-5, 5), 200) == pytest.approx(math.log(2 * math.pi * 0.49) - 1000, abs=1e-6)


def test_gaussian_nll_in_one_dimension_by_hand():
    tr = np.array([[0.0], [2.0], [4.0]])              # μ = 2, σ² = 8/3 (maximum likelihood)
    te = np.array([[1.0], [5.0]])
    var = 8 / 3
    expected = np.mean([0.5 * (x - 2) ** 2 / var + 0.5 * math.log(2 * math.pi * var) for x in (1.0, 5.0)])
    assert P.gaussian_nll(Tensor(tr), Tensor(te)) == pytest.approx(expected, rel=1e-12)
    assert P.grid_nll(lambda x: (x * x).sum(axis=1), Tensor(np.zeros((2, 2))), (-4, 4), 50) == \
        pytest.approx(P.grid_log_partition(lambda x: (x * x).sum(axis=1), (-4, 4), 50))


@pytest.mark.parametrize("call, match", [
    (lambda: P.gaussian_nll(np.zeros((1, 2)), np.zeros((3, 2))), "train must have shape"),
    (lambda: P.gaussian_nll(np.zeros(4), np.zeros((3, 2))), "train must have shape"),
    (lambda: P.gaussian_nll(np.eye(3), np.zeros((3, 2))), "test must have shape"),
    (lambda: P.gaussian_nll(np.eye(3), np.zeros(3)), "test must have shape"),
    (lambda: P.grid_nll(lambda x: x[:, 0], np.zeros((0, 2)), (-1, 1)), "x must have shape"),
    (lambda: P.grid_nll(lambda x: x[:, 0], np.zeros(2), (-1, 1)), "x must have shape"),
    (lambda: P.energy_grid(lambda x: x[:, 0], (1.0, 1.0)), "low < high"),
    (lambda: P.energy_grid(lambda x: x[:, 0], (0, 1), resolution=1), "resolution"),
    (lambda: P.energy_grid(lambda x: x[:, :1], (0, 1), resolution=2), "energy must map"),
])
def test_edges_of_the_checks(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_the_grid_at_resolution_two_and_the_true_panel_upright():
    c, e = P.energy_grid(lambda x: x[:, 0] * 1.0, (0, 1), resolution=2)
    np.testing.assert_allclose(c, [0.25, 0.75])
    # The true density's panel is exp(log p) on the same grid, high y in the top row.
    panels = P._panels(lambda x: (x * x).sum(axis=1), lambda pts: pts[:, 1] * 2.0, (0.0, 1.0), 2)
    assert [t for t, _ in panels] == ["learned exp(-E)/Z", "true density"]
    np.testing.assert_allclose(panels[1][1], np.exp([[1.5, 1.5], [0.5, 0.5]]))
    learned = np.exp(-np.array([[0.625, 1.125], [0.125, 0.625]]))
    np.testing.assert_allclose(panels[0][1], learned / (learned.sum() * 0.25), rtol=1e-12)


def test_plot_landscape_returns_the_path_and_accepts_the_smallest_size(tmp_path):
    path = str(tmp_path / "small.png")
    assert P.plot_landscape(lambda x: (x * x).sum(axis=1), path, (-1, 1), resolution=2, size=(32, 32)) == path
    assert Image.open(path).size == (32, 32)
    with pytest.raises(ValueError, match=r"size\[1\]"):
        P.plot_landscape(lambda x: (x * x).sum(axis=1), path, (-1, 1), resolution=2, size=(32, 31))


def test_pillow_panel_is_centred_vertically_below_the_title_strip(tmp_path):
    # 100 × 216 px: a 100-px square in the 200 px below the strip, from row 16 + 50 = 66 to 165.
    img = _render([("zero", np.zeros((4, 4)))], size=(100, 216), tmp_path=tmp_path)
    np.testing.assert_array_equal(img[66:166, :], np.broadcast_to(STOPS[0], (100, 100, 3)))
    assert (img[20:66] == 255).all() and (img[166:] == 255).all()


class _Render:
    def __init__(self):
        self.calls = []

    def __call__(self, panels, samples, bounds, size, title, path):
        self.calls.append((len(panels), samples, bounds, size, title, path))


@pytest.mark.parametrize("backend, installed, used", [
    ("matplotlib", False, "matplotlib"), ("pillow", True, "pillow"),
    ("auto", True, "matplotlib"), ("auto", False, "pillow"),
])
def test_backend_choice(monkeypatch, tmp_path, backend, installed, used):
    # "auto" takes matplotlib when it can be imported, Pillow otherwise; a named one is used as is.
    import sys
    import types

    monkeypatch.setitem(sys.modules, "matplotlib", types.ModuleType("matplotlib") if installed else None)
    renders = {"matplotlib": _Render(), "pillow": _Render()}
    monkeypatch.setattr(P, "_render_matplotlib", renders["matplotlib"])
    monkeypatch.setattr(P, "_render_pillow", renders["pillow"])
    path = tmp_path / "b.png"
    P.plot_landscape(lambda x: (x * x).sum(axis=1), path, (-1, 2), samples=np.zeros((2, 2)), resolution=3,
                     size=(64, 48), title="t", backend=backend)
    other = "pillow" if used == "matplotlib" else "matplotlib"
    assert renders[other].calls == []
    (n, samples, bounds, size, title, where), = renders[used].calls
    assert (n, bounds, size, title, where) == (1, (-1.0, 2.0), (64, 48), "t", path)
    np.testing.assert_array_equal(samples, np.zeros((2, 2)))


def test_default_resolution_is_200_cells_a_side(tmp_path):
    e = _Recorder()
    P.plot_landscape(e, tmp_path / "d.png", (-1, 1), size=(64, 48), backend="pillow")
    assert sum(n for _, n in e.calls) == 200 * 200


def _red(img):
    return (img[..., 0] == 255) & (img[..., 1] == 60) & (img[..., 2] == 60)


@pytest.mark.parametrize("size, sample, centre", [
    ((300, 216), (1.0, 0.0), (115, 249)),    # panel x from 50 to 249: u = 1 at x = 50 + 199
    ((200, 316), (0.0, -1.0), (265, 99)),    # panel y from 66 to 265: v = −1 at y = 66 + 199
])
def test_a_sample_on_the_box_edge_is_drawn_on_the_panel_edge(tmp_path, size, sample, centre):
    img = _render([("a", np.ones((2, 2)))], samples=np.array([sample]), size=size, tmp_path=tmp_path)
    rows, cols = np.nonzero(_red(img))
    assert rows.size and abs(rows.mean() - centre[0]) < 0.3 and abs(cols.mean() - centre[1]) < 0.3


def test_samples_outside_the_box_are_not_drawn_in_the_margins(tmp_path):
    # With 50-px white margins left and right, a point just outside the box would land there.
    samples = np.array([[-1.2, 0.0], [1.2, 0.5], [0.0, 1.3], [-1.1, -1.1]])
    img = _render([("a", np.ones((2, 2)))], samples=samples, size=(300, 216), tmp_path=tmp_path)
    assert not _red(img).any()


def test_the_file_is_a_png_whatever_its_name(tmp_path):
    path = tmp_path / "landscape.out"
    P._render_pillow([("a", np.ones((2, 2)))], None, (-1.0, 1.0), (64, 48), None, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_default_resolutions_and_the_resolution_asked_for():
    # energy_grid 200² cells, grid_log_partition and grid_nll 400², or the grid given; one point is
    # enough for an NLL.
    assert P.energy_grid(lambda x: x[:, 0] * 1.0, (0, 1))[0].shape == (200,)
    for call, n in ((lambda e: P.grid_log_partition(e, (0, 1)), 400 * 400),
                    (lambda e: P.grid_log_partition(e, (0, 1), 5), 25),
                    (lambda e: P.grid_nll(e, np.zeros((1, 2)), (0, 1)), 400 * 400 + 1),
                    (lambda e: P.grid_nll(e, np.zeros((1, 2)), (0, 1), 5), 25 + 1)):
        e = _Recorder()
        call(e)
        assert sum(k for _, k in e.calls) == n


def test_gaussian_nll_from_two_training_points():
    # Two points 0 and 2 in 1-D: μ = 1, σ² = 1 (maximum likelihood).
    assert P.gaussian_nll(np.array([[0.0], [2.0]]), np.array([[3.0]])) == \
        pytest.approx(0.5 * 4.0 + 0.5 * math.log(2 * math.pi), rel=1e-12)
