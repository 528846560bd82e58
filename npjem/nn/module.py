"""``Module`` and ``Parameter``, as ``torch.nn.Module`` and ``torch.nn.Parameter``.

A Module registers what is assigned to its attributes: a ``Parameter`` joins its parameters,
a ``Module`` its children, and a Tensor assigned to a name made with ``register_buffer`` is a
buffer (state that is saved but not trained: BatchNorm's running statistics). Names in
``state_dict`` are PyTorch's (``0.weight``, ``bn.running_mean``, ``bn.num_batches_tracked``),
so a PyTorch state_dict converted to NumPy arrays (``{k: v.numpy() for k, v in sd.items()}``)
loads into the matching npjem module.
"""
from __future__ import annotations

from collections import OrderedDict, namedtuple

import numpy as np

from .. import backend
from ..autograd.tensor import Tensor

__all__ = ["Module", "Parameter", "StateDictError"]


class Parameter(Tensor):
    """A Tensor that a Module registers as trainable; ``requires_grad`` is True by default.

    ``Parameter(t)`` shares the array of a Tensor ``t`` (no copy), as PyTorch does.
    """

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            data = np.empty((0,), dtype=backend.default_dtype())  # host: an empty parameter
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()

    def __reduce_ex__(self, protocol):
        # Tensor uses __slots__; rebuild from the array so copy/deepcopy/pickle keep the class.
        return (_rebuild_parameter, (self.data, self.requires_grad, self.grad))


def _rebuild_parameter(data, requires_grad, grad):
    p = Parameter(data, requires_grad=requires_grad)
    p.grad = grad
    return p


class StateDictError(KeyError, ValueError):
    """``load_state_dict`` found missing, unexpected or mis-shaped keys (all listed in one message)."""

    def __init__(self, message, missing_keys=(), unexpected_keys=(), mismatched_keys=()):
        super().__init__(message)
        self.message = message
        self.missing_keys = list(missing_keys)
        self.unexpected_keys = list(unexpected_keys)
        self.mismatched_keys = list(mismatched_keys)

    def __str__(self):  # KeyError would print the repr of the message
        return self.message


_IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _as_array(value, key):
    """An array from a Tensor, a NumPy/CuPy array, a torch tensor (``.numpy()``) or ``__array__``."""
    if isinstance(value, Tensor):
        return value.data
    if backend.is_array(value):
        return value
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch.Tensor
        return value.detach().cpu().numpy()
    if hasattr(value, "numpy"):
        return np.asarray(value.numpy())  # host
    if hasattr(value, "__array__") or isinstance(value, (int, float, list, tuple, np.generic)):
        return np.asarray(value)  # host
    raise TypeError(f"state_dict[{key!r}] must be an array or a Tensor, got {type(value).__name__}")


def _addindent(s, n):
    lines = s.split("\n")
    if len(lines) == 1:
        return s
    return lines[0] + "\n" + "\n".join(" " * n + line for line in lines[1:])


class Module:
    """Base class of layers and models (``torch.nn.Module``).

    Subclasses call ``super().__init__()`` first, assign Parameters, buffers and submodules
    as attributes, and implement ``forward``; ``module(x)`` calls ``forward(x)``.
    """

    training: bool

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------------ forward
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" function')

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------------ registration
    def _check_ready(self, what):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {what} before Module.__init__() call")

    def _check_name(self, name, kind):
        if not isinstance(name, str):
            raise TypeError(f"{kind} name must be a str, got {type(name).__name__}")
        if name == "" or "." in name:
            raise KeyError(f"{kind} name must be non-empty and contain no '.', got {name!r}")

    def register_parameter(self, name, param):
        """Add ``param`` (a Parameter, or None for an absent one such as ``bias=False``)."""
        self._check_ready("parameters")
        self._check_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign {type(param).__name__!r} as parameter {name!r} "
                            "(npjem.nn.Parameter or None expected)")
        if hasattr(type(self), name) or (name in self.__dict__):
            raise KeyError(f"attribute {name!r} already exists")
        self._buffers.pop(name, None)
        self._modules.pop(name, None)
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """Add a buffer: a Tensor (or array) saved in ``state_dict`` but not trained; None is allowed."""
        self._check_ready("buffers")
        self._check_name(name, "buffer")
        if hasattr(type(self), name) or (name in self.__dict__) or name in self._parameters or name in self._modules:
            raise KeyError(f"attribute {name!r} already exists")
        self._buffers[name] = self._as_buffer(name, tensor)
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    @staticmethod
    def _as_buffer(name, tensor):
        if tensor is None:
            return None
        if isinstance(tensor, Parameter):
            raise TypeError(f"buffer {name!r} cannot be a Parameter; use register_parameter")
        if isinstance(tensor, Tensor):
            return tensor.detach() if tensor.requires_grad else tensor
        if backend.is_array(tensor):
            return Tensor(tensor)
        raise TypeError(f"cannot assign {type(tensor).__name__!r} as buffer {name!r} (Tensor, array or None expected)")

    def add_module(self, name, module):
        self._check_ready("child modules")
        self._check_name(name, "module")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        if hasattr(type(self), name) and name not in self._modules:
            raise KeyError(f"attribute {name!r} already exists")
        self._parameters.pop(name, None)
        self._buffers.pop(name, None)
        self._modules[name] = module

    register_module = add_module

    def __setattr__(self, name, value):
        params = self.__dict__.get("_parameters")
        if isinstance(value, Parameter):
            self._check_ready("parameters")
            self.__dict__.pop(name, None)
            self._buffers.pop(name, None)
            self._modules.pop(name, None)
            params[name] = value
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__!r} as parameter {name!r} "
                                "(npjem.nn.Parameter or None expected)")
            params[name] = None
        elif isinstance(value, Module):
            self._check_ready("child modules")
            self.__dict__.pop(name, None)
            params.pop(name, None)
            self._buffers.pop(name, None)
            self._modules[name] = value
        elif params is not None and name in self._modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__!r} as child module {name!r} "
                                "(Module or None expected)")
            self._modules[name] = None
        elif params is not None and name in self._buffers:
            self._buffers[name] = self._as_buffer(name, value)
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # Called only when ordinary lookup fails.
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for store in ("_parameters", "_buffers", "_modules"):
            d = self.__dict__.get(store)
            if d is not None and name in d:
                del d[name]
                self._non_persistent.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules))

    # ------------------------------------------------------------------ traversal
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        """(name, module) for this module and every descendant, depth first, each once."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, m in self._modules.items():
            if m is None:
                continue
            yield from m.named_modules(memo, prefix + ("." if prefix else "") + name, remove_duplicate)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        seen = set()
        for name, m in self._modules.items():
            if m is not None and id(m) not in seen:
                seen.add(id(m))
                yield name, m

    def children(self):
        for _, m in self.named_children():
            yield m

    def _named_members(self, store, prefix, recurse, remove_duplicate, persistent_only=False):
        seen = set()
        mods = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        for mprefix, m in mods:
            for name, v in getattr(m, store).items():
                if v is None or (persistent_only and name in m._non_persistent):
                    continue
                if remove_duplicate:
                    if id(v) in seen:
                        continue
                    seen.add(id(v))
                yield mprefix + ("." if mprefix else "") + name, v

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """(name, Parameter) pairs; a parameter shared by two modules is listed once."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def get_submodule(self, target):
        """The descendant at dotted path ``target`` (``""`` is this module)."""
        if target == "":
            return self
        m = self
        for part in target.split("."):
            if not isinstance(m, Module) or part not in m._modules or m._modules[part] is None:
                raise AttributeError(f"{type(m).__name__} has no submodule {part!r} (looking up {target!r})")
            m = m._modules[part]
        return m

    def get_parameter(self, target):
        mod, _, name = target.rpartition(".")
        m = self.get_submodule(mod)
        if name not in m._parameters or m._parameters[name] is None:
            raise AttributeError(f"{type(m).__name__} has no parameter {name!r}")
        return m._parameters[name]

    # ------------------------------------------------------------------ modes and bulk changes
    def train(self, mode=True):
        """Set training mode (``mode=True``) or evaluation mode on this module and all descendants."""
        if not isinstance(mode, bool):
            raise ValueError(f"training mode is expected to be a bool, got {mode!r}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        """Clear every parameter's ``.grad`` (to None, or to zeros with ``set_to_none=False``)."""
        for p in self.parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad = Tensor(p.xp.zeros_like(p.data))

    def apply(self, fn):
        """Call ``fn`` on every child (recursively) and then on this module; returns self."""
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def to(self, *args, device=None, dtype=None):
        """Move parameters and buffers to ``device`` and/or cast floating ones to ``dtype``, in place.

        ``m.to("cuda")``, ``m.to(np.float64)``, ``m.to("cpu", np.float64)`` or with keywords.
        Parameters stay the same objects (an optimizer built before keeps working); integer
        buffers such as ``num_batches_tracked`` keep their dtype. Returns self.
        """
        for a in args:
            if isinstance(a, str):
                if device is not None:
                    raise TypeError("to(): device given twice")
                device = a
            else:
                if dtype is not None:
                    raise TypeError("to(): dtype given twice")
                dtype = a
        if device is not None:
            device = backend.normalize_device(device)
        if dtype is not None:
            try:
                dtype = np.dtype(dtype)
            except TypeError:
                raise TypeError(f"to(): expected a device string or a dtype, got {dtype!r}") from None
            if dtype.kind != "f":
                raise TypeError(f"to(): dtype must be a floating dtype, got {dtype}")

        def convert(arr):
            if device is not None and backend.device_of(arr) != device:
                arr = backend.to_device(arr, device)
            if dtype is not None and arr.dtype.kind == "f" and arr.dtype != dtype:
                arr = arr.astype(dtype)
            return arr

        for t in list(self.parameters()) + list(self.buffers()):
            t.data = convert(t.data)
            if t.grad is not None:
                t.grad = Tensor(convert(t.grad.data))
        return self

    def cpu(self):
        return self.to(device="cpu")

    def cuda(self):
        return self.to(device="cuda")

    def double(self):
        return self.to(dtype=np.float64)

    def float(self):
        return self.to(dtype=np.float32)

    # ------------------------------------------------------------------ state
    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """OrderedDict name → array (the module's own arrays, not copies) of parameters and
        persistent buffers, in PyTorch's order and names. ``keep_vars=True`` gives the Tensors."""
        out = OrderedDict() if destination is None else destination
        for mprefix, m in self.named_modules(prefix=prefix.rstrip("."), remove_duplicate=False):
            p = mprefix + ("." if mprefix else "")
            for name, v in m._parameters.items():
                if v is not None:
                    out[p + name] = v if keep_vars else v.data
            for name, v in m._buffers.items():
                if v is not None and name not in m._non_persistent:
                    out[p + name] = v if keep_vars else v.data
        return out

    def _state_targets(self):
        return self.state_dict(keep_vars=True)

    def load_state_dict(self, state_dict, strict=True):
        """Copy ``state_dict``'s values into this module's parameters and buffers, in place.

        Values may be NumPy or CuPy arrays, Tensors, torch tensors, or anything with
        ``.numpy()`` / ``__array__``; each is copied into the existing array on the module's
        device and dtype. Mis-shaped keys always raise; with ``strict`` missing and unexpected
        keys raise too — all of them listed in one ``StateDictError`` (a KeyError and a
        ValueError). Nothing is copied unless every check passes. Returns
        ``(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state_dict, "items"):
            raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        targets = self._state_targets()
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        mismatched, values = [], {}
        for k, t in targets.items():
            if k not in state_dict:
                continue
            arr = _as_array(state_dict[k], k)
            if tuple(arr.shape) != tuple(t.shape):
                mismatched.append((k, tuple(arr.shape), tuple(t.shape)))
                continue
            values[k] = arr
        errors = []
        if strict and missing:
            errors.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ".")
        if strict and unexpected:
            errors.append("Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + ".")
        for k, got, want in mismatched:
            errors.append(f"size mismatch for {k}: copying a param with shape {got} from checkpoint, "
                          f"the shape in current model is {want}.")
        if errors:
            raise StateDictError(
                f"Error(s) in loading state_dict for {type(self).__name__}:\n\t" + "\n\t".join(errors),
                missing, unexpected, [k for k, _, _ in mismatched])
        for k, arr in values.items():
            t = targets[k]
            src = backend.to_device(arr, t.device) if backend.device_of(arr) != t.device else arr
            t.data[...] = src.astype(t.dtype, copy=False)
        return _IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ printing
    def extra_repr(self):
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        lines = extra.split("\n") if extra else []
        children = [f"({name}): " + _addindent(repr(m), 2) for name, m in self._modules.items()]
        body = type(self).__name__ + "("
        if lines or children:
            if len(lines) == 1 and not children:
                body += lines[0]
            else:
                body += "\n  " + "\n  ".join(lines + children) + "\n"
        return body + ")"
