"""Gradients (and a few values) of the composites in npjem/autograd/functional.py (float64)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import special

import npjem
from npjem import backend
from npjem import functional as F
from npjem import testing as nt

DEVICE = backend.default_device()
pytestmark = pytest.mark.skipif(DEVICE != "cpu" and not backend.cupy_available(),
                                reason="NPJEM_DEVICE asks for a GPU that is not available")

SHAPES = nt.shapes(max_dims=4, max_side=3, max_size=36)
NONEMPTY = nt.shapes(min_dims=1, max_dims=3, max_side=4)


def T(a, requires_grad=True):
    return npjem.tensor(np.asarray(a, dtype=np.float64), device=DEVICE, requires_grad=requires_grad)


def check(fn, *arrays, fixed=()):
    assert npjem.gradcheck(fn, [T(a) for a in arrays], fixed=fixed)


def one_axis(data, ndim):
    return data.draw(st.integers(-ndim, ndim - 1), label="axis")


# ------------------------------------------------------------------------ activations

@given(data=st.data(), shape=SHAPES)
def test_relu_leaky_relu(data, shape):
    x = data.draw(nt.arrays(shape, elements=nt.values_away_from([0.0], 0.1)), label="x")
    check(F.relu, x)
    slope = data.draw(st.floats(0.0, 0.5), label="slope")
    check(lambda t: F.leaky_relu(t, slope), x)
    assert np.allclose(F.relu(T(x)).numpy(), np.maximum(x, 0))
    assert np.allclose(F.leaky_relu(T(x), slope).numpy(), np.where(x > 0, x, slope * x))


def test_relu_gradient_at_zero_is_zero():
    x = T([-1.0, 0.0, 2.0])
    (g,) = npjem.grad(F.relu(x).sum(), [x])
    assert np.array_equal(g.numpy(), [0.0, 0.0, 1.0])


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@given(data=st.data(), shape=SHAPES)
def test_gelu(approximate, data, shape):
    x = data.draw(nt.arrays(shape, min_value=-4, max_value=4), label="x")
    check(lambda t: F.gelu(t, approximate=approximate), x)
    exact = x * 0.5 * (1 + special.erf(x / np.sqrt(2)))
    assert np.allclose(F.gelu(T(x), approximate=approximate).numpy(), exact,
                       atol=1e-12 if approximate == "none" else 1e-3)


def test_gelu_rejects_unknown_approximation():
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(T([1.0]), approximate="erf")


@given(data=st.data(), shape=SHAPES, beta=st.sampled_from([1.0, 0.5, 2.0]))
def test_softplus(data, shape, beta):
    x = data.draw(nt.arrays(shape, min_value=-30, max_value=30), label="x")
    check(lambda t: F.softplus(t, beta=beta), x)
    assert np.allclose(F.softplus(T(x), beta=beta).numpy(), np.logaddexp(0, beta * x) / beta, rtol=1e-12)


@given(data=st.data(), shape=SHAPES)
def test_silu(data, shape):
    x = data.draw(nt.arrays(shape, min_value=-30, max_value=30), label="x")
    check(F.silu, x)
    # The fused forward computes σ exactly as npjem.sigmoid does: the composite's values bit for bit.
    assert np.array_equal(F.silu(T(x)).numpy(), (T(x) * npjem.sigmoid(T(x))).numpy())
    # (σ's tanh form loses relative precision for x ≪ 0, hence the absolute tolerance.)
    assert np.allclose(F.silu(T(x)).numpy(), x * special.expit(x), rtol=1e-12, atol=1e-13)
    # First-order backward on arrays and the create_graph one (Tensor ops) agree.
    gy = np.random.default_rng(len(x.shape)).standard_normal(x.shape)
    xt = T(x)
    (g1,) = npjem.grad(F.silu(xt), [xt], grad_outputs=T(gy, requires_grad=False))
    (g2,) = npjem.grad(F.silu(xt), [xt], grad_outputs=T(gy, requires_grad=False), create_graph=True)
    want = gy * special.expit(x) * (1 + x * (1 - special.expit(x)))
    assert np.allclose(g1.numpy(), want, rtol=1e-12, atol=1e-13)
    assert np.allclose(g2.numpy(), want, rtol=1e-12, atol=1e-13)


def test_softplus_does_not_overflow():
    y = F.softplus(T([-1000.0, 1000.0]))
    assert np.allclose(y.numpy(), [0.0, 1000.0])


# ------------------------------------------------------------------------ softmax family

@given(data=st.data(), shape=NONEMPTY, keepdims=st.booleans())
def test_logsumexp(data, shape, keepdims):
    axis = data.draw(nt.axes(len(shape), min_size=1), label="axis")
    x = data.draw(nt.arrays(shape, min_value=-20, max_value=20), label="x")
    check(lambda t: F.logsumexp(t, axis=axis, keepdims=keepdims), x)
    want = special.logsumexp(x, axis=axis, keepdims=keepdims)
    assert np.allclose(F.logsumexp(T(x), axis=axis, keepdims=keepdims).numpy(), want, rtol=1e-12)


@given(data=st.data(), shapes=nt.broadcastable_pairs(min_dims=1, max_dims=3, max_side=3))
def test_logsumexp_of_broadcast_sum(data, shapes):
    sa, sb = shapes
    a = data.draw(nt.arrays(sa), label="a")
    b = data.draw(nt.arrays(sb), label="b")
    check(lambda u, v: F.logsumexp(u + v, axis=-1), a, b)


def test_logsumexp_is_stable():
    x = T([[1000.0, 1000.0], [-1000.0, -np.inf]])
    assert np.allclose(F.logsumexp(x).numpy(), [1000.0 + np.log(2.0), -1000.0])
    with np.errstate(divide="ignore"):  # log(0) = -inf is the right answer for an all -inf row
        assert F.logsumexp(T([-np.inf, -np.inf])).item() == -np.inf


@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax])
@given(data=st.data(), shape=NONEMPTY)
def test_softmax_log_softmax(fn, data, shape):
    axis = one_axis(data, len(shape))
    x = data.draw(nt.arrays(shape, min_value=-10, max_value=10), label="x")
    check(lambda t: fn(t, axis=axis), x)
    ls = x - special.logsumexp(x, axis=axis, keepdims=True)
    want = np.exp(ls) if fn is F.softmax else ls
    assert np.allclose(fn(T(x), axis=axis).numpy(), want, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------ norms and similarity

@given(data=st.data(), shape=NONEMPTY)
def test_normalize_norm(data, shape):
    axis = one_axis(data, len(shape))
    # rows away from 0, where normalize is clamped and not differentiable
    x = data.draw(nt.arrays(shape, elements=nt.values_away_from([0.0], 0.2)), label="x")
    check(lambda t: F.normalize(t, axis=axis), x)
    check(lambda t: F.norm(t, axis=axis), x)
    check(lambda t: F.norm(t, axis=axis, keepdims=True, eps=1e-3), x)
    n = np.sqrt((x * x).sum(axis=axis, keepdims=True))
    assert np.allclose(F.normalize(T(x), axis=axis).numpy(), x / n)


def test_normalize_at_zero_is_zero_with_zero_gradient():
    x = T(np.zeros((2, 3)))
    y = F.normalize(x)
    (g,) = npjem.grad(y, [x], grad_outputs=T(np.ones((2, 3)), False))
    assert np.array_equal(y.numpy(), np.zeros((2, 3))) and np.all(np.isfinite(g.numpy()))


@given(data=st.data(), shape=NONEMPTY)
def test_cosine_similarity(data, shape):
    axis = one_axis(data, len(shape))
    elems = nt.values_away_from([0.0], 0.2)
    a = data.draw(nt.arrays(shape, elements=elems), label="a")
    b = data.draw(nt.arrays(shape, elements=elems), label="b")
    check(lambda u, v: F.cosine_similarity(u, v, axis=axis), a, b)
    want = (a * b).sum(axis) / np.sqrt((a * a).sum(axis) * (b * b).sum(axis))
    assert np.allclose(F.cosine_similarity(T(a), T(b), axis=axis).numpy(), want)


# ------------------------------------------------------------------------ losses

@st.composite
def logits_and_labels(draw, soft=False):
    n, c = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    z = draw(nt.arrays((n, c), min_value=-5, max_value=5))
    if soft:
        w = draw(nt.positive_arrays((n, c), min_value=0.05, max_value=1.0))
        return z, w / w.sum(axis=1, keepdims=True)
    return z, np.asarray(draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))


REDUCTIONS = st.sampled_from(["mean", "sum", "none"])


@given(zy=logits_and_labels(), reduction=REDUCTIONS, smoothing=st.sampled_from([0.0, 0.1, 0.3]))
def test_cross_entropy_integer_targets(zy, reduction, smoothing):
    z, y = zy
    check(lambda t: F.cross_entropy(t, y, reduction=reduction, label_smoothing=smoothing), z)
    c = z.shape[1]
    q = (1 - smoothing) * np.eye(c)[y] + smoothing / c
    per_row = -(q * (z - special.logsumexp(z, axis=1, keepdims=True))).sum(axis=1)
    want = {"mean": per_row.mean(), "sum": per_row.sum(), "none": per_row}[reduction]
    got = F.cross_entropy(T(z), y, reduction=reduction, label_smoothing=smoothing).numpy()
    assert np.allclose(got, want)


@given(zq=logits_and_labels(soft=True), reduction=REDUCTIONS, smoothing=st.sampled_from([0.0, 0.2]))
def test_cross_entropy_soft_targets(zq, reduction, smoothing):
    z, q = zq
    # gradient wrt the logits, and wrt the soft targets too (a teacher's distribution)
    check(lambda t, p: F.cross_entropy(t, p, reduction=reduction, label_smoothing=smoothing), z, q)
    check(lambda t: F.cross_entropy(t, q, reduction=reduction, label_smoothing=smoothing), z)


def test_cross_entropy_validates():
    z = T(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        F.cross_entropy(z, np.array([0, 3]))
    with pytest.raises(ValueError, match="shape"):
        F.cross_entropy(z, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="2-D"):
        F.cross_entropy(T(np.zeros(3)), np.array([0]))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(z, np.array([0, 1]), reduction="avg")
    with pytest.raises(ValueError, match="2-D"):
        F.nll_loss(T(np.zeros(3)), np.array([0]))
    with pytest.raises(ValueError, match="integer"):
        F.nll_loss(z, np.array([0.0, 1.0]))


@given(data=st.data(), shape=SHAPES, reduction=REDUCTIONS)
def test_mse_loss(data, shape, reduction):
    a = data.draw(nt.arrays(shape), label="input")
    b = data.draw(nt.arrays(shape), label="target")
    check(lambda u, v: F.mse_loss(u, v, reduction=reduction), a, b)


@given(data=st.data(), shape=SHAPES, reduction=REDUCTIONS, beta=st.sampled_from([0.0, 0.5, 1.0]))
def test_smooth_l1_loss(data, shape, reduction, beta):
    a = data.draw(nt.arrays(shape), label="input")
    # differences away from 0 (the kink of |d| when beta = 0)
    d = data.draw(nt.arrays(shape, elements=nt.values_away_from([0.0], 0.05)), label="diff")
    check(lambda u, v: F.smooth_l1_loss(u, v, reduction=reduction, beta=beta), a, a - d)
    ad = np.abs(d)
    per = ad if beta == 0 else np.where(ad < beta, 0.5 * d * d / max(beta, 1e-300), ad - 0.5 * beta)
    want = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    assert np.allclose(F.smooth_l1_loss(T(a), T(a - d), reduction=reduction, beta=beta).numpy(), want)


@given(data=st.data(), shape=SHAPES, reduction=REDUCTIONS)
def test_binary_cross_entropy_with_logits(data, shape, reduction):
    z = data.draw(nt.arrays(shape, min_value=-10, max_value=10), label="logits")
    y = data.draw(nt.arrays(shape, min_value=0, max_value=1), label="target")
    check(lambda u, v: F.binary_cross_entropy_with_logits(u, v, reduction=reduction), z, y)
    p = special.expit(z)
    with np.errstate(divide="ignore"):
        per = -(y * np.log(p) + (1 - y) * np.log1p(-p))
    ok = np.isfinite(per)
    got = F.binary_cross_entropy_with_logits(T(z), T(y), reduction="none").numpy()
    assert np.allclose(got[ok], per[ok])


@given(data=st.data(), lead=nt.shapes(max_dims=2, max_side=3), k=st.integers(1, 2),
       affine=st.booleans())
def test_layer_norm(data, lead, k, affine):
    norm_shape = data.draw(nt.shapes(min_dims=k, max_dims=k, min_side=2, max_side=3), label="normalized")
    shape = lead + norm_shape
    x = data.draw(nt.distinct_arrays(shape, min_gap=0.1), label="x")
    if affine:
        w = data.draw(nt.arrays(norm_shape), label="weight")
        b = data.draw(nt.arrays(norm_shape), label="bias")
        check(lambda t, u, v: F.layer_norm(t, norm_shape, u, v), x, w, b)
    else:
        check(lambda t: F.layer_norm(t, norm_shape), x)
    axes = tuple(range(len(lead), len(shape)))
    want = (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + 1e-5)
    assert np.allclose(F.layer_norm(T(x), norm_shape).numpy(), want)


@given(data=st.data(), lead=st.sampled_from([(), (1,), (3,), (2, 3)]), fin=st.integers(1, 3),
       fout=st.integers(1, 3), bias=st.booleans())
def test_linear(data, lead, fin, fout, bias):
    x = data.draw(nt.arrays(lead + (fin,)), label="x")
    w = data.draw(nt.arrays((fout, fin)), label="weight")
    b = data.draw(nt.arrays((fout,)), label="bias")
    want = x @ w.T + (b if bias else 0.0)
    fn = (lambda u, v, c: F.linear(u, v, c)) if bias else (lambda u, v: F.linear(u, v))
    arrays = (x, w, b) if bias else (x, w)
    np.testing.assert_allclose(fn(*[T(a) for a in arrays]).numpy(), want, rtol=1e-12, atol=1e-12)
    check(fn, *arrays)
    assert npjem.gradgradcheck(fn, [T(a) for a in arrays])


def test_linear_weight_grad_and_bad_shapes_are_named():
    x = T(np.ones((4, 3)))
    w = npjem.tensor(np.ones((2, 3)), requires_grad=True)
    F.linear(x, w).sum().backward()
    assert w.grad.data.flags.c_contiguous and w.grad.data.flags.owndata
    np.testing.assert_array_equal(w.grad.numpy(), np.full((2, 3), 4.0))
    with pytest.raises(ValueError, match="in_features"):
        F.linear(T(np.ones((4, 5))), w)
    with pytest.raises(ValueError, match="bias must have shape"):
        F.linear(x, w, T(np.ones(3)))


@given(data=st.data(), shape=SHAPES, p=st.sampled_from([0.0, 0.25, 0.5, 0.9]), seed=st.integers(0, 99))
def test_dropout_with_fixed_generator(data, shape, p, seed):
    x = data.draw(nt.arrays(shape), label="x")
    # a fresh generator with the same seed on every call: the same mask each evaluation
    check(lambda t: F.dropout(t, p, generator=npjem.random.default_rng(seed, DEVICE)), x)
    y = F.dropout(T(x), p, generator=npjem.random.default_rng(seed, DEVICE)).numpy()
    kept = y != 0
    assert np.allclose(y[kept], x[kept] / (1 - p))
    assert np.array_equal(F.dropout(T(x), p, training=False).numpy(), x)


def test_dropout_rate_and_validation():
    y = F.dropout(T(np.ones(20000)), 0.3, generator=npjem.random.default_rng(0, DEVICE)).numpy()
    assert abs((y == 0).mean() - 0.3) < 0.02 and abs(y.mean() - 1.0) < 0.03
    with pytest.raises(ValueError, match="probability"):
        F.dropout(T([1.0]), 1.5)
