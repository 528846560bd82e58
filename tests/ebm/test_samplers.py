"""Tests of npjem.ebm.samplers: stationary moments, MALA's correction, binary MH and block Gibbs
reach their target distributions; no parameter gradients; clipping, clamping and validation."""
import itertools
import math

import numpy as np
import pytest

import npjem
from npjem import Tensor, backend, nn
from npjem.ebm import samplers
from npjem.ebm.samplers import Langevin, block_gibbs, energy_and_grad, langevin, mala, metropolis_hastings

stats = pytest.importorskip("scipy.stats")

MU = np.array([1.0, -0.5])
P = np.array([[2.0, 0.6], [0.6, 1.0]])          # precision; covariance P⁻¹


class Quadratic:
    """E(x) = ½ (x − μ)ᵀ P (x − μ): the Gibbs density is N(μ, P⁻¹)."""

    def __init__(self, mu, prec, xp):
        self.mu, self.prec = xp.asarray(mu), xp.asarray(prec)

    def __call__(self, x):
        d = x - Tensor(self.mu)
        return 0.5 * ((d @ Tensor(self.prec)) * d).sum(axis=1)


class MLPEnergy(nn.Module):
    """A small smooth energy built from npjem.nn (Linear + SiLU)."""

    def __init__(self, d=2, hidden=16, device=None, dtype=None, seed=0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, hidden, device=device, dtype=dtype, generator=seed), nn.SiLU(),
                                 nn.Linear(hidden, 1, device=device, dtype=dtype, generator=seed + 1))

    def forward(self, x):
        return self.net(x).reshape(-1)


def ula_covariance(prec, eta):
    """Stationary covariance of x ← x − ηPx + √(2η)ξ: (P (I − ηP/2))⁻¹."""
    return np.linalg.inv(prec @ (np.eye(len(prec)) - eta * prec / 2))


def moments(x):
    a = backend.to_numpy(x.data if isinstance(x, Tensor) else x)
    return a.mean(axis=0), np.cov(a.T)


def assert_moments(x, mean, cov, k=5.0):
    """Sample mean and covariance of N independent chains within k standard errors."""
    a = backend.to_numpy(x.data)
    n = a.shape[0]
    m, c = moments(a)
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(m - mean) < k * se_mean), (m, mean, se_mean)
    # Var of a sample covariance entry of a Gaussian: (Σ_ij² + Σ_ii Σ_jj) / n
    se_cov = np.sqrt((cov ** 2 + np.outer(np.diag(cov), np.diag(cov))) / n)
    assert np.all(np.abs(c - cov) < k * se_cov), (c, cov, se_cov)


# ------------------------------------------------------------------------------ Langevin

def test_langevin_small_step_reaches_the_gaussian(xp):
    energy = Quadratic(MU, P, xp)
    eta = 0.02
    x = langevin(energy, xp.zeros((6000, 2)), 300, eta, generator=1)
    assert isinstance(x, Tensor) and x.device == backend.device_of(xp.zeros(1))
    assert_moments(x, MU, ula_covariance(P, eta))
    # small step: the ULA bias is small, so the target N(μ, P⁻¹) is met at this sample size too
    assert_moments(x, MU, np.linalg.inv(P), k=6.0)


def test_langevin_large_step_shows_the_ula_bias(xp):
    energy = Quadratic([0.0], [[1.0]], xp)
    x = langevin(energy, xp.zeros((8000, 1)), 60, 0.5, generator=2)
    var = float(backend.to_numpy(x.data).var())
    assert abs(var - 4.0 / 3.0) < 0.08          # 1 / (1 − η/2) at η = 0.5
    assert var > 1.15                           # clearly not the target variance 1


def test_decoupled_noise_targets_a_temperature(xp):
    # x ← x − ηx + σξ on E = x²/2: var = (σ²/2η) / (1 − η/2), T = σ²/(2η) = 0.25
    energy = Quadratic([0.0], [[1.0]], xp)
    eta, sigma = 0.1, math.sqrt(0.05)
    x = langevin(energy, xp.zeros((8000, 1)), 150, eta, noise_scale=sigma, generator=3)
    expected = (sigma ** 2 / (2 * eta)) / (1 - eta / 2)
    var = float(backend.to_numpy(x.data).var())
    assert abs(var - expected) < 5 * expected * math.sqrt(2 / 8000)


def test_zero_noise_is_gradient_descent(xp):
    energy = Quadratic([0.0, 0.0], np.eye(2), xp)
    x0 = xp.asarray(np.array([[1.0, -2.0]]))
    x = langevin(energy, x0, 3, 0.1, noise_scale=0.0, generator=0)
    np.testing.assert_allclose(backend.to_numpy(x.data), [[0.9 ** 3, -2 * 0.9 ** 3]], rtol=1e-12)


def test_gradient_clip_bounds_each_move(xp):
    energy = Quadratic([0.0, 0.0], np.eye(2) * 100.0, xp)
    x0 = xp.asarray(np.array([[3.0, -2.0], [0.00005, 0.0]]))
    x = langevin(energy, x0, 1, 0.5, noise_scale=0.0, generator=0, grad_clip=0.01)
    step = backend.to_numpy(x.data) - backend.to_numpy(x0)
    assert np.all(np.abs(step) <= 0.5 * 0.01 + 1e-15)
    np.testing.assert_allclose(step[0], [-0.005, 0.005])          # clipped
    np.testing.assert_allclose(step[1], [-0.5 * 100 * 0.00005, 0.0])        # below the clip: untouched


def test_clamp_keeps_the_states_in_the_box(xp):
    energy = Quadratic([5.0, 5.0], np.eye(2), xp)                  # the mass lies outside the box
    x, info = langevin(energy, xp.zeros((200, 2)), 30, 0.2, generator=0, clamp=(-1.0, 1.0), return_info=True)
    a = backend.to_numpy(x.data)
    assert a.min() >= -1.0 and a.max() <= 1.0
    assert (a == 1.0).mean() > 0.5                                  # pressed against the wall
    assert len(info["grad_norm"]) == 30 and len(info["energy"]) == 30


def test_info_reports_the_mean_gradient_norm(xp):
    energy = Quadratic([0.0, 0.0], np.eye(2), xp)
    x0 = xp.asarray(np.array([[3.0, 4.0], [0.0, 1.0]]))
    _, info = langevin(energy, x0, 1, 0.1, generator=0, return_info=True)
    assert info["grad_norm"][0] == pytest.approx((5.0 + 1.0) / 2)
    assert info["energy"][0] == pytest.approx((12.5 + 0.5) / 2)


def test_seeded_runs_repeat(xp):
    energy = Quadratic(MU, P, xp)
    a = langevin(energy, xp.zeros((5, 2)), 4, 0.1, generator=7)
    b = langevin(energy, xp.zeros((5, 2)), 4, 0.1, generator=7)
    np.testing.assert_array_equal(backend.to_numpy(a.data), backend.to_numpy(b.data))


def test_start_is_not_modified_and_dtype_is_kept(xp):
    energy = Quadratic(MU, P, xp)
    x0 = xp.zeros((4, 2), dtype=xp.float32)
    x = langevin(energy, x0, 3, 0.1, generator=0)
    assert x.dtype == np.float32
    assert float(abs(x0).max()) == 0.0


# ------------------------------------------------------------------------------ no parameter graph

def test_samplers_leave_parameter_grads_none(device, xp):
    energy = MLPEnergy(device=device, dtype=np.float64)
    x0 = xp.asarray(np.random.default_rng(0).standard_normal((16, 2)))
    langevin(energy, x0, 3, 0.05, generator=0)
    mala(energy, x0, 3, 0.05, generator=0)
    energy_and_grad(energy, x0)
    Langevin(0.05, noise_scale=0.01, grad_clip=0.1, clamp=(-2, 2))(energy, x0, 2, generator=0)
    assert all(p.grad is None for p in energy.parameters())


def test_samplers_run_the_package_mlp_energy(device, xp):
    energy = npjem.ebm.MLPEnergy(2, hidden=(8, 8), device=device, dtype=np.float64, generator=0)
    x0 = xp.asarray(np.random.default_rng(0).standard_normal((6, 2)))
    x, info = langevin(energy, x0, 2, 0.05, generator=0, return_info=True)
    assert tuple(x.shape) == (6, 2) and len(info["grad_norm"]) == 2
    assert all(p.grad is None for p in energy.parameters())


def test_energy_and_grad_matches_the_closed_form(xp):
    energy = Quadratic(MU, P, xp)
    x = np.random.default_rng(1).standard_normal((5, 2))
    e, g = energy_and_grad(energy, xp.asarray(x))
    np.testing.assert_allclose(backend.to_numpy(g), (x - MU) @ P, rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(e), 0.5 * np.einsum("ni,ij,nj->n", x - MU, P, x - MU))


# ------------------------------------------------------------------------------ MALA

def test_mala_reaches_the_gaussian(xp):
    energy = Quadratic(MU, P, xp)
    x, info = mala(energy, xp.zeros((5000, 2)), 150, 0.3, generator=4, return_info=True)
    assert_moments(x, MU, np.linalg.inv(P))
    assert 0.5 < info["acceptance"] < 1.0


def test_mala_removes_the_ula_bias(xp):
    energy = Quadratic([0.0], [[1.0]], xp)
    x = mala(energy, xp.zeros((8000, 1)), 80, 0.5, generator=5)
    var = float(backend.to_numpy(x.data).var())
    assert abs(var - 1.0) < 5 * math.sqrt(2 / 8000)   # ULA at this step: 4/3


def test_mala_acceptance_tends_to_one_as_the_step_shrinks(xp):
    energy = Quadratic(MU, P, xp)
    x0 = xp.asarray(np.random.default_rng(0).standard_normal((2000, 2)) * 0.7 + MU)
    rates = [mala(energy, x0, 5, eta, generator=6, return_info=True)[1]["acceptance"]
             for eta in (1.5, 0.5, 0.1, 0.01, 0.001)]
    assert all(a > b for a, b in zip(rates[1:], rates[:-1])), rates
    assert rates[-1] > 0.999


# ------------------------------------------------------------------------------ binary Metropolis–Hastings

def fvbm_energy(b, W, xp):
    """E(x) = −bᵀx − xᵀWx on x ∈ {0,1}^D (a fully visible Boltzmann machine)."""
    bt, Wt = Tensor(xp.asarray(b)), Tensor(xp.asarray(W))

    def energy(x):
        return -(x @ bt) - ((x @ Wt) * x).sum(axis=1)
    return energy


def exact_gibbs(b, W):
    states = np.array(list(itertools.product([0, 1], repeat=len(b))), dtype=float)
    e = -(states @ b) - np.einsum("ni,ij,nj->n", states, W, states)
    p = np.exp(-e - (-e).max())
    return states, p / p.sum()


def state_counts(x, d):
    a = backend.to_numpy(x.data).astype(int)
    codes = (a * (2 ** np.arange(d - 1, -1, -1))).sum(axis=1)
    return np.bincount(codes, minlength=2 ** d)


def test_metropolis_hastings_reaches_the_gibbs_distribution(xp):
    rng = np.random.default_rng(3)
    b, W = rng.normal(0, 1.0, 4), np.triu(rng.normal(0, 0.7, (4, 4)), 1)
    energy = fvbm_energy(b, W, xp)
    n = 6000
    x, info = metropolis_hastings(energy, xp.zeros((n, 4)), 60, generator=8, return_info=True)
    _, p = exact_gibbs(b, W)
    counts = state_counts(x, 4)
    assert counts.sum() == n
    assert stats.chisquare(counts, n * p).pvalue > 1e-3
    assert 0.0 < info["acceptance"] < 1.0


def test_metropolis_hastings_accepts_every_downhill_flip(xp):
    energy = fvbm_energy(np.full(3, 50.0), np.zeros((3, 3)), xp)  # flipping a 0 to 1 lowers E by 50
    x, info = metropolis_hastings(energy, xp.zeros((100, 3)), 1, generator=0, return_info=True)
    assert info["acceptance"] == 1.0
    assert backend.to_numpy(x.data).sum() == 100


def test_metropolis_hastings_wants_binary_states(xp):
    with pytest.raises(ValueError, match="binary"):
        metropolis_hastings(fvbm_energy(np.zeros(2), np.zeros((2, 2)), xp), xp.full((3, 2), 0.5), 1, generator=0)


# ------------------------------------------------------------------------------ block Gibbs

class TinyRBM:
    """The two conditionals of a Bernoulli RBM, E(v, h) = −bᵀv − cᵀh − vᵀWh (duck-typed)."""

    def __init__(self, W, b, c, xp):
        self.W, self.b, self.c = xp.asarray(W), xp.asarray(b), xp.asarray(c)

    def mean_hiddens(self, v):
        return 1.0 / (1.0 + np.exp(-(v @ self.W + self.c)))

    def mean_visibles(self, h):
        return 1.0 / (1.0 + np.exp(-(h @ self.W.T + self.b)))


def test_block_gibbs_reaches_the_enumerated_marginal(xp):
    rng = np.random.default_rng(4)
    nv, nh = 4, 3
    W, b, c = rng.normal(0, 1.0, (nv, nh)), rng.normal(0, 0.5, nv), rng.normal(0, 0.5, nh)
    vs = np.array(list(itertools.product([0, 1], repeat=nv)), dtype=float)
    hs = np.array(list(itertools.product([0, 1], repeat=nh)), dtype=float)
    neg_e = (vs @ b)[:, None] + (hs @ c)[None, :] + vs @ W @ hs.T
    p = np.exp(neg_e - neg_e.max()).sum(axis=1)
    p /= p.sum()
    n = 6000
    v, info = block_gibbs(TinyRBM(W, b, c, xp), xp.zeros((n, nv)), 25, generator=9, return_info=True)
    counts = state_counts(v, nv)
    assert stats.chisquare(counts, n * p).pvalue > 1e-3
    assert tuple(info["h"].shape) == (n, nh)


def test_block_gibbs_on_npjems_rbm_reaches_the_enumerated_joint(device, xp):
    rng = np.random.default_rng(5)
    nv, nh = 3, 2
    W, b, c = rng.normal(0, 1.5, (nh, nv)), rng.normal(0, 0.5, nv), rng.normal(0, 0.5, nh)
    rbm = npjem.ebm.BernoulliRBM(nh, device=device, dtype=np.float64)
    rbm.components_, rbm.intercept_visible_, rbm.intercept_hidden_ = xp.asarray(W), xp.asarray(b), xp.asarray(c)
    vs = np.array(list(itertools.product([0, 1], repeat=nv)), dtype=float)
    hs = np.array(list(itertools.product([0, 1], repeat=nh)), dtype=float)
    p = np.exp((vs @ b)[:, None] + (hs @ c)[None, :] + vs @ W.T @ hs.T).ravel()   # joint over (v, h)
    n = 6000
    v, info = block_gibbs(rbm, xp.zeros((n, nv)), 20, generator=10, return_info=True)
    # (v, h) with h the last hidden draw: h ~ p(h|v_prev), v ~ p(v|h), so (v, h) ~ the joint
    joint = np.concatenate([backend.to_numpy(v.data), backend.to_numpy(info["h"].data)], axis=1)
    counts = state_counts(Tensor(joint), nv + nh)
    assert stats.chisquare(counts, n * p / p.sum()).pvalue > 1e-3
    assert all(p.grad is None for p in rbm.parameters())


def test_gibbs_names_the_missing_conditional(xp):
    with pytest.raises(TypeError, match="mean_hiddens"):
        block_gibbs(object(), xp.zeros((2, 3)), 1, generator=0)


# ------------------------------------------------------------------------------ bad arguments

@pytest.mark.parametrize("kwargs, match", [
    (dict(n_steps=-1), "n_steps"),
    (dict(n_steps=1.5), "n_steps"),
    (dict(step_size=0.0), "step_size"),
    (dict(step_size=float("nan")), "step_size"),
    (dict(noise_scale=-1.0), "noise_scale"),
    (dict(grad_clip=0.0), "grad_clip"),
    (dict(clamp=(1.0, -1.0)), "clamp"),
    (dict(clamp=3.0), "clamp"),
    (dict(return_info=1), "return_info"),
])
def test_langevin_names_bad_arguments(xp, kwargs, match):
    args = dict(n_steps=2, step_size=0.1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        langevin(Quadratic(MU, P, xp), xp.zeros((3, 2)), generator=0, **args)


def test_bad_starts_and_energies_raise(xp):
    energy = Quadratic(MU, P, xp)
    with pytest.raises(ValueError, match="x must hold a batch"):
        langevin(energy, xp.zeros(2), 1, 0.1, generator=0)
    with pytest.raises(ValueError, match="at least one chain"):
        langevin(energy, xp.zeros((0, 2)), 1, 0.1, generator=0)
    with pytest.raises(ValueError, match="floating"):
        langevin(energy, xp.zeros((2, 2), dtype=xp.int64), 1, 0.1, generator=0)
    with pytest.raises(TypeError, match="x must be an array or a Tensor"):
        langevin(energy, [[0.0, 0.0]], 1, 0.1, generator=0)
    with pytest.raises(ValueError, match=r"one value per state, shape \(3,\)"):
        langevin(lambda x: (x * x).sum(), xp.zeros((3, 2)), 1, 0.1, generator=0)
    with pytest.raises(TypeError, match="must return a Tensor"):
        mala(lambda x: x.data.sum(axis=1), xp.zeros((3, 2)), 1, 0.1, generator=0)
    with pytest.raises(ValueError, match="does not depend on x"):
        langevin(lambda x: Tensor(xp.zeros(3)), xp.zeros((3, 2)), 1, 0.1, generator=0)
    with pytest.raises(ValueError, match="step_size"):
        mala(energy, xp.zeros((3, 2)), 1, -0.1, generator=0)


def test_zero_steps_return_the_start(xp):
    x0 = xp.asarray(np.arange(6.0).reshape(3, 2))
    for fn in (lambda: langevin(Quadratic(MU, P, xp), x0, 0, 0.1, generator=0),
               lambda: mala(Quadratic(MU, P, xp), x0, 0, 0.1, generator=0)):
        np.testing.assert_array_equal(backend.to_numpy(fn().data), backend.to_numpy(x0))


def test_public_names():
    assert npjem.ebm.langevin is samplers.langevin
    assert set(samplers.__all__) >= {"langevin", "mala", "metropolis_hastings", "block_gibbs"}
