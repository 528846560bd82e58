"""npjem.ebm.energy's ConvEnergy as its docstring describes it: its defaults, 'same' padding
⌊k/2⌋ and the strides asked for, one seeded generator for every layer, the dtype asked for."""
import numpy as np
import pytest

from npjem import backend
from npjem.ebm.energy import ConvEnergy


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


def test_conv_energy_takes_the_dtype_asked_for():
    model = ConvEnergy(1, widths=(2,), strides=(1,), dtype=np.float32, generator=0)
    assert {p.dtype for p in model.parameters()} == {np.dtype(np.float32)}
    assert model(np.zeros((1, 1, 3, 3), dtype=np.float32)).dtype == np.float32
