"""Tests of npjem.ebm.energy: energy modules, free energies, the Gibbs distribution and its NLL."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import npjem
from npjem import Tensor, backend
from npjem.autograd import functional as AF
from npjem.ebm import ConditionalEnergy, ConvEnergy, MLPEnergy, free_energy, free_energy_min, gibbs, nll
from npjem.losses import nll_mmi

# The xp/device fixtures only name the device: they hold no state to reset between examples.
stateless_fixtures = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                     HealthCheck.data_too_large])
GC = dict(eps=1e-6, atol=1e-6, rtol=1e-4)
SMOOTH = ["swish", "softplus", "tanh", "elu"]

seeds = st.integers(0, 2**32 - 1)
betas = st.floats(0.05, 20.0)


def host(t):
    return backend.to_numpy(t.data if isinstance(t, Tensor) else t)


def input_grad(model, x, create_graph):
    """∇ₓ Σ_n E(x_n): one row per sample, since each energy depends on its own row only."""
    with npjem.enable_grad():  # gradcheck evaluates its function under no_grad
        return npjem.grad(model(x).sum(), x, create_graph=create_graph)[0]


# ================================================================ MLPEnergy

@stateless_fixtures
@given(n=st.integers(1, 5), d=st.integers(1, 4), hidden=st.lists(st.integers(1, 6), max_size=2),
       activation=st.sampled_from(SMOOTH + ["relu"]), seed=seeds)
def test_mlp_energy_maps_a_batch_to_one_energy_per_sample(n, d, hidden, activation, seed, device, xp):
    model = MLPEnergy(d, tuple(hidden), activation, device=device, dtype=np.float64, generator=seed)
    x = xp.asarray(np.random.default_rng(seed).standard_normal((n, d)))
    e = model(x)
    assert e.shape == (n,) and e.dtype == np.float64 and e.device == device
    # A sample's energy does not depend on the rest of the batch.
    np.testing.assert_allclose(host(model(x[:1])), host(e)[:1], rtol=1e-12)


@given(n=st.integers(1, 4), d=st.integers(1, 3), activation=st.sampled_from(SMOOTH), seed=seeds)
def test_mlp_energy_input_gradient_and_second_order(n, d, activation, seed):
    model = MLPEnergy(d, (5, 4), activation, device="cpu", dtype=np.float64, generator=seed)
    x = np.random.default_rng(seed).standard_normal((n, d))
    # ELU's second derivative jumps at 0, but a random point is almost surely off the kink.
    assert npjem.gradcheck(model, [x], **GC)
    assert npjem.gradgradcheck(model, [x], **GC)
    # ∇ₓE itself, built with create_graph=True, differentiates to the Hessian.
    assert npjem.gradcheck(lambda z: input_grad(model, z, True), [x], **GC)


def test_mlp_energy_parameter_gradient_of_a_second_order_objective():
    """θ ↦ Σ‖∇ₓE_θ(x)‖² (the core of score matching) has the right θ-gradient (∂θ through ∇ₓE)."""
    rng = np.random.default_rng(0)
    model = MLPEnergy(3, (6, 5), "swish", device="cpu", dtype=np.float64, generator=1)
    x = Tensor(rng.standard_normal((4, 3)), requires_grad=True)
    w = model.net[2].weight

    def objective():
        g = input_grad(model, x, create_graph=True)
        return (g * g).sum()

    analytic = host(npjem.grad(objective(), [w])[0])
    numeric = np.zeros_like(analytic)
    eps = 1e-6
    for idx in np.ndindex(*analytic.shape):
        old = w.data[idx]
        w.data[idx] = old + eps
        up = float(host(objective()))
        w.data[idx] = old - eps
        down = float(host(objective()))
        w.data[idx] = old
        numeric[idx] = (up - down) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("activation, act", [
    ("swish", lambda u: u / (1 + np.exp(-u))),
    ("softplus", lambda u: np.logaddexp(0, u)),
    ("elu", lambda u: np.where(u > 0, u, np.expm1(np.minimum(u, 0)))),
    ("tanh", np.tanh),
    ("relu", lambda u: np.maximum(u, 0)),
])
def test_mlp_energy_computes_its_formula(activation, act):
    model = MLPEnergy(2, (5,), activation, device="cpu", dtype=np.float64, generator=4)
    x = np.random.default_rng(4).standard_normal((7, 2)) * 2
    w1, b1, w2, b2 = (host(p) for p in model.parameters())
    ref = act(x @ w1.T + b1) @ w2.T + b2
    np.testing.assert_allclose(host(model(x)), ref[:, 0], rtol=1e-12, atol=1e-14)


def test_relu_energy_has_zero_second_derivative_in_x():
    model = MLPEnergy(2, (8,), "relu", device="cpu", dtype=np.float64, generator=0)
    x = Tensor(np.random.default_rng(0).standard_normal((3, 2)), requires_grad=True)
    g = input_grad(model, x, create_graph=True)
    assert np.any(host(g) != 0)
    (h,) = npjem.grad(g.sum(), x, allow_unused=True)
    assert h is None or np.all(host(h) == 0)


def test_mlp_energy_is_seeded_and_its_layers_differ():
    a = MLPEnergy(4, (4, 4), generator=7, device="cpu", dtype=np.float64)
    b = MLPEnergy(4, (4, 4), generator=7, device="cpu", dtype=np.float64)
    for (ka, pa), (kb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and np.array_equal(host(pa), host(pb))
    # One generator feeds all layers: two (4, 4) layers must not get the same draw.
    assert not np.array_equal(host(a.net[2].weight), host(a.net[0].weight))
    assert list(a.state_dict()) == ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias",
                                    "net.4.weight", "net.4.bias"]
    assert MLPEnergy(2, (), device="cpu").net[0].weight.shape == (1, 2)  # hidden=() is the linear energy


def test_mlp_energy_matches_torch():
    torch = pytest.importorskip("torch")
    model = MLPEnergy(3, (5, 4), "swish", device="cpu", dtype=np.float64, generator=2)
    layers = []
    for i, (din, dout) in enumerate([(3, 5), (5, 4), (4, 1)]):
        lin = torch.nn.Linear(din, dout).double()
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(host(model.net[2 * i].weight)))
            lin.bias.copy_(torch.tensor(host(model.net[2 * i].bias)))
        layers += [lin, torch.nn.SiLU()]
    tmodel = torch.nn.Sequential(*layers[:-1])
    x = np.random.default_rng(3).standard_normal((6, 3))
    tx = torch.tensor(x, requires_grad=True)
    te = tmodel(tx).squeeze(1)
    (tg,) = torch.autograd.grad(te.sum(), tx, create_graph=True)
    (th,) = torch.autograd.grad((tg**2).sum(), tx)
    nx = Tensor(x, requires_grad=True)
    ne = model(nx)
    ng = input_grad(model, nx, create_graph=True)
    (nh,) = npjem.grad((ng * ng).sum(), nx)
    np.testing.assert_allclose(host(ne), te.detach().numpy(), atol=1e-10)
    np.testing.assert_allclose(host(ng), tg.detach().numpy(), atol=1e-10)
    np.testing.assert_allclose(host(nh), th.numpy(), atol=1e-10)


# ================================================================ ConvEnergy

def test_conv_energy_shape_gradients_and_batch_independence(device, xp):
    model = ConvEnergy(2, widths=(3, 4), strides=(1, 2), device=device, dtype=np.float64, generator=0)
    x = np.random.default_rng(0).standard_normal((3, 2, 5, 5))
    e = model(xp.asarray(x))
    assert e.shape == (3,) and e.device == device
    np.testing.assert_allclose(host(model(xp.asarray(x[1:2]))), host(e)[1:2], rtol=1e-12)
    assert npjem.gradcheck(model, [xp.asarray(x[:2])], mode="fast", **GC)
    assert npjem.gradgradcheck(model, [xp.asarray(x[:1])], mode="fast", **GC)


def test_conv_energy_full_gradcheck_on_a_tiny_image():
    model = ConvEnergy(1, widths=(2,), strides=(1,), kernel_size=3, activation="softplus",
                       device="cpu", dtype=np.float64, generator=3)
    x = np.random.default_rng(1).standard_normal((2, 1, 3, 3))
    assert npjem.gradcheck(model, [x], **GC)
    assert npjem.gradgradcheck(model, [x], **GC)


# ================================================================ ConditionalEnergy

@stateless_fixtures
@given(n=st.integers(1, 4), k=st.integers(1, 5), seed=seeds)
def test_discrete_conditional_energy(n, k, seed, device, xp):
    model = ConditionalEnergy(3, num_classes=k, hidden=(4,), device=device, dtype=np.float64, generator=seed)
    rng = np.random.default_rng(seed)
    x, y = xp.asarray(rng.standard_normal((n, 3))), rng.integers(0, k, n)
    all_e = model.energies_all(x)
    assert all_e.shape == (n, k)
    np.testing.assert_array_equal(host(model(x, xp.asarray(y))), host(all_e)[np.arange(n), y])


@stateless_fixtures
@given(n=st.integers(1, 4), k=st.integers(1, 5), dy=st.integers(1, 3), seed=seeds)
def test_continuous_conditional_energy(n, k, dy, seed, device, xp):
    model = ConditionalEnergy(2, y_features=dy, hidden=(4,), device=device, dtype=np.float64, generator=seed)
    rng = np.random.default_rng(seed)
    x, cand = rng.standard_normal((n, 2)), rng.standard_normal((k, dy))
    all_e = host(model.energies_all(xp.asarray(x), xp.asarray(cand)))
    assert all_e.shape == (n, k)
    for j in range(k):
        e_j = host(model(xp.asarray(x), xp.asarray(np.repeat(cand[j:j + 1], n, axis=0))))
        np.testing.assert_allclose(all_e[:, j], e_j, rtol=1e-12, atol=1e-14)


def test_conditional_energy_gradients():
    rng = np.random.default_rng(0)
    x, y, cand = rng.standard_normal((3, 2)), rng.standard_normal((3, 2)), rng.standard_normal((4, 2))
    cont = ConditionalEnergy(2, y_features=2, hidden=(5,), device="cpu", dtype=np.float64, generator=0)
    assert npjem.gradcheck(cont, [x, y], **GC)
    assert npjem.gradgradcheck(cont, [x, y], **GC)
    assert npjem.gradcheck(cont.energies_all, [x, cand], **GC)
    disc = ConditionalEnergy(2, num_classes=4, hidden=(5,), device="cpu", dtype=np.float64, generator=0)
    t = np.array([0, 3, 1])
    assert npjem.gradcheck(lambda z: nll(disc.energies_all(z), t, beta=2.0), [x], **GC)
    assert npjem.gradgradcheck(lambda z: disc(z, t), [x], **GC)


# ================================================================ validation

def test_bad_shapes_and_arguments_raise_naming_the_argument():
    m = MLPEnergy(3, (4,), device="cpu", dtype=np.float64)
    with pytest.raises(ValueError, match="x must be 2-D"):
        m(np.zeros(3))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 3\)"):
        m(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="x must hold at least one sample"):
        m(np.zeros((0, 3)))
    with pytest.raises(TypeError, match="x has dtype float32"):
        m(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="x must be a Tensor"):
        m([[0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="activation"):
        MLPEnergy(3, activation="sigmoid")
    with pytest.raises(ValueError, match="hidden"):
        MLPEnergy(3, hidden=(4, 0))
    with pytest.raises(ValueError, match="hidden"):
        MLPEnergy(3, hidden="64")
    with pytest.raises(ValueError, match="in_features"):
        MLPEnergy(0)
    c = ConvEnergy(2, widths=(3,), strides=(1,), device="cpu", dtype=np.float64)
    with pytest.raises(ValueError, match=r"x must be 4-D \(N, C, H, W\)"):
        c(np.zeros((2, 2, 5)))
    with pytest.raises(ValueError, match="2 channels"):
        c(np.zeros((1, 3, 5, 5)))
    with pytest.raises(ValueError, match="strides"):
        ConvEnergy(1, widths=(3, 4), strides=(1,))
    with pytest.raises(ValueError, match="widths"):
        ConvEnergy(1, widths=(), strides=())
    with pytest.raises(ValueError, match="num_classes.*y_features"):
        ConditionalEnergy(3)
    with pytest.raises(ValueError, match="num_classes.*y_features"):
        ConditionalEnergy(3, num_classes=2, y_features=2)
    d = ConditionalEnergy(3, num_classes=4, device="cpu", dtype=np.float64)
    with pytest.raises(ValueError, match=r"y must hold answer indices in \[0, 4\)"):
        d(np.zeros((2, 3)), np.array([0, 4]))
    with pytest.raises(TypeError, match="y must hold integer"):
        d(np.zeros((2, 3)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"y must have shape \(2,\)"):
        d(np.zeros((2, 3)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="answers"):
        d.energies_all(np.zeros((2, 3)), np.zeros((4, 1)))
    y = ConditionalEnergy(3, y_features=2, device="cpu", dtype=np.float64)
    with pytest.raises(ValueError, match=r"y must have shape \(2, 2\)"):
        y(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"answers must have shape \(K, 2\)"):
        y.energies_all(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="needs answers"):
        y.energies_all(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="x must have shape"):
        y(np.zeros((2, 2)), np.zeros((2, 2)))


# ================================================================ free energies

@stateless_fixtures
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), beta=betas, seed=seeds,
       scale=st.sampled_from([0.1, 1.0, 30.0]), data=st.data())
def test_soft_min_lies_between_the_min_and_the_mean(shape, beta, seed, scale, data, xp):
    e = np.random.default_rng(seed).standard_normal(shape) * scale
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    f = host(free_energy(xp.asarray(e), beta, axis=axis))
    lo, hi = e.min(axis=axis), e.mean(axis=axis)
    tol = 1e-12 * (1 + np.abs(e).max())
    assert f.shape == lo.shape
    assert np.all(f >= lo - tol) and np.all(f <= hi + tol)
    np.testing.assert_array_equal(host(free_energy_min(xp.asarray(e), axis=axis)), lo)


@given(n=st.integers(1, 4), k=st.integers(1, 6), seed=seeds)
def test_soft_min_limits_and_monotonicity_in_beta(n, k, seed):
    e = np.random.default_rng(seed).standard_normal((n, k))
    lo, hi = e.min(axis=1), e.mean(axis=1)
    prev = None
    for beta in (1e-6, 1e-2, 0.3, 1.0, 3.0, 30.0, 1e3, 1e6):
        f = host(free_energy(e, beta))
        # −(1/β) log((1/N) Σ e^{−βE}) >= min E − ... and <= min E + log(N)/β.
        assert np.all(f - lo <= math.log(k) / beta + 1e-12)
        if prev is not None:
            assert np.all(f <= prev + 1e-12)             # non-increasing in β
        prev = f
    np.testing.assert_allclose(host(free_energy(e, 1e-6)), hi, atol=1e-5)
    np.testing.assert_allclose(host(free_energy(e, 1e6)), lo, atol=2e-6)
    np.testing.assert_array_equal(host(free_energy(e, math.inf)), lo)


def test_soft_min_is_stable_for_huge_energies(xp):
    e = xp.asarray(np.array([[1e4, 1e4 + 1.0, 2e4], [-1e4, -1e4 - 1.0, -3e4]]))
    f = host(free_energy(e, 1.0))
    assert np.all(np.isfinite(f))
    ref = -np.logaddexp.reduce(-(host(e) - host(e).min(axis=1, keepdims=True)), axis=1) + math.log(3) \
        + host(e).min(axis=1)
    np.testing.assert_allclose(f, ref, rtol=1e-14)


@given(n=st.integers(1, 4), k=st.integers(1, 5), beta=betas, seed=seeds)
def test_free_energy_gradients(n, k, beta, seed):
    e = np.random.default_rng(seed).standard_normal((n, k))
    assert npjem.gradcheck(lambda a: free_energy(a, beta), [e], **GC)
    assert npjem.gradcheck(lambda a: free_energy(a, beta, axis=0), [e], **GC)
    assert npjem.gradgradcheck(lambda a: free_energy(a, beta), [e], **GC)
    srt = np.sort(e, axis=1)
    assume(k == 1 or np.all(srt[:, 1] - srt[:, 0] > 1e-3))
    assert npjem.gradcheck(free_energy_min, [e], **GC)
    # ∂F_β/∂E(z) are the Gibbs weights: non-negative, summing to one per row.
    leaf = Tensor(e, requires_grad=True)
    free_energy(leaf, beta).sum().backward()
    np.testing.assert_allclose(host(leaf.grad), host(gibbs(e, beta)), rtol=1e-10, atol=1e-15)


# ================================================================ Gibbs and NLL

@stateless_fixtures
@given(n=st.integers(1, 4), k=st.integers(1, 6), beta=betas, seed=seeds)
def test_gibbs_sums_to_one_and_is_exp_minus_beta_e_over_z(n, k, beta, seed, xp):
    e = np.random.default_rng(seed).standard_normal((n, k)) * 3
    p = host(gibbs(xp.asarray(e), beta))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-14)
    z = np.exp(-beta * e).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(p, np.exp(-beta * e) / z, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(host(gibbs(xp.asarray(e.T), beta, axis=0)), p.T, rtol=1e-14)


@given(n=st.integers(1, 4), k=st.integers(2, 6), beta=betas, seed=seeds)
def test_gibbs_gradcheck(n, k, beta, seed):
    e = np.random.default_rng(seed).standard_normal((n, k))
    assert npjem.gradcheck(lambda a: gibbs(a, beta), [e], **GC)


@stateless_fixtures
@given(n=st.integers(1, 5), k=st.integers(1, 6), beta=betas, seed=seeds)
def test_nll_is_minus_log_gibbs_and_beta_times_lecuns_functional(n, k, beta, seed, xp):
    rng = np.random.default_rng(seed)
    e, t = rng.standard_normal((n, k)), rng.integers(0, k, n)
    ours = host(nll(xp.asarray(e), xp.asarray(t), beta, reduction="none"))
    p = host(gibbs(xp.asarray(e), beta))
    np.testing.assert_allclose(ours, -np.log(p[np.arange(n), t]), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours, beta * host(nll_mmi(xp.asarray(e), xp.asarray(t), beta, reduction="none")),
                               rtol=1e-12, atol=1e-12)
    ce = host(AF.cross_entropy(Tensor(xp.asarray(-beta * e)), xp.asarray(t)))
    np.testing.assert_allclose(host(nll(xp.asarray(e), xp.asarray(t), beta)), ce, rtol=1e-12, atol=1e-12)


@given(n=st.integers(1, 4), k=st.integers(1, 5), beta=betas, seed=seeds)
def test_nll_gradients(n, k, beta, seed):
    rng = np.random.default_rng(seed)
    e, t = rng.standard_normal((n, k)), rng.integers(0, k, n)
    assert npjem.gradcheck(lambda a: nll(a, t, beta, reduction="none"), [e], **GC)
    assert npjem.gradgradcheck(lambda a: nll(a, t, beta), [e], **GC)
    leaf = Tensor(e, requires_grad=True)
    nll(leaf, t, beta, reduction="sum").backward()
    np.testing.assert_allclose(host(leaf.grad), beta * (np.eye(k)[t] - host(gibbs(e, beta))), atol=1e-12)


def test_free_energy_and_nll_validation():
    e = np.zeros((2, 3))
    with pytest.raises(ValueError, match="beta"):
        free_energy(e, 0.0)
    with pytest.raises(ValueError, match="beta"):
        gibbs(e, -1.0)
    with pytest.raises(ValueError, match="beta"):
        nll(e, np.array([0, 1]), beta=math.inf)
    with pytest.raises(ValueError, match="axis"):
        free_energy(e, 1.0, axis=2)
    with pytest.raises(ValueError, match="axis"):
        free_energy_min(e, axis=-3)
    with pytest.raises(ValueError, match="energies must have at least one entry along axis"):
        free_energy(np.zeros((2, 0)), 1.0)
    with pytest.raises(ValueError, match="0-d"):
        gibbs(np.array(1.0), 1.0)
    with pytest.raises(TypeError, match="energies"):
        free_energy(np.zeros(3, dtype=int), 1.0)
    with pytest.raises(ValueError, match="energies must be 2-D"):
        nll(np.zeros(3), np.array([0]))
    with pytest.raises(ValueError, match="target"):
        nll(e, np.array([0, 3]))
    with pytest.raises(ValueError, match="reduction"):
        nll(e, np.array([0, 1]), reduction="batchmean")


def test_nll_and_free_energy_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    e, t, beta = rng.standard_normal((6, 4)) * 2, rng.integers(0, 4, 6), 1.7
    te = torch.tensor(e)
    ref = torch.nn.functional.cross_entropy(-beta * te, torch.tensor(t)).item()
    assert abs(float(host(nll(e, t, beta))) - ref) < 1e-10
    ref_f = (-(torch.logsumexp(-beta * te, dim=1) - math.log(4)) / beta).numpy()
    np.testing.assert_allclose(host(free_energy(e, beta)), ref_f, atol=1e-10)
