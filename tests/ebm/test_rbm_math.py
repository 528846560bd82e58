"""BernoulliRBM's less travelled paths held to values a reader can compute: FPCD's particles on
W + W_fast (fast parameters forced large, one at a time), the fast weights' decay and step, AIS
on a model whose base rates are far from ½, the base-rate model's log Z and smoothing, the
visible biases' data initialisation, and the defaults against scikit-learn's and the papers'."""
import functools
import math

import numpy as np
import pytest

from npjem import random as nrandom
from npjem.ebm.rbm import BernoulliRBM, softplus


def rbm_of(W, b, c, **kw):
    H, D = np.shape(W)
    kw.setdefault("progress", False)
    rbm = BernoulliRBM(H, n_visible=D, dtype=np.float64, generator=kw.pop("seed", 0), **kw)
    rbm.components_, rbm.intercept_visible_, rbm.intercept_hidden_ = W, b, c
    return rbm


def quiet_fpcd(H=5, D=6, batch=60, **kw):
    """An FPCD model with zero slow parameters and a learning rate of zero: only W_fast acts."""
    kw.setdefault("learning_rate", 0.0)
    return rbm_of(np.zeros((H, D)), np.zeros(D), np.zeros(H), method="fpcd", batch_size=batch, k=1,
                  visible_bias_init="zeros", **kw)


# ---------------------------------------------------------------- FPCD

def test_fpcd_particles_run_on_the_fast_hidden_biases():
    rbm = quiet_fpcd()
    rbm.fast_hidden_bias.data[...] = 30.0                       # σ(0 + 30) ≈ 1: every particle's h on
    rbm.partial_fit(np.zeros((60, 6)), generator=1)
    assert rbm.h_samples_.mean() > 0.99
    pcd = rbm_of(np.zeros((5, 6)), np.zeros(6), np.zeros(5), method="pcd", batch_size=60, learning_rate=0.0,
                 visible_bias_init="zeros")
    pcd.partial_fit(np.zeros((60, 6)), generator=1)
    assert 0.35 < pcd.h_samples_.mean() < 0.65                   # PCD's particles: σ(0) = ½


def test_fpcd_particles_run_on_the_fast_weights():
    rbm = quiet_fpcd()
    rbm.fast_weight.data[...] = 8.0                             # any visible unit on turns every h on
    rbm.partial_fit(np.zeros((60, 6)), generator=2)
    assert rbm.h_samples_.mean() > 0.9


def test_fpcd_negative_statistics_use_the_fast_visible_biases_and_the_slow_weights():
    # Fast visible biases of +30 put every negative visible unit on: with data of zeros, the slow
    # visible bias moves by lr · (0 − 1) exactly. The hidden statistics are the slow model's
    # σ(c + W v) = σ(c) (W = 0) on both phases, whatever the fast hidden biases say: c stays put.
    rbm = quiet_fpcd(learning_rate=0.1)
    c = np.array([1.0, -0.5, 2.0, 0.0, -1.5])
    rbm.intercept_hidden_ = c
    rbm.fast_visible_bias.data[...] = 30.0
    rbm.fast_hidden_bias.data[...] = -30.0
    rbm.partial_fit(np.zeros((60, 6)), generator=3)
    np.testing.assert_allclose(rbm.intercept_visible_, -0.1, rtol=1e-12)
    np.testing.assert_allclose(rbm.intercept_hidden_, c, atol=1e-12)


def test_fast_parameters_decay_and_take_the_slow_gradient_step():
    rng = np.random.default_rng(0)
    W, b, c = rng.normal(0, 0.5, (4, 6)), rng.normal(0, 0.5, 6), rng.normal(0, 0.5, 4)
    rbm = rbm_of(W, b, c, method="fpcd", batch_size=8, learning_rate=0.1, fast_learning_rate=0.3,
                 fast_decay=0.8, visible_bias_init="zeros")
    fw, fc, fb = rng.normal(0, 1, (4, 6)), rng.normal(0, 1, 4), rng.normal(0, 1, 6)
    rbm.fast_weight.data[...], rbm.fast_hidden_bias.data[...], rbm.fast_visible_bias.data[...] = fw, fc, fb
    X = (rng.random((8, 6)) < 0.5).astype(float)
    rbm.partial_fit(X, generator=4)
    # the slow step is lr · grad, the fast one decay · fast + lf · grad, with the same grad
    dW, dc, db = (rbm.components_ - W) / 0.1, (rbm.intercept_hidden_ - c) / 0.1, (rbm.intercept_visible_ - b) / 0.1
    assert np.abs(dW).max() > 1e-3
    np.testing.assert_allclose(rbm.fast_weight.data, 0.8 * fw + 0.3 * dW, atol=1e-12)
    np.testing.assert_allclose(rbm.fast_hidden_bias.data, 0.8 * fc + 0.3 * dc, atol=1e-12)
    np.testing.assert_allclose(rbm.fast_visible_bias.data, 0.8 * fb + 0.3 * db, atol=1e-12)


def test_fast_learning_rate_defaults_to_the_learning_rate():
    assert BernoulliRBM(3, learning_rate=0.37, method="fpcd").fast_learning_rate == 0.37
    assert BernoulliRBM(3, learning_rate=0.37, fast_learning_rate=0.0, method="fpcd").fast_learning_rate == 0.0


# ---------------------------------------------------------------- defaults

# Each default with its source: sklearn.neural_network.BernoulliRBM's constructor (n_components,
# learning_rate, batch_size, n_iter; k = 1 and PCD: its one Gibbs sweep per update on persistent
# chains; unshuffled batches; its verbose one-bit pseudo-likelihood), Tieleman & Hinton (2009)
# for FPCD's decay 19/20, Hinton's practical guide for b at the data's log-odds.
DEFAULTS = {"n_components": 256, "learning_rate": 0.1, "batch_size": 10, "n_iter": 10, "k": 1, "method": "pcd",
            "fast_decay": 0.95, "visible_bias_init": "data", "shuffle": False, "monitor": "pseudo_likelihood",
            "progress": True}


def test_constructor_defaults_follow_their_sources():
    rbm = BernoulliRBM()
    assert {name: getattr(rbm, name) for name in DEFAULTS} == DEFAULTS


def test_sample_runs_a_thousand_sweeps_by_default():
    rng = np.random.default_rng(3)
    rbm = rbm_of(rng.normal(0, 1.0, (6, 12)), rng.normal(0, 0.5, 12), rng.normal(0, 0.5, 6))
    default = rbm.sample(40, generator=9)
    np.testing.assert_array_equal(default, rbm.sample(40, n_steps=1000, generator=9))
    assert not np.array_equal(default, rbm.sample(40, n_steps=999, generator=9))


def test_sample_starts_from_the_visible_biases_own_distribution():
    # zero weights: p(v) factorises into σ(b), so zero sweeps already draw from the model
    b = np.array([-3.0, -1.0, 0.0, 2.0])
    rbm = rbm_of(np.zeros((2, 4)), b, np.zeros(2))
    v = rbm.sample(20000, n_steps=0, generator=1)
    np.testing.assert_allclose(v.mean(axis=0), 1 / (1 + np.exp(-b)), atol=0.015)
    v, h = rbm.sample(20000, n_steps=0, generator=1, return_hidden=True)
    assert h.shape == (20000, 2) and abs(h.mean() - 0.5) < 0.02


# ---------------------------------------------------------------- base rates and AIS

def smoothed(X):
    return (X.sum(axis=0) + 0.5) / (X.shape[0] + 1.0)


def skewed_data(n=30, seed=0):
    """Columns on with probabilities 0.03 … 0.97: base rates far from ½."""
    p = np.array([0.03, 0.1, 0.9, 0.97, 0.2, 0.8])
    return (np.random.default_rng(seed).random((n, 6)) < p).astype(float)


def test_visible_biases_start_at_the_smoothed_log_odds_of_the_data():
    X = skewed_data()
    X[:, 0] = 0.0                                               # a unit never on stays finite
    rbm = BernoulliRBM(3, n_iter=0, generator=0, progress=False).fit(X)
    p = smoothed(X)
    np.testing.assert_allclose(rbm.intercept_visible_, np.log(p / (1 - p)), rtol=1e-12)
    zeros = BernoulliRBM(3, n_iter=0, visible_bias_init="zeros", generator=0, progress=False).fit(X)
    np.testing.assert_array_equal(zeros.intercept_visible_, 0.0)


def test_the_base_rate_models_log_z_is_exact():
    X = skewed_data()
    rng = np.random.default_rng(1)
    rbm = rbm_of(rng.normal(0, 0.5, (3, 6)), rng.normal(0, 0.5, 6), rng.normal(0, 0.5, 3))
    res = rbm.ais(n_runs=4, betas=3, data=X, generator=0)
    p = smoothed(X)
    # log Z_A = Σ_i log(1 + e^{b_A,i}) + H log 2 = −Σ_i log(1 − p_i) + 3 log 2
    assert res.log_z_base == pytest.approx(-np.log1p(-p).sum() + 3 * math.log(2.0), rel=1e-12)
    given = rbm.ais(n_runs=4, betas=3, base_visible_bias=np.log(p / (1 - p)), generator=0)
    assert given.log_z_base == pytest.approx(res.log_z_base, rel=1e-12)
    zero = rbm.ais(n_runs=4, betas=3, generator=0)
    assert zero.log_z_base == pytest.approx(9 * math.log(2.0), rel=1e-12)


@functools.lru_cache(maxsize=1)
def skewed():
    """A model whose own visible marginals are far from ½, and data drawn from it."""
    rng = np.random.default_rng(5)
    b = np.array([-3.0, -2.0, 2.5, 3.0, -1.5, 2.0, -2.5, 1.0])
    rbm = rbm_of(rng.normal(0, 0.6, (4, 8)), b, rng.normal(0, 0.5, 4), seed=5)
    return rbm, rbm.sample(400, n_steps=50, generator=6)


def test_ais_from_the_base_rates_finds_the_enumerated_log_z():
    rbm, X = skewed()
    exact = rbm.log_partition()
    res = rbm.ais(n_runs=100, betas=300, data=X, generator=7)
    assert res.stderr < 0.05
    assert abs(res.log_z - exact) < 3 * res.stderr + 0.01
    # with a single intermediate step (β = 0, 1) the estimate is importance sampling from p_A
    one = rbm.ais(n_runs=2000, betas=1, data=X, generator=8)
    assert abs(one.log_z - exact) < 3 * one.stderr + 0.02


def test_ais_log_weights_start_at_the_base_model():
    # β = (0, 1): each run's log weight is log p*_1(v) − log p*_0(v) = −F(v) − b_Aᵀv − H log 2 +
    # H log 2 … written out: log p*_0(v) = b_Aᵀv + H log 2, log p*_1(v) = −F(v), v ~ p_A
    rbm, X = skewed()
    p = smoothed(X)
    b_a = np.log(p / (1 - p))
    res = rbm.ais(n_runs=50, betas=np.array([0.0, 1.0]), data=X, generator=11)
    g = nrandom.default_rng(11)
    v = (g.random((50, 8), dtype=np.float64) < 1 / (1 + np.exp(-b_a))).astype(float)
    want = -rbm.free_energy(v) - v @ b_a - 4 * math.log(2.0)
    np.testing.assert_allclose(res.log_weights, want, rtol=1e-10, atol=1e-10)
    w = np.exp(want - want.max())
    assert res.log_z == pytest.approx(res.log_z_base + want.max() + math.log(w.mean()), rel=1e-12)
    assert res.stderr == pytest.approx(w.std(ddof=1) / (math.sqrt(50) * w.mean()), rel=1e-10)


def test_ais_runs_its_transitions_on_the_intermediate_model():
    # three temperatures, one transition at β = ½, written out on the seed's numbers
    rbm, X = skewed()
    p = smoothed(X)
    b_a = np.log(p / (1 - p))
    W, b, c = rbm.components_, rbm.intercept_visible_, rbm.intercept_hidden_
    res = rbm.ais(n_runs=30, betas=np.array([0.0, 0.5, 1.0]), data=X, generator=12)
    g = nrandom.default_rng(12)

    def log_p(beta, v):
        return (1 - beta) * (v @ b_a) + beta * (v @ b) + softplus(beta * (v @ W.T + c)).sum(axis=1)

    v = (g.random((30, 8), dtype=np.float64) < 1 / (1 + np.exp(-b_a))).astype(float)
    lw = log_p(0.5, v) - log_p(0.0, v)
    h = (g.random((30, 4), dtype=np.float64) < 1 / (1 + np.exp(-0.5 * (v @ W.T + c)))).astype(float)
    v = (g.random((30, 8), dtype=np.float64) < 1 / (1 + np.exp(-(0.5 * b_a + 0.5 * (h @ W + b))))).astype(float)
    lw += log_p(1.0, v) - log_p(0.5, v)
    np.testing.assert_allclose(res.log_weights, lw, rtol=1e-10, atol=1e-10)


def test_ais_takes_the_betas_it_is_given():
    rbm = rbm_of(np.zeros((2, 3)), np.zeros(3), np.zeros(2))
    # a model with no weights and no biases is its own base model: log Z = 5 log 2, every weight 1
    res = rbm.ais(n_runs=3, betas=[0.0, 0.3, 1.0], generator=0)
    assert res.log_z == pytest.approx(5 * math.log(2.0)) and res.stderr == 0.0
    for bad in ([0.0, 0.5], [0.1, 1.0], [0.0, 0.6, 0.4, 1.0], [0.0]):
        with pytest.raises(ValueError, match="betas"):
            rbm.ais(n_runs=3, betas=bad)
    with pytest.raises(ValueError, match="not both"):
        rbm.ais(data=np.zeros((2, 3)), base_visible_bias=np.zeros(3))
