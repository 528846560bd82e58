"""VICReg (Bardes, Ponce & LeCun, 2022): variance, invariance and covariance regularisation.

The four components of a joint-embedding method (NYU Deep Learning notes, ch. 8-2 "Regularized Latent Variable Energy Based Models",
sections "Components:" and "Non-Contrastive methods", "VicReg:"):

- augmentation: two views of every image;
- backbone BB and expander g (``VICRegProjectionHead``: (layers − 1)× [Linear → BN → ReLU] → Linear);
- loss (:func:`npjem.losses.noncontrastive.vicreg`) on the two branches' embeddings Z, Z'::

      s(Z, Z') = mean_{b,j} (z_bj − z'_bj)²                         invariance
      v(Z)     = (1/D) Σ_j relu(γ − sqrt(Var(z_·j) + ε))            variance (hinge on each std)
      c(Z)     = (1/D) Σ_{i≠j} Cov(Z)_ij²                           covariance
      L        = λ s + μ [v(Z) + v(Z')]/2 + ν [c(Z) + c(Z')]         (λ = μ = 25, ν = 1)

  The variance hinge is what keeps every dimension alive without negatives: at complete
  collapse every std is 0, the hinge is at its maximum γ and its gradient pushes the
  embeddings apart; the covariance term spreads the information over the dimensions.

No normalisation layer sits between the expander and the loss: the variance term itself sets
the scale. The two views go through the network separately, as in the original code.
``method.diagnostics`` holds the three terms of the last batch, so a user can watch them:
a variance term stuck near γ means collapse, an invariance term near 0 with a high variance
term means the embeddings agree by being constant.
"""
from __future__ import annotations

from .._checks import check_int, check_positive
from ..losses.noncontrastive import vicreg
from ..nn.models import VICRegProjectionHead
from . import _monitor
from .base import Method, check_two_views
from .simclr import _feature_dim

__all__ = ["VICReg"]


class VICReg(Method):
    """VICReg: backbone → expander → invariance + variance + covariance between two views.

    Args:
        backbone: BB, images (N, C, H, W) → features (N, feature_dim).
        feature_dim: the backbone's output width (default ``backbone.num_features``).
        hidden_dim, out_dim, num_layers: the expander (the paper: 8192-8192-8192, 3 layers).
        sim_coeff, std_coeff, cov_coeff: λ, μ, ν (25, 25, 1).
        gamma, eps: the variance hinge's target std γ (1) and the ε under its square root (1e-4).
        views: the view maker (default ``simclr_views(32)``).
        projector: a Module to use instead of the default expander.
        generator: seed for the expander's initial weights.

    ``method(x1, x2)`` returns the scalar loss; ``method.diagnostics`` holds ``loss``,
    ``invariance``, ``variance``, ``covariance`` and ``embedding_std`` of the last batch.

    **Step for step with the authors' code** (facebookresearch/vicreg ``main_vicreg.py``; checked
    by a float64 PyTorch twin in ``tests/methods/test_vicreg_twin.py``). The loss is theirs with
    the defaults: the variance term halved, μ[v(Z) + v(Z')]/2 (the paper writes the sum), the
    unbiased variance, covariance / (N − 1) and / D. Conventions to set to train as they do:

    - their LARS applies the lr after the momentum: ``optim.LARS(..., lr_in_momentum=False)``,
      one group at 0.2·B/256, 1-D tensors excluded from weight decay and adaptation (LARS's
      default), weight decay 1e-6, ``WarmupCosine(..., final_lr_scale=0.001)``;
    - their ``Projector`` has a bias on every Linear but the last; the default expander has the
      opposite (lightly's layout: none before a BatchNorm, one on the last Linear, which the
      loss cancels: the invariance term is a difference and the other two are centred).
      ``projector=`` takes their layout.
    """

    def __init__(self, backbone, feature_dim=None, hidden_dim=2048, out_dim=2048, num_layers=3, sim_coeff=25.0,
                 std_coeff=25.0, cov_coeff=1.0, gamma=1.0, eps=1e-4, views=None, projector=None, generator=None):
        super().__init__(backbone, views)
        feature_dim = _feature_dim(backbone, feature_dim)
        self.sim_coeff = check_positive(sim_coeff, "sim_coeff", allow_zero=True)
        self.std_coeff = check_positive(std_coeff, "std_coeff", allow_zero=True)
        self.cov_coeff = check_positive(cov_coeff, "cov_coeff", allow_zero=True)
        self.gamma = check_positive(gamma, "gamma")
        self.eps = check_positive(eps, "eps")
        if projector is None:
            projector = VICRegProjectionHead(feature_dim, hidden_dim, out_dim, num_layers=check_int(num_layers,
                                             "num_layers", minimum=2), generator=generator)
        self.projector = projector
        self.diagnostics = {}

    @property
    def head(self):
        return self.projector

    def forward(self, x1, x2):
        check_two_views(x1, x2, 2, "VICReg's variance and covariance are over the batch")
        z1 = self.projector(self.backbone(x1))
        z2 = self.projector(self.backbone(x2))
        out = vicreg(z1, z2, sim_coeff=self.sim_coeff, std_coeff=self.std_coeff, cov_coeff=self.cov_coeff,
                     gamma=self.gamma, eps=self.eps)
        self.diagnostics = {"loss": _monitor.as_float(out.loss), "invariance": _monitor.as_float(out.invariance),
                            "variance": _monitor.as_float(out.variance),
                            "covariance": _monitor.as_float(out.covariance),
                            "embedding_std": _monitor.embedding_std(z1)}
        return out.loss

    def extra_repr(self):
        return (f"sim_coeff={self.sim_coeff}, std_coeff={self.std_coeff}, cov_coeff={self.cov_coeff}, "
                f"gamma={self.gamma}, eps={self.eps}")
