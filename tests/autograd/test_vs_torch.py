"""Values, gradients and second derivatives of composite expressions against PyTorch (float64).

Each expression is written twice with the same names (npjem's F and torch's F), evaluated at
the same drawn float64 values and compared to 1e-10.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npjem
from npjem import backend
from npjem import functional as F
from npjem import testing as nt

torch = pytest.importorskip("torch")
TF = torch.nn.functional

DEVICE = backend.default_device()
pytestmark = pytest.mark.skipif(DEVICE != "cpu" and not backend.cupy_available(),
                                reason="NPJEM_DEVICE asks for a GPU that is not available")
TOL = {"rtol": 1e-10, "atol": 1e-10}


def ours(*arrays):
    return [npjem.tensor(a, device=DEVICE, requires_grad=True) for a in arrays]


def theirs(*arrays):
    return [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]


def compare(f_np, f_torch, arrays, seed=0):
    """Same value, and the same vᵀJ for a random v, from both libraries."""
    xs, ts = ours(*arrays), theirs(*arrays)
    y, yt = f_np(*xs), f_torch(*ts)
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), **TOL)
    v = np.random.default_rng(seed).standard_normal(y.shape)
    gs = npjem.grad(y, xs, grad_outputs=npjem.tensor(v, device=DEVICE))
    gts = torch.autograd.grad(yt, ts, grad_outputs=torch.tensor(v))
    for g, gt in zip(gs, gts):
        np.testing.assert_allclose(g.numpy(), gt.numpy(), **TOL)


@given(data=st.data(), n=st.integers(1, 4), d=st.integers(1, 4), c=st.integers(1, 4))
def test_log_softmax_of_matmul(data, n, d, c):
    x = data.draw(nt.arrays((n, d)), label="x")
    w = data.draw(nt.arrays((d, c)), label="w")
    compare(lambda a, b: F.log_softmax(a @ b, axis=1), lambda a, b: TF.log_softmax(a @ b, dim=1), [x, w])
    compare(lambda a, b: F.softmax(a @ b, axis=0), lambda a, b: TF.softmax(a @ b, dim=0), [x, w])


@given(data=st.data(), n=st.integers(1, 4), d=st.integers(1, 4))
def test_normalize_and_cosine_similarity(data, n, d):
    elems = nt.values_away_from([0.0], 0.1)
    a = data.draw(nt.arrays((n, d), elements=elems), label="a")
    b = data.draw(nt.arrays((n, d), elements=elems), label="b")
    compare(lambda u, v: F.normalize(u, axis=1) @ F.normalize(v, axis=1).T,
            lambda u, v: TF.normalize(u, dim=1) @ TF.normalize(v, dim=1).T, [a, b])
    compare(lambda u, v: F.cosine_similarity(u, v * 2.0 + 0.5, axis=1),
            lambda u, v: TF.cosine_similarity(u, v * 2.0 + 0.5, dim=1), [a, b])


@given(data=st.data(), n=st.integers(1, 3), d=st.integers(2, 5),
       approximate=st.sampled_from(["none", "tanh"]))
def test_layer_norm_then_gelu(data, n, d, approximate):
    x = data.draw(nt.distinct_arrays((n, d), min_gap=0.1), label="x")
    w = data.draw(nt.arrays((d,)), label="w")
    b = data.draw(nt.arrays((d,)), label="b")
    compare(lambda u, s, t: F.gelu(F.layer_norm(u, (d,), s, t), approximate=approximate),
            lambda u, s, t: TF.gelu(TF.layer_norm(u, (d,), s, t), approximate=approximate), [x, w, b])


@given(data=st.data(), shapes=nt.broadcastable_pairs(min_dims=1, max_dims=3, max_side=3),
       keepdims=st.booleans())
def test_logsumexp_with_broadcasting(data, shapes, keepdims):
    sa, sb = shapes
    a = data.draw(nt.arrays(sa, min_value=-20, max_value=20), label="a")
    b = data.draw(nt.arrays(sb), label="b")
    compare(lambda u, v: F.logsumexp(u * v, axis=-1, keepdims=keepdims),
            lambda u, v: torch.logsumexp(u * v, dim=-1, keepdim=keepdims), [a, b])


@given(data=st.data(), n=st.integers(1, 4), c=st.integers(2, 5), smoothing=st.sampled_from([0.0, 0.1]),
       reduction=st.sampled_from(["mean", "sum", "none"]))
def test_cross_entropy(data, n, c, smoothing, reduction):
    z = data.draw(nt.arrays((n, c), min_value=-5, max_value=5), label="logits")
    y = np.asarray(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n), label="labels"))
    compare(lambda u: F.cross_entropy(u, y, reduction=reduction, label_smoothing=smoothing),
            lambda u: TF.cross_entropy(u, torch.tensor(y), reduction=reduction, label_smoothing=smoothing), [z])
    q = data.draw(nt.positive_arrays((n, c)), label="soft")
    q = q / q.sum(axis=1, keepdims=True)
    compare(lambda u: F.cross_entropy(u, q, reduction=reduction, label_smoothing=smoothing),
            lambda u: TF.cross_entropy(u, torch.tensor(q), reduction=reduction, label_smoothing=smoothing), [z])


@given(data=st.data(), n=st.integers(1, 4), d=st.integers(1, 4))
def test_losses_and_activations(data, n, d):
    a = data.draw(nt.arrays((n, d), elements=nt.values_away_from([0.0], 0.05)), label="a")
    b = data.draw(nt.arrays((n, d), min_value=0, max_value=1), label="b")
    compare(lambda u, v: F.mse_loss(F.relu(u), v), lambda u, v: TF.mse_loss(TF.relu(u), v), [a, b])
    compare(lambda u, v: F.smooth_l1_loss(u, v, beta=0.5), lambda u, v: TF.smooth_l1_loss(u, v, beta=0.5), [a, b])
    compare(lambda u, v: F.binary_cross_entropy_with_logits(u, v),
            lambda u, v: TF.binary_cross_entropy_with_logits(u, v), [a, b])
    compare(lambda u: F.softplus(u, beta=2.0) + F.leaky_relu(u, 0.1) + npjem.sigmoid(u) * npjem.erf(u),
            lambda u: TF.softplus(u, beta=2.0) + TF.leaky_relu(u, 0.1) + torch.sigmoid(u) * torch.erf(u), [a])
    compare(lambda u: u.var(axis=0, ddof=1) + u.std(axis=1).sum() if n > 1 else u.var(),
            lambda u: u.var(dim=0, correction=1) + u.std(dim=1, correction=0).sum() if n > 1
            else u.var(correction=0), [a])


def test_max_ties_split_like_amax():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    compare(lambda u: u.max(axis=1), lambda u: torch.amax(u, dim=1), [x])
    compare(lambda u: npjem.maximum(u, 2.0), lambda u: torch.maximum(u, torch.tensor(2.0, dtype=torch.float64)), [x])


@given(data=st.data(), n=st.integers(1, 3), d=st.integers(1, 3), h=st.integers(1, 3))
def test_second_derivatives_of_a_small_energy(data, n, d, h):
    # E(x; W) = Σ logsumexp(tanh(x W)) ;  L(W) = ‖∇ₓE‖²  (a gradient penalty / score term)
    x = data.draw(nt.arrays((n, d)), label="x")
    w = data.draw(nt.arrays((d, h)), label="w")
    (xn, wn), (xt, wt) = ours(x, w), theirs(x, w)
    gx = npjem.grad(F.logsumexp(npjem.tanh(xn @ wn), axis=1).sum(), [xn], create_graph=True)[0]
    gxt = torch.autograd.grad(torch.logsumexp(torch.tanh(xt @ wt), dim=1).sum(), [xt], create_graph=True)[0]
    np.testing.assert_allclose(gx.numpy(), gxt.detach().numpy(), **TOL)
    pen, pent = (gx * gx).sum(), (gxt * gxt).sum()
    gw, gx2 = npjem.grad(pen, [wn, xn])
    gwt, gx2t = torch.autograd.grad(pent, [wt, xt])
    np.testing.assert_allclose(gw.numpy(), gwt.numpy(), **TOL)
    np.testing.assert_allclose(gx2.numpy(), gx2t.numpy(), **TOL)
