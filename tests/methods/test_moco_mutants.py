"""MoCo beyond what the twin fixes (mutation testing found these open):

- a queue made in float32 follows the method to float64 (``method.double()`` mid-run) with its
  keys and pointer kept;
- shuffling BN with two groups normalises the keys over each half (not over the whole batch);
- a step's keys are enqueued once: a second ``after_step`` without a forward leaves the queue;
- two groups normalise the queries over each half too; the symmetric loss uses τ in both directions.
"""
import numpy as np
import pytest

from npjem.autograd import Tensor
from npjem.autograd import functional as F
from npjem.autograd import no_grad
from npjem.losses.contrastive import moco_loss
from npjem.methods import MoCo

from conftest import tiny_backbone, tiny_views

from conftest import cpu_only  # noqa: E402

pytestmark = cpu_only


def method(**kw):
    kw.setdefault("bn_splits", 1)
    return MoCo(tiny_backbone(), hidden_dim=5, out_dim=3, queue_size=12, momentum=0.9, views=tiny_views(),
                generator=0, **kw)


def batch(seed, n=4):
    return np.random.default_rng(seed).random((n, 3, 8, 8)).astype(np.float32)


def test_the_queue_follows_the_method_to_float64_with_its_keys():
    m = method()
    m(*m.make_views(batch(0), generator=0))
    m.after_step(0, 10)
    before, ptr = m.queue.data.copy(), m.queue.ptr
    assert before.dtype == np.float32 and ptr == 4
    m.double()
    x = [Tensor(v.data.astype(np.float64)) for v in m.make_views(batch(1), generator=1)]
    loss = m(*x)
    assert loss.dtype == np.float64
    assert m.queue.data.dtype == np.float64 and m.queue.dtype == np.float64
    np.testing.assert_array_equal(m.queue.data, before.astype(np.float64))  # the keys kept, only cast
    assert m.queue.ptr == ptr
    m.after_step(1, 10)
    assert m.queue.ptr == 8 and m.queue.data.dtype == np.float64


def test_two_bn_splits_normalise_the_keys_over_each_half():
    x = method().make_views(batch(2, n=8), generator=2)
    keys = {}
    for splits in (1, 2):
        m = method(bn_splits=splits)
        m(*x)
        m.after_step(0, 10)
        keys[splits] = m.queue.data[:8].copy()
    # Training-mode BatchNorm over 4 images per group gives other keys than over all 8 ...
    assert not np.allclose(keys[1], keys[2], atol=1e-4)
    # ... and the keys of the whole batch are BatchNorm over all 8.
    m = method()
    with no_grad():
        whole = F.normalize(m.projector_momentum(m.backbone_momentum(x[1])), axis=1).numpy()
    np.testing.assert_allclose(keys[1], whole, rtol=1e-5, atol=1e-6)


def test_a_steps_keys_are_enqueued_once():
    m = method()
    m(*m.make_views(batch(3), generator=3))
    m.after_step(0, 10)
    queue, ptr = m.queue.data.copy(), m.queue.ptr
    m.after_step(1, 10)  # no forward in between: nothing new to enqueue
    np.testing.assert_array_equal(m.queue.data, queue)
    assert m.queue.ptr == ptr


def test_after_step_before_any_forward_moves_only_the_key_encoder():
    m = method()
    m.after_step(0, 10)  # e.g. a hook run before the first batch: no keys yet
    assert m.queue is None
    m(*m.make_views(batch(4), generator=4))
    m.after_step(1, 10)
    assert m.queue.ptr == 4


def test_two_bn_splits_normalise_the_queries_over_each_half_and_the_loss_uses_them():
    m, fresh = method(bn_splits=2, temperature=0.5), method(bn_splits=2, temperature=0.5)
    xq, xk = m.make_views(batch(5, n=8), generator=5)
    loss = m(xq, xk)
    negatives = m.queue.data.copy()  # the queue the loss saw
    m.after_step(0, 10)
    keys = m.queue.data[:8]
    with no_grad():  # queries: BatchNorm over images 0-3, then over 4-7
        q = np.concatenate([fresh.projector(fresh.backbone(xq[:4])).numpy(),
                            fresh.projector(fresh.backbone(xq[4:])).numpy()], axis=0)
        whole = fresh.projector(fresh.backbone(xq)).numpy()
    assert not np.allclose(q, whole, atol=1e-4)
    expected = moco_loss(Tensor(q), Tensor(keys), Tensor(negatives), 0.5).item()
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_the_symmetric_loss_uses_the_temperature_given_in_both_directions():
    m = method(symmetric=True, temperature=0.5, directions="sum")
    xq, xk = m.make_views(batch(6), generator=6)
    loss = m(xq, xk)
    negatives = m.queue.data.copy()
    m.after_step(0, 10)
    k1, k2 = m.queue.data[:4], m.queue.data[4:8]  # enqueued as [keys of x_q, keys of x_k]
    fresh = method(symmetric=True)
    with no_grad():
        q = fresh._queries_both(xq, xk).numpy()
    expected = sum(moco_loss(Tensor(qv), Tensor(kv), Tensor(negatives), 0.5).item()
                   for qv, kv in ((q[:4], k2), (q[4:], k1)))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_the_queue_follows_the_method_back_to_float32():
    m = method().double()
    x = [Tensor(v.data.astype(np.float64)) for v in m.make_views(batch(7), generator=7)]
    m(*x)
    assert m.queue.data.dtype == np.float64
    before = m.queue.data.copy()
    m.float()
    m(*m.make_views(batch(8), generator=8))
    assert m.queue.data.dtype == np.float32 and m.queue.dtype == np.float32
    np.testing.assert_array_equal(m.queue.data, before.astype(np.float32))
