"""DINO beyond what the twin fixes (mutation testing found these open):

- the loss uses the student temperature given, not the loss function's default;
- the diagnostics: the teacher's entropy H(softmax((g_t(x_1) − c)/τ_t)) of the first global crop,
  the student's embedding std on the first crop, τ_t and the momentum of the last EMA update;
- with one global crop a second crop is needed, and enough;
- a head without ``last_layer`` trains with ``freeze_last_layer_steps`` set.
"""
import math

import numpy as np
import pytest

from npjem import optim
from npjem.autograd import no_grad
from npjem.losses.distillation import dino
from npjem.methods import DINO, MultiCropViews, fit
from npjem.methods._monitor import embedding_std
from npjem.data.augment import Compose, RandomResizedCrop
from npjem.nn import Linear

from conftest import tiny_backbone

from conftest import cpu_only  # noqa: E402

pytestmark = cpu_only


def views(n_global=2, n_local=1):
    return MultiCropViews(Compose([RandomResizedCrop(8, scale=(0.5, 1.0))]), Compose([RandomResizedCrop(4)]),
                          n_global=n_global, n_local=n_local)


def method(**kw):
    kw.setdefault("views", views())
    return DINO(tiny_backbone(), hidden_dim=5, bottleneck_dim=3, out_dim=6, generator=0, **kw)


@pytest.fixture
def images():
    return np.random.default_rng(0).random((6, 3, 8, 8)).astype(np.float32)


def softmax(a):
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_loss_and_diagnostics_with_a_set_student_temperature_during_the_warm_up(images):
    m = method(student_temp=0.3, warmup_teacher_temp=0.02, teacher_temp=0.06, warmup_teacher_temp_steps=3,
               momentum=0.9)
    m.eval()  # BatchNorm on running statistics: each crop's outputs do not depend on the grouping
    center = np.linspace(-0.5, 0.5, 6, dtype=np.float32)[None]
    m.center.data[...] = center
    m.after_step(1, 10)  # one step taken: τ_t = 0.04, and the EMA's τ is the cosine's at k = 1
    m.center.data[...] = center  # after_step has no pending teacher outputs: the centre stays
    crops = m.make_views(images, generator=0)
    loss = m(*crops)
    with no_grad():
        s = [m.projector(m.backbone(c)) for c in crops]
        t = [m.projector_teacher(m.backbone_teacher(c)) for c in crops[:2]]
    expected = dino(s, t, center, student_temp=0.3, teacher_temp=0.04).item()
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert loss.item() != pytest.approx(dino(s, t, center, student_temp=0.1, teacher_temp=0.04).item(), rel=1e-3)
    p = softmax((t[0].numpy().astype(np.float64) - center) / 0.04)
    entropy = float(-(p * np.log(np.maximum(p, 1e-30))).sum(axis=1).mean())
    assert 0 < entropy < math.log(6)
    d = m.diagnostics
    assert d["teacher_entropy"] == pytest.approx(entropy, rel=1e-4)
    assert d["teacher_temp"] == pytest.approx(0.04)
    assert d["momentum"] == pytest.approx(optim.cosine_momentum(1, 10, base=0.9, final=1.0))
    assert d["loss"] == pytest.approx(loss.item())
    assert d["embedding_std"] == pytest.approx(embedding_std(s[0]), rel=1e-6)
    assert d["embedding_std"] != pytest.approx(embedding_std(s[1]), rel=1e-3)


def test_one_global_crop_needs_a_second_crop_and_two_are_enough(images):
    m = method(n_global=1, views=views(n_global=1, n_local=1))
    x = m.make_views(images, generator=0)
    assert math.isfinite(m(*x).item())
    with pytest.raises(ValueError, match="at least 2 crops"):
        m(x[0])
    two = method(views=views(n_global=2, n_local=0))
    assert math.isfinite(two(*two.make_views(images, generator=0)).item())


def test_a_head_without_last_layer_trains_while_the_last_layer_would_be_frozen(images):
    m = DINO(tiny_backbone(), projector=Linear(6, 4, generator=0), out_dim=4, freeze_last_layer_steps=5,
             views=views(), generator=0)
    before = m.projector.weight.numpy().copy()
    h = fit(m, [images], optim.SGD(m.trainable_parameters(), lr=0.1), progress=False, generator=0)
    assert h.steps == 1 and not np.array_equal(m.projector.weight.numpy(), before)


def test_num_layers_sets_the_head_depth_and_a_given_head_sets_out_dim(images):
    shapes = lambda m: [tuple(p.shape) for _, p in m.projector.mlp.named_parameters() if p.ndim == 2]  # noqa: E731
    assert shapes(method(num_layers=2)) == [(5, 6), (3, 5)]
    assert shapes(method()) == [(5, 6), (5, 5), (3, 5)]
    head = DINO(tiny_backbone(), hidden_dim=5, bottleneck_dim=3, out_dim=4, views=views()).projector  # 4 outputs
    m = DINO(tiny_backbone(), projector=head, views=views(), generator=0)  # out_dim left at 65536
    assert m.out_dim == 4 and m.center.shape == (1, 4)
    assert math.isfinite(m(*m.make_views(images, generator=0)).item())


def test_diagnostics_report_the_initial_momentum_before_any_step(images):
    m = method(momentum=0.9)
    m(*m.make_views(images, generator=0))
    assert m.diagnostics["momentum"] == 0.9


@pytest.mark.parametrize("name", ["freeze_last_layer_steps", "warmup_teacher_temp_steps"])
def test_negative_step_counts_are_refused(name):
    with pytest.raises(ValueError, match=name):
        method(**{name: -1})
