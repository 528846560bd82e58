"""Langevin steps per second of an MLP energy: npjem.ebm.langevin against the same loop in PyTorch.

    python benchmarks/langevin.py [--batch 256 1024] [--hidden 64 128] [--dim 2] [--steps 200] [--repeats 5]
                                  [--dtype float32] [--threads 1] [--device cpu]

One step, in both: x → E(x) = MLP(x) (Linear, swish, Linear, swish, Linear → 1), ∇ₓE by reverse
mode (``npjem.grad`` / ``torch.autograd.grad``) without touching the parameters' gradients, then
x ← x − η∇ₓE + √(2η)ξ. Both get the same weights and thread count (``torch.set_num_threads``
and ``OPENBLAS_NUM_THREADS``, which must be set before NumPy loads: run with
``OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1`` for one thread). Before timing, a noiseless run
checks that both loops produce the same trajectory. Prints a table; the target is npjem within
1.5x of PyTorch.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import npjem  # noqa: E402
from npjem import backend  # noqa: E402
from npjem.ebm import MLPEnergy, langevin  # noqa: E402


def torch_loop(torch, weights, x0, steps, eta, noise=True, seed=0):
    """The same Langevin loop in PyTorch; weights are [(W, b), ...] as torch tensors."""
    gen = torch.Generator().manual_seed(seed)
    x = x0.clone()
    sigma = (2.0 * eta) ** 0.5
    for _ in range(steps):
        x = x.detach().requires_grad_(True)
        h = x
        for i, (w, b) in enumerate(weights):
            h = torch.nn.functional.linear(h, w, b)
            if i < len(weights) - 1:
                h = h * torch.sigmoid(h)
        (g,) = torch.autograd.grad(h.sum(), x)
        x = x.detach() - eta * g
        if noise:
            x = x + sigma * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    return x.detach()


def per_step(fns, steps, repeats=5):
    """Seconds per step of each function in ``fns`` (the best of ``repeats`` runs of ``steps``).

    The functions' runs alternate, so a change of load on a shared machine hits all of them."""
    for fn in fns:
        fn(max(steps // 10, 2))  # warm-up
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn(steps)
            best[i] = min(best[i], time.perf_counter() - t0)
    return [b / steps for b in best]


def main(argv=None):
    ap = argparse.ArgumentParser(description="Langevin steps/s: npjem vs PyTorch.")
    ap.add_argument("--batch", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--hidden", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--dim", type=int, default=2)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--eta", type=float, default=1e-3)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    import torch  # noqa: PLC0415

    torch.set_num_threads(args.threads)
    dtype = np.dtype(args.dtype)
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    tdev = "cuda" if args.device.startswith("cuda") else "cpu"
    print(f"# OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')} torch threads={torch.get_num_threads()} "
          f"dtype={args.dtype} device={args.device} torch {torch.__version__} numpy {np.__version__}")
    print("| batch | hidden | npjem ms/step | torch ms/step | npjem steps/s | torch steps/s | npjem / torch |")
    print("|---|---|---|---|---|---|---|")
    for batch in args.batch:
        for hidden in args.hidden:
            energy = MLPEnergy(args.dim, hidden=(hidden, hidden), dtype=dtype, device=args.device, generator=0)
            weights = [(torch.tensor(backend.to_numpy(m.weight.data), device=tdev),
                        torch.tensor(backend.to_numpy(m.bias.data), device=tdev))
                       for m in energy.net if hasattr(m, "weight")]
            x0_np = np.random.default_rng(1).standard_normal((batch, args.dim)).astype(dtype)  # host
            x0 = backend.to_device(x0_np, args.device)
            x0_t = torch.tensor(x0_np, dtype=tdtype, device=tdev)
            # The same trajectory without noise (a check that the two loops do the same work).
            a = backend.to_numpy(langevin(energy, x0, 5, args.eta, noise_scale=0.0, generator=0).data)
            b = torch_loop(torch, weights, x0_t, 5, args.eta, noise=False).cpu().numpy()
            tol = 1e-4 if dtype == np.float32 else 1e-10
            if not np.allclose(a, b, rtol=tol, atol=tol):
                raise SystemExit(f"npjem and torch trajectories differ: max {np.abs(a - b).max():.3g}")
            gen = npjem.random.default_rng(0, args.device)

            def run_npjem(n):
                langevin(energy, x0, n, args.eta, generator=gen)
                backend.synchronize(args.device)

            def run_torch(n):
                torch_loop(torch, weights, x0_t, n, args.eta)
                if tdev == "cuda":
                    torch.cuda.synchronize()

            tn, tt = per_step([run_npjem, run_torch], args.steps, args.repeats)
            print(f"| {batch} | {hidden} | {tn * 1e3:.3f} | {tt * 1e3:.3f} | {1 / tn:.0f} | {1 / tt:.0f} | "
                  f"{tn / tt:.2f} |", flush=True)


if __name__ == "__main__":
    main()
