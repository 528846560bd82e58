"""DINO step for step against a PyTorch twin written from facebookresearch/dino ``main_dino.py``.

The twin follows ``train_one_epoch`` and its pieces: ``MultiCropWrapper`` (backbone per
resolution, the head once on every crop), ``DINOHead`` (MLP with BatchNorm and GELU, L2
normalisation, weight-normalised last layer with g fixed at 1), ``DINOLoss`` (teacher softmax
of (t − c)/τ_t, every student crop against every other global crop, centre updated with the
mean of both global crops' teacher logits after the loss), ``cancel_gradients_last_layer``
between backward and the optimizer step, ``cosine_scheduler`` for the teacher's momentum (per
iteration) and ``np.linspace`` for the teacher temperature's warm-up (per step here: npjem's
``warmup_teacher_temp_steps`` counts steps where the original counts epochs).
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
from npjem.methods import DINO  # noqa: E402
from npjem.nn.models import ConvNet  # noqa: E402

STEPS = 12
FEAT, HIDDEN, BOTTLENECK, K = 8, 16, 8, 16


class WeightNormLinear(nn.Module):
    """``nn.utils.weight_norm(nn.Linear(d, K, bias=False))``: W[o] = g[o] v[o] / ‖v[o]‖."""

    def __init__(self, d, k):
        super().__init__()
        self.weight_g = nn.Parameter(torch.ones(k, 1))
        self.weight_v = nn.Parameter(torch.randn(k, d))

    def forward(self, x):
        return F.linear(x, self.weight_g * self.weight_v / self.weight_v.norm(dim=1, keepdim=True))


class DINOHead(nn.Module):
    """DINO's ``DINOHead(in_dim, out_dim, use_bn, norm_last_layer, nlayers=3, hidden, bottleneck)``."""

    def __init__(self, in_dim, out_dim, use_bn, norm_last_layer, hidden_dim, bottleneck_dim):
        super().__init__()
        layers = [nn.Linear(in_dim, hidden_dim)]
        if use_bn:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(nn.GELU())
        layers.append(nn.Linear(hidden_dim, hidden_dim))
        if use_bn:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(nn.GELU())
        layers.append(nn.Linear(hidden_dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim)
        if norm_last_layer:
            self.last_layer.weight_g.requires_grad = False

    def forward(self, x):
        x = self.mlp(x)
        x = F.normalize(x, dim=-1, p=2)
        return self.last_layer(x)


def multicrop(backbone, head, crops):
    """``MultiCropWrapper.forward``: the backbone per run of equal resolutions, the head on all."""
    sizes = torch.tensor([c.shape[-1] for c in crops])
    idx_crops = torch.cumsum(torch.unique_consecutive(sizes, return_counts=True)[1], 0)
    start, output = 0, []
    for end in idx_crops.tolist():
        output.append(backbone(torch.cat(crops[start:end])))
        start = end
    return head(torch.cat(output))


class Twin(nn.Module):
    """Student, teacher and the loss's centre, with npjem's state-dict names."""

    def __init__(self, use_bn, norm_last_layer):
        super().__init__()
        self.backbone = torch_convnet(widths=(4, FEAT))
        self.projector = DINOHead(FEAT, K, use_bn, norm_last_layer, HIDDEN, BOTTLENECK)
        self.backbone_teacher = torch_convnet(widths=(4, FEAT))
        self.projector_teacher = DINOHead(FEAT, K, use_bn, norm_last_layer, HIDDEN, BOTTLENECK)
        self.register_buffer("center", torch.zeros(1, K))
        self.register_buffer("num_steps", torch.zeros(1, dtype=torch.int64))

    def student(self):
        return list(self.backbone.parameters()) + list(self.projector.parameters())

    def teacher(self):
        return list(self.backbone_teacher.parameters()) + list(self.projector_teacher.parameters())


def key_map(key):
    for prefix in ("backbone_teacher.", "backbone."):
        if key.startswith(prefix):
            return prefix + convnet_key(key[len(prefix):])
    return key


def train_twin(twin, views, cfg):
    n_crops = len(views[0])
    student_params = [p for p in twin.student() if p.requires_grad]
    if cfg["optimizer"] == "adam":
        opt = torch.optim.Adam(student_params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    else:  # DINO's utils.get_params_groups: no weight decay on biases and norm parameters
        named = [(n, p) for n, p in list(twin.backbone.named_parameters()) + list(twin.projector.named_parameters())
                 if p.requires_grad]
        regularized = [p for n, p in named if not (n.endswith(".bias") or p.ndim == 1)]
        not_regularized = [p for n, p in named if n.endswith(".bias") or p.ndim == 1]
        opt = torch.optim.AdamW([{"params": regularized}, {"params": not_regularized, "weight_decay": 0.0}],
                                lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    # DINO: teacher_temp_schedule = concat(linspace(warmup, final, W), ones(...) * final)
    w = cfg["warmup_teacher_temp_steps"]
    temps = np.concatenate((np.linspace(cfg["warmup_teacher_temp"], cfg["teacher_temp"], w),
                            np.ones(STEPS - w) * cfg["teacher_temp"]))
    # DINO: momentum_schedule = cosine_scheduler(momentum_teacher, 1, epochs, niter_per_ep)
    iters = np.arange(STEPS)
    momentum_schedule = 1.0 + 0.5 * (cfg["momentum"] - 1.0) * (1 + np.cos(np.pi * iters / len(iters)))
    snaps = []
    for it, crops in enumerate(views):
        for group in opt.param_groups:
            group["lr"] = recipe_lr(it, STEPS, cfg["lr"])
        images = [torch.as_tensor(c) for c in crops]
        teacher_output = multicrop(twin.backbone_teacher, twin.projector_teacher, images[:2])
        student_output = multicrop(twin.backbone, twin.projector, images)
        # DINOLoss.forward
        student_out = (student_output / cfg["student_temp"]).chunk(n_crops)
        temp = temps[it]
        teacher_out = F.softmax((teacher_output - twin.center) / temp, dim=-1).detach().chunk(2)
        total_loss, n_loss_terms = 0, 0
        for iq, q in enumerate(teacher_out):
            for v in range(len(student_out)):
                if v == iq:
                    continue
                loss = torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1)
                total_loss += loss.mean()
                n_loss_terms += 1
        total_loss /= n_loss_terms
        with torch.no_grad():  # DINOLoss.update_center
            batch_center = torch.sum(teacher_output, dim=0, keepdim=True) / len(teacher_output)
            twin.center.copy_(twin.center * cfg["center_momentum"] + batch_center * (1 - cfg["center_momentum"]))
        opt.zero_grad()
        total_loss.backward()
        if it < cfg["freeze_last_layer_steps"]:  # utils.cancel_gradients_last_layer
            for n, p in twin.projector.named_parameters():
                if "last_layer" in n:
                    p.grad = None
        opt.step()
        with torch.no_grad():  # EMA update for the teacher
            m = momentum_schedule[it]
            for param_q, param_k in zip(twin.student(), twin.teacher()):
                param_k.data.mul_(m).add_((1 - m) * param_q.detach().data)
        twin.num_steps += 1
        snaps.append({"loss": np.array(total_loss.item()), **snapshot_torch(twin)})
    return snaps


RECIPE = dict(optimizer="adam", lr=1e-3, weight_decay=1e-6, student_temp=0.1, teacher_temp=0.01,
              warmup_teacher_temp=0.01, warmup_teacher_temp_steps=0, momentum=0.99, center_momentum=0.9,
              batch_norm=True, norm_last_layer=True, freeze_last_layer_steps=0)
CONFIGS = {
    # npjem pretrain's DINO (DEFAULTS["dino"], build_method): BN in the head, 2 local crops, τ_t 0.01,
    # momentum 0.99, Adam(1e-3, L2 1e-6) under the recipe's warm-up + cosine.
    "pretrain": RECIPE,
    # The paper's knobs: τ_t warm-up 0.04 → 0.07 over 4 steps, the last layer frozen for 3 steps
    # (its g trained too), momentum 0.996 → 1, AdamW without decay on biases and norms.
    "paper": {**RECIPE, "optimizer": "adamw", "lr": 5e-3, "weight_decay": 0.04, "teacher_temp": 0.07,
              "warmup_teacher_temp": 0.04, "warmup_teacher_temp_steps": 4, "momentum": 0.996,
              "batch_norm": False, "norm_last_layer": False, "freeze_last_layer_steps": 3},
}


def npjem_optimizer(method, cfg):
    if cfg["optimizer"] == "adam":
        return optim.Adam(method.trainable_parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    named = [(n, p) for n, p in list(method.backbone.named_parameters()) + list(method.projector.named_parameters())
             if p.requires_grad]
    regularized = [p for n, p in named if not (n.endswith(".bias") or p.ndim == 1)]
    not_regularized = [p for n, p in named if n.endswith(".bias") or p.ndim == 1]
    return optim.AdamW([{"params": regularized}, {"params": not_regularized, "weight_decay": 0.0}],
                       lr=cfg["lr"], weight_decay=cfg["weight_decay"])


def split_noise(ours, theirs, cfg):
    """Set apart what a bias ahead of a BatchNorm touches, and check it on its own.

    BatchNorm subtracts the batch mean, so the bias of a Linear that a BatchNorm follows has an
    exact gradient of zero: both sides compute rounding noise (~1e-14), which Adam divides by
    its ε and turns into values of ~1e-9, different on each side. Such a bias (and its EMA copy
    in the teacher) must stay at that noise level on both sides (an absolute 1e-8), and the
    running mean of the BatchNorm after it, which takes 0.1 of the bias each step, within the
    same absolute 1e-8; every other quantity is held to a relative 1e-9.
    """
    if not cfg["batch_norm"]:
        return ours, theirs
    biases = [k for k in theirs[0] if k.endswith(("mlp.0.bias", "mlp.3.bias"))]
    means = [k for k in theirs[0] if k.endswith(("mlp.1.running_mean", "mlp.4.running_mean"))]
    for step, (o, t) in enumerate(zip(ours, theirs)):
        for k in biases:
            assert np.abs(o[k] - t[k]).max() <= 1e-8 and np.abs(t[k]).max() <= 1e-8, (step, k)
        for k in means:
            assert np.abs(o[k] - t[k]).max() <= 1e-8, (step, k)
    drop = lambda snaps: [{k: v for k, v in s.items() if k not in biases + means} for s in snaps]  # noqa: E731
    return drop(ours), drop(theirs)


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_dino_takes_the_steps_of_main_dino(config):
    cfg = CONFIGS[config]
    method = DINO(ConvNet(widths=(4, FEAT), strides=(1, 2), generator=0), hidden_dim=HIDDEN,
                  bottleneck_dim=BOTTLENECK, out_dim=K, batch_norm=cfg["batch_norm"],
                  norm_last_layer=cfg["norm_last_layer"], student_temp=cfg["student_temp"],
                  teacher_temp=cfg["teacher_temp"], warmup_teacher_temp=cfg["warmup_teacher_temp"],
                  warmup_teacher_temp_steps=cfg["warmup_teacher_temp_steps"], momentum=cfg["momentum"],
                  center_momentum=cfg["center_momentum"], freeze_last_layer_steps=cfg["freeze_last_layer_steps"],
                  generator=1).double()
    # The teacher starts as a copy of the student in both (npjem deep-copies it); a teacher apart
    # from the student makes the EMA visible from the first step.
    rng = np.random.default_rng(5)
    for p in list(method.backbone_teacher.parameters()) + list(method.projector_teacher.parameters()):
        if p.ndim > 1:
            p.data[...] += 0.05 * rng.standard_normal(p.shape)
    method.center.data[...] = 0.1 * rng.standard_normal(method.center.shape)
    global_views = draw_views(0, STEPS, n_views=2, shape=(3, 8, 8))
    local_views = draw_views(1, STEPS, n_views=2, shape=(3, 4, 4))
    views = [g + loc for g, loc in zip(global_views, local_views)]

    twin = load_from_npjem(Twin(cfg["batch_norm"], cfg["norm_last_layer"]), method, key_map=key_map)
    theirs = train_twin(twin, views, cfg)

    opt = npjem_optimizer(method, cfg)
    sched = optim.WarmupCosine(opt, total_steps=STEPS, warmup_steps=recipe_warmup_steps(STEPS))
    last = method.projector.last_layer.weight_v
    before = last.data.copy()
    ours = run_npjem(method, views, opt, schedule=sched,
                     snapshot=lambda m, loss: {"loss": np.array(loss), **snapshot_npjem(m, key_map=key_map)})
    worst = assert_snapshots_agree(*split_noise(ours, theirs, cfg))
    print(f"\nDINO twin ({config}): {STEPS} steps, worst relative difference {worst:.2e}")
    assert not np.allclose(before, last.data)  # the last layer did train (after the frozen steps)
