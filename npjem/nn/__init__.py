"""Modules and layers, as ``torch.nn``: names, arguments, parameter shapes and state_dict keys
follow PyTorch, so a PyTorch ``state_dict`` converted to NumPy arrays loads into the twin
npjem model.

``npjem.nn.functional`` holds the differentiable convolution, pooling and batch-norm
functions (and re-exports the autograd composites); ``npjem.nn.init`` the initialisers.
"""
from . import functional, init  # noqa: F401
from .activation import GELU, LeakyReLU, ReLU, Sigmoid, SiLU, Softplus, Tanh  # noqa: F401
from .container import ModuleDict, ModuleList, Sequential  # noqa: F401
from .conv import Conv2d, ConvTranspose2d  # noqa: F401
from .linear import Dropout, Flatten, Identity, Linear  # noqa: F401
from .module import Module, Parameter, StateDictError  # noqa: F401
from .norm import BatchNorm1d, BatchNorm2d, LayerNorm  # noqa: F401
from .pool import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d  # noqa: F401

__all__ = [
    "Module", "Parameter", "StateDictError", "Sequential", "ModuleList", "ModuleDict", "Identity",
    "Linear", "Conv2d", "ConvTranspose2d", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "ReLU",
    "LeakyReLU", "GELU", "SiLU", "Tanh", "Sigmoid", "Softplus", "MaxPool2d", "AvgPool2d",
    "AdaptiveAvgPool2d", "Flatten", "Dropout", "functional", "init",
]

# Backbones, attention and SSL heads (models.py, attention.py).
from .attention import MultiheadAttention  # noqa: F401,E402
from .models import (  # noqa: F401,E402
    BarlowTwinsProjectionHead, BasicBlock, Block, Bottleneck, BYOLPredictionHead, BYOLProjectionHead,
    ConvNet, DINOProjectionHead, Mlp, MoCoProjectionHead, PatchEmbed, ProjectionHead, ResNet,
    SimCLRProjectionHead, SimSiamPredictionHead, SimSiamProjectionHead, VICRegProjectionHead,
    VisionTransformer, WeightNormLinear, resnet18, resnet34, resnet50, resnet_tiny, vit_tiny,
)

__all__ += [
    "MultiheadAttention", "ConvNet", "BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34",
    "resnet50", "resnet_tiny", "PatchEmbed", "Mlp", "Block", "VisionTransformer", "vit_tiny",
    "ProjectionHead", "SimCLRProjectionHead", "MoCoProjectionHead", "BYOLProjectionHead",
    "BYOLPredictionHead", "SimSiamProjectionHead", "SimSiamPredictionHead",
    "BarlowTwinsProjectionHead", "VICRegProjectionHead", "WeightNormLinear", "DINOProjectionHead",
]
