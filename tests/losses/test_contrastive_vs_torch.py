"""npjem's contrastive losses against independent PyTorch evaluations, value and gradients, float64.

Each PyTorch version below is written the way the original code writes it (SimCLR's masked
logits with LARGE_NUM and F.cross_entropy, MoCo's [l_pos, l_neg] logits with label 0, vissl's
raw-exp NCE criterion), not as a transcription of npjem's log-domain code.
"""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
TF = torch.nn.functional

import npjem  # noqa: E402
from npjem import Tensor  # noqa: E402
from npjem.losses import info_nce, moco_loss, nce_loss, nce_memory_loss, pair_margin_loss  # noqa: E402

TOL = dict(rtol=1e-10, atol=1e-10)
seeds = st.integers(0, 2**32 - 1)
temps = st.floats(0.05, 2.0)


def both(arr):
    """The same float64 data as an npjem leaf and a torch leaf."""
    return Tensor(arr.copy(), requires_grad=True), torch.tensor(arr, dtype=torch.float64, requires_grad=True)


def compare(ours, theirs, our_inputs, their_inputs):
    np.testing.assert_allclose(ours.item(), theirs.item(), **TOL)
    g_ours = npjem.grad(ours, our_inputs)
    g_theirs = torch.autograd.grad(theirs, their_inputs)
    for go, gt in zip(g_ours, g_theirs):
        np.testing.assert_allclose(go.numpy(), gt.numpy(), **TOL)


# ---------------------------------------------------------------- SimCLR / NT-Xent

LARGE_NUM = 1e9


def simclr_original(a, b, tau):
    """google-research/simclr ``add_contrastive_loss`` (hidden_norm=True), re-typed in PyTorch."""
    h1, h2 = TF.normalize(a, dim=1), TF.normalize(b, dim=1)
    n = h1.shape[0]
    labels = torch.arange(n)
    masks = torch.eye(n, dtype=torch.float64)
    logits_aa = h1 @ h1.T / tau - masks * LARGE_NUM
    logits_bb = h2 @ h2.T / tau - masks * LARGE_NUM
    logits_ab = h1 @ h2.T / tau
    logits_ba = h2 @ h1.T / tau
    loss_a = TF.cross_entropy(torch.cat([logits_ab, logits_aa], 1), labels)
    loss_b = TF.cross_entropy(torch.cat([logits_ba, logits_bb], 1), labels)
    return loss_a + loss_b


def ntxent_general(a, b, tau, directions, intra, include_self, normalize):
    """2N × 2N similarity matrix, self entries dropped by a boolean mask (lightly's style)."""
    if normalize:
        a, b = TF.normalize(a, dim=1), TF.normalize(b, dim=1)
    n = a.shape[0]
    z = torch.cat([a, b], 0)
    sim = z @ z.T / tau
    keep = torch.ones(2 * n, 2 * n, dtype=torch.bool)
    if not include_self:
        keep.fill_diagonal_(False)
    if not intra:
        keep[:n, :n] = False
        keep[n:, n:] = False
    pos_col = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    rows = range(n) if directions == "x_to_y" else range(2 * n)
    per = torch.stack([torch.logsumexp(sim[i][keep[i]], 0) - sim[i, pos_col[i]] for i in rows])
    if directions == "x_to_y":
        return per.mean()
    per = per[:n] + per[n:]
    return per.mean() if directions == "sum" else (per / 2).mean()


@given(n=st.integers(2, 6), d=st.integers(2, 6), tau=temps, seed=seeds)
def test_info_nce_default_is_simclr_original_code(n, d, tau, seed):
    rng = np.random.default_rng(seed)
    (a, ta), (b, tb) = both(rng.standard_normal((n, d))), both(rng.standard_normal((n, d)))
    compare(info_nce(a, b, tau), simclr_original(ta, tb, tau), [a, b], [ta, tb])


@given(n=st.integers(2, 6), d=st.integers(2, 6), tau=temps, seed=seeds,
       directions=st.sampled_from(["sum", "mean", "x_to_y"]), intra=st.booleans(),
       include_self=st.booleans(), normalize=st.booleans())
def test_info_nce_conventions_match_a_masked_similarity_matrix(n, d, tau, seed, directions, intra,
                                                               include_self, normalize):
    include_self = include_self and intra
    rng = np.random.default_rng(seed)
    scale = 1.0 if normalize else 1.0 / np.sqrt(d)
    (a, ta), (b, tb) = both(scale * rng.standard_normal((n, d))), both(scale * rng.standard_normal((n, d)))
    ours = info_nce(a, b, tau, directions=directions, intra_view_negatives=intra,
                    include_self=include_self, normalize=normalize)
    theirs = ntxent_general(ta, tb, tau, directions, intra, include_self, normalize)
    compare(ours, theirs, [a, b], [ta, tb])


@given(n=st.integers(2, 6), d=st.integers(2, 6), tau=temps, seed=seeds)
def test_info_nce_matches_moco_v3_ctr(n, d, tau, seed):
    """moco-v3 builder: ctr(q, k) = CE(q kᵀ / T, arange) · 2T with k stop-gradient."""
    rng = np.random.default_rng(seed)
    (q1, tq1), (q2, tq2) = both(rng.standard_normal((n, d))), both(rng.standard_normal((n, d)))
    k1, k2 = rng.standard_normal((n, d)), rng.standard_normal((n, d))

    def ctr(q, k):
        q, k = TF.normalize(q, dim=1), TF.normalize(k, dim=1)
        return TF.cross_entropy(q @ k.T / tau, torch.arange(q.shape[0])) * (2 * tau)

    theirs = ctr(tq1, torch.tensor(k2)) + ctr(tq2, torch.tensor(k1))
    kw = dict(directions="x_to_y", intra_view_negatives=False)
    ours = 2 * tau * (info_nce(q1, Tensor(k2), tau, **kw) + info_nce(q2, Tensor(k1), tau, **kw))
    compare(ours, theirs, [q1, q2], [tq1, tq2])


# ---------------------------------------------------------------- MoCo

@given(n=st.integers(1, 5), d=st.integers(2, 6), k=st.integers(1, 10), tau=temps, seed=seeds)
def test_moco_loss_matches_moco_builder(n, d, k, tau, seed):
    rng = np.random.default_rng(seed)
    (q, tq) = both(rng.standard_normal((n, d)))
    key = rng.standard_normal((n, d))
    queue_dk = TF.normalize(torch.tensor(rng.standard_normal((d, k))), dim=0)  # MoCo's (dim, K) buffer
    tqn = TF.normalize(tq, dim=1)
    with torch.no_grad():
        tk = TF.normalize(torch.tensor(key), dim=1)
    l_pos = torch.einsum("nc,nc->n", tqn, tk).unsqueeze(-1)
    l_neg = torch.einsum("nc,ck->nk", tqn, queue_dk.clone().detach())
    theirs = TF.cross_entropy(torch.cat([l_pos, l_neg], 1) / tau, torch.zeros(n, dtype=torch.long))
    ours = moco_loss(q, Tensor(key, requires_grad=True), Tensor(queue_dk.numpy().T.copy()), tau)
    compare(ours, theirs, [q], [tq])


# ---------------------------------------------------------------- pair margin

@given(n=st.integers(1, 6), d=st.integers(2, 6), seed=seeds, margin=st.floats(0.2, 3.0),
       distance=st.sampled_from(["euclidean", "cosine"]))
def test_pair_margin_matches_hadsell_chopra_lecun(n, d, seed, margin, distance):
    rng = np.random.default_rng(seed)
    (a, ta), (b, tb) = both(rng.standard_normal((n, d))), both(rng.standard_normal((n, d)))
    similar = rng.random(n) < 0.5
    y = torch.tensor(~similar, dtype=torch.float64)  # the paper's Y: 1 for a dissimilar pair
    if distance == "euclidean":
        dw = torch.linalg.vector_norm(ta - tb, dim=1)
    else:
        dw = 1 - TF.cosine_similarity(ta, tb, dim=1)
    assume(bool(torch.all((dw - margin).abs() > 1e-6)))
    theirs = ((1 - y) * 0.5 * dw ** 2 + y * 0.5 * torch.clamp(margin - dw, min=0) ** 2).mean()
    ours = pair_margin_loss(a, b, similar, margin=margin, distance=distance)
    compare(ours, theirs, [a, b], [ta, tb])


def test_pair_margin_coincident_negative_has_torch_vector_norm_gradient():
    x = np.array([[0.3, -1.2, 2.0]])
    (a, ta), (b, tb) = both(x), both(x)
    theirs = 0.5 * torch.clamp(1.5 - torch.linalg.vector_norm(ta - tb, dim=1), min=0).pow(2).sum()
    compare(pair_margin_loss(a, b, [False], margin=1.5), theirs, [a, b], [ta, tb])


# ---------------------------------------------------------------- PIRL NCE (vissl)

def vissl_nce_criterion(x, n_lem, eps):
    """vissl/lemniscate NCECriterion on scores x = exp(s/T)/Z of shape (B, K+1)."""
    k = x.shape[1] - 1
    pn = 1.0 / n_lem
    ln_pmt = torch.log(x[:, 0] / (x[:, 0] + k * pn + eps))
    ln_pon = torch.log((k * pn) / (x[:, 1:] + k * pn + eps))
    return -(ln_pmt.sum(0) + ln_pon.reshape(-1).sum(0)) / x.shape[0]


def vissl_scores(emb, memory, idx, tau, z):
    """NCEAverage: bmm of the sampled memory rows with the normalised embedding."""
    e = TF.normalize(emb, dim=1, p=2)
    w = torch.index_select(memory, 0, idx.view(-1)).detach().view(emb.shape[0], idx.shape[1], -1)
    out = torch.bmm(w, e.unsqueeze(2)).squeeze(2) / tau
    return torch.exp(out) / z


@given(b=st.integers(1, 4), d=st.integers(2, 6), k=st.integers(1, 8), tau=st.floats(0.05, 1.0), seed=seeds,
       lam=st.floats(0, 1), use_z=st.booleans())
def test_pirl_nce_loss_matches_vissl(b, d, k, tau, seed, lam, use_z):
    rng = np.random.default_rng(seed)
    size = 40
    memory = TF.normalize(torch.tensor(rng.uniform(-1, 1, (size, d))), dim=1)
    y = torch.tensor(rng.choice(size, b, replace=False))
    idx = torch.tensor(rng.integers(0, size, (b, k + 1)))
    idx[:, 0] = y                                                  # vissl: column 0 is the sample itself
    (f, tf), (g, tg) = both(rng.standard_normal((b, d))), both(rng.standard_normal((b, d)))
    eps = float(np.finfo(np.float32).eps)
    z = 3.7 * size if use_z else 1.0
    # vissl pirl config: loss_weights [0.5, 0.5] over [patches, image]; general λ here.
    theirs = (lam * vissl_nce_criterion(vissl_scores(tg, memory, idx, tau, z), size, eps)
              + (1 - lam) * vissl_nce_criterion(vissl_scores(tf, memory, idx, tau, z), size, eps))
    mem = memory.numpy()
    ours = nce_loss(f, g, Tensor(mem[y.numpy()]), Tensor(mem[idx[:, 1:].numpy()]), dataset_size=size,
                    temperature=tau, lam=lam, normalizer=z, eps=eps)
    compare(ours, theirs, [f, g], [tf, tg])
    single = nce_memory_loss(f, Tensor(mem[y.numpy()]), Tensor(mem[idx[:, 1:].numpy()]), dataset_size=size,
                             temperature=tau, normalizer=z, eps=eps)
    compare(single, vissl_nce_criterion(vissl_scores(tf, memory, idx, tau, z), size, eps), [f], [tf])
