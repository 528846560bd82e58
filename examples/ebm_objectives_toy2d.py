"""Train an MLP energy on 2-D toy densities with the objectives that need no sampling.

    python examples/ebm_objectives_toy2d.py [--datasets 8gaussians rings checkerboard]
        [--objectives nce sm ssm dsm] [--steps 1500] [--out runs/ebm_objectives_toy2d] [--seed 0]

For every (data set, objective) it runs :func:`npjem.ebm.toy2d.run` with one of

* ``nce``: noise-contrastive estimation against the Gaussian fitted to the data (its covariance
  widened ×1.5²; ``--nce-noise uniform``: uniform on the box), the log-normaliser c learned beside
  the energy, ν = 1 (``--nce-ratio``);
* ``sm``: exact score matching (two Hessian rows per batch in 2-D);
* ``ssm``: sliced score matching, variance-reduced, one Rademacher direction;
* ``dsm``: denoising score matching at one noise level σ (``--sigma``, default 0.05);

writes a PNG of the learned density exp(−E)/Z beside the true one, and prints a table of test NLLs
(nats per point): the learned density's (normalised on a 400² grid), the true density's, and the
best single Gaussian's (the floor). Ratio matching, pseudo-likelihood and MPF are for binary data
and are not run here. ``npjem ebm nce --data rings`` runs one cell from the command line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from npjem.ebm import toy2d  # noqa: E402

OBJECTIVES = ("nce", "sm", "ssm", "dsm")


def main(argv=None):
    ap = argparse.ArgumentParser(description="MLP energies on 2-D toy densities: NCE, SM, SSM, DSM.")
    ap.add_argument("--datasets", nargs="+", default=["8gaussians", "rings", "checkerboard"])
    ap.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=OBJECTIVES)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--sigma", type=float, default=0.05, help="DSM noise level")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--out", default="runs/ebm_objectives_toy2d")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cosine", action="store_true", help="cosine learning-rate decay to 0")
    ap.add_argument("--nce-noise", default="gaussian", choices=["gaussian", "uniform"],
                    help="NCE noise: the data's Gaussian widened x1.5, or uniform on the box")
    ap.add_argument("--nce-ratio", type=int, default=1, help="NCE noise points per data point (ν)")
    args = ap.parse_args(argv)
    results = []
    for name in args.datasets:
        for objective in args.objectives:
            r = toy2d.run(name, objective, steps=args.steps, seed=args.seed, out=args.out,
                          batch_size=args.batch_size, lr=args.lr, sigma=args.sigma, cosine=args.cosine,
                          nce_noise=args.nce_noise, nce_ratio=args.nce_ratio)
            print(f"{name} {objective}: NLL {r['nll']:.3f} (true {r['nll_true']:.3f}, Gaussian "
                  f"{r['nll_gaussian']:.3f}) in {r['seconds']:.0f}s -> {r['png']}", flush=True)
            results.append(r)
    print(toy2d.table(results))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"command": " ".join(sys.argv), "results": results}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
