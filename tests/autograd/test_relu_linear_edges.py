"""ReLU and Linear at their edges: the kink under create_graph, non-finite incoming gradients,
0-d inputs, a bias of another dtype, and gradients only where they are asked for."""
import numpy as np
import pytest

import npjem
from npjem.autograd import functional as AF


def _t(a, grad=True):
    return npjem.tensor(np.asarray(a, dtype=np.float64), device="cpu", requires_grad=grad)


@pytest.mark.parametrize("create_graph", [False, True])
def test_relu_gradient_is_zero_at_the_kink_in_either_backward(create_graph):
    x = _t([-1.0, 0.0, 2.0])
    (gx,) = npjem.grad(AF.relu(x).sum(), [x], create_graph=create_graph)
    np.testing.assert_array_equal(gx.data, [0.0, 0.0, 1.0])


@pytest.mark.parametrize("create_graph", [False, True])
def test_relu_masks_non_finite_incoming_gradients_in_either_backward(create_graph):
    x = _t([-1.0, 0.0, 2.0, 3.0])
    y = AF.relu(x)
    gy = npjem.Tensor(np.array([np.inf, np.nan, -np.inf, 1.5]))
    (gx,) = npjem.grad(y, [x], grad_outputs=[gy], create_graph=create_graph)
    np.testing.assert_array_equal(gx.data, [0.0, 0.0, -np.inf, 1.5])


def test_relu_of_a_scalar():
    for v, g in ((-2.0, 0.0), (0.0, 0.0), (3.0, 1.0)):
        x = _t(v)
        y = AF.relu(x)
        assert y.shape == () and float(y.data) == max(v, 0.0)
        y.backward()
        assert float(x.grad.data) == g


def test_relu_keeps_its_input_s_dtype_and_memory_layout():
    x = npjem.Tensor(np.asfortranarray(np.arange(-6.0, 6.0, dtype=np.float32).reshape(3, 4)),
                     requires_grad=True)  # wraps the array as it is laid out
    y = AF.relu(x)
    assert y.dtype == np.float32 and y.data.flags.f_contiguous
    y.backward(npjem.Tensor(np.ones((3, 4), dtype=np.float32)))
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad.data, (x.data > 0).astype(np.float32))


def test_linear_with_a_bias_of_another_dtype_promotes_like_numpy():
    rng = np.random.default_rng(0)
    x = npjem.tensor(rng.standard_normal((3, 4)).astype(np.float32), device="cpu")
    w = npjem.tensor(rng.standard_normal((2, 4)).astype(np.float32), device="cpu")
    b = npjem.tensor(np.array([1.0, -2.0]), device="cpu")  # float64
    y = AF.linear(x, w, b)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y.data, x.data @ w.data.T + b.data, rtol=1e-6)


@pytest.mark.parametrize("which", ["x", "w", "b"])
def test_linear_computes_the_gradients_asked_for_and_only_those(which):
    rng = np.random.default_rng(1)
    arrays = {"x": rng.standard_normal((2, 3, 4)), "w": rng.standard_normal((5, 4)), "b": rng.standard_normal(5)}
    ts = {k: _t(v, grad=(k == which)) for k, v in arrays.items()}
    y = AF.linear(ts["x"], ts["w"], ts["b"])
    y.backward(npjem.Tensor(np.ones(y.shape)))
    for k, t in ts.items():
        assert (t.grad is not None) == (k == which)
    gy = np.ones((2, 3, 5))
    expected = {"x": gy @ arrays["w"], "w": gy.reshape(-1, 5).T @ arrays["x"].reshape(-1, 4), "b": gy.sum((0, 1))}
    np.testing.assert_allclose(ts[which].grad.data, expected[which], rtol=1e-12)
