"""Linear, activations, Flatten, Dropout and the initialisers: values, gradients, seeding."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npjem
from npjem import nn
from npjem.nn import init

from _nn_util import DEVICE, T, host, rng, skip_without_device

pytestmark = skip_without_device


def test_linear_values_init_and_gradcheck():
    lin = nn.Linear(5, 3, device=DEVICE, dtype=np.float64, generator=0)
    assert lin.weight.shape == (3, 5) and lin.bias.shape == (3,)
    bound = 1 / math.sqrt(5)
    assert np.abs(host(lin.weight)).max() <= bound and np.abs(host(lin.bias)).max() <= bound
    x = rng().standard_normal((4, 2, 5))
    np.testing.assert_allclose(host(lin(T(x))), x @ host(lin.weight).T + host(lin.bias), rtol=1e-12)
    assert npjem.gradcheck(lambda x, w, b: nn.functional.linear(x, w, b), [T(x), lin.weight, lin.bias])
    assert nn.Linear(5, 3, bias=False).bias is None
    assert repr(nn.Linear(5, 3, bias=False)) == "Linear(in_features=5, out_features=3, bias=False)"
    with pytest.raises(ValueError, match="in_features=5"):
        lin(T(np.zeros((2, 4))))
    with pytest.raises(ValueError, match="out_features"):
        nn.Linear(5, 0)


def test_seeded_initialisation_is_reproducible_and_generators_advance():
    a = nn.Linear(8, 8, generator=7)
    b = nn.Linear(8, 8, generator=7)
    c = nn.Linear(8, 8, generator=8)
    np.testing.assert_array_equal(host(a.weight), host(b.weight))
    assert not np.array_equal(host(a.weight), host(c.weight))
    g = npjem.random.default_rng(3)
    d, e = nn.Linear(8, 8, generator=g), nn.Linear(8, 8, generator=g)  # one generator, two draws
    assert not np.array_equal(host(d.weight), host(e.weight))
    assert a.weight.dtype == np.float32 and nn.Linear(2, 2, dtype=np.float64).weight.dtype == np.float64


ACTIVATIONS = [
    (nn.ReLU(), lambda x: np.maximum(x, 0)),
    (nn.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
    (nn.GELU(), lambda x: 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))),
    (nn.GELU("tanh"), lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))),
    (nn.SiLU(), lambda x: x / (1 + np.exp(-x))),
    (nn.Tanh(), np.tanh),
    (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    (nn.Softplus(beta=2.0), lambda x: np.log1p(np.exp(2 * x)) / 2),
]


@pytest.mark.parametrize("layer,ref", ACTIVATIONS, ids=lambda v: repr(v) if isinstance(v, nn.Module) else "")
def test_activations(layer, ref):
    x = rng(1).standard_normal((3, 4)) * 2
    x[np.abs(x) < 1e-3] = 0.5  # stay away from the kinks of ReLU/LeakyReLU
    np.testing.assert_allclose(host(layer(T(x))), ref(x), rtol=1e-10, atol=1e-12)
    assert npjem.gradcheck(layer, [T(x)])
    assert npjem.gradgradcheck(layer, [T(x)])


def test_activation_reprs():
    assert repr(nn.ReLU()) == "ReLU()" and repr(nn.ReLU(inplace=True)) == "ReLU(inplace=True)"
    assert repr(nn.GELU()) == "GELU(approximate='none')"
    assert repr(nn.LeakyReLU()) == "LeakyReLU(negative_slope=0.01)"
    assert repr(nn.Softplus()) == "Softplus(beta=1.0, threshold=20.0)"
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU("fast")


def test_flatten():
    x = T(np.zeros((2, 3, 4, 5)))
    assert nn.Flatten()(x).shape == (2, 60)
    assert nn.Flatten(0, 1)(x).shape == (6, 4, 5)
    assert repr(nn.Flatten()) == "Flatten(start_dim=1, end_dim=-1)"


def test_dropout_train_eval_and_seeding():
    x = T(np.ones((50, 40)))
    d = nn.Dropout(0.25, generator=5)
    y = host(d(x))
    assert set(np.unique(y)) == {0.0, 1.0 / 0.75}
    assert abs((y == 0).mean() - 0.25) < 0.05
    y2 = host(d(x))
    assert not np.array_equal(y, y2)  # the generator advances
    np.testing.assert_array_equal(y, host(nn.Dropout(0.25, generator=5)(x)))  # same seed, same mask
    d.eval()
    assert d(x) is x
    assert nn.Dropout(0.0)(x) is x
    assert repr(d) == "Dropout(p=0.25, inplace=False)"
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


@given(st.sampled_from([(6, 5), (4, 3, 2, 2), (10, 20)]), st.integers(0, 100))
def test_init_bounds_and_moments(shape, seed):
    t = T(np.zeros(shape), requires_grad=False)
    fan_in, fan_out = init.calculate_fan_in_and_fan_out(t)
    assert (fan_in, fan_out) == (shape[1] * int(np.prod(shape[2:])), shape[0] * int(np.prod(shape[2:])))
    b = 1 / math.sqrt(fan_in)
    assert np.abs(host(init.kaiming_uniform_(t, a=math.sqrt(5), generator=seed))).max() <= b
    a = math.sqrt(6 / (fan_in + fan_out))
    assert np.abs(host(init.xavier_uniform_(t, generator=seed))).max() <= a
    assert np.abs(host(init.trunc_normal_(t, std=2.0, a=-1.0, b=0.5, generator=seed))).max() <= 1.0
    assert host(init.trunc_normal_(t, std=2.0, a=-1.0, b=0.5, generator=seed)).max() <= 0.5


def test_init_distributions_on_a_large_tensor():
    t = T(np.zeros((400, 500)), requires_grad=False)
    w = host(init.kaiming_normal_(t, nonlinearity="relu", generator=0))
    assert abs(w.std() - math.sqrt(2 / 500)) < 0.01 * math.sqrt(2 / 500) * 5
    w = host(init.normal_(t, 1.0, 0.5, generator=0))
    assert abs(w.mean() - 1.0) < 0.01 and abs(w.std() - 0.5) < 0.01
    w = host(init.uniform_(t, -2.0, 3.0, generator=0))
    assert w.min() >= -2.0 and w.max() <= 3.0 and abs(w.mean() - 0.5) < 0.03
    w = host(init.trunc_normal_(t, generator=0))
    assert w.min() >= -2.0 and w.max() <= 2.0 and abs(w.std() - 0.8796) < 0.01  # std of N(0,1) cut at ±2
    q = host(init.orthogonal_(T(np.zeros((3, 7)), requires_grad=False), generator=0))
    np.testing.assert_allclose(q @ q.T, np.eye(3), atol=1e-12)
    np.testing.assert_array_equal(host(init.eye_(T(np.zeros((2, 3)), requires_grad=False))), np.eye(2, 3))
    assert init.calculate_gain("relu") == math.sqrt(2) and init.calculate_gain("tanh") == 5 / 3
    with pytest.raises(ValueError, match="nonlinearity"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(T(np.zeros(3), requires_grad=False))


def test_relu_edge_values_and_non_finite_gradients():
    x = T(np.array([-np.inf, -1.0, 0.0, 2.0, np.inf, np.nan]))
    y = host(nn.ReLU()(x))
    np.testing.assert_array_equal(y[:5], [0.0, 0.0, 0.0, 2.0, np.inf])
    assert np.isnan(y[5])
    x = T(np.array([-1.0, 0.0, 3.0]))
    nn.ReLU()(x).backward(T(np.array([np.inf, np.nan, 2.0]), False))  # masked entries stay exactly 0
    np.testing.assert_array_equal(host(x.grad), [0.0, 0.0, 2.0])


@pytest.mark.parametrize("make", [
    lambda: nn.Flatten(),
    lambda: nn.Identity(),
    lambda: nn.Dropout(0.3, generator=11),
    lambda: nn.BatchNorm2d(2, device=DEVICE, dtype=np.float64),
    lambda: nn.Conv2d(2, 3, 2, stride=2, padding=1, device=DEVICE, dtype=np.float64, generator=0),
    lambda: nn.ConvTranspose2d(2, 3, 2, stride=2, device=DEVICE, dtype=np.float64, generator=0),
    lambda: nn.Sequential(nn.AvgPool2d(2, 1), nn.MaxPool2d(2, 1), nn.AdaptiveAvgPool2d((1, 2))),
])
def test_every_layer_passes_gradcheck(make):
    x = T(rng(14).standard_normal((2, 2, 3, 3)))
    # a fresh layer per call: Dropout draws the same mask each time, BatchNorm starts alike
    assert npjem.gradcheck(lambda x: make()(x), [x])
    m = make()
    params = [p for p in m.parameters()]
    if params:
        assert npjem.gradcheck(lambda x, *ps: _with_params(make, ps)(x), [x] + [T(host(p)) for p in params])


def _with_params(make, ps):
    """A fresh layer whose parameters are the given Tensors (so gradcheck differentiates them)."""
    m = make()
    for (name, _), p in zip(list(m.named_parameters()), ps):
        mod, _, leaf = name.rpartition(".")
        m.get_submodule(mod)._parameters[leaf] = p  # the checked Tensor itself, graph intact
    return m
