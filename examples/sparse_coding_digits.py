"""Sparse coding on the 8×8 digits: npjem's dictionary learning next to scikit-learn's.

    python examples/sparse_coding_digits.py [--atoms 36] [--lam 0.1] [--iters 30] [--out runs/sparse_coding_digits]

Both learn K atoms for the sparse-coding energy E(y, z) = ½‖y − Wz‖² + λ‖z‖₁ on the training
images (pixels in [0, 1], each image's mean removed) with the same λ (sklearn's ``alpha``) and
the same number of alternations (sklearn's ``max_iter``, its ``tol`` set to 0 so it runs them
all). Each dictionary then encodes the held-out images with the same solver (FISTA to
convergence), and the table gives, on the test set: the mean energy F(y) = min_z E(y, z), the
reconstruction error ‖y − Wz‖² per image, the mean number of non-zero codes (the sparsity), and
the training time; and, at an exact sparsity, the error of orthogonal matching pursuit with 3 or
6 atoms per image (scikit-learn's ``sparse_encode``, the same judge for both). The atoms are written as a PNG grid (Pillow).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from npjem.data import digits  # noqa: E402
from npjem.ebm import latent  # noqa: E402


def load(split):
    x = digits(split).images.reshape(-1, 64).astype(np.float64)
    return x - x.mean(axis=1, keepdims=True)


def evaluate(W, test, lam, n_iter=1000):
    """Test energy, reconstruction error and sparsity of the dictionary W (D, K)."""
    z, obj = latent.fista(test, W, lam, n_iter=n_iter, return_objective=True)
    z = z.data
    rec = ((test - z @ W.T) ** 2).sum(axis=1)
    out = {"energy": float(obj[-1]), "reconstruction": float(rec.mean()),
           "nonzeros": float((np.abs(z) > 1e-8).sum(axis=1).mean())}
    try:  # a neutral judge at an exact sparsity: orthogonal matching pursuit with s atoms per image
        from sklearn.decomposition import sparse_encode
    except ImportError:
        return out
    for s in (3, 6):
        zo = sparse_encode(test, W.T, algorithm="omp", n_nonzero_coefs=s)
        out[f"omp{s}"] = float(((test - zo @ W.T) ** 2).sum(axis=1).mean())
    return out


def atoms_png(W, path, scale=6, pad=2):
    """The atoms as 8×8 tiles in a square grid, each scaled to its own ±max (grey = 0)."""
    from PIL import Image

    k = W.shape[1]
    cols = int(math.ceil(math.sqrt(k)))
    rows = int(math.ceil(k / cols))
    tile = 8 * scale
    canvas = np.full((rows * (tile + pad) + pad, cols * (tile + pad) + pad), 255, dtype=np.uint8)
    for j in range(k):
        a = W[:, j].reshape(8, 8)
        a = 0.5 + 0.5 * a / max(np.abs(a).max(), 1e-12)
        img = np.kron((a * 255).round().astype(np.uint8), np.ones((scale, scale), dtype=np.uint8))
        r, c = divmod(j, cols)
        top, left = pad + r * (tile + pad), pad + c * (tile + pad)
        canvas[top:top + tile, left:left + tile] = img
    Image.fromarray(canvas).save(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Sparse coding on digits: npjem vs sklearn DictionaryLearning.")
    ap.add_argument("--atoms", type=int, default=36)
    ap.add_argument("--lam", type=float, default=0.1)
    ap.add_argument("--iters", type=int, default=30, help="alternations (sklearn's max_iter)")
    ap.add_argument("--code-iter", type=int, default=50, help="FISTA iterations per alternation (npjem)")
    ap.add_argument("--out", default="runs/sparse_coding_digits")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    train, test = load("train"), load("test")
    results = {}

    t0 = time.perf_counter()
    W, _, hist = latent.dictionary_learning(train, args.atoms, args.lam, n_iter=args.iters, code_iter=args.code_iter,
                                            generator=args.seed, progress=True)
    seconds = time.perf_counter() - t0
    W = W.data
    results["npjem"] = dict(evaluate(W, test, args.lam), seconds=seconds, train_objective=hist["objective"][-1])
    atoms_png(W, os.path.join(args.out, "atoms_npjem.png"))

    try:
        from sklearn.decomposition import DictionaryLearning
    except ImportError:
        print("scikit-learn is not installed: npjem only", file=sys.stderr)
    else:
        t0 = time.perf_counter()
        dl = DictionaryLearning(n_components=args.atoms, alpha=args.lam, max_iter=args.iters, tol=0.0,
                                fit_algorithm="cd", transform_algorithm="lasso_cd", random_state=args.seed)
        dl.fit(train)
        seconds = time.perf_counter() - t0
        Ws = dl.components_.T.copy()
        zs = dl.transform(train)
        train_obj = float((0.5 * ((train - zs @ Ws.T) ** 2).sum(axis=1) + args.lam * np.abs(zs).sum(axis=1)).mean())
        results["sklearn"] = dict(evaluate(Ws, test, args.lam), seconds=seconds, train_objective=train_obj)
        atoms_png(Ws, os.path.join(args.out, "atoms_sklearn.png"))

    print(f"| dictionary (K={args.atoms}, λ={args.lam}, {args.iters} alternations) | train F | test F | "
          f"test ‖y − Wz‖² | non-zeros | OMP-3 ‖y − Wz‖² | OMP-6 ‖y − Wz‖² | time (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for k, r in results.items():
        print(f"| {k} | {r['train_objective']:.4f} | {r['energy']:.4f} | {r['reconstruction']:.4f} | "
              f"{r['nonzeros']:.2f} | {r.get('omp3', float('nan')):.4f} | {r.get('omp6', float('nan')):.4f} | "
              f"{r['seconds']:.1f} |")
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"command": " ".join(sys.argv), "results": results}, f, indent=1)
    return results


if __name__ == "__main__":
    main()
