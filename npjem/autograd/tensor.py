"""``Tensor``, ``Function`` and the reverse-mode engine.

A ``Function`` computes its forward pass on raw ``xp`` arrays and its backward pass with
Tensor operations, so that a gradient can itself be differentiated
(``backward(create_graph=True)``). Under the default ``create_graph=False`` backward runs with
recording switched off, so first-order training pays nothing for that generality.

Backward visits functions in decreasing *generation* (a heap), never recursively, so a chain
of 100,000 operations is fine. Gradients of intermediate tensors are dropped as soon as the
function that produced them has been processed; leaves accumulate into ``.grad`` as in
PyTorch.

As in PyTorch, a backward pass frees what the graph saved for it (each function's inputs and
the arrays its forward kept) as soon as the function has been processed, unless
``retain_graph=True``; ``retain_graph`` defaults to ``create_graph``. A later backward that
reaches a freed function raises. (PyTorch lets a second pass through functions that saved
nothing, such as an addition, go through; here every processed function counts as freed, so
the error does not depend on which operations a graph happens to contain.) Freeing is what
lets a training loop hold the last step's loss without holding its activations.
"""
from __future__ import annotations

import contextlib
import heapq
import itertools
import numbers
import weakref

import numpy as np

from .. import backend

__all__ = [
    "Tensor", "Function", "tensor", "as_tensor", "no_grad", "enable_grad", "set_grad_enabled",
    "is_grad_enabled", "grad", "backward",
]


# ----------------------------------------------------------------------------- grad mode

class _Mode:
    enabled = True


def is_grad_enabled() -> bool:
    return _Mode.enabled


@contextlib.contextmanager
def set_grad_enabled(mode: bool):
    prev = _Mode.enabled
    _Mode.enabled = bool(mode)
    try:
        yield
    finally:
        _Mode.enabled = prev


class _GradModeContext:
    """Usable as ``with no_grad():`` and as a decorator ``@no_grad()``, like PyTorch."""

    _mode = False

    def __enter__(self):
        self._prev = _Mode.enabled
        _Mode.enabled = self._mode

    def __exit__(self, *exc):
        _Mode.enabled = self._prev
        return False

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            with self.__class__():
                return fn(*args, **kwargs)

        return wrapped


class no_grad(_GradModeContext):
    """Record nothing inside: results have ``requires_grad=False`` and no creator."""

    _mode = False


class enable_grad(_GradModeContext):
    """Record again inside a ``no_grad`` block."""

    _mode = True


# ----------------------------------------------------------------------------- Tensor

def _is_scalar(v) -> bool:
    return isinstance(v, (numbers.Number, np.generic)) and not isinstance(v, np.ndarray)


class Tensor:
    """An ``xp`` array with an optional gradient and the function that created it.

    ``Tensor(data)`` keeps the dtype of an array it is given (a float64 NumPy array stays
    float64, like ``torch.from_numpy``); Python floats and lists become npjem's default dtype
    (float32 unless changed with ``backend.set_default_dtype``).

    An array stays on its device (a NumPy array on the CPU, a CuPy array on its GPU) unless
    ``device`` names another; lists and scalars go to ``device`` or the default device.
    ``npjem.tensor`` is ``torch.tensor``: a copy, and host arrays go to the default device.
    """

    __array_priority__ = 1000  # ndarray <op> Tensor calls Tensor's reflected operator
    __slots__ = ("data", "grad", "requires_grad", "creator", "generation", "name",
                 "_retain_grad", "__weakref__")

    def __init__(self, data, requires_grad=False, dtype=None, device=None, name=None):
        if isinstance(data, Tensor):
            data = data.data
        if backend.is_array(data):
            arr = data
            if device is not None and backend.normalize_device(device) != backend.device_of(arr):
                arr = backend.to_device(arr, device)
        else:
            host = np.asarray(data)  # host
            if dtype is None and host.dtype.kind == "f" and not isinstance(data, np.ndarray):
                host = host.astype(backend.default_dtype())
            elif dtype is None and host.dtype.kind in "iu" and isinstance(data, float):
                host = host.astype(backend.default_dtype())
            arr = backend.to_device(host, device)
        if dtype is not None:
            arr = arr.astype(dtype, copy=False)
        if requires_grad and arr.dtype.kind not in "fc":
            raise TypeError(f"only floating tensors can require gradients, got dtype {arr.dtype}")
        self.data = arr
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.creator = None
        self.generation = 0
        self.name = name
        self._retain_grad = False

    # -- properties
    @property
    def shape(self):
        return self.data.shape

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self):
        return backend.device_of(self.data)

    @property
    def xp(self):
        return backend.get_array_module(self.data)

    @property
    def is_leaf(self):
        return self.creator is None

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        body = repr(backend.to_numpy(self.data)).replace("array(", "tensor(", 1)
        extra = []
        if self.device != "cpu":
            extra.append(f"device='{self.device}'")
        if self.creator is not None:
            extra.append(f"grad_fn=<{type(self.creator).__name__}>")
        elif self.requires_grad:
            extra.append("requires_grad=True")
        if extra:
            body = body[:-1] + ", " + ", ".join(extra) + ")"
        return body

    __hash__ = object.__hash__

    def __bool__(self):
        if self.data.size != 1:
            raise ValueError(
                f"the truth value of a Tensor of shape {self.shape} is ambiguous; use .any() or .all()")
        return bool(self.data)

    # -- conversions
    def numpy(self) -> np.ndarray:
        """A host NumPy array (a copy from the GPU; the same memory on the CPU)."""
        if self.requires_grad and self.creator is not None:
            pass  # like .detach().numpy(): the graph is simply not followed
        return backend.to_numpy(self.data)

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self):
        return backend.to_numpy(self.data).tolist()

    def to(self, device=None, dtype=None):
        """A tensor on ``device`` (and of ``dtype``); ``self`` when nothing changes.

        Differentiable: the gradient flows back to the original device.
        """
        from . import ops

        out = self
        if device is not None and backend.normalize_device(device) != self.device:
            out = ops.to_device(out, device)
        if dtype is not None and np.dtype(dtype) != out.dtype:
            out = out.astype(dtype)
        return out

    def cpu(self):
        return self.to("cpu")

    def cuda(self):
        return self.to("cuda")

    def float(self):
        return self.astype(np.float32)

    def double(self):
        return self.astype(np.float64)

    def __dlpack__(self, *args, **kwargs):
        return self.data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self.data.__dlpack_device__()

    # -- autograd
    def detach(self) -> "Tensor":
        """The same data with no history: the stop-gradient of SimSiam, BYOL and DINO."""
        t = Tensor.__new__(Tensor)
        t.data, t.grad, t.requires_grad, t.creator = self.data, None, False, None
        t.generation, t.name, t._retain_grad = 0, None, False
        return t

    def requires_grad_(self, requires_grad=True) -> "Tensor":
        if requires_grad and self.dtype.kind not in "fc":
            raise TypeError(f"only floating tensors can require gradients, got dtype {self.dtype}")
        if not requires_grad and self.creator is not None:
            raise RuntimeError("requires_grad_(False) on a non-leaf tensor; use detach()")
        self.requires_grad = bool(requires_grad)
        return self

    def retain_grad(self) -> "Tensor":
        """Keep ``.grad`` on this non-leaf tensor after backward, as ``torch.Tensor.retain_grad``."""
        self._retain_grad = True
        return self

    def zero_grad(self) -> None:
        self.grad = None

    def backward(self, gradient=None, retain_graph=None, create_graph=False):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``, as ``torch.Tensor.backward``.

        ``gradient`` is the incoming gradient; it may be omitted only for a one-element
        tensor. The pass frees the graph's saved arrays unless ``retain_graph=True``
        (default: ``create_graph``); a second ``backward`` through a freed graph raises. With
        ``retain_graph=True`` it may be called again, and the gradients add up.
        """
        backward([self], None if gradient is None else [gradient], retain_graph=retain_graph,
                 create_graph=create_graph)

def tensor(data, dtype=None, device=None, requires_grad=False) -> Tensor:
    """A new leaf tensor, as ``torch.tensor``: always a copy; host data (lists, scalars, NumPy
    arrays) goes to ``device``, the default device when None, and a device array stays on its
    device unless ``device`` names another. (``Tensor(array)`` wraps an array where it is.)"""
    if isinstance(data, Tensor):
        data = data.data
    if backend.is_array(data):
        if device is None and isinstance(data, np.ndarray):
            device = backend.default_device()
        data = data.copy()
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, device=device)


def as_tensor(data, like=None) -> Tensor:
    """``data`` as a Tensor. A Python scalar takes the dtype and device of ``like``.

    That rule is why a float32 model stays float32 under NumPy 2: ``x * 0.5`` multiplies by a
    float32 0.5, never a float64 one.
    """
    if isinstance(data, Tensor):
        return data
    if like is not None and _is_scalar(data):
        xp = backend.get_array_module(like.data)
        dt = like.dtype
        if dt.kind not in "fc" and isinstance(data, (float, np.floating)):
            dt = backend.default_dtype()
        return Tensor(xp.asarray(data, dtype=dt))
    if like is not None and not backend.is_array(data):
        return Tensor(backend.to_device(np.asarray(data), like.device))  # host
    return Tensor(data)


# ----------------------------------------------------------------------------- Function

# Recording order of functions: backward breaks ties between functions of one generation with
# it, latest first. Any tie order gives correct gradients, but the order in which a tensor's
# gradient contributions are added changes the float rounding; ordering by memory address (id)
# made two runs with one seed differ in the last bits.
_sequence = itertools.count()

def _check_one_device(fn, inputs):
    """A clear error, not one from deep inside CuPy, when an op's inputs live on two devices."""
    devices = [backend.device_of(x.data) for x in inputs]
    if len(set(devices)) > 1:
        raise ValueError(
            f"{type(fn).__name__.lstrip('_')}: inputs are on different devices ({', '.join(devices)}); "
            "move them to one with .to(device)")


class Function:
    """One differentiable operation.

    Subclasses implement ``forward(*arrays) -> array | tuple`` on raw ``xp`` arrays and
    ``backward(*grad_outputs) -> Tensor | tuple`` with Tensor operations. ``self.inputs`` are
    the input Tensors, ``self.outputs`` weak references to the outputs (``self.output(i)``)
    and ``self.needs_input_grad`` tells which inputs want a gradient, so that backward can
    skip work nobody needs. A gradient may be returned in the output's (broadcast) shape: the
    engine reduces it to the input's shape with ``sum_to``.
    """

    differentiable = True
    #: True once a backward pass without ``retain_graph`` has released what this function saved.
    _freed = False

    def __call__(self, *inputs):
        # Written as plain loops with a fast path for all-Tensor inputs: this runs once per op,
        # and for small arrays (a Langevin step on an MLP: 27 ops) its Python cost is a large
        # share of the op's time.
        like = None
        for x in inputs:
            if isinstance(x, Tensor):
                like = x
                break
        if not all(isinstance(x, Tensor) for x in inputs):
            inputs = tuple(as_tensor(x, like) for x in inputs)
        record = self.differentiable and _Mode.enabled
        if len(inputs) > 1:
            kind = type(inputs[0].data)
            for x in inputs[1:]:
                if type(x.data) is not kind:
                    _check_one_device(self, inputs)
                    break
        ys = self.forward(*[x.data for x in inputs])
        single = not isinstance(ys, tuple)
        if single:
            ys = (ys,)
        # NumPy returns scalars (np.float64), not 0-d arrays, from full reductions and scalar
        # indexing; .data is always an array (writable, with __dlpack__, keeps its dtype when
        # wrapped again).
        if not all(type(y) is np.ndarray for y in ys):
            ys = tuple(y if backend.is_array(y) else np.asarray(y) for y in ys)  # host
        if record:
            record = False
            for x in inputs:
                if x.requires_grad:
                    record = True
                    break
        outputs = []
        for y in ys:
            t = Tensor.__new__(Tensor)
            t.data, t.grad, t.requires_grad, t.creator = y, None, False, None
            t.generation, t.name, t._retain_grad = 0, None, False
            outputs.append(t)
        if record:
            self._seq = next(_sequence)
            self.generation = max([x.generation for x in inputs])
            self.inputs = inputs
            self.needs_input_grad = tuple([x.requires_grad for x in inputs])
            generation = self.generation + 1
            for t in outputs:
                if t.data.dtype.kind in "fc":
                    t.requires_grad = True
                t.creator, t.generation = self, generation
            self.outputs = tuple([weakref.ref(t) for t in outputs])
        return outputs[0] if single else tuple(outputs)

    def output(self, i=0) -> Tensor:
        return self.outputs[i]()

    def forward(self, *xs):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, *gys):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} has no backward")

    def __lt__(self, other):  # heap ties are broken by the recording order (see _run)
        return self._seq > other._seq

    def _release(self):
        """Drop everything this function saved (its inputs and whatever forward stored on it),
        keeping only the graph's shape: which tensors (by id) and which creators it came from."""
        edges = tuple((id(x), x.creator) for x in self.inputs)
        kept = {"generation": self.generation, "_seq": self._seq, "outputs": self.outputs,
                "needs_input_grad": self.needs_input_grad}
        self.__dict__.clear()
        self.__dict__.update(kept)
        self._edges = edges
        self._freed = True


_FREED = ("Trying to backward through the graph a second time (or to use what a function saved "
          "after it has been freed): a backward pass frees the graph's saved arrays. Specify "
          "retain_graph=True in the first backward() or grad() call if you need to backward "
          "through the graph a second time.")


def _edges(fn):
    """(id of the input tensor, its creator) for each input of ``fn``, freed or not."""
    if fn._freed:
        return fn._edges
    return tuple((id(x), x.creator) for x in fn.inputs)


# ----------------------------------------------------------------------------- the engine

def _check_grad_output(out: Tensor, g, what: str) -> Tensor:
    if g is None:
        if out.data.size != 1:
            raise RuntimeError(
                f"{what}: grad can be created implicitly only for one-element outputs; got an "
                f"output of shape {out.shape}: pass grad_outputs (or backward(gradient))")
        xp = backend.get_array_module(out.data)
        return Tensor(xp.ones_like(out.data))
    g = as_tensor(g, out)
    if type(g.data) is not type(out.data) and g.device != out.device:
        raise ValueError(f"{what}: the gradient is on {g.device} but the output is on {out.device}")
    if g.shape != out.shape:
        raise ValueError(f"{what}: gradient of shape {g.shape} does not match output shape {out.shape}")
    if g.dtype != out.dtype:
        g = g.astype(out.dtype)
    return g


def _reduce_to_input(gx: Tensor, x: Tensor, fn: Function) -> Tensor:
    g, a = gx.data, x.data
    if g.dtype == a.dtype and g.shape == a.shape:  # the common case, once per gradient
        return gx
    from . import ops

    if gx.dtype != x.dtype:
        # Type promotion in forward (float32 + float64) is the only legitimate cause.
        if gx.dtype.kind != x.dtype.kind and not (x.dtype.kind == "f" and gx.dtype.kind == "f"):
            raise TypeError(f"{type(fn).__name__}.backward returned dtype {gx.dtype} for an input of dtype {x.dtype}")
        gx = gx.astype(x.dtype)
    if gx.shape != x.shape:
        gx = ops.sum_to(gx, x.shape)
    return gx


def _leading_to(outputs, capture) -> dict:
    """id(fn) -> whether some path from ``fn`` down the graph reaches a ``capture`` tensor.

    ``grad`` runs only those functions, and asks each only for the input gradients that lead
    somewhere, as ``torch.autograd.grad`` does: ∇ₓE inside score matching then costs one
    backward through the network, not one plus every parameter's gradient. Iterative
    post-order traversal, so deep graphs are fine.
    """
    memo: dict = {}
    stack = [(out.creator, False) for out in outputs if out.creator is not None]
    while stack:
        fn, expanded = stack.pop()
        if expanded:
            memo[id(fn)] = any(
                xid in capture or (creator is not None and memo.get(id(creator), False))
                for xid, creator in _edges(fn))
            continue
        if id(fn) in memo:
            continue
        stack.append((fn, True))
        for _, creator in _edges(fn):
            if creator is not None and id(creator) not in memo:
                stack.append((creator, False))
    return memo


def _run(outputs, grad_outputs, create_graph, capture=None, accumulate=True, retain_graph=None):
    """Propagate gradients from ``outputs``; return grads of the ``capture`` tensors (by id).

    With ``accumulate=False`` (``grad``) only the part of the graph between ``outputs`` and
    ``capture`` is visited. Unless ``retain_graph`` (default ``create_graph``), each function
    is released as soon as its input gradients are out.
    """
    if retain_graph is None:
        retain_graph = create_graph
    grads: dict = {}
    keep: dict = {}  # id -> tensor, so ids stay unique while we hold gradients for them
    capture = capture or {}
    useful = None if accumulate else _leading_to(outputs, capture)

    def wanted(fn):
        """needs_input_grad for this pass: in ``grad`` only inputs that lead to ``capture``."""
        if useful is None:
            return fn.needs_input_grad
        return tuple(need and (id(x) in capture or (x.creator is not None and useful.get(id(x.creator), False)))
                     for x, need in zip(fn.inputs, fn.needs_input_grad))

    # Arrays that must not become a ``.grad`` as they are: the caller's incoming gradients and
    # every array already stored in a ``.grad`` during this pass.
    taken = {id(g.data) for g in grad_outputs}

    def store(t, g):
        """Accumulate ``g`` into ``t.grad``; a stored gradient is a writable array of its own.

        Backward passes share arrays freely (``add`` hands the same gradient to both inputs,
        ``sum`` returns a read-only broadcast view, the caller's gradient can reach a leaf
        untouched), but a ``.grad`` is later updated in place by optimizers and clipping, so
        it must not alias anything. Arrays that already qualify are stored without a copy.
        """
        if t.grad is not None:
            t.grad = t.grad + g
            return
        d = g.data
        if not create_graph and (id(d) in taken or not d.flags.owndata
                                 or not getattr(d.flags, "writeable", True)):
            g = Tensor(d.copy())
        taken.add(id(g.data))
        t.grad = g

    def add(t, g):
        k = id(t)
        if k in grads:
            grads[k] = grads[k] + g
        else:
            grads[k] = g
            keep[k] = t

    heap, seen = [], set()

    def push(fn):
        if fn is not None and id(fn) not in seen and (useful is None or useful.get(id(fn), False)):
            seen.add(id(fn))
            heapq.heappush(heap, (-fn.generation, -fn._seq, fn))

    with set_grad_enabled(create_graph):
        for out, g in zip(outputs, grad_outputs):
            add(out, g)
            push(out.creator)
        while heap:
            fn = heapq.heappop(heap)[2]
            if fn._freed:
                raise RuntimeError(_FREED)
            gys = []
            for ref in fn.outputs:
                t = ref()
                if t is None:
                    gys.append(None)
                    continue
                k = id(t)
                g = grads.get(k) if (k in capture or t._retain_grad) else grads.pop(k, None)
                if k not in capture and t._retain_grad and g is not None:
                    grads.pop(k)
                    keep.pop(k, None)
                    if accumulate:
                        store(t, g)
                elif k not in capture:
                    keep.pop(k, None)
                gys.append(g)
            if all(g is None for g in gys):
                continue
            if len(gys) > 1 and any(g is None for g in gys):
                gys = [
                    g if g is not None else Tensor(ref().xp.zeros_like(ref().data)) if ref() is not None else None
                    for g, ref in zip(gys, fn.outputs)
                ]
            needs = wanted(fn)
            if needs is fn.needs_input_grad:
                gxs = fn.backward(*gys)
            else:  # backward reads self.needs_input_grad to skip gradients nobody asked for
                full, fn.needs_input_grad = fn.needs_input_grad, needs
                try:
                    gxs = fn.backward(*gys)
                finally:
                    fn.needs_input_grad = full
            if not isinstance(gxs, tuple):
                gxs = (gxs,)
            if len(gxs) != len(fn.inputs):
                raise RuntimeError(
                    f"{type(fn).__name__}.backward returned {len(gxs)} gradients for {len(fn.inputs)} inputs")
            for x, gx, need in zip(fn.inputs, gxs, needs):
                if gx is None or not need:
                    continue
                add(x, _reduce_to_input(gx, x, fn))
                push(x.creator)
            if not retain_graph:
                fn._release()
            del gys, gxs

    if accumulate:
        for k, g in grads.items():
            t = keep[k]
            if t.creator is None and t.requires_grad and k not in capture:
                store(t, g)
    return {k: grads.get(k) for k in capture}


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False):
    """Accumulate gradients of ``tensors`` into the leaves' ``.grad`` (``torch.autograd.backward``).

    Frees the graph's saved arrays unless ``retain_graph=True`` (default: ``create_graph``);
    a backward through a freed graph raises.
    """
    tensors = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    if grad_tensors is None:
        grad_tensors = [None] * len(tensors)
    elif isinstance(grad_tensors, Tensor) or backend.is_array(grad_tensors) or _is_scalar(grad_tensors):
        grad_tensors = [grad_tensors]
    if len(grad_tensors) != len(tensors):
        raise ValueError(f"got {len(grad_tensors)} gradients for {len(tensors)} tensors")
    for t in tensors:
        if not t.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: it was computed under no_grad(), "
                "or from inputs none of which requires_grad")
    gs = [_check_grad_output(t, g, "backward") for t, g in zip(tensors, grad_tensors)]
    _run(tensors, gs, create_graph, retain_graph=retain_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False):
    """Gradients of ``outputs`` with respect to ``inputs``, as ``torch.autograd.grad``.

    Returns a tuple with one Tensor per input and leaves every ``.grad`` untouched. With
    ``create_graph=True`` the returned gradients carry a graph and can be differentiated
    again (score matching needs ∇θ‖∇ₓE‖²). The functions this pass runs are freed unless
    ``retain_graph=True`` (default: ``create_graph``), as in ``backward``. An input that the outputs do not depend on raises
    unless ``allow_unused=True``, in which case its gradient is ``None``.
    """
    single_in = isinstance(inputs, Tensor)
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    inputs = [inputs] if single_in else list(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, Tensor) or backend.is_array(grad_outputs):
        grad_outputs = [grad_outputs]
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"got {len(grad_outputs)} grad_outputs for {len(outputs)} outputs")
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor) or not x.requires_grad:
            raise ValueError(f"inputs[{i}] must be a Tensor with requires_grad=True")
    for i, y in enumerate(outputs):
        if not y.requires_grad:
            raise RuntimeError(f"outputs[{i}] does not require grad (computed under no_grad or from constants)")
    gs = [_check_grad_output(y, g, "grad") for y, g in zip(outputs, grad_outputs)]
    capture = {id(x): x for x in inputs}
    res = _run(outputs, gs, create_graph, capture=capture, accumulate=False, retain_graph=retain_graph)
    out = []
    for i, x in enumerate(inputs):
        g = res[id(x)]
        if g is None and not allow_unused:
            raise RuntimeError(
                f"inputs[{i}] (shape {x.shape}) was not used to compute the outputs; pass allow_unused=True")
        if g is not None and not create_graph:
            g = g.detach()
        out.append(g)
    return tuple(out)
