"""Barlow Twins and VICReg against independent PyTorch evaluations, values and gradients, float64.

The PyTorch versions are written the way the original code writes them (BatchNorm1d(affine=False)
in training mode and the flatten trick for the off-diagonal in Barlow Twins; torch.var and
F.mse_loss in VICReg), not transcribed from npjem.
"""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
TF = torch.nn.functional

from npjem.losses import barlow_twins, vicreg  # noqa: E402

from _torch_pair import both, compare  # noqa: E402

seeds = st.integers(0, 2**32 - 1)


def off_diagonal(x):
    n = x.shape[0]
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def barlow_original(a, b, lambd, scale):
    d = a.shape[1]
    bn = torch.nn.BatchNorm1d(d, affine=False).double().train()
    c = bn(a).T @ bn(b) / a.shape[0]
    on = torch.diagonal(c).add_(-1).pow_(2).sum()
    off = off_diagonal(c).pow_(2).sum()
    return scale * (on + lambd * off)


def vicreg_original(x, y, sim, std_c, cov_c, halve):
    n, d = x.shape
    repr_loss = TF.mse_loss(x, y)
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + 0.0001)
    std_y = torch.sqrt(y.var(dim=0) + 0.0001)
    f = 2 if halve else 1
    std_loss = torch.mean(TF.relu(1 - std_x)) / f + torch.mean(TF.relu(1 - std_y)) / f
    cov_x = (x.T @ x) / (n - 1)
    cov_y = (y.T @ y) / (n - 1)
    cov_loss = off_diagonal(cov_x).pow_(2).sum().div(d) + off_diagonal(cov_y).pow_(2).sum().div(d)
    return sim * repr_loss + std_c * std_loss + cov_c * cov_loss


@given(n=st.integers(2, 8), d=st.integers(1, 6), seed=seeds, lambd=st.sampled_from([5e-3, 0.0051, 0.3]),
       scale=st.sampled_from([1.0, 0.024]))
def test_barlow_twins_matches_torch(n, d, seed, lambd, scale):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    (ta, pa), (tb, pb) = both(a), both(b)
    compare(barlow_twins(ta, tb, lambd, scale=scale), barlow_original(pa, pb, lambd, scale), [ta, tb], [pa, pb])


@given(n=st.integers(2, 8), d=st.integers(1, 6), seed=seeds, spread=st.floats(0.1, 2.0),
       halve=st.booleans())
def test_vicreg_matches_torch(n, d, seed, spread, halve):
    rng = np.random.default_rng(seed)
    a, b = spread * rng.standard_normal((n, d)), spread * rng.standard_normal((n, d))
    for z in (a, b):
        assume(np.all(np.abs(np.sqrt(z.var(axis=0, ddof=1) + 1e-4) - 1) > 1e-6))
    (ta, pa), (tb, pb) = both(a), both(b)
    ours = vicreg(ta, tb, 25.0, 25.0, 1.0, halve_variance=halve).loss
    compare(ours, vicreg_original(pa, pb, 25.0, 25.0, 1.0, halve), [ta, tb], [pa, pb])
