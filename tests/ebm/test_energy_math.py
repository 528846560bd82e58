"""npjem.ebm.energy as its docstrings describe it: ConvEnergy's defaults, 'same' padding ⌊k/2⌋
and strides; one seeded generator for every layer, the dtype asked for; the reprs; ELU's formula
and slope; the free energy, Gibbs and the NLL at their default β = 1, and β > 0."""
import numpy as np
import pytest

import npjem
from npjem import Tensor, backend
from npjem.ebm.energy import ELU, ConditionalEnergy, ConvEnergy, MLPEnergy, free_energy, gibbs, nll


def host(t):
    return backend.to_numpy(t.data)


def test_conv_energy_defaults():
    model = ConvEnergy(generator=0)
    assert (model.in_channels, model.widths, model.strides, model.kernel_size, model.activation) == (
        1, (16, 32, 64), (1, 2, 2), 3, "swish")
    assert [tuple(p.shape) for p in model.parameters()] == [
        (16, 1, 3, 3), (16,), (32, 16, 3, 3), (32,), (64, 32, 3, 3), (64,), (1, 64), (1,)]
    assert "activation='swish'" in repr(model)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_conv_energy_pads_by_half_the_kernel_and_applies_the_strides(k):
    model = ConvEnergy(2, widths=(3, 4, 5), strides=(1, 2, 2), kernel_size=k, dtype=np.float64, generator=0)
    x = np.random.default_rng(0).standard_normal((2, 2, 8, 8))
    h = model.features(x)
    assert h.shape == (2, 5, 2, 2)  # 8 → 8 (stride 1, 'same') → 4 → 2
    assert model.features[:2](x).shape == (2, 3, 8, 8)


def test_conv_energy_is_seeded_by_one_generator():
    a, b = ConvEnergy(1, widths=(2, 2), strides=(1, 1), generator=5), ConvEnergy(1, widths=(2, 2), strides=(1, 1),
                                                                                  generator=5)
    for (ka, pa), (kb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and np.array_equal(backend.to_numpy(pa), backend.to_numpy(pb))
    c = ConvEnergy(1, widths=(2, 2), strides=(1, 1), generator=6)
    assert not np.array_equal(host(a.fc.weight), host(c.fc.weight))
    assert not np.array_equal(host(a.features[0].weight), host(c.features[0].weight))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])  # float32 is npjem's default: ask for both
def test_conv_energy_takes_the_dtype_asked_for(dtype):
    model = ConvEnergy(1, widths=(2,), strides=(1,), dtype=dtype, generator=0)
    assert {p.dtype for p in model.parameters()} == {np.dtype(dtype)}
    assert model(np.zeros((1, 1, 3, 3), dtype=dtype)).dtype == dtype


@pytest.mark.parametrize("kind", [{"num_classes": 3}, {"y_features": 2}])
def test_conditional_energy_is_seeded_by_one_generator_and_keeps_its_activation(kind):
    a, b = ConditionalEnergy(2, hidden=(4,), generator=3, **kind), ConditionalEnergy(2, hidden=(4,), generator=3, **kind)
    for (ka, pa), (kb, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and np.array_equal(backend.to_numpy(pa), backend.to_numpy(pb))
    c = ConditionalEnergy(2, hidden=(4,), generator=4, **kind)
    assert not np.array_equal(host(a.net[0].weight), host(c.net[0].weight))
    assert a.activation == "swish" and ConditionalEnergy(2, activation="tanh", **kind).activation == "tanh"
    assert "activation='swish'" in repr(a)


def test_continuous_conditional_energy_needs_a_candidate():
    model = ConditionalEnergy(2, y_features=3, hidden=(4,), dtype=np.float64, generator=0)
    with pytest.raises(ValueError, match="answers must hold at least one candidate"):
        model.energies_all(np.zeros((2, 2)), np.zeros((0, 3)))


def test_nll_default_beta_is_one():
    # −log softmax(−E)[y] by hand, β = 1.
    e = np.array([[0.5, 2.0, -1.0], [1.0, 1.0, 3.0]])
    y = np.array([2, 0])
    per = e[np.arange(2), y] + np.log(np.exp(-e).sum(axis=1))
    assert float(nll(e, y).item()) == pytest.approx(per.mean(), rel=1e-12)
    np.testing.assert_allclose(nll(e, y, reduction="none").numpy(), per, rtol=1e-12)


E = np.array([[0.5, 2.0, -1.0], [1.0, 1.0, 3.0]])


def test_free_energy_and_gibbs_defaults_are_beta_one_over_the_last_axis():
    # F = −log mean_z exp(−E), P = exp(−E) / Σ exp(−E), by hand, β = 1, along the last axis.
    np.testing.assert_allclose(free_energy(E).numpy(), -np.log(np.exp(-E).mean(axis=1)), rtol=1e-12)
    np.testing.assert_allclose(gibbs(E).numpy(), np.exp(-E) / np.exp(-E).sum(axis=1, keepdims=True), rtol=1e-12)


@pytest.mark.parametrize("beta", [0.0, -1.0])
def test_gibbs_nll_and_free_energy_need_a_positive_beta(beta):
    y = np.array([0, 1])
    for call in (lambda: gibbs(E, beta), lambda: nll(E, y, beta), lambda: free_energy(E, beta)):
        with pytest.raises(ValueError, match="beta must be > 0"):
            call()


def test_mlp_energy_takes_one_width_as_an_int_and_keeps_its_activation():
    a, b = MLPEnergy(2, 8, generator=1), MLPEnergy(2, (8,), generator=1)
    assert a.hidden == (8,)
    np.testing.assert_array_equal(host(a.net[0].weight), host(b.net[0].weight))
    assert a.activation == "swish" and MLPEnergy(2, 8, "elu").activation == "elu"
    assert repr(a).count("activation='swish'") == 1


def test_conditional_energy_repr_names_its_answer():
    assert "num_classes=3" in repr(ConditionalEnergy(2, num_classes=3, hidden=(4,)))
    text = repr(ConditionalEnergy(2, y_features=5, hidden=(4,)))
    assert "y_features=5" in text and "num_classes" not in text


def test_elu_is_its_formula_with_slope_one_at_zero():
    # ELU (α = 1): x for x > 0, eˣ − 1 otherwise; C¹, so its slope at 0 is 1 from both sides.
    x = Tensor(np.array([-2.0, -0.5, 0.0, 0.5, 3.0]), requires_grad=True)
    y = ELU()(x)
    np.testing.assert_allclose(y.numpy(), [np.expm1(-2.0), np.expm1(-0.5), 0.0, 0.5, 3.0], rtol=1e-12)
    (g,) = npjem.grad(y.sum(), x)
    np.testing.assert_allclose(g.numpy(), [np.exp(-2.0), np.exp(-0.5), 1.0, 1.0, 1.0], rtol=1e-12)
