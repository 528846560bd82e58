"""BYOL step for step against a PyTorch twin written from the authors' training loop.

The twin follows deepmind-research ``byol/byol_experiment.py`` (``loss_fn``, ``_update_fn``),
``byol/utils/optimizers.py`` (LARS), ``byol/utils/schedules.py`` (``learning_schedule``,
``target_ema``) and ``helpers.regression_loss``: each view goes through the online network
(backbone → projector → predictor) and, without gradient, through the target network
(backbone → projector), both in training mode (each network keeps its own BatchNorm
statistics); the loss is mean_b[ℓ(p₁, z'₂) + ℓ(p₂, z'₁)], ℓ(p, z) = ‖p/‖p‖ − z/‖z‖‖²; the
optimizer steps the online network, and only then the target moves,
ξ ← ξ + (1 − τ_k)(θ − ξ) with τ_k = 1 − (1 − τ_base)(cos(πk/K) + 1)/2 of the step k just taken.

Configurations: what ``npjem pretrain`` trains (its τ_base, its heads laid out as lightly's: no
bias before the BatchNorm, a bias on the last Linear; Adam under the recipe's warm-up + cosine),
and BYOL's own recipe: DeepMind's MLPs (a bias on the first Linear, none on the last, built with
``projector=`` and ``predictor=``) and their LARS under their warm-up + cosine schedule (the
40-epoch preset, whose τ_base 0.97 the recipe uses: base lr 0.45·B/256, weight decay 1e-6,
η = 1e-3, biases and BatchNorm parameters excluded from weight decay and adaptation).
"""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from npjem import optim  # noqa: E402
from npjem.methods import BYOL, fit  # noqa: E402
from npjem.nn.models import ConvNet  # noqa: E402

from _twins import (  # noqa: E402
    AuthorsLARS,
    ReplayViews,
    TorchHead,
    authors_warmup_cosine,
    check_twin,
    draw_views,
    load_from_npjem,
    method_key,
    npjem_mlp,
    npjem_snapshot,
    recipe,
    recipe_adam,
    run_npjem,
    run_twin,
    torch_convnet,
)

STEPS, BATCH, FEAT, HIDDEN, OUT = 12, 8, 8, 16, 8


def npjem_byol(momentum, deepmind_heads):
    heads = {}
    if deepmind_heads:  # DeepMind's MLP: a bias on the first Linear (before the BatchNorm), none on the last
        heads = {"projector": npjem_mlp((FEAT, HIDDEN, OUT), (True, False), generator=4),
                 "predictor": npjem_mlp((OUT, HIDDEN, OUT), (True, False), generator=5)}
    m = BYOL(ConvNet(widths=(4, 8), generator=3), hidden_dim=HIDDEN, out_dim=OUT, momentum=momentum,
             generator=4, **heads)
    return m.double()


def mlp(d_in, biases):
    return TorchHead(nn.Linear(d_in, HIDDEN, bias=biases[0]), nn.BatchNorm1d(HIDDEN), nn.ReLU(),
                     nn.Linear(HIDDEN, OUT, bias=biases[1]))


class Twin(nn.Module):
    def __init__(self, biases):
        super().__init__()
        self.backbone = torch_convnet()
        self.projector = mlp(FEAT, biases)
        self.predictor = mlp(OUT, biases)
        self.backbone_target = torch_convnet()
        self.projector_target = mlp(FEAT, biases)

    def online(self):
        return [*self.backbone.parameters(), *self.projector.parameters(), *self.predictor.parameters()]

    def pairs(self):
        """(target, online) parameter pairs: the target averages parameters only."""
        return [*zip(self.backbone_target.parameters(), self.backbone.parameters()),
                *zip(self.projector_target.parameters(), self.projector.parameters())]


def l2_normalize(x):
    # helpers.l2_normalize: x · rsqrt(max(Σx², 1e-12))
    return x * torch.rsqrt(torch.clamp((x * x).sum(-1, keepdim=True), min=1e-12))


def regression_loss(p, z):
    return ((l2_normalize(p) - l2_normalize(z)) ** 2).sum(-1)


def target_ema(k, base, total):
    return 1.0 - (1.0 - base) * (math.cos(math.pi * min(k, total) / total) + 1.0) / 2.0


def byol_loss(twin):
    """``loss_fn`` of byol_experiment.py: each view through both networks, the symmetric loss."""
    def forward(x1, x2):
        p1 = twin.predictor(twin.projector(twin.backbone(x1)))
        p2 = twin.predictor(twin.projector(twin.backbone(x2)))
        with torch.no_grad():
            t1 = twin.projector_target(twin.backbone_target(x1))
            t2 = twin.projector_target(twin.backbone_target(x2))
        return (regression_loss(p1, t2) + regression_loss(p2, t1)).mean()
    return forward


def update_target(twin, base_tau, total_steps):
    """``_update_fn``'s target update, after the optimizer step, from the new online weights."""
    def after_step(k):
        tau = target_ema(k, base_tau, total_steps)
        with torch.no_grad():
            for t, o in twin.pairs():
                t.add_((1.0 - tau) * (o - t))
        return {"tau": tau}
    return after_step


def run_npjem_resumed(method, views, optimizer, schedule, snapshot, cut):
    """``npjem pretrain --resume`` in memory: a ``fit`` over the whole run stopped after ``cut``
    steps, then a second ``fit`` over the rest with ``start_step=cut`` (same optimizer, schedule
    and method)."""
    method.views = ReplayViews(views)
    x = np.zeros((BATCH,) + views[0][0].shape[1:])
    snaps = []

    def keep(record):
        snaps.append(snapshot(record["method"], record["loss"]))

    fit(method, [x] * len(views), optimizer, schedule=schedule, progress=False,
        callback=lambda record: keep(record) or record["step"] == cut - 1)  # interrupted
    fit(method, [x] * (len(views) - cut), optimizer, schedule=schedule, progress=False, callback=keep,
        start_step=cut)
    return snaps


def run(config, resume_at=None):
    tau0 = recipe("byol")["momentum"]
    views = draw_views(23, STEPS, batch=BATCH)
    deepmind = config == "byol-lars"
    method = npjem_byol(tau0, deepmind)
    twin = load_from_npjem(Twin((True, False) if deepmind else (False, True)), method, key_map=method_key)
    for p in [*twin.backbone_target.parameters(), *twin.projector_target.parameters()]:
        p.requires_grad_(False)
    if config == "recipe-adam":
        opt_t, opt_n, sched, lr_at = recipe_adam("byol", twin.online(), method.trainable_parameters(), STEPS)
    else:
        # BYOL's 40-epoch preset (τ_base 0.97, as the recipe): LARS, base lr 0.45·B/256, decay 1e-6
        lr, wd, warmup = 0.45 * BATCH / 256, 1e-6, 2
        opt_t = AuthorsLARS(twin.online(), weight_decay=wd, momentum=0.9, eta=1e-3)
        opt_n = optim.LARS(method.trainable_parameters(), lr=lr, momentum=0.9, weight_decay=wd,
                           trust_coefficient=1e-3, lr_in_momentum=False)
        sched = optim.WarmupCosine(opt_n, total_steps=STEPS, warmup_steps=warmup)

        def lr_at(k):
            return [authors_warmup_cosine(k, STEPS, warmup, lr)]
    theirs = run_twin(twin, views, opt_t, lr_at, byol_loss(twin), update_target(twin, tau0, STEPS))
    snap = npjem_snapshot(opt_n, tau=lambda m: m.momentum_now)
    if resume_at is None:
        return run_npjem(method, views, opt_n, schedule=sched, snapshot=snap), theirs
    return run_npjem_resumed(method, views, opt_n, sched, snap, resume_at), theirs


def loose_shift(config):
    """The quantities compared at 1e-7 (see below) in the recipe's configuration."""
    # The projector's output bias shifts z by a constant, which the predictor's BatchNorm removes:
    # its loss gradient is 0 up to round-off, and Adam divides that round-off by its own scale. The
    # target's copy of it and the running mean of that BatchNorm (which records the shift) follow.
    why = "a shift with zero loss gradient, moved by Adam's L2 decay and round-off"
    return {q: (1e-7, why) for q in ("projector.layers.3.bias", "projector_target.layers.3.bias",
                                     "predictor.layers.1.running_mean")} if config == "recipe-adam" else None


@pytest.mark.parametrize("config", ["recipe-adam", "byol-lars"])
def test_byol_steps_agree_with_the_authors_loop(config):
    ours, theirs = run(config)
    check_twin(f"BYOL ({config})", ours, theirs, loose=loose_shift(config))
    # the target really moved off its start and differs from the online network
    first = theirs[0]
    assert not np.allclose(ours[-1]["backbone_target.0.0.weight"], first["backbone_target.0.0.weight"], rtol=1e-9)
    assert not np.allclose(ours[-1]["backbone_target.0.0.weight"], ours[-1]["backbone.0.0.weight"], rtol=1e-9)


def test_byol_resumed_midway_takes_the_authors_uninterrupted_steps():
    """A run resumed after 5 of 12 steps (``fit(..., start_step=5)``, as ``npjem pretrain --resume``)
    continues the target's momentum schedule: the same 12 steps as the authors' uninterrupted loop."""
    ours, theirs = run("recipe-adam", resume_at=5)
    check_twin("BYOL (recipe-adam, resumed at step 5)", ours, theirs, loose=loose_shift("recipe-adam"))
