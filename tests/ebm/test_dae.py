"""Tests of npjem.ebm.dae: corruptions, the Tweedie optimum, the residual on a circle, checks."""
import numpy as np
import pytest

import npjem
from npjem import Tensor, backend
from npjem import random as nrandom
from npjem.ebm.dae import DenoisingAutoencoder, gaussian_noise, masking_noise, salt_and_pepper_noise


def gen(seed, xp):
    return nrandom.default_rng(seed, "cpu" if xp is np else "cuda")


def host(a):
    return backend.to_numpy(getattr(a, "data", a))


# ---------------------------------------------------------------- corruptions

def test_gaussian_noise_has_the_asked_scale(xp):
    x = xp.zeros((4000, 5))
    y = host(gaussian_noise(x, 0.3, generator=gen(0, xp)))
    assert abs(y.std() - 0.3) < 0.01 and abs(y.mean()) < 0.01
    np.testing.assert_array_equal(host(gaussian_noise(x, 0.0, generator=gen(0, xp))), 0.0)


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 1.0])
def test_masking_noise_zeroes_a_fixed_fraction_of_each_row(xp, fraction):
    x = xp.asarray(np.random.default_rng(0).uniform(0.5, 1.0, (300, 8)))
    y = host(masking_noise(x, fraction, generator=gen(1, xp)))
    zeros = (y == 0).sum(axis=1)
    np.testing.assert_array_equal(zeros, round(fraction * 8))
    kept = y != 0
    np.testing.assert_array_equal(y[kept], host(x)[kept])
    if 0 < fraction < 1:  # every position gets masked sometimes
        assert (y == 0).any(axis=0).all()


def test_salt_and_pepper_sets_a_fraction_to_the_extremes(xp):
    x = xp.full((2000, 10), 0.5)
    y = host(salt_and_pepper_noise(x, 0.3, generator=gen(2, xp)))
    changed = y != 0.5
    np.testing.assert_array_equal(changed.sum(axis=1), 3)
    assert set(np.unique(y[changed])) == {0.0, 1.0}
    assert abs((y[changed] == 1.0).mean() - 0.5) < 0.03  # a fair coin
    z = host(salt_and_pepper_noise(x, 0.3, generator=gen(2, xp), low=-1.0, high=2.0))
    assert set(np.unique(z[z != 0.5])) == {-1.0, 2.0}


def test_corruptions_are_reproducible_and_keep_tensors(xp):
    x = xp.asarray(np.random.default_rng(0).random((5, 4)))
    for fn, arg in ((gaussian_noise, 0.2), (masking_noise, 0.5), (salt_and_pepper_noise, 0.5)):
        a, b = fn(x, arg, generator=gen(3, xp)), fn(x, arg, generator=gen(3, xp))
        np.testing.assert_array_equal(host(a), host(b))
        assert isinstance(fn(Tensor(x), arg, generator=gen(3, xp)), Tensor)


# ---------------------------------------------------------------- the model

def gaussian_data(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    mu = np.array([1.0, -2.0])
    S = np.array([[2.0, 0.8], [0.8, 1.0]])
    return rng.multivariate_normal(mu, S, n)


@pytest.mark.parametrize("tied", [False, True])
def test_linear_dae_reaches_the_tweedie_optimum_on_gaussian_data(xp, tied):
    X = gaussian_data()
    sigma = 1.0
    dae = DenoisingAutoencoder(2, 2, tied=tied, activation="identity", noise=sigma, dtype=np.float64,
                               device="cpu" if xp is np else "cuda", generator=0)
    Xd = xp.asarray(X)
    for i, (epochs, lr) in enumerate([(150, 0.05), (100, 0.01), (100, 0.002)]):  # full batch, lr decayed
        dae.fit(Xd, epochs=epochs, batch_size=len(X), lr=lr, generator=gen(i, xp), progress=False)
    # r*(x̃) = μ + S (S + σ²I)⁻¹ (x̃ − μ) with the sample's μ and S
    mu, S = X.mean(axis=0), np.cov(X.T, bias=True)
    A = S @ np.linalg.inv(S + sigma**2 * np.eye(2))
    probe = np.random.default_rng(1).normal(size=(20, 2)) * 2 + mu
    want = mu + (probe - mu) @ A.T
    got = host(dae(xp.asarray(probe)))
    np.testing.assert_allclose(got, want, atol=0.03)
    # the identity map (no denoising) is far from it: the test can tell them apart
    assert np.abs(probe - want).max() > 0.5


def test_residual_points_to_the_circle_and_energy_is_lowest_on_it(xp):
    rng = np.random.default_rng(0)
    theta = rng.uniform(0, 2 * np.pi, 2000)
    X = np.c_[np.cos(theta), np.sin(theta)] + rng.normal(0, 0.05, (2000, 2))
    dae = DenoisingAutoencoder(2, 32, tied=False, activation="tanh", noise=0.3, dtype=np.float64,
                               device="cpu" if xp is np else "cuda", generator=0)
    hist = dae.fit(xp.asarray(X), epochs=40, batch_size=200, lr=1e-2, generator=gen(1, xp), progress=False)
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]
    angles = rng.uniform(0, 2 * np.pi, 400)
    radius = np.r_[np.full(200, 0.6), np.full(200, 1.4)]
    P = np.c_[np.cos(angles), np.sin(angles)] * radius[:, None]
    residual = host(dae(xp.asarray(P))) - P  # r(x) − x
    to_circle = P / np.linalg.norm(P, axis=1, keepdims=True) - P
    assert np.mean((residual * to_circle).sum(axis=1) > 0) >= 0.9
    ring = lambda r: float(host(dae.reconstruction_energy(xp.asarray(
        np.c_[np.cos(angles), np.sin(angles)] * r))).mean())
    assert ring(1.0) < ring(0.6) and ring(1.0) < ring(1.4)
    np.testing.assert_allclose(host(dae.score(xp.asarray(P))), residual / 0.3**2, rtol=1e-10)


def test_tied_weights_share_the_encoder_matrix(xp):
    dev = "cpu" if xp is np else "cuda"
    tied = DenoisingAutoencoder(5, 3, tied=True, device=dev, dtype=np.float64, generator=0)
    untied = DenoisingAutoencoder(5, 3, tied=False, device=dev, dtype=np.float64, generator=0)
    assert sorted(tied.state_dict()) == ["decoder_bias", "encoder.bias", "encoder.weight"]
    assert sum(p.data.size for p in tied.parameters()) == 15 + 3 + 5
    assert sum(p.data.size for p in untied.parameters()) == 2 * 15 + 3 + 5
    x = xp.asarray(np.random.default_rng(0).random((4, 5)))
    h = host(tied.encode(x))
    W = host(tied.encoder.weight.data)
    np.testing.assert_allclose(host(tied(x)), h @ W + host(tied.decoder_bias.data), atol=1e-12)


@pytest.mark.parametrize("tied", [False, True])
def test_reconstruction_energy_gradients(xp, tied):
    dae = DenoisingAutoencoder(4, 3, tied=tied, activation="sigmoid", output_activation="sigmoid",
                               dtype=np.float64, device="cpu" if xp is np else "cuda", generator=1)
    x = Tensor(xp.asarray(np.random.default_rng(0).random((3, 4))), requires_grad=True)
    xt = Tensor(xp.asarray(np.random.default_rng(1).random((3, 4))), requires_grad=True)
    assert npjem.gradcheck(lambda a, b: dae.reconstruction_energy(a, b), [x, xt])
    e = host(dae.reconstruction_energy(x, xt))
    np.testing.assert_allclose(e, ((host(x) - host(dae(xt))) ** 2).sum(axis=1), atol=1e-12)


def test_training_loss_uses_fresh_corruption(xp):
    dae = DenoisingAutoencoder(4, 3, corruption="masking", noise=0.5, dtype=np.float64,
                               device="cpu" if xp is np else "cuda", generator=1)
    x = xp.asarray(np.random.default_rng(0).random((6, 4)) + 0.5)
    a = float(dae.training_loss(x, generator=gen(0, xp)).item())
    b = float(dae.training_loss(x, generator=gen(0, xp)).item())
    c = float(dae.training_loss(x, generator=gen(1, xp)).item())
    clean = float(host(dae.reconstruction_energy(x)).mean())
    assert a == b and a != c and a != clean


# ---------------------------------------------------------------- arguments

@pytest.mark.parametrize("kwargs,name", [
    (dict(n_visible=0, n_hidden=2), "n_visible"),
    (dict(n_visible=2, n_hidden=-1), "n_hidden"),
    (dict(n_visible=2, n_hidden=2, tied=1), "tied"),
    (dict(n_visible=2, n_hidden=2, activation="softmax"), "activation"),
    (dict(n_visible=2, n_hidden=2, output_activation="exp"), "output_activation"),
    (dict(n_visible=2, n_hidden=2, corruption="blur"), "corruption"),
    (dict(n_visible=2, n_hidden=2, noise=-0.1), "noise"),
    (dict(n_visible=2, n_hidden=2, corruption="masking", noise=1.5), "noise"),
])
def test_bad_constructor_arguments_raise_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DenoisingAutoencoder(**kwargs)


def test_bad_call_arguments_raise_naming_them(xp):
    dev = "cpu" if xp is np else "cuda"
    dae = DenoisingAutoencoder(3, 2, device=dev, dtype=np.float64)
    with pytest.raises(ValueError, match="n_visible=3"):
        dae(xp.zeros((2, 4)))
    with pytest.raises(ValueError, match="x"):
        dae(xp.zeros(3))
    with pytest.raises(ValueError, match="fraction"):
        masking_noise(xp.zeros((2, 3)), 1.5)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_noise(xp.zeros((2, 3)), -1.0)
    with pytest.raises(ValueError, match="low"):
        salt_and_pepper_noise(xp.zeros((2, 3)), 0.5, low=1.0, high=0.0)
    with pytest.raises(TypeError, match="x"):
        gaussian_noise([[0.0, 1.0]], 0.1)
    with pytest.raises(ValueError, match="epochs"):
        dae.fit(xp.zeros((4, 3)), epochs=0)
    masked = DenoisingAutoencoder(3, 2, corruption="masking", noise=0.3, device=dev)
    with pytest.raises(ValueError, match="Gaussian"):
        masked.score(xp.zeros((2, 3), dtype=np.float32))
