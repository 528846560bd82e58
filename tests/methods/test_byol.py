"""BYOL: the target moves only by the cosine-scheduled EMA, and gets no gradient."""
import math

import numpy as np
import pytest

from npjem import backend, optim
from npjem.autograd import no_grad
from npjem.losses.distillation import byol_loss
from npjem.methods import BYOL, fit


def method(make_backbone, make_views, **kw):
    return BYOL(make_backbone(), hidden_dim=8, out_dim=4, views=make_views(), generator=0, **kw)


def params(module):
    return {k: v.numpy().copy() for k, v in module.named_parameters()}  # host copies


def test_forward_is_the_summed_byol_loss_and_the_target_gets_no_gradient(make_backbone, make_views, images, device):
    m = method(make_backbone, make_views)
    x1, x2 = m.make_views(backend.to_device(images, device), generator=0)
    loss = m(x1, x2)
    assert loss.shape == () and math.isfinite(loss.item())
    with no_grad():
        p1, p2 = m.predictor(m.projector(m.backbone(x1))), m.predictor(m.projector(m.backbone(x2)))
        t1, t2 = m.projector_target(m.backbone_target(x1)), m.projector_target(m.backbone_target(x2))
        expected = byol_loss(p1, t2).item() + byol_loss(p2, t1).item()
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    for p in m.trainable_parameters():
        assert p.grad is not None and np.isfinite(p.grad.numpy()).all()
    assert any(np.abs(p.grad.numpy()).max() > 0 for p in m.predictor.parameters())
    for p in list(m.backbone_target.parameters()) + list(m.projector_target.parameters()):
        assert not p.requires_grad and p.grad is None
    target_ids = {id(p) for p in list(m.backbone_target.parameters()) + list(m.projector_target.parameters())}
    assert not target_ids & {id(p) for p in m.trainable_parameters()}
    assert 0 <= m.diagnostics["embedding_std"] <= 1 and m.diagnostics["loss"] == pytest.approx(loss.item())


def test_after_step_is_the_ema_with_the_cosine_momentum(make_backbone, make_views, images, device):
    m = method(make_backbone, make_views, momentum=0.9)
    opt = optim.SGD(m.trainable_parameters(), lr=0.5)
    m(*m.make_views(backend.to_device(images, device), generator=1)).backward()
    opt.step()
    online, target = params(m.backbone) | params(m.projector), None
    target = {**params(m.backbone_target), **params(m.projector_target)}
    assert any(not np.array_equal(online[k], target[k]) for k in online)
    step, total = 3, 10
    tau = optim.cosine_momentum(step, total, base=0.9, final=1.0)
    assert 0.9 < tau < 1.0
    m.after_step(step, total)
    assert m.momentum_now == pytest.approx(tau)
    new = {**params(m.backbone_target), **params(m.projector_target)}
    for k in online:
        np.testing.assert_allclose(new[k], tau * target[k] + (1 - tau) * online[k], rtol=1e-5, atol=1e-7)
    # At the end of the schedule τ = 1: the target no longer moves.
    m.after_step(total, total)
    for k, v in {**params(m.backbone_target), **params(m.projector_target)}.items():
        np.testing.assert_array_equal(v, new[k])


def test_one_fit_step_changes_the_online_network_and_moves_the_target(make_backbone, make_views, images, device):
    m = method(make_backbone, make_views, momentum=0.5)
    before_online, before_target = params(m.backbone), params(m.backbone_target)
    opt = optim.Adam(m.trainable_parameters(), lr=1e-2)
    h = fit(m, [backend.to_device(images, device)], opt, epochs=1, progress=False, generator=0)
    assert h.steps == 1 and math.isfinite(h["loss"][0])
    assert any(not np.array_equal(v, before_online[k]) for k, v in params(m.backbone).items())
    assert any(not np.array_equal(v, before_target[k]) for k, v in params(m.backbone_target).items())


def test_constant_online_and_target_get_zero_gradient(make_backbone, make_views, images, device):
    """The seeds' trivial solution: a constant output sits at the collapse value with zero gradient."""
    m = method(make_backbone, make_views)
    for head in (m.projector, m.projector_target):
        last = head.layers[-1]
        last.weight.data[...] = 0
        last.bias.data[...] = 1.0
    m.predictor.layers[-1].weight.data[...] = 0
    m.predictor.layers[-1].bias.data[...] = 1.0
    loss = m(*m.make_views(backend.to_device(images, device), generator=2))
    assert loss.item() == pytest.approx(0.0, abs=1e-6)  # 2 − 2cos = 0 in each direction
    loss.backward()
    for p in m.backbone.parameters():
        assert np.abs(p.grad.numpy()).max() < 1e-6


def test_state_dict_round_trip(make_backbone, make_views, images, device, tmp_path):
    import npjem

    m = method(make_backbone, make_views, momentum=0.5)
    opt = optim.SGD(m.trainable_parameters(), lr=0.1)
    m(*m.make_views(backend.to_device(images, device), generator=3)).backward()
    opt.step()
    m.after_step(0, 5)
    path = tmp_path / "byol.npz"
    npjem.save(m.state_dict(), str(path))
    other = BYOL(make_backbone(seed=1), hidden_dim=8, out_dim=4, views=make_views(), generator=5)
    other.load_state_dict(npjem.load(str(path)))
    for (k, a), (_, b) in zip(m.state_dict().items(), other.state_dict().items()):
        np.testing.assert_array_equal(backend.to_numpy(a), backend.to_numpy(b), err_msg=k)
    assert any(k.startswith("backbone_target.") for k in other.state_dict())


@pytest.mark.parametrize("kw, name", [({"momentum": 1.5}, "momentum"), ({"final_momentum": -0.1}, "final_momentum"),
                                      ({"feature_dim": 0}, "feature_dim")])
def test_bad_arguments_raise_naming_them(make_backbone, make_views, kw, name):
    with pytest.raises(ValueError, match=name):
        method(make_backbone, make_views, **kw)
