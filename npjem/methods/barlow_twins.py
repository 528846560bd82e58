"""Barlow Twins (Zbontar, Jing, Misra, LeCun & Deny, 2021): redundancy reduction between two views.

The four components of a joint-embedding method (NYU Deep Learning notes, ch. 8-2 "Regularized Latent Variable Energy Based Models",
sections "Components:" and "Non-Contrastive methods"; the notes describe VICReg there, Barlow
Twins is its cross-correlation sibling):

- augmentation: two views of every image;
- backbone BB and projector g (``BarlowTwinsProjectionHead``: [Linear → BN → ReLU] × 2 → Linear);
- no energy between pairs of samples: the loss looks at the D × D cross-correlation matrix C of
  the two branches' embeddings, each standardised over the batch
  (:func:`npjem.losses.noncontrastive.barlow_twins`)::

      C_ij = (1/N) Σ_b ẑ_x[b, i] ẑ_y[b, j]
      L    = Σ_i (1 − C_ii)²  +  λ Σ_{i≠j} C_ij²

  The diagonal term makes each dimension invariant to the augmentation; the off-diagonal term
  decorrelates the dimensions, which rules out complete collapse (a constant embedding has no
  variance to standardise: L = D at the trivial solution) and dimensional collapse (two
  copies of one direction are correlated).

The two views go through the network separately (as the original code, ``bn(proj(bb(y1)))``
then ``y2``): each BatchNorm sees one view's batch.

λ: the paper's 5e-3 was tuned for D = 8192, where the off-diagonal sum has D² − D terms; the
original code's 0.0051 is the same. On a small projector (D = 256 here) the off-diagonal term
is weaker per dimension; ``npjem pretrain`` keeps the paper's λ unless told otherwise.
"""
from __future__ import annotations

from .._checks import check_positive
from ..losses.noncontrastive import barlow_twins
from ..nn.models import BarlowTwinsProjectionHead
from . import _monitor
from .base import Method, check_two_views
from .simclr import _feature_dim

__all__ = ["BarlowTwins"]


class BarlowTwins(Method):
    """Barlow Twins: backbone → projector → cross-correlation loss between two views.

    Args:
        backbone: BB, images (N, C, H, W) → features (N, feature_dim).
        feature_dim: the backbone's output width (default ``backbone.num_features``).
        hidden_dim, out_dim: the projector's widths (the paper: 8192, 8192).
        lambd: λ, the weight of the off-diagonal (redundancy) term (paper 5e-3, code 0.0051).
        views: the view maker (default ``simclr_views(32)``).
        projector: a Module to use instead of ``BarlowTwinsProjectionHead(feature_dim,
            hidden_dim, out_dim)``.
        generator: seed for the projector's initial weights.

    ``method(x1, x2)`` returns the scalar loss; ``method.diagnostics`` then holds the batch's
    ``embedding_std`` (std of the L2-normalised projections of the first view) and ``loss``.

    **Step for step with the authors' code** (facebookresearch/barlowtwins ``main.py``; checked
    by a float64 PyTorch twin in ``tests/methods/test_barlow_twins_twin.py``). Conventions to
    set to train as the authors do:

    - their LARS applies the lr after the momentum: ``optim.LARS(..., lr_in_momentum=False)``
      (npjem's default puts it inside, as SimCLR's; the two differ under warm-up + cosine);
      weights and 1-D tensors (biases, BatchNorm parameters) in two groups at 0.2 and 0.0048 of
      B/256, the 1-D ones excluded from weight decay and adaptation (LARS's default), weight
      decay 1e-6 (the paper: 1.5e-6), ``WarmupCosine(..., final_lr_scale=0.001)``;
    - their projector has no bias on any Linear; the default head has one on its last Linear
      (lightly's layout), which the batch standardisation cancels, so it gets no loss gradient
      and only weight decay moves it. ``projector=`` takes their layout (a ``ProjectionHead``
      whose blocks give ``bias=False``);
    - λ = 0.0051 in their code, 5e-3 in the paper (the default);
    - their final ``BatchNorm1d(affine=False)`` also keeps running statistics that nothing reads;
      the loss here standardises with the batch statistics alone.
    """

    def __init__(self, backbone, feature_dim=None, hidden_dim=2048, out_dim=2048, lambd=5e-3, views=None,
                 projector=None, generator=None):
        super().__init__(backbone, views)
        feature_dim = _feature_dim(backbone, feature_dim)
        self.lambd = check_positive(lambd, "lambd", allow_zero=True)
        if projector is None:
            projector = BarlowTwinsProjectionHead(feature_dim, hidden_dim, out_dim, generator=generator)
        self.projector = projector
        self.diagnostics = {}

    @property
    def head(self):
        return self.projector

    def forward(self, x1, x2):
        check_two_views(x1, x2, 2, "Barlow Twins standardises over the batch")
        z1 = self.projector(self.backbone(x1))
        z2 = self.projector(self.backbone(x2))
        loss = barlow_twins(z1, z2, lambd=self.lambd)
        self.diagnostics = {"loss": _monitor.as_float(loss), "embedding_std": _monitor.embedding_std(z1)}
        return loss

    def extra_repr(self):
        return f"lambd={self.lambd}"
