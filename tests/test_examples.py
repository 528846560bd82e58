"""The examples' helper functions (the scripts themselves train, so CI does not run them)."""
import importlib.util
import os

import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cues_example():
    return _load("nearest_neighbour_cues")


def test_pixel_cues_of_a_drawn_square(cues_example):
    x = np.full((1, 3, 16, 16), 0.2)
    x[0, :, 2:6, 8:12] = np.array([0.9, 0.1, 0.1])[:, None, None]  # a 4x4 red square, rows 2-5, cols 8-11
    cues = cues_example.pixel_cues(x)
    np.testing.assert_allclose(cues["background colour"][0], [0.2, 0.2, 0.2])
    np.testing.assert_allclose(cues["foreground colour"][0], [0.9, 0.1, 0.1])
    np.testing.assert_allclose(cues["foreground area"][0], 16 / 256)
    np.testing.assert_allclose(cues["centre row"][0], 3.5)
    np.testing.assert_allclose(cues["centre column"][0], 9.5)
    np.testing.assert_allclose(cues["luma contrast"][0], 0.9 * 0.299 + 0.1 * 0.587 + 0.1 * 0.114 - 0.2)


def test_neighbour_report_sees_what_the_features_encode(cues_example):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 20)
    encoded, ignored = rng.random(200), rng.random(200)
    # features: the label as a one-hot plus the 'encoded' cue; 'ignored' plays no part
    features = np.concatenate([np.eye(10)[labels] * 10.0, encoded[:, None] * 3.0], axis=1)
    report = cues_example.neighbour_report(features, labels, {"encoded": encoded, "ignored": ignored})
    assert report["label agreement"] == 1.0
    assert report["encoded"] < 0.2
    assert 0.7 < report["ignored"] < 1.3


@pytest.fixture(scope="module")
def clusters_example():
    return _load("sinkhorn_clusters")


def test_sinkhorn_clusters_example_makes_equal_groups(clusters_example, tmp_path):
    out = tmp_path / "clusters.png"
    balanced, nearest = clusters_example.main(["--n", "120", "--k", "3", "--steps", "8", "--out", str(out)])
    assert balanced.tolist() == [40, 40, 40]
    assert nearest.sum() == 120
    from PIL import Image

    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape == (480, 480, 3)
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    assert all(tuple(clusters_example.PALETTE[j]) in colours for j in range(3))


def test_sinkhorn_clusters_example_render_places_points(clusters_example):
    pts = np.array([[-1.0, -1.0], [1.0, 1.0]])
    img = np.asarray(clusters_example.render(pts, [0, 1], np.zeros((0, 2)), (-2.0, 2.0), size=101))
    assert tuple(img[75, 25]) == clusters_example.PALETTE[0]  # (-1, -1): bottom left, y grows upwards
    assert tuple(img[25, 75]) == clusters_example.PALETTE[1]
    assert tuple(img[50, 50]) == (255, 255, 255)
