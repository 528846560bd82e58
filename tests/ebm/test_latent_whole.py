"""npjem.ebm.latent against what its docstrings promise, value by value (the survivors of a whole
mutmut run of the file): dictionary learning's alternation (FISTA codes warm-started, then one
Gauss–Seidel pass of least-squares atoms, each normalised), its initialisations and stopping rule;
the K-means seedings and checks at their edges."""
import math
import time
import warnings

import numpy as np
import pytest

import npjem
from npjem.ebm import latent as LV


def _unit(cols):
    return cols / np.linalg.norm(cols, axis=0, keepdims=True)


def _mean_energy(a, W, z, lam):
    """The sparse-coding energy ½‖y − Wz‖² + λ‖z‖₁, averaged over the rows."""
    return float(np.mean(0.5 * ((a - z @ W.T) ** 2).sum(axis=1) + lam * np.abs(z).sum(axis=1)))


def _data(n=12, d=5, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d))


def _quiet_fit(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", npjem.ConvergenceWarning)
        return LV.dictionary_learning(*args, **kwargs)


# ================================================================ dictionary learning


def _gauss_seidel_atoms(a, W, z, positive=False):
    """One pass over the atoms, in order: with the codes z and every other atom fixed (the earlier
    ones already moved), ½‖Y − ZWᵀ‖² is least in w_j at (b_j − Σ_{i≠j} w_i A_ij) / A_jj, A = ZᵀZ,
    B = YᵀZ; the atom kept is that vector (projected on w ≥ 0 with ``positive``) normalised (the
    1/A_jj > 0 cancels)."""
    A, B = z.T @ z, a.T @ z
    W = W.copy()
    for j in range(W.shape[1]):
        others = [i for i in range(W.shape[1]) if i != j]
        w = B[:, j] - W[:, others] @ A[others, j]
        W[:, j] = _unit(np.maximum(w, 0) if positive else w)
    return W


@pytest.mark.parametrize("positive", [False, True])
def test_two_alternations_from_w0_are_fista_then_least_squares_atoms(positive):
    a = _data()
    if positive:
        a = np.abs(a)
    # Atoms of norms 3, ½ and 1: W0 is normalised first (a norm below 1 too).
    W0 = np.array([[3.0, 0.0, 0.6], [0.0, 0.3, 0.0], [0.0, 0.4, 0.8], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    if positive:  # a negative entry, which the initial projection clips
        W0[3, 2] = -0.5
    lam, code_iter = 0.05, 7
    W, z, hist = _quiet_fit(a, 3, lam, n_iter=2, code_iter=code_iter, W0=W0, generator=0, progress=False,
                            tol=None, positive_code=positive, positive_dict=positive)
    W_t, z_t, objective = _unit(np.maximum(W0, 0) if positive else W0), np.zeros((12, 3)), []
    for _ in range(2):
        # The codes start from the previous alternation's (zeros the first time).
        z_t = LV.fista(a, W_t, lam, n_iter=code_iter, z0=z_t, positive=positive).data
        W_t = _gauss_seidel_atoms(a, W_t, z_t, positive)
        objective.append(_mean_energy(a, W_t, z_t, lam))
    np.testing.assert_allclose(z.data, z_t, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(W.data, W_t, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(hist["objective"], objective, rtol=1e-12)
    assert len(hist["time"]) == 2 and 0 <= hist["time"][0] <= hist["time"][1]


def test_an_atom_no_code_uses_is_redrawn_from_a_data_point():
    # The third atom is orthogonal to every data point: its codes are 0 (A_33 = 0), so it is
    # replaced by a random data point, normalised; over seeds, any of the N points.
    a = np.zeros((3, 4))
    a[:, :2] = [[1.0, 2.0], [-2.0, 1.0], [3.0, -1.0]]
    W0 = np.eye(4)[:, [0, 1, 3]]
    drawn = set()
    for seed in range(40):
        W, z, _ = _quiet_fit(a, 3, 0.01, n_iter=1, code_iter=20, W0=W0, generator=seed, progress=False)
        assert not np.any(z.data[:, 2])
        hits = np.flatnonzero(np.abs(_unit(a.T).T @ W.data[:, 2] - 1.0) < 1e-12)
        assert hits.size == 1
        drawn.add(int(hits[0]))
    assert drawn == {0, 1, 2}


def test_an_atom_with_small_but_nonzero_use_is_updated_not_redrawn():
    # Codes of size ~0.1 give A_jj ~ 0.01 < 1: still a least-squares update.
    a = 0.1 * _data(n=10, d=3, seed=3)
    W0 = np.eye(3)
    W, z, _ = _quiet_fit(a, 3, 1e-4, n_iter=1, code_iter=50, W0=W0, generator=0, progress=False)
    A = z.data.T @ z.data
    assert 0 < A.diagonal().min() < 1
    np.testing.assert_allclose(W.data, _gauss_seidel_atoms(a, np.eye(3), z.data), atol=1e-12)


def _first_codes(a, W_init, lam, code_iter, positive=False):
    return LV.fista(a, W_init, lam, n_iter=code_iter, positive=positive).data


def test_svd_init_starts_from_the_top_right_singular_vectors():
    # More atoms than the rank (N = 3 < D = 5, K = 4): the first N atoms are the right singular
    # vectors, the rest data points (drawn before, as with init="data").
    a = _data(n=3, d=5, seed=4)
    lam, code_iter = 0.01, 9
    _, z, _ = _quiet_fit(a, 4, lam, n_iter=1, code_iter=code_iter, generator=5, progress=False)
    vt = np.linalg.svd(a, full_matrices=False)[2]
    W_init = _unit(a[npjem.random.default_rng(5).integers(0, 3, size=4)].T)
    W_init[:, :3] = vt.T
    np.testing.assert_allclose(z.data, _first_codes(a, W_init, lam, code_iter), atol=1e-12)


def test_svd_init_with_positive_atoms_keeps_the_side_of_each_vector_with_more_mass():
    a = _data(n=8, d=4, seed=6)
    lam, code_iter = 0.01, 9
    _, z, _ = _quiet_fit(a, 3, lam, n_iter=1, code_iter=code_iter, generator=0, progress=False,
                         positive_dict=True)
    vt = np.linalg.svd(a, full_matrices=False)[2][:3].T
    assert (vt.sum(axis=0) < 0).any() and (vt.sum(axis=0) > 0).any()   # both cases happen here
    signed = vt * np.sign(vt.sum(axis=0))
    np.testing.assert_allclose(z.data, _first_codes(a, _unit(np.maximum(signed, 0)), lam, code_iter),
                               atol=1e-12)


@pytest.mark.parametrize("n, k", [(6, 4), (6, 6), (3, 5)])
def test_data_init_takes_normalised_data_points(n, k):
    # K ≤ N: K distinct points (a permutation's first K); K > N: K points drawn with replacement.
    a = _data(n=n, d=3, seed=7)
    lam, code_iter = 0.01, 9
    _, z, _ = _quiet_fit(a, k, lam, n_iter=1, code_iter=code_iter, init="data", generator=8, progress=False)
    g = npjem.random.default_rng(8)
    idx = g.permutation(n)[:k] if k <= n else g.integers(0, n, size=k)
    np.testing.assert_allclose(z.data, _first_codes(a, _unit(a[idx].T), lam, code_iter), atol=1e-12)


def test_data_init_is_reproducible_from_its_seed():
    a = _data()
    runs = [_quiet_fit(a, 3, 0.05, n_iter=1, code_iter=5, init="data", generator=s, progress=False)[0].data
            for s in (3, 3, 4)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.allclose(runs[0], runs[2])


def test_dictionary_learning_defaults_are_its_documented_values(capsys):
    a = _data(n=20, d=4, seed=9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", npjem.ConvergenceWarning)
        W, z, hist = LV.dictionary_learning(a, 3, 0.1, generator=0)
        err = capsys.readouterr().err
        W2, z2, hist2 = LV.dictionary_learning(a, 3, 0.1, n_iter=30, code_iter=50, init="svd", generator=0,
                                               progress=False, tol=1e-8, positive_code=False,
                                               positive_dict=False)
    np.testing.assert_array_equal(W.data, W2.data)
    np.testing.assert_array_equal(z.data, z2.data)
    assert hist["objective"] == hist2["objective"]
    # Progress is on by default: off a terminal, a line every 5 alternations.
    lines = [line for line in err.splitlines() if line.startswith("dictionary ")]
    assert lines and lines == [f"dictionary {t}: objective={hist['objective'][t - 1]:.5g}"
                               for t in range(5, len(hist["objective"]) + 1, 5)]


def test_tol_none_runs_every_alternation_without_warning():
    a = _data(n=10, d=4, seed=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, _, hist = LV.dictionary_learning(a, 3, 0.05, n_iter=6, code_iter=5, tol=None, generator=0,
                                            progress=False)
    assert len(hist["objective"]) == 6


def test_tol_zero_stops_only_when_the_objective_rises():
    # tol = 0 is allowed ("only if it rises"): with exact codes the objective never rises here,
    # so every alternation runs and the limit warns.
    a = _data(n=10, d=4, seed=11)
    with pytest.warns(npjem.ConvergenceWarning, match="tol=0"):
        _, _, hist = LV.dictionary_learning(a, 3, 0.05, n_iter=4, code_iter=200, tol=0.0, generator=0,
                                            progress=False)
    obj = hist["objective"]
    assert len(obj) == 4 and all(o2 - o1 <= 0 for o1, o2 in zip(obj, obj[1:]))


# ================================================================ K-means at its edges


def test_kmeans_takes_exactly_k_points_and_k_positive_weights():
    y = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 5.0]])
    for init in ("init_random", "init_kmeans_plusplus"):
        km = getattr(LV.KMeansEnergy(3, 2, dtype=np.float64), init)(y, generator=0)
        assert sorted(map(tuple, km.weight.data)) == sorted(map(tuple, y))
        km = getattr(LV.KMeansEnergy(2, 2, dtype=np.float64), init)(y, generator=0,
                                                                   sample_weight=np.array([2.0, 0.0, 1.0]))
        assert sorted(map(tuple, km.weight.data)) == sorted(map(tuple, y[[0, 2]]))


def test_kmeans_of_one_weighted_point():
    km = LV.KMeansEnergy(1, 2, dtype=np.float64)
    for init in ("k-means++", "random"):
        km.fit(np.array([[2.0, -1.0]]), init=init, sample_weight=np.array([3.0]), generator=0)
        np.testing.assert_array_equal(km.weight.data, [[2.0, -1.0]])
        assert km.inertia_ == 0.0


def test_kmeans_plusplus_never_takes_a_point_of_weight_zero():
    # Two weighted locations and K = 3: once both are chosen every weighted d² is 0, and the third
    # prototype is drawn ∝ the weights (never the unweighted point at (9, 9)).
    y = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [9.0, 9.0]])
    w = np.array([1.0, 2.0, 3.0, 0.0])
    for seed in range(20):
        km = LV.KMeansEnergy(3, 2, dtype=np.float64).init_kmeans_plusplus(y, generator=seed, sample_weight=w)
        assert not (km.weight.data == [9.0, 9.0]).all(axis=1).any(), seed


def test_weighted_draws_follow_the_weights():
    # The first k-means++ prototype is drawn ∝ its weight: over 4000 seeds, each of the 8 points'
    # frequency is within 4.5 standard errors of w_i / Σw.
    y = np.arange(8.0).reshape(8, 1)
    w = np.arange(1.0, 9.0)
    p = w / w.sum()
    n = 4000
    counts = np.zeros(8)
    km = LV.KMeansEnergy(1, 1, dtype=np.float64)
    for seed in range(n):
        counts[int(km.init_kmeans_plusplus(y, generator=seed, sample_weight=w).weight.data[0, 0])] += 1
    se = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(counts / n - p) < 4.5 * se), counts / n


def test_lloyd_keeps_float32_prototypes():
    y = np.random.default_rng(12).standard_normal((20, 2)).astype(np.float32)
    km = LV.KMeansEnergy(3, 2, dtype=np.float32, generator=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", npjem.ConvergenceWarning)
        km.fit(y, n_iter=3, tol=0.0, generator=0)
    assert km.weight.dtype == np.float32 and km.weight.data.dtype == np.float32


# ================================================================ the VAE


def _layers(seq):
    return [(type(m).__name__, tuple(m.weight.shape) if hasattr(m, "weight") else None) for m in seq]


def test_vae_defaults_and_layer_sizes():
    vae = LV.VAE(5, generator=0, dtype=np.float64)
    assert (vae.latent_features, vae.hidden, vae.likelihood, vae.sigma) == (2, (64,), "gaussian", 1.0)
    explicit = LV.VAE(5, 2, (64,), "gaussian", 1.0, "tanh", generator=0, dtype=np.float64)
    for p, q in zip(vae.parameters(), explicit.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    # Encoder D → hidden → 2·latent (μ and log σ²); the decoder mirrors the hidden widths.
    deep = LV.VAE(5, 3, hidden=(8, 6), generator=0, dtype=np.float64)
    assert _layers(deep.encoder) == [("Linear", (8, 5)), ("Tanh", None), ("Linear", (6, 8)), ("Tanh", None),
                                     ("Linear", (6, 6))]
    assert _layers(deep.decoder) == [("Linear", (6, 3)), ("Tanh", None), ("Linear", (8, 6)), ("Tanh", None),
                                     ("Linear", (5, 8))]
    assert LV.VAE(5, hidden=7, generator=0).hidden == (7,)


def test_vae_encoder_is_linear_tanh_linear():
    vae = LV.VAE(3, 2, hidden=(4,), generator=1, dtype=np.float64)
    y = np.random.default_rng(13).standard_normal((5, 3))
    mu, logvar = vae.encode(y)
    enc, dec = vae.encoder, vae.decoder
    h = np.tanh(y @ enc[0].weight.data.T + enc[0].bias.data) @ enc[2].weight.data.T + enc[2].bias.data
    np.testing.assert_allclose(mu.data, h[:, :2], atol=1e-12)
    np.testing.assert_allclose(logvar.data, h[:, 2:], atol=1e-12)
    z = np.random.default_rng(14).standard_normal((5, 2))
    out = np.tanh(z @ dec[0].weight.data.T + dec[0].bias.data) @ dec[2].weight.data.T + dec[2].bias.data
    np.testing.assert_allclose(vae.decode(npjem.Tensor(z)).data, out, atol=1e-12)


def test_vae_is_seeded_and_made_in_the_dtype_asked_for():
    a, b, c = (LV.VAE(3, 2, hidden=(4,), generator=s, dtype=np.float64) for s in (7, 7, 8))
    for p, q, r in zip(a.parameters(), b.parameters(), c.parameters()):
        assert p.dtype == np.float64
        np.testing.assert_array_equal(p.data, q.data)
        assert not np.array_equal(p.data, r.data)


@pytest.mark.parametrize("sigma", [1.0, 2.0, 0.3])
def test_vae_free_energy_with_one_code_by_hand(sigma):
    # F(y) = ½‖y − Dec(μ + σ_z ε)‖²/σ² + (D/2) log(2πσ²) + KL, ε the generator's first normal draws.
    vae = LV.VAE(3, 2, hidden=(4,), sigma=sigma, generator=2, dtype=np.float64)
    y = np.random.default_rng(15).standard_normal((4, 3))
    mu, logvar = (t.data for t in vae.encode(y))
    eps = npjem.random.default_rng(9).standard_normal((4, 2), dtype=np.float64)
    out = vae.decode(npjem.Tensor(mu + np.exp(0.5 * logvar) * eps)).data
    rec = 0.5 * ((y - out) ** 2).sum(axis=1) / sigma ** 2 + 1.5 * np.log(2 * np.pi * sigma ** 2)
    kl = 0.5 * (mu ** 2 + np.exp(logvar) - logvar - 1).sum(axis=1)
    np.testing.assert_allclose(vae.free_energy(y, generator=9).data, rec + kl, rtol=1e-12)
    assert float(vae(y, generator=9).item()) == pytest.approx(float(np.mean(rec + kl)), rel=1e-12)


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_vae_samples_decode_prior_draws(likelihood):
    # The decoder's output at z ~ N(0, I) (the generator's draws, in the model's dtype): the mean,
    # or for Bernoulli data the probabilities σ(logits).
    vae = LV.VAE(3, 2, hidden=(4,), likelihood=likelihood, generator=3, dtype=np.float64)
    z = npjem.random.default_rng(4).standard_normal((6, 2), dtype=np.float64)
    out = vae.decode(npjem.Tensor(z)).data
    expected = out if likelihood == "gaussian" else 1 / (1 + np.exp(-out))
    s = vae.sample(6, generator=4)
    assert s.dtype == np.float64
    np.testing.assert_allclose(s.data, expected, rtol=1e-12)
    np.testing.assert_array_equal(vae.sample(6, generator=4).data, s.data)


# ================================================================ K-means: steps, restarts, weights


def _km(weight):
    km = LV.KMeansEnergy(len(weight), 2, dtype=np.float64)
    km.weight.data = np.asarray(weight, dtype=np.float64)
    return km


def test_an_empty_cluster_takes_a_point_even_when_every_point_sits_on_its_prototype():
    # scikit-learn relocates the farthest points whatever their distance, 0 included.
    y = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    km = _km([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
    km.lloyd_step(y)
    w = km.weight.data
    np.testing.assert_array_equal(w[:2], [[0.0, 0.0], [1.0, 0.0]])
    assert tuple(w[2]) in {(0.0, 0.0), (1.0, 0.0)}


def test_a_cluster_emptied_by_a_relocation_keeps_its_prototype():
    # (2, 0) is alone in the cluster of (3, 0) and the farthest point from its prototype: it moves
    # to the empty cluster of (100, 100), and (3, 0), left without points, stays where it is.
    y = np.array([[0.0, 0.0], [0.0, 0.1], [2.0, 0.0]])
    km = _km([[0.0, 0.0], [3.0, 0.0], [100.0, 100.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no 0/0 on the way
        km.lloyd_step(y)
    np.testing.assert_allclose(km.weight.data, [[0.0, 0.05], [3.0, 0.0], [2.0, 0.0]], atol=1e-15)


@pytest.mark.parametrize("zero_at", [0.5, 50.0])
def test_a_point_of_weight_zero_is_never_relocated(zero_at):
    # The farthest points are taken by weight > 0 only; a zero-weight point far away (or near)
    # does not fill the empty cluster.
    y = np.array([[0.0, 0.0], [0.2, 0.0], [zero_at, zero_at], [3.0, 0.0]])
    w = np.array([1.0, 1.0, 0.0, 2.0])
    km = _km([[0.0, 0.0], [3.0, 0.0], [-9.0, 9.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        km.lloyd_step(y, sample_weight=w)
    assert not (km.weight.data == [zero_at, zero_at]).all(axis=1).any()
    # The farthest point of positive weight, (0.2, 0) at d² = 0.04, moves (not (3, 0), on its prototype).
    np.testing.assert_allclose(km.weight.data, [[0.0, 0.0], [3.0, 0.0], [0.2, 0.0]])


def test_weighted_energy_history_inertia_and_steps_by_hand():
    # Mean energy Σ w_i F(y_i) / Σ w_i before the step and after; inertia Σ w_i F(y_i); n_iter_ the
    # number of steps taken.
    y = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [12.0, 0.0]])
    w = np.array([1.0, 3.0, 2.0, 2.0])
    km = _km([[0.5, 1.0], [11.0, 0.0]])
    with pytest.warns(npjem.ConvergenceWarning):
        hist = km.fit(y, n_iter=1, init=None, sample_weight=w)
    f0 = np.array([1.25, 3.25, 1.0, 1.0])     # ‖y − w_k‖² to the nearest prototype
    assert hist["energy"][0] == pytest.approx((w @ f0) / w.sum()) == 1.875   # (the plain mean: 1.625)
    # One weighted Lloyd step: (1.5, 0) and (11, 0).
    np.testing.assert_allclose(km.weight.data, [[1.5, 0.0], [11.0, 0.0]])
    f1 = np.array([2.25, 0.25, 1.0, 1.0])
    assert hist["energy"][1] == pytest.approx((w @ f1) / w.sum())
    assert km.inertia_ == pytest.approx(w @ f1) and km.n_iter_ == 1
    np.testing.assert_array_equal(km.labels_, [0, 0, 1, 1])


def test_weights_as_a_list_or_a_tensor_and_float32_kept():
    y = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [12.0, 0.0]])
    w = [1.0, 3.0, 2.0, 2.0]
    runs = []
    for weights in (np.array(w), w, npjem.Tensor(np.array(w))):
        km = _km([[0.5, 1.0], [11.0, 0.0]])
        km.lloyd_step(y, sample_weight=weights)
        runs.append(km.weight.data)
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])
    km = LV.KMeansEnergy(2, 2, dtype=np.float32)
    km.weight.data = np.array([[0.5, 1.0], [11.0, 0.0]], dtype=np.float32)
    km.lloyd_step(y.astype(np.float32), sample_weight=np.array(w))
    assert km.weight.data.dtype == np.float32


def test_weights_of_sum_zero_are_refused():
    with pytest.raises(ValueError, match="positive sum"):
        _km([[0.0, 0.0], [1.0, 1.0]]).lloyd_step(np.eye(2), sample_weight=np.zeros(2))


def test_kmeans_prototypes_are_seeded_in_the_default_dtype():
    a, b = LV.KMeansEnergy(3, 2, generator=4), LV.KMeansEnergy(3, 2, generator=4)
    assert a.weight.dtype == np.dtype(npjem.backend.default_dtype())
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    np.testing.assert_array_equal(
        LV.KMeansEnergy(3, 2, dtype=np.float64, generator=4).weight.data,
        npjem.random.default_rng(4).standard_normal((3, 2), dtype=np.float64))


def test_weighted_gradient_step_by_hand():
    # ∂/∂w_k Σ w_i F_i / Σ w = −2 Σ_{i ∈ k} w_i (y_i − w_k) / Σ w: a step of lr = 0.25.
    y = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [12.0, 0.0]])
    w = np.array([1.0, 3.0, 2.0, 2.0])
    km = _km([[1.0, 1.0], [11.0, 0.0]])
    hist = km.fit(y, n_iter=2, method="gradient", lr=0.25, init=None, sample_weight=w, tol=1e9)
    g0 = -2 * (1.0 * (y[0] - [1.0, 1.0]) + 3.0 * (y[1] - [1.0, 1.0])) / 8.0
    g1 = -2 * (2.0 * (y[2] - [11.0, 0.0]) + 2.0 * (y[3] - [11.0, 0.0])) / 8.0
    np.testing.assert_allclose(km.weight.data, [[1.0, 1.0] - 0.25 * g0, [11.0, 0.0] - 0.25 * g1])
    assert len(hist["energy"]) == 2 and km.n_iter_ == 1     # tol = 1e9 stops after one step


def test_fit_defaults_are_its_documented_values():
    # A gradient step of lr = ½ moves w_k by (n_k / N)(mean_k − w_k): with ten clusters of about
    # a tenth of the points each, the energy still falls after 100 steps; the run takes all
    # n_iter = 100 steps of lr = 0.5 from a k-means++ seeding, and warns.
    y = np.random.default_rng(16).standard_normal((100, 2))
    a, b = LV.KMeansEnergy(10, 2, dtype=np.float64), LV.KMeansEnergy(10, 2, dtype=np.float64)
    with pytest.warns(npjem.ConvergenceWarning, match="n_iter=100"):
        ha = a.fit(y, method="gradient", generator=0)
    with pytest.warns(npjem.ConvergenceWarning):
        hb = b.fit(y, n_iter=100, method="gradient", lr=0.5, init="k-means++", tol=0.0, generator=0, n_init=1)
    assert ha["energy"] == hb["energy"] and a.n_iter_ == 100
    np.testing.assert_array_equal(a.weight.data, b.weight.data)


def test_fit_refuses_an_unknown_init():
    with pytest.raises(ValueError, match="init"):
        LV.KMeansEnergy(2, 2).fit(np.zeros((4, 2)), init="kmeans")


def test_fixed_prototypes_with_two_inits_run_once():
    y = np.random.default_rng(17).standard_normal((10, 2))
    one, two = _km([[0.0, 0.0], [1.0, 1.0]]), _km([[0.0, 0.0], [1.0, 1.0]])
    with pytest.warns(npjem.ConvergenceWarning):
        h1 = one.fit(y, n_iter=3, method="gradient", init=None)
    with pytest.warns(RuntimeWarning, match="runs once"), pytest.warns(npjem.ConvergenceWarning):
        h2 = two.fit(y, n_iter=3, method="gradient", init=None, n_init=2)
    assert h1["energy"] == h2["energy"] and two.n_iter_ == 3
    np.testing.assert_array_equal(one.weight.data, two.weight.data)


def test_fit_with_random_init_is_init_random_then_lloyd():
    y = np.random.default_rng(19).standard_normal((12, 2))
    w = np.array([0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 0.0, 1.0, 1.0, 0.0, 2.0, 0.0])
    a, b = LV.KMeansEnergy(3, 2, dtype=np.float64), LV.KMeansEnergy(3, 2, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", npjem.ConvergenceWarning)
        a.fit(y, n_iter=2, init="random", generator=5, sample_weight=w)
        b.init_random(y, generator=5, sample_weight=w)
        b.fit(y, n_iter=2, init=None, sample_weight=w)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)


def test_n_init_keeps_the_first_run_of_lowest_final_energy():
    # Each restart is the run one k-means++ seeding of the same generator gives (5 Lloyd steps);
    # fit keeps the lowest energy after the last step, the first such run on a tie.
    rng = np.random.default_rng(20)
    centres = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0], [3.0, 3.0], [1.5, 1.5]])
    y = centres[rng.integers(0, 5, 60)] + 0.6 * rng.standard_normal((60, 2))
    differs = 0
    for seed in range(12):
        g = npjem.random.default_rng(seed)
        runs = []
        for _ in range(4):
            one = LV.KMeansEnergy(4, 2, dtype=np.float64)
            one.init_kmeans_plusplus(y, generator=g)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", npjem.ConvergenceWarning)
                h = one.fit(y, n_iter=5, init=None)["energy"]
            runs.append((h[-1], h[1], one.labels_))
        best = min(range(4), key=lambda i: (runs[i][0], i))
        differs += best != min(range(4), key=lambda i: (runs[i][1], i))
        km = LV.KMeansEnergy(4, 2, dtype=np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", npjem.ConvergenceWarning)
            km.fit(y, n_iter=5, n_init=4, generator=seed)
        assert km.inertia_ == pytest.approx(60 * runs[best][0], rel=1e-12)
        np.testing.assert_array_equal(km.labels_, runs[best][2])
    assert differs  # the energy after one step would often pick another run


# ================================================================ LISTA's training


def _lista_problem(n=10, d=3, k=4, seed=21):
    rng = np.random.default_rng(seed)
    W = _unit(rng.standard_normal((d, k)))
    return rng.standard_normal((n, d)), W


def _frozen_fit(target, lam=0.1, **kwargs):
    """One epoch at a learning rate too small to move the weights (Adam's first step is ±lr):
    every minibatch's loss is then the loss of the initial encoder on those points."""
    y, W = _lista_problem()
    lista = LV.LISTA.from_dictionary(W, lam, n_steps=2)
    z0 = lista(y).data
    hist = LV.fit_lista(lista, y, W, lam, n_epochs=1, lr=1e-300, target=target, generator=0, **kwargs)
    return y, W, z0, hist


@pytest.mark.parametrize("batch_size", [3, 10, 64])
def test_lista_codes_loss_is_half_the_mean_squared_distance_to_the_fista_codes(batch_size):
    # The epoch's loss is the mean over all N points of ½‖LISTA(y) − z*‖², z* after target_iter
    # FISTA iterations, whatever the minibatches (3 + 3 + 3 + 1 points, or one batch).
    y, W, z0, hist = _frozen_fit("codes", batch_size=batch_size, target_iter=4)
    zstar = LV.fista(y, W, 0.1, n_iter=4).data
    assert hist["loss"] == [pytest.approx(0.5 * np.mean(((z0 - zstar) ** 2).sum(axis=1)), rel=1e-12)]
    assert hist["energy"] == [pytest.approx(_mean_energy(y, W, z0, 0.1), rel=1e-12)]


def test_lista_energy_loss_is_the_mean_energy_of_its_codes():
    y, W, z0, hist = _frozen_fit("energy", batch_size=4)
    assert hist["loss"] == [pytest.approx(_mean_energy(y, W, z0, 0.1), rel=1e-12)]
    assert hist["energy"] == hist["loss"]


def test_lista_with_lam_zero():
    # λ = 0 is allowed (least squares): the energy is ½‖y − Wz‖².
    y, W, z0, hist = _frozen_fit("energy", lam=0.0, batch_size=4)
    assert hist["loss"] == [pytest.approx(_mean_energy(y, W, z0, 0.0), rel=1e-12)]
    e = LV.sparse_coding_energy(y, z0, W, 0.0).data
    np.testing.assert_allclose(e, 0.5 * ((y - z0 @ W.T) ** 2).sum(axis=1), rtol=1e-12)


def test_lista_first_adam_step_moves_each_weight_by_lr():
    y, W = _lista_problem()
    lista = LV.LISTA.from_dictionary(W, 0.1, n_steps=2)
    before = [p.data.copy() for p in lista.parameters()]
    LV.fit_lista(lista, y, W, 0.1, n_epochs=1, lr=0.01, batch_size=10, generator=0)
    moved = np.concatenate([np.abs(p.data - b).ravel() for p, b in zip(lista.parameters(), before)])
    moved = moved[moved > 0]
    np.testing.assert_allclose(moved, 0.01, rtol=1e-5)


def test_lista_minibatch_order_follows_the_generator():
    y, W = _lista_problem(n=12)
    runs = []
    for seed in (1, 1, 2):
        lista = LV.LISTA.from_dictionary(W, 0.1, n_steps=2)
        runs.append(LV.fit_lista(lista, y, W, 0.1, n_epochs=2, lr=0.01, batch_size=5, generator=seed)["loss"])
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_fit_lista_defaults_are_its_documented_values(capsys):
    # 70 points: two minibatches of 64 + 6 per epoch, 50 epochs, silent.
    y, W = _lista_problem(n=70, d=3, k=5, seed=22)
    a, b = (LV.LISTA.from_dictionary(W, 0.02, n_steps=2) for _ in range(2))
    ha = LV.fit_lista(a, y, W, 0.02, generator=3)
    assert capsys.readouterr().err == ""
    hb = LV.fit_lista(b, y, W, 0.02, n_epochs=50, lr=1e-3, batch_size=64, target="codes", target_iter=500,
                      generator=3, progress=False, log_every=10)
    assert ha == hb and len(ha["loss"]) == 50
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data)


def test_fit_lista_reports_every_log_every_epochs(capsys):
    y, W = _lista_problem()
    hist = LV.fit_lista(LV.LISTA.from_dictionary(W, 0.1), y, W, 0.1, n_epochs=20, progress=True, generator=0)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"LISTA {e}: loss={hist['loss'][e - 1]:.5g} energy={hist['energy'][e - 1]:.5g}"
                     for e in (10, 20)]


# ================================================================ LISTA from a dictionary


def test_lista_from_dictionary_defaults_to_three_ista_steps_and_allows_lam_zero():
    y, W = _lista_problem()
    np.testing.assert_allclose(LV.LISTA.from_dictionary(W, 0.1)(y).data, LV.ista(y, W, 0.1, n_iter=3).data,
                               atol=1e-12)
    # λ = 0: θ = 0 and three plain gradient steps on ½‖y − Wz‖².
    lista = LV.LISTA.from_dictionary(W, 0.0)
    np.testing.assert_array_equal(lista.theta.data, 0.0)
    np.testing.assert_allclose(lista(y).data, LV.ista(y, W, 0.0, n_iter=3).data, atol=1e-12)


def test_lista_from_a_float32_dictionary_is_float32():
    y, W = _lista_problem()
    lista = LV.LISTA.from_dictionary(W.astype(np.float32), 0.1, n_steps=2)
    assert [p.data.dtype for p in lista.parameters()] == [np.float32] * 3
    assert lista(y.astype(np.float32)).dtype == np.float32


def test_lista_initialisation_and_defaults():
    # W_e ~ N(0, 1/D) from the generator, S = I/2, θ = 0.1; three steps; npjem's default dtype.
    lista = LV.LISTA(4, 3, dtype=np.float64, generator=6)
    assert lista.n_steps == 3
    np.testing.assert_array_equal(
        lista.weight_e.data, npjem.random.default_rng(6).standard_normal((4, 3), dtype=np.float64) / 2.0)
    np.testing.assert_array_equal(lista.S.data, 0.5 * np.eye(3))
    np.testing.assert_array_equal(lista.theta.data, np.full(3, 0.1))
    assert [p.dtype for p in lista.parameters()] == [np.float64] * 3
    default = LV.LISTA(4, 3, generator=6)
    assert [p.dtype for p in default.parameters()] == [np.dtype(npjem.backend.default_dtype())] * 3
    a, b = LV.LISTA(4, 3, generator=7), LV.LISTA(4, 3, generator=7)
    np.testing.assert_array_equal(a.weight_e.data, b.weight_e.data)


# ================================================================ ISTA / FISTA


def _ista_step(y, W, z, lam):
    """z − (1/L) Wᵀ(Wz − y), soft-thresholded at λ/L (L = ‖W‖₂²)."""
    L = np.linalg.norm(W, 2) ** 2
    v = z - (z @ W.T - y) @ W / L
    return np.sign(v) * np.maximum(np.abs(v) - lam / L, 0)


@pytest.mark.parametrize("solver", ["ista", "fista"])
def test_solvers_start_from_z0_and_default_to_100_iterations(solver):
    y, W = _lista_problem(n=5, d=4, k=6, seed=23)
    z0 = np.random.default_rng(24).standard_normal((5, 6))
    fn = getattr(LV, solver)
    # One iteration from z0 is ISTA's step (FISTA's first step is ISTA's: u_1 = z_0).
    np.testing.assert_allclose(fn(y, W, 0.05, n_iter=1, z0=z0).data, _ista_step(y, W, z0, 0.05), atol=1e-12)
    np.testing.assert_array_equal(fn(y, W, 0.01).data, fn(y, W, 0.01, n_iter=100).data)
    assert not np.array_equal(fn(y, W, 0.01, n_iter=101).data, fn(y, W, 0.01, n_iter=100).data)


def test_fista_three_iterations_by_hand():
    # t_1 = 1: u_2 = z_1 (no extrapolation yet); t_2 = (1 + √5)/2, t_3 = (1 + √(1 + 4 t_2²))/2,
    # u_3 = z_2 + ((t_2 − 1)/t_3)(z_2 − z_1).
    y, W = _lista_problem(n=5, d=4, k=6, seed=26)
    z0 = np.random.default_rng(27).standard_normal((5, 6))
    z1 = _ista_step(y, W, z0, 0.05)
    z2 = _ista_step(y, W, z1, 0.05)
    t2 = (1 + math.sqrt(5)) / 2
    t3 = (1 + math.sqrt(1 + 4 * t2 * t2)) / 2
    z3 = _ista_step(y, W, z2 + ((t2 - 1) / t3) * (z2 - z1), 0.05)
    np.testing.assert_allclose(LV.fista(y, W, 0.05, n_iter=2, z0=z0).data, z2, atol=1e-12)
    np.testing.assert_allclose(LV.fista(y, W, 0.05, n_iter=3, z0=z0).data, z3, atol=1e-12)


@pytest.mark.parametrize("solver", ["ista", "fista"])
def test_solvers_keep_float32(solver):
    y, W = _lista_problem(n=5, d=4, k=6, seed=25)
    z = getattr(LV, solver)(y.astype(np.float32), W.astype(np.float32), 0.05, n_iter=3)
    assert z.dtype == np.float32
    z0 = np.zeros((5, 6), dtype=np.float32)
    assert getattr(LV, solver)(y.astype(np.float32), W.astype(np.float32), 0.05, n_iter=3, z0=z0).dtype == np.float32


@pytest.mark.parametrize("solver", ["ista", "fista"])
def test_tol_zero_stops_at_an_exact_fixed_point(solver):
    # An orthonormal dictionary: the first step lands on the solution Shrink_λ(y), the second
    # does not move (a change of 0 ≤ 0 · max|z|): two iterations, no warning.
    y = np.array([[0.5, -2.0, 0.05], [1.0, 0.0, -0.3]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        z, obj = getattr(LV, solver)(y, np.eye(3), 0.1, n_iter=10, tol=0.0, return_objective=True)
    np.testing.assert_allclose(z.data, np.sign(y) * np.maximum(np.abs(y) - 0.1, 0), atol=1e-15)
    assert len(obj) == 3


def test_dictionary_learning_times_are_seconds_since_its_start():
    a = _data(n=10, d=4, seed=12)
    before = time.perf_counter()
    _, _, hist = _quiet_fit(a, 3, 0.05, n_iter=3, code_iter=5, generator=0, progress=False)
    elapsed = time.perf_counter() - before
    assert 0 <= hist["time"][0] <= hist["time"][1] <= hist["time"][2] <= elapsed


def test_dictionary_learning_of_float32_data_from_a_float32_w0():
    a = _data(n=10, d=4, seed=13).astype(np.float32)
    W0 = np.random.default_rng(14).standard_normal((4, 3)).astype(np.float32)
    W, z, _ = _quiet_fit(a, 3, 0.05, n_iter=2, code_iter=5, W0=W0, progress=False)
    assert W.dtype == np.float32 and z.dtype == np.float32


def test_dictionary_learning_stops_when_the_relative_decrease_falls_below_tol():
    # From the objectives o_1, o_2, ... of a run to the end (tol=None): the run stops after the
    # first alternation t ≥ 2 with (o_{t−1} − o_t) / o_t < tol. The tol picked lies between
    # (o_2 − o_3)/o_2 and (o_2 − o_3)/o_3, so a decrease measured against o_{t−1} (or o_2) would stop
    # at t = 3.
    a = 0.3 * _data(n=12, d=5, seed=15)
    kw = dict(code_iter=3, W0=np.eye(5)[:, :3] + 0.3, generator=0, progress=False)
    o = _quiet_fit(a, 3, 0.02, n_iter=12, tol=None, **kw)[2]["objective"]
    rel = {t: (o[t - 2] - o[t - 1]) / o[t - 1] for t in range(2, len(o) + 1)}
    tol = math.sqrt((o[1] - o[2]) / o[1] * rel[3])
    expected = next(t for t in rel if rel[t] < tol)
    assert expected > 3
    assert len(_quiet_fit(a, 3, 0.02, n_iter=12, tol=tol, **kw)[2]["objective"]) == expected


def test_ista_stops_when_the_largest_change_is_within_tol_times_the_largest_code():
    # Codes of size ~10: the rule compares max|z_k − z_{k−1}| with tol · max|z_k|, found here by
    # running ISTA's step by hand.
    y, W = _lista_problem(n=4, d=4, k=6, seed=28)
    y = 10 * y
    z, steps = np.zeros((4, 6)), []
    for _ in range(200):
        z_new = _ista_step(y, W, z, 0.05)
        steps.append(np.abs(z_new - z).max() / np.abs(z_new).max())
        z = z_new
    tol = 1e-3
    expected = next(k for k, r in enumerate(steps, 1) if r <= tol)
    assert np.abs(z).max() > 5 and expected < 200
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, obj = LV.ista(y, W, 0.05, n_iter=200, tol=tol, return_objective=True)
    assert len(obj) == expected + 1


def test_a_dictionary_of_another_dtype_is_refused():
    y, W = _lista_problem()
    with pytest.raises(ValueError, match="W .*must match y"):
        LV.sparse_coding_energy(y, np.zeros((10, 4)), W.astype(np.float32), 0.1)
