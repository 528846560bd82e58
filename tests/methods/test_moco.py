"""MoCo v2: gradients reach the query encoder only; after_step is an exact EMA and a FIFO push."""
import numpy as np
import pytest

from npjem import backend, optim
from npjem import random as nrandom
from npjem.autograd import Tensor, no_grad
from npjem.autograd import functional as F
from npjem.losses.contrastive import moco_loss
from npjem.methods import MoCo


def method(make_backbone, make_views, **kw):
    kw.setdefault("momentum", 0.9)
    kw.setdefault("bn_splits", 1)  # BatchNorm over the whole batch; shuffling BN is tested below
    return MoCo(make_backbone(), hidden_dim=8, out_dim=4, queue_size=30, views=make_views(), generator=0, **kw)


def test_gradients_reach_the_query_encoder_but_not_the_momentum_encoder(make_backbone, make_views, images, device):
    m = method(make_backbone, make_views)
    loss = m(*m.make_views(backend.to_device(images, device), generator=0))
    assert loss.shape == () and np.isfinite(loss.item())
    loss.backward()
    for p in list(m.backbone.parameters()) + list(m.projector.parameters()):
        assert p.requires_grad and p.grad is not None and np.isfinite(p.grad.data).all()
    assert any(np.abs(p.grad.data).max() > 0 for p in m.backbone.parameters())
    for p in list(m.backbone_momentum.parameters()) + list(m.projector_momentum.parameters()):
        assert not p.requires_grad and p.grad is None
    ids = {id(p) for p in m.trainable_parameters()}
    assert ids == {id(p) for p in list(m.backbone.parameters()) + list(m.projector.parameters())}


def test_loss_is_moco_loss_of_query_keys_and_queue(make_backbone, make_views, images, device):
    m = method(make_backbone, make_views, temperature=0.5)
    xq, xk = m.make_views(backend.to_device(images, device), generator=1)
    loss = m(xq, xk).item()
    with no_grad():
        q = m.projector(m.backbone(xq))
        k = F.normalize(m.projector_momentum(m.backbone_momentum(xk)), axis=1)
    assert m.queue.data.shape == (30, 4)
    assert loss == pytest.approx(moco_loss(q, k, Tensor(m.queue.data), 0.5).item(), rel=1e-5)


def test_after_step_is_the_ema_then_enqueues_the_keys(make_backbone, make_views, images, device):
    m = method(make_backbone, make_views, momentum=0.9)
    opt = optim.SGD(m.trainable_parameters(), lr=0.5)
    xq, xk = m.make_views(backend.to_device(images, device), generator=2)
    loss = m(xq, xk)
    with no_grad():  # the keys of this step, from the key encoder before any update
        keys = F.normalize(m.projector_momentum(m.backbone_momentum(xk)), axis=1).numpy().copy()
    loss.backward()
    opt.step()
    online = dict(m.backbone.named_parameters()) | {f"p.{k}": v for k, v in m.projector.named_parameters()}
    target = dict(m.backbone_momentum.named_parameters()) | {
        f"p.{k}": v for k, v in m.projector_momentum.named_parameters()}
    theta_o = {k: v.numpy().copy() for k, v in online.items()}   # host copies
    theta_t = {k: v.numpy().copy() for k, v in target.items()}
    assert any(not np.array_equal(theta_o[k], theta_t[k]) for k in theta_o)  # the step moved θ
    old_queue = backend.to_numpy(m.queue.data).copy()
    ptr = m.queue.ptr
    m.after_step(0, 1)
    for k in theta_o:
        change = target[k].numpy() - theta_t[k]
        np.testing.assert_allclose(change, 0.1 * (theta_o[k] - theta_t[k]), rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(online[k].numpy(), theta_o[k])  # the online weights are untouched
    n = images.shape[0]
    rows = (ptr + np.arange(n)) % 30
    queue = backend.to_numpy(m.queue.data)
    np.testing.assert_allclose(queue[rows], keys, rtol=1e-5, atol=1e-6)
    others = np.setdiff1d(np.arange(30), rows)
    np.testing.assert_array_equal(queue[others], old_queue[others])
    assert m.queue.ptr == (ptr + n) % 30


def test_symmetric_loss_enqueues_both_views(make_backbone, make_views, images, device):
    m = method(make_backbone, make_views, symmetric=True)
    loss = m(*m.make_views(backend.to_device(images[:5], device), generator=3))
    loss.backward()
    assert np.isfinite(loss.item())
    m.after_step(0, 1)
    assert m.queue.ptr == 10


def test_queue_follows_the_dtype_of_the_method(make_backbone, make_views, images, device):
    m = method(make_backbone, make_views).double()
    x = [Tensor(v.data.astype(np.float64)) for v in m.make_views(backend.to_device(images[:4], device), generator=4)]
    loss = m(*x)
    assert loss.dtype == np.float64 and m.queue.data.dtype == np.float64


def test_arguments_are_checked(make_backbone, make_views):
    with pytest.raises(ValueError, match="momentum"):
        method(make_backbone, make_views, momentum=1.5)
    with pytest.raises(ValueError, match="queue_size"):
        MoCo(make_backbone(), queue_size=0)


def test_shuffling_bn_changes_only_the_batchnorm_groups(make_backbone, make_views, images, device):
    """In eval mode (running statistics) the groups do not matter: the loss with shuffling BN equals
    the whole-batch loss, so the keys are unshuffled back to their queries."""
    x = m0 = None
    for splits in (1, 4):
        m = method(make_backbone, make_views, bn_splits=splits, symmetric=True)
        m.eval()
        if x is None:
            x = m.make_views(backend.to_device(images, device), generator=5)
            m0 = m(*x).item()
        else:
            assert m(*x).item() == pytest.approx(m0, rel=1e-5)


def test_shuffling_bn_groups_queries_in_order_and_keys_shuffled(make_backbone, make_views, images, device):
    m = method(make_backbone, make_views, bn_splits=3)
    xq, xk = m.make_views(backend.to_device(images, device), generator=6)
    n = xq.shape[0]
    loss = m(xq, xk).item()
    perm = backend.to_numpy(nrandom.as_generator(m._shuffle_seed, device).permutation(n))
    with no_grad():
        q = np.concatenate([m.projector(m.backbone(xq[j:j + 4])).numpy() for j in range(0, n, 4)])
        ks = np.concatenate([m.projector_momentum(m.backbone_momentum(xk[backend.to_device(perm[j:j + 4], device)])).numpy()
                             for j in range(0, n, 4)])
    k = np.empty_like(ks)
    k[perm] = ks
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    expected = moco_loss(Tensor(q), Tensor(k), Tensor(backend.to_numpy(m.queue.data)), m.temperature).item()
    assert loss == pytest.approx(expected, rel=1e-5)
    whole = method(make_backbone, make_views, bn_splits=1)
    assert abs(whole(xq, xk).item() - loss) > 1e-4  # in train mode the groups' statistics differ


def test_shuffling_bn_needs_a_batch_divisible_by_the_splits(make_backbone, make_views, images, device):
    m = method(make_backbone, make_views, bn_splits=5)
    with pytest.raises(ValueError, match="multiple of bn_splits"):
        m(*m.make_views(backend.to_device(images, device), generator=7))
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="bn_splits"):
            method(make_backbone, make_views, bn_splits=bad)


def test_batch_norm_puts_batchnorm_in_both_heads(make_backbone, make_views, images, device):
    from npjem.nn import BatchNorm1d

    m = method(make_backbone, make_views, batch_norm=True, bn_splits=2, symmetric=True)
    for head in (m.projector, m.projector_momentum):
        assert sum(isinstance(layer, BatchNorm1d) for layer in head.modules()) == 1
    assert not any(isinstance(layer, BatchNorm1d) for layer in method(make_backbone, make_views).projector.modules())
    loss = m(*m.make_views(backend.to_device(images[:6], device), generator=7))
    loss.backward()
    bn = next(layer for layer in m.projector.modules() if isinstance(layer, BatchNorm1d))
    assert np.isfinite(loss.item()) and np.abs(bn.weight.grad.data).max() > 0


def test_batch_norm_needs_the_default_projector(make_backbone, make_views):
    from npjem.nn.models import MoCoProjectionHead

    with pytest.raises(ValueError, match="batch_norm"):
        method(make_backbone, make_views, batch_norm=True, projector=MoCoProjectionHead(16, 8, 4))
    with pytest.raises(TypeError, match="batch_norm"):
        method(make_backbone, make_views, batch_norm=1)


def test_directions_scales_the_symmetric_loss_and_is_checked(make_backbone, make_views, images, device):
    x = None
    losses = {}
    for directions in ("mean", "sum"):
        m = method(make_backbone, make_views, symmetric=True, directions=directions)
        if x is None:
            x = m.make_views(backend.to_device(images[:6], device), generator=8)
        losses[directions] = m(*x).item()
    assert losses["sum"] == pytest.approx(2 * losses["mean"], rel=1e-6)
    with pytest.raises(ValueError, match="directions"):
        method(make_backbone, make_views, directions="both")


def test_shuffling_bn_running_statistics_take_one_update_per_call(make_backbone, make_views, images, device):
    """The demo's SplitBatchNorm: one call moves the running mean by momentum × (mean of the groups'
    batch means), from one start, and num_batches_tracked by one."""
    from npjem.nn import BatchNorm2d

    m = method(make_backbone, make_views, bn_splits=3)
    xq, _ = m.make_views(backend.to_device(images, device), generator=9)
    bn = next(layer for layer in m.backbone.modules() if isinstance(layer, BatchNorm2d))
    conv = m.backbone.features[0]
    before = backend.to_numpy(bn.running_mean.data).copy()
    with no_grad():
        group_means = [backend.to_numpy(conv(xq[j:j + 4]).data).mean(axis=(0, 2, 3)) for j in range(0, 12, 4)]
    m._queries(xq)
    expected = 0.9 * before + 0.1 * np.mean(group_means, axis=0)
    np.testing.assert_allclose(backend.to_numpy(bn.running_mean.data), expected, rtol=1e-5, atol=1e-6)
    assert int(backend.to_numpy(bn.num_batches_tracked.data)) == 1
