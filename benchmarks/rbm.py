"""One PCD epoch of an RBM on the digits: npjem's BernoulliRBM.fit against scikit-learn's.

    python benchmarks/rbm.py [--hidden 16 64 256] [--batch-size 10] [--repeats 7] [--device cpu]

Both fit all 1,797 images of ``sklearn.datasets.load_digits`` scaled to [0, 1] (64 pixels) for
one epoch (``n_iter=1``) with the same sizes: mini-batches of ``batch_size`` rows, PCD-1 with
``batch_size`` persistent particles. npjem records no per-epoch history (``monitor=None``), as
sklearn records none with ``verbose=0``. Times are the minimum over ``repeats`` fits after a
warm-up, per dtype; the goal is npjem no slower than sklearn. ``--device cuda`` times npjem on
a GPU (the data moved there first) next to sklearn on the CPU.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from _timing import time_it  # noqa: E402
from npjem import backend  # noqa: E402
from npjem.ebm.rbm import BernoulliRBM  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    from sklearn.datasets import load_digits
    from sklearn.neural_network import BernoulliRBM as SklearnRBM

    X = load_digits().data
    X = (X - X.min()) / (X.max() - X.min())
    print(f"one PCD epoch on digits ({X.shape[0]} x {X.shape[1]}), batch_size={args.batch_size}, "
          f"min of {args.repeats}; npjem on {args.device}, sklearn on cpu")
    print(f"{'dtype':<8} {'hidden':>6} {'sklearn ms':>11} {'npjem ms':>9} {'npjem/sklearn':>14}")
    for dtype in (np.float64, np.float32):
        Xd = X.astype(dtype)
        Xn = backend.to_device(Xd, args.device)
        for h in args.hidden:
            def sk():
                SklearnRBM(h, batch_size=args.batch_size, n_iter=1, random_state=0).fit(Xd)

            def ours():
                BernoulliRBM(h, batch_size=args.batch_size, n_iter=1, generator=0, monitor=None,
                             progress=False).fit(Xn)
                backend.synchronize(args.device)

            t_sk = time_it(sk, args.repeats)
            t_np = time_it(ours, args.repeats)
            print(f"{np.dtype(dtype).name:<8} {h:>6} {t_sk * 1e3:>11.1f} {t_np * 1e3:>9.1f} {t_np / t_sk:>14.2f}")


if __name__ == "__main__":
    main()
