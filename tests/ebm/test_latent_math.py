"""npjem.ebm.latent's K-means seedings as the papers define them: k-means++ draws each new
prototype ∝ the squared distance to the nearest chosen one (so never a point already covered),
its first one uniformly over all N points; init="random" takes K distinct data points."""
import numpy as np
import pytest

from npjem.ebm.latent import KMeansEnergy


def _rows(a):
    return {tuple(r) for r in np.round(a, 12)}


@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0])
def test_kmeans_plusplus_picks_every_distinct_location_once(scale):
    # Three locations, repeated: a chosen location has d² = 0 and can never be drawn again, so
    # K = 3 prototypes are the three locations, whatever the scale of the distances.
    sites = scale * np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0]])
    y = np.repeat(sites, [5, 1, 2], axis=0)
    for seed in range(8):
        km = KMeansEnergy(3, 2, dtype=np.float64).init_kmeans_plusplus(y, generator=seed)
        assert _rows(km.weight.data) == _rows(sites), seed


def test_kmeans_plusplus_with_fewer_locations_than_clusters_takes_data_points():
    # After both locations are chosen every d² is 0: the next prototype is any data point.
    y = np.repeat(np.array([[0.0, 1.0], [3.0, -1.0]]), 3, axis=0)
    km = KMeansEnergy(3, 2, dtype=np.float64).init_kmeans_plusplus(y, generator=0)
    assert _rows(km.weight.data) == _rows(y)


def test_kmeans_plusplus_first_prototype_is_uniform_over_all_points():
    y = np.arange(6, dtype=np.float64).reshape(6, 1)
    firsts = {float(KMeansEnergy(1, 1, dtype=np.float64).init_kmeans_plusplus(y, generator=s).weight.data[0, 0])
              for s in range(60)}
    assert firsts == set(y[:, 0].tolist())


@pytest.mark.parametrize("init", ["init_random", "init_kmeans_plusplus"])
def test_seedings_keep_the_model_dtype(init):
    y = np.random.default_rng(0).standard_normal((6, 2))
    km = getattr(KMeansEnergy(2, 2, dtype=np.float32), init)(y, generator=0)
    assert km.weight.dtype == np.float32


def test_init_random_needs_k_points_of_positive_weight():
    y = np.random.default_rng(1).standard_normal((5, 2))
    with pytest.raises(ValueError, match="sample_weight must give at least n_clusters = 3 points"):
        KMeansEnergy(3, 2, dtype=np.float64).init_random(y, generator=0, sample_weight=np.array([1.0, 2, 0, 0, 0]))
