"""SimCLR (Chen, Kornblith, Norouzi & Hinton, 2020): two views, a projector, NT-Xent.

The four components of a joint-embedding method (NYU Deep Learning notes, ch. 15-1 "Joint Embedding Methods — Contrastive",
sections "Components:" and "The InfoNCE loss function:"):

- augmentation: two random views x̃ = t(x), ỹ = t'(x) of every image (crop, flip, colour
  jitter, grayscale; :func:`npjem.data.augment.simclr_views`);
- backbone BB and projection head g: h = BB(x̃) (the representation kept for downstream
  tasks), z = g(h) (what the loss sees; SimCLR found the loss works better on z than on h);
- energy D(z_x, z_y) = −β sim(z_x, z_y), β = 1/τ, sim the cosine similarity;
- loss: InfoNCE / NT-Xent over the batch, each view's positive against the 2N − 2 other
  embeddings of the batch (:func:`npjem.losses.contrastive.info_nce`)::

      ℓ_x(i) = −β s(x_i, y_i) + log[ Σ_j exp β s(x_i, y_j) + Σ_{j≠i} exp β s(x_i, x_j) ]
      L      = mean_i ℓ_x(i) + mean_i ℓ_y(i)                  (the original code's sum of both)

The two views go through the network as one batch of 2N images, as in SimCLR's code (the views
are concatenated along the batch), so BatchNorm normalises over both views together.

Checked step for step (loss, parameters, BatchNorm buffers) against a PyTorch twin of
google-research/simclr's ``add_contrastive_loss`` under Adam and under SimCLR's LARS with warm-up
and cosine decay (``tests/methods/test_simclr_twin.py``); no convention had to be set
(``directions="sum"``, the default, is SimCLR's).
"""
from __future__ import annotations


from .._checks import check_int, check_positive
from ..autograd import ops
from ..losses.contrastive import info_nce
from ..nn.models import SimCLRProjectionHead
from .base import Method, check_two_views

__all__ = ["SimCLR"]


def _feature_dim(backbone, feature_dim):
    if feature_dim is None:
        feature_dim = getattr(backbone, "num_features", None)
        if feature_dim is None:
            raise ValueError("feature_dim must be given: the backbone has no num_features attribute")
    return check_int(feature_dim, "feature_dim")


def _temperature(value):
    return check_positive(value, "temperature")


class SimCLR(Method):
    """SimCLR: backbone → projection MLP → NT-Xent between two views.

    Args:
        backbone: BB, images (N, C, H, W) → features (N, feature_dim).
        feature_dim: the backbone's output width (default ``backbone.num_features``).
        hidden_dim, out_dim: the projector's widths (SimCLR: hidden = feature_dim, out 128).
        num_layers: Linear layers in the projector (SimCLR v1: 2; v2: 3).
        temperature: τ of NT-Xent. The paper's default is 0.1 (0.5 in its CIFAR-10 table and
            in lightly); small CPU runs on ``shapes`` work well with 0.2.
        directions: ``"sum"`` (the original code: ℓ_x + ℓ_y) or ``"mean"`` (lightly,
            solo-learn: half of it; only the loss scale, hence the effective lr, differs).
        views: the view maker (default ``simclr_views(32)``).
        projector: a Module to use instead of the default ``SimCLRProjectionHead(feature_dim,
            hidden_dim, out_dim, num_layers)``.
        generator: seed for the projector's initial weights.

    ``method(x1, x2)`` returns the scalar loss for two views (N, C, H, W) each.
    """

    def __init__(self, backbone, feature_dim=None, hidden_dim=512, out_dim=128, num_layers=2, temperature=0.2,
                 directions="sum", views=None, projector=None, generator=None):
        super().__init__(backbone, views)
        feature_dim = _feature_dim(backbone, feature_dim)
        self.temperature = _temperature(temperature)
        if directions not in ("sum", "mean"):
            raise ValueError(f"directions must be 'sum' or 'mean', got {directions!r}")
        self.directions = directions
        if projector is None:
            projector = SimCLRProjectionHead(feature_dim, hidden_dim, out_dim, num_layers=num_layers,
                                             generator=generator)
        self.projector = projector

    @property
    def head(self):
        return self.projector

    def forward(self, x1, x2):
        check_two_views(x1, x2)
        n = x1.shape[0]
        # Both views in one pass: BatchNorm sees the 2N images together, as in SimCLR's code.
        z = self.projector(self.backbone(ops.concatenate([x1, x2], axis=0)))
        return info_nce(z[:n], z[n:], self.temperature, directions=self.directions)

    def extra_repr(self):
        return f"temperature={self.temperature}, directions={self.directions!r}"
