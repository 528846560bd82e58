"""npjem as a float64 oracle for your own PyTorch, JAX or NumPy loss.

One line compares your implementation with npjem's, value and gradients::

    from npjem import crosscheck
    report = crosscheck.compare(my_vicreg, "vicreg", framework="torch")
    print(report)            # a table: each input's worst element, theirs, ours, relative error
    report.raise_if_failed()

What :func:`compare` does:

1. draws the loss's inputs from a seeded generator (``seed``; sizes from ``shapes``), in float64;
2. hands them to your function without a copy where the framework allows (``torch.from_numpy``,
   DLPack for JAX);
3. evaluates both sides, and back-propagates the same random incoming gradient g through both
   (a random g, never 1: a backward that is wrong by a term orthogonal to the ones vector passes
   a ones-check);
4. compares the value and the gradient of every differentiated input, and reports the worst
   element of each. Inputs that the loss treats as constants (SwAV's codes, DINO's teacher and
   centre, MoCo's keys and queue) are not differentiated on npjem's side, so your gradient for
   them must be zero or absent, as a stop-gradient makes it;
5. when they disagree, evaluates npjem under each convention the loss is known to come in (the
   table in every loss's docstring) and names the one your function matches, if any; it also
   says when your value is a constant multiple of npjem's (a sum where npjem takes a mean).

Data-parallel code: ``compare(..., world_size=k)`` splits the batch over k simulated workers
(threads) and runs your function once per worker on its slice, with ``torch.distributed``'s
``get_rank``, ``get_world_size``, ``all_gather``, ``all_reduce``, ``barrier`` and
``is_initialized`` simulated for the duration of the call. Your gather runs as written: an
``all_gather`` that drops the other workers' gradient, or a gradient scaled by k, shows up as
a gradient that differs from the single-process one. The parameters' gradient in DDP is the
mean over workers, so the reference is npjem's full-batch loss (for losses that average over the
batch) and the workers' mean loss and gradient are compared with it.

Hypothesis: :func:`cases` is a strategy of ``(seed, shapes)`` pairs for a loss, so a property
test can draw them: ``@given(crosscheck.cases("vicreg"))``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import threading
from typing import Callable

import numpy as np

from . import backend
from ._checks import check_choice, check_int, check_positive
from .autograd import Tensor, grad as _grad

__all__ = [
    "InputSpec", "LossSpec", "Convention", "Report", "register", "get", "names", "draw_inputs",
    "compare", "cases", "CrossCheckError", "compare_method", "MethodReport",
]


class CrossCheckError(AssertionError):
    """Raised by :meth:`Report.raise_if_failed` when the two implementations disagree."""


# =================================================================================== registry

@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One input of a loss.

    ``dims`` names each axis with a size symbol (``("N", "D")``); ``kind`` says how it is drawn:
    ``"normal"`` (standard normal), ``"probs"`` (rows on the simplex: codes, soft targets),
    ``"bool"``, ``"bits"`` (0.0/1.0 floats: binary data), ``"labels"`` (integers in [0, ``classes``)) or ``"unit"`` (L2-normalised rows: a
    queue of keys). ``fixed`` marks a stop-gradient input: it is never differentiated. ``batch``
    marks the axis-0 batch that :func:`compare` splits over simulated workers.
    """
    name: str
    dims: tuple
    kind: str = "normal"
    fixed: bool = False
    batch: bool = True
    classes: str | None = None


@dataclasses.dataclass(frozen=True)
class Convention:
    """A way the field writes the same loss: npjem's keyword arguments that reproduce it."""
    label: str
    kwargs: dict


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """How to draw the inputs of a loss, call it, and which conventions it comes in.

    ``call(fn, inputs, kwargs)`` calls an implementation (npjem's or yours) on the list of
    inputs in ``inputs`` order; the default passes them positionally. ``output`` picks the
    scalar to compare from what the function returns (default: the result itself, or the
    field ``loss`` / element 0 of a tuple). ``batch_mean`` says the loss averages over the batch
    (so the data-parallel reference is the full-batch loss).
    """
    name: str
    fn: Callable
    inputs: tuple
    sizes: dict
    kwargs: dict = dataclasses.field(default_factory=dict)
    conventions: tuple = ()
    call: Callable | None = None
    batch_mean: bool = True
    doc: str = ""

    def invoke(self, fn, inputs, kwargs):
        out = self.call(fn, inputs, kwargs) if self.call is not None else fn(*inputs, **kwargs)
        return _scalar_output(out)


_REGISTRY: dict[str, LossSpec] = {}


def register(spec: LossSpec) -> LossSpec:
    """Add (or replace) a loss in the registry that :func:`compare` and ``npjem reference`` use."""
    if not isinstance(spec, LossSpec):
        raise TypeError(f"spec must be a LossSpec, got {type(spec).__name__}")
    _REGISTRY[spec.name] = spec
    return spec


def names():
    """The registered loss names, sorted."""
    return sorted(_REGISTRY)


def get(name) -> LossSpec:
    """The :class:`LossSpec` registered under ``name``."""
    if isinstance(name, LossSpec):
        return name
    if name not in _REGISTRY:
        raise ValueError(f"loss must be one of {', '.join(sorted(_REGISTRY))}, got {name!r}")
    return _REGISTRY[name]


def _scalar_output(out):
    if isinstance(out, tuple) and not hasattr(out, "_fields"):
        out = out[0]
    elif hasattr(out, "_fields"):  # a named tuple: its total is ``loss`` (or the first field)
        out = getattr(out, "loss", out[0])
    return out


# =================================================================================== inputs

def _resolve_shapes(spec, shapes):
    """Sizes of every symbol, from the spec's defaults overridden by ``shapes``.

    ``shapes`` maps a size symbol (``{"N": 16}``) or an input name (``{"h_x": (16, 32)}``) to
    its size(s).
    """
    sizes = dict(spec.sizes)
    by_name = {i.name: i for i in spec.inputs}
    for key, value in (shapes or {}).items():
        if key in by_name:
            dims = by_name[key].dims
            value = tuple(value) if not isinstance(value, int) else (value,)
            if len(value) != len(dims):
                raise ValueError(f"shapes[{key!r}] must have {len(dims)} axes {dims}, got {value}")
            for sym, v in zip(dims, value):
                if isinstance(sym, str):
                    if sizes.get(sym, v) != v and sym in (shapes or {}):
                        raise ValueError(f"shapes gives {sym} two sizes: {sizes[sym]} and {v}")
                    sizes[sym] = check_int(v, f"shapes[{key!r}] axis {sym}")
        elif key in sizes:
            sizes[key] = check_int(value, f"shapes[{key!r}]")
        else:
            raise ValueError(f"shapes keys must be size symbols ({', '.join(sorted(spec.sizes))}) or "
                             f"input names ({', '.join(by_name)}), got {key!r}")
    return sizes


def _shape(inp, sizes):
    return tuple(sizes[d] if isinstance(d, str) else int(d) for d in inp.dims)


def draw_inputs(loss, seed=0, shapes=None):
    """The float64 (or bool/int) NumPy inputs of ``loss`` for ``seed``, in the spec's order."""
    spec = get(loss)
    sizes = _resolve_shapes(spec, shapes)
    rng = np.random.default_rng(check_int(seed, "seed", minimum=0))  # host: the oracle's draws
    out = []
    for inp in spec.inputs:
        shape = _shape(inp, sizes)
        if inp.kind == "normal":
            a = rng.standard_normal(shape)
        elif inp.kind == "unit":
            a = rng.standard_normal(shape)
            a /= np.linalg.norm(a, axis=-1, keepdims=True)
        elif inp.kind == "probs":
            a = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])  # host
        elif inp.kind == "bool":
            a = rng.random(shape) < 0.5
        elif inp.kind == "bits":
            a = (rng.random(shape) < 0.5).astype(np.float64)
        elif inp.kind == "labels":
            a = rng.integers(0, sizes[inp.classes], size=shape)
        else:
            raise ValueError(f"unknown input kind {inp.kind!r} for {inp.name}")
        out.append(a)
    return out


def _differentiable(inp, a):
    """Whether the other framework is asked for this input's gradient: floats, but not bits."""
    return a.dtype.kind == "f" and inp.kind != "bits"


def _incoming_gradient(seed):
    # One draw from the seed's own stream, never 1 (see the module docstring).
    g = float(np.random.default_rng([check_int(seed, "seed", minimum=0), 7]).standard_normal())  # host
    return g if abs(g) > 0.1 else math.copysign(0.1 + abs(g), g)


# =================================================================================== npjem's side

def _ours(spec, arrays, kwargs, g, device="cpu"):
    """npjem's value and the gradient g·∂L/∂x of every input that is not fixed (float64)."""
    tensors = []
    for inp, a in zip(spec.inputs, arrays):
        diff = not inp.fixed and a.dtype.kind == "f"
        tensors.append(Tensor(backend.to_device(a, device), requires_grad=diff))
    value = spec.invoke(spec.fn, tensors, kwargs)
    wrt = [t for t in tensors if t.requires_grad]
    grads = _grad(value * g, wrt, allow_unused=True) if wrt else []
    it = iter(grads)
    out = {}
    for inp, t in zip(spec.inputs, tensors):
        if t.requires_grad:
            gi = next(it)
            out[inp.name] = (np.zeros(t.shape) if gi is None  # host
                             else backend.to_numpy(gi.data if isinstance(gi, Tensor) else gi))
    return float(backend.to_numpy(value.data)), out


# =================================================================================== their side

def _theirs_torch(spec, their_fn, arrays, kwargs, g):
    import torch  # noqa: PLC0415 — only when asked for

    tensors = []
    for inp, a in zip(spec.inputs, arrays):
        t = torch.from_numpy(np.require(a, requirements="C"))  # no copy for a contiguous float64 array
        if _differentiable(inp, a):
            t.requires_grad_(True)
        tensors.append(t)
    value = spec.invoke(their_fn, tensors, kwargs)
    if not torch.is_tensor(value) or value.numel() != 1:
        raise TypeError(f"your function must return a scalar torch tensor, got {_describe(value)}")
    if value.dtype != torch.float64:
        raise TypeError(f"your function returned {value.dtype}; compute in float64 (inputs are float64): "
                        "a float32 constant or buffer inside it rounds every result")
    if value.requires_grad:
        value.backward(torch.tensor(g, dtype=torch.float64).reshape(value.shape))
    grads = {inp.name: (t.grad.numpy().copy() if t.grad is not None else None)
             for inp, t in zip(spec.inputs, tensors) if t.requires_grad}
    return float(value.detach().reshape(())), grads


def _theirs_jax(spec, their_fn, arrays, kwargs, g):
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    if not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)
    float_idx = [i for i, (inp, a) in enumerate(zip(spec.inputs, arrays)) if _differentiable(inp, a)]
    consts = [_jax_array(jnp, a) for a in arrays]

    def f(*floats):
        args = list(consts)
        for i, x in zip(float_idx, floats):
            args[i] = x
        return spec.invoke(their_fn, args, kwargs)

    value, vjp = jax.vjp(f, *[consts[i] for i in float_idx])
    if getattr(value, "size", 1) != 1:
        raise TypeError(f"your function must return a scalar, got shape {getattr(value, 'shape', None)}")
    if value.dtype != jnp.float64:
        raise TypeError(f"your function returned {value.dtype}; compute in float64 (inputs are float64)")
    cot = vjp(jnp.asarray(g, dtype=value.dtype).reshape(value.shape))
    grads = {spec.inputs[i].name: np.asarray(c) for i, c in zip(float_idx, cot)}  # host
    return float(value), grads


def _jax_array(jnp, a):
    """``a`` as a JAX array, through DLPack without a copy where JAX accepts the buffer."""
    a = np.require(a, requirements="C")
    try:
        return jnp.from_dlpack(a)
    except (TypeError, ValueError, RuntimeError, AttributeError, BufferError):
        return jnp.asarray(a)


def _theirs_numpy(spec, their_fn, arrays, kwargs, g, eps=1e-6):
    """A NumPy function returns its value, or ``(value, grads)`` with one gradient per input.

    Without gradients, theirs are central differences of their own value (so the comparison
    checks their forward pass, and any hand-written backward they pass in).
    """
    arrays = [a.copy() for a in arrays]
    out = spec.invoke(their_fn, arrays, kwargs) if spec.call is not None else their_fn(*arrays, **kwargs)
    grads_given = None
    if isinstance(out, tuple) and len(out) == 2 and not np.isscalar(out[1]):
        out, grads_given = out
    value = float(np.asarray(_scalar_output(out)))  # host
    grads = {}
    for k, (inp, a) in enumerate(zip(spec.inputs, arrays)):
        if not _differentiable(inp, a):
            continue
        if grads_given is not None:
            gk = grads_given[inp.name] if isinstance(grads_given, dict) else grads_given[k]
            grads[inp.name] = None if gk is None else g * np.asarray(gk, dtype=np.float64)  # host
            continue
        num = np.zeros_like(a)  # host
        flat, nflat = a.reshape(-1), num.reshape(-1)
        for j in range(flat.size):
            old = flat[j]
            flat[j] = old + eps
            fp = float(np.asarray(_scalar_output(their_fn(*arrays, **kwargs))))  # host
            flat[j] = old - eps
            fm = float(np.asarray(_scalar_output(their_fn(*arrays, **kwargs))))  # host
            flat[j] = old
            nflat[j] = g * (fp - fm) / (2 * eps)
        grads[inp.name] = num
    return value, grads, grads_given is None


def _describe(v):
    shape = getattr(v, "shape", None)
    return f"{type(v).__name__}" + (f" of shape {tuple(shape)}" if shape is not None else "")


# =================================================================================== data parallel

class _SimulatedWorld:
    """``torch.distributed`` for k threads in one process: rank from a thread-local, collectives
    through a barrier. Only what gathering losses use is simulated."""

    def __init__(self, k):
        self.k = k
        self.local = threading.local()
        # A worker that never reaches a collective must not hang the others for ever.
        self.barrier = threading.Barrier(k, timeout=120)
        self.slots = [None] * k

    def rank(self):
        return self.local.rank

    def _exchange(self, value):
        r = self.rank()
        self.barrier.wait()          # nobody still reads the slots of the last collective
        self.slots[r] = value
        self.barrier.wait()          # every worker has written
        out = list(self.slots)
        self.barrier.wait()          # every worker has read
        return out

    def all_gather(self, tensor_list, tensor, group=None, async_op=False):
        values = self._exchange(tensor.detach().clone())
        if len(tensor_list) != self.k:
            raise ValueError(f"all_gather: tensor_list has {len(tensor_list)} tensors for a world of {self.k}")
        for dst, src in zip(tensor_list, values):
            with _torch_no_grad():
                dst.copy_(src)

    def all_reduce(self, tensor, op=None, group=None, async_op=False):
        import torch  # noqa: PLC0415

        values = self._exchange(tensor.detach().clone())
        name = str(op).rsplit(".", 1)[-1].upper() if op is not None else "SUM"
        if name in ("SUM", "REDOPTYPE.SUM", "0"):
            total = torch.stack(values).sum(0)
        elif name in ("AVG",):
            total = torch.stack(values).mean(0)
        elif name in ("MAX",):
            total = torch.stack(values).amax(0)
        else:
            raise NotImplementedError(f"the simulated all_reduce supports SUM, AVG and MAX, got {op}")
        with _torch_no_grad():
            tensor.copy_(total)

    def barrier_(self, group=None, async_op=False):
        self.barrier.wait()


def _torch_no_grad():
    import torch  # noqa: PLC0415

    return torch.no_grad()


@contextlib.contextmanager
def _patched_distributed(world):
    import torch.distributed as dist  # noqa: PLC0415

    patch = {
        "is_available": lambda: True,
        "is_initialized": lambda: True,
        "get_rank": lambda group=None: world.rank(),
        "get_world_size": lambda group=None: world.k,
        "all_gather": world.all_gather,
        "all_reduce": world.all_reduce,
        "barrier": world.barrier_,
    }
    saved = {k: getattr(dist, k, None) for k in patch}
    for k, v in patch.items():
        setattr(dist, k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                delattr(dist, k)
            else:
                setattr(dist, k, v)


def _theirs_torch_distributed(spec, their_fn, arrays, kwargs, g, k):
    import torch  # noqa: PLC0415

    n = {a.shape[0] for inp, a in zip(spec.inputs, arrays) if inp.batch}
    if len(n) != 1:
        raise ValueError("world_size > 1 needs the batch inputs to share their first axis")
    n = n.pop()
    if n % k:
        raise ValueError(f"the batch of {n} does not split over world_size={k} workers: pick a batch "
                         f"that is a multiple of {k} (shapes={{...}})")
    b = n // k
    world = _SimulatedWorld(k)
    leaves = [[None] * len(arrays) for _ in range(k)]
    values = [None] * k
    errors = []

    def worker(r):
        world.local.rank = r
        try:
            args = []
            for j, (inp, a) in enumerate(zip(spec.inputs, arrays)):
                part = a[r * b:(r + 1) * b] if inp.batch else a
                t = torch.from_numpy(np.require(part, requirements="C"))
                if _differentiable(inp, a):
                    t.requires_grad_(True)
                leaves[r][j] = t
                args.append(t)
            v = spec.invoke(their_fn, args, kwargs)
            if not torch.is_tensor(v) or v.numel() != 1 or not v.requires_grad:
                raise TypeError(f"your function must return a scalar torch tensor with a gradient, "
                                f"got {_describe(v)}")
            values[r] = v
            # DDP averages the workers' gradients: each backward carries g / k.
            v.backward(torch.tensor(g / k, dtype=v.dtype).reshape(v.shape))
        except BaseException as e:  # noqa: BLE001 — re-raised in the caller's thread
            errors.append(e)
            world.barrier.abort()

    with _patched_distributed(world):
        threads = [threading.Thread(target=worker, args=(r,)) for r in range(k)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
    if real or errors:
        raise (real or errors)[0]
    value = float(np.mean([float(v.detach()) for v in values]))
    grads = {}
    for j, (inp, a) in enumerate(zip(spec.inputs, arrays)):
        if not _differentiable(inp, a):
            continue
        parts = [leaves[r][j].grad for r in range(k)]
        if inp.batch:
            grads[inp.name] = (None if all(p is None for p in parts) else
                               np.concatenate([np.zeros((b,) + a.shape[1:]) if p is None else p.numpy()  # host
                                               for p in parts]))
        else:
            present = [p.numpy() for p in parts if p is not None]
            grads[inp.name] = sum(present) if present else None
    return value, grads


# =================================================================================== report

@dataclasses.dataclass
class Row:
    input: str
    index: tuple
    theirs: float
    ours: float
    error: float
    ok: bool


@dataclasses.dataclass
class Report:
    """What :func:`compare` found: ``ok``, the values, one row per compared quantity, a hint."""
    loss: str
    framework: str
    seed: int
    shapes: dict
    theirs_value: float
    ours_value: float
    rows: list
    hint: str = ""
    world_size: int = 1

    @property
    def ok(self):
        return all(r.ok for r in self.rows)

    def raise_if_failed(self):
        if not self.ok:
            raise CrossCheckError(str(self))
        return self

    def __bool__(self):
        return self.ok

    def __str__(self):
        head = (f"crosscheck {self.loss!r} against {self.framework}"
                f"{f' (world_size={self.world_size})' if self.world_size > 1 else ''}, seed {self.seed}, "
                f"sizes {self.shapes}: {'OK' if self.ok else 'MISMATCH'}")
        cols = ("quantity", "worst index", "theirs", "ours", "rel. error", "")
        body = [(r.input, str(r.index) if r.index else "-", f"{r.theirs:.12g}", f"{r.ours:.12g}",
                 f"{r.error:.2e}", "ok" if r.ok else "FAIL") for r in self.rows]
        widths = [max(len(c), *(len(row[i]) for row in body)) for i, c in enumerate(cols)]
        line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
        out = [head, line(cols), line(["-" * w for w in widths])] + [line(row) for row in body]
        if self.hint:
            out.append(self.hint)
        return "\n".join(out)

    __repr__ = __str__


def _relerr(a, b, atol):
    return abs(a - b) / max(abs(a), abs(b), atol)


def _compare_values(name, theirs, ours, rtol, atol):
    err = _relerr(theirs, ours, atol)
    return Row(name, (), theirs, ours, err, abs(theirs - ours) <= atol + rtol * abs(ours))


def _compare_arrays(name, theirs, ours, rtol, atol):
    if theirs is None:
        theirs = np.zeros_like(ours)  # host
    theirs = np.asarray(theirs, dtype=np.float64)  # host
    if theirs.shape != ours.shape:
        return Row(name, (), float("nan"), float("nan"), float("inf"), False)
    diff = np.abs(theirs - ours)
    bad = diff - (atol + rtol * np.abs(ours))
    idx = np.unravel_index(int(np.argmax(bad)) if bad.size else 0, ours.shape) if ours.size else ()
    t, o = (float(theirs[idx]), float(ours[idx])) if ours.size else (0.0, 0.0)
    return Row(name, tuple(int(i) for i in idx), t, o, _relerr(t, o, atol), bool((bad <= 0).all()))


def _rows(spec, theirs, ours, rtol, atol):
    (tv, tg), (ov, og) = theirs, ours
    rows = [_compare_values("value", tv, ov, rtol, atol)]
    for inp in spec.inputs:
        if inp.name in og:
            rows.append(_compare_arrays(f"grad {inp.name}", tg.get(inp.name), og[inp.name], rtol, atol))
        elif tg.get(inp.name) is not None and np.any(np.asarray(tg[inp.name]) != 0):  # host
            # A stop-gradient input: npjem treats it as a constant, so theirs must carry no gradient.
            g = np.asarray(tg[inp.name], dtype=np.float64)  # host
            rows.append(_compare_arrays(f"grad {inp.name} (stop-gradient)", g, np.zeros_like(g), rtol, atol))  # host
    return rows


def _hint(spec, arrays, kwargs, theirs, g, rtol, atol, world_size=1):
    """Name the convention (or the constant factor) that explains a mismatch, if one does."""
    tv, tg = theirs
    if world_size > 1:
        ov, og = _ours(spec, arrays, kwargs, g)
        rows = _rows(spec, theirs, (ov, og), rtol, atol)
        if rows[0].ok:
            for c in (world_size, 1.0 / world_size):
                scaled = (ov, {k: c * v for k, v in og.items()})
                if all(r.ok for r in _rows(spec, theirs, scaled, rtol, atol)):
                    return (f"hint: the values agree but your gradients are {c:.6g} × the single-process "
                            f"ones: the gather or the loss scales the gradient by the world size.")
            return ("hint: the values agree but the gradients do not: the gather drops the gradient of "
                    "the other workers' embeddings (torch.distributed.all_gather has no backward; use a "
                    "gather whose backward all-reduces the gradient and keeps this worker's slice).")
    for conv in spec.conventions:
        try:
            alt = _ours(spec, arrays, {**kwargs, **conv.kwargs}, g)
        except (ValueError, TypeError):
            continue
        if all(r.ok for r in _rows(spec, theirs, alt, rtol, atol)):
            call = ", ".join(f"{k}={v!r}" for k, v in conv.kwargs.items())
            return (f"hint: yours matches npjem with {call} ({conv.label}). If you meant npjem's "
                    f"default convention, that is the difference; otherwise pass {call}.")
    ov, og = _ours(spec, arrays, kwargs, g)
    if ov != 0 and tv != 0:
        c = tv / ov
        scaled = (c * ov, {k: c * v for k, v in og.items()})
        if abs(c - 1) > 1e-6 and all(r.ok for r in _rows(spec, theirs, scaled, rtol, atol)):
            return (f"hint: yours is {c:.6g} × npjem's, value and gradients: a sum where npjem takes a "
                    f"mean (or the reverse), or a factor such as ½ or 2τ placed differently.")
    wrong_stop = [r.input for r in _rows(spec, theirs, (ov, og), rtol, atol) if "stop-gradient" in r.input]
    if wrong_stop:
        return ("hint: gradient reaches " + ", ".join(w.split()[1] for w in wrong_stop)
                + ", which the loss holds fixed: a missing .detach() / stop_gradient.")
    return ""


# =================================================================================== compare

def compare(their_fn, loss, *, shapes=None, kwargs=None, their_kwargs=None, framework="torch", seed=0,
            rtol=1e-7, atol=1e-10, world_size=1, inputs=None):
    """Compare ``their_fn`` with npjem's ``loss`` in float64, value and gradients.

    Args:
        their_fn: your implementation, called with the loss's inputs in npjem's order (see
            ``crosscheck.get(loss).inputs``) as tensors of ``framework``, and ``their_kwargs``.
        loss: a registered name (``crosscheck.names()``) or a :class:`LossSpec`.
        shapes: sizes, by symbol (``{"N": 16, "D": 8}``) or by input name (``{"h_x": (16, 8)}``).
        kwargs: keyword arguments of npjem's loss.
        their_kwargs: keyword arguments of yours (default: the same as ``kwargs``); map names
            that differ here, e.g. ``kwargs={"lambd": 5e-3}, their_kwargs={"lambda_param": 5e-3}``.
        framework: ``"torch"``, ``"jax"`` or ``"numpy"`` (a NumPy function returns its value, or
            ``(value, grads)``; without grads its gradient is taken by central differences).
        seed: draws the inputs and the incoming gradient; the comparison is deterministic.
        rtol, atol: tolerances per element (float64 implementations of the same formula agree
            to ~1e-12; the defaults leave room for a different but exact summation order).
        world_size: > 1 simulates data-parallel workers (``framework="torch"`` only).
        inputs: your own arrays instead of drawn ones (NumPy, in the spec's order).

    Returns a :class:`Report` (truthy when everything agrees; ``print`` it for the table).
    """
    if not callable(their_fn):
        raise TypeError(f"their_fn must be callable, got {type(their_fn).__name__}")
    if not isinstance(loss, (str, LossSpec)):
        raise TypeError(f"loss must be a registered name (crosscheck.names()) or a LossSpec, got {type(loss).__name__}")
    for what, value in (("shapes", shapes), ("kwargs", kwargs), ("their_kwargs", their_kwargs)):
        if value is not None and not isinstance(value, dict):
            example = "{'N': 8, 'D': 5}" if what == "shapes" else "{'temperature': 0.1}"
            raise TypeError(f"{what} must be a dict such as {example} or None, got {type(value).__name__}")
    seed = check_int(seed, "seed", minimum=0)
    if inputs is not None and not isinstance(inputs, (list, tuple)):
        raise TypeError(f"inputs must be a list of arrays in the spec's order or None, got {type(inputs).__name__}")
    spec = get(loss)
    framework = check_choice(framework, "framework", ("torch", "jax", "numpy"))
    rtol = check_positive(rtol, "rtol", allow_zero=True)
    atol = check_positive(atol, "atol", allow_zero=True)
    world_size = check_int(world_size, "world_size")
    kwargs = {**spec.kwargs, **(kwargs or {})}
    their_kwargs = dict(kwargs if their_kwargs is None else their_kwargs)
    sizes = _resolve_shapes(spec, shapes)
    if inputs is None:
        arrays = draw_inputs(spec, seed, sizes)
    else:
        arrays = [np.asarray(a) for a in inputs]  # host
        if len(arrays) != len(spec.inputs):
            raise ValueError(f"inputs must hold {len(spec.inputs)} arrays "
                             f"({', '.join(i.name for i in spec.inputs)}), got {len(arrays)}")
        arrays = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in arrays]
    g = _incoming_gradient(seed)
    ours = _ours(spec, arrays, kwargs, g)
    if world_size > 1:
        if framework != "torch":
            raise ValueError(f"world_size > 1 is simulated for framework='torch' only, got {framework!r}")
        if not spec.batch_mean:
            raise ValueError(f"{spec.name} does not average over the batch, so its data-parallel "
                             "gradient is not the single-process one")
        theirs = _theirs_torch_distributed(spec, their_fn, arrays, their_kwargs, g, world_size)
    elif framework == "torch":
        theirs = _theirs_torch(spec, their_fn, arrays, their_kwargs, g)
    elif framework == "jax":
        theirs = _theirs_jax(spec, their_fn, arrays, their_kwargs, g)
    else:
        *theirs, numeric = _theirs_numpy(spec, their_fn, arrays, their_kwargs, g)
        if numeric:
            # Central differences of their value carry O(1e-9) relative error of their own.
            rtol, atol = max(rtol, 1e-6), max(atol, 1e-8)
    rows = _rows(spec, theirs, ours, rtol, atol)
    report = Report(spec.name, framework, seed, sizes, theirs[0], ours[0], rows, world_size=world_size)
    if not report.ok:
        report.hint = _hint(spec, arrays, kwargs, theirs, g, rtol, atol, world_size)
    return report


def cases(loss, max_side=8, min_batch=2, batch_multiple=1):
    """A Hypothesis strategy of ``{"seed": s, "shapes": {...}}`` for ``loss``.

    Batch-like symbols (``N``, ``B``) are drawn as multiples of ``batch_multiple`` (for
    ``world_size``); every other symbol from 1 (2 where the spec's default is larger than 1)
    to ``max_side``.
    """
    from hypothesis import strategies as st  # noqa: PLC0415

    spec = get(loss)
    check_int(max_side, "max_side", minimum=2)
    check_int(batch_multiple, "batch_multiple")
    fields = {}
    for sym, default in spec.sizes.items():
        if sym in ("N", "B"):
            lo = max(1, math.ceil(check_int(min_batch, "min_batch") / batch_multiple))
            fields[sym] = st.integers(lo, max(lo, max_side // batch_multiple)).map(lambda m: m * batch_multiple)
        else:
            fields[sym] = st.integers(2 if default > 1 else 1, max(2, max_side))
    return st.fixed_dictionaries({"seed": st.integers(0, 2**31 - 1),
                                  "shapes": st.fixed_dictionaries(fields)})


# =================================================================================== reference files

REFERENCE_FORMAT = "npjem-reference"
REFERENCE_VERSION = 1


def reference(loss, *, seed=0, shapes=None, kwargs=None):
    """npjem's float64 evaluation of ``loss`` on drawn inputs, as the dict a reference file holds.

    Keys: ``format``, ``version``, ``npjem_version``, ``loss``, ``call`` (the Python call that
    made it), ``kwargs``, ``seed``, ``shapes``, ``input_order``, ``fixed`` (the stop-gradient
    inputs' names), ``meta_json`` (all of these as UTF-8 JSON bytes), ``inputs`` (name → array),
    ``value`` (0-d float64) and ``grads`` (name → ∂value/∂input, for every floating input that
    is not fixed).
    """
    from . import __version__  # noqa: PLC0415

    spec = get(loss)
    kwargs = {**spec.kwargs, **(kwargs or {})}
    sizes = _resolve_shapes(spec, shapes)
    arrays = draw_inputs(spec, seed, sizes)
    value, grads = _ours(spec, arrays, kwargs, 1.0)
    call = (f"npjem.crosscheck.reference({spec.name!r}, seed={seed}, shapes={sizes!r}"
            f"{f', kwargs={kwargs!r}' if kwargs else ''})")
    meta = {
        "format": REFERENCE_FORMAT, "version": REFERENCE_VERSION, "npjem_version": __version__,
        "loss": spec.name, "call": call, "kwargs": kwargs, "seed": int(seed), "shapes": sizes,
        "input_order": [i.name for i in spec.inputs], "fixed": [i.name for i in spec.inputs if i.fixed],
    }
    # The same facts as UTF-8 JSON bytes in one array, for readers in other languages, which
    # then need nothing but an .npy reader and a JSON parser.
    meta_json = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8).copy()
    return {**meta, "meta_json": meta_json, "inputs": {i.name: a for i, a in zip(spec.inputs, arrays)},
            "value": np.array(value), "grads": grads}  # host


def write_reference(path, loss, *, seed=0, shapes=None, kwargs=None, overwrite=False):
    """Write :func:`reference` to ``path`` (an ``.npz`` any NumPy/zip reader opens; see the README)."""
    import os  # noqa: PLC0415

    from .serialization import save  # noqa: PLC0415

    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path!r} exists; pass overwrite=True (--force) to replace it")
    ref = reference(loss, seed=seed, shapes=shapes, kwargs=kwargs)
    save(ref, path)
    return ref


def read_reference(path):
    """Read a reference file, checking that it is one (a clear ``ValueError`` otherwise)."""
    from .serialization import load  # noqa: PLC0415

    ref = load(path)
    if not isinstance(ref, dict) or ref.get("format") != REFERENCE_FORMAT:
        raise ValueError(f"{path!r} is an npjem file but not a reference file (no {REFERENCE_FORMAT!r} marker)")
    if not isinstance(ref.get("version"), int) or ref["version"] > REFERENCE_VERSION:
        raise ValueError(f"{path!r} has reference format version {ref.get('version')!r}; this npjem reads "
                         f"up to {REFERENCE_VERSION}")
    missing = [k for k in ("loss", "kwargs", "inputs", "value", "grads", "fixed") if k not in ref]
    if missing:
        raise ValueError(f"{path!r} is missing {', '.join(missing)}: a damaged reference file")
    spec = get(ref["loss"])
    names = [i.name for i in spec.inputs]
    if sorted(ref["inputs"]) != sorted(names):
        raise ValueError(f"{path!r} holds inputs {sorted(ref['inputs'])}, but {spec.name} takes {names}")
    return ref


def check_reference(path, rtol=1e-10, atol=1e-12):
    """Re-evaluate a reference file with this npjem; a :class:`Report` (ours against the file's)."""
    ref = read_reference(path)
    spec = get(ref["loss"])
    arrays = [np.asarray(ref["inputs"][i.name]) for i in spec.inputs]  # host
    theirs = (float(ref["value"]), {k: np.asarray(v) for k, v in ref["grads"].items()})  # host
    ours = _ours(spec, arrays, dict(ref["kwargs"]), 1.0)
    rows = _rows(spec, theirs, ours, rtol, atol)
    missing = sorted(set(ours[1]) - set(ref["grads"]))
    if missing:
        raise ValueError(f"{path!r} has no gradient for {', '.join(missing)}: a damaged reference file")
    return Report(spec.name, f"file {path}", int(ref.get("seed", 0)), dict(ref.get("shapes", {})),
                  theirs[0], ours[0], rows)


# =================================================================================== self-check

def _engine_cases():
    """(name, fn, input shapes, order) for the engine's own check: composites and layers."""
    from .autograd import functional as F  # noqa: PLC0415
    from .nn import functional as NF  # noqa: PLC0415

    return [
        ("softmax", lambda x: F.softmax(x, axis=1), [(3, 4)], 2),
        ("log_softmax", lambda x: F.log_softmax(x, axis=1), [(3, 4)], 2),
        ("logsumexp", lambda x: F.logsumexp(x, axis=0), [(3, 4)], 2),
        ("normalize", lambda x: F.normalize(x, axis=1), [(3, 4)], 2),
        ("cosine_similarity", lambda a, b: F.cosine_similarity(a, b, axis=1), [(3, 4), (3, 4)], 1),
        ("gelu", F.gelu, [(2, 5)], 2),
        ("softplus", F.softplus, [(2, 5)], 2),
        ("tanh", F.tanh, [(2, 5)], 2),
        ("layer_norm", lambda x, w, b: F.layer_norm(x, (4,), w, b), [(3, 4), (4,), (4,)], 2),
        ("linear", F.linear, [(3, 4), (2, 4), (2,)], 2),
        ("conv2d", lambda x, w: NF.conv2d(x, w, padding=1, stride=2), [(2, 2, 5, 5), (3, 2, 3, 3)], 2),
        ("avg_pool2d", lambda x: NF.avg_pool2d(x, 2), [(1, 2, 4, 4)], 1),
        ("batch_norm (training)", lambda x, w, b: NF.batch_norm(x, None, None, w, b, training=True),
         [(4, 3), (3,), (3,)], 1),
    ]


def self_check(device="cpu", losses=True, engine=True):
    """npjem's gradients against central differences in float64, on ``device``.

    Every registered loss (stop-gradient inputs held fixed) and a set of the engine's composites
    and layers (first order; second order where the op is twice differentiable) through
    :func:`npjem.gradcheck` / :func:`npjem.gradgradcheck`. Returns a list of
    ``(name, order, ok, seconds, message)``.
    """
    import time  # noqa: PLC0415

    from .autograd.gradcheck import GradcheckError, gradcheck, gradgradcheck  # noqa: PLC0415

    device = backend.normalize_device(device)
    if device != "cpu" and not backend.cupy_available():
        raise ValueError(f"device {device!r} needs CuPy and a CUDA GPU, and neither is available here")
    rng = np.random.default_rng(0)  # host: the check's inputs
    jobs = []
    if losses:
        for name in names():
            spec = _REGISTRY[name]
            arrays = draw_inputs(spec, seed=0)
            fixed = tuple(i for i, (inp, a) in enumerate(zip(spec.inputs, arrays))
                          if inp.fixed or a.dtype.kind != "f")
            jobs.append((f"loss {name}", (lambda spec=spec: lambda *xs: spec.invoke(spec.fn, xs, spec.kwargs))(),
                         arrays, fixed, 1))
    if engine:
        for name, fn, shapes, order in _engine_cases():
            jobs.append((name, fn, [rng.standard_normal(s) for s in shapes], (), order))
    rows = []
    for name, fn, arrays, fixed, order in jobs:
        inputs = [Tensor(backend.to_device(a, device), requires_grad=a.dtype.kind == "f") for a in arrays]
        for k, check in ((1, gradcheck), (2, gradgradcheck))[:order]:
            t0 = time.perf_counter()
            try:
                check(fn, inputs, fixed=fixed)
                ok, msg = True, ""
            except GradcheckError as e:
                ok, msg = False, str(e).splitlines()[0]
            rows.append((name, k, ok, time.perf_counter() - t0, msg))
    return rows


# =================================================================================== built-in specs
# Each loss: its inputs (stop-gradient ones fixed), small default sizes, npjem's defaults, and the
# conventions its docstring's table lists, as npjem keyword arguments.

def _register_builtins():
    from . import losses as L  # noqa: PLC0415 — the losses sit below this module

    emb = lambda name, **kw: InputSpec(name, ("N", "D"), **kw)  # noqa: E731
    register(LossSpec(
        "info_nce", L.info_nce, (emb("h_x"), emb("h_y")), {"N": 6, "D": 5}, {"temperature": 0.1},
        conventions=(
            Convention("lightly NTXentLoss / solo-learn: the two directions averaged", {"directions": "mean"}),
            Convention("one direction only (the notes' single anchor, MoCo v3's ctr)", {"directions": "x_to_y"}),
            Convention("the self-similarity left in the denominator (the notes' formula literally)",
                       {"include_self": True}),
            Convention("cross-view negatives only (CLIP)", {"intra_view_negatives": False}),
            Convention("CLIP: cross-view negatives, directions averaged",
                       {"intra_view_negatives": False, "directions": "mean"}),
            Convention("raw dot products, no L2 normalisation", {"normalize": False}),
        ),
        doc="InfoNCE / NT-Xent (SimCLR)"))
    register(LossSpec(
        "moco", L.moco_loss,
        (emb("q"), emb("k", fixed=True), InputSpec("queue", ("K", "D"), kind="unit", fixed=True, batch=False)),
        {"N": 6, "D": 5, "K": 7}, {"temperature": 0.2},
        conventions=(Convention("queries and keys not L2-normalised inside the loss", {"normalize": False}),),
        doc="MoCo's InfoNCE against a queue (keys and queue are stop-gradient)"))
    register(LossSpec(
        "pair_margin", L.pair_margin_loss,
        (emb("h_x"), emb("h_y"), InputSpec("is_positive", ("N",), kind="bool")), {"N": 6, "D": 5},
        {"margin": 2.0},
        conventions=(
            Convention("summed over pairs (the DrLIM paper)", {"reduction": "sum"}),
            Convention("cosine distance 1 − cos", {"distance": "cosine"}),
        ),
        doc="DrLIM's pair margin loss (the hinge functional on pairs)"))

    # Non-contrastive, clustering and distillation losses.
    register(LossSpec(
        "barlow_twins", L.barlow_twins, (emb("h_x"), emb("h_y")), {"N": 8, "D": 4}, {"lambd": 5e-3},
        conventions=(Convention("lightly's BarlowTwinsLoss default λ", {"lambd": 0.0051}),),
        doc="Barlow Twins"))
    register(LossSpec(
        "vicreg", L.vicreg, (emb("h_x"), emb("h_y")), {"N": 8, "D": 4}, {},
        conventions=(Convention("the paper and solo-learn: the variance term not halved", {"halve_variance": False}),),
        doc="VICReg (the total of its three terms)"))
    crops = lambda prefix, n, **kw: tuple(InputSpec(f"{prefix}{i}", ("B", "K"), **kw) for i in range(n))  # noqa: E731
    register(LossSpec(
        "swav", L.swav, crops("scores", 3) + crops("codes", 2, kind="probs", fixed=True), {"B": 6, "K": 5},
        {"temperature": 0.1}, call=lambda fn, x, kw: fn(list(x[:3]), list(x[3:]), **kw),
        doc="SwAV's swapped prediction, 3 crops, codes for the first 2 (stop-gradient)"))
    register(LossSpec(
        "simsiam", L.simsiam_loss, (emb("p1"), emb("p2"), emb("z1", fixed=True), emb("z2", fixed=True)),
        {"N": 6, "D": 5}, {}, doc="SimSiam's symmetrised negative cosine (targets stop-gradient)"))
    register(LossSpec(
        "byol", L.byol_loss, (emb("p1"), emb("p2"), emb("z1", fixed=True), emb("z2", fixed=True)),
        {"N": 6, "D": 5}, {}, call=lambda fn, x, kw: fn((x[0], x[1]), (x[2], x[3]), **kw),
        conventions=(Convention("lightly's example: the two directions averaged", {"directions": "mean"}),),
        doc="BYOL's 2 − 2cos over both directions (targets stop-gradient)"))
    register(LossSpec(
        "dino", L.dino,
        crops("student", 3) + crops("teacher", 2, fixed=True) + (InputSpec("center", ("K",), fixed=True, batch=False),),
        {"B": 6, "K": 5}, {"student_temp": 0.1, "teacher_temp": 0.04},
        call=lambda fn, x, kw: fn(list(x[:3]), list(x[3:5]), x[5], **kw),
        doc="DINO over 3 student crops and 2 teacher crops (teacher and centre stop-gradient)"))
    register(LossSpec(
        "data2vec", L.data2vec_loss,
        (InputSpec("prediction", ("B", "T", "C")), InputSpec("target", ("B", "T", "C"), fixed=True),
         InputSpec("mask", ("B", "T"), kind="bool")),
        {"B": 3, "T": 4, "C": 5}, {},
        conventions=(Convention("mean squared error (fairseq's β = 0)", {"loss": "mse"}),
                     Convention("no 1/sqrt(C) scale", {"scale": 1.0})),
        doc="Data2Vec's regression at masked positions (target stop-gradient)"))

    # LeCun et al. (2006)'s loss functionals on energies.
    energies = lambda name: InputSpec(name, ("N",))  # noqa: E731
    for name, fn, kw in (("hinge", L.hinge, {"margin": 1.0}), ("log_loss", L.log_loss, {}),
                         ("lvq2", L.lvq2, {}), ("mce", L.mce, {}),
                         ("square_square", L.square_square, {"margin": 1.0}),
                         ("square_exponential", L.square_exponential, {"gamma": 1.0})):
        register(LossSpec(name, fn, (energies("e_pos"), energies("e_neg")), {"N": 6}, kw,
                          conventions=(Convention("summed over samples", {"reduction": "sum"}),),
                          doc=f"the {name} loss functional on the correct and most offending energies"))
    register(LossSpec("energy_loss", L.energy_loss, (energies("e_pos"),), {"N": 6}, {},
                      doc="the energy loss functional"))
    answers = (InputSpec("energies", ("N", "K")), InputSpec("target", ("N",), kind="labels", classes="K"))
    # β = 2, not 1: at β = 1 a misplaced 1/β changes nothing and a check would miss it.
    for name, fn, kw in (("perceptron", L.perceptron, {}), ("nll_mmi", L.nll_mmi, {"beta": 2.0}),
                         ("mee", L.mee, {"beta": 2.0})):
        register(LossSpec(name, fn, answers, {"N": 6, "K": 4}, kw,
                          conventions=(Convention("summed over samples", {"reduction": "sum"}),),
                          doc=f"the {name} loss functional over all answers"))

    # The EBM objectives, on small energies whose parameters are inputs too: a quadratic
    # E(x) = ½‖xA‖² + b·x for continuous x, an Ising energy E(x) = −½ (xW)·x − b·x for bits.
    from .ebm import objectives as O  # noqa: PLC0415

    def quadratic(A, b):
        return lambda u: ((u @ A) ** 2).sum(1) * 0.5 + (u * b).sum(1)

    def ising(W, b):
        return lambda u: -(((u @ W) * u).sum(1) * 0.5) - (u * b).sum(1)

    mat = (InputSpec("A", ("D", "D"), batch=False), InputSpec("b", ("D",), batch=False))
    register(LossSpec(
        "score_matching", O.score_matching, (InputSpec("x", ("N", "D")),) + mat, {"N": 5, "D": 3}, {},
        call=lambda fn, x, kw: fn(quadratic(x[1], x[2]), x[0], **kw),
        doc="exact score matching E[−tr ∇²E + ½‖∇E‖²] of E(x) = ½‖xA‖² + b·x"))
    register(LossSpec(
        "nce", O.nce,
        (InputSpec("x_data", ("N", "D")), InputSpec("x_noise", ("M", "D"), batch=False),
         InputSpec("log_noise_data", ("N",)), InputSpec("log_noise_noise", ("M",), batch=False),
         InputSpec("log_z", (), batch=False)) + mat,
        {"N": 5, "M": 7, "D": 3}, {},
        call=lambda fn, x, kw: fn(quadratic(x[5], x[6]), x[0], x[1], x[2], x[3], x[4], **kw),
        batch_mean=False, doc="noise-contrastive estimation of E(x) = ½‖xA‖² + b·x with log Z learned"))
    ising_inputs = (InputSpec("x", ("N", "D"), kind="bits", fixed=True),
                    InputSpec("W", ("D", "D"), batch=False), InputSpec("b", ("D",), batch=False))
    for name, fn in (("ratio_matching", O.ratio_matching), ("pseudo_likelihood", O.pseudo_likelihood),
                     ("minimum_probability_flow", O.minimum_probability_flow)):
        register(LossSpec(
            name, fn, ising_inputs, {"N": 6, "D": 4}, {}, call=lambda fn, x, kw: fn(ising(x[1], x[2]), x[0], **kw),
            conventions=(Convention("summed over samples", {"reduction": "sum"}),),
            doc=f"{name.replace('_', ' ')} of a fully visible Boltzmann machine E(x) = −½ (xW)·x − b·x"))


_register_builtins()


from .crosscheck_method import MethodReport, compare_method  # noqa: E402  (a whole training step)
