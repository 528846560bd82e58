"""Train an MLP energy on 2-D toy densities with CD-k, persistent CD and a replay buffer.

    python examples/ebm_toy2d.py [--datasets 8gaussians rings checkerboard] [--methods cd pcd replay]
                                 [--steps 1500] [--out runs/ebm_toy2d] [--seed 0]

For every (data set, method) it runs :func:`npjem.ebm.toy2d.run`: ``MLPEnergy(2, hidden=(128, 128))``
trained by maximum likelihood with Langevin negatives (``npjem.ebm.train_ebm``), a PNG of the learned
density exp(−E)/Z with samples on top and the true density beside it, and the test NLLs (nats per
point) of the learned density (normalised on a 400² grid), the true density (its entropy, from
``toy2d``'s exact log-density) and the best single Gaussian (the floor to beat). ``npjem ebm cd
--data rings`` runs one cell of the table from the command line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from npjem.ebm import toy2d  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description="MLP energies on 2-D toy densities: CD-k, PCD, replay buffer.")
    ap.add_argument("--datasets", nargs="+", default=["8gaussians", "rings", "checkerboard"])
    ap.add_argument("--methods", nargs="+", default=list(toy2d.SAMPLING), choices=toy2d.SAMPLING)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--k", type=int, default=None, help="sampler steps per update (default per method)")
    ap.add_argument("--step-size", type=float, default=None, help="Langevin step (default per data set)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--buffer-size", type=int, default=2048, help="replay buffer size")
    ap.add_argument("--n-particles", type=int, default=None, help="PCD chains (default: the batch size)")
    ap.add_argument("--pcd-init", default="uniform", choices=["uniform", "data"], help="where PCD's chains start")
    ap.add_argument("--out", default="runs/ebm_toy2d")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    results = []
    for name in args.datasets:
        for method in args.methods:
            r = toy2d.run(name, method, steps=args.steps, seed=args.seed, out=args.out, batch_size=args.batch_size,
                          lr=args.lr, alpha=args.alpha, k=args.k, step_size=args.step_size,
                          buffer_size=args.buffer_size, n_particles=args.n_particles, pcd_init=args.pcd_init)
            print(f"{name} {method}: NLL {r['nll']:.3f} (true {r['nll_true']:.3f}, Gaussian "
                  f"{r['nll_gaussian']:.3f}) in {r['seconds']:.0f}s -> {r['png']}", flush=True)
            results.append(r)
    print(toy2d.table(results))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"command": " ".join(sys.argv), "results": results}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
