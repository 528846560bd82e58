"""Jigsaw puzzles as a pretext task (Noroozi & Favaro, 2016): the pretext-task baseline.

The NYU Deep Learning notes (ch. 15-1, "Joint Embedding Methods — Contrastive", section "Pretext
Tasks") set this route against joint embeddings: invent a task whose labels come free with the
data, train on it, keep the backbone. Their "Issues:" is that the features end up tailored to the
pretext task, not to the downstream one.

The task: cut the image into a 3×3 grid of tiles (each cropped at a random offset inside its
cell, so that edges cannot be matched), shuffle the tiles by one of P fixed permutations, and
predict which one. The P permutations are chosen once, seeded, by the paper's greedy procedure
for maximal Hamming distance (:class:`npjem.data.augment.Jigsaw`, ``permutations``)::

    tiles t_1..t_9 of x, shuffled by permutation j ~ U{0, …, P−1}
    f_k = ReLU(W_tile BB(t_k) + b)            the shared backbone and a shared per-tile layer ("fc6")
    logits = W_2 ReLU(W_1 concat_k f_k + b_1) + b_2        ("fc7", "fc8": one logit per permutation)
    L = cross-entropy(logits, j)

The probe reads BB on whole images, like every other method's.
"""
from __future__ import annotations

from .._checks import check_int
from ..autograd import Tensor
from ..autograd import functional as AF
from ..data.augment import Jigsaw
from ..nn.activation import ReLU
from ..nn.linear import Linear
from ..nn.module import Module
from .base import Method, _raw
from .simclr import _feature_dim

__all__ = ["JigsawPretext", "JigsawClassifier"]


class JigsawClassifier(Module):
    """(N, T, F) tile features → (N, P) permutation logits (the context-free network's top)."""

    def __init__(self, feature_dim, num_tiles=9, tile_dim=64, hidden_dim=256, n_permutations=100, device=None,
                 dtype=None, generator=None):
        super().__init__()
        self.num_tiles = check_int(num_tiles, "num_tiles")
        kw = dict(device=device, dtype=dtype, generator=generator)
        self.tile = Linear(check_int(feature_dim, "feature_dim"), check_int(tile_dim, "tile_dim"), **kw)
        self.hidden = Linear(self.num_tiles * tile_dim, check_int(hidden_dim, "hidden_dim"), **kw)
        self.out = Linear(hidden_dim, check_int(n_permutations, "n_permutations"), **kw)
        self.relu = ReLU()

    def forward(self, h):
        if h.ndim != 3 or h.shape[1] != self.num_tiles:
            raise ValueError(f"JigsawClassifier expects tile features of shape (N, {self.num_tiles}, F), "
                             f"got {tuple(h.shape)}")
        n = h.shape[0]
        f = self.relu(self.tile(h.reshape(n * self.num_tiles, h.shape[2])))
        return self.out(self.relu(self.hidden(f.reshape(n, self.num_tiles * f.shape[1]))))


class JigsawPretext(Method):
    """Predict the permutation of shuffled tiles (see the module).

    Args:
        backbone: BB, applied to every tile (and, for the probe, to whole images).
        grid: tiles per side (3).
        n_permutations: P, the size of the permutation set (the paper: 100 for its main results;
            at most (grid²)!).
        tile_size: (h, w) of each tile, cropped at a random offset inside its cell (None: the
            whole cell, no offset). The paper crops 64 px out of 85 px cells.
        permutation_seed: seeds the choice of the permutation set (deterministic).
        tile_dim, hidden_dim: widths of the per-tile layer and of the hidden layer.
        views: a :class:`~npjem.data.augment.Jigsaw` of your own (it sets grid, P and tile size).
    """

    def __init__(self, backbone, grid=3, n_permutations=100, tile_size=None, permutation_seed=0, tile_dim=64,
                 hidden_dim=256, feature_dim=None, views=None, generator=None):
        if views is None:
            views = Jigsaw(grid=grid, tile_size=tile_size, n_permutations=n_permutations,
                           permutation_seed=permutation_seed)
        if not isinstance(views, Jigsaw):
            raise TypeError(f"views must be an npjem.data.augment.Jigsaw, got {type(views).__name__}")
        super().__init__(backbone, views)
        p = next(iter(backbone.parameters()), None)
        self.classifier = JigsawClassifier(_feature_dim(backbone, feature_dim), views.grid ** 2, tile_dim,
                                           hidden_dim, views.n_permutations,
                                           device=None if p is None else p.device,
                                           dtype=None if p is None else p.dtype, generator=generator)
        self.diagnostics = {}

    @property
    def permutations(self):
        """The (P, grid²) permutation set: slot k of permutation j holds tile ``permutations[j, k]``."""
        return self.views.permutations

    def make_views(self, x, generator=None):
        """``(patches, j)``: the shuffled tiles (N, grid², C, h, w) and the permutation index (N,)."""
        patches, j = self.views(_raw(x), generator=generator)
        return Tensor(patches), Tensor(j)

    def logits(self, patches):
        """(N, P) permutation logits of shuffled tiles (N, T, C, h, w)."""
        patches = patches if isinstance(patches, Tensor) else Tensor(patches)
        if patches.ndim != 5:
            raise ValueError(f"patches must be (N, T, C, h, w), got shape {tuple(patches.shape)}")
        n, t = patches.shape[:2]
        h = self.backbone(patches.reshape((n * t,) + tuple(patches.shape[2:])))
        return self.classifier(h.reshape(n, t, h.shape[1]))

    def forward(self, patches, j):
        logits = self.logits(patches)
        target = j.data if isinstance(j, Tensor) else j
        loss = AF.cross_entropy(logits, target)
        acc = float((logits.data.argmax(axis=1) == target).mean())
        self.diagnostics = {"loss": float(loss.item()), "accuracy": acc}
        return loss

    def extra_repr(self):
        return f"grid={self.views.grid}, n_permutations={self.views.n_permutations}"
