"""npjem's RBM next to scikit-learn's BernoulliRBM on the 8x8 digits, trained the same way.

    python examples/rbm_digits.py [--hidden 16] [--epochs 10] [--lr 0.1] [--batch-size 10]
                                  [--seeds 3] [--ais-runs 100] [--ais-steps 15000] [--out runs/rbm_digits]

Both models see the same binarised digits (pixel > 8/16; npjem.data.digits' train split, 1,438
images; the 359-image test split is held out), with the same hidden units, learning rate,
mini-batch size and epochs (sklearn's PCD-1: one Gibbs sweep per mini-batch, batch_size
persistent particles). For each seed the script prints the log-likelihood per image of both
models on both splits: exact when the smaller layer has at most 20 units (2^H hidden states
enumerated), otherwise estimated by annealed importance sampling with its standard error, plus
the exact pseudo-likelihood and the factorised baseline (visible biases only). It writes
``samples.png`` (Gibbs samples of the last ``--methods`` model of the last seed),
``filters.png`` (its weights, one 8x8 tile per hidden unit) and ``results.json`` to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import npjem  # noqa: E402
from npjem import backend  # noqa: E402
from npjem.data import digits  # noqa: E402
from npjem.ebm.rbm import BernoulliRBM  # noqa: E402


def binarised_digits(split):
    images = digits(split).images
    return (images.reshape(len(images), -1) > 0.5).astype(np.float64)


def factorised_log_likelihood(X_train, X):
    """log-likelihood per image of independent pixels with the training frequencies (+½ pseudo-count)."""
    p = (X_train.sum(axis=0) + 0.5) / (len(X_train) + 1.0)
    return float((X * np.log(p) + (1 - X) * np.log1p(-p)).sum(axis=1).mean())


def evaluate(rbm, X_train, X_test, ais_runs, ais_steps, generator):
    """Mean log-likelihood on both splits (exact or AIS), its standard error, exact pseudo-likelihood."""
    H, D = rbm.components_.shape
    if min(H, D) <= 20:
        log_z, se, how = rbm.log_partition(), 0.0, "exact"
    else:
        res = rbm.ais(n_runs=ais_runs, betas=ais_steps, data=X_train, generator=generator)
        log_z, se, how = res.log_z, res.stderr, "AIS"
    return {
        "how": how, "log_z": log_z, "log_z_stderr": se,
        "train_ll": float(rbm.log_likelihood(X_train, log_z=log_z).mean()),
        "test_ll": float(rbm.log_likelihood(X_test, log_z=log_z).mean()),
        "train_pl": float(rbm.pseudo_likelihood(X_train).mean()),
    }


def tile_grid(tiles, cols, scale=4, pad=1):
    """Images (n, 8, 8) in [0, 1] as one uint8 grid, ``cols`` per row, each upscaled ``scale``x."""
    n, h, w = tiles.shape
    rows = math.ceil(n / cols)
    H, W = h * scale + pad, w * scale + pad
    grid = np.full((rows * H + pad, cols * W + pad), 128, dtype=np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        big = np.kron(np.clip(t, 0, 1), np.ones((scale, scale)))
        grid[pad + r * H: pad + r * H + h * scale, pad + c * W: pad + c * W + w * scale] = (big * 255).round()
    return grid


def save_png(array, path):
    from PIL import Image

    Image.fromarray(array).save(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--ais-runs", type=int, default=100)
    ap.add_argument("--ais-steps", type=int, default=15000)
    ap.add_argument("--methods", nargs="+", default=["pcd", "fpcd"], choices=["pcd", "cd", "fpcd"],
                    help="npjem training methods to run next to sklearn (same hyper-parameters)")
    ap.add_argument("--out", default=os.path.join("runs", "rbm_digits"))
    args = ap.parse_args(argv)
    from sklearn.neural_network import BernoulliRBM as SklearnRBM

    X_train, X_test = binarised_digits("train"), binarised_digits("test")
    os.makedirs(args.out, exist_ok=True)
    base_train = factorised_log_likelihood(X_train, X_train)
    base_test = factorised_log_likelihood(X_train, X_test)
    print(f"binarised digits: {X_train.shape[0]} train / {X_test.shape[0]} test images, 64 pixels; "
          f"hidden={args.hidden} lr={args.lr} batch_size={args.batch_size} epochs={args.epochs}")
    print(f"factorised baseline (pixel frequencies): train {base_train:.2f}, test {base_test:.2f} nats/image")
    header = f"{'seed':>4} {'model':<12} {'how':<5} {'train LL':>9} {'test LL':>9} {'±':>5} {'train PL':>9} {'fit s':>6}"
    print(header)
    rows = []
    params = dict(learning_rate=args.lr, batch_size=args.batch_size, n_iter=args.epochs)
    last = None
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        sk = SklearnRBM(args.hidden, random_state=seed, **params).fit(X_train)
        t_sk = time.perf_counter() - t0
        models = [("sklearn", BernoulliRBM.from_sklearn(sk), t_sk)]
        for method in args.methods:
            t0 = time.perf_counter()
            ours = BernoulliRBM(args.hidden, method=method, generator=seed, monitor=None, **params).fit(X_train)
            models.append((f"npjem-{method}", ours, time.perf_counter() - t0))
        for name, model, secs in models:
            r = evaluate(model, X_train, X_test, args.ais_runs, args.ais_steps,
                         npjem.random.default_rng(1000 + seed))
            r.update(seed=seed, model=name, fit_seconds=secs)
            rows.append(r)
            print(f"{seed:>4} {name:<12} {r['how']:<5} {r['train_ll']:>9.2f} {r['test_ll']:>9.2f} "
                  f"{r['log_z_stderr']:>5.2f} {r['train_pl']:>9.2f} {secs:>6.2f}")
        last = models[-1][1]
    print("mean ± sd over seeds:")
    summary = {}
    for name in ["sklearn"] + [f"npjem-{m}" for m in args.methods]:
        sel = [r for r in rows if r["model"] == name]
        summary[name] = {k: (float(np.mean([r[k] for r in sel])), float(np.std([r[k] for r in sel])))
                         for k in ("train_ll", "test_ll", "train_pl", "fit_seconds")}
        s = summary[name]
        print(f"     {name:<12} train LL {s['train_ll'][0]:.2f} ± {s['train_ll'][1]:.2f}   "
              f"test LL {s['test_ll'][0]:.2f} ± {s['test_ll'][1]:.2f}   "
              f"train PL {s['train_pl'][0]:.2f} ± {s['train_pl'][1]:.2f}   fit {s['fit_seconds'][0]:.2f} s")

    # Pictures of the last seed's npjem model: Gibbs samples and filters.
    g = npjem.random.default_rng(0)
    v = last.sample(100, n_steps=1000, generator=g)
    probs = backend.to_numpy(last.mean_visibles(last.sample_hiddens(v, generator=g)))
    save_png(tile_grid(probs.reshape(-1, 8, 8), cols=10), os.path.join(args.out, "samples.png"))
    W = backend.to_numpy(last.components_)
    lo, hi = W.min(axis=1, keepdims=True), W.max(axis=1, keepdims=True)
    filters = ((W - lo) / np.maximum(hi - lo, 1e-12)).reshape(-1, 8, 8)[:100]
    save_png(tile_grid(filters, cols=min(10, len(filters))), os.path.join(args.out, "filters.png"))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"command": "python examples/rbm_digits.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                   "version": npjem.__version__, "args": vars(args), "baseline": {"train": base_train, "test": base_test},
                   "runs": rows, "summary": summary}, f, indent=1)
    print(f"wrote {args.out}/samples.png, filters.png, results.json")


if __name__ == "__main__":
    main()
