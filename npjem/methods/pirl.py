"""PIRL (Misra & van der Maaten, 2020): invariance to jigsaw shuffling, NCE against a memory bank.

The four components of a joint-embedding method (NYU Deep Learning notes, ch. 8-1 "Contrastive Methods in Energy-Based Models",
section "Self-Supervised Results (MoCo, PIRL, SimCLR)"):

- augmentation: an image view v_I (crop, flip, colour) and a transformed view v_{I^t}: the
  image cut into 3×3 tiles, shuffled (:class:`npjem.data.augment.Jigsaw`), each tile with its own
  colour jitter;
- one shared backbone BB, and two heads on top of it:
  f(v_I) = Linear(BB(v_I)) → 128, and g(v_{I^t}): every tile through BB, a shared per-tile
  Linear → 128, the nine concatenated (9·128) → Linear → 128. g sees the tiles in their
  shuffled order, so it has to be invariant to the shuffle through what BB extracts;
- energy: −s(m, v)/τ with s the cosine similarity, m a row of the memory bank;
- loss: PIRL's NCE against a memory bank M holding one slowly moving embedding m_I per training
  image (:func:`npjem.losses.contrastive.nce_loss`)::

      h(m, v) = exp(s(m, v)/τ) / ( exp(s(m, v)/τ) + Z·K/|D| )
      L_NCE(m_I, v) = −log h(m_I, v) − Σ_{I' ∈ D_N} log[1 − h(m_{I'}, v)]
      L = λ L_NCE(m_I, g(v_{I^t})) + (1 − λ) L_NCE(m_I, f(v_I))          λ = 0.5

  with K negatives m_{I'} drawn uniformly from the bank (the batch's own rows excluded);
- after the optimizer step the batch's rows move towards the image embeddings:
  m_I ← normalize(μ m_I + (1 − μ) f(v_I)/‖f(v_I)‖), μ = 0.5.

The memory bank needs each sample's index in the data set, so PIRL sets ``needs_indices`` and is
trained from an :class:`~npjem.methods.IndexedDataLoader`.

Differences from the paper, for small CPU runs: the K negatives are shared by the batch and by
both terms (one (K, d) draw per step, the batch's own rows excluded; vissl draws K per sample and
per term, which at K = 32000 is B·K·d floats, from all rows); the partition-function estimate Z
(vissl: |D|·mean(exp(s/τ)) over the first batch's scores of its first term, the jigsaw
embedding g, then frozen; :func:`~npjem.losses.contrastive.nce_normalizer`) is used by default
(``normalizer="auto"``), which keeps the NCE terms near 1 at the start instead of K·log 2.
The indices of each step's negatives are kept in ``negative_indices``.

The NCE's h. The PIRL paper (and vissl) use h = x / (x + K/|D|) above (``h="paper"``, the
default); the course notes (ch. 8-1, "Contrastive Methods in Energy-Based Models", section
"Self-Supervised Results (MoCo, PIRL, SimCLR)") write it with a softmax-style denominator,
h(m, v) = exp(s(m, v)/τ) / (exp(s(m, v)/τ) + Σ_{I' ∈ D_N} exp(s(v, m_{I'})/τ)) (``h="notes"``;
:func:`~npjem.losses.contrastive.nce_memory_loss`).

Checked step for step against a PyTorch twin of vissl's ``NCELossWithMemory`` (both loss types,
both h's; ``tests/methods/test_pirl_twin.py``), with vissl's ε set by ``nce_eps``.
"""
from __future__ import annotations


from .._checks import check_choice, check_int, check_positive, check_probability
from .. import backend
from .. import random as nrandom
from ..autograd import Tensor, no_grad
from ..autograd import functional as F
from ..data.augment import (
    ColorJitter,
    Compose,
    Jigsaw,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
)
from ..losses.contrastive import moco_loss, nce_loss, nce_normalizer
from ..nn import Linear, Module
from ..state import MemoryBank
from .base import Method
from .simclr import _feature_dim, _temperature

__all__ = ["PIRL", "JigsawHead", "PIRLViews", "pirl_views"]


class JigsawHead(Module):
    """PIRL's g on the tiles' backbone features: a shared per-tile Linear, concatenation, Linear.

    Input (N, T, F) (T tiles of F features, in the shuffled order); output (N, out_dim)::

        g = W_out · concat_t (W_tile h_t + b_tile) + b_out        (PIRL: F = 2048, 128 per tile, 9 tiles)
    """

    def __init__(self, feature_dim, num_tiles=9, tile_dim=128, out_dim=128, generator=None):
        super().__init__()
        self.num_tiles = int(num_tiles)
        device = getattr(generator, "device", None)  # a Generator draws on its own device
        self.tile = Linear(feature_dim, tile_dim, generator=generator, device=device)
        self.out = Linear(self.num_tiles * tile_dim, out_dim, generator=generator, device=device)

    def forward(self, h):
        if h.ndim != 3 or h.shape[1] != self.num_tiles:
            raise ValueError(f"JigsawHead expects tile features of shape (N, {self.num_tiles}, F), got {tuple(h.shape)}")
        n = h.shape[0]
        t = self.tile(h.reshape(n * self.num_tiles, h.shape[2]))
        return self.out(t.reshape(n, self.num_tiles * t.shape[1]))


class PIRLViews:
    """PIRL's pair of views: ``(image_transform(x), jigsaw tiles of x)``.

    The tiles come from ``jigsaw`` (a :class:`~npjem.data.augment.Jigsaw`, with its per-tile
    transform) applied to ``tile_source(x)`` (a random crop of the image, as vissl crops before
    cutting the tiles), or to x itself when ``tile_source`` is None. Returns
    ``(image_view (N, C, H, W), tiles (N, T, C, h, w))``.
    """

    def __init__(self, image_transform, jigsaw, tile_source=None):
        for name, t in (("image_transform", image_transform), ("tile_source", tile_source)):
            if t is not None and not callable(t):
                raise TypeError(f"{name} must be callable, got {type(t).__name__}")
        if not isinstance(jigsaw, Jigsaw):
            raise TypeError(f"jigsaw must be an npjem.data.augment.Jigsaw, got {type(jigsaw).__name__}")
        self.image_transform = image_transform
        self.jigsaw = jigsaw
        self.tile_source = tile_source

    def __repr__(self):
        return f"PIRLViews({self.image_transform!r}, {self.jigsaw!r}, tile_source={self.tile_source!r})"

    def __call__(self, x, generator=None):
        g = nrandom.as_generator(generator, backend.device_of(x))
        img = self.image_transform(x, generator=g) if self.image_transform is not None else x
        src = self.tile_source(x, generator=g) if self.tile_source is not None else x
        tiles, _ = self.jigsaw(src, generator=g)
        return img, tiles


def pirl_views(size=32, grid=3, tile_size=None, strength=0.5):
    """PIRL's augmentations at ``size`` px: the SimCLR-style image view and a 3×3 jigsaw.

    Image view: RandomResizedCrop(size, scale=(0.08, 1)) → flip → ColorJitter(0.8s, 0.8s, 0.8s,
    0.2s) p=0.8 → grayscale p=0.2. Tiles: RandomResizedCrop(size, scale=(0.6, 1)) → flip, cut
    into grid × grid cells of size//grid px, from each a ``tile_size`` tile at a random offset
    (default: 80% of the cell, as PIRL's 64-px tiles of 85-px cells), then per-tile
    ColorJitter(0.4, 0.4, 0.4, 0.1) p=0.8 and grayscale p=0.2.
    """
    s = float(strength)
    cell = size // grid
    if tile_size is None:
        tile_size = max(1, int(round(0.8 * cell)))
    image = Compose([RandomResizedCrop(size, scale=(0.08, 1.0)), RandomHorizontalFlip(0.5),
                     ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=0.8), RandomGrayscale(0.2)])
    tile_tf = Compose([ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8), RandomGrayscale(0.2)])
    jig = Jigsaw(grid=grid, tile_size=tile_size, transform=tile_tf)
    source = Compose([RandomResizedCrop(size, scale=(0.6, 1.0)), RandomHorizontalFlip(0.5)])
    return PIRLViews(image, jig, tile_source=source)


class PIRL(Method):
    """PIRL with jigsaw tiles and a memory bank.

    Args:
        backbone: BB, shared by the image and the tiles; it must accept the tiles' size
            (a backbone ending in global average pooling does).
        dataset_size: |D|, the number of training images (rows of the memory bank); the
            loader's indices must lie in [0, |D|).
        feature_dim: the backbone's output width (default ``backbone.num_features``).
        out_dim: embedding width of f and g (PIRL: 128); ``tile_dim`` the per-tile width (128).
        num_negatives: K negatives drawn from the bank each step (PIRL: 32000), capped at
            |D| − batch.
        temperature: τ (PIRL: 0.07).
        lam: λ, the weight of the jigsaw term (PIRL: 0.5).
        memory_momentum: μ of the bank update (PIRL: 0.5).
        normalizer: Z in h: ``"auto"`` (vissl: estimated on the first batch, then frozen in the
            attribute ``nce_z``) or a positive number (1 = the paper's formula).
        h: the NCE's h (``loss="nce"`` only): ``"paper"`` (x / (x + Z K/|D|), the paper and vissl)
            or ``"notes"`` (the course notes' softmax-style denominator, no Z).
        nce_eps: ε added to the NCE's denominators (``loss="nce"``, ``h="paper"``): 0, the
            paper's formula (default), or vissl's float32 eps 1.1920929e-07.
        loss: ``"nce"`` (the paper's NCE, above) or ``"infonce"``: each term is instead the
            cross-entropy of picking m_I among the 1 + K rows, −log exp(s(m_I, v)/τ) /
            (exp(s(m_I, v)/τ) + Σ_{I'} exp(s(m_{I'}, v)/τ)) (vissl's ``loss_type:
            cross_entropy`` PIRL configs, with τ = 0.1 there), still weighted λ / (1 − λ).
        views: the view maker, returning (image view, tiles) (default ``pirl_views(32)``).
        grid: tiles per side (3: nine tiles).
        generator: seed for the heads' initial weights, the bank's initial rows and the
            negatives' draws.

    ``method(image, tiles, indices=idx)`` returns the loss; ``after_step`` updates the bank rows
    ``idx`` with the normalised f(v_I) of that step.
    """

    needs_indices = True

    def __init__(self, backbone, dataset_size, feature_dim=None, out_dim=128, tile_dim=128, num_negatives=4096,
                 temperature=0.07, lam=0.5, memory_momentum=0.5, normalizer="auto", loss="nce", views=None,
                 grid=3, generator=None, h="paper", nce_eps=0.0):
        if views is None:
            views = pirl_views(32, grid=grid)
        super().__init__(backbone, views)
        feature_dim = _feature_dim(backbone, feature_dim)
        # the memory bank needs a row besides the positive's
        check_int(dataset_size, "dataset_size", minimum=2)
        check_int(num_negatives, "num_negatives")
        check_probability(lam, "lam")
        check_probability(memory_momentum, "memory_momentum")
        if normalizer != "auto":
            check_positive(normalizer, "normalizer ('auto' or a number)")
        check_choice(loss, "loss", ("nce", "infonce"))
        self.h = check_choice(h, "h", ("paper", "notes"))
        self.nce_eps = check_positive(nce_eps, "nce_eps", allow_zero=True)
        if h == "notes" and (normalizer != "auto" or self.nce_eps):
            raise ValueError("h='notes' has no normalizer and no eps: leave normalizer='auto' and nce_eps=0")
        self.loss = loss
        self.dataset_size = int(dataset_size)
        self.num_negatives = int(num_negatives)
        self.temperature = _temperature(temperature)
        self.lam = float(lam)
        self.memory_momentum = float(memory_momentum)
        self.out_dim = int(out_dim)
        self.normalizer = normalizer
        g = nrandom.as_generator(generator, "cpu")
        self._state_seed = int(g.integers(0, 2**31 - 1))
        # Drawn on the host from the method's seed (the same weights on every device), then
        # moved to the default device, where every module is created.
        self.head_f = Linear(feature_dim, out_dim, generator=g, device="cpu").to(backend.default_device())
        self.head_g = JigsawHead(feature_dim, grid * grid, tile_dim, out_dim, generator=g).to(backend.default_device())
        self.memory = None
        self._negative_generator = None
        self._pending = None
        self._z = None if normalizer == "auto" else float(normalizer)
        self.negative_indices = None

    @property
    def head(self):
        return self.head_f

    @property
    def nce_z(self):
        """Z of the NCE terms (None until the first batch when ``normalizer="auto"``)."""
        return self._z

    def _memory_for(self, f):
        arr = f.data
        device = backend.device_of(arr)
        if self.memory is None:
            g = nrandom.as_generator(self._state_seed, device)
            self.memory = MemoryBank(self.dataset_size, arr.shape[1], momentum=self.memory_momentum, generator=g,
                                     device=device, dtype=arr.dtype)
            self._negative_generator = g
        elif self.memory.device != device or self.memory.dtype != arr.dtype:
            m = self.memory
            m.data = backend.to_device(m.data, device).astype(arr.dtype)
            m.device, m.dtype, m.xp = device, arr.dtype, backend.get_array_module(m.data)
            m.generator = self._negative_generator = nrandom.as_generator(self._state_seed + 1, device)
        return self.memory

    def _indices(self, indices, n):
        idx = indices.data if isinstance(indices, Tensor) else indices
        if not backend.is_array(idx):
            raise TypeError(f"indices must be an integer array, got {type(indices).__name__}")
        if idx.shape != (n,):
            raise ValueError(f"indices must have shape ({n},) (one data-set index per image), got {tuple(idx.shape)}")
        return idx

    def forward(self, image, tiles, indices=None):
        if indices is None:
            raise ValueError("PIRL needs indices= (each image's row in the memory bank)")
        if image.ndim != 4 or tiles.ndim != 5:
            raise ValueError(f"PIRL expects an image view (N, C, H, W) and tiles (N, T, C, h, w), "
                             f"got {tuple(image.shape)} and {tuple(tiles.shape)}")
        n, t = tiles.shape[0], tiles.shape[1]
        if image.shape[0] != n or t != self.head_g.num_tiles:
            raise ValueError(f"tiles must have shape ({image.shape[0]}, {self.head_g.num_tiles}, C, h, w), "
                             f"got {tuple(tiles.shape)}")
        idx = self._indices(indices, n)
        # The tiles first, as vissl feeds its trunk (INPUT_KEY_NAMES [patches, images]): the order
        # in which the backbone's BatchNorm running statistics take the two batches.
        h_tiles = self.backbone(tiles.reshape((n * t,) + tuple(tiles.shape[2:])))
        g = self.head_g(h_tiles.reshape(n, t, h_tiles.shape[1]))
        f = self.head_f(self.backbone(image))

        bank = self._memory_for(f)
        k = min(self.num_negatives, self.dataset_size - n)
        if k < 1:
            raise ValueError(f"the batch ({n}) leaves no negatives in a memory bank of {self.dataset_size} rows")
        memory_pos = bank[idx]
        self.negative_indices = bank.sample_indices(k, exclude=idx, generator=self._negative_generator)
        memory_neg = bank[self.negative_indices]
        if self.loss == "infonce":
            loss = (moco_loss(g, memory_pos, memory_neg, self.temperature) * self.lam
                    + moco_loss(f, memory_pos, memory_neg, self.temperature) * (1.0 - self.lam))
        elif self.h == "notes":
            loss = nce_loss(f, g, memory_pos, memory_neg, dataset_size=self.dataset_size,
                            temperature=self.temperature, lam=self.lam, h="notes")
        else:
            if self._z is None:
                # vissl estimates Z in its first term's call, the jigsaw embedding's scores.
                self._z = nce_normalizer(g, memory_pos, memory_neg, dataset_size=self.dataset_size,
                                         temperature=self.temperature)
            loss = nce_loss(f, g, memory_pos, memory_neg, dataset_size=self.dataset_size,
                            temperature=self.temperature, lam=self.lam, normalizer=self._z, eps=self.nce_eps)
        with no_grad():
            self._pending = (idx, F.normalize(f.detach(), axis=1).data)
        return loss

    def after_step(self, step, total_steps):
        """m_I ← normalize(μ m_I + (1 − μ) f(v_I)/‖f(v_I)‖) for the rows of the step just taken."""
        if self._pending is not None:
            idx, feats = self._pending
            self.memory.update(idx, feats)
            self._pending = None

    def extra_repr(self):
        return (f"dataset_size={self.dataset_size}, num_negatives={self.num_negatives}, loss={self.loss!r}, h={self.h!r}, "
                f"temperature={self.temperature}, lam={self.lam}, memory_momentum={self.memory_momentum}")
