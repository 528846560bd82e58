"""MoCo v2 (He et al. 2020; Chen, Fan, Girshick & He 2020): a momentum key encoder and a queue.

The four components of a joint-embedding method (NYU Deep Learning notes, ch. 15-1 "Joint Embedding Methods — Contrastive",
sections "Components:" and "Memory Bank:"):

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
anymore" otherwise, ch. 15-1, "Memory Bank:").

Order of operations: MoCo's code updates the key encoder at the start of ``forward``, before
computing the keys, and enqueues at the end. Here both happen in :meth:`MoCo.after_step`, after
the optimizer step; the key encoder then sees the same online weights (those after the previous
step) when it computes the next keys, so the two orders give the same training (MoCo's first
update, on identical weights, changes nothing). Observed between two steps, npjem's key encoder
is one update ahead of MoCo's stored copy: it is the one MoCo's next forward will use (and after
the last step npjem has taken one update MoCo never takes).

Shuffling BN. With BatchNorm, the positive key k_i is normalised with the statistics of the same
images as its query q_i, while every queued negative was normalised with another batch's: the
network can tell the positive by the batch it came from instead of by its content ("cheating",
MoCo §3.3; the pretext loss falls and the features stay poor). MoCo computes BN per GPU and
shuffles the key batch across GPUs, so a key's BN group and its query's differ. Here the batch
is cut into ``bn_splits`` groups, each through the encoder on its own (as on ``bn_splits``
GPUs; the queries in order, the keys after a random shuffle, undone afterwards), as
MoCo's single-GPU CIFAR demo does with its ``SplitBatchNorm`` (8 splits).

The running statistics (what :meth:`~npjem.methods.Method.embed`, hence the probes, normalise
with) follow the demo's ``SplitBatchNorm``: one encoder call updates them once, by the mean of
the groups' updates (every group starts from the same statistics), not once per group. The
groups are contiguous slices of the batch, as MoCo's per-GPU batches; the demo's
``SplitBatchNorm`` takes every ``bn_splits``-th image instead, a relabelling of which images share
a group (the loader shuffles either way).

Symmetric loss (MoCo's CIFAR demo, ``--symmetric``): ``loss_12`` from the queries of the first
view against the keys of the second, then ``loss_21`` the other way round; each view through
the query encoder on its own (BatchNorm over one view, ``bn_splits`` groups of it); the keys of
the second view are computed first, and the queue receives [keys of view 1, keys of view 2].
The demo *sums* the two losses (``directions="sum"``); solo-learn's "MoCo V2+" averages them
(``directions="mean"``, the default here: only the loss scale differs).

Checked step for step (loss, parameters, BatchNorm buffers, key encoder, queue and pointer, the
probes' eval-mode features) against a PyTorch twin of MoCo's CIFAR demo, ``bn_splits`` 1 and 8,
symmetric and asymmetric (``tests/methods/test_moco_twin.py``).
"""
from __future__ import annotations


from .._checks import check_choice, check_int, check_probability
from .. import backend
from .. import random as nrandom
from ..autograd import Tensor, no_grad, ops
from ..autograd import functional as F
from ..losses.contrastive import moco_loss
from ..nn.models import MoCoProjectionHead
from ..optim import EMA
from ..state import Queue
from .base import Method, check_two_views
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
            combine the two losses (``directions``), as MoCo's CIFAR demo and solo-learn's
            "MoCo V2+"; one queue holds the keys of both views. Off by default (MoCo v2 is
            asymmetric).
        directions: how the symmetric loss combines its two terms: ``"mean"`` (solo-learn, the
            default) or ``"sum"`` (MoCo's CIFAR demo, ``loss = loss_12 + loss_21``). Ignored
            when ``symmetric`` is off.
        views: the view maker (default ``simclr_views(32)``, MoCo v2's recipe minus blur).
        projector: a Module to use instead of ``MoCoProjectionHead(feature_dim, hidden_dim, out_dim,
            batch_norm=batch_norm)``.
        batch_norm: BatchNorm after the head's hidden layer (lightly's
            ``MoCoProjectionHead(batch_norm=True)``; MoCo v3's projector has it, MoCo v2's
            ``--mlp`` has not, hence off by default). The BN runs over the same shuffling-BN
            groups as the backbone's.
        bn_splits: shuffling BN over this many groups of the batch (MoCo's GPUs; its CIFAR demo
            uses 8); 1 turns it off (every encoder call sees the whole batch). The batch size
            must be a multiple of it.
        generator: seed for the head's initial weights, the queue's random initial keys and
            the key shuffles.

    Attributes:
        backbone, projector: the query encoder (trained).
        backbone_momentum, projector_momentum: the key encoder (``requires_grad=False``).
        queue: the :class:`npjem.state.Queue`, made at the first forward on the device and
            dtype of the keys (so ``method.to(...)`` / ``.double()`` before training work).
    """

    def __init__(self, backbone, feature_dim=None, hidden_dim=512, out_dim=128, queue_size=4096, momentum=0.999,
                 temperature=0.2, symmetric=False, bn_splits=8, views=None, projector=None, batch_norm=False,
                 generator=None, directions="mean"):
        super().__init__(backbone, views)
        feature_dim = _feature_dim(backbone, feature_dim)
        self.queue_size = check_int(queue_size, "queue_size")
        self.momentum = check_probability(momentum, "momentum")
        self.temperature = _temperature(temperature)
        self.symmetric = bool(symmetric)
        self.directions = check_choice(directions, "directions", ("mean", "sum"))
        self.bn_splits = check_int(bn_splits, "bn_splits")
        self.out_dim = int(out_dim)
        if not isinstance(batch_norm, bool):
            raise TypeError(f"batch_norm must be True or False, got {batch_norm!r}")
        if batch_norm and projector is not None:
            raise ValueError("batch_norm=True configures the default projector; it cannot apply to a given projector")
        self.batch_norm = batch_norm
        g = nrandom.as_generator(generator, "cpu")
        self._queue_seed = int(g.integers(0, 2**31 - 1))
        self._shuffle_seed = int(g.integers(0, 2**31 - 1))
        self._shuffle_generator = None
        if projector is None:
            # Drawn on the host from the method's seed, so the initial weights are the same on
            # every device; then moved to the default device, as every module is created there.
            projector = MoCoProjectionHead(feature_dim, hidden_dim, out_dim, batch_norm=batch_norm, generator=g,
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

    def _groups(self, n):
        """The ``bn_splits`` slices of a batch of n (MoCo's per-GPU batches)."""
        if n % self.bn_splits:
            raise ValueError(f"the batch size ({n}) must be a multiple of bn_splits ({self.bn_splits})")
        m = n // self.bn_splits
        return [slice(j * m, (j + 1) * m) for j in range(self.bn_splits)]

    @staticmethod
    def _split_calls(modules, fn, groups):
        """``[fn(s) for s in groups]`` with the BatchNorm running statistics of ``modules`` updated
        as by one call of the demo's ``SplitBatchNorm``: every group's update starts from the same
        statistics, and the groups' results are averaged (one update by the mean group statistics;
        ``num_batches_tracked`` counts one call). Calling the groups one after the other would
        instead update the statistics ``bn_splits`` times per call, the last group weighing most."""
        bufs = [b for m in modules for _, b in m.named_buffers() if b is not None]
        start = [b.data.copy() for b in bufs]
        total = [backend.get_array_module(b.data).zeros_like(b.data) for b in bufs]  # 0-d arrays stay arrays
        outs = []
        for s in groups:
            for b, a in zip(bufs, start):
                b.data[...] = a
            outs.append(fn(s))
            for t, b in zip(total, bufs):
                t += b.data
        for b, t in zip(bufs, total):
            b.data[...] = t / len(groups) if t.dtype.kind == "f" else t // len(groups)
        return outs

    def _queries(self, x):
        """q = g(BB(x)), BatchNorm over each of the ``bn_splits`` groups of x separately."""
        if self.bn_splits == 1:
            return self.projector(self.backbone(x))
        return ops.concatenate(self._split_calls((self.backbone, self.projector),
                                                 lambda s: self.projector(self.backbone(x[s])),
                                                 self._groups(x.shape[0])), axis=0)

    def _queries_both(self, x_q, x_k):
        # One encoder call per view, as the demo's two contrastive_loss calls: BatchNorm never
        # mixes the views, and the running statistics take two updates per step.
        return ops.concatenate([self._queries(x_q), self._queries(x_k)], axis=0)

    def _keys(self, x):
        """Normalised keys of the momentum encoder, BatchNorm over shuffled groups (shuffling BN)."""
        x = x.data if isinstance(x, Tensor) else x
        with no_grad():
            if self.bn_splits == 1:
                k = self.projector_momentum(self.backbone_momentum(x)).data
            else:
                device = backend.device_of(x)
                if self._shuffle_generator is None or self._shuffle_generator.device != device:
                    self._shuffle_generator = nrandom.as_generator(self._shuffle_seed, device)
                xp = backend.get_array_module(x)
                perm = self._shuffle_generator.permutation(x.shape[0])
                xs = x[perm]
                ks = xp.concatenate(self._split_calls(
                    (self.backbone_momentum, self.projector_momentum),
                    lambda s: self.projector_momentum(self.backbone_momentum(xs[s])).data,
                    self._groups(x.shape[0])), axis=0)
                k = xp.empty_like(ks)
                k[perm] = ks
            return Tensor(F.normalize(Tensor(k), axis=1).data)

    def forward(self, x_q, x_k):
        check_two_views(x_q, x_k)
        if not self.symmetric:
            q = self._queries(x_q)
            k = self._keys(x_k)
            queue = self._queue_for(k)
            loss = moco_loss(q, k, Tensor(queue.data), self.temperature)
            self._pending_keys = k.data
            return loss
        n = x_q.shape[0]
        # The two views' queries as one batch of 2N (split in 2·bn_splits groups for shuffling BN:
        # each group holds one view of N/bn_splits images, as the demo's two calls on one GPU).
        q = self._queries_both(x_q, x_k)
        # The demo's order: loss_12 (keys of the second view) before loss_21, which matters for
        # the key encoder's running statistics and the order of the shuffles.
        k2 = self._keys(x_k)
        k1 = self._keys(x_q)
        queue = self._queue_for(k1)
        negatives = Tensor(queue.data)
        loss = moco_loss(q[:n], k2, negatives, self.temperature) + moco_loss(q[n:], k1, negatives, self.temperature)
        if self.directions == "mean":
            loss = loss * 0.5
        xp = backend.get_array_module(k1.data)
        self._pending_keys = xp.concatenate([k1.data, k2.data], axis=0)
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
                f"symmetric={self.symmetric}, directions={self.directions!r}, bn_splits={self.bn_splits}, "
                f"batch_norm={self.batch_norm}")
