"""DINO (Caron et al., 2021): self-distillation with no labels.

The four components of a joint-embedding method (NYU Deep Learning notes, ch. 8-2 "Regularized Latent Variable Energy Based Models",
sections "Components:" and "Other methods", "Dino:"):

- augmentation: multi-crop, two global crops and some local crops of every image
  (:class:`npjem.methods.swav.MultiCropViews` or :class:`npjem.data.MultiCrop`);
- student: backbone + ``DINOProjectionHead`` (MLP → L2-normalise → weight-normalised Linear to
  K logits), trained by gradient on every crop;
- teacher: the same architecture, an exponential moving average of the student (momentum
  0.996 → 1 on a cosine schedule, per step), run on the two global crops only, under ``no_grad``;
- loss: each student crop's softmax(s/τ_s) predicts every *other* global crop's teacher
  distribution softmax((t − c)/τ_t) (:func:`npjem.losses.distillation.dino`).

Two things keep the teacher from a trivial output, and they pull in opposite directions:
*centring* (subtracting a running mean c of the teacher's logits, updated with momentum 0.9
after each step) stops one dimension from dominating but pushes toward the uniform
distribution; *sharpening* (the low teacher temperature τ_t = 0.04) pushes away from it. The
teacher temperature starts at ``warmup_teacher_temp`` and rises linearly to ``teacher_temp``
over ``warmup_teacher_temp_steps`` (the original warms up over epochs; here over steps, since
a step is what ``after_step`` counts). ``diagnostics`` records the teacher's mean entropy
(log K: uniform collapse; 0: one-hot collapse) and the std of the student's normalised
outputs.

The step is the one of ``main_dino.py`` (facebookresearch/dino), checked step for step against
a PyTorch twin written from it (``tests/methods/test_dino_twin.py``):

- the student's backbone runs on the crops grouped by resolution, its head once on the
  features of *all* crops (``MultiCropWrapper``), so a BatchNorm in the head sees every crop;
- τ_t follows the original's ``numpy.linspace(warmup_teacher_temp, teacher_temp, W)``: it reaches
  ``teacher_temp`` at step W − 1 (W = ``warmup_teacher_temp_steps``), indexed by step here
  where the original indexes it by epoch;
- the centre is updated with the mean of the teacher's logits of both global crops after the
  loss (the original does it inside the loss, after computing it: the same value);
- "freeze the last layer": for the first ``freeze_last_layer_steps`` steps the last layer's
  gradients are dropped between backward and the optimizer step (:meth:`before_step`, the
  original's ``cancel_gradients_last_layer``), so the optimizer skips it, weight decay and
  Adam's moments included (the original counts epochs, 1 by default; here steps, 0 by default);
- the teacher's EMA averages the parameters only; its BatchNorm buffers are its own running
  statistics, updated by its forward in training mode (as the original's teacher, never put in
  ``eval()``).

Not here, because they belong to the loop and the optimizer, not to the method: the original's
per-parameter gradient clipping at norm 3 (``clip_grad``), its weight-decay schedule (cosine
0.04 → 0.4) and its AdamW groups without decay on biases and norms (build them with parameter
groups, as the twin's "paper" configuration does); ``npjem pretrain`` trains DINO with Adam.
"""
from __future__ import annotations

from .. import backend, optim
from .. import random as nrandom
from .._checks import check_int, check_positive, check_probability
from ..autograd import Tensor, no_grad
from ..losses.distillation import dino, dino_center_update
from ..nn.models import DINOProjectionHead
from . import _monitor
from .base import Method
from .simclr import _feature_dim
from .swav import _check_crops, _encode_crops

__all__ = ["DINO"]


class DINO(Method):
    """DINO: student backbone + head on all crops, EMA teacher on the global crops, centred and sharpened.

    Args:
        backbone: the student's backbone (global and local crops: it must pool over space);
            the teacher's is a deep copy.
        feature_dim: the backbone's output width (default ``backbone.num_features``).
        hidden_dim, bottleneck_dim, out_dim: the head (DINO: 2048, 256, 65536).
        num_layers: the head's MLP depth (3).
        batch_norm: BatchNorm in the head's MLP (DINO with ViTs: no).
        norm_last_layer: fix the last layer's weight norm at 1 (DINO: True).
        student_temp: τ_s (0.1).
        teacher_temp: τ_t after the warm-up (DINO: 0.04; "above 0.07 is unstable").
        warmup_teacher_temp: τ_t at step 0 (0.04).
        warmup_teacher_temp_steps: steps of the linear τ_t warm-up (0: none), the original's
            ``warmup_teacher_temp_epochs`` counted in steps.
        freeze_last_layer_steps: steps during which the head's last layer gets no update (the
            original: ``freeze_last_layer`` = 1 epoch; default 0, never).
        momentum: the teacher's EMA momentum at step 0, rising to 1 on a cosine (0.996).
        center_momentum: the centre's momentum (0.9).
        n_global: the number of global crops (the first ones), the teacher's inputs (2).
        views: the view maker (default two ``simclr_views`` crops).
        generator: seed for the head's initial weights.

    Attributes:
        backbone, projector: the student; ``backbone_teacher``, ``projector_teacher``: the teacher.
        center: buffer (1, out_dim), the running mean of the teacher's logits.
        num_steps: buffer, the optimizer steps taken (sets τ_t).
    """

    def __init__(self, backbone, feature_dim=None, hidden_dim=2048, bottleneck_dim=256, out_dim=65536, num_layers=3,
                 batch_norm=False, norm_last_layer=True, student_temp=0.1, teacher_temp=0.04,
                 warmup_teacher_temp=0.04, warmup_teacher_temp_steps=0, momentum=0.996, center_momentum=0.9,
                 n_global=2, views=None, projector=None, generator=None, freeze_last_layer_steps=0):
        if views is None:
            from ..data.augment import simclr_views

            views = simclr_views(32)
        super().__init__(backbone, views)
        feature_dim = _feature_dim(backbone, feature_dim)
        self.student_temp = check_positive(student_temp, "student_temp")
        self.teacher_temp = check_positive(teacher_temp, "teacher_temp")
        self.warmup_teacher_temp = check_positive(warmup_teacher_temp, "warmup_teacher_temp")
        self.warmup_teacher_temp_steps = check_int(warmup_teacher_temp_steps, "warmup_teacher_temp_steps", minimum=0)
        self.momentum = check_probability(momentum, "momentum")
        self.center_momentum = check_probability(center_momentum, "center_momentum")
        self.n_global = check_int(n_global, "n_global")
        self.freeze_last_layer_steps = check_int(freeze_last_layer_steps, "freeze_last_layer_steps", minimum=0)
        if projector is None:
            g = nrandom.as_generator(generator, "cpu")
            projector = DINOProjectionHead(feature_dim, hidden_dim, bottleneck_dim, out_dim, num_layers=num_layers,
                                           batch_norm=bool(batch_norm), norm_last_layer=bool(norm_last_layer),
                                           generator=g, device="cpu").to(backend.default_device())
        self.projector = projector
        k = getattr(projector, "last_layer", None)
        self.out_dim = check_int(k.out_features if k is not None else out_dim, "out_dim")
        # DINO averages the parameters only (its heads have no BatchNorm by default).
        self._ema_backbone = optim.EMA.from_module(self.backbone, momentum=self.momentum, buffers="keep")
        self._ema_projector = optim.EMA.from_module(self.projector, momentum=self.momentum, buffers="keep")
        self.backbone_teacher = self._ema_backbone.target
        self.projector_teacher = self._ema_projector.target
        xp = backend.xp_for_device(backend.default_device())
        dtype = next(iter(self.projector.parameters())).dtype
        self.register_buffer("center", Tensor(xp.zeros((1, self.out_dim), dtype=dtype)))
        self.register_buffer("num_steps", Tensor(xp.zeros((1,), dtype=xp.int64)))
        self.momentum_now = self.momentum
        self._pending = None
        self.diagnostics = {}

    @property
    def head(self):
        return self.projector

    def teacher_temperature(self, step=None):
        """τ_t at ``step`` (default: the current step): linear warm-up, then ``teacher_temp``."""
        k = int(backend.to_numpy(self.num_steps.data)[0]) if step is None else int(step)
        w = self.warmup_teacher_temp_steps
        if k >= w:
            return self.teacher_temp
        if w == 1:  # numpy.linspace(a, b, 1) == [a]
            return self.warmup_teacher_temp
        # numpy.linspace's endpoint: τ_t reaches teacher_temp at the last warm-up step, W − 1.
        return self.warmup_teacher_temp + (self.teacher_temp - self.warmup_teacher_temp) * k / (w - 1)

    def _teacher(self, x):
        return self.projector_teacher(self.backbone_teacher(x))

    def forward(self, *crops):
        _check_crops(crops, self.n_global, "DINO")
        if self.n_global < 2 and len(crops) < 2:
            raise ValueError("DINO needs at least 2 crops (a student crop other than the teacher's)")
        student = _encode_crops(self.backbone, crops, head=self.projector)
        with no_grad():
            teacher = [t.detach() for t in _encode_crops(self._teacher, crops[:self.n_global])]
        tau_t = self.teacher_temperature()
        loss = dino(student, teacher, self.center, student_temp=self.student_temp, teacher_temp=tau_t)
        self._pending = teacher
        with no_grad():
            t = teacher[0].data
            xp = backend.get_array_module(t)
            logits = (t - self.center.data) / tau_t
            logits = logits - logits.max(axis=1, keepdims=True)
            p = xp.exp(logits)
            p /= p.sum(axis=1, keepdims=True)
            entropy = -(p * xp.log(xp.maximum(p, 1e-30))).sum(axis=1).mean()
        self.diagnostics = {"loss": _monitor.as_float(loss), "embedding_std": _monitor.embedding_std(student[0]),
                            "teacher_entropy": _monitor.as_float(entropy), "teacher_temp": tau_t,
                            "momentum": self.momentum_now}
        return loss

    def before_step(self, step, total_steps):
        """Drop the last layer's gradients while ``step < freeze_last_layer_steps``."""
        last = getattr(self.projector, "last_layer", None)
        if last is None or step >= self.freeze_last_layer_steps:
            return
        for p in last.parameters():
            p.grad = None

    def after_step(self, step, total_steps):
        """Teacher EMA (cosine momentum → 1), then the centre c ← m c + (1 − m) mean(teacher logits)."""
        tau = optim.cosine_momentum(step, total_steps, base=self.momentum, final=1.0)
        self._ema_backbone.update(tau)
        self._ema_projector.update(tau)
        self.momentum_now = tau
        self.num_steps.data[...] += 1
        pending, self._pending = self._pending, None
        if pending is not None:
            new = dino_center_update(self.center, pending, momentum=self.center_momentum)
            new = new.data if isinstance(new, Tensor) else new
            self.center.data[...] = new.reshape(self.center.shape)

    def extra_repr(self):
        return (f"student_temp={self.student_temp}, teacher_temp={self.teacher_temp}, "
                f"warmup_teacher_temp={self.warmup_teacher_temp}, "
                f"warmup_teacher_temp_steps={self.warmup_teacher_temp_steps}, momentum={self.momentum}, "
                f"center_momentum={self.center_momentum}, n_global={self.n_global}, "
                f"freeze_last_layer_steps={self.freeze_last_layer_steps}")
