"""Barlow Twins step for step against a PyTorch twin written from the authors' training loop.

The twin follows facebookresearch/barlowtwins ``main.py``: ``BarlowTwins.forward`` (each view
through backbone and projector on its own, both standardised by one ``BatchNorm1d(affine=False)``
in training mode, c = bn(z₁)ᵀ bn(z₂) / N, loss = Σ(c_ii − 1)² + λ Σ_{i≠j} c_ij²), its ``LARS``
(weight decay and the trust ratio skipped for 1-D tensors, the lr applied after the momentum)
with two parameter groups (weights at 0.2, biases and BatchNorm parameters at 0.0048 of the
base lr B/256) under ``adjust_learning_rate`` (linear warm-up, cosine to 0.001 of the base),
set before every step.

Configurations: what ``npjem pretrain`` trains (its λ and projector, Adam under the recipe's
warm-up + cosine), and the authors' recipe: main.py's projector (no bias on any Linear, built
with ``projector=``; npjem's default head has a bias on its last Linear, lightly's layout),
λ = 0.0051 and their LARS. The authors' final BatchNorm keeps running statistics that nothing
reads and that npjem does not keep, so they are not compared.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from npjem import optim  # noqa: E402
from npjem.methods import BarlowTwins  # noqa: E402
from npjem.nn.models import ConvNet  # noqa: E402

from _twins import (  # noqa: E402
    AuthorsLARS,
    BackboneProjector,
    authors_warmup_cosine,
    check_twin,
    draw_views,
    load_from_npjem,
    method_key,
    npjem_mlp,
    npjem_snapshot,
    off_diagonal,
    recipe,
    recipe_adam,
    run_npjem,
    run_twin,
)

STEPS, BATCH, FEAT, HIDDEN, OUT = 12, 8, 8, 16, 16


def barlow_twins_loss(twin, bn, lambd):
    """``BarlowTwins.forward`` of main.py, on one device."""
    def forward(y1, y2):
        z1 = twin.projector(twin.backbone(y1))
        z2 = twin.projector(twin.backbone(y2))
        c = bn(z1).T @ bn(z2) / z1.shape[0]
        return (torch.diagonal(c) - 1).pow(2).sum() + lambd * off_diagonal(c).pow(2).sum()
    return forward


def run(config):
    views = draw_views(31, STEPS, batch=BATCH)
    lambd = recipe("barlow_twins")["lambd"] if config == "recipe-adam" else 0.0051  # main.py's --lambd
    # npjem's projector (a bias on the last Linear), or main.py's (no bias on any Linear)
    biases = (False, False, True) if config == "recipe-adam" else (False, False, False)
    authors = npjem_mlp((FEAT, HIDDEN, HIDDEN, OUT), biases, generator=6) if config != "recipe-adam" else None
    method = BarlowTwins(ConvNet(widths=(4, 8), generator=5), hidden_dim=HIDDEN, out_dim=OUT, lambd=lambd,
                         projector=authors, generator=6).double()
    twin = load_from_npjem(BackboneProjector(FEAT, HIDDEN, OUT, biases), method, key_map=method_key)
    if config == "recipe-adam":
        opt_t, opt_n, sched, lr_at = recipe_adam("barlow_twins", twin.parameters(), method.trainable_parameters(), STEPS)
    else:
        # main.py: weights and 1-D tensors in two groups, base lr B/256 × 0.2 and × 0.0048, decay 1e-6
        base, wd, warmup, scale = BATCH / 256, 1e-6, 2, (0.2, 0.0048)
        opt_t = AuthorsLARS([{"params": [p for p in twin.parameters() if p.ndim > 1]},
                             {"params": [p for p in twin.parameters() if p.ndim == 1]}], weight_decay=wd)
        ps = method.trainable_parameters()
        opt_n = optim.LARS([{"params": [p for p in ps if p.ndim > 1], "lr": base * scale[0]},
                            {"params": [p for p in ps if p.ndim == 1], "lr": base * scale[1]}],
                           lr=base, weight_decay=wd, momentum=0.9, trust_coefficient=1e-3, lr_in_momentum=False)
        sched = optim.WarmupCosine(opt_n, total_steps=STEPS, warmup_steps=warmup, final_lr_scale=0.001)

        def lr_at(k):
            lr = authors_warmup_cosine(k, STEPS, warmup, base, end_lr=0.001 * base)
            return [lr * s for s in scale]
    bn = nn.BatchNorm1d(OUT, affine=False).double()  # the authors' normalisation layer, training mode
    theirs = run_twin(twin, views, opt_t, lr_at, barlow_twins_loss(twin, bn, lambd))
    return run_npjem(method, views, opt_n, schedule=sched, snapshot=npjem_snapshot(opt_n)), theirs


@pytest.mark.parametrize("config", ["recipe-adam", "authors-lars"])
def test_barlow_twins_steps_agree_with_the_authors_loop(config):
    ours, theirs = run(config)
    # The projector's output bias shifts z by a constant, which the batch standardisation removes:
    # its loss gradient is 0 up to round-off, and Adam divides that round-off by its own scale.
    loose = {"projector.layers.6.bias": (1e-7, "zero loss gradient, moved by Adam's L2 decay and round-off")}
    check_twin(f"Barlow Twins ({config})", ours, theirs, loose=loose if config == "recipe-adam" else None)
    assert not np.allclose(ours[-1]["projector.layers.0.weight"], ours[0]["projector.layers.0.weight"], rtol=1e-6)
