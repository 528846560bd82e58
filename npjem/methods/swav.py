"""SwAV (Caron et al., 2020): swapped prediction of equipartitioned cluster assignments.

The four components of a joint-embedding method (NYU Deep Learning notes, ch. 8-2 "Regularized Latent Variable Energy Based Models",
sections "Components:" and "Clustering methods", "SwAV"):

- augmentation: multi-crop, V views of every image: ``n_assign`` full-size crops (2 in SwAV)
  and smaller local crops (:class:`MultiCropViews`);
- backbone BB and projector g, the embedding L2-normalised: z_v = g(BB(x_v)) / ‖·‖;
- K prototypes c_k, the rows of a bias-free Linear C (K, d), kept on the unit sphere: the
  scores are cosines s_v = z_v Cᵀ;
- codes: for each of the first ``n_assign`` crops, a soft assignment of the batch to the
  prototypes, found by Sinkhorn–Knopp under the constraint that every prototype gets an equal
  share of the batch (:func:`npjem.losses.clustering.sinkhorn_knopp`, no gradient). The
  equipartition is what rules out the trivial solution of every image in one cluster;
- loss: each crop predicts the code of every *other* assignment crop, a cross-entropy against
  softmax(s_v / τ) (:func:`npjem.losses.clustering.swav`), averaged over the pairs as in the
  authors' code; ``reduction="sum"`` gives the notes' "sum of two crossentropy functions"
  (NYU Deep Learning, ch. 8-2, "Clustering methods"), twice the mean for two crops.

The original's training details, all here, checked step for step against a PyTorch twin of
``main_swav.py``'s ``train`` (``tests/methods/test_swav_twin.py``):

- the backbone runs on the crops grouped by resolution, the projector once on the features of
  *all* crops (``forward_head`` on the concatenation), so a BatchNorm in the projector
  normalises over global and local crops together;
- the projector's first Linear has no bias (``SimCLRProjectionHead``), where the original's
  (``src/resnet50.py``) has one: the BatchNorm after it removes any bias exactly, so the two
  give the same outputs and gradients (the original's bias gets a zero gradient);
- the prototypes are re-normalised in place at the start of every training forward, as the
  original does at the start of every iteration, and again after every optimizer step
  (``after_step``), so that they are unit vectors between steps too. The first matters when
  they were not unit vectors when the step began: after ``.double()`` (normalised in float32,
  they are unit only to 1e-8 in float64) or after loading weights from elsewhere;
- the prototypes are frozen for the first ``freeze_prototypes_steps`` steps (the original
  drops their gradients for 313 iterations): here the scores are computed with a detached C
  then, so C gets no gradient and the optimizer leaves it (and its weight decay) alone;
- with small batches, an equipartition of B samples over K prototypes is coarse: a queue of
  the last ``queue_length`` embeddings of each assignment crop is prepended to the batch's
  scores before Sinkhorn, and only the batch's rows of the codes are kept. The queue holds
  detached normalised embeddings (scored with the current prototypes), fills from step
  ``queue_start_step`` on, and is used once it is full (the original's "last row non-zero").

The optimizer is the caller's: the original wraps SGD in apex's LARC (trust 0.001, no clipping)
under a warm-up + cosine lr; ``npjem pretrain`` trains SwAV with Adam.
"""
from __future__ import annotations

from .. import backend
from .. import random as nrandom
from .._checks import check_bool, check_choice, check_int, check_positive
from ..autograd import Tensor, no_grad, ops
from ..autograd import functional as F
from ..losses.clustering import sinkhorn_knopp, swav
from ..nn import Linear
from ..nn.models import SimCLRProjectionHead
from . import _monitor
from .base import Method
from .simclr import _feature_dim

__all__ = ["SwAV", "MultiCropViews"]


class MultiCropViews:
    """A multi-crop view maker from any two augmentations: ``[global × n_global, local × n_local]``.

    ``global_transform`` and ``local_transform`` are callables ``t(x, generator)`` (for example
    two ``Compose`` pipelines, the second cropping to a smaller size); each crop is drawn
    independently. Returns a list of ``n_global + n_local`` arrays. (:class:`npjem.data.MultiCrop`
    is the fixed DINO recipe; this one composes your own.)
    """

    def __init__(self, global_transform, local_transform=None, n_global=2, n_local=0):
        if not callable(global_transform):
            raise TypeError(f"global_transform must be callable, got {type(global_transform).__name__}")
        self.n_global = check_int(n_global, "n_global")
        self.n_local = check_int(n_local, "n_local", minimum=0)
        if self.n_local and not callable(local_transform):
            raise TypeError(f"local_transform must be callable when n_local > 0, got {type(local_transform).__name__}")
        self.global_transform = global_transform
        self.local_transform = local_transform

    def __repr__(self):
        return (f"MultiCropViews({self.global_transform!r}, {self.local_transform!r}, n_global={self.n_global}, "
                f"n_local={self.n_local})")

    def __call__(self, x, generator=None):
        g = nrandom.as_generator(generator, backend.device_of(x))
        views = [self.global_transform(x, generator=g) for _ in range(self.n_global)]
        views += [self.local_transform(x, generator=g) for _ in range(self.n_local)]
        return views


def _encode_crops(encoder, crops, head=None):
    """``encoder`` on every crop, consecutive crops of one shape as one batch (SwAV's and DINO's
    grouping by resolution); returns one output per crop.

    With ``head``, ``encoder`` is the backbone and ``head`` runs *once* on the backbone features
    of all crops together, as SwAV's ``forward_head`` and DINO's ``MultiCropWrapper`` do: a
    BatchNorm in the head then normalises over every crop of the step (global and local), not
    over each resolution apart.
    """
    outs, i = [], 0
    while i < len(crops):
        j = i
        while j + 1 < len(crops) and tuple(crops[j + 1].shape) == tuple(crops[i].shape):
            j += 1
        group = crops[i:j + 1]
        y = encoder(group[0] if len(group) == 1 else ops.concatenate(list(group), axis=0))
        n = crops[i].shape[0]
        outs += [y[k * n:(k + 1) * n] for k in range(len(group))]
        i = j + 1
    if head is None:
        return outs
    n = crops[0].shape[0]
    y = head(outs[0] if len(outs) == 1 else ops.concatenate(outs, axis=0))
    return [y[k * n:(k + 1) * n] for k in range(len(crops))]


def _check_crops(crops, n_min, what):
    if len(crops) < n_min:
        raise ValueError(f"{what} needs at least {n_min} crops, got {len(crops)}")
    n = crops[0].shape[0]
    for v, c in enumerate(crops):
        if c.ndim != 4 or c.shape[0] != n:
            raise ValueError(f"every crop must be (N, C, H, W) with the same N = {n}; crop {v} has shape "
                             f"{tuple(c.shape)}")
    return n


class SwAV(Method):
    """SwAV: backbone → projector → L2-normalise → prototypes; swapped prediction of Sinkhorn codes.

    Args:
        backbone: BB, images (N, C, H, W) → features (N, feature_dim). Local crops of another
            size must work too (a backbone ending in global pooling).
        feature_dim: the backbone's output width (default ``backbone.num_features``).
        hidden_dim, out_dim: the projector's widths (SwAV: 2048, 128).
        num_prototypes: K (SwAV: 3000).
        temperature: τ of the softmax over prototypes (0.1).
        epsilon, sinkhorn_iterations: Sinkhorn's ε (0.05) and iterations (3).
        log_domain: run Sinkhorn in the log domain (the same codes where both are finite). None
            (default) does so when ε < ``LOG_DOMAIN_BELOW`` (0.015): the plain iteration's
            exp(s/ε) summed over a batch overflows float32 from ε ≈ 0.012 (|s| ≤ 1).
        n_assign: how many of the first crops get codes (SwAV's ``crops_for_assign = [0, 1]``).
        freeze_prototypes_steps: steps during which the prototypes are not updated (SwAV: 313).
        queue_length: embeddings per assignment crop kept for Sinkhorn (0: no queue; SwAV's
            batch-256 scripts 3840).
        queue_start_step: the step from which the queue fills (SwAV: epoch 15).
        views: the view maker, returning at least ``n_assign`` crops (default: two
            ``simclr_views`` crops, no local crops).
        projector: a Module to use instead of ``SimCLRProjectionHead(feature_dim, hidden_dim, out_dim)``.
        generator: seed for the projector's and prototypes' initial weights.
        reduction: ``"mean"`` over the (assignment crop, other crop) pairs (SwAV's code) or
            ``"sum"`` (the notes' sum of cross-entropies).

    Attributes:
        prototypes: the Linear(out_dim, K, bias=False) whose rows are the unit prototypes.
        queue: buffer (n_assign, queue_length, out_dim); ``queue_count`` how many rows hold
            embeddings; ``num_steps`` the optimizer steps taken (both buffers, so a checkpoint
            resumes the schedule).
        diagnostics: ``loss``, ``embedding_std``, ``prototypes_used`` (distinct arg-max
            prototypes over the first crop of the batch) and ``queue_used``.
    """

    #: ε below which Sinkhorn runs in the log domain unless ``log_domain`` says otherwise.
    LOG_DOMAIN_BELOW = 0.015

    def __init__(self, backbone, feature_dim=None, hidden_dim=2048, out_dim=128, num_prototypes=3000,
                 temperature=0.1, epsilon=0.05, sinkhorn_iterations=3, n_assign=2, freeze_prototypes_steps=313,
                 queue_length=0, queue_start_step=0, views=None, projector=None, generator=None, log_domain=None,
                 reduction="mean"):
        if views is None:
            from ..data.augment import simclr_views

            views = simclr_views(32)
        super().__init__(backbone, views)
        feature_dim = _feature_dim(backbone, feature_dim)
        self.num_prototypes = check_int(num_prototypes, "num_prototypes")
        self.temperature = check_positive(temperature, "temperature")
        self.epsilon = check_positive(epsilon, "epsilon")
        self.sinkhorn_iterations = check_int(sinkhorn_iterations, "sinkhorn_iterations")
        self.log_domain = self.epsilon < self.LOG_DOMAIN_BELOW if log_domain is None else check_bool(log_domain,
                                                                                                    "log_domain")
        self.n_assign = check_int(n_assign, "n_assign")
        self.freeze_prototypes_steps = check_int(freeze_prototypes_steps, "freeze_prototypes_steps", minimum=0)
        self.queue_length = check_int(queue_length, "queue_length", minimum=0)
        self.queue_start_step = check_int(queue_start_step, "queue_start_step", minimum=0)
        self.reduction = check_choice(reduction, "reduction", ("mean", "sum"))
        g = nrandom.as_generator(generator, "cpu")
        device = backend.default_device()
        if projector is None:
            projector = SimCLRProjectionHead(feature_dim, hidden_dim, out_dim, generator=g, device="cpu").to(device)
        self.projector = projector
        d = getattr(projector, "out_features", out_dim)
        self.out_dim = check_int(d, "out_dim")
        self.prototypes = Linear(self.out_dim, self.num_prototypes, bias=False, generator=g, device="cpu").to(device)
        self._normalize_prototypes()
        xp = backend.xp_for_device(device)
        dtype = self.prototypes.weight.dtype
        self.register_buffer("queue", Tensor(xp.zeros((self.n_assign, self.queue_length, self.out_dim), dtype=dtype)))
        self.register_buffer("queue_count", Tensor(xp.zeros((1,), dtype=xp.int64)))
        self.register_buffer("num_steps", Tensor(xp.zeros((1,), dtype=xp.int64)))
        self._pending = None
        self.diagnostics = {}

    @property
    def head(self):
        return self.projector

    @property
    def prototypes_frozen(self):
        """True while the prototypes get no gradient (the first ``freeze_prototypes_steps`` steps)."""
        return int(backend.to_numpy(self.num_steps.data)[0]) < self.freeze_prototypes_steps

    @property
    def queue_in_use(self):
        """True when the queue is full and Sinkhorn sees it."""
        return self.queue_length > 0 and int(backend.to_numpy(self.queue_count.data)[0]) >= self.queue_length

    def _normalize_prototypes(self):
        w = self.prototypes.weight.data
        xp = backend.get_array_module(w)
        w /= xp.maximum(xp.sqrt((w * w).sum(axis=1, keepdims=True)), 1e-12)

    def forward(self, *crops):
        n = _check_crops(crops, max(2, self.n_assign), "SwAV")
        if self.training:
            self._normalize_prototypes()
        z = _encode_crops(self.backbone, crops, head=lambda h: F.normalize(self.projector(h), axis=1))
        weight = self.prototypes.weight.detach() if self.prototypes_frozen else self.prototypes.weight
        scores = [F.linear(zv, weight) for zv in z]
        codes = []
        use_queue = self.queue_in_use
        with no_grad():
            w = self.prototypes.weight.data
            xp = backend.get_array_module(w)
            for i in range(self.n_assign):
                s = scores[i].data
                if use_queue:
                    s = xp.concatenate([self.queue.data[i] @ w.T, s], axis=0)
                q = sinkhorn_knopp(Tensor(s), epsilon=self.epsilon, n_iters=self.sinkhorn_iterations,
                                   log_domain=self.log_domain)
                q = q.data if isinstance(q, Tensor) else q
                codes.append(Tensor(q[-n:]))
        loss = swav(scores, codes, temperature=self.temperature, reduction=self.reduction)
        self._pending = [z[i].data for i in range(self.n_assign)]
        s0 = backend.to_numpy(scores[0].data.argmax(axis=1))
        self.diagnostics = {"loss": _monitor.as_float(loss), "embedding_std": _monitor.embedding_std(z[0]),
                            "prototypes_used": int(len(set(s0.tolist()))), "queue_used": use_queue}
        return loss

    def after_step(self, step, total_steps):
        """Re-normalise the prototypes, count the step, and push the batch's embeddings into the queue."""
        self._normalize_prototypes()
        self.num_steps.data[...] += 1
        pending, self._pending = self._pending, None
        if self.queue_length == 0 or pending is None or step < self.queue_start_step:
            return
        q = self.queue.data
        b = min(pending[0].shape[0], self.queue_length)
        for i, e in enumerate(pending):
            q[i, b:] = q[i, :-b].copy() if b < self.queue_length else q[i, b:]
            q[i, :b] = e[-b:].astype(q.dtype, copy=False)
        self.queue_count.data[...] = min(self.queue_length, int(backend.to_numpy(self.queue_count.data)[0]) + b)

    def extra_repr(self):
        return (f"num_prototypes={self.num_prototypes}, temperature={self.temperature}, epsilon={self.epsilon}, "
                f"log_domain={self.log_domain}, "
                f"sinkhorn_iterations={self.sinkhorn_iterations}, n_assign={self.n_assign}, "
                f"freeze_prototypes_steps={self.freeze_prototypes_steps}, queue_length={self.queue_length}, "
                f"reduction={self.reduction!r}")
