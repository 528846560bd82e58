"""The math of each joint-embedding loss, one file per family of the seeds' taxonomy.

``contrastive``: pair margin (DrLIM), InfoNCE / NT-Xent, PIRL's NCE with a memory bank, MoCo.
Each loss is a plain function of Tensors returning a scalar Tensor.
"""
from .contrastive import (
    info_nce,
    moco_loss,
    nce_loss,
    nce_memory_loss,
    nce_normalizer,
    nt_xent,
    pair_margin_loss,
)

__all__ = [
    "info_nce", "moco_loss", "nce_loss", "nce_memory_loss", "nce_normalizer", "nt_xent",
    "pair_margin_loss",
]
from .noncontrastive import VICRegLoss, barlow_twins, vicreg  # noqa: E402

__all__ += ["VICRegLoss", "barlow_twins", "vicreg"]
from .clustering import BalancedClusters, sinkhorn_clusters, sinkhorn_knopp, swav  # noqa: E402

__all__ += ["BalancedClusters", "sinkhorn_clusters", "sinkhorn_knopp", "swav"]
from .distillation import (  # noqa: E402
    byol_loss,
    data2vec_loss,
    data2vec_targets,
    dino,
    dino_center_update,
    negative_cosine,
    simsiam_loss,
)

__all__ += ["byol_loss", "data2vec_loss", "data2vec_targets", "dino", "dino_center_update",
            "negative_cosine", "simsiam_loss"]
