"""Langevin's ``noise_first`` (IGEBM's order: noise, then the gradient step at the noisy point)."""
import numpy as np
import pytest

from npjem.autograd import Tensor
from npjem.ebm.samplers import Langevin, langevin

from _twin_rng import ScriptedGenerator

PRECISION = np.array([[2.0, 0.5], [0.5, 1.0]])


def quadratic(x):
    return 0.5 * ((x @ Tensor(PRECISION)) * x).sum(axis=1)


def _noise(n_steps, rng):
    return [rng.standard_normal((3, 2)) for _ in range(n_steps)]


def test_igebm_order_by_hand():
    rng = np.random.default_rng(0)
    x0, xi = rng.standard_normal((3, 2)), _noise(4, rng)
    eta, sigma = 0.1, 0.3
    out = langevin(quadratic, x0, 4, eta, sigma, ScriptedGenerator(standard_normal=xi), noise_first=True)
    x = x0
    for z in xi:
        x = x + sigma * z
        x = x - eta * x @ PRECISION  # ∇ₓ½xᵀPx = Px at the noisy point
    np.testing.assert_allclose(out.data, x, rtol=1e-13)


def test_the_two_orders_are_one_chain_shifted_by_the_next_noise():
    # From y₀ = x₀ + σξ₁ the default chain visits y_t = x_t + σξ_{t+1}, x_t being IGEBM's states.
    rng = np.random.default_rng(1)
    x0, xi = rng.standard_normal((3, 2)), _noise(6, rng)
    eta, sigma = 0.05, 0.2
    first = langevin(quadratic, x0, 5, eta, sigma, ScriptedGenerator(standard_normal=xi[:5]), noise_first=True)
    after = langevin(quadratic, x0 + sigma * xi[0], 5, eta, sigma, ScriptedGenerator(standard_normal=xi[1:]))
    np.testing.assert_allclose(after.data, first.data + sigma * xi[5], rtol=1e-12)
    assert np.abs(after.data - first.data).max() > 1e-2  # the samples themselves differ


def test_noise_first_is_checked_and_kept_by_the_sampler_object():
    with pytest.raises(TypeError, match="noise_first"):
        langevin(quadratic, np.zeros((2, 2)), 1, 0.1, noise_first=1)
    with pytest.raises(TypeError, match="noise_first"):
        Langevin(0.1, noise_first="yes")
    sampler = Langevin(0.1, 0.2, noise_first=True)
    assert "noise_first=True" in repr(sampler)
    rng = np.random.default_rng(2)
    x0, xi = rng.standard_normal((3, 2)), _noise(3, rng)
    a = sampler(quadratic, x0, 3, ScriptedGenerator(standard_normal=xi))
    b = langevin(quadratic, x0, 3, 0.1, 0.2, ScriptedGenerator(standard_normal=xi), noise_first=True)
    np.testing.assert_array_equal(a.data, b.data)
