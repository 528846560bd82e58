"""Sinkhorn–Knopp and SwAV against an independent PyTorch evaluation, values and gradients, float64.

The PyTorch version is SwAV's own code (``distributed_sinkhorn`` on one device and the
crops-for-assign loop of ``main_swav.py``), re-typed, not transcribed from npjem.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
TF = torch.nn.functional

import npjem  # noqa: E402
from npjem import Tensor  # noqa: E402
from npjem.losses import sinkhorn_knopp, swav  # noqa: E402

TOL = dict(rtol=1e-10, atol=1e-10)
seeds = st.integers(0, 2**32 - 1)


@torch.no_grad()
def distributed_sinkhorn(out, epsilon, iters):
    q = torch.exp(out / epsilon).t()
    b = q.shape[1]
    k = q.shape[0]
    q /= torch.sum(q)
    for _ in range(iters):
        q /= torch.sum(q, dim=1, keepdim=True)
        q /= k
        q /= torch.sum(q, dim=0, keepdim=True)
        q /= b
    q *= b
    return q.t()


def swav_original(outputs, bs, n_crops, crops_for_assign, temperature, epsilon, iters):
    loss = 0
    for crop_id in crops_for_assign:
        with torch.no_grad():
            q = distributed_sinkhorn(outputs[bs * crop_id: bs * (crop_id + 1)].detach(), epsilon, iters)
        subloss = 0
        for v in np.delete(np.arange(n_crops), crop_id):
            x = outputs[bs * v: bs * (v + 1)] / temperature
            subloss -= torch.mean(torch.sum(q * TF.log_softmax(x, dim=1), dim=1))
        loss += subloss / (n_crops - 1)
    return loss / len(crops_for_assign)


@given(b=st.integers(1, 6), k=st.integers(1, 6), seed=seeds, eps=st.floats(0.03, 1.0), iters=st.integers(1, 6),
       log_domain=st.booleans())
def test_sinkhorn_matches_swavs_torch_code(b, k, seed, eps, iters, log_domain):
    s = np.random.default_rng(seed).uniform(-1, 1, (b, k))
    theirs = distributed_sinkhorn(torch.tensor(s), eps, iters).numpy()
    np.testing.assert_allclose(sinkhorn_knopp(s, eps, iters, log_domain=log_domain), theirs, rtol=1e-9, atol=1e-13)


@given(b=st.integers(1, 5), k=st.integers(2, 6), n_crops=st.integers(2, 5), seed=seeds, tau=st.floats(0.05, 0.5),
       data=st.data())
def test_swav_matches_swavs_torch_code(b, k, n_crops, seed, tau, data):
    n_assign = data.draw(st.integers(1, min(2, n_crops)))
    rng = np.random.default_rng(seed)
    scores = rng.uniform(-1, 1, (n_crops * b, k))
    ours_in = [Tensor(scores[v * b:(v + 1) * b].copy(), requires_grad=True) for v in range(n_crops)]
    theirs_in = torch.tensor(scores, requires_grad=True)
    codes = [sinkhorn_knopp(t.detach()) for t in ours_in[:n_assign]]
    ours = swav(ours_in, codes, tau)
    theirs = swav_original(theirs_in, b, n_crops, list(range(n_assign)), tau, 0.05, 3)
    np.testing.assert_allclose(ours.item(), theirs.item(), **TOL)
    # with one code crop of two, crop 0 only supplies the code: no gradient reaches its scores
    grads = npjem.grad(ours, ours_in, allow_unused=True)
    g_ours = np.concatenate([np.zeros((b, k)) if g is None else g.numpy() for g in grads])
    (g_theirs,) = torch.autograd.grad(theirs, [theirs_in])
    np.testing.assert_allclose(g_ours, g_theirs.numpy(), **TOL)
