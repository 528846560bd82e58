"""npjem.ebm.dae against what its docstrings promise: an image is corrupted and scored as its
flattened row (round(ν·C·H·W) entries per image), in the input's dtype; corrupt() by name; the
tied decoder Wᵀh + b_r; the score (r(x) − x)/σ²; a fit reproducible from its generator."""
import numpy as np
import pytest

import npjem
from npjem import Tensor
from npjem.ebm.dae import (DenoisingAutoencoder, corrupt, gaussian_noise, masking_noise, reconstruction_energy,
                           salt_and_pepper_noise)


@pytest.mark.parametrize("fraction", [0.25, 0.5])
def test_masking_noise_masks_a_fixed_fraction_of_each_image(fraction):
    x = np.random.default_rng(0).uniform(0.5, 1.0, (6, 2, 3, 4))
    y = masking_noise(x, fraction, generator=1)
    assert y.shape == x.shape
    zeros = (y == 0).reshape(6, -1).sum(axis=1)
    np.testing.assert_array_equal(zeros, round(fraction * 24))
    np.testing.assert_array_equal(y[y != 0], x[y != 0])
    # the same draws as the flattened batch
    np.testing.assert_array_equal(y.reshape(6, -1), masking_noise(x.reshape(6, -1), fraction, generator=1))


def test_salt_and_pepper_sets_a_fixed_fraction_of_each_image():
    x = np.full((5, 1, 4, 4), 0.5)
    y = salt_and_pepper_noise(x, 0.25, generator=2)
    assert y.shape == x.shape
    changed = (y != 0.5).reshape(5, -1)
    np.testing.assert_array_equal(changed.sum(axis=1), 4)
    assert set(np.unique(y[y != 0.5])) <= {0.0, 1.0}
    np.testing.assert_array_equal(y.reshape(5, -1), salt_and_pepper_noise(x.reshape(5, -1), 0.25, generator=2))


@pytest.mark.parametrize("fn", [masking_noise, salt_and_pepper_noise])
def test_corruptions_keep_float32(fn):
    x = np.random.default_rng(3).random((4, 6)).astype(np.float32)
    assert fn(x, 0.5, generator=0).dtype == np.float32


def test_salt_and_pepper_needs_low_below_high():
    with pytest.raises(ValueError, match="low must be < high"):
        salt_and_pepper_noise(np.zeros((2, 2)), 0.5, generator=0, low=1.0, high=1.0)


@pytest.mark.parametrize("name, fn, noise", [("gaussian", gaussian_noise, 1.5), ("masking", masking_noise, 0.5),
                                             ("salt_and_pepper", salt_and_pepper_noise, 0.25)])
def test_corrupt_by_name_is_the_named_corruption(name, fn, noise):
    x = np.random.default_rng(4).random((3, 8))
    np.testing.assert_array_equal(corrupt(x, name, noise, generator=7), fn(x, noise, generator=7))


def test_corrupt_checks_the_level_of_each_kind():
    x = np.zeros((2, 4))
    corrupt(x, "gaussian", 2.0, generator=0)  # σ may exceed 1
    with pytest.raises(ValueError, match="noise"):
        corrupt(x, "masking", 1.5, generator=0)  # a fraction may not
    with pytest.raises(ValueError, match="noise"):
        corrupt(x, "gaussian", -0.1, generator=0)
    with pytest.raises(ValueError, match="corruption"):
        corrupt(x, "blur", 0.1, generator=0)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_score_is_the_residual_over_sigma_squared(sigma):
    model = DenoisingAutoencoder(3, 2, noise=sigma, dtype=np.float64, generator=0)
    x = np.random.default_rng(5).standard_normal((4, 3))
    np.testing.assert_allclose(model.score(x).numpy(), (model(x).numpy() - x) / sigma ** 2, rtol=1e-12)


def test_score_needs_gaussian_noise_above_zero():
    with pytest.raises(ValueError, match="score needs Gaussian corruption"):
        DenoisingAutoencoder(3, 2, noise=0.0, dtype=np.float64, generator=0).score(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="score needs Gaussian corruption"):
        DenoisingAutoencoder(3, 2, corruption="masking", noise=0.5, dtype=np.float64, generator=0).score(np.zeros((1, 3)))


def test_reconstruction_energy_of_image_arrays_is_that_of_their_rows():
    rng = np.random.default_rng(6)
    x, r = rng.standard_normal((3, 2, 2, 2)), rng.standard_normal((3, 2, 2, 2))
    expected = ((x - r) ** 2).reshape(3, -1).sum(axis=1)
    np.testing.assert_allclose(reconstruction_energy(x, r).numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(reconstruction_energy(x.reshape(3, -1), r.reshape(3, -1)).numpy(), expected,
                               rtol=1e-12)


def test_tied_decoder_is_w_transpose_plus_its_bias():
    model = DenoisingAutoencoder(3, 2, tied=True, dtype=np.float64, generator=0)
    model.decoder_bias.data[...] = np.array([0.5, -1.0, 2.0])
    h = np.random.default_rng(7).standard_normal((4, 2))
    W = model.encoder.weight.numpy()  # (n_hidden, n_visible)
    np.testing.assert_allclose(model.decode(Tensor(h)).numpy(), h @ W + np.array([0.5, -1.0, 2.0]), rtol=1e-12)


def test_the_model_refuses_an_empty_batch():
    model = DenoisingAutoencoder(3, 2, dtype=np.float64, generator=0)
    with pytest.raises(ValueError, match="at least one row"):
        model(np.zeros((0, 3)))


def test_fit_is_reproducible_from_its_generator():
    X = np.random.default_rng(8).standard_normal((20, 3))
    runs = []
    for _ in range(2):
        model = DenoisingAutoencoder(3, 2, noise=0.3, dtype=np.float64, generator=0)
        history = model.fit(X, epochs=2, batch_size=8, lr=1e-2, generator=5, progress=False)
        runs.append((history["loss"], model.encoder.weight.numpy().copy()))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


def test_fit_defaults_are_ten_epochs_of_batches_of_128_at_lr_1e_3():
    X = np.random.default_rng(9).standard_normal((129, 3))  # 129 rows: two batches of at most 128
    histories = []
    for kwargs in ({}, {"epochs": 10, "batch_size": 128, "lr": 1e-3}):
        model = DenoisingAutoencoder(3, 2, dtype=np.float64, generator=0)
        histories.append(model.fit(X, generator=1, progress=False, **kwargs))
    assert histories[0]["epoch"] == [e for e in range(10) for _ in range(2)]
    assert histories[0]["loss"] == histories[1]["loss"]


def test_fit_uses_the_optimizer_given_and_records_its_history():
    X = np.random.default_rng(10).standard_normal((10, 3))
    model = DenoisingAutoencoder(3, 2, dtype=np.float64, generator=0)
    before = [p.numpy().copy() for p in model.parameters()]
    history = model.fit(X, epochs=2, batch_size=4, optimizer=npjem.optim.SGD(model.parameters(), lr=0.0),
                        generator=1, progress=False)
    for b, p in zip(before, model.parameters()):  # a step of size 0 leaves every weight in place
        np.testing.assert_array_equal(b, p.numpy())
    assert history["epoch"] == [0, 0, 0, 1, 1, 1]
    t = history["time"]
    assert len(t) == 6 and 0 <= t[0] and all(a <= b for a, b in zip(t, t[1:])) and t[-1] < 600


def test_gaussian_noise_corrupts_an_image_as_its_row():
    x = np.random.default_rng(11).standard_normal((3, 2, 2, 2))
    y = gaussian_noise(x, 0.5, generator=4)
    np.testing.assert_array_equal(y.reshape(3, -1), gaussian_noise(x.reshape(3, -1), 0.5, generator=4))


def test_reconstruction_energy_checks_array_inputs():
    with pytest.raises(TypeError, match="x must have a floating dtype"):
        reconstruction_energy(np.zeros((2, 3), dtype=np.int64), np.zeros((2, 3)))
