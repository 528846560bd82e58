"""The command line: ``npjem pretrain`` (the project's main job) and ``npjem baselines``.

    npjem pretrain [--method simclr|moco|pirl] [--epochs E] [--batch-size B] [--lr LR] ...
    npjem baselines [--epochs E] ...

``pretrain`` trains a joint-embedding method on the built-in ``shapes`` images (10 classes of
procedurally drawn shapes whose colour, position, size, rotation and clutter carry no label),
then evaluates the frozen backbone on the shapes test split: a linear probe (multinomial
logistic regression, L-BFGS, l2 chosen on a held-out fifth of the train set), a weighted
k-NN classifier (k = 20, T = 0.07) and the collapse diagnostics (RankMe effective rank, the
std of the L2-normalised embeddings) of the backbone features h and of the projected
embeddings z. It prints a table, and writes ``results.json`` and ``checkpoint.npz`` under
``--out``.

``baselines`` computes the floor and the ceiling with the same evaluation: raw pixels, the
randomly initialised backbone, and the same backbone trained with labels (supervised
cross-entropy, then probed like the others).

The defaults are a recipe that finishes in a few minutes on two CPU cores.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

__all__ = ["main", "build_parser", "build_backbone", "build_method", "evaluate_features", "DEFAULTS"]

METHODS = ("simclr", "moco", "pirl", "byol", "simsiam", "barlow_twins", "vicreg", "swav", "dino", "data2vec")
# The augmentation of the recipe (see shapes_augmentation).
AUGMENTATION = {"scale": 0.6, "strength": 0.5, "hue": 0.5, "grayscale": 0.2, "rotation": 180.0, "invert": 0.5, "vflip": 0.0}
ARCHS = ("convnet", "resnet_tiny")

# The default recipe: each method's own lr, temperature and extras (chosen on shapes; see docs/results.md).
DEFAULTS = {
    "simclr": {"temperature": 0.2, "batch_size": 256},
    # MoCo: K = 256 keys is 2.6 % of the 10,000 images (MoCo's 65,536 are 5 % of ImageNet); on these
    # 20-epoch runs a shorter, fresher queue is better (K = 2048: 0.26 probe, 256: 0.32; docs/results.md).
    # A BatchNorm in the head's hidden layer adds 0.6-2.7 points on each of four seeds.
    # AdamW with decay 0.05: +0.9 probe points on average over four paired seeds (three of four
    # better; decay 0.2: +0.6). SimCLR did not gain from it (0.342 against 0.351, seed 0).
    "moco": {"temperature": 0.2, "queue_size": 256, "momentum": 0.99, "symmetric": True, "bn_splits": 8,
             "head_bn": True, "batch_size": 128, "optimizer": "adamw", "weight_decay": 0.05},
    # PIRL: the paper's NCE (τ = 0.07) diverges on these short runs (docs/results.md); the recipe uses
    # the InfoNCE form of vissl's "cross_entropy" PIRL configs, with their τ = 0.1.
    "pirl": {"temperature": 0.1, "num_negatives": 2048, "loss": "infonce", "grid": 3,
             "batch_size": 256},
    # The methods without negatives (docs/methods-noncontrastive.md). Each key is a constructor
    # argument of the method; "temperature" is None where the method has none.
    # BYOL: the 40-epoch preset's fast target (τ_base 0.97 → 1, cosine) for these short runs.
    "byol": {"temperature": None, "momentum": 0.97, "batch_size": 256},
    "simsiam": {"temperature": None, "predictor_hidden_dim": 64, "batch_size": 256},
    "barlow_twins": {"temperature": None, "lambd": 5e-3, "batch_size": 256},
    "vicreg": {"temperature": None, "sim_coeff": 25.0, "std_coeff": 25.0, "cov_coeff": 1.0, "batch_size": 256},
    # SwAV and DINO: two 32 px crops and two 16 px local crops; K scaled to the 10-class data set.
    "swav": {"temperature": 0.1, "num_prototypes": 100, "epsilon": 0.05, "n_local": 2,
             "freeze_prototypes_steps": 39, "queue_size": 0, "batch_size": 256},
    "dino": {"temperature": 0.1, "teacher_temp": 0.04, "warmup_teacher_temp": 0.04, "warmup_teacher_temp_steps": 0,
             "momentum": 0.99, "num_prototypes": 1024, "bottleneck_dim": 128, "n_local": 2, "batch_size": 256},
    # data2vec: its own backbone, vit_tiny (D = 64, 4 blocks, 4 px patches); the top 3 of 4 blocks.
    "data2vec": {"temperature": None, "mask_ratio": 0.6, "top_k": 3, "beta": 2.0, "momentum": 0.99,
                 "final_momentum": 0.999, "batch_size": 256},
}
# The optimizer of the recipe: Adam (SimCLR's LARS at lr 0.3·B/256 is for batches of thousands and
# hundreds of epochs; Adam at 1e-3 trains these small networks fastest in a few epochs). A method's
# DEFAULTS may name its own optimizer and weight decay (MoCo: AdamW).
OPTIMIZER = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-6, "epochs": 20}


def optimizer_defaults(method, optimizer=None, weight_decay=None):
    """``(optimizer, weight_decay)`` of ``method``'s recipe, with the given ones kept.

    A weight decay left unset follows the optimizer: the method's own when it runs with its own
    optimizer, else the recipe's 1e-6 (MoCo's 0.05 is AdamW's decoupled decay; as Adam's or
    SGD's L2 term it would be a different and far stronger pull).
    """
    if method not in DEFAULTS:
        raise ValueError(f"method must be one of {', '.join(DEFAULTS)}, got {method!r}")
    own = DEFAULTS[method]
    own_opt = own.get("optimizer", OPTIMIZER["optimizer"])
    if optimizer is None:
        optimizer = own_opt
    if weight_decay is None:
        weight_decay = own.get("weight_decay", OPTIMIZER["weight_decay"]) if optimizer == own_opt \
            else OPTIMIZER["weight_decay"]
    return optimizer, weight_decay


# ====================================================================== building blocks

def build_backbone(arch="convnet", width=32, seed=0, device=None):
    """The backbone of the recipe: ``convnet`` (4 conv-BN-ReLU blocks, widths w, 2w, 4w, 4w,
    strides 2, 2, 2, 1: 32 px → 4 px, then global average pooling; fast on a CPU) or
    ``resnet_tiny`` (one BasicBlock per stage, widths w … 8w, CIFAR stem)."""
    from .nn import models

    if arch == "convnet":
        bb = models.ConvNet(widths=(width, 2 * width, 4 * width, 4 * width), strides=(2, 2, 2, 1), generator=seed)
    elif arch == "resnet_tiny":
        bb = models.resnet_tiny(width, generator=seed)
    else:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    if device is not None:
        bb.to(device)
    return bb


def shapes_augmentation(size=32, scale=0.08, strength=0.5, hue=None, grayscale=0.2, rotation=0.0, invert=0.0,
                        vflip=0.0):
    """SimCLR's augmentation with its knobs exposed: (rotation by ±``rotation``°) →
    RandomResizedCrop(size, (scale, 1)) → horizontal flip → (vertical flip with p = ``vflip``) →
    ColorJitter(0.8s, 0.8s, 0.8s, hue) with p = 0.8 → grayscale p = ``grayscale`` → (invert,
    1 − x, with p = ``invert``).

    ``hue`` defaults to SimCLR's 0.2·s. The shapes' colours are drawn uniformly at random, so
    every image has its own colours and colour is the easiest way to tell two images apart: a
    full hue shift (hue = 0.5) removes that shortcut, leaving the shape as what two views of one
    image share. Rotation, vertical flips and inversion are label-preserving on ``shapes``
    (shapes are drawn at any angle, in any colour on any background) and remove further
    shortcuts: the shape's vertical position (a horizontal flip keeps the row) and whether it is
    lighter or darker than its background (colour jitter keeps that order). The recipe
    (``AUGMENTATION``) rotates and inverts, crops at scale 0.6–1 (a smaller crop often cuts the
    shape away: the two views then share only background and clutter) and jitters at strength
    0.5 (at 1, brightness and contrast often wash the shape out of a view); see
    docs/results.md.
    """
    from .data.augment import (
        ColorJitter,
        Compose,
        RandomGrayscale,
        RandomHorizontalFlip,
        RandomInvert,
        RandomResizedCrop,
        RandomRotation,
        RandomVerticalFlip,
    )

    s = float(strength)
    h = min(0.5, 0.2 * s) if hue is None else float(hue)
    return Compose(([RandomRotation(rotation)] if rotation else [])
                   + [RandomResizedCrop(size, scale=(scale, 1.0)), RandomHorizontalFlip(0.5)]
                   + ([RandomVerticalFlip(vflip)] if vflip else [])
                   + [ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, h, p=0.8), RandomGrayscale(grayscale)]
                   + ([RandomInvert(invert)] if invert else []))


def build_method(name, backbone, n_train, *, temperature=None, queue_size=None, momentum=None,
                 symmetric=None, bn_splits=None, head_bn=None, num_negatives=None, pirl_loss=None, grid=None, hidden_dim=None, out_dim=128, aug_strength=None, aug_scale=None,
                 aug_hue=None, aug_grayscale=None, aug_rotation=None, aug_invert=None, aug_vflip=None, seed=0,
                 **options):
    """A method with the recipe's defaults (``DEFAULTS``), any of them overridden.

    ``options`` are the other methods' own arguments (``lambd``, ``sim_coeff``, ``num_prototypes``,
    ``n_local``, ``teacher_temp``, ``mask_ratio``, ``top_k`` …, the keys of their ``DEFAULTS``);
    a None value keeps the default. ``data2vec`` trains its own ``vit_tiny`` (the ``backbone``
    given is replaced unless it is a ``VisionTransformer``).
    """
    from .data.augment import TwoViews
    from .methods import PIRL, MoCo, PIRLViews, SimCLR, pirl_views

    if name not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {name!r}")
    d = DEFAULTS[name]
    tau = d["temperature"] if temperature is None else temperature
    if name in _NONCONTRASTIVE:
        aug = _augmentation(aug_strength, aug_scale, aug_hue, aug_grayscale, aug_rotation, aug_invert, aug_vflip)
        return _build_noncontrastive(name, backbone, d, tau, queue_size, momentum, hidden_dim, out_dim, aug, seed,
                                     options)
    if options:
        raise TypeError(f"{name} takes no option(s) {', '.join(sorted(options))}")
    given = {"scale": aug_scale, "strength": aug_strength, "hue": aug_hue, "grayscale": aug_grayscale,
             "rotation": aug_rotation, "invert": aug_invert, "vflip": aug_vflip}
    aug = {k: AUGMENTATION[k] if v is None else v for k, v in given.items()}
    image_view = shapes_augmentation(32, **aug)
    feat = backbone.num_features
    hidden = 2 * feat if hidden_dim is None else hidden_dim
    if name == "simclr":
        return SimCLR(backbone, feat, hidden_dim=hidden, out_dim=out_dim, temperature=tau,
                      views=TwoViews(image_view), generator=seed + 1)
    if name == "moco":
        k = d["queue_size"] if queue_size is None else queue_size
        m = d["momentum"] if momentum is None else momentum
        sym = d["symmetric"] if symmetric is None else symmetric
        splits = d["bn_splits"] if bn_splits is None else bn_splits
        bn = d["head_bn"] if head_bn is None else head_bn
        return MoCo(backbone, feat, hidden_dim=hidden, out_dim=out_dim, queue_size=k, momentum=m, temperature=tau,
                    symmetric=sym, bn_splits=splits, batch_norm=bn, views=TwoViews(image_view), generator=seed + 1)
    k = d["num_negatives"] if num_negatives is None else num_negatives
    grid = d["grid"] if grid is None else grid
    tiles = pirl_views(32, grid=grid)
    views = PIRLViews(image_view, tiles.jigsaw, tile_source=tiles.tile_source)
    return PIRL(backbone, n_train, feat, out_dim=out_dim, num_negatives=k, temperature=tau,
                loss=d["loss"] if pirl_loss is None else pirl_loss, views=views, grid=grid, generator=seed + 1)


_NONCONTRASTIVE = ("byol", "simsiam", "barlow_twins", "vicreg", "swav", "dino", "data2vec")
# build_method's options each method takes (besides the shared ones).
_OPTIONS = {"byol": ("final_momentum",), "simsiam": ("predictor_hidden_dim",), "barlow_twins": ("lambd",),
            "vicreg": ("sim_coeff", "std_coeff", "cov_coeff"),
            "swav": ("num_prototypes", "epsilon", "n_local", "freeze_prototypes_steps", "queue_start_step"),
            "dino": ("teacher_temp", "warmup_teacher_temp", "warmup_teacher_temp_steps", "num_prototypes",
                     "bottleneck_dim", "n_local"),
            "data2vec": ("mask_ratio", "top_k", "beta", "final_momentum", "momentum_steps")}


def _augmentation(strength, scale, hue, grayscale, rotation, invert, vflip):
    given = {"scale": scale, "strength": strength, "hue": hue, "grayscale": grayscale, "rotation": rotation,
             "invert": invert, "vflip": vflip}
    return {k: AUGMENTATION[k] if v is None else v for k, v in given.items()}


def _build_noncontrastive(name, backbone, d, tau, queue_size, momentum, hidden_dim, out_dim, aug, seed, options):
    """build_method's branch for BYOL, SimSiam, Barlow Twins, VICReg, SwAV, DINO and data2vec."""
    from . import methods as M
    from .data.augment import Compose, RandomResizedCrop, TwoViews
    from .nn.models import VisionTransformer, vit_tiny

    unknown = sorted(k for k in options if k not in _OPTIONS[name])
    if unknown:
        raise TypeError(f"{name} takes no option(s) {', '.join(unknown)} (its own: {', '.join(_OPTIONS[name])})")
    opt = {k: (d.get(k) if v is None else v) for k, v in options.items()}
    for k in _OPTIONS[name]:
        opt.setdefault(k, d.get(k))
    opt = {k: v for k, v in opt.items() if v is not None}
    m = d.get("momentum") if momentum is None else momentum
    if name == "data2vec":
        if not isinstance(backbone, VisionTransformer):
            backbone = vit_tiny(generator=seed)
        if m is not None:
            opt["momentum"] = m
        # data2vec regresses the teacher's view of the same crop: one view, no colour shortcut to remove.
        view = Compose([RandomResizedCrop(32, scale=(AUGMENTATION["scale"], 1.0))])
        return M.Data2Vec(backbone, views=view, generator=seed + 1, **opt)
    feat = backbone.num_features
    hidden = d.get("hidden_dim", 2 * feat) if hidden_dim is None else hidden_dim
    image_view = shapes_augmentation(32, **aug)
    two = TwoViews(image_view)
    if name == "byol":
        return M.BYOL(backbone, feat, hidden_dim=hidden, out_dim=out_dim, momentum=m, views=two, generator=seed + 1,
                    **opt)
    if name == "simsiam":
        return M.SimSiam(backbone, feat, hidden_dim=hidden, out_dim=out_dim, views=two, generator=seed + 1, **opt)
    if name == "barlow_twins":
        return M.BarlowTwins(backbone, feat, hidden_dim=hidden, out_dim=out_dim, views=two, generator=seed + 1, **opt)
    if name == "vicreg":
        return M.VICReg(backbone, feat, hidden_dim=hidden, out_dim=out_dim, views=two, generator=seed + 1, **opt)
    # Multi-crop: the recipe's augmentation at 32 px, and at 16 px for the local crops.
    n_local = opt.pop("n_local", 0)
    local = shapes_augmentation(16, **aug) if n_local else None
    views = M.MultiCropViews(image_view, local, n_global=2, n_local=n_local)
    if name == "swav":
        k = d.get("queue_size", 0) if queue_size is None else queue_size
        return M.SwAV(backbone, feat, hidden_dim=hidden, out_dim=out_dim, temperature=tau, queue_length=k,
                    views=views, generator=seed + 1, **opt)
    k = opt.pop("num_prototypes")
    return M.DINO(backbone, feat, hidden_dim=hidden, out_dim=k, student_temp=tau, momentum=m, views=views,
                generator=seed + 1, **opt)


def _method_options(args):
    """The parsed flags that are ``args.method``'s own options (build_method's ``options``)."""
    return {k: getattr(args, k) for k in _OPTIONS.get(args.method, ()) if getattr(args, k, None) is not None}


# The linear probe's l2 is picked from this grid on a held-out fifth of the train set.
PROBE_L2_GRID = (1e-4, 1e-3, 1e-2)


def evaluate_features(train_h, train_y, test_h, test_y, *, probe_max_iter=300, seed=0):
    """Linear probe (standardised features, l2 from ``PROBE_L2_GRID`` chosen on held-out train
    data, L-BFGS) and weighted k-NN accuracy (k = 20, T = 0.07) of frozen features."""
    from . import eval as ev

    t = time.perf_counter()
    probe = ev.linear_probe(train_h, train_y, test_h, test_y, l2="auto", l2_grid=PROBE_L2_GRID,
                            max_iter=probe_max_iter, generator=seed)
    t_probe = time.perf_counter() - t
    t = time.perf_counter()
    knn = ev.knn_accuracy(train_h, train_y, test_h, test_y, k=20, temperature=0.07)
    return {"linear_probe": probe.accuracy, "probe_train_accuracy": probe.train_accuracy, "probe_l2": probe.l2,
            "knn": knn, "probe_seconds": t_probe, "knn_seconds": time.perf_counter() - t}


def _collapse(z, prefix):
    from . import eval as ev

    r = ev.collapse_report(z)
    return {f"{prefix}effective_rank": r["effective_rank"], f"{prefix}embedding_std": r["embedding_std"],
            f"{prefix}embedding_std_isotropic": r["embedding_std_isotropic"], f"{prefix}dim": r["dim"],
            f"{prefix}uniformity": r["uniformity"]}


def _load_shapes(n_train, n_test, seed):
    from .data import shapes

    return shapes("train", n=n_train, seed=seed), shapes("test", n=n_test, seed=seed)


def _optimizer(name, params, lr, weight_decay):
    from . import optim

    if name == "sgd":
        return optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "adamw":
        return optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "lars":
        return optim.LARS(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "adam":
        return optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be sgd, adam, adamw or lars, got {name!r}")


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def format_table(rows, columns):
    """A markdown table of ``rows`` (dicts) with ``columns`` [(key, header)]."""
    header = "| " + " | ".join(h for _, h in columns) + " |"
    rule = "|" + "|".join("-" * (len(h) + 2) for _, h in columns) + "|"
    lines = [header, rule]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(k)) for k, _ in columns) + " |")
    return "\n".join(lines)


TABLE_COLUMNS = [("name", "representation"), ("linear_probe", "linear probe"), ("knn", "kNN (k=20)"),
                 ("h_effective_rank", "RankMe(h)"), ("h_embedding_std", "std(h/|h|)"),
                 ("z_effective_rank", "RankMe(z)"), ("z_embedding_std", "std(z/|z|)")]


def _write_json(path, obj):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=float)
    os.replace(tmp, path)


def _config(args, **extra):
    return {k: v for k, v in vars(args).items() if k != "func"} | extra


# ====================================================================== commands

def cmd_pretrain(args):
    from . import optim
    from . import save as npjem_save
    from .methods import IndexedDataLoader, fit

    t0 = time.perf_counter()
    lr = OPTIMIZER["lr"] if args.lr is None else args.lr
    if args.batch_size is None:
        args.batch_size = DEFAULTS[args.method]["batch_size"]
    args.optimizer, args.weight_decay = optimizer_defaults(args.method, args.optimizer, args.weight_decay)
    train, test = _load_shapes(args.n_train, args.n_test, args.data_seed)
    backbone = build_backbone(args.arch, args.width, seed=args.seed)
    method = build_method(args.method, backbone, len(train), temperature=args.temperature,
                          queue_size=args.queue_size, momentum=args.momentum, symmetric=args.symmetric,
                          bn_splits=args.bn_splits, head_bn=args.head_bn,
                          num_negatives=args.num_negatives, pirl_loss=args.pirl_loss, grid=args.jigsaw_grid,
                          hidden_dim=args.hidden_dim, out_dim=args.out_dim, aug_strength=args.aug_strength,
                          aug_scale=args.aug_scale, aug_hue=args.aug_hue, aug_grayscale=args.aug_grayscale, aug_rotation=args.aug_rotation,
                          aug_invert=args.aug_invert, aug_vflip=args.aug_vflip,
                          seed=args.seed, **_method_options(args))
    if args.device is not None:
        method.to(args.device)
    loader = IndexedDataLoader(train.images, batch_size=args.batch_size, shuffle=True, drop_last=True,
                               generator=args.seed, device=args.device)
    if len(loader) == 0:
        raise SystemExit(f"--batch-size {args.batch_size} is larger than --n-train {args.n_train}")
    opt = _optimizer(args.optimizer, method.trainable_parameters(), lr, args.weight_decay)
    total = args.epochs * len(loader)
    sched = optim.WarmupCosine(opt, total_steps=total, warmup_steps=min(max(1, total // 10), total - 1))
    print(f"npjem pretrain: {args.method} on shapes ({len(train)} train / {len(test)} test images, 32x32), "
          f"{args.arch} width {args.width}, {args.epochs} epochs x {len(loader)} steps of {args.batch_size}, "
          f"{args.optimizer} lr {lr}, device {args.device or 'default'}", flush=True)
    t_train = time.perf_counter()
    history = fit(method, loader, opt, epochs=args.epochs, schedule=sched, generator=args.seed,
                  progress=not args.quiet, log_every=max(1, len(loader) // 2))
    train_seconds = time.perf_counter() - t_train

    t_eval = time.perf_counter()
    h_train = method.embed(train.images).data
    h_test = method.embed(test.images).data
    z_test = method.embed(test.images, projected=True).data
    metrics = evaluate_features(h_train, train.labels, h_test, test.labels, probe_max_iter=args.probe_max_iter,
                                seed=args.seed)
    metrics.update(_collapse(h_test, "h_"))
    metrics.update(_collapse(z_test, "z_"))
    eval_seconds = time.perf_counter() - t_eval

    per_epoch = [float(np.mean([v for v, e in zip(history["loss"], history["epoch"]) if e == k]))
                 for k in range(args.epochs)]
    row = {"name": f"{args.method} ({args.arch}-{args.width}, {args.epochs} ep)", **metrics}
    print()
    print(format_table([row], TABLE_COLUMNS))
    print(f"\nloss per epoch: {', '.join(f'{v:.3f}' for v in per_epoch)}")
    print(f"train {train_seconds:.0f}s, eval {eval_seconds:.0f}s, total {time.perf_counter() - t0:.0f}s")

    recipe = {k: getattr(method, k) for k in ("temperature", "directions", "queue_size", "momentum", "symmetric",
                                               "bn_splits", "batch_norm", "num_negatives", "loss", "lam",
                                               "memory_momentum")
              if isinstance(getattr(method, k, None), (int, float, str, bool))}
    recipe["views"] = repr(method.views)
    recipe["backbone_parameters"] = int(sum(p.data.size for p in method.backbone.parameters()))
    results = {"command": "pretrain", "config": _config(args, lr=lr), "recipe": recipe, "metrics": metrics,
               "loss_per_epoch": per_epoch, "steps": history.steps, "train_seconds": train_seconds,
               "eval_seconds": eval_seconds, "total_seconds": time.perf_counter() - t0}
    if args.out:
        json_path = os.path.join(args.out, "results.json")
        _write_json(json_path, results)
        ckpt = os.path.join(args.out, "checkpoint.npz")
        npjem_save({"method": method.state_dict(), "optimizer": opt.state_dict(),
                    "config": {k: v for k, v in results["config"].items() if v is not None}}, ckpt)
        print(f"wrote {json_path} and {ckpt}")
    return results


def cmd_baselines(args):
    from . import eval as ev
    from .data.augment import Compose, RandomHorizontalFlip, RandomResizedCrop

    t0 = time.perf_counter()
    train, test = _load_shapes(args.n_train, args.n_test, args.data_seed)
    rows = []
    which = [w.strip() for w in args.only.split(",")] if args.only else ["raw", "random", "supervised"]
    for w in which:
        if w not in ("raw", "random", "supervised"):
            raise SystemExit(f"--only takes raw, random, supervised; got {w!r}")

    def embed(bb, images):
        from .methods.base import Method

        return Method(bb, views=lambda x, generator=None: (x,)).embed(images).data

    if "raw" in which:
        t = time.perf_counter()
        xtr = train.images.reshape(len(train), -1)
        xte = test.images.reshape(len(test), -1)
        m = evaluate_features(xtr, train.labels, xte, test.labels, probe_max_iter=args.raw_probe_max_iter,
                              seed=args.seed)
        m.update(_collapse(xte, "h_"))
        rows.append({"name": "raw pixels", **m, "seconds": time.perf_counter() - t})
        print(format_table(rows[-1:], TABLE_COLUMNS), flush=True)
    if "random" in which:
        t = time.perf_counter()
        bb = build_backbone(args.arch, args.width, seed=args.seed, device=args.device)
        htr, hte = embed(bb, train.images), embed(bb, test.images)
        m = evaluate_features(htr, train.labels, hte, test.labels, probe_max_iter=args.probe_max_iter,
                              seed=args.seed)
        m.update(_collapse(hte, "h_"))
        rows.append({"name": f"random init ({args.arch}-{args.width})", **m, "seconds": time.perf_counter() - t})
        print(format_table(rows[-1:], TABLE_COLUMNS), flush=True)
    if "supervised" in which:
        t = time.perf_counter()
        bb = build_backbone(args.arch, args.width, seed=args.seed, device=args.device)
        augment = Compose([RandomResizedCrop(32, scale=(0.25, 1.0)), RandomHorizontalFlip(0.5)])
        ft = ev.fine_tune(bb, train.images, train.labels, test.images, test.labels, epochs=args.epochs,
                          lr=args.lr, batch_size=args.batch_size, optimizer=args.optimizer,
                          weight_decay=args.weight_decay, augment=augment, warmup_epochs=max(1, args.epochs // 10),
                          generator=args.seed, progress=not args.quiet)
        htr, hte = embed(bb, train.images), embed(bb, test.images)
        m = evaluate_features(htr, train.labels, hte, test.labels, probe_max_iter=args.probe_max_iter,
                              seed=args.seed)
        m.update(_collapse(hte, "h_"))
        rows.append({"name": f"supervised ({args.arch}-{args.width}, {args.epochs} ep)", **m,
                     "fine_tune_accuracy": ft.accuracy, "fine_tune_train_accuracy": ft.train_accuracy,
                     "seconds": time.perf_counter() - t})
        print(format_table(rows[-1:], TABLE_COLUMNS), flush=True)
        print(f"supervised end-to-end test accuracy (its own head): {ft.accuracy:.3f}")

    print()
    print(format_table(rows, TABLE_COLUMNS))
    print(f"total {time.perf_counter() - t0:.0f}s")
    results = {"command": "baselines", "config": _config(args), "rows": rows, "total_seconds": time.perf_counter() - t0}
    if args.out:
        path = os.path.join(args.out, "baselines.json")
        _write_json(path, results)
        print(f"wrote {path}")
    return results


# ====================================================================== parser

def _positive_int(s):
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s}")
    return v


def _positive_float(s):
    v = float(s)
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {s}")
    return v


def _nonnegative_float(s):
    v = float(s)
    if not (v >= 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {s}")
    return v


def _common(p):
    p.add_argument("--arch", choices=ARCHS, default="convnet", help="backbone (default convnet)")
    p.add_argument("--width", type=_positive_int, default=32, help="backbone base width (default 32)")
    p.add_argument("--n-train", type=_positive_int, default=10000, help="shapes training images (default 10000)")
    p.add_argument("--n-test", type=_positive_int, default=2000, help="shapes test images (default 2000)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the shapes images (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, shuffling and augmentations")
    p.add_argument("--device", default=None, help="cpu or cuda (default: NPJEM_DEVICE, else cpu)")
    p.add_argument("--probe-max-iter", type=_positive_int, default=300,
                   help="L-BFGS iterations of the linear probe (default 300)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def build_parser():
    ap = argparse.ArgumentParser(prog="npjem", description="npjem: joint-embedding SSL from scratch on NumPy.")
    sub = ap.add_subparsers(dest="command", metavar="{pretrain,baselines}")

    p = sub.add_parser("pretrain", help="pretrain SimCLR / MoCo / PIRL on shapes and evaluate it",
                       description="Pretrain a joint-embedding method on the built-in shapes images, then "
                                   "report linear-probe and kNN accuracy and collapse diagnostics.")
    p.add_argument("--method", choices=METHODS, default="simclr", help="default simclr")
    p.add_argument("--epochs", type=_positive_int, default=OPTIMIZER["epochs"], help=f"default {OPTIMIZER['epochs']}")
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="default: the method's (" + ", ".join(f"{m} {d['batch_size']}" for m, d in DEFAULTS.items()) + ")")
    p.add_argument("--lr", type=_positive_float, default=None, help=f"peak lr (default {OPTIMIZER['lr']})")
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw", "lars"), default=None,
                   help=f"default {OPTIMIZER['optimizer']}, moco {DEFAULTS['moco']['optimizer']} "
                        f"(sgd and lars: momentum 0.9)")
    p.add_argument("--weight-decay", type=_nonnegative_float, default=None,
                   help=f"default {OPTIMIZER['weight_decay']}, moco with {DEFAULTS['moco']['optimizer']} "
                        f"{DEFAULTS['moco']['weight_decay']}")
    p.add_argument("--temperature", type=_positive_float, default=None,
                   help="tau (default: simclr {simclr}, moco {moco}, pirl {pirl})".format(
                       **{k: v['temperature'] for k, v in DEFAULTS.items()}))
    p.add_argument("--queue-size", type=_positive_int, default=None,
                   help=f"MoCo's K (default {DEFAULTS['moco']['queue_size']})")
    p.add_argument("--momentum", type=float, default=None,
                   help=f"MoCo's key-encoder EMA momentum m (default {DEFAULTS['moco']['momentum']})")
    p.add_argument("--symmetric", action=argparse.BooleanOptionalAction, default=None,
                   help="MoCo: symmetrised loss (both views as queries; default on)")
    p.add_argument("--bn-splits", type=_positive_int, default=None,
                   help=f"MoCo's shuffling BN over this many groups of the batch, 1 = off "
                        f"(default {DEFAULTS['moco']['bn_splits']})")
    p.add_argument("--head-bn", action=argparse.BooleanOptionalAction, default=None,
                   help="MoCo: BatchNorm after the head's hidden layer (default on; --no-head-bn is MoCo v2's head)")
    p.add_argument("--num-negatives", type=_positive_int, default=None,
                   help=f"PIRL's negatives per step (default {DEFAULTS['pirl']['num_negatives']})")
    p.add_argument("--pirl-loss", choices=("nce", "infonce"), default=None,
                   help=f"PIRL's loss (default {DEFAULTS['pirl']['loss']})")
    p.add_argument("--jigsaw-grid", type=_positive_int, default=None,
                   help=f"PIRL's tiles per side (default {DEFAULTS['pirl']['grid']})")
    p.add_argument("--lambd", type=_nonnegative_float, default=None,
                   help=f"Barlow Twins' off-diagonal weight (default {DEFAULTS['barlow_twins']['lambd']})")
    for c in ("sim", "std", "cov"):
        p.add_argument(f"--{c}-coeff", type=_nonnegative_float, default=None,
                       help=f"VICReg's {c} coefficient (default {DEFAULTS['vicreg'][c + '_coeff']})")
    p.add_argument("--num-prototypes", type=_positive_int, default=None,
                   help=f"SwAV's prototypes / DINO's output width K (default swav "
                        f"{DEFAULTS['swav']['num_prototypes']}, dino {DEFAULTS['dino']['num_prototypes']})")
    p.add_argument("--n-local", type=int, default=None,
                   help=f"SwAV / DINO: 16 px local crops besides the two global ones (default {DEFAULTS['swav']['n_local']})")
    p.add_argument("--teacher-temp", type=_positive_float, default=None,
                   help=f"DINO's teacher temperature (default {DEFAULTS['dino']['teacher_temp']}; "
                        f"--temperature is the student's)")
    p.add_argument("--mask-ratio", type=float, default=None,
                   help=f"data2vec's masked share of patches (default {DEFAULTS['data2vec']['mask_ratio']})")
    p.add_argument("--top-k", type=_positive_int, default=None,
                   help=f"data2vec's teacher blocks averaged into the target (default {DEFAULTS['data2vec']['top_k']})")
    p.add_argument("--hidden-dim", type=_positive_int, default=None, help="projector hidden width (default 2x features)")
    p.add_argument("--out-dim", type=_positive_int, default=128, help="embedding width (default 128)")
    p.add_argument("--aug-strength", type=float, default=None,
                   help=f"colour-jitter strength s (default {AUGMENTATION['strength']})")
    p.add_argument("--aug-scale", type=float, default=None,
                   help=f"smallest crop area fraction (default {AUGMENTATION['scale']})")
    p.add_argument("--aug-hue", type=float, default=None, help=f"hue jitter (default {AUGMENTATION['hue']})")
    p.add_argument("--aug-grayscale", type=float, default=None,
                   help=f"grayscale probability (default {AUGMENTATION['grayscale']})")
    p.add_argument("--aug-rotation", type=float, default=None,
                   help=f"random rotation by up to ± this many degrees (default {AUGMENTATION['rotation']})")
    p.add_argument("--aug-invert", type=float, default=None,
                   help=f"probability of inverting a view, 1 − x (default {AUGMENTATION['invert']})")
    p.add_argument("--aug-vflip", type=float, default=None,
                   help=f"probability of a vertical flip (default {AUGMENTATION['vflip']})")
    p.add_argument("--out", default=None, help="directory for results.json and checkpoint.npz "
                                                "(default runs/<method>; '' writes nothing)")
    _common(p)
    p.set_defaults(func=cmd_pretrain)

    b = sub.add_parser("baselines", help="raw-pixel, random-init and supervised baselines on shapes",
                       description="The floor and ceiling for pretrain's numbers: linear probe and kNN on raw "
                                   "pixels, on a random-init backbone, and on a supervised backbone.")
    b.add_argument("--epochs", type=_positive_int, default=OPTIMIZER["epochs"],
                   help=f"supervised training epochs (default {OPTIMIZER['epochs']}, as pretrain)")
    b.add_argument("--batch-size", type=_positive_int, default=256, help="default 256")
    b.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default="adam", help="default adam")
    b.add_argument("--lr", type=_positive_float, default=3e-3, help="supervised peak lr (default 3e-3)")
    b.add_argument("--weight-decay", type=_nonnegative_float, default=0.0, help="default 0")
    b.add_argument("--raw-probe-max-iter", type=_positive_int, default=100,
                   help="L-BFGS iterations of the raw-pixel probe (3072 features; default 100)")
    b.add_argument("--only", default="", help="comma-separated subset of raw,random,supervised")
    b.add_argument("--out", default="runs/baselines", help="directory for baselines.json ('' writes nothing)")
    _common(b)
    b.set_defaults(func=cmd_baselines)
    return ap


def main(argv=None):
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.command is None:
        ap.print_help()
        return 2
    if args.command == "pretrain" and args.out is None:
        args.out = os.path.join("runs", args.method)
    args.func(args)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
