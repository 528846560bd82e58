"""SimSiam: symmetric negative cosine with the stop-gradient on the projections."""
import math

import numpy as np
import pytest

from npjem import backend
from npjem.autograd import no_grad
from npjem.losses.distillation import simsiam_loss
from npjem.methods import SimSiam

from _method_checks import check_one_fit_step_changes_parameters, check_state_dict_round_trip


def method(make_backbone, make_views, **kw):
    return SimSiam(make_backbone(), hidden_dim=8, out_dim=8, predictor_hidden_dim=4, views=make_views(), generator=0,
                   **kw)


def test_forward_is_simsiam_loss_and_finite(make_backbone, make_views, images, device):
    m = method(make_backbone, make_views)
    x1, x2 = m.make_views(backend.to_device(images, device), generator=0)
    loss = m(x1, x2)
    assert loss.shape == () and math.isfinite(loss.item()) and -1.0 <= loss.item() <= 1.0
    with no_grad():
        z1, z2 = m.projector(m.backbone(x1)), m.projector(m.backbone(x2))
        expected = simsiam_loss(m.predictor(z1), m.predictor(z2), z1, z2).item()
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    for p in m.trainable_parameters():
        assert p.grad is not None and np.isfinite(p.grad.numpy()).all()
    assert "embedding_std" in m.diagnostics


def test_the_stop_gradient_holds_the_target_branch(make_backbone, make_views, images, device):
    """The backbone's gradient equals that of ½(−cos(p1, c2) − cos(p2, c1)) with c = z as constants."""
    from npjem.autograd import Tensor
    from npjem.autograd import functional as F

    m = method(make_backbone, make_views)
    x1, x2 = m.make_views(backend.to_device(images, device), generator=1)
    m.zero_grad()
    m(x1, x2).backward()
    got = [p.grad.numpy().copy() for p in m.backbone.parameters()]
    m.zero_grad()
    z1, z2 = m.projector(m.backbone(x1)), m.projector(m.backbone(x2))
    c1, c2 = Tensor(z1.data.copy()), Tensor(z2.data.copy())
    manual = -(F.cosine_similarity(m.predictor(z1), c2, axis=1).mean()
               + F.cosine_similarity(m.predictor(z2), c1, axis=1).mean()) * 0.5
    manual.backward()
    for g, p in zip(got, m.backbone.parameters()):
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-3, atol=1e-6)
    m.zero_grad()  # without the stop-gradient the gradient differs: the test can fail
    z1, z2 = m.projector(m.backbone(x1)), m.projector(m.backbone(x2))
    both = -(F.cosine_similarity(m.predictor(z1), z2, axis=1).mean()
             + F.cosine_similarity(m.predictor(z2), z1, axis=1).mean()) * 0.5
    both.backward()
    assert any(not np.allclose(g, p.grad.numpy(), rtol=1e-3, atol=1e-6) for g, p in zip(got, m.backbone.parameters()))


def test_one_fit_step_changes_parameters(make_backbone, make_views, images, device):
    check_one_fit_step_changes_parameters(method(make_backbone, make_views), images, device)


def test_state_dict_round_trip(make_backbone, make_views, images, device):
    m = method(make_backbone, make_views)
    other = SimSiam(make_backbone(seed=1), hidden_dim=8, out_dim=8, predictor_hidden_dim=4, views=make_views(),
                    generator=7)
    check_state_dict_round_trip(m, other, images, device)


def test_bad_arguments_raise_naming_them(make_backbone, make_views, images, device):
    with pytest.raises(ValueError, match="feature_dim"):
        method(make_backbone, make_views, feature_dim=-1)
    m = method(make_backbone, make_views)
    x = backend.to_device(images, device)
    from npjem.autograd import Tensor

    with pytest.raises(ValueError, match="same shape"):
        m(Tensor(x), Tensor(x[:5]))
