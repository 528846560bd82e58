"""npjem.plot: PNG line charts and scatter plots, with Pillow alone and with matplotlib."""
import numpy as np
import pytest
from PIL import Image

from npjem import plot

BACKENDS = ["pillow", pytest.param("matplotlib", marks=pytest.mark.skipif(
    "matplotlib" not in plot.available_backends(), reason="matplotlib not installed"))]


def _rgb(hex_colour):
    h = hex_colour.lstrip("#")
    return tuple(int(h[i:i + 2], 16) for i in (0, 2, 4))


def _has_colour(img, colour, tol=30, min_pixels=5):
    """Pixels of ``colour``, drawn solid or translucent over white (the scatter's dots are)."""
    a = np.asarray(img.convert("RGB")).astype(float)
    close = np.zeros(a.shape[:2], dtype=bool)
    for alpha in (1.0, 0.7, 170 / 255):
        blend = alpha * np.array(colour, dtype=float) + (1 - alpha) * 255.0
        close |= np.abs(a - blend).sum(axis=2) <= tol
    return int(close.sum()) >= min_pixels


@pytest.mark.parametrize("backend", BACKENDS)
def test_curves_writes_a_png_of_the_requested_size_with_each_series(tmp_path, backend):
    e = np.arange(1, 11)
    path = plot.curves({"loss": {"loss": 5 - np.log(e)}, "rank": {"h": 3.0 * e, "z": 2.0 * e}},
                       tmp_path / "c.png", x=e, xlabel="epoch", title="t", size=(800, 360), backend=backend)
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (800, 360)
        # The first two palette colours draw the series; the picture is not blank.
        assert _has_colour(im, _rgb(plot.PALETTE[0])) and _has_colour(im, _rgb(plot.PALETTE[1]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_dashed_series_take_their_own_dark_colours_and_never_a_solid_ones(tmp_path, backend):
    # Eleven solid lines and two dashed: the solid ones cycle the ten colours, the dashed ones take
    # black and plum, so a baseline never shares a colour with a method.
    x = np.arange(1, 6)
    series = {f"m{j}": (x, 0.1 * j + 0.01 * x) for j in range(11)}
    series.update({"floor": (x, np.full(5, -0.5)), "ceiling": (x, np.full(5, 2.0))})
    path = plot.line_chart(series, tmp_path / "d.png", dashed=["floor", "ceiling"], size=(700, 500), backend=backend)
    with Image.open(path) as im:
        a = np.asarray(im.convert("RGB")).astype(int)
    def rows_of(colour, dashes):
        # Rows where the colour covers 100 pixels or more (a line, not a letter's edge), in 8 or
        # more separate pieces when ``dashes`` (a dashed line, not the axes' frame).
        on = (np.abs(a - _rgb(colour)).sum(axis=2) <= 30)
        pieces = (np.diff(on.astype(int), axis=1) == 1).sum(axis=1)
        return np.nonzero((on.sum(axis=1) >= 100) & ((pieces >= 8) if dashes else True))[0]

    floor, ceiling = rows_of(plot.DASHED_PALETTE[0], True), rows_of(plot.DASHED_PALETTE[1], True)
    # The floor (black) is the lowest line, the ceiling (plum) the highest; no solid colour is drawn
    # dashed at either height.
    assert floor.size and ceiling.size and floor.min() > ceiling.max() + 200
    solid = np.concatenate([rows_of(c, False) for c in plot.PALETTE])
    assert solid.size and ceiling.max() < solid.min() and solid.max() < floor.min()


def test_series_colours_cycle_each_palette_on_its_own():
    k = len(plot.DASHED_PALETTE)
    names = ["d0", "s0"] + [f"d{j}" for j in range(1, k + 1)] + [f"s{j}" for j in range(1, 12)]
    got = plot._series_colours([(n, None, None) for n in names], frozenset(n for n in names if n[0] == "d"))
    want = {f"d{j}": plot.DASHED_PALETTE[j % k] for j in range(k + 1)}
    want.update({f"s{j}": plot.PALETTE[j % 10] for j in range(12)})
    assert got == [want[n] for n in names]


def test_no_dashed_colour_is_close_to_a_solid_one():
    for d in plot.DASHED_PALETTE:
        for c in plot.PALETTE:
            assert sum(abs(a - b) for a, b in zip(_rgb(d), _rgb(c))) > 90, (d, c)


@pytest.mark.parametrize("backend", BACKENDS)
def test_line_chart_default_size_and_nan_gap(tmp_path, backend):
    y = np.array([1.0, 2.0, np.nan, 4.0, 5.0])
    path = plot.line_chart({"y": y}, tmp_path / "l.png", title="gap", xlabel="x", ylabel="y", backend=backend)
    with Image.open(path) as im:
        assert im.size == (640, 420)


@pytest.mark.parametrize("backend", BACKENDS)
def test_scatter_colours_every_class_present(tmp_path, backend):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 50)
    pts = rng.normal(size=(200, 2)) + 6 * np.stack([np.cos(labels), np.sin(labels)], axis=1)
    path = plot.scatter(pts, labels, ["a", "b", "c", "d", "unused"], tmp_path / "s.png", title="s",
                        backend=backend)
    with Image.open(path) as im:
        assert im.size == (760, 560)
        for c in range(4):
            assert _has_colour(im, _rgb(plot.PALETTE[c]), min_pixels=20), c


def test_pillow_default_size_of_curves_follows_the_panels(tmp_path):
    path = plot.curves({"a": {"a": [1, 2]}, "b": {"b": [1, 2]}, "c": {"c": [2, 1]}}, tmp_path / "p.png",
                       backend="pillow")
    with Image.open(path) as im:
        assert im.size == (1200, 380)


def test_pca_2d_finds_the_main_axis_with_a_fixed_sign():
    rng = np.random.default_rng(1)
    t = rng.normal(size=200)
    x = np.stack([3 * t, 0.1 * rng.normal(size=200), -2 * t], axis=1) + 5.0
    p = plot.pca_2d(x)
    assert p.shape == (200, 2)
    assert abs(np.corrcoef(p[:, 0], t)[0, 1]) > 0.99
    np.testing.assert_allclose(p.mean(axis=0), 0.0, atol=1e-9)
    assert p[:, 0].var() > 100 * p[:, 1].var()
    np.testing.assert_allclose(plot.pca_2d(-x + 1.0), plot.pca_2d(-x), atol=1e-9)  # centred
    # The sign rule: the largest loading of each component is positive, so the picture is stable.
    np.testing.assert_allclose(plot.pca_2d(x[::-1])[::-1], p, atol=1e-9)
    one = plot.pca_2d(np.arange(6.0).reshape(6, 1))
    assert one.shape == (6, 2) and np.all(one[:, 1] == 0)


def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="backend"):
        plot.line_chart({"a": [1, 2]}, tmp_path / "x.png", backend="svg")
    with pytest.raises(ValueError, match="size"):
        plot.line_chart({"a": [1, 2]}, tmp_path / "x.png", size=(10, 10))
    with pytest.raises(ValueError, match="x has 3"):
        plot.line_chart({"a": [1, 2]}, tmp_path / "x.png", x=[1, 2, 3])
    with pytest.raises(ValueError, match="non-empty"):
        plot.curves({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        plot.scatter(np.zeros((5, 3)), np.zeros(5, dtype=int), ["a"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="labels must lie"):
        plot.scatter(np.zeros((5, 2)), np.arange(5), ["a", "b"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="integers"):
        plot.scatter(np.zeros((5, 2)), np.zeros(5), ["a"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="n >= 2"):
        plot.pca_2d(np.zeros((1, 3)))


def test_auto_backend_falls_back_to_pillow_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setattr(plot, "_has_matplotlib", lambda: False)
    assert plot.available_backends() == ("pillow",)
    assert plot._resolve_backend("auto") == "pillow"
    with pytest.raises(ImportError, match=r"npjem\[plot\]"):
        plot.line_chart({"a": [1, 2]}, tmp_path / "x.png", backend="matplotlib")
    path = plot.line_chart({"a": [1, 2]}, tmp_path / "x.png")
    with Image.open(path) as im:
        assert im.size == (640, 420)


def test_nice_ticks_are_round_and_cover_the_range():
    assert plot._nice_ticks(0.0, 1.0) == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ticks = plot._nice_ticks(0.061, 0.1003)
    assert ticks[0] >= 0.061 and ticks[-1] <= 0.1003 and len(ticks) >= 3
    assert plot._nice_ticks(2.0, 2.0) == [2.0]
    # Epochs: whole numbers only, even on a short axis.
    assert plot._nice_ticks(0.97, 2.03, integer=True) == [1.0, 2.0]
    assert plot._integral([1, 2, 3]) and not plot._integral([1, 1.5])


def test_pillow_legend_draws_a_dashed_sample_for_a_dashed_series():
    from PIL import ImageDraw

    img = Image.new("RGB", (120, 60), "white")
    draw = ImageDraw.Draw(img)
    bottom = plot._legend(draw, [("a", (0, 0, 0)), ("b", (0, 0, 0))], 10, 5, plot._font(12), dashed={"b"})
    a = np.asarray(img).sum(axis=2)[:, :30] < 100  # the samples' dark pixels, left of the names
    # Each sample is 3 pixels thick, centred 8 below its row's top, 18 wide from x = 10; the dashed
    # one is two dashes of 7 with a gap of 3 between them. Rows are 18 apart.
    solid, dashes = list(range(10, 29)), list(range(10, 18)) + list(range(21, 29))
    assert [np.nonzero(a[r])[0].tolist() for r in range(11, 16)] == [[], solid, solid, solid, []]
    assert [np.nonzero(a[r])[0].tolist() for r in range(29, 34)] == [[], dashes, dashes, dashes, []]
    assert bottom == 5 + 2 * 18


@pytest.mark.skipif("matplotlib" not in plot.available_backends(), reason="matplotlib not installed")
def test_matplotlib_puts_a_long_legend_beside_the_panel(tmp_path):
    # Up to 8 series the legend sits inside the panel; with more it would hide lines, so it goes to
    # the right of the panel, where nothing else is drawn.
    x = np.arange(1, 6)

    def panel_right_edge(n):  # the last column that is dark over half the picture's height: the frame
        series = {f"method {j}": (x, 0.1 * j + 0.01 * x) for j in range(n)}
        path = plot.line_chart(series, tmp_path / f"{n}.png", size=(800, 400), backend="matplotlib")
        with Image.open(path) as im:
            a = np.asarray(im.convert("RGB")).astype(int)
        frame = np.nonzero((a.sum(axis=2) < 200).sum(axis=0) > 200)[0]
        return int(frame.max()), a

    inside, _ = panel_right_edge(8)
    beside, a = panel_right_edge(9)
    assert inside > 800 - 30 and beside < 800 - 100
    assert (a[:, beside + 10:].sum(axis=2) < 300).sum() > 200  # the legend's text, right of the frame
