"""scikit-learn's habits in npjem.ebm.latent, tried the way scikit-learn's own tests try them.

K-means as sklearn/cluster/tests/test_k_means.py (relocated empty clusters, n_init, sample
weights), sparse coding as sklearn/decomposition/tests/test_dict_learning.py (positivity), the
ConvergenceWarning, and the estimators' one input rule (integers -> float64, sparse refused with
a hint).
"""
import warnings

import numpy as np
import pytest

import npjem
from npjem import Tensor, backend
from npjem.ebm import latent as LV


def host(t):
    return backend.to_numpy(t.data if isinstance(t, Tensor) else t)


def blobs(n=60, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 4.0]])
    return centres[rng.integers(0, 4, n)] + 0.7 * rng.standard_normal((n, 2))


def kmeans(k, d, device, weight=None):
    km = LV.KMeansEnergy(k, d, device=device, dtype=np.float64, generator=0)
    if weight is not None:
        km.weight.data = backend.xp_for_device(device).asarray(np.asarray(weight, dtype=np.float64))
    return km


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ================================================================ the warning class

def test_convergence_warning_is_one_user_warning_exported_at_top_level():
    from npjem.exceptions import ConvergenceWarning

    assert npjem.ConvergenceWarning is ConvergenceWarning
    assert issubclass(ConvergenceWarning, UserWarning)


# ================================================================ K-means: empty clusters

def test_kmeans_relocated_clusters(xp, device, no_warnings):
    # sklearn's test_kmeans_relocated_clusters: the second prototype is too far from every point
    # to win one at the first step; relocated, it ends with half of them.
    X = xp.asarray(np.array([[0, 0], [0.5, 0], [0.5, 1], [1, 1]], dtype=np.float64))
    km = kmeans(2, 2, device, [[0.5, 0.5], [3, 3]])
    km.fit(X, init=None)
    np.testing.assert_allclose(km.inertia_, 0.25)
    labels, centres = host(km.labels_), host(km.cluster_centers_)
    # Which of the two tied farthest points moves decides the labels' names; both are right.
    if labels[0] == 0:
        np.testing.assert_array_equal(labels, [0, 0, 1, 1])
        np.testing.assert_allclose(centres, [[0.25, 0], [0.75, 1]])
    else:
        np.testing.assert_array_equal(labels, [1, 1, 0, 0])
        np.testing.assert_allclose(centres, [[0.75, 1], [0.25, 0]])


def test_relocate_empty_clusters_takes_the_farthest_points(xp, device):
    # sklearn's test_relocate_empty_clusters: all prototypes start on the first point, so one
    # cluster takes all ten; the two empty ones take the two points farthest from it (10 and
    # 9.5), and the first keeps the other eight.
    X = xp.asarray(np.array([-10.0, -9.5, -9, -8.5, -8, -1, 1, 9, 9.5, 10]).reshape(-1, 1))
    km = kmeans(3, 1, device, [[-10.0], [-10.0], [-10.0]])
    z = host(km.lloyd_step(X))
    np.testing.assert_array_equal(z, 0)  # the assignment before the relocation
    w = host(km.weight)[:, 0]
    np.testing.assert_allclose(w[0], -36.0 / 8)
    np.testing.assert_allclose(sorted(w[1:]), [9.5, 10.0])


def test_kmeans_empty_cluster_relocated_with_sample_weight(xp, device, no_warnings):
    # sklearn's test_kmeans_empty_cluster_relocated (#13486): weights do not stop the relocation.
    X = xp.asarray(np.array([[-1.0], [1.0]]))
    km = kmeans(2, 1, device, [[-1.0], [10.0]])
    km.fit(X, init=None, sample_weight=xp.asarray(np.array([1.9, 0.1])))
    assert len(set(host(km.labels_).tolist())) == 2
    np.testing.assert_allclose(host(km.cluster_centers_), [[-1.0], [1.0]])


def test_kmeans_lloyd_equals_sklearn_from_the_same_prototypes(xp, device, no_warnings):
    cluster = pytest.importorskip("sklearn.cluster")
    X = blobs()
    init = X[[0, 1, 2, 3]].copy()
    init[3] = [40.0, 40.0]  # empty at the first step: both relocate it
    sw = np.random.default_rng(1).uniform(0.5, 2.0, len(X))
    for weights in (None, sw):
        ref = cluster.KMeans(4, init=init, n_init=1, tol=0, max_iter=300).fit(X, sample_weight=weights)
        km = kmeans(4, 2, device, init)
        km.fit(xp.asarray(X), init=None, sample_weight=None if weights is None else xp.asarray(weights))
        np.testing.assert_array_equal(host(km.labels_), ref.labels_)
        np.testing.assert_allclose(host(km.cluster_centers_), ref.cluster_centers_, atol=1e-12)
        np.testing.assert_allclose(km.inertia_, ref.inertia_, rtol=1e-12)


# ================================================================ K-means: sample weights

def test_weighted_vs_repeated(xp, device, no_warnings):
    # sklearn's test_weighted_vs_repeated: an integer weight is the point repeated.
    X = blobs(40, seed=2)
    sw = np.random.default_rng(3).integers(1, 5, len(X))
    init = X[:4]
    km_w = kmeans(4, 2, device, init)
    km_w.fit(xp.asarray(X), init=None, sample_weight=xp.asarray(sw))
    km_r = kmeans(4, 2, device, init)
    km_r.fit(xp.asarray(np.repeat(X, sw, axis=0)), init=None)
    np.testing.assert_array_equal(host(km_r.labels_), np.repeat(host(km_w.labels_), sw))
    np.testing.assert_allclose(km_w.inertia_, km_r.inertia_, rtol=1e-12)
    np.testing.assert_allclose(host(km_w.weight), host(km_r.weight), atol=1e-12)


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_unit_and_scaled_weights_change_nothing(init, xp, device, no_warnings):
    # sklearn's test_unit_weights_vs_no_weights and test_scaled_weights.
    X = xp.asarray(blobs(50, seed=4))
    fits = {}
    for name, sw in [("none", None), ("ones", np.ones(50)),
                     ("w", np.random.default_rng(5).uniform(size=50))]:
        for scale in (1.0, 0.5):
            km = kmeans(4, 2, device)
            km.fit(X, init=init, generator=6, sample_weight=None if sw is None else xp.asarray(sw * scale))
            fits[name, scale] = (host(km.labels_), host(km.weight))
    for a, b in [(("none", 1.0), ("ones", 1.0)), (("none", 1.0), ("ones", 0.5)), (("w", 1.0), ("w", 0.5))]:
        np.testing.assert_array_equal(fits[a][0], fits[b][0])
        np.testing.assert_allclose(fits[a][1], fits[b][1], atol=1e-12)


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_seeding_picks_distinct_data_points_of_positive_weight(init, xp, device):
    X = blobs(30, seed=7)
    sw = np.ones(30)
    sw[::2] = 0.0  # these points can never become prototypes
    for seed in range(5):
        km = kmeans(4, 2, device)
        if init == "random":
            km.init_random(xp.asarray(X), seed, xp.asarray(sw))
        else:
            km.init_kmeans_plusplus(xp.asarray(X), seed, xp.asarray(sw))
        rows = [int(np.flatnonzero((X == p).all(axis=1))[0]) for p in host(km.weight)]
        assert len(set(rows)) == 4 and all(r % 2 == 1 for r in rows)


def test_sample_weight_is_checked(xp, device):
    X = xp.asarray(blobs(10))
    km = kmeans(2, 2, device)
    with pytest.raises(ValueError, match="sample_weight must have shape"):
        km.fit(X, sample_weight=xp.ones(9))
    with pytest.raises(ValueError, match="sample_weight must be finite and non-negative"):
        km.fit(X, sample_weight=xp.asarray(np.r_[-1.0, np.ones(9)]))
    with pytest.raises(ValueError, match="at least n_clusters = 2 points a positive weight"):
        km.fit(X, sample_weight=xp.asarray(np.r_[1.0, np.zeros(9)]))


# ================================================================ K-means: restarts

def test_n_init_keeps_the_lowest_energy(xp, device):
    # sklearn's test_n_init (more restarts never do worse), and more: the kept run is the best
    # of the restarts, each of which is the run one seeding of the same generator gives.
    X = xp.asarray(blobs(80, seed=8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", npjem.ConvergenceWarning)  # n_iter=1 on purpose
        previous = np.inf
        for n_init in (1, 5, 10):
            km = kmeans(4, 2, device)
            km.fit(X, n_iter=1, init="random", n_init=n_init, generator=12)
            assert km.inertia_ <= previous
            previous = km.inertia_
        g = npjem.random.as_generator(12, device)
        single = []
        for _ in range(10):
            one = kmeans(4, 2, device)
            one.fit(X, n_iter=1, init="random", generator=g)
            single.append(one.inertia_)
    assert min(single) < single[0]  # the first restart is not the best: keeping the best matters
    np.testing.assert_allclose(km.inertia_, min(single), rtol=1e-12)


def test_n_init_with_fixed_prototypes_runs_once_and_says_so(xp, device):
    km = kmeans(2, 2, device, [[0.0, 0.0], [4.0, 4.0]])
    with pytest.warns(RuntimeWarning, match="runs once"):
        km.fit(xp.asarray(blobs(20)), init=None, n_init=3)


# ================================================================ ConvergenceWarning

def test_kmeans_warns_only_when_it_stops_at_its_limit(xp, device):
    X = xp.asarray(blobs(60, seed=10))
    with pytest.warns(npjem.ConvergenceWarning, match="n_iter=1"):
        kmeans(4, 2, device).fit(X, n_iter=1, generator=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        km = kmeans(4, 2, device)
        km.fit(X, n_iter=100, generator=0)
    assert km.n_iter_ < 100


@pytest.mark.parametrize("solver", ["ista", "fista"])
def test_ista_fista_warn_at_their_limit_and_stop_at_their_tolerance(solver, xp):
    rng = np.random.default_rng(11)
    W = rng.standard_normal((8, 12))
    W /= np.linalg.norm(W, axis=0)
    y, W = xp.asarray(rng.standard_normal((5, 8))), xp.asarray(W)
    fn = getattr(LV, solver)
    with pytest.warns(npjem.ConvergenceWarning, match=f"{solver} stopped at n_iter=5"):
        fn(y, W, 0.2, n_iter=5, tol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        z, obj = fn(y, W, 0.2, n_iter=20000, tol=1e-6, return_objective=True)
        full = fn(y, W, 0.2, n_iter=5, return_objective=True)[1]  # tol=None: exactly n_iter, silent
    assert len(full) == 6
    assert len(obj) < 20001  # stopped early
    # ... at a point that satisfies the Lasso's optimality conditions to about tol.
    c = host((y - z.data @ W.T) @ W)
    zh = host(z)
    on = zh != 0
    np.testing.assert_allclose(c[on], 0.2 * np.sign(zh[on]), atol=1e-4)
    assert np.all(np.abs(c[~on]) <= 0.2 + 1e-4)


def test_dictionary_learning_warns_at_its_limit_and_stops_at_its_tolerance(xp, device):
    y = xp.asarray(np.random.default_rng(12).standard_normal((30, 6)))
    with pytest.warns(npjem.ConvergenceWarning, match="dictionary_learning stopped at n_iter=3"):
        LV.dictionary_learning(y, 4, 0.1, n_iter=3, generator=0, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # A relative decrease of less than 100 % stops it at the first check (the 2nd alternation).
        _, _, hist = LV.dictionary_learning(y, 4, 0.1, n_iter=10, tol=1.0, generator=0, progress=False)
    assert len(hist["objective"]) == 2


# ================================================================ positivity

@pytest.mark.parametrize("solver", ["ista", "fista"])
@pytest.mark.parametrize("positive", [False, True])
def test_sparse_encode_positivity(solver, positive, xp):
    # sklearn's test_sparse_encode_positivity.
    rng = np.random.default_rng(0)
    V = rng.standard_normal((10, 12))
    V /= np.linalg.norm(V, axis=0)
    X = rng.standard_normal((15, 10))
    z = host(getattr(LV, solver)(xp.asarray(X), xp.asarray(V), 0.1, n_iter=200, positive=positive))
    if positive:
        assert (z >= 0).all() and (z > 0).any()
    else:
        assert (z < 0).any()


@pytest.mark.parametrize("solver", ["ista", "fista"])
def test_positive_codes_equal_sklearn_positive_lasso(solver, xp):
    linear = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(13)
    W = rng.standard_normal((8, 12))
    W /= np.linalg.norm(W, axis=0)
    y = rng.standard_normal((3, 8))
    lam = 0.1
    z = host(getattr(LV, solver)(xp.asarray(y), xp.asarray(W), lam, n_iter=20000, positive=True))
    for i in range(3):
        # Lasso's (1/(2 n_samples)) scaling, n_samples = D: α = λ / D gives the same minimiser.
        ref = linear.Lasso(alpha=lam / 8, fit_intercept=False, positive=True, tol=1e-12,
                           max_iter=100000).fit(W, y[i])
        np.testing.assert_allclose(z[i], ref.coef_, atol=1e-7)


@pytest.mark.parametrize("positive_code", [False, True])
@pytest.mark.parametrize("positive_dict", [False, True])
def test_dict_learning_positivity(positive_code, positive_dict, xp, device):
    # sklearn's test_dict_learning_positivity.
    X = xp.asarray(np.random.default_rng(0).standard_normal((12, 8)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", npjem.ConvergenceWarning)
        W, z, hist = LV.dictionary_learning(X, 5, 0.05, n_iter=8, generator=0, progress=False,
                                            positive_code=positive_code, positive_dict=positive_dict)
    W, z = host(W), host(z)
    if positive_dict:
        assert (W >= 0).all()
    else:
        assert (W < 0).any()
    if positive_code:
        assert (z >= 0).all()
    else:
        assert (z < 0).any()
    np.testing.assert_allclose(np.linalg.norm(W, axis=0), 1.0, atol=1e-12)  # still unit atoms
    assert hist["objective"][-1] < hist["objective"][0]


# ================================================================ input types

def test_integer_inputs_become_float64():
    rng = np.random.default_rng(14)
    Xi = rng.integers(0, 5, (20, 4))
    Xf = Xi.astype(np.float64)
    Wi = np.eye(4, 6, dtype=np.int64) + np.eye(4, 6, 2, dtype=np.int64)
    for solver in (LV.ista, LV.fista):
        zi, zf = solver(Xi, Wi, 0.5, n_iter=30), solver(Xf, Wi.astype(np.float64), 0.5, n_iter=30)
        assert zi.dtype == np.float64
        np.testing.assert_array_equal(host(zi), host(zf))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", npjem.ConvergenceWarning)
        Wd, zd, _ = LV.dictionary_learning(Xi, 3, 0.1, n_iter=3, generator=0, progress=False)
        We, ze, _ = LV.dictionary_learning(Xf, 3, 0.1, n_iter=3, generator=0, progress=False)
    assert Wd.dtype == np.float64
    np.testing.assert_array_equal(host(Wd), host(We))
    kms = []
    for X in (Xi, Xf):
        km = LV.KMeansEnergy(3, 4, dtype=np.float64, generator=0)
        km.fit(X, generator=1, sample_weight=np.arange(1, 21))  # integer weights too
        kms.append(host(km.weight))
    np.testing.assert_array_equal(*kms)


def test_sparse_inputs_are_refused_with_a_hint():
    sparse = pytest.importorskip("scipy.sparse")
    X = sparse.csr_matrix(np.eye(4))
    W = np.eye(4)
    calls = [lambda: LV.ista(X, W, 0.1), lambda: LV.fista(X, W, 0.1),
             lambda: LV.dictionary_learning(X, 2, 0.1, progress=False),
             lambda: LV.KMeansEnergy(2, 4, dtype=np.float64).fit(X),
             lambda: LV.ista(np.eye(4), sparse.csr_matrix(W), 0.1)]
    for call in calls:
        with pytest.raises(TypeError, match=r"sparse matrix .*pass (y|W)\.toarray\(\)") as err:
            call()
        assert "\n" not in str(err.value)
