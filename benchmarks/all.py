"""Every speed and memory figure of the README in one run (CPU, float32).

    python benchmarks/all.py [--pairs 9] [--threads 2] [--quick]

1. The SimCLR step (``simclr_step.py``'s: 2 × 128 images 3×32×32) against its PyTorch twin:
   ``--pairs`` paired runs in this one process, npjem and PyTorch alternating (each with
   ``--threads`` threads: NumPy's BLAS through threadpoolctl, ``torch.set_num_threads``); the
   ratio is taken per pair, and the median and range of the ratios are printed, in wall time
   and in CPU time (which does not count waiting for a core on a shared machine).
2. Conv2d 64→64 3×3 on (256, 64, 16, 16), forward + weight and input gradients, against
   NumPy's own float32 GEMM ceiling (the faster of the forward's GEMM shape and a square 1024
   matmul, timed in the same run): the share of the ceiling the convolution reaches.
3. The step as a share of its FLOP bound: the step's convolution FLOPs (one GEMM forward, two
   backward, none for the images' gradient) at the ceiling of 2., divided by the step's time.
4. Langevin steps of an MLP energy against PyTorch, one thread each (``langevin.py``'s loop),
   the two loops alternating, the best of several rounds of 200 steps.
5. One PCD epoch of the RBM against scikit-learn's ``BernoulliRBM`` (``rbm.py``'s), one thread,
   alternating, the best of several rounds.
6. The step's peak memory (``memory.py``: 2 × 64 images, tracemalloc, graph freed).

Times are medians or minima as labelled; with one thread they are CPU time (``process_time``:
it does not count waiting for a core on a shared machine), with more, wall time. The load
average and the versions are printed with them. ``--quick`` runs fewer repeats (a smoke run, not figures to quote).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import npjem  # noqa: E402
from npjem import nn  # noqa: E402
from simclr_step import NpjemStep, TorchStep, _blas_limiter, _load, _Null  # noqa: E402


def _blas(threads):
    limiter = _blas_limiter()
    return limiter(limits=threads, user_api="blas") if limiter is not None else _Null()


def step_vs_torch(torch, pairs, threads, batch=128):
    """Per-pair ratios npjem / PyTorch of one SimCLR step, and both sets of times (seconds)."""
    rng = np.random.default_rng(0)
    x1, x2 = (rng.standard_normal((batch, 3, 32, 32)).astype(np.float32) for _ in range(2))
    ours = NpjemStep(0)
    theirs = TorchStep(torch, *ours.state_dicts())
    tx1, tx2 = torch.from_numpy(x1), torch.from_numpy(x2)
    torch.set_num_threads(threads)
    t_ours, t_theirs, cpu_ours, cpu_theirs = [], [], [], []

    def timed(fn, x, y, wall, cpu):
        _settle(threads)
        c0 = time.process_time()
        wall.append(fn(x, y, record=False)[1])
        cpu.append(time.process_time() - c0)

    with _blas(threads):
        ours(x1, x2, record=False)
        theirs(tx1, tx2, record=False)
        for i in range(pairs):
            # Alternate which goes first, so neither always follows the other's cache state.
            if i % 2:
                timed(theirs, tx1, tx2, t_theirs, cpu_theirs)
                timed(ours, x1, x2, t_ours, cpu_ours)
            else:
                timed(ours, x1, x2, t_ours, cpu_ours)
                timed(theirs, tx1, tx2, t_theirs, cpu_theirs)
    return (np.array(t_ours) / np.array(t_theirs), t_ours, t_theirs,
            np.array(cpu_ours) / np.array(cpu_theirs), cpu_ours, cpu_theirs)


def _clock(threads):
    """CPU time with one thread (it does not count waiting for a core on a shared machine), wall
    time with more (CPU time would add the threads up)."""
    return time.process_time if threads == 1 else time.perf_counter


# A multi-threaded OpenBLAS call leaves its worker threads spinning for up to ~0.1 s
# (OPENBLAS_THREAD_TIMEOUT, 2^28 cycles by default), and PyTorch's OpenMP workers spin after
# its ops too. A case timed right after another library's threaded work shares the cores
# with those spinning threads (measured: npjem's convolution 15-30 ms slower right after a
# 2-thread 1024² matmul than after a pause). So with more than one thread each timed call
# is preceded by a pause (``_SETTLE``), except the GEMM ceiling's, which is preceded by one
# untimed call of itself instead: after a pause OpenBLAS's threads are asleep, and waking
# them would be charged to the ceiling (it measured 165 instead of 200 GFLOP/s).
_SETTLE = 0.25


def _settle(threads):
    if threads > 1:
        time.sleep(_SETTLE)


def best_of(fns, repeats, clock, threads=1, warm=()):
    """The minimum over ``repeats`` rounds of each function's time, the rounds interleaving
    the functions (a change of load hits all of them), after one warm-up call each. With more
    than one thread, each call follows a pause, or for the indices in ``warm`` an untimed
    call of the same function."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            if i in warm and threads > 1:
                fn()
            else:
                _settle(threads)
            t0 = clock()
            fn()
            best[i] = min(best[i], clock() - t0)
    return best


def conv_vs_ceiling(threads, repeats, n=256, c=64, s=16):
    """GFLOP/s of Conv2d c→c 3×3 padding 1, forward + both gradients (three GEMMs' FLOPs), and
    NumPy's float32 GEMM ceiling: the faster of the conv's forward GEMM shape and a 1024²
    matmul, timed in the same rounds."""
    rng = np.random.default_rng(0)
    conv = nn.Conv2d(c, c, 3, padding=1, bias=False, generator=0)
    x = npjem.tensor(rng.standard_normal((n, c, s, s), dtype=np.float32), requires_grad=True)
    gy = npjem.Tensor(rng.standard_normal((n, c, s, s), dtype=np.float32))
    a = rng.standard_normal((n * s * s, 9 * c), dtype=np.float32)
    b = rng.standard_normal((9 * c, c), dtype=np.float32)
    sq = rng.standard_normal((1024, 1024), dtype=np.float32)

    def fwd_bwd():
        x.grad = None
        conv.weight.grad = None
        conv(x).backward(gy)

    with _blas(threads):
        t, t_gemm, t_sq = best_of([fwd_bwd, lambda: a @ b, lambda: sq @ sq], repeats, _clock(threads),
                                  threads, warm=(1, 2))
    gemm_flop = 2.0 * a.shape[0] * a.shape[1] * b.shape[1]
    ceiling = max(gemm_flop / t_gemm, 2.0 * 1024 ** 3 / t_sq) / 1e9
    return 3 * gemm_flop / t / 1e9, t, ceiling


def step_gflop(batch=128):
    """FLOPs of the step's convolutions: ConvNet(32, 64, 128), strides (1, 2, 2), 3×3, 2·batch images."""
    n, h, c, total = 2 * batch, 32, 3, 0.0
    for o, s in zip((32, 64, 128), (1, 2, 2)):
        h = (h - 1) // s + 1
        gemm = 2.0 * n * h * h * o * 9 * c
        total += gemm * (2 if c == 3 else 3)  # the images need no input gradient
        c = o
    return total / 1e9


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=9, help="paired SimCLR steps (default 9)")
    ap.add_argument("--threads", type=int, default=2, help="threads for the step and the conv (default 2)")
    ap.add_argument("--quick", action="store_true", help="few repeats: a smoke run")
    args = ap.parse_args(argv)
    reps = 2 if args.quick else 7
    import torch

    print(f"numpy {np.__version__}, torch {torch.__version__}, {os.cpu_count()} CPUs, "
          f"load average at start {_load()}")

    ratios, t_o, t_t, cpu_ratios, cpu_o, cpu_t = step_vs_torch(torch, args.pairs, args.threads)
    print(f"\n1. SimCLR step, {args.pairs} paired runs, {args.threads} thread(s) each")
    print(f"   npjem   median {np.median(t_o) * 1e3:7.1f} ms  (range {min(t_o) * 1e3:.1f}-{max(t_o) * 1e3:.1f})")
    print(f"   PyTorch median {np.median(t_t) * 1e3:7.1f} ms  (range {min(t_t) * 1e3:.1f}-{max(t_t) * 1e3:.1f})")
    print(f"   npjem / PyTorch per pair: median {np.median(ratios):.2f}, range {ratios.min():.2f}-{ratios.max():.2f}"
          f"   (floor <= 1.15, goal <= 1.0)")
    # CPU time (this process, all its threads) does not count waiting for a core: on a shared
    # machine it is the steadier of the two; on an idle one with 1 thread they agree.
    print(f"   the same in CPU time: median {np.median(cpu_ratios):.2f}, range {cpu_ratios.min():.2f}-"
          f"{cpu_ratios.max():.2f}")

    gf, t_conv, ceiling = conv_vs_ceiling(args.threads, reps)
    clock = "CPU" if args.threads == 1 else "wall"
    print(f"\n2. Conv2d 64->64 3x3 on (256, 64, 16, 16), forward + both gradients, {args.threads} thread(s), "
          f"best of {reps} interleaved rounds, {clock} time")
    print(f"   {t_conv * 1e3:.1f} ms, {gf:.1f} GFLOP/s; NumPy float32 GEMM ceiling {ceiling:.1f} GFLOP/s; "
          f"{100 * gf / ceiling:.0f} % of the ceiling   (floor >= 65 %, goal >= 70 %)")

    flop = step_gflop()
    bound = flop / ceiling
    # The step in the same clock as the ceiling: CPU time with one thread, wall time with more.
    s_o, s_t = (cpu_o, cpu_t) if args.threads == 1 else (t_o, t_t)
    print(f"\n3. The step's convolutions: {flop:.1f} GFLOP; at the ceiling {bound * 1e3:.0f} ms ({clock} time); "
          f"that bound is {100 * bound / np.median(s_o):.0f} % of npjem's median step "
          f"({100 * bound / min(s_o):.0f} % of its fastest), {100 * bound / np.median(s_t):.0f} % of PyTorch's")

    print("\n4. Langevin, MLP energy, 1 thread each, CPU time per step (best of interleaved rounds)")
    from langevin import torch_loop
    from npjem import backend
    from npjem.ebm import MLPEnergy, langevin
    torch.set_num_threads(1)
    with _blas(1):
        for batch in (256, 1024):
            for hidden in (64, 128):
                energy = MLPEnergy(2, hidden=(hidden, hidden), dtype=np.float32, generator=0)
                weights = [(torch.tensor(backend.to_numpy(m.weight.data)), torch.tensor(backend.to_numpy(m.bias.data)))
                           for m in energy.net if hasattr(m, "weight")]
                x0 = np.random.default_rng(1).standard_normal((batch, 2)).astype(np.float32)
                x0_t = torch.tensor(x0)
                gen = npjem.random.default_rng(0)
                k = 50 if args.quick else 200
                tn, tt = (t / k for t in best_of([lambda: langevin(energy, x0, k, 1e-3, generator=gen),
                                                  lambda: torch_loop(torch, weights, x0_t, k, 1e-3)],
                                                 2 if args.quick else 5, time.process_time))
                print(f"   batch {batch:5d} width {hidden:4d}: npjem {tn * 1e3:.3f} ms, PyTorch {tt * 1e3:.3f} ms, "
                      f"ratio {tn / tt:.2f}   (floor <= 1.5, goal <= 1.2)")

    print("\n5. RBM, one PCD epoch on the digits, batch 10, 1 thread, CPU time (best of interleaved rounds)")
    from sklearn.datasets import load_digits
    from sklearn.neural_network import BernoulliRBM as SklearnRBM

    from npjem.ebm.rbm import BernoulliRBM
    X = load_digits().data
    X = ((X - X.min()) / (X.max() - X.min())).astype(np.float64)
    with _blas(1):
        for h in (16, 64, 256):
            t_sk, t_np = best_of([lambda: SklearnRBM(h, batch_size=10, n_iter=1, random_state=0).fit(X),
                                  lambda: BernoulliRBM(h, batch_size=10, n_iter=1, generator=0, monitor=None,
                                                       progress=False).fit(X)], reps, time.process_time)
            print(f"   hidden {h:4d}: sklearn {t_sk * 1e3:.1f} ms, npjem {t_np * 1e3:.1f} ms, ratio {t_np / t_sk:.2f}"
                  f"   (kept <= 1)")

    from memory import peak_mib
    with _blas(1):
        peak = peak_mib(64, 32, 3, retain_graph=False)
    print(f"\n6. Peak memory of the step (2 x 64 images, tracemalloc): {peak:.1f} MiB   (kept <= 114.6)")
    print(f"\nload average at end {_load()}")


if __name__ == "__main__":
    main()
