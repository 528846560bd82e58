"""Optimizers, learning-rate and momentum schedules, and the EMA target network.

Everything here follows ``torch.optim``'s conventions: an optimizer takes an iterable of
parameters or a list of parameter-group dicts (per-group ``lr``, ``weight_decay`` …),
``step()`` updates every parameter whose ``.grad`` is not ``None`` **in place** on
``p.data`` with the array module of the parameter (NumPy or CuPy), ``zero_grad()`` clears
the gradients, and ``state_dict()`` / ``load_state_dict()`` carry the optimizer state in
PyTorch's layout (``{"state": {index: {...}}, "param_groups": [{..., "params": [index,
...]}]}``), which :func:`npjem.save` writes to disk.

Dtypes are kept: hyperparameters are Python floats, which never promote an array under
NumPy 2 (NEP 50), and every update is an in-place operation on the parameter's own array,
so a float32 model stays float32 and a float64 model is a float64 oracle for PyTorch.

Gradients are only read, never written: the engine may hand out a gradient that aliases
another array or is a read-only broadcast view, so the optimizer copies before it keeps
one (the first momentum buffer).
"""
from __future__ import annotations

import copy
import math
import numbers

from . import backend
from ._checks import check_bool, check_int, check_real
from .autograd import Tensor, enable_grad, no_grad

__all__ = [
    "Optimizer", "SGD", "Adam", "AdamW", "LARS",
    "warmup_cosine", "cosine_momentum", "WarmupCosine", "EMA",
]


class _Required:
    """Marks a hyperparameter without a default (LARS's ``lr``)."""

    def __repr__(self):
        return "<required>"


required = _Required()


def _grad_array(p):
    """The gradient of ``p`` as an array of ``p``'s dtype and shape, or ``None``."""
    g = p.grad
    if g is None:
        return None
    g = g.data if isinstance(g, Tensor) else g
    if not backend.is_array(g):
        raise TypeError(f"parameter gradient must be a Tensor or an array, got {type(g).__name__}")
    if g.shape != p.data.shape:
        raise ValueError(f"gradient of shape {g.shape} does not match its parameter of shape {p.data.shape}")
    if g.dtype != p.data.dtype:
        g = g.astype(p.data.dtype)
    return g


# ============================================================================ Optimizer

class Optimizer:
    """Base class: parameter groups, per-parameter state, ``zero_grad``, state dicts.

    ``params`` is an iterable of Tensors (``model.parameters()``) or of dicts, each with a
    ``"params"`` entry and any per-group option overriding ``defaults``.
    ``self.state`` maps a parameter (by identity) to its dict of state arrays.
    """

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state: dict = {}
        self.param_groups: list = []
        if isinstance(params, Tensor):
            raise TypeError(
                "params must be an iterable of Tensors or of dicts, got a single Tensor; "
                "wrap it in a list")
        if isinstance(params, (set, frozenset)):
            raise TypeError("params must be an ordered iterable (a set's order is not reproducible)")
        params = list(params)
        if len(params) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        for group in params:
            self.add_param_group(group)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(k for k in g if k != "params"):
                lines.append(f"    {k}: {g[k]}")
        lines.append(")")
        return "\n".join(lines)

    def add_param_group(self, param_group: dict) -> None:
        """Add a group (``{"params": [...], "lr": ...}``); missing options take the defaults."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        if "params" not in group:
            raise ValueError("param_group must have a 'params' entry")
        ps = group["params"]
        if isinstance(ps, Tensor):
            ps = [ps]
        elif isinstance(ps, (set, frozenset)):
            raise TypeError("param_group['params'] must be ordered (a set's order is not reproducible)")
        ps = list(ps)
        for p in ps:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor (it was computed from others)")
            if p.dtype.kind != "f":
                raise TypeError(f"optimizer can only optimize floating tensors, got dtype {p.dtype}")
        if len({id(p) for p in ps}) != len(ps):
            raise ValueError("a parameter appears more than once in one parameter group")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in ps):
            raise ValueError("some parameters appear in more than one parameter group")
        group["params"] = ps
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required option {name!r}")
            group.setdefault(name, default)
        unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)} for {type(self).__name__}; "
                             f"known: {sorted(self.defaults)}")
        self._check_group(group)
        self.param_groups.append(group)

    def _check_group(self, group: dict) -> None:
        """Validate a group's hyperparameters (subclasses extend)."""
        check_real(group["lr"], "lr", low=0.0)
        if "weight_decay" in group:
            check_real(group["weight_decay"], "weight_decay", low=0.0)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every parameter's gradient: ``None`` (default) or a fresh zero array.

        Zeros are a new array rather than an in-place fill, because the gradient the
        engine left may alias another array or be a read-only broadcast view.
        """
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad = Tensor(p.xp.zeros_like(p.data))

    def step(self, closure=None):
        """One update of every parameter with a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    g = _grad_array(p)
                    if g is None:
                        continue
                    self._update(p, g, group, self.state.setdefault(p, {}))
        return loss

    def _update(self, p, g, group, state):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- state dicts
    def state_dict(self) -> dict:
        """``{"state": {i: {name: array or number}}, "param_groups": [...]}`` as PyTorch.

        Parameters are numbered in the order of the groups; state arrays are the live
        arrays (as ``torch``'s are the live tensors): copy or save before training on.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            g = {k: v for k, v in group.items() if k != "params"}
            ids = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            g["params"] = ids
            groups.append(g)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if self.state.get(p):
                    state[index[id(p)]] = dict(self.state[p])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what :meth:`state_dict` returned (also after :func:`npjem.load`).

        Group options are taken from the saved groups; state arrays are copied onto each
        parameter's device, floating ones in the parameter's dtype (as PyTorch does).
        """
        if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError("state_dict must be a dict with 'state' and 'param_groups' entries")
        saved_groups = list(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups, "
                             f"the optimizer has {len(self.param_groups)}")
        id_to_param = {}
        for saved, group in zip(saved_groups, self.param_groups):
            saved_ids = list(saved["params"])
            if len(saved_ids) != len(group["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't match "
                                 f"the size of optimizer's group ({len(saved_ids)} vs {len(group['params'])})")
            for i, p in zip(saved_ids, group["params"]):
                id_to_param[int(i)] = p
        new_groups = []
        for saved, group in zip(saved_groups, self.param_groups):
            g = {}
            for k, v in saved.items():
                if k == "params":
                    continue
                if k not in self.defaults and k != "initial_lr":
                    # PyTorch's groups carry switches npjem lacks (maximize, foreach, fused …):
                    # harmless when off, a silent change of the algorithm when on.
                    if v is None or v is False:
                        continue
                    raise ValueError(f"option {k}={v!r} of the loaded parameter group is not "
                                     f"supported by npjem's {type(self).__name__}")
                g[k] = tuple(v) if isinstance(v, list) and isinstance(self.defaults.get(k), tuple) else v
            for k in self.defaults:
                g.setdefault(k, group[k])  # an option the saved group lacks keeps its current value
            g["params"] = group["params"]
            self._check_group(g)
            new_groups.append(g)
        new_state = {}
        for key, pstate in state_dict["state"].items():
            k = int(key)
            if k not in id_to_param:
                raise ValueError(f"loaded state refers to parameter index {k}, which no group holds")
            p = id_to_param[k]
            ps = {}
            for name, v in pstate.items():
                if name == "step":  # a Python int here; PyTorch keeps a 0-d float tensor
                    ps[name] = int(backend.to_numpy(v).item()) if not isinstance(v, numbers.Number) else int(v)
                    continue
                if backend.is_array(v) or isinstance(v, Tensor):
                    arr = v.data if isinstance(v, Tensor) else v
                    arr = backend.to_device(arr, p.device)
                    if arr.dtype.kind == "f":
                        arr = arr.astype(p.dtype, copy=False)
                    if arr.shape != p.shape:
                        raise ValueError(f"state {name!r} of parameter {k} has shape {arr.shape}, "
                                         f"the parameter has shape {p.shape}")
                    v = arr.copy()
                ps[name] = v
            new_state[p] = ps
        self.param_groups = new_groups
        self.state = new_state


# ============================================================================ SGD

class SGD(Optimizer):
    r"""Stochastic gradient descent with momentum, as ``torch.optim.SGD``.

    With g = ∇θ, λ = ``weight_decay``, μ = ``momentum``, τ = ``dampening``, γ = ``lr``::

        g ← g + λ θ
        b ← g                      at the first step  (the buffer starts at the first gradient)
        b ← μ b + (1 − τ) g        afterwards
        g ← g + μ b   (nesterov)   or   g ← b
        θ ← θ − γ g
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov)
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        check_real(group["momentum"], "momentum", low=0.0)
        check_real(group["dampening"], "dampening")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("nesterov momentum requires a momentum > 0 and zero dampening")

    def _update(self, p, g, group, state):
        lr, mu = float(group["lr"]), float(group["momentum"])
        wd, damp = float(group["weight_decay"]), float(group["dampening"])
        d = g + wd * p.data if wd != 0 else g
        if mu != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = d.copy()  # d may be the engine's gradient array: never keep it
                state["momentum_buffer"] = buf
            else:
                buf *= mu
                buf += (1.0 - damp) * d
            d = d + mu * buf if group["nesterov"] else buf
        p.data -= lr * d


# ============================================================================ Adam / AdamW

class Adam(Optimizer):
    r"""Adam with bias correction, as ``torch.optim.Adam`` (and ``AdamW``).

    With step t (from 1), g = ∇θ, λ = ``weight_decay``, γ = ``lr``::

        g ← g + λ θ                         (L2, when not decoupled)
        θ ← θ (1 − γ λ)                     (decoupled weight decay, AdamW)
        m ← β₁ m + (1 − β₁) g
        v ← β₂ v + (1 − β₂) g²
        v̂ ← max(v̂, v)                      (amsgrad; otherwise v̂ = v)
        θ ← θ − γ/(1 − β₁ᵗ) · m / (sqrt(v̂)/sqrt(1 − β₂ᵗ) + ε)

    The last line puts ε where PyTorch does: after the bias correction of v.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, decoupled_weight_decay=False):
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        check_real(betas[0], "betas[0]", low=0.0, high=1.0, high_open=True)
        check_real(betas[1], "betas[1]", low=0.0, high=1.0, high_open=True)
        check_real(group["eps"], "eps", low=0.0)

    def _update(self, p, g, group, state):
        lr, eps, wd = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        b1, b2 = float(group["betas"][0]), float(group["betas"][1])
        xp = p.xp
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(p.data)
        if wd != 0:
            if group["decoupled_weight_decay"]:
                p.data *= 1.0 - lr * wd
            else:
                g = g + wd * p.data
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        v += (1.0 - b2) * (g * g)
        if group["amsgrad"]:
            vmax = state.get("max_exp_avg_sq")
            if vmax is None:  # amsgrad switched on after the first step
                vmax = state["max_exp_avg_sq"] = v.copy()
            xp.maximum(vmax, v, out=vmax)
            v = vmax
        bias_correction1 = 1.0 - b1 ** t
        bias_correction2_sqrt = math.sqrt(1.0 - b2 ** t)
        denom = xp.sqrt(v) / bias_correction2_sqrt + eps
        p.data -= (lr / bias_correction1) * (m / denom)


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``.

    θ ← θ (1 − γ λ) before the Adam step; the decay never enters m or v.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, decoupled_weight_decay=True)


# ============================================================================ LARS

class LARS(Optimizer):
    r"""Layer-wise Adaptive Rate Scaling (You et al. 2017) as SimCLR, BYOL and Barlow Twins use it.

    For each parameter θ with gradient g, η = ``trust_coefficient``, λ = ``weight_decay``,
    μ = ``momentum``, γ = ``lr``::

        g ← g + λ θ                                          (not for excluded θ)
        r = η ‖θ‖ / ‖g‖  if ‖θ‖ > 0 and ‖g‖ > 0, else 1        (r = 1 for excluded θ)
        b ← μ b + γ r g                                      (b starts at 0)
        θ ← θ − b

    ‖·‖ is the Frobenius norm of the whole tensor (one trust ratio per layer tensor), and
    ‖g‖ is taken *after* weight decay was added (SimCLR's TF LARS, BYOL, Barlow Twins).

    **Variant** (``lr_in_momentum``). By default the learning rate sits inside the momentum
    buffer, as in the LARS paper's Algorithm 1 and SimCLR's TF optimizer. The authors' own
    LARS of Barlow Twins (facebookresearch/barlowtwins ``main.py``), VICReg
    (``main_vicreg.py``) and BYOL (deepmind-research ``byol/utils/optimizers.py``: the momentum
    transform, then ``optax.scale(-lr)``) keep γ outside; ``lr_in_momentum=False`` selects it::

        b ← μ b + r g                                        (b starts at 0)
        θ ← θ − γ b

    With a constant γ the two are identical; under a warmup/cosine schedule they differ by how
    past steps are weighted (γ_k Σ μ^{k−j} r_j g_j against Σ μ^{k−j} γ_j r_j g_j), so a
    step-for-step twin of those authors' training needs ``lr_in_momentum=False``. The
    ``momentum_buffer`` then holds b without γ. The Apex/Lightning Bolts LARS
    (``trust_coefficient · ‖θ‖ / (‖g‖ + λ‖θ‖ + eps)`` on the raw gradient, with optional
    clipping) is a different formula and is not this one.

    **Exclusion.** A parameter is excluded from weight decay *and* from the trust ratio
    (it takes plain momentum SGD at ``lr``) when its group has ``lars_exclude=True``, or,
    when the group leaves ``lars_exclude`` at ``None``, when ``exclude_bias_and_norm`` is
    on and ``p.ndim == 1`` — biases and BatchNorm/LayerNorm weights, the rule of Barlow
    Twins and BYOL (``exclude_bias_and_norm``). ``lars_exclude=False`` forces adaptation.

    ``eta`` is accepted as another name of ``trust_coefficient`` (Barlow Twins' name).
    """

    def __init__(self, params, lr=required, momentum=0.9, weight_decay=0.0, trust_coefficient=1e-3,
                 eta=None, exclude_bias_and_norm=True, lr_in_momentum=True):
        if eta is not None:
            if trust_coefficient != 1e-3 and trust_coefficient != eta:
                raise ValueError("give trust_coefficient or eta (its alias), not two different values")
            trust_coefficient = eta
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                        trust_coefficient=trust_coefficient, exclude_bias_and_norm=exclude_bias_and_norm,
                        lars_exclude=None, lr_in_momentum=lr_in_momentum)
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        check_real(group["momentum"], "momentum", low=0.0)
        check_real(group["trust_coefficient"], "trust_coefficient", low=0.0)
        if group["lars_exclude"] not in (None, True, False):
            raise ValueError(f"lars_exclude must be None, True or False, got {group['lars_exclude']!r}")
        check_bool(group["lr_in_momentum"], "lr_in_momentum")

    @staticmethod
    def is_excluded(p, group) -> bool:
        """Whether ``p`` skips weight decay and the trust ratio under ``group``'s options."""
        if group["lars_exclude"] is not None:
            return bool(group["lars_exclude"])
        return bool(group["exclude_bias_and_norm"]) and p.ndim == 1

    def _update(self, p, g, group, state):
        lr, mu = float(group["lr"]), float(group["momentum"])
        wd, eta = float(group["weight_decay"]), float(group["trust_coefficient"])
        inside = bool(group["lr_in_momentum"])
        xp = p.xp
        if self.is_excluded(p, group):
            scaled = lr * g if inside else g
        else:
            if wd != 0:
                g = g + wd * p.data
            # Norms and the ratio stay 0-d device arrays: no host round trip per tensor.
            w_norm = xp.linalg.norm(p.data)
            g_norm = xp.linalg.norm(g)
            ok = (w_norm > 0) & (g_norm > 0)
            ratio = xp.where(ok, eta * w_norm / xp.where(ok, g_norm, 1), 1).astype(p.dtype)
            scaled = (lr * ratio) * g if inside else ratio * g
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = xp.zeros_like(p.data)
        buf *= mu
        buf += scaled
        if inside:
            p.data -= buf
        else:
            p.data -= lr * buf


# ============================================================================ schedules

def _check_steps(total_steps, warmup_steps):
    total = check_int(total_steps, "total_steps")
    check_int(warmup_steps, "warmup_steps", minimum=0, maximum=total - 1)
    return total


def warmup_cosine(step, total_steps, warmup_steps, base_lr, final_lr=0.0) -> float:
    r"""Linear warmup then cosine decay, per step (BYOL, Barlow Twins, VICReg).

    With k = ``step`` (clipped to [0, K]), K = ``total_steps``, W = ``warmup_steps``::

        lr(k) = base · k / W                                   for k < W
        lr(k) = final + (base − final) · ½ (1 + cos(π (k − W)/(K − W)))   for W ≤ k ≤ K

    so lr(0) = 0 (when W > 0), lr(W) = base, lr(K) = final, and lr stays ``final_lr``
    after K. ``step`` counts the optimizer steps already taken. (Barlow Twins writes
    final = 0.001·base; lightly's ``cosine_schedule`` divides by K − 1 instead of K.)
    """
    _check_steps(total_steps, warmup_steps)
    base = check_real(base_lr, "base_lr", low=0.0)
    final = check_real(final_lr, "final_lr", low=0.0)
    k = min(max(float(step), 0.0), float(total_steps))
    if k < warmup_steps:
        return base * k / warmup_steps
    q = 0.5 * (1.0 + math.cos(math.pi * (k - warmup_steps) / (total_steps - warmup_steps)))
    return final + (base - final) * q


def cosine_momentum(step, total_steps, base=0.996, final=1.0) -> float:
    r"""BYOL's target-momentum schedule τ_k = final − (final − base)(cos(πk/K) + 1)/2.

    With ``final = 1`` this is 1 − (1 − τ_base)(cos(πk/K) + 1)/2: τ_0 = base, τ_K = final,
    k clipped to [0, K] (BYOL, solo-learn's per-step MomentumUpdater, DINO's teacher).
    """
    check_int(total_steps, "total_steps")
    base = check_real(base, "base", low=0.0, high=1.0)
    final = check_real(final, "final", low=0.0, high=1.0)
    k = min(max(float(step), 0.0), float(total_steps))
    return final - (final - base) * (math.cos(math.pi * k / total_steps) + 1.0) / 2.0


class WarmupCosine:
    r"""Per-step :func:`warmup_cosine` for every parameter group, like a ``torch`` ``LambdaLR``.

    Each group's base lr is its ``lr`` when the scheduler is made (kept as
    ``group["initial_lr"]``, as PyTorch does). Constructing the scheduler sets the lr for
    step 0; call :meth:`step` after each ``optimizer.step()``.

    Group g ends at ``final_lr`` (a number, or one per group), or at
    ``final_lr_scale · base_g`` when ``final_lr_scale`` is given (Barlow Twins: 0.001);
    with ``final_lr=0`` (default) or a scale, the ratio between groups' lrs never changes.
    """

    def __init__(self, optimizer, total_steps, warmup_steps, final_lr=0.0, final_lr_scale=None, last_step=-1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be an npjem Optimizer, got {type(optimizer).__name__}")
        _check_steps(total_steps, warmup_steps)
        self.optimizer = optimizer
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        for group in optimizer.param_groups:
            if last_step == -1:
                group["initial_lr"] = group["lr"]
            elif "initial_lr" not in group:
                raise ValueError("resuming with last_step != -1 needs 'initial_lr' in every param group")
        self.base_lrs = [float(g["initial_lr"]) for g in optimizer.param_groups]
        n = len(self.base_lrs)
        if final_lr_scale is not None:
            if final_lr not in (0, 0.0):
                raise ValueError("give final_lr or final_lr_scale, not both")
            s = check_real(final_lr_scale, "final_lr_scale", low=0.0)
            self.final_lrs = [s * b for b in self.base_lrs]
        elif isinstance(final_lr, (list, tuple)):
            if len(final_lr) != n:
                raise ValueError(f"final_lr has {len(final_lr)} values for {n} parameter groups")
            self.final_lrs = [check_real(f, "final_lr", low=0.0) for f in final_lr]
        else:
            self.final_lrs = [check_real(final_lr, "final_lr", low=0.0)] * n
        self.last_step = int(last_step)
        self.step()

    def get_lr(self, step=None):
        """The lrs of every group at ``step`` (default: the current step)."""
        k = self.last_step if step is None else step
        return [warmup_cosine(k, self.total_steps, self.warmup_steps, b, f)
                for b, f in zip(self.base_lrs, self.final_lrs)]

    def step(self) -> None:
        """Advance one step and set each group's ``lr``."""
        self.last_step += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr

    def get_last_lr(self):
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"last_step": self.last_step, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "base_lrs": list(self.base_lrs),
                "final_lrs": list(self.final_lrs)}

    def load_state_dict(self, state_dict: dict) -> None:
        try:
            self.last_step = int(state_dict["last_step"])
            _check_steps(state_dict["total_steps"], state_dict["warmup_steps"])
            self.total_steps, self.warmup_steps = int(state_dict["total_steps"]), int(state_dict["warmup_steps"])
            self.base_lrs = [float(b) for b in state_dict["base_lrs"]]
            self.final_lrs = [float(f) for f in state_dict["final_lrs"]]
        except KeyError as e:
            raise ValueError(f"scheduler state_dict lacks the entry {e.args[0]!r}") from None
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr


# ============================================================================ EMA

def _named(module, what):
    fn = getattr(module, what, None)
    if fn is None:
        if what == "named_parameters":
            raise TypeError(f"{type(module).__name__} has no named_parameters(); pass a Module")
        return {}
    out = {}
    for name, t in fn():
        if t is not None:
            out[name] = t
    return out


def _array(t):
    return t.data if isinstance(t, Tensor) else t


class EMA:
    r"""A target module that follows an online module by exponential moving average.

    For every parameter, with m = ``momentum``::

        θ_target ← m θ_target + (1 − m) θ_online

    (MoCo's key encoder, BYOL's target, DINO's teacher, data2vec's teacher). m = 1 keeps
    the target, m = 0 copies the online module exactly.

    Buffers (BatchNorm ``running_mean``/``running_var``…) are handled by ``buffers``:

    - ``"copy"`` (default): the target's buffers are set to the online ones at each update,
      so a target evaluated in eval mode normalizes with the statistics the online network
      measured (BYOL ports derived from byol-pytorch hard-copy ``running_*`` this way);
    - ``"average"``: floating buffers get the same moving average as the parameters
      (timm's ModelEmaV2, ``torch.optim.swa_utils.AveragedModel(use_buffers=True)``);
    - ``"keep"``: buffers are left alone, the target keeps the statistics of its own
      forward passes (MoCo v1/v2, BYOL's JAX code, lightly's ``update_momentum``, DINO:
      they average ``parameters()`` only).

    Integer buffers (``num_batches_tracked``) are copied under ``"copy"`` and
    ``"average"``. Parameters and buffers are paired by name; the two modules must have
    the same names and shapes. Updates are in place, so the target's arrays keep their
    identity (an optimizer or view holding them stays valid).
    """

    _BUFFER_MODES = ("copy", "average", "keep")

    def __init__(self, target, online, momentum=0.996, buffers="copy"):
        if buffers not in self._BUFFER_MODES:
            raise ValueError(f"buffers must be one of {self._BUFFER_MODES}, got {buffers!r}")
        if target is online:
            raise ValueError("target and online must be two different modules")
        self.momentum = check_real(momentum, "momentum", low=0.0, high=1.0)
        self.target, self.online, self.buffers = target, online, buffers
        self._pairs("named_parameters")  # fail now, not at the first update
        self._pairs("named_buffers")

    @classmethod
    def from_module(cls, online, momentum=0.996, buffers="copy") -> EMA:
        """An EMA whose target is a deep copy of ``online``, with ``requires_grad=False``."""
        target = copy.deepcopy(online)
        for p in _named(target, "named_parameters").values():
            p.grad = None
            p.requires_grad = False
        return cls(target, online, momentum=momentum, buffers=buffers)

    def _pairs(self, what):
        t, o = _named(self.target, what), _named(self.online, what)
        if t.keys() != o.keys():
            missing = sorted(o.keys() - t.keys())
            extra = sorted(t.keys() - o.keys())
            raise ValueError(f"target and online {what[6:]} differ: missing in target {missing}, "
                             f"only in target {extra}")
        pairs = []
        for name in o:
            ta, oa = _array(t[name]), _array(o[name])
            if not (backend.is_array(ta) and backend.is_array(oa)):
                raise TypeError(f"{what[6:-1]} {name!r} is not an array or a Tensor")
            if ta.shape != oa.shape:
                raise ValueError(f"{what[6:-1]} {name!r}: target shape {ta.shape} != online shape {oa.shape}")
            if backend.device_of(ta) != backend.device_of(oa):
                raise ValueError(f"{what[6:-1]} {name!r}: target on {backend.device_of(ta)}, "
                                 f"online on {backend.device_of(oa)}")
            pairs.append((name, ta, oa))
        return pairs

    @staticmethod
    def _average(ta, oa, m):
        if m == 1.0:
            return
        if m == 0.0:
            ta[...] = oa
            return
        ta *= m
        ta += (1.0 - m) * oa.astype(ta.dtype, copy=False)

    def update(self, momentum=None) -> None:
        """One EMA step with ``momentum`` (default: ``self.momentum``); call after ``optimizer.step()``."""
        m = self.momentum if momentum is None else check_real(momentum, "momentum", low=0.0, high=1.0)
        for _, ta, oa in self._pairs("named_parameters"):
            self._average(ta, oa, m)
        if self.buffers == "keep":
            return
        for _, ta, oa in self._pairs("named_buffers"):
            if self.buffers == "average" and ta.dtype.kind in "fc":
                self._average(ta, oa, m)
            else:
                ta[...] = oa

    def copy_(self) -> None:
        """Hard copy: the target takes the online parameters and buffers (any ``buffers`` mode)."""
        for what in ("named_parameters", "named_buffers"):
            for _, ta, oa in self._pairs(what):
                ta[...] = oa
