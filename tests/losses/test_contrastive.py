"""Tests of npjem.losses.contrastive: gradients, invariants, closed forms and validation."""
import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import npjem
from npjem import Tensor
from npjem.losses import (
    info_nce,
    moco_loss,
    nce_loss,
    nce_memory_loss,
    nce_normalizer,
    nt_xent,
    pair_margin_loss,
)

DIRECTIONS = ["sum", "mean", "x_to_y"]
GC = dict(eps=1e-6, atol=1e-6, rtol=1e-4)

batch = st.integers(2, 6)
dims = st.integers(2, 5)
temps = st.floats(0.05, 2.0)
seeds = st.integers(0, 2**32 - 1)


def randn(rng, *shape, xp=np, dtype=np.float64):
    return xp.asarray(rng.standard_normal(shape).astype(dtype))


def leaf(arr, requires_grad=True):
    return Tensor(arr, requires_grad=requires_grad)


def unit_rows(rng, n, d, xp=np):
    a = rng.standard_normal((n, d))
    return xp.asarray(a / np.linalg.norm(a, axis=1, keepdims=True))


# ================================================================ gradients (float64)

@given(n=batch, d=dims, tau=temps, seed=seeds, directions=st.sampled_from(DIRECTIONS),
       intra=st.booleans(), include_self=st.booleans(), normalize=st.booleans(),
       reduction=st.sampled_from(["mean", "sum"]))
def test_info_nce_gradcheck(n, d, tau, seed, directions, intra, include_self, normalize, reduction):
    rng = np.random.default_rng(seed)
    a, b = randn(rng, n, d), randn(rng, n, d)
    if not normalize:
        # Raw dot products: keep logits O(1/τ) so the check measures the gradient, not roundoff.
        a, b = a / np.sqrt(d), b / np.sqrt(d)
    kw = dict(directions=directions, intra_view_negatives=intra, include_self=include_self and intra,
              normalize=normalize, reduction=reduction)
    assert npjem.gradcheck(lambda x, y: info_nce(x, y, tau, **kw), [a, b], **GC)


@given(n=batch, d=dims, tau=temps, seed=seeds)
def test_info_nce_per_sample_losses_gradcheck(n, d, tau, seed):
    rng = np.random.default_rng(seed)
    a, b = randn(rng, n, d), randn(rng, n, d)
    assert npjem.gradcheck(lambda x, y: info_nce(x, y, tau, reduction="none"), [a, b], **GC)


@given(n=st.integers(1, 6), d=dims, seed=seeds, margin=st.floats(0.3, 3.0),
       distance=st.sampled_from(["euclidean", "cosine"]), eps=st.sampled_from([0.0, 1e-3]))
def test_pair_margin_gradcheck(n, d, seed, margin, distance, eps):
    rng = np.random.default_rng(seed)
    a, b = randn(rng, n, d), randn(rng, n, d)
    pos = rng.random(n) < 0.5
    if distance == "euclidean":
        dist = np.sqrt(((a - b) ** 2).sum(1) + eps)
    else:
        dist = 1 - (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assume(np.all(np.abs(dist - margin) > 1e-3))  # the hinge's kink at D = m
    def fn(x, y):
        return pair_margin_loss(x, y, pos, margin=margin, distance=distance, eps=eps)

    assert npjem.gradcheck(fn, [a, b], **GC)


@given(n=st.integers(1, 5), d=dims, k=st.integers(1, 8), tau=temps, seed=seeds, normalize=st.booleans())
def test_moco_gradcheck_with_key_and_queue_held_fixed(n, d, k, tau, seed, normalize):
    rng = np.random.default_rng(seed)
    q, key, queue = randn(rng, n, d), randn(rng, n, d), unit_rows(rng, k, d)
    def fn(a, b, c):
        return moco_loss(a, b, c, tau, normalize=normalize)

    assert npjem.gradcheck(fn, [q, key, queue], fixed=(1, 2), **GC)


def test_moco_stops_the_gradient_of_key_and_queue():
    rng = np.random.default_rng(0)
    q, k, queue = (leaf(randn(rng, 4, 3)), leaf(randn(rng, 4, 3)), leaf(unit_rows(rng, 6, 3)))
    moco_loss(q, k, queue).backward()
    assert q.grad is not None and np.any(q.grad.numpy() != 0)
    assert k.grad is None and queue.grad is None
    gq, gk, gqueue = npjem.grad(moco_loss(q, k, queue), [q, k, queue], allow_unused=True)
    assert gk is None and gqueue is None
    np.testing.assert_allclose(gq.numpy(), q.grad.numpy(), rtol=1e-12)


@given(b=st.integers(1, 4), d=dims, k=st.integers(1, 6), tau=temps, seed=seeds,
       per_sample=st.booleans(), eps=st.sampled_from([0.0, 1e-3]), z=st.sampled_from([1.0, 37.5]),
       normalize=st.booleans())
def test_nce_memory_loss_gradcheck(b, d, k, tau, seed, per_sample, eps, z, normalize):
    rng = np.random.default_rng(seed)
    v, mpos = randn(rng, b, d), unit_rows(rng, b, d)
    mneg = unit_rows(rng, b * k, d).reshape(b, k, d) if per_sample else unit_rows(rng, k, d)
    if not normalize:
        v = v / np.linalg.norm(v, axis=1, keepdims=True) * rng.uniform(0.5, 1.5, (b, 1))
    def fn(x, p, m):
        return nce_memory_loss(x, p, m, dataset_size=50, temperature=tau, normalizer=z, eps=eps,
                               normalize=normalize)

    assert npjem.gradcheck(fn, [v, mpos, mneg], fixed=(1, 2), **GC)


@given(b=st.integers(1, 4), d=dims, k=st.integers(1, 6), tau=temps, seed=seeds, lam=st.floats(0, 1))
def test_pirl_nce_loss_gradcheck(b, d, k, tau, seed, lam):
    rng = np.random.default_rng(seed)
    f, g, mpos, mneg = randn(rng, b, d), randn(rng, b, d), unit_rows(rng, b, d), unit_rows(rng, k, d)
    def fn(x, y, p, m):
        return nce_loss(x, y, p, m, dataset_size=1000, temperature=tau, lam=lam)

    assert npjem.gradcheck(fn, [f, g, mpos, mneg], fixed=(2, 3), **GC)


def test_nce_stops_the_gradient_of_the_memory():
    rng = np.random.default_rng(1)
    f, g = leaf(randn(rng, 3, 4)), leaf(randn(rng, 3, 4))
    mpos, mneg = leaf(unit_rows(rng, 3, 4)), leaf(unit_rows(rng, 7, 4))
    nce_loss(f, g, mpos, mneg, dataset_size=100).backward()
    assert f.grad is not None and g.grad is not None
    assert mpos.grad is None and mneg.grad is None


# ================================================================ InfoNCE invariants

@given(n=batch, d=dims, tau=temps, seed=seeds, directions=st.sampled_from(DIRECTIONS), intra=st.booleans())
def test_info_nce_is_invariant_to_positive_row_scaling(n, d, tau, seed, directions, intra):
    rng = np.random.default_rng(seed)
    a, b = randn(rng, n, d), randn(rng, n, d)
    sa, sb = 10.0 ** rng.uniform(-3, 3, (n, 1)), 10.0 ** rng.uniform(-3, 3, (n, 1))
    kw = dict(directions=directions, intra_view_negatives=intra, reduction="none")
    ref = info_nce(Tensor(a), Tensor(b), tau, **kw).numpy()
    out = info_nce(Tensor(a * sa), Tensor(b * sb), tau, **kw).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-11, atol=1e-12)


@given(n=batch, d=dims, tau=temps, seed=seeds, directions=st.sampled_from(DIRECTIONS),
       intra=st.booleans(), include_self=st.booleans(), normalize=st.booleans())
def test_info_nce_is_equivariant_under_a_joint_batch_permutation(n, d, tau, seed, directions, intra,
                                                                  include_self, normalize):
    rng = np.random.default_rng(seed)
    a, b = randn(rng, n, d), randn(rng, n, d)
    p = rng.permutation(n)
    kw = dict(directions=directions, intra_view_negatives=intra, include_self=include_self and intra,
              normalize=normalize)
    per = info_nce(Tensor(a), Tensor(b), tau, reduction="none", **kw).numpy()
    per_p = info_nce(Tensor(a[p]), Tensor(b[p]), tau, reduction="none", **kw).numpy()
    np.testing.assert_allclose(per_p, per[p], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(info_nce(Tensor(a[p]), Tensor(b[p]), tau, **kw).item(), per.mean(), rtol=1e-12)


@given(n=batch, d=dims, tau=temps, seed=seeds, directions=st.sampled_from(["sum", "mean"]), intra=st.booleans())
def test_info_nce_is_symmetric_in_its_two_views(n, d, tau, seed, directions, intra):
    rng = np.random.default_rng(seed)
    a, b = randn(rng, n, d), randn(rng, n, d)
    kw = dict(directions=directions, intra_view_negatives=intra, reduction="none")
    np.testing.assert_allclose(info_nce(Tensor(a), Tensor(b), tau, **kw).numpy(),
                               info_nce(Tensor(b), Tensor(a), tau, **kw).numpy(), rtol=1e-12, atol=1e-13)


@given(n=st.integers(2, 8), d=dims, tau=temps, seed=seeds)
def test_info_nce_of_identical_embeddings_is_log_of_the_denominator_size(n, d, tau, seed):
    rng = np.random.default_rng(seed)
    row = rng.standard_normal(d)
    a = np.tile(row, (n, 1))
    # Every logit equals β, so each direction costs log(number of terms in the denominator).
    cases = [
        (dict(), math.log(2 * n - 1)),
        (dict(include_self=True), math.log(2 * n)),
        (dict(intra_view_negatives=False), math.log(n)),
    ]
    for kw, per_dir in cases:
        for directions, factor in (("sum", 2.0), ("mean", 1.0), ("x_to_y", 1.0)):
            val = info_nce(Tensor(a), Tensor(3.0 * a), tau, directions=directions, **kw).item()
            assert val == pytest.approx(factor * per_dir, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_info_nce_tends_to_zero_with_identical_positives_and_orthogonal_negatives(n):
    e = np.eye(8)[:n]  # orthonormal rows: s = 1 for the positive, 0 for all 2N − 2 negatives
    prev = np.inf
    for tau in (1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01):
        val = info_nce(Tensor(e), Tensor(e), tau).item()
        closed = 2 * math.log1p((2 * n - 2) * math.exp(-1 / tau))
        assert val == pytest.approx(closed, rel=1e-10, abs=1e-13)
        assert val <= prev  # non-increasing (it reaches 0.0 once (2N−2)e^{−β} < ulp)
        prev = val
    assert prev < 1e-12


def test_info_nce_matches_the_seed_formula_literally():
    # Seed 003_: −β sim(h_x, h_y) + log[Σ_n exp β sim(h_x, h_x^n) + Σ_n exp β sim(h_x, h_y^n)], all n.
    rng = np.random.default_rng(3)
    a, b, tau = rng.standard_normal((4, 3)), rng.standard_normal((4, 3)), 0.3
    ua = a / np.linalg.norm(a, axis=1, keepdims=True)
    ub = b / np.linalg.norm(b, axis=1, keepdims=True)
    beta = 1 / tau
    per = [-beta * ua[i] @ ub[i] + np.log(np.exp(beta * ua @ ua[i]).sum() + np.exp(beta * ub @ ua[i]).sum())
           for i in range(4)]
    val = info_nce(Tensor(a), Tensor(b), tau, directions="x_to_y", include_self=True).item()
    assert val == pytest.approx(np.mean(per), rel=1e-13)


def test_info_nce_simclr_sums_directions_where_lightly_averages():
    rng = np.random.default_rng(4)
    a, b = Tensor(rng.standard_normal((5, 3))), Tensor(rng.standard_normal((5, 3)))
    s, m = info_nce(a, b, 0.2).item(), info_nce(a, b, 0.2, directions="mean").item()
    assert s == pytest.approx(2 * m, rel=1e-14)
    xy, yx = info_nce(a, b, 0.2, directions="x_to_y").item(), info_nce(b, a, 0.2, directions="x_to_y").item()
    assert s == pytest.approx(xy + yx, rel=1e-14)
    assert nt_xent(a, b, 0.2).item() == s


@pytest.mark.parametrize("directions", DIRECTIONS)
@pytest.mark.parametrize("intra", [True, False])
def test_info_nce_float32_finite_at_small_temperature_and_huge_norms(directions, intra, device, xp):
    rng = np.random.default_rng(5)
    n, d = 16, 8
    norms = 10.0 ** rng.uniform(-2, 4, (n, 1))
    a = rng.standard_normal((n, d)) / np.sqrt(d) * norms
    b = a + 0.1 * rng.standard_normal((n, d)) * norms  # near-duplicate positives: large logits
    b[0] *= 1e4 / np.linalg.norm(b[0])
    ta = Tensor(xp.asarray(a.astype(np.float32)), requires_grad=True)
    tb = Tensor(xp.asarray(b.astype(np.float32)), requires_grad=True)
    loss = info_nce(ta, tb, 0.01, directions=directions, intra_view_negatives=intra)
    assert loss.dtype == np.float32
    loss.backward()
    assert np.isfinite(loss.item())
    assert np.all(np.isfinite(ta.grad.numpy())) and np.all(np.isfinite(tb.grad.numpy()))
    ref = info_nce(Tensor(a), Tensor(b), 0.01, directions=directions, intra_view_negatives=intra).item()
    # float32 rounds each cosine to ~1e-7, i.e. each logit to ~1e-5 at β = 100.
    assert loss.item() == pytest.approx(ref, rel=1e-3, abs=1e-3)


def test_info_nce_float32_stays_float32_and_on_device(device, xp):
    rng = np.random.default_rng(6)
    a = Tensor(xp.asarray(rng.standard_normal((4, 3)).astype(np.float32)))
    b = Tensor(xp.asarray(rng.standard_normal((4, 3)).astype(np.float32)))
    for fn in (lambda: info_nce(a, b), lambda: moco_loss(a, b, b), lambda: pair_margin_loss(a, b, [1, 0, 1, 0]),
               lambda: nce_loss(a, b, a, b, dataset_size=10)):
        out = fn()
        assert out.dtype == np.float32 and out.device == device and out.shape == ()


# ================================================================ pair margin

@given(n=st.integers(1, 6), d=dims, seed=seeds, margin=st.floats(0.1, 3.0),
       distance=st.sampled_from(["euclidean", "cosine"]))
def test_pair_margin_matches_its_formula(n, d, seed, margin, distance):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    pos = rng.random(n) < 0.5
    if distance == "euclidean":
        dist = np.linalg.norm(a - b, axis=1)
    else:
        dist = 1 - (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    per = np.where(pos, 0.5 * dist ** 2, 0.5 * np.maximum(0.0, margin - dist) ** 2)
    out = pair_margin_loss(Tensor(a), Tensor(b), pos, margin=margin, distance=distance, reduction="none")
    np.testing.assert_allclose(out.numpy(), per, rtol=1e-12, atol=1e-14)
    ta, tb = Tensor(a), Tensor(b)
    assert pair_margin_loss(ta, tb, pos, margin, distance).item() == pytest.approx(per.mean(), rel=1e-12)
    assert pair_margin_loss(ta, tb, pos, margin, distance, "sum").item() == pytest.approx(per.sum(), rel=1e-12)


@given(n=st.integers(1, 6), d=dims, seed=seeds, margin=st.floats(0.1, 2.0),
       distance=st.sampled_from(["euclidean", "cosine"]))
def test_pair_margin_is_zero_for_negatives_beyond_the_margin(n, d, seed, margin, distance):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, d))
    if distance == "euclidean":
        u = rng.standard_normal((n, d))
        b = a + u / np.linalg.norm(u, axis=1, keepdims=True) * margin * rng.uniform(1.01, 3.0, (n, 1))
    else:
        b = -a * rng.uniform(0.5, 2.0, (n, 1))  # D = 2 > margin
    ta, tb = leaf(a), leaf(b)
    loss = pair_margin_loss(ta, tb, np.zeros(n, bool), margin=margin, distance=distance)
    assert loss.item() == 0.0
    loss.backward()
    assert np.all(ta.grad.numpy() == 0) and np.all(tb.grad.numpy() == 0)


def test_pair_margin_positive_pair_at_zero_distance_and_negative_pair_at_zero_distance():
    a = np.array([[1.0, 2.0], [0.5, -1.0]])
    ta, tb = leaf(a), leaf(a.copy())
    loss = pair_margin_loss(ta, tb, [True, False], margin=2.0, reduction="sum")
    assert loss.item() == pytest.approx(0.5 * 2.0 ** 2)   # the negative costs ½m²
    loss.backward()
    # Positive: exact zero gradient; negative at D = 0: the vector_norm convention gives 0, not NaN.
    assert np.all(ta.grad.numpy() == 0) and np.all(tb.grad.numpy() == 0)
    # With eps inside the square root, D = sqrt(eps) and the gradient is still finite.
    tc = leaf(a)
    pair_margin_loss(tc, Tensor(a), [False, False], margin=2.0, eps=1e-12).backward()
    assert np.all(np.isfinite(tc.grad.numpy()))


def test_pair_margin_accepts_flag_types():
    rng = np.random.default_rng(7)
    a, b = Tensor(rng.standard_normal((3, 2))), Tensor(rng.standard_normal((3, 2)))
    ref = pair_margin_loss(a, b, np.array([True, False, True])).item()
    for flags in ([1, 0, 1], np.array([1.0, 0.0, 1.0]), Tensor(np.array([True, False, True])), (True, False, True)):
        assert pair_margin_loss(a, b, flags).item() == ref


# ================================================================ MoCo

@given(n=st.integers(1, 5), d=dims, k=st.integers(1, 8), tau=temps, seed=seeds)
def test_moco_matches_cross_entropy_with_label_zero(n, d, k, tau, seed):
    rng = np.random.default_rng(seed)
    q, key, queue = rng.standard_normal((n, d)), rng.standard_normal((n, d)), unit_rows(rng, k, d)
    uq = q / np.linalg.norm(q, axis=1, keepdims=True)
    uk = key / np.linalg.norm(key, axis=1, keepdims=True)
    logits = np.concatenate([(uq * uk).sum(1, keepdims=True), uq @ queue.T], axis=1) / tau
    m = logits.max(1, keepdims=True)
    per = (m[:, 0] + np.log(np.exp(logits - m).sum(1))) - logits[:, 0]
    out = moco_loss(Tensor(q), Tensor(key), Tensor(queue), tau, reduction="none").numpy()
    np.testing.assert_allclose(out, per, rtol=1e-12, atol=1e-13)
    # The order of the negatives does not matter, and q's scale does not either.
    p = rng.permutation(k)
    assert moco_loss(Tensor(3 * q), Tensor(key), Tensor(queue[p]), tau).item() == pytest.approx(per.mean(), rel=1e-12)


def test_moco_without_normalization_uses_raw_dot_products():
    rng = np.random.default_rng(8)
    q, k, queue = rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), rng.standard_normal((5, 4))
    logits = np.concatenate([(q * k).sum(1, keepdims=True), q @ queue.T], 1) / 0.5
    per = np.log(np.exp(logits).sum(1)) - logits[:, 0]
    assert moco_loss(q, k, queue, 0.5, normalize=False).item() == pytest.approx(per.mean(), rel=1e-12)


# ================================================================ PIRL / NPID NCE

def vissl_nce(v, mem_pos, mem_neg, dataset_size, tau, z, eps):
    """vissl's NCECriterion on NCEAverage's scores, in raw exp form (float64 NumPy)."""
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    w = np.concatenate([mem_pos[:, None, :], mem_neg if mem_neg.ndim == 3 else
                        np.broadcast_to(mem_neg, (len(v),) + mem_neg.shape)], axis=1)
    x = np.exp(np.einsum("bkd,bd->bk", w, u) / tau) / z
    k = x.shape[1] - 1
    pn = 1.0 / dataset_size
    ln_pmt = np.log(x[:, 0] / (x[:, 0] + k * pn + eps))
    ln_pon = np.log((k * pn) / (x[:, 1:] + k * pn + eps))
    return -(ln_pmt.sum() + ln_pon.sum()) / len(v)


@given(b=st.integers(1, 4), d=dims, k=st.integers(1, 8), tau=st.floats(0.05, 1.0), seed=seeds,
       per_sample=st.booleans(), size=st.integers(10, 10**6))
def test_nce_memory_loss_matches_vissl_and_the_paper(b, d, k, tau, seed, per_sample, size):
    rng = np.random.default_rng(seed)
    v, mpos = rng.standard_normal((b, d)), unit_rows(rng, b, d)
    mneg = unit_rows(rng, b * k, d).reshape(b, k, d) if per_sample else unit_rows(rng, k, d)
    z = nce_normalizer(Tensor(v), Tensor(mpos), Tensor(mneg), dataset_size=size, temperature=tau)
    eps = float(np.finfo(np.float32).eps)
    for zz, ee in ((1.0, 0.0), (z, eps), (z, 0.0)):
        ours = nce_memory_loss(Tensor(v), Tensor(mpos), Tensor(mneg), dataset_size=size, temperature=tau,
                               normalizer=zz, eps=ee).item()
        assert ours == pytest.approx(vissl_nce(v, mpos, mneg, size, tau, zz, ee), rel=1e-11)


@given(b=st.integers(1, 3), d=dims, k=st.integers(1, 5), tau=st.floats(0.05, 1.0), seed=seeds,
       size=st.integers(10, 10**6))
def test_nce_memory_loss_matches_the_paper_h_in_high_precision(b, d, k, tau, seed, size):
    # PIRL: h(m, v) = exp(s/τ) / (exp(s/τ) + K/|D|), L = −log h(m_I, v) − Σ log(1 − h(m_I', v)).
    # 1 − h cancels catastrophically in float64 when h → 1, so the reference runs at 50 digits.
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    rng = np.random.default_rng(seed)
    v, mpos, mneg = rng.standard_normal((b, d)), unit_rows(rng, b, d), unit_rows(rng, b * k, d).reshape(b, k, d)
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    c = mpmath.mpf(k) / size

    def h(s):
        e = mpmath.exp(mpmath.mpf(float(s)) / mpmath.mpf(tau))
        return e / (e + c)

    paper = [float(-mpmath.log(h(mpos[i] @ u[i])) - sum(mpmath.log(1 - h(mneg[i, j] @ u[i])) for j in range(k)))
             for i in range(b)]
    ours = nce_memory_loss(Tensor(v), Tensor(mpos), Tensor(mneg), dataset_size=size, temperature=tau,
                           reduction="none").numpy()
    np.testing.assert_allclose(ours, paper, rtol=1e-12)


def test_nce_normalizer_is_dataset_size_times_the_mean_exponentiated_score():
    rng = np.random.default_rng(9)
    v, mpos, mneg = rng.standard_normal((3, 4)), unit_rows(rng, 3, 4), unit_rows(rng, 5, 4)
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    s = np.concatenate([(u * mpos).sum(1, keepdims=True), u @ mneg.T], 1) / 0.07
    assert nce_normalizer(v, mpos, mneg, dataset_size=1000, temperature=0.07) == pytest.approx(
        1000 * np.exp(s).mean(), rel=1e-12)


@given(seed=seeds, lam=st.floats(0, 1))
def test_pirl_loss_is_the_lambda_mixture_of_two_nce_terms(seed, lam):
    rng = np.random.default_rng(seed)
    f, g, mpos, mneg = (Tensor(rng.standard_normal((3, 4))), Tensor(rng.standard_normal((3, 4))),
                        Tensor(unit_rows(rng, 3, 4)), Tensor(unit_rows(rng, 6, 4)))
    kw = dict(dataset_size=500, temperature=0.07)
    expected = (lam * nce_memory_loss(g, mpos, mneg, **kw).item()
                + (1 - lam) * nce_memory_loss(f, mpos, mneg, **kw).item())
    assert nce_loss(f, g, mpos, mneg, lam=lam, **kw).item() == pytest.approx(expected, rel=1e-13, abs=1e-13)


def test_nce_float32_finite_at_small_temperature():
    rng = np.random.default_rng(10)
    v = Tensor((rng.standard_normal((4, 8)) * 1e4).astype(np.float32), requires_grad=True)
    mpos = Tensor(unit_rows(rng, 4, 8).astype(np.float32))
    mneg = Tensor(unit_rows(rng, 64, 8).astype(np.float32))
    loss = nce_memory_loss(v, mpos, mneg, dataset_size=10**6, temperature=0.01)
    loss.backward()
    assert loss.dtype == np.float32 and np.isfinite(loss.item()) and np.all(np.isfinite(v.grad.numpy()))


# ================================================================ validation

def _bad_calls():
    rng = np.random.default_rng(11)
    a, b = Tensor(rng.standard_normal((4, 3))), Tensor(rng.standard_normal((4, 3)))
    b5 = Tensor(rng.standard_normal((5, 3)))
    b4x2 = Tensor(rng.standard_normal((4, 2)))
    one = Tensor(rng.standard_normal((1, 3)))
    vec = Tensor(rng.standard_normal(3))
    queue, mpos, mneg = Tensor(unit_rows(rng, 6, 3)), Tensor(unit_rows(rng, 4, 3)), Tensor(unit_rows(rng, 5, 3))
    nce = dict(dataset_size=100)
    return [
        (lambda: info_nce(a, b5), "h_y", ValueError),
        (lambda: info_nce(a, b4x2), "h_y", ValueError),
        (lambda: info_nce(one, one), "N >= 2", ValueError),
        (lambda: info_nce(vec, vec), "h_x", ValueError),
        (lambda: info_nce(a, b, 0.0), "temperature", ValueError),
        (lambda: info_nce(a, b, -0.1), "temperature", ValueError),
        (lambda: info_nce(a, b, float("nan")), "temperature", ValueError),
        (lambda: info_nce(a, b, directions="both"), "directions", ValueError),
        (lambda: info_nce(a, b, reduction="avg"), "reduction", ValueError),
        (lambda: info_nce(a, b, include_self=True, intra_view_negatives=False), "include_self", ValueError),
        (lambda: info_nce(a, Tensor(b.data.astype(np.float32))), "dtype", TypeError),
        (lambda: info_nce(a, [[1.0]]), "h_y", TypeError),
        (lambda: pair_margin_loss(a, b5, [1, 0, 1, 0]), "h_y", ValueError),
        (lambda: pair_margin_loss(a, b, [1, 0, 1]), "is_positive", ValueError),
        (lambda: pair_margin_loss(a, b, [2, 0, 1, 0]), "is_positive", ValueError),
        (lambda: pair_margin_loss(a, b, [1, 0, 1, 0], margin=0.0), "margin", ValueError),
        (lambda: pair_margin_loss(a, b, [1, 0, 1, 0], distance="l1"), "distance", ValueError),
        (lambda: moco_loss(a, b5, queue), "k", ValueError),
        (lambda: moco_loss(a, b, queue.T), "queue", ValueError),
        (lambda: moco_loss(a, b, Tensor(queue.data[:0])), "queue", ValueError),
        (lambda: moco_loss(a, b, queue, temperature=0), "temperature", ValueError),
        (lambda: moco_loss(vec, vec, queue), "q", ValueError),
        (lambda: nce_memory_loss(a, mpos, mneg, dataset_size=0), "dataset_size", ValueError),
        (lambda: nce_memory_loss(a, mpos, mneg, **nce, temperature=0), "temperature", ValueError),
        (lambda: nce_memory_loss(a, Tensor(unit_rows(rng, 3, 3)), mneg, **nce), "memory_pos", ValueError),
        (lambda: nce_memory_loss(a, mpos, Tensor(unit_rows(rng, 5, 2)), **nce), "memory_neg", ValueError),
        (lambda: nce_memory_loss(a, mpos, Tensor(unit_rows(rng, 15, 3).reshape(3, 5, 3)), **nce),
         "memory_neg", ValueError),
        (lambda: nce_memory_loss(a, mpos, mneg, **nce, normalizer=-1.0), "normalizer", ValueError),
        (lambda: nce_loss(a, b5, mpos, mneg, **nce), "g_transformed", ValueError),
        (lambda: nce_loss(a, b, mpos, mneg, **nce, lam=1.5), "lam", ValueError),
    ]


@pytest.mark.parametrize("case", range(len(_bad_calls())))
def test_bad_inputs_raise_naming_the_argument(case):
    call, name, exc = _bad_calls()[case]
    with pytest.raises(exc, match=name):
        call()


# ================================================================ edges (found by mutation testing)

def _empty(d=3):
    return Tensor(np.zeros((0, d)))


@pytest.mark.parametrize("call, message", [
    (lambda: pair_margin_loss(_empty(), _empty(), np.zeros(0, bool)), "at least one pair, got N = 0"),
    (lambda: moco_loss(_empty(), _empty(), Tensor(unit_rows(np.random.default_rng(0), 5, 3))),
     "at least one query, got N = 0"),
    (lambda: nce_memory_loss(_empty(), _empty(), Tensor(unit_rows(np.random.default_rng(0), 5, 3)),
                             dataset_size=10), "at least one sample, got B = 0"),
    (lambda: nce_loss(_empty(), _empty(), _empty(), Tensor(unit_rows(np.random.default_rng(0), 5, 3)),
                      dataset_size=10), "at least one sample, got B = 0"),
    (lambda: nce_normalizer(_empty(), _empty(), Tensor(unit_rows(np.random.default_rng(0), 5, 3)),
                            dataset_size=10), "at least one sample, got B = 0"),
])
def test_an_empty_batch_raises_instead_of_returning_nan(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def _nce_by_hand(v, mpos, mneg, size, tau):
    """−log h(m_I, v) − Σ log(1 − h(m_I', v)), h(x) = x / (x + K/|D|), x = exp(s/τ) (Z = 1)."""
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    c = mneg.shape[0] / size
    xpos = np.exp((mpos * u).sum(axis=1) / tau)
    xneg = np.exp(u @ mneg.T / tau)
    return np.mean(-np.log(xpos / (xpos + c)) - np.log(c / (xneg + c)).sum(axis=1))


def test_nce_with_a_dataset_of_one_sample_is_allowed_and_exact():
    rng = np.random.default_rng(3)
    v, mpos, mneg = rng.standard_normal((3, 4)), unit_rows(rng, 3, 4), unit_rows(rng, 2, 4)
    got = nce_memory_loss(Tensor(v), Tensor(mpos), Tensor(mneg), dataset_size=1, temperature=0.5).item()
    assert got == pytest.approx(_nce_by_hand(v, mpos, mneg, 1, 0.5), rel=1e-12)
    z = nce_normalizer(Tensor(v), Tensor(mpos), Tensor(mneg), dataset_size=1, temperature=0.5)
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    scores = np.concatenate([(mpos * u).sum(axis=1)[:, None], u @ mneg.T], axis=1) / 0.5
    assert z == pytest.approx(np.exp(scores).mean(), rel=1e-12)
    for bad in (0, -1, True, 1.0):
        with pytest.raises(ValueError, match="dataset_size"):
            nce_memory_loss(Tensor(v), Tensor(mpos), Tensor(mneg), dataset_size=bad)
        with pytest.raises(ValueError, match="dataset_size"):
            nce_normalizer(Tensor(v), Tensor(mpos), Tensor(mneg), dataset_size=bad)


@pytest.mark.parametrize("loss", [
    lambda a, b: info_nce(a, b),
    lambda a, b: pair_margin_loss(a, b, [1, 0, 1, 0]),
    lambda a, b: moco_loss(a, b, b),
    lambda a, b: nce_memory_loss(a, b, b, dataset_size=10),
])
def test_integer_embeddings_are_refused_with_a_type_error(loss):
    a = np.arange(12).reshape(4, 3)
    with pytest.raises(TypeError, match="floating dtype"):
        loss(a, a.copy())
    assert np.isfinite(loss(Tensor(a.astype(np.float64)), Tensor(a.astype(np.float64) + 1.0)).item())


def test_moco_hints_at_the_transposed_buffer_only_when_it_is_one():
    rng = np.random.default_rng(4)
    q, k = Tensor(rng.standard_normal((4, 3))), Tensor(rng.standard_normal((4, 3)))
    buffer = Tensor(unit_rows(rng, 6, 3).T.copy())  # MoCo's (d, K) layout
    with pytest.raises(ValueError, match=r"pass queue\.T"):
        moco_loss(q, k, buffer)
    with pytest.raises(ValueError, match=r"got \(6, 2\)$"):  # neither layout: no hint
        moco_loss(q, k, Tensor(rng.standard_normal((6, 2))))
    assert np.isfinite(moco_loss(q, k, Tensor(buffer.data.T)).item())


def test_cosine_distance_of_a_zero_row_is_one_and_its_gradient_points_at_the_other_row():
    # The norm is clamped at eps = 1e-8 (PyTorch's cosine_similarity): at x = 0,
    # ∂cos/∂x = y / (eps ‖y‖), so D = 1 − cos = 1 and ∂(D²/2)/∂x = −y / (eps ‖y‖).
    y = np.array([[3.0, 4.0, 0.0]])
    x = Tensor(np.zeros((1, 3)), requires_grad=True)
    loss = pair_margin_loss(x, Tensor(y), [1], distance="cosine", reduction="sum")
    assert loss.item() == 0.5
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), -y / 5.0 / 1e-8, rtol=1e-9)


def _normalizer_bad_calls():
    rng = np.random.default_rng(12)
    v, mpos, mneg = Tensor(rng.standard_normal((4, 3))), Tensor(unit_rows(rng, 4, 3)), Tensor(unit_rows(rng, 5, 3))
    return [
        (lambda: nce_normalizer(Tensor(rng.standard_normal(3)), mpos, mneg, dataset_size=9), "v", ValueError),
        (lambda: nce_normalizer(v, mpos, mneg, dataset_size=9, temperature=0.0), "temperature", ValueError),
        (lambda: nce_normalizer(v, mpos, mneg, dataset_size=0), "dataset_size", ValueError),
        (lambda: nce_normalizer(v, Tensor(unit_rows(rng, 3, 3)), mneg, dataset_size=9), "memory_pos", ValueError),
    ]


@pytest.mark.parametrize("case", range(len(_bad_calls()) + len(_normalizer_bad_calls())))
def test_errors_name_the_argument_as_a_word_of_its_own(case):
    # "q" must appear as the word q (not inside "XXqXX", not as "Q"): the argument as typed.
    import re

    call, name, exc = (_bad_calls() + _normalizer_bad_calls())[case]
    with pytest.raises(exc) as info:
        call()
    assert re.search(rf"(^|\W){re.escape(name)}(\W|$)", str(info.value)), str(info.value)


def test_default_temperatures_and_weights_are_the_documented_ones():
    rng = np.random.default_rng(13)
    a, b = Tensor(rng.standard_normal((5, 4))), Tensor(rng.standard_normal((5, 4)))
    queue, mpos, mneg = Tensor(unit_rows(rng, 7, 4)), Tensor(unit_rows(rng, 5, 4)), Tensor(unit_rows(rng, 6, 4))
    same = lambda x, y: x.item() == pytest.approx(y.item(), rel=1e-13)  # noqa: E731
    assert same(info_nce(a, b), info_nce(a, b, 0.1, directions="sum"))
    assert same(nt_xent(a, b), info_nce(a, b, 0.1))
    assert same(nt_xent(a, b, directions="mean"), info_nce(a, b, 0.1, directions="mean"))
    assert not same(nt_xent(a, b, directions="mean"), nt_xent(a, b))
    assert same(moco_loss(a, b, queue), moco_loss(a, b, queue, 0.2))
    assert same(nce_memory_loss(a, mpos, mneg, dataset_size=50),
                nce_memory_loss(a, mpos, mneg, dataset_size=50, temperature=0.07, normalizer=1.0, eps=0.0))
    assert same(nce_loss(a, b, mpos, mneg, dataset_size=50),
                nce_loss(a, b, mpos, mneg, dataset_size=50, temperature=0.07, lam=0.5))
    z = nce_normalizer(a, mpos, mneg, dataset_size=50)
    assert z == pytest.approx(nce_normalizer(a, mpos, mneg, dataset_size=50, temperature=0.07), rel=1e-13)
    assert z != pytest.approx(nce_normalizer(a, mpos, mneg, dataset_size=50, temperature=1.07), rel=1e-3)
    assert pair_margin_loss(a, b, [1, 0, 1, 0, 0]).item() == pytest.approx(
        pair_margin_loss(a, b, [1, 0, 1, 0, 0], margin=1.0, distance="euclidean", eps=0.0).item(), rel=1e-13)


def _message_calls():
    rng = np.random.default_rng(14)
    a, b = Tensor(rng.standard_normal((4, 3))), Tensor(rng.standard_normal((4, 3)))
    vec, ints = Tensor(rng.standard_normal(3)), Tensor(np.arange(12).reshape(4, 3))
    queue, mpos, mneg = Tensor(unit_rows(rng, 6, 3)), Tensor(unit_rows(rng, 4, 3)), Tensor(unit_rows(rng, 5, 3))
    nce = dict(dataset_size=100)
    return [
        (lambda: info_nce(vec, b), r"h_x must be 2-D with shape (N, D), got shape (3,)"),
        (lambda: info_nce(a, Tensor(rng.standard_normal((5, 3)))),
         r"h_y must have shape (4, 3) (to match h_x), got (5, 3)"),
        (lambda: info_nce(a, Tensor(b.data.astype(np.float32))),
         r"h_y has dtype float32 but h_x has dtype float64; cast one of them"),
        (lambda: info_nce(a, b, "0.1"), r"temperature must be a real number, got '0.1'"),
        (lambda: pair_margin_loss(a, vec, [1, 0, 1, 0]), r"h_y must be 2-D with shape (N, D), got shape (3,)"),
        (lambda: pair_margin_loss(a, Tensor(rng.standard_normal((4, 2))), [1, 0, 1, 0]),
         r"h_y must have shape (4, 3) (to match h_x), got (4, 2)"),
        (lambda: moco_loss(a, ints, queue), r"k must have a floating dtype, got int64"),
        (lambda: moco_loss(a, b, vec), r"queue must be 2-D with shape (K, D), got shape (3,)"),
        (lambda: moco_loss(a, b, Tensor(queue.data.astype(np.float32))),
         r"queue has dtype float32 but q has dtype float64; cast one of them"),
        (lambda: moco_loss(a, b, queue, reduction="avg"), r"reduction must be one of 'mean', 'sum', 'none', got 'avg'"),
        (lambda: nce_memory_loss(vec, mpos, mneg, **nce), r"v must be 2-D with shape (B, D), got shape (3,)"),
        (lambda: nce_memory_loss(a, Tensor(unit_rows(rng, 3, 3)), mneg, **nce),
         r"memory_pos must have shape (4, 3) (to match v), got (3, 3)"),
        (lambda: nce_memory_loss(a, mpos, [[1.0]], **nce), r"memory_neg must be a Tensor or an array, got list"),
        (lambda: nce_memory_loss(a, mpos, Tensor(np.zeros((0, 3))), **nce),
         r"memory_neg must hold at least one negative (K >= 1), got K = 0"),
        (lambda: nce_loss(vec, b, mpos, mneg, **nce), r"f_orig must be 2-D with shape (B, D), got shape (3,)"),
        (lambda: nce_loss(a, vec, mpos, mneg, **nce), r"g_transformed must be 2-D with shape (B, D), got shape (3,)"),
        (lambda: nce_loss(a, Tensor(rng.standard_normal((5, 3))), mpos, mneg, **nce),
         r"g_transformed must have shape (4, 3) (to match f_orig), got (5, 3)"),
        (lambda: nce_loss(a, b, Tensor(unit_rows(rng, 3, 3)), mneg, **nce),
         r"memory_pos must have shape (4, 3) (to match f_orig), got (3, 3)"),
    ]


@pytest.mark.parametrize("case", range(len(_message_calls())))
def test_error_messages_say_exactly_what_was_expected_and_what_came(case):
    call, message = _message_calls()[case]
    with pytest.raises((TypeError, ValueError)) as info:
        call()
    assert str(info.value) == message


def test_pirl_nce_loss_passes_its_reduction_on():
    rng = np.random.default_rng(15)
    f, g = Tensor(rng.standard_normal((4, 3))), Tensor(rng.standard_normal((4, 3)))
    mpos, mneg = Tensor(unit_rows(rng, 4, 3)), Tensor(unit_rows(rng, 5, 3))
    per = nce_loss(f, g, mpos, mneg, dataset_size=50, lam=0.3, reduction="none")
    want = 0.3 * nce_memory_loss(g, mpos, mneg, dataset_size=50, reduction="none").numpy() \
        + 0.7 * nce_memory_loss(f, mpos, mneg, dataset_size=50, reduction="none").numpy()
    assert per.shape == (4,)
    np.testing.assert_allclose(per.numpy(), want, rtol=1e-13)
    total = nce_loss(f, g, mpos, mneg, dataset_size=50, lam=0.3, reduction="sum")
    assert total.item() == pytest.approx(want.sum(), rel=1e-13)
