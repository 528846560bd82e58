"""Tests of npjem.ebm.rbm: exact enumeration, Gibbs chains, CD/PCD/FPCD, AIS, sklearn parity."""
import itertools
import math

import numpy as np
import pytest

import npjem
from npjem import Tensor, backend
from npjem import random as nrandom
from npjem.ebm.rbm import BernoulliRBM, ais_betas


def make_rbm(xp, D, H, seed=0, w_scale=1.0, bias_scale=0.5, **kwargs):
    """A float64 RBM with W ~ N(0, w_scale²), b, c ~ N(0, bias_scale²)."""
    rng = np.random.default_rng(seed)
    device = "cpu" if xp is np else "cuda"
    kwargs.setdefault("progress", False)
    rbm = BernoulliRBM(H, n_visible=D, dtype=np.float64, device=device, generator=seed, **kwargs)
    rbm.components_ = xp.asarray(rng.normal(0, w_scale, (H, D)))
    rbm.intercept_hidden_ = xp.asarray(rng.normal(0, bias_scale, H))
    rbm.intercept_visible_ = xp.asarray(rng.normal(0, bias_scale, D))
    return rbm


def states(m):
    return np.array(list(itertools.product([0.0, 1.0], repeat=m)))  # host


def host(a):
    return backend.to_numpy(a)


def joint_log_probs(rbm, xp):
    """log p(v, h) over all (v, h), shape (2^D, 2^H), from E(v, h) by brute force."""
    H, D = rbm.components_.shape
    V, Hs = states(D), states(H)
    vv = np.repeat(V, len(Hs), axis=0)
    hh = np.tile(Hs, (len(V), 1))
    e = host(rbm.energy(xp.asarray(vv), xp.asarray(hh))).reshape(len(V), len(Hs))
    m = (-e).max()
    log_z = m + np.log(np.exp(-e - m).sum())
    return -e - log_z, log_z


def gen(seed, xp):
    return nrandom.default_rng(seed, "cpu" if xp is np else "cuda")


# ---------------------------------------------------------------- exact quantities

@pytest.mark.parametrize("D,H", [(5, 3), (3, 5), (4, 4)])
def test_log_partition_and_likelihood_match_joint_enumeration(xp, D, H):
    rbm = make_rbm(xp, D, H, seed=D * 10 + H)
    logp, log_z = joint_log_probs(rbm, xp)
    assert rbm.log_partition() == pytest.approx(log_z, abs=1e-10)
    V = states(D)
    ll = host(rbm.log_likelihood(xp.asarray(V)))
    m = logp.max(axis=1, keepdims=True)
    marginal = (m + np.log(np.exp(logp - m).sum(axis=1, keepdims=True)))[:, 0]
    np.testing.assert_allclose(ll, marginal, atol=1e-10)
    np.testing.assert_allclose(np.exp(ll).sum(), 1.0, atol=1e-12)


def test_enumeration_over_visible_and_over_hidden_give_the_same_log_z(xp):
    rbm = make_rbm(xp, 4, 7, seed=3)
    # The same joint with the layers swapped: enumeration runs over the other layer.
    swapped = BernoulliRBM(4, n_visible=7, dtype=np.float64, device=rbm.weight.device, progress=False)
    swapped.components_ = rbm.components_.T.copy()
    swapped.intercept_hidden_ = rbm.intercept_visible_
    swapped.intercept_visible_ = rbm.intercept_hidden_
    lz_v = rbm.log_partition()        # sums 2^4 visible states
    lz_h = swapped.log_partition()    # sums 2^4 hidden states
    assert lz_v == pytest.approx(lz_h, abs=1e-10)
    # and both equal the brute-force joint, also when enumerating in small chunks
    _, log_z = joint_log_probs(rbm, xp)
    assert rbm.log_partition(chunk_size=3) == pytest.approx(log_z, abs=1e-10)
    assert swapped.log_partition(chunk_size=5) == pytest.approx(log_z, abs=1e-10)


def test_free_energies_of_both_layers_marginalise_the_joint(xp):
    rbm = make_rbm(xp, 4, 3, seed=1)
    logp, log_z = joint_log_probs(rbm, xp)
    V, Hs = states(4), states(3)
    fv = host(rbm.free_energy(xp.asarray(V)))
    fh = host(rbm.free_energy_hidden(xp.asarray(Hs)))
    lse = lambda a, ax: a.max(axis=ax) + np.log(np.exp(a - a.max(axis=ax, keepdims=True)).sum(axis=ax))
    np.testing.assert_allclose(-fv - log_z, lse(logp, 1), atol=1e-10)
    np.testing.assert_allclose(-fh - log_z, lse(logp, 0), atol=1e-10)


def test_conditionals_match_the_enumerated_joint(xp):
    rbm = make_rbm(xp, 4, 3, seed=2)
    logp, _ = joint_log_probs(rbm, xp)
    p = np.exp(logp)
    V, Hs = states(4), states(3)
    ph = host(rbm.mean_hiddens(xp.asarray(V)))           # p(h_j = 1 | v)
    pv = host(rbm.mean_visibles(xp.asarray(Hs)))          # p(v_i = 1 | h)
    np.testing.assert_allclose(ph, (p @ Hs) / p.sum(axis=1, keepdims=True), atol=1e-12)
    np.testing.assert_allclose(pv, (p.T @ V) / p.sum(axis=0)[:, None], atol=1e-12)
    np.testing.assert_allclose(host(rbm.transform(xp.asarray(V))), ph)


def test_forward_is_the_free_energy_as_a_differentiable_tensor(xp):
    rbm = make_rbm(xp, 5, 3, seed=4)
    v = xp.asarray(np.random.default_rng(0).random((6, 5)))
    np.testing.assert_allclose(host(rbm(Tensor(v)).data), host(rbm.free_energy(v)), atol=1e-12)
    assert npjem.gradcheck(lambda x: rbm(x), [Tensor(v, requires_grad=True)])
    # ∂F/∂b = −v: the parameters get gradients through the engine too
    rbm.zero_grad()
    rbm(Tensor(v)).sum().backward()
    np.testing.assert_allclose(host(rbm.visible_bias.grad.data), -host(v).sum(axis=0), atol=1e-12)


def test_exact_pseudo_likelihood_matches_enumerated_conditionals(xp):
    rbm = make_rbm(xp, 5, 3, seed=5)
    V = states(5)
    ll = host(rbm.log_likelihood(xp.asarray(V)))
    index = {tuple(v): i for i, v in enumerate(V)}
    want = []
    for v in V:
        total = 0.0
        for i in range(5):
            u = v.copy()
            u[i] = 1 - u[i]
            a, b = ll[index[tuple(v)]], ll[index[tuple(u)]]
            total += a - np.logaddexp(a, b)  # log p(v_i | v_−i)
        want.append(total)
    got = host(rbm.pseudo_likelihood(xp.asarray(V), exact=True, chunk_size=7))
    np.testing.assert_allclose(got, want, atol=1e-10)
    # sklearn's one-bit estimator is unbiased for the same sum
    g = gen(0, xp)
    draws = np.stack([host(rbm.score_samples(xp.asarray(V), generator=g)) for _ in range(3000)])
    se = draws.std(axis=0) / math.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - np.asarray(want)) < 4 * se + 1e-9)


def test_exact_gradient_matches_finite_differences_of_the_log_likelihood(xp):
    rbm = make_rbm(xp, 4, 6, seed=6)  # enumerates the visible layer
    wide = make_rbm(xp, 6, 3, seed=7)  # enumerates the hidden layer
    rng = np.random.default_rng(1)
    for model, D in ((rbm, 4), (wide, 6)):
        X = xp.asarray((rng.random((20, D)) < 0.4).astype(np.float64))
        grads = model.log_likelihood_gradient(X, chunk_size=5)
        for param, g in zip((model.weight, model.hidden_bias, model.visible_bias), grads):
            flat = param.data.reshape(-1)
            num = np.zeros(flat.shape[0])
            for i in range(flat.shape[0]):
                old = float(flat[i])
                flat[i] = old + 1e-6
                up = float(model.log_likelihood(X).mean())
                flat[i] = old - 1e-6
                down = float(model.log_likelihood(X).mean())
                flat[i] = old
                num[i] = (up - down) / 2e-6
            np.testing.assert_allclose(host(g).reshape(-1), num, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- Markov chains

def chi2_pvalue(counts, probs):
    from scipy import stats

    expected = probs * counts.sum()
    return stats.chisquare(counts, expected).pvalue


def test_block_gibbs_reaches_the_enumerated_joint(xp):
    rbm = make_rbm(xp, 4, 3, seed=8)
    logp, _ = joint_log_probs(rbm, xp)
    v, h = rbm.sample(20000, n_steps=25, generator=gen(1, xp), return_hidden=True)
    v, h = host(v), host(h)
    assert set(np.unique(v)) <= {0.0, 1.0} and set(np.unique(h)) <= {0.0, 1.0}
    code = (v @ (2 ** np.arange(3, -1, -1))) * 8 + h @ (2 ** np.arange(2, -1, -1))
    counts = np.bincount(code.astype(int), minlength=128)
    assert chi2_pvalue(counts, np.exp(logp).ravel()) > 1e-3
    # one gibbs_step from exact samples keeps the distribution (stationarity)
    v2 = host(rbm.gibbs_step(xp.asarray(v), generator=gen(2, xp)))
    counts2 = np.bincount((v2 @ (2 ** np.arange(3, -1, -1))).astype(int), minlength=16)
    assert chi2_pvalue(counts2, np.exp(logp).sum(axis=1)) > 1e-3


def test_block_gibbs_from_a_bad_start_is_not_yet_there(xp):
    # The χ² test above can fail: after zero steps from an all-ones start it rejects.
    rbm = make_rbm(xp, 4, 3, seed=8)
    logp, _ = joint_log_probs(rbm, xp)
    v = host(rbm.sample(None, n_steps=0, v0=xp.ones((5000, 4)), generator=gen(1, xp)))
    counts = np.bincount((v @ (2 ** np.arange(3, -1, -1))).astype(int), minlength=16)
    assert chi2_pvalue(counts, np.exp(logp).sum(axis=1)) < 1e-6


def test_pcd_particles_reach_the_model_distribution(xp):
    # learning_rate=0: the persistent particles are a Gibbs chain on a fixed model.
    rbm = make_rbm(xp, 4, 3, seed=9, learning_rate=0.0, batch_size=3000, n_iter=30, monitor=None)
    before = host(rbm.components_).copy()
    X = xp.asarray((np.random.default_rng(2).random((3000, 4)) < 0.5).astype(np.float64))
    rbm.fit(X, generator=gen(3, xp))
    np.testing.assert_array_equal(host(rbm.components_), before)
    h = host(rbm.h_samples_)
    fh = host(rbm.free_energy_hidden(xp.asarray(states(3))))
    p = np.exp(-fh - rbm.log_partition())
    counts = np.bincount((h @ (2 ** np.arange(2, -1, -1))).astype(int), minlength=8)
    assert chi2_pvalue(counts, p) > 1e-3


def test_cd_k_gradient_approaches_the_exact_gradient_as_k_grows(xp):
    rbm = make_rbm(xp, 4, 3, seed=11, w_scale=3.0)  # strong weights: slow mixing, visible CD bias
    rng = np.random.default_rng(3)
    data = (rng.random((40, 4)) < rng.random(4)).astype(np.float64)
    exact = np.concatenate([host(g).ravel() for g in rbm.log_likelihood_gradient(xp.asarray(data))])
    X = xp.asarray(np.repeat(data, 1500, axis=0))  # 60,000 chains: the expectation, within noise
    errors = {}
    for k in (1, 2, 3, 20):
        est = np.concatenate([host(g).ravel() for g in rbm.cd_gradient(X, k=k, generator=gen(k, xp))])
        errors[k] = np.linalg.norm(est - exact) / np.linalg.norm(exact)
    assert errors[1] > errors[2] > errors[3] > errors[20]
    assert errors[1] > 0.2  # CD-1 is biased on this model (0.43 measured)
    assert errors[20] < 0.01  # CD-20 is the exact gradient up to Monte Carlo noise (0.0015)


def test_cd_gradient_vanishes_when_the_data_is_the_model(xp):
    # CD's fixed point: chains started at exact model samples stay in the model distribution.
    rbm = make_rbm(xp, 4, 3, seed=11)
    v = rbm.sample(60000, n_steps=30, generator=gen(4, xp))
    grads = rbm.cd_gradient(v, k=1, generator=gen(5, xp))
    assert max(float(np.abs(host(g)).max()) for g in grads) < 0.02


# ---------------------------------------------------------------- AIS

def test_ais_log_z_within_its_reported_error_of_the_exact_one(xp):
    rbm = make_rbm(xp, 20, 4, seed=12, w_scale=0.7)
    exact = rbm.log_partition()  # 2^4 hidden states
    X = rbm.sample(500, n_steps=20, generator=gen(6, xp))
    res = rbm.ais(n_runs=200, betas=1000, data=X, generator=gen(7, xp))
    assert 0 < res.stderr < 0.1
    assert abs(res.log_z - exact) < 3 * res.stderr + 1e-3
    assert res.log_weights.shape == (200,)
    # a base model far from the target (zero biases, few temperatures) gives a larger error
    crude = rbm.ais(n_runs=200, betas=10, generator=gen(8, xp))
    assert crude.stderr > res.stderr


def test_ais_betas_schedule():
    b = ais_betas()
    assert b[0] == 0.0 and b[-1] == 1.0 and b.size == 15001 and np.all(np.diff(b) > 0)
    assert np.sum(b < 0.5) == 1000 and np.sum((b >= 0.5) & (b < 0.9)) == 4000


# ---------------------------------------------------------------- training

@pytest.mark.parametrize("method", ["pcd", "cd", "fpcd"])
def test_training_raises_the_likelihood_of_a_tiny_data_set(xp, method):
    rng = np.random.default_rng(4)
    protos = np.array([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=np.float64)
    flips = rng.random((400, 6)) < 0.05
    X = xp.asarray(np.abs(protos[rng.integers(0, 2, 400)] - flips))
    rbm = BernoulliRBM(4, learning_rate=0.1, batch_size=20, n_iter=15, k=2, method=method,
                       generator=gen(0, xp), progress=False)
    rbm.fit(X)
    ll = float(rbm.log_likelihood(X).mean())
    baseline = 6 * math.log(0.5)
    assert ll > baseline + 1.5  # far better than uniform: the model found the two modes
    assert len(rbm.history_["pseudo_likelihood"]) == 15
    assert rbm.history_["time"] == sorted(rbm.history_["time"])
    if method == "fpcd":
        assert float(xp.abs(rbm.fast_weight.data).max()) > 0


def test_state_dict_round_trip_and_sklearn_names(xp):
    rbm = make_rbm(xp, 5, 3, seed=13)
    other = BernoulliRBM(3, n_visible=5, dtype=np.float64, device=rbm.weight.device, progress=False)
    other.load_state_dict(rbm.state_dict())
    np.testing.assert_array_equal(host(other.components_), host(rbm.components_))
    np.testing.assert_array_equal(host(other.intercept_visible_), host(rbm.intercept_visible_))
    assert set(rbm.state_dict()) == {"weight", "hidden_bias", "visible_bias", "persistent_hidden"}


class _RandomStateGenerator(nrandom.Generator):
    """An npjem generator whose uniforms come from a legacy RandomState, as sklearn's do."""

    def __init__(self, seed):
        super().__init__(0, "cpu")
        self.rs = np.random.RandomState(seed)

    def random(self, size=None, dtype=None):
        return self.rs.uniform(size=size)


def test_pcd_update_is_sklearns_given_the_same_random_numbers():
    sk_rbm = pytest.importorskip("sklearn.neural_network")
    rng = np.random.default_rng(5)
    X = (rng.random((60, 12)) < 0.3).astype(np.float64)  # 6 full batches of 10
    sk = sk_rbm.BernoulliRBM(7, learning_rate=0.1, batch_size=10, n_iter=3, random_state=0).fit(X)
    g = _RandomStateGenerator(0)
    ours = BernoulliRBM(7, learning_rate=0.1, batch_size=10, n_iter=3, visible_bias_init="zeros",
                        progress=False, monitor=None)
    ours.components_ = g.rs.normal(0, 0.01, (7, 12))  # sklearn's first draw
    ours.fit(X, generator=g)
    np.testing.assert_allclose(ours.components_, sk.components_, atol=1e-12)
    np.testing.assert_allclose(ours.intercept_hidden_, sk.intercept_hidden_, atol=1e-12)
    np.testing.assert_allclose(ours.intercept_visible_, sk.intercept_visible_, atol=1e-12)
    np.testing.assert_array_equal(ours.h_samples_, sk.h_samples_)
    back = BernoulliRBM.from_sklearn(sk)
    np.testing.assert_allclose(back.free_energy(X), sk._free_energy(X), atol=1e-12)


def test_digits_pcd_reaches_sklearns_likelihood_and_pseudo_likelihood():
    sk_rbm = pytest.importorskip("sklearn.neural_network")
    from npjem.data import digits

    images = digits("train").images
    X = (images.reshape(len(images), -1) > 0.5).astype(np.float64)  # binarised at 8/16
    ours_ll, sk_ll, ours_pl, sk_pl = [], [], [], []
    for seed in range(4):
        params = dict(learning_rate=0.1, batch_size=10, n_iter=10)  # sklearn's defaults
        sk = sk_rbm.BernoulliRBM(16, random_state=seed, **params).fit(X)
        ours = BernoulliRBM(16, generator=seed, progress=False, monitor=None, **params).fit(X)
        theirs = BernoulliRBM.from_sklearn(sk)
        ours_ll.append(float(ours.log_likelihood(X).mean()))  # exact: 2^16 hidden states
        sk_ll.append(float(theirs.log_likelihood(X).mean()))
        ours_pl.append(float(ours.pseudo_likelihood(X).mean()))
        sk_pl.append(float(theirs.pseudo_likelihood(X).mean()))
    # Each run's final parameters are noisy (constant lr 0.1, batches of 10): compare means.
    assert np.mean(ours_ll) >= np.mean(sk_ll) - 0.25
    assert np.mean(ours_pl) >= np.mean(sk_pl) - 0.25
    assert np.mean(ours_ll) > -24.44  # the factorised (visible biases only) baseline


# ---------------------------------------------------------------- arguments

@pytest.mark.parametrize("kwargs,name", [
    (dict(n_components=0), "n_components"),
    (dict(learning_rate=-0.1), "learning_rate"),
    (dict(batch_size=2.5), "batch_size"),
    (dict(n_iter=-1), "n_iter"),
    (dict(k=0), "k"),
    (dict(method="sgd"), "method"),
    (dict(fast_decay=1.5), "fast_decay"),
    (dict(visible_bias_init="ones"), "visible_bias_init"),
    (dict(shuffle=1), "shuffle"),
    (dict(monitor="loss"), "monitor"),
    (dict(n_visible=0), "n_visible"),
])
def test_bad_constructor_arguments_raise_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        BernoulliRBM(**kwargs)


def test_bad_call_arguments_raise_naming_them(xp):
    rbm = make_rbm(xp, 5, 3, seed=0)
    with pytest.raises(ValueError, match="n_visible=5"):
        rbm.free_energy(xp.zeros((2, 4)))
    with pytest.raises(ValueError, match="X"):
        rbm.fit(xp.full((3, 5), 2.0))
    with pytest.raises(ValueError, match="X"):
        rbm.fit(xp.zeros(5))
    with pytest.raises(ValueError, match="k"):
        rbm.cd_gradient(xp.zeros((2, 5)), k=0)
    with pytest.raises(ValueError, match="n_steps"):
        rbm.sample(3, n_steps=-1)
    with pytest.raises(ValueError, match="betas"):
        rbm.ais(betas=[0.0, 0.7, 0.5, 1.0])
    with pytest.raises(ValueError, match="n_runs"):
        rbm.ais(n_runs=1)
    with pytest.raises(ValueError, match="max_units"):
        make_rbm(xp, 30, 30).log_partition(max_units=20)
    with pytest.raises(ValueError, match="h"):
        rbm.energy(xp.zeros((2, 5)), xp.zeros((2, 4)))
    with pytest.raises(RuntimeError, match="fit"):
        BernoulliRBM(3).free_energy(xp.zeros((2, 5)))
    with pytest.raises(ValueError, match="generator or random_state"):
        BernoulliRBM(3, generator=0, random_state=0)
