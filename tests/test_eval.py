"""Tests of npjem.eval: linear probe, k-NN classifier and collapse diagnostics."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import check_grad
from scipy.spatial.distance import pdist

from npjem import backend
from npjem import eval as ev


class Wrapped:
    """Stands in for a Tensor: an object whose ``.data`` is the array."""

    def __init__(self, data):
        self.data = data


def clusters(rng, n, num_classes, dim, distance=10.0, noise=1.0):
    """Gaussian clusters centred at ``distance * e_c``: linearly separable with a wide margin."""
    labels = rng.integers(0, num_classes, size=n)
    features = distance * np.eye(dim)[labels] + noise * rng.standard_normal((n, dim))
    return features, labels


def margin_labelled(rng, n, V, margin=1.0):
    """Points labelled by ``argmax x V`` whose top two scores differ by at least ``margin``."""
    X = 3.0 * rng.standard_normal((6 * n, V.shape[0]))
    scores = X @ V
    top2 = np.sort(scores, axis=1)[:, -2:]
    keep = (top2[:, 1] - top2[:, 0]) >= margin
    return X[keep][:n], np.argmax(scores, axis=1)[keep][:n]


# ---------------------------------------------------------------- linear probe

def test_probe_far_apart_clusters_are_classified_perfectly():
    rng = np.random.default_rng(0)
    Xtr, ytr = clusters(rng, 300, 4, 8)
    Xte, yte = clusters(rng, 200, 4, 8)
    res = ev.linear_probe(Xtr, ytr, Xte, yte)
    assert res.train_accuracy == 1.0 and res.accuracy == 1.0
    assert res.converged
    np.testing.assert_array_equal(res.predict(Xte), yte)
    proba = res.predict_proba(Xte)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert proba.shape == (200, 4) and res.coef.shape == (8, 4) and res.intercept.shape == (4,)


@given(seed=st.integers(0, 2**31 - 1), dim=st.integers(2, 6), num_classes=st.integers(2, 4))
def test_probe_fits_random_linear_labelling_with_margin(seed, dim, num_classes):
    rng = np.random.default_rng(seed)
    V = rng.standard_normal((dim, num_classes))
    Xtr, ytr = margin_labelled(rng, 200, V)
    Xte, yte = margin_labelled(rng, 200, V)
    if np.unique(ytr).shape[0] < 2:
        return  # a labelling that put every point in one class has nothing to separate
    res = ev.linear_probe(Xtr, ytr, Xte, yte)
    assert res.train_accuracy == 1.0
    assert res.accuracy >= 0.9


@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 12), dim=st.integers(1, 5),
       num_classes=st.integers(2, 4), l2=st.sampled_from([0.0, 1e-3, 0.5]))
def test_probe_objective_gradient_matches_finite_differences(seed, n, dim, num_classes, l2):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, dim))
    y = rng.integers(0, num_classes, size=n)
    theta = rng.standard_normal((dim + 1) * num_classes)

    def value(p):
        return ev.probe_objective(p, X, y, num_classes, l2)[0]

    def grad(p):
        return ev.probe_objective(p, X, y, num_classes, l2)[1]

    err = check_grad(value, grad, theta, epsilon=1e-6)
    assert err <= 1e-5 * max(1.0, np.linalg.norm(grad(theta)))


def test_probe_objective_closed_form_at_zero():
    # All logits zero: CE = log K for every sample; gradient = X^T (1/K - Y) / n, b: (1/K - Y) mean.
    X = np.array([[1.0, 2.0], [-1.0, 0.5], [0.0, 3.0]])
    y = np.array([0, 2, 2])
    value, grad = ev.probe_objective(np.zeros(9), X, y, 3, l2=10.0)
    assert value == pytest.approx(math.log(3))
    G = (np.full((3, 3), 1 / 3) - np.eye(3)[y]) / 3
    np.testing.assert_allclose(grad, np.concatenate([(X.T @ G).ravel(), G.sum(axis=0)]))


def test_probe_matches_sklearn_with_converted_c():
    sklearn_lm = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(3)
    X, y = clusters(rng, 120, 3, 4, distance=1.5)
    l2 = 0.05
    res = ev.linear_probe(X, y, X, y, l2=l2, standardize=False, tol=1e-10)
    ref = sklearn_lm.LogisticRegression(C=1.0 / (l2 * X.shape[0]), tol=1e-12, max_iter=10000)
    ref.fit(X, y)
    np.testing.assert_allclose(res.coef, ref.coef_.T, atol=1e-5)
    # The bias is defined up to one constant added to every class.
    b, b_ref = res.intercept - res.intercept.mean(), ref.intercept_ - ref.intercept_.mean()
    np.testing.assert_allclose(b, b_ref, atol=1e-5)


def test_probe_is_deterministic_and_accepts_tensor_likes_and_lists():
    rng = np.random.default_rng(1)
    Xtr, ytr = clusters(rng, 80, 3, 5, distance=2.0)
    Xte, yte = clusters(rng, 40, 3, 5, distance=2.0)
    a = ev.linear_probe(Xtr, ytr, Xte, yte)
    b = ev.linear_probe(Wrapped(Xtr), Wrapped(ytr), Xte.tolist(), yte.tolist())
    np.testing.assert_array_equal(a.coef, b.coef)
    np.testing.assert_array_equal(a.intercept, b.intercept)
    assert a.accuracy == b.accuracy and a.n_iter == b.n_iter


def test_probe_standardisation_makes_it_invariant_to_column_affine_maps():
    rng = np.random.default_rng(2)
    Xtr, ytr = clusters(rng, 150, 3, 4, distance=1.0)
    Xte, yte = clusters(rng, 100, 3, 4, distance=1.0)
    scale = np.array([1e3, 1e-3, 7.0, 0.5])
    shift = np.array([-50.0, 4.0, 1e4, 0.0])
    a = ev.linear_probe(Xtr, ytr, Xte, yte)
    b = ev.linear_probe(Xtr * scale + shift, ytr, Xte * scale + shift, yte)
    np.testing.assert_allclose(a.predict_proba(Xte), b.predict_proba(Xte * scale + shift), atol=1e-6)
    assert a.accuracy == b.accuracy


def test_probe_constant_column_and_arbitrary_integer_labels():
    rng = np.random.default_rng(4)
    X, y = clusters(rng, 100, 2, 3)
    X = np.hstack([X, np.full((100, 1), 3.25)])
    labels = np.where(y == 0, -7, 40)
    res = ev.linear_probe(X, labels, X, labels)
    assert np.all(np.isfinite(res.coef)) and res.accuracy == 1.0
    np.testing.assert_array_equal(res.classes, [-7, 40])
    assert set(np.unique(res.predict(X))) == {-7, 40}


def test_probe_weight_norm_shrinks_as_l2_grows():
    rng = np.random.default_rng(5)
    X, y = clusters(rng, 200, 3, 5, distance=1.0)
    norms = [np.linalg.norm(ev.linear_probe(X, y, X, y, l2=l2, standardize=False).coef)
             for l2 in (1e-3, 1e-2, 1e-1, 1.0)]
    assert all(a > b for a, b in zip(norms, norms[1:]))


def test_probe_auto_l2_searches_the_grid():
    rng = np.random.default_rng(6)
    Xtr, ytr = clusters(rng, 200, 3, 6, distance=1.0, noise=1.5)
    Xte, yte = clusters(rng, 100, 3, 6, distance=1.0, noise=1.5)
    grid = (1e-4, 1e-2, 10.0)
    res = ev.linear_probe(Xtr, ytr, Xte, yte, l2="auto", l2_grid=grid)
    assert set(res.l2_scores) == set(grid)
    assert res.l2 in grid and res.l2_scores[res.l2] == max(res.l2_scores.values())
    again = ev.linear_probe(Xtr, ytr, Xte, yte, l2="auto", l2_grid=grid)
    assert again.l2_scores == res.l2_scores
    fixed = ev.linear_probe(Xtr, ytr, Xte, yte, l2=res.l2)
    np.testing.assert_array_equal(fixed.coef, res.coef)


# ---------------------------------------------------------------- k-NN

def brute_force_knn(train, train_labels, test, k, temperature):
    """Reference written differently: per test row, full sort and a dict of class votes."""
    train_n = [row / np.linalg.norm(row) for row in train]
    preds = []
    for q in test:
        q = q / np.linalg.norm(q)
        sims = [(float(np.dot(q, t)), j) for j, t in enumerate(train_n)]
        sims.sort(key=lambda p: -p[0])
        votes = {}
        for s, j in sims[:k]:
            votes[int(train_labels[j])] = votes.get(int(train_labels[j]), 0.0) + math.exp(s / temperature)
        best = max(votes.values())
        preds.append(min(c for c, v in votes.items() if v == best))
    return np.array(preds)


def test_knn_separates_far_clusters(xp):
    rng = np.random.default_rng(0)
    Xtr, ytr = clusters(rng, 200, 5, 10)
    Xte, yte = clusters(rng, 100, 5, 10)
    acc = ev.knn_accuracy(xp.asarray(Xtr), xp.asarray(ytr), xp.asarray(Xte), xp.asarray(yte))
    assert isinstance(acc, float) and acc == 1.0


@given(seed=st.integers(0, 2**31 - 1), n_train=st.integers(1, 30), n_test=st.integers(1, 12),
       dim=st.integers(2, 5), num_classes=st.integers(1, 4), data=st.data(),
       temperature=st.sampled_from([0.07, 0.5, 2.0]), batch_size=st.integers(1, 8))
def test_knn_matches_brute_force_reference(seed, n_train, n_test, dim, num_classes, data,
                                           temperature, batch_size):
    k = data.draw(st.integers(1, n_train), label="k")
    rng = np.random.default_rng(seed)
    Xtr, Xte = rng.standard_normal((n_train, dim)), rng.standard_normal((n_test, dim))
    ytr = rng.integers(0, num_classes, size=n_train)
    yte = rng.integers(0, num_classes, size=n_test)
    expected = brute_force_knn(Xtr, ytr, Xte, k, temperature)
    pred = ev.knn_predict(Xtr, ytr, Xte, k=k, temperature=temperature, batch_size=batch_size)
    np.testing.assert_array_equal(pred, expected)
    acc = ev.knn_accuracy(Xtr, ytr, Xte, yte, k=k, temperature=temperature, batch_size=batch_size)
    assert acc == pytest.approx(np.mean(expected == yte))


def test_knn_votes_are_temperature_weighted():
    # Test point e_0. Neighbours: one of class 1 at cos 1, two of class 0 at cos 0.8.
    # Weights exp(s/T): class 1 gets e^(1/T), class 0 gets 2 e^(0.8/T); class 1 wins iff T < 0.2/ln 2.
    train = np.array([[1.0, 0.0], [0.8, 0.6], [0.8, -0.6]])
    labels = np.array([1, 0, 0])
    test = np.array([[2.0, 0.0]])
    assert ev.knn_predict(train, labels, test, k=3, temperature=0.1)[0] == 1
    assert ev.knn_predict(train, labels, test, k=3, temperature=1.0)[0] == 0
    # A tiny temperature must not overflow.
    assert ev.knn_predict(train, labels, test, k=3, temperature=1e-4)[0] == 1


def test_knn_float32_tensor_likes_and_num_classes():
    rng = np.random.default_rng(1)
    Xtr, ytr = clusters(rng, 60, 3, 4)
    Xte, yte = clusters(rng, 30, 3, 4)
    acc = ev.knn_accuracy(Wrapped(Xtr.astype(np.float32)), Wrapped(ytr), Xte.astype(np.float32),
                          yte, k=5, num_classes=7)
    assert acc == 1.0


# ---------------------------------------------------------------- collapse diagnostics

def test_effective_rank_isotropic_is_about_d(xp):
    z = np.random.default_rng(0).standard_normal((4000, 16))
    r = ev.effective_rank(xp.asarray(z))
    assert 0.98 * 16 < r <= 16.0 + 1e-3


def test_effective_rank_rank_one_is_about_one():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((500, 1)) @ rng.standard_normal((1, 32))
    assert ev.effective_rank(z) == pytest.approx(1.0, abs=1e-3)
    assert ev.effective_rank(z, center=True) == pytest.approx(1.0, abs=1e-3)


def test_effective_rank_closed_form_and_complete_collapse():
    # Singular values 3 and 1: p = (3/4, 1/4), rank = exp(H(p)).
    z = np.array([[3.0, 0.0], [0.0, 1.0]])
    p = np.array([0.75, 0.25])
    assert ev.effective_rank(z, eps=0.0) == pytest.approx(math.exp(-np.sum(p * np.log(p))))
    collapsed = np.tile(np.random.default_rng(2).standard_normal(8), (40, 1))
    assert ev.effective_rank(collapsed) == pytest.approx(1.0, abs=1e-3)
    assert ev.effective_rank(collapsed, center=True) == 0.0


def test_singular_values_are_those_of_the_centred_matrix_and_translation_invariant():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((30, 6)) * np.arange(1, 7)
    expected = np.linalg.svd(z - z.mean(axis=0), compute_uv=False)
    np.testing.assert_allclose(ev.singular_values(z), expected)
    np.testing.assert_allclose(ev.singular_values(z + 100.0), expected, rtol=1e-9)
    np.testing.assert_allclose(ev.singular_values(z, center=False), np.linalg.svd(z, compute_uv=False))


def test_embedding_std_collapsed_and_isotropic(xp):
    rng = np.random.default_rng(4)
    collapsed = np.tile(rng.standard_normal(16), (100, 1)) * rng.uniform(0.5, 2.0, (100, 1))
    assert ev.embedding_std(xp.asarray(collapsed)) == pytest.approx(0.0, abs=1e-12)
    iso = rng.standard_normal((20000, 16))
    assert ev.embedding_std(xp.asarray(iso)) == pytest.approx(1 / math.sqrt(16), rel=0.02)


def test_alignment_identical_pairs_and_closed_forms():
    rng = np.random.default_rng(5)
    z = rng.standard_normal((10, 4))
    assert ev.alignment(z, z) == pytest.approx(0.0, abs=1e-12)
    assert ev.alignment(z, 3.0 * z) == pytest.approx(0.0, abs=1e-12)  # normalised first
    a = np.array([[1.0, 0.0], [0.0, 1.0]])
    b = np.array([[0.0, 5.0], [2.0, 0.0]])   # each pair orthogonal: distance sqrt(2)
    assert ev.alignment(a, b) == pytest.approx(2.0)
    assert ev.alignment(a, b, alpha=1) == pytest.approx(math.sqrt(2))
    c = np.array([[1.0, 0.0], [0.0, 1.0]])
    d = np.array([[1.0, 0.0], [0.0, -1.0]])  # one identical pair, one antipodal (distance 2)
    assert ev.alignment(c, d) == pytest.approx((0.0 + 4.0) / 2)
    assert ev.alignment(c, d, alpha=3) == pytest.approx(8.0 / 2)


@given(t=st.floats(0.1, 10.0), scale=st.floats(0.01, 100.0))
def test_uniformity_two_antipodal_points(t, scale):
    z = np.array([[scale, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    assert ev.uniformity(z, t=t) == pytest.approx(-4.0 * t)


def test_uniformity_three_points_by_hand():
    # Angles 0, 90 and 180 degrees: squared distances 2, 4 and 2.
    z = np.array([[1.0, 0.0], [0.0, 3.0], [-2.0, 0.0]])
    assert ev.uniformity(z) == pytest.approx(math.log((2 * math.exp(-4) + math.exp(-8)) / 3))
    assert ev.uniformity(z, t=0.5) == pytest.approx(math.log((2 * math.exp(-1) + math.exp(-2)) / 3))


@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 25), dim=st.integers(1, 4),
       batch_size=st.integers(1, 30))
def test_uniformity_matches_pdist_for_any_batch_size(seed, n, dim, batch_size):
    z = np.random.default_rng(seed).standard_normal((n, dim))
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    expected = math.log(np.mean(np.exp(-2.0 * pdist(u, "sqeuclidean"))))
    assert ev.uniformity(z, batch_size=batch_size) == pytest.approx(expected, abs=1e-10)


def test_uniformity_of_collapse_is_zero_and_gpu_agrees(xp):
    rng = np.random.default_rng(6)
    collapsed = np.tile(rng.standard_normal(5), (20, 1))
    assert ev.uniformity(xp.asarray(collapsed)) == pytest.approx(0.0, abs=1e-12)
    z = rng.standard_normal((50, 5))
    assert ev.uniformity(xp.asarray(z), batch_size=7) == pytest.approx(ev.uniformity(z), abs=1e-10)


def test_collapse_report_collects_the_diagnostics():
    rng = np.random.default_rng(7)
    z1 = rng.standard_normal((64, 8))
    z2 = z1 + 0.1 * rng.standard_normal((64, 8))
    rep = ev.collapse_report(Wrapped(z1), z2)
    assert rep["n"] == 64 and rep["dim"] == 8
    assert rep["embedding_std"] == ev.embedding_std(z1)
    assert rep["embedding_std_isotropic"] == pytest.approx(1 / math.sqrt(8))
    assert rep["effective_rank"] == ev.effective_rank(z1)
    assert rep["effective_rank_centered"] == ev.effective_rank(z1, center=True)
    np.testing.assert_array_equal(rep["singular_values"], ev.singular_values(z1))
    assert rep["uniformity"] == ev.uniformity(z1)
    assert rep["alignment"] == ev.alignment(z1, z2)
    assert "alignment" not in ev.collapse_report(z1)


# ---------------------------------------------------------------- input validation

_X = np.zeros((4, 3)) + np.arange(3)
_Y = np.array([0, 1, 0, 1])


@pytest.mark.parametrize("call, name", [
    (lambda: ev.linear_probe(_X[0], _Y, _X, _Y), "train_features"),
    (lambda: ev.linear_probe(_X, _Y[:, None], _X, _Y), "train_labels"),
    (lambda: ev.linear_probe(_X, _Y[:3], _X, _Y), "train_labels"),
    (lambda: ev.linear_probe(_X, _Y.astype(float), _X, _Y), "train_labels"),
    (lambda: ev.linear_probe(_X, _Y, _X[:, :2], _Y), "test_features"),
    (lambda: ev.linear_probe(_X, _Y, _X, _Y[:2]), "test_labels"),
    (lambda: ev.linear_probe(np.zeros((0, 3)), _Y[:0], _X, _Y), "train_features"),
    (lambda: ev.linear_probe(_X, _Y, np.zeros((4, 0)), _Y), "test_features"),
    (lambda: ev.linear_probe(_X, np.zeros(4, int), _X, _Y), "train_labels"),
    (lambda: ev.linear_probe(_X * np.nan, _Y, _X, _Y), "train_features"),
    (lambda: ev.linear_probe(_X, _Y, _X, _Y, l2=-1.0), "l2"),
    (lambda: ev.linear_probe(_X, _Y, _X, _Y, l2="big"), "l2"),
    (lambda: ev.linear_probe(_X, _Y, _X, _Y, max_iter=0), "max_iter"),
    (lambda: ev.linear_probe(_X, _Y, _X, _Y, l2="auto", val_fraction=0.1), "val_fraction"),
    (lambda: ev.knn_accuracy(_X, _Y, _X, _Y, k=0), "k"),
    (lambda: ev.knn_accuracy(_X, _Y, _X, _Y, k=5), "k"),
    (lambda: ev.knn_accuracy(_X, _Y, _X, _Y, k=2.5), "k"),
    (lambda: ev.knn_accuracy(_X, _Y, _X, _Y, k=2, temperature=0.0), "temperature"),
    (lambda: ev.knn_accuracy(_X, _Y, _X, _Y, k=2, batch_size=0), "batch_size"),
    (lambda: ev.knn_accuracy(_X, _Y - 1, _X, _Y, k=2), "train_labels"),
    (lambda: ev.knn_accuracy(_X, _Y, _X, _Y, k=2, num_classes=1), "num_classes"),
    (lambda: ev.knn_accuracy(_X, _Y[:3], _X, _Y, k=2), "train_labels"),
    (lambda: ev.knn_accuracy(_X, _Y, _X[None], _Y, k=2), "test_features"),
    (lambda: ev.knn_accuracy(_X, _Y, _X, np.array([[0, 1, 0, 1]]), k=2), "test_labels"),
    (lambda: ev.knn_accuracy(np.zeros((0, 3)), _Y[:0], _X, _Y, k=1), "train_features"),
    (lambda: ev.embedding_std(_X[:1]), "z"),
    (lambda: ev.embedding_std(_X.ravel()), "z"),
    (lambda: ev.effective_rank(np.zeros((0, 2))), "z"),
    (lambda: ev.alignment(_X, _X[:3]), "z1 and z2"),
    (lambda: ev.alignment(_X, _X, alpha=0), "alpha"),
    (lambda: ev.uniformity(_X[:1]), "z"),
    (lambda: ev.uniformity(_X, t=-1.0), "t"),
    (lambda: ev.collapse_report(_X, _X[:, :2]), "z1 and z2"),
])
def test_bad_inputs_raise_value_errors_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call()


def test_probe_objective_rejects_bad_shapes():
    with pytest.raises(ValueError, match="params"):
        ev.probe_objective(np.zeros(5), _X, _Y, 2, 0.0)
    with pytest.raises(ValueError, match="labels"):
        ev.probe_objective(np.zeros(8), _X, _Y + 1, 2, 0.0)


def test_results_are_host_python_numbers():
    assert backend.get_array_module(ev.singular_values(_X)) is np
    for value in (ev.embedding_std(_X), ev.effective_rank(_X), ev.uniformity(_X),
                  ev.alignment(_X + 1, _X + 2), ev.knn_accuracy(_X + 1, _Y, _X + 1, _Y, k=1)):
        assert type(value) is float


# ---------------------------------------------------------------- fine-tuning

def _bars(rng, n):
    """8×8 images with a bright horizontal (label 0) or vertical (label 1) bar, random colours."""
    y = rng.integers(0, 2, size=n)
    x = 0.3 * rng.random((n, 3, 8, 8)).astype(np.float32)
    pos = rng.integers(1, 7, size=n)
    for i in range(n):
        if y[i] == 0:
            x[i, :, pos[i], :] += 0.6
        else:
            x[i, :, :, pos[i]] += 0.6
    return x, y * 3 + 1  # labels 1 and 4: any integers work


def _tiny_convnet(seed=0):
    from npjem.nn import models

    return models.ConvNet(widths=(6, 8), strides=(1, 2), generator=seed)


def test_fine_tune_learns_a_separable_task_and_trains_the_backbone_in_place():
    rng = np.random.default_rng(0)
    x, y = _bars(rng, 160)
    bb = _tiny_convnet()
    before = {k: v.copy() for k, v in bb.state_dict().items()}
    r = ev.fine_tune(bb, x[:120], y[:120], x[120:], y[120:], epochs=8, lr=0.02, batch_size=20, generator=0)
    assert r.accuracy >= 0.9 and r.train_accuracy >= 0.9
    assert np.mean(r.losses[-6:]) < 0.5 * np.mean(r.losses[:6])
    assert list(r.classes) == [1, 4] and r.head.weight.shape == (2, 8)
    after = bb.state_dict()
    assert any(not np.array_equal(before[k], after[k]) for k in before if k.endswith("weight"))


def test_fine_tune_with_a_frozen_backbone_trains_only_the_head():
    rng = np.random.default_rng(1)
    x, y = _bars(rng, 80)
    bb = _tiny_convnet(1)
    before = {k: v.copy() for k, v in bb.state_dict().items()}
    r = ev.fine_tune(bb, x[:60], y[:60], x[60:], y[60:], epochs=2, lr=0.05, batch_size=20, optimizer="sgd",
                     train_backbone=False, augment=lambda a, generator=None: a[..., ::-1], generator=0)
    for k, v in bb.state_dict().items():
        np.testing.assert_array_equal(backend.to_numpy(v), backend.to_numpy(before[k]))
    assert 0.0 <= r.accuracy <= 1.0 and len(r.losses) == 6


@pytest.mark.parametrize("kwargs, name", [
    (dict(epochs=0), "epochs"),
    (dict(lr=-1.0), "lr"),
    (dict(optimizer="rmsprop"), "optimizer"),
])
def test_fine_tune_rejects_bad_arguments(kwargs, name):
    x = np.zeros((4, 3, 8, 8), np.float32)
    y = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match=name):
        ev.fine_tune(_tiny_convnet(), x, y, x, y, **kwargs)
    with pytest.raises(TypeError, match="backbone"):
        ev.fine_tune(object(), x, y, x, y)
    with pytest.raises(ValueError, match="test_labels"):
        ev.fine_tune(_tiny_convnet(), x, y, x, y[:3])
