"""The base class of joint-embedding methods, and the one training loop that runs them all.

A method is the four components of a joint embedding put together (NYU Deep Learning notes, ch. 15-1 "Joint Embedding Methods — Contrastive",
section "Components:"):

1. data augmentation: a *view maker* that turns a batch x into two (or more) distorted views,
   x ↦ (x̃, ỹ) (:meth:`Method.make_views`, default SimCLR's CIFAR recipe
   :func:`npjem.data.augment.simclr_views`);
2. a backbone BB that maps each view to a representation h (``method.backbone``), usually
   followed by a projection head whose output is what the loss sees;
3. an energy D between two representations (for the contrastive methods here, D = −β·sim);
4. loss functionals A and B over the batch of energies (the positive pairs' energies pushed
   down, the negatives' pushed up).

``method(*views)`` returns the scalar loss; :meth:`Method.after_step` updates the state that is
not trained by gradient (MoCo's EMA key encoder and queue, PIRL's memory bank) after each
optimizer step; :meth:`Method.embed` returns the backbone's features for probing.

:func:`fit` is the loop that trains any method::

    for each batch x (and, when the method needs them, its data-set indices):
        views = method.make_views(x, generator)
        loss  = method(*views)              # or method(*views, indices=indices)
        optimizer.zero_grad(); loss.backward()
        method.before_step(step, total_steps)   # DINO's frozen last layer
        optimizer.step()
        schedule.step(); method.after_step(step, total_steps)
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np

from .._checks import check_int
from .. import backend
from .. import random as nrandom
from ..autograd import Tensor, no_grad
from ..data.augment import simclr_views
from ..data.datasets import DataLoader
from ..nn import Module

__all__ = ["Method", "fit", "IndexedDataLoader", "History", "check_two_views"]


def check_two_views(x1, x2, min_batch=1, why=""):
    """Two views of one batch: the same shape, and at least ``min_batch`` images (``why`` says
    what needs them)."""
    if tuple(x1.shape) != tuple(x2.shape):
        raise ValueError(f"the two views must have the same shape, got {tuple(x1.shape)} and {tuple(x2.shape)}")
    if x1.shape[0] < min_batch:
        raise ValueError(f"{why}: it needs at least {min_batch} images, got {x1.shape[0]}")


def _raw(x, name="x"):
    """The array behind a Tensor or an array (a constant: views are never differentiated)."""
    if isinstance(x, Tensor):
        return x.data
    if backend.is_array(x):
        return x
    raise TypeError(f"{name} must be an array or a Tensor, got {type(x).__name__}")


def _param_device(module):
    for p in module.parameters():
        return p.device
    return None


def _param_dtype(module):
    for p in module.parameters():
        return p.dtype
    return None


class Method(Module):
    """A joint-embedding method: view maker, backbone, head(s) and loss, as one ``Module``.

    Subclasses set their heads in ``__init__`` and implement :meth:`forward`, which takes the
    views made by :meth:`make_views` and returns the scalar loss. A method that needs the
    data-set index of each sample (PIRL's memory bank) sets ``needs_indices = True`` and takes
    ``indices`` as a keyword of ``forward``; :func:`fit` then requires a loader that yields them
    (:class:`IndexedDataLoader`).

    Args:
        backbone: the representation network BB, a ``Module`` mapping images (N, C, H, W) to
            features (N, feature_dim).
        views: the view maker, a callable ``views(x, generator) -> tuple of arrays``
            (default ``simclr_views(32)``, the SimCLR CIFAR recipe).

    Attributes:
        backbone: BB.
        views: the view maker (a plain attribute, not a submodule: it has no parameters).
        head: the module that maps backbone features to the embedding the loss compares
            (``None`` in the base class); :meth:`embed` with ``projected=True`` applies it.
    """

    #: True when ``forward`` needs the data-set index of each sample (``indices=``).
    needs_indices = False

    def __init__(self, backbone, views=None):
        super().__init__()
        if not isinstance(backbone, Module):
            raise TypeError(f"backbone must be an npjem.nn.Module, got {type(backbone).__name__}")
        if views is None:
            views = simclr_views(32)
        if not callable(views):
            raise TypeError(f"views must be callable as views(x, generator), got {type(views).__name__}")
        self.backbone = backbone
        self.views = views

    # ------------------------------------------------------------------ the four components
    def make_views(self, x, generator=None):
        """The distorted views of a batch ``x`` (N, C, H, W), as a tuple of constant Tensors.

        Calls the view maker on the raw array (on the device of ``x``) with ``generator`` (an
        ``npjem.random.Generator``, a seed, or None for the device's default generator).
        Nested outputs (PIRL's ``(patches, permutation_index)``) keep their first element.
        """
        arr = _raw(x)
        out = self.views(arr, generator=generator)
        if not isinstance(out, (tuple, list)):
            out = (out,)
        views = []
        for v in out:
            if isinstance(v, (tuple, list)):  # e.g. Jigsaw's (patches, permutation index)
                v = v[0]
            views.append(v if isinstance(v, Tensor) else Tensor(v))
        return tuple(views)

    def forward(self, *views, indices=None):
        """The scalar loss on a batch of views (subclasses implement it)."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(*views)")

    def training_loss(self, x, indices=None, generator=None):
        """``self(*self.make_views(x, generator))``: the loss of one step on a raw batch ``x``.

        ``indices`` (the samples' positions in the data set) is passed on when the method
        needs it (``needs_indices``), and must then be given.
        """
        views = self.make_views(x, generator)
        if self.needs_indices:
            if indices is None:
                raise ValueError(f"{type(self).__name__} needs the data-set index of each sample: "
                                 "pass indices= (fit gets them from an IndexedDataLoader)")
            return self(*views, indices=indices)
        return self(*views)

    def before_step(self, step, total_steps):
        """Edit the gradients between ``loss.backward()`` and ``optimizer.step()``.

        ``step`` (0-based) and ``total_steps`` as in :meth:`after_step`. A method that drops
        a parameter's gradient here (``p.grad = None``, DINO's frozen last layer) keeps the
        optimizer off it for this step: no update, no weight decay, and its momentum and step
        count stay as they were, as in ``torch.optim``. The base method changes nothing.
        """

    def after_step(self, step, total_steps):
        """Update the state that is not trained by gradient, after ``optimizer.step()``.

        ``step`` is the 0-based index of the step just taken and ``total_steps`` the length of
        the run (schedules such as BYOL's cosine EMA momentum read them). The base method has
        no such state.
        """

    # ------------------------------------------------------------------ evaluation
    @property
    def head(self):
        return None

    def trainable_parameters(self):
        """The parameters that gradient descent trains (``requires_grad``): what to give an
        optimizer; momentum encoders and other EMA copies are left out."""
        return [p for p in self.parameters() if p.requires_grad]

    def embed(self, x, batch_size=512, projected=False):
        """Backbone features of images ``x`` (N, C, H, W) for probing, as a constant Tensor.

        Runs in evaluation mode (BatchNorm uses its running statistics) under ``no_grad``, in
        chunks of ``batch_size``, and restores the previous mode. ``x`` may be a host array:
        it is moved to the device of the method's parameters. With ``projected=True`` the
        :attr:`head` is applied too (the embedding the loss compares).
        """
        check_int(batch_size, "batch_size")
        if projected and self.head is None:
            raise ValueError(f"{type(self).__name__} has no head to project with")
        arr = _raw(x)
        if arr.ndim != 4:
            raise ValueError(f"x must have shape (N, C, H, W), got {tuple(arr.shape)}")
        device = _param_device(self)
        dtype = _param_dtype(self)
        was_training = self.training
        self.eval()
        out = []
        try:
            with no_grad():
                for lo in range(0, arr.shape[0], batch_size):
                    chunk = arr[lo:lo + batch_size]
                    if device is not None and backend.device_of(chunk) != device:
                        chunk = backend.to_device(chunk, device)
                    if dtype is not None and chunk.dtype != dtype:
                        chunk = chunk.astype(dtype)
                    h = self.backbone(Tensor(chunk))
                    if projected:
                        h = self.head(h)
                    out.append(h.data)
        finally:
            self.train(was_training)
        xp = backend.get_array_module(out[0])
        return Tensor(xp.concatenate(out, axis=0))


# ====================================================================== data with indices

class IndexedDataLoader(DataLoader):
    """A :class:`~npjem.data.DataLoader` that also yields each sample's index in the data set.

    Yields ``(x, y, idx)`` (``y`` is ``None`` without labels), ``idx`` an int64 array on the
    loader's device: the rows of ``images`` in the batch, which PIRL/NPID use to address the
    memory bank. Same arguments, shuffling and generator as ``DataLoader``.
    """

    def __iter__(self):
        # The parent's batching, drawing the same permutation from the same generator.
        n, b = self.num_examples, self.batch_size
        order = backend.to_numpy(self.generator.permutation(n)) if self.shuffle else None
        for i in range(len(self)):
            lo, hi = i * b, min(n, (i + 1) * b)
            pos = np.arange(lo, hi, dtype=np.int64) if order is None else order[lo:hi].astype(np.int64)  # host
            x = self._take(self.images, pos)
            y = None if self.labels is None else self._take(self.labels, pos)
            yield x, y, backend.to_device(pos, self.device)


# ====================================================================== the training loop

class History(dict):
    """Per-step records of :func:`fit`: ``history["loss"][k]``, ``["lr"]``, ``["epoch"]``,
    ``["time"]`` (seconds since the start), plus ``history.steps`` and ``history.seconds``."""

    @property
    def steps(self):
        return len(self["loss"])

    @property
    def seconds(self):
        return self["time"][-1] if self["time"] else 0.0


def _unpack(batch):
    """(x, indices) from a loader's batch: ``x``, ``(x,)``, ``(x, y)`` or ``(x, y, idx)``."""
    if isinstance(batch, (tuple, list)):
        if len(batch) == 0 or len(batch) > 3:
            raise ValueError(f"a batch must be x, (x, y) or (x, y, indices), got a sequence of {len(batch)}")
        x = batch[0]
        idx = batch[2] if len(batch) == 3 else None
    else:
        x, idx = batch, None
    return _raw(x, "the batch's images"), idx


def _current_lr(optimizer):
    groups = getattr(optimizer, "param_groups", None)
    if not groups:
        return float("nan")
    return float(groups[0]["lr"])


def _check_epochs(epochs):
    return check_int(epochs, "epochs")


def fit(method, loader, optimizer, epochs=1, schedule=None, generator=None, progress=True,
        log_every=10, callback=None, max_steps=None, start_step=0):
    """Train ``method`` on ``loader`` for ``epochs`` epochs; returns a :class:`History`.

    One step, for every method::

        views = method.make_views(x, generator)              # augmentation
        loss  = method(*views[, indices=idx])                 # backbone, heads, energy, loss
        optimizer.zero_grad(); loss.backward()
        method.before_step(step, total_steps)                 # gradients edited (DINO's last layer)
        optimizer.step()
        schedule.step()                                       # per-step lr schedule, if any
        method.after_step(step, total_steps)                  # EMA, queue, memory bank

    Args:
        method: a :class:`Method` (or anything with ``train()``, ``training_loss(x, indices=,
            generator=)`` and ``after_step``; ``before_step`` is called when it has one, and
            ``needs_indices`` is read when it has one).
        loader: an iterable of batches, re-iterated each epoch: ``x``, ``(x, y)`` (labels are
            ignored) or ``(x, y, indices)``; a method with ``needs_indices`` requires the
            third form (:class:`IndexedDataLoader`). ``len(loader)`` gives the steps per epoch
            when it exists. A batch on another device than the method is moved to it, and cast
            to the dtype of the method's parameters.
        optimizer: an ``npjem.optim`` optimizer over the method's trainable parameters.
        epochs: number of passes over ``loader``.
        schedule: an object whose ``step()`` is called after every optimizer step
            (``npjem.optim.WarmupCosine``), or None.
        generator: seed or ``npjem.random.Generator`` for the augmentations (on the data's
            device); None uses the device's default generator.
        progress: show a tqdm bar with the loss and lr. It is shown only on a terminal; when
            stderr is not a terminal (a log file, CI) one line is printed every ``log_every``
            steps instead. ``progress=False`` prints nothing.
        log_every: how often (in steps) the bar's loss, or the log line, is refreshed.
        callback: called after every step as ``callback(record)`` with the dict
            ``{"step", "epoch", "loss", "lr", "time", "history", "method"}``; returning
            ``True`` stops training after that step.
        max_steps: stop after this many steps in all (None: ``epochs × len(loader)``).
        start_step: the steps the run took before this call (a resumed run). ``before_step``
            and ``after_step`` then get the step of the whole run and its whole length, ``start_step + k`` of
            ``start_step + total_steps``, so per-step schedules (BYOL's target momentum, DINO's
            teacher, SwAV's frozen prototypes, data2vec's EMA) continue where they stopped
            instead of starting again over the remaining steps. ``callback``'s ``"step"`` still
            counts this call's steps.

    Raises ``FloatingPointError`` naming the step and epoch when the loss is NaN or infinite;
    the check comes before the backward pass, so the parameters are those of the last good
    step.
    """
    epochs = _check_epochs(epochs)
    check_int(log_every, "log_every")
    if max_steps is not None:
        check_int(max_steps, "max_steps")
    step0 = check_int(start_step, "start_step", minimum=0)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
    if schedule is not None and not callable(getattr(schedule, "step", None)):
        raise TypeError(f"schedule must have a step() method, got {type(schedule).__name__}")
    for attr in ("zero_grad", "step"):
        if not callable(getattr(optimizer, attr, None)):
            raise TypeError(f"optimizer must have a {attr}() method, got {type(optimizer).__name__}")

    try:
        per_epoch = len(loader)
    except TypeError:
        per_epoch = None
    total_steps = per_epoch * epochs if per_epoch is not None else None
    if max_steps is not None:
        total_steps = min(total_steps, int(max_steps)) if total_steps is not None else int(max_steps)

    needs_indices = bool(getattr(method, "needs_indices", False))
    before_step = getattr(method, "before_step", None)
    device = _param_device(method) if isinstance(method, Module) else None
    dtype = _param_dtype(method) if isinstance(method, Module) else None
    # A seed becomes one generator for the whole run, on the data's device (at the first batch).
    gen = generator if (generator is None or isinstance(generator, nrandom.Generator)) else None

    history = History(loss=[], lr=[], epoch=[], time=[])
    show = bool(progress)
    bar = None
    if show and sys.stderr.isatty():
        from tqdm.auto import tqdm  # noqa: PLC0415  (only when a bar is shown)

        bar = tqdm(total=total_steps, desc=f"{type(method).__name__}", unit="step")
    start = time.perf_counter()
    method.train()
    step = 0
    stop = False
    try:
        for epoch in range(epochs):
            for batch in loader:
                x, idx = _unpack(batch)
                if device is not None and backend.device_of(x) != device:
                    x = backend.to_device(x, device)
                if dtype is not None and x.dtype != dtype:
                    x = x.astype(dtype)  # a float64 method (an oracle run) on float32 data
                if gen is None and generator is not None:
                    gen = nrandom.as_generator(generator, backend.device_of(x))
                if needs_indices and idx is None:
                    raise ValueError(f"{type(method).__name__} needs each sample's data-set index: use "
                                     "npjem.methods.IndexedDataLoader (batches (x, y, indices))")
                lr = _current_lr(optimizer)
                loss = method.training_loss(x, indices=idx, generator=gen)
                value = float(loss.item())
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"the loss is {value} at step {step} (epoch {epoch}, 0-based) of "
                        f"{type(method).__name__}; lower the learning rate or check the inputs")
                optimizer.zero_grad()
                loss.backward()
                if before_step is not None:
                    before_step(step0 + step, step0 + (total_steps if total_steps is not None else step + 1))
                optimizer.step()
                if schedule is not None:
                    schedule.step()
                method.after_step(step0 + step, step0 + (total_steps if total_steps is not None else step + 1))
                elapsed = time.perf_counter() - start
                history["loss"].append(value)
                history["lr"].append(lr)
                history["epoch"].append(epoch)
                history["time"].append(elapsed)
                step += 1
                if show and (step % log_every == 0 or step == 1 or step == total_steps):
                    recent = history["loss"][-log_every:]
                    avg = sum(recent) / len(recent)
                    if bar is not None:
                        bar.set_postfix(loss=f"{avg:.4f}", lr=f"{lr:.3g}", epoch=epoch, refresh=False)
                    else:
                        of = f"/{total_steps}" if total_steps is not None else ""
                        print(f"{type(method).__name__} step {step}{of} epoch {epoch}: loss {avg:.4f} "
                              f"lr {lr:.3g} ({elapsed:.0f}s)", file=sys.stderr, flush=True)
                if bar is not None:
                    bar.update(1)
                if callback is not None:
                    record = {"step": step - 1, "epoch": epoch, "loss": value, "lr": lr, "time": elapsed,
                              "history": history, "method": method}
                    if callback(record) is True:
                        stop = True
                if stop or (max_steps is not None and step >= max_steps):
                    stop = True
                    break
            if stop:
                break
    finally:
        if bar is not None:
            bar.close()
    return history
