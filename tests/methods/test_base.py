"""The Method base class, IndexedDataLoader and the shared training loop ``fit``."""
import numpy as np
import pytest

from npjem import backend, optim
from npjem.autograd import Tensor
from npjem.data import DataLoader
from npjem.methods import History, IndexedDataLoader, Method, SimCLR, fit


class CountingSchedule:
    def __init__(self):
        self.calls = 0

    def step(self):
        self.calls += 1


class Recorder(SimCLR):
    """SimCLR that records the after_step calls and can be told to return NaN at a step."""

    def __init__(self, *args, nan_at=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.after = []
        self.calls = 0
        self.nan_at = nan_at

    def forward(self, x1, x2):
        loss = super().forward(x1, x2)
        self.calls += 1
        if self.nan_at is not None and self.calls - 1 == self.nan_at:
            return loss * float("nan")
        return loss

    def after_step(self, step, total_steps):
        self.after.append((step, total_steps))


def tiny_backbone():
    from npjem.nn import models

    return models.ConvNet(widths=(4, 6), strides=(2, 2), generator=0)


def make(nan_at=None, cls=None):
    from npjem.data.augment import (
        Compose,
        RandomHorizontalFlip,
        RandomResizedCrop,
        TwoViews,
    )

    views = TwoViews(Compose([RandomResizedCrop(8, scale=(0.5, 1.0)), RandomHorizontalFlip(0.5)]))
    return (cls or Recorder)(tiny_backbone(), hidden_dim=8, out_dim=4, views=views, generator=0, nan_at=nan_at)


def test_fit_runs_steps_records_history_and_calls_hooks(images):
    m = make()
    loader = DataLoader(images[:8], batch_size=4, generator=0)
    opt = optim.SGD(m.trainable_parameters(), lr=0.1, momentum=0.9)
    sched = CountingSchedule()
    before = {k: v.copy() for k, v in m.state_dict().items()}
    h = fit(m, loader, opt, epochs=1, schedule=sched, generator=0, progress=False)
    assert isinstance(h, History)
    assert h.steps == 2 and len(h["lr"]) == 2 and h["epoch"] == [0, 0]
    assert all(np.isfinite(h["loss"])) and h["lr"] == [0.1, 0.1]
    assert sched.calls == 2
    assert m.after == [(0, 2), (1, 2)]
    after = m.state_dict()
    assert any(not np.array_equal(before[k], after[k]) for k in before if k.endswith("weight"))


class DropsTheHead(Recorder):
    """Records what ``before_step`` sees, and drops the projector's gradients at step 0."""

    def before_step(self, step, total_steps):
        p = self.projector.layers[0].weight
        self.seen = getattr(self, "seen", []) + [(step, total_steps, p.grad is not None,
                                                   np.array_equal(p.data, self.start[step]))]
        if step == 0:
            for q in self.projector.parameters():
                q.grad = None


def test_fit_calls_before_step_between_backward_and_the_optimizer_step(images):
    m = make(cls=DropsTheHead)
    loader = DataLoader(images[:8], batch_size=4, generator=0)
    opt = optim.Adam(m.trainable_parameters(), lr=0.1, weight_decay=0.1)
    head = {k: v.copy() for k, v in m.projector.state_dict().items()}
    m.start = [m.projector.layers[0].weight.data.copy(), None]
    callback = lambda rec: m.start.__setitem__(1, m.projector.layers[0].weight.data.copy())  # noqa: E731
    fit(m, loader, opt, epochs=1, generator=0, progress=False, callback=callback)
    # after backward (a gradient), before the optimizer step (the weights of the step's start)
    assert m.seen == [(0, 2, True, True), (1, 2, True, True)]
    assert m.after == [(0, 2), (1, 2)]
    # step 0 dropped the head's gradients: the optimizer skipped it (no decay, no moments) ...
    assert opt.state[m.projector.layers[0].weight]["step"] == 1
    assert opt.state[m.backbone.features[0].weight]["step"] == 2
    # ... and step 1 moved it
    assert any(not np.array_equal(v, head[k]) for k, v in m.projector.state_dict().items())


def test_fit_with_warmup_cosine_records_the_lr_of_each_step(images):
    m = make()
    loader = DataLoader(images[:8], batch_size=4, generator=0)
    opt = optim.SGD(m.trainable_parameters(), lr=0.2)
    sched = optim.WarmupCosine(opt, total_steps=4, warmup_steps=1)
    h = fit(m, loader, opt, epochs=2, schedule=sched, generator=0, progress=False)
    assert h["lr"] == pytest.approx([0.0, 0.2, 0.15, 0.05])
    assert h["epoch"] == [0, 0, 1, 1]


def test_fit_raises_on_a_nan_loss_naming_the_step_before_touching_the_weights(images):
    m = make(nan_at=1)
    loader = DataLoader(images[:8], batch_size=4, shuffle=False)
    opt = optim.SGD(m.trainable_parameters(), lr=0.1)
    snapshot = {}

    def keep(record):
        snapshot.update({k: backend.to_numpy(v.data).copy() for k, v in m.named_parameters()})

    with pytest.raises(FloatingPointError, match="step 1"):
        fit(m, loader, opt, epochs=1, progress=False, callback=keep)
    for k, v in m.named_parameters():
        np.testing.assert_array_equal(backend.to_numpy(v.data), snapshot[k])  # the failing step changed no weight


def test_fit_callback_can_stop_and_max_steps_caps(images):
    m = make()
    loader = DataLoader(images, batch_size=4, generator=0)
    opt = optim.SGD(m.trainable_parameters(), lr=0.01)
    h = fit(m, loader, opt, epochs=3, progress=False, callback=lambda r: r["step"] == 1)
    assert h.steps == 2
    h = fit(m, loader, opt, epochs=3, progress=False, max_steps=4)
    assert h.steps == 4


def test_fit_resumed_with_start_step_continues_the_per_step_schedules(images):
    """A run cut after 4 of 6 steps and resumed as ``npjem pretrain --resume`` calls ``fit``: the
    method's after_step sees the whole run's steps (BYOL's τ_k of k of K), not a fresh schedule."""
    m = make()
    loader = DataLoader(images[:8], batch_size=4, generator=0)
    opt = optim.SGD(m.trainable_parameters(), lr=0.01)
    fit(m, loader, opt, epochs=3, progress=False, callback=lambda r: r["step"] == 3)
    h = fit(m, loader, opt, epochs=3 - 4 // 2, progress=False, max_steps=6 - 4, start_step=4)
    assert m.after == [(k, 6) for k in range(6)]
    assert h.steps == 2
    with pytest.raises(ValueError, match="start_step"):
        fit(m, loader, opt, start_step=-1)


def test_fit_progress_prints_log_lines_when_not_a_terminal(images, capsys):
    m = make()
    loader = DataLoader(images[:8], batch_size=4, generator=0)
    opt = optim.SGD(m.trainable_parameters(), lr=0.01)
    fit(m, loader, opt, epochs=1, progress=True, log_every=1)
    err = capsys.readouterr().err
    assert "step 1/2" in err and "step 2/2" in err and "loss" in err
    fit(m, loader, opt, epochs=1, progress=False)
    assert capsys.readouterr().err == ""


def test_fit_rejects_bad_arguments(images):
    m = make()
    loader = DataLoader(images[:8], batch_size=4)
    opt = optim.SGD(m.trainable_parameters(), lr=0.01)
    with pytest.raises(ValueError, match="epochs"):
        fit(m, loader, opt, epochs=0)
    with pytest.raises(TypeError, match="schedule"):
        fit(m, loader, opt, schedule=object())
    with pytest.raises(ValueError, match="log_every"):
        fit(m, loader, opt, log_every=0)


def test_indexed_loader_yields_the_rows_of_each_sample(images):
    labels = np.arange(12) * 10
    il = IndexedDataLoader(images, labels, batch_size=5, generator=3)
    plain = DataLoader(images, labels, batch_size=5, generator=3)
    seen = []
    for batch, plain_batch in zip(il, plain):
        x, y, idx = (backend.to_numpy(a) for a in batch)        # host copies of device batches
        x2, y2 = (backend.to_numpy(a) for a in plain_batch)
        np.testing.assert_array_equal(x, images[idx])
        np.testing.assert_array_equal(y, labels[idx])
        np.testing.assert_array_equal(x, x2)  # same permutation as the DataLoader
        np.testing.assert_array_equal(y, y2)
        seen.extend(idx.tolist())
    assert sorted(seen) == list(range(12))
    x, y, idx = next(iter(IndexedDataLoader(images, batch_size=4, shuffle=False)))
    assert y is None and idx.tolist() == [0, 1, 2, 3]


def test_embed_uses_eval_mode_no_grad_and_restores_the_mode(images, device):
    m = make()
    m.train()
    h = m.embed(images, batch_size=5)   # a host array: embed moves it to the method's device
    assert isinstance(h, Tensor) and h.shape == (12, 6) and not h.requires_grad
    assert m.training and m.backbone.training
    m.eval()
    ref = m.backbone(Tensor(images, device=device)).numpy()
    np.testing.assert_allclose(h.numpy(), ref, rtol=1e-5, atol=1e-6)
    z = m.embed(images, projected=True)
    assert z.shape == (12, 4)


def test_make_views_returns_constant_tensors_of_the_batch_shape(images, device):
    m = make()
    x = backend.to_device(images, device)
    v1, v2 = m.make_views(x, generator=0)
    assert v1.shape == v2.shape == images.shape and not v1.requires_grad
    assert v1.device == v2.device == device  # views are made on the device of the batch
    w1, _ = m.make_views(x, generator=0)
    np.testing.assert_array_equal(v1.numpy(), w1.numpy())  # a seed reproduces the views


def test_method_checks_its_components():
    with pytest.raises(TypeError, match="backbone"):
        Method(object())
    with pytest.raises(TypeError, match="views"):
        Method(tiny_backbone(), views=3)
    with pytest.raises(NotImplementedError):
        Method(tiny_backbone())(Tensor(np.zeros((2, 3, 8, 8), np.float32)))


def test_fit_casts_batches_to_a_float64_method(images):
    m = make().double()
    loader = DataLoader(images[:8], batch_size=4, generator=0)
    opt = optim.SGD(m.trainable_parameters(), lr=0.01)
    h = fit(m, loader, opt, epochs=1, progress=False)
    assert h.steps == 2 and all(p.dtype == np.float64 for p in m.parameters())
