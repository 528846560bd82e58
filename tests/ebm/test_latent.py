"""Tests of npjem.ebm.latent: K-means energy, ISTA / FISTA / LISTA, dictionary learning, the VAE."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npjem
from npjem import Tensor, backend
from npjem.ebm import latent as LV

seeds = st.integers(0, 2**31 - 1)
GC = dict(eps=1e-6, atol=1e-6, rtol=1e-4)


def host(t):
    return backend.to_numpy(t.data if isinstance(t, Tensor) else t)


def lasso_problem(rng, n=5, d=8, k=12, xp=np):
    W = rng.standard_normal((d, k))
    W /= np.linalg.norm(W, axis=0)
    y = rng.standard_normal((n, d))
    return xp.asarray(y), xp.asarray(W)


def energy_np(y, W, z, lam):
    return 0.5 * ((y - z @ W.T) ** 2).sum(axis=1) + lam * np.abs(z).sum(axis=1)


# ================================================================ K-means

def blobs(rng, n=120, xp=np):
    centres = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    return xp.asarray(centres[rng.integers(0, 3, n)] + 0.5 * rng.standard_normal((n, 2)))


@pytest.mark.parametrize("method", ["lloyd", "gradient"])
def test_kmeans_energy_is_non_increasing(method, xp, device):
    y = blobs(np.random.default_rng(0), xp=xp)
    km = LV.KMeansEnergy(3, 2, device=device, dtype=np.float64, generator=1)
    hist = km.fit(y, n_iter=30, method=method, lr=0.5, generator=2)["energy"]
    assert len(hist) >= 2
    assert np.all(np.diff(hist) <= 1e-12)
    assert hist[-1] < 0.7 * hist[0]
    # F is the squared distance to the nearest prototype, a value (min), not an argmin.
    d2 = ((host(y)[:, None, :] - host(km.weight)[None]) ** 2).sum(axis=2)
    np.testing.assert_allclose(host(km(y)), d2.min(axis=1), rtol=1e-12)
    np.testing.assert_array_equal(host(km.assign(y)), d2.argmin(axis=1))


def test_kmeans_lloyd_fixed_point_and_zero_energy_at_prototypes(xp, device):
    y = blobs(np.random.default_rng(3), xp=xp)
    km = LV.KMeansEnergy(3, 2, device=device, dtype=np.float64)
    km.fit(y, n_iter=100, generator=4)
    z = host(km.assign(y))
    yh = host(y)
    means = np.stack([yh[z == k].mean(axis=0) for k in range(3)])
    np.testing.assert_allclose(host(km.weight), means, atol=1e-12)
    # Only the K prototypes have zero energy; the soft-min tends to the min as β grows.
    np.testing.assert_allclose(host(km(km.weight.detach())), 0.0, atol=1e-12)
    hard, soft = host(km(y)), [host(km(y, beta=b)) for b in (0.1, 1.0, 100.0)]
    assert np.all(soft[0] >= soft[1] - 1e-12) and np.all(soft[1] >= soft[2] - 1e-12)
    np.testing.assert_allclose(soft[2], hard, atol=math.log(3) / 100 + 1e-9)


def test_kmeans_one_lloyd_step_moves_each_prototype_to_its_points_mean(xp, device):
    rng = np.random.default_rng(20)
    y = rng.standard_normal((30, 2))
    km = LV.KMeansEnergy(3, 2, device=device, dtype=np.float64, generator=0)
    km.weight.data = xp.asarray(np.array([[0.0, 0.0], [1.0, 1.0], [-1.0, 1.0]]))
    z = host(km.lloyd_step(xp.asarray(y)))
    w = host(km.weight)
    for k in range(3):
        np.testing.assert_allclose(w[k], y[z == k].mean(axis=0), atol=1e-12)
    # An empty cluster is relocated (tests/ebm/test_latent_sklearn_habits.py).


def test_kmeans_gradient_step_is_the_lloyd_step_at_half_learning_rate(xp, device):
    # ∂/∂w_k mean F = −(2 n_k / N)(m_k − w_k): with one cluster and lr = ½ the step lands on the mean.
    rng = np.random.default_rng(5)
    y = rng.standard_normal((20, 2)) + 3.0
    km = LV.KMeansEnergy(1, 2, device=device, dtype=np.float64)
    km.fit(xp.asarray(y), n_iter=1, method="gradient", lr=0.5, init=None)
    np.testing.assert_allclose(host(km.weight)[0], y.mean(axis=0), atol=1e-12)


# ================================================================ ISTA / FISTA

def test_shrink_is_soft_thresholding_and_differentiable():
    v = np.linspace(-2, 2, 9)
    np.testing.assert_allclose(host(LV.shrink(Tensor(v), 0.5)), np.sign(v) * np.maximum(np.abs(v) - 0.5, 0))
    x = np.array([-1.3, -0.2, 0.4, 0.9])
    assert npjem.gradcheck(lambda v, t: LV.shrink(v, t), [x, np.array(0.5)], **GC)


def test_sparse_coding_energy_has_the_half(xp):
    rng = np.random.default_rng(6)
    y, W = lasso_problem(rng, xp=xp)
    z = xp.asarray(rng.standard_normal((5, 12)))
    np.testing.assert_allclose(host(LV.sparse_coding_energy(y, z, W, 0.3)),
                               energy_np(host(y), host(W), host(z), 0.3), rtol=1e-12)


@pytest.mark.parametrize("solver", ["ista", "fista"])
def test_ista_and_fista_reach_the_lasso_optimum(solver, xp):
    rng = np.random.default_rng(7)
    y, W = lasso_problem(rng, xp=xp)
    lam = 0.2
    z = host(getattr(LV, solver)(y, W, lam, n_iter=5000 if solver == "ista" else 3000))
    Wn, yn = host(W), host(y)
    # KKT: W_iᵀ(y − Wz) = λ sign(z_i) where z_i ≠ 0, and |W_iᵀ(y − Wz)| ≤ λ where z_i = 0.
    c = (yn - z @ Wn.T) @ Wn
    on = np.abs(z) > 1e-10
    np.testing.assert_allclose(c[on], lam * np.sign(z[on]), atol=1e-8)
    assert np.all(np.abs(c[~on]) <= lam + 1e-8)
    assert on.any() and (~on).any()


@pytest.mark.parametrize("solver", ["ista", "fista"])
def test_ista_and_fista_equal_sklearn_lasso(solver, xp):
    sklearn_linear = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(8)
    y, W = lasso_problem(rng, n=3, xp=xp)
    lam = 0.15
    z = host(getattr(LV, solver)(y, W, lam, n_iter=6000 if solver == "ista" else 10000))
    Wn, yn = host(W), host(y)
    d = Wn.shape[0]
    for i in range(yn.shape[0]):
        # sklearn's Lasso minimises (1/(2 n_samples))‖y − Xw‖² + α‖w‖₁; here n_samples = D rows
        # of the dictionary, so α = λ / D gives the same minimiser.
        ref = sklearn_linear.Lasso(alpha=lam / d, fit_intercept=False, tol=1e-12, max_iter=100000).fit(Wn, yn[i])
        np.testing.assert_allclose(z[i], ref.coef_, atol=1e-7)


def test_fista_gap_decreases_faster_than_ista(xp):
    rng = np.random.default_rng(9)
    # An ill-conditioned dictionary, where the difference shows.
    W = rng.standard_normal((20, 30)) @ np.diag(np.geomspace(1, 0.05, 30))
    y = xp.asarray(rng.standard_normal((4, 20)))
    W = xp.asarray(W)
    lam = 0.05
    _, fi = LV.fista(y, W, lam, n_iter=200, return_objective=True)
    _, ist = LV.ista(y, W, lam, n_iter=200, return_objective=True)
    _, best = LV.fista(y, W, lam, n_iter=5000, return_objective=True)
    star = best[-1]
    gap_f, gap_i = fi - star, ist - star
    assert np.all(np.diff(ist) <= 1e-12)  # ISTA never increases the energy
    for k in (50, 100, 200):
        assert gap_f[k] < 0.2 * gap_i[k]
    # FISTA's O(1/k²) bound: gap ≤ 2L‖z0 − z*‖²/(k+1)², per sample (mean over the batch here).
    zs = host(LV.fista(y, W, lam, n_iter=5000))
    L = LV.lipschitz_constant(W)
    bound = 2 * L * (zs ** 2).sum(axis=1).mean() / (np.arange(201) + 1.0) ** 2
    assert np.all(gap_f[1:] <= bound[1:] + 1e-10)


@given(seed=seeds, n=st.integers(1, 4), d=st.integers(1, 6), k=st.integers(1, 8), lam=st.floats(0.0, 2.0))
def test_ista_never_increases_the_energy_and_fista_keeps_its_bound(seed, n, d, k, lam):
    rng = np.random.default_rng(seed)
    W, y = rng.standard_normal((d, k)), rng.standard_normal((n, d))
    _, ist = LV.ista(y, W, lam, n_iter=30, return_objective=True)
    assert np.all(np.diff(ist) <= 1e-12 * (1 + ist[0]))
    # FISTA from 0 stays within Beck & Teboulle's bound 2L‖z*‖²/(k + 1)² of the optimum.
    _, fi = LV.fista(y, W, lam, n_iter=100, return_objective=True)
    zs, ref = LV.fista(y, W, lam, n_iter=4000, return_objective=True)
    bound = 2 * LV.lipschitz_constant(W) * (host(zs) ** 2).sum(axis=1).mean() / (np.arange(101) + 1.0) ** 2
    assert np.all(fi[1:] - ref[-1] <= bound[1:] + 1e-9)


def test_ista_one_step_is_exact_for_an_orthonormal_dictionary(xp):
    rng = np.random.default_rng(10)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    y = rng.standard_normal((3, 6))
    z = host(LV.ista(xp.asarray(y), xp.asarray(Q), 0.3, n_iter=1))
    v = y @ Q
    np.testing.assert_allclose(z, np.sign(v) * np.maximum(np.abs(v) - 0.3, 0), atol=1e-12)


# ================================================================ LISTA

def test_lista_from_dictionary_is_ista_with_the_plus_sign(xp):
    rng = np.random.default_rng(11)
    y, W = lasso_problem(rng, xp=xp)
    lam = 0.1
    for steps in (1, 2, 5):
        lista = LV.LISTA.from_dictionary(W, lam, n_steps=steps)
        np.testing.assert_allclose(host(lista(y)), host(LV.ista(y, W, lam, n_iter=steps)), atol=1e-12)
    # The notes' printed update, Shrink(W_eᵀy − S z), is not ISTA: it drifts after one step.
    L = LV.lipschitz_constant(W)
    Wn, yn = host(W), host(y)
    S, b = np.eye(Wn.shape[1]) - Wn.T @ Wn / L, yn @ Wn / L

    def soft(v):
        return np.sign(v) * np.maximum(np.abs(v) - lam / L, 0)

    z = soft(b)
    for _ in range(4):
        z = soft(b - z @ S.T)
    assert np.abs(z - host(LV.ista(y, W, lam, n_iter=5))).max() > 1e-3


def test_lista_gradcheck_through_the_unrolled_steps(xp, device):
    rng = np.random.default_rng(12)
    y = xp.asarray(rng.standard_normal((3, 4)))
    lista = LV.LISTA(4, 5, n_steps=3, device=device, dtype=np.float64, generator=0)

    # The same unrolled map written out with the checked tensors as inputs, then compared with
    # the module at those values.
    def unrolled(We, S, th):
        b = Tensor(y) @ We
        z = LV.shrink(b, th)
        for _ in range(2):
            z = LV.shrink(b + z @ S.transpose(), th)
        return z

    params = [lista.weight_e.data, lista.S.data, xp.full(5, 0.05)]
    assert npjem.gradcheck(unrolled, params, **GC)
    lista.theta.data = xp.full(5, 0.05)
    np.testing.assert_allclose(host(lista(y)), host(unrolled(*[Tensor(p) for p in params])), atol=1e-12)


@pytest.mark.parametrize("target", ["codes", "energy"])
def test_lista_training_lowers_the_energy_of_its_codes(target):
    rng = np.random.default_rng(13)
    y, W = lasso_problem(rng, n=64, d=8, k=12)
    lam = 0.1
    lista = LV.LISTA.from_dictionary(W, lam, n_steps=2)
    before = float(LV.sparse_coding_energy(y, lista(y), W, lam).mean().item())
    hist = LV.fit_lista(lista, y, W, lam, n_epochs=15, lr=3e-3, batch_size=16, target=target, generator=0)
    assert hist["energy"][-1] < before - 1e-3
    # Two learned steps beat two ISTA steps (what LISTA is for).
    ista2 = float(LV.sparse_coding_energy(y, LV.ista(y, W, lam, n_iter=2), W, lam).mean().item())
    assert hist["energy"][-1] < ista2


# ================================================================ dictionary learning

def test_dictionary_learning_keeps_unit_atoms_and_lowers_the_energy(xp, device):
    rng = np.random.default_rng(1)
    true = rng.standard_normal((10, 6))
    true /= np.linalg.norm(true, axis=0)
    codes = rng.standard_normal((400, 6)) * (rng.random((400, 6)) < 0.2)
    y = xp.asarray(codes @ true.T + 0.01 * rng.standard_normal((400, 10)))
    # Alternating minimisation has local minima: start in the planted dictionary's basin.
    start = true + 0.1 * rng.standard_normal((10, 6))
    W, z, hist = LV.dictionary_learning(y, 6, 0.02, n_iter=40, code_iter=30,
                                          W0=xp.asarray(start), generator=1, progress=False)
    np.testing.assert_allclose(np.linalg.norm(host(W), axis=0), 1.0, atol=1e-12)
    obj = hist["objective"]
    assert obj[-1] < 0.9 * obj[0]
    assert np.all(np.diff(obj[3:]) <= 1e-6 * obj[0])
    # The learned atoms are the planted ones up to sign and order.
    overlap = np.abs(host(W).T @ true).max(axis=0)
    assert overlap.min() > 0.95


# ================================================================ the VAE

def test_gaussian_kl_closed_form_matches_monte_carlo():
    rng = np.random.default_rng(15)
    mu, logvar = rng.standard_normal((2, 3)), 0.5 * rng.standard_normal((2, 3))
    kl = host(LV.gaussian_kl(Tensor(mu), Tensor(logvar)))
    s = np.exp(0.5 * logvar)
    z = mu + s * rng.standard_normal((200000, 2, 3))
    log_q = (-0.5 * ((z - mu) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)).sum(axis=2)
    log_p = (-0.5 * z ** 2 - 0.5 * np.log(2 * np.pi)).sum(axis=2)
    diff = log_q - log_p
    se = diff.std(axis=0) / math.sqrt(diff.shape[0])
    assert np.all(np.abs(diff.mean(axis=0) - kl) < 4 * se)
    np.testing.assert_allclose(host(LV.gaussian_kl(Tensor(np.zeros((1, 3))), Tensor(np.zeros((1, 3))))), 0.0)


def _ppca_vae(rng, sigma=0.5):
    """A linear VAE with a decoder y = Wz + b (orthogonal columns) and its exact posterior as encoder."""
    d, k = 3, 2
    Q, _ = np.linalg.qr(rng.standard_normal((d, k)))
    W = Q * np.array([1.5, 0.7])
    b = rng.standard_normal(d)
    vae = LV.VAE(d, k, hidden=(), sigma=sigma, dtype=np.float64, generator=0)
    M = W.T @ W + sigma ** 2 * np.eye(k)  # diagonal: the exact posterior is a diagonal Gaussian
    A = np.linalg.solve(M, W.T)
    enc, dec = vae.encoder[0], vae.decoder[0]
    enc.weight.data = np.concatenate([A, np.zeros((k, d))])
    enc.bias.data = np.concatenate([-A @ b, np.log(sigma ** 2 / np.diag(M))])
    dec.weight.data, dec.bias.data = W.copy(), b.copy()
    C = W @ W.T + sigma ** 2 * np.eye(d)
    return vae, b, C


def test_vae_free_energy_bounds_the_exact_nll_and_is_tight_at_the_true_posterior():
    rng = np.random.default_rng(16)
    vae, b, C = _ppca_vae(rng)
    y = rng.standard_normal((4, 3)) + b
    r = y - b
    nll = 0.5 * (r @ np.linalg.solve(C, r.T)).diagonal() + 0.5 * np.log(np.linalg.det(2 * np.pi * C))
    f_exact = host(vae.free_energy(y, generator=0, n_samples=20000))
    np.testing.assert_allclose(f_exact, nll, atol=0.03)
    # A worse encoder only raises the free energy: −ELBO ≥ −log p(y).
    vae.encoder[0].bias.data = vae.encoder[0].bias.data + 0.5
    f_off = host(vae.free_energy(y, generator=0, n_samples=20000))
    assert np.all(f_off > nll + 0.05)


def test_vae_reparameterised_gradient_matches_finite_differences():
    rng = np.random.default_rng(17)
    y = rng.standard_normal((3, 2))
    vae = LV.VAE(2, 2, hidden=(4,), dtype=np.float64, generator=1)
    names = [n for n, _ in vae.named_parameters()]
    arrays = [host(p) for p in vae.parameters()]

    def fn(*ps):
        # A functional call: the module's Linear layers read these tensors (same noise each call).
        for (name, _), p in zip(vae.named_parameters(), ps):
            mod = vae
            *path, leaf = name.split(".")
            for part in path:
                mod = getattr(mod, part)
            mod._parameters[leaf] = p
        return vae.free_energy(y, generator=5, n_samples=2)

    assert len(names) == 8
    assert npjem.gradcheck(fn, arrays, **GC)


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_vae_training_pushes_the_free_energy_down(likelihood, device):
    rng = np.random.default_rng(18)
    if likelihood == "gaussian":
        y = rng.standard_normal((128, 2)) * np.array([1.0, 0.2]) + 1.0
    else:
        y = (rng.random((128, 6)) < np.array([0.9, 0.1, 0.8, 0.2, 0.5, 0.5])).astype(np.float64)
    y = backend.to_device(y, device)
    vae = LV.VAE(y.shape[1], 2, hidden=(16,), likelihood=likelihood, device=device, dtype=np.float64,
                 generator=0)
    opt = npjem.optim.Adam(vae.parameters(), lr=1e-2)
    g = npjem.random.default_rng(0, device)
    start = float(vae.free_energy(y, generator=1, n_samples=8).mean().item())
    for _ in range(60):
        loss = vae(y, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = float(vae.free_energy(y, generator=1, n_samples=8).mean().item())
    assert end < start - 0.5
    assert vae.sample(5, generator=0).shape == (5, y.shape[1])


# ================================================================ bad arguments

def test_bad_arguments_raise_naming_them(xp):
    rng = np.random.default_rng(19)
    y, W = lasso_problem(rng, xp=xp)
    with pytest.raises(ValueError, match="W must have shape"):
        LV.ista(y, W[:3], 0.1)
    with pytest.raises(ValueError, match="lam must be >= 0"):
        LV.fista(y, W, -0.1)
    with pytest.raises(ValueError, match="n_iter must be an integer >= 0"):
        LV.ista(y, W, 0.1, n_iter=-1)
    with pytest.raises(ValueError, match="z0 must have shape"):
        LV.fista(y, W, 0.1, z0=xp.zeros((5, 3)))
    with pytest.raises(ValueError, match="W must not be all zeros"):
        LV.ista(y, W * 0.0, 0.1)
    with pytest.raises(ValueError, match="y must be 2-D"):
        LV.ista(y[0], W, 0.1)
    with pytest.raises(ValueError, match="n_clusters"):
        LV.KMeansEnergy(0, 2)
    km = LV.KMeansEnergy(3, 2, dtype=np.float64)
    with pytest.raises(ValueError, match="method"):
        km.fit(np.zeros((5, 2)), method="sgd")
    with pytest.raises(ValueError, match="y must have 2 features"):
        km(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="at least n_clusters"):
        km.fit(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="n_steps"):
        LV.LISTA(4, 4, n_steps=0)
    with pytest.raises(ValueError, match="likelihood"):
        LV.VAE(2, likelihood="poisson")
    with pytest.raises(ValueError, match="activation"):
        LV.VAE(2, activation="relu6")
    with pytest.raises(ValueError, match="y must have 2 features"):
        LV.VAE(2, dtype=np.float64).free_energy(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="n_atoms"):
        LV.dictionary_learning(y, 0, 0.1, progress=False)
    with pytest.raises(TypeError, match="lista must be a LISTA"):
        LV.fit_lista(km, y, W, 0.1)


def test_dictionary_learning_reports_progress_off_a_terminal(capsys):
    y = np.random.default_rng(21).standard_normal((20, 4))
    LV.dictionary_learning(y, 3, 0.1, n_iter=4, code_iter=5, progress=True, log_every=2, generator=0)
    err = capsys.readouterr().err.strip().splitlines()
    assert [line.split(":")[0] for line in err] == ["dictionary 2", "dictionary 4"]
    assert all("objective=" in line for line in err)
    LV.dictionary_learning(y, 3, 0.1, n_iter=2, code_iter=5, progress=False, generator=0)
    assert capsys.readouterr().err == ""
