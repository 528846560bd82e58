"""Barlow Twins and VICReg beyond what the twins fix (mutation testing found these open):

- a weight of 0 turns a term off (an ablation), it is not refused;
- VICReg's loss uses the γ and ε given, not the loss function's defaults;
- the diagnostics hold the loss and the first view's embedding std.
"""
import numpy as np
import pytest

from npjem.autograd import no_grad
from npjem.losses.noncontrastive import vicreg
from npjem.methods import BarlowTwins, VICReg
from npjem.methods._monitor import embedding_std

from conftest import tiny_backbone, tiny_views

from conftest import cpu_only  # noqa: E402

pytestmark = cpu_only


def batch():
    return np.random.default_rng(0).random((6, 3, 8, 8)).astype(np.float32)


def test_a_zero_weight_is_accepted():
    assert BarlowTwins(tiny_backbone(), hidden_dim=5, out_dim=3, lambd=0.0).lambd == 0.0
    m = VICReg(tiny_backbone(), hidden_dim=5, out_dim=3, sim_coeff=0.0, std_coeff=0.0, cov_coeff=0.0)
    assert (m.sim_coeff, m.std_coeff, m.cov_coeff) == (0.0, 0.0, 0.0)


def test_vicreg_uses_gamma_and_eps_given_and_reports_its_terms():
    m = VICReg(tiny_backbone(), hidden_dim=5, out_dim=3, gamma=2.0, eps=0.01, views=tiny_views(), generator=0)
    x1, x2 = m.make_views(batch(), generator=0)
    loss = m(x1, x2)
    with no_grad():
        z1, z2 = m.projector(m.backbone(x1)), m.projector(m.backbone(x2))
    out = vicreg(z1, z2, gamma=2.0, eps=0.01)
    assert loss.item() == pytest.approx(out.loss.item(), rel=1e-5)
    assert loss.item() != pytest.approx(vicreg(z1, z2).loss.item(), rel=1e-3)
    d = m.diagnostics
    assert d["loss"] == pytest.approx(loss.item()) and d["variance"] == pytest.approx(out.variance.item(), rel=1e-5)
    assert d["embedding_std"] == pytest.approx(embedding_std(z1), rel=1e-5)


def test_barlow_twins_diagnostics():
    m = BarlowTwins(tiny_backbone(), hidden_dim=5, out_dim=3, views=tiny_views(), generator=0)
    x1, x2 = m.make_views(batch(), generator=1)
    loss = m(x1, x2)
    with no_grad():
        z1 = m.projector(m.backbone(x1))
    assert m.diagnostics["loss"] == pytest.approx(loss.item())
    assert m.diagnostics["embedding_std"] == pytest.approx(embedding_std(z1), rel=1e-5)


def test_vicreg_expander_takes_two_layers_or_more():
    m = VICReg(tiny_backbone(), hidden_dim=5, out_dim=3, num_layers=2, generator=0)
    assert [tuple(p.shape) for _, p in m.projector.named_parameters() if p.ndim == 2] == [(5, 6), (3, 5)]
    with pytest.raises(ValueError, match="num_layers"):
        VICReg(tiny_backbone(), hidden_dim=5, out_dim=3, num_layers=1)
