"""The command line: the parser and the dispatch.

    npjem pretrain [--method M] [--epochs E] ...    pretrain one of the ten joint-embedding methods
    npjem baselines ...                             raw pixels, random init, supervised
    npjem ebm OBJECTIVE [--data D] ...              an EBM objective on a 2-D toy density
    npjem methods [--kind K]                        every method, objective and loss
    npjem reference LOSS --out F.npz | check F.npz | gradcheck    npjem as a float64 oracle

Each command parses its flags and calls one function: ``pretrain``, ``baselines`` and ``ebm``
call ``npjem.runs`` (which owns the run folder, the checkpoints, Ctrl-C and ``--resume``), the
oracle commands ``npjem.crosscheck``; the recipes behind the defaults shown in ``--help`` are
``npjem.recipes``. Mistakes in what was typed (a flag out of range, ``--device cuda`` without
CuPy, a missing ``--data`` folder, a learning rate that makes the loss non-finite) end with a
one-line message naming the flag and exit status 2; ``--debug`` (or ``NPJEM_DEBUG=1``) shows
the traceback instead. Ctrl-C during ``pretrain`` saves a checkpoint and exits with 130.
"""
from __future__ import annotations

import argparse
import inspect
import math
import os
import sys

from . import runs
# The help texts show the recipe; the builders stay reachable as npjem.cli's names for older scripts.
from .recipes import (ARCHS, AUGMENTATION, BASELINE_ARCHS, DEFAULTS, METHODS, OPTIMIZER, OPTIONS, SUPERVISED,  # noqa: F401
                      build_backbone, build_method, method_augmentation, optimizer_defaults, shapes_augmentation)
from .runs import DATA_SETS, RunError, RunInterrupted, format_table

__all__ = ["main", "build_parser", "UsageError"]

#: What a mistake in what was typed raises; ``main`` prints it on one line and exits with 2.
UsageError = RunError


def _method_options(args):
    """The parsed flags that are ``args.method``'s own options (build_method's ``options``)."""
    return {k: getattr(args, k) for k in OPTIONS.get(args.method, ()) if getattr(args, k, None) is not None}


def _run(fn, args, *positional, **extra):
    """Call the run ``fn`` with every keyword-only argument it takes from the parsed flags of the
    same name (the parser has one for each: tests/test_runs.py checks their defaults agree)."""
    params = inspect.signature(fn).parameters.items()
    fn(*positional, **{k: getattr(args, k) for k, p in params if p.kind is p.KEYWORD_ONLY}, **extra)
    return 0


def cmd_pretrain(args):
    return _run(runs.pretrain, args, args.method, **_method_options(args))


def cmd_baselines(args):
    return _run(runs.baselines, args)


def cmd_ebm(args):
    return _run(runs.ebm, args, args.objective)


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

def _typed(kind, ok, expected):
    """An argparse type: ``kind(s)`` that satisfies ``ok``, else one line naming ``expected``."""
    def parse(s):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'}, got {s!r}") \
                from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {s}")
        return v
    return parse


_positive_int = _typed(int, lambda v: v >= 1, "a positive integer")
_nonnegative_int = _typed(int, lambda v: v >= 0, "an integer >= 0")
_batch_size = _typed(int, lambda v: v >= 2, "at least 2 (a one-sample batch has nothing to be contrasted with, "
                                            "and BatchNorm needs two samples)")
_positive_float = _typed(float, lambda v: v > 0 and math.isfinite(v), "a positive number")
_nonnegative_float = _typed(float, lambda v: v >= 0 and math.isfinite(v), "a number >= 0")


def _in_range(lo, hi, lo_open=False, hi_open=False):
    """A float type for argparse in [lo, hi] (an open end excludes it)."""
    return _typed(float, lambda v: math.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi),
                  f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}")


def _probe_epochs_flag(s):
    try:
        values = [int(v) for v in s.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int or comma-separated epochs such as 5,10,20, got {s!r}") \
            from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"epochs count from 1, got {s!r}")
    return values[0] if len(values) == 1 and "," not in s else values


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
    if s in DATA_SETS or runs.shapes_variant(s) is not None or os.path.isdir(s):
        return s
    what = "no such folder" if not os.path.exists(s) else "not a folder"
    raise argparse.ArgumentTypeError(f"expected {' or '.join(DATA_SETS)}, a shapes variant (shapes-noclutter, "
                                     f"-nocolour, -nonoise, combined) or a folder of images; {s!r}: {what}")


def _common(p, archs=ARCHS, arch_help="backbone (default convnet)"):
    p.add_argument("--data", type=_data, default="shapes",
                   help="shapes (built in, default), a shapes variant with one nuisance switched off "
                        "(shapes-noclutter, shapes-nocolour, shapes-nonoise, or combined: shapes-noclutter-nonoise), "
                        "digits (scikit-learn's, the [datasets] extra) or a folder with train/<class>/<image> "
                        "and test/<class>/<image>")
    p.add_argument("--arch", choices=archs, default="convnet", help=arch_help)
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
    p.add_argument("--probe-every", type=_probe_epochs_flag, default=None, metavar="E | E1,E2,...",
                   help="probe the (frozen) backbone during training, every E epochs or after the listed ones: "
                        "a learning curve, in the results' probes; the training is the same as without probes")
    p.add_argument("--force", action="store_true",
                   help="overwrite a run already in --out (without it, a folder that holds results or a "
                        "checkpoint is left alone and the command stops)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage block) and exit status 2, and
    which takes no prefix for a flag (its sub-commands' parsers are of this class too)."""

    def __init__(self, *args, allow_abbrev=False, **kwargs):
        super().__init__(*args, allow_abbrev=allow_abbrev, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (--help lists the flags)\n")


# Each method's own flags: (flag, argparse keywords, the method whose default the help quotes, help).
_METHOD_FLAGS = [
    ("--queue-size", dict(type=_positive_int), "moco", "MoCo's K"),
    ("--symmetric", dict(action=argparse.BooleanOptionalAction), "moco", "MoCo: symmetrised loss, both views as queries"),
    ("--bn-splits", dict(type=_positive_int), "moco", "MoCo's shuffling BN over this many groups of the batch, 1 = off"),
    ("--head-bn", dict(action=argparse.BooleanOptionalAction), "moco",
     "MoCo and DINO: BatchNorm after the head's hidden layers (on for both; --no-head-bn is MoCo v2's head and "
     "the original DINO's use_bn_in_head=False)"),
    ("--num-negatives", dict(type=_positive_int), "pirl", "PIRL's negatives per step"),
    ("--pirl-loss", dict(choices=("nce", "infonce")), "pirl", "PIRL's loss"),
    ("--jigsaw-grid", dict(type=_positive_int), "pirl", "PIRL's and the jigsaw task's tiles per side"),
    ("--corruption", dict(choices=("gaussian", "masking", "salt_and_pepper")), "dae", "the DAE's corruption"),
    ("--noise", dict(type=_nonnegative_float), "dae", "the DAE's noise: σ for gaussian, the fraction for masking"),
    ("--n-permutations", dict(type=_positive_int), "jigsaw", "the jigsaw task's permutations"),
    ("--tile-size", dict(type=_positive_int), "jigsaw", "the jigsaw task's tile side in pixels"),
    ("--lambd", dict(type=_nonnegative_float), "barlow_twins", "Barlow Twins' off-diagonal weight"),
    ("--sim-coeff", dict(type=_nonnegative_float), "vicreg", "VICReg's invariance coefficient"),
    ("--std-coeff", dict(type=_nonnegative_float), "vicreg", "VICReg's variance coefficient"),
    ("--cov-coeff", dict(type=_nonnegative_float), "vicreg", "VICReg's covariance coefficient"),
    ("--num-prototypes", dict(type=_positive_int), "swav",
     f"SwAV's prototypes / DINO's output width K (dino {DEFAULTS['dino']['num_prototypes']})"),
    ("--epsilon", dict(type=_positive_float), "swav", "SwAV's Sinkhorn entropy weight"),
    ("--n-local", dict(type=int), "swav", "SwAV / DINO: 16 px local crops besides the two global ones"),
    ("--teacher-temp", dict(type=_positive_float), "dino", "DINO's teacher temperature; --temperature is the student's"),
    ("--mask-ratio", dict(type=float), "data2vec", "data2vec's masked share of patches"),
    ("--top-k", dict(type=_positive_int), "data2vec", "data2vec's teacher blocks averaged into the target"),
]
_DEFAULT_KEY = {"--jigsaw-grid": "grid", "--pirl-loss": "loss", "--head-bn": "head_bn"}


def build_parser():
    ap = _Parser(prog="npjem",
                 description="npjem: energy-based models and joint-embedding self-supervised learning from "
                             "scratch on NumPy (CuPy on a GPU). pretrain trains any of the ten joint-embedding "
                             "methods (" + ", ".join(METHODS) + ") and probes it; baselines gives its floor and "
                             "ceiling; ebm trains an energy on a 2-D density with CD, PCD, a replay buffer, NCE "
                             "or score matching; methods lists every method, objective and loss; reference, "
                             "check and gradcheck use npjem as a float64 oracle for gradients.")
    sub = ap.add_subparsers(dest="command", metavar="{pretrain,baselines,ebm,methods,reference,check,gradcheck}")

    p = sub.add_parser("pretrain", help="pretrain a joint-embedding method (any of the ten) and probe it",
                       description="Pretrain a joint-embedding method (" + ", ".join(METHODS) + ") with its "
                                   "recipe on the built-in shapes images (or --data), then "
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
    p.add_argument("--momentum", type=_in_range(0.0, 1.0, hi_open=True), default=None,
                   help="the EMA momentum of the key encoder or teacher (default: " + ", ".join(
                       f"{k} {v['momentum']}" for k, v in DEFAULTS.items() if "momentum" in v) + ")")
    for flag, kw, method, text in _METHOD_FLAGS:
        key = _DEFAULT_KEY.get(flag, flag[2:].replace("-", "_"))
        p.add_argument(flag, default=None, help=f"{text} (default {DEFAULTS[method].get(key, 'on')})", **kw)
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
                       description="The floor and ceiling for pretrain's numbers: linear probe and kNN on raw "
                                   "pixels, on a random-init backbone, and on a supervised backbone.")
    sup = SUPERVISED
    b.add_argument("--epochs", type=_positive_int, default=sup["epochs"],
                   help=f"supervised training epochs (default {sup['epochs']}, as pretrain)")
    b.add_argument("--batch-size", type=_batch_size, default=sup["batch_size"], help=f"default {sup['batch_size']}")
    b.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default=sup["optimizer"],
                   help=f"default {sup['optimizer']}")
    b.add_argument("--lr", type=_positive_float, default=sup["lr"], help=f"supervised peak lr (default {sup['lr']})")
    b.add_argument("--weight-decay", type=_nonnegative_float, default=sup["weight_decay"],
                   help=f"default {sup['weight_decay']:g}")
    b.add_argument("--raw-probe-max-iter", type=_positive_int, default=sup["raw_probe_max_iter"],
                   help=f"L-BFGS iterations of the raw-pixel probe (3072 features; default {sup['raw_probe_max_iter']})")
    b.add_argument("--only", default="", help="comma-separated subset of raw,random,supervised")
    b.add_argument("--out", default="runs/baselines", help="directory for baselines.json ('' writes nothing)")
    _common(b, BASELINE_ARCHS, "backbone (default convnet; vit_tiny: data2vec's own, the yardstick for its "
                               "numbers; --width does not apply to it)")
    b.set_defaults(func=cmd_baselines)

    r = sub.add_parser("reference", help="write npjem's float64 value and gradients of a loss "
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
    r.set_defaults(func=cmd_reference)

    c = sub.add_parser("check", help="re-evaluate reference files with this npjem",
                       description="Exit status 0 when every file's value and gradients agree with npjem, "
                                   "1 when one does not, 2 when a file cannot be read.")
    c.add_argument("files", nargs="+", metavar="FILE.npz")
    c.add_argument("--rtol", type=_nonnegative_float, default=1e-10, help="default 1e-10")
    c.add_argument("--atol", type=_nonnegative_float, default=1e-12, help="default 1e-12")
    c.set_defaults(func=cmd_check)

    g = sub.add_parser("gradcheck", help="the engine's self-check against central differences",
                       description="Every registered loss and the engine's composites and layers against "
                                   "central differences in float64 (first and second order), on --device.")
    g.add_argument("--device", type=_device, default=None, help="cpu or cuda (default: NPJEM_DEVICE, else cpu)")
    g.set_defaults(func=cmd_gradcheck)

    from .data import toy2d as _toy2d
    from .ebm.toy2d import OBJECTIVES as EBM_OBJECTIVES

    e = sub.add_parser("ebm", help="train an energy on a 2-D toy density with one objective",
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
    e.set_defaults(func=cmd_ebm)

    m = sub.add_parser("methods", help="every method, objective and loss: paper, defaults, file",
                       description="One row per joint-embedding method, EBM objective and loss: its paper, its "
                                   "defaults here, the file that implements it and how to run it.")
    m.add_argument("--kind", default=None, help="only rows whose kind contains this text (e.g. EBM, loss)")
    m.set_defaults(func=cmd_methods)
    for command in sub.choices.values():
        command.add_argument("--debug", action="store_true", help="show the traceback of an error (also NPJEM_DEBUG=1)")
    return ap


def _debug_wanted(args=None):
    env = os.environ.get("NPJEM_DEBUG", "").strip().lower()
    return bool(getattr(args, "debug", False)) or env not in ("", "0", "false", "no")


def _error(message):
    runs.end_status_line()
    print(message, file=sys.stderr)


def main(argv=None):
    """Run the command line; returns 0, or raises ``SystemExit`` (2 for a usage error, 130 for
    a run stopped with Ctrl-C after saving its checkpoint)."""
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.command is None:
        ap.print_help()
        return 2
    try:
        rc = args.func(args)
    except BrokenPipeError:
        # The reader went away (npjem methods | head): nothing to report; keep Python's exit flush quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except RunError as exc:
        if _debug_wanted(args):
            raise
        _error(f"npjem {args.command}: error: {exc.flags()}")
        raise SystemExit(2) from None
    except (ValueError, OSError, ImportError, RuntimeError) as exc:
        if _debug_wanted(args):
            raise
        _error(f"npjem {args.command}: error: {type(exc).__name__}: {exc} (--debug shows the traceback)")
        raise SystemExit(2) from None
    except RunInterrupted as stop:
        if stop.checkpoint:
            print(f"\ninterrupted {stop.where}; saved {stop.checkpoint}\ncontinue with: npjem pretrain --out "
                  f"{stop.out} --resume", file=sys.stderr, flush=True)
        else:
            print(f"\ninterrupted {stop.where}; nothing saved (--out '')", file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    except KeyboardInterrupt:
        if _debug_wanted(args):
            raise
        _error(f"npjem {args.command}: interrupted")
        raise SystemExit(130) from None
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
