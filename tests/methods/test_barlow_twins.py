"""Barlow Twins: the method's loss is the cross-correlation loss of its two projections."""
import math

import numpy as np
import pytest

from npjem import backend, optim
from npjem.autograd import Tensor, no_grad
from npjem.losses.noncontrastive import barlow_twins
from npjem.methods import BarlowTwins, fit


def method(make_backbone, make_views, **kw):
    return BarlowTwins(make_backbone(), hidden_dim=8, out_dim=5, views=make_views(), generator=0, **kw)


def params(module):
    return {k: v.numpy().copy() for k, v in module.named_parameters()}  # host copies


def test_forward_is_the_barlow_twins_loss_of_the_projections(make_backbone, make_views, images, device):
    m = method(make_backbone, make_views, lambd=0.02)
    x1, x2 = m.make_views(backend.to_device(images, device), generator=0)
    loss = m(x1, x2)
    assert loss.shape == () and math.isfinite(loss.item())
    with no_grad():  # training-mode BatchNorm normalises with the batch's statistics: the same z again
        z1, z2 = m.projector(m.backbone(x1)), m.projector(m.backbone(x2))
    assert loss.item() == pytest.approx(barlow_twins(z1, z2, lambd=0.02).item(), rel=1e-4)
    assert loss.item() != pytest.approx(barlow_twins(z1, z2, lambd=0.5).item(), rel=1e-4)
    loss.backward()
    for p in m.trainable_parameters():
        assert p.grad is not None and np.isfinite(p.grad.numpy()).all()
    assert m.diagnostics["loss"] == pytest.approx(loss.item())


def test_one_fit_step_changes_parameters(make_backbone, make_views, images, device):
    m = method(make_backbone, make_views)
    before = params(m)
    h = fit(m, [backend.to_device(images, device)], optim.Adam(m.trainable_parameters(), lr=1e-2), progress=False,
            generator=0)
    assert h.steps == 1 and math.isfinite(h["loss"][0])
    assert any(not np.array_equal(v, before[k]) for k, v in params(m).items())


def test_state_dict_round_trip(make_backbone, make_views, images, device):
    m = method(make_backbone, make_views)
    m(*m.make_views(backend.to_device(images, device), generator=2))
    other = BarlowTwins(make_backbone(seed=1), hidden_dim=8, out_dim=5, views=make_views(), generator=3)
    other.load_state_dict(m.state_dict())
    for (k, a), (_, b) in zip(m.state_dict().items(), other.state_dict().items()):
        np.testing.assert_array_equal(backend.to_numpy(a), backend.to_numpy(b), err_msg=k)


def test_bad_arguments_raise_naming_them(make_backbone, make_views, images, device):
    with pytest.raises(ValueError, match="lambd"):
        method(make_backbone, make_views, lambd=-1.0)
    with pytest.raises(TypeError, match="lambd"):
        method(make_backbone, make_views, lambd="big")
    m = method(make_backbone, make_views)
    x = Tensor(backend.to_device(images[:1], device))
    with pytest.raises(ValueError, match="at least 2"):
        m(x, x)
