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

if backend.default_device() != "cpu":  # the fake-GPU run of tests/methods: a twin compares on the CPU
    pytest.skip("the step-for-step twins compare with PyTorch on the CPU", allow_module_level=True)

from npjem.crosscheck_method import ReplayViews  # noqa: E402,F401  (the library's: fit runs unchanged)
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


# ---------------------------------------------------------------- generic pieces added for the twins of
# Barlow Twins, VICReg, SimSiam and BYOL (usable by any twin).

# The twins' tensors are tiny: one intra-op thread is fastest, and several on a shared CPU only wait
# for each other (a BatchNorm call took 14 ms with the default thread count under load).
torch.set_num_threads(1)


class TorchHead(nn.Module):
    """An MLP whose layers sit in ``layers`` (the layout of npjem's projection heads), so that a
    head written layer by layer from the authors' code loads npjem's weights by name."""

    def __init__(self, *layers):
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


class AuthorsLARS(torch.optim.Optimizer):
    """LARS as the authors of Barlow Twins (facebookresearch/barlowtwins ``main.py``), VICReg
    (``main_vicreg.py``) and BYOL (deepmind-research ``byol/utils/optimizers.py``) wrote it.

    Per tensor θ with gradient g, unless ``exclude(θ)`` (their ``exclude_bias_and_norm``: 1-D
    tensors, i.e. biases and BatchNorm weights, skip both weight decay and the adaptation)::

        g ← g + λ θ;   g ← g · η‖θ‖/‖g‖   (the factor is 1 when either norm is 0)
        μ ← m μ + g;   θ ← θ − lr · μ      (the lr multiplies the buffer, after the momentum)
    """

    #: npjem's name of each piece of per-parameter state (see :func:`optimizer_state_torch`).
    npjem_names = {"mu": "momentum_buffer"}

    def __init__(self, params, lr=0.0, weight_decay=0.0, momentum=0.9, eta=1e-3, exclude=lambda p: p.ndim == 1):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta))
        self.exclude = exclude

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if not self.exclude(p):
                    g = g + group["weight_decay"] * p
                    p_norm, g_norm = torch.linalg.norm(p), torch.linalg.norm(g)
                    one = torch.ones_like(p_norm)
                    g = g * torch.where(p_norm > 0, torch.where(g_norm > 0, group["eta"] * p_norm / g_norm, one), one)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                state["mu"].mul_(group["momentum"]).add_(g)
                p.add_(state["mu"], alpha=-group["lr"])


def authors_warmup_cosine(step, total_steps, warmup_steps, base_lr, end_lr=0.0):
    """The lr of step k (0-based) as Barlow Twins' ``adjust_learning_rate`` (end = 0.001·base) and
    BYOL's ``learning_schedule`` (end 0) compute it: base·k/W during the warm-up, then
    base·q + end·(1 − q) with q = ½(1 + cos(π (k − W)/(K − W))), k clipped at K."""
    import math  # noqa: PLC0415  (kept here: this block is appended to a shared file)

    k = min(step, total_steps)
    if k < warmup_steps:
        return base_lr * k / warmup_steps
    q = 0.5 * (1 + math.cos(math.pi * (k - warmup_steps) / (total_steps - warmup_steps)))
    return base_lr * q + end_lr * (1 - q)


def set_lrs(optimizer, lrs):
    """Set each parameter group's lr (a torch or an npjem optimizer), as the authors' loops do."""
    for group, lr in zip(optimizer.param_groups, lrs):
        group["lr"] = lr


def _recipes():
    from npjem import recipes  # noqa: PLC0415

    return recipes


def recipe(name):
    """``npjem pretrain``'s recipe entry for method ``name`` (``DEFAULTS[name]``), wherever it lives."""
    return _recipes().DEFAULTS[name]


def recipe_optimizer(name):
    """``(optimizer, lr, weight_decay)`` that ``npjem pretrain`` trains method ``name`` with (its
    ``optimizer_defaults`` and the recipe's peak lr)."""
    r = _recipes()
    opt, wd = r.optimizer_defaults(name)
    return opt, r.OPTIMIZER["lr"], wd


def check_twin(name, ours, theirs, rtol=RTOL, atol=ATOL, loose=None):
    """:func:`assert_snapshots_agree`, then print the worst relative difference (``pytest -s``).

    ``loose`` maps a quantity to ``(rtol, why)`` for the rare quantity that round-off alone moves
    further (a parameter whose loss gradient is analytically zero, so that Adam's normalised step
    turns the 1e-16 noise of that gradient into its update): it is compared at its own
    tolerance, every other quantity at ``rtol``. Returns the worst difference outside ``loose``.
    """
    loose = dict(loose or {})
    rest = [{k: v for k, v in s.items() if k not in loose} for s in ours]
    rest_t = [{k: v for k, v in s.items() if k not in loose} for s in theirs]
    rel = assert_snapshots_agree(rest, rest_t, rtol=rtol, atol=atol)
    print(f"\n[twin] {name}: {len(ours)} steps, worst relative difference {rel:.3g}")
    for q, (tol, why) in loose.items():
        r = assert_snapshots_agree([{q: s[q]} for s in ours], [{q: s[q]} for s in theirs], rtol=tol, atol=atol)
        print(f"[twin] {name}: {q} agrees to {r:.3g} (compared at {tol:g}: {why})")
    return rel


def off_diagonal(c):
    """The off-diagonal elements of a square matrix, flattened, by the authors' flatten trick
    (Barlow Twins' ``main.py``, VICReg's ``main_vicreg.py``)."""
    n = c.shape[0]
    return c.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


class BackboneProjector(nn.Module):
    """:func:`torch_convnet` → a three-layer projector [Linear → BN → ReLU] × 2 → Linear, under
    npjem's names. ``biases`` says which of the three Linears has a bias: npjem's Barlow Twins and
    VICReg heads (lightly's layout) ``(False, False, True)``, Barlow Twins' ``main.py``
    ``(False, False, False)``, VICReg's ``main_vicreg.py`` ``(True, True, False)``."""

    def __init__(self, feature_dim, hidden_dim, out_dim, biases=(False, False, True)):
        super().__init__()
        self.backbone = torch_convnet()
        self.projector = TorchHead(nn.Linear(feature_dim, hidden_dim, bias=biases[0]), nn.BatchNorm1d(hidden_dim),
                                   nn.ReLU(), nn.Linear(hidden_dim, hidden_dim, bias=biases[1]),
                                   nn.BatchNorm1d(hidden_dim), nn.ReLU(),
                                   nn.Linear(hidden_dim, out_dim, bias=biases[2]))


def npjem_mlp(dims, biases, generator):
    """npjem's ``ProjectionHead`` with the given Linear biases: [Linear → BN → ReLU] for each hidden
    width of ``dims`` (in, hidden…, out), then a bare Linear (an authors' head layout)."""
    from npjem.nn.models import ProjectionHead  # noqa: PLC0415  (kept here: appended to a shared file)

    blocks = [(a, b, True, "relu", bias) for a, b, bias in zip(dims[:-2], dims[1:-1], biases)]
    return ProjectionHead(blocks + [(dims[-2], dims[-1], None, None, biases[-1])], generator=generator)


def recipe_adam(name, twin_params, npjem_params, total_steps):
    """``npjem pretrain``'s optimizer and schedule for method ``name`` on both sides, which must be
    Adam (L2 weight decay): linear warm-up over a tenth of the run, then cosine to 0, per step.

    Returns ``(twin optimizer, npjem optimizer, npjem schedule, lr_at)``; ``lr_at(k)`` lists the
    twin's group lrs for step k, which the twin's loop sets before the step.
    """
    from npjem import optim  # noqa: PLC0415  (kept here: this block is appended to a shared file)

    kind, lr, weight_decay = recipe_optimizer(name)
    assert kind == "adam", f"npjem pretrain trains {name} with {kind}, not Adam"
    warmup = recipe_warmup_steps(total_steps)
    opt_t = torch.optim.Adam(list(twin_params), lr=lr, weight_decay=weight_decay)
    opt_n = optim.Adam(list(npjem_params), lr=lr, weight_decay=weight_decay)
    sched = optim.WarmupCosine(opt_n, total_steps=total_steps, warmup_steps=warmup)
    return opt_t, opt_n, sched, lambda k: [authors_warmup_cosine(k, total_steps, warmup, lr)]


def optimizer_state_npjem(method, optimizer, key_map=method_key):
    """Every parameter's optimizer state (momentum buffers, Adam's moments and step count) as
    ``optim.<twin's parameter name>.<state name>``."""
    out = {}
    for name, p in method.named_parameters():
        for k, v in optimizer.state.get(p, {}).items():
            v = backend.to_numpy(v) if backend.is_array(v) else v
            out[f"optim.{key_map(name)}.{k}"] = np.array(v, dtype=np.float64)
    return out


def optimizer_state_torch(module, optimizer):
    """The twin's side of :func:`optimizer_state_npjem`; an optimizer written for a twin names its
    state as npjem does through its ``npjem_names`` map."""
    names = getattr(optimizer, "npjem_names", {})
    out = {}
    for name, p in module.named_parameters():
        for k, v in optimizer.state.get(p, {}).items():
            v = v.detach().cpu().numpy() if torch.is_tensor(v) else v
            out[f"optim.{name}.{names.get(k, k)}"] = np.array(v, dtype=np.float64)
    return out


def npjem_snapshot(optimizer, key_map=method_key, **state):
    """A ``snapshot`` for :func:`run_npjem`: every parameter and buffer, the optimizer's state, the
    loss, each group's lr after the step (the lr of the next one), and ``state`` (name → function
    of the method)."""
    def snap(method, loss):
        # the loss first: a failure then names the loss before the weights it moved
        return {"loss": loss, **snapshot_npjem(method, key_map=key_map),
                **optimizer_state_npjem(method, optimizer, key_map),
                **{f"lr{i}": g["lr"] for i, g in enumerate(optimizer.param_groups)},
                **{k: f(method) for k, f in state.items()}}
    return snap


def twin_snapshot(twin, optimizer, loss, lrs, **state):
    """The twin's side of :func:`npjem_snapshot`: its parameters and buffers, its optimizer's
    state, the loss, the lrs of the next step and the named pieces of state."""
    return {**snapshot_torch(twin), **optimizer_state_torch(twin, optimizer), "loss": float(loss),
            **{f"lr{i}": lr for i, lr in enumerate(lrs)}, **state}


def run_twin(twin, views, optimizer, lr_at, loss_fn, after_step=None):
    """The authors' loop around a twin's loss, one step per entry of ``views``; returns the
    snapshots (:func:`twin_snapshot`) taken after every step.

    Step k sets the group lrs ``lr_at(k)`` (as ``adjust_learning_rate`` does before a step), takes
    ``loss = loss_fn(*views_k)`` (the views as tensors), ``zero_grad``, ``backward`` and the
    optimizer's ``step``, then calls ``after_step(k)`` for the state that is not trained by
    gradient (an EMA target, a queue), which returns a dict of named values to compare, or None.
    """
    snaps = []
    for k, vs in enumerate(views):
        set_lrs(optimizer, lr_at(k))
        loss = loss_fn(*(torch.as_tensor(v) for v in vs))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        state = after_step(k) if after_step is not None else None
        snaps.append(twin_snapshot(twin, optimizer, loss.item(), lr_at(k + 1), **(state or {})))
    return snaps
