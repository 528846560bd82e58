"""Second derivatives: gradgradcheck of the ops whose backward is built from Tensor ops, and
∇θ‖∇ₓf(x; θ)‖² (the score-matching / gradient-penalty pattern) against closed forms."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npjem
from npjem import backend
from npjem import functional as F
from npjem import testing as nt

DEVICE = backend.default_device()
pytestmark = pytest.mark.skipif(DEVICE != "cpu" and not backend.cupy_available(),
                                reason="NPJEM_DEVICE asks for a GPU that is not available")

SHAPES = nt.shapes(max_dims=3, max_side=3, max_size=18)
PAIRS = nt.broadcastable_pairs(max_dims=3, max_side=3)


def T(a, requires_grad=True):
    return npjem.tensor(np.asarray(a, dtype=np.float64), device=DEVICE, requires_grad=requires_grad)


def gradgrad(fn, *arrays, fixed=()):
    assert npjem.gradgradcheck(fn, [T(a) for a in arrays], fixed=fixed)


UNARY = {
    "exp": (npjem.exp, nt.arrays),
    "log": (npjem.log, nt.positive_arrays),
    "log1p": (npjem.log1p, lambda s: nt.arrays(s, min_value=-0.8)),
    "sqrt": (npjem.sqrt, nt.positive_arrays),
    "tanh": (npjem.tanh, nt.arrays),
    "sigmoid": (npjem.sigmoid, nt.arrays),
    "erf": (npjem.erf, nt.arrays),
    "cube": (lambda t: t ** 3, nt.arrays),
    "pow_frac": (lambda t: t ** -1.5, nt.positive_arrays),
    "square": (lambda t: t ** 2, nt.arrays),
    "reciprocal": (lambda t: 1.0 / t, nt.positive_arrays),
    "gelu": (F.gelu, nt.arrays),
    "gelu_tanh": (lambda t: F.gelu(t, approximate="tanh"), nt.arrays),
    "softplus": (F.softplus, nt.arrays),
    "silu": (F.silu, nt.arrays),
    "abs_times_x": (lambda t: abs(t) * t, lambda s: nt.arrays(s, elements=nt.values_away_from([0.0], 0.1))),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(data=st.data(), shape=SHAPES)
def test_elementwise_second_order(name, data, shape):
    fn, strategy = UNARY[name]
    gradgrad(fn, data.draw(strategy(shape), label="x"))


BINARY = {
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a ** b,
    "add_sq": lambda a, b: (a + b) * (a - b),
}


@pytest.mark.parametrize("op", sorted(BINARY))
@given(data=st.data(), shapes=PAIRS)
def test_binary_second_order_with_broadcasting(op, data, shapes):
    sa, sb = shapes
    a = data.draw(nt.positive_arrays(sa, min_value=0.3), label="a")
    b = data.draw(nt.positive_arrays(sb, min_value=0.3), label="b")
    gradgrad(BINARY[op], a, b)


@given(data=st.data(), dims=st.tuples(*[st.integers(1, 3)] * 4))
def test_matmul_second_order(data, dims):
    b, n, k, m = dims
    x = data.draw(nt.arrays((b, n, k)), label="x")
    w = data.draw(nt.arrays((k, m)), label="w")
    gradgrad(lambda u, v: npjem.tanh(u @ v), x, w)
    gradgrad(lambda u, v: (u @ v) * (u @ v), x, w)


@given(data=st.data(), shape=nt.shapes(min_dims=1, max_dims=3, max_side=3))
def test_softmax_logsumexp_second_order(data, shape):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    x = data.draw(nt.arrays(shape), label="x")
    gradgrad(lambda t: F.softmax(t, axis=axis), x)
    gradgrad(lambda t: F.log_softmax(t, axis=axis), x)
    gradgrad(lambda t: F.logsumexp(t, axis=axis), x)


@given(data=st.data(), shape=nt.shapes(min_dims=1, max_dims=3, max_side=3))
def test_normalize_cosine_second_order(data, shape):
    elems = nt.values_away_from([0.0], 0.2)
    a = data.draw(nt.arrays(shape, elements=elems), label="a")
    b = data.draw(nt.arrays(shape, elements=elems), label="b")
    gradgrad(lambda t: F.normalize(t, axis=-1), a)
    gradgrad(lambda u, v: F.cosine_similarity(u, v, axis=-1), a, b)


@given(data=st.data(), n=st.integers(1, 3), c=st.integers(2, 4))
def test_layer_norm_cross_entropy_second_order(data, n, c):
    x = data.draw(nt.distinct_arrays((n, c), min_gap=0.1), label="x")
    y = np.asarray(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    gradgrad(lambda t: F.layer_norm(t, (c,)), x)
    gradgrad(lambda t: F.cross_entropy(t, y, label_smoothing=0.1), x)


@given(data=st.data(), shape=nt.shapes(min_dims=1, max_dims=3, max_side=3))
def test_reductions_and_indexing_second_order(data, shape):
    x = data.draw(nt.distinct_arrays(shape), label="x") + 0.025  # off the grid: never 0
    gradgrad(lambda t: t.max(axis=-1) * t.sum(axis=0, keepdims=True).mean(), x)
    gradgrad(lambda t: (t * t).var(axis=-1) if shape[-1] > 1 else t.var() * t, x)
    idx = np.array([0, 0, shape[0] - 1])
    gradgrad(lambda t: t[idx] ** 2, x)
    gradgrad(lambda t: npjem.concatenate([t, t * t], axis=0).exp(), x)
    gradgrad(lambda t: npjem.where(t.data > 0, t * t, t ** 3), x)


# ------------------------------------------------------------------------ ∇θ ‖∇ₓ f‖² in closed form

@given(data=st.data(), n=st.integers(1, 4), batch=st.integers(1, 3))
def test_gradient_penalty_of_a_quadratic_matches_closed_form(data, n, batch):
    # f(x; A) = Σ_b x_bᵀ A x_b,  ∇ₓ f = x (A + Aᵀ)  (rows x_b),  L(A) = ‖x (A + Aᵀ)‖²_F.
    # With G = x (A + Aᵀ):  dL = 2⟨G, x (dA + dAᵀ)⟩ = 2⟨xᵀG, dA⟩ + 2⟨Gᵀx, dA⟩, so
    #   ∂L/∂A = 2 (xᵀ G + Gᵀ x).
    A_ = data.draw(nt.arrays((n, n)), label="A")
    x_ = data.draw(nt.arrays((batch, n)), label="x")
    A, x = T(A_), T(x_)
    f = ((x @ A) * x).sum()
    (gx,) = npjem.grad(f, [x], create_graph=True)
    G = x_ @ (A_ + A_.T)
    assert np.allclose(gx.numpy(), G)
    L = (gx * gx).sum()
    (gA,) = npjem.grad(L, [A])
    assert np.allclose(gA.numpy(), 2 * (x_.T @ G + G.T @ x_))
    assert A.grad is None and x.grad is None  # npjem.grad leaves .grad alone


@given(data=st.data(), n=st.integers(1, 3), d=st.integers(1, 3), h=st.integers(1, 3))
def test_gradient_penalty_of_tanh_layer_matches_closed_form(data, n, d, h):
    # f(x; θ) = Σ tanh(x θ), t = tanh(x θ), S = 1 − t²:  ∇ₓ f = P = S θᵀ,  L = ‖P‖²_F.
    # ∂P_ij/∂θ_kl = δ_jk S_il − 2 θ_jl t_il S_il x_ik, hence
    #   ∂L/∂θ = 2 Pᵀ S + 2 xᵀ ((P θ) ⊙ (−2 t S)).
    th_ = data.draw(nt.arrays((d, h), min_value=-1.5, max_value=1.5), label="theta")
    x_ = data.draw(nt.arrays((n, d), min_value=-1.5, max_value=1.5), label="x")
    th, x = T(th_), T(x_)
    (gx,) = npjem.grad(npjem.tanh(x @ th).sum(), [x], create_graph=True)
    t = np.tanh(x_ @ th_)
    S = 1 - t * t
    P = S @ th_.T
    assert np.allclose(gx.numpy(), P)
    (gth,) = npjem.grad((gx * gx).sum(), [th])
    want = 2 * P.T @ S + 2 * x_.T @ ((P @ th_) * (-2 * t * S))
    assert np.allclose(gth.numpy(), want)


def test_third_order_of_a_polynomial():
    # y = x⁴: y' = 4x³, y'' = 12x², y''' = 24x
    x = T([0.5, -2.0, 3.0])
    (g1,) = npjem.grad((x ** 4).sum(), [x], create_graph=True)
    (g2,) = npjem.grad(g1.sum(), [x], create_graph=True)
    (g3,) = npjem.grad(g2.sum(), [x])
    xs = np.array([0.5, -2.0, 3.0])
    assert np.allclose(g1.numpy(), 4 * xs ** 3)
    assert np.allclose(g2.numpy(), 12 * xs ** 2)
    assert np.allclose(g3.numpy(), 24 * xs)


def test_backward_with_create_graph_accumulates_a_differentiable_grad():
    x = T([1.0, 2.0])
    (x ** 3).sum().backward(create_graph=True)
    assert x.grad.requires_grad
    (h,) = npjem.grad(x.grad.sum(), [x])
    assert np.allclose(h.numpy(), [6.0, 12.0])
