"""npjem.ebm.dae's paths that its other tests leave open, each held to what the docstrings
promise: fit's progress bar on a terminal (one tick per step, epochs × ⌈N / batch⌉ of them, the
step's loss), and the energy of x given an x̃ of another batch size refused by name."""
import math

import numpy as np
import pytest

from npjem.ebm.dae import DenoisingAutoencoder

from _terminal import on_a_terminal


def model(**kw):
    return DenoisingAutoencoder(3, 2, dtype=np.float64, generator=0, **kw)


def test_fit_on_a_terminal_shows_a_bar_over_the_steps(monkeypatch):
    bars = on_a_terminal(monkeypatch)
    X = np.random.default_rng(1).standard_normal((10, 3))
    history = model().fit(X, epochs=2, batch_size=4, generator=2)   # progress=True by default
    (bar,) = bars
    steps = 2 * math.ceil(10 / 4)
    assert bar.kwargs == {"total": steps, "desc": "DenoisingAutoencoder", "unit": "step"}
    assert bar.updates == [1] * steps and bar.closed
    assert bar.postfix == [{"loss": f"{x:.4f}", "refresh": False} for x in history["loss"]]


def test_no_bar_without_progress_even_on_a_terminal(monkeypatch):
    bars = on_a_terminal(monkeypatch)
    model().fit(np.zeros((4, 3)), epochs=1, batch_size=2, generator=0, progress=False)
    assert bars == []


def test_the_energy_needs_an_x_tilde_of_xs_shape():
    with pytest.raises(ValueError, match=r"x_tilde must have x's shape \(3, 3\)"):
        model().reconstruction_energy(np.zeros((3, 3)), np.zeros((2, 3)))


def test_the_energy_checks_a_reconstruction_given_as_an_array():
    from npjem.ebm.dae import reconstruction_energy

    with pytest.raises(TypeError, match="r must have a floating dtype"):
        reconstruction_energy(np.zeros((2, 3)), np.zeros((2, 3), dtype=np.int64))


def test_defaults_tied_weights_and_gaussian_noise_of_one_tenth():
    dae = DenoisingAutoencoder(3, 2)
    assert (dae.tied, dae.activation, dae.output_activation, dae.corruption, dae.noise) == (
        True, "sigmoid", "identity", "gaussian", 0.1)
    assert not hasattr(dae, "decoder") and dae.decoder_bias.shape == (3,)


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_parameter_in_the_dtype_asked_and_seeded(tied, dtype):
    a, b = (DenoisingAutoencoder(3, 2, tied=tied, dtype=dtype, generator=5) for _ in range(2))
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert p.dtype == dtype, name
        np.testing.assert_array_equal(p.numpy(), q.numpy())


def test_a_tensor_is_corrupted_as_its_array():
    from npjem import Tensor
    from npjem.ebm.dae import gaussian_noise, masking_noise, salt_and_pepper_noise

    x = np.random.default_rng(6).random((4, 5))
    for fn, level in ((gaussian_noise, 0.3), (masking_noise, 0.4), (salt_and_pepper_noise, 0.4)):
        t = fn(Tensor(x), level, generator=7)
        assert isinstance(t, Tensor)
        np.testing.assert_array_equal(t.numpy(), fn(x, level, generator=7))
