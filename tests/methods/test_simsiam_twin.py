"""SimSiam step for step against a PyTorch twin written from the authors' training loop.

The twin follows facebookresearch/simsiam ``simsiam/builder.py`` (encoder = backbone →
projector ending in ``BatchNorm1d(affine=False)``, predictor; ``forward`` returns p₁, p₂ and the
*detached* z₁, z₂) and ``main_simsiam.py`` (loss −½[cos(p₁, z₂) + cos(p₂, z₁)] with
``nn.CosineSimilarity(dim=1)``; SGD with momentum 0.9 and weight decay 1e-4 at 0.05·B/256;
``adjust_learning_rate``: init_lr·½(1 + cos(π t/T)), with ``--fix-pred-lr`` the predictor's group
kept at init_lr).

Configurations: what ``npjem pretrain`` trains (a bottleneck predictor, the recipe's 64 of 128
scaled to 4 of 16; Adam under the recipe's warm-up + cosine) and the authors' SGD recipe with
``--fix-pred-lr``. The authors set the lr once per epoch; here every step is its own "epoch" of
the same formula (t = step, T = steps), which npjem's ``WarmupCosine`` gives with
``warmup_steps=0`` and, for the fixed predictor lr, ``final_lr`` equal to the predictor group's
own lr. The projector's last Linear has no bias in npjem; the authors keep one but freeze it
(``requires_grad = False``), so both train the same function and the same parameters.
"""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from npjem import optim  # noqa: E402
from npjem.methods import SimSiam  # noqa: E402
from npjem.nn.models import ConvNet  # noqa: E402

from _twins import (  # noqa: E402
    TorchHead,
    check_twin,
    draw_views,
    load_from_npjem,
    method_key,
    npjem_snapshot,
    recipe_adam,
    run_npjem,
    run_twin,
    torch_convnet,
)

STEPS, BATCH, FEAT, HIDDEN, OUT, PRED = 12, 8, 8, 16, 16, 4


class Twin(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = torch_convnet()
        self.projector = TorchHead(nn.Linear(FEAT, HIDDEN, bias=False), nn.BatchNorm1d(HIDDEN), nn.ReLU(),
                                   nn.Linear(HIDDEN, HIDDEN, bias=False), nn.BatchNorm1d(HIDDEN), nn.ReLU(),
                                   nn.Linear(HIDDEN, OUT, bias=False), nn.BatchNorm1d(OUT, affine=False))
        self.predictor = TorchHead(nn.Linear(OUT, PRED, bias=False), nn.BatchNorm1d(PRED), nn.ReLU(),
                                   nn.Linear(PRED, OUT))

    def forward(self, x1, x2):
        z1 = self.projector(self.backbone(x1))
        z2 = self.projector(self.backbone(x2))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        return p1, p2, z1.detach(), z2.detach()


def simsiam_loss(twin):
    criterion = nn.CosineSimilarity(dim=1)

    def forward(x1, x2):
        p1, p2, z1, z2 = twin(x1, x2)
        return -(criterion(p1, z2).mean() + criterion(p2, z1).mean()) * 0.5
    return forward


def run(config):
    views = draw_views(41, STEPS, batch=BATCH)
    method = SimSiam(ConvNet(widths=(4, 8), generator=9), hidden_dim=HIDDEN, out_dim=OUT, predictor_hidden_dim=PRED,
                     generator=10).double()
    twin = load_from_npjem(Twin(), method, key_map=method_key)
    if config == "recipe-adam":
        opt_t, opt_n, sched, lr_at = recipe_adam("simsiam", twin.parameters(), method.trainable_parameters(), STEPS)
    else:
        # main_simsiam.py with --fix-pred-lr: SGD(momentum 0.9, decay 1e-4) at 0.05·B/256
        init_lr, wd = 0.05 * BATCH / 256, 1e-4
        opt_t = torch.optim.SGD([{"params": [*twin.backbone.parameters(), *twin.projector.parameters()]},
                                 {"params": twin.predictor.parameters(), "fix_lr": True}],
                                lr=init_lr, momentum=0.9, weight_decay=wd)
        encoder = [*method.backbone.parameters(), *method.projector.parameters()]
        opt_n = optim.SGD([{"params": encoder}, {"params": list(method.predictor.parameters())}],
                          lr=init_lr, momentum=0.9, weight_decay=wd)
        sched = optim.WarmupCosine(opt_n, total_steps=STEPS, warmup_steps=0, final_lr=[0.0, init_lr])

        def lr_at(k):
            cur_lr = init_lr * 0.5 * (1.0 + math.cos(math.pi * k / STEPS))
            return [init_lr if g.get("fix_lr") else cur_lr for g in opt_t.param_groups]
    theirs = run_twin(twin, views, opt_t, lr_at, simsiam_loss(twin))
    return run_npjem(method, views, opt_n, schedule=sched, snapshot=npjem_snapshot(opt_n)), theirs


@pytest.mark.parametrize("config", ["recipe-adam", "authors-sgd"])
def test_simsiam_steps_agree_with_the_authors_loop(config):
    ours, theirs = run(config)
    check_twin(f"SimSiam ({config})", ours, theirs)
    assert not np.allclose(ours[-1]["predictor.layers.3.weight"], ours[0]["predictor.layers.3.weight"], rtol=1e-6)
