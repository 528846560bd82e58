"""Each method's recipe as data, with its sources, and the functions that build it.

A recipe is what a run of a method uses unless told otherwise: the method's own constructor
arguments (``DEFAULTS``), the optimizer and schedule (``OPTIMIZER``, ``optimizer_defaults``), the
augmentation (``AUGMENTATION``, ``method_augmentation``, ``shapes_augmentation``), the backbone
(``build_backbone``) and the head widths. ``build_method(name, backbone, n_train, ...)`` puts them
together into a method ready for ``npjem.methods.fit``; ``npjem.runs`` and the command line read
them from here, and ``npjem methods`` lists them. The supervised baseline's recipe
(``SUPERVISED``) and the EBM objectives' (``ebm_defaults``) sit beside them.

Where a value departs from the paper's (``SOURCES``), it was chosen on the built-in ``shapes``
images with short runs on a CPU; the comments say why, and the measurements are in
docs/results.md and docs/methods-noncontrastive.md. A new method's recipe goes here: a
``DEFAULTS`` entry, its own constructor arguments in ``OPTIONS``, its ``SOURCES`` and a branch of
``build_method``.
"""
from __future__ import annotations

__all__ = ["METHODS", "BASELINE_METHODS", "ARCHS", "BASELINE_ARCHS", "AUGMENTATION", "DEFAULTS", "OPTIMIZER", "OPTIONS", "SOURCES", "SUPERVISED",
           "build_backbone", "build_method", "build_optimizer", "ebm_defaults", "method_augmentation",
           "optimizer_defaults", "shapes_augmentation", "supervised_augmentation"]

METHODS = ("simclr", "moco", "pirl", "byol", "simsiam", "barlow_twins", "vicreg", "swav", "dino", "data2vec",
           "dae", "jigsaw")
#: The notes' two older routes, run as baselines beside the joint embeddings (ch. 15-1, "Generative
#: Models" and "Pretext Tasks"): a convolutional denoising autoencoder and the jigsaw task.
BASELINE_METHODS = ("dae", "jigsaw")
# The augmentation of the recipe (see shapes_augmentation).
AUGMENTATION = {"scale": 0.6, "strength": 0.5, "hue": 0.5, "grayscale": 0.2, "rotation": 180.0, "invert": 0.5, "vflip": 0.0}
ARCHS = ("convnet", "resnet_tiny")
# baselines also measures data2vec's own backbone, the yardstick for data2vec's numbers (pretrain's
# other methods cut images into tiles or decode feature maps, which a ViT of 32 px images cannot serve).
BASELINE_ARCHS = ARCHS + ("vit_tiny",)

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
    # The baselines, untuned (the comparison is the point): the DAE with Vincent et al. (2010)'s
    # masking noise at 25 % on the clean image; the jigsaw task with the paper's 100 permutations
    # of a 3 × 3 grid, each 10 px cell cropped to an 8 px tile at a random offset (the paper: 64 of
    # 85 px) so that tile edges cannot be matched.
    "dae": {"temperature": None, "corruption": "masking", "noise": 0.25, "batch_size": 256},
    "jigsaw": {"temperature": None, "grid": 3, "n_permutations": 100, "tile_size": 8, "batch_size": 256},
}
# The optimizer of the recipe: Adam (SimCLR's LARS at lr 0.3·B/256 is for batches of thousands and
# hundreds of epochs; Adam at 1e-3 trains these small networks fastest in a few epochs). A method's
# DEFAULTS may name its own optimizer and weight decay (MoCo: AdamW).
OPTIMIZER = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-6, "epochs": 20}

# Each recipe's sources: the paper the method follows, and the document that holds the shapes runs
# behind the values that depart from it (``npjem methods`` prints the papers).
_PAPERS = {"simclr": "Chen et al. 2020, SimCLR", "moco": "He et al. 2020; Chen et al. 2020, MoCo v2",
           "pirl": "Misra & van der Maaten 2020, PIRL", "byol": "Grill et al. 2020, BYOL",
           "simsiam": "Chen & He 2021, SimSiam", "barlow_twins": "Zbontar et al. 2021, Barlow Twins",
           "vicreg": "Bardes, Ponce & LeCun 2022, VICReg", "swav": "Caron et al. 2020, SwAV",
           "dino": "Caron et al. 2021, DINO", "data2vec": "Baevski et al. 2022, data2vec",
           "dae": "Vincent et al. 2008/2010, stacked denoising autoencoders",
           "jigsaw": "Noroozi & Favaro 2016, jigsaw puzzles"}
SOURCES = {m: {"paper": _PAPERS[m], "measured": "docs/results.md" if m in ("simclr", "moco", "pirl")
               else "docs/methods-noncontrastive.md"} for m in METHODS}

# ``npjem baselines``' ceiling: the same backbone trained with labels (cross-entropy, warm-up and
# cosine over ``epochs``), its views cropped at scale 0.25-1 and flipped; the raw-pixel probe
# (3,072 features) stops after ``raw_probe_max_iter`` L-BFGS iterations.
SUPERVISED = {"optimizer": "adam", "lr": 3e-3, "weight_decay": 0.0, "batch_size": 256,
              "epochs": OPTIMIZER["epochs"], "crop_scale": 0.25, "raw_probe_max_iter": 100}


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


def build_optimizer(name, params, lr, weight_decay):
    """The recipe's optimizer ``name`` (sgd, adam, adamw or lars) over ``params``; SGD and LARS
    with momentum 0.9."""
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


# ====================================================================== building blocks

def build_backbone(arch="convnet", width=32, seed=0, device=None):
    """The backbone of the recipe: ``convnet`` (4 conv-BN-ReLU blocks, widths w, 2w, 4w, 4w,
    strides 2, 2, 2, 1: 32 px → 4 px, then global average pooling; fast on a CPU),
    ``resnet_tiny`` (one BasicBlock per stage, widths w … 8w, CIFAR stem) or ``vit_tiny``
    (data2vec's own ViT, D = 64, its features the mean of the patch tokens as data2vec probes
    them; ``width`` does not apply)."""
    from .nn import models

    if arch == "convnet":
        bb = models.ConvNet(widths=(width, 2 * width, 4 * width, 4 * width), strides=(2, 2, 2, 1), generator=seed)
    elif arch == "resnet_tiny":
        bb = models.resnet_tiny(width, generator=seed)
    elif arch == "vit_tiny":
        from .methods.data2vec import ViTMeanPool

        bb = ViTMeanPool(models.vit_tiny(generator=seed))
    else:
        raise ValueError(f"arch must be one of {BASELINE_ARCHS}, got {arch!r}")
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
    if name in BASELINE_METHODS:
        return _build_baseline(name, backbone, d, grid, seed, options)
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
OPTIONS = {"byol": ("final_momentum",), "simsiam": ("predictor_hidden_dim",), "barlow_twins": ("lambd",),
            "vicreg": ("sim_coeff", "std_coeff", "cov_coeff"),
            "swav": ("num_prototypes", "epsilon", "n_local", "freeze_prototypes_steps", "queue_start_step"),
            "dino": ("teacher_temp", "warmup_teacher_temp", "warmup_teacher_temp_steps", "num_prototypes",
                     "bottleneck_dim", "n_local", "batch_norm"),
            "data2vec": ("mask_ratio", "top_k", "beta", "final_momentum", "momentum_steps"),
            "dae": ("corruption", "noise"), "jigsaw": ("n_permutations", "tile_size")}


def _build_baseline(name, backbone, d, grid, seed, options):
    """build_method's branch for the DAE and the jigsaw task (no views of the recipe: the DAE
    reconstructs the clean image, the jigsaw task makes its own tiles)."""
    from . import methods as M

    unknown = sorted(k for k in options if k not in OPTIONS[name])
    if unknown:
        raise TypeError(f"{name} takes no option(s) {', '.join(unknown)} (its own: {', '.join(OPTIONS[name])})")
    opt = {k: d.get(k) if options.get(k) is None else options[k] for k in OPTIONS[name]}
    if name == "dae":
        return M.DAE(backbone, image_shape=(3, 32, 32), generator=seed + 1, **opt)
    tile = opt.pop("tile_size")
    return M.JigsawPretext(backbone, grid=d["grid"] if grid is None else grid, tile_size=(tile, tile),
                           permutation_seed=0, generator=seed + 1, **opt)


def supervised_augmentation(size=32):
    """The supervised baseline's views (``SUPERVISED``): RandomResizedCrop(size, (0.25, 1)) and a
    horizontal flip; no colour jitter, which labels do not need to be taught."""
    from .data.augment import Compose, RandomHorizontalFlip, RandomResizedCrop

    return Compose([RandomResizedCrop(size, scale=(SUPERVISED["crop_scale"], 1.0)), RandomHorizontalFlip(0.5)])


def ebm_defaults(objective):
    """The recipe of an EBM objective of ``npjem ebm`` (``npjem.ebm.toy2d``): its Adam lr and,
    for the sampling objectives, its Langevin steps per update ``k``.

    The values live in ``npjem.ebm.toy2d`` (``LR``, ``K``), whose ``run`` uses them and which sits
    below this module; the Langevin step size follows the data set (``toy2d.LANGEVIN_STEP``).
    """
    from .ebm import toy2d

    if objective not in toy2d.OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(toy2d.OBJECTIVES)}, got {objective!r}")
    own = {"lr": toy2d.LR[objective]}
    if objective in toy2d.K:
        own["k"] = toy2d.K[objective]
    return own


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

    unknown = sorted(k for k in options if k not in OPTIONS[name])
    if unknown:
        raise TypeError(f"{name} takes no option(s) {', '.join(unknown)} (its own: {', '.join(OPTIONS[name])})")
    opt = {k: (d.get(k) if v is None else v) for k, v in options.items()}
    for k in OPTIONS[name]:
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

