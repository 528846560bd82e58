"""MoCo v2 (He et al. 2020; Chen, Fan, Girshick & He 2020): a momentum key encoder and a queue.

The seeds' components (lecture ``003_``, "Memory Bank"):

- augmentation: a query view x_q and a key view x_k of each image;
- backbone BB and MLP head g (MoCo v2's ``--mlp``) give the query q = g(BB(x_q));
- the *momentum* encoder (a copy BB', g' whose weights ϑ follow the online weights θ by an
  exponential moving average, never by gradient) gives the key k = g'(BB'(x_k)) under
  ``no_grad``::

      ϑ ← m ϑ + (1 − m) θ        after every optimizer step (m = 0.999 in MoCo)

- energy D(q, k) = −q·k/τ on L2-normalised embeddings;
- loss: InfoNCE of each query against its key and the K keys of earlier batches kept in a
  FIFO queue (:func:`npjem.losses.contrastive.moco_loss`)::

      ℓ_i = −log  exp(q_i·k_i/τ) / ( exp(q_i·k_i/τ) + Σ_{n=1}^{K} exp(q_i·κ_n/τ) )

  after which the batch's keys replace the oldest ones in the queue.

The queue decouples the number of negatives from the batch size; the slowly moving key encoder
keeps the queued keys consistent with each other ("the old negative samples are not valid
anymore" otherwise, seed ``003_``).

Order of operations: MoCo's code updates the key encoder at the start of ``forward``, before
computing the keys, and enqueues at the end. Here both happen in :meth:`MoCo.after_step`, after
the optimizer step; the key encoder then sees the same online weights (those after the previous
step) when it computes the next keys, so the two orders give the same training (MoCo's first
update, on identical weights, changes nothing).

Shuffling BN (MoCo's cross-GPU trick against BatchNorm leaking which key goes with which query)
is not done: on one device the batch statistics do not depend on the order of the batch.
"""
from __future__ import annotations

import numbers

from .. import backend
from .. import random as nrandom
from ..autograd import Tensor, no_grad, ops
from ..autograd import functional as F
from ..losses.contrastive import moco_loss
from ..nn.models import MoCoProjectionHead
from ..optim import EMA
from ..state import Queue
from .base import Method
from .simclr import _feature_dim, _temperature

__all__ = ["MoCo"]


class MoCo(Method):
    """MoCo v2: query encoder trained by gradient, EMA key encoder, queue of K negative keys.

    Args:
        backbone: BB (the query encoder's backbone); the key encoder is a deep copy.
        feature_dim: the backbone's output width (default ``backbone.num_features``).
        hidden_dim, out_dim: the MLP head's widths (MoCo v2: 2048 → 2048 → 128).
        queue_size: K, the number of queued negative keys (MoCo: 65536). At most the number of
            training images minus a batch, or the queue holds keys of the query's own image.
        momentum: m of the key encoder's EMA (MoCo: 0.999, constant). On short CPU runs of a few
            hundred steps, 0.999 leaves the key encoder near its random initialisation (after
            s steps the initial weights still weigh m^s: 0.999^300 ≈ 0.74); use 0.99 there.
        temperature: τ (MoCo v1: 0.07, v2: 0.2).
        symmetric: also swap the roles of the views (q from x_k against keys of x_q) and
            average the two losses, as MoCo v2's CIFAR demo and solo-learn's "MoCo V2+"; one
            queue holds the keys of both views. Off by default (MoCo v2 is asymmetric).
        views: the view maker (default ``simclr_views(32)``, MoCo v2's recipe minus blur).
        projector: a Module to use instead of ``MoCoProjectionHead(feature_dim, hidden_dim, out_dim)``.
        generator: seed for the head's initial weights and the queue's random initial keys.

    Attributes:
        backbone, projector: the query encoder (trained).
        backbone_momentum, projector_momentum: the key encoder (``requires_grad=False``).
        queue: the :class:`npjem.state.Queue`, made at the first forward on the device and
            dtype of the keys (so ``method.to(...)`` / ``.double()`` before training work).
    """

    def __init__(self, backbone, feature_dim=None, hidden_dim=512, out_dim=128, queue_size=4096, momentum=0.999,
                 temperature=0.2, symmetric=False, views=None, projector=None, generator=None):
        super().__init__(backbone, views)
        feature_dim = _feature_dim(backbone, feature_dim)
        if isinstance(queue_size, bool) or not isinstance(queue_size, numbers.Integral) or queue_size < 1:
            raise ValueError(f"queue_size must be a positive integer, got {queue_size!r}")
        if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"momentum must be a number in [0, 1], got {momentum!r}")
        self.queue_size = int(queue_size)
        self.momentum = float(momentum)
        self.temperature = _temperature(temperature)
        self.symmetric = bool(symmetric)
        self.out_dim = int(out_dim)
        g = nrandom.as_generator(generator, "cpu")
        self._queue_seed = int(g.integers(0, 2**31 - 1))
        if projector is None:
            # Drawn on the host from the method's seed, so the initial weights are the same on
            # every device; then moved to the default device, as every module is created there.
            projector = MoCoProjectionHead(feature_dim, hidden_dim, out_dim, generator=g,
                                           device="cpu").to(backend.default_device())
        self.projector = projector
        # The key encoder: copies of the online modules, moved by EMA only. MoCo keeps the key
        # encoder's own BatchNorm statistics ("keep": only parameters are averaged).
        self._ema_backbone = EMA.from_module(self.backbone, momentum=self.momentum, buffers="keep")
        self._ema_projector = EMA.from_module(self.projector, momentum=self.momentum, buffers="keep")
        self.backbone_momentum = self._ema_backbone.target
        self.projector_momentum = self._ema_projector.target
        self.queue = None
        self._pending_keys = None

    @property
    def head(self):
        return self.projector

    def _queue_for(self, keys):
        """The queue, made (or moved/cast) to the device and dtype of ``keys``."""
        arr = keys.data
        device = backend.device_of(arr)
        if self.queue is None:
            g = nrandom.as_generator(self._queue_seed, device)
            self.queue = Queue(self.queue_size, arr.shape[1], generator=g, device=device, dtype=arr.dtype)
        elif self.queue.device != device or self.queue.dtype != arr.dtype:
            q = self.queue
            q.data = backend.to_device(q.data, device).astype(arr.dtype)
            q.device, q.dtype, q.xp = device, arr.dtype, backend.get_array_module(q.data)
        return self.queue

    def _keys(self, x):
        with no_grad():
            k = self.projector_momentum(self.backbone_momentum(x))
            return Tensor(F.normalize(k, axis=1).data)

    def forward(self, x_q, x_k):
        if tuple(x_q.shape) != tuple(x_k.shape):
            raise ValueError(f"the two views must have the same shape, got {tuple(x_q.shape)} and {tuple(x_k.shape)}")
        if not self.symmetric:
            q = self.projector(self.backbone(x_q))
            k = self._keys(x_k)
            queue = self._queue_for(k)
            loss = moco_loss(q, k, Tensor(queue.data), self.temperature)
            self._pending_keys = k.data
            return loss
        n = x_q.shape[0]
        q = self.projector(self.backbone(ops.concatenate([x_q, x_k], axis=0)))
        k1, k2 = self._keys(x_q), self._keys(x_k)
        queue = self._queue_for(k1)
        negatives = Tensor(queue.data)
        loss = (moco_loss(q[:n], k2, negatives, self.temperature)
                + moco_loss(q[n:], k1, negatives, self.temperature)) * 0.5
        xp = backend.get_array_module(k1.data)
        self._pending_keys = xp.concatenate([k2.data, k1.data], axis=0)
        return loss

    def after_step(self, step, total_steps):
        """Key encoder ϑ ← m ϑ + (1 − m) θ, then enqueue the keys of the step just taken."""
        self._ema_backbone.update(self.momentum)
        self._ema_projector.update(self.momentum)
        if self._pending_keys is not None:
            self.queue.enqueue(self._pending_keys)
            self._pending_keys = None

    def extra_repr(self):
        return (f"queue_size={self.queue_size}, momentum={self.momentum}, temperature={self.temperature}, "
                f"symmetric={self.symmetric}")
