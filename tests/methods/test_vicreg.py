"""VICReg: the method returns the loss and records its three terms."""
import math

import numpy as np
import pytest

from npjem import backend
from npjem.autograd import Tensor, no_grad
from npjem.losses.noncontrastive import vicreg
from npjem.methods import VICReg

from _method_checks import check_one_fit_step_changes_parameters, check_state_dict_round_trip


def method(make_backbone, make_views, **kw):
    return VICReg(make_backbone(), hidden_dim=8, out_dim=5, views=make_views(), generator=0, **kw)


def test_forward_is_vicreg_and_records_its_terms(make_backbone, make_views, images, device):
    m = method(make_backbone, make_views, sim_coeff=2.0, std_coeff=3.0, cov_coeff=0.5)
    x1, x2 = m.make_views(backend.to_device(images, device), generator=0)
    loss = m(x1, x2)
    assert loss.shape == () and math.isfinite(loss.item())
    with no_grad():
        out = vicreg(m.projector(m.backbone(x1)), m.projector(m.backbone(x2)), sim_coeff=2.0, std_coeff=3.0,
                     cov_coeff=0.5)
    d = m.diagnostics
    assert loss.item() == pytest.approx(out.loss.item(), rel=1e-4)
    for term in ("invariance", "variance", "covariance"):
        assert d[term] == pytest.approx(getattr(out, term).item(), rel=1e-4, abs=1e-7)
    assert loss.item() == pytest.approx(2.0 * d["invariance"] + 3.0 * d["variance"] + 0.5 * d["covariance"],
                                        rel=1e-4)
    loss.backward()
    for p in m.trainable_parameters():
        assert p.grad is not None and np.isfinite(p.grad.numpy()).all()


def test_one_fit_step_changes_parameters(make_backbone, make_views, images, device):
    check_one_fit_step_changes_parameters(method(make_backbone, make_views), images, device)


def test_state_dict_round_trip(make_backbone, make_views, images, device):
    m = method(make_backbone, make_views)
    other = VICReg(make_backbone(seed=1), hidden_dim=8, out_dim=5, views=make_views(), generator=3)
    check_state_dict_round_trip(m, other, images, device)


@pytest.mark.parametrize("name, value", [("sim_coeff", -1.0), ("std_coeff", float("nan")), ("cov_coeff", -2),
                                         ("gamma", 0.0), ("eps", 0.0), ("num_layers", 1)])
def test_bad_arguments_raise_naming_them(make_backbone, make_views, name, value):
    with pytest.raises(ValueError, match=name):
        method(make_backbone, make_views, **{name: value})


def test_a_batch_of_one_raises(make_backbone, make_views, images, device):
    m = method(make_backbone, make_views)
    x = Tensor(backend.to_device(images[:1], device))
    with pytest.raises(ValueError, match="at least 2"):
        m(x, x)
