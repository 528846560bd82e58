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

# LeCun et al. 2006's loss functionals on energies (functionals.py).
from .functionals import (  # noqa: E402
    energy_loss, hinge, log_loss, lvq2, mce, mee, most_offending, nll_mmi, perceptron,
    square_exponential, square_square,
)

__all__ += [
    "most_offending", "energy_loss", "perceptron", "hinge", "log_loss", "lvq2", "mce",
    "square_square", "square_exponential", "nll_mmi", "mee",
]
