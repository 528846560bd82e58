"""Edges of npjem/autograd/functional.py that mutation testing showed untested: default axes
on 2-D input, default label smoothing, argument checks, dropout(p=1)."""
import numpy as np
import pytest

import npjem
from npjem import backend
from npjem import functional as F

DEVICE = backend.default_device()
pytestmark = pytest.mark.skipif(DEVICE != "cpu" and not backend.cupy_available(),
                                reason="NPJEM_DEVICE asks for a GPU that is not available")

# Rows and columns differ, so a reduction over the wrong axis gives a different answer.
X = np.array([[0.5, -1.0, 2.0], [3.0, 0.25, -0.5]])
Y = np.array([[1.0, 2.0, -1.0], [0.5, -0.5, 4.0]])


def T(a, requires_grad=False):
    return npjem.tensor(np.asarray(a, dtype=np.float64), device=DEVICE, requires_grad=requires_grad)


def host(t):
    return backend.to_numpy(t.data)


def test_softmax_defaults_to_the_last_axis():
    e = np.exp(X - X.max(axis=1, keepdims=True))
    np.testing.assert_allclose(host(F.softmax(T(X))), e / e.sum(axis=1, keepdims=True), rtol=1e-14)
    np.testing.assert_allclose(host(F.log_softmax(T(X))), np.log(e / e.sum(axis=1, keepdims=True)), rtol=1e-14)


def test_normalize_defaults_to_the_last_axis_and_refuses_other_norms():
    np.testing.assert_allclose(host(F.normalize(T(X))), X / np.linalg.norm(X, axis=1, keepdims=True), rtol=1e-14)
    for p in (1, 1.5, 3.0, np.inf):
        with pytest.raises(ValueError, match="p=2"):
            F.normalize(T(X), p=p)
    np.testing.assert_allclose(host(F.normalize(T(X), p=2)), host(F.normalize(T(X), p=2.0)))


def test_cosine_similarity_defaults_to_the_last_axis():
    want = (X * Y).sum(axis=1) / (np.linalg.norm(X, axis=1) * np.linalg.norm(Y, axis=1))
    got = F.cosine_similarity(T(X), T(Y))
    assert got.shape == (2,)
    np.testing.assert_allclose(host(got), want, rtol=1e-14)


def test_cosine_similarity_of_a_zero_row_is_zero_with_gradient_y_over_eps():
    x = T(np.zeros((1, 3)), requires_grad=True)
    y = np.array([[0.0, 3.0, 4.0]])
    s = F.cosine_similarity(x, T(y))
    assert s.item() == 0.0
    s.sum().backward()
    np.testing.assert_allclose(host(x.grad), y / 5.0 / 1e-8, rtol=1e-9)


def test_cross_entropy_does_not_smooth_by_default():
    target = np.array([2, 0])
    logp = X - np.log(np.exp(X).sum(axis=1, keepdims=True))
    want = -logp[[0, 1], target].mean()
    assert F.cross_entropy(T(X), target).item() == pytest.approx(want, rel=1e-14)
    soft = np.eye(3)[target]
    assert F.cross_entropy(T(X), T(soft)).item() == pytest.approx(want, rel=1e-14)
    smoothed = -(((1 - 0.2) * soft + 0.2 / 3) * logp).sum(axis=1).mean()
    assert F.cross_entropy(T(X), target, label_smoothing=0.2).item() == pytest.approx(smoothed, rel=1e-13)
    assert F.cross_entropy(T(X), T(soft), label_smoothing=0.2).item() == pytest.approx(smoothed, rel=1e-13)


def test_shape_checks_of_soft_targets_and_smooth_l1():
    with pytest.raises(ValueError, match="soft target must have the logits' shape"):
        F.cross_entropy(T(X), T(np.full((2, 2), 0.5)))
    with pytest.raises(ValueError, match="smooth_l1_loss: input shape"):
        F.smooth_l1_loss(T(X), T(X[:, :2]))
    with pytest.raises(ValueError, match="smooth_l1_loss: input shape"):
        F.smooth_l1_loss(T(X[0]), T(X))  # would broadcast silently
    d = np.abs(X - Y)
    want = np.where(d < 1.0, 0.5 * d * d, d - 0.5).mean()
    assert F.smooth_l1_loss(T(X), T(Y)).item() == pytest.approx(want, rel=1e-14)


def test_dropout_with_p_one_gives_zeros_and_zero_gradients_in_training():
    x = T(X, requires_grad=True)
    y = F.dropout(x, p=1.0, training=True, generator=0)
    assert np.array_equal(host(y), np.zeros_like(X))
    y.sum().backward()
    assert np.array_equal(host(x.grad), np.zeros_like(X))
    assert F.dropout(x, p=1.0, training=False) is x
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        F.dropout(x, p=1.5)


def test_softmax_subtracts_each_row_s_own_maximum():
    # A global maximum would underflow the first row to 0/0.
    z = np.array([[0.0, 1.0], [1000.0, 1001.0]])
    s = 1.0 / (1.0 + np.e)
    np.testing.assert_allclose(host(F.softmax(T(z))), [[s, 1 - s], [s, 1 - s]], rtol=1e-14)
    np.testing.assert_allclose(host(F.softmax(T(z.T), axis=0)), [[s, s], [1 - s, 1 - s]], rtol=1e-14)


def test_cosine_similarity_clamps_the_second_norm_with_the_given_eps():
    x = np.array([[0.0, 3.0, 4.0]])
    y = T(np.zeros((1, 3)), requires_grad=True)
    F.cosine_similarity(T(x), y, eps=1e-6).sum().backward()
    np.testing.assert_allclose(host(y.grad), x / 5.0 / 1e-6, rtol=1e-9)
    with pytest.raises(ValueError, match="cosine_similarity: x1 has 3 features, x2 has 2"):
        F.cosine_similarity(T(x), T(np.ones((1, 2))))


def test_cross_entropy_label_smoothing_range_and_numpy_soft_targets():
    logp = X - np.log(np.exp(X).sum(axis=1, keepdims=True))
    assert F.cross_entropy(T(X), np.array([2, 0]), label_smoothing=1.0).item() == pytest.approx(
        -logp.mean(axis=1).mean(), rel=1e-14)  # ε = 1: the uniform target
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=rf"label_smoothing must be in \[0, 1\], got {bad}"):
            F.cross_entropy(T(X), np.array([2, 0]), label_smoothing=bad)
    soft = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])  # a float64 NumPy array, float32 logits
    logits = npjem.tensor(X.astype(np.float32), device=DEVICE)
    loss = F.cross_entropy(logits, backend.to_device(soft, DEVICE))
    assert loss.dtype == np.float32
    assert loss.item() == pytest.approx(-(soft * logp).sum(axis=1).mean(), rel=1e-6)


def test_dropout_defaults_dtype_and_p_zero():
    x = npjem.tensor(np.ones((200, 50), np.float32), device=DEVICE)
    y = host(F.dropout(x, generator=0))  # p = 0.5 by default, training by default
    assert y.dtype == np.float32 and set(np.unique(y)) == {0.0, 2.0}
    assert 0.45 < (y == 0).mean() < 0.55
    assert F.dropout(x, p=0.0, generator=0) is x  # nothing drawn, nothing multiplied


def test_smooth_l1_beta_and_list_targets():
    target = [[0.1, -0.7, 2.2], [2.9, 0.3, 1.1]]  # a list takes the input's dtype (float64)
    d = np.abs(X - np.array(target))
    want = np.where(d < 2.0, 0.5 * d * d / 2.0, d - 1.0).mean()
    assert F.smooth_l1_loss(T(X), target, beta=2.0).item() == pytest.approx(want, rel=1e-14)
    with pytest.raises(ValueError, match="beta must be non-negative, got -1"):
        F.smooth_l1_loss(T(X), T(Y), beta=-1)
