"""SimCLR: the loss, its gradients (float64 central differences) and its components."""
import numpy as np
import pytest

import npjem
from npjem import backend
from npjem.autograd import Tensor
from npjem.losses.contrastive import info_nce
from npjem.methods import SimCLR


def method(make_backbone, make_views, **kw):
    return SimCLR(make_backbone(), hidden_dim=8, out_dim=4, views=make_views(), generator=0, **kw)


def test_loss_is_finite_and_reaches_backbone_and_projector(make_backbone, make_views, images, device):
    m = method(make_backbone, make_views)
    x1, x2 = m.make_views(backend.to_device(images, device), generator=0)
    loss = m(x1, x2)
    assert loss.shape == () and np.isfinite(loss.item())
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        assert np.isfinite(p.grad.data).all(), name
    assert any(np.abs(p.grad.data).max() > 0 for p in m.backbone.parameters())
    assert any(np.abs(p.grad.data).max() > 0 for p in m.projector.parameters())


def test_loss_is_nt_xent_of_the_projected_views_computed_as_one_batch(make_backbone, make_views, images, device):
    m = method(make_backbone, make_views, temperature=0.3)
    x1, x2 = m.make_views(backend.to_device(images, device), generator=1)
    xp = backend.get_array_module(x1)
    z = m.projector(m.backbone(Tensor(xp.concatenate([x1.data, x2.data]))))
    n = images.shape[0]
    expected = info_nce(z[:n], z[n:], 0.3).item()
    assert m(x1, x2).item() == pytest.approx(expected, rel=1e-6)
    half = method(make_backbone, make_views, temperature=0.3, directions="mean")
    assert half(x1, x2).item() == pytest.approx(expected / 2, rel=1e-6)


def test_gradcheck_of_a_parameter_in_float64(make_backbone, make_views, images, device):
    m = method(make_backbone, make_views).double()
    x1, x2 = (Tensor(v.data.astype(np.float64))
              for v in m.make_views(backend.to_device(images[:6], device), generator=2))
    lin = m.projector.layers[0]          # the projector's first Linear
    conv = m.backbone.features[0]        # and the backbone's first convolution

    def loss_with(module, name):
        def fn(w):
            saved = module._parameters[name]
            module._parameters[name] = w     # route the loss through the checked tensor
            try:
                return m(x1, x2)
            finally:
                module._parameters[name] = saved
        return fn

    assert npjem.gradcheck(loss_with(lin, "weight"), [lin.weight], mode="fast", n_directions=3, seed=0)
    assert npjem.gradcheck(loss_with(conv, "weight"), [conv.weight], mode="fast", n_directions=3, seed=1)


def test_feature_dim_defaults_to_the_backbone_and_arguments_are_checked(make_backbone, make_views):
    m = method(make_backbone, make_views)
    assert m.projector.in_features == 6 and m.head is m.projector
    with pytest.raises(ValueError, match="temperature"):
        method(make_backbone, make_views, temperature=0)
    with pytest.raises(ValueError, match="directions"):
        method(make_backbone, make_views, directions="x_to_y")
    with pytest.raises(ValueError, match="feature_dim"):
        SimCLR(make_backbone(), feature_dim=0)
    with pytest.raises(ValueError, match="same shape"):
        m(Tensor(np.zeros((2, 3, 8, 8), np.float32)), Tensor(np.zeros((3, 3, 8, 8), np.float32)))
