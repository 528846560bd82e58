"""SimSiam, BYOL, DINO and Data2Vec against independent PyTorch evaluations, float64.

Each PyTorch version follows the original code's way of writing it (nn.CosineSimilarity and
.detach() in SimSiam, the JAX rsqrt normalisation in BYOL, DINO's cat/chunk loop, fairseq's
F.instance_norm / F.layer_norm targets and summed smooth-L1); values and gradients of the
non-target inputs are compared to 1e-10.
"""
import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
TF = torch.nn.functional

from npjem.losses import byol_loss, data2vec_loss, data2vec_targets, dino, simsiam_loss  # noqa: E402

from _torch_pair import TOL, both, compare  # noqa: E402

seeds = st.integers(0, 2**32 - 1)


@given(b=st.integers(1, 6), d=st.integers(1, 6), seed=seeds)
def test_simsiam_matches_torch(b, d, seed):
    rng = np.random.default_rng(seed)
    arrs = [rng.standard_normal((b, d)) for _ in range(4)]
    (p1, tp1), (p2, tp2), (z1, tz1), (z2, tz2) = (both(a) for a in arrs)
    crit = torch.nn.CosineSimilarity(dim=1)
    theirs = -(crit(tp1, tz2.detach()).mean() + crit(tp2, tz1.detach()).mean()) * 0.5
    compare(simsiam_loss(p1, p2, z1, z2), theirs, [p1, p2], [tp1, tp2])


@given(b=st.integers(1, 6), d=st.integers(1, 6), seed=seeds)
def test_byol_matches_torch(b, d, seed):
    rng = np.random.default_rng(seed)
    arrs = [rng.standard_normal((b, d)) for _ in range(4)]
    (p1, tp1), (p2, tp2), (z1, tz1), (z2, tz2) = (both(a) for a in arrs)

    def l2_normalize(x):  # the JAX helper: x * rsqrt(max(sum x², 1e-12))
        return x * torch.rsqrt(torch.clamp((x * x).sum(-1, keepdim=True), min=1e-12))

    def regression(p, t):
        return ((l2_normalize(p) - l2_normalize(t.detach())) ** 2).sum(-1)

    theirs = (regression(tp1, tz2) + regression(tp2, tz1)).mean()
    compare(byol_loss((p1, p2), (z1, z2)), theirs, [p1, p2], [tp1, tp2])


def dino_original(student, teacher, center, tau_s, tau_t):
    """facebookresearch/dino DINOLoss.forward, one device."""
    n_crops = len(student)
    student_out = (torch.cat(student) / tau_s).chunk(n_crops)
    teacher_out = TF.softmax((torch.cat(teacher) - center) / tau_t, dim=-1).detach().chunk(len(teacher))
    total, n = 0, 0
    for iq, q in enumerate(teacher_out):
        for v in range(len(student_out)):
            if v == iq:
                continue
            total = total + torch.sum(-q * TF.log_softmax(student_out[v], dim=-1), dim=-1).mean()
            n += 1
    return total / n


@given(b=st.integers(1, 5), k=st.integers(2, 8), n_crops=st.integers(2, 5), seed=seeds,
       tau_s=st.floats(0.05, 0.5), tau_t=st.floats(0.02, 0.1))
def test_dino_matches_torch(b, k, n_crops, seed, tau_s, tau_t):
    rng = np.random.default_rng(seed)
    pairs = [both(rng.standard_normal((b, k))) for _ in range(n_crops)]
    t = [rng.standard_normal((b, k)) for _ in range(2)]
    c = 0.5 * rng.standard_normal((1, k))
    ours = dino([p[0] for p in pairs], t, c, tau_s, tau_t)
    theirs = dino_original([p[1] for p in pairs], [torch.tensor(a) for a in t], torch.tensor(c), tau_s, tau_t)
    compare(ours, theirs, [p[0] for p in pairs], [p[1] for p in pairs])


@given(b=st.integers(1, 3), t=st.integers(2, 5), c=st.integers(1, 6), n_layers=st.integers(1, 4), seed=seeds,
       data=st.data())
def test_data2vec_targets_and_loss_match_torch(b, t, c, n_layers, seed, data):
    top_k = data.draw(st.integers(1, n_layers))
    inorm, lnorm, lnorm_t = data.draw(st.booleans()), data.draw(st.booleans()), data.draw(st.booleans())
    kind = data.draw(st.sampled_from(["mse", "smooth_l1"]))
    rng = np.random.default_rng(seed)
    layers = [rng.standard_normal((b, t, c)) * (1 + i) for i in range(n_layers)]
    # fairseq's make-targets (data2vec_audio.py), the layers given B x T x C
    tls = []
    for a in layers[-top_k:]:
        tl = torch.tensor(a)
        if inorm:
            tl = TF.instance_norm(tl.transpose(1, 2)).transpose(1, 2)
        if lnorm:
            tl = TF.layer_norm(tl, tl.shape[-1:])
        tls.append(tl)
    y_t = sum(tls) / len(tls)
    if lnorm_t:
        y_t = TF.layer_norm(y_t, y_t.shape[-1:])
    y = data2vec_targets(layers, top_k, instance_norm=inorm, layer_norm=lnorm, layer_norm_targets=lnorm_t)
    np.testing.assert_allclose(y.numpy(), y_t.numpy(), **TOL)

    mask = rng.random((b, t)) < 0.5
    assume(mask.any())
    x, tx = both(rng.standard_normal((b, t, c)))
    beta = 1.5
    d = (tx[torch.tensor(mask)] - y_t[torch.tensor(mask)]).abs()
    assume(bool(((d - beta).abs() > 1e-6).all()))
    if kind == "mse":
        per = TF.mse_loss(tx[torch.tensor(mask)], y_t[torch.tensor(mask)], reduction="none").sum(-1)
    else:
        per = TF.smooth_l1_loss(tx[torch.tensor(mask)], y_t[torch.tensor(mask)], reduction="none", beta=beta).sum(-1)
    theirs = per.sum() * (1 / math.sqrt(c)) / per.numel()
    compare(data2vec_loss(x, y, mask, loss=kind, beta=beta), theirs, [x], [tx])
