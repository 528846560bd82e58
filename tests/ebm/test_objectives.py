"""Tests of npjem.ebm.objectives: gradients to third order, consistency, closed forms, validation."""
import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npjem
from npjem import Tensor, backend
from npjem.autograd import functional as F
from npjem.ebm import objectives as O

GC = dict(eps=1e-6, atol=1e-6, rtol=1e-4)
seeds = st.integers(0, 2**31 - 1)


# ================================================================ energies used throughout

def quadratic(P, mu):
    """E(x) = ½(x − μ)ᵀP(x − μ): score −½(P + Pᵀ)(x − μ), Hessian ½(P + Pᵀ)."""
    return lambda x: 0.5 * (((x - mu) @ P) * (x - mu)).sum(axis=1)


def mlp(W1, b1, w2):
    """A one-hidden-layer tanh MLP energy with a weak quadratic confinement (smooth to any order)."""
    tanh = npjem.nn.Tanh()
    return lambda x: tanh(F.linear(x, W1, b1)) @ w2 + 0.05 * (x * x).sum(axis=1)


def mlp_params(rng, d, h=4, xp=np):
    return [xp.asarray(rng.standard_normal((h, d))), xp.asarray(0.5 * rng.standard_normal(h)),
            xp.asarray(rng.standard_normal(h))]


def fvbm(theta, d):
    """Fully visible Boltzmann machine: E(x) = −Σ_{i<j} w_ij x_i x_j − Σ_i b_i x_i, θ = (w, b)."""
    iu = np.triu_indices(d, 1)
    m = d * (d - 1) // 2
    lift = np.zeros((d * d, m))  # host: a constant map from the upper triangle to symmetric W
    lift[iu[0] * d + iu[1], np.arange(m)] = 1.0
    lift[iu[1] * d + iu[0], np.arange(m)] = 1.0
    xp = theta.xp
    W = (Tensor(xp.asarray(lift)) @ theta[:m]).reshape(d, d)
    b = theta[m:]
    return lambda x: -0.5 * ((x @ W) * x).sum(axis=1) - x @ b


def all_states(d):
    return np.array(list(itertools.product([0.0, 1.0], repeat=d)))  # host


# ================================================================ gradients (float64)

@given(seed=seeds, n=st.integers(1, 4), d=st.integers(1, 3))
def test_score_matching_parameter_gradient_third_order(seed, n, d):
    # The loss holds tr ∇²ₓE; its θ-gradient is a third derivative of the MLP.
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    assert npjem.gradcheck(lambda *p: O.score_matching(mlp(*p), x), mlp_params(rng, d), **GC)


def test_score_matching_gradients_in_x_and_params_on_device(xp):
    rng = np.random.default_rng(1)
    x = xp.asarray(rng.standard_normal((3, 2)))
    params = mlp_params(rng, 2, xp=xp)
    assert npjem.gradcheck(lambda xx, *p: O.score_matching(mlp(*p), xx, reduction="sum"), [x] + params, **GC)


def test_score_matching_second_order_of_parameters():
    # gradgradcheck: the θ-Hessian of the loss, a fourth derivative of the energy, is also right.
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 2))
    assert npjem.gradgradcheck(lambda *p: O.score_matching(mlp(*p), x), mlp_params(rng, 2, h=3), **GC)


@given(seed=seeds, n=st.integers(1, 4), d=st.integers(1, 3),
       projection=st.sampled_from(["rademacher", "gaussian", "sphere"]), vr=st.booleans(),
       m=st.integers(1, 3))
def test_sliced_score_matching_gradcheck(seed, n, d, projection, vr, m):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    fn = lambda *p: O.sliced_score_matching(mlp(*p), x, n_projections=m, projection=projection,  # noqa: E731
                                            variance_reduction=vr, generator=seed)
    assert npjem.gradcheck(fn, mlp_params(rng, d), **GC)


@given(seed=seeds, n=st.integers(1, 4), d=st.integers(1, 3), several=st.booleans())
def test_denoising_score_matching_energy_gradcheck(seed, n, d, several):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    if several:
        fn = lambda W1, b1, w2: O.denoising_score_matching(  # noqa: E731
            lambda y, s: mlp(W1, b1, w2)(y) / s, x, [0.1, 0.5, 1.0], generator=seed)
    else:
        fn = lambda *p: O.denoising_score_matching(mlp(*p), x, 0.3, generator=seed)  # noqa: E731
    assert npjem.gradcheck(fn, mlp_params(rng, d), **GC)


def test_score_network_objectives_gradcheck(xp):
    rng = np.random.default_rng(3)
    x = xp.asarray(rng.standard_normal((4, 3)))
    W1, b1, W2 = (xp.asarray(rng.standard_normal(s)) for s in [(5, 3), (5,), (3, 5)])

    def net(W1, b1, W2):
        return lambda y, *sig: F.linear(npjem.tanh(F.linear(y, W1, b1)), W2)

    kw = dict(parametrization="score")
    for loss in (lambda *p: O.score_matching(net(*p), x, **kw),
                 lambda *p: O.sliced_score_matching(net(*p), x, n_projections=2, generator=1, **kw),
                 lambda *p: O.denoising_score_matching(net(*p), x, 0.5, generator=1, **kw),
                 lambda *p: O.denoising_score_matching(net(*p), x, [0.2, 1.0], generator=1, **kw)):
        assert npjem.gradcheck(loss, [W1, b1, W2], **GC)


@given(seed=seeds, n=st.integers(1, 5), m=st.integers(1, 6), d=st.integers(1, 3))
def test_nce_gradcheck_including_log_normaliser(seed, n, m, d):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((n, d)), 2 * rng.standard_normal((m, d))
    lpx, lpy = rng.standard_normal(n), rng.standard_normal(m)
    params = mlp_params(rng, d) + [np.array(rng.standard_normal())]
    fn = lambda W1, b1, w2, c: O.nce(mlp(W1, b1, w2), x, y, lpx, lpy, c)  # noqa: E731
    assert npjem.gradcheck(fn, params, **GC)


@given(seed=seeds, n=st.integers(1, 5), d=st.integers(2, 5),
       which=st.sampled_from(["ratio_matching", "pseudo_likelihood", "minimum_probability_flow"]))
def test_binary_objectives_gradcheck(seed, n, d, which):
    rng = np.random.default_rng(seed)
    x = (rng.random((n, d)) < 0.5).astype(np.float64)
    theta = rng.standard_normal(d * (d - 1) // 2 + d)
    fn = getattr(O, which)
    assert npjem.gradcheck(lambda t: fn(fvbm(t, d), x), [theta], **GC)


def test_energy_and_score_parametrisations_agree(xp):
    # A score network that returns −∇ₓE in closed form gives the same losses as the energy.
    rng = np.random.default_rng(4)
    A = rng.standard_normal((3, 3))
    P, mu = xp.asarray(A @ A.T + np.eye(3)), xp.asarray(rng.standard_normal(3))
    x = xp.asarray(rng.standard_normal((6, 3)))
    E = quadratic(Tensor(P), Tensor(mu))
    Ps = Tensor(0.5 * (P + P.T))
    s = lambda y, *sig: -((y - Tensor(mu)) @ Ps)  # noqa: E731
    pairs = [(O.score_matching, {}),
             (O.sliced_score_matching, dict(n_projections=3, generator=5)),
             (O.sliced_score_matching, dict(variance_reduction=True, projection="sphere", generator=5)),
             (O.denoising_score_matching, dict(sigma=0.4, generator=5))]
    for fn, kw in pairs:
        a = fn(E, x, reduction="none", **kw)
        b = fn(s, x, reduction="none", parametrization="score", **kw)
        np.testing.assert_allclose(backend.to_numpy(a.data), backend.to_numpy(b.data), rtol=1e-12, atol=1e-12)
    # ... and exact score matching is −tr P + ½‖P(x − μ)‖² per sample.
    Pn, mun, xn = (backend.to_numpy(v) for v in (P, mu, x))
    closed = -np.trace(Pn) + 0.5 * (((xn - mun) @ Pn) ** 2).sum(axis=1)
    got = backend.to_numpy(O.score_matching(E, x, reduction="none").data)
    np.testing.assert_allclose(got, closed, rtol=1e-12)


def test_energy_score_is_minus_the_gradient(xp):
    rng = np.random.default_rng(5)
    P, mu = rng.standard_normal((2, 2)), rng.standard_normal(2)
    x = rng.standard_normal((4, 2))
    s = O.energy_score(quadratic(Tensor(xp.asarray(P)), Tensor(xp.asarray(mu))), xp.asarray(x))
    np.testing.assert_allclose(backend.to_numpy(s.data), -(x - mu) @ (0.5 * (P + P.T)), rtol=1e-12)


def test_linear_energy_has_zero_curvature_and_constant_score(xp):
    # E = wᵀx: ∇ₓE = w has no path back to x; the trace is 0, not an error.
    w = Tensor(xp.asarray(np.array([0.5, -2.0, 1.0])), requires_grad=True)
    E = lambda x: x @ w  # noqa: E731
    x = xp.asarray(np.random.default_rng(0).standard_normal((4, 3)))
    for loss in (O.score_matching(E, x), O.sliced_score_matching(E, x, generator=0, variance_reduction=True)):
        assert float(loss.item()) == pytest.approx(0.5 * 5.25)
    assert O.energy_score(E, x).shape == (4, 3)
    (g,) = npjem.grad(O.score_matching(E, x), w)
    np.testing.assert_allclose(backend.to_numpy(g.data), [0.5, -2.0, 1.0])


# ================================================================ binary objectives: consistency

def _weighted(fn, d, probs_of_theta_true, xp):
    """θ ↦ (Σ_x p*(x) loss(θ; x), gradient) on the host, for scipy: data = the model, exactly."""
    states = xp.asarray(all_states(d))

    def f(theta):
        t = Tensor(xp.asarray(theta), requires_grad=True)
        loss = (fn(fvbm(t, d), states, reduction="none") * Tensor(probs_of_theta_true)).sum()
        (g,) = npjem.grad(loss, t)
        return float(loss.item()), backend.to_numpy(g.data)
    return f


@pytest.mark.parametrize("which", ["ratio_matching", "pseudo_likelihood", "minimum_probability_flow"])
def test_binary_objectives_are_minimised_at_the_true_parameters(which, xp):
    scipy_optimize = pytest.importorskip("scipy.optimize")
    d = 5
    rng = np.random.default_rng(6)
    theta_true = 0.7 * rng.standard_normal(d * (d - 1) // 2 + d)
    states = xp.asarray(all_states(d))
    e = fvbm(Tensor(xp.asarray(theta_true)), d)(Tensor(states)).data
    p = xp.exp(-e - xp.max(-e))
    p = p / p.sum()
    f = _weighted(getattr(O, which), d, p, xp)
    # The gradient vanishes at θ* (data drawn exactly from the model) ...
    _, g = f(theta_true)
    assert np.abs(g).max() < 1e-12
    # ... and minimising from θ = 0 finds θ* again.
    res = scipy_optimize.minimize(f, np.zeros_like(theta_true), jac=True, method="L-BFGS-B",
                                  options=dict(gtol=1e-13, ftol=1e-15, maxiter=1000))
    assert np.abs(res.x - theta_true).max() < 1e-6
    # Away from θ* the gradient is not zero (the check above can fail).
    _, g0 = f(np.zeros_like(theta_true))
    assert np.abs(g0).max() > 1e-3


def test_pseudo_likelihood_is_the_sum_of_enumerated_conditionals(xp):
    d = 4
    rng = np.random.default_rng(7)
    theta = rng.standard_normal(d * (d - 1) // 2 + d)
    E = fvbm(Tensor(xp.asarray(theta)), d)
    states = all_states(d)
    e = backend.to_numpy(E(Tensor(xp.asarray(states))).data)
    index = {tuple(s): k for k, s in enumerate(states)}
    expected = []
    for k, s in enumerate(states):
        total = 0.0
        for i in range(d):
            t = s.copy()
            t[i] = 1 - t[i]
            total -= math.log(math.exp(-e[k]) / (math.exp(-e[k]) + math.exp(-e[index[tuple(t)]])))
        expected.append(total)
    got = O.pseudo_likelihood(E, xp.asarray(states), reduction="none")
    np.testing.assert_allclose(backend.to_numpy(got.data), expected, rtol=1e-12)
    # Ratio matching and MPF at a point whose flips all have equal energy: σ(0)² = ¼, exp(0) = 1.
    flat = lambda x: (x * 0.0).sum(axis=1)  # noqa: E731
    x = xp.asarray(states[:3])
    assert float(O.ratio_matching(flat, x).item()) == pytest.approx(d / 4)
    assert float(O.minimum_probability_flow(flat, x).item()) == pytest.approx(d)


# ================================================================ score matching family: closed forms

def _sym(a, d):
    a = a.reshape(d, d)
    return 0.5 * (a + a.transpose())


def test_score_matching_recovers_the_gaussian_precision(xp):
    scipy_optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(8)
    d, n = 3, 300
    x = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) + rng.standard_normal(d)
    C = np.cov(x.T, bias=True)
    xd = xp.asarray(x)

    def f(v):
        t = Tensor(xp.asarray(v), requires_grad=True)
        loss = O.score_matching(quadratic(_sym(t[:d * d], d), t[d * d:]), xd)
        (g,) = npjem.grad(loss, t)
        return float(loss.item()), backend.to_numpy(g.data)

    opt = np.concatenate([np.linalg.inv(C).ravel(), x.mean(axis=0)])
    value, g = f(opt)
    assert np.abs(g).max() < 1e-9
    assert value == pytest.approx(-0.5 * np.trace(np.linalg.inv(C)), rel=1e-10)
    res = scipy_optimize.minimize(f, np.concatenate([np.eye(d).ravel(), np.zeros(d)]), jac=True,
                                  method="L-BFGS-B", options=dict(gtol=1e-12, ftol=1e-15, maxiter=2000))
    np.testing.assert_allclose(_sym(res.x[:d * d], d), np.linalg.inv(C), atol=1e-6)
    np.testing.assert_allclose(res.x[d * d:], x.mean(axis=0), atol=1e-6)


@pytest.mark.parametrize("parametrization", ["energy", "score"])
def test_denoising_score_matching_learns_the_smoothed_score(parametrization, xp):
    # Data N(μ, S); DSM at noise σ is minimised by the score of N(μ, S + σ²I), not of N(μ, S).
    scipy_optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(9)
    d, n, sigma = 2, 20000, 0.7
    Lc = np.array([[1.0, 0.0], [0.6, 0.5]])
    S, mu = Lc @ Lc.T, np.array([1.0, -0.5])
    x = xp.asarray(rng.standard_normal((n, d)) @ Lc.T + mu)

    def f(v):
        t = Tensor(xp.asarray(v), requires_grad=True)
        P, m = _sym(t[:d * d], d), t[d * d:]
        model = quadratic(P, m) if parametrization == "energy" else (lambda y: -((y - m) @ P))
        loss = O.denoising_score_matching(model, x, sigma, generator=10, parametrization=parametrization)
        (g,) = npjem.grad(loss, t)
        return float(loss.item()), backend.to_numpy(g.data)

    res = scipy_optimize.minimize(f, np.concatenate([np.eye(d).ravel(), np.zeros(d)]), jac=True,
                                  method="L-BFGS-B", options=dict(gtol=1e-10, maxiter=500))
    P = _sym(res.x[:d * d], d)
    smoothed = np.linalg.inv(S + sigma ** 2 * np.eye(d))
    # Monte Carlo error of a 20000-sample least-squares fit: a few 1e-2 at most.
    np.testing.assert_allclose(P, smoothed, atol=0.03)
    assert np.abs(P - np.linalg.inv(S)).max() > 0.3  # the unsmoothed precision is far away
    np.testing.assert_allclose(res.x[d * d:], mu, atol=0.05)


@pytest.mark.parametrize("projection", ["rademacher", "gaussian", "sphere"])
@pytest.mark.parametrize("vr", [False, True])
def test_sliced_score_matching_equals_exact_score_matching_in_expectation(projection, vr, xp):
    rng = np.random.default_rng(11)
    d, n, reps = 3, 8, 400
    params = [Tensor(p) for p in mlp_params(rng, d, h=5, xp=xp)]
    x = rng.standard_normal((n, d))
    exact = backend.to_numpy(O.score_matching(mlp(*params), xp.asarray(x), reduction="none").data)
    # One projection for each of `reps` copies of every sample: independent draws of v.
    tiled = xp.asarray(np.tile(x, (reps, 1)))
    est = backend.to_numpy(O.sliced_score_matching(mlp(*params), tiled, projection=projection,
                                                   variance_reduction=vr, generator=12,
                                                   reduction="none").data).reshape(reps, n)
    se = est.std(axis=0, ddof=1) / math.sqrt(reps)
    assert np.all(np.abs(est.mean(axis=0) - exact) < 4.5 * se + 1e-12)
    assert se.max() > 0  # the estimator is random: the tolerance is not vacuous
    # With M projections the per-sample value is the mean over them: M times less variance.
    many = backend.to_numpy(O.sliced_score_matching(mlp(*params), xp.asarray(x), n_projections=reps,
                                                    projection=projection, variance_reduction=vr,
                                                    generator=13, reduction="none").data)
    assert np.all(np.abs(many - exact) < 4.5 * se + 1e-12)


def test_sliced_score_matching_is_exact_with_rademacher_on_a_diagonal_hessian(xp):
    # vᵀHv = Σ H_ii v_i² = tr H for ±1 entries when H is diagonal: no Monte Carlo error at all.
    rng = np.random.default_rng(14)
    P = xp.asarray(np.diag(rng.random(4) + 0.5))
    mu = xp.asarray(rng.standard_normal(4))
    x = xp.asarray(rng.standard_normal((5, 4)))
    E = quadratic(Tensor(P), Tensor(mu))
    a = O.sliced_score_matching(E, x, variance_reduction=True, generator=0, reduction="none")
    b = O.score_matching(E, x, reduction="none")
    np.testing.assert_allclose(backend.to_numpy(a.data), backend.to_numpy(b.data), rtol=1e-12)


def test_denoising_score_matching_weights_several_levels_by_sigma_squared(xp):
    rng = np.random.default_rng(15)
    x = xp.asarray(rng.standard_normal((7, 2)))
    zero_score = lambda y, s: y * 0.0  # noqa: E731
    # With s = 0 each sample's loss is λ(σ)·½‖ε‖²/σ²: with λ = σ² it is ½‖ε‖², σ-free.
    per = O.denoising_score_matching(zero_score, x, [0.1, 10.0], parametrization="score", generator=3,
                                     reduction="none")
    g = npjem.random.as_generator(3, backend.device_of(x))
    eps = backend.to_numpy(g.standard_normal((7, 2), dtype=np.float64))
    np.testing.assert_allclose(backend.to_numpy(per.data), 0.5 * (eps ** 2).sum(axis=1), rtol=1e-12)
    unweighted = O.denoising_score_matching(zero_score, x, [0.1, 10.0], parametrization="score",
                                            generator=3, weight_power=0, reduction="none")
    assert not np.allclose(backend.to_numpy(unweighted.data), backend.to_numpy(per.data))


# ================================================================ NCE

def test_nce_recovers_mean_precision_and_log_normaliser(xp):
    scipy_optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(16)
    d, n = 2, 20000
    Lc = np.array([[1.0, 0.0], [-0.4, 0.6]])
    S, mu = Lc @ Lc.T, np.array([0.5, 1.0])
    x = rng.standard_normal((n, d)) @ Lc.T + mu
    # Noise: a Gaussian fitted to the data and widened, so it covers it.
    m0, C0 = x.mean(axis=0), 2.0 * np.cov(x.T)
    y = rng.multivariate_normal(m0, C0, size=n)

    def log_gauss(z, m, C):
        r = np.linalg.solve(np.linalg.cholesky(C), (z - m).T)
        return -0.5 * (r ** 2).sum(axis=0) - 0.5 * np.log(np.linalg.det(2 * np.pi * C))

    xd, yd = xp.asarray(x), xp.asarray(y)
    lpx, lpy = xp.asarray(log_gauss(x, m0, C0)), xp.asarray(log_gauss(y, m0, C0))

    def f(v):
        t = Tensor(xp.asarray(v), requires_grad=True)
        loss = O.nce(quadratic(_sym(t[:4], d), t[4:6]), xd, yd, lpx, lpy, t[6])
        (g,) = npjem.grad(loss, t)
        return float(loss.item()), backend.to_numpy(g.data)

    res = scipy_optimize.minimize(f, np.array([1.0, 0, 0, 1.0, 0, 0, 0]), jac=True, method="L-BFGS-B")
    P, m, c = _sym(res.x[:4], d), res.x[4:6], res.x[6]
    np.testing.assert_allclose(m, mu, atol=0.05)
    np.testing.assert_allclose(P, np.linalg.inv(S), atol=0.15 * np.abs(np.linalg.inv(S)).max())
    # c is log Z of exp(−E): the true one, and (tighter) that of the fitted model itself.
    assert c == pytest.approx(0.5 * np.log(np.linalg.det(2 * np.pi * S)), abs=0.05)
    assert c == pytest.approx(0.5 * np.log(np.linalg.det(2 * np.pi * np.linalg.inv(P))), abs=0.03)


def test_nce_value_closed_form_and_default_nu(xp):
    rng = np.random.default_rng(17)
    x, y = rng.standard_normal((3, 2)), rng.standard_normal((6, 2))
    lpx, lpy = rng.standard_normal(3), rng.standard_normal(6)
    E = lambda z: (z * z).sum(axis=1)  # noqa: E731
    got = O.nce(E, xp.asarray(x), xp.asarray(y), xp.asarray(lpx), xp.asarray(lpy), 0.3)
    nu = 2.0
    gx = -(x ** 2).sum(1) - 0.3 - lpx - math.log(nu)
    gy = -(y ** 2).sum(1) - 0.3 - lpy - math.log(nu)
    expected = np.logaddexp(0, -gx).mean() + nu * np.logaddexp(0, gy).mean()
    assert float(got.item()) == pytest.approx(expected, rel=1e-12)
    other = O.nce(E, xp.asarray(x), xp.asarray(y), xp.asarray(lpx), xp.asarray(lpy), 0.3, nu=1.0)
    assert float(other.item()) != pytest.approx(expected, rel=1e-6)


# ================================================================ bad arguments

def test_bad_arguments_raise_naming_them(xp):
    x = xp.asarray(np.random.default_rng(0).standard_normal((4, 2)))
    E = lambda z: (z * z).sum(axis=1)  # noqa: E731
    column = lambda z: (z * z).sum(axis=1, keepdims=True)  # noqa: E731
    with pytest.raises(ValueError, match="energy must return one energy per sample"):
        O.ratio_matching(column, xp.asarray(np.ones((2, 3))))
    with pytest.raises(ValueError, match="model must return one energy per sample"):
        O.score_matching(column, x)
    with pytest.raises(ValueError, match="score network"):
        O.score_matching(E, x, parametrization="score")
    with pytest.raises(ValueError, match="x must be 2-D"):
        O.score_matching(E, x[0])
    with pytest.raises(ValueError, match="at least one sample"):
        O.sliced_score_matching(E, x[:0])
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        O.pseudo_likelihood(E, xp.asarray(np.ones((2, 3), dtype=np.int64)))
    with pytest.raises(ValueError, match="x must be binary"):
        O.minimum_probability_flow(E, x)
    with pytest.raises(ValueError, match="parametrization"):
        O.score_matching(E, x, parametrization="logp")
    with pytest.raises(ValueError, match="reduction"):
        O.score_matching(E, x, reduction="max")
    with pytest.raises(ValueError, match="projection"):
        O.sliced_score_matching(E, x, projection="uniform")
    with pytest.raises(ValueError, match="n_projections"):
        O.sliced_score_matching(E, x, n_projections=0)
    with pytest.raises(TypeError, match="variance_reduction"):
        O.sliced_score_matching(E, x, variance_reduction=1)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        O.denoising_score_matching(E, x, 0.0)
    with pytest.raises(ValueError, match=r"sigma\[1\]"):
        O.denoising_score_matching(E, x, [0.1, -1.0])
    with pytest.raises(ValueError, match="at least one noise level"):
        O.denoising_score_matching(E, x, [])
    with pytest.raises(TypeError, match="model must be callable"):
        O.score_matching("E", x)
    lp = xp.asarray(np.zeros(4))
    with pytest.raises(ValueError, match="log_noise_noise must have shape"):
        O.nce(E, x, x, lp, lp[:3], 0.0)
    with pytest.raises(ValueError, match="log_z must be a scalar"):
        O.nce(E, x, x, lp, lp, Tensor(xp.asarray(np.zeros(2))))
    with pytest.raises(ValueError, match="nu must be > 0"):
        O.nce(E, x, x, lp, lp, 0.0, nu=0)
    with pytest.raises(ValueError, match="x_noise must have D = 2"):
        O.nce(E, x, xp.asarray(np.zeros((4, 3))), lp, lp, 0.0)
