"""data2vec: a masked ViT student regresses the EMA teacher's top-K layer average at the masked patches."""
import math

import numpy as np
import pytest

from npjem import backend, optim
from npjem.autograd import Tensor, no_grad
from npjem.data.augment import Compose, RandomResizedCrop
from npjem.losses.distillation import data2vec_loss
from npjem.methods import Data2Vec, ViTMeanPool, fit
from npjem.nn.models import VisionTransformer


def vit(seed=0):
    return VisionTransformer(img_size=8, patch_size=4, embed_dim=8, depth=3, num_heads=2, generator=seed)


def method(**kw):
    kw.setdefault("top_k", 2)
    kw.setdefault("mask_ratio", 0.5)
    return Data2Vec(vit(), views=Compose([RandomResizedCrop(8, scale=(0.5, 1.0))]), generator=0,
                    **kw)


def params(module):
    return {k: v.numpy().copy() for k, v in module.named_parameters()}  # host copies


def test_forward_is_the_masked_regression_and_the_teacher_gets_no_gradient(images, device):
    m = method(beta=0.5)
    (x,) = m.make_views(backend.to_device(images, device), generator=0)
    gen_state = m._mask_seed
    loss = m(x)
    assert loss.shape == () and math.isfinite(loss.item()) and loss.item() > 0
    # The same mask again, from a fresh generator with the method's seed.
    m2 = method(beta=0.5)
    m2.load_state_dict(m.state_dict())
    assert m2._mask_seed == gen_state
    mask = m2._mask(x)
    assert mask.shape == (12, 4) and (backend.to_numpy(mask).sum(axis=1) == 2).all()
    with no_grad():
        pred = m2.final_proj(m2.backbone.tokens(x, mask))
        expected = data2vec_loss(pred, m2.targets(x), mask, beta=0.5).item()
    m3 = method(beta=0.0)  # β = 0: the squared error (data2vec's audio setting)
    m3.load_state_dict(m.state_dict())
    with no_grad():
        mse = data2vec_loss(pred, m2.targets(x), mask, loss="mse").item()
    assert m3(x).item() == pytest.approx(mse, rel=1e-5)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    for p in m.trainable_parameters():
        assert p.grad is not None and np.isfinite(p.grad.numpy()).all()
    assert np.abs(m.backbone.vit.mask_token.grad.numpy()).max() > 0  # the masked patches were replaced
    for p in m.backbone_teacher.parameters():
        assert not p.requires_grad and p.grad is None
    assert m.diagnostics["target_std"] > 0 and m.diagnostics["prediction_std"] > 0


@pytest.mark.parametrize("top_k", [1, 2])
def test_targets_come_from_the_teacher_and_the_top_k_blocks(images, device, top_k):
    from npjem.losses.distillation import data2vec_targets

    m = method(top_k=top_k)
    x = Tensor(backend.to_device(images, device))
    y = m.targets(x).numpy()
    assert y.shape == (12, 4, 8)
    with no_grad():
        _, layers = m.backbone_teacher.vit.forward_features(x, return_all_blocks=True, block_output="ffn")
        expected = data2vec_targets([a[:, 1:] for a in layers[-top_k:]], top_k, instance_norm=True,
                                    layer_norm_targets=True).numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    m.backbone.vit.blocks[-1].mlp.fc2.weight.data[...] *= 2.0  # the student does not make the targets
    np.testing.assert_allclose(m.targets(x).numpy(), y, rtol=1e-5, atol=1e-6)
    m.backbone_teacher.vit.blocks[-1].mlp.fc2.weight.data[...] *= -1.0  # the teacher does
    assert not np.allclose(m.targets(x).numpy(), y, atol=1e-4)


def test_ema_momentum_is_linear_then_constant_and_after_step_applies_it(images, device):
    m = method(momentum=0.9, final_momentum=0.98, momentum_steps=4)
    assert [m.ema_momentum(k) for k in range(6)] == pytest.approx([0.9, 0.92, 0.94, 0.96, 0.98, 0.98])
    opt = optim.SGD(m.trainable_parameters(), lr=0.5)
    m(Tensor(backend.to_device(images, device))).backward()
    opt.step()
    online, teacher = params(m.backbone), params(m.backbone_teacher)
    m.after_step(0, 4)
    # fairseq's set_num_updates(1): the first EMA step after one update uses τ(1), not τ(0)
    for k, v in params(m.backbone_teacher).items():
        np.testing.assert_allclose(v, 0.92 * teacher[k] + 0.08 * online[k], rtol=1e-5, atol=1e-7)
    assert int(m.num_steps.numpy()[0]) == 1 and m.ema_momentum() == pytest.approx(0.92) == m.momentum_now


def test_one_fit_step_changes_the_student_and_the_teacher(images, device):
    m = method(momentum=0.5, final_momentum=0.5)
    s0, t0 = params(m.backbone), params(m.backbone_teacher)
    h = fit(m, [backend.to_device(images, device)], optim.Adam(m.trainable_parameters(), lr=1e-2), progress=False,
            generator=0)
    assert h.steps == 1 and math.isfinite(h["loss"][0])
    assert any(not np.array_equal(v, s0[k]) for k, v in params(m.backbone).items())
    assert any(not np.array_equal(v, t0[k]) for k, v in params(m.backbone_teacher).items())


def test_embed_pools_the_patch_tokens(images, device):
    m = method()
    h = m.embed(images)
    assert h.shape == (12, 8)
    with no_grad():
        tokens = m.backbone.vit.forward_features(Tensor(backend.to_device(images, device)))
    np.testing.assert_allclose(h.numpy(), tokens.numpy()[:, 1:].mean(axis=1), rtol=1e-5, atol=1e-6)
    z = m.embed(images, projected=True)
    assert z.shape == (12, 8)


def test_state_dict_round_trip(images, device):
    m = method(momentum=0.5)
    m(Tensor(backend.to_device(images, device))).backward()
    m.after_step(0, 3)
    other = Data2Vec(vit(seed=1), top_k=2, generator=4)
    other.load_state_dict(m.state_dict())
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(backend.to_numpy(other.state_dict()[k]), backend.to_numpy(v), err_msg=k)
    assert int(other.num_steps.numpy()[0]) == 1


@pytest.mark.parametrize("name, value", [("mask_ratio", 0.0), ("mask_ratio", 1.0), ("top_k", 4), ("top_k", 0),
                                         ("beta", -1.0), ("instance_norm", 1), ("momentum", 2.0), ("final_momentum", -1.0),
                                         ("momentum_steps", -2), ("target_layer", "end")])
def test_bad_arguments_raise_naming_them(name, value):
    with pytest.raises(ValueError, match=name):
        method(**{name: value})


def test_backbone_must_be_a_vit(make_backbone):
    with pytest.raises(TypeError, match="VisionTransformer"):
        Data2Vec(make_backbone())
    assert isinstance(Data2Vec(ViTMeanPool(vit()), top_k=1).backbone, ViTMeanPool)
