"""Joint-embedding methods: each one the four components (augmentation, backbone BB,
energy D, loss functionals) put together as a ``Module`` whose call on a batch of views returns
the loss, and :func:`fit`, the one loop that trains any of them.

Contrastive methods (NYU Deep Learning notes, ch. 8-1 and ch. 15-1): :class:`SimCLR` (NT-Xent over the
batch), :class:`MoCo` (v2: momentum key encoder and a queue of negatives), :class:`PIRL`
(jigsaw invariance, NCE against a memory bank).
"""
from .base import History, IndexedDataLoader, Method, fit  # noqa: F401
from .moco import MoCo  # noqa: F401
from .pirl import PIRL, JigsawHead, PIRLViews, pirl_views  # noqa: F401
from .simclr import SimCLR  # noqa: F401

__all__ = ["Method", "fit", "History", "IndexedDataLoader", "SimCLR", "MoCo", "PIRL", "JigsawHead",
           "PIRLViews", "pirl_views"]

# Non-contrastive, clustering and distillation methods (NYU Deep Learning notes, ch. 8-2,
# "Non-Contrastive methods", "Clustering methods", "Other methods"):
# Barlow Twins and VICReg (information), SwAV (equipartitioned clustering), BYOL, SimSiam, DINO
# and data2vec (architecture and training dynamics).
from .barlow_twins import BarlowTwins  # noqa: E402,F401
from .byol import BYOL  # noqa: E402,F401
from .data2vec import Data2Vec, ViTMeanPool  # noqa: E402,F401
from .dino import DINO  # noqa: E402,F401
from .simsiam import SimSiam  # noqa: E402,F401
from .swav import MultiCropViews, SwAV  # noqa: E402,F401
from .vicreg import VICReg  # noqa: E402,F401

__all__ += ["BarlowTwins", "VICReg", "SwAV", "MultiCropViews", "BYOL", "SimSiam", "DINO", "Data2Vec", "ViTMeanPool"]

# The notes' two older routes, as baselines (ch. 15-1, "Generative Models" and "Pretext Tasks"):
# a convolutional denoising autoencoder and the jigsaw pretext task.
from .dae import DAE, DAEViews, ImageDecoder  # noqa: E402,F401
from .jigsaw import JigsawClassifier, JigsawPretext  # noqa: E402,F401

__all__ += ["DAE", "DAEViews", "ImageDecoder", "JigsawPretext", "JigsawClassifier"]
