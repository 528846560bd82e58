"""SwAV: unit prototypes, frozen early, Sinkhorn codes from the first crops, the queue for small batches."""
import math

import numpy as np
import pytest

from npjem import backend, optim
from npjem.autograd import Tensor
from npjem.data.augment import Compose, RandomHorizontalFlip, RandomResizedCrop
from npjem.losses.clustering import sinkhorn_knopp
from npjem.methods import MultiCropViews, SwAV, fit


def crops(n_local=2):
    return MultiCropViews(Compose([RandomResizedCrop(8, scale=(0.5, 1.0)), RandomHorizontalFlip(0.5)]),
                          Compose([RandomResizedCrop(4, scale=(0.2, 0.5))]), n_global=2, n_local=n_local)


def method(make_backbone, **kw):
    kw.setdefault("freeze_prototypes_steps", 0)
    kw.setdefault("num_prototypes", 5)
    return SwAV(make_backbone(), hidden_dim=8, out_dim=4, views=crops(), generator=0, **kw)


def row_norms(m):
    return np.linalg.norm(m.prototypes.weight.numpy(), axis=1)


def test_forward_is_finite_and_trains_every_part(make_backbone, images, device):
    m = method(make_backbone)
    views = m.make_views(backend.to_device(images, device), generator=0)
    assert len(views) == 4 and views[2].shape[-1] == 4
    loss = m(*views)
    assert loss.shape == () and math.isfinite(loss.item())
    assert loss.item() > 0
    loss.backward()
    for p in m.trainable_parameters():
        assert p.grad is not None and np.isfinite(p.grad.numpy()).all()
    assert np.abs(m.prototypes.weight.grad.numpy()).max() > 0
    assert 1 <= m.diagnostics["prototypes_used"] <= 5 and m.diagnostics["queue_used"] is False
    np.testing.assert_allclose(row_norms(m), 1.0, rtol=1e-6)  # unit prototypes from the start


def test_prototypes_are_frozen_for_the_first_steps_then_train(make_backbone, images, device):
    m = method(make_backbone, freeze_prototypes_steps=2)
    opt = optim.SGD(m.trainable_parameters(), lr=0.5)
    x = backend.to_device(images, device)
    for step in range(3):
        before = m.prototypes.weight.numpy().copy()
        opt.zero_grad()
        m(*m.make_views(x, generator=step)).backward()
        frozen = step < 2
        assert (m.prototypes.weight.grad is None) is frozen
        assert any(p.grad is not None for p in m.backbone.parameters())
        opt.step()
        m.after_step(step, 3)
        # (re-normalising a unit row changes it by rounding only)
        assert np.allclose(m.prototypes.weight.numpy(), before, rtol=0, atol=1e-6) is frozen
        np.testing.assert_allclose(row_norms(m), 1.0, rtol=1e-6)  # re-normalised after every step
    assert not m.prototypes_frozen


def test_codes_are_sinkhorn_of_the_first_crops_detached_scores(make_backbone, images, device):
    m = method(make_backbone, n_assign=1, sinkhorn_iterations=5)
    views = m.make_views(backend.to_device(images, device), generator=4)
    m(*views)
    from npjem.methods.swav import _encode_crops

    from npjem.autograd import functional as AF

    # the backbone per resolution, the projector (and its BatchNorm) once on every crop, as in the method
    z = _encode_crops(m.backbone, views, head=lambda h: AF.normalize(m.projector(h), axis=1))
    s = z[0].data @ m.prototypes.weight.data.T
    q = sinkhorn_knopp(Tensor(s), epsilon=m.epsilon, n_iters=m.sinkhorn_iterations)
    q = backend.to_numpy(q.data if isinstance(q, Tensor) else q)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-4)  # each sample's code sums to 1
    # The method's loss with these codes: swav over all crops, recomputed.
    from npjem.losses.clustering import swav

    scores = [Tensor(zv.data @ m.prototypes.weight.data.T) for zv in z]
    expected = swav(scores, [Tensor(backend.to_device(q, device))], temperature=m.temperature).item()
    assert m(*views).item() == pytest.approx(expected, rel=1e-4)


def test_reduction_sum_doubles_the_two_crop_loss_and_prototypes_are_renormalised_first(make_backbone, images, device):
    views = None
    losses = {}
    for how in ("mean", "sum"):
        m = SwAV(make_backbone(), hidden_dim=8, out_dim=4, num_prototypes=5, freeze_prototypes_steps=0,
                 reduction=how, views=TwoViewsOnly(), generator=0)
        m.prototypes.weight.data[...] *= 3.0  # off the unit sphere: the forward renormalises them first
        views = m.make_views(backend.to_device(images, device), generator=9) if views is None else views
        losses[how] = m(*views).item()
        np.testing.assert_allclose(row_norms(m), 1.0, rtol=1e-6)
    # two crops: the notes' ℓ(q_x, s_y) + ℓ(q_y, s_x), twice SwAV's mean
    assert losses["sum"] == pytest.approx(2 * losses["mean"], rel=1e-6)


class TwoViewsOnly:
    """The two global crops of ``crops()``, no local ones."""

    def __call__(self, x, generator=None):
        return crops()(x, generator=generator)[:2]


def test_queue_fills_from_its_start_step_and_is_used_once_full(make_backbone, images, device):
    n = images.shape[0]
    m = method(make_backbone, queue_length=2 * n, queue_start_step=1)
    opt = optim.SGD(m.trainable_parameters(), lr=0.1)
    x = backend.to_device(images, device)
    for step in range(4):
        opt.zero_grad()
        m(*m.make_views(x, generator=step)).backward()
        opt.step()
        m.after_step(step, 4)
        filled = int(m.queue_count.numpy()[0])
        assert filled == min(2 * n, max(0, step) * n)
    assert m.queue_in_use
    q = m.queue.numpy()
    assert q.shape == (2, 2 * n, 4)
    np.testing.assert_allclose(np.linalg.norm(q, axis=2), 1.0, rtol=1e-5)  # normalised embeddings
    m(*m.make_views(x, generator=9))
    assert m.diagnostics["queue_used"] is True


def test_one_fit_step_changes_parameters(make_backbone, images, device):
    m = method(make_backbone)
    before = {k: v.numpy().copy() for k, v in m.named_parameters()}
    h = fit(m, [backend.to_device(images, device)], optim.Adam(m.trainable_parameters(), lr=1e-2), progress=False,
            generator=0)
    assert h.steps == 1 and math.isfinite(h["loss"][0]) and int(m.num_steps.numpy()[0]) == 1
    assert any(not np.array_equal(v, before[k]) for k, v in m.named_parameters())


def test_state_dict_round_trip_keeps_the_queue_and_the_step(make_backbone, images, device):
    m = method(make_backbone, queue_length=12, freeze_prototypes_steps=5)
    x = backend.to_device(images, device)
    m(*m.make_views(x, generator=1))
    m.after_step(0, 2)
    other = SwAV(make_backbone(seed=1), hidden_dim=8, out_dim=4, num_prototypes=5, views=crops(), generator=3,
                 queue_length=12, freeze_prototypes_steps=5)
    other.load_state_dict(m.state_dict())
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(backend.to_numpy(other.state_dict()[k]), backend.to_numpy(v), err_msg=k)
    assert int(other.num_steps.numpy()[0]) == 1 and int(other.queue_count.numpy()[0]) == 12


@pytest.mark.parametrize("name, value", [("num_prototypes", 0), ("temperature", 0.0), ("epsilon", -0.05),
                                         ("sinkhorn_iterations", 0), ("n_assign", 0),
                                         ("freeze_prototypes_steps", -1), ("queue_length", -3),
                                         ("queue_start_step", 1.5), ("reduction", "none")])
def test_bad_arguments_raise_naming_them(make_backbone, name, value):
    with pytest.raises(ValueError, match=name):
        method(make_backbone, **{name: value})


def test_too_few_crops_raise(make_backbone, images, device):
    m = method(make_backbone)
    x = Tensor(backend.to_device(images, device))
    with pytest.raises(ValueError, match="crops"):
        m(x)
    with pytest.raises(ValueError, match="crop 1"):
        m(x, Tensor(backend.to_device(images[:3], device)))


def test_small_epsilon_runs_sinkhorn_in_the_log_domain_and_stays_finite(make_backbone, images, device):
    assert method(make_backbone).log_domain is False  # ε = 0.05: SwAV's own iteration
    sharp = method(make_backbone, epsilon=0.005)
    assert sharp.log_domain is True and "log_domain=True" in repr(sharp)
    views = sharp.make_views(backend.to_device(images.astype(np.float32), device), generator=0)
    assert math.isfinite(sharp(*views).item())
    plain = method(make_backbone, epsilon=0.005, log_domain=False)  # exp(s / 0.005) overflows float32
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"), \
            pytest.raises(FloatingPointError, match="log_domain=True"):
        plain(*views)
    assert method(make_backbone, epsilon=SwAV.LOG_DOMAIN_BELOW).log_domain is False  # strictly below
    with pytest.raises(TypeError, match="^log_domain must"):
        method(make_backbone, log_domain="yes")
