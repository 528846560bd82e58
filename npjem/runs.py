"""A run of a method, from Python as from the command line: ``pretrain``, ``baselines``, ``ebm``.

    >>> from npjem import runs
    >>> results = runs.pretrain("byol", data="shapes", out="runs/byol", epochs=20, seed=0)

``pretrain`` trains a joint-embedding method with its recipe (``npjem.recipes``) on the built-in
``shapes`` images (10 classes of procedurally drawn shapes whose colour, position, size,
rotation and clutter carry no label), on ``data="digits"`` or on a folder of images, then
evaluates the frozen backbone on the test split: a linear probe (multinomial logistic
regression, L-BFGS, l2 chosen on a held-out fifth of the train set), a weighted k-NN classifier
(k = 20, T = 0.07) and the collapse diagnostics (RankMe effective rank, the std of the
L2-normalised embeddings) of the backbone features h and of the projected embeddings z. It
prints a table and returns the results; with ``out`` (default ``runs/<method>``; ``""`` writes
nothing) it writes ``results.json``, ``checkpoint.npz`` (at the end of every epoch too),
``curves.png`` (loss, embedding std and effective rank per epoch) and ``embeddings.png`` (the
test set's backbone features in 2-D by PCA, coloured by class).

No lost work: ``out`` is checked to be writable before anything is trained; a folder that
already holds a run is not overwritten without ``force=True``; Ctrl-C finishes the step under
way, saves ``checkpoint.npz`` and raises :class:`RunInterrupted`, and ``resume=True`` continues
from the checkpoint with the saved settings (a setting given that differs from the saved one is
refused). A setting that cannot work raises :class:`RunError` (a ``ValueError``) naming the
argument, before training where it can be found out before.

``baselines`` computes the floor and the ceiling with the same evaluation: raw pixels, the
randomly initialised backbone, and the same backbone trained with labels. ``ebm`` trains an
energy on a 2-D toy density with one EBM objective (``npjem.ebm.toy2d``) in its own folder.

``npjem pretrain``, ``npjem baselines`` and ``npjem ebm`` parse their flags and call these; the
settings recorded in ``results.json`` and the checkpoint are the same from either side, so a run
started on the command line can be resumed from Python and the other way round.
"""
from __future__ import annotations

import json
import math
import os
import re
import signal
import sys
import threading
import time

import numpy as np

from .recipes import (
    DEFAULTS,
    OPTIMIZER,
    OPTIONS,
    SUPERVISED,
    build_backbone,
    build_method,
    build_optimizer,
    optimizer_defaults,
    supervised_augmentation,
)

__all__ = ["pretrain", "baselines", "ebm", "RunError", "RunInterrupted", "evaluate_features", "format_table",
           "DATA_SETS", "RUN_FILES", "TABLE_COLUMNS", "shapes_variant", "learning_curves"]

# An argument named in a message: [[lr]], [[lr=0.01]] (with its value) or [[force!]] (a switch).
_ARG = re.compile(r"\[\[(\w+)(!|=(.*?))?\]\]")


class RunError(ValueError):
    """A setting of a run that cannot work, found out before or during training.

    ``str(error)`` names the Python argument (``lr=0.01``, ``force=True``); :meth:`flags` says
    the same with the command line's flags (``--lr 0.01``, ``--force``), which ``npjem`` prints
    as its one-line error.
    """

    def __init__(self, template):
        self.template = template
        super().__init__(_ARG.sub(self._python, template))

    @staticmethod
    def _python(m):
        if m[2] == "!":
            return f"{m[1]}=True"
        return m[1] if m[2] is None else f"{m[1]}={m[3]}"

    @staticmethod
    def _flag(m):
        flag = "--" + m[1].replace("_", "-")
        return flag if m[2] in (None, "!") else f"{flag} {m[3]}"

    def flags(self):
        """The message with the command line's flags in place of the Python arguments."""
        return _ARG.sub(self._flag, self.template)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run after the step under way; ``checkpoint`` is the file saved (None with
    ``out=""``), ``where`` says how far it got. ``resume=True`` continues it."""

    def __init__(self, where, checkpoint, out):
        self.where, self.checkpoint, self.out = where, checkpoint, out
        saved = f"saved {checkpoint}; continue with resume=True" if checkpoint else "nothing saved (out='')"
        super().__init__(f"interrupted {where}; {saved}")


class _Settings:
    """A run's settings as attributes (what the command line's parsed flags were)."""

    def __init__(self, **settings):
        vars(self).update(settings)


def _check_device(device):
    """The device a run was given, found out before training: one that is not there is refused."""
    from . import backend

    if device is None:
        return
    if backend.normalize_device(device) != "cpu" and not backend.cupy_available():
        raise RunError(f"[[device={device}]]: CuPy or a CUDA GPU is not available here (pip install "
                       "'npjem[gpu]' on a machine with a GPU); use the cpu")


def _validate_pretrain(a):
    """The arguments ``pretrain`` can check before it loads anything (the command line's parser
    checks the same, flag by flag)."""
    from ._checks import check_choice, check_int, check_positive, check_probability, check_real
    from .recipes import ARCHS, METHODS

    check_choice(a.method, "method", METHODS)
    check_choice(a.arch, "arch", ARCHS)
    check_int(a.epochs, "epochs")
    check_int(a.width, "width")
    check_int(a.probe_max_iter, "probe_max_iter")
    check_int(a.seed, "seed", minimum=None)
    check_int(a.data_seed, "data_seed", minimum=None)
    for name in ("n_train", "n_test", "queue_size", "bn_splits", "num_negatives", "jigsaw_grid", "hidden_dim",
                 "out_dim"):
        if getattr(a, name) is not None:
            check_int(getattr(a, name), name)
    if a.batch_size is not None:
        check_int(a.batch_size, "batch_size", minimum=2)
    if a.optimizer is not None:
        check_choice(a.optimizer, "optimizer", ("sgd", "adam", "adamw", "lars"))
    for name in ("lr", "temperature"):
        if getattr(a, name) is not None:
            check_positive(getattr(a, name), name)
    for name in ("weight_decay", "aug_strength"):
        if getattr(a, name) is not None:
            check_positive(getattr(a, name), name, allow_zero=True)
    for name in ("aug_grayscale", "aug_invert", "aug_vflip"):
        if getattr(a, name) is not None:
            check_probability(getattr(a, name), name)
    if a.momentum is not None:
        check_real(a.momentum, "momentum", 0.0, 1.0, high_open=True)
    if a.aug_scale is not None:
        check_real(a.aug_scale, "aug_scale", 0.0, 1.0, low_open=True)
    if a.aug_hue is not None:
        check_real(a.aug_hue, "aug_hue", 0.0, 0.5)
    if a.aug_rotation is not None:
        check_real(a.aug_rotation, "aug_rotation", 0.0, 180.0)
    if not isinstance(a.data, (str, os.PathLike)):
        raise TypeError(f"data must be {' or '.join(DATA_SETS)} or a folder of images, got {a.data!r}")
    if a.out is not None and not isinstance(a.out, (str, os.PathLike)):
        raise TypeError(f"out must be a folder (a str or a path), or '' to write nothing, got {a.out!r}")
    _check_device(a.device)
    a.probe_every = _probe_epochs(a.probe_every, a.epochs)
    unknown = sorted(k for k in a.options if k not in OPTIONS.get(a.method, ()))
    if unknown:
        own = ", ".join(OPTIONS.get(a.method, ())) or "none"
        raise TypeError(f"pretrain({a.method!r}) takes no option(s) {', '.join(unknown)} (its own: {own})")


def _probe_epochs(probe_every, epochs):
    """``probe_every`` as a sorted tuple of epochs in 1..epochs (None: no probes during training)."""
    from ._checks import check_int

    if probe_every is None:
        return None
    if isinstance(probe_every, str):
        try:
            probe_every = [int(v) for v in probe_every.split(",")] if "," in probe_every else int(probe_every)
        except ValueError:
            raise ValueError(f"probe_every must be an int or epochs like '5,10,20', got {probe_every!r}") from None
    if isinstance(probe_every, (list, tuple)):
        if not probe_every:
            raise ValueError("probe_every must name at least one epoch")
        out = sorted({check_int(e, "probe_every epoch") for e in probe_every})
        if out[-1] > epochs:
            raise ValueError(f"probe_every names epoch {out[-1]} of a run of {epochs} epochs")
        return tuple(out)
    every = check_int(probe_every, "probe_every")
    return tuple(range(every, epochs + 1, every))


# ====================================================================== pretrain

def pretrain(method="simclr", *, data="shapes", out=None, epochs=OPTIMIZER["epochs"], batch_size=None, lr=None,
             optimizer=None, weight_decay=None, temperature=None, queue_size=None, momentum=None, symmetric=None,
             bn_splits=None, head_bn=None, num_negatives=None, pirl_loss=None, jigsaw_grid=None, hidden_dim=None,
             out_dim=None, aug_strength=None, aug_scale=None, aug_hue=None, aug_grayscale=None, aug_rotation=None,
             aug_invert=None, aug_vflip=None, arch="convnet", width=32, n_train=None, n_test=None, data_seed=0,
             seed=0, device=None, probe_max_iter=300, probe_every=None, force=False, resume=False, quiet=False,
             **options):
    """Pretrain ``method`` with its recipe, evaluate its frozen backbone and return the results.

    Every setting left at None takes the method's recipe (``npjem.recipes.DEFAULTS``, ``OPTIMIZER``,
    ``method_augmentation``); ``options`` are the method's own constructor arguments
    (``recipes.OPTIONS[method]``: ``lambd``, ``sim_coeff``, ``num_prototypes``, ``teacher_temp`` …).
    ``data`` is ``"shapes"`` (10,000 / 2,000 images by default), ``"digits"`` or a folder with
    ``train/<class>/<image>`` and ``test/<class>/<image>``; ``n_train`` / ``n_test`` cut it.

    ``out`` is the run's folder (default ``runs/<method>``; ``""`` writes nothing). ``force``
    overwrites a run already there; ``resume`` continues its checkpoint with its saved settings.
    ``quiet`` silences the progress on stderr (the header and the table are printed anyway).

    ``probe_every`` probes the frozen backbone during training (a learning curve): an int E probes
    after every E-th epoch, a sequence of epochs after those (``(5, 10, 20, 40, 80)``); the last
    epoch is always probed at the end. A probe runs in eval mode with its own seeded L-BFGS, so the
    training trajectory is bit for bit the one of a run without probes. The results carry
    ``probes``: one ``{"epoch", "linear_probe", "knn", ...}`` per probe.

    Returns the dict written to ``results.json``: ``config``, ``recipe``, ``metrics`` (linear
    probe, kNN, collapse diagnostics), ``per_epoch`` curves, timings. Raises :class:`RunError`
    for a setting that cannot work and :class:`RunInterrupted` after Ctrl-C has saved a
    checkpoint.
    """
    settings = {k: v for k, v in locals().items() if k != "options"}
    if settings["out"] is None:
        settings["out"] = os.path.join("runs", method)
    args = _Settings(command="pretrain", **settings, options=dict(options))
    _validate_pretrain(args)
    args.options = {k: options.get(k) for k in OPTIONS.get(method, ())}
    return _pretrain(args)


def _pretrain_defaults():
    import inspect

    return {k: p.default for k, p in inspect.signature(pretrain).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _pretrain(args):
    """``pretrain`` once its arguments are checked: the run folder, training, evaluation, outputs."""
    from . import load as npjem_load
    from . import optim
    from .methods import IndexedDataLoader

    t0 = time.perf_counter()
    ckpt_path = os.path.join(args.out, "checkpoint.npz") if args.out else None
    saved = None
    if args.resume:
        if not ckpt_path or not os.path.exists(ckpt_path):
            raise RunError(f"[[resume]]: no checkpoint.npz in [[out={args.out or repr('')}]] to continue")
        saved = npjem_load(ckpt_path)
        if "progress" not in saved or saved["progress"]["complete"]:
            raise RunError(f"[[resume]]: the run in [[out={args.out}]] is complete; nothing to continue")
        defaults = _pretrain_defaults()
        if args.method == defaults["method"] != saved["config"].get("method", args.method):
            # The method is left to the checkpoint: its own options are what the saved run may hold.
            args.options = dict.fromkeys(OPTIONS.get(saved["config"]["method"], ()))
        _resume_config(args, saved["config"], {**defaults, **dict.fromkeys(args.options)})
    lr = OPTIMIZER["lr"] if args.lr is None else args.lr
    if args.batch_size is None:
        args.batch_size = DEFAULTS[args.method]["batch_size"]
    args.optimizer, args.weight_decay = optimizer_defaults(args.method, args.optimizer, args.weight_decay)
    _prepare_out(args.out, force=args.force, resume=args.resume)
    train, test = _load_data(args)
    if args.batch_size > len(train):
        raise RunError(f"[[batch_size={args.batch_size}]] is larger than the {len(train)} training images "
                       "([[n_train]])")
    backbone = build_backbone(args.arch, args.width, seed=args.seed)
    method = build_method(args.method, backbone, len(train), temperature=args.temperature,
                          queue_size=args.queue_size, momentum=args.momentum, symmetric=args.symmetric,
                          bn_splits=args.bn_splits, head_bn=args.head_bn,
                          num_negatives=args.num_negatives, pirl_loss=args.pirl_loss, grid=args.jigsaw_grid,
                          hidden_dim=args.hidden_dim, out_dim=args.out_dim, aug_strength=args.aug_strength,
                          aug_scale=args.aug_scale, aug_hue=args.aug_hue, aug_grayscale=args.aug_grayscale,
                          aug_rotation=args.aug_rotation, aug_invert=args.aug_invert, aug_vflip=args.aug_vflip,
                          seed=args.seed, **{k: v for k, v in args.options.items() if v is not None})
    if args.device is not None:
        method.to(args.device)
    loader = IndexedDataLoader(train.images, batch_size=args.batch_size, shuffle=True, drop_last=True,
                               generator=args.seed, device=args.device)
    opt = build_optimizer(args.optimizer, method.trainable_parameters(), lr, args.weight_decay)
    total = args.epochs * len(loader)
    sched = optim.WarmupCosine(opt, total_steps=total, warmup_steps=min(max(1, total // 10), total - 1))
    data_name = _data_name(args.data)
    # data2vec trains its own ViT whatever arch says (build_method replaces the backbone).
    arch = "vit_tiny (data2vec's own)" if args.method == "data2vec" else f"{args.arch} width {args.width}"
    print(f"npjem pretrain: {args.method} on {data_name} ({len(train)} train / {len(test)} test images, 32x32), "
          f"{arch}, {args.epochs} epochs x {len(loader)} steps of {args.batch_size}, "
          f"{args.optimizer} lr {lr}, device {args.device or 'default'}", flush=True)
    progress, _, _, save = _train(args, method, loader, opt, sched, test, lr, ckpt_path, saved, train=train)
    train_seconds = progress["train_seconds"]

    t_eval = time.perf_counter()
    _status(args, f"evaluating: features of {len(train) + len(test)} images, linear probe, kNN, "
                  "collapse diagnostics ...", end=" ")
    h_train = method.embed(train.images).data
    h_test = method.embed(test.images).data
    # The DAE and the jigsaw task have no projection head: their z is h.
    z_test = method.embed(test.images, projected=True).data if method.head is not None else h_test
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
    config = {k: v for k, v in _config(args, lr=lr).items() if k not in ("force", "resume")}
    results = {"command": "pretrain", "config": config, "recipe": recipe, "metrics": metrics,
               "loss_per_epoch": per_epoch, "per_epoch": {"loss": per_epoch, **per_epoch_monitor,
                                                          "monitor_images": min(MONITOR_IMAGES, len(test))},
               # The run's own probe closes the curve, unless the last epoch was probed already.
               "probes": progress["probes"] + ([{"epoch": args.epochs, "linear_probe": metrics["linear_probe"],
                                                  "knn": metrics["knn"], "probe_l2": metrics["probe_l2"]}]
                                                if args.probe_every and args.epochs not in args.probe_every
                                                else []),
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


# ====================================================================== baselines

def baselines(*, data="shapes", out="runs/baselines", epochs=SUPERVISED["epochs"],
              batch_size=SUPERVISED["batch_size"], optimizer=SUPERVISED["optimizer"], lr=SUPERVISED["lr"],
              weight_decay=SUPERVISED["weight_decay"], raw_probe_max_iter=SUPERVISED["raw_probe_max_iter"],
              only=("raw", "random", "supervised"), arch="convnet", width=32, n_train=None, n_test=None,
              data_seed=0, seed=0, device=None, probe_max_iter=300, probe_every=None, force=False, quiet=False):
    """The floor and the ceiling for ``pretrain``'s numbers, evaluated the same way: a linear probe
    and kNN on raw pixels (``"raw"``), on a randomly initialised backbone (``"random"``) and on the
    same backbone trained with labels (``"supervised"``: ``recipes.SUPERVISED``, cross-entropy, then
    probed like the others). ``only`` picks a subset (a sequence, or a comma-separated string).

    ``probe_every`` (as ``pretrain``'s) probes the supervised backbone during its training: the
    supervised row then carries ``probes``, the ceiling's learning curve.

    Writes ``baselines.json`` to ``out`` (``""`` writes nothing; a folder that holds a run is not
    overwritten without ``force``) and returns it: ``config``, ``rows`` (one dict per baseline).
    """
    from ._checks import check_choice, check_int, check_positive
    from .recipes import BASELINE_ARCHS

    check_choice(arch, "arch", BASELINE_ARCHS)
    if isinstance(only, str):
        which = [w.strip() for w in only.split(",")] if only else ["raw", "random", "supervised"]
    else:
        which = list(only)
    for w in which:
        if w not in ("raw", "random", "supervised"):
            raise RunError(f"[[only]] takes raw, random, supervised; got {w!r}")
    for name, v in (("epochs", epochs), ("width", width), ("probe_max_iter", probe_max_iter),
                    ("raw_probe_max_iter", raw_probe_max_iter)):
        check_int(v, name)
    check_int(batch_size, "batch_size", minimum=2)
    check_positive(lr, "lr")
    check_positive(weight_decay, "weight_decay", allow_zero=True)
    check_choice(optimizer, "optimizer", ("sgd", "adam", "adamw"))
    _check_device(device)
    probe_every = _probe_epochs(probe_every, epochs)
    args = _Settings(command="baselines", epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                     weight_decay=weight_decay, raw_probe_max_iter=raw_probe_max_iter,
                     only=only if isinstance(only, str) else ",".join(which), out=out, data=data, arch=arch,
                     width=width, n_train=n_train, n_test=n_test, data_seed=data_seed, seed=seed, device=device,
                     probe_max_iter=probe_max_iter, probe_every=probe_every, force=force, quiet=quiet)
    return _baselines(args, which)


def _arch_label(args):
    return args.arch if args.arch == "vit_tiny" else f"{args.arch}-{args.width}"


def _baselines(args, which):
    from . import eval as ev

    t0 = time.perf_counter()
    _prepare_out(args.out, force=args.force, resumable=False)
    train, test = _load_data(args)
    if "supervised" in which and args.batch_size > len(train):
        raise RunError(f"[[batch_size={args.batch_size}]] is larger than the {len(train)} training images "
                       "([[n_train]])")
    rows = []

    from .methods.base import Method

    def embed(bb, images):
        return Method(bb, views=lambda x, generator=None: (x,)).embed(images).data

    def add(name, htr, hte, probe_max_iter, t, **extra):
        m = evaluate_features(htr, train.labels, hte, test.labels, probe_max_iter=probe_max_iter, seed=args.seed)
        m.update(_collapse(hte, "h_"))
        rows.append({"name": name, **m, **extra, "seconds": time.perf_counter() - t})
        print(format_table(rows[-1:], TABLE_COLUMNS), flush=True)

    if "raw" in which:
        t = time.perf_counter()
        add("raw pixels", train.images.reshape(len(train), -1), test.images.reshape(len(test), -1),
            args.raw_probe_max_iter, t)
    if "random" in which:
        t = time.perf_counter()
        bb = build_backbone(args.arch, args.width, seed=args.seed, device=args.device)
        add(f"random init ({_arch_label(args)})", embed(bb, train.images), embed(bb, test.images),
            args.probe_max_iter, t)
    if "supervised" in which:
        t = time.perf_counter()
        bb = build_backbone(args.arch, args.width, seed=args.seed, device=args.device)
        probes = []
        every = args.probe_every

        def probe(epoch, backbone):  # the supervised learning curve, like pretrain's probe_every
            if every and epoch in every:
                probes.append(_probe(args, Method(backbone, views=lambda x, generator=None: (x,)), train, test,
                                     epoch))

        ft = ev.fine_tune(bb, train.images, train.labels, test.images, test.labels, epochs=args.epochs,
                          lr=args.lr, batch_size=args.batch_size, optimizer=args.optimizer,
                          weight_decay=args.weight_decay, augment=supervised_augmentation(32),
                          warmup_epochs=max(1, args.epochs // 10), generator=args.seed, progress=not args.quiet,
                          epoch_callback=probe)
        add(f"supervised ({_arch_label(args)}, {args.epochs} ep)", embed(bb, train.images),
            embed(bb, test.images), args.probe_max_iter, t, fine_tune_accuracy=ft.accuracy,
            fine_tune_train_accuracy=ft.train_accuracy, **({"probes": probes} if every else {}))
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


# ====================================================================== ebm

def ebm(objective, *, data="8gaussians", out=None, steps=1500, batch_size=256, lr=None, k=None, sampler="langevin",
        step_size=None, sigma=0.05, nce_noise="gaussian", nce_ratio=1, n_particles=None, pcd_init="uniform",
        n_train=20000, grid=400, sample_steps=500, seed=0, force=False, quiet=False):
    """Train an MLP energy on a 2-D toy density with one EBM objective (``npjem.ebm.toy2d.run``,
    whose arguments these are; ``lr`` and ``k`` default to ``recipes.ebm_defaults(objective)``).

    ``out`` (default ``runs/ebm/<data>_<objective>``; ``""`` writes nothing) receives
    ``results.json`` and the landscape's PNG; a folder that holds a run is not overwritten without
    ``force``. Returns the dict written to ``results.json``; its ``result`` holds the test NLL of
    the learned density next to the true density's and the best single Gaussian's.
    """
    from ._checks import check_choice
    from .ebm import toy2d as ebm_toy2d

    check_choice(objective, "objective", ebm_toy2d.OBJECTIVES)
    args = _Settings(command="ebm", objective=objective, data=data, steps=steps, batch_size=batch_size, lr=lr, k=k,
                     sampler=sampler, step_size=step_size, sigma=sigma, nce_noise=nce_noise, nce_ratio=nce_ratio,
                     n_particles=n_particles, pcd_init=pcd_init, n_train=n_train, grid=grid,
                     sample_steps=sample_steps, seed=seed, out=out, force=force, quiet=quiet)
    out = out if out is not None else os.path.join("runs", "ebm", f"{data}_{objective}")
    _prepare_out(out, force=force, resumable=False)
    _status(args, f"training an MLP energy on {data} with {objective} ({steps} steps)")
    try:
        # A diverging run ends with one message naming lr; NumPy's overflow warnings would bury it.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            r = ebm_toy2d.run(data, objective, steps=steps, seed=seed, out=out or None, batch_size=batch_size, lr=lr,
                              k=k, sampler=sampler, step_size=step_size, sigma=sigma, nce_noise=nce_noise,
                              nce_ratio=nce_ratio, n_particles=n_particles, pcd_init=pcd_init, n_train=n_train,
                              grid=grid, sample_steps=sample_steps, progress=not quiet)
    except FloatingPointError as exc:
        raise RunError(f"{exc} ([[lr]])") from None
    print(ebm_toy2d.table([r]))
    print(f"learned density {r['nll']:.3f} nats per point; true {r['nll_true']:.3f}; best single Gaussian "
          f"{r['nll_gaussian']:.3f}")
    results = {"command": "ebm", "config": _config(args), "result": r}
    if out:
        path = os.path.join(out, "results.json")
        _write_json(path, results)
        print(f"wrote {path}")
        print(f"wrote {r['png']}")
    return results


# ====================================================================== evaluation

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


# ====================================================================== status lines

_open_status = [False]  # a status line waits for its "done": an error message starts a new line


def _status(args, message, end="\n"):
    """A status line on stderr (progress, not results), unless ``quiet``."""
    if not getattr(args, "quiet", False):
        print(message, end=end, file=sys.stderr, flush=True)
        _open_status[0] = end != "\n"


def end_status_line():
    """End a status line on stderr still waiting for its "done", so that what follows (an error
    message) starts on a line of its own."""
    if _open_status[0]:
        print(file=sys.stderr)
        _open_status[0] = False


# ====================================================================== data

DATA_SETS = ("shapes", "digits")


def _subset(ds, n, name, split):
    from .data.datasets import Dataset

    if n is None or n == len(ds):
        return ds
    if n > len(ds):
        raise RunError(f"[[{name}={n}]] is more than the {len(ds)} images of the {split} split of [[data]]")
    return Dataset(ds.images[:n], ds.labels[:n], ds.classes, name=ds.name)


def shapes_variant(data):
    """The nuisances a ``data`` name switches off: ``"shapes"`` → ``()``, ``"shapes-noclutter"`` →
    ``("clutter",)``, ``"shapes-noclutter-nonoise"`` → both (``shapes(without=...)``); None for
    any other name."""
    from .data.datasets import SHAPES_NUISANCES

    if not isinstance(data, str) or not (data == "shapes" or data.startswith("shapes-no")):
        return None
    parts = data.split("-")[1:]
    without = tuple(p[2:] for p in parts)
    if any(not p.startswith("no") or p[2:] not in SHAPES_NUISANCES for p in parts) or len(set(without)) != len(parts):
        return None
    return without


def _load_data(args):
    """The (train, test) Datasets that ``data`` names, cut to ``n_train`` / ``n_test``.

    ``shapes`` (default sizes 10,000 / 2,000; drawn once, then cached), ``digits``
    (scikit-learn's 8x8 digits upsampled to 32x32 RGB; all of them by default) or a folder
    with ``train/<class>/<image>`` and ``test/<class>/<image>`` (read at 32x32 RGB).
    """
    from .data import datasets

    data = args.data
    t = time.perf_counter()
    without = shapes_variant(data)
    if without is not None:
        n_train = 10000 if args.n_train is None else args.n_train
        n_test = 2000 if args.n_test is None else args.n_test
        _status(args, f"{data}: {n_train} train / {n_test} test images (drawn once, then cached in "
                      f"{datasets.default_cache_dir()}) ...", end=" ")
        train = datasets.shapes("train", n=n_train, seed=args.data_seed, without=without)
        test = datasets.shapes("test", n=n_test, seed=args.data_seed, without=without)
    elif data == "digits":
        _status(args, "digits: scikit-learn's 8x8 digits at 32x32 ...", end=" ")
        try:
            train = datasets.digits("train", size=32, seed=args.data_seed, channels=3)
            test = datasets.digits("test", size=32, seed=args.data_seed, channels=3)
        except ImportError:
            raise RunError("[[data=digits]] needs scikit-learn: pip install 'npjem[datasets]'") from None
        train, test = _subset(train, args.n_train, "n_train", "train"), _subset(test, args.n_test, "n_test", "test")
    else:
        if not os.path.isdir(data):
            what = "no such folder" if not os.path.exists(data) else "not a folder"
            raise RunError(f"[[data={data}]]: expected {' or '.join(DATA_SETS)}, a shapes variant such as "
                           f"shapes-noclutter, or a folder of images ({what})")
        parts = {split: os.path.join(data, split) for split in ("train", "test")}
        missing = [sp for sp, d in parts.items() if not os.path.isdir(d)]
        if missing:
            raise RunError(f"[[data={data}]]: the folder needs train/<class>/<image> and test/<class>/<image> "
                             f"sub-folders; {' and '.join(missing)}/ is missing")
        _status(args, f"{data}: reading images at 32x32 ...", end=" ")
        try:
            train, test = datasets.image_folder(parts["train"], 32), datasets.image_folder(parts["test"], 32)
        except ValueError as exc:
            raise RunError(f"[[data={data}]]: {exc}") from None
        if list(train.classes) != list(test.classes):
            raise RunError(f"[[data={data}]]: train/ and test/ have different class folders "
                             f"({', '.join(train.classes)} against {', '.join(test.classes)})")
        train, test = _subset(train, args.n_train, "n_train", "train"), _subset(test, args.n_test, "n_test", "test")
    _status(args, f"done ({time.perf_counter() - t:.1f}s)")
    args.n_train, args.n_test = len(train), len(test)
    counts = np.bincount(_host(train.labels))
    if (counts > 0).sum() < 2 or counts.max() < 5:
        # The probe picks its l2 on a held-out fifth of each class: found out before training, not after.
        what = "one class" if (counts > 0).sum() < 2 else "fewer than 5 images in every class"
        raise RunError(f"[[n_train={len(train)}]] leaves {what}; the linear probe chooses its l2 on a held-out "
                       "fifth of each class: use a larger [[n_train]]")
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
        again = "[[resume!]] to continue it, " if resumable else ""
        raise RunError(f"[[out={out}]] already holds a run ({', '.join(held)}); pass [[force!]] to overwrite it, "
                       f"{again}or choose another [[out]]")
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, f".npjem-write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("npjem")
        os.remove(probe)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise RunError(f"[[out={out}]] is not writable ({reason}); choose another [[out]]") from None


# ====================================================================== training state (Ctrl-C, resume)

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
    return RunError(f"{what} not finite at epoch {epoch}, step {step} of {n_steps} (lr {lr:g}): lower [[lr]]")


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
    """The settings a run records: its arguments, the method's own options among them."""
    return {k: v for k, v in vars(args).items() if k != "options"} | getattr(args, "options", {}) | extra


# Settings that may differ between a run and its resume (they do not change what is computed);
# "debug" and "func" were recorded by the command line before runs existed.
RESUME_FREE = ("out", "resume", "force", "quiet", "debug", "device", "func", "command")
MONITOR_IMAGES = 512  # test images on which the per-epoch embedding std and RankMe are measured


def _resume_config(args, saved, defaults):
    """Take the saved run's settings; one given now (not left at its default) that differs from
    the saved one is an error. ``defaults``: every setting's default, the method's options too."""
    def get(k):
        return args.options[k] if k in args.options else getattr(args, k)

    def put(k, v):
        if k in args.options:
            args.options[k] = v
        else:
            setattr(args, k, v)

    for k, v in saved.items():
        if k in RESUME_FREE or k not in defaults:
            continue
        now = get(k)
        if now != defaults[k] and now != v:
            raise RunError(f"[[{k}={now}]] differs from the run being resumed ([[{k}={v}]]); leave it out "
                           "to continue that run, or start a new one with [[force!]] or another [[out]]")
        put(k, v)
    for k, default in defaults.items():  # settings the saved run left at None (not stored)
        if k not in saved and k not in RESUME_FREE and get(k) != default:
            raise RunError(f"[[{k}]] was not set in the run being resumed; leave it out")


def _checkpoint(path, method, opt, sched, config, progress, aug_gen, loader):
    from . import save as npjem_save

    npjem_save({"method": method.state_dict(), "optimizer": opt.state_dict(), "schedule": sched.state_dict(),
                "config": {k: v for k, v in config.items() if v is not None},
                "progress": progress, "extra": _extra_state(method),
                "generators": {"augment": _generator_state(aug_gen) or "", "loader": loader.epoch_state or ""}},
               path)


def _probe(args, method, train, test, epoch):
    """The frozen backbone's linear probe and kNN after ``epoch`` (eval mode; touches no training
    state and no training generator)."""
    t = time.perf_counter()
    h_train, h_test = method.embed(train.images).data, method.embed(test.images).data
    if not (_finite(h_train) and _finite(h_test)):
        return {"epoch": epoch, "linear_probe": None, "knn": None}
    m = evaluate_features(h_train, train.labels, h_test, test.labels, probe_max_iter=args.probe_max_iter,
                          seed=args.seed)
    _status(args, f"probe after epoch {epoch}: linear {m['linear_probe']:.3f}, kNN {m['knn']:.3f} "
                  f"({time.perf_counter() - t:.0f}s)")
    return {"epoch": epoch, "linear_probe": m["linear_probe"], "knn": m["knn"], "probe_l2": m["probe_l2"]}


def _train(args, method, loader, opt, sched, test, lr, ckpt_path, saved, train=None):
    """``fit`` with per-epoch diagnostics (and probes), a checkpoint each epoch and on Ctrl-C, and resume."""
    from . import random as nrandom
    from .methods import fit

    n_steps = len(loader)
    total = args.epochs * n_steps
    device = args.device
    aug_gen = nrandom.as_generator(args.seed, device)
    progress = {"step": 0, "epochs": args.epochs, "steps_per_epoch": n_steps, "complete": False,
                "loss": [], "lr": [], "monitor": [], "probes": [], "train_seconds": 0.0}
    rl = _ResumableLoader(loader)
    if saved is not None:
        if saved["progress"]["steps_per_epoch"] != n_steps:
            raise RunError(f"the checkpoint in [[out={args.out}]] has {saved['progress']['steps_per_epoch']} "
                             f"steps per epoch, this run {n_steps}; it cannot be resumed")
        _make_lazy_state(method, loader)
        method.load_state_dict(saved["method"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["schedule"])
        _load_extra_state(method, saved["extra"])
        p = saved["progress"]
        progress.update(step=int(p["step"]), loss=[float(v) for v in p["loss"]], lr=[float(v) for v in p["lr"]],
                        monitor=[dict(m) for m in p["monitor"]], probes=[dict(q) for q in p.get("probes", [])],
                        train_seconds=float(p["train_seconds"]))
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
            if args.probe_every and step // n_steps in args.probe_every:
                progress["probes"].append(_probe(args, method, train, test, step // n_steps))
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
        # Overflow is caught below as a non-finite loss or embedding, with the setting to change;
        # NumPy's warnings about it on the way would only bury that message.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if total - start > 0:
                fit(method, rl, opt, epochs=args.epochs - start // n_steps, schedule=sched, generator=aug_gen,
                    progress=not args.quiet, log_every=max(1, n_steps // 2), callback=callback,
                    max_steps=total - start, start_step=start)
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
        raise RunInterrupted(where, ckpt_path, args.out)
    progress["train_seconds"] = seconds_before + time.perf_counter() - t_start
    return progress, aug_gen, rl, save


def _data_name(data):
    return data if data in DATA_SETS or shapes_variant(data) is not None else os.path.basename(os.path.normpath(data))


def _pictures(args, results, h_test, test, method):
    """``curves.png`` (per-epoch loss, embedding std, RankMe) and ``embeddings.png`` (PCA of the
    test features by class) in ``out``; their paths."""
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

    data_name = _data_name(args.data)
    curves = plot.curves(panels, os.path.join(args.out, "curves.png"), x=epochs, xlabel="epoch",
                         title=f"{name} on {data_name}: training curves (std and rank on "
                               f"{pe['monitor_images']} test images)")
    out = [curves]
    probes = [q for q in results.get("probes", []) if q["linear_probe"] is not None]
    if probes:  # the learning curve: the frozen backbone's probes against the epochs they were taken at
        out.append(plot.line_chart({"linear probe": [q["linear_probe"] for q in probes],
                                    "kNN (k=20)": [q["knn"] for q in probes]},
                                   os.path.join(args.out, "learning_curve.png"), x=[q["epoch"] for q in probes],
                                   title=f"{name} on {data_name}: probes of the frozen backbone",
                                   xlabel="epoch", ylabel="test accuracy"))
    m = results["metrics"]
    points = plot.pca_2d(h_test)
    emb = plot.scatter(points, _host(test.labels), test.classes, os.path.join(args.out, "embeddings.png"),
                       title=f"{name}: {len(test)} test images, backbone features h by PCA "
                             f"(linear probe {m['linear_probe']:.3f}, kNN {m['knn']:.3f})")
    return out + [emb]


def _host(a):
    from . import backend

    return backend.to_numpy(a)



# ====================================================================== learning curves across runs

def _baseline_name(kind, arch):
    """A baseline's curve: "supervised", or "supervised (vit_tiny)" for a backbone other than the ConvNet."""
    return kind if arch == "convnet" else f"{kind} ({arch})"


def learning_curves(folders, path=None, *, title="Linear probe of the frozen backbone against training epochs"):
    """One learning curve per run folder, from the ``probes`` their runs recorded (``probe_every``).

    ``folders`` are ``pretrain`` folders (``results.json``) and ``baselines`` folders
    (``baselines.json``: the supervised row's probes, and the random-init probe as a flat line;
    named with their backbone when it is not the ConvNet, e.g. "supervised (vit_tiny)").
    The DAE, the jigsaw task and the baselines are drawn dashed. Writes a PNG to ``path`` when
    given and returns the rows ``{"name", "arch", "epochs", "linear_probe", "best", "best_epoch",
    "gap_closed", "dashed"}``, one per curve, in the order the folders were given. ``gap_closed``
    is (best − random init) / (supervised − random init), both baselines of the run's own backbone
    (data2vec's is ``vit_tiny``) and the supervised probe taken at the best epoch (None without
    both among the folders, or without a supervised probe there).
    """
    from . import plot
    from .recipes import BASELINE_METHODS

    rows = []
    for folder in folders:
        res_path, base_path = (os.path.join(folder, f) for f in ("results.json", "baselines.json"))
        if os.path.exists(res_path):
            with open(res_path, encoding="utf-8") as f:
                res = json.load(f)
            probes = [q for q in res.get("probes", []) if q.get("linear_probe") is not None]
            name = res["config"]["method"] + ("" if res["config"].get("data") == "shapes"
                                              else f" ({res['config'].get('data')})")
            arch = "vit_tiny" if res["config"]["method"] == "data2vec" else res["config"].get("arch", "convnet")
            curves = [(name, arch, probes, res["config"]["method"] in BASELINE_METHODS)]
        elif os.path.exists(base_path):
            with open(base_path, encoding="utf-8") as f:
                base = json.load(f)
            arch = base.get("config", {}).get("arch", "convnet")
            curves = []
            for r in base["rows"]:
                if r.get("probes"):
                    curves.append((_baseline_name("supervised", arch), arch,
                                   [q for q in r["probes"] if q.get("linear_probe") is not None], True))
                elif r["name"].startswith("random init"):
                    curves.append((_baseline_name("random init", arch), arch, [{"epoch": 0, "linear_probe": r["linear_probe"]}],
                                   True))
        else:
            raise RunError(f"{folder}: no results.json or baselines.json (a pretrain or baselines run's folder)")
        for name, arch, probes, dashed in curves:
            probes = sorted(probes, key=lambda q: q["epoch"])
            if not probes:
                raise RunError(f"{folder}: the run recorded no probes; run it with [[probe_every]]")
            # Results written before the run stopped repeating its last probed epoch carry it twice: keep one.
            epochs, acc = [], []
            for q in probes:
                if epochs and epochs[-1] == q["epoch"]:
                    continue
                epochs.append(q["epoch"])
                acc.append(q["linear_probe"])
            best = int(np.argmax(acc))
            rows.append({"name": name, "arch": arch, "epochs": epochs, "linear_probe": acc, "best": acc[best],
                         "best_epoch": epochs[best], "dashed": dashed})
    # The gap a curve closes at its best epoch is measured against the ceiling of its own backbone
    # trained for as many epochs (a ceiling trained longer than the method would make a slow starter
    # look stuck; another backbone's would measure the backbone, not the method).
    for r in rows:
        floor = next((q["best"] for q in rows if q["name"] == _baseline_name("random init", r["arch"])), None)
        ceiling = next((dict(zip(q["epochs"], q["linear_probe"])) for q in rows
                        if q["name"] == _baseline_name("supervised", r["arch"])),
                       {})
        top = ceiling.get(r["best_epoch"])
        r["gap_closed"] = (None if floor is None or top is None or top <= floor or r["name"].startswith("random init")
                           else (r["best"] - floor) / (top - floor))
    if path is not None and rows:
        last = max(e for r in rows for e in r["epochs"])
        series = {}
        for r in rows:
            xs, ys = r["epochs"], r["linear_probe"]
            if len(xs) == 1:  # a flat baseline (random init) spans the whole axis
                xs, ys = [max(xs[0], 1), last], [ys[0], ys[0]]
            series[r["name"]] = (xs, ys)
        plot.line_chart(series, path, title=title, xlabel="epoch", ylabel="linear probe accuracy", size=(1000, 560),
                        dashed=[r["name"] for r in rows if r["dashed"]])
    return rows
