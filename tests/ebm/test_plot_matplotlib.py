"""npjem.ebm.plot's matplotlib renderer read back pixel by pixel: the landscape upright (high y at
the top, high x on the right), each panel at full colour range, the samples red on the learned
panel only and only inside the box. (The Pillow renderer's equivalents are in
test_plot_whole.py and test_landscape_plot.py.)"""
import numpy as np
import pytest

from npjem.ebm.plot import plot_landscape

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")


def bump(centre, s=0.25):
    """E(x) = ‖x − centre‖² / 2s²: one narrow mode at ``centre``."""
    c = np.asarray(centre, dtype=float)

    def energy(x):
        d = x - x.xp.asarray(c)
        return (d * d).sum(axis=1) / (2 * s * s)
    return energy


def render(tmp_path, energy, samples=None, density=None, size=(300, 300)):
    path = tmp_path / "m.png"
    plot_landscape(energy, path, (-1, 1), samples=samples, density=density, resolution=40, size=size,
                   backend="matplotlib")
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def yellow(img):
    # viridis' top is yellow (253, 231, 37); nothing else in the figure is that colour.
    return (img[..., 0] > 200) & (img[..., 1] > 180) & (img[..., 2] < 100)


def red(img):
    return (img[..., 0] > 200) & (img[..., 1] < 120) & (img[..., 2] < 120)


def dark(img):
    # viridis' bottom is dark purple (68, 1, 84): the low-density part of a panel.
    return (img[..., 0] < 110) & (img[..., 1] < 60) & (img[..., 2] > 50)


def box(mask):
    """The panel's square: the rows and columns mostly covered by its colours (not the title)."""
    rows, cols = mask.sum(axis=1), mask.sum(axis=0)
    r, c = np.nonzero(rows > rows.max() / 2)[0], np.nonzero(cols > cols.max() / 2)[0]
    return r.min(), r.max(), c.min(), c.max()


@pytest.mark.parametrize("centre, right, top", [((0.5, 0.5), True, True), ((-0.5, 0.5), False, True),
                                                ((0.5, -0.5), True, False)])
def test_the_mode_is_drawn_where_it_lies(tmp_path, centre, right, top):
    img = render(tmp_path, bump(centre))
    r0, r1, c0, c1 = box(dark(img) | yellow(img))
    mid_r, mid_c = (r0 + r1) / 2, (c0 + c1) / 2
    yr, yc = np.nonzero(yellow(img))
    assert yellow(img).sum() > 0
    assert (yc.mean() > mid_c) == right and (yr.mean() < mid_r) == top
    # the box fills the axes: the panel is a square of the image's colours, its mode a quarter in
    h, w = r1 - r0, c1 - c0
    assert abs(h - w) <= 2
    assert abs(abs(yc.mean() - mid_c) - w / 4) < 0.08 * w and abs(abs(yr.mean() - mid_r) - h / 4) < 0.08 * h


def test_each_panel_spans_the_whole_colour_map(tmp_path):
    # The true density's panel is 1000 times smaller in value than the learned one, yet both reach
    # the map's top: each panel is scaled to its own range.
    class Tiny:
        def log_density(self, pts):
            return -((pts - np.array([-0.5, -0.5])) ** 2).sum(axis=1) / (2 * 0.25 ** 2) + np.log(1e-3)
    img = render(tmp_path, bump((0.5, 0.5)), density=Tiny(), size=(600, 300))
    left, right = img[:, :300], img[:, 300:]
    assert yellow(left).sum() > 0 and yellow(right).sum() > 0
    yr, yc = np.nonzero(yellow(right))
    r0, r1, c0, c1 = box(dark(right) | yellow(right))
    assert yc.mean() < (c0 + c1) / 2 and yr.mean() > (r0 + r1) / 2  # its mode at (−½, −½)


def test_samples_are_red_on_the_learned_panel_only_and_inside_the_box(tmp_path):
    class Flat:
        def log_density(self, pts):
            return np.zeros(len(pts))
    samples = np.array([[-0.5, 0.5]] * 20)           # upper left: x and y told apart
    img = render(tmp_path, bump((0.0, 0.0)), samples=samples, density=Flat(), size=(600, 300))
    left, right = img[:, :300], img[:, 300:]
    assert red(right).sum() == 0
    r0, r1, c0, c1 = box(dark(left) | yellow(left) | red(left))
    rr, rc = np.nonzero(red(left))
    assert red(left).sum() > 0
    np.testing.assert_allclose([rc.mean(), rr.mean()], [c0 + (c1 - c0) / 4, r0 + (r1 - r0) / 4], atol=3)
    # Samples far outside the box, on either side, leave the axes on the box: the panel does not
    # shrink to show them.
    inside = render(tmp_path, bump((0.0, 0.0)))
    for far in ([5.0, 5.0], [-5.0, -5.0]):
        outside = render(tmp_path, bump((0.0, 0.0)), samples=np.array([far]))
        assert red(outside).sum() == 0
        np.testing.assert_array_equal(dark(outside) | yellow(outside), dark(inside) | yellow(inside))


def test_the_panels_fill_the_figure(tmp_path):
    # One row of panels: a 300 × 300 figure's one panel is most of its height and width.
    img = render(tmp_path, bump((0.0, 0.0)))
    r0, r1, c0, c1 = box(dark(img) | yellow(img))
    assert r1 - r0 > 0.6 * 300 and c1 - c0 > 0.6 * 300


def test_the_title_and_the_panel_names_are_written_above_the_panels(tmp_path):
    # Text is dark on the white margin above the panel: the panel's name without a title, and
    # more of it (a second line, higher up) with one.
    def text_rows(img):
        r0 = box(dark(img) | yellow(img))[0]
        ink = (img[:r0 - 2].sum(axis=2) < 3 * 160).any(axis=1)
        return np.nonzero(ink)[0]
    plain = render(tmp_path, bump((0.0, 0.0)))
    path = tmp_path / "t.png"
    plot_landscape(bump((0.0, 0.0)), path, (-1, 1), resolution=40, size=(300, 300), title="a title",
                   backend="matplotlib")
    titled = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert len(text_rows(plain)) > 3                          # the panel's name
    assert text_rows(titled).min() < text_rows(plain).min() - 3   # the title, above it


def test_the_file_is_a_png_whatever_its_name(tmp_path):
    path = tmp_path / "landscape.data"
    plot_landscape(bump((0.0, 0.0)), path, (-1, 1), resolution=20, size=(100, 100), backend="matplotlib")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_each_grid_cell_is_one_flat_colour(tmp_path):
    # A checkerboard energy, 0 on one colour of cells and 3 on the other, 100 cells a side in a
    # ~230-px panel: drawn cell by cell, every pixel of the panel is one of two colours; smoothing
    # between cells (matplotlib's default interpolation at this size) would blend them.
    from npjem import Tensor

    lo, hi, n = -1.0, 1.0, 100
    h = (hi - lo) / n

    def checker(x):
        xp = x.xp
        k = xp.floor((x.data - lo) / h).sum(axis=1)
        return Tensor(3.0 * (k % 2))
    path = tmp_path / "c.png"
    plot_landscape(checker, path, (lo, hi), resolution=n, size=(300, 300), backend="matplotlib")
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    r0, r1, c0, c1 = box(dark(img) | yellow(img))
    panel = img[r0 + 2:r1 - 1, c0 + 2:c1 - 1].reshape(-1, 3)
    colours = np.unique(panel, axis=0)
    assert len(colours) == 2
