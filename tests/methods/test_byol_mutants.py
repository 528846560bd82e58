"""BYOL's schedule, diagnostics and heads beyond what the twin fixes (mutation testing found them open).

- the target's EMA ends at ``final_momentum``, not at 1, when told so (BYOL's τ_K);
- ``diagnostics["momentum"]`` is the τ of the last EMA update (what a run's monitor plots);
- a projector given by the user sets the predictor's width from its ``out_features``, and
  ``out_dim`` when it has none.
"""
import numpy as np
import pytest

from npjem import optim
from npjem.methods import BYOL
from npjem.nn import Linear, Sequential

from conftest import tiny_backbone, tiny_views

from conftest import cpu_only  # noqa: E402

pytestmark = cpu_only


def params(*modules):
    return {f"{i}.{k}": v.numpy().copy() for i, m in enumerate(modules) for k, v in m.named_parameters()}


@pytest.fixture
def images():
    return np.random.default_rng(0).random((6, 3, 8, 8)).astype(np.float32)


def test_the_target_moves_with_final_momentum_at_the_end_of_the_schedule(images):
    m = BYOL(tiny_backbone(), hidden_dim=5, out_dim=3, momentum=0.5, final_momentum=0.8, views=tiny_views(),
             generator=0)
    opt = optim.SGD(m.trainable_parameters(), lr=0.5)
    m(*m.make_views(images, generator=1)).backward()
    opt.step()
    online, target = params(m.backbone, m.projector), params(m.backbone_target, m.projector_target)
    m.after_step(10, 10)  # k = K: τ_K = final_momentum = 0.8
    assert m.momentum_now == pytest.approx(0.8)
    new = params(m.backbone_target, m.projector_target)
    for k in online:
        np.testing.assert_allclose(new[k], 0.8 * target[k] + 0.2 * online[k], rtol=1e-5, atol=1e-7)


def test_diagnostics_report_the_momentum_of_the_last_update(images):
    m = BYOL(tiny_backbone(), hidden_dim=5, out_dim=3, momentum=0.9, views=tiny_views(), generator=0)
    m(*m.make_views(images, generator=1))
    assert m.diagnostics["momentum"] == 0.9  # τ_0 before any step
    m.after_step(5, 10)
    m(*m.make_views(images, generator=2))
    assert m.diagnostics["momentum"] == pytest.approx(optim.cosine_momentum(5, 10, base=0.9, final=1.0))
    assert 0.9 < m.diagnostics["momentum"] < 1.0


def test_a_given_projector_sets_the_predictor_width():
    projector = Linear(6, 5, generator=0)  # out_features 5, whatever out_dim says
    m = BYOL(tiny_backbone(), hidden_dim=7, out_dim=3, projector=projector, generator=0)
    shapes = [tuple(p.shape) for _, p in m.predictor.named_parameters() if p.ndim == 2]
    assert shapes == [(7, 5), (5, 7)]
    # A projector without out_features: out_dim is its width.
    projector = Sequential(Linear(6, 4, generator=0))
    assert not hasattr(projector, "out_features")
    m = BYOL(tiny_backbone(), hidden_dim=7, out_dim=4, projector=projector, generator=0)
    shapes = [tuple(p.shape) for _, p in m.predictor.named_parameters() if p.ndim == 2]
    assert shapes == [(7, 4), (4, 7)]
    x = np.random.default_rng(0).random((4, 3, 8, 8)).astype(np.float32)
    assert np.isfinite(m(x, x[:, :, ::-1].copy()).item())

