"""Engine overhead: a 4-layer MLP forward+backward in npjem, hand-written NumPy and PyTorch CPU.

    python benchmarks/engine.py [--batch 512] [--width 1024] [--repeats 20]

Prints one table. The target is npjem within 1.2x of the hand-written NumPy time: the engine
should add bookkeeping, not arithmetic. Also times backward through a chain of 100,000
scalar operations (no RecursionError).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import npjem  # noqa: E402
from _timing import time_it  # noqa: E402
from npjem import functional as F  # noqa: E402


def make_weights(width, layers, rng):
    ws, bs = [], []
    for _ in range(layers):
        ws.append((rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32))
        bs.append(np.zeros(width, np.float32))
    return ws, bs


def numpy_step(x, t, ws, bs):
    """Forward + backward of the MLP with MSE loss, by hand; returns the weight gradients."""
    acts, h = [x], x
    for i, (w, b) in enumerate(zip(ws, bs)):
        h = h @ w.T + b
        if i < len(ws) - 1:
            h = np.maximum(h, 0)
        acts.append(h)
    d = acts[-1] - t
    g = d * (2.0 / d.size)
    grads = []
    for i in reversed(range(len(ws))):
        if i < len(ws) - 1:
            g = g * (acts[i + 1] > 0)
        grads.append((g.T @ acts[i], g.sum(axis=0)))
        if i > 0:
            g = g @ ws[i]
    return grads


def npjem_step(x, t, params):
    for p in params:
        p.grad = None
    h = x
    n = len(params) // 2
    for i in range(n):
        h = F.linear(h, params[2 * i], params[2 * i + 1])
        if i < n - 1:
            h = F.relu(h)
    loss = F.mse_loss(h, t)
    loss.backward()
    return loss


def torch_step(torch, x, t, params):
    for p in params:
        p.grad = None
    h = x
    n = len(params) // 2
    for i in range(n):
        h = torch.nn.functional.linear(h, params[2 * i], params[2 * i + 1])
        if i < n - 1:
            h = torch.relu(h)
    loss = torch.nn.functional.mse_loss(h, t)
    loss.backward()


def chain(n):
    x = npjem.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(n):
        y = y * 1.00001 + 0.0
    t0 = time.perf_counter()
    y.backward()
    return time.perf_counter() - t0, x.grad.item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    ws, bs = make_weights(args.width, args.layers, rng)
    x = rng.standard_normal((args.batch, args.width)).astype(np.float32)
    t = rng.standard_normal((args.batch, args.width)).astype(np.float32)

    rows = []
    t_np = time_it(lambda: numpy_step(x, t, ws, bs), args.repeats, stat="median")
    rows.append(("hand-written NumPy", t_np))

    params = []
    for w, b in zip(ws, bs):
        params += [npjem.tensor(w, requires_grad=True), npjem.tensor(b, requires_grad=True)]
    xt, tt = npjem.tensor(x), npjem.tensor(t)
    t_nj = time_it(lambda: npjem_step(xt, tt, params), args.repeats, stat="median")
    rows.append(("npjem", t_nj))

    # The two must compute the same thing for the comparison to mean anything.
    ref = numpy_step(x, t, ws, bs)[::-1]
    err = max(float(np.abs(params[2 * i].grad.data - ref[i][0]).max()) for i in range(args.layers))

    try:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        tparams = []
        for w, b in zip(ws, bs):
            tparams += [torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)]
        tx, ttt = torch.tensor(x), torch.tensor(t)
        rows.append((f"PyTorch {torch.__version__} CPU ({torch.get_num_threads()} threads)",
                     time_it(lambda: torch_step(torch, tx, ttt, tparams), args.repeats, stat="median")))
    except (ImportError, OSError):
        rows.append(("PyTorch (not installed)", float("nan")))

    print(f"MLP {args.layers} x Linear({args.width}, {args.width}) + ReLU, batch {args.batch}, float32, "
          f"forward+backward, median of {args.repeats}")
    print(f"{'implementation':<40} {'ms/step':>10} {'vs NumPy':>10}")
    for name, sec in rows:
        print(f"{name:<40} {sec * 1e3:>10.2f} {sec / t_np:>9.2f}x")
    print(f"max |dW npjem - dW NumPy| = {err:.2e}")
    secs, g = chain(100_000)
    print(f"backward through a chain of 200,000 scalar ops: {secs:.2f} s (grad {g:.4f}, no RecursionError)")


if __name__ == "__main__":
    main()
