"""Tests of npjem.losses.clustering: Sinkhorn–Knopp, SwAV's swapped prediction, balanced clusters."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npjem
from npjem import Tensor, backend
from npjem.losses import sinkhorn_clusters, sinkhorn_knopp, swav

GC = dict(eps=1e-6, atol=1e-6, rtol=1e-4)
seeds = st.integers(0, 2**32 - 1)
samples = st.integers(1, 7)
protos = st.integers(1, 6)


def swav_reference(s, eps, iters):
    """SwAV's ``distributed_sinkhorn`` on one device, line by line in NumPy."""
    q = np.exp(s / eps).T
    b, k = q.shape[1], q.shape[0]
    q /= q.sum()
    for _ in range(iters):
        q /= q.sum(axis=1, keepdims=True)
        q /= k
        q /= q.sum(axis=0, keepdims=True)
        q /= b
    q *= b
    return q.T


def simplex(rng, n):
    w = rng.uniform(0.2, 1.0, n)
    return w / w.sum()


def host(a):
    return backend.to_numpy(a.data if isinstance(a, Tensor) else a)


# ================================================================ Sinkhorn–Knopp

@given(b=samples, k=protos, seed=seeds, eps=st.floats(0.03, 1.0), iters=st.integers(1, 5))
def test_sinkhorn_is_swavs_computation(b, k, seed, eps, iters):
    s = np.random.default_rng(seed).uniform(-1, 1, (b, k))
    q = sinkhorn_knopp(s, eps, iters)
    np.testing.assert_allclose(q, swav_reference(s.copy(), eps, iters), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-13)  # each code is a distribution


def test_sinkhorn_defaults_device_and_no_gradient(xp):
    s = np.random.default_rng(0).uniform(-1, 1, (5, 3))
    x = Tensor(xp.asarray(s), requires_grad=True)
    q = sinkhorn_knopp(x)
    assert isinstance(q, Tensor) and not q.requires_grad and q.device == x.device
    np.testing.assert_allclose(host(q), swav_reference(s, 0.05, 3), rtol=1e-13)
    assert isinstance(sinkhorn_knopp(xp.asarray(s)), type(xp.asarray(s)))


@given(b=st.integers(2, 7), k=st.integers(2, 6), seed=seeds, eps=st.floats(0.05, 1.0),
       log_domain=st.booleans(), uniform=st.booleans())
def test_sinkhorn_marginals_match_when_iterated_to_convergence(b, k, seed, eps, log_domain, uniform):
    rng = np.random.default_rng(seed)
    s = rng.uniform(-1, 1, (b, k))
    r = None if uniform else simplex(rng, b)
    c = None if uniform else simplex(rng, k)
    q = sinkhorn_knopp(s, eps, tol=1e-9, max_iters=5000, log_domain=log_domain,
                       row_marginals=r, col_marginals=c)
    plan = q * (np.full(b, 1 / b) if r is None else r)[:, None]
    np.testing.assert_allclose(plan.sum(axis=1), np.full(b, 1 / b) if r is None else r, rtol=1e-6)
    np.testing.assert_allclose(plan.sum(axis=0), np.full(k, 1 / k) if c is None else c, rtol=1e-6)


@given(b=st.integers(2, 7), k=st.integers(2, 6), seed=seeds, log_domain=st.booleans(),
       tol=st.sampled_from([None, 1e-8]))
def test_sinkhorn_is_equivariant_to_permutations(b, k, seed, log_domain, tol):
    rng = np.random.default_rng(seed)
    s = rng.uniform(-1, 1, (b, k))
    r, c = simplex(rng, b), simplex(rng, k)
    ps, pk = rng.permutation(b), rng.permutation(k)
    kw = dict(log_domain=log_domain, tol=tol, max_iters=5000)
    q = sinkhorn_knopp(s, 0.1, **kw)
    np.testing.assert_allclose(sinkhorn_knopp(s[ps][:, pk], 0.1, **kw), q[ps][:, pk], rtol=1e-12, atol=1e-15)
    q = sinkhorn_knopp(s, 0.1, row_marginals=r, col_marginals=c, **kw)
    qp = sinkhorn_knopp(s[ps][:, pk], 0.1, row_marginals=r[ps], col_marginals=c[pk], **kw)
    np.testing.assert_allclose(qp, q[ps][:, pk], rtol=1e-12, atol=1e-15)


@given(b=samples, k=protos, seed=seeds, eps=st.floats(0.02, 2.0), iters=st.integers(1, 6),
       uniform=st.booleans())
def test_log_domain_agrees_with_the_plain_form(b, k, seed, eps, iters, uniform):
    rng = np.random.default_rng(seed)
    s = rng.uniform(-1, 1, (b, k))
    kw = {} if uniform else dict(row_marginals=simplex(rng, b), col_marginals=simplex(rng, k))
    plain = sinkhorn_knopp(s, eps, iters, **kw)
    np.testing.assert_allclose(sinkhorn_knopp(s, eps, iters, log_domain=True, **kw), plain, rtol=1e-9, atol=1e-14)


def test_small_epsilon_float32(xp):
    rng = np.random.default_rng(0)
    s = xp.asarray(rng.uniform(-1, 1, (16, 8)).astype(np.float32))
    for eps in (1e-2, 3e-3, 1e-3):
        # float32 resolves log-values of size 1/ε = 1000 to ~6e-5: 1e-3 is a tolerance it can meet
        q = sinkhorn_knopp(s, eps, log_domain=True, tol=1e-3, max_iters=5000)
        assert q.dtype == np.float32
        qh = host(q)
        assert np.all(np.isfinite(qh))
        np.testing.assert_allclose(qh.sum(axis=1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(qh.sum(axis=0), 2.0, rtol=1e-3)
    # exp(1/ε) = exp(1000) overflows float32: the plain form refuses and names the way out
    with pytest.raises(FloatingPointError, match="log_domain=True"):
        sinkhorn_knopp(s, 1e-3)
    # ... while float64 has room for it
    s64 = xp.asarray(backend.to_numpy(s).astype(np.float64) * 0.5)
    np.testing.assert_allclose(host(sinkhorn_knopp(s64, 1e-3)), host(sinkhorn_knopp(s64, 1e-3, log_domain=True)),
                               rtol=1e-8, atol=1e-12)


def test_tolerance_that_is_not_reached_warns():
    s = np.random.default_rng(0).uniform(-1, 1, (6, 4))
    with pytest.warns(RuntimeWarning, match="stopped after 5 iterations"):
        sinkhorn_knopp(s, 0.01, tol=1e-12, max_iters=5, log_domain=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sinkhorn_knopp(s, 0.5, tol=1e-8)


@given(b=st.integers(2, 6), k=st.integers(2, 5), seed=seeds, reg=st.floats(0.05, 1.0), uniform=st.booleans())
def test_sinkhorn_equals_pot(b, k, seed, reg, uniform):
    ot = pytest.importorskip("ot")
    rng = np.random.default_rng(seed)
    s = rng.uniform(-1, 1, (b, k))
    a = np.full(b, 1 / b) if uniform else simplex(rng, b)
    w = np.full(k, 1 / k) if uniform else simplex(rng, k)
    # POT maximises −⟨P, M⟩ + reg·H(P): the cost is the negated score and reg is ε.
    plan_pot = ot.sinkhorn(a, w, -s, reg, stopThr=1e-15, numItermax=200000)
    codes = sinkhorn_knopp(s, reg, tol=1e-13, max_iters=20000, row_marginals=a, col_marginals=w)
    np.testing.assert_allclose(codes * a[:, None], plan_pot, rtol=1e-8, atol=1e-12)


def test_sinkhorn_bad_inputs():
    s = np.zeros((4, 3))
    with pytest.raises(ValueError, match="scores must be 2-D"):
        sinkhorn_knopp(s[0])
    with pytest.raises(ValueError, match="scores must be finite"):
        sinkhorn_knopp(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="epsilon"):
        sinkhorn_knopp(s, 0.0)
    with pytest.raises(ValueError, match="n_iters"):
        sinkhorn_knopp(s, 0.05, 0)
    with pytest.raises(ValueError, match=r"row_marginals must have shape \(4,\)"):
        sinkhorn_knopp(s, row_marginals=np.full(3, 1 / 3))
    with pytest.raises(ValueError, match="col_marginals must sum to 1"):
        sinkhorn_knopp(s, col_marginals=np.ones(3))
    with pytest.raises(ValueError, match="col_marginals must hold positive"):
        sinkhorn_knopp(s, col_marginals=np.array([1.5, -0.5, 0.0]))
    with pytest.raises(ValueError, match="tol"):
        sinkhorn_knopp(s, tol=-1.0)


# ================================================================ SwAV

@given(b=st.integers(1, 4), k=st.integers(2, 5), n_views=st.integers(2, 4), seed=seeds, tau=st.floats(0.05, 1.0),
       data=st.data())
def test_swav_gradcheck_with_codes_fixed(b, k, n_views, seed, tau, data):
    n_codes = data.draw(st.integers(1, n_views))
    rng = np.random.default_rng(seed)
    scores = [rng.uniform(-1, 1, (b, k)) for _ in range(n_views)]
    codes = [sinkhorn_knopp(s) for s in scores[:n_codes]]

    def fn(*args):
        return swav(list(args[:n_views]), list(args[n_views:]), tau)

    assert npjem.gradcheck(fn, scores + codes, fixed=tuple(range(n_views, n_views + n_codes)), **GC)


def test_swav_value_follows_swavs_averaging(xp):
    rng = np.random.default_rng(1)
    b, k, tau = 3, 4, 0.1
    s = [rng.uniform(-1, 1, (b, k)) for _ in range(4)]
    q = [swav_reference(s[0].copy(), 0.05, 3), swav_reference(s[1].copy(), 0.05, 3)]

    def log_softmax(x):
        x = x / tau
        return x - np.log(np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True)) - x.max(1, keepdims=True)

    want = 0.0
    for i in (0, 1):
        sub = sum(-np.mean(np.sum(q[i] * log_softmax(s[v]), axis=1)) for v in range(4) if v != i)
        want += sub / 3
    want /= 2
    got = swav([xp.asarray(a) for a in s], [xp.asarray(a) for a in q], tau)
    np.testing.assert_allclose(host(got), want, rtol=1e-12)
    # codes for other crops: crops_for_assign picks which crop each code belongs to
    got = swav([xp.asarray(a) for a in s], [xp.asarray(q[1])], tau, crops_for_assign=[1])
    want = sum(-np.mean(np.sum(q[1] * log_softmax(s[v]), axis=1)) for v in (0, 2, 3)) / 3
    np.testing.assert_allclose(host(got), want, rtol=1e-12)


def test_swav_sum_is_the_notes_sum_of_two_cross_entropies(xp):
    rng = np.random.default_rng(3)
    b, k, tau = 5, 4, 0.1
    s = [rng.uniform(-1, 1, (b, k)) for _ in range(3)]
    q = [swav_reference(s[0].copy(), 0.05, 3), swav_reference(s[1].copy(), 0.05, 3)]

    def ce(code, scores):  # -(1/B) sum_b sum_k q log softmax(s/tau)
        x = scores / tau
        log_p = x - x.max(1, keepdims=True)
        log_p = log_p - np.log(np.exp(log_p).sum(1, keepdims=True))
        return -np.mean(np.sum(code * log_p, axis=1))

    two = swav([xp.asarray(a) for a in s[:2]], [xp.asarray(a) for a in q], tau, reduction="sum")
    np.testing.assert_allclose(host(two), ce(q[0], s[1]) + ce(q[1], s[0]), rtol=1e-12)
    mean = swav([xp.asarray(a) for a in s[:2]], [xp.asarray(a) for a in q], tau)
    np.testing.assert_allclose(host(two), 2 * host(mean), rtol=1e-12)  # the authors' mean is half of it
    # with a third crop every (code, other crop) pair is summed, none averaged
    three = swav([xp.asarray(a) for a in s], [xp.asarray(a) for a in q], tau, reduction="sum")
    want = ce(q[0], s[1]) + ce(q[0], s[2]) + ce(q[1], s[0]) + ce(q[1], s[2])
    np.testing.assert_allclose(host(three), want, rtol=1e-12)
    with pytest.raises(ValueError, match="reduction"):
        swav(s, q, tau, reduction="none")


def test_swav_no_gradient_reaches_the_codes(xp):
    rng = np.random.default_rng(2)
    s = [Tensor(xp.asarray(rng.uniform(-1, 1, (4, 3))), requires_grad=True) for _ in range(3)]
    codes = [sinkhorn_knopp(t.detach()) for t in s[:2]]
    codes = [Tensor(c.data, requires_grad=True) for c in codes]
    swav(s, codes).backward()
    assert all(c.grad is None for c in codes)
    assert all(t.grad is not None for t in s)


def test_swav_collapse_gives_uniform_codes_and_at_least_log_k(xp):
    b, k = 6, 5
    row = np.array([0.3, -0.2, 0.9, 0.1, -0.7])
    s = xp.asarray(np.tile(row, (b, 1)))
    q = sinkhorn_knopp(s)
    np.testing.assert_allclose(host(q), 1 / k, rtol=1e-12)  # the equipartition spreads a collapsed batch
    x = [Tensor(s.copy(), requires_grad=True) for _ in range(2)]
    loss = swav(x, [q, q])
    assert loss.item() > math.log(k)
    g = host(npjem.grad(loss, [x[0]])[0])
    np.testing.assert_allclose(g, np.tile(g[0], (b, 1)), rtol=1e-12)  # the same push for every sample
    flat = [Tensor(xp.zeros((b, k)), requires_grad=True) for _ in range(2)]
    loss = swav(flat, [q, q])
    assert loss.item() == pytest.approx(math.log(k), rel=1e-12)
    assert np.abs(host(npjem.grad(loss, [flat[0]])[0])).max() < 1e-15


def test_swav_bad_inputs():
    s = [np.zeros((4, 3)), np.zeros((4, 3))]
    with pytest.raises(TypeError, match="scores must be a list or tuple"):
        swav(s[0], [s[0]])
    with pytest.raises(ValueError, match="scores must hold at least 2"):
        swav(s[:1], [s[0]])
    with pytest.raises(ValueError, match=r"scores\[1\] must have shape \(4, 3\)"):
        swav([s[0], np.zeros((4, 2))], [s[0]])
    with pytest.raises(ValueError, match=r"codes\[0\] must have shape \(4, 3\)"):
        swav(s, [np.zeros((3, 3))])
    with pytest.raises(ValueError, match="codes has 3 entries"):
        swav(s, [s[0]] * 3)
    with pytest.raises(ValueError, match="crops_for_assign"):
        swav(s, [s[0]], crops_for_assign=[2])
    with pytest.raises(ValueError, match="temperature"):
        swav(s, [s[0]], 0.0)


# ================================================================ balanced clusters

@pytest.mark.parametrize("n,k", [(60, 4), (61, 4), (10, 10), (7, 1)])
def test_sinkhorn_clusters_makes_equal_groups(xp, device, n, k):
    rng = npjem.random.default_rng(0, device)
    # one dense blob and one sparse one: nearest-centroid groups would be unequal
    pts = xp.concatenate([0.1 * rng.standard_normal((n - n // 4, 2), dtype=np.float64),
                          3.0 + rng.standard_normal((n // 4, 2), dtype=np.float64)])
    res = sinkhorn_clusters(pts, k, generator=npjem.random.default_rng(1, device))
    sizes = np.bincount(host(res.labels), minlength=k)
    assert sizes.sum() == n and sizes.max() - sizes.min() <= (0 if n % k == 0 else 1)
    assert res.centroids.shape == (k, 2) and res.codes.shape == (n, k)
    np.testing.assert_allclose(host(res.codes).sum(axis=1), 1.0, rtol=1e-9)
    for j in range(k):
        np.testing.assert_allclose(host(res.centroids)[j], host(pts)[host(res.labels) == j].mean(axis=0), rtol=1e-9)


def test_sinkhorn_clusters_bad_inputs():
    with pytest.raises(ValueError, match="fewer than n_clusters"):
        sinkhorn_clusters(np.zeros((3, 2)), 4)
    with pytest.raises(ValueError, match="all equal"):
        sinkhorn_clusters(np.zeros((5, 2)), 2, generator=0)
    with pytest.raises(ValueError, match="n_clusters"):
        sinkhorn_clusters(np.zeros((5, 2)), 0)
