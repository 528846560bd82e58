"""data2vec (Baevski et al., 2022), vision: a masked student regresses the teacher's averaged layers.

The four components of a joint-embedding method (NYU Deep Learning notes, ch. 8-2 "Regularized Latent Variable Energy Based Models",
sections "Components:" and "Other methods", "Data2Vec:"):

- augmentation: one view of every image; the student sees it with a random subset of its
  patches replaced by a learned mask token (:func:`npjem.data.random_patch_mask`), the
  teacher sees it whole;
- student: a ViT (``vit_tiny``) encoding the masked image, then a linear regression head
  ``final_proj`` on each patch token;
- teacher: an exponential moving average of the student's ViT, under ``no_grad``. Its targets
  are contextualised: at every patch, the mean over the top K blocks of each block's FFN
  output (``target_layer="ffn"``; ``"output"``: the block's output after its residual), each
  normalised (:func:`npjem.losses.distillation.data2vec_targets`)::

      y_t = (1/K) Σ_{l = L−K+1..L} norm(a_l,t)

- loss: smooth L1 (β > 0) or squared error (β = 0) between the prediction and y at the masked
  patches only (:func:`npjem.losses.distillation.data2vec_loss`).

The EMA momentum rises *linearly* from ``momentum`` to ``final_momentum`` over
``momentum_steps`` updates and then stays (data2vec's schedule, unlike BYOL's cosine).

The step is fairseq's (``examples/data2vec/models/data2vec_vision.py`` with its trainer and
``EMAModule``), checked step for step against a PyTorch twin written from it
(``tests/methods/test_data2vec_twin.py``), with these of fairseq's options:

- ``ema_transformer_only=False``: the teacher is an EMA of the whole ViT (patch embedding, CLS
  and position embeddings included). fairseq's default (True) averages the transformer blocks
  only and feeds the teacher the student's current patch embeddings; npjem has no such option;
- the EMA step after update k uses τ at k updates, counting this one (fairseq's
  ``set_num_updates(k)``, called before update k + 1's forward): τ(1) first, never τ(0);
- targets: ``target_layer="ffn"`` is ``end_of_block_targets=False`` (the FFN output before the
  residual, the paper's choice and the audio/text configs'); ``"output"`` is fairseq vision's
  default ``end_of_block_targets=True``. The vision config (``base_imagenet_d2v1``) then sets
  no per-block norm and ``layer_norm_targets``: ``target_layer="output", instance_norm=False``;
  npjem's defaults (instance norm per block, layer norm of the average, FFN outputs) mix the
  audio config's per-block norm with the vision config's norm of the average;
- the loss is the criterion's sum over the masked patches divided by their number, as fairseq's
  trainer divides the gradient by the sample size (``reduction="mean"`` of ``data2vec_loss``);
- the masks are npjem's uniform ``random_patch_mask`` (data2vec 2.0's), not data2vec 1.0
  vision's BEiT block masking; the network is npjem's ViT (absolute position embeddings, no
  layer scale), not BEiT's. The
teacher's targets are regressed, so nothing in the loss pushes images apart: the moving,
contextualised target is what keeps the representation from a constant (data2vec aborts a run
whose target variance falls below 0.1). ``diagnostics`` records the std over the batch of the
targets and of the predictions (their mean over channels), data2vec's own collapse monitor.

For probing, :attr:`backbone` is the ViT wrapped to return the mean of its final patch tokens
(:class:`ViTMeanPool`): data2vec's linear evaluation pools the patch tokens (its CLS token is
never a regression target).
"""
from __future__ import annotations

import copy

from .. import backend
from .. import random as nrandom
from .._checks import check_bool, check_choice, check_int, check_positive, check_probability
from ..autograd import Tensor, no_grad
from ..data.augment import random_patch_mask
from ..losses.distillation import data2vec_loss, data2vec_targets
from ..nn import Linear, Module
from ..nn.models import VisionTransformer
from ..optim import EMA
from . import _monitor
from .base import Method

__all__ = ["Data2Vec", "ViTMeanPool"]


def _copy_module(module):
    """A deep copy of ``module`` with ``requires_grad=False``, sharing its random generators.

    ``EMA.from_module``'s ``copy.deepcopy`` fails on a ViT built with a generator (its Dropout
    layers keep the Generator, which holds the array module); the teacher's dropout (p = 0 in
    ``vit_tiny``) may share the student's generator.
    """
    memo = {}
    for sub in module.modules():
        for v in vars(sub).values():
            if isinstance(v, nrandom.Generator):
                memo[id(v)] = v
    target = copy.deepcopy(module, memo)
    for p in target.parameters():
        p.grad = None
        p.requires_grad = False
    return target


class ViTMeanPool(Module):
    """A ``VisionTransformer`` as a backbone: images → the mean of its final (normalised) patch tokens.

    ``forward(x, mask=None)`` returns (N, D); ``tokens(x, mask)`` the patch tokens (N, P, D);
    ``num_features`` is D.
    """

    def __init__(self, vit):
        super().__init__()
        if not isinstance(vit, VisionTransformer):
            raise TypeError(f"vit must be an npjem VisionTransformer, got {type(vit).__name__}")
        self.vit = vit
        self.num_features = vit.embed_dim

    def tokens(self, x, mask=None):
        return self.vit.forward_features(x, mask)[:, 1:]

    def forward(self, x, mask=None):
        return self.tokens(x, mask).mean(axis=1)


class Data2Vec(Method):
    """data2vec: masked ViT student + linear head regresses the EMA teacher's top-K layer average.

    Args:
        backbone: a ``VisionTransformer`` (wrapped in :class:`ViTMeanPool`) or a ``ViTMeanPool``.
        mask_ratio: the share of patches masked for the student (data2vec vision: 0.6).
        top_k: K, the teacher's last blocks averaged into the target (data2vec vision: 6 of 12).
        instance_norm, layer_norm: how each block's output is normalised before the average
            (over the patches, per channel; over the channels, per patch), and
        layer_norm_targets: a layer norm of the average (``data2vec_targets``'s arguments;
            fairseq's vision config: no norm per block, a layer norm of the average).
        target_layer: ``"ffn"`` (each block's FFN output before its residual, fairseq's
            ``end_of_block_targets=False``) or ``"output"`` (the block's output, fairseq
            vision's default).
        beta: smooth-L1's β (vision: 2; 0 gives the squared error, the audio config).
        momentum, final_momentum, momentum_steps: the linear EMA schedule (vision: 0.999 →
            0.9998; audio 0.999 → 0.9999 over 30k updates).
        views: the view maker, one view (default ``simclr_views``'s first transform).
        generator: seed for ``final_proj``'s weights and the masks.

    Attributes:
        backbone: the student (``ViTMeanPool``); ``backbone_teacher``: the EMA teacher.
        final_proj: Linear(D, D), the student's regression head.
        num_steps: buffer, the EMA updates taken.
    """

    def __init__(self, backbone, mask_ratio=0.6, top_k=6, instance_norm=True, layer_norm=False,
                 layer_norm_targets=True, beta=2.0, momentum=0.999,
                 final_momentum=0.9998, momentum_steps=10000, views=None, generator=None, target_layer="ffn"):
        if isinstance(backbone, VisionTransformer):
            backbone = ViTMeanPool(backbone)
        if not isinstance(backbone, ViTMeanPool):
            raise TypeError(f"backbone must be a VisionTransformer (or ViTMeanPool), got {type(backbone).__name__}")
        if views is None:
            from ..data.augment import simclr_views

            views = simclr_views(backbone.vit.patch_embed.img_size[0]).transform1
        super().__init__(backbone, views)
        self.mask_ratio = check_probability(mask_ratio, "mask_ratio")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1) (some patches masked, some seen), got {mask_ratio!r}")
        self.top_k = check_int(top_k, "top_k", maximum=backbone.vit.depth)
        self.instance_norm = check_bool(instance_norm, "instance_norm")
        self.layer_norm = check_bool(layer_norm, "layer_norm")
        self.layer_norm_targets = check_bool(layer_norm_targets, "layer_norm_targets")
        self.beta = check_positive(beta, "beta", allow_zero=True)
        self.target_layer = check_choice(target_layer, "target_layer", ("ffn", "output"))
        self.momentum = check_probability(momentum, "momentum")
        self.final_momentum = check_probability(final_momentum, "final_momentum")
        self.momentum_steps = check_int(momentum_steps, "momentum_steps", minimum=0)
        g = nrandom.as_generator(generator, "cpu")
        d = backbone.num_features
        self.final_proj = Linear(d, d, generator=g, device="cpu").to(backend.default_device())
        self._mask_seed = int(g.integers(0, 2**31 - 1))
        self._mask_generator = None
        self._ema = EMA(_copy_module(self.backbone), self.backbone, momentum=self.momentum, buffers="keep")
        self.backbone_teacher = self._ema.target
        xp = backend.xp_for_device(backend.default_device())
        self.register_buffer("num_steps", Tensor(xp.zeros((1,), dtype=xp.int64)))
        self.momentum_now = self.momentum
        self.diagnostics = {}

    @property
    def head(self):
        """``final_proj``: linear, so on the pooled tokens it gives the mean of the patch predictions."""
        return self.final_proj

    @property
    def grid(self):
        return self.backbone.vit.patch_embed.grid_size

    def ema_momentum(self, step=None):
        """τ after ``step`` updates (default: the updates taken): linear from ``momentum`` to ``final_momentum``."""
        k = int(backend.to_numpy(self.num_steps.data)[0]) if step is None else int(step)
        if self.momentum_steps == 0 or k >= self.momentum_steps:
            return self.final_momentum
        return self.final_momentum - (self.final_momentum - self.momentum) * (1.0 - k / self.momentum_steps)

    def _mask(self, x):
        device = backend.device_of(x.data)
        if self._mask_generator is None or self._mask_generator.device != device:
            self._mask_generator = nrandom.as_generator(self._mask_seed, device)
        return random_patch_mask(x.shape[0], self.grid, self.mask_ratio, generator=self._mask_generator,
                                 device=device)

    def targets(self, x):
        """The teacher's targets (N, P, D) for images ``x``: the top-K blocks' ``target_layer``,
        normalised, averaged."""
        with no_grad():
            teacher = self.backbone_teacher.vit
            _, layers = teacher.forward_features(x, return_all_blocks=True, block_output=self.target_layer)
            layers = [layer[:, 1:] for layer in layers]  # the patch tokens: the CLS token is no target
            y = data2vec_targets(layers, self.top_k, instance_norm=self.instance_norm, layer_norm=self.layer_norm,
                                 layer_norm_targets=self.layer_norm_targets)
        return y.detach()

    def forward(self, x):
        if x.ndim != 4:
            raise ValueError(f"Data2Vec takes one view (N, C, H, W), got shape {tuple(x.shape)}")
        mask = self._mask(x)
        pred = self.final_proj(self.backbone.tokens(x, mask))
        y = self.targets(x)
        loss = data2vec_loss(pred, y, mask, loss="mse" if self.beta == 0 else "smooth_l1", beta=self.beta or 1.0)
        with no_grad():
            yt, pt = y.data, pred.data
            self.diagnostics = {"loss": _monitor.as_float(loss),
                                "target_std": _monitor.as_float(yt.reshape(-1, yt.shape[-1]).std(axis=0).mean()),
                                "prediction_std": _monitor.as_float(pt.reshape(-1, pt.shape[-1]).std(axis=0).mean()),
                                "embedding_std": _monitor.embedding_std(pt.mean(axis=1)),
                                "momentum": self.momentum_now}
        return loss

    def after_step(self, step, total_steps):
        """Teacher ← τ teacher + (1 − τ) student, τ on the linear schedule (no update once τ = 1).

        τ is the schedule at the number of updates taken, this one included (fairseq's
        ``set_num_updates(k)`` before update k + 1's forward): the first EMA step uses τ(1), and
        τ(0) = ``momentum`` is where the line starts, never a step.
        """
        self.num_steps.data[...] += 1
        tau = self.ema_momentum()
        if tau < 1.0:
            self._ema.update(tau)
        self.momentum_now = tau

    def extra_repr(self):
        return (f"mask_ratio={self.mask_ratio}, top_k={self.top_k}, target_layer={self.target_layer!r}, "
                f"instance_norm={self.instance_norm}, "
                f"layer_norm={self.layer_norm}, layer_norm_targets={self.layer_norm_targets}, "
                f"beta={self.beta}, momentum={self.momentum}, final_momentum={self.final_momentum}, "
                f"momentum_steps={self.momentum_steps}")
