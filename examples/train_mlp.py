"""Train a small MLP with npjem's engine on a spiral classification problem; the loss falls.

    python examples/train_mlp.py [--steps 300] [--device cpu|cuda]

Uses only the engine (Tensors, functional ops, ``backward``) and plain SGD written out, so it
shows everything there is between a loss and an update.
"""
import argparse

import numpy as np

import npjem
from npjem import functional as F


def spirals(n_per_class, classes, rng):
    """Interleaved noisy spirals: a problem no linear model solves."""
    xs, ys = [], []
    for c in range(classes):
        r = np.linspace(0.05, 1.0, n_per_class)
        t = np.linspace(c * 2 * np.pi / classes, c * 2 * np.pi / classes + 4.0, n_per_class)
        t = t + rng.normal(0, 0.15, n_per_class)
        xs.append(np.stack([r * np.sin(t), r * np.cos(t)], axis=1))
        ys.append(np.full(n_per_class, c))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Train an MLP on spirals with npjem's engine.")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--device", default=None, help="cpu or cuda (default: NPJEM_DEVICE or cpu)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    x_np, y_np = spirals(200, 3, rng)
    device = args.device
    x = npjem.tensor(x_np, device=device)
    y = npjem.backend.to_device(y_np, device)

    g = npjem.random.default_rng(args.seed, device=device)
    sizes = [2, args.hidden, args.hidden, 3]
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        w = npjem.randn(fan_out, fan_in, generator=g) * float(np.sqrt(2.0 / fan_in))
        params += [w.detach().requires_grad_(), npjem.zeros(fan_out, device=device, requires_grad=True)]

    def forward(h):
        for i in range(0, len(params), 2):
            h = F.linear(h, params[i], params[i + 1])
            if i < len(params) - 2:
                h = F.relu(h)
        return h

    print(f"training a {'-'.join(map(str, sizes))} MLP on 3 spirals ({len(x_np)} points) on {x.device}")
    for step in range(args.steps + 1):
        logits = forward(x)
        loss = F.cross_entropy(logits, y)
        for p in params:
            p.grad = None
        loss.backward()
        for p in params:
            p.data -= args.lr * p.grad.data
        if step % max(1, args.steps // 10) == 0:
            acc = float((logits.data.argmax(axis=1) == y).mean())
            print(f"step {step:4d}  loss {loss.item():.4f}  train accuracy {acc:.3f}")
    return loss.item()


if __name__ == "__main__":
    main()
