"""SimSiam (Chen & He, 2021): a Siamese network with a predictor and a stop-gradient, nothing else.

The four components of a joint-embedding method (NYU Deep Learning notes, ch. 8-2 "Regularized Latent Variable Energy Based Models",
sections "Components:" and "Other methods"; the notes name BYOL there, SimSiam is its version
without a moving-average target):

- augmentation: two views x₁, x₂ of every image;
- one network for both views: backbone f, projector g (``SimSiamProjectionHead``, ending in a
  BatchNorm without affine) and predictor h (a bottleneck MLP): z = g(f(x)), p = h(z);
- energy D(p, z) = −cos(p, sg z) (:func:`npjem.losses.distillation.simsiam_loss`)::

      L = ½ D(p₁, sg z₂) + ½ D(p₂, sg z₁)

No negatives, no momentum encoder: SimSiam shows that the stop-gradient is what prevents
collapse (without it the loss drops to −1 at once and the std of the normalised z goes to 0,
Chen & He Fig. 2). The loss is −1 at complete collapse too, so the loss alone cannot tell
success from collapse: ``method.diagnostics["embedding_std"]`` (≈ 1/√d healthy, 0 collapsed) is
the monitor.
"""
from __future__ import annotations

from .. import backend
from .. import random as nrandom
from ..losses.distillation import simsiam_loss
from ..nn.models import SimSiamPredictionHead, SimSiamProjectionHead
from . import _monitor
from .base import Method, check_two_views
from .simclr import _feature_dim

__all__ = ["SimSiam"]


class SimSiam(Method):
    """SimSiam: backbone → projector → predictor, symmetric negative cosine with stop-gradient.

    Args:
        backbone: f, images (N, C, H, W) → features (N, feature_dim).
        feature_dim: the backbone's output width (default ``backbone.num_features``).
        hidden_dim, out_dim: the projector's widths (SimSiam: 2048, 2048).
        predictor_hidden_dim: the predictor's bottleneck (SimSiam: 512, a quarter of out_dim).
        views: the view maker (default ``simclr_views(32)``).
        projector, predictor: Modules to use instead of the default heads.
        generator: seed for the heads' initial weights.

    **Step for step with the authors' code** (facebookresearch/simsiam ``builder.py`` and
    ``main_simsiam.py``; checked by a float64 PyTorch twin in ``tests/methods/test_simsiam_twin.py``).
    Their projector keeps a frozen bias on its last Linear, which the affine-free BatchNorm
    removes; the default head leaves it out: the same function and the same trained parameters.
    Their optimizer is ``optim.SGD(momentum=0.9, weight_decay=1e-4)`` at 0.05·B/256 with a cosine
    lr and no warm-up; ``--fix-pred-lr`` (the predictor's lr held constant) is two parameter
    groups (encoder, predictor) under ``WarmupCosine(opt, total, 0, final_lr=[0.0, lr])``. They
    set the lr once per epoch, ``WarmupCosine`` once per step.
    """

    def __init__(self, backbone, feature_dim=None, hidden_dim=2048, out_dim=2048, predictor_hidden_dim=512,
                 views=None, projector=None, predictor=None, generator=None):
        super().__init__(backbone, views)
        feature_dim = _feature_dim(backbone, feature_dim)
        # Drawn on the host from the method's seed: the same initial weights on every device.
        g = nrandom.as_generator(generator, "cpu")
        if projector is None:
            projector = SimSiamProjectionHead(feature_dim, hidden_dim, out_dim, generator=g,
                                   device="cpu").to(backend.default_device())
        if predictor is None:
            out = getattr(projector, "out_features", out_dim)
            predictor = SimSiamPredictionHead(out, predictor_hidden_dim, out,
                                              generator=g, device="cpu").to(backend.default_device())
        self.projector = projector
        self.predictor = predictor
        self.diagnostics = {}

    @property
    def head(self):
        return self.projector

    def forward(self, x1, x2):
        check_two_views(x1, x2)
        z1 = self.projector(self.backbone(x1))
        z2 = self.projector(self.backbone(x2))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = simsiam_loss(p1, p2, z1, z2)
        self.diagnostics = {"loss": _monitor.as_float(loss), "embedding_std": _monitor.embedding_std(z1)}
        return loss
