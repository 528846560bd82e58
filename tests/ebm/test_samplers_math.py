"""Each sampler's step written out by hand, on the same random numbers, and the edges of its
arguments: the box on both sides, zero steps, the defaults, the configured sampler objects.

The hand-written steps follow the update rules of the module docstring (Langevin's
x − η∇E + σξ, MALA's accept/reject with the proposal densities, single-bit MH, block Gibbs) and
draw from a generator seeded like the sampler's, in the order the rule needs the numbers; a
sampler that moves the wrong way, draws in another dtype or ignores its seed leaves them."""
import math

import numpy as np
import pytest

from npjem import Tensor
from npjem import random as nrandom
from npjem.ebm.samplers import (MALA, Langevin, MetropolisHastings, block_gibbs, langevin, mala,
                                metropolis_hastings)

MU = np.array([0.5, -1.0, 2.0])
PREC = np.array([[2.0, 0.3, 0.0], [0.3, 1.0, -0.2], [0.0, -0.2, 0.5]])


def quadratic(x):
    """E(x) = ½ (x − μ)ᵀ P (x − μ) on (N, 3) Tensors, in the dtype of x."""
    d = x - Tensor(MU.astype(x.dtype))
    return 0.5 * ((d @ Tensor(PREC.astype(x.dtype))) * d).sum(axis=1)


def quadratic_np(x):
    d = x - MU
    return 0.5 * ((d @ PREC) * d).sum(axis=1), d @ PREC          # E and ∇E


def start(dtype, n=5, seed=1):
    """N = 5 chains in D = 3: N ≠ D, so a per-row norm taken over the wrong axis shows."""
    return (np.random.default_rng(seed).normal(0.0, 2.0, (n, 3))).astype(dtype)


def langevin_by_hand(x, n_steps, eta, sigma, seed, clip=None, box=None):
    g, dtype = nrandom.default_rng(seed), x.dtype
    norms, energies = [], []
    for _ in range(n_steps):
        e, grad = quadratic_np(x)
        norms.append(np.sqrt((grad ** 2).sum(axis=1)).mean())
        energies.append(e.mean())
        if clip is not None:
            grad = np.clip(grad, -clip, clip)
        x = x - eta * grad
        if sigma > 0:
            x = x + sigma * g.standard_normal(x.shape, dtype=dtype)
        if box is not None:
            x = np.clip(x, *box)
    return x, norms, energies


# ------------------------------------------------------------------------------ Langevin

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("noise_scale", [None, 0.3])
def test_langevin_steps_are_the_update_rule_on_the_seeds_normals(dtype, noise_scale):
    x0 = start(dtype)
    x, info = langevin(quadratic, x0, 3, 0.1, noise_scale, generator=11, return_info=True)
    sigma = math.sqrt(2 * 0.1) if noise_scale is None else noise_scale
    want, norms, energies = langevin_by_hand(x0.copy(), 3, 0.1, sigma, 11)
    assert x.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(x.data, want, rtol=tol, atol=tol)
    np.testing.assert_allclose(info["grad_norm"], norms, rtol=tol)
    np.testing.assert_allclose(info["energy"], energies, rtol=tol)


def test_langevin_accepts_a_tensor_start_and_keeps_it():
    x0 = start(np.float64)
    a = langevin(quadratic, Tensor(x0), 2, 0.1, generator=3)
    b = langevin(quadratic, x0, 2, 0.1, generator=3)
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(x0, start(np.float64))


def test_langevin_clamps_to_both_sides_of_the_box():
    # Chains started below and above the box, with a gradient too weak to bring them back.
    x0 = np.array([[-10.0, 0.0, 10.0], [10.0, 0.0, -10.0]])
    x = langevin(quadratic, x0, 1, 1e-4, noise_scale=0.0, generator=0, clamp=(-1.5, 2.5)).data
    np.testing.assert_array_equal(x[:, [0, 2]], [[-1.5, 2.5], [2.5, -1.5]])
    assert abs(x[0, 1]) < 1e-3 and abs(x[1, 1]) < 1e-3           # inside: only the gradient step


def test_langevin_with_clip_and_clamp_follows_the_rule():
    x0 = start(np.float64)
    x = langevin(quadratic, x0, 4, 0.2, 0.5, generator=5, grad_clip=0.3, clamp=(-1.0, 1.0))
    want, _, _ = langevin_by_hand(x0.copy(), 4, 0.2, 0.5, 5, clip=0.3, box=(-1.0, 1.0))
    np.testing.assert_allclose(x.data, want, rtol=1e-12)


def test_noiseless_langevin_draws_no_random_numbers():
    g = nrandom.default_rng(4)
    langevin(quadratic, start(np.float64), 3, 0.1, noise_scale=0.0, generator=g)
    assert g.random() == nrandom.default_rng(4).random()


def test_a_box_without_width_raises():
    for bad in [(1.0, 1.0), (2.0, 1.0)]:
        with pytest.raises(ValueError, match="low < high"):
            langevin(quadratic, start(np.float64), 1, 0.1, clamp=bad)
        with pytest.raises(ValueError, match="low < high"):
            Langevin(0.1, clamp=bad)


# ------------------------------------------------------------------------------ MALA

def mala_by_hand(x, n_steps, eta, seed):
    g, dtype = nrandom.default_rng(seed), x.dtype
    n = x.shape[0]
    e_x, g_x = quadratic_np(x)
    acc, energies = [], []
    for _ in range(n_steps):
        y = x - eta * g_x + math.sqrt(2 * eta) * g.standard_normal(x.shape, dtype=dtype)
        e_y, g_y = quadratic_np(y)
        log_q_fwd = -((y - x + eta * g_x) ** 2).sum(axis=1) / (4 * eta)      # log q(y | x)
        log_q_bwd = -((x - y + eta * g_y) ** 2).sum(axis=1) / (4 * eta)      # log q(x | y)
        log_alpha = e_x - e_y + log_q_bwd - log_q_fwd
        accept = np.log(1.0 - g.random(n, dtype=dtype)) < log_alpha
        x = np.where(accept[:, None], y, x)
        g_x = np.where(accept[:, None], g_y, g_x)
        e_x = np.where(accept, e_y, e_x)
        acc.append(accept.mean())
        energies.append(e_x.mean())
    return x, acc, energies


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mala_steps_are_the_metropolis_adjusted_rule_on_the_seeds_numbers(dtype):
    x0 = start(dtype, n=40)
    x, info = mala(quadratic, x0, 4, 0.6, generator=21, return_info=True)
    want, acc, energies = mala_by_hand(x0.copy(), 4, 0.6, 21)
    assert x.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(x.data, want, rtol=tol, atol=tol)
    assert 0.1 < np.mean(acc) < 0.9                              # some proposals go each way
    np.testing.assert_allclose(info["acceptance_per_step"], acc)
    assert info["acceptance"] == pytest.approx(np.mean(acc))
    np.testing.assert_allclose(info["energy"], energies, rtol=tol)


# ------------------------------------------------------------------------------ binary MH

W4 = np.array([[0.0, 1.5, -1.0, 0.5], [0.0, 0.0, 0.8, -1.2], [0.0, 0.0, 0.0, 0.7], [0.0, 0.0, 0.0, 0.0]])
B4 = np.array([0.5, -1.0, 0.3, 0.8])


def ising_2x2(x):
    """A fully visible Boltzmann machine on 2×2 binary images, E = −bᵀv − vᵀWv; images only."""
    assert x.ndim == 3 and tuple(x.shape[1:]) == (2, 2), x.shape
    v = x.reshape(x.shape[0], 4)
    return -(v @ Tensor(B4.astype(x.dtype))) - ((v @ Tensor(W4.astype(x.dtype))) * v).sum(axis=1)


def ising_np(v):
    return -(v @ B4) - ((v @ W4) * v).sum(axis=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_metropolis_hastings_steps_are_single_bit_flips_on_the_seeds_numbers(dtype):
    n = 30
    x0 = (np.random.default_rng(2).random((n, 2, 2)) < 0.5).astype(dtype)
    assert x0.sum() > 0                                          # ones in the start are allowed
    x, info = metropolis_hastings(ising_2x2, x0, 6, generator=31, return_info=True)
    g = nrandom.default_rng(31)
    flat = x0.reshape(n, 4).copy()
    e_x, acc, energies = ising_np(flat), [], []
    for _ in range(6):
        j = g.integers(0, 4, size=n)
        prop = flat.copy()
        prop[np.arange(n), j] = 1.0 - prop[np.arange(n), j]
        e_p = ising_np(prop)
        accept = np.log(1.0 - g.random(n, dtype=dtype)) < e_x - e_p
        flat = np.where(accept[:, None], prop, flat)
        e_x = np.where(accept, e_p, e_x)
        acc.append(accept.mean())
        energies.append(e_x.mean())
    assert tuple(x.shape) == (n, 2, 2) and x.dtype == dtype
    np.testing.assert_array_equal(x.data, flat.reshape(n, 2, 2))
    assert 0.0 < np.mean(acc) < 1.0
    np.testing.assert_allclose(info["acceptance_per_step"], acc)
    np.testing.assert_allclose(info["energy"], energies, rtol=1e-6)


def test_metropolis_hastings_proposes_every_bit_position():
    # A strong pull to 1 on every bit: one step from zeros flips exactly the proposed bit.
    def pull(x):
        return -20.0 * x.sum(axis=1)
    x = metropolis_hastings(pull, np.zeros((400, 5)), 1, generator=0).data
    assert np.all(x.sum(axis=1) == 1)
    counts = x.sum(axis=0)
    assert np.all(counts > 40) and counts.sum() == 400             # ≈ 80 each, not all one bit


def test_metropolis_hastings_rejects_values_other_than_zero_and_one():
    with pytest.raises(ValueError, match="binary"):
        metropolis_hastings(ising_2x2, np.full((2, 2, 2), 2.0), 1, generator=0)


# ------------------------------------------------------------------------------ block Gibbs

class TensorRBM:
    """An RBM's two conditionals returned as Tensors (the sampler must read their arrays)."""

    def __init__(self, dtype):
        rng = np.random.default_rng(6)
        self.W = rng.normal(0, 1.0, (3, 4)).astype(dtype)
        self.b, self.c = rng.normal(0, 0.5, 4).astype(dtype), rng.normal(0, 0.5, 3).astype(dtype)

    def mean_hiddens(self, v):
        return Tensor(1.0 / (1.0 + np.exp(-(v @ self.W.T + self.c))))

    def mean_visibles(self, h):
        return Tensor(1.0 / (1.0 + np.exp(-(h @ self.W + self.b))))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_block_gibbs_sweeps_on_the_seeds_numbers(dtype):
    rbm = TensorRBM(dtype)
    v0 = (np.random.default_rng(1).random((25, 4)) < 0.5).astype(dtype)
    v, info = block_gibbs(rbm, Tensor(v0), 3, generator=41, return_info=True)
    g = nrandom.default_rng(41)
    want = v0
    for _ in range(3):
        ph = rbm.mean_hiddens(want).data
        h = (g.random(ph.shape, dtype=dtype) < ph).astype(dtype)
        pv = rbm.mean_visibles(h).data
        want = (g.random(pv.shape, dtype=dtype) < pv).astype(dtype)
    assert isinstance(v.data, np.ndarray) and v.dtype == dtype
    np.testing.assert_array_equal(v.data, want)
    np.testing.assert_array_equal(info["h"].data, h)
    assert info["h"].dtype == dtype


# ------------------------------------------------------------------------------ edges and defaults

def count_calls(energy):
    calls = []

    def wrapped(x):
        calls.append(1)
        return energy(x)
    return wrapped, calls


def test_zero_steps_return_the_start_without_evaluating_the_energy():
    x0 = start(np.float64)
    for run in (lambda e: langevin(e, x0, 0, 0.1, generator=0, return_info=True),
                lambda e: mala(e, x0, 0, 0.1, generator=0, return_info=True)):
        energy, calls = count_calls(quadratic)
        x, info = run(energy)
        np.testing.assert_array_equal(x.data, x0)
        assert not calls
    assert math.isnan(mala(quadratic, x0, 0, 0.1, generator=0, return_info=True)[1]["acceptance"])
    b0 = np.ones((2, 2, 2))
    energy, calls = count_calls(ising_2x2)
    x, info = metropolis_hastings(energy, b0, 0, generator=0, return_info=True)
    np.testing.assert_array_equal(x.data, b0)
    assert not calls and math.isnan(info["acceptance"]) and info["acceptance_per_step"] == []
    v, info = block_gibbs(TensorRBM(np.float64), np.ones((2, 4)), 0, generator=0, return_info=True)
    np.testing.assert_array_equal(v.data, np.ones((2, 4)))
    assert info["h"] is None


def test_negative_step_counts_raise_naming_n_steps():
    x0, b0 = start(np.float64), np.zeros((2, 2, 2))
    for call in (lambda: langevin(quadratic, x0, -1, 0.1), lambda: mala(quadratic, x0, -1, 0.1),
                 lambda: metropolis_hastings(ising_2x2, b0, -1),
                 lambda: block_gibbs(TensorRBM(np.float64), np.zeros((2, 4)), -1)):
        with pytest.raises(ValueError, match="n_steps"):
            call()


def test_samplers_return_a_tensor_unless_asked_for_the_info():
    x0, b0, v0 = start(np.float64), np.zeros((3, 2, 2)), np.zeros((3, 4))
    results = [langevin(quadratic, x0, 1, 0.1, generator=0), mala(quadratic, x0, 1, 0.1, generator=0),
               metropolis_hastings(ising_2x2, b0, 1, generator=0),
               block_gibbs(TensorRBM(np.float64), v0, 1, generator=0),
               Langevin(0.1)(quadratic, x0, 1, 0), MALA(0.1)(quadratic, x0, 1, 0),
               MetropolisHastings()(ising_2x2, b0, 1, 0)]
    assert all(isinstance(r, Tensor) for r in results)


def test_sampler_objects_run_their_functions_with_every_setting():
    x0, b0 = start(np.float64), (np.random.default_rng(0).random((6, 2, 2)) < 0.5).astype(float)
    # clip and box both bind here: a sampler object that dropped either would move elsewhere
    obj, info = Langevin(0.2, 0.5, grad_clip=0.3, clamp=(-1.0, 1.0))(quadratic, x0, 3, 7, return_info=True)
    fn = langevin(quadratic, x0, 3, 0.2, 0.5, 7, grad_clip=0.3, clamp=(-1.0, 1.0))
    np.testing.assert_array_equal(obj.data, fn.data)
    assert not np.array_equal(fn.data, langevin(quadratic, x0, 3, 0.2, 0.5, 7, clamp=(-1.0, 1.0)).data)
    assert not np.array_equal(fn.data, langevin(quadratic, x0, 3, 0.2, 0.5, 7, grad_clip=0.3).data)
    assert len(info["grad_norm"]) == 3
    obj, info = MALA(0.6)(quadratic, x0, 3, 8, return_info=True)
    np.testing.assert_array_equal(obj.data, mala(quadratic, x0, 3, 0.6, 8).data)
    assert "acceptance" in info
    obj, info = MetropolisHastings()(ising_2x2, b0, 5, 9, return_info=True)
    np.testing.assert_array_equal(obj.data, metropolis_hastings(ising_2x2, b0, 5, 9).data)
    assert len(info["acceptance_per_step"]) == 5
    assert repr(MetropolisHastings()) == "MetropolisHastings()"
