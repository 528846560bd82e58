"""SimCLR step for step against a PyTorch twin written from google-research/simclr.

The twin's loss is ``add_contrastive_loss`` of SimCLR's ``objective.py`` (TF) transcribed to
PyTorch: L2-normalised embeddings, self-similarities masked by −1e9 (LARGE_NUM), one softmax
cross-entropy per view over [logits_ab, logits_aa] and their sum. The two views go through the
network as one batch of 2N (``model.py`` concatenates the views along the batch, so BatchNorm
sees both). The projector is the one ``npjem pretrain`` builds (Linear → BN → ReLU → Linear,
hidden = 2 × the backbone's width), trained by the recipe's Adam (weight decay 1e-6 as L2) under
its 10 % linear warm-up and cosine decay, per step; LARS (SimCLR's own optimizer, TF
``lars_optimizer.py``: bias and BN parameters excluded from decay and trust ratio, the lr inside
the momentum buffer) is the second configuration.
"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from npjem import optim  # noqa: E402
from npjem.methods import SimCLR  # noqa: E402
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
STEPS = 12
WIDTHS = (4, 8)
HIDDEN, OUT = 16, 8          # the recipe's hidden = 2 × feature width
TAU = 0.2                    # the recipe's temperature


class TwinSimCLR(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = torch_convnet(widths=WIDTHS)
        self.projector = nn.Module()
        self.projector.layers = nn.Sequential(nn.Linear(WIDTHS[-1], HIDDEN, bias=False), nn.BatchNorm1d(HIDDEN),
                                              nn.ReLU(), nn.Linear(HIDDEN, OUT))

    def forward(self, x):
        return self.projector.layers(self.backbone(x))


def _simclr_original():
    """``simclr_original``: SimCLR's ``add_contrastive_loss`` re-typed in PyTorch, the one the loss
    tests (tests/losses/test_contrastive_vs_torch.py) check ``info_nce`` against."""
    path = Path(__file__).resolve().parents[1] / "losses" / "test_contrastive_vs_torch.py"
    spec = importlib.util.spec_from_file_location("contrastive_vs_torch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.simclr_original


simclr_original = _simclr_original()


def simclr_tf_loss(hidden, temperature):
    """The loss of the batch of 2N embeddings (the views in the order they were concatenated)."""
    h1, h2 = torch.chunk(hidden, 2, 0)
    return simclr_original(h1, h2, temperature)


class TwinLARS(torch.optim.Optimizer):
    """SimCLR's TF ``LARSOptimizer``: for a parameter w with gradient g (weight decay λ, trust η)::

        g ← g + λ w;  r = η ‖w‖/‖g‖ (1 when either norm is 0);  v ← μ v + lr · r · g;  w ← w − v

    Bias and BatchNorm parameters (``exclude_from_weight_decay=['batch_normalization', 'bias']``
    and the same list for the trust ratio) take v ← μ v + lr · g.
    """

    def __init__(self, params, lr, momentum=0.9, weight_decay=0.0, eta=1e-3):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for w in group["params"]:
                g = w.grad
                excluded = w.ndim == 1      # biases and BN γ, β: TF's name-based exclusion
                if not excluded:
                    g = g + group["weight_decay"] * w
                    w_norm, g_norm = torch.linalg.norm(w), torch.linalg.norm(g)
                    ratio = torch.where((w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm,
                                        torch.ones_like(w_norm))
                else:
                    ratio = 1.0
                state = self.state[w]
                v = state.setdefault("momentum", torch.zeros_like(w))
                v.mul_(group["momentum"]).add_(group["lr"] * ratio * g)
                w.sub_(v)


def npjem_simclr():
    backbone = models.ConvNet(widths=WIDTHS, generator=0)
    return SimCLR(backbone, hidden_dim=HIDDEN, out_dim=OUT, temperature=TAU, generator=1).double()


def run_twin(method, views, make_optimizer):
    twin = load_from_npjem(TwinSimCLR(), method, method_key)
    twin.train()
    opt = make_optimizer(twin.parameters())
    sched = torch_warmup_cosine(opt, STEPS, recipe_warmup_steps(STEPS))
    snaps = []
    for x1, x2 in views:
        z = twin(torch.cat([torch.as_tensor(x1), torch.as_tensor(x2)], 0))
        loss = simclr_tf_loss(z, TAU)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        snaps.append({"loss": np.float64(loss.item()), **snapshot_torch(twin)})
    return snaps


CONFIGS = {
    # npjem pretrain's SimCLR: Adam, lr 1e-3 (larger here so that 12 steps move the weights visibly).
    "adam": (lambda p: optim.Adam(p, lr=1e-2, weight_decay=1e-6),
             lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-6)),
    # SimCLR's own optimizer (`--optimizer lars`): LARS, momentum 0.9, weight decay 1e-6 as the recipe passes.
    "lars": (lambda p: optim.LARS(p, lr=0.5, momentum=0.9, weight_decay=1e-6),
             lambda p: TwinLARS(p, lr=0.5, momentum=0.9, weight_decay=1e-6)),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_simclr_takes_the_twins_steps(name):
    make_npjem_opt, make_torch_opt = CONFIGS[name]
    views = draw_views(0, STEPS)
    method = npjem_simclr()
    theirs = run_twin(method, views, make_torch_opt)
    opt = make_npjem_opt(method.trainable_parameters())
    sched = optim.WarmupCosine(opt, total_steps=STEPS, warmup_steps=recipe_warmup_steps(STEPS))
    ours = run_npjem(method, views, opt, schedule=sched,
                     snapshot=lambda m, loss: {"loss": np.float64(loss), **snapshot_npjem(m, key_map=method_key)})
    worst = assert_snapshots_agree(ours, theirs)
    # The weights moved: a twin that never stepped would agree trivially.
    first = ours[0]["backbone.0.0.weight"]
    assert np.abs(ours[-1]["backbone.0.0.weight"] - first).max() > 1e-4
    print(f"\nSimCLR ({name}): {STEPS} steps, worst relative difference {worst:.2e}")
