"""The command line: ``npjem pretrain`` (the project's main job) and ``npjem baselines``.

    npjem pretrain [--method simclr|moco|pirl] [--epochs E] [--batch-size B] [--lr LR] ...
    npjem baselines [--epochs E] ...

``pretrain`` trains a joint-embedding method on the built-in ``shapes`` images (10 classes of
procedurally drawn shapes whose colour, position, size, rotation and clutter carry no label),
(or on ``--data digits`` or a folder of images), then evaluates the frozen backbone on the
test split: a linear probe (multinomial
logistic regression, L-BFGS, l2 chosen on a held-out fifth of the train set), a weighted
k-NN classifier (k = 20, T = 0.07) and the collapse diagnostics (RankMe effective rank, the
std of the L2-normalised embeddings) of the backbone features h and of the projected
embeddings z. It prints a table, and writes under ``--out`` (default ``runs/<method>``):
``results.json``, ``checkpoint.npz`` (written at the end of every epoch too), ``curves.png``
(loss, embedding std and effective rank per epoch) and ``embeddings.png`` (the test set's
backbone features in 2-D by PCA, coloured by class).

No lost work: ``--out`` is checked to be writable before anything is trained; a folder that
already holds a run is not overwritten without ``--force``; Ctrl-C finishes the step under
way, saves ``checkpoint.npz`` and exits, and ``--resume`` continues from it.

Mistakes in what was typed (a flag out of range, ``--device cuda`` without CuPy, a missing
``--data`` folder, a learning rate that makes the loss non-finite) end with a one-line
message naming the flag and exit status 2; ``--debug`` (or ``NPJEM_DEBUG=1``) shows the
traceback instead.

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
import signal
import sys
import threading
import time

import numpy as np

__all__ = ["main", "build_parser", "build_backbone", "build_method", "evaluate_features", "DEFAULTS", "UsageError"]

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
    # Barlow Twins: a 512-wide projector (hidden and output; the paper's is 8192): probe 0.262 against
    # 0.198 with the 128-wide one, seed 0 (docs/methods-noncontrastive.md).
    "barlow_twins": {"temperature": None, "lambd": 5e-3, "hidden_dim": 512, "out_dim": 512, "batch_size": 256},
    "vicreg": {"temperature": None, "sim_coeff": 25.0, "std_coeff": 25.0, "cov_coeff": 1.0, "batch_size": 256},
    # SwAV and DINO: two 32 px crops and two 16 px local crops; K scaled to the 10-class data set.
    # Neither inverts its views: with the recipe's inversion the code of one view cannot be
    # predicted from the other at the start, the uniform prediction is the best answer, and the
    # loss locks at log K (SwAV's probe 0.122 at random-init level, DINO's teacher entropy at
    # log K; docs/methods-noncontrastive.md). SwAV without inversion: ε 0.02, sharper codes
    # (probe 0.199; ε 0.05 0.176, 0.03 0.189, 0.01 0.186). DINO: BatchNorm in the head and a
    # sharper teacher against the uniform collapse (τ_t 0.01: probe 0.192; 0.02: 0.184; the
    # shared recipe: 0.166).
    "swav": {"temperature": 0.1, "num_prototypes": 100, "epsilon": 0.02, "n_local": 2,
             "freeze_prototypes_steps": 39, "queue_size": 0, "batch_size": 256, "augmentation": {"invert": 0.0}},
    "dino": {"temperature": 0.1, "teacher_temp": 0.01, "warmup_teacher_temp": 0.01, "warmup_teacher_temp_steps": 0,
             "momentum": 0.99, "num_prototypes": 1024, "bottleneck_dim": 128, "n_local": 2, "batch_norm": True,
             "batch_size": 256, "augmentation": {"invert": 0.0}},
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
                 symmetric=None, bn_splits=None, head_bn=None, num_negatives=None, pirl_loss=None, grid=None, hidden_dim=None, out_dim=None, aug_strength=None, aug_scale=None,
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
    out_dim = d.get("out_dim", 128) if out_dim is None else out_dim
    tau = d["temperature"] if temperature is None else temperature
    if name in _NONCONTRASTIVE:
        aug = _augmentation(name, aug_strength, aug_scale, aug_hue, aug_grayscale, aug_rotation, aug_invert, aug_vflip)
        if head_bn is not None and name == "dino":
            options = {**options, "batch_norm": head_bn}
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
                     "bottleneck_dim", "n_local", "batch_norm"),
            "data2vec": ("mask_ratio", "top_k", "beta", "final_momentum", "momentum_steps")}


def method_augmentation(name):
    """The knobs of ``shapes_augmentation`` in ``name``'s recipe: ``AUGMENTATION`` with the
    method's own ``DEFAULTS[name]["augmentation"]`` entries."""
    return {**AUGMENTATION, **DEFAULTS[name].get("augmentation", {})}


def _augmentation(name, strength, scale, hue, grayscale, rotation, invert, vflip):
    given = {"scale": scale, "strength": strength, "hue": hue, "grayscale": grayscale, "rotation": rotation,
             "invert": invert, "vflip": vflip}
    recipe = method_augmentation(name)
    return {k: recipe[k] if v is None else v for k, v in given.items()}


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


class UsageError(Exception):
    """A mistake in what was typed: ``main`` prints its message on one line and exits with 2."""


def _debug_wanted(args=None):
    env = os.environ.get("NPJEM_DEBUG", "").strip().lower()
    return bool(getattr(args, "debug", False)) or env not in ("", "0", "false", "no")


_open_status = [False]  # a status line waits for its "done": an error message starts a new line


def _status(args, message, end="\n"):
    """A status line on stderr (progress, not results), unless ``--quiet``."""
    if not getattr(args, "quiet", False):
        print(message, end=end, file=sys.stderr, flush=True)
        _open_status[0] = end != "\n"


def _error(message):
    if _open_status[0]:
        print(file=sys.stderr)
        _open_status[0] = False
    print(message, file=sys.stderr)


DATA_SETS = ("shapes", "digits")


def _subset(ds, n, flag, split):
    from .data.datasets import Dataset

    if n is None or n == len(ds):
        return ds
    if n > len(ds):
        raise UsageError(f"{flag} {n} is more than the {len(ds)} images of the {split} split of --data")
    return Dataset(ds.images[:n], ds.labels[:n], ds.classes, name=ds.name)


def _load_data(args):
    """The (train, test) Datasets that ``--data`` names, cut to ``--n-train`` / ``--n-test``.

    ``shapes`` (default sizes 10,000 / 2,000; drawn once, then cached), ``digits``
    (scikit-learn's 8x8 digits upsampled to 32x32 RGB; all of them by default) or a folder
    with ``train/<class>/<image>`` and ``test/<class>/<image>`` (read at 32x32 RGB).
    """
    from .data import datasets

    data = args.data
    t = time.perf_counter()
    if data == "shapes":
        n_train = 10000 if args.n_train is None else args.n_train
        n_test = 2000 if args.n_test is None else args.n_test
        _status(args, f"shapes: {n_train} train / {n_test} test images (drawn once, then cached in "
                      f"{datasets.default_cache_dir()}) ...", end=" ")
        train = datasets.shapes("train", n=n_train, seed=args.data_seed)
        test = datasets.shapes("test", n=n_test, seed=args.data_seed)
    elif data == "digits":
        _status(args, "digits: scikit-learn's 8x8 digits at 32x32 ...", end=" ")
        try:
            train = datasets.digits("train", size=32, seed=args.data_seed, channels=3)
            test = datasets.digits("test", size=32, seed=args.data_seed, channels=3)
        except ImportError:
            raise UsageError("--data digits needs scikit-learn: pip install 'npjem[datasets]'") from None
        train, test = _subset(train, args.n_train, "--n-train", "train"), _subset(test, args.n_test, "--n-test", "test")
    else:
        if not os.path.isdir(data):
            what = "no such folder" if not os.path.exists(data) else "not a folder"
            raise UsageError(f"--data {data}: expected {' or '.join(DATA_SETS)} or a folder of images ({what})")
        parts = {split: os.path.join(data, split) for split in ("train", "test")}
        missing = [sp for sp, d in parts.items() if not os.path.isdir(d)]
        if missing:
            raise UsageError(f"--data {data}: the folder needs train/<class>/<image> and test/<class>/<image> "
                             f"sub-folders; {' and '.join(missing)}/ is missing")
        _status(args, f"{data}: reading images at 32x32 ...", end=" ")
        try:
            train, test = datasets.image_folder(parts["train"], 32), datasets.image_folder(parts["test"], 32)
        except ValueError as exc:
            raise UsageError(f"--data {data}: {exc}") from None
        if list(train.classes) != list(test.classes):
            raise UsageError(f"--data {data}: train/ and test/ have different class folders "
                             f"({', '.join(train.classes)} against {', '.join(test.classes)})")
        train, test = _subset(train, args.n_train, "--n-train", "train"), _subset(test, args.n_test, "--n-test", "test")
    _status(args, f"done ({time.perf_counter() - t:.1f}s)")
    args.n_train, args.n_test = len(train), len(test)
    counts = np.bincount(_host(train.labels))
    if (counts > 0).sum() < 2 or counts.max() < 5:
        # The probe picks its l2 on a held-out fifth of each class: found out before training, not after.
        what = "one class" if (counts > 0).sum() < 2 else "fewer than 5 images in every class"
        raise UsageError(f"--n-train {len(train)} leaves {what}; the linear probe chooses its l2 on a held-out "
                         "fifth of each class: use a larger --n-train")
    return train, test


# ====================================================================== run folders

#: Files whose presence marks a folder as holding a run.
RUN_FILES = ("results.json", "checkpoint.npz", "baselines.json")


def _prepare_out(out, *, force=False, resume=False, resumable=True):
    """Make ``out`` and prove it writable (a probe file written and removed), before training.

    A folder that already holds a run (``RUN_FILES``) is refused unless ``force`` (overwrite)
    or ``resume`` (continue it) is given.
    """
    if not out:
        return
    held = [f for f in RUN_FILES if os.path.exists(os.path.join(out, f))]
    if held and not (force or resume):
        again = "--resume to continue it, " if resumable else ""
        raise UsageError(f"--out {out} already holds a run ({', '.join(held)}); pass --force to overwrite it, "
                         f"{again}or choose another --out")
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, f".npjem-write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("npjem")
        os.remove(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(f"--out {out} is not writable ({reason}); choose another --out") from None


# ====================================================================== training state (Ctrl-C, --resume)

def _generator_state(g):
    """A CPU generator's bit-generator state as JSON text; None on a GPU (not saved there)."""
    inner = getattr(g, "_g", None)
    if getattr(g, "xp", None) is np and inner is not None:
        return json.dumps(inner.bit_generator.state)
    return None


def _set_generator_state(g, text):
    if text is not None and getattr(g, "xp", None) is np:
        g._g.bit_generator.state = json.loads(text)


def _extra_state(method):
    """What a method holds outside its ``state_dict``: generators (MoCo's shuffling BN, PIRL's
    negatives), MoCo's queue, PIRL's memory bank and numeric private attributes (PIRL's NCE
    normaliser), found by walking the modules' attributes."""
    from . import backend
    from .random import Generator
    from .state import MemoryBank, Queue

    arrays, meta = {}, {}
    for name, module in method.named_modules():
        for attr, v in vars(module).items():
            key = f"{name}.{attr}" if name else attr
            if isinstance(v, Generator):
                meta[key] = {"generator": _generator_state(v)}
            elif isinstance(v, (Queue, MemoryBank)):
                arrays[key] = backend.to_numpy(v.data)
                meta[key] = {"ptr": int(getattr(v, "ptr", 0)), "generator": _generator_state(v.generator)
                             if isinstance(getattr(v, "generator", None), Generator) else None}
            elif attr.startswith("_") and (v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))):
                meta[key] = {"value": v}
    return {"arrays": arrays, "meta": json.dumps(meta)}


def _load_extra_state(method, extra):
    from . import backend
    from .random import Generator
    from .state import MemoryBank, Queue

    meta = json.loads(str(extra["meta"]))
    modules = dict(method.named_modules())
    for key, m in meta.items():
        name, _, attr = key.rpartition(".")
        module = modules.get(name)
        if module is None:
            continue
        v = getattr(module, attr, None)
        if "value" in m:
            setattr(module, attr, m["value"])
        elif isinstance(v, Generator):
            _set_generator_state(v, m["generator"])
        elif isinstance(v, (Queue, MemoryBank)):
            xp = backend.get_array_module(v.data)
            v.data[...] = xp.asarray(extra["arrays"][key], dtype=v.data.dtype)
            if hasattr(v, "ptr"):
                v.ptr = m["ptr"]
            if isinstance(getattr(v, "generator", None), Generator):
                _set_generator_state(v.generator, m["generator"])


def _make_lazy_state(method, loader):
    """Make the state a method creates at its first forward (MoCo's queue, PIRL's memory bank)
    with one throw-away forward pass, so that a checkpoint can be loaded into it; whatever that
    pass changed (BatchNorm statistics, generators, queue) the checkpoint then overwrites."""
    from .autograd import no_grad

    x, _, idx = next(iter(loader))
    with no_grad():
        method.training_loss(x, indices=idx, generator=0)
    for module in method.modules():
        for attr in [a for a in vars(module) if a.startswith("_pending")]:
            setattr(module, attr, None)  # the throw-away step's keys/rows must not be stored


class _ResumableLoader:
    """A loader that remembers its generator's state at the start of each epoch (the state the
    epoch's shuffle is drawn from) and can skip the batches of a resumed epoch already trained."""

    def __init__(self, loader, skip=0):
        self.loader, self.skip = loader, int(skip)
        self.epoch_state = _generator_state(loader.generator)

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        self.epoch_state = _generator_state(self.loader.generator)
        skip, self.skip = self.skip, 0
        for i, batch in enumerate(self.loader):
            if i >= skip:
                yield batch


def _lower_lr(what, epoch, step, n_steps, lr):
    return UsageError(f"{what} not finite at epoch {epoch}, step {step} of {n_steps} (lr {lr:g}): lower --lr")


def _finite(a):
    from . import backend

    return bool(backend.get_array_module(a).isfinite(a).all())


def _monitor(method, images):
    """Embedding std and RankMe of h and z on a fixed slice of the test set (per-epoch curves);
    None when an embedding is not finite. The backbone runs once; the head maps its h to z."""
    from . import eval as ev
    from .autograd import Tensor, no_grad

    h = method.embed(images).data
    found = {"h_": h}
    if method.head is not None:
        was_training = method.training
        method.eval()
        try:
            with no_grad():
                found["z_"] = method.head(Tensor(h)).data
        finally:
            method.train(was_training)
    out = {}
    for prefix, z in found.items():
        if not _finite(z):
            return None
        out[f"{prefix}embedding_std"] = ev.embedding_std(z)
        out[f"{prefix}effective_rank"] = ev.effective_rank(z)
    return out


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

# Flags that may differ between a run and its --resume (they do not change what is computed).
RESUME_FREE = ("out", "resume", "force", "quiet", "debug", "device", "func", "command")
MONITOR_IMAGES = 512  # test images on which the per-epoch embedding std and RankMe are measured


def _resume_config(args, saved, parser_defaults):
    """Take the saved run's flags; a flag typed now that differs from the saved one is an error."""
    for k, v in saved.items():
        if k in RESUME_FREE or not hasattr(args, k):
            continue
        now = getattr(args, k)
        if now != parser_defaults.get(k) and now != v:
            flag = "--" + k.replace("_", "-")
            raise UsageError(f"{flag} {now} differs from the run being resumed ({flag} {v}); leave it out "
                             "to continue that run, or start a new one with --force or another --out")
        setattr(args, k, v)
    for k, default in parser_defaults.items():  # flags the saved run left at None (not stored)
        if k not in saved and k not in RESUME_FREE and getattr(args, k) != default:
            flag = "--" + k.replace("_", "-")
            raise UsageError(f"{flag} was not set in the run being resumed; leave it out")


def _checkpoint(path, method, opt, sched, config, progress, aug_gen, loader):
    from . import save as npjem_save

    npjem_save({"method": method.state_dict(), "optimizer": opt.state_dict(), "schedule": sched.state_dict(),
                "config": {k: v for k, v in config.items() if v is not None},
                "progress": progress, "extra": _extra_state(method),
                "generators": {"augment": _generator_state(aug_gen) or "", "loader": loader.epoch_state or ""}},
               path)


def _train(args, method, loader, opt, sched, test, lr, ckpt_path, saved):
    """``fit`` with per-epoch diagnostics, a checkpoint each epoch and on Ctrl-C, and --resume."""
    from . import random as nrandom
    from .methods import fit

    n_steps = len(loader)
    total = args.epochs * n_steps
    device = args.device
    aug_gen = nrandom.as_generator(args.seed, device)
    progress = {"step": 0, "epochs": args.epochs, "steps_per_epoch": n_steps, "complete": False,
                "loss": [], "lr": [], "monitor": [], "train_seconds": 0.0}
    rl = _ResumableLoader(loader)
    if saved is not None:
        if saved["progress"]["steps_per_epoch"] != n_steps:
            raise UsageError(f"the checkpoint in --out {args.out} has {saved['progress']['steps_per_epoch']} "
                             f"steps per epoch, this run {n_steps}; it cannot be resumed")
        _make_lazy_state(method, loader)
        method.load_state_dict(saved["method"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["schedule"])
        _load_extra_state(method, saved["extra"])
        p = saved["progress"]
        progress.update(step=int(p["step"]), loss=[float(v) for v in p["loss"]], lr=[float(v) for v in p["lr"]],
                        monitor=[dict(m) for m in p["monitor"]], train_seconds=float(p["train_seconds"]))
        states = (saved["generators"]["augment"] or None, saved["generators"]["loader"] or None)
        if None in states or aug_gen.xp is not np or loader.generator.xp is not np:
            # CuPy's generator states cannot be saved: the resumed run draws fresh, seeded streams
            # (the same continuation every time, but not the draws the uninterrupted run makes).
            seeds = np.random.SeedSequence([args.seed, progress["step"]]).generate_state(2)  # host
            aug_gen = nrandom.Generator(int(seeds[0]), aug_gen.device)
            loader.generator = nrandom.Generator(int(seeds[1]), loader.generator.device)
            _status(args, "random streams re-seeded: generator states on a GPU are not saved")
        else:
            _set_generator_state(aug_gen, states[0])
            _set_generator_state(loader.generator, states[1])
        rl = _ResumableLoader(loader, skip=progress["step"] % n_steps)
        _status(args, f"resuming {ckpt_path} at epoch {progress['step'] // n_steps + 1}, "
                      f"step {progress['step'] % n_steps + 1} of {n_steps}")
    start = progress["step"]
    monitor_images = test.images[:MONITOR_IMAGES]
    stop = {"requested": False}
    t_start = time.perf_counter()
    seconds_before = progress["train_seconds"]

    def save(complete=False):
        progress["train_seconds"] = seconds_before + time.perf_counter() - t_start
        progress["complete"] = complete
        if ckpt_path:
            _checkpoint(ckpt_path, method, opt, sched, _config(args, lr=lr), progress, aug_gen, rl)

    def callback(rec):
        step = start + rec["step"] + 1  # steps of the whole run done so far
        progress["step"] = step
        progress["loss"].append(rec["loss"])
        progress["lr"].append(rec["lr"])
        if step % n_steps == 0:
            m = _monitor(method, monitor_images)
            if m is None:  # a loss bounded like InfoNCE's can stay finite while the features overflow
                raise _lower_lr("the embeddings of the test images are", step // n_steps, n_steps, n_steps, lr)
            progress["monitor"].append(m)
            if step < total:
                save()
        return stop["requested"]

    def on_sigint(signum, frame):
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        print("\nCtrl-C: finishing this step and saving a checkpoint (Ctrl-C again to stop at once)",
              file=sys.stderr, flush=True)

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if in_main else None
    interrupted = False
    try:
        # Overflow is caught below as a non-finite loss or embedding, with the flag to change;
        # NumPy's warnings about it on the way would only bury that message.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if total - start > 0:
                fit(method, rl, opt, epochs=args.epochs - start // n_steps, schedule=sched, generator=aug_gen,
                    progress=not args.quiet, log_every=max(1, n_steps // 2), callback=callback,
                    max_steps=total - start)
    except KeyboardInterrupt:
        interrupted = True
    except FloatingPointError:
        step = progress["step"]  # steps completed; fit stopped before the update of the next one
        raise _lower_lr("the loss is", step // n_steps + 1, step % n_steps + 1, n_steps, lr) from None
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
    if interrupted or stop["requested"]:
        save()
        step = progress["step"]
        where = f"after epoch {step // n_steps}, step {step % n_steps} of {n_steps}" if step % n_steps \
            else f"after epoch {step // n_steps}"
        if ckpt_path:
            print(f"\ninterrupted {where}; saved {ckpt_path}\ncontinue with: npjem pretrain --out {args.out} "
                  "--resume", file=sys.stderr, flush=True)
        else:
            print(f"\ninterrupted {where}; nothing saved (--out '')", file=sys.stderr, flush=True)
        raise SystemExit(130)
    progress["train_seconds"] = seconds_before + time.perf_counter() - t_start
    return progress, aug_gen, rl, save


def cmd_pretrain(args, parser_defaults=None):
    from . import load as npjem_load
    from . import optim
    from .methods import IndexedDataLoader

    t0 = time.perf_counter()
    ckpt_path = os.path.join(args.out, "checkpoint.npz") if args.out else None
    saved = None
    if args.resume:
        if not ckpt_path or not os.path.exists(ckpt_path):
            raise UsageError(f"--resume: no checkpoint.npz in --out {args.out or repr('')} to continue")
        saved = npjem_load(ckpt_path)
        if "progress" not in saved or saved["progress"]["complete"]:
            raise UsageError(f"--resume: the run in --out {args.out} is complete; nothing to continue")
        _resume_config(args, saved["config"], parser_defaults or {})
    lr = OPTIMIZER["lr"] if args.lr is None else args.lr
    if args.batch_size is None:
        args.batch_size = DEFAULTS[args.method]["batch_size"]
    args.optimizer, args.weight_decay = optimizer_defaults(args.method, args.optimizer, args.weight_decay)
    _prepare_out(args.out, force=args.force, resume=args.resume)
    train, test = _load_data(args)
    if args.batch_size > len(train):
        raise UsageError(f"--batch-size {args.batch_size} is larger than the {len(train)} training images "
                         "(--n-train)")
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
    opt = _optimizer(args.optimizer, method.trainable_parameters(), lr, args.weight_decay)
    total = args.epochs * len(loader)
    sched = optim.WarmupCosine(opt, total_steps=total, warmup_steps=min(max(1, total // 10), total - 1))
    data_name = args.data if args.data in DATA_SETS else os.path.basename(os.path.normpath(args.data))
    # data2vec trains its own ViT whatever --arch says (build_method replaces the backbone).
    arch = "vit_tiny (data2vec's own)" if args.method == "data2vec" else f"{args.arch} width {args.width}"
    print(f"npjem pretrain: {args.method} on {data_name} ({len(train)} train / {len(test)} test images, 32x32), "
          f"{arch}, {args.epochs} epochs x {len(loader)} steps of {args.batch_size}, "
          f"{args.optimizer} lr {lr}, device {args.device or 'default'}", flush=True)
    progress, _, _, save = _train(args, method, loader, opt, sched, test, lr, ckpt_path, saved)
    train_seconds = progress["train_seconds"]

    t_eval = time.perf_counter()
    _status(args, f"evaluating: features of {len(train) + len(test)} images, linear probe, kNN, "
                  "collapse diagnostics ...", end=" ")
    h_train = method.embed(train.images).data
    h_test = method.embed(test.images).data
    z_test = method.embed(test.images, projected=True).data
    if not (_finite(h_train) and _finite(h_test) and _finite(z_test)):
        n = len(loader)
        raise _lower_lr("the trained backbone's features are", args.epochs, n, n, lr)
    metrics = evaluate_features(h_train, train.labels, h_test, test.labels, probe_max_iter=args.probe_max_iter,
                                seed=args.seed)
    metrics.update(_collapse(h_test, "h_"))
    metrics.update(_collapse(z_test, "z_"))
    eval_seconds = time.perf_counter() - t_eval
    _status(args, f"done ({eval_seconds:.0f}s)")

    n_steps = len(loader)
    per_epoch = [float(np.mean(progress["loss"][k * n_steps:(k + 1) * n_steps])) for k in range(args.epochs)]
    short = "vit_tiny" if args.method == "data2vec" else f"{args.arch}-{args.width}"
    row = {"name": f"{args.method} ({short}, {args.epochs} ep)", **metrics}
    print()
    print(format_table([row], TABLE_COLUMNS))
    print(f"\nloss per epoch: {', '.join(f'{v:.3f}' for v in per_epoch)}")
    before = saved["progress"]["train_seconds"] if saved is not None else 0.0
    resumed = f" ({before:.0f}s before --resume)" if saved is not None else ""
    print(f"train {train_seconds:.0f}s{resumed}, eval {eval_seconds:.0f}s, total {time.perf_counter() - t0 + before:.0f}s")

    recipe = {k: getattr(method, k) for k in ("temperature", "directions", "queue_size", "momentum", "symmetric",
                                               "bn_splits", "batch_norm", "num_negatives", "loss", "lam",
                                               "memory_momentum")
              if isinstance(getattr(method, k, None), (int, float, str, bool))}
    recipe["views"] = repr(method.views)
    recipe["backbone_parameters"] = int(sum(p.data.size for p in method.backbone.parameters()))
    per_epoch_monitor = {k: [m[k] for m in progress["monitor"]] for k in (progress["monitor"][0] if
                                                                          progress["monitor"] else {})}
    config = {k: v for k, v in _config(args, lr=lr).items() if k not in ("force", "resume", "debug")}
    results = {"command": "pretrain", "config": config, "recipe": recipe, "metrics": metrics,
               "loss_per_epoch": per_epoch, "per_epoch": {"loss": per_epoch, **per_epoch_monitor,
                                                          "monitor_images": min(MONITOR_IMAGES, len(test))},
               "steps": len(progress["loss"]), "train_seconds": train_seconds,
               "eval_seconds": eval_seconds, "total_seconds": time.perf_counter() - t0 + before,
               "resumed_at_step": int(saved["progress"]["step"]) if saved is not None else None}
    if args.out:
        json_path = os.path.join(args.out, "results.json")
        _write_json(json_path, results)
        save(complete=True)
        pngs = _pictures(args, results, h_test, test, method)
        print(f"wrote {json_path} and {ckpt_path}")
        for path in pngs:
            print(f"wrote {path}")
    return results


def _pictures(args, results, h_test, test, method):
    """``curves.png`` (per-epoch loss, embedding std, RankMe) and ``embeddings.png`` (PCA of the
    test features by class) in ``--out``; their paths."""
    from . import plot

    name = type(method).__name__
    pe = results["per_epoch"]
    epochs = np.arange(1, len(pe["loss"]) + 1)  # host
    panels = {"loss (mean over the epoch)": {"loss": pe["loss"]}}
    std = {label: pe[k] for k, label in (("h_embedding_std", "h (backbone)"), ("z_embedding_std", "z (projection)"))
           if k in pe}
    rank = {label: pe[k] for k, label in (("h_effective_rank", "h (backbone)"), ("z_effective_rank", "z (projection)"))
            if k in pe}
    if std:
        panels["std of the L2-normalised embeddings"] = std
        panels["effective rank (RankMe)"] = rank
    data_name = args.data if args.data in DATA_SETS else os.path.basename(os.path.normpath(args.data))
    curves = plot.curves(panels, os.path.join(args.out, "curves.png"), x=epochs, xlabel="epoch",
                         title=f"{name} on {data_name}: training curves (std and rank on "
                               f"{pe['monitor_images']} test images)")
    m = results["metrics"]
    points = plot.pca_2d(h_test)
    emb = plot.scatter(points, _host(test.labels), test.classes, os.path.join(args.out, "embeddings.png"),
                       title=f"{name}: {len(test)} test images, backbone features h by PCA "
                             f"(linear probe {m['linear_probe']:.3f}, kNN {m['knn']:.3f})")
    return [curves, emb]


def _host(a):
    from . import backend

    return backend.to_numpy(a)


def cmd_baselines(args):
    from . import eval as ev
    from .data.augment import Compose, RandomHorizontalFlip, RandomResizedCrop

    t0 = time.perf_counter()
    which = [w.strip() for w in args.only.split(",")] if args.only else ["raw", "random", "supervised"]
    for w in which:
        if w not in ("raw", "random", "supervised"):
            raise UsageError(f"--only takes raw, random, supervised; got {w!r}")
    _prepare_out(args.out, force=args.force)
    train, test = _load_data(args)
    if "supervised" in which and args.batch_size > len(train):
        raise UsageError(f"--batch-size {args.batch_size} is larger than the {len(train)} training images "
                         "(--n-train)")
    rows = []

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


# ====================================================================== the oracle: reference, check, gradcheck

def _assignments(items, flag, parse):
    """``["N=8", "D=4"]`` → ``{"N": 8, "D": 4}`` (values through ``parse``)."""
    out = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"{flag} takes NAME=VALUE, got {item!r}")
        try:
            out[name] = parse(value)
        except ValueError:
            raise UsageError(f"{flag} {item}: {value!r} is not a valid value") from None
    return out


def _literal(text):
    """A keyword argument's value as typed: a bool, an int, a float, or else the string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def cmd_reference(args):
    from . import crosscheck

    shapes = _assignments(args.shape, "--shape", int)
    kwargs = _assignments(args.kwarg, "--kwarg", _literal)
    if args.all is not None:
        if args.loss is not None or args.out is not None:
            raise UsageError("--all DIR writes one file per loss: give neither LOSS nor --out with it")
        if shapes or kwargs:
            raise UsageError("--shape and --kwarg apply to one loss, not to --all")
        os.makedirs(args.all, exist_ok=True)
        paths = [os.path.join(args.all, f"{name}.npz") for name in crosscheck.names()]
        taken = [p for p in paths if os.path.exists(p)]
        if taken and not args.force:
            raise UsageError(f"{taken[0]} exists ({len(taken)} of the files do); --force replaces them")
        for name, path in zip(crosscheck.names(), paths):
            crosscheck.write_reference(path, name, seed=args.seed, overwrite=True)
            print(f"wrote {path}")
        return 0
    if args.loss is None or args.out is None:
        raise UsageError("give LOSS and --out FILE.npz, or --all DIR (npjem reference --help)")
    if args.loss not in crosscheck.names():
        raise UsageError(f"unknown loss {args.loss!r}; one of: {', '.join(crosscheck.names())}")
    if os.path.exists(args.out) and not args.force:
        raise UsageError(f"{args.out} exists; --force replaces it")
    parent = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(parent, exist_ok=True)
    try:
        ref = crosscheck.write_reference(args.out, args.loss, seed=args.seed, shapes=shapes, kwargs=kwargs,
                                         overwrite=True)
    except TypeError as exc:  # an unknown keyword of the loss
        raise UsageError(f"--kwarg: {exc}") from None
    print(f"wrote {args.out}: {ref['call']}, value {float(ref['value']):.17g}")
    return 0


def cmd_check(args):
    from . import crosscheck

    failed = 0
    for path in args.files:
        if not os.path.isfile(path):
            raise UsageError(f"{path}: no such file")
        report = crosscheck.check_reference(path, rtol=args.rtol, atol=args.atol)
        print(report)
        failed += not report.ok
    return 1 if failed else 0


def cmd_gradcheck(args):
    from . import crosscheck

    rows = crosscheck.self_check(args.device or "cpu")
    print(format_table([{"check": name, "order": order, "result": "ok" if ok else "FAIL",
                         "seconds": sec} for name, order, ok, sec, _ in rows],
                       [("check", "check"), ("order", "order"), ("result", "result"), ("seconds", "seconds")]))
    bad = [(name, order, msg) for name, order, ok, _, msg in rows if not ok]
    for name, order, msg in bad:
        print(f"{name} (order {order}): {msg}")
    print(f"{len(rows) - len(bad)} passed, {len(bad)} failed")
    return 1 if bad else 0



# ====================================================================== npjem ebm

def cmd_ebm(args):
    from .ebm import toy2d as ebm_toy2d

    out = args.out if args.out is not None else os.path.join("runs", "ebm", f"{args.data}_{args.objective}")
    _prepare_out(out, force=args.force, resumable=False)
    _status(args, f"training an MLP energy on {args.data} with {args.objective} ({args.steps} steps)")
    try:
        # A diverging run ends with one message naming --lr; NumPy's overflow warnings would bury it.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            r = ebm_toy2d.run(args.data, args.objective, steps=args.steps, seed=args.seed, out=out or None,
                              batch_size=args.batch_size, lr=args.lr, k=args.k, sampler=args.sampler,
                              step_size=args.step_size,
                              sigma=args.sigma, nce_noise=args.nce_noise, nce_ratio=args.nce_ratio,
                              n_particles=args.n_particles, pcd_init=args.pcd_init, n_train=args.n_train,
                              grid=args.grid, sample_steps=args.sample_steps, progress=not args.quiet)
    except FloatingPointError as exc:
        raise UsageError(f"{exc} (--lr)") from None
    print(ebm_toy2d.table([r]))
    print(f"learned density {r['nll']:.3f} nats per point; true {r['nll_true']:.3f}; best single Gaussian "
          f"{r['nll_gaussian']:.3f}")
    if out:
        path = os.path.join(out, "results.json")
        _write_json(path, {"command": "ebm", "config": _config(args), "result": r})
        print(f"wrote {path}")
        print(f"wrote {r['png']}")
    return 0



def cmd_methods(args):
    from . import catalogue

    rows = [r for r in catalogue.entries() if args.kind is None or args.kind in r["kind"]]
    if not rows:
        raise UsageError(f"no entry's kind contains {args.kind!r}; the kinds are: "
                         + "; ".join(sorted({r["kind"] for r in catalogue.entries()})))
    print(format_table(rows, [("name", "name"), ("kind", "kind"), ("paper", "paper"), ("defaults", "defaults"),
                              ("source", "source"), ("run", "run")]))
    return 0


# ====================================================================== parser

def _number(s, kind):
    try:
        return kind(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'}, got {s!r}") from None


def _positive_int(s):
    v = _number(s, int)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s}")
    return v


def _nonnegative_int(s):
    v = _number(s, int)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {s}")
    return v


def _batch_size(s):
    v = _number(s, int)
    if v < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2 (a one-sample batch has nothing to be contrasted "
                                         f"with, and BatchNorm needs two samples), got {s}")
    return v


def _positive_float(s):
    v = _number(s, float)
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {s}")
    return v


def _nonnegative_float(s):
    v = _number(s, float)
    if not (v >= 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {s}")
    return v


def _in_range(lo, hi, lo_open=False, hi_open=False):
    """A float type for argparse in [lo, hi] (an open end excludes it)."""
    def parse(s):
        v = _number(s, float)
        ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        if not ok:
            raise argparse.ArgumentTypeError(
                f"must be a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}, got {s}")
        return v
    return parse


_probability = _in_range(0.0, 1.0)


def _device(s):
    from . import backend

    try:
        d = backend.normalize_device(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be cpu, cuda or cuda:N, got {s!r}") from None
    if d != "cpu" and not backend.cupy_available():
        raise argparse.ArgumentTypeError(f"{s}: CuPy or a CUDA GPU is not available here (pip install "
                                         "'npjem[gpu]' on a machine with a GPU), use --device cpu")
    return d


def _data(s):
    if s in DATA_SETS or os.path.isdir(s):
        return s
    what = "no such folder" if not os.path.exists(s) else "not a folder"
    raise argparse.ArgumentTypeError(f"expected {' or '.join(DATA_SETS)} or a folder of images; {s!r}: {what}")


def _common(p):
    p.add_argument("--data", type=_data, default="shapes",
                   help="shapes (built in, default), digits (scikit-learn's, the [datasets] extra) or a folder "
                        "with train/<class>/<image> and test/<class>/<image>")
    p.add_argument("--arch", choices=ARCHS, default="convnet", help="backbone (default convnet)")
    p.add_argument("--width", type=_positive_int, default=32, help="backbone base width (default 32)")
    p.add_argument("--n-train", type=_positive_int, default=None,
                   help="training images (default: shapes 10000, else all)")
    p.add_argument("--n-test", type=_positive_int, default=None, help="test images (default: shapes 2000, else all)")
    p.add_argument("--data-seed", type=int, default=0,
                   help="seed of the shapes images and the digits split (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, shuffling and augmentations")
    p.add_argument("--device", type=_device, default=None, help="cpu or cuda (default: NPJEM_DEVICE, else cpu)")
    p.add_argument("--probe-max-iter", type=_positive_int, default=300,
                   help="L-BFGS iterations of the linear probe (default 300)")
    p.add_argument("--force", action="store_true",
                   help="overwrite a run already in --out (without it, a folder that holds results or a "
                        "checkpoint is left alone and the command stops)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (also NPJEM_DEBUG=1)")


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage block) and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (--help lists the flags)\n")


def build_parser():
    ap = _Parser(prog="npjem", description="npjem: joint-embedding SSL from scratch on NumPy.", allow_abbrev=False)
    sub = ap.add_subparsers(dest="command", metavar="{pretrain,baselines,ebm,methods,reference,check,gradcheck}")

    p = sub.add_parser("pretrain", help="pretrain SimCLR / MoCo / PIRL on shapes and evaluate it",
                       allow_abbrev=False,
                       description="Pretrain a joint-embedding method on the built-in shapes images, then "
                                   "report linear-probe and kNN accuracy and collapse diagnostics. Writes "
                                   "results.json, checkpoint.npz, curves.png and embeddings.png to --out. A "
                                   "folder that already holds a run is not overwritten: the command stops "
                                   "unless --force (overwrite) or --resume (continue). Ctrl-C saves a checkpoint "
                                   "that --resume continues.")
    p.add_argument("--method", choices=METHODS, default="simclr", help="default simclr")
    p.add_argument("--epochs", type=_positive_int, default=OPTIMIZER["epochs"], help=f"default {OPTIMIZER['epochs']}")
    p.add_argument("--batch-size", type=_batch_size, default=None,
                   help="default: the method's (" + ", ".join(f"{m} {d['batch_size']}" for m, d in DEFAULTS.items()) + ")")
    p.add_argument("--lr", type=_positive_float, default=None, help=f"peak lr (default {OPTIMIZER['lr']})")
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw", "lars"), default=None,
                   help=f"default {OPTIMIZER['optimizer']}, moco {DEFAULTS['moco']['optimizer']} "
                        f"(sgd and lars: momentum 0.9)")
    p.add_argument("--weight-decay", type=_nonnegative_float, default=None,
                   help=f"default {OPTIMIZER['weight_decay']}, moco with {DEFAULTS['moco']['optimizer']} "
                        f"{DEFAULTS['moco']['weight_decay']}")
    p.add_argument("--temperature", type=_positive_float, default=None,
                   help="tau of the methods that have one (default: " + ", ".join(
                       f"{k} {v['temperature']}" for k, v in DEFAULTS.items() if v.get("temperature")) + ")")
    p.add_argument("--queue-size", type=_positive_int, default=None,
                   help=f"MoCo's K (default {DEFAULTS['moco']['queue_size']})")
    p.add_argument("--momentum", type=_in_range(0.0, 1.0, hi_open=True), default=None,
                   help="the EMA momentum of the key encoder or teacher (default: " + ", ".join(
                       f"{k} {v['momentum']}" for k, v in DEFAULTS.items() if "momentum" in v) + ")")
    p.add_argument("--symmetric", action=argparse.BooleanOptionalAction, default=None,
                   help="MoCo: symmetrised loss (both views as queries; default on)")
    p.add_argument("--bn-splits", type=_positive_int, default=None,
                   help=f"MoCo's shuffling BN over this many groups of the batch, 1 = off "
                        f"(default {DEFAULTS['moco']['bn_splits']})")
    p.add_argument("--head-bn", action=argparse.BooleanOptionalAction, default=None,
                   help="MoCo and DINO: BatchNorm after the head's hidden layers (default on for both; "
                        "--no-head-bn is MoCo v2's head and the original DINO's use_bn_in_head=False)")
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
    p.add_argument("--epsilon", type=_positive_float, default=None,
                   help=f"SwAV's Sinkhorn entropy weight (default {DEFAULTS['swav']['epsilon']})")
    p.add_argument("--n-local", type=int, default=None,
                   help=f"SwAV / DINO: 16 px local crops besides the two global ones (default {DEFAULTS['swav']['n_local']})")
    p.add_argument("--teacher-temp", type=_positive_float, default=None,
                   help=f"DINO's teacher temperature (default {DEFAULTS['dino']['teacher_temp']}; "
                        f"--temperature is the student's)")
    p.add_argument("--mask-ratio", type=float, default=None,
                   help=f"data2vec's masked share of patches (default {DEFAULTS['data2vec']['mask_ratio']})")
    p.add_argument("--top-k", type=_positive_int, default=None,
                   help=f"data2vec's teacher blocks averaged into the target (default {DEFAULTS['data2vec']['top_k']})")
    p.add_argument("--hidden-dim", type=_positive_int, default=None, help="projector hidden width (default 2x features; barlow_twins 512)")
    p.add_argument("--out-dim", type=_positive_int, default=None,
                   help="embedding width (default 128; barlow_twins 512)")
    p.add_argument("--aug-strength", type=_nonnegative_float, default=None,
                   help=f"colour-jitter strength s (default {AUGMENTATION['strength']})")
    p.add_argument("--aug-scale", type=_in_range(0.0, 1.0, lo_open=True), default=None,
                   help=f"smallest crop area fraction (default {AUGMENTATION['scale']})")
    p.add_argument("--aug-hue", type=_in_range(0.0, 0.5), default=None, help=f"hue jitter (default {AUGMENTATION['hue']})")
    p.add_argument("--aug-grayscale", type=_probability, default=None,
                   help=f"grayscale probability (default {AUGMENTATION['grayscale']})")
    p.add_argument("--aug-rotation", type=_in_range(0.0, 180.0), default=None,
                   help=f"random rotation by up to ± this many degrees (default {AUGMENTATION['rotation']})")
    p.add_argument("--aug-invert", type=_probability, default=None,
                   help=f"probability of inverting a view, 1 − x (default {AUGMENTATION['invert']}; " + ", ".join(
                       f"{k} {v['augmentation']['invert']}" for k, v in DEFAULTS.items()
                       if "invert" in v.get("augmentation", {})) + ")")
    p.add_argument("--aug-vflip", type=_probability, default=None,
                   help=f"probability of a vertical flip (default {AUGMENTATION['vflip']})")
    p.add_argument("--out", default=None, help="folder for results.json, checkpoint.npz, curves.png and "
                                                "embeddings.png (default runs/<method>; '' writes nothing)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out from its checkpoint.npz (with its flags)")
    _common(p)
    p.set_defaults(func=cmd_pretrain)

    b = sub.add_parser("baselines", help="raw-pixel, random-init and supervised baselines on shapes",
                       allow_abbrev=False,
                       description="The floor and ceiling for pretrain's numbers: linear probe and kNN on raw "
                                   "pixels, on a random-init backbone, and on a supervised backbone.")
    b.add_argument("--epochs", type=_positive_int, default=OPTIMIZER["epochs"],
                   help=f"supervised training epochs (default {OPTIMIZER['epochs']}, as pretrain)")
    b.add_argument("--batch-size", type=_batch_size, default=256, help="default 256")
    b.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default="adam", help="default adam")
    b.add_argument("--lr", type=_positive_float, default=3e-3, help="supervised peak lr (default 3e-3)")
    b.add_argument("--weight-decay", type=_nonnegative_float, default=0.0, help="default 0")
    b.add_argument("--raw-probe-max-iter", type=_positive_int, default=100,
                   help="L-BFGS iterations of the raw-pixel probe (3072 features; default 100)")
    b.add_argument("--only", default="", help="comma-separated subset of raw,random,supervised")
    b.add_argument("--out", default="runs/baselines", help="directory for baselines.json ('' writes nothing)")
    _common(b)
    b.set_defaults(func=cmd_baselines)

    r = sub.add_parser("reference", allow_abbrev=False, help="write npjem's float64 value and gradients of a loss "
                       "to an .npz that any language can read",
                       description="Draw a loss's inputs from --seed, evaluate it in float64 and write the inputs, "
                                   "keyword arguments, value and every gradient to FILE.npz (an ordinary zip of "
                                   ".npy files; the README describes the layout). --all DIR writes one per loss.")
    r.add_argument("loss", nargs="?", default=None, help="a loss name (npjem methods lists them)")
    r.add_argument("--out", default=None, help="the .npz to write")
    r.add_argument("--all", metavar="DIR", default=None, help="write DIR/<loss>.npz for every loss")
    r.add_argument("--seed", type=_nonnegative_int, default=0, help="seed of the inputs (default 0)")
    r.add_argument("--shape", action="append", metavar="SYM=N", help="a size, e.g. --shape N=16 --shape D=8")
    r.add_argument("--kwarg", action="append", metavar="NAME=VALUE",
                   help="a keyword argument of the loss, e.g. --kwarg temperature=0.5")
    r.add_argument("--force", action="store_true", help="replace an existing file")
    r.add_argument("--debug", action="store_true", help="show the traceback of an error")
    r.set_defaults(func=cmd_reference)

    c = sub.add_parser("check", allow_abbrev=False, help="re-evaluate reference files with this npjem",
                       description="Exit status 0 when every file's value and gradients agree with npjem, "
                                   "1 when one does not, 2 when a file cannot be read.")
    c.add_argument("files", nargs="+", metavar="FILE.npz")
    c.add_argument("--rtol", type=_nonnegative_float, default=1e-10, help="default 1e-10")
    c.add_argument("--atol", type=_nonnegative_float, default=1e-12, help="default 1e-12")
    c.add_argument("--debug", action="store_true", help="show the traceback of an error")
    c.set_defaults(func=cmd_check)

    g = sub.add_parser("gradcheck", allow_abbrev=False, help="the engine's self-check against central differences",
                       description="Every registered loss and the engine's composites and layers against "
                                   "central differences in float64 (first and second order), on --device.")
    g.add_argument("--device", type=_device, default=None, help="cpu or cuda (default: NPJEM_DEVICE, else cpu)")
    g.add_argument("--debug", action="store_true", help="show the traceback of an error")
    g.set_defaults(func=cmd_gradcheck)

    from .data import toy2d as _toy2d
    from .ebm.toy2d import OBJECTIVES as EBM_OBJECTIVES

    e = sub.add_parser("ebm", allow_abbrev=False, help="train an energy on a 2-D toy density with one objective",
                       description="Train an MLP energy on a 2-D toy density with an EBM objective (maximum "
                                   "likelihood with CD-k, persistent CD or a replay buffer; NCE; exact, sliced or "
                                   "denoising score matching). Prints the test NLL of the learned density next to "
                                   "the true density's and the best single Gaussian's, and writes results.json and "
                                   "a PNG of the landscape to --out. A folder that already holds a run is not "
                                   "overwritten without --force.")
    e.add_argument("objective", choices=EBM_OBJECTIVES, help="one of " + ", ".join(EBM_OBJECTIVES))
    e.add_argument("--data", choices=_toy2d.names(), default="8gaussians", help="default 8gaussians")
    e.add_argument("--steps", type=_positive_int, default=1500, help="parameter updates (default 1500)")
    e.add_argument("--batch-size", type=_batch_size, default=256, help="default 256")
    e.add_argument("--lr", type=_positive_float, default=None, help="Adam's lr (default 2e-3 with sampling, 1e-3 without)")
    e.add_argument("--k", type=_positive_int, default=None, help="Langevin steps per update (default cd/pcd 10, replay 20)")
    e.add_argument("--sampler", choices=("langevin", "mala"), default="langevin",
                   help="the MCMC of cd, pcd and replay: Langevin (default) or MALA")
    e.add_argument("--step-size", type=_positive_float, default=None, help="Langevin step (default per data set)")
    e.add_argument("--sigma", type=_positive_float, default=0.05, help="dsm's noise level (default 0.05)")
    e.add_argument("--nce-noise", choices=("gaussian", "uniform"), default="gaussian",
                   help="nce's noise: the data's Gaussian widened x1.5 (default) or uniform on the box")
    e.add_argument("--nce-ratio", type=_positive_int, default=1, help="nce's noise points per data point (default 1)")
    e.add_argument("--n-particles", type=_positive_int, default=None, help="pcd's chains (default: the batch size)")
    e.add_argument("--pcd-init", choices=("uniform", "data"), default="uniform",
                   help="where pcd's chains start: uniform noise in the box (default) or data points")
    e.add_argument("--n-train", type=_batch_size, default=20000, help="training points drawn (default 20000)")
    e.add_argument("--grid", type=_batch_size, default=400, help="side of the NLL's normalising grid (default 400)")
    e.add_argument("--sample-steps", type=_positive_int, default=500,
                   help="Langevin steps of the samples drawn on the PNG (default 500)")
    e.add_argument("--seed", type=_nonnegative_int, default=0, help="seed of data, weights and chains")
    e.add_argument("--out", default=None, help="folder for results.json and the PNG (default runs/ebm/DATA_OBJECTIVE; "
                                                "'' writes nothing)")
    e.add_argument("--force", action="store_true", help="overwrite a run already in --out")
    e.add_argument("--quiet", action="store_true", help="no progress output")
    e.add_argument("--debug", action="store_true", help="show the traceback of an error")
    e.set_defaults(func=cmd_ebm)

    m = sub.add_parser("methods", allow_abbrev=False, help="every method, objective and loss: paper, defaults, file",
                       description="One row per joint-embedding method, EBM objective and loss: its paper, its "
                                   "defaults here, the file that implements it and how to run it.")
    m.add_argument("--kind", default=None, help="only rows whose kind contains this text (e.g. EBM, loss)")
    m.add_argument("--debug", action="store_true", help="show the traceback of an error")
    m.set_defaults(func=cmd_methods)
    return ap


def main(argv=None):
    """Run the command line; returns 0, or raises ``SystemExit`` (2 for a usage error, 130 for
    a run stopped with Ctrl-C after saving its checkpoint)."""
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.command is None:
        ap.print_help()
        return 2
    if args.command == "pretrain" and args.out is None:
        args.out = os.path.join("runs", args.method)
    try:
        if args.command == "pretrain":
            args.func(args, parser_defaults=vars(build_parser().parse_args(["pretrain"])))
            rc = 0
        else:
            rc = args.func(args)
    except BrokenPipeError:
        # The reader went away (npjem methods | head): nothing to report; keep Python's exit flush quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except UsageError as exc:
        if _debug_wanted(args):
            raise
        _error(f"npjem {args.command}: error: {exc}")
        raise SystemExit(2) from None
    except (ValueError, OSError, ImportError, RuntimeError) as exc:
        if _debug_wanted(args):
            raise
        _error(f"npjem {args.command}: error: {type(exc).__name__}: {exc} (--debug shows the traceback)")
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        if _debug_wanted(args):
            raise
        _error(f"npjem {args.command}: interrupted")
        raise SystemExit(130) from None
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
