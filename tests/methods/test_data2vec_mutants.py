"""Data2Vec beyond what the twin fixes (mutation testing found these open):

- the linear EMA schedule over a single step: τ(0) = ``momentum``, τ(1) = ``final_momentum``;
- with ``momentum_steps=0`` τ is ``final_momentum`` from the start;
- the teacher shares the student's random generators and is not trained;
- the targets follow ``layer_norm``; the diagnostics are the batch's target and prediction stds.
"""
import numpy as np
import pytest

from npjem import random as nrandom
from npjem.autograd import Tensor, no_grad
from npjem.losses.distillation import data2vec_targets
from npjem.methods._monitor import embedding_std
from npjem.data.augment import Compose, RandomResizedCrop
from npjem.methods import Data2Vec
from npjem.nn.models import VisionTransformer

from conftest import cpu_only  # noqa: E402

pytestmark = cpu_only


def method(**kw):
    # 4 patches of width 6: a statistic over the wrong axis gives another number
    vit = VisionTransformer(img_size=8, patch_size=4, embed_dim=6, depth=2, num_heads=1, generator=0)
    return Data2Vec(vit, top_k=2, views=Compose([RandomResizedCrop(8)]), generator=0, **kw)


def test_a_one_step_schedule_starts_at_momentum_and_ends_at_final_momentum():
    m = method(momentum=0.9, final_momentum=0.99, momentum_steps=1)
    assert m.ema_momentum(0) == pytest.approx(0.9)
    assert m.ema_momentum(1) == pytest.approx(0.99) and m.ema_momentum(5) == pytest.approx(0.99)


def test_no_schedule_is_final_momentum_from_the_start():
    m = method(momentum=0.9, final_momentum=0.99, momentum_steps=0)
    assert [m.ema_momentum(k) for k in range(3)] == pytest.approx([0.99] * 3)


def generators(module):
    return [(name, v) for name, sub in module.named_modules() for v in vars(sub).values()
            if isinstance(v, nrandom.Generator)]


def test_the_teacher_shares_the_students_generators_and_is_not_trained():
    vit = VisionTransformer(img_size=8, patch_size=4, embed_dim=4, depth=2, num_heads=1, drop_rate=0.1,
                            generator=0)
    m = Data2Vec(vit, top_k=2, views=Compose([RandomResizedCrop(8)]), generator=0)
    student, teacher = generators(m.backbone), generators(m.backbone_teacher)
    assert student and [n for n, _ in student] == [n for n, _ in teacher]
    assert all(s is t for (_, s), (_, t) in zip(student, teacher))
    assert all(p.requires_grad is False and p.grad is None for p in m.backbone_teacher.parameters())


def test_targets_follow_layer_norm_and_diagnostics_are_the_batch_statistics():
    m = method(layer_norm=True, layer_norm_targets=False, momentum=0.9)
    x = np.random.default_rng(0).random((3, 3, 8, 8)).astype(np.float32)
    with no_grad():
        _, layers = m.backbone_teacher.vit.forward_features(Tensor(x), return_all_blocks=True, block_output="ffn")
        layers = [layer[:, 1:] for layer in layers]
        expected = data2vec_targets(layers, 2, instance_norm=True, layer_norm=True, layer_norm_targets=False)
        plain = data2vec_targets(layers, 2, instance_norm=True, layer_norm=False, layer_norm_targets=False)
    y = m.targets(Tensor(x)).numpy()
    np.testing.assert_allclose(y, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(y, plain.numpy(), atol=1e-4)
    twin = method(layer_norm=True, layer_norm_targets=False, momentum=0.9)  # the same seed: the same mask
    m(Tensor(x))
    with no_grad():
        pred = twin.final_proj(twin.backbone.tokens(Tensor(x), twin._mask(Tensor(x)))).numpy()
    d = m.diagnostics
    assert d["target_std"] == pytest.approx(float(y.reshape(-1, 6).std(axis=0).mean()), rel=1e-5)
    assert d["prediction_std"] == pytest.approx(float(pred.reshape(-1, 6).std(axis=0).mean()), rel=1e-5)
    assert d["embedding_std"] == pytest.approx(embedding_std(pred.mean(axis=1)), rel=1e-5)
    assert d["momentum"] == 0.9 and np.isfinite(d["loss"])
