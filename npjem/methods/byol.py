"""BYOL (Grill et al., 2020): an online network predicts a slowly moving target network.

The four components of a joint-embedding method (NYU Deep Learning notes, ch. 8-2 "Regularized Latent Variable Energy Based Models",
sections "Components:" and "Other methods", "BYOL:"):

- augmentation: two views x, x' (BYOL's recipe is asymmetric, :func:`npjem.data.byol_views`);
- online network: backbone f_θ, projector g_θ, predictor q_θ: p = q_θ(g_θ(f_θ(x)));
- target network: f_ξ, g_ξ, an exponential moving average of the online weights, never trained
  by gradient: z' = g_ξ(f_ξ(x')) under ``no_grad``;
- energy D(p, z') = ‖p/‖p‖ − z'/‖z'‖‖² = 2 − 2 cos(p, z') (:func:`npjem.losses.distillation.byol_loss`),
  summed over the two directions as the original code::

      L = mean_b [ D(p_1, sg z'_2) + D(p_2, sg z'_1) ]

- after every optimizer step the target follows the online weights with the cosine schedule::

      ξ ← τ_k ξ + (1 − τ_k) θ,    τ_k = 1 − (1 − τ_base)(cos(πk/K) + 1)/2    (τ_base → 1)

Nothing in the loss pushes two different images apart; what keeps BYOL from the constant
solution is the predictor and the stop-gradient into a target that moves slowly (a network
started at a constant output gets zero gradient and stays there, ch. 8-2, "Other methods"). ``after_step``
is where the schedule is applied; ``diagnostics`` records the std of the normalised
projections and the momentum used.
"""
from __future__ import annotations

from .. import backend, optim
from .. import random as nrandom
from .._checks import check_probability
from ..autograd import no_grad
from ..losses.distillation import byol_loss
from ..nn.models import BYOLPredictionHead, BYOLProjectionHead
from . import _monitor
from .base import Method, check_two_views
from .simclr import _feature_dim

__all__ = ["BYOL"]


class BYOL(Method):
    """BYOL: online backbone → projector → predictor against an EMA target backbone → projector.

    Args:
        backbone: f_θ; the target f_ξ is a deep copy.
        feature_dim: the backbone's output width (default ``backbone.num_features``).
        hidden_dim, out_dim: the projector's and predictor's widths (BYOL: 4096, 256).
        predictor_hidden_dim: the predictor's hidden width (default ``hidden_dim``).
        momentum: τ_base of the target's EMA (BYOL: 0.996 for 1000 epochs, 0.99 for 300,
            0.97 for 40). Short runs need a faster target.
        final_momentum: τ at the end of the cosine schedule (BYOL: 1).
        views: the view maker (default ``simclr_views(32)``; BYOL's own is ``byol_views``).
        projector, predictor: Modules to use instead of the default heads.
        generator: seed for the heads' initial weights.

    Attributes:
        backbone, projector, predictor: the online network (trained).
        backbone_target, projector_target: the target network (``requires_grad=False``).
        momentum_now: τ of the last EMA update.

    **Step for step with the authors' code** (deepmind-research ``byol/byol_experiment.py``;
    checked by a float64 PyTorch twin in ``tests/methods/test_byol_twin.py``). As there, the
    target is updated in :meth:`after_step`, after the optimizer step, from the new online
    weights, with τ of the step just taken (k = 0, 1, …, per step, not per epoch); the target's
    BatchNorm keeps its own statistics; the loss is the sum of the two directions. Conventions to
    set to train as they do:

    - their LARS applies the lr after the momentum: ``optim.LARS(..., lr_in_momentum=False)``
      (npjem's default puts it inside, as SimCLR's; the two differ under warm-up + cosine), 1-D
      tensors excluded from weight decay and adaptation (LARS's default), ``WarmupCosine`` with
      a final lr of 0;
    - their MLPs have a bias on the first Linear and none on the last; the default heads have the
      opposite (lightly's layout). The projector's last bias then gets no loss gradient (the
      predictor's BatchNorm cancels a shift of z), so only weight decay moves it, and the
      target's copy adds that constant to every target z'. ``projector=`` and ``predictor=``
      take their layout (``ProjectionHead`` blocks with ``bias=True`` first, ``False`` last).
    """

    def __init__(self, backbone, feature_dim=None, hidden_dim=4096, out_dim=256, predictor_hidden_dim=None,
                 momentum=0.996, final_momentum=1.0, views=None, projector=None, predictor=None, generator=None):
        super().__init__(backbone, views)
        feature_dim = _feature_dim(backbone, feature_dim)
        # Drawn on the host from the method's seed: the same initial weights on every device.
        g = nrandom.as_generator(generator, "cpu")
        self.momentum = check_probability(momentum, "momentum")
        self.final_momentum = check_probability(final_momentum, "final_momentum")
        if projector is None:
            projector = BYOLProjectionHead(feature_dim, hidden_dim, out_dim, generator=g,
                                   device="cpu").to(backend.default_device())
        if predictor is None:
            out = getattr(projector, "out_features", out_dim)
            predictor = BYOLPredictionHead(out, hidden_dim if predictor_hidden_dim is None else predictor_hidden_dim,
                                           out, generator=g, device="cpu").to(backend.default_device())
        self.projector = projector
        self.predictor = predictor
        # BYOL's JAX code averages the parameters only; the target's BatchNorm keeps the
        # statistics of its own forward passes.
        self._ema_backbone = optim.EMA.from_module(self.backbone, momentum=self.momentum, buffers="keep")
        self._ema_projector = optim.EMA.from_module(self.projector, momentum=self.momentum, buffers="keep")
        self.backbone_target = self._ema_backbone.target
        self.projector_target = self._ema_projector.target
        self.momentum_now = self.momentum
        self.diagnostics = {}

    @property
    def head(self):
        return self.projector

    def _target(self, x):
        with no_grad():
            return self.projector_target(self.backbone_target(x)).detach()

    def forward(self, x1, x2):
        check_two_views(x1, x2)
        z1 = self.projector(self.backbone(x1))
        z2 = self.projector(self.backbone(x2))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        t1, t2 = self._target(x1), self._target(x2)
        loss = byol_loss((p1, p2), (t1, t2))  # mean_b[ℓ(p₁, z'₂) + ℓ(p₂, z'₁)], the original's sum
        self.diagnostics = {"loss": _monitor.as_float(loss), "embedding_std": _monitor.embedding_std(z1),
                            "momentum": self.momentum_now}
        return loss

    def after_step(self, step, total_steps):
        """Target ξ ← τ ξ + (1 − τ) θ with τ = ``cosine_momentum(step, total_steps, momentum, final_momentum)``."""
        tau = optim.cosine_momentum(step, total_steps, base=self.momentum, final=self.final_momentum)
        self._ema_backbone.update(tau)
        self._ema_projector.update(tau)
        self.momentum_now = tau

    def extra_repr(self):
        return f"momentum={self.momentum}, final_momentum={self.final_momentum}"
