"""DINO: EMA teacher on the global crops, teacher-temperature warm-up, centre update, no gradient to the teacher."""
import math

import numpy as np
import pytest

from npjem import backend, optim
from npjem.autograd import Tensor, no_grad
from npjem.data.augment import Compose, RandomHorizontalFlip, RandomResizedCrop
from npjem.losses.distillation import dino
from npjem.methods import DINO, MultiCropViews, fit
from npjem.methods.swav import _encode_crops


def crops(n_local=2):
    return MultiCropViews(Compose([RandomResizedCrop(8, scale=(0.5, 1.0)), RandomHorizontalFlip(0.5)]),
                          Compose([RandomResizedCrop(4, scale=(0.2, 0.5))]), n_global=2, n_local=n_local)


def method(make_backbone, **kw):
    return DINO(make_backbone(), hidden_dim=8, bottleneck_dim=4, out_dim=7, views=crops(), generator=0, **kw)


def params(module):
    return {k: v.numpy().copy() for k, v in module.named_parameters()}  # host copies


def test_forward_is_dino_over_all_crops_and_the_teacher_gets_no_gradient(make_backbone, images, device):
    m = method(make_backbone, teacher_temp=0.05)
    views = m.make_views(backend.to_device(images, device), generator=0)
    assert len(views) == 4
    m.center.data[...] = backend.to_device(np.linspace(-1, 1, 7, dtype=np.float32)[None], device)
    loss = m(*views)
    assert loss.shape == () and math.isfinite(loss.item())
    with no_grad():
        s = _encode_crops(m.backbone, views, head=m.projector)  # the head sees every crop at once
        t = _encode_crops(m._teacher, views[:2])
        expected = dino(s, t, m.center, student_temp=0.1, teacher_temp=0.05).item()
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    for p in m.trainable_parameters():
        assert p.grad is not None and np.isfinite(p.grad.numpy()).all()
    for p in list(m.backbone_teacher.parameters()) + list(m.projector_teacher.parameters()):
        assert not p.requires_grad and p.grad is None
    assert 0 <= m.diagnostics["teacher_entropy"] <= math.log(7) + 1e-6


def test_teacher_temperature_warms_up_linearly(make_backbone):
    m = method(make_backbone, warmup_teacher_temp=0.02, teacher_temp=0.05, warmup_teacher_temp_steps=4)
    # main_dino.py's np.linspace(0.02, 0.05, 4): the last warm-up step already at teacher_temp
    assert [m.teacher_temperature(k) for k in range(6)] == pytest.approx([0.02, 0.03, 0.04, 0.05, 0.05, 0.05])
    assert m.teacher_temperature() == pytest.approx(0.02)
    m.after_step(0, 10)
    assert m.teacher_temperature() == pytest.approx(0.03)  # the step counter sets τ_t
    one = method(make_backbone, warmup_teacher_temp=0.02, teacher_temp=0.05, warmup_teacher_temp_steps=1)
    assert [one.teacher_temperature(k) for k in range(3)] == pytest.approx([0.02, 0.05, 0.05])


def test_after_step_moves_the_teacher_by_the_cosine_ema_and_the_centre(make_backbone, images, device):
    m = method(make_backbone, momentum=0.9, center_momentum=0.8)
    opt = optim.SGD(m.trainable_parameters(), lr=0.5)
    views = m.make_views(backend.to_device(images, device), generator=1)
    m(*views).backward()
    with no_grad():
        t = np.concatenate([v.numpy() for v in _encode_crops(m._teacher, views[:2])], axis=0)
    opt.step()
    online = {**params(m.backbone), **{"p." + k: v for k, v in params(m.projector).items()}}
    teacher = {**params(m.backbone_teacher), **{"p." + k: v for k, v in params(m.projector_teacher).items()}}
    center = m.center.numpy().copy()
    tau = optim.cosine_momentum(2, 8, base=0.9, final=1.0)
    m.after_step(2, 8)
    new = {**params(m.backbone_teacher), **{"p." + k: v for k, v in params(m.projector_teacher).items()}}
    for k in online:
        np.testing.assert_allclose(new[k], tau * teacher[k] + (1 - tau) * online[k], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(m.center.numpy(), 0.8 * center + 0.2 * t.mean(axis=0, keepdims=True), rtol=1e-5,
                               atol=1e-7)
    assert not np.allclose(m.center.numpy(), center)


def test_one_fit_step_changes_the_student_and_the_teacher(make_backbone, images, device):
    m = method(make_backbone, momentum=0.5)
    s0, t0 = params(m.backbone), params(m.backbone_teacher)
    h = fit(m, [backend.to_device(images, device)], optim.Adam(m.trainable_parameters(), lr=1e-2), progress=False,
            generator=0)
    assert h.steps == 1 and math.isfinite(h["loss"][0]) and int(m.num_steps.numpy()[0]) == 1
    assert any(not np.array_equal(v, s0[k]) for k, v in params(m.backbone).items())
    assert any(not np.array_equal(v, t0[k]) for k, v in params(m.backbone_teacher).items())


def test_state_dict_round_trip_keeps_the_teacher_and_the_centre(make_backbone, images, device):
    m = method(make_backbone, momentum=0.5)
    m(*m.make_views(backend.to_device(images, device), generator=2)).backward()
    m.after_step(0, 4)
    other = DINO(make_backbone(seed=1), hidden_dim=8, bottleneck_dim=4, out_dim=7, views=crops(), generator=5)
    other.load_state_dict(m.state_dict())
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(backend.to_numpy(other.state_dict()[k]), backend.to_numpy(v), err_msg=k)
    assert "center" in other.state_dict() and any(k.startswith("backbone_teacher.") for k in other.state_dict())
    assert not np.allclose(other.center.numpy(), 0)


@pytest.mark.parametrize("name, value", [("student_temp", 0.0), ("teacher_temp", -0.04), ("warmup_teacher_temp", 0),
                                         ("warmup_teacher_temp_steps", -1), ("momentum", 1.1),
                                         ("center_momentum", -0.5), ("n_global", 0)])
def test_bad_arguments_raise_naming_them(make_backbone, name, value):
    with pytest.raises(ValueError, match=name):
        method(make_backbone, **{name: value})


def test_too_few_crops_raise(make_backbone, images, device):
    m = method(make_backbone)
    with pytest.raises(ValueError, match="crops"):
        m(Tensor(backend.to_device(images, device)))
