"""SimSiam beyond what the twin fixes (mutation testing found these open): a given projector sets
the predictor's width from its ``out_features`` (``out_dim`` when it has none); the diagnostics
name the batch's loss."""
import numpy as np
import pytest

from npjem.methods import SimSiam
from npjem.nn import Linear, Sequential

from conftest import tiny_backbone, tiny_views

from conftest import cpu_only  # noqa: E402

pytestmark = cpu_only


def test_a_given_projector_sets_the_predictor_width():
    m = SimSiam(tiny_backbone(), predictor_hidden_dim=7, projector=Linear(6, 5, generator=0), generator=0)
    assert [tuple(p.shape) for _, p in m.predictor.named_parameters() if p.ndim == 2] == [(7, 5), (5, 7)]
    m = SimSiam(tiny_backbone(), predictor_hidden_dim=7, out_dim=4, projector=Sequential(Linear(6, 4, generator=0)),
                generator=0)
    assert [tuple(p.shape) for _, p in m.predictor.named_parameters() if p.ndim == 2] == [(7, 4), (4, 7)]


def test_diagnostics_hold_the_loss():
    m = SimSiam(tiny_backbone(), hidden_dim=5, out_dim=4, predictor_hidden_dim=2, views=tiny_views(), generator=0)
    x = np.random.default_rng(0).random((4, 3, 8, 8)).astype(np.float32)
    loss = m(*m.make_views(x, generator=0))
    assert m.diagnostics["loss"] == pytest.approx(loss.item())
