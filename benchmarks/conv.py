"""Conv2d speed on NumPy against the machine's own GEMM speed (and PyTorch CPU, if installed).

    python benchmarks/conv.py [--batch 256] [--channels 64] [--size 16] [--repeats 5] [--rounds 3]
                              [--torch-threads 2]

Conv2d C→C, 3×3, padding 1, on (N, C, H, W) float32. Rows: forward (no grad), forward
(recording, weight requires grad), forward+backward with the weight gradient only (a batch of
images that needs no gradient) and with both GEMMs of the backward (weight and input
gradients); then the same with the forward's column matrix kept for the weight gradient
(``cache_cols``), the choice npjem makes on a GPU, where nothing is blocked. GFLOP/s count
2·N·Ho·Wo·C_out·C_in·9 per GEMM (one in forward, two in backward). The NumPy float32 GEMM is
timed in the same run, on the forward's shape (N·H·W × 9C) @ (9C × C) and a square 1024
matmul; the ratio column divides by the faster of the two. The target is ≥ 35%.

Times are the best of ``--rounds`` × ``--repeats`` runs, rounds interleaving all rows: the
machine may be shared, and the minimum is the least disturbed estimate. The load average is
printed for context. OpenBLAS with 2 threads degrades badly when another process holds a
core (a thread waits for its descheduled partner); ``OPENBLAS_NUM_THREADS=1`` gives steadier
numbers on a busy machine.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import npjem  # noqa: E402
from _timing import time_it  # noqa: E402
from npjem import nn  # noqa: E402
from npjem.nn import functional as F  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--torch-threads", type=int, default=2)
    a = ap.parse_args()
    n, c, s = a.batch, a.channels, a.size
    rng = np.random.default_rng(0)

    conv = nn.Conv2d(c, c, 3, padding=1, generator=0)
    x_np = rng.standard_normal((n, c, s, s), dtype=np.float32)
    gy = rng.standard_normal((n, c, s, s), dtype=np.float32)
    x = npjem.tensor(x_np)
    gflop = 2.0 * n * s * s * c * c * 9 / 1e9  # one GEMM

    def forward_nograd():
        with npjem.no_grad():
            conv(x)

    def forward_graph():
        conv(x)

    def fb_weight():
        conv(x).backward(gy)
        conv.zero_grad()

    xr = npjem.tensor(x_np, requires_grad=True)

    def fb_both():
        conv(xr).backward(gy)
        conv.zero_grad()
        xr.grad = None

    g = F._conv_geometry(x, conv.weight, 1, 1, 1, 1, "bench")

    def fb_both_cached():
        y = F.Conv2dFunction(g, cache_cols=True)(xr, conv.weight, conv.bias)
        y.backward(gy)
        conv.zero_grad()
        xr.grad = None

    def fb_weight_cached():
        y = F.Conv2dFunction(g, cache_cols=True)(x, conv.weight, conv.bias)
        y.backward(gy)
        conv.zero_grad()

    m, k = n * s * s, 9 * c
    a_mat = rng.standard_normal((m, k), dtype=np.float32)
    b_mat = rng.standard_normal((k, c), dtype=np.float32)
    sq = rng.standard_normal((1024, 1024), dtype=np.float32)

    cases = [
        ("npjem forward, no_grad", forward_nograd, gflop),
        ("npjem forward, recording", forward_graph, gflop),
        ("npjem fwd+bwd, dW only", fb_weight, 2 * gflop),
        ("npjem fwd+bwd, dW and dx", fb_both, 3 * gflop),
        ("npjem fwd+bwd, dW only, cached cols", fb_weight_cached, 2 * gflop),
        ("npjem fwd+bwd, dW and dx, cached cols", fb_both_cached, 3 * gflop),
    ]
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(a.torch_threads)
        tconv = torch.nn.Conv2d(c, c, 3, padding=1)
        tx = torch.from_numpy(x_np)
        txr = torch.from_numpy(x_np.copy()).requires_grad_(True)
        tgy = torch.from_numpy(gy)

        def t_fwd():
            with torch.no_grad():
                tconv(tx)

        def t_fb():
            tconv(txr).backward(tgy)
            tconv.zero_grad()
            txr.grad = None

        cases.append((f"torch {torch.__version__} forward, no_grad ({a.torch_threads} threads)", t_fwd, gflop))
        cases.append((f"torch fwd+bwd, dW and dx ({a.torch_threads} threads)", t_fb, 3 * gflop))
    # The GEMMs the convolution is made of, timed in the same rounds on this machine.
    gemms = [("tall", lambda: a_mat @ b_mat, 2.0 * m * k * c / 1e9),
             ("square", lambda: sq @ sq, 2.0 * 1024 ** 3 / 1e9)]

    # Rounds interleave every case, and each keeps its best time: on a shared machine a
    # burst of load then spoils one round of every row instead of all of one row.
    best = {}
    for _ in range(a.rounds):
        for name, fn, _fl in cases + gemms:
            t = time_it(fn, a.repeats)
            best[name] = min(t, best.get(name, np.inf))
    rows = [(name, best[name], fl) for name, _, fl in cases]
    t_tall, t_sq = best["tall"], best["square"]
    gemm_tall, gemm_sq = gemms[0][2] / t_tall, gemms[1][2] / t_sq
    gemm = max(gemm_tall, gemm_sq)

    print(f"Conv2d {c}->{c} 3x3 pad 1 on ({n}, {c}, {s}, {s}) float32;  NumPy {np.__version__};  "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"NumPy float32 GEMM: ({m}x{k})@({k}x{c}) {t_tall * 1e3:.1f} ms = {gemm_tall:.1f} GFLOP/s;  "
          f"1024^3 {t_sq * 1e3:.1f} ms = {gemm_sq:.1f} GFLOP/s")
    w = max(len(r[0]) for r in rows)
    print(f"{'':{w}}  {'time ms':>9}  {'GFLOP/s':>8}  {'of GEMM':>8}")
    for name, t, fl in rows:
        print(f"{name:{w}}  {t * 1e3:9.1f}  {fl / t:8.1f}  {100 * fl / t / gemm:7.0f}%")


if __name__ == "__main__":
    main()
