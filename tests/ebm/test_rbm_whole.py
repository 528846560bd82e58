"""BernoulliRBM's paths that the parity and enumeration tests do not pin, each held to a value a
reader can compute: CD-1, a Gibbs sweep and the conditional samples written out on a 2 × 2 model
with the generator's own uniforms (so a generator given to a call is the one it draws from),
the Tensor and array forms of inputs, the schedule of AIS and the forms its arguments take,
``from_sklearn``'s copy of a fitted estimator, the progress bar on a terminal, and the repr."""
import math
from types import SimpleNamespace

import numpy as np
import pytest

from npjem import Tensor
from npjem import random as nrandom
from npjem.ebm.rbm import BernoulliRBM, ais_betas

from _terminal import on_a_terminal


def sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def rbm_of(W, b, c, seed=0, **kw):
    H, D = np.shape(W)
    kw.setdefault("progress", False)
    kw.setdefault("dtype", np.float64)
    rbm = BernoulliRBM(H, n_visible=D, generator=seed, **kw)
    rbm.components_, rbm.intercept_visible_, rbm.intercept_hidden_ = W, b, c
    return rbm


# A 2 × 2 model (H = D = 2) whose conditionals are all far from ½ and from each other.
W2 = np.array([[1.5, -2.0], [0.5, 1.0]])
B2 = np.array([-1.0, 0.5])
C2 = np.array([0.3, -0.7])
X2 = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]] * 3)


def bern(p, g):
    return (g.random(p.shape, dtype=np.float64) < p).astype(float)


# ---------------------------------------------------------------- chains by hand

def test_cd1_statistics_by_hand_on_a_two_by_two_model():
    # the model's own seed is 0; the call's generator (seed 7) is the one that draws
    rbm = rbm_of(W2, B2, C2, seed=0)
    dW, dc, db = rbm.cd_gradient(X2, generator=7)               # k = 1 by default (Hinton 2002)
    g = nrandom.default_rng(7)
    ph_pos = sig(X2 @ W2.T + C2)
    h0 = bern(ph_pos, g)                                        # h⁰ ~ p(h | x)
    v1 = bern(sig(h0 @ W2 + B2), g)                             # v¹ ~ p(v | h⁰)
    ph1 = sig(v1 @ W2.T + C2)                                   # p(h | v¹), Rao–Blackwellised
    n = len(X2)
    np.testing.assert_allclose(dW, (ph_pos.T @ X2 - ph1.T @ v1) / n, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dc, (ph_pos - ph1).mean(axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(db, (X2 - v1).mean(axis=0), rtol=1e-12, atol=1e-15)
    # and a second call with the same seed draws the same chain
    again = rbm.cd_gradient(X2, k=1, generator=7)
    np.testing.assert_array_equal(again[0], dW)


def test_a_gibbs_sweep_and_the_conditional_samples_by_hand():
    rbm = rbm_of(W2, B2, C2, seed=0)
    g = nrandom.default_rng(3)
    h = bern(sig(X2 @ W2.T + C2), g)
    np.testing.assert_array_equal(rbm.gibbs_step(X2, generator=3), bern(sig(h @ W2 + B2), g))
    np.testing.assert_array_equal(rbm.gibbs_step(X2, generator=3), rbm.gibbs_step(X2, generator=3))
    np.testing.assert_array_equal(rbm.sample_hiddens(X2, generator=4),
                                  bern(sig(X2 @ W2.T + C2), nrandom.default_rng(4)))
    np.testing.assert_array_equal(rbm.sample_visibles(X2, generator=5),
                                  bern(sig(X2 @ W2 + B2), nrandom.default_rng(5)))


def test_conditional_samples_have_the_conditional_means():
    rbm = rbm_of(W2, B2, C2, seed=1)
    v = np.repeat(np.array([[1.0, 0.0]]), 20000, axis=0)
    np.testing.assert_allclose(rbm.sample_hiddens(v).mean(axis=0), sig(W2[:, 0] + C2), atol=0.015)
    h = np.repeat(np.array([[0.0, 1.0]]), 20000, axis=0)
    np.testing.assert_allclose(rbm.sample_visibles(h).mean(axis=0), sig(W2[1] + B2), atol=0.015)
    assert rbm.sample_visibles(h[:3]).dtype == np.float64


def test_sample_from_v0_takes_its_rows_and_checks_n_samples():
    rbm = rbm_of(W2, B2, C2, seed=0)
    v0 = X2[:5]
    g = nrandom.default_rng(6)
    h = bern(sig(v0 @ W2.T + C2), g)
    want = bern(sig(h @ W2 + B2), g)
    np.testing.assert_array_equal(rbm.sample(5, n_steps=1, v0=v0, generator=6), want)
    np.testing.assert_array_equal(rbm.sample(None, n_steps=1, v0=v0, generator=6), want)
    with pytest.raises(ValueError, match="n_samples=4 but v0 has 5 rows"):
        rbm.sample(4, n_steps=1, v0=v0)
    with pytest.raises(ValueError, match="n_samples=2 but v0 has 5 rows"):
        rbm.sample(2, n_steps=1, v0=v0)


# ---------------------------------------------------------------- inputs in either form

def test_hidden_states_may_be_tensors_and_take_the_models_dtype():
    rbm = rbm_of(W2, B2, C2, dtype=np.float32)
    h = np.array([[1, 0], [0, 1], [1, 1]])
    want = sig(h @ W2 + B2)
    np.testing.assert_allclose(rbm.mean_visibles(Tensor(h.astype(np.float32))), want, rtol=1e-6)
    got = rbm.mean_visibles(h)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6)
    e = rbm.energy(Tensor(X2[:3].astype(np.float32)), Tensor(h.astype(np.float32)))
    np.testing.assert_allclose(e, -(X2[:3] @ B2) - h @ C2 - ((h @ W2) * X2[:3]).sum(axis=1), rtol=1e-6)


def test_forward_takes_an_array_and_refuses_a_tensor_of_the_wrong_width():
    rbm = rbm_of(W2, B2, C2)
    f = rbm(X2[:4])
    assert isinstance(f, Tensor)
    np.testing.assert_allclose(f.numpy(), rbm.free_energy(X2[:4]), rtol=1e-12)
    with pytest.raises(ValueError, match=r"v must have shape \(N, 2\)"):
        rbm(Tensor(np.zeros((3, 3))))
    # an array goes through the input checks of every other method
    with pytest.raises(ValueError, match="at least one row"):
        rbm(np.zeros((0, 2)))
    with pytest.raises(RuntimeError, match="fit"):
        BernoulliRBM(3)(np.zeros((2, 4)))


def test_log_likelihood_with_a_given_log_z():
    rbm = rbm_of(W2, B2, C2)
    np.testing.assert_allclose(rbm.log_likelihood(X2[:4], log_z=1.25), -rbm.free_energy(X2[:4]) - 1.25,
                               rtol=1e-12)
    np.testing.assert_allclose(rbm.log_likelihood(X2[:4], log_z=np.float64(2.0)),
                               -rbm.free_energy(X2[:4]) - 2.0, rtol=1e-12)
    with pytest.raises((TypeError, ValueError), match="log_z"):
        rbm.log_likelihood(X2[:4], log_z="1.0")


# ---------------------------------------------------------------- AIS

def test_ais_betas_for_the_shortest_schedule():
    # 15 steps keep Salakhutdinov & Murray's proportions: 1 over [0, 0.5), 4 over [0.5, 0.9),
    # 10 over [0.9, 1] (and β = 1 itself)
    want = np.concatenate([[0.0], 0.5 + 0.1 * np.arange(4), 0.9 + 0.01 * np.arange(11)])
    np.testing.assert_allclose(ais_betas(15), want, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="n_intermediate"):
        ais_betas(14)


def small_model(seed=3, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rbm_of(rng.normal(0, 0.5, (3, 4)), rng.normal(0, 1.0, 4), rng.normal(0, 0.5, 3), dtype=dtype)


def test_ais_defaults_a_hundred_runs_on_the_papers_schedule(monkeypatch):
    rbm = small_model()
    res = rbm.ais(betas=2, generator=0)
    assert res.log_weights.shape == (100,)
    # betas=None is ais_betas()'s schedule (15,000 steps; a short stand-in here, to be quick)
    import npjem.ebm.rbm as rbm_module

    calls = []
    monkeypatch.setattr(rbm_module, "ais_betas", lambda: calls.append(1) or np.array([0.0, 0.25, 0.6, 1.0]))
    default = rbm.ais(n_runs=2, generator=1)                   # two runs: the fewest with a stderr
    assert calls == [1]
    np.testing.assert_array_equal(default.log_weights,
                                  rbm.ais(n_runs=2, betas=[0.0, 0.25, 0.6, 1.0], generator=1).log_weights)


def test_ais_with_an_int_spaces_that_many_steps_uniformly():
    rbm = small_model()
    a = rbm.ais(n_runs=5, betas=3, generator=2)
    b = rbm.ais(n_runs=5, betas=[0.0, 1 / 3, 2 / 3, 1.0], generator=2)
    np.testing.assert_array_equal(a.log_weights, b.log_weights)


def test_ais_refuses_a_repeated_beta():
    with pytest.raises(ValueError, match="betas"):
        small_model().ais(n_runs=3, betas=[0.0, 0.5, 0.5, 1.0])


def test_ais_takes_the_base_rates_as_a_list_an_array_or_a_tensor():
    rbm = small_model()
    b_a = [-2.0, 1.0, 0.5, -0.25]
    want = rbm.ais(n_runs=6, betas=4, base_visible_bias=np.array(b_a), generator=3)
    assert want.log_z_base == pytest.approx(sum(math.log1p(math.exp(x)) for x in b_a) + 3 * math.log(2.0))
    for form in (b_a, Tensor(np.array(b_a))):
        got = rbm.ais(n_runs=6, betas=4, base_visible_bias=form, generator=3)
        np.testing.assert_array_equal(got.log_weights, want.log_weights)
        assert got.log_z_base == want.log_z_base


def test_a_float32_models_ais_casts_the_base_rates_to_float32():
    rbm = small_model(dtype=np.float32)
    b_a = np.array([-2.0, 1.0, 0.5, -0.25]) + 1e-3            # not float32 numbers
    res = rbm.ais(n_runs=6, betas=4, base_visible_bias=b_a, generator=3)
    same = rbm.ais(n_runs=6, betas=4, base_visible_bias=b_a.astype(np.float32), generator=3)
    np.testing.assert_array_equal(res.log_weights, same.log_weights)
    assert res.log_z_base == same.log_z_base


# ---------------------------------------------------------------- scikit-learn's estimator

def fitted_estimator(h_samples):
    rng = np.random.default_rng(0)
    return SimpleNamespace(n_components=3, learning_rate=0.05, batch_size=4, n_iter=7,
                           components_=rng.normal(size=(3, 5)), intercept_hidden_=rng.normal(size=3),
                           intercept_visible_=rng.normal(size=5), h_samples_=h_samples)


def test_from_sklearn_copies_the_estimators_parameters_and_particles():
    h = (np.random.default_rng(1).random((4, 3)) < 0.5).astype(float)
    est = fitted_estimator(h)
    rbm = BernoulliRBM.from_sklearn(est, progress=False)
    assert (rbm.n_components, rbm.learning_rate, rbm.batch_size, rbm.n_iter) == (3, 0.05, 4, 7)
    assert rbm.visible_bias_init == "zeros" and rbm.negative_normalization == "batch"
    np.testing.assert_array_equal(rbm.components_, est.components_)
    np.testing.assert_array_equal(rbm.intercept_hidden_, est.intercept_hidden_)
    np.testing.assert_array_equal(rbm.intercept_visible_, est.intercept_visible_)
    np.testing.assert_array_equal(rbm.h_samples_, h)


def test_from_sklearn_leaves_particles_of_another_shape_or_none():
    other = BernoulliRBM.from_sklearn(fitted_estimator(np.ones((6, 3))), progress=False)
    np.testing.assert_array_equal(other.h_samples_, np.zeros((4, 3)))
    unfitted = BernoulliRBM.from_sklearn(fitted_estimator(None), progress=False)
    np.testing.assert_array_equal(unfitted.h_samples_, np.zeros((4, 3)))
    est = fitted_estimator(None)
    del est.h_samples_                                          # an estimator without the attribute
    np.testing.assert_array_equal(BernoulliRBM.from_sklearn(est, progress=False).h_samples_, np.zeros((4, 3)))


# ---------------------------------------------------------------- the bar and the repr

def test_fit_on_a_terminal_shows_a_bar_over_the_epochs(monkeypatch):
    bars = on_a_terminal(monkeypatch)
    rbm = BernoulliRBM(3, n_iter=2, batch_size=4, method="cd", generator=0).fit(X2)
    (bar,) = bars
    assert bar.kwargs == {"total": 2, "desc": "BernoulliRBM(cd)", "unit": "epoch"}
    assert bar.updates == [1, 1] and bar.closed
    pl = rbm.history_["pseudo_likelihood"]
    assert bar.postfix == [{"pseudo_likelihood": f"{x:.2f}", "refresh": False} for x in pl]


def test_no_bar_without_progress_even_on_a_terminal(monkeypatch):
    bars = on_a_terminal(monkeypatch)
    BernoulliRBM(3, n_iter=2, batch_size=4, generator=0, progress=False).fit(X2)
    assert bars == []


def test_repr_names_the_sizes_and_the_training_settings():
    rbm = BernoulliRBM(3, n_visible=5, method="fpcd", k=2, learning_rate=0.05, batch_size=4, n_iter=7)
    assert repr(rbm) == ("BernoulliRBM(n_visible=5, n_components=3, method='fpcd', k=2, learning_rate=0.05, "
                         "batch_size=4, n_iter=7)")
    assert "n_visible=None, n_components=3" in repr(BernoulliRBM(3))


# ---------------------------------------------------------------- fit's epochs and its record

def data_6(n=20, seed=0):
    p = np.array([0.1, 0.9, 0.3, 0.7, 0.5, 0.2])
    return (np.random.default_rng(seed).random((n, 6)) < p).astype(float)


def test_shuffled_fit_is_the_fit_of_the_permuted_rows():
    # shuffle=True draws one permutation per epoch from the training generator, then the updates
    X = data_6()
    shuffled = BernoulliRBM(3, n_iter=1, batch_size=5, shuffle=True, generator=0, progress=False,
                            monitor=None).fit(X, generator=4)
    g = nrandom.default_rng(4)
    perm = g.permutation(len(X))
    by_hand = BernoulliRBM(3, n_iter=1, batch_size=5, generator=0, progress=False, monitor=None)
    by_hand._init_from_data(X)                                  # the same data initialisation of b
    by_hand.fit(X[perm], generator=g)
    np.testing.assert_array_equal(shuffled.components_, by_hand.components_)
    np.testing.assert_array_equal(shuffled.intercept_visible_, by_hand.intercept_visible_)


def test_a_fit_draws_only_from_the_generator_it_is_given():
    # two models with other seeds but the same parameters: every draw of the fit, the monitor's
    # included, comes from the generator passed to fit, so they end equal
    X = data_6()
    fits = []
    for seed in (1, 2):
        rbm = BernoulliRBM(3, n_visible=6, n_iter=3, batch_size=5, generator=seed, progress=False,
                           dtype=np.float64)
        rbm.components_ = np.full((3, 6), 0.01)
        fits.append(rbm.fit(X, generator=9))
    a, b = fits
    assert a.history_["pseudo_likelihood"] == b.history_["pseudo_likelihood"]
    np.testing.assert_array_equal(a.components_, b.components_)


def test_history_counts_the_epochs_and_their_times(capsys):
    import time

    X = data_6()
    t0 = time.perf_counter()
    rbm = BernoulliRBM(3, n_iter=3, batch_size=5, generator=0, progress=False, monitor=None, verbose=1).fit(X)
    elapsed = time.perf_counter() - t0
    h = rbm.history_
    assert h["epoch"] == [0, 1, 2] and set(h) == {"epoch", "time"}
    assert 0 <= h["time"][0] <= h["time"][1] <= h["time"][2] <= elapsed
    for line in capsys.readouterr().out.splitlines():
        assert 0 <= float(line.rsplit("time = ", 1)[1].rstrip("s")) <= elapsed + 0.005


def test_printed_estimate_without_the_monitor_is_reproducible(capsys):
    X = data_6()
    for _ in range(2):
        BernoulliRBM(3, n_iter=2, batch_size=5, generator=0, progress=False, monitor=None, verbose=1).fit(X)
    out = [line.split(", time")[0] for line in capsys.readouterr().out.splitlines()]
    assert len(out) == 4 and out[:2] == out[2:]


# ---------------------------------------------------------------- data, enumeration, pseudo-likelihood

def test_fit_takes_a_tensor_and_a_single_row_and_refuses_what_is_not_in_0_1():
    X = data_6()
    a = BernoulliRBM(3, n_iter=1, batch_size=5, generator=0, progress=False).fit(X)
    b = BernoulliRBM(3, n_iter=1, batch_size=5, generator=0, progress=False).fit(Tensor(X))
    np.testing.assert_array_equal(a.components_, b.components_)
    BernoulliRBM(3, generator=0, progress=False).partial_fit(X[:1])  # sklearn's partial_fit on one row
    with pytest.raises(ValueError, match="at least one row"):
        BernoulliRBM(3, progress=False).fit(np.zeros((0, 6)))
    for bad in (-0.5, 1.5, np.nan):
        Y = X.copy()
        Y[2, 3] = bad
        with pytest.raises(ValueError, match=r"X must hold values in \[0, 1\]"):
            BernoulliRBM(3, progress=False).fit(Y)


class Enumerated(Exception):
    pass


def test_log_partition_enumerates_up_to_26_units_by_default(monkeypatch):
    # 2^26 states are allowed without asking, 2^27 are not (the enumeration itself is stubbed
    # out here: only the decision is checked)
    def refuse_to_run(self, chunk_size):
        raise Enumerated

    monkeypatch.setattr(BernoulliRBM, "_enumerate", refuse_to_run)
    with pytest.raises(Enumerated):
        BernoulliRBM(26, n_visible=30, progress=False).log_partition()
    with pytest.raises(ValueError, match=r"2\^27 states .* more than 2\^max_units = 2\^26"):
        BernoulliRBM(27, n_visible=30, progress=False).log_partition()


def test_pseudo_likelihood_is_exact_by_default():
    # log PL(v) = Σ_i log σ(F(v⁽ⁱ⁾) − F(v)), every bit flipped in turn, on the 2 × 2 model
    rbm = rbm_of(W2, B2, C2)

    def F(v):
        return -(v @ B2) - np.logaddexp(0, v @ W2.T + C2).sum(axis=1)

    want = np.zeros(len(X2))
    for i in range(2):
        flipped = X2.copy()
        flipped[:, i] = 1 - flipped[:, i]
        want += np.log(sig(F(flipped) - F(X2)))
    np.testing.assert_allclose(rbm.pseudo_likelihood(X2), want, rtol=1e-12)


def test_a_float32_model_enumerates_in_float32():
    # the states are the model's dtype: log Z is float32 arithmetic, written out here op for op
    from npjem.ebm.rbm import softplus

    rng = np.random.default_rng(8)
    W, b, c = (rng.normal(0, 1, (5, 4)).astype(np.float32), rng.normal(0, 1, 4).astype(np.float32),
               rng.normal(0, 1, 5).astype(np.float32))
    rbm = rbm_of(W, b, c, dtype=np.float32)
    states = np.array([[(r >> j) & 1 for j in range(4)] for r in range(16)], dtype=np.float32)
    neg_f = (states @ b) + softplus(states @ W.T + c).sum(axis=1)
    assert neg_f.dtype == np.float32
    m = neg_f.max()
    assert rbm.log_partition() == float(m + np.log(np.exp(neg_f - m).sum()))



def test_score_samples_is_scikit_learns_one_bit_estimate():
    # one random bit i per row, D · log σ(F(v⁽ⁱ⁾) − F(v)), i drawn from [0, D) by the generator
    rbm = rbm_of(W2, B2, C2)
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]] * 50)
    idx = nrandom.default_rng(5).integers(0, 2, size=len(X))
    flipped = X.copy()
    flipped[np.arange(len(X)), idx] = 1 - flipped[np.arange(len(X)), idx]
    want = 2 * np.log(sig(rbm.free_energy(flipped) - rbm.free_energy(X)))
    np.testing.assert_allclose(rbm.score_samples(X, generator=5), want, rtol=1e-12)
    assert set(idx) == {0, 1}


# ---------------------------------------------------------------- the model's generator and parameters

def test_the_models_own_generator_is_made_once_and_advances():
    rbm = rbm_of(W2, B2, C2, seed=11)
    g = nrandom.default_rng(11)
    g.standard_normal((2, 2), dtype=np.float64)                 # its first draws: the initial weights
    for _ in range(2):                                          # two calls: two fresh draws
        np.testing.assert_array_equal(rbm.sample_hiddens(X2), bern(sig(X2 @ W2.T + C2), g))


def test_assigned_weights_follow_the_datas_dtype_rule():
    # integer weights become float64, or the dtype the constructor names; float ones keep theirs
    W = np.array([[1, -2, 0], [0, 1, 3]])
    assert _assigned(W).components_.dtype == np.float64
    assert _assigned(W, dtype=np.float32).components_.dtype == np.float32
    assert _assigned(W.astype(np.float32)).components_.dtype == np.float32
    t = _assigned(Tensor(W.astype(np.float64)))
    np.testing.assert_array_equal(t.components_, W)
    assert t.n_visible == 3


def _assigned(W, **kw):
    rbm = BernoulliRBM(2, progress=False, **kw)
    rbm.components_ = W
    return rbm


def test_a_model_made_with_n_visible_takes_the_seed_and_the_dtype_given():
    a, b = (BernoulliRBM(3, n_visible=4, generator=3) for _ in range(2))
    np.testing.assert_array_equal(a.components_, b.components_)  # generator= seeds the weights
    # W ~ N(0, 0.01²) drawn in float64 and cast (sklearn's order), the generator's first draws
    w = 0.01 * nrandom.default_rng(3).standard_normal((3, 4), dtype=np.float64)
    np.testing.assert_array_equal(a.components_, w.astype(np.float32))
    assert a.components_.dtype == np.float32                    # npjem's default dtype
    assert BernoulliRBM(3, n_visible=4, dtype=np.float64).components_.dtype == np.float64
    assert BernoulliRBM(3).history_ is None                     # nothing fitted yet


def test_a_float32_fpcd_model_keeps_every_buffer_in_float32():
    rbm = BernoulliRBM(3, n_visible=4, method="fpcd", dtype=np.float32)
    assert {name: t.dtype for name, t in rbm.state_dict().items()} == {
        name: np.dtype(np.float32) for name in rbm.state_dict()}
    assert {"fast_weight", "fast_hidden_bias", "fast_visible_bias"} <= set(rbm.state_dict())


def test_an_unseeded_model_has_a_generator_of_its_own(monkeypatch):
    # without a seed the model draws from a fresh generator, never from npjem's default one
    # (which only serves calls given no generator at all)
    monkeypatch.setattr(nrandom, "_default_generators", {})
    nrandom.manual_seed(123)
    want = nrandom.get_generator("cpu").random(3)
    nrandom.manual_seed(123)
    a, b = BernoulliRBM(3, n_visible=4), BernoulliRBM(3, n_visible=4)
    np.testing.assert_array_equal(nrandom.get_generator("cpu").random(3), want)
    assert not np.array_equal(a.components_, b.components_)
