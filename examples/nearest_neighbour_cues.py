"""What does a pretrained backbone group together? Nearest neighbours against nuisance cues.

    python3 examples/nearest_neighbour_cues.py runs/simclr/checkpoint.npz [more checkpoints ...]
    python3 examples/nearest_neighbour_cues.py random          # a randomly initialised backbone

For each ``shapes`` test image, its nearest neighbour under the cosine similarity of the frozen
backbone features h. For the label and for cues measured from the pixels (background colour,
foreground colour, foreground − background colour, luma contrast, foreground area, and the row
and column of the shape's centre) it prints

    mean |cue(image) − cue(nearest neighbour)| / mean |cue(image) − cue(random image)|

1 means the features ignore the cue, values near 0 that neighbours share it. The label has no
such ratio; its row is the share of neighbours with the same label (0.1 is chance). Colour,
contrast, size and position carry no label on ``shapes``, so a self-supervised representation
whose neighbours share them has learned a shortcut that its augmentations let through: a
horizontal flip keeps the row of a shape, colour jitter keeps whether it is lighter or darker than
its background (docs/results.md uses this to choose augmentations).

The cues are estimated from the pixels: the background is each image's median colour, the
foreground the pixels that differ from it by more than 0.3 (summed over RGB), which includes
the clutter strokes.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import npjem  # noqa: E402
from npjem import backend, recipes  # noqa: E402
from npjem.data import shapes  # noqa: E402
from npjem.methods.base import Method  # noqa: E402

LUMA = np.array([0.299, 0.587, 0.114])


def pixel_cues(images):
    """Per-image nuisance cues of (N, 3, H, W) images in [0, 1], as a dict of (N,) or (N, 3) arrays."""
    n, _, h, w = images.shape
    bg = np.median(images.reshape(n, 3, -1), axis=2)
    fg_mask = np.abs(images - bg[:, :, None, None]).sum(axis=1) > 0.3
    has_fg = fg_mask.any(axis=(1, 2))
    count = np.maximum(fg_mask.sum(axis=(1, 2)), 1)
    fg = np.where(has_fg[:, None], (images * fg_mask[:, None]).sum(axis=(2, 3)) / count[:, None], bg)
    rows, cols = np.mgrid[:h, :w]
    centre_row = np.where(has_fg, (fg_mask * rows).sum(axis=(1, 2)) / count, (h - 1) / 2)
    centre_col = np.where(has_fg, (fg_mask * cols).sum(axis=(1, 2)) / count, (w - 1) / 2)
    return {"background colour": bg, "foreground colour": fg, "fg - bg colour": fg - bg,
            "luma contrast": fg @ LUMA - bg @ LUMA, "foreground area": fg_mask.mean(axis=(1, 2)),
            "centre row": centre_row, "centre column": centre_col}


def neighbour_report(features, labels, cues, seed=0):
    """Label agreement of each sample's nearest neighbour, and the cue ratios described above."""
    h = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    sim = h @ h.T
    np.fill_diagonal(sim, -np.inf)
    nearest = sim.argmax(axis=1)
    other = np.random.default_rng(seed).permutation(len(h))
    report = {"label agreement": float((labels == labels[nearest]).mean())}
    for name, v in cues.items():
        report[name] = float(np.abs(v - v[nearest]).mean() / np.abs(v - v[other]).mean())
    return report


def load_backbone(path):
    """The backbone of an ``npjem pretrain`` checkpoint (or a random one for ``"random"``)."""
    if path == "random":
        return recipes.build_backbone("convnet", 32, seed=0), "random init"
    ckpt = npjem.load(path)
    config = ckpt["config"]
    backbone = recipes.build_backbone(config["arch"], config["width"], seed=0)
    prefix = "backbone."
    backbone.load_state_dict({k[len(prefix):]: v for k, v in ckpt["method"].items() if k.startswith(prefix)})
    return backbone, f"{config['method']} {config['epochs']} ep ({path})"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="+", help="checkpoint.npz files written by npjem pretrain, or 'random'")
    p.add_argument("--n-test", type=int, default=2000)
    args = p.parse_args(argv)
    test = shapes("test", n=args.n_test)
    cues = pixel_cues(test.images)
    for path in args.checkpoints:
        backbone, name = load_backbone(path)
        features = Method(backbone, views=lambda x, generator=None: (x,)).embed(test.images).data
        report = neighbour_report(backend.to_numpy(features), test.labels, cues)
        print(name)
        for key, value in report.items():
            print(f"  {key:18s} {value:.2f}")


if __name__ == "__main__":
    main()
