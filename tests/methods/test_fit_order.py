"""What ``fit`` promises, step by step, seen by a tiny recording method (torch-free, a few ms a test).

The method is a linear energy L = mean_n (x̃_n · w) over one weight vector w, so every step's
gradient is the batch's mean view, known in advance; the optimizer, the schedule, the hooks and
the callback write what they see into one log. The order checked is the one ``fit``'s docstring
gives: forward, ``zero_grad``, backward, ``before_step``, ``optimizer.step``, ``schedule.step``,
``after_step``, the history's record, ``callback``.
"""
import math
import sys

import numpy as np
import pytest

from _terminal import on_a_terminal

from npjem import backend
from npjem import random as nrandom
from npjem.autograd import Tensor
from npjem.methods import IndexedDataLoader, Method, fit
from npjem.nn import Module, Parameter

W0 = np.array([1.0, -2.0, 0.5])


class Weights(Module):
    """The backbone: one weight vector w (no layer needed to take a gradient)."""

    def __init__(self, w=W0, dtype=np.float64):
        super().__init__()
        self.w = Parameter(np.array(w, dtype=dtype))


def shifted_views(log):
    """x̃ = x + u, u ~ U[0, 1) drawn from the generator given: the draws show which stream ran."""

    def views(x, generator=None):
        u = generator.random(x.shape, dtype=x.dtype) if isinstance(generator, nrandom.Generator) else 0.0
        log.append(("views", x.dtype, generator, np.array(u)))
        return (x + u,)

    return views


class Recorder(Method):
    def __init__(self, log, w=W0, dtype=np.float64):
        super().__init__(Weights(w, dtype), views=shifted_views(log))
        self.log = log

    def forward(self, v, indices=None):
        n = v.shape[0]
        self.log.append(("forward", v.data.copy(), None if indices is None else backend.to_numpy(indices)))
        return (v * self.backbone.w).sum() * (1.0 / n)

    def before_step(self, step, total_steps):
        g = self.backbone.w.grad
        self.log.append(("before_step", step, total_steps, None if g is None else g.numpy().copy(),
                         self.backbone.w.data.copy()))

    def after_step(self, step, total_steps):
        self.log.append(("after_step", step, total_steps, self.backbone.w.data.copy()))


class IndexedRecorder(Recorder):
    needs_indices = True


class RecordingSGD:
    """Plain SGD that logs its calls and the learning rate it steps with."""

    def __init__(self, params, lr, log):
        self.params, self.log = list(params), log
        self.param_groups = [{"lr": lr}]

    def zero_grad(self):
        self.log.append(("zero_grad",))
        for p in self.params:
            p.grad = None

    def step(self):
        lr = self.param_groups[0]["lr"]
        self.log.append(("step", lr))
        for p in self.params:
            if p.grad is not None:
                p.data = p.data - lr * p.grad.data


class Halving:
    """A per-step schedule: the learning rate halves after every optimizer step."""

    def __init__(self, optimizer, log):
        self.optimizer, self.log = optimizer, log

    def step(self):
        self.log.append(("schedule",))
        self.optimizer.param_groups[0]["lr"] *= 0.5


def batches(n_batches, batch=2, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(batch, 3)).astype(dtype) for _ in range(n_batches)]


class NoLen:
    """An iterable without ``len``: the run's length is unknown in advance."""

    def __init__(self, items):
        self.items = items

    def __iter__(self):
        return iter(self.items)


def run(loader, epochs=1, lr=0.4, schedule=True, method=None, **kwargs):
    log = []
    m = method(log) if method is not None else Recorder(log)
    opt = RecordingSGD(m.trainable_parameters(), lr, log)
    sched = Halving(opt, log) if schedule else None
    kwargs.setdefault("progress", False)

    def callback(rec):
        log.append(("callback", rec["step"], rec["epoch"], rec["loss"], rec["lr"], rec["time"],
                    rec["history"], rec["method"], len(rec["history"]["loss"])))

    h = fit(m, loader, opt, epochs=epochs, schedule=sched, callback=kwargs.pop("callback", callback), **kwargs)
    return m, h, log


def kinds(log):
    return [e[0] for e in log]


def test_each_step_runs_forward_zero_grad_backward_before_step_step_schedule_after_step_callback():
    m, h, log = run(batches(2), epochs=2)
    one = ["views", "forward", "zero_grad", "before_step", "step", "schedule", "after_step", "callback"]
    assert kinds(log) == one * 4
    steps = [log[i:i + len(one)] for i in range(0, len(log), len(one))]
    w = W0.copy()
    lr = 0.4
    for k, s in enumerate(steps):
        _, v, _ = s[1]
        grad = v.mean(axis=0)
        _, b_step, b_total, b_grad, b_w = s[3]
        # backward ran after zero_grad (the gradient is this step's alone, not accumulated) and
        # before_step sees it before the optimizer has moved the weights
        assert (b_step, b_total) == (k, 4)
        np.testing.assert_allclose(b_grad, grad, rtol=1e-12)
        np.testing.assert_array_equal(b_w, w)
        assert s[4] == ("step", lr)           # the step uses the lr before this step's schedule
        w = w - lr * grad
        _, a_step, a_total, a_w = s[6]
        assert (a_step, a_total) == (k, 4)
        np.testing.assert_allclose(a_w, w, rtol=1e-12)  # after_step sees the stepped weights
        _, c_step, c_epoch, c_loss, c_lr, c_time, c_hist, c_method, c_len = s[7]
        assert (c_step, c_epoch, c_lr) == (k, k // 2, lr)
        assert c_loss == pytest.approx(float(v.mean(axis=0) @ (w + lr * grad)), rel=1e-12)
        assert c_hist is h and c_method is m
        assert c_hist["loss"][k] == c_loss and c_hist["time"][k] == c_time
        assert c_len == k + 1   # the history holds this step when the callback runs
        lr *= 0.5
    np.testing.assert_allclose(m.backbone.w.data, w, rtol=1e-12)


def test_history_holds_each_steps_loss_lr_epoch_and_time():
    import time

    t0 = time.perf_counter()
    m, h, log = run(batches(3), epochs=2)
    wall = time.perf_counter() - t0
    assert h.steps == 6 and sorted(h) == ["epoch", "loss", "lr", "time"]
    assert h["epoch"] == [0, 0, 0, 1, 1, 1]
    assert h["lr"] == pytest.approx([0.4 * 0.5 ** k for k in range(6)])
    forwards = [e[1] for e in log if e[0] == "forward"]
    ws = [W0] + [e[3] for e in log if e[0] == "after_step"]
    assert h["loss"] == pytest.approx([float(v.mean(axis=0) @ w) for v, w in zip(forwards, ws)], rel=1e-12)
    assert all(isinstance(t, float) for t in h["time"])
    # seconds since the start of fit: non-decreasing, within the call's wall time
    assert 0.0 <= h["time"][0] and all(a <= b for a, b in zip(h["time"], h["time"][1:]))
    assert h.seconds == h["time"][-1] <= wall


def test_without_a_schedule_the_lr_stays():
    _, h, log = run(batches(2), epochs=2, schedule=False)
    assert "schedule" not in kinds(log)
    assert h["lr"] == [0.4] * 4


def test_the_hooks_see_the_whole_runs_steps_with_max_steps_and_start_step():
    _, h, log = run(batches(3), epochs=2, max_steps=4)
    assert [e[1:3] for e in log if e[0] == "after_step"] == [(k, 4) for k in range(4)]
    assert h.steps == 4 and h["epoch"] == [0, 0, 0, 1]
    # max_steps beyond epochs × len(loader): the loader's length wins
    _, h, log = run(batches(3), epochs=2, max_steps=10)
    assert [e[1:3] for e in log if e[0] == "after_step"] == [(k, 6) for k in range(6)]
    assert h.steps == 6
    # a resumed run: the hooks count from start_step and see the whole run's length; the
    # callback and the history count this call's steps
    _, h, log = run(batches(3), epochs=1, start_step=5)
    assert [e[1:3] for e in log if e[0] == "before_step"] == [(5 + k, 8) for k in range(3)]
    assert [e[1:3] for e in log if e[0] == "after_step"] == [(5 + k, 8) for k in range(3)]
    assert [e[1] for e in log if e[0] == "callback"] == [0, 1, 2]
    assert h.steps == 3


def test_a_loader_without_len_runs_and_the_hooks_see_the_steps_so_far():
    _, h, log = run(NoLen(batches(3)), epochs=2)
    assert [e[1:3] for e in log if e[0] == "after_step"] == [(k, k + 1) for k in range(6)]
    assert [e[1:3] for e in log if e[0] == "before_step"] == [(k, k + 1) for k in range(6)]
    _, h, log = run(NoLen(batches(3)), epochs=2, start_step=2)
    assert [e[1:3] for e in log if e[0] == "after_step"] == [(2 + k, 3 + k) for k in range(6)]
    # with max_steps, that is the length
    _, h, log = run(NoLen(batches(3)), epochs=2, max_steps=4)
    assert [e[1:3] for e in log if e[0] == "after_step"] == [(k, 4) for k in range(4)]
    assert h.steps == 4


def test_epochs_default_to_one_pass():
    log = []
    m = Recorder(log)
    h = fit(m, batches(3), RecordingSGD(m.trainable_parameters(), 0.1, log), progress=False)
    assert h.steps == 3 and h["epoch"] == [0, 0, 0]


def test_the_callback_stops_only_on_true():
    _, h, _ = run(batches(3), epochs=2, callback=lambda rec: rec["step"] == 1)
    assert h.steps == 2
    _, h, _ = run(batches(3), epochs=2, callback=lambda rec: 1)  # truthy is not True: no stop
    assert h.steps == 6


def test_batches_may_be_x_or_tuples_and_labels_are_ignored():
    xs = batches(2)
    ref = run(xs)[1]["loss"]
    for form in ([(x,) for x in xs], [(x, np.zeros(2)) for x in xs], [[x, None] for x in xs]):
        m, h, log = run(form)
        assert h["loss"] == ref
        assert all(e[2] is None for e in log if e[0] == "forward")  # no indices without a third element
    for bad in ((), (xs[0], None, np.arange(2), "extra")):
        with pytest.raises(ValueError, match=r"a batch must be x, \(x, y\) or \(x, y, indices\)"):
            run([bad])
    with pytest.raises(TypeError, match="the batch's images must be an array or a Tensor, got str"):
        run(["abc"])


def test_the_third_element_is_the_indices_for_a_method_that_needs_them():
    xs = batches(2)
    idx = [np.array([4, 7]), np.array([0, 2])]
    m, h, log = run([(x, None, i) for x, i in zip(xs, idx)], method=IndexedRecorder)
    seen = [e[2] for e in log if e[0] == "forward"]
    assert [s.tolist() for s in seen] == [i.tolist() for i in idx]
    assert h["loss"] == run(xs)[1]["loss"]
    for plain in (xs, [(x, None) for x in xs]):
        with pytest.raises(ValueError, match="IndexedRecorder needs each sample's data-set index: use "
                                             "npjem.methods.IndexedDataLoader"):
            run(plain, method=IndexedRecorder)
    images = np.arange(4 * 3, dtype=np.float64).reshape(4, 3)
    m, h, log = run(IndexedDataLoader(images, batch_size=2, shuffle=False), method=IndexedRecorder)
    assert [e[2].tolist() for e in log if e[0] == "forward"] == [[0, 1], [2, 3]]


class DuckMethod:
    """Not a Module: only what fit calls (train, training_loss, after_step), no ``before_step``,
    no ``needs_indices``; it never receives views it has not asked for."""

    def __init__(self, log, needs=None):
        self.log, self.w = log, Parameter(W0.copy())
        if needs is not None:
            self.needs_indices = needs

    def train(self, mode=True):
        self.log.append(("train", mode))

    def trainable_parameters(self):
        return [self.w]

    def training_loss(self, x, indices=None, generator=None):
        self.log.append(("forward", x, indices))
        return (Tensor(x) * self.w).sum()

    def after_step(self, step, total_steps):
        self.log.append(("after_step", step, total_steps))


def test_a_duck_typed_method_without_before_step_or_needs_indices():
    xs = batches(2, dtype=np.float32)
    m, h, log = run(xs, method=DuckMethod)
    assert kinds(log) == ["train"] + ["forward", "zero_grad", "step", "schedule", "after_step", "callback"] * 2
    # not a Module: no parameter dtype to cast the batches to, no indices asked for
    assert all(e[1].dtype == np.float32 and e[2] is None for e in log if e[0] == "forward")
    with pytest.raises(ValueError, match="DuckMethod needs each sample's data-set index"):
        run(xs, method=lambda log: DuckMethod(log, needs=True))
    _, h, _ = run(xs, method=lambda log: DuckMethod(log, needs=False))
    assert h.steps == 2


def test_fit_puts_the_method_in_training_mode():
    log = []
    m = Recorder(log)
    m.eval()
    fit(m, batches(1), RecordingSGD(m.trainable_parameters(), 0.1, log), progress=False)
    assert m.training and m.backbone.training


def test_batches_are_cast_to_the_methods_dtype():
    _, _, log = run(batches(2, dtype=np.float32))                           # a float64 method
    assert [e[1] for e in log if e[0] == "views"] == [np.float64, np.float64]
    _, _, log = run(batches(2), method=lambda log: Recorder(log, dtype=np.float32))  # a float32 one
    assert [e[1] for e in log if e[0] == "views"] == [np.float32, np.float32]


class NoParameters(Method):
    """A method without parameters (its one trained number is not registered): nothing to cast
    the batch to."""

    def __init__(self, log):
        super().__init__(Module(), views=shifted_views(log))
        self.scale = Tensor(np.array(1.0), requires_grad=True)

    def forward(self, v):
        return (v * v).sum() * self.scale


def test_a_method_without_parameters_keeps_the_batchs_dtype():
    log = []
    m = NoParameters(log)
    opt = RecordingSGD([], 0.1, log)
    fit(m, batches(2, dtype=np.float32), opt, progress=False)
    assert [e[1] for e in log if e[0] == "views"] == [np.float32, np.float32]


def test_a_seed_makes_one_generator_for_the_whole_run():
    xs = batches(3)
    _, _, log = run(xs, epochs=2, generator=5)
    gens = [e[2] for e in log if e[0] == "views"]
    draws = [e[3] for e in log if e[0] == "views"]
    assert all(isinstance(g, nrandom.Generator) for g in gens) and all(g is gens[0] for g in gens)
    assert gens[0].device == "cpu"
    # one stream: each step draws new noise, and the seed reproduces the run
    assert not any(np.array_equal(draws[0], d) for d in draws[1:])
    ref = nrandom.Generator(5, "cpu")
    for d in draws:
        np.testing.assert_array_equal(d, ref.random((2, 3), dtype=np.float64))
    _, _, again = run(xs, epochs=2, generator=5)
    for a, b in zip(draws, [e[3] for e in again if e[0] == "views"]):
        np.testing.assert_array_equal(a, b)


def test_a_generator_object_is_used_as_given():
    g = nrandom.Generator(1, "cpu")
    _, _, log = run(batches(2), generator=g)
    assert all(e[2] is g for e in log if e[0] == "views")


def test_without_a_generator_the_view_maker_gets_none():
    _, _, log = run(batches(2))
    assert [e[2] for e in log if e[0] == "views"] == [None, None]  # the view maker's own default


def test_an_optimizer_without_param_groups_records_nan_lr():
    class Bare:
        def zero_grad(self):
            pass

        def step(self):
            pass

    log = []
    m = Recorder(log)
    h = fit(m, batches(2), Bare(), progress=False)
    assert h.steps == 2 and all(math.isnan(v) for v in h["lr"])
    empty = Bare()
    empty.param_groups = []
    h = fit(m, batches(1), empty, progress=False)
    assert math.isnan(h["lr"][0])


def test_bad_arguments_are_refused_naming_the_argument():
    log = []
    m = Recorder(log)
    opt = RecordingSGD(m.trainable_parameters(), 0.1, log)
    xs = batches(1)
    with pytest.raises(ValueError, match="max_steps must be a positive integer"):
        fit(m, xs, opt, max_steps=0)
    with pytest.raises(ValueError, match="start_step must be an integer >= 0"):
        fit(m, xs, opt, start_step=-1)
    with pytest.raises(TypeError, match="callback must be callable or None, got int"):
        fit(m, xs, opt, callback=3)
    with pytest.raises(TypeError, match="schedule must have a step\\(\\) method, got object"):
        fit(m, xs, opt, schedule=object())

    class HalfOptimizer:
        def step(self):
            pass

    with pytest.raises(TypeError, match=r"optimizer must have a zero_grad\(\) method, got HalfOptimizer"):
        fit(m, xs, HalfOptimizer())
    HalfOptimizer.zero_grad, HalfOptimizer.step = HalfOptimizer.step, None
    with pytest.raises(TypeError, match=r"optimizer must have a step\(\) method, got HalfOptimizer"):
        fit(m, xs, HalfOptimizer())
    assert log == []  # nothing ran
    fit(m, xs, opt, start_step=0, progress=False)  # 0 is the default and allowed
    assert kinds(log).count("after_step") == 1


def test_a_nan_loss_names_the_method_the_step_and_the_epoch():
    class NaNAtStep2(Recorder):
        def forward(self, v, indices=None):
            loss = super().forward(v)
            return loss * float("nan") if len([e for e in self.log if e[0] == "forward"]) == 3 else loss

    with pytest.raises(FloatingPointError, match=r"the loss is nan at step 2 \(epoch 1, 0-based\) of NaNAtStep2"):
        run(batches(2), epochs=2, method=NaNAtStep2)


# ---------------------------------------------------------------- what is printed

def _lines(capsys):
    return [ln for ln in capsys.readouterr().err.splitlines() if ln]


def test_log_lines_every_log_every_steps_the_first_and_the_last(capsys):
    _, h, _ = run(batches(12), progress=True)      # log_every's default is 10
    lines = _lines(capsys)
    assert [ln.split(":")[0] for ln in lines] == ["Recorder step 1/12 epoch 0", "Recorder step 10/12 epoch 0",
                                                  "Recorder step 12/12 epoch 0"]
    # each line's loss is the mean over the last log_every steps, and the lr of its step
    losses = h["loss"]
    means = [losses[0], sum(losses[:10]) / 10, sum(losses[2:12]) / 10]
    for ln, mean, k in zip(lines, means, (0, 9, 11)):
        assert f"loss {mean:.4f} lr {h['lr'][k]:.3g} (" in ln and ln.endswith("s)")
    _, h, _ = run(batches(7), epochs=1, progress=True, log_every=3)
    assert [ln.split(":")[0].split(" ", 1)[1] for ln in _lines(capsys)] == [
        "step 1/7 epoch 0", "step 3/7 epoch 0", "step 6/7 epoch 0", "step 7/7 epoch 0"]
    _, h, _ = run(NoLen(batches(2)), epochs=2, progress=True, log_every=2)  # no length: no "/total"
    assert [ln.split(":")[0] for ln in _lines(capsys)] == ["Recorder step 1 epoch 0", "Recorder step 2 epoch 0",
                                                           "Recorder step 4 epoch 1"]


def test_progress_is_on_by_default_and_off_prints_nothing(capsys):
    log = []
    m = Recorder(log)
    fit(m, batches(2), RecordingSGD(m.trainable_parameters(), 0.1, log), log_every=1)
    assert len(_lines(capsys)) == 2
    fit(m, batches(2), RecordingSGD(m.trainable_parameters(), 0.1, log), progress=False, log_every=1)
    assert _lines(capsys) == []


@pytest.fixture
def terminal(monkeypatch):
    """Call it in the test's body (pytest sets its own stderr again between setup and the call):
    stderr becomes a terminal, tqdm a recording bar; returns the bars made."""
    return lambda: on_a_terminal(monkeypatch)


def test_on_a_terminal_a_bar_counts_the_steps_and_shows_the_mean_loss(terminal):
    terminal = terminal()
    _, h, _ = run(batches(3), epochs=2, progress=True, log_every=2)
    (bar,) = terminal
    assert bar.kwargs == {"total": 6, "desc": "Recorder", "unit": "step"}
    assert bar.updates == [1] * 6 and bar.closed
    losses = h["loss"]
    # refreshed at steps 1, 2, 4, 6 with the mean of the last two losses; no forced redraw
    want = [(losses[0], 0, 0), ((losses[0] + losses[1]) / 2, 1, 0), ((losses[2] + losses[3]) / 2, 3, 1),
            ((losses[4] + losses[5]) / 2, 5, 1)]
    assert bar.postfix == [{"loss": f"{mean:.4f}", "lr": f"{h['lr'][k]:.3g}", "epoch": e, "refresh": False}
                           for mean, k, e in want]
    assert sys.stderr.getvalue() == ""  # the bar replaces the log lines


def test_the_bar_is_closed_when_training_fails(terminal):
    terminal = terminal()
    class Fails(Recorder):
        def forward(self, v, indices=None):
            return super().forward(v) * float("inf")

    with pytest.raises(FloatingPointError):
        run(batches(2), progress=True, method=Fails)
    (bar,) = terminal
    assert bar.closed and bar.updates == []


def test_no_bar_without_progress_even_on_a_terminal(terminal):
    terminal = terminal()
    run(batches(2), progress=False)
    assert terminal == []
