"""The math of npjem.losses.clustering, checked on values a reader can work out.

Sinkhorn's stopping rule by the marginal error it reaches at a given tol, the balanced
clustering's centroids as the means of their points on hand-made clouds, the hard rounding's
group sizes, and SwAV's loss written out for one-hot codes.
"""
import math
import warnings

import numpy as np
import pytest

from npjem import Tensor, backend
from npjem.losses import clustering as C
from npjem.losses import sinkhorn_clusters, sinkhorn_knopp, swav


def host(a):
    return backend.to_numpy(a.data if isinstance(a, Tensor) else a)


def prototype_error(codes, r=None, c=None):
    """max_k |Σ_b P_bk / c_k − 1| for the plan P = codes · r (the error ``tol`` bounds)."""
    b, k = codes.shape
    r = np.full(b, 1 / b) if r is None else r
    c = np.full(k, 1 / k) if c is None else c
    return float(np.abs((codes * r[:, None]).sum(axis=0) / c - 1).max())


# ================================================================ Sinkhorn's stopping rule

@pytest.mark.parametrize("log_domain", [False, True])
@pytest.mark.parametrize("uniform", [True, False])
def test_tol_stops_at_the_first_iteration_within_tol(log_domain, uniform):
    rng = np.random.default_rng(0)
    s = rng.uniform(-1, 1, (7, 4))
    r = c = None
    if not uniform:
        r = rng.uniform(0.5, 1.0, 7)
        r /= r.sum()
        c = np.array([0.1, 0.2, 0.3, 0.4])
    kw = dict(log_domain=log_domain, row_marginals=r, col_marginals=c)
    runs = [sinkhorn_knopp(s, 0.1, n, **kw) for n in range(1, 13)]
    errors = [prototype_error(q, r, c) for q in runs]
    assert all(a > b for a, b in zip(errors, errors[1:]))  # the error shrinks at every iteration
    # a tol between the 5th and the 6th iteration's errors: exactly six iterations
    tol = math.sqrt(errors[4] * errors[5])
    q = sinkhorn_knopp(s, 0.1, 1, tol=tol, **kw)
    np.testing.assert_array_equal(q, runs[5])
    assert prototype_error(q, r, c) <= tol < errors[4]
    # n_iters is a minimum: a tol already met after 2 iterations still runs all 8
    np.testing.assert_array_equal(sinkhorn_knopp(s, 0.1, 8, tol=errors[1], **kw), runs[7])


@pytest.mark.parametrize("log_domain", [False, True])
def test_an_unreachable_tol_stops_at_max_iters_or_n_iters(log_domain):
    s = np.random.default_rng(1).uniform(-1, 1, (6, 4))
    with pytest.warns(RuntimeWarning, match="stopped after 7 iterations"):
        q = sinkhorn_knopp(s, 0.02, 1, tol=1e-300, max_iters=7, log_domain=log_domain)
    np.testing.assert_array_equal(q, sinkhorn_knopp(s, 0.02, 7, log_domain=log_domain))
    # n_iters above max_iters wins: the cap applies to the iterations after the minimum
    with pytest.warns(RuntimeWarning, match="stopped after 9 iterations"):
        q = sinkhorn_knopp(s, 0.02, 9, tol=1e-300, max_iters=7, log_domain=log_domain)
    np.testing.assert_array_equal(q, sinkhorn_knopp(s, 0.02, 9, log_domain=log_domain))
    # the default cap is 1000 iterations
    with pytest.warns(RuntimeWarning, match="stopped after 1000 iterations"):
        sinkhorn_knopp(s, 0.02, tol=1e-300, log_domain=log_domain)


def test_a_met_tol_does_not_warn():
    s = np.random.default_rng(2).uniform(-1, 1, (5, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = sinkhorn_knopp(s, 0.5, tol=1e-10, max_iters=10000)
    assert prototype_error(q) <= 1e-10


def test_one_iteration_by_hand():
    # s/ε = log of a 2 × 2 matrix A: Q ← A / ΣA, rows to 1/K, then columns to 1/B, times B
    a = np.array([[1.0, 2.0], [3.0, 6.0]])           # rank one: one iteration is exact
    for log_domain in (False, True):
        codes = sinkhorn_knopp(np.log(a) * 0.5, 0.5, 1, log_domain=log_domain)
        np.testing.assert_allclose(codes, [[0.5, 0.5], [0.5, 0.5]], rtol=1e-12)
    b = np.array([[4.0, 1.0], [1.0, 1.0]])
    q = b.T / b.sum()                                # K × B
    q = q / q.sum(axis=1, keepdims=True) / 2
    q = q / q.sum(axis=0, keepdims=True) / 2
    for log_domain in (False, True):
        np.testing.assert_allclose(sinkhorn_knopp(np.log(b), 1.0, 1, log_domain=log_domain),
                                   (q * 2).T, rtol=1e-12)


def test_marginals_by_hand():
    # one sample twice as heavy and prototype shares 1/4, 3/4: a converged plan has these sums
    s = np.random.default_rng(3).uniform(-1, 1, (3, 2))
    r, c = np.array([0.5, 0.25, 0.25]), np.array([0.25, 0.75])
    for log_domain in (False, True):
        q = sinkhorn_knopp(s, 0.3, tol=1e-12, max_iters=10000, log_domain=log_domain,
                           row_marginals=r, col_marginals=c)
        np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-12)
        np.testing.assert_allclose((q * r[:, None]).sum(axis=0), c, rtol=1e-10)


def test_marginals_that_sum_to_one_up_to_rounding_are_accepted():
    s = np.zeros((3, 2))
    c = np.array([0.3, 0.7 + 1e-12])
    q = sinkhorn_knopp(s, col_marginals=c)
    # constant scores: one iteration is exact, the plan (codes / B) has column sums c
    np.testing.assert_allclose(q.mean(axis=0), c / c.sum(), rtol=1e-12)
    with pytest.raises(ValueError, match="sum to 1"):
        sinkhorn_knopp(s, col_marginals=np.array([0.3, 0.7 + 1e-6]))
    with pytest.raises(ValueError, match="positive"):
        sinkhorn_knopp(s, col_marginals=np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="positive"):
        sinkhorn_knopp(s, col_marginals=np.array([np.inf, 1.0]))


# ================================================================ SwAV's loss by hand

def test_swav_with_one_hot_codes_is_the_cross_entropy_of_the_other_crop():
    s0 = np.array([[0.2, -0.1, 0.5], [0.0, 0.3, -0.4]])
    s1 = np.array([[-0.3, 0.6, 0.1], [0.4, 0.2, -0.2]])
    q0 = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    tau = 0.5

    def ce(q, s):
        z = s / tau
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-(q * log_p).sum(axis=1).mean())

    # crop 0's code is predicted from crop 1 only
    assert swav([s0, s1], [q0], tau).item() == pytest.approx(ce(q0, s1), rel=1e-13)
    assert swav([s0, s1], [q0], tau, crops_for_assign=[1]).item() == pytest.approx(ce(q0, s0), rel=1e-13)
    # two codes: the mean of the two swapped predictions
    q1 = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    assert swav([s0, s1], [q0, q1], tau).item() == pytest.approx((ce(q0, s1) + ce(q1, s0)) / 2, rel=1e-13)
    assert swav([s0, s1], [q1, q0], tau, crops_for_assign=[1, 0]).item() == pytest.approx(
        (ce(q0, s1) + ce(q1, s0)) / 2, rel=1e-13)
    # three crops, one code: the mean over the two other crops
    s2 = s0[::-1].copy()
    assert swav([s0, s1, s2], [q0], tau).item() == pytest.approx((ce(q0, s1) + ce(q0, s2)) / 2, rel=1e-13)


def test_swav_gradient_is_softmax_minus_code():
    # ∂ℓ/∂s_j = (softmax(s_j/τ) − q) / (τ B) for the crop that predicts q (V = 2, one code)
    rng = np.random.default_rng(4)
    s = [Tensor(rng.uniform(-1, 1, (3, 4)), requires_grad=True) for _ in range(2)]
    q = sinkhorn_knopp(rng.uniform(-1, 1, (3, 4)))
    tau = 0.2
    swav(s, [q], tau).backward()
    z = s[1].data / tau
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(s[1].grad.data, (p - q) / (tau * 3), rtol=1e-12, atol=1e-15)
    assert s[0].grad is None or np.abs(s[0].grad.data).max() == 0  # crop 0 is only the target's crop


# ================================================================ balanced clusters

def test_balanced_round_by_hand():
    # everyone prefers group 0; the most confident three get it (⌈5/2⌉), the others group 1
    codes = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.55, 0.45]])
    np.testing.assert_array_equal(C._balanced_round(codes, 2), [0, 0, 0, 1, 1])
    # a shuffled order gives the same labels to the same rows
    order = np.array([3, 0, 4, 2, 1])
    np.testing.assert_array_equal(C._balanced_round(codes[order], 2), np.array([0, 0, 0, 1, 1])[order])
    # six rows in three groups: exactly two each, every row on its most likely allowed group
    codes = np.array([[0.5, 0.3, 0.2], [0.6, 0.3, 0.1], [0.7, 0.2, 0.1],
                      [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4]])
    np.testing.assert_array_equal(C._balanced_round(codes, 3), [1, 0, 0, 1, 2, 2])
    # seven rows in three groups: sizes 3, 2, 2 in the order the groups fill up
    codes = np.tile([0.5, 0.3, 0.2], (7, 1)) + np.arange(7)[:, None] * 1e-3
    labels = C._balanced_round(codes, 3)
    np.testing.assert_array_equal(np.bincount(labels, minlength=3), [3, 2, 2])
    np.testing.assert_array_equal(labels, [2, 2, 1, 1, 0, 0, 0])


def _three_blobs():
    centres = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 3.0]])
    offsets = np.array([[0.1, 0.0], [-0.1, 0.0], [0.0, 0.1], [0.0, -0.1]])
    pts = np.concatenate([c + offsets * (1 + i) for i, c in enumerate(centres)])
    return pts, centres


def test_sinkhorn_clusters_centroids_are_the_means_of_their_points():
    pts, centres = _three_blobs()
    res = sinkhorn_clusters(pts, 3, generator=0)
    labels = host(res.labels)
    # each blob is one group, whatever its number
    groups = [set(labels[4 * i: 4 * i + 4]) for i in range(3)]
    assert all(len(g) == 1 for g in groups) and len(set.union(*groups)) == 3
    for i in range(3):
        j = labels[4 * i]
        # the offsets cancel: each blob's mean is its centre
        np.testing.assert_allclose(host(res.centroids)[j], centres[i], atol=1e-12)
    # the soft codes are (nearly) one-hot on the same groups
    codes = host(res.codes)
    np.testing.assert_array_equal(codes.argmax(axis=1), labels)
    assert codes.max(axis=1).min() > 0.99


def test_sinkhorn_clusters_codes_are_a_fixed_point_of_the_update():
    # after the last step the soft centroids Qᵀx / Σ_n Q are where the codes came from:
    # one more assignment from them gives the same codes back
    rng = np.random.default_rng(5)
    pts = np.concatenate([rng.standard_normal((8, 2)) * 0.6 + m for m in ([0, 0], [3, 1], [1, 3])])
    res = sinkhorn_clusters(pts, 3, epsilon=0.1, n_steps=60, generator=1)
    q = host(res.codes)
    mu = q.T @ pts / q.sum(axis=0)[:, None]
    d2 = ((pts[:, None, :] - mu[None]) ** 2).sum(axis=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        again = sinkhorn_knopp(-d2 / d2.max(), 0.1, 1, log_domain=True, tol=1e-6, max_iters=500)
    np.testing.assert_allclose(again, q, atol=1e-4)
    # and each group takes a third of the mass
    np.testing.assert_allclose(q.sum(axis=0), 8.0, rtol=1e-5)


def test_sinkhorn_clusters_keeps_the_dtype_of_the_points():
    pts, centres = _three_blobs()
    res = sinkhorn_clusters(pts.astype(np.float32), 3, generator=0)
    assert res.centroids.dtype == np.float32 and res.codes.dtype == np.float32
    np.testing.assert_allclose(np.sort(res.centroids[:, 0]), np.sort(centres[:, 0]), atol=1e-6)


def test_one_clustering_step_is_one_sinkhorn_assignment_to_the_drawn_points():
    # K = N: the K starting centroids are the points themselves, in the generator's order, so
    # one step's codes are Sinkhorn's assignment (ε, one iteration, then on to tol 1e-6) of the
    # scores −‖x_n − x_σ(k)‖² / max, for one of the orders σ
    import itertools
    pts = np.array([[0.0, 0.0], [1.0, 0.2], [0.3, 0.9]])
    # ε = 200: the first iteration already meets tol, so it is the only one
    got = host(sinkhorn_clusters(pts, 3, epsilon=200.0, n_steps=1, generator=4).codes)
    matches = []
    for order in itertools.permutations(range(3)):
        d2 = ((pts[:, None, :] - pts[list(order)][None]) ** 2).sum(axis=2)
        want = sinkhorn_knopp(-d2 / d2.max(), 200.0, 1, log_domain=True, tol=1e-6, max_iters=500)
        matches.append(np.allclose(got, want, rtol=1e-13, atol=0))
    assert sum(matches) == 1
