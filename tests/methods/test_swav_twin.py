"""SwAV step for step against a PyTorch twin written from facebookresearch/swav ``main_swav.py``.

The twin follows ``train`` and ``distributed_sinkhorn`` of ``main_swav.py`` and the model of
``src/resnet50.py``: the prototypes re-normalised at the start of every iteration, the backbone
per run of equal resolutions and ``forward_head`` (projection MLP with BatchNorm, L2 norm,
bias-free prototypes) once on every crop, the queue used once its last row is non-zero and
filled after it is used, the codes from Sinkhorn on the detached scores, the loss averaged over
crops, and the prototypes' gradients set to None for the first ``freeze_prototypes_niters``
iterations. One world, so ``dist.all_reduce`` is the identity.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from _twins import (  # noqa: E402
    assert_snapshots_agree,
    convnet_key,
    draw_views,
    load_from_npjem,
    recipe_lr,
    recipe_warmup_steps,
    run_npjem,
    snapshot_npjem,
    snapshot_torch,
    torch_convnet,
)

from npjem import optim  # noqa: E402
from npjem.methods import SwAV  # noqa: E402
from npjem.nn.models import ConvNet  # noqa: E402

STEPS = 12
FEAT, HIDDEN, OUT, K, BATCH = 8, 16, 8, 12, 8


class Twin(nn.Module):
    """``resnet50.py``'s head on ``torch_convnet``, with npjem's state-dict names."""

    def __init__(self, queue_length):
        super().__init__()
        self.backbone = torch_convnet(widths=(4, FEAT))
        self.projector = nn.Module()
        # resnet50.py's first Linear has a bias; the BatchNorm after it removes it exactly (zero
        # gradient, no effect on any output), and npjem's head leaves it out: so does the twin.
        self.projector.layers = nn.Sequential(nn.Linear(FEAT, HIDDEN, bias=False), nn.BatchNorm1d(HIDDEN),
                                              nn.ReLU(inplace=True), nn.Linear(HIDDEN, OUT))
        self.prototypes = nn.Linear(OUT, K, bias=False)
        self.register_buffer("queue", torch.zeros(2, queue_length, OUT))
        self.register_buffer("queue_count", torch.zeros(1, dtype=torch.int64))
        self.register_buffer("num_steps", torch.zeros(1, dtype=torch.int64))

    def forward_head(self, x):
        x = self.projector.layers(x)
        x = F.normalize(x, dim=1, p=2)
        return x, self.prototypes(x)

    def forward(self, inputs):
        idx_crops = torch.cumsum(torch.unique_consecutive(torch.tensor([inp.shape[-1] for inp in inputs]),
                                                          return_counts=True)[1], 0)
        start_idx = 0
        for end_idx in idx_crops.tolist():
            _out = self.backbone(torch.cat(inputs[start_idx:end_idx]))
            output = _out if start_idx == 0 else torch.cat((output, _out))
            start_idx = end_idx
        return self.forward_head(output)


def key_map(key):
    return "backbone." + convnet_key(key[len("backbone."):]) if key.startswith("backbone.") else key


@torch.no_grad()
def distributed_sinkhorn(out, epsilon, sinkhorn_iterations):
    Q = torch.exp(out / epsilon).t()  # Q is K-by-B
    B = Q.shape[1]
    K_ = Q.shape[0]
    sum_Q = torch.sum(Q)
    Q /= sum_Q
    for _ in range(sinkhorn_iterations):
        sum_of_rows = torch.sum(Q, dim=1, keepdim=True)
        Q /= sum_of_rows
        Q /= K_
        Q /= torch.sum(Q, dim=0, keepdim=True)
        Q /= B
    Q *= B
    return Q.t()


def normalize_prototypes(twin):
    with torch.no_grad():
        w = twin.prototypes.weight.data.clone()
        w = F.normalize(w, dim=1, p=2)
        twin.prototypes.weight.copy_(w)


def train_twin(twin, views, cfg):
    if cfg["optimizer"] == "adam":
        opt = torch.optim.Adam(twin.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    else:
        opt = torch.optim.SGD(twin.parameters(), lr=cfg["lr"], momentum=0.9, weight_decay=cfg["weight_decay"])
    crops_for_assign = [0, 1]
    n_crops = len(views[0])
    queue, use_the_queue = None, False
    snaps = []
    for it, inputs in enumerate(views):
        if cfg["queue_length"] > 0 and it >= cfg["queue_start_step"] and queue is None:
            queue = twin.queue  # zeros, created when its epoch starts
        for group in opt.param_groups:
            group["lr"] = recipe_lr(it, STEPS, cfg["lr"])
        normalize_prototypes(twin)
        embedding, output = twin([torch.as_tensor(x) for x in inputs])
        embedding = embedding.detach()
        bs = inputs[0].shape[0]
        loss = 0
        for i, crop_id in enumerate(crops_for_assign):
            with torch.no_grad():
                out = output[bs * crop_id: bs * (crop_id + 1)].detach()
                if queue is not None:
                    if use_the_queue or not torch.all(queue[i, -1, :] == 0):
                        use_the_queue = True
                        out = torch.cat((torch.mm(queue[i], twin.prototypes.weight.t()), out))
                    queue[i, bs:] = queue[i, :-bs].clone()
                    queue[i, :bs] = embedding[crop_id * bs: (crop_id + 1) * bs]
                q = distributed_sinkhorn(out, cfg["epsilon"], 3)[-bs:]
            subloss = 0
            for v in np.delete(np.arange(n_crops), crop_id):
                x = output[bs * v: bs * (v + 1)] / cfg["temperature"]
                subloss -= torch.mean(torch.sum(q * F.log_softmax(x, dim=1), dim=1))
            loss += subloss / (n_crops - 1) if cfg["reduction"] == "mean" else subloss
        if cfg["reduction"] == "mean":
            loss /= len(crops_for_assign)
        opt.zero_grad()
        loss.backward()
        if it < cfg["freeze_prototypes_steps"]:
            for name, p in twin.named_parameters():
                if "prototypes" in name:
                    p.grad = None
        opt.step()
        if queue is not None:
            twin.queue_count.fill_(min(cfg["queue_length"], int(twin.queue_count) + bs))
        twin.num_steps += 1
        normalize_prototypes(twin)  # the next iteration's first statement, before this step's snapshot
        snaps.append({"loss": np.array(loss.item()), **snapshot_torch(twin)})
    return snaps


RECIPE = dict(optimizer="adam", lr=1e-3, weight_decay=1e-6, temperature=0.1, epsilon=0.02, queue_length=0,
              queue_start_step=0, freeze_prototypes_steps=4, reduction="mean")
CONFIGS = {
    # npjem pretrain's SwAV (DEFAULTS["swav"], build_method): 2 global + 2 local crops, BN in the
    # projector, ε 0.02, no queue, prototypes frozen for the first steps (39 there, 4 here), Adam
    # (1e-3, L2 1e-6) under the recipe's warm-up + cosine.
    "pretrain": RECIPE,
    # The queue (two batches per assignment crop, filling from step 2, in use from step 4),
    # SwAV's ε 0.05, the notes' sum of cross-entropies, SGD with momentum 0.9.
    "queue-sum-sgd": {**RECIPE, "optimizer": "sgd", "lr": 0.05, "epsilon": 0.05, "queue_length": 2 * BATCH,
                      "queue_start_step": 2, "freeze_prototypes_steps": 3, "reduction": "sum"},
}


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_swav_takes_the_steps_of_main_swav(config):
    cfg = CONFIGS[config]
    method = SwAV(ConvNet(widths=(4, FEAT), strides=(1, 2), generator=0), hidden_dim=HIDDEN, out_dim=OUT,
                  num_prototypes=K, temperature=cfg["temperature"], epsilon=cfg["epsilon"],
                  freeze_prototypes_steps=cfg["freeze_prototypes_steps"], queue_length=cfg["queue_length"],
                  queue_start_step=cfg["queue_start_step"], reduction=cfg["reduction"], generator=1).double()
    global_views = draw_views(0, STEPS, n_views=2, batch=BATCH, shape=(3, 8, 8))
    local_views = draw_views(1, STEPS, n_views=2, batch=BATCH, shape=(3, 4, 4))
    views = [g + loc for g, loc in zip(global_views, local_views)]
    twin = load_from_npjem(Twin(cfg["queue_length"]), method, key_map=key_map)
    theirs = train_twin(twin, views, cfg)

    if cfg["optimizer"] == "adam":
        opt = optim.Adam(method.trainable_parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    else:
        opt = optim.SGD(method.trainable_parameters(), lr=cfg["lr"], momentum=0.9, weight_decay=cfg["weight_decay"])
    sched = optim.WarmupCosine(opt, total_steps=STEPS, warmup_steps=recipe_warmup_steps(STEPS))
    w = method.prototypes.weight.data
    frozen = w / np.linalg.norm(w, axis=1, keepdims=True)  # unit in float64 (they were normalised in float32)
    trace = []
    ours = run_npjem(method, views, opt, schedule=sched,
                     snapshot=lambda m, loss: trace.append(m.diagnostics["queue_used"]) or
                     {"loss": np.array(loss), **snapshot_npjem(m, key_map=key_map)})
    worst = assert_snapshots_agree(ours, theirs)
    print(f"\nSwAV twin ({config}): {STEPS} steps, worst relative difference {worst:.2e}")
    # The comparison covers frozen and trained prototypes, and (with a queue) steps without and with it.
    f = cfg["freeze_prototypes_steps"]
    np.testing.assert_allclose(ours[f - 1]["prototypes.weight"], frozen, rtol=1e-14)  # renormalised only
    assert not np.allclose(ours[-1]["prototypes.weight"], frozen)
    if cfg["queue_length"]:
        assert trace.index(True) == cfg["queue_start_step"] + 2 and all(trace[cfg["queue_start_step"] + 2:])
