"""Pooling: values against direct loops written from PyTorch's definitions, gradients to second
order, tie and NaN rules, indices, layers."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import npjem
from npjem import nn
from npjem.nn import functional as F

from _nn_util import T, host, rng, skip_without_device

pytestmark = skip_without_device


def _out(length, k, s, p, d, ceil_mode):
    num = length + 2 * p - d * (k - 1) - 1
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= length + p:
        out -= 1
    return out


def reference_max_pool(x, k, s, p, d, ceil_mode):
    """Loops over windows; returns the max and the flat index (h·W + w) of the first maximum,
    −1 (and −∞) for a window that sees only padding (possible with dilation)."""
    n, c, h, w = x.shape
    ho, wo = _out(h, k[0], s[0], p[0], d[0], ceil_mode), _out(w, k[1], s[1], p[1], d[1], ceil_mode)
    y = np.full((n, c, ho, wo), -np.inf)
    idx = np.full((n, c, ho, wo), -1, dtype=np.int64)
    for a in range(n):
        for b in range(c):
            for i in range(ho):
                for j in range(wo):
                    for u in range(k[0]):
                        for v in range(k[1]):
                            r, q = i * s[0] - p[0] + u * d[0], j * s[1] - p[1] + v * d[1]
                            if 0 <= r < h and 0 <= q < w and x[a, b, r, q] > y[a, b, i, j]:
                                y[a, b, i, j], idx[a, b, i, j] = x[a, b, r, q], r * w + q
    return y, idx


def reference_avg_pool(x, k, s, p, ceil_mode, count_include_pad, divisor_override):
    """PyTorch's avg_pool2d definition: windows clipped to the padded extent for the divisor."""
    n, c, h, w = x.shape
    ho, wo = _out(h, k[0], s[0], p[0], 1, ceil_mode), _out(w, k[1], s[1], p[1], 1, ceil_mode)
    y = np.zeros((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            h0, w0 = i * s[0] - p[0], j * s[1] - p[1]
            h1, w1 = min(h0 + k[0], h + p[0]), min(w0 + k[1], w + p[1])
            pool = (h1 - h0) * (w1 - w0)
            h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)
            div = divisor_override or (pool if count_include_pad else (h1 - h0) * (w1 - w0))
            y[:, :, i, j] = x[:, :, h0:h1, w0:w1].sum(axis=(2, 3)) / div
    return y


@st.composite
def pool_cases(draw, dilation=True, max_side=7):
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilation else (1, 1)
    ceil_mode = draw(st.booleans())
    h = draw(st.integers(max(1, d[0] * (k[0] - 1) + 1 - 2 * p[0]), max_side))
    w = draw(st.integers(max(1, d[1] * (k[1] - 1) + 1 - 2 * p[1]), max_side))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), h, w)
    return dict(k=k, s=s, p=p, d=d, ceil_mode=ceil_mode, shape=shape, seed=draw(st.integers(0, 2**16)))


@given(pool_cases())
def test_max_pool_matches_reference_and_indices(case):
    x = rng(case["seed"]).standard_normal(case["shape"])
    y, idx = F.max_pool2d(T(x), case["k"], case["s"], case["p"], case["d"], case["ceil_mode"],
                          return_indices=True)
    ref, ref_idx = reference_max_pool(x, case["k"], case["s"], case["p"], case["d"], case["ceil_mode"])
    np.testing.assert_array_equal(host(y), ref)
    np.testing.assert_array_equal(host(idx), ref_idx)


@given(pool_cases(max_side=6))
def test_max_pool_gradcheck_and_gradgradcheck(case):
    x = T(rng(case["seed"]).standard_normal(case["shape"]))
    f = lambda x: F.max_pool2d(x, case["k"], case["s"], case["p"], case["d"], case["ceil_mode"])  # noqa: E731
    # A window that sees only padding is −∞ whatever x is: no finite difference to compare with.
    assume(np.isfinite(host(f(x))).all())
    assert npjem.gradcheck(f, [x])
    assert npjem.gradgradcheck(f, [x])


def test_max_pool_grad_of_grad_is_a_gather():
    # g(x, v) = ∂⟨maxpool(x), v⟩/∂x scatters v to the argmaxes; d⟨g, u⟩/dv gathers u there.
    r = rng(1)
    x, v = T(r.standard_normal((2, 2, 5, 5))), T(r.standard_normal((2, 2, 3, 3)))

    def g(x, v):
        with npjem.enable_grad():
            x = x if x.requires_grad else npjem.tensor(x.data, requires_grad=True)
            (gx,) = npjem.grad(F.max_pool2d(x, 3, 2, 1, ceil_mode=True), [x], v, create_graph=True)
            return gx

    assert npjem.gradcheck(g, [x, v], fixed=[0])
    assert npjem.gradgradcheck(g, [x, v], fixed=[0])


def test_max_pool_ties_send_the_gradient_to_the_first_maximum():
    x = T(np.ones((1, 1, 4, 4)))
    F.max_pool2d(x, 2).backward(T(np.arange(1.0, 5.0).reshape(1, 1, 2, 2), False))
    expect = np.zeros((4, 4))
    expect[0, 0], expect[0, 2], expect[2, 0], expect[2, 2] = 1, 2, 3, 4
    np.testing.assert_array_equal(host(x.grad)[0, 0], expect)
    # overlapping windows add up at a shared maximum
    x = T(np.array([[[[0.0, 5.0, 0.0], [0.0, 0.0, 0.0]]]]))
    F.max_pool2d(x, (1, 2), stride=1).backward(T(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), False))
    np.testing.assert_array_equal(host(x.grad)[0, 0], [[0.0, 3.0, 0.0], [3.0, 4.0, 0.0]])


def test_max_pool_nan_is_the_maximum():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    x[0, 0, 0, 1] = np.nan
    y = host(F.max_pool2d(T(x), 2))
    assert np.isnan(y[0, 0, 0, 0]) and y[0, 0, 1, 1] == 15.0


@given(pool_cases(dilation=False), st.booleans(), st.sampled_from([None, 2, 5]))
def test_avg_pool_matches_reference(case, count_include_pad, divisor_override):
    x = rng(case["seed"]).standard_normal(case["shape"])
    y = F.avg_pool2d(T(x), case["k"], case["s"], case["p"], case["ceil_mode"], count_include_pad,
                     divisor_override)
    ref = reference_avg_pool(x, case["k"], case["s"], case["p"], case["ceil_mode"], count_include_pad,
                             divisor_override)
    np.testing.assert_allclose(host(y), ref, rtol=1e-12, atol=1e-14)


@given(pool_cases(dilation=False, max_side=6), st.booleans())
def test_avg_pool_gradcheck_and_gradgradcheck(case, count_include_pad):
    x = T(rng(case["seed"]).standard_normal(case["shape"]))
    f = lambda x: F.avg_pool2d(x, case["k"], case["s"], case["p"], case["ceil_mode"], count_include_pad)  # noqa: E731
    assert npjem.gradcheck(f, [x])
    assert npjem.gradgradcheck(f, [x])


def reference_adaptive(x, oh, ow):
    n, c, h, w = x.shape
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        h0, h1 = (i * h) // oh, -(-((i + 1) * h) // oh)
        for j in range(ow):
            w0, w1 = (j * w) // ow, -(-((j + 1) * w) // ow)
            y[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return y


@given(st.integers(1, 7), st.integers(1, 7), st.integers(1, 4), st.one_of(st.none(), st.integers(1, 4)),
       st.integers(0, 1000))
def test_adaptive_avg_pool_matches_reference(h, w, oh, ow, seed):
    x = rng(seed).standard_normal((2, 3, h, w))
    y = F.adaptive_avg_pool2d(T(x), (oh, ow))
    np.testing.assert_allclose(host(y), reference_adaptive(x, oh, w if ow is None else ow), rtol=1e-12, atol=1e-14)
    assert npjem.gradcheck(lambda x: F.adaptive_avg_pool2d(x, (oh, ow)), [T(x[:1, :2])])


def test_adaptive_avg_pool_1_is_the_global_mean():
    x = rng(2).standard_normal((2, 3, 5, 4))
    np.testing.assert_allclose(host(nn.AdaptiveAvgPool2d(1)(T(x))), x.mean(axis=(2, 3), keepdims=True))
    assert npjem.gradgradcheck(lambda x: F.adaptive_avg_pool2d(x, 1) ** 2, [T(x[:1])])


def test_pool_layers_and_errors():
    m = nn.MaxPool2d(2)
    assert m.stride == 2 and repr(m) == "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)"
    assert repr(nn.AvgPool2d(3, 1, 1)) == "AvgPool2d(kernel_size=3, stride=1, padding=1)"
    assert repr(nn.AdaptiveAvgPool2d((2, 3))) == "AdaptiveAvgPool2d(output_size=(2, 3))"
    x = T(rng().standard_normal((1, 2, 5, 5)))
    assert m(x).shape == (1, 2, 2, 2) and nn.MaxPool2d(2, ceil_mode=True)(x).shape == (1, 2, 3, 3)
    y, i = nn.MaxPool2d(2, return_indices=True)(x)
    assert i.dtype == np.int64 and i.shape == y.shape
    assert nn.MaxPool2d(2)(T(rng().standard_normal((2, 5, 5)))).shape == (2, 2, 2)  # unbatched
    with pytest.raises(ValueError, match="at most half the kernel"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="too small"):
        F.avg_pool2d(x, 6)
    with pytest.raises(TypeError, match="kernel_size"):
        nn.MaxPool2d("2")
    with pytest.raises(ValueError, match="output_size"):
        F.adaptive_avg_pool2d(x, 0)


def test_max_pool_non_finite_gradient_goes_only_to_the_argmax():
    x = T(np.arange(16.0).reshape(1, 1, 4, 4))
    gy = np.array([[[[np.inf, 1.0], [np.nan, 2.0]]]])
    F.max_pool2d(x, 2).backward(T(gy, False))
    g = host(x.grad)[0, 0]
    assert g[1, 1] == np.inf and np.isnan(g[3, 1]) and g[1, 3] == 1.0 and g[3, 3] == 2.0
    assert np.count_nonzero(g == 0) == 12  # no inf·0 = NaN leaking into the other positions
    x2 = T(np.arange(16.0).reshape(1, 1, 4, 4))
    F.max_pool2d(x2, 3, stride=1).backward(T(np.array([[[[np.inf, 1.0], [1.0, 1.0]]]]), False))  # overlapping
    assert np.count_nonzero(np.isnan(host(x2.grad))) == 0
