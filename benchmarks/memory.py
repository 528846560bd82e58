"""Peak host memory of one SimCLR training step, with and without keeping the graph.

    python benchmarks/memory.py [--batch 64] [--size 32] [--steps 3]

A training loop (``npjem.methods.fit``) holds the previous step's ``loss`` while it computes
the next one. When ``backward`` keeps the graph, that loss still reaches every activation of
the previous step (each op holds its inputs), so the next forward pass runs with two steps'
activations alive. ``backward()`` now frees what the graph saved, as PyTorch does; with
``retain_graph=True`` it keeps it (the old behaviour).

The step: two views × ``batch`` images of 3×``size``×``size`` through ``nn.ConvNet`` (widths 32,
64, 128, strides 1, 2, 2) and SimCLR's projector, NT-Xent, SGD with momentum. Peak memory is
``tracemalloc``'s peak (NumPy reports its array buffers to tracemalloc) during the last of
``steps`` steps, counting everything allocated since the first step began (activations, graph,
gradients, momentum buffers; not the initial parameters), each step written as ``fit`` writes it (the old loss alive until the new one
replaces it). Float32, NumPy, one BLAS thread recommended (``OPENBLAS_NUM_THREADS=1``).
"""
from __future__ import annotations

import argparse
import os
import sys
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from npjem import nn  # noqa: E402
from npjem.methods import SimCLR  # noqa: E402
from npjem.optim import SGD  # noqa: E402


def _identity_views(x, generator=None):
    # Augmentation is not what is measured: two fixed views keep the step deterministic.
    return x, x[:, :, ::-1, :].copy()


def peak_mib(batch, size, steps, retain_graph):
    backbone = nn.ConvNet(3, widths=(32, 64, 128), strides=(1, 2, 2), generator=0)
    method = SimCLR(backbone, hidden_dim=128, out_dim=64, views=_identity_views, generator=1)
    opt = SGD(list(method.parameters()), lr=0.05, momentum=0.9)
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)  # host
    loss = None
    peak = 0
    tracemalloc.start()
    try:
        for step in range(steps):
            tracemalloc.reset_peak()
            loss = method.training_loss(x)
            opt.zero_grad()
            loss.backward(retain_graph=retain_graph)
            opt.step()
            if step == steps - 1:
                peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del loss
    return peak / 2**20


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args(argv)
    rows = [("backward(retain_graph=True)  (keeps the graph)", True),
            ("backward()  (frees the graph)", False)]
    print(f"SimCLR step, 2 x {args.batch} images 3x{args.size}x{args.size}, float32: "
          f"peak during step {args.steps} of what was allocated since step 1 began (tracemalloc)")
    print(f"{'':50s} {'peak MiB':>9s}")
    results = {}
    for label, retain in rows:
        results[retain] = peak_mib(args.batch, args.size, args.steps, retain)
        print(f"{label:50s} {results[retain]:9.1f}")
    print(f"{'ratio (frees / keeps)':50s} {results[False] / results[True]:9.2f}")


if __name__ == "__main__":
    main()
