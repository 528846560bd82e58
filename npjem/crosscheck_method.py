"""npjem as an oracle for a whole training step: :func:`compare_method`.

:func:`npjem.crosscheck.compare` checks one loss. A method is more than its loss: the branch that
carries the stop-gradient, the optimizer, the EMA target and its momentum schedule, the queue, the
centre, and the order in which they are updated. ``compare_method`` runs your PyTorch training
step and npjem's on the same weights and the same seeded float64 views for ``steps`` steps, and
compares, after every step, the loss, every parameter, every buffer and every piece of state::

    from npjem import crosscheck
    report = crosscheck.compare_method(my_step, "byol", their_model=my_byol, npjem_method=byol,
                                       optimizer=lambda params: npjem.optim.SGD(params, lr=0.05))
    print(report)          # one line per step, then the first quantity that diverges and why

How it works:

1. your model is cast to float64 and its ``state_dict`` is loaded into ``npjem_method`` (names
   mapped by ``key_map`` where they differ), so both start from the same weights;
2. ``steps`` tuples of views are drawn from ``seed`` (or given as ``views``); your
   ``their_step(views, step, total_steps)`` takes one whole step on them (forward, backward,
   optimizer, EMA, queue) and returns the loss; npjem trains ``npjem_method`` with its own
   :func:`npjem.methods.fit` on the same views, one step each;
3. after every step both states are compared element by element (relative ``rtol``);
4. at the first quantity that differs it tests the known conventions that would explain it, and
   names the one that fits: a target updated before instead of after the optimizer step, a
   momentum schedule per epoch instead of per step (or off by one step), DINO's centre updated
   before the loss, weight decay on biases and BatchNorm parameters, a stop-gradient on the wrong
   branch.

npjem's side is correct when the method's step-for-step twin tests pass (``tests/methods/``): each
method is checked there against a PyTorch step written from its authors' training loop.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from . import backend
from ._checks import check_int, check_positive
from .autograd import Tensor, no_grad

__all__ = ["compare_method", "MethodReport", "StepRow", "ReplayViews", "METHODS"]

#: The method names ``compare_method`` knows (npjem's ten joint-embedding methods).
METHODS = ("simclr", "moco", "pirl", "barlow_twins", "vicreg", "swav", "byol", "simsiam", "dino", "data2vec")

#: Suffixes of the first name component of a moving-average copy: ``backbone_target.*`` follows
#: ``backbone.*`` (BYOL), ``projector_teacher.*`` follows ``projector.*`` (DINO), and so on.
_TARGET_SUFFIXES = ("_target", "_teacher", "_momentum", "_ema")


class ReplayViews:
    """A view maker that hands out pre-drawn views in order, so that ``fit`` and
    ``Method.make_views`` run unchanged while both sides see the same inputs."""

    def __init__(self, views):
        self.views = [tuple(v) for v in views]
        self.calls = 0

    def __call__(self, x, generator=None):
        if self.calls >= len(self.views):
            raise IndexError(f"ReplayViews ran out of views after {len(self.views)} steps")
        out = self.views[self.calls]
        self.calls += 1
        xp = backend.get_array_module(x)
        return tuple(xp.asarray(v) for v in out)


@dataclasses.dataclass
class StepRow:
    """One compared quantity at one step: its worst element."""
    step: int
    quantity: str      # npjem's name ("loss", a state-dict key, or a state name)
    theirs_name: str   # the same quantity under your name
    index: tuple
    theirs: float
    ours: float
    error: float
    ok: bool


@dataclasses.dataclass
class MethodReport:
    """What :func:`compare_method` found: a row per quantity per step, the first divergence, a hint."""
    method: str
    steps: int
    rows: list
    hint: str = ""

    @property
    def ok(self):
        return all(r.ok for r in self.rows)

    @property
    def first(self):
        """The first row that fails (the loss first, then in name order, at the earliest step), or None."""
        return next((r for r in self.rows if not r.ok), None)

    @property
    def worst(self):
        """The largest relative difference over all steps and quantities."""
        return max((r.error for r in self.rows), default=0.0)

    def __bool__(self):
        return self.ok

    def raise_if_failed(self):
        if not self.ok:
            from .crosscheck import CrossCheckError  # noqa: PLC0415  (crosscheck imports this module)
            raise CrossCheckError(str(self))
        return self

    def __str__(self):
        head = f"compare_method {self.method!r}, {self.steps} steps: {'OK' if self.ok else 'MISMATCH'}"
        cols = ("step", "loss rel.", "worst parameter / buffer", "rel.", "worst state", "rel.", "")
        body = []
        for k in range(self.steps):
            rows = [r for r in self.rows if r.step == k]
            if not rows:
                continue
            loss = next((r for r in rows if r.quantity == "loss"), None)
            params = [r for r in rows if r.quantity != "loss" and not r.quantity.startswith("state:")]
            state = [r for r in rows if r.quantity.startswith("state:")]
            wp = max(params, key=lambda r: r.error, default=None)
            ws = max(state, key=lambda r: r.error, default=None)
            body.append((str(k), f"{loss.error:.1e}" if loss else "-",
                         (wp.theirs_name + (str(list(wp.index)) if wp.index else "")) if wp else "-",
                         f"{wp.error:.1e}" if wp else "-", ws.theirs_name if ws else "-",
                         f"{ws.error:.1e}" if ws else "-", "ok" if all(r.ok for r in rows) else "FAIL"))
        widths = [max(len(c), *(len(row[i]) for row in body)) if body else len(c) for i, c in enumerate(cols)]
        line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
        out = [head, line(cols), line(["-" * w for w in widths])] + [line(row) for row in body]
        first = self.first
        if first is not None:
            where = f"{first.theirs_name}{list(first.index) if first.index else ''}"
            out.append(f"first divergence: step {first.step}, {where}: yours {first.theirs:.12g}, "
                       f"npjem {first.ours:.12g} (relative {first.error:.2e})")
        if self.hint:
            out.append(self.hint)
        return "\n".join(out)

    __repr__ = __str__


# ============================================================================ the run

def _torch():
    try:
        import torch  # noqa: PLC0415  (optional: only the comparison needs it)
    except ImportError as e:  # pragma: no cover - exercised only without torch
        raise ImportError("compare_method runs your PyTorch step: pip install torch") from e
    return torch


def _name_map(key_map, their_names):
    """{their name: npjem name} from ``key_map`` (None, a dict, or a callable)."""
    if key_map is None:
        return {n: n for n in their_names}
    if callable(key_map):
        out = {}
        for n in their_names:
            m = key_map(n)
            if not isinstance(m, str):
                raise TypeError(f"key_map({n!r}) must return a str (npjem's name), got {type(m).__name__}")
            out[n] = m
        return out
    if isinstance(key_map, dict):
        return {n: key_map.get(n, n) for n in their_names}
    raise TypeError(f"key_map must be None, a dict or a callable (their name -> npjem name), "
                    f"got {type(key_map).__name__}")


def _state_pair(state):
    if state is None:
        return None
    if (not isinstance(state, (tuple, list)) or len(state) != 2 or not all(callable(f) for f in state)):
        raise TypeError("state must be None or a pair (their_state(model) -> dict, npjem_state(method) -> dict) "
                        "of functions returning arrays by name")
    return tuple(state)


def _as_float64(d, what):
    out = {}
    for k, v in d.items():
        if hasattr(v, "detach"):
            v = v.detach().cpu().numpy()
        elif isinstance(v, Tensor):
            v = v.data
        a = np.asarray(backend.to_numpy(v) if backend.is_array(v) else v)  # host
        if a.dtype.kind not in "fiub":
            raise TypeError(f"{what}[{k!r}] must be numeric, got {a.dtype}")
        out[k] = a.astype(np.float64)
    return out


def _draw_views(seed, steps, n_views, batch_size, image_shape):
    rng = np.random.default_rng(seed)  # host: the oracle's draws
    return [tuple(rng.standard_normal((batch_size,) + image_shape) for _ in range(n_views)) for _ in range(steps)]


def _check_views(views, steps):
    if not isinstance(views, (list, tuple)) or len(views) != steps:
        raise ValueError(f"views must be a list of {steps} tuples of arrays (one per step), "
                         f"got {type(views).__name__} of length {len(views) if hasattr(views, '__len__') else '?'}")
    out = []
    for k, vs in enumerate(views):
        if not isinstance(vs, (list, tuple)) or not vs:
            raise ValueError(f"views[{k}] must be a non-empty tuple of arrays (the step's views)")
        out.append(tuple(np.asarray(backend.to_numpy(v) if backend.is_array(v) else v, dtype=np.float64)  # host
                         for v in vs))
    return out


def compare_method(their_step: Callable, method: str, *, their_model, npjem_method, optimizer, schedule=None,
                   steps=10, views=None, n_views=2, batch_size=8, image_shape=(3, 8, 8), seed=0, key_map=None,
                   state=None, rtol=1e-9, atol=1e-12, verbose=False) -> MethodReport:
    """Run your PyTorch training step and npjem's side by side; compare after every step.

    Args:
        their_step: ``their_step(views, step, total_steps) -> loss``: one whole training step of
            your code (forward, backward, optimizer step, EMA/queue/centre updates) on ``views``,
            a tuple of float64 ``torch.Tensor`` batches; returns the loss it minimised (a float or
            a 0-d tensor). ``step`` is 0-based; ``total_steps`` is ``steps``.
        method: which method this is, one of :data:`METHODS` (it selects the conventions tested).
        their_model: your ``torch.nn.Module`` holding everything the step trains or updates
            (online and target networks, heads, BatchNorm buffers); it is cast to float64.
        npjem_method: the npjem :class:`~npjem.methods.Method` configured like yours, in float64
            on the CPU (the oracle runs beside PyTorch's CPU step); your weights are loaded into it.
        optimizer: npjem's optimizer for ``npjem_method``: an instance over its
            ``trainable_parameters()``, or a function ``params -> optimizer`` (built after your
            weights are loaded).
        schedule: npjem's per-step learning-rate schedule (``step()`` after each step), or a
            function ``optimizer -> schedule``, or None.
        steps: how many steps to compare (≥ 1; 10 or more catches schedules).
        views: your own views, a list of ``steps`` tuples of arrays; default: drawn from ``seed``,
            ``n_views`` standard-normal batches of ``(batch_size, *image_shape)`` per step.
        key_map: your state-dict names → npjem's, a dict or a function, for names that differ.
        state: more state to compare, outside the state dicts: a pair of functions
            ``(their_state(their_model) -> {name: array}, npjem_state(npjem_method) -> {name: array})``
            with the same names (a queue, a memory bank, a momentum value, a temperature).
        rtol, atol: per-element tolerance (float64 twins of the same step agree to ~1e-12).
        verbose: print the report.

    Returns a :class:`MethodReport` (truthy when everything agrees; ``print`` it for the table).
    """
    torch = _torch()
    if not callable(their_step):
        raise TypeError(f"their_step must be callable as their_step(views, step, total_steps), "
                        f"got {type(their_step).__name__}")
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not isinstance(their_model, torch.nn.Module):
        raise TypeError(f"their_model must be a torch.nn.Module, got {type(their_model).__name__}")
    from .methods.base import Method, fit  # noqa: PLC0415  (the oracle sits above the methods)

    if not isinstance(npjem_method, Method):
        raise TypeError(f"npjem_method must be an npjem.methods.Method, got {type(npjem_method).__name__}")
    steps = check_int(steps, "steps")
    seed = check_int(seed, "seed", minimum=0)
    rtol = check_positive(rtol, "rtol", allow_zero=True)
    atol = check_positive(atol, "atol", allow_zero=True)
    state = _state_pair(state)
    if views is None:
        n_views = check_int(n_views, "n_views")
        batch_size = check_int(batch_size, "batch_size", minimum=2)
        if (not isinstance(image_shape, (tuple, list)) or not image_shape
                or not all(isinstance(s, (int, np.integer)) and s > 0 for s in image_shape)):
            raise ValueError(f"image_shape must be a tuple of positive ints such as (3, 8, 8), got {image_shape!r}")
        views = _draw_views(seed, steps, n_views, batch_size, tuple(int(s) for s in image_shape))
    else:
        views = _check_views(views, steps)
    for n, p in npjem_method.named_parameters():
        if p.dtype != np.float64:
            raise ValueError(f"npjem_method must be float64 throughout (call npjem_method.double()), "
                             f"its parameter {n!r} is {p.dtype}")

    # 1. the same weights on both sides
    their_model.double()
    their_sd = their_model.state_dict()
    names = _name_map(key_map, list(their_sd))
    ours_sd = npjem_method.state_dict()
    missing = sorted(set(ours_sd) - set(names.values()))
    unknown = sorted(n for n, m in names.items() if m not in ours_sd)
    if missing or unknown:
        raise ValueError("the state dicts do not match; pass key_map= (your name -> npjem's): "
                         f"yours only {unknown[:6]}{' …' if len(unknown) > 6 else ''}, "
                         f"npjem only {missing[:6]}{' …' if len(missing) > 6 else ''}")
    loaded = {}
    for n, m in names.items():
        a = their_sd[n].detach().cpu().numpy()
        if a.shape != tuple(ours_sd[m].shape):
            raise ValueError(f"{n!r} has shape {a.shape}, npjem's {m!r} has {tuple(ours_sd[m].shape)}")
        loaded[m] = a.astype(ours_sd[m].dtype)
    npjem_method.load_state_dict(loaded)
    back = {m: n for n, m in names.items()}

    def snap_theirs(loss):
        d = {names[k]: v for k, v in _as_float64(their_model.state_dict(), "their state_dict").items()}
        if state is not None:
            d.update({"state:" + k: v for k, v in _as_float64(state[0](their_model), "their_state").items()})
        d["loss"] = np.float64(loss)
        return d

    def snap_ours(m, loss):
        d = _as_float64(m.state_dict(), "npjem state_dict")
        if state is not None:
            d.update({"state:" + k: v for k, v in _as_float64(state[1](m), "npjem_state").items()})
        d["loss"] = np.float64(loss)
        return d

    init = snap_ours(npjem_method, np.nan)
    init_state = {k: np.array(v) for k, v in npjem_method.state_dict().items()}  # host

    # 2. your steps
    theirs = []
    for k, vs in enumerate(views):
        loss = their_step(tuple(torch.from_numpy(np.array(v)) for v in vs), k, steps)  # host
        loss = float(loss.detach().cpu().item()) if hasattr(loss, "detach") else float(loss)
        theirs.append(snap_theirs(loss))

    # 3. npjem's steps, through its own fit
    opt = optimizer(npjem_method.trainable_parameters()) if callable(optimizer) and not hasattr(optimizer, "step") \
        else optimizer
    if not callable(getattr(opt, "step", None)):
        raise TypeError(f"optimizer must be an npjem optimizer or a function params -> optimizer, "
                        f"got {type(optimizer).__name__}")
    sched = schedule(opt) if callable(schedule) and not hasattr(schedule, "step") else schedule
    saved_views = npjem_method.views
    npjem_method.views = ReplayViews(views)
    ours = []
    placeholder = np.zeros(views[0][0].shape)  # host: fit only needs its batch size and device
    loader = [placeholder for _ in views]
    if getattr(npjem_method, "needs_indices", False):
        loader = [(placeholder, None, np.arange(len(placeholder), dtype=np.int64)) for _ in views]  # host
    try:
        fit(npjem_method, loader, opt, epochs=1, schedule=sched, progress=False,
            callback=lambda rec: ours.append(snap_ours(rec["method"], rec["loss"])))
    finally:
        npjem_method.views = saved_views

    # 4. compare, step by step
    rows = []
    for k, (o, t) in enumerate(zip(ours, theirs)):
        if set(o) != set(t):
            raise ValueError(f"state(...) returned different names: yours {sorted(set(t) - set(o))}, "
                             f"npjem {sorted(set(o) - set(t))}")
        for q in ["loss"] + sorted(n for n in o if n != "loss"):
            rows.append(_row(k, q, back.get(q, q[6:] if q.startswith("state:") else q), o[q], t[q], rtol, atol))
    report = MethodReport(method, steps, rows)
    if not report.ok:
        report.hint = _diagnose(report, method, ours, theirs, init, npjem_method, init_state, views, rtol, atol)
    if verbose:
        print(report)
    return report


def _row(step, quantity, theirs_name, ours, theirs, rtol, atol):
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)  # host
    if ours.shape != theirs.shape:
        return StepRow(step, quantity, theirs_name, (), float("nan"), float("nan"), float("inf"), False)
    if ours.size == 0:
        return StepRow(step, quantity, theirs_name, (), 0.0, 0.0, 0.0, True)
    diff = np.abs(ours - theirs)
    rel = diff / np.maximum(np.maximum(np.abs(ours), np.abs(theirs)), atol / max(rtol, 1e-300))
    rel = np.where(np.isnan(rel), np.inf, rel)
    i = np.unravel_index(int(np.argmax(rel)), rel.shape) if rel.ndim else ()
    err = float(rel[i])
    return StepRow(step, quantity, theirs_name, tuple(int(j) for j in i), float(theirs[i]), float(ours[i]),
                   err, bool(err <= rtol))


# ============================================================================ the diagnosis

def _online_name(name):
    """``backbone_target.features.0.weight`` → ``backbone.features.0.weight`` (None if not a copy)."""
    head, dot, rest = name.partition(".")
    for s in _TARGET_SUFFIXES:
        if head.endswith(s) and head != s:
            return head[: -len(s)] + dot + rest
    return None


def _ema_fit(T, t_prev, o):
    """The momentum m that best explains T = m t_prev + (1 − m) o, and the relative residual.

    When t_prev = o (a target that starts as a copy of the online weights) every m predicts
    T = t_prev: m is undetermined (None) and the residual measures T against t_prev.
    """
    a, b = t_prev - o, T - o
    scale = max(float(np.abs(T).max()), 1e-300)
    den = float((a * a).sum())
    if den <= 1e-30 * max(float((o * o).sum()), 1e-300):
        return None, float(np.abs(T - t_prev).max()) / scale
    m = float((a * b).sum()) / den
    return m, float(np.abs(m * a - b).max()) / scale


def _ema_trajectory(snaps, init, pairs, before):
    """Per step, the EMA momentum a trajectory implies (None where undetermined) and whether every
    pair fits an EMA from the online weights after (``before=False``) or before the step."""
    momenta, fits = [], True
    for k, s in enumerate(snaps):
        prev = init if k == 0 else snaps[k - 1]
        ms = []
        for t, o in pairs:
            m, r = _ema_fit(s[t], prev[t], (prev if before else s)[o])
            fits &= r < 1e-7
            if m is not None:
                ms.append(m)
        momenta.append(float(np.median(ms)) if ms else None)
    return momenta, fits


def _diagnose(report, method, ours, theirs, init, npjem_method, init_state, views, rtol, atol):
    first = report.first
    k, q = first.step, first.quantity
    failing = [r for r in report.rows if r.step == k and not r.ok]
    trained = {n for n, p in npjem_method.named_parameters() if p.requires_grad}
    # A moving-average copy follows the online *parameters*; its buffers are its own (BN statistics).
    pairs = [(n, _online_name(n)) for n in init if _online_name(n) in trained]
    target_names = {t for t, _ in pairs}
    lines = []

    if q == "loss":
        lines.append("The loss differs before the parameters do: the loss's own convention (check it alone with "
                     f"crosscheck.compare(your_loss, ...)), the order of the views, or state used before it is "
                     "updated.")
        if method == "dino" and k == 0:
            alt = _center_before_loss(npjem_method, init_state, views[0])
            if alt is not None and abs(alt - first.theirs) <= max(rtol * abs(alt), atol):
                lines = [f"Your loss at step 0 is the loss with DINO's centre already updated by this batch's teacher "
                         f"outputs ({alt:.12g}): the centre is updated before the loss. DINO updates it after "
                         "the loss (update_center follows the loss in the authors' train loop), so the first "
                         "step's centre is 0."]
        return "\n".join(lines)

    online_bad = [r for r in failing if r.quantity in trained]
    target_bad = [r for r in failing if r.quantity in target_names]
    if online_bad:
        if all(npjem_method.state_dict()[r.quantity].ndim <= 1 for r in online_bad):
            lines.append("Only biases and BatchNorm/LayerNorm parameters differ: weight decay (or LARS's trust "
                         "ratio) applied to them on one side only. The authors of SimCLR, BYOL and Barlow Twins "
                         "exclude them (npjem: LARS(exclude_bias_and_norm=True), or a parameter group).")
        else:
            lines.append("The loss agrees but the update does not: a stop-gradient on the wrong branch, or a missing "
                         "one (the target's side must be constant), or a different optimizer (learning rate, "
                         "momentum, weight decay, the order of the schedule and the step).")
        return "\n".join(lines)

    if target_bad:
        ours_m, _ = _ema_trajectory(ours, init, pairs, before=False)
        after_m, after_fits = _ema_trajectory(theirs, init, pairs, before=False)
        before_m, before_fits = _ema_trajectory(theirs, init, pairs, before=True)
        same = lambda a, b: a is not None and b is not None and abs(a - b) < 1e-9  # noqa: E731
        if before_fits and not after_fits:
            agree = all(m is None or same(m, o) for m, o in zip(before_m, ours_m))
            lines.append(f"Your {first.theirs_name} is a moving average of the online weights from *before* the "
                         "optimizer step: the target is updated before the step. BYOL, MoCo and DINO update it "
                         "after the optimizer step, from the new online weights"
                         + (" (your momenta are npjem's)." if agree else "."))
        elif after_fits:
            m, ref = after_m[k], ours_m[k]
            desc = f"at step {k} your EMA momentum is {m:.9g}" + (f", npjem's {ref:.9g}" if ref is not None else "")
            known = [x for x in after_m[:k + 1] if x is not None]
            if len(known) > 1 and all(same(x, known[0]) for x in known) and not all(
                    same(x, known[0]) for x in ours_m[:k + 1] if x is not None):
                lines.append(f"{desc}: yours stays at {known[0]:.9g} while npjem's follows the cosine schedule "
                             "per step: a momentum schedule per epoch (or none) instead of per step.")
            elif any(same(m, ours_m[j]) for j in (k - 1, k + 1) if 0 <= j < len(ours_m)):
                lines.append(f"{desc}: your schedule is npjem's shifted by one step (a 0-based against a "
                             "1-based step count, or the momentum read after the counter moved).")
            else:
                lines.append(f"{desc}: a different momentum schedule (base value, length, or form).")
        else:
            lines.append(f"Your {first.theirs_name} is not a moving average of the online weights: the target "
                         "is trained, copied, or updated from other weights.")
        return "\n".join(lines)

    if q.startswith("state:"):
        lines.append(f"The parameters agree but the state {first.theirs_name!r} does not: the order of its update "
                     "(before or after the loss, before or after the optimizer step), its momentum, or what it is "
                     "updated from (which views, which network).")
    else:
        lines.append(f"{first.theirs_name} is a buffer: BatchNorm's running statistics differ when the momentum "
                     "convention (PyTorch's 0.1 is 1 − 0.9), the unbiased variance, or which batches pass through "
                     "the layer in train mode (MoCo's shuffled BN splits) differ.")
    return "\n".join(lines)


def _center_before_loss(method, init_state, views):
    """DINO's loss on the first views with the centre updated by their teacher outputs first."""
    if not hasattr(method, "center") or not hasattr(method, "center_momentum"):
        return None
    from .losses.distillation import dino_center_update  # noqa: PLC0415

    current = {k: np.array(v) for k, v in method.state_dict().items()}  # host
    try:
        method.load_state_dict(init_state)
        vs = tuple(Tensor(np.array(v)) for v in views)  # host
        with no_grad():
            method(*vs)
            pending = getattr(method, "_pending", None)
            if pending is None:
                return None
            new = dino_center_update(method.center, pending, momentum=method.center_momentum)
            new = new.data if isinstance(new, Tensor) else new
            method.center.data[...] = new.reshape(method.center.shape)
            method.load_state_dict({**init_state, "center": backend.to_numpy(method.center.data)})
            return float(method(*vs).item())
    finally:
        method.load_state_dict(current)
        if hasattr(method, "_pending"):
            method._pending = None
