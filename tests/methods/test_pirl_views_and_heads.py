"""PIRL's augmentation recipe (``pirl_views``), its view maker (``PIRLViews``) and its jigsaw head g
(``JigsawHead``): the values the docstrings give, the one generator every draw comes from, and
the parts a user may leave out."""
import numpy as np
import pytest

from npjem import random as nrandom
from npjem.autograd import Tensor
from npjem.data.augment import (
    ColorJitter,
    Compose,
    Jigsaw,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
)
from npjem.methods import JigsawHead, PIRLViews, pirl_views

from conftest import cpu_only

pytestmark = cpu_only


def images(n=2, size=12, seed=0):
    return np.random.default_rng(seed).random((n, 3, size, size)).astype(np.float32)


def recipe(size, tile, s):
    """pirl_views' docstring, spelt out: the image view, the tiles' per-tile transform and source."""
    image = Compose([RandomResizedCrop(size, scale=(0.08, 1.0)), RandomHorizontalFlip(0.5),
                     ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=0.8), RandomGrayscale(0.2)])
    per_tile = Compose([ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8), RandomGrayscale(0.2)])
    source = Compose([RandomResizedCrop(size, scale=(0.6, 1.0)), RandomHorizontalFlip(0.5)])
    return PIRLViews(image, Jigsaw(grid=3, tile_size=tile, transform=per_tile), tile_source=source)


def test_pirl_views_defaults_are_the_documented_recipe():
    # 32 px, a 3 × 3 grid of 10-px cells, tiles of round(0.8 · 10) = 8 px, colour strength 0.5
    assert repr(pirl_views()) == repr(recipe(32, 8, 0.5))
    assert repr(pirl_views(24, strength=1.0)) == repr(recipe(24, 6, 1.0))  # round(0.8 · 8) = 6
    image, tiles = pirl_views()(images(size=32), generator=0)
    assert image.shape == (2, 3, 32, 32) and tiles.shape == (2, 9, 3, 8, 8)


def test_pirl_views_tiles_follow_the_grid_and_stay_at_least_one_pixel():
    v = pirl_views(16, grid=2)  # cells of 8 px, tiles of round(6.4) = 6
    assert (v.jigsaw.grid, v.jigsaw.tile_size) == (2, (6, 6))
    assert pirl_views(10, grid=3).jigsaw.tile_size == (2, 2)  # cells of 3 px (10 // 3), round(2.4) = 2
    assert pirl_views(3, grid=3).jigsaw.tile_size == (1, 1)   # cells of 1 px: round(0.8) = 1
    assert pirl_views(2, grid=2).jigsaw.tile_size == (1, 1)   # round(0.8) = 1 as well, never 0
    assert pirl_views(32, tile_size=5).jigsaw.tile_size == (5, 5)


def test_every_draw_comes_in_order_from_the_one_generator_given():
    x = images()
    image_tf = Compose([RandomResizedCrop(8, scale=(0.3, 1.0)), RandomHorizontalFlip(0.5)])
    source = Compose([RandomResizedCrop(9, scale=(0.5, 1.0))])
    jig = Jigsaw(grid=3, tile_size=2)
    views = PIRLViews(image_tf, jig, tile_source=source)
    img, tiles = views(x, generator=7)
    g = nrandom.Generator(7, "cpu")
    want_img = image_tf(x, generator=g)
    want_tiles, _ = jig(source(x, generator=g), generator=g)
    np.testing.assert_array_equal(img, want_img)
    np.testing.assert_array_equal(tiles, want_tiles)
    again = views(x, generator=nrandom.Generator(7, "cpu"))  # a Generator is used as given
    np.testing.assert_array_equal(again[1], tiles)


def test_without_a_tile_source_the_tiles_are_cut_from_the_image_itself():
    x = images(size=9)
    jig = Jigsaw(grid=3)
    img, tiles = PIRLViews(None, jig)(x, generator=3)
    np.testing.assert_array_equal(img, x)  # no image transform: the batch itself
    want, _ = jig(x, generator=nrandom.Generator(3, "cpu"))
    np.testing.assert_array_equal(tiles, want)
    _, flipped = PIRLViews(None, jig, tile_source=lambda a, generator=None: a[..., ::-1])(x, generator=3)
    want, _ = jig(x[..., ::-1], generator=nrandom.Generator(3, "cpu"))
    np.testing.assert_array_equal(flipped, want)


def test_pirl_views_checks_its_parts_naming_them():
    jig = Jigsaw(grid=3)
    with pytest.raises(TypeError, match="image_transform must be callable, got int"):
        PIRLViews(3, jig)
    with pytest.raises(TypeError, match="tile_source must be callable, got str"):
        PIRLViews(None, jig, tile_source="crop")
    with pytest.raises(TypeError, match="jigsaw must be an npjem.data.augment.Jigsaw, got function"):
        PIRLViews(None, lambda a, generator=None: a)


def test_jigsaw_head_defaults_are_pirls_widths():
    # PIRL §3: 128-d per tile, nine tiles concatenated, 128-d out
    head = JigsawHead(6, generator=0)
    assert head.num_tiles == 9
    assert (head.tile.weight.shape, head.out.weight.shape) == ((128, 6), (128, 9 * 128))


def test_jigsaw_head_is_a_shared_tile_layer_then_one_on_the_concatenation():
    head = JigsawHead(5, num_tiles=4, tile_dim=3, out_dim=2, generator=0)
    h = np.random.default_rng(1).normal(size=(2, 4, 5))
    per_tile = h @ head.tile.weight.data.T + head.tile.bias.data          # (2, 4, 3)
    want = per_tile.reshape(2, 12) @ head.out.weight.data.T + head.out.bias.data
    np.testing.assert_allclose(head(Tensor(h)).numpy(), want, rtol=1e-6)
    with pytest.raises(ValueError, match=r"JigsawHead expects tile features of shape \(N, 4, F\), got \(2, 3, 5\)"):
        head(Tensor(h[:, :3]))
