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
