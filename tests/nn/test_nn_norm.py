"""BatchNorm and LayerNorm: train/eval semantics, running statistics against a hand
computation, momentum=None, no tracking, gradients to second order, errors."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npjem
from npjem import backend, nn
from npjem.nn import functional as F

from _nn_util import DEVICE, T, host, rng, skip_without_device

pytestmark = skip_without_device


def _bn(cls, c, **kw):
    return cls(c, device=DEVICE, dtype=np.float64, **kw)


def _hand_bn(x, gamma, beta, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mu = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma.reshape(shape) + beta.reshape(shape)


@pytest.mark.parametrize("cls,shape", [(nn.BatchNorm2d, (4, 3, 2, 5)), (nn.BatchNorm1d, (6, 3)),
                                       (nn.BatchNorm1d, (3, 3, 4))])
def test_batchnorm_training_running_stats_and_eval(cls, shape):
    r = rng(0)
    bn = _bn(cls, 3, momentum=0.3)
    bn.weight.data[...] = backend.to_device(r.uniform(0.5, 2.0, 3), DEVICE)
    bn.bias.data[...] = backend.to_device(r.standard_normal(3), DEVICE)
    gamma, beta = host(bn.weight), host(bn.bias)
    rm, rv = np.zeros(3), np.ones(3)
    axes = (0,) + tuple(range(2, len(shape)))
    n = int(np.prod(shape)) // 3
    for step in range(4):
        x = r.standard_normal(shape) * (step + 1) + step
        y = bn(T(x))
        np.testing.assert_allclose(host(y), _hand_bn(x, gamma, beta), rtol=1e-10, atol=1e-12)
        # running var moves towards the UNBIASED batch variance
        rm = 0.7 * rm + 0.3 * x.mean(axis=axes)
        rv = 0.7 * rv + 0.3 * x.var(axis=axes) * n / (n - 1)
    np.testing.assert_allclose(host(bn.running_mean), rm, rtol=1e-12)
    np.testing.assert_allclose(host(bn.running_var), rv, rtol=1e-12)
    assert int(host(bn.num_batches_tracked)) == 4 and host(bn.num_batches_tracked).dtype == np.int64
    bn.eval()
    x = r.standard_normal(shape)
    shp = (1, -1) + (1,) * (len(shape) - 2)
    expect = (x - rm.reshape(shp)) / np.sqrt(rv.reshape(shp) + 1e-5) * gamma.reshape(shp) + beta.reshape(shp)
    np.testing.assert_allclose(host(bn(T(x))), expect, rtol=1e-10)
    np.testing.assert_allclose(host(bn.running_mean), rm, rtol=1e-12)  # eval does not update
    assert int(host(bn.num_batches_tracked)) == 4


def test_batchnorm_momentum_none_is_a_cumulative_average():
    r = rng(1)
    bn = _bn(nn.BatchNorm2d, 2, momentum=None)
    xs = [r.standard_normal((3, 2, 2, 2)) + i for i in range(3)]
    for x in xs:
        bn(T(x, False))
    np.testing.assert_allclose(host(bn.running_mean), np.mean([x.mean(axis=(0, 2, 3)) for x in xs], axis=0),
                               rtol=1e-12)
    np.testing.assert_allclose(host(bn.running_var),
                               np.mean([x.var(axis=(0, 2, 3), ddof=1) for x in xs], axis=0), rtol=1e-12)


def test_batchnorm_without_tracking_or_affine():
    r = rng(2)
    bn = _bn(nn.BatchNorm2d, 3, track_running_stats=False, affine=False)
    assert bn.running_mean is None and bn.weight is None
    assert list(bn.state_dict()) == [] and list(bn.parameters()) == []
    x = r.standard_normal((2, 3, 3, 3))
    bn.eval()  # batch statistics in eval too
    np.testing.assert_allclose(host(bn(T(x))), _hand_bn(x, np.ones(3), np.zeros(3)), rtol=1e-10, atol=1e-12)


def test_batchnorm_under_no_grad_still_updates_running_stats():
    bn = _bn(nn.BatchNorm1d, 2)
    with npjem.no_grad():
        y = bn(T(rng(3).standard_normal((5, 2)) + 3.0))
    assert not y.requires_grad and host(bn.running_mean).min() > 0.2


@given(st.sampled_from([(3, 2), (2, 2, 3), (2, 2, 2, 2)]), st.booleans(), st.integers(0, 1000))
def test_batch_norm_gradcheck_and_gradgradcheck(shape, training, seed):
    r = rng(seed)
    x, w, b = T(r.standard_normal(shape)), T(r.uniform(0.5, 1.5, 2)), T(r.standard_normal(2))
    rm, rv = (backend.to_device(a, DEVICE) for a in (r.standard_normal(2), r.uniform(0.5, 2.0, 2)))

    def f(x, w, b):  # fresh running stats each call: the check calls f many times
        return F.batch_norm(x, rm.copy(), rv.copy(), w, b, training=training)

    assert npjem.gradcheck(f, [x, w, b])
    assert npjem.gradgradcheck(f, [x, w, b], mode="fast", n_directions=6)


def test_layer_norm_layer():
    r = rng(4)
    ln = nn.LayerNorm((3, 4), device=DEVICE, dtype=np.float64)
    ln.weight.data[...] = backend.to_device(r.standard_normal((3, 4)), DEVICE)
    ln.bias.data[...] = backend.to_device(r.standard_normal((3, 4)), DEVICE)
    x = r.standard_normal((2, 3, 4))
    mu, var = x.mean(axis=(1, 2), keepdims=True), x.var(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(host(ln(T(x))), (x - mu) / np.sqrt(var + 1e-5) * host(ln.weight) + host(ln.bias),
                               rtol=1e-10)
    assert npjem.gradcheck(lambda x: ln(x), [T(x)])
    assert repr(nn.LayerNorm(8)) == "LayerNorm((8,), eps=1e-05, elementwise_affine=True)"
    assert nn.LayerNorm(8, bias=False).bias is None
    assert nn.LayerNorm(8, elementwise_affine=False).weight is None


def test_batchnorm_repr_and_errors():
    bn = nn.BatchNorm2d(4)
    assert repr(bn) == "BatchNorm2d(4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    with pytest.raises(ValueError, match="expected 4D input"):
        bn(T(np.zeros((2, 4)), dtype=np.float32))
    with pytest.raises(ValueError, match="num_features=4"):
        bn(T(np.zeros((2, 3, 2, 2)), dtype=np.float32))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(T(np.zeros((1, 3)), dtype=np.float32))
    with pytest.raises(ValueError, match="momentum"):
        nn.BatchNorm1d(3, momentum=2.0)
    with pytest.raises(ValueError, match="running_mean must have shape"):
        F.batch_norm(T(np.zeros((2, 3))), np.zeros(2), np.ones(3), training=True)
    bn.running_mean.data[...] = 5.0
    bn.reset_running_stats()
    assert host(bn.running_mean).max() == 0.0


@given(st.sampled_from([(3, 2, 2, 3), (2, 2, 3), (4, 2)]), st.sampled_from(["channels_last", "strided"]),
       st.booleans(), st.integers(0, 1000))
def test_batch_norm_training_in_any_memory_layout(shape, layout, gy_like_x, seed):
    # The training pass runs on x seen channels-last: with no copy when the channels are the
    # fastest axis (a convolution's output), on a moved-axis view otherwise; gy may arrive in
    # x's layout or not. Values, gradients and second derivatives must not depend on it.
    r = rng(seed)
    base = r.standard_normal(shape) * 2.0 + 1.5
    w, b = r.uniform(0.5, 1.5, 2), r.standard_normal(2)
    gy = backend.to_device(r.standard_normal(shape), DEVICE)
    xp = backend.get_array_module(gy)

    def laid_out(leaf):
        """x = leaf in the layout under test, as a differentiable view of the leaf."""
        if layout == "channels_last":
            return npjem.ops.permute(leaf, (0, leaf.ndim - 1) + tuple(range(1, leaf.ndim - 1)))
        return leaf[::2]  # every other row of a twice-as-long batch: strided over N

    if layout == "channels_last":
        leaf = T(np.moveaxis(base, 1, -1))
    else:
        leaf = T(np.repeat(base, 2, axis=0))
    x = laid_out(leaf)
    assert x.shape == base.shape and (x.ndim == 2 and layout == "channels_last") != (not x.data.flags.c_contiguous)
    g = xp.moveaxis(xp.ascontiguousarray(xp.moveaxis(gy, 1, -1)), -1, 1) if gy_like_x else gy
    ref, wr, br = T(base), T(w), T(b)
    F.batch_norm(ref, None, None, wr, br, training=True).backward(npjem.Tensor(gy))
    wt, bt = T(w), T(b)
    y = F.batch_norm(x, None, None, wt, bt, training=True)
    y.backward(npjem.Tensor(g))
    gx = host(laid_out(leaf.grad).data) if layout == "channels_last" else host(leaf.grad.data)[::2]
    np.testing.assert_allclose(host(y.data), _hand_bn(base, w, b), rtol=1e-10, atol=1e-10)
    for got, want in ((gx, ref.grad), (wt.grad, wr.grad), (bt.grad, br.grad)):
        np.testing.assert_allclose(host(got), host(want), rtol=1e-10, atol=1e-12)

    def f(leaf, w, b):
        return F.batch_norm(laid_out(leaf), None, None, w, b, training=True)

    assert npjem.gradcheck(f, [leaf.detach().requires_grad_(), T(w), T(b)])
    assert npjem.gradgradcheck(f, [leaf.detach().requires_grad_(), T(w), T(b)], mode="fast", n_directions=4)
