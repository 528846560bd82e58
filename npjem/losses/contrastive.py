"""Contrastive joint-embedding losses: pair margin, InfoNCE / NT-Xent, PIRL's NCE, MoCo.

Notation follows the NYU Deep Learning notes, ch. 8-1 "Contrastive Methods in Energy-Based Models",
and ch. 15-1 "Joint Embedding Methods — Contrastive": a batch of N positive pairs
(x_n, y_n) is embedded as rows h_x^n, h_y^n of H_x, H_y ∈ R^{N×d}; sim(a, b) = aᵀb / (‖a‖‖b‖)
is the cosine similarity, β = 1/τ the inverse temperature, and each loss is read as an energy
model with energy D(h_x, h_y) = −β sim(h_x, h_y): contrastive methods push the energy of the
positive pair down and the energy of the negative pairs up.

Every function takes Tensors (or arrays), returns a scalar Tensor (or per-sample Tensor with
``reduction="none"``), validates its inputs at the boundary, and is written stably (log-sum-exp
with the max subtracted, softplus in place of log(1 + exp)). The conventions in which the
implementations in the field differ are parameters, and each docstring has a table of the
calls that reproduce the original code, lightly (1.6.0) and solo-learn (9187ea3).

Stop-gradient inputs (MoCo's keys and queue, memory-bank rows) are detached inside the loss,
as the original code does (they are computed under ``no_grad`` or kept in a buffer).
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from ._inputs import as_float_tensor, like, matrix
from .._checks import check_choice, check_int, check_positive, check_probability
from ..autograd import functional as F
from ..autograd import ops
from ..autograd.tensor import Tensor

__all__ = ["pair_margin_loss", "info_nce", "nt_xent", "moco_loss", "nce_loss", "nce_memory_loss",
           "nce_normalizer"]


# ---------------------------------------------------------------- helpers

def _reduce(loss, reduction):
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _rowdot(a, b):
    """Σ_k a_ik b_ik for each row i: shape (N,)."""
    return (a * b).sum(axis=1)


# ---------------------------------------------------------------- pair margin (DrLIM)

def pair_margin_loss(h_x, h_y, is_positive, margin=1.0, distance="euclidean", reduction="mean",
                     eps=0.0):
    r"""The margin loss of Hadsell, Chopra & LeCun (2006, "DrLIM") on pairs of embeddings.

    For each pair n with distance D_n = D(h_x^n, h_y^n)::

        ℓ_n = ½ D_n²                  if (x_n, y_n) is a positive (similar) pair
        ℓ_n = ½ max(0, m − D_n)²      if it is a negative (dissimilar) pair

    The energy of a positive pair is pushed down to 0; a negative pair is pushed up until its
    distance reaches the margin m and is left alone beyond it (zero loss and zero gradient).

    This is the hinge loss on pairs, in LeCun et al.'s (2006) terms: the energy is the distance,
    a positive pair gives the correct answer's energy E_C = D⁺, a negative pair the offending
    answer's E_I = D⁻, and one of each costs ½ (E_C² + max(0, m − E_I)²), i.e. ½ of the
    square-square functional :func:`npjem.losses.square_square` (a squared hinge with margin m;
    :func:`npjem.losses.hinge` is its unsquared form on the energy gap).

    The ½ factors are in the original (the paper's exact loss:
    L = (1−Y) ½ D_W² + Y ½ {max(0, m − D_W)}², where the paper's Y = 1 marks a *dissimilar*
    pair; here ``is_positive`` is True for a similar pair, i.e. ``is_positive = (Y == 0)``).
    The paper sums over pairs; ``reduction="mean"`` (the default here, as in PyTorch) averages.

    Args:
        h_x, h_y: (N, d) embeddings of the two sides of each pair.
        is_positive: (N,) booleans (or 0/1 numbers), True for a similar pair.
        margin: m > 0 (default 1; for the cosine distance, D ∈ [0, 2]).
        distance: ``"euclidean"``: D = ‖h_x − h_y‖₂ (the paper), or ``"cosine"``:
            D = 1 − sim(h_x, h_y) ∈ [0, 2], with each norm clamped at 1e-8 as in
            ``torch.nn.functional.cosine_similarity``.
        reduction: ``"mean"`` | ``"sum"`` over pairs, or ``"none"`` for the (N,) losses.
        eps: Euclidean only: D = sqrt(‖h_x − h_y‖² + eps). With the default eps = 0 the value
            is exact and the gradient of a negative pair at D = 0 (coincident embeddings) is
            taken as 0, the convention of ``torch.linalg.vector_norm`` (the minimum-norm
            subgradient), so no NaN appears. Positive pairs use ½‖h_x − h_y‖² directly (no
            square root), so their gradient is exact everywhere.

    Matching other code::

        | code                                            | call                                     |
        |-------------------------------------------------|------------------------------------------|
        | the paper, summed over pairs                    | reduction="sum"                          |
        | D² + max(0, m − D)² without the ½ (many repos)  | 2 * pair_margin_loss(...)                |
        | D = F.pairwise_distance(a, b) (eps=1e-6 added   | not exact: torch computes ‖a − b + 1e-6‖,|
        |   to the difference, not to the square)         | which shifts D by ≈ 1e-6·Σ(a−b)/D        |
        | torch.norm(a − b, dim=1)                        | distance="euclidean", eps=0 (default)    |
    """
    h_x = matrix("h_x", h_x)
    h_y = matrix("h_y", h_y)
    like("h_y", h_y, "h_x", h_x, shape=h_x.shape)
    n = h_x.shape[0]
    if n < 1:
        raise ValueError("pair_margin_loss needs at least one pair, got N = 0")
    margin = check_positive(margin, "margin")
    eps = check_positive(eps, "eps", allow_zero=True)
    check_choice(distance, "distance", ("euclidean", "cosine"))
    check_choice(reduction, "reduction", ("mean", "sum", "none"))
    xp = h_x.xp

    lab = is_positive.data if isinstance(is_positive, Tensor) else is_positive
    if not backend.is_array(lab) or backend.get_array_module(lab) is not xp:
        lab = backend.to_device(backend.to_numpy(lab), h_x.device)  # lists and other-device flags
    if lab.shape != (n,):
        raise ValueError(f"is_positive must have shape ({n},) (one flag per pair), got {tuple(lab.shape)}")
    if lab.dtype != bool:
        if lab.dtype.kind not in "iuf" or bool(xp.any((lab != 0) & (lab != 1))):
            raise ValueError(f"is_positive must hold booleans or 0/1 values, got dtype {lab.dtype}")
        lab = lab != 0
    pos = Tensor(lab)

    if distance == "euclidean":
        diff = h_x - h_y
        sq = (diff * diff).sum(axis=1)
        if eps:
            sq = sq + eps
        zero = sq.data == 0
        # sqrt is evaluated on a safe value at D = 0 so that its backward never forms inf·0.
        d = ops.where(zero, 0.0, ops.sqrt(ops.where(zero, 1.0, sq)))
        pos_term = sq * 0.5
    else:
        d = 1.0 - F.cosine_similarity(h_x, h_y, axis=1, eps=1e-8)
        pos_term = d * d * 0.5
    hinge = F.relu(margin - d)
    neg_term = hinge * hinge * 0.5
    return _reduce(ops.where(pos, pos_term, neg_term), reduction)


# ---------------------------------------------------------------- InfoNCE / NT-Xent

def info_nce(h_x, h_y, temperature=0.1, *, directions="sum", intra_view_negatives=True,
             include_self=False, normalize=True, reduction="mean"):
    r"""InfoNCE / NT-Xent (SimCLR) on a batch of N positive pairs (h_x^n, h_y^n).

    The defaults give SimCLR's loss (both directions summed, the self-similarity left out of
    the denominator), not the notes' formula below; the notes' single-direction form, self-term
    included, is ``info_nce(h_x, h_y, τ, directions="x_to_y", include_self=True)``.

    Ch. 15-1 of the NYU notes ("Joint Embedding Methods — Contrastive", section "The InfoNCE loss
    function") writes it for one anchor h_x with positive h_y (β = 1/τ)::

        L = −β sim(h_x, h_y) + log[ Σ_{n=1}^{N} exp(β sim(h_x, h_x^n)) + Σ_{n=1}^{N} exp(β sim(h_x, h_y^n)) ]

    where both sums run over *all* n, so the denominator holds 2N terms, among them the
    anchor's similarity with itself, exp(β sim(h_x, h_x)) = exp(β), and the positive.

    SimCLR (google-research/simclr, ``objective.py``) differs in one term: the self-similarity
    is removed (its logit is set to −1e9, i.e. exp(·) = 0), so each anchor i has 2N − 1 terms in
    its denominator: the positive, N − 1 cross-view negatives sim(h_x^i, h_y^j) and N − 1
    same-view ("intra-view") negatives sim(h_x^i, h_x^j), j ≠ i (2N − 2 negatives in all)::

        ℓ_x(i) = −β s(x_i, y_i) + log[ Σ_j exp β s(x_i, y_j) + Σ_{j≠i} exp β s(x_i, x_j) ]
        ℓ_y(i) = the same with x and y swapped
        L      = mean_i ℓ_x(i) + mean_i ℓ_y(i)             (SimCLR sums its two directions)

    This function computes ℓ_x(i) = logsumexp(row i of the masked logits) − (positive logit),
    which is exact and finite in float32 even for τ = 0.01 and row norms of 1e4.

    Args:
        h_x, h_y: (N, d) embeddings of the two views, N ≥ 2; row n of each is a positive pair.
        temperature: τ > 0 (β = 1/τ). SimCLR's default is 0.1.
        directions: how the two directions are combined per sample:
            ``"sum"``: ℓ_x(i) + ℓ_y(i) (SimCLR's original code, the default);
            ``"mean"``: (ℓ_x(i) + ℓ_y(i)) / 2 (lightly ``NTXentLoss``, solo-learn);
            ``"x_to_y"``: ℓ_x(i) only (anchors from h_x, the notes' single-anchor form, MoCo v3's
            ``ctr``).
        intra_view_negatives: when False, only the N cross-view similarities are in each
            denominator (the positive and N − 1 negatives: CLIP, MoCo v3).
        include_self: when True the self-similarity stays in the denominator (2N terms), the
            notes' formula literally; it needs ``intra_view_negatives=True``.
        normalize: L2-normalise the rows first (s = cosine similarity), clamping each norm at
            1e-12 as ``torch.nn.functional.normalize``. With False, s is the raw dot product.
        reduction: ``"mean"`` | ``"sum"`` over the N samples, or ``"none"`` for the (N,) losses.

    Returns a scalar Tensor (or (N,) with ``reduction="none"``). When all 2N embeddings are
    equal every logit is equal and ℓ = log(2N − 1) per direction (log(2N) with
    ``include_self``; log N without intra-view negatives).

    Matching other code::

        | code                                          | call                                              |
        |-----------------------------------------------|---------------------------------------------------|
        | SimCLR original (TF), temperature 0.1         | info_nce(a, b, 0.1)                               |
        | lightly NTXentLoss() (τ default 0.5)          | info_nce(a, b, 0.5, directions="mean")            |
        | solo-learn simclr_loss_func, 2 views          | info_nce(a, b, τ, directions="mean")              |
        | the notes (ch. 15-1), one anchor per pair     | info_nce(a, b, τ, directions="x_to_y",            |
        |                                               |          include_self=True)                       |
        | CLIP (L2-normalised, (loss_i + loss_t) / 2)   | info_nce(a, b, τ, directions="mean",              |
        |                                               |          intra_view_negatives=False)              |
        | MoCo v3 ctr(q1, k2) + ctr(q2, k1), each ×2τ   | 2*τ*(c(q1, k2.detach()) + c(q2, k1.detach())),    |
        |   (keys from the momentum encoder, no grad)   |   c = info_nce(·, ·, τ, directions="x_to_y",      |
        |                                               |               intra_view_negatives=False)         |
        | lightly NTXentLoss(memory_bank_size=K)        | moco_loss(a, b, bank, 0.5): one direction, no x–x |
    """
    h_x = matrix("h_x", h_x)
    h_y = matrix("h_y", h_y)
    like("h_y", h_y, "h_x", h_x, shape=h_x.shape)
    n = h_x.shape[0]
    if n < 2:
        raise ValueError(f"info_nce needs N >= 2 pairs (the negatives come from the batch), "
                         f"got h_x of shape {tuple(h_x.shape)}")
    tau = check_positive(temperature, "temperature")
    check_choice(directions, "directions", ("sum", "mean", "x_to_y"))
    check_choice(reduction, "reduction", ("mean", "sum", "none"))
    if include_self and not intra_view_negatives:
        raise ValueError("include_self=True needs intra_view_negatives=True "
                         "(the self-similarity is an intra-view term)")
    xp = h_x.xp

    u_x = F.normalize(h_x, axis=1) if normalize else h_x
    u_y = F.normalize(h_y, axis=1) if normalize else h_y
    pos = _rowdot(u_x, u_y) / tau                       # (N,): β s(x_i, y_i)
    l_xy = ops.matmul(u_x, u_y.T) / tau                 # (N, N): β s(x_i, y_j)
    eye = xp.eye(n, dtype=bool)

    def intra(u):
        l_uu = ops.matmul(u, u.T) / tau
        # −inf removes the self term exactly (SimCLR's −1e9 gives the same exp(·) = 0).
        return l_uu if include_self else ops.where(eye, -np.inf, l_uu)

    if intra_view_negatives:
        lse_x = F.logsumexp(ops.concatenate([l_xy, intra(u_x)], axis=1), axis=1)
    else:
        lse_x = F.logsumexp(l_xy, axis=1)
    loss = lse_x - pos
    if directions != "x_to_y":
        if intra_view_negatives:
            lse_y = F.logsumexp(ops.concatenate([l_xy.T, intra(u_y)], axis=1), axis=1)
        else:
            lse_y = F.logsumexp(l_xy, axis=0)
        loss = loss + (lse_y - pos)
        if directions == "mean":
            loss = loss * 0.5
    return _reduce(loss, reduction)


def nt_xent(h_x, h_y, temperature=0.1, **kwargs):
    """NT-Xent, SimCLR's name for :func:`info_nce` (same arguments and defaults)."""
    return info_nce(h_x, h_y, temperature, **kwargs)


# ---------------------------------------------------------------- MoCo

def moco_loss(q, k, queue, temperature=0.2, *, normalize=True, reduction="mean"):
    r"""MoCo's InfoNCE: each query against its key (the positive) and a queue of K negatives.

    With q_i the query (online encoder), k_i its key (momentum encoder) and κ_1 … κ_K the
    queued keys of earlier batches (MoCo v1, ``moco/builder.py``)::

        ℓ_i = −log  exp(q_i·k_i / τ) / ( exp(q_i·k_i / τ) + Σ_{n=1}^{K} exp(q_i·κ_n / τ) )

    i.e. cross-entropy over the logits [q_i·k_i, q_i·κ_1, …, q_i·κ_K] / τ with label 0.
    The key and the queue are stop-gradient: ``k`` and ``queue`` are detached here, so the
    gradient reaches ``q`` only (MoCo computes keys under ``no_grad`` and the queue is a buffer).

    Args:
        q: (N, d) queries.
        k: (N, d) keys, row i the positive of query i.
        queue: (K, d) negatives, one key per **row** (lightly's layout and
            :class:`npjem.state.Queue`); MoCo's own buffer is (d, K): pass ``queue.T``.
        temperature: τ > 0. MoCo v1: 0.07; MoCo v2 (``--moco-t 0.2``): 0.2, the default here.
        normalize: L2-normalise q and k (F.normalize, norm clamped at 1e-12), as MoCo's model
            does before the loss. The queue is used as given: it holds keys that were
            normalised when they were enqueued (and MoCo normalises its random initial queue).
        reduction: ``"mean"`` | ``"sum"`` over the N queries, or ``"none"`` for (N,) losses.

    Matching other code::

        | code                                             | call                                          |
        |--------------------------------------------------|-----------------------------------------------|
        | MoCo v1 (T=0.07, queue buffer (d, K))            | moco_loss(q, k, queue.T, 0.07)                |
        | MoCo v2                                          | moco_loss(q, k, queue.T, 0.2)                 |
        | lightly NTXentLoss(memory_bank_size=(K, d))      | moco_loss(out0, out1, bank, 0.5)              |
        |   (lightly does not detach out1: same value)     |                                               |
        | solo-learn MoCo V2+ (two queues, averaged)       | (moco_loss(q1, k2, Q2, τ)                     |
        |                                                  |  + moco_loss(q2, k1, Q1, τ)) / 2              |
    """
    q = matrix("q", q)
    k = matrix("k", k)
    like("k", k, "q", q, shape=q.shape)
    queue = matrix("queue", queue, what="(K, D)")
    d = q.shape[1]
    if queue.shape[1] != d:
        hint = " (MoCo's buffer is (d, K): pass queue.T)" if queue.shape[0] == d else ""
        raise ValueError(f"queue must have shape (K, {d}) (one negative key per row), got {tuple(queue.shape)}{hint}")
    like("queue", queue, "q", q)
    if q.shape[0] < 1:
        raise ValueError("moco_loss needs at least one query, got N = 0")
    if queue.shape[0] < 1:
        raise ValueError("queue must hold at least one negative key (K >= 1), got K = 0")
    tau = check_positive(temperature, "temperature")
    check_choice(reduction, "reduction", ("mean", "sum", "none"))

    k, queue = k.detach(), queue.detach()
    if normalize:
        q, k = F.normalize(q, axis=1), F.normalize(k, axis=1)
    l_pos = ops.unsqueeze(_rowdot(q, k), 1)             # (N, 1)
    l_neg = ops.matmul(q, queue.T)                       # (N, K)
    logits = ops.concatenate([l_pos, l_neg], axis=1) / tau
    loss = F.logsumexp(logits, axis=1) - logits[:, 0]
    return _reduce(loss, reduction)


# ---------------------------------------------------------------- PIRL / NPID NCE with a memory bank

def _nce_inputs(name, v, memory_pos, memory_neg):
    v = matrix(name, v, what="(B, D)")
    b, d = v.shape
    memory_pos = as_float_tensor("memory_pos", memory_pos)
    like("memory_pos", memory_pos, name, v, shape=(b, d))
    memory_neg = as_float_tensor("memory_neg", memory_neg)
    if memory_neg.ndim == 2:
        ok = memory_neg.shape[1] == d
    elif memory_neg.ndim == 3:
        ok = memory_neg.shape[0] == b and memory_neg.shape[2] == d
    else:
        ok = False
    if not ok:
        raise ValueError(f"memory_neg must have shape (K, {d}) (negatives shared by the batch) or "
                         f"({b}, K, {d}) (K negatives per sample), got {tuple(memory_neg.shape)}")
    like("memory_neg", memory_neg, name, v)
    if memory_neg.shape[-2] < 1:
        raise ValueError("memory_neg must hold at least one negative (K >= 1), got K = 0")
    if b < 1:
        raise ValueError(f"{name} must hold at least one sample, got B = 0")
    return v, memory_pos.detach(), memory_neg.detach()


def _nce_scores(v, memory_pos, memory_neg, tau, normalize):
    """β s(m_I, v) of shape (B,) and β s(m_I', v) of shape (B, K)."""
    if normalize:
        v = F.normalize(v, axis=1)
    s_pos = _rowdot(memory_pos, v) / tau
    if memory_neg.ndim == 2:
        s_neg = ops.matmul(v, memory_neg.T) / tau
    else:
        s_neg = ops.squeeze(ops.matmul(memory_neg, ops.unsqueeze(v, 2)), 2) / tau
    return s_pos, s_neg


def nce_memory_loss(v, memory_pos, memory_neg, *, dataset_size, temperature=0.07, normalizer=1.0,
                    eps=0.0, normalize=True, reduction="mean", h="paper"):
    r"""Noise-contrastive estimation against a memory bank (NPID; one term of PIRL's loss).

    With s the cosine similarity, β = 1/τ, K negatives m_{I'} drawn uniformly from a data set
    of |D| samples (noise distribution P_n = 1/|D|) and the model's unnormalised probability
    x = exp(β s) / Z, the probability that a pair comes from the data rather than from noise
    is (PIRL, Misra & van der Maaten 2020, with K = N negatives)::

        h(m, v) = x / (x + K/|D|) = exp(β s(m, v)) / (exp(β s(m, v)) + Z K/|D|)

    and the loss of sample I with embedding v and memory row m_I is::

        L_NCE(m_I, v) = −log h(m_I, v) − Σ_{I' ∈ D_N} log[1 − h(m_{I'}, v)]

    computed in the log domain as softplus(log(K/|D|) − log x) + Σ softplus(log x' − log(K/|D|)),
    exact for any τ. vissl (``NCECriterion``, from lemniscate) adds ε = 1.19e-7 (float32 eps)
    to each denominator: x / (x + K/|D| + ε) and (K/|D|) / (x' + K/|D| + ε); ``eps`` reproduces
    that (default 0, the paper's formula). vissl divides exp(β s) by Z = |D| · mean(exp(β s))
    estimated on its first batch and then frozen (see :func:`nce_normalizer`); the paper's
    formula has Z = 1, the default ``normalizer``.

    **The notes' h** (``h="notes"``). The NYU Deep Learning notes (ch. 8-1, "Contrastive Methods
    in Energy-Based Models", section "Self-Supervised Results (MoCo, PIRL, SimCLR)") write h
    with a softmax-style denominator, the sum running over the negatives against v::

        h(m, v) = exp(β s(m, v)) / ( exp(β s(m, v)) + Σ_{I' ∈ D_N} exp(β s(v, m_{I'})) )

    with the same L_NCE. It is the paper's h with the constant Z K/|D| replaced by the sum over
    this sample's own K negatives (which the gradient also passes through); computed as
    softplus(log S − β s_pos) + Σ softplus(β s' − log S), log S = logsumexp of the K negatives'
    β s'. ``normalizer`` and ``eps`` belong to the paper's form and must stay at their defaults.
    The PIRL paper (its NCE, Eq. 3–4) and vissl use the paper's form, the default.

    The memory rows are stop-gradient (detached here): the gradient reaches ``v`` only.

    Args:
        v: (B, d) embeddings (a head's output: f(v_I) or g(v_{I^t})).
        memory_pos: (B, d) memory rows m_I of the samples themselves.
        memory_neg: (K, d) negatives shared by the batch, or (B, K, d) K negatives per sample
            (vissl draws per sample).
        dataset_size: |D|, the number of rows of the memory bank (P_n = 1/|D|).
        temperature: τ > 0; PIRL and vissl: 0.07.
        normalizer: Z > 0 (1 = the paper's h; vissl: the frozen first-batch estimate).
        eps: ε ≥ 0 added to the denominators as in vissl (1.1920929e-07) or not (0).
        normalize: L2-normalise ``v`` (vissl ``norm_embedding: True``). The memory rows are
            used as given: a memory bank keeps them unit-norm.
        reduction: ``"mean"`` | ``"sum"`` over the B samples, or ``"none"`` for (B,) losses.
        h: ``"paper"`` (x / (x + K/|D|), the PIRL paper and vissl) or ``"notes"`` (the
            softmax-style denominator of the course notes, above).

    Matching other code::

        | code                                         | call                                         |
        |----------------------------------------------|----------------------------------------------|
        | PIRL paper, one term (bank M of the data set)| nce_memory_loss(v, M[y], M[neg],             |
        |                                              |   dataset_size=len(M))                       |
        | vissl NCECriterion(nce_average(v, y))        | nce_memory_loss(v, M[y], M[idx[:, 1:]],      |
        |   (idx[:, 0] = y; Z from the first batch)    |   dataset_size=len(M), normalizer=Z,         |
        |                                              |   eps=float(np.finfo(np.float32).eps))       |
    """
    v, memory_pos, memory_neg = _nce_inputs("v", v, memory_pos, memory_neg)
    check_int(dataset_size, "dataset_size")
    tau = check_positive(temperature, "temperature")
    z = check_positive(normalizer, "normalizer")
    eps = check_positive(eps, "eps", allow_zero=True)
    check_choice(reduction, "reduction", ("mean", "sum", "none"))
    check_choice(h, "h", ("paper", "notes"))
    if h == "notes" and (z != 1.0 or eps != 0.0):
        raise ValueError(f"normalizer and eps belong to h='paper'; h='notes' takes neither "
                         f"(got normalizer={normalizer!r}, eps={eps!r})")

    s_pos, s_neg = _nce_scores(v, memory_pos, memory_neg, tau, normalize)
    if h == "notes":
        # −log h⁺ = log(1 + S/e^{βs⁺}); −log(1 − h') = log(1 + e^{βs'}/S), S = Σ e^{βs'} over D_N.
        log_s = F.logsumexp(s_neg, axis=1)
        pos_term = F.softplus(log_s - s_pos)
        neg_term = F.softplus(s_neg - ops.unsqueeze(log_s, 1)).sum(axis=1)
        return _reduce(pos_term + neg_term, reduction)
    num_neg = memory_neg.shape[-2]
    noise = num_neg / int(dataset_size)                  # K · P_n
    log_c = math.log(noise + eps)                        # log(K·P_n + ε): the denominators' extra term
    log_z = math.log(z)
    # log h = log x − log(x + c) = −softplus(log c − log x), log x = β s − log Z.
    pos_term = F.softplus(log_c - (s_pos - log_z))
    # log(1 − h) = log(K·P_n) − log(x + c) = log(K·P_n / c) − softplus(log x − log c).
    neg_term = F.softplus((s_neg - log_z) - log_c).sum(axis=1)
    if eps:
        neg_term = neg_term - num_neg * (math.log(noise) - log_c)
    return _reduce(pos_term + neg_term, reduction)


def nce_loss(f_orig, g_transformed, memory_pos, memory_neg, *, dataset_size, temperature=0.07,
             lam=0.5, normalizer=1.0, eps=0.0, normalize=True, reduction="mean", h="paper"):
    r"""PIRL's loss: a λ-mixture of two NCE terms against the memory bank (Misra & van der Maaten).

    With f the head on the image's features v_I, g the head on the transformed image's features
    v_{I^t} (9 jigsaw patches in PIRL), m_I the memory-bank row of image I and the negatives
    m_{I'}, I' ∈ D_N, drawn from the bank (PIRL, with a memory bank)::

        L(I, I^t) = λ L_NCE(m_I, g(v_{I^t})) + (1 − λ) L_NCE(m_I, f(v_I))

    where L_NCE is :func:`nce_memory_loss` (see there for h, Z, ε). The first term pulls the
    transformed image's embedding towards the memory of the untransformed image; the second
    keeps f(v_I) close to its own (slowly moving) memory. λ = 0.5, τ = 0.07, K = 32000
    negatives, memory momentum 0.5 in the paper and in vissl's ``pirl_jigsaw_4node_resnet50``
    (``loss_weights [0.5, 0.5]``, order [patches, image]).

    The NYU Deep Learning notes (ch. 8-1, "Contrastive Methods in Energy-Based Models", section
    "Self-Supervised Results (MoCo, PIRL, SimCLR)") write the single-term form with both heads,
    L = −log h(f(v_I), g(v_{I^t})) − Σ log[1 − h(g(v_{I^t}), f(v_{I'}))], and their h has the
    softmax-style denominator exp(β s) + Σ_{I' ∈ D_N} exp(β s(v_{I^t}, v_{I'})) (``h="notes"``);
    the paper's h is x / (x + K/|D|) (``h="paper"``, the default). With a memory bank the stored
    m_I plays f(v_I)'s part, as above.

    Args:
        f_orig: (B, d) f(v_I), the image's embedding.
        g_transformed: (B, d) g(v_{I^t}), the transformed image's embedding.
        memory_pos: (B, d) memory rows m_I; memory_neg: (K, d) or (B, K, d) negatives. Both
            stop-gradient (detached here).
        dataset_size, temperature, normalizer, eps, normalize, reduction: as in
            :func:`nce_memory_loss`, used for both terms.
        h: ``"paper"``, the PIRL paper's h = x / (x + K/|D|) (and vissl's), or ``"notes"``, the
            course notes' h = exp(β s) / (exp(β s) + Σ_{I' ∈ D_N} exp(β s(v_{I^t}, v_{I'})));
            see :func:`nce_memory_loss`.
        lam: λ ∈ [0, 1], the weight of the g term.

    Matching other code::

        | code                                            | call                                        |
        |-------------------------------------------------|---------------------------------------------|
        | PIRL paper (λ = 0.5, τ = 0.07)                  | nce_loss(f, g, M[y], M[neg],                |
        |                                                 |   dataset_size=len(M))                      |
        | vissl pirl_jigsaw config (NCE, frozen Z, ε)     | nce_loss(f, g, M[y], M[idx[:, 1:]],          |
        |                                                 |   dataset_size=len(M), normalizer=Z,        |
        |                                                 |   eps=float(np.finfo(np.float32).eps))      |

    After the optimiser step PIRL updates the bank from the image embedding only:
    ``bank.update(y, normalize(f_orig))`` (:class:`npjem.state.MemoryBank`).
    """
    f_orig, memory_pos_c, memory_neg_c = _nce_inputs("f_orig", f_orig, memory_pos, memory_neg)
    g_transformed = matrix("g_transformed", g_transformed, what="(B, D)")
    like("g_transformed", g_transformed, "f_orig", f_orig, shape=f_orig.shape)
    lam = check_probability(lam, "lam")
    kw = dict(dataset_size=dataset_size, temperature=temperature, normalizer=normalizer, eps=eps,
              normalize=normalize, reduction=reduction, h=h)
    term_g = nce_memory_loss(g_transformed, memory_pos_c, memory_neg_c, **kw)
    term_f = nce_memory_loss(f_orig, memory_pos_c, memory_neg_c, **kw)
    return term_g * lam + term_f * (1.0 - lam)


def nce_normalizer(v, memory_pos, memory_neg, *, dataset_size, temperature=0.07, normalize=True):
    """vissl's partition-function estimate Z = |D| · mean(exp(β s)) over all B·(K+1) scores.

    vissl computes it once, on the first batch, and keeps it frozen; pass it to
    :func:`nce_loss` / :func:`nce_memory_loss` as ``normalizer``. Returns a Python float.
    The mean is taken in the log domain (log-sum-exp), so it does not overflow.
    """
    v, memory_pos, memory_neg = _nce_inputs("v", v, memory_pos, memory_neg)
    check_int(dataset_size, "dataset_size")
    tau = check_positive(temperature, "temperature")
    s_pos, s_neg = _nce_scores(v.detach(), memory_pos, memory_neg, tau, normalize)
    xp = v.xp
    s = xp.concatenate([s_pos.data[:, None], s_neg.data], axis=1).astype(np.float64).ravel()
    m = float(s.max())
    log_mean = m + math.log(float(xp.exp(s - m).mean()))
    return math.exp(log_mean + math.log(int(dataset_size)))
