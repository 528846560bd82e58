"""Tests of npjem.losses.noncontrastive: Barlow Twins and VICReg."""
import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import npjem
from npjem import Tensor, backend
from npjem.losses import VICRegLoss, barlow_twins, vicreg

GC = dict(eps=1e-6, atol=1e-6, rtol=1e-4)
batch = st.integers(2, 7)
dims = st.integers(1, 5)
seeds = st.integers(0, 2**32 - 1)


def decorrelated(rng, n, d, scales=None):
    """(n, d) with centred, mutually orthogonal columns; column j has biased variance scales[j]²."""
    a = rng.standard_normal((n, d))
    a -= a.mean(axis=0)
    q, _ = np.linalg.qr(np.concatenate([np.ones((n, 1)), a], axis=1))
    cols = q[:, 1:d + 1] * math.sqrt(n)  # orthonormal, orthogonal to ones, biased variance 1
    return cols if scales is None else cols * np.asarray(scales)


def host(t):
    return backend.to_numpy(t.data if isinstance(t, Tensor) else t)


# ================================================================ gradients (float64)

@given(n=batch, d=dims, seed=seeds, lambd=st.floats(0.0, 0.5), eps=st.sampled_from([1e-5, 0.0, 0.3]),
       scale=st.sampled_from([1.0, 0.024]))
def test_barlow_twins_gradcheck(n, d, seed, lambd, eps, scale):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    assume(a.var(axis=0).min() > 0.05 and b.var(axis=0).min() > 0.05)
    assert npjem.gradcheck(lambda x, y: barlow_twins(x, y, lambd, eps=eps, scale=scale), [a, b], **GC)


@given(n=batch, d=dims, seed=seeds, gamma=st.floats(0.3, 2.0), spread=st.floats(0.2, 3.0),
       halve=st.booleans())
def test_vicreg_gradcheck_of_every_term(n, d, seed, gamma, spread, halve):
    rng = np.random.default_rng(seed)
    a, b = spread * rng.standard_normal((n, d)), spread * rng.standard_normal((n, d))
    for z in (a, b):
        assume(np.all(np.abs(np.sqrt(z.var(axis=0, ddof=1) + 1e-4) - gamma) > 1e-3))  # the hinge's kink
    assert npjem.gradcheck(lambda x, y: tuple(vicreg(x, y, gamma=gamma, halve_variance=halve)), [a, b], **GC)


# ================================================================ Barlow Twins invariants

@given(n=st.integers(3, 8), seed=seeds, data=st.data())
def test_barlow_twins_is_zero_for_the_same_standardised_decorrelated_matrix(n, seed, data):
    d = data.draw(st.integers(1, n - 1))
    z = decorrelated(np.random.default_rng(seed), n, d)
    loss = barlow_twins(z, z.copy(), eps=0.0)
    assert abs(loss.item()) < 1e-20 + 1e-12
    # BatchNorm's eps shrinks every C_ii to 1/(1 + eps): the loss is D (eps/(1 + eps))² instead.
    eps = 1e-5
    np.testing.assert_allclose(barlow_twins(z, z, eps=eps).item(), d * (eps / (1 + eps)) ** 2, rtol=1e-6)


def test_barlow_twins_value_by_hand(xp):
    h_x = xp.asarray([[1.0, 2.0], [3.0, 0.0], [5.0, 1.0]])
    h_y = xp.asarray([[0.0, 1.0], [1.0, 1.0], [5.0, 4.0]])
    zx = (backend.to_numpy(h_x) - backend.to_numpy(h_x).mean(0)) / backend.to_numpy(h_x).std(0)
    zy = (backend.to_numpy(h_y) - backend.to_numpy(h_y).mean(0)) / backend.to_numpy(h_y).std(0)
    c = zx.T @ zy / 3
    want = (1 - c[0, 0]) ** 2 + (1 - c[1, 1]) ** 2 + 0.25 * (c[0, 1] ** 2 + c[1, 0] ** 2)
    got = barlow_twins(h_x, h_y, lambd=0.25, eps=0.0, scale=2.0)
    np.testing.assert_allclose(host(got), 2 * want, rtol=1e-12)


@given(n=st.integers(3, 7), d=dims, seed=seeds)
def test_barlow_twins_is_invariant_to_per_dimension_affine_maps(n, d, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    assume(a.var(axis=0).min() > 0.05 and b.var(axis=0).min() > 0.05)
    scale, shift = rng.uniform(0.1, 10.0, d), rng.uniform(-5, 5, d)
    base = barlow_twins(a, b, eps=0.0).item()
    np.testing.assert_allclose(barlow_twins(a * scale + shift, b, eps=0.0).item(), base, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(barlow_twins(a, b * scale + shift, eps=0.0).item(), base, rtol=1e-9, atol=1e-12)
    # A negative scale flips the sign of that dimension's correlations: not an invariance.
    flip = np.ones(d)
    flip[0] = -1.0
    c00 = ((a[:, 0] - a[:, 0].mean()) * (b[:, 0] - b[:, 0].mean())).mean() / (a[:, 0].std() * b[:, 0].std())
    assume(abs(c00) > 0.05)
    assert abs(barlow_twins(a * flip, b, eps=0.0).item() - base) > 1e-6


def test_barlow_twins_collapse_is_D_with_zero_gradient(xp):
    d = 6
    const = xp.ones((5, d)) * xp.asarray([0.3, -1.0, 2.0, 0.0, 5.0, 1.0])
    x, y = Tensor(const, requires_grad=True), Tensor(const.copy(), requires_grad=True)
    loss = barlow_twins(x, y)
    assert loss.item() == pytest.approx(d, abs=1e-12)
    gx, gy = npjem.grad(loss, [x, y])
    assert np.all(host(gx) == 0) and np.all(host(gy) == 0)
    # One collapsed branch alone also gives D, but a gradient: the other branch's signal remains.
    other = Tensor(xp.asarray(np.random.default_rng(0).standard_normal((5, d))), requires_grad=True)
    loss = barlow_twins(x, other)
    assert loss.item() == pytest.approx(d, abs=1e-12)
    assert np.abs(host(npjem.grad(loss, [x])[0])).max() > 1e-3
    # eps = 0 has no value for a constant dimension: it raises instead of returning NaN.
    with pytest.raises(ValueError, match="h_x has a dimension that is constant"):
        barlow_twins(const, other.detach(), eps=0.0)


def test_barlow_twins_lambd_weights_only_the_off_diagonal():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    l0, l1, l2 = (barlow_twins(a, b, lambd=lam).item() for lam in (0.0, 1.0, 2.0))
    np.testing.assert_allclose(l2 - l1, l1 - l0, rtol=1e-12)
    assert l1 > l0


# ================================================================ VICReg invariants

@given(n=batch, d=dims, seed=seeds)
def test_vicreg_invariance_is_the_mse_and_total_the_weighted_sum(n, d, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    out = vicreg(a, b, sim_coeff=3.0, std_coeff=5.0, cov_coeff=7.0)
    assert isinstance(out, VICRegLoss)
    np.testing.assert_allclose(out.invariance.item(), ((a - b) ** 2).mean(), rtol=1e-12)
    np.testing.assert_allclose(out.loss.item(), 3 * out.invariance.item() + 5 * out.variance.item()
                               + 7 * out.covariance.item(), rtol=1e-12)


@given(n=batch, d=dims, seed=seeds, gamma=st.floats(0.2, 3.0), margin=st.floats(0.0, 2.0))
def test_vicreg_variance_term_is_zero_when_every_std_reaches_gamma(n, d, seed, gamma, margin):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    assume(a.std(axis=0, ddof=1).min() > 1e-3 and b.std(axis=0, ddof=1).min() > 1e-3)
    # every column rescaled to std ≥ γ (the 1e-4 inside the root only adds to it)
    a = a / a.std(axis=0, ddof=1) * (gamma + margin)
    b = b / b.std(axis=0, ddof=1) * (gamma + margin)
    assert vicreg(a, b, gamma=gamma).variance.item() == 0.0
    # ... and positive once one column's std drops below γ
    a[:, 0] *= 0.5 * gamma / (gamma + margin)
    assert vicreg(a, b, gamma=gamma).variance.item() > 0.0


def test_vicreg_variance_value_and_halving(xp):
    # stds sqrt(var + 1e-4) per column; γ = 1
    a = np.array([[0.0, 0.0], [0.2, 3.0], [0.4, -3.0]])
    b = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])
    std_a = np.sqrt(a.var(axis=0, ddof=1) + 1e-4)
    std_b = np.sqrt(b.var(axis=0, ddof=1) + 1e-4)
    v_a, v_b = np.maximum(0, 1 - std_a).mean(), np.maximum(0, 1 - std_b).mean()
    half = vicreg(xp.asarray(a), xp.asarray(b))
    full = vicreg(xp.asarray(a), xp.asarray(b), halve_variance=False)
    np.testing.assert_allclose(host(half.variance), (v_a + v_b) / 2, rtol=1e-12)
    np.testing.assert_allclose(host(full.variance), v_a + v_b, rtol=1e-12)
    np.testing.assert_allclose(host(full.loss) - host(half.loss), 25 * (v_a + v_b) / 2, rtol=1e-12)


@given(n=st.integers(3, 8), seed=seeds, data=st.data())
def test_vicreg_covariance_term_is_zero_for_decorrelated_embeddings(n, seed, data):
    d = data.draw(st.integers(1, n - 1))
    rng = np.random.default_rng(seed)
    a = decorrelated(rng, n, d, rng.uniform(0.1, 3.0, d)) + rng.standard_normal(d)
    b = decorrelated(rng, n, d, rng.uniform(0.1, 3.0, d))
    assert abs(vicreg(a, b).covariance.item()) < 1e-24
    # a copied dimension is redundant: the covariance term sees it
    a2 = np.concatenate([a, a[:, :1]], axis=1)
    b2 = np.concatenate([b, b[:, :1]], axis=1)
    cov = a[:, 0].var(ddof=1)  # Cov(a0, copy) = Var(a0), twice (i, j) and (j, i), over D = d + 1
    np.testing.assert_allclose(vicreg(a2, b2).covariance.item(),
                               2 * cov**2 / (d + 1) + 2 * b[:, 0].var(ddof=1) ** 2 / (d + 1), rtol=1e-9)


def test_vicreg_collapse_variance_at_its_maximum_and_its_gradient_pushes_out(xp):
    n, d, eps, gamma = 6, 4, 1e-4, 1.0
    const = xp.ones((n, d)) * xp.asarray([0.5, -2.0, 0.0, 1.0])
    out = vicreg(const, const, eps=eps)
    np.testing.assert_allclose(host(out.variance), gamma - math.sqrt(eps), rtol=1e-12)  # (v + v)/2
    assert host(out.invariance) == 0 and host(out.covariance) == 0
    # exactly at collapse the gradient is 0: the variance is quadratic in the deviations
    x = Tensor(const.copy(), requires_grad=True)
    (g,) = npjem.grad(vicreg(x, const, eps=eps).variance, [x])
    assert np.all(host(g) == 0)
    # a hair away from it, gradient descent moves every sample away from the batch mean
    rng = np.random.default_rng(1)
    z = backend.to_numpy(const) + 1e-4 * rng.standard_normal((n, d))
    x = Tensor(xp.asarray(z), requires_grad=True)
    (g,) = npjem.grad(vicreg(x, xp.asarray(z), eps=eps).variance, [x])
    g = host(g)
    dev = z - z.mean(axis=0)
    assert np.all((-g * dev).sum(axis=0) > 0)
    # ... with the slope the docstring gives: ½ · (1/D) · 1/(2 sqrt(var + ε)) · 2(z − z̄)/(N − 1)
    std = np.sqrt(z.var(axis=0, ddof=1) + eps)
    np.testing.assert_allclose(-g, 0.5 / d * dev / ((n - 1) * std), rtol=1e-9)
    stepped = z - 10.0 * g
    assert np.all(stepped.std(axis=0) > z.std(axis=0))


# ================================================================ validation

@pytest.mark.parametrize("loss", [barlow_twins, lambda a, b, **k: vicreg(a, b, **k).loss])
def test_bad_inputs_raise_naming_the_argument(loss):
    a = np.zeros((4, 3)) + np.arange(4)[:, None]
    with pytest.raises(ValueError, match="h_y must have shape"):
        loss(a, a[:, :2])
    with pytest.raises(ValueError, match="h_x must be 2-D"):
        loss(a[0], a[0])
    with pytest.raises(ValueError, match="N >= 2"):
        loss(a[:1], a[:1])
    with pytest.raises(TypeError, match="h_y has dtype float32"):
        loss(a, a.astype(np.float32))
    with pytest.raises(TypeError, match="h_x must have a floating dtype"):
        loss(a.astype(int), a)
    with pytest.raises(TypeError, match="h_x must be a Tensor or an array"):
        loss(a.tolist(), a)


def test_bad_parameters_raise():
    a = np.random.default_rng(0).standard_normal((4, 3))
    with pytest.raises(ValueError, match="lambd"):
        barlow_twins(a, a, lambd=-1.0)
    with pytest.raises(ValueError, match="scale"):
        barlow_twins(a, a, scale=0.0)
    with pytest.raises(ValueError, match="eps"):
        vicreg(a, a, eps=0.0)
    with pytest.raises(ValueError, match="gamma"):
        vicreg(a, a, gamma=-1.0)
    with pytest.raises(TypeError, match="halve_variance"):
        vicreg(a, a, halve_variance=1)


def test_float32_stays_float32(xp):
    a = xp.asarray(np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32))
    assert barlow_twins(a, a * 2).dtype == np.float32
    assert all(t.dtype == np.float32 for t in vicreg(a, a * 2))
