"""Pretrain SimCLR on the built-in shapes with the Python API, then probe the backbone.

    python examples/pretrain_shapes.py [--epochs 40] [--n-train 5000] [--device cpu|cuda] [--out DIR]

The same recipe as ``npjem pretrain``, written out: data, backbone, method, optimizer and
schedule, the shared ``fit`` loop, and the evaluation of the frozen backbone. With ``--out`` it
also draws the loss of every step and the test features in 2-D with ``npjem.plot``.
"""
import argparse
import os

from npjem import eval as ev
from npjem import optim, plot
from npjem.recipes import shapes_augmentation
from npjem.data import TwoViews, shapes
from npjem.methods import IndexedDataLoader, SimCLR, fit
from npjem.nn.models import ConvNet


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--n-train", type=int, default=10000)
    ap.add_argument("--device", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="folder for loss.png and embeddings.png")
    args = ap.parse_args(argv)

    train, test = shapes("train", n=args.n_train), shapes("test", n=2000)
    backbone = ConvNet(widths=(32, 64, 128, 128), strides=(2, 2, 2, 1), generator=args.seed)
    views = TwoViews(shapes_augmentation(32, scale=0.6, strength=0.5, hue=0.5, rotation=180, invert=0.5))
    method = SimCLR(backbone, hidden_dim=256, out_dim=128, temperature=0.2, views=views, generator=args.seed + 1)
    if args.device:
        method.to(args.device)

    loader = IndexedDataLoader(train.images, batch_size=256, drop_last=True, generator=args.seed, device=args.device)
    opt = optim.Adam(method.trainable_parameters(), lr=1e-3, weight_decay=1e-6)
    total = args.epochs * len(loader)
    schedule = optim.WarmupCosine(opt, total_steps=total, warmup_steps=total // 10)
    history = fit(method, loader, opt, epochs=args.epochs, schedule=schedule, generator=args.seed)
    print(f"loss {history['loss'][0]:.3f} -> {history['loss'][-1]:.3f} in {history.seconds:.0f}s")

    h_train, h_test = method.embed(train.images), method.embed(test.images)
    probe = ev.linear_probe(h_train, train.labels, h_test, test.labels, l2=1e-3, max_iter=300)
    knn = ev.knn_accuracy(h_train, train.labels, h_test, test.labels)
    report = ev.collapse_report(h_test)
    print(f"linear probe {probe.accuracy:.3f}  kNN {knn:.3f}  RankMe {report['effective_rank']:.1f}  "
          f"std {report['embedding_std']:.3f} (isotropic {report['embedding_std_isotropic']:.3f})")

    if args.out:
        os.makedirs(args.out, exist_ok=True)
        loss = plot.line_chart({"loss": history["loss"]}, os.path.join(args.out, "loss.png"),
                               title="SimCLR on shapes", xlabel="step", ylabel="NT-Xent loss")
        emb = plot.scatter(plot.pca_2d(h_test.data), test.labels, test.classes,
                           os.path.join(args.out, "embeddings.png"), title=f"linear probe {probe.accuracy:.3f}")
        print(f"wrote {loss} and {emb}")


if __name__ == "__main__":
    main()
