"""Backbones (a plain ConvNet, CIFAR ResNets, a small Vision Transformer) and the projection /
prediction heads of SimCLR, MoCo, BYOL, SimSiam, Barlow Twins, VICReg and DINO.

Names follow the PyTorch code they come from, so a PyTorch state_dict of the twin loads with
``load_state_dict`` (converted with ``{k: v.numpy() for k, v in sd.items()}`` or as is):

* ResNet: torchvision's names (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``,
  ``fc``); the CIFAR stem (3×3 convolution, stride 1, no max-pool) of SimCLR's and lightly's
  CIFAR ResNets.
* ViT: timm's / DINO's block layout (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
  ``blocks.i.norm1``, ``blocks.i.mlp.fc1``, ``norm``, ``head``) with attention as
  ``torch.nn.MultiheadAttention`` (``blocks.i.attn.in_proj_weight``, ``…attn.out_proj.weight``).
* Heads: lightly's ``ProjectionHead`` (a Sequential ``layers``: Linear, [BatchNorm1d], [act]
  per block, the Linear's bias dropped when a BatchNorm follows); DINO's ``mlp`` + ``last_layer``
  (``weight_g``, ``weight_v``).

Every model takes ``device``, ``dtype`` and ``generator`` (a seed or ``npjem.random.Generator``)
so that a seed reproduces the initial weights; ``num_features`` is the width of the features
a head sits on. Backbones without ``num_classes`` end in ``fc``/``head`` = ``Identity`` (as
solo-learn and timm do), so ``model(x)`` returns the features.
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import backend
from .. import random as nrandom
from ..autograd import functional as AF
from ..autograd import ops
from ..autograd.tensor import Tensor, as_tensor
from . import init
from .._checks import check_int
from ._utils import empty_parameter, filled
from .activation import GELU, ReLU
from .attention import MultiheadAttention
from .container import ModuleList, Sequential
from .conv import Conv2d
from .linear import Dropout, Identity, Linear
from .module import Module, Parameter
from .norm import BatchNorm1d, BatchNorm2d, LayerNorm
from .pool import AdaptiveAvgPool2d, MaxPool2d

__all__ = [
    "ConvNet", "BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet34", "resnet50",
    "resnet_tiny", "PatchEmbed", "Mlp", "Block", "VisionTransformer", "vit_tiny",
    "ProjectionHead", "SimCLRProjectionHead", "MoCoProjectionHead", "BYOLProjectionHead",
    "BYOLPredictionHead", "SimSiamProjectionHead", "SimSiamPredictionHead",
    "BarlowTwinsProjectionHead", "VICRegProjectionHead", "WeightNormLinear", "DINOProjectionHead",
]


# ============================================================================ helpers

def _ints(values, name, length=None):
    if isinstance(values, (numbers.Integral, np.integer)) and not isinstance(values, bool):
        values = (values,)
    if not isinstance(values, (tuple, list)) or not values:
        raise ValueError(f"{name} must be a non-empty tuple of positive ints, got {values!r}")
    out = tuple(check_int(v, name) for v in values)
    if length is not None and len(out) != length:
        raise ValueError(f"{name} must have {length} entries, got {len(out)} ({values!r})")
    return out


def _num_classes(num_classes):
    if num_classes is None or num_classes == 0:
        return None
    return check_int(num_classes, "num_classes")


def _generator(generator, device):
    return nrandom.as_generator(generator, backend.normalize_device(device) if device is not None else None)


def _check_images(x, channels, what):
    if x.ndim != 4:
        raise ValueError(f"{what}: expected a (N, C, H, W) batch, got shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(f"{what}: input has {x.shape[1]} channels, expected in_channels={channels}")


# ============================================================================ ConvNet

class ConvNet(Module):
    """A plain convolutional backbone: k×k conv → BN → ReLU per width, then global average pooling.

    Block i maps C_{i−1} → C_i = ``widths[i]`` channels with stride ``strides[i]`` and padding
    ⌊k/2⌋ (so stride 1 keeps the size); ``strides`` defaults to 1 for the first block and 2 for
    every later one, as many as ``widths`` has entries (``(1, 2, 2)`` for the default widths); the convolution has no bias when a BatchNorm follows
    (the BN's β replaces it). ``forward_features(x)`` = mean over H, W of the last block's
    output, shape (N, ``num_features`` = widths[−1]); ``forward(x)`` = ``fc(features)``, with
    ``fc`` a Linear(num_features, num_classes) or the identity.

    State-dict names: ``features.{3i}`` conv, ``features.{3i+1}`` BN, ``features.{3i+2}`` ReLU
    (``features.{2i}``/``{2i+1}`` without BN), ``fc``.
    """

    def __init__(self, in_channels=3, widths=(32, 64, 128), strides=None, num_classes=None,
                 kernel_size=3, batch_norm=True, device=None, dtype=None, generator=None):
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels")
        widths = _ints(widths, "widths")
        if strides is None:
            strides = (1,) + (2,) * (len(widths) - 1)
        strides = _ints(strides, "strides", len(widths))
        k = check_int(kernel_size, "kernel_size")
        g = _generator(generator, device)
        layers, c = [], self.in_channels
        for w, s in zip(widths, strides):
            layers.append(Conv2d(c, w, k, stride=s, padding=k // 2, bias=not batch_norm, device=device,
                                 dtype=dtype, generator=g))
            if batch_norm:
                layers.append(BatchNorm2d(w, device=device, dtype=dtype))
            layers.append(ReLU())
            c = w
        self.features = Sequential(*layers)
        self.avgpool = AdaptiveAvgPool2d(1)
        self.widths, self.strides = widths, strides
        self.num_features = widths[-1]
        self.num_classes = _num_classes(num_classes)
        self.fc = (Linear(self.num_features, self.num_classes, device=device, dtype=dtype, generator=g)
                   if self.num_classes else Identity())

    def forward_features(self, x):
        """(N, C, H, W) → pooled features (N, num_features)."""
        x = as_tensor(x)
        _check_images(x, self.in_channels, type(self).__name__)
        return ops.flatten(self.avgpool(self.features(x)), 1)

    def forward(self, x):
        return self.fc(self.forward_features(x))


# ============================================================================ ResNet

def _conv3x3(cin, cout, stride, device, dtype, g):
    return Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False, device=device, dtype=dtype, generator=g)


def _conv1x1(cin, cout, stride, device, dtype, g):
    return Conv2d(cin, cout, 1, stride=stride, bias=False, device=device, dtype=dtype, generator=g)


def _shortcut(cin, cout, stride, device, dtype, g):
    """torchvision's projection shortcut: 1×1 conv (stride) → BN, named ``downsample.0/1``."""
    return Sequential(_conv1x1(cin, cout, stride, device, dtype, g), BatchNorm2d(cout, device=device, dtype=dtype))


class BasicBlock(Module):
    """ResNet's basic block (He et al., 2016), torchvision's names::

        out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))

    conv1 is 3×3 with ``stride``, conv2 3×3 with stride 1, both without bias. The shortcut is the
    identity when the shape is kept, else ``downsample`` = 1×1 conv (stride) → BN. With
    ``downsample=None`` the projection is built when it is needed (torchvision expects the caller
    to pass it); pass a Module to use your own.
    """

    expansion = 1

    def __init__(self, in_channels, out_channels, stride=1, downsample=None, device=None, dtype=None,
                 generator=None):
        super().__init__()
        cin = check_int(in_channels, "in_channels")
        cout = check_int(out_channels, "out_channels")
        self.stride = check_int(stride, "stride")
        g = _generator(generator, device)
        self.conv1 = _conv3x3(cin, cout, self.stride, device, dtype, g)
        self.bn1 = BatchNorm2d(cout, device=device, dtype=dtype)
        self.relu = ReLU()
        self.conv2 = _conv3x3(cout, cout, 1, device, dtype, g)
        self.bn2 = BatchNorm2d(cout, device=device, dtype=dtype)
        if downsample is None and (self.stride != 1 or cin != cout):
            downsample = _shortcut(cin, cout, self.stride, device, dtype, g)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(Module):
    """ResNet v1.5 bottleneck (torchvision): 1×1 → 3×3 (stride here) → 1×1 to 4·width, + shortcut."""

    expansion = 4

    def __init__(self, in_channels, out_channels, stride=1, downsample=None, device=None, dtype=None,
                 generator=None):
        super().__init__()
        cin = check_int(in_channels, "in_channels")
        width = check_int(out_channels, "out_channels")
        self.stride = check_int(stride, "stride")
        cout = width * self.expansion
        g = _generator(generator, device)
        self.conv1 = _conv1x1(cin, width, 1, device, dtype, g)
        self.bn1 = BatchNorm2d(width, device=device, dtype=dtype)
        self.conv2 = _conv3x3(width, width, self.stride, device, dtype, g)
        self.bn2 = BatchNorm2d(width, device=device, dtype=dtype)
        self.conv3 = _conv1x1(width, cout, 1, device, dtype, g)
        self.bn3 = BatchNorm2d(cout, device=device, dtype=dtype)
        self.relu = ReLU()
        if downsample is None and (self.stride != 1 or cin != cout):
            downsample = _shortcut(cin, cout, self.stride, device, dtype, g)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(Module):
    """A ResNet with torchvision's names; the CIFAR stem by default.

    ``stem="cifar"``: conv1 = 3×3, stride 1, padding 1, no bias, then BN, ReLU and *no*
    max-pool (``maxpool`` is the identity), as SimCLR's ``cifar_stem`` and lightly's CIFAR
    ResNets; a 32×32 input reaches layer4 at 4×4. (solo-learn's CIFAR stem pads by 2 instead of
    1: pass ``stem_padding=2`` to reproduce it.) ``stem="imagenet"``: 7×7 stride-2 conv and a
    3×3 stride-2 max-pool, as torchvision.

    Stage i has ``layers[i]`` blocks of width ``widths[i]`` (stride 1 for the first stage, 2 for
    the others). Features: global average pool of layer4, ``num_features`` = widths[−1] ·
    block.expansion. Initialisation as torchvision: convolutions Kaiming-normal (fan_out, ReLU),
    BN γ = 1, β = 0; ``zero_init_residual`` zeroes the last BN γ of every block.
    """

    def __init__(self, block=BasicBlock, layers=(2, 2, 2, 2), widths=(64, 128, 256, 512), in_channels=3,
                 num_classes=None, stem="cifar", stem_padding=None, zero_init_residual=False,
                 device=None, dtype=None, generator=None):
        super().__init__()
        if not (isinstance(block, type) and issubclass(block, Module) and hasattr(block, "expansion")):
            raise TypeError(f"block must be a residual block class such as BasicBlock or Bottleneck, got {block!r}")
        layers = _ints(layers, "layers")
        widths = _ints(widths, "widths", len(layers))
        self.in_channels = check_int(in_channels, "in_channels")
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        g = _generator(generator, device)
        self.stem = stem
        w0 = widths[0]
        if stem == "cifar":
            pad = 1 if stem_padding is None else int(stem_padding)
            self.conv1 = Conv2d(self.in_channels, w0, 3, stride=1, padding=pad, bias=False, device=device,
                                dtype=dtype, generator=g)
        else:
            pad = 3 if stem_padding is None else int(stem_padding)
            self.conv1 = Conv2d(self.in_channels, w0, 7, stride=2, padding=pad, bias=False, device=device,
                                dtype=dtype, generator=g)
        self.bn1 = BatchNorm2d(w0, device=device, dtype=dtype)
        self.relu = ReLU()
        self.maxpool = Identity() if stem == "cifar" else MaxPool2d(3, stride=2, padding=1)
        cin = w0
        for i, (n, w) in enumerate(zip(layers, widths)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(cin, w, stride, device=device, dtype=dtype, generator=g))
                cin = w * block.expansion
            self.add_module(f"layer{i + 1}", Sequential(*blocks))
        self.num_stages = len(layers)
        self.avgpool = AdaptiveAvgPool2d(1)
        self.num_features = cin
        self.num_classes = _num_classes(num_classes)
        self.fc = (Linear(cin, self.num_classes, device=device, dtype=dtype, generator=g)
                   if self.num_classes else Identity())
        for m in self.modules():
            if isinstance(m, Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=g)
        if zero_init_residual:
            for m in self.modules():
                last = getattr(m, "bn3", None) if isinstance(m, Bottleneck) else \
                    getattr(m, "bn2", None) if isinstance(m, BasicBlock) else None
                if last is not None:
                    init.zeros_(last.weight)

    def forward_features(self, x):
        """(N, C, H, W) → pooled features (N, num_features)."""
        x = as_tensor(x)
        _check_images(x, self.in_channels, "ResNet")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return ops.flatten(self.avgpool(x), 1)

    def forward(self, x):
        return self.fc(self.forward_features(x))


def resnet18(width=64, **kwargs):
    """ResNet-18 (BasicBlock, layers 2-2-2-2), widths (w, 2w, 4w, 8w); CIFAR stem by default."""
    w = check_int(width, "width")
    return ResNet(BasicBlock, (2, 2, 2, 2), (w, 2 * w, 4 * w, 8 * w), **kwargs)


def resnet34(width=64, **kwargs):
    """ResNet-34 (BasicBlock, layers 3-4-6-3), widths (w, 2w, 4w, 8w)."""
    w = check_int(width, "width")
    return ResNet(BasicBlock, (3, 4, 6, 3), (w, 2 * w, 4 * w, 8 * w), **kwargs)


def resnet50(width=64, **kwargs):
    """ResNet-50 (Bottleneck, layers 3-4-6-3), num_features = 32·w (2048 for w = 64)."""
    w = check_int(width, "width")
    return ResNet(Bottleneck, (3, 4, 6, 3), (w, 2 * w, 4 * w, 8 * w), **kwargs)


def resnet_tiny(width=16, **kwargs):
    """A ResNet small enough for CPU examples: one BasicBlock per stage, widths (w, 2w, 4w, 8w)."""
    w = check_int(width, "width")
    return ResNet(BasicBlock, (1, 1, 1, 1), (w, 2 * w, 4 * w, 8 * w), **kwargs)


# ============================================================================ Vision Transformer

class PatchEmbed(Module):
    """Image → sequence of patch embeddings: Conv2d(kernel = stride = patch) then flatten.

    (N, C, H, W) → (N, P, D) with P = (H/p)·(W/p) patches in row-major order.
    """

    def __init__(self, img_size=32, patch_size=4, in_channels=3, embed_dim=64, device=None, dtype=None,
                 generator=None):
        super().__init__()
        ih, iw = (img_size, img_size) if isinstance(img_size, numbers.Integral) else tuple(img_size)
        self.img_size = (check_int(ih, "img_size"), check_int(iw, "img_size"))
        self.patch_size = check_int(patch_size, "patch_size")
        if ih % self.patch_size or iw % self.patch_size:
            raise ValueError(f"img_size {self.img_size} must be divisible by patch_size={patch_size}")
        self.grid_size = (ih // self.patch_size, iw // self.patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.in_channels = check_int(in_channels, "in_channels")
        self.proj = Conv2d(in_channels, embed_dim, self.patch_size, stride=self.patch_size, device=device,
                           dtype=dtype, generator=_generator(generator, device))

    def forward(self, x):
        x = as_tensor(x)
        _check_images(x, self.in_channels, "PatchEmbed")
        if tuple(x.shape[2:]) != self.img_size:
            raise ValueError(f"PatchEmbed: input size {tuple(x.shape[2:])} does not match img_size {self.img_size}")
        y = self.proj(x)                                    # (N, D, gh, gw)
        return ops.transpose(ops.flatten(y, 2), (0, 2, 1))  # (N, P, D)


class Mlp(Module):
    """fc1 → GELU → dropout → fc2 → dropout (timm's ``Mlp``)."""

    def __init__(self, in_features, hidden_features, out_features=None, drop=0.0, device=None, dtype=None,
                 generator=None):
        super().__init__()
        out_features = in_features if out_features is None else out_features
        g = _generator(generator, device)
        self.fc1 = Linear(in_features, hidden_features, device=device, dtype=dtype, generator=g)
        self.act = GELU()
        self.fc2 = Linear(hidden_features, out_features, device=device, dtype=dtype, generator=g)
        self.drop = Dropout(drop, generator=g)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(Module):
    """Pre-norm transformer block::

        x = x + Attn(LN1(x))
        x = x + f,   f = MLP(LN2(x))

    ``forward(x, return_ffn=True)`` also returns f, the MLP branch before its residual add
    (data2vec's per-layer target a_l, "the output of the FFN before the last residual").
    """

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=True, drop=0.0, attn_drop=0.0, norm_eps=1e-6,
                 device=None, dtype=None, generator=None):
        super().__init__()
        dim = check_int(dim, "dim")
        if not mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be positive, got {mlp_ratio!r}")
        g = _generator(generator, device)
        self.norm1 = LayerNorm(dim, eps=norm_eps, device=device, dtype=dtype)
        self.attn = MultiheadAttention(dim, num_heads, dropout=attn_drop, bias=qkv_bias, device=device,
                                       dtype=dtype, generator=g)
        self.norm2 = LayerNorm(dim, eps=norm_eps, device=device, dtype=dtype)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop, device=device, dtype=dtype, generator=g)

    def forward(self, x, return_ffn=False):
        h = self.norm1(x)
        a, _ = self.attn(h, h, h, need_weights=False)
        x = x + a
        f = self.mlp(self.norm2(x))
        x = x + f
        return (x, f) if return_ffn else x


class VisionTransformer(Module):
    """A small ViT (Dosovitskiy et al., 2021) with a CLS token and learned position embeddings.

    tokens = [cls; patch_embed(x) with masked patches replaced by ``mask_token``] + pos_embed
    → ``depth`` pre-norm ``Block``s → final LayerNorm. ``forward(x, mask)`` returns ``head`` of
    the CLS token's feature (N, D) (``head`` = identity without ``num_classes``).

    ``mask``: a boolean (N, num_patches) array; True replaces that patch's embedding by the
    learned ``mask_token`` before the position embedding is added (BEiT / data2vec masking).
    ``prepare_tokens(x, mask)`` returns that input sequence (N, 1 + P, D) of the first block.
    (A timm/DINO checkpoint has no ``mask_token`` and packs attention as ``attn.qkv``/``attn.proj``:
    rename those keys to ``attn.in_proj_*``/``attn.out_proj.*`` and load with ``strict=False``.)
    ``forward_features(x, mask=None, return_all_blocks=False, block_output="output")`` returns
    the normalised token sequence (N, 1 + P, D) and, with ``return_all_blocks``, a list with
    each block's output (``block_output="output"``, before the final norm) or each block's MLP
    branch before its residual (``"ffn"``, data2vec's targets) — ``depth`` Tensors (N, 1 + P, D).

    Initialisation as timm/DINO: cls_token, pos_embed, mask_token and every Linear weight
    (attention in-projection included) ~ trunc_normal(σ = 0.02), Linear biases 0, LayerNorm
    γ = 1, β = 0; LayerNorm ε = 1e-6 as timm/DINO.
    """

    def __init__(self, img_size=32, patch_size=4, in_channels=3, embed_dim=64, depth=4, num_heads=4,
                 mlp_ratio=2.0, qkv_bias=True, num_classes=None, drop_rate=0.0, attn_drop_rate=0.0,
                 norm_eps=1e-6, device=None, dtype=None, generator=None):
        super().__init__()
        g = _generator(generator, device)
        d = check_int(embed_dim, "embed_dim")
        self.depth = check_int(depth, "depth")
        self.embed_dim = self.num_features = d
        self.patch_embed = PatchEmbed(img_size, patch_size, in_channels, d, device, dtype, g)
        self.num_patches = self.patch_embed.num_patches
        self.cls_token = empty_parameter((1, 1, d), device, dtype)
        self.pos_embed = empty_parameter((1, self.num_patches + 1, d), device, dtype)
        self.mask_token = empty_parameter((1, 1, d), device, dtype)
        self.pos_drop = Dropout(drop_rate, generator=g)
        self.blocks = ModuleList([Block(d, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, norm_eps,
                                        device, dtype, g) for _ in range(self.depth)])
        self.norm = LayerNorm(d, eps=norm_eps, device=device, dtype=dtype)
        self.num_classes = _num_classes(num_classes)
        self.head = Linear(d, self.num_classes, device=device, dtype=dtype, generator=g) \
            if self.num_classes else Identity()
        for p in (self.cls_token, self.pos_embed, self.mask_token):
            init.trunc_normal_(p, std=0.02, generator=g)
        for m in self.modules():
            if isinstance(m, Linear):
                init.trunc_normal_(m.weight, std=0.02, generator=g)
                if m.bias is not None:
                    init.zeros_(m.bias)
            elif isinstance(m, MultiheadAttention):
                init.trunc_normal_(m.in_proj_weight, std=0.02, generator=g)

    def _check_mask(self, mask, n, xp):
        arr = mask.data if isinstance(mask, Tensor) else mask
        if not backend.is_array(arr):
            arr = np.asarray(arr)  # host: a mask given as a list
        if arr.dtype != bool:
            raise TypeError(f"mask must be a boolean array, got dtype {arr.dtype}")
        if arr.shape != (n, self.num_patches):
            raise ValueError(f"mask must have shape (N, num_patches) = {(n, self.num_patches)}, got {arr.shape}")
        return xp.asarray(arr)

    def prepare_tokens(self, x, mask=None):
        """The transformer's input (N, 1 + P, D): [cls; patches, masked ones → mask_token] + pos_embed."""
        t = self.patch_embed(x)                                          # (N, P, D)
        n, _, d = t.shape
        if mask is not None:
            m = self._check_mask(mask, n, t.xp)
            t = ops.where(m[:, :, None], self.mask_token, t)             # mask_token's gradient: the masked rows'
        cls = ops.broadcast_to(self.cls_token, (n, 1, d))
        return self.pos_drop(ops.concatenate([cls, t], axis=1) + self.pos_embed)

    def forward_features(self, x, mask=None, return_all_blocks=False, block_output="output"):
        if block_output not in ("output", "ffn"):
            raise ValueError(f"block_output must be 'output' or 'ffn', got {block_output!r}")
        t = self.prepare_tokens(x, mask)
        outs = []
        for blk in self.blocks:
            if return_all_blocks and block_output == "ffn":
                t, f = blk(t, return_ffn=True)
                outs.append(f)
            else:
                t = blk(t)
                if return_all_blocks:
                    outs.append(t)
        t = self.norm(t)
        return (t, outs) if return_all_blocks else t

    def forward(self, x, mask=None):
        return self.head(self.forward_features(x, mask)[:, 0])


def vit_tiny(**kwargs):
    """The defaults of ``VisionTransformer`` (32×32 images, 4×4 patches, D = 64, depth 4, 4 heads)."""
    return VisionTransformer(**kwargs)


# ============================================================================ heads

def _activation(act, what):
    if act is None or act is False:
        return None
    if isinstance(act, Module):
        return act
    if isinstance(act, str) and act.lower() in ("relu", "gelu"):
        return ReLU() if act.lower() == "relu" else GELU()
    raise ValueError(f"{what}: activation must be None, 'relu', 'gelu' or a Module, got {act!r}")


class ProjectionHead(Module):
    """An MLP built from blocks, as lightly's ``ProjectionHead``.

    ``blocks`` is a list of tuples ``(in_features, out_features, batch_norm, activation)``
    (optionally a fifth entry ``bias``). Each block is Linear(in, out) → [batch_norm] →
    [activation]. ``batch_norm``: None/False, True (a ``BatchNorm1d(out)``) or a Module (for
    example ``BatchNorm1d(out, affine=False)``); ``activation``: None, ``"relu"``, ``"gelu"`` or a
    Module. The Linear has a bias unless a BatchNorm follows (lightly's rule: the BN's β makes
    it redundant); the fifth entry overrides that. Layers live in the Sequential ``layers``.
    """

    def __init__(self, blocks, device=None, dtype=None, generator=None):
        super().__init__()
        if not isinstance(blocks, (list, tuple)) or not blocks:
            raise ValueError(f"blocks must be a non-empty list of (in, out, batch_norm, activation) tuples, "
                             f"got {blocks!r}")
        g = _generator(generator, device)
        layers, prev = [], None
        for i, blk in enumerate(blocks):
            if not isinstance(blk, (tuple, list)) or len(blk) not in (4, 5):
                raise ValueError(f"blocks[{i}] must be (in, out, batch_norm, activation[, bias]), got {blk!r}")
            fin, fout, bn, act = blk[:4]
            fin, fout = check_int(fin, f"blocks[{i}] in_features"), check_int(
                fout, f"blocks[{i}] out_features")
            if prev is not None and fin != prev:
                raise ValueError(f"blocks[{i}] has in_features={fin} but blocks[{i - 1}] outputs {prev}")
            prev = fout
            if bn is True:
                bn = BatchNorm1d(fout, device=device, dtype=dtype)
            elif bn is None or bn is False:
                bn = None
            elif not isinstance(bn, Module):
                raise ValueError(f"blocks[{i}] batch_norm must be None, a bool or a Module, got {bn!r}")
            bias = (bn is None) if len(blk) == 4 else bool(blk[4])
            layers.append(Linear(fin, fout, bias=bias, device=device, dtype=dtype, generator=g))
            if bn is not None:
                layers.append(bn)
            a = _activation(act, f"blocks[{i}]")
            if a is not None:
                layers.append(a)
        self.layers = Sequential(*layers)
        self.in_features = blocks[0][0]
        self.out_features = prev

    def forward(self, x):
        return self.layers(x)


class _ScaleOnlyBatchNorm1d(BatchNorm1d):
    """BatchNorm1d with a scale γ but no shift β (TF's ``center=False``): y = x̂ · γ."""

    def __init__(self, num_features, device=None, dtype=None):
        super().__init__(num_features, device=device, dtype=dtype)
        self.bias = None

    def reset_parameters(self):
        self.reset_running_stats()
        self.weight.data[...] = 1


class SimCLRProjectionHead(ProjectionHead):
    """SimCLR's projection MLP g(·): ``num_layers`` Linear layers, BN + ReLU between them.

    Layout (lightly's ``SimCLRProjectionHead``): Linear(in, hidden) → BN → ReLU, then
    (num_layers − 2)× [Linear(hidden, hidden) → BN → ReLU], then Linear(hidden, out) with bias.
    ``batch_norm=False`` drops the BNs (SimCLR v1's head: Linear → ReLU → Linear).

    SimCLR v2 (google-research/simclr ``tf2/model.py``, ``ProjectionHead``) differs: *every*
    Linear has no bias and is followed by BN, the last one too, whose BN has a scale γ but no
    shift β (``center=False``); its defaults are 3 layers, hidden = in_dim, out 128. Reproduce it
    with ``num_layers=3, hidden_dim=in_dim, last_batch_norm=True``: the final BN is a
    BatchNorm1d whose ``bias`` is removed (state_dict has ``weight``, no ``bias``).
    """

    def __init__(self, in_dim=2048, hidden_dim=2048, out_dim=128, num_layers=2, batch_norm=True,
                 last_batch_norm=False, device=None, dtype=None, generator=None):
        num_layers = check_int(num_layers, "num_layers")
        if num_layers < 2:
            raise ValueError(f"num_layers must be >= 2 (a linear head is a Linear), got {num_layers}")
        blocks = [(in_dim, hidden_dim, bool(batch_norm), "relu")]
        blocks += [(hidden_dim, hidden_dim, bool(batch_norm), "relu")] * (num_layers - 2)
        last_bn = None
        if last_batch_norm:
            last_bn = _ScaleOnlyBatchNorm1d(check_int(out_dim, "out_dim"), device=device, dtype=dtype)
        blocks.append((hidden_dim, out_dim, last_bn, None))
        super().__init__(blocks, device, dtype, generator)


class MoCoProjectionHead(ProjectionHead):
    """MoCo v2's MLP head: Linear(in, hidden) → ReLU → Linear(hidden, out), biases, no BN
    (``--mlp`` in facebookresearch/moco: 2048 → 2048 → 128). ``batch_norm=True`` adds BN after
    the hidden layers (lightly's option); ``num_layers`` > 2 repeats the hidden block."""

    def __init__(self, in_dim=2048, hidden_dim=2048, out_dim=128, num_layers=2, batch_norm=False,
                 device=None, dtype=None, generator=None):
        num_layers = check_int(num_layers, "num_layers")
        if num_layers < 2:
            raise ValueError(f"num_layers must be >= 2, got {num_layers}")
        blocks = [(in_dim, hidden_dim, bool(batch_norm), "relu")]
        blocks += [(hidden_dim, hidden_dim, bool(batch_norm), "relu")] * (num_layers - 2)
        blocks.append((hidden_dim, out_dim, None, None))
        super().__init__(blocks, device, dtype, generator)


class BYOLProjectionHead(ProjectionHead):
    """BYOL's projector: Linear(in, hidden) → BN → ReLU → Linear(hidden, out) (2048 → 4096 → 256).

    Bias as lightly (none before the BN, one on the last Linear). DeepMind's BYOL has it the
    other way round (bias on the first Linear, none on the last), which changes the parameter
    count but not the function class; build that with ``ProjectionHead`` and 5-tuples.
    """

    def __init__(self, in_dim=2048, hidden_dim=4096, out_dim=256, device=None, dtype=None, generator=None):
        super().__init__([(in_dim, hidden_dim, True, "relu"), (hidden_dim, out_dim, None, None)],
                         device, dtype, generator)


class BYOLPredictionHead(ProjectionHead):
    """BYOL's predictor q_θ, same shape as the projector (256 → 4096 → 256)."""

    def __init__(self, in_dim=256, hidden_dim=4096, out_dim=256, device=None, dtype=None, generator=None):
        super().__init__([(in_dim, hidden_dim, True, "relu"), (hidden_dim, out_dim, None, None)],
                         device, dtype, generator)


class SimSiamProjectionHead(ProjectionHead):
    """SimSiam's projector: [Linear → BN → ReLU] × 2, then Linear → BN(affine=False) (2048 → 2048 → 2048 → 2048).

    Linear layers followed by a BN have no bias. The original (facebookresearch/simsiam) keeps
    the last Linear's bias but freezes it (``requires_grad = False``) — a constant the
    affine-free BN removes, so the two compute the same function.
    """

    def __init__(self, in_dim=2048, hidden_dim=2048, out_dim=2048, device=None, dtype=None, generator=None):
        out = check_int(out_dim, "out_dim")
        super().__init__([(in_dim, hidden_dim, True, "relu"), (hidden_dim, hidden_dim, True, "relu"),
                          (hidden_dim, out, BatchNorm1d(out, affine=False, device=device, dtype=dtype), None)],
                         device, dtype, generator)


class SimSiamPredictionHead(ProjectionHead):
    """SimSiam's bottleneck predictor: Linear(in, hidden) → BN → ReLU → Linear(hidden, out) (2048 → 512 → 2048)."""

    def __init__(self, in_dim=2048, hidden_dim=512, out_dim=2048, device=None, dtype=None, generator=None):
        super().__init__([(in_dim, hidden_dim, True, "relu"), (hidden_dim, out_dim, None, None)],
                         device, dtype, generator)


class BarlowTwinsProjectionHead(ProjectionHead):
    """Barlow Twins' projector: [Linear → BN → ReLU] × 2 → Linear (8192-8192-8192).

    Biases as lightly (last Linear with bias); the original has no bias on any Linear.
    """

    def __init__(self, in_dim=2048, hidden_dim=8192, out_dim=8192, device=None, dtype=None, generator=None):
        super().__init__([(in_dim, hidden_dim, True, "relu"), (hidden_dim, hidden_dim, True, "relu"),
                          (hidden_dim, out_dim, None, None)], device, dtype, generator)


class VICRegProjectionHead(ProjectionHead):
    """VICReg's expander: (num_layers − 1)× [Linear → BN → ReLU] → Linear (``--mlp 8192-8192-8192``).

    Default num_layers = 3 as the original (lightly's default is 2). Biases as lightly; the
    original keeps the (redundant) biases before each BN and drops the last Linear's bias.
    """

    def __init__(self, in_dim=2048, hidden_dim=8192, out_dim=8192, num_layers=3, device=None, dtype=None,
                 generator=None):
        num_layers = check_int(num_layers, "num_layers")
        if num_layers < 2:
            raise ValueError(f"num_layers must be >= 2, got {num_layers}")
        blocks = [(in_dim, hidden_dim, True, "relu")]
        blocks += [(hidden_dim, hidden_dim, True, "relu")] * (num_layers - 2)
        blocks.append((hidden_dim, out_dim, None, None))
        super().__init__(blocks, device, dtype, generator)


class WeightNormLinear(Module):
    """A bias-free Linear with weight normalisation (Salimans & Kingma, 2016), as
    ``torch.nn.utils.weight_norm(Linear(in, out, bias=False))``::

        W[o] = g[o] · v[o] / ‖v[o]‖₂,   y = x Wᵀ

    Parameters ``weight_g`` (out, 1) and ``weight_v`` (out, in), PyTorch's names. ``g`` starts
    at ‖v[o]‖ (so W = v) unless ``init_g`` is given.
    """

    def __init__(self, in_features, out_features, init_g=None, device=None, dtype=None, generator=None):
        super().__init__()
        self.in_features = check_int(in_features, "in_features")
        self.out_features = check_int(out_features, "out_features")
        lin = Linear(self.in_features, self.out_features, bias=False, device=device, dtype=dtype,
                     generator=generator)
        v = lin.weight.data
        xp = backend.get_array_module(v)
        g = xp.sqrt((v * v).sum(axis=1, keepdims=True)) if init_g is None else \
            filled((self.out_features, 1), init_g, device, dtype)
        self.weight_g = Parameter(g.astype(v.dtype, copy=False))
        self.weight_v = Parameter(v)

    @property
    def weight(self):
        """The effective weight g · v/‖v‖ (a Tensor in the graph)."""
        v = self.weight_v
        return v * (self.weight_g / ops.sqrt((v * v).sum(axis=1, keepdims=True)))

    def forward(self, x):
        return AF.linear(x, self.weight)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}"


class DINOProjectionHead(Module):
    """DINO's head (facebookresearch/dino ``DINOHead``)::

        z = mlp(x)                     Linear → [BN] → GELU, (num_layers − 2)× more, Linear → bottleneck
        z = z / max(‖z‖₂, 1e-12)       L2-normalise the bottleneck
        y = last_layer(z)              weight-normalised Linear(bottleneck, out), no bias, g = 1

    Defaults as the original: 2048 → 2048 → 2048 → 256 → 65536, no BN, ``norm_last_layer``
    True: g is fixed at 1 (``weight_g.requires_grad = False``), so the last layer's rows are unit
    vectors. Names follow the original (``mlp.0``, ``mlp.2``, …, ``last_layer.weight_g/_v``);
    lightly's ``DINOProjectionHead`` calls the MLP ``layers``. Initialisation as the original: MLP
    weights trunc_normal(σ = 0.02), biases 0; ``last_layer``'s v keeps Linear's default init.
    ``freeze_last_layer`` = number of epochs during which ``cancel_last_layer_gradients(epoch)``
    drops the last layer's gradients (DINO: 1; −1 or 0: never).
    """

    def __init__(self, in_dim=2048, hidden_dim=2048, bottleneck_dim=256, out_dim=65536, num_layers=3,
                 batch_norm=False, norm_last_layer=True, freeze_last_layer=-1, device=None, dtype=None,
                 generator=None):
        super().__init__()
        num_layers = check_int(num_layers, "num_layers")
        g = _generator(generator, device)
        if num_layers == 1:
            layers = [Linear(in_dim, bottleneck_dim, device=device, dtype=dtype, generator=g)]
        else:
            layers, prev = [], in_dim
            for _ in range(num_layers - 1):
                layers.append(Linear(prev, hidden_dim, device=device, dtype=dtype, generator=g))
                if batch_norm:
                    layers.append(BatchNorm1d(hidden_dim, device=device, dtype=dtype))
                layers.append(GELU())
                prev = hidden_dim
            layers.append(Linear(prev, bottleneck_dim, device=device, dtype=dtype, generator=g))
        self.mlp = Sequential(*layers)
        for m in self.mlp:
            if isinstance(m, Linear):
                init.trunc_normal_(m.weight, std=0.02, generator=g)
                if m.bias is not None:
                    init.zeros_(m.bias)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim, init_g=1.0, device=device, dtype=dtype,
                                           generator=g)
        self.norm_last_layer = bool(norm_last_layer)
        if self.norm_last_layer:
            self.last_layer.weight_g.requires_grad = False
        self.freeze_last_layer = int(freeze_last_layer)

    def forward(self, x):
        z = AF.normalize(self.mlp(x), axis=-1, eps=1e-12)
        return self.last_layer(z)

    def cancel_last_layer_gradients(self, current_epoch):
        """Drop the last layer's gradients while ``current_epoch < freeze_last_layer`` (DINO's trick
        against early instability); call it between ``backward`` and ``optimizer.step``."""
        if current_epoch < self.freeze_last_layer:
            for p in self.last_layer.parameters():
                p.grad = None
