"""VICReg step for step against a PyTorch twin written from the authors' training loop.

The twin follows facebookresearch/vicreg ``main_vicreg.py``: ``VICReg.forward`` (each view
through backbone and expander on its own; s = mse(x, y); x, y centred; std = sqrt(var + 1e-4)
with the unbiased variance; v = mean relu(1 − std_x)/2 + mean relu(1 − std_y)/2 — the code's
halved variance term; c = Σ_{i≠j} cov_ij² / D per branch, cov = xᵀx/(N − 1); loss = 25 s +
25 v + 1 c), its ``LARS`` (weight decay and the trust ratio skipped for 1-D tensors, the lr
applied after the momentum, one parameter group) under ``adjust_learning_rate`` (base lr
0.2·B/256, linear warm-up, cosine to 0.001 of the base), set before every step.

Configurations: what ``npjem pretrain`` trains (its coefficients and three-layer expander, laid
out as lightly's: no bias before a BatchNorm, a bias on the last Linear; Adam under the recipe's
warm-up + cosine), and the authors' recipe: main_vicreg.py's ``Projector`` (a bias on every
Linear but the last, built with ``projector=``) and their LARS.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from npjem import optim  # noqa: E402
from npjem.methods import VICReg  # noqa: E402
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


def vicreg_loss(x, y, sim_coeff, std_coeff, cov_coeff):
    n, d = x.shape
    repr_loss = F.mse_loss(x, y)
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + 0.0001)
    std_y = torch.sqrt(y.var(dim=0) + 0.0001)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    cov_x = (x.T @ x) / (n - 1)
    cov_y = (y.T @ y) / (n - 1)
    cov_loss = off_diagonal(cov_x).pow(2).sum().div(d) + off_diagonal(cov_y).pow(2).sum().div(d)
    return sim_coeff * repr_loss + std_coeff * std_loss + cov_coeff * cov_loss


def run(config):
    views = draw_views(37, STEPS, batch=BATCH)
    r = recipe("vicreg")
    coeffs = (r["sim_coeff"], r["std_coeff"], r["cov_coeff"])  # the recipe's are the authors' 25, 25, 1
    # npjem's expander (a bias on the last Linear only), or main_vicreg.py's Projector (biases before
    # each BatchNorm, none on the last Linear)
    biases = (False, False, True) if config == "recipe-adam" else (True, True, False)
    authors = npjem_mlp((FEAT, HIDDEN, HIDDEN, OUT), biases, generator=8) if config != "recipe-adam" else None
    method = VICReg(ConvNet(widths=(4, 8), generator=7), hidden_dim=HIDDEN, out_dim=OUT, sim_coeff=coeffs[0],
                    std_coeff=coeffs[1], cov_coeff=coeffs[2], projector=authors, generator=8).double()
    twin = load_from_npjem(BackboneProjector(FEAT, HIDDEN, OUT, biases), method, key_map=method_key)
    if config == "recipe-adam":
        opt_t, opt_n, sched, lr_at = recipe_adam("vicreg", twin.parameters(), method.trainable_parameters(), STEPS)
    else:
        # main_vicreg.py: LARS over model.parameters(), base lr 0.2·B/256, decay 1e-6
        base, wd, warmup = 0.2 * BATCH / 256, 1e-6, 2
        opt_t = AuthorsLARS(twin.parameters(), weight_decay=wd)
        opt_n = optim.LARS(method.trainable_parameters(), lr=base, weight_decay=wd, momentum=0.9,
                           trust_coefficient=1e-3, lr_in_momentum=False)
        sched = optim.WarmupCosine(opt_n, total_steps=STEPS, warmup_steps=warmup, final_lr_scale=0.001)

        def lr_at(k):
            return [authors_warmup_cosine(k, STEPS, warmup, base, end_lr=0.001 * base)]
    expander = twin.projector
    theirs = run_twin(twin, views, opt_t, lr_at,
                      lambda x, y: vicreg_loss(expander(twin.backbone(x)), expander(twin.backbone(y)), *coeffs))
    return run_npjem(method, views, opt_n, schedule=sched, snapshot=npjem_snapshot(opt_n)), theirs


@pytest.mark.parametrize("config", ["recipe-adam", "authors-lars"])
def test_vicreg_steps_agree_with_the_authors_loop(config):
    ours, theirs = run(config)
    # The expander's output bias shifts both views' z by one constant, which the invariance term
    # (a difference) and the centred variance and covariance all remove: its loss gradient is 0 up
    # to round-off, and Adam divides that round-off by its own scale.
    loose = {"projector.layers.6.bias": (1e-7, "zero loss gradient, moved by Adam's L2 decay and round-off")}
    check_twin(f"VICReg ({config})", ours, theirs, loose=loose if config == "recipe-adam" else None)
    assert not np.allclose(ours[-1]["projector.layers.0.weight"], ours[0]["projector.layers.0.weight"], rtol=1e-6)
