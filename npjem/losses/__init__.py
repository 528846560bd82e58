"""Every loss of npjem, one file per family of the joint-embedding taxonomy of
the NYU Deep Learning notes (ch. 15-1 "Joint Embedding Methods — Contrastive"; ch. 8-2, "Non-Contrastive
methods", "Clustering methods", "Other methods").

- ``contrastive``: pair margin (DrLIM), InfoNCE / NT-Xent, PIRL's NCE with a memory bank, MoCo;
- ``noncontrastive``: Barlow Twins and VICReg (collapse avoided by information);
- ``clustering``: Sinkhorn–Knopp, SwAV's swapped prediction, balanced clustering;
- ``distillation``: SimSiam, BYOL, DINO, Data2Vec (collapse avoided by architecture);
- ``functionals``: LeCun et al. (2006)'s loss functionals on energies.

Each loss is a plain function of Tensors returning a scalar Tensor.
"""
from .clustering import BalancedClusters, sinkhorn_clusters, sinkhorn_knopp, swav
from .contrastive import (
    info_nce,
    moco_loss,
    nce_loss,
    nce_memory_loss,
    nce_normalizer,
    nt_xent,
    pair_margin_loss,
)
from .distillation import (
    byol_loss,
    data2vec_loss,
    data2vec_targets,
    dino,
    dino_center_update,
    negative_cosine,
    simsiam_loss,
)
from .functionals import (
    energy_loss,
    hinge,
    log_loss,
    lvq2,
    mce,
    mee,
    most_offending,
    nll_mmi,
    perceptron,
    square_exponential,
    square_square,
)
from .noncontrastive import VICRegLoss, barlow_twins, vicreg

__all__ = [
    # contrastive
    "info_nce", "moco_loss", "nce_loss", "nce_memory_loss", "nce_normalizer", "nt_xent",
    "pair_margin_loss",
    # non-contrastive
    "VICRegLoss", "barlow_twins", "vicreg",
    # clustering
    "BalancedClusters", "sinkhorn_clusters", "sinkhorn_knopp", "swav",
    # distillation
    "byol_loss", "data2vec_loss", "data2vec_targets", "dino", "dino_center_update",
    "negative_cosine", "simsiam_loss",
    # loss functionals on energies
    "most_offending", "energy_loss", "perceptron", "hinge", "log_loss", "lvq2", "mce",
    "square_square", "square_exponential", "nll_mmi", "mee",
]
