"""Barlow Twins: the method's loss is the cross-correlation loss of its two projections."""
import math

import numpy as np
import pytest

from npjem import backend
from npjem.autograd import Tensor, no_grad
from npjem.losses.noncontrastive import barlow_twins
from npjem.methods import BarlowTwins

from _method_checks import check_one_fit_step_changes_parameters, check_state_dict_round_trip


def method(make_backbone, make_views, **kw):
    return BarlowTwins(make_backbone(), hidden_dim=8, out_dim=5, views=make_views(), generator=0, **kw)


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
    check_one_fit_step_changes_parameters(method(make_backbone, make_views), images, device)


def test_state_dict_round_trip(make_backbone, make_views, images, device):
    m = method(make_backbone, make_views)
    other = BarlowTwins(make_backbone(seed=1), hidden_dim=8, out_dim=5, views=make_views(), generator=3)
    check_state_dict_round_trip(m, other, images, device)


def test_bad_arguments_raise_naming_them(make_backbone, make_views, images, device):
    with pytest.raises(ValueError, match="lambd"):
        method(make_backbone, make_views, lambd=-1.0)
    with pytest.raises(TypeError, match="lambd"):
        method(make_backbone, make_views, lambd="big")
    m = method(make_backbone, make_views)
    x = Tensor(backend.to_device(images[:1], device))
    with pytest.raises(ValueError, match="at least 2"):
        m(x, x)
