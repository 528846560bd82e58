"""What every step-for-step twin needs: a PyTorch ConvNet with npjem's state-dict names, weights
copied from npjem, fixed views replayed into npjem's own ``fit``, and a comparison that names the
step, the quantity and its worst element.

A twin test runs the PyTorch twin first and records, after every optimizer step, a snapshot
``{name: array}`` of everything that must agree (loss, parameters, BatchNorm buffers, EMA copies,
queues, centres, ...). It then trains the npjem method with :func:`run_npjem` on the same views,
and compares its own snapshot with the twin's after every step (:func:`assert_snapshots_agree`).
The twin is written from the paper's pseudo-code or the authors' training loop, not from npjem.
"""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from npjem import backend  # noqa: E402
from npjem.methods.base import fit  # noqa: E402

#: Relative agreement every quantity must reach after every step (float64 on both sides).
RTOL = 1e-9
#: Absolute floor for quantities that are zero up to rounding (a centred mean, a fresh queue).
ATOL = 1e-12


def torch_convnet(in_channels=3, widths=(4, 8), strides=None, kernel_size=3):
    """A PyTorch ConvNet laid out like ``npjem.nn.models.ConvNet`` (conv → BN → ReLU per width,
    global average pooling), so that npjem's ``state_dict`` loads into it by name."""
    if strides is None:
        strides = (1,) + (2,) * (len(widths) - 1)
    layers, c = [], in_channels
    for w, s in zip(widths, strides):
        layers += [nn.Conv2d(c, w, kernel_size, stride=s, padding=kernel_size // 2, bias=False),
                   nn.BatchNorm2d(w), nn.ReLU()]
        c = w
    return nn.Sequential(nn.Sequential(*layers), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def convnet_key(key):
    """npjem ConvNet state-dict name → the name in :func:`torch_convnet` (``features.3.weight`` →
    ``0.3.weight``): pass it as ``key_map``."""
    return "0." + key[len("features."):] if key.startswith("features.") else key


def load_from_npjem(torch_module, npjem_module, key_map=None):
    """Copy npjem's parameters and buffers into ``torch_module`` in float64.

    ``key_map`` maps an npjem state-dict name to the twin's name (a dict, or a callable);
    every npjem entry must land on a twin entry of the same shape and vice versa.
    """
    torch_module.double()
    ours = {k: backend.to_numpy(v) for k, v in npjem_module.state_dict().items()}
    if key_map is None:
        mapped = dict(ours)
    elif callable(key_map):
        mapped = {key_map(k): v for k, v in ours.items()}
    else:
        mapped = {key_map.get(k, k): v for k, v in ours.items()}
    theirs = torch_module.state_dict()
    missing = sorted(set(theirs) - set(mapped))
    unexpected = sorted(set(mapped) - set(theirs))
    if missing or unexpected:
        raise KeyError(f"state dicts differ: the twin lacks {unexpected}, npjem lacks {missing}")
    torch_module.load_state_dict({k: torch.as_tensor(np.array(v)).to(theirs[k].dtype) for k, v in mapped.items()})
    return torch_module


def snapshot_torch(module, prefix=""):
    """Every parameter and buffer of a twin module, as float64 NumPy arrays by name."""
    return {prefix + k: v.detach().cpu().numpy().astype(np.float64) for k, v in module.state_dict().items()}


def snapshot_npjem(module, prefix="", key_map=None):
    """Every parameter and buffer of an npjem module, named as in the twin (``key_map``)."""
    out = {}
    for k, v in module.state_dict().items():
        name = key_map(k) if callable(key_map) else (key_map or {}).get(k, k)
        # a copy: on NumPy the state dict holds the live arrays, which later steps overwrite
        out[prefix + name] = np.array(backend.to_numpy(v), dtype=np.float64)
    return out


def draw_views(seed, steps, n_views=2, batch=8, shape=(3, 8, 8)):
    """``steps`` tuples of ``n_views`` seeded float64 image batches (the views both sides see)."""
    rng = np.random.default_rng(seed)
    return [tuple(rng.standard_normal((batch,) + tuple(shape)) for _ in range(n_views)) for _ in range(steps)]


class ReplayViews:
    """A view maker that hands out pre-drawn views in order, so npjem's ``fit`` (and its
    ``make_views``) runs unchanged while both sides see the same inputs."""

    def __init__(self, views):
        self.views = list(views)
        self.calls = 0

    def __call__(self, x, generator=None):
        if self.calls >= len(self.views):
            raise IndexError(f"ReplayViews ran out after {len(self.views)} steps")
        out = self.views[self.calls]
        self.calls += 1
        return tuple(np.array(v) for v in out)


def run_npjem(method, views, optimizer, *, schedule=None, snapshot, indices=None):
    """Train ``method`` with npjem's ``fit`` on the replayed ``views``, one step per entry; return
    the list of ``snapshot(method, loss)`` taken after every step (after ``after_step``).

    ``indices``: per-step data-set indices for methods that need them (PIRL), else None.
    """
    method.views = ReplayViews(views)
    batch = views[0][0].shape[0]
    placeholder = np.zeros((batch,) + views[0][0].shape[1:])
    loader = ([(placeholder, None, np.asarray(i)) for i in indices] if indices is not None
              else [placeholder for _ in views])
    snaps = []
    fit(method, loader, optimizer, epochs=1, schedule=schedule, progress=False,
        callback=lambda rec: snaps.append(snapshot(rec["method"], rec["loss"])))
    return snaps


def worst(ours, theirs, atol=ATOL):
    """(relative difference, index) of the worst element of two arrays of one shape."""
    ours = np.asarray(ours, dtype=np.float64)
    theirs = np.asarray(theirs, dtype=np.float64)
    if ours.shape != theirs.shape:
        raise AssertionError(f"shapes differ: npjem {ours.shape}, twin {theirs.shape}")
    if ours.size == 0:
        return 0.0, ()
    rel = np.abs(ours - theirs) / np.maximum(np.abs(theirs), atol / RTOL)
    i = np.unravel_index(int(np.argmax(rel)), rel.shape) if rel.ndim else ()
    return float(rel[i]), i


def assert_snapshots_agree(ours, theirs, rtol=RTOL, atol=ATOL):
    """Compare per-step snapshots; fail at the first step and quantity that differ, naming both.

    Returns the worst relative difference over all steps and quantities (for the README table).
    """
    if len(ours) != len(theirs):
        raise AssertionError(f"npjem took {len(ours)} steps, the twin {len(theirs)}")
    overall = 0.0
    for step, (o, t) in enumerate(zip(ours, theirs)):
        if set(o) != set(t):
            raise AssertionError(f"step {step}: quantities differ: npjem only {sorted(set(o) - set(t))}, "
                                 f"twin only {sorted(set(t) - set(o))}")
        for name in o:
            rel, i = worst(o[name], t[name], atol)
            if not rel <= rtol:
                a = np.asarray(o[name])[i] if np.ndim(o[name]) else o[name]
                b = np.asarray(t[name])[i] if np.ndim(t[name]) else t[name]
                raise AssertionError(f"step {step}: {name}{list(i) if i else ''} differs: npjem {a!r}, "
                                     f"twin {b!r} (relative {rel:.3g} > {rtol:g})")
            overall = max(overall, rel)
    return overall


def method_key(key):
    """npjem method state-dict name → the twin's, for twins whose backbones are
    :func:`torch_convnet`: the ConvNet's ``features.`` right after a ``backbone*`` module becomes
    ``0.`` (``backbone.features.3.weight`` → ``backbone.0.3.weight``,
    ``backbone_momentum.features.1.running_mean`` → ``backbone_momentum.0.1.running_mean``);
    every other name is kept."""
    parts = key.split(".")
    for i in range(len(parts) - 1):
        if parts[i].startswith("backbone") and parts[i + 1] == "features":
            parts[i + 1] = "0"
    return ".".join(parts)


def recipe_warmup_steps(total_steps):
    """The warm-up length ``npjem pretrain`` uses: a tenth of the run, at least 1, at most all but one."""
    return min(max(1, total_steps // 10), total_steps - 1)


def torch_warmup_cosine(optimizer, total_steps, warmup_steps):
    """A ``LambdaLR`` with linear warm-up from 0 then cosine decay to 0, per step (the recipe's
    schedule, as BYOL and Barlow Twins write it), for the twin's optimizer."""
    import math

    def factor(k):
        if k < warmup_steps:
            return k / warmup_steps
        return 0.5 * (1.0 + math.cos(math.pi * (min(k, total_steps) - warmup_steps) / (total_steps - warmup_steps)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def recipe_lr(step, total_steps, base_lr):
    """``npjem pretrain``'s lr at ``step`` (0-based, the steps taken), for a twin's optimizer:
    linear from 0 over :func:`recipe_warmup_steps`, then a cosine from ``base_lr`` to 0 at
    ``total_steps`` (npjem's side runs ``optim.WarmupCosine`` with the same warm-up)."""
    warmup = recipe_warmup_steps(total_steps)
    if step < warmup:
        return base_lr * step / warmup
    return 0.5 * base_lr * (1 + math.cos(math.pi * (step - warmup) / (total_steps - warmup)))
