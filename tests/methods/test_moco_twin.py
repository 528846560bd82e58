"""MoCo v2 step for step against a PyTorch twin written from MoCo's CIFAR-10 demo.

The twin is ``ModelMoCo`` of facebookresearch/moco ``colab/moco_cifar10_demo.ipynb`` (with
``moco/builder.py`` for the asymmetric loss): the key encoder updated by momentum at the start of
every forward (parameters only), queries L2-normalised, keys computed under ``no_grad`` from a
shuffled batch and unshuffled, logits [q·k, q·queue]/T with label 0, the keys enqueued at
``ptr`` after the loss; the symmetric loss ``loss_12 + loss_21`` with the queue receiving
``cat([k1, k2])``. Its ``SplitBatchNorm`` is the demo's (the running statistics of one call are
the mean of every split's update from the same start), with the splits taken as contiguous slices
of the batch (MoCo's per-GPU batches; the demo interleaves them). The encoder is the ConvNet and
MLP head ``npjem pretrain`` trains (BatchNorm in the head's hidden layer, ``--no-head-bn``
without), under the recipe's AdamW (decoupled decay 0.05) with warm-up and cosine decay.

Two conventions are set, and named in ``npjem.methods.MoCo``'s docstring:

- MoCo moves the key encoder at the start of the next forward, npjem right after the step: the
  keys of every step come from the same weights, so the twin's key encoder is compared as its
  next forward will use it (one momentum update ahead of its stored copy);
- the symmetric loss: the demo sums ``loss_12 + loss_21`` (``directions="sum"``), solo-learn and
  npjem's default average them (``directions="mean"``); both are run.

The random shuffles of the key batch are npjem's draws fed to the twin (``torch.randperm`` in the
demo), so both shuffle alike.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from npjem import optim  # noqa: E402
from npjem import random as nrandom  # noqa: E402
from npjem.autograd import Tensor  # noqa: E402
from npjem.methods import MoCo  # noqa: E402
from npjem.nn import models  # noqa: E402

from _twins import (  # noqa: E402
    assert_snapshots_agree,
    draw_views,
    load_from_npjem,
    method_key,
    recipe_warmup_steps,
    run_npjem,
    snapshot_npjem,
    snapshot_torch,
    torch_convnet,
    torch_warmup_cosine,
)

nn = torch.nn
STEPS = 10
WIDTHS = (4, 8)
HIDDEN, OUT = 16, 8        # the recipe's hidden = 2 × feature width
K = 64                     # a multiple of every batch of keys (the demo asserts K % N == 0)
TAU = 0.2                  # the recipe's temperature
M = 0.9                    # momentum (the recipe's 0.99 moves the key encoder too little to see in 12 steps)


class _SplitBatchNormMixin:
    """The demo's ``SplitBatchNorm`` with contiguous splits (one per simulated GPU)."""

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        s = self.num_splits
        n, c, rest = x.shape[0], x.shape[1], tuple(x.shape[2:])
        # split j = images j·n/s … (j+1)·n/s − 1, laid side by side as s·C channels
        xs = x.reshape((s, n // s, c) + rest).transpose(0, 1).reshape((n // s, s * c) + rest)
        running_mean_split = self.running_mean.repeat(s)
        running_var_split = self.running_var.repeat(s)
        out = nn.functional.batch_norm(xs, running_mean_split, running_var_split, self.weight.repeat(s),
                                       self.bias.repeat(s), True, self.momentum, self.eps)
        self.running_mean.data.copy_(running_mean_split.view(s, c).mean(dim=0))
        self.running_var.data.copy_(running_var_split.view(s, c).mean(dim=0))
        self.num_batches_tracked.add_(1)   # the demo leaves it alone; one call, as a plain BN counts
        return out.reshape((n // s, s, c) + rest).transpose(0, 1).reshape((n, c) + rest)


class SplitBatchNorm2d(_SplitBatchNormMixin, nn.BatchNorm2d):
    def __init__(self, num_features, num_splits):
        super().__init__(num_features)
        self.num_splits = num_splits


class SplitBatchNorm1d(_SplitBatchNormMixin, nn.BatchNorm1d):
    def __init__(self, num_features, num_splits):
        super().__init__(num_features)
        self.num_splits = num_splits


def encoder(bn_splits, head_bn):
    """Backbone and MLP head, with SplitBatchNorm in place of every BatchNorm when bn_splits > 1."""
    backbone = torch_convnet(widths=WIDTHS)
    if bn_splits > 1:
        layers = backbone[0]
        for i, layer in enumerate(layers):
            if isinstance(layer, nn.BatchNorm2d):
                layers[i] = SplitBatchNorm2d(layer.num_features, bn_splits)
    head = nn.Module()
    if head_bn:
        bn = SplitBatchNorm1d(HIDDEN, bn_splits) if bn_splits > 1 else nn.BatchNorm1d(HIDDEN)
        head.layers = nn.Sequential(nn.Linear(WIDTHS[-1], HIDDEN, bias=False), bn, nn.ReLU(), nn.Linear(HIDDEN, OUT))
    else:
        head.layers = nn.Sequential(nn.Linear(WIDTHS[-1], HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, OUT))
    return backbone, head


class TwinMoCo(nn.Module):
    """The demo's ``ModelMoCo``; attribute names follow npjem's state dict."""

    def __init__(self, bn_splits, head_bn, symmetric, directions, shuffles):
        super().__init__()
        self.backbone, self.projector = encoder(bn_splits, head_bn)
        self.backbone_momentum, self.projector_momentum = encoder(bn_splits, head_bn)
        self.symmetric, self.directions = symmetric, directions
        self.shuffles = shuffles           # npjem's permutations, in the order the keys are computed
        # plain tensors, not buffers: npjem keeps its queue outside the state dict
        self.queue = torch.zeros(OUT, K, dtype=torch.float64)
        self.queue_ptr = torch.zeros(1, dtype=torch.long)

    def encoder_q(self, x):
        return self.projector.layers(self.backbone(x))

    def encoder_k(self, x):
        return self.projector_momentum.layers(self.backbone_momentum(x))

    def online_and_momentum(self):
        return zip(list(self.backbone.parameters()) + list(self.projector.parameters()),
                   list(self.backbone_momentum.parameters()) + list(self.projector_momentum.parameters()))

    @torch.no_grad()
    def _momentum_update_key_encoder(self):
        for param_q, param_k in self.online_and_momentum():
            param_k.data = param_k.data * M + param_q.data * (1.0 - M)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys):
        batch_size = keys.shape[0]
        ptr = int(self.queue_ptr)
        assert K % batch_size == 0
        self.queue[:, ptr:ptr + batch_size] = keys.t()
        self.queue_ptr[0] = (ptr + batch_size) % K

    def contrastive_loss(self, im_q, im_k):
        q = nn.functional.normalize(self.encoder_q(im_q), dim=1)
        with torch.no_grad():
            idx_shuffle = self.shuffles.pop(0) if self.shuffles is not None else torch.arange(im_k.shape[0])
            idx_unshuffle = torch.argsort(idx_shuffle)
            k = nn.functional.normalize(self.encoder_k(im_k[idx_shuffle]), dim=1)
            k = k[idx_unshuffle]
        l_pos = torch.einsum("nc,nc->n", [q, k]).unsqueeze(-1)
        l_neg = torch.einsum("nc,ck->nk", [q, self.queue.clone().detach()])
        logits = torch.cat([l_pos, l_neg], dim=1) / TAU
        labels = torch.zeros(logits.shape[0], dtype=torch.long)
        return nn.functional.cross_entropy(logits, labels), q, k

    def forward(self, im1, im2):
        with torch.no_grad():
            self._momentum_update_key_encoder()
        if self.symmetric:
            loss_12, q1, k2 = self.contrastive_loss(im1, im2)
            loss_21, q2, k1 = self.contrastive_loss(im2, im1)
            loss = loss_12 + loss_21
            if self.directions == "mean":
                loss = loss / 2
            k = torch.cat([k1, k2], dim=0)
        else:
            loss, q, k = self.contrastive_loss(im1, im2)
        self._dequeue_and_enqueue(k)
        return loss

    def snapshot(self, loss):
        """Everything npjem holds after its step: the key encoder as the next forward sees it."""
        out = {"loss": np.float64(loss), "queue": self.queue.T.numpy().copy(),
               "queue_ptr": np.float64(int(self.queue_ptr))}
        state = snapshot_torch(self)
        with torch.no_grad():
            online = dict(self.named_parameters())
            for name, value in list(state.items()):
                if name.startswith(("backbone_momentum.", "projector_momentum.")) and name.endswith(("weight", "bias")):
                    q = online[name.replace("_momentum.", ".", 1)].numpy()
                    state[name] = value * M + q * (1.0 - M)
        return {**out, **state}


def npjem_moco(bn_splits, head_bn, symmetric, directions):
    backbone = models.ConvNet(widths=WIDTHS, generator=0)
    m = MoCo(backbone, hidden_dim=HIDDEN, out_dim=OUT, queue_size=K, momentum=M, temperature=TAU,
             symmetric=symmetric, bn_splits=bn_splits, batch_norm=head_bn, directions=directions,
             generator=1).double()
    m._queue_for(Tensor(np.zeros((1, OUT))))     # make the queue now, so that the twin starts from it
    return m


def npjem_snapshot(m, loss):
    return {"loss": np.float64(loss), "queue": m.queue.data.copy(), "queue_ptr": np.float64(m.queue.ptr),
            **snapshot_npjem(m, key_map=method_key)}


def shuffles_of(m, n, calls):
    """The permutations npjem's shuffling BN draws, in order (``torch.randperm`` in the demo)."""
    if m.bn_splits == 1:
        return None
    g = nrandom.as_generator(m._shuffle_seed, "cpu")
    return [torch.as_tensor(np.asarray(g.permutation(n))) for _ in range(calls)]


CONFIGS = {
    # npjem pretrain's MoCo: symmetric, 8 shuffling-BN groups, BN in the head, AdamW.
    "recipe": dict(bn_splits=8, head_bn=True, symmetric=True, directions="mean", batch=16),
    "v2_asymmetric": dict(bn_splits=8, head_bn=False, symmetric=False, directions="mean", batch=16),
    # the demo's own sum of the two losses, its --bn-splits 1 (plain BatchNorm per view)
    "one_group_symmetric_sum": dict(bn_splits=1, head_bn=True, symmetric=True, directions="sum", batch=8),
    "one_group_asymmetric": dict(bn_splits=1, head_bn=False, symmetric=False, directions="mean", batch=8),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_moco_takes_the_twins_steps(name):
    cfg = dict(CONFIGS[name])
    batch = cfg.pop("batch")
    views = draw_views(1, STEPS, batch=batch)
    method = npjem_moco(**cfg)
    calls = STEPS * (2 if cfg["symmetric"] else 1)
    twin = load_from_npjem(TwinMoCo(cfg["bn_splits"], cfg["head_bn"], cfg["symmetric"], cfg["directions"],
                                    shuffles_of(method, batch, calls)),
                           method, lambda k: method_key(k))
    twin.queue.copy_(torch.as_tensor(method.queue.data.T))
    for p in list(twin.backbone_momentum.parameters()) + list(twin.projector_momentum.parameters()):
        p.requires_grad = False
    twin.train()
    params = list(twin.backbone.parameters()) + list(twin.projector.parameters())
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.05)
    sched = torch_warmup_cosine(opt, STEPS, recipe_warmup_steps(STEPS))
    theirs = []
    for x1, x2 in views:
        loss = twin(torch.as_tensor(x1), torch.as_tensor(x2))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        theirs.append(twin.snapshot(loss.item()))

    opt = optim.AdamW(method.trainable_parameters(), lr=1e-2, weight_decay=0.05)
    sched = optim.WarmupCosine(opt, total_steps=STEPS, warmup_steps=recipe_warmup_steps(STEPS))
    ours = run_npjem(method, views, opt, schedule=sched, snapshot=npjem_snapshot)
    worst = assert_snapshots_agree(ours, theirs)

    # The features the probes use: the query backbone in eval mode, on its running statistics.
    probe = np.random.default_rng(2).standard_normal((5, 3, 8, 8))
    twin.eval()
    with torch.no_grad():
        expected = twin.backbone(torch.as_tensor(probe)).numpy()
    np.testing.assert_allclose(method.embed(probe).numpy(), expected, rtol=1e-9, atol=1e-12)
    assert np.abs(ours[-1]["backbone.0.1.running_mean"]).max() > 1e-3   # the statistics did move
    print(f"\nMoCo ({name}): {STEPS} steps, worst relative difference {worst:.2e}")
