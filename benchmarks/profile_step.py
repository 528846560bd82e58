"""Where the SimCLR step's time goes: exclusive time per op, forward and backward, with the
convolutions split into GEMM and memory-bound work.

    python benchmarks/profile_step.py [--batch 128] [--steps 5] [--threads 1]

The step is ``benchmarks/simclr_step.py``'s (2 × ``batch`` images 3×32×32, ConvNet(32, 64, 128),
projector 128-128-64, NT-Xent τ = 0.2, SGD with momentum), float32 on NumPy with NumPy's BLAS
held to ``--threads`` threads (threadpoolctl).

How it measures: every ``Function``'s ``forward`` and ``backward`` and the convolution's helpers
(im2col, col2im, the layout copies of the gradient and the weight) are wrapped in a timer that
keeps a stack, so each row is *exclusive* time (a backward that calls other ops is charged only
for its own lines). A convolution kernel's remaining own time is its GEMMs plus small glue;
the GEMMs alone are timed separately by replaying the same matrix products on arrays of the
same shapes and strides (``gemm replay``). What no wrapper sees is the engine and Python:
graph bookkeeping, ``sum_to``, gradient accumulation, the optimizer, the loss's Python.

Every clock here is ``time.process_time`` (CPU time of this process: user and system, so
page faults count), not wall time: on a machine shared with other work a wall clock also
counts the time the process waits for a core. With one BLAS thread the two agree on an idle
machine. Shares are robust either way; absolute milliseconds on a busy machine are not
(caches and memory bandwidth are shared too).
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from simclr_step import NpjemStep, _blas_limiter, _load, _Null  # noqa: E402

from npjem.autograd.tensor import Function  # noqa: E402
from npjem.nn import functional as F  # noqa: E402


_clock = time.process_time


class ExclusiveTimer:
    """Wraps callables so that each label accumulates the time spent in it minus its children."""

    def __init__(self):
        self.total = defaultdict(float)
        self.calls = defaultdict(int)
        self._stack = []  # [label, start, time spent in children]
        self._undo = []

    def wrap(self, owner, name, label):
        original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            frame = [label, _clock(), 0.0]
            self._stack.append(frame)
            try:
                return original(*args, **kwargs)
            finally:
                self._stack.pop()
                spent = _clock() - frame[1]
                self.total[label] += spent - frame[2]
                self.calls[label] += 1
                if self._stack:
                    self._stack[-1][2] += spent

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def unwrap(self):
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()


def _all_functions(cls=Function):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_functions(sub)


def instrument(timer):
    for cls in set(_all_functions()):
        for meth in ("forward", "backward", "_backward_arrays"):
            if meth in cls.__dict__:
                timer.wrap(cls, meth, f"{cls.__name__}.{meth}")
    # The convolution's memory-bound helpers (module functions and one method).
    timer.wrap(F._Im2col, "cols", "conv: im2col")
    for name, label in (("_col2im", "conv: col2im"), ("_gy_rows", "conv: gradient layout copy"),
                        ("_weight_matrix", "conv: weight reorder"),
                        ("_weight_from_matrix", "conv: weight reorder")):
        if hasattr(F, name):
            timer.wrap(F, name, label)


class GemmRecorder:
    """Records the shapes and strides of the GEMMs the convolution kernels run, to replay them."""

    def __init__(self):
        self.calls = []

    def replay_seconds(self, repeats=3):
        """Seconds of one step's convolution GEMMs, each timed alone (best of ``repeats``)."""
        total = 0.0
        for a_shape, a_t, b_shape, b_t in self.calls:
            a = np.ones(a_shape[::-1] if a_t else a_shape, np.float32)
            b = np.ones(b_shape[::-1] if b_t else b_shape, np.float32)
            a, b = (a.T if a_t else a), (b.T if b_t else b)
            best = float("inf")
            for _ in range(repeats):
                t0 = _clock()
                a @ b
                best = min(best, _clock() - t0)
            total += best
        return total


def gemm_shapes(batch, step):
    """The GEMMs of one step's convolutions as (A shape, A transposed?, B shape, B transposed?)."""
    calls = []
    n = 2 * batch
    h = w = 32
    c = 3
    for conv in [m for m in step.backbone.modules() if type(m).__name__ == "Conv2d"]:
        o = conv.out_channels
        s = conv.stride[0]
        ho, wo = (h - 1) // s + 1, (w - 1) // s + 1
        k = 9 * c
        rows_per_image = ho * wo
        blk = max(1, min(n, F.backend.block_bytes(np) // (rows_per_image * k * 4)))
        for n0 in range(0, n, blk):
            m = (min(n0 + blk, n) - n0) * rows_per_image
            calls.append(((m, k), False, (k, o), True))     # forward: cols @ Wᵀ
            if c != 3:                                      # input gradient: gy rows @ W
                calls.append(((m, o), False, (o, k), False))
            calls.append(((o, m), True, (m, k), False))     # weight gradient: (gy rows)ᵀ @ cols
        h, w, c = ho, wo, o
    return calls


def profile(batch, steps, threads, seed=0):
    rng = np.random.default_rng(seed)
    x1 = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    x2 = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    step = NpjemStep(seed)
    limiter = _blas_limiter()
    ctx = limiter(limits=threads, user_api="blas") if limiter is not None else _Null()
    timer = ExclusiveTimer()
    with ctx:
        step(x1, x2, record=False)  # warm-up
        instrument(timer)
        try:
            t0 = _clock()
            for _ in range(steps):
                step(x1, x2, record=False)
            wall = (_clock() - t0) / steps
        finally:
            timer.unwrap()
        rec = GemmRecorder()
        rec.calls = gemm_shapes(batch, step)
        gemm = rec.replay_seconds()
    return wall, {k: v / steps for k, v in timer.total.items()}, gemm


def report(wall, rows, gemm):
    conv_kernels = ("Conv2dFunction.forward", "ConvTranspose2dFunction.forward",
                    "Conv2dWeightGradFunction.forward")
    kernel_own = sum(rows.get(k, 0.0) for k in conv_kernels)
    attributed = sum(rows.values())
    lines = [f"{'':44s}{'ms/step':>9s}{'share':>8s}"]

    def line(label, sec):
        lines.append(f"{label:44s}{sec * 1e3:9.1f}{100 * sec / wall:7.1f}%")

    line("whole step", wall)
    lines.append("convolutions:")
    line("  GEMMs (replayed alone)", gemm)
    line("  kernels' own time beyond the GEMMs", max(kernel_own - gemm, 0.0))
    for k in sorted(r for r in rows if r.startswith("conv: ")):
        line("  " + k[6:], rows[k])
    lines.append("other ops (exclusive):")
    others = sorted(((v, k) for k, v in rows.items() if k not in conv_kernels and not k.startswith("conv: ")),
                    reverse=True)
    small = 0.0
    for v, k in others:
        if v / wall >= 0.005:
            line("  " + k, v)
        else:
            small += v
    line("  every other op (each < 0.5 %)", small)
    line("engine, optimizer, Python (not in any op)", wall - attributed)
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="NumPy's BLAS threads and npjem's (default 1)")
    args = ap.parse_args(argv)
    wall, rows, gemm = profile(args.batch, args.steps, args.threads)
    print(f"SimCLR step, 2 x {args.batch} images, float32, {args.threads} BLAS thread(s), "
          f"numpy {np.__version__}, load average {_load()}, {args.steps} steps")
    print(report(wall, rows, gemm))


if __name__ == "__main__":
    main()
