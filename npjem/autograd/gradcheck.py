"""Check analytic gradients against central differences, to first and second order.

``gradcheck(fn, inputs)`` compares, for every differentiated input x and a seeded random
incoming gradient v (one per output of ``fn``),

    analytic:  vᵀJ            = npjem.grad(fn(x), x, grad_outputs=v)
    numeric:   vᵀ(f(x + ε eᵢ) − f(x − ε eᵢ)) / 2ε     for every element i of x     (mode="full")
    numeric:   vᵀ(f(x + ε u) − f(x − ε u)) / 2ε  vs  (vᵀJ)·u   for random unit u     (mode="fast")

and fails where |analytic − numeric| > atol + rtol·|numeric| (``numpy.allclose``'s rule).

Why v is random and never all ones: a ones incoming gradient only checks the column sums
1ᵀJ. Those sums hide whole classes of bugs. Softmax is the classic one: its outputs sum to 1
for every input, so 1ᵀJ = ∂(Σᵢ sᵢ)/∂x = 0, and a softmax whose backward returns zeros passes a
ones-check perfectly. Likewise any error in J that is orthogonal to the ones vector (a wrong
sign on a term that sums to zero, swapped rows) is invisible. With v drawn from a standard
normal, vᵀJ = vᵀJ_true only if the error's projection on a random direction vanishes, which
happens with probability zero.

The defaults follow ``torch.autograd.gradcheck``: eps = 1e-6, atol = 1e-5, rtol = 1e-3. With
float64 and ε = 1e-6 the central difference has truncation error O(ε² f''') ≈ 1e-12 and round-off
error O(u·|f|/ε) ≈ 1e-10 (u = 1.1e-16), so correct gradients of O(1) functions agree to ~1e-9,
far inside the tolerance, while real bugs miss by O(1).
"""
from __future__ import annotations


import numpy as np

from .. import backend
from .._checks import check_choice, check_int, check_positive
from .tensor import Tensor, enable_grad, grad, no_grad

__all__ = ["GradcheckError", "gradcheck", "gradgradcheck"]


class GradcheckError(AssertionError):
    """A gradient disagrees with its central-difference estimate (or ``fn`` mutated an input).

    Attributes (``None`` where they do not apply): ``input_index``, ``index`` (the worst element,
    or the direction number in fast mode), ``analytic``, ``numeric``.
    """

    def __init__(self, message, input_index=None, index=None, analytic=None, numeric=None):
        super().__init__(message)
        self.input_index = input_index
        self.index = index
        self.analytic = analytic
        self.numeric = numeric


# ----------------------------------------------------------------------------- helpers

def _describe(i, x) -> str:
    name = getattr(x, "name", None)
    shape = tuple(x.shape)
    return f"input {i}" + (f" ({name!r}, shape {shape})" if name else f" (shape {shape})")


def _prepare(inputs, fixed):
    """float64 copies of the inputs, and the indices of those to differentiate.

    A Tensor stays a Tensor (floating ones become float64 copies that keep ``requires_grad``);
    an array stays an array unless it is floating and not held fixed, in which case it becomes a
    float64 Tensor that requires grad; anything else (Python numbers, strings, None) is passed to
    ``fn`` unchanged and never differentiated.
    """
    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if not items:
        raise ValueError("gradcheck: inputs must contain at least one Tensor or array")
    fixed = {int(f) for f in fixed}
    bad = [f for f in fixed if not -len(items) <= f < len(items)]
    if bad:
        raise ValueError(f"gradcheck: fixed indices {sorted(bad)} are out of range for {len(items)} inputs")
    fixed = {f % len(items) for f in fixed}
    args, diff = [], []
    for i, x in enumerate(items):
        if isinstance(x, Tensor):
            floating = x.dtype.kind == "f"
            xp = x.xp
            data = xp.array(x.data, dtype=np.float64) if floating else xp.array(x.data)  # copies
            t = Tensor(data, name=x.name)
            wants = floating and x.requires_grad and i not in fixed
            t.requires_grad = wants
            args.append(t)
            if wants:
                diff.append(i)
        elif backend.is_array(x):
            xp = backend.get_array_module(x)
            if x.dtype.kind == "f" and i not in fixed:
                args.append(Tensor(xp.array(x, dtype=np.float64), requires_grad=True))
                diff.append(i)
            else:
                args.append(xp.array(x, dtype=np.float64) if x.dtype.kind == "f" else xp.array(x))
        else:
            args.append(x)
    if not diff:
        raise ValueError(
            "gradcheck: no input to differentiate: give at least one floating Tensor with "
            "requires_grad=True (or a floating array) that is not listed in `fixed`")
    return args, diff


def _snapshot(args):
    """Host copies of every array input, to detect mutation by ``fn``."""
    return {i: backend.to_numpy(a.data if isinstance(a, Tensor) else a).copy()
            for i, a in enumerate(args) if isinstance(a, Tensor) or backend.is_array(a)}


def _check_unmutated(args, snap, what):
    for i, before in snap.items():
        a = args[i]
        now = backend.to_numpy(a.data if isinstance(a, Tensor) else a)
        same = now.shape == before.shape and np.array_equal(  # host
            now, before, equal_nan=before.dtype.kind in "fc")
        if not same:
            raise GradcheckError(
                f"{what}: fn mutated {_describe(i, a)} in place; a checked function must not "
                f"write to its inputs (copy first, or use out-of-place operations)", input_index=i)


def _outputs(fn, args, what):
    """Call ``fn`` and return its floating outputs as a list of Tensors."""
    out = fn(*args)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    if not outs:
        raise TypeError(f"{what}: fn returned no outputs")
    for j, o in enumerate(outs):
        if not isinstance(o, Tensor):
            raise TypeError(f"{what}: fn must return a Tensor or a tuple of Tensors; output {j} is a "
                            f"{type(o).__name__}")
    return [o for o in outs if o.dtype.kind == "f"]


def _host64(t):
    return backend.to_numpy(t.data).astype(np.float64, copy=False)


def _excess(analytic, numeric, atol, rtol):
    """How far each element is outside |a − n| <= atol + rtol|n| (> 0 fails; NaN counts as inf)."""
    with np.errstate(invalid="ignore"):
        e = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
    return np.where(np.isnan(e), np.inf, e)


# ----------------------------------------------------------------------------- the check

def _validate(eps, atol, rtol, mode, n_directions):
    check_positive(eps, "eps")
    check_positive(atol, "atol", allow_zero=True)
    check_positive(rtol, "rtol", allow_zero=True)
    check_choice(mode, "mode", ("full", "fast"))
    if n_directions is not None:
        check_int(n_directions, "n_directions")


def _check(fn, args, diff, eps, atol, rtol, mode, n_directions, seed, what):
    rng = np.random.default_rng(seed)  # host
    snap = _snapshot(args)

    # -- analytic vᵀJ, with a random v per output (never ones: see the module docstring)
    with enable_grad():
        outs = _outputs(fn, args, what)
    _check_unmutated(args, snap, what)
    shapes = [o.shape for o in outs]
    vs = [rng.standard_normal(s) for s in shapes]
    live = [j for j, o in enumerate(outs) if o.requires_grad]
    xs = [args[i] for i in diff]
    if live:
        gs = grad([outs[j] for j in live], xs,
                  grad_outputs=[Tensor(backend.to_device(vs[j], outs[j].device)).astype(outs[j].dtype)
                                for j in live],
                  allow_unused=True)
    else:  # no output depends on a differentiated input: every analytic gradient is zero
        gs = [None] * len(xs)
    _check_unmutated(args, snap, what)
    analytic = []
    for i, x, g in zip(diff, xs, gs):
        if g is None:
            analytic.append(np.zeros(x.shape))  # host
            continue
        if g.shape != x.shape:
            raise GradcheckError(f"{what}: the gradient of {_describe(i, x)} has shape {g.shape}",
                                 input_index=i)
        if g.dtype != x.dtype:
            raise GradcheckError(f"{what}: the gradient of {_describe(i, x)} has dtype {g.dtype}, "
                                 f"expected {x.dtype}", input_index=i)
        analytic.append(_host64(g))
    del outs, gs

    # -- numeric: central differences projected on v, with no graph recorded
    def f():
        with no_grad():
            ys = _outputs(fn, args, what)
        if [y.shape for y in ys] != shapes:
            raise GradcheckError(f"{what}: fn's output shapes changed between calls "
                                 f"({shapes} then {[y.shape for y in ys]})")
        return [_host64(y).copy() for y in ys]

    def central(fp, fm):
        # difference per output element first, then project: no cancellation between the
        # large sums vᵀf(x ± εu)
        return float(sum(np.vdot(v, p - m) for v, p, m in zip(vs, fp, fm))) / (2.0 * eps)

    for i, x, a in zip(diff, xs, analytic):
        base = _host64(x).copy()
        if mode == "full":
            numeric = np.empty(base.size)  # host
            for k in range(base.size):
                idx = np.unravel_index(k, base.shape)
                x.data[idx] = base[idx] + eps
                fp = f()
                x.data[idx] = base[idx] - eps
                fm = f()
                x.data[idx] = base[idx]  # restore exactly, not by subtracting eps again
                numeric[k] = central(fp, fm)
            got = a.reshape(-1)
        else:
            nd = 4 if n_directions is None else int(n_directions)
            got, numeric = np.empty(nd), np.empty(nd)  # host
            for d in range(nd):
                u = rng.standard_normal(base.shape)
                u /= max(np.linalg.norm(u), 1e-300)  # a unit step of length eps in input space
                x.data[...] = backend.to_device(base + eps * u, x.device)
                fp = f()
                x.data[...] = backend.to_device(base - eps * u, x.device)
                fm = f()
                numeric[d] = central(fp, fm)
                got[d] = float(np.vdot(a, u))
            x.data[...] = backend.to_device(base, x.device)
        _check_unmutated(args, snap, what)
        ex = _excess(got, numeric, atol, rtol)
        bad = ex > 0
        if bad.any():
            w = int(np.argmax(ex))
            if mode == "full":
                label = tuple(int(j) for j in np.unravel_index(w, base.shape))
                where_ = f"element {label}"
            else:
                label = where_ = f"direction {w}"
            tol = atol + rtol * abs(numeric[w])
            raise GradcheckError(
                f"{what} failed for {_describe(i, x)} ({mode} mode): worst at {where_}: "
                f"analytic {float(got[w])!r}, numeric {float(numeric[w])!r}, |difference| "
                f"{abs(got[w] - numeric[w]):.3e} > atol + rtol*|numeric| = {atol:g} + {rtol:g}*"
                f"{abs(numeric[w]):.3e} = {tol:.3e}; {int(bad.sum())} of {bad.size} "
                f"{'elements' if mode == 'full' else 'directions'} out of tolerance (eps={eps:g})",
                input_index=i, index=label, analytic=float(got[w]), numeric=float(numeric[w]))
    return True


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, *, fixed=(), mode="full",
              n_directions=None, seed=0, raise_exception=True) -> bool:
    """Check the analytic gradient of ``fn`` at ``inputs`` against central differences.

    ``fn(*inputs)`` must return a Tensor or a tuple of Tensors of any shapes. With a seeded
    random incoming gradient vⱼ per output (standard normal, never ones), the analytic
    vᵀJ = Σⱼ vⱼᵀ ∂fⱼ/∂x from ``npjem.grad`` is compared with

    * ``mode="full"``: (vᵀf(x + ε eᵢ) − vᵀf(x − ε eᵢ)) / 2ε for every element i of every
      differentiated input (2·size evaluations of ``fn`` per input);
    * ``mode="fast"``: (vᵀf(x + ε u) − vᵀf(x − ε u)) / 2ε against (vᵀJ)·u for ``n_directions``
      (default 4) random unit directions u per input, as PyTorch's ``fast_mode`` and JAX's
      ``check_grads``: cheap for large inputs, and a wrong gradient still fails with
      probability one.

    An element fails where |analytic − numeric| > atol + rtol·|numeric|.

    Args:
        fn: a function of the inputs (positionally), returning Tensor(s).
        inputs: a Tensor, an array, or a sequence of them (other objects are passed through).
            Every floating input is replaced by a **float64 copy** for the check (central
            differences need float64; the caller's arrays are never touched). Differentiated:
            floating Tensors with ``requires_grad=True`` and floating arrays; not differentiated
            but passed to ``fn``: integer/bool inputs, Tensors with ``requires_grad=False``, and
            every input whose index is in ``fixed``. Inputs stay on their device; the check
            evaluates ``fn`` there and compares on the host.
        eps, atol, rtol: step and tolerances; PyTorch's defaults (1e-6, 1e-5, 1e-3).
        fixed: indices of inputs held fixed (stop-gradient targets, queues, memory banks).
        mode: ``"full"`` or ``"fast"``.
        n_directions: directions per input in fast mode (default 4).
        seed: seeds v and the fast-mode directions; the check is deterministic.
        raise_exception: raise ``GradcheckError`` on failure (default) or return ``False``.

    Returns ``True`` when every gradient agrees. Also fails (``GradcheckError``) when ``fn``
    writes to an input, or returns a gradient of the wrong shape or dtype. The message names
    the input (index, name, shape), the worst element, the analytic and numeric values and the
    tolerance.
    """
    _validate(eps, atol, rtol, mode, n_directions)
    args, diff = _prepare(inputs, fixed)
    try:
        return _check(fn, args, diff, eps, atol, rtol, mode, n_directions, seed, "gradcheck")
    except GradcheckError:
        if raise_exception:
            raise
        return False


def gradgradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, *, fixed=(), mode="full",
                  n_directions=None, seed=0, raise_exception=True) -> bool:
    """Check second derivatives: ``gradcheck`` of x ↦ vᵀ∂f/∂x, built with ``create_graph=True``.

    With a seeded random v per output of ``fn``, it defines

        g(inputs) = npjem.grad(fn(inputs), diff_inputs, grad_outputs=v, create_graph=True)

    (one output per differentiated input) and runs ``gradcheck(g, inputs, ...)`` on it with
    another random incoming gradient w, so it compares wᵀ∂(vᵀJ)/∂x, a mixed second derivative,
    with central differences of the first-order gradient. Arguments as ``gradcheck``. A
    backward that computes its result from raw arrays (so no graph is built through it) gives
    a correct first derivative and a wrong (zero) second derivative: this check catches it.
    """
    _validate(eps, atol, rtol, mode, n_directions)
    args, diff = _prepare(inputs, fixed)
    rng = np.random.default_rng(seed)  # host
    with enable_grad():
        probe = _outputs(fn, args, "gradgradcheck")
    vs = [rng.standard_normal(o.shape) for o in probe]
    devices = [o.device for o in probe]
    del probe

    def first_order(*a):
        # gradcheck evaluates its function under no_grad for the numeric side; the first-order
        # gradient needs a graph all the same.
        with enable_grad():
            ys = _outputs(fn, a, "gradgradcheck")
            if len(ys) != len(vs):
                raise GradcheckError("gradgradcheck: fn's number of outputs changed between calls")
            live = [j for j, y in enumerate(ys) if y.requires_grad]
            xs = [a[i] for i in diff]
            if not live:
                return tuple(Tensor(x.xp.zeros_like(x.data)) for x in xs)
            gs = grad([ys[j] for j in live], xs,
                      grad_outputs=[Tensor(backend.to_device(vs[j], devices[j])).astype(ys[j].dtype)
                                    for j in live],
                      create_graph=True, allow_unused=True)
            return tuple(Tensor(x.xp.zeros_like(x.data)) if g is None else g for x, g in zip(xs, gs))

    try:
        return _check(first_order, args, diff, eps, atol, rtol, mode, n_directions, seed + 1,
                      "gradgradcheck")
    except GradcheckError:
        if raise_exception:
            raise
        return False
