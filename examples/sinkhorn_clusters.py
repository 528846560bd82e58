"""Split a 2-D point cloud into K groups of equal size with Sinkhorn–Knopp; write a PNG.

    python3 examples/sinkhorn_clusters.py [--density 8gaussians] [--k 3] [--n 600] [--out clusters.png]

The equipartition that keeps SwAV from collapsing, applied to points: ``sinkhorn_clusters``
alternates Sinkhorn assignments with equal cluster masses and centroid updates, then rounds
the soft assignment to hard labels with ⌊N/K⌋ or ⌈N/K⌉ points per group. Eight equal Gaussian
blobs into three groups cannot be done along blob boundaries, so the balanced groups cut
through blobs, while the nearest-centroid rule on the same centroids gives unequal groups.
The script prints both sets of sizes and draws the balanced groups (one colour each, centroids
as black crosses).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import npjem  # noqa: E402
from npjem import backend  # noqa: E402
from npjem.data import toy2d  # noqa: E402
from npjem.losses import sinkhorn_clusters  # noqa: E402

PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40), (128, 0, 0)]


def cluster(density, n, k, *, epsilon=0.05, steps=30, seed=0, device=None):
    """Sample ``n`` points of a ``toy2d`` density and split them into ``k`` equal groups.

    Returns (points, result, nearest): host points (n, 2), the ``BalancedClusters`` result with
    host arrays, and the labels the nearest-centroid rule gives with the same centroids.
    """
    dist = toy2d.get(density)
    gen = npjem.random.default_rng(seed, device)
    pts = dist.sample(n, gen, dtype=np.float64)
    res = sinkhorn_clusters(pts, k, epsilon=epsilon, n_steps=steps, generator=gen)
    res = type(res)(*(backend.to_numpy(a) for a in res))
    pts = backend.to_numpy(pts)
    nearest = ((pts[:, None, :] - res.centroids[None]) ** 2).sum(axis=2).argmin(axis=1)
    return pts, res, nearest


def render(points, labels, centroids, bounds, size=480):
    """A Pillow image of the points coloured by label and the centroids as black crosses."""
    from PIL import Image, ImageDraw

    lo, hi = bounds
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)

    def pixel(p):
        u = (p - lo) / (hi - lo) * (size - 1)
        return float(u[0]), float(size - 1 - u[1])  # y up

    for p, label in zip(points, labels):
        x, y = pixel(p)
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=PALETTE[int(label) % len(PALETTE)])
    for c in centroids:
        x, y = pixel(c)
        draw.line([x - 7, y - 7, x + 7, y + 7], fill=(0, 0, 0), width=3)
        draw.line([x - 7, y + 7, x + 7, y - 7], fill=(0, 0, 0), width=3)
    return img


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--density", default="8gaussians", choices=toy2d.names())
    ap.add_argument("--k", type=int, default=3, help="number of groups")
    ap.add_argument("--n", type=int, default=600, help="number of points")
    ap.add_argument("--epsilon", type=float, default=0.05, help="Sinkhorn's entropic regularisation")
    ap.add_argument("--steps", type=int, default=30, help="assignment/update steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: NPJEM_DEVICE or cpu)")
    ap.add_argument("--out", default="sinkhorn_clusters.png")
    args = ap.parse_args(argv)

    pts, res, nearest = cluster(args.density, args.n, args.k, epsilon=args.epsilon, steps=args.steps,
                                seed=args.seed, device=args.device)
    balanced = np.bincount(res.labels, minlength=args.k)
    unbalanced = np.bincount(nearest, minlength=args.k)
    print(f"{args.density}: {args.n} points into {args.k} groups")
    print(f"  Sinkhorn (balanced) group sizes: {balanced.tolist()}")
    print(f"  nearest centroid, same centres:  {unbalanced.tolist()}")
    render(pts, res.labels, res.centroids, toy2d.get(args.density).bounds).save(args.out)
    print(f"  wrote {args.out}")
    return balanced, unbalanced


if __name__ == "__main__":
    main()
