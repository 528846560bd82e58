"""Distillation losses: BYOL, SimSiam, DINO and Data2Vec (the "Other methods" of the
NYU Deep Learning notes, ch. 8-2 "Regularized Latent Variable Energy Based Models").

These methods have no term in their loss that forbids collapse. Each branch predicts a target
computed by another network (a teacher: a moving average of the student in BYOL, DINO and
Data2Vec, the same network in SimSiam), and the target is a constant for the gradient: the
stop-gradient. A network started at the trivial solution, the same output for every input,
gets a zero (or sample-independent) gradient and stays there; from a non-trivial start the
asymmetry (predictor, stop-gradient, slowly moving teacher, DINO's centring and sharpening)
keeps the training dynamics away from it, though the loss alone would allow it.

In every function here the target arguments are detached inside the loss: no gradient ever
reaches them, whether or not the caller detached them.
"""
from __future__ import annotations

import math

from .. import backend
from .._checks import check_bool, check_choice, check_int, check_positive, check_probability
from ..autograd import functional as F
from ..autograd import ops
from ..autograd.tensor import Tensor
from ._inputs import as_float_tensor, like, matrix, tensor_list

__all__ = ["negative_cosine", "simsiam_loss", "byol_loss", "dino", "dino_center_update",
           "data2vec_targets", "data2vec_loss"]


def _pair(p_name, p, z_name, z):
    p = matrix(p_name, p, "(B, D)")
    z = like(z_name, matrix(z_name, z, "(B, D)"), p_name, p, shape=p.shape)
    if p.shape[0] < 1:
        raise ValueError(f"{p_name} must hold at least one sample, got shape {tuple(p.shape)}")
    return p, z.detach()


# ---------------------------------------------------------------- SimSiam

def negative_cosine(p, z, eps=1e-8):
    r"""D(p, z) = −(1/B) Σ_b cos(p_b, sg(z_b)): one direction of SimSiam's loss.

    ``z`` is the stop-gradient target (detached here). Each norm is clamped at ``eps`` as in
    ``torch.nn.functional.cosine_similarity`` (SimSiam's ``nn.CosineSimilarity(dim=1)``).
    The symmetrised loss SimSiam trains with is :func:`simsiam_loss`.

    Args:
        p: (B, D) predictor outputs of one view.
        z: (B, D) projector outputs of the other view (targets).
        eps: the clamp on each norm (1e-8).

    Returns a scalar Tensor in [−1, 1]; −1 when every p_b points along z_b.

    Matching other code: lightly's ``NegativeCosineSimilarity()(p, z)`` is the same value but does
    not detach z: pass ``z.detach()`` to lightly to compare gradients.
    """
    p, z = _pair("p", p, "z", z)
    eps = check_positive(eps, "eps")
    return -F.cosine_similarity(p, z, axis=1, eps=eps).mean()


def simsiam_loss(p1, p2, z1, z2, eps=1e-8):
    r"""SimSiam (Chen & He 2021): L = ½ D(p₁, sg z₂) + ½ D(p₂, sg z₁), D = :func:`negative_cosine`.

    p_v = h(f(x_v)) is the predictor's output for view v and z_v = f(x_v) the projector's; each
    prediction is matched to the *other* view's projection, which is a stop-gradient target.

    Collapse: if every input gives the same output and the predictor maps it onto its own
    direction (p = z = c for all samples), the loss sits at its minimum −1 with zero gradient;
    the method relies on the predictor and the stop-gradient to never get there.

    Args:
        p1, p2: (B, D) predictions for views 1 and 2.
        z1, z2: (B, D) projections of views 1 and 2 (detached here).
        eps: the clamp on each norm (1e-8, as ``nn.CosineSimilarity``).

    Matching other code::

        | code                                                  | call                          |
        |-------------------------------------------------------|-------------------------------|
        | original simsiam/builder.py + main_simsiam.py         | simsiam_loss(p1, p2, z1, z2)  |
        | lightly 1.6.0 example 0.5·(ncs(p0, z1) + ncs(p1, z0)) | simsiam_loss(p0, p1, z0, z1)  |
        | solo-learn simsiam_loss_func(p1, z2)/2 + (p2, z1)/2   | simsiam_loss(p1, p2, z1, z2)  |
    """
    return negative_cosine(p1, z2, eps) * 0.5 + negative_cosine(p2, z1, eps) * 0.5


# ---------------------------------------------------------------- BYOL

def _byol_direction(p, z, eps):
    u_p = F.normalize(p, axis=1, eps=eps)
    u_z = F.normalize(z, axis=1, eps=eps)
    # The squared distance, as the original's regression_loss: 2 − 2 u_p·u_z is the same only
    # for unit vectors, and a vector shorter than eps is not scaled up to one.
    d = u_p - u_z
    return (d * d).sum(axis=1)


def byol_loss(p, z, *, directions="sum", eps=1e-6):
    r"""BYOL (Grill et al. 2020): ℓ(p, z') = ‖p/‖p‖ − z'/‖z'‖‖² = 2 − 2 cos(p, sg z').

    One direction (``p``, ``z`` Tensors): the batch mean of ℓ(p_b, z'_b). Both directions (``p``
    and ``z`` pairs): with the online predictions p = (p₁, p₂) of views 1 and 2 and the target
    projections z = (z'₁, z'₂),

        L = mean_b [ ℓ(p₁, sg z'₂) + ℓ(p₂, sg z'₁) ]          (directions="sum", the original)
        L = ½ mean_b [ ℓ(p₁, sg z'₂) + ℓ(p₂, sg z'₁) ]        (directions="mean")

    The targets come from the EMA target network and are detached here.

    Collapse: if online and target networks give every input the same output and the predictor
    maps it onto the target's direction, ℓ = 0 with zero gradient: the minimum, reached without
    learning anything. BYOL escapes it only through the dynamics (predictor, slow EMA target).

    Args:
        p: (B, D) predictions, or a pair (p₁, p₂).
        z: (B, D) target projections, or a pair (z'₁, z'₂) (same form as ``p``).
        directions: ``"sum"`` or ``"mean"`` over the two directions (pairs only).
        eps: each vector is divided by max(‖x‖, eps); 1e-6 is the original JAX code's
            x·rsqrt(max(Σx², 1e-12)).

    Matching other code::

        | code                                              | call                                      |
        |---------------------------------------------------|-------------------------------------------|
        | original (deepmind-research byol)                 | byol_loss((p1, p2), (z1, z2))             |
        | lucidrains byol-pytorch (loss_one + loss_two)     | byol_loss((p1, p2), (z1, z2))             |
        | solo-learn byol_loss_func, 2 crops                | byol_loss((p1, p2), (z1, z2))             |
        | lightly 1.6.0 example 0.5·(ncs(p0,z1)+ncs(p1,z0)) | (byol_loss((p0, p1), (z0, z1)) − 4) / 4   |
        |   (ncs = NegativeCosineSimilarity = −mean cos)    |   (the original has 4× lightly's gradient)|

    (torch's cosine_similarity clamps each norm at 1e-8, lucidrains' F.normalize at 1e-12;
    they differ from this only for vectors of norm below 1e-6.)
    """
    check_choice(directions, "directions", ("sum", "mean"))
    eps = check_positive(eps, "eps")
    if isinstance(p, (list, tuple)) or isinstance(z, (list, tuple)):
        if not (isinstance(p, (list, tuple)) and isinstance(z, (list, tuple)) and len(p) == 2 and len(z) == 2):
            raise ValueError("p and z must both be Tensors (one direction) or both pairs (p1, p2), (z1, z2)")
        p1, z2 = _pair("p[0]", p[0], "z[1]", z[1])
        p2, z1 = _pair("p[1]", p[1], "z[0]", z[0])
        like("p[1]", p2, "p[0]", p1, shape=p1.shape)
        loss = (_byol_direction(p1, z2, eps) + _byol_direction(p2, z1, eps)).mean()
        return loss * 0.5 if directions == "mean" else loss
    p, z = _pair("p", p, "z", z)
    return _byol_direction(p, z, eps).mean()


# ---------------------------------------------------------------- DINO

def _center(name, center, ref):
    c = as_float_tensor(name, center)
    k = ref.shape[1]
    if tuple(c.shape) not in ((k,), (1, k)):
        raise ValueError(f"{name} must have shape ({k},) or (1, {k}) (one value per output dimension), "
                         f"got {tuple(c.shape)}")
    like(name, c, "teacher[0]", ref)
    return c.detach()


def dino(student, teacher, center, student_temp=0.1, teacher_temp=0.04):
    r"""DINO's self-distillation loss over multi-crop (Caron et al. 2021).

    With V student crops (2 global then V − 2 local) and the teacher's logits on the 2 global
    crops, the centre c and the temperatures τ_s, τ_t::

        P_t^t = softmax((g_t(x_t) − c) / τ_t)        (teacher: centred and sharpened, no gradient)
        log P_s^v = log_softmax(g_s(x_v) / τ_s)
        L = (1/n) Σ_t Σ_{v ≠ t} mean_b [ −Σ_k P_t^t log P_s^v ],   n = the number of pairs

    A student crop is never matched to the teacher's view of the same crop (index v = t is left
    out), so ``student`` must start with the same global crops, in the same order, as
    ``teacher``. With 2 teacher crops n = 2(V − 1).

    Collapse comes in two forms, and DINO balances one against the other: centring (subtracting
    the running batch mean c of the teacher's logits, :func:`dino_center_update`) stops one
    dimension from dominating but pushes towards the uniform distribution; sharpening (τ_t <
    τ_s) pushes away from uniform. For constant outputs with c at their mean the teacher is
    uniform and the loss is at least log K (equal, with zero gradient, for uniform logits), and
    every sample receives the same gradient.

    Args:
        student: a list or tuple of V (B, K) student logits, global crops first.
        teacher: a list or tuple of (B, K) teacher logits of the global crops (detached here).
        center: (K,) or (1, K) centre (detached here).
        student_temp: τ_s > 0 (0.1).
        teacher_temp: τ_t > 0 (0.04; DINO warms it up linearly from 0.04 over the first epochs,
            pass the current value).

    Matching other code::

        | code                                                | call                                  |
        |-----------------------------------------------------|---------------------------------------|
        | original main_dino.py DINOLoss                      | dino(s, t, center, 0.1, τ_t(epoch))   |
        | lightly 1.6.0 DINOLoss()(t, s, epoch=e)             | dino(s, t, center, 0.1, τ_t(e))       |
        |   (keeps τ_t in float32: 3e-9 apart in float64)     |                                       |
        | solo-learn DINOLoss (global crops only)             | dino(s[:2], t, center, 0.1, 0.07)     |
    """
    student = tensor_list("student", student, "(B, K)")
    teacher = tensor_list("teacher", teacher, "(B, K)")
    like("teacher[0]", teacher[0], "student[0]", student[0], shape=student[0].shape)
    center = _center("center", center, teacher[0])
    tau_s = check_positive(student_temp, "student_temp")
    tau_t = check_positive(teacher_temp, "teacher_temp")
    if len(teacher) > len(student):
        raise ValueError(f"teacher has {len(teacher)} crops but student only {len(student)}: the teacher's "
                         f"crops must be the first crops of student")
    n_terms = len(teacher) * len(student) - len(teacher)
    if n_terms < 1:
        raise ValueError("dino needs at least one pair of different crops (e.g. 2 student and 2 teacher crops)")

    log_ps = [F.log_softmax(s * (1.0 / tau_s), axis=1) for s in student]
    total = None
    for t_idx, t in enumerate(teacher):
        p_t = F.softmax((t.detach() - center) * (1.0 / tau_t), axis=1).detach()
        for v, log_p in enumerate(log_ps):
            if v == t_idx:
                continue
            term = -(p_t * log_p).sum(axis=1).mean()
            total = term if total is None else total + term
    return total * (1.0 / n_terms)


def dino_center_update(center, teacher, momentum=0.9):
    r"""DINO's centre after a step: c ← m·c + (1 − m)·mean of all teacher logits in the batch.

    The mean runs over every row of every teacher crop (2B rows for 2 global crops; the original
    also averages over devices). It is updated after the loss, outside the gradient.

    Args:
        center: (K,) or (1, K) Tensor or array (DINO starts from zeros).
        teacher: a list or tuple of (B, K) teacher logits.
        momentum: m ∈ [0, 1] (0.9).

    Returns the new centre, a Tensor without gradient if ``center`` is a Tensor, an array
    otherwise, of ``center``'s shape. With m = 0 it is the batch mean, so that
    teacher − centre has batch mean zero in every dimension.
    """
    teacher = tensor_list("teacher", teacher, "(B, K)")
    c = _center("center", center, teacher[0])
    m = check_probability(momentum, "momentum")
    xp = teacher[0].xp
    rows = xp.concatenate([t.data for t in teacher], axis=0)
    batch = rows.mean(axis=0)
    new = c.data * m + batch.reshape(c.shape) * (1.0 - m)
    return Tensor(new) if isinstance(center, Tensor) else new


# ---------------------------------------------------------------- Data2Vec

def _instance_norm(y, eps):
    """Normalise each (sample, channel) over time: F.instance_norm on (B, C, T), no affine."""
    mu = y.mean(axis=1, keepdims=True)
    d = y - mu
    return d / ops.sqrt((d * d).mean(axis=1, keepdims=True) + eps)


def data2vec_targets(layer_outputs, top_k=8, instance_norm=True, layer_norm=False, *,
                     instance_norm_targets=False, layer_norm_targets=False, eps=1e-5):
    r"""Data2Vec's regression targets (Baevski et al. 2022): the teacher's top-K blocks, averaged.

    With a_l (B, T, C) the output of block l of the teacher on the unmasked input (in fairseq
    the feed-forward output before the residual), the target is::

        y = (1/K) Σ_{l = L−K+1}^{L} norm(a_l)             then optionally norm(y)

    where each layer's norm is ``instance_norm`` (over the T positions, for each sample and
    channel, as ``F.instance_norm``) and/or ``layer_norm`` (over the C channels, as
    ``F.layer_norm``), both without affine parameters, biased variance and ``eps`` inside the
    square root; the instance norm comes first when both are set (fairseq's order). The average
    can be normalised again: ``layer_norm_targets`` then ``instance_norm_targets``.

    The targets carry no gradient (fairseq computes them under ``torch.no_grad()``).

    Args:
        layer_outputs: a list or tuple of L ≥ top_k (B, T, C) block outputs, first block first.
        top_k: K, how many of the last blocks to average.
        instance_norm, layer_norm: the per-layer norms (fairseq ``instance_norm_target_layer``,
            ``layer_norm_target_layer``).
        instance_norm_targets, layer_norm_targets: the norms of the average.
        eps: inside the square roots (1e-5, PyTorch's default).

    Returns a (B, T, C) Tensor without gradient.

    Matching fairseq (examples/data2vec configs)::

        | modality                       | call                                                      |
        |--------------------------------|-----------------------------------------------------------|
        | audio (base_librispeech)       | data2vec_targets(layers, 8, instance_norm=True)           |
        | text                           | data2vec_targets(layers, 10, instance_norm=False,         |
        |                                |                  layer_norm=True)                         |
        | vision (base_imagenet_d2v1)    | data2vec_targets(layers, 6, ..., layer_norm_targets=True) |
    """
    if not isinstance(layer_outputs, (list, tuple)):
        raise TypeError(f"layer_outputs must be a list or tuple of (B, T, C) block outputs, "
                        f"got {type(layer_outputs).__name__}")
    top_k = check_int(top_k, "top_k")
    if len(layer_outputs) < top_k:
        raise ValueError(f"top_k={top_k} but layer_outputs holds only {len(layer_outputs)} block outputs")
    for name, flag in (("instance_norm", instance_norm), ("layer_norm", layer_norm),
                       ("instance_norm_targets", instance_norm_targets), ("layer_norm_targets", layer_norm_targets)):
        check_bool(flag, name)
    eps = check_positive(eps, "eps")
    first = len(layer_outputs) - top_k
    layers = []
    for i in range(first, len(layer_outputs)):
        t = as_float_tensor(f"layer_outputs[{i}]", layer_outputs[i])
        if t.ndim != 3:
            raise ValueError(f"layer_outputs[{i}] must be 3-D (B, T, C), got shape {tuple(t.shape)}")
        if layers:
            like(f"layer_outputs[{i}]", t, f"layer_outputs[{first}]", layers[0], shape=layers[0].shape)
        layers.append(t.detach())
    if (instance_norm or instance_norm_targets) and layers[0].shape[1] < 2:
        raise ValueError(f"instance norm needs T >= 2 positions, got shape {tuple(layers[0].shape)}")
    c = layers[0].shape[2]

    def per_layer(a):
        if instance_norm:
            a = _instance_norm(a, eps)
        if layer_norm:
            a = F.layer_norm(a, (c,), eps=eps)
        return a

    y = per_layer(layers[0])
    for a in layers[1:]:
        y = y + per_layer(a)
    y = y * (1.0 / top_k)
    if layer_norm_targets:
        y = F.layer_norm(y, (c,), eps=eps)
    if instance_norm_targets:
        y = _instance_norm(y, eps)
    return y.detach()


def data2vec_loss(prediction, target, mask, loss="smooth_l1", beta=2.0, scale=None, reduction="mean"):
    r"""Data2Vec's regression loss at the masked positions.

    With x the student's prediction (its final projection) and y the teacher's target
    (:func:`data2vec_targets`, detached here), summed over the C channels of each masked
    position m::

        ℓ_m = Σ_c (x_mc − y_mc)²                          (loss="mse", fairseq's β = 0)
        ℓ_m = Σ_c smoothL1_β(x_mc − y_mc)                  (loss="smooth_l1")
        smoothL1_β(d) = ½ d²/β if |d| < β else |d| − ½β   (PyTorch's smooth_l1_loss)
        L = scale · (1/M) Σ_m ℓ_m                          (reduction="mean", M masked positions)

    scale defaults to 1/sqrt(C) (fairseq's when ``loss_scale`` is unset). fairseq's criterion
    returns the sum scale·Σ_m ℓ_m with sample size M, and its trainer divides the gradient by M:
    ``reduction="mean"`` is what is optimised, ``"sum"`` the logged value.

    Args:
        prediction: (..., C) Tensor, e.g. (B, T, C).
        target: the same shape (detached here).
        mask: boolean (...) array or Tensor, True at the masked positions (at least one).
        loss: ``"smooth_l1"`` or ``"mse"``.
        beta: β > 0 of the smooth L1 (fairseq vision 2.0, text 4.0; unused for mse).
        scale: a positive factor, or None for 1/sqrt(C).
        reduction: ``"mean"`` over masked positions or ``"sum"``.

    Matching fairseq::

        | modality                     | call                                            |
        |------------------------------|-------------------------------------------------|
        | audio (β = 0, 1/sqrt(C))     | data2vec_loss(x, y, mask, loss="mse")           |
        | text (β = 4, loss_scale 1)   | data2vec_loss(x, y, mask, beta=4.0, scale=1.0)  |
        | vision d2v1 (β = 2)          | data2vec_loss(x, y, mask, beta=2.0)             |
    """
    x = as_float_tensor("prediction", prediction)
    if x.ndim < 1:
        raise ValueError("prediction must have a channel axis (..., C)")
    y = like("target", as_float_tensor("target", target), "prediction", x, shape=x.shape).detach()
    check_choice(loss, "loss", ("smooth_l1", "mse"))
    check_choice(reduction, "reduction", ("mean", "sum"))
    beta = check_positive(beta, "beta")
    n_channels = x.shape[-1]
    scale = 1.0 / math.sqrt(n_channels) if scale is None else check_positive(scale, "scale")
    m = mask.data if isinstance(mask, Tensor) else mask
    if not backend.is_array(m) or m.dtype != bool:
        raise TypeError(f"mask must be a boolean array or Tensor, got {getattr(m, 'dtype', type(m).__name__)}")
    if tuple(m.shape) != tuple(x.shape[:-1]):
        raise ValueError(f"mask must have shape {tuple(x.shape[:-1])} (prediction's without the channel axis), "
                         f"got {tuple(m.shape)}")
    if backend.device_of(m) != x.device:
        raise ValueError(f"mask is on {backend.device_of(m)} but prediction is on {x.device}")
    n_masked = int(m.sum())
    if n_masked == 0:
        raise ValueError("mask selects no position: the loss is taken at the masked positions only")

    if loss == "mse":
        per_elem = F.mse_loss(x, y, reduction="none")
    else:
        per_elem = F.smooth_l1_loss(x, y, reduction="none", beta=beta)
    per_pos = per_elem.sum(axis=-1)
    total = (per_pos * Tensor(m.astype(x.dtype))).sum() * scale
    return total * (1.0 / n_masked) if reduction == "mean" else total
