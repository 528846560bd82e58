"""data2vec step for step against a PyTorch twin written from fairseq's data2vec (vision).

The twin follows ``examples/data2vec/models/data2vec_vision.py`` (``Data2VecVisionModel.forward``
and ``set_num_updates``), fairseq's ``EMAModule`` and its trainer: before the forward of update
k the task calls ``set_num_updates(k)``, which at k = 0 makes the teacher (a copy of the model)
and afterwards sets the decay to ``get_annealed_rate(ema_decay, ema_end_decay, k,
ema_anneal_end_step)`` and takes one EMA step; the teacher (``ema_transformer_only=False``: the
whole model) encodes the unmasked image and returns its blocks' FFN outputs
(``end_of_block_targets=False``, ``layer_results="fc"``) without the CLS token; the top K are
instance-normalised (``instance_norm_target_layer``), averaged, layer-normalised
(``layer_norm_targets``) and taken at the masked patches; the student replaces the masked patch
embeddings by ``mask_emb`` (``x * (1 − w) + mask_emb · w``) and regresses the targets through
``final_proj``; the criterion's sum of smooth-L1 (β > 0) or squared errors over the channels,
times 1/sqrt(D), is divided by the sample size (the number of masked patches), as the trainer
divides the gradient.

The network is npjem's ``vit_tiny`` layout (absolute position embeddings added after masking,
pre-norm blocks with ``nn.MultiheadAttention`` and no layer scale), not BEiT's: the twin checks
the data2vec *step*, and takes the masks npjem draws (its uniform ``random_patch_mask``, not
BEiT's block masking) as inputs, like the images.
"""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from _twins import (  # noqa: E402
    assert_snapshots_agree,
    draw_views,
    load_from_npjem,
    recipe_lr,
    recipe_warmup_steps,
    run_npjem,
    snapshot_npjem,
    snapshot_torch,
)

from npjem import optim  # noqa: E402
from npjem import random as nrandom  # noqa: E402
from npjem.data.augment import random_patch_mask  # noqa: E402
from npjem.methods import Data2Vec  # noqa: E402
from npjem.nn.models import vit_tiny  # noqa: E402

STEPS = 10
IMG, PATCH, DIM, DEPTH, HEADS, BATCH = 8, 2, 16, 4, 2, 8


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(DIM, eps=1e-6)
        self.attn = nn.MultiheadAttention(DIM, HEADS, batch_first=True)
        self.norm2 = nn.LayerNorm(DIM, eps=1e-6)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(DIM, 2 * DIM)
        self.mlp.fc2 = nn.Linear(2 * DIM, DIM)

    def forward(self, x):
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        fc_feature = self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))
        x = x + fc_feature
        return x, fc_feature


class ViT(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, DIM, PATCH, stride=PATCH)
        n = (IMG // PATCH) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, DIM))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.blocks = nn.ModuleList(Block() for _ in range(DEPTH))
        self.norm = nn.LayerNorm(DIM, eps=1e-6)

    def forward(self, img, mask_indices=None, layer_results=None):
        """``Data2VecVisionModel.forward``'s encoder path: the (masked) patch tokens after the final
        norm, or with ``layer_results`` every block's output (``"end"``) or FFN output (``"fc"``),
        the CLS token dropped."""
        x = self.patch_embed.proj(img).flatten(2).transpose(1, 2)
        batch_size, seq_len, _ = x.size()
        x = torch.cat((self.cls_token.expand(batch_size, -1, -1), x), dim=1)
        if mask_indices is not None:
            mask_token = self.mask_token.expand(batch_size, seq_len, -1)
            w = mask_indices.view(mask_indices.size(0), -1, 1).type_as(mask_token)
            x[:, 1:] = x[:, 1:] * (1 - w) + mask_token * w
        x = x + self.pos_embed
        z = []
        for blk in self.blocks:
            x, fc_feature = blk(x)
            if layer_results == "end":
                z.append(x)
            elif layer_results == "fc":
                z.append(fc_feature)
        if layer_results:
            return [t[:, 1:] for t in z]
        return self.norm(x)[:, 1:]


class Twin(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.vit = ViT()
        self.final_proj = nn.Linear(DIM, DIM)
        self.backbone_teacher = nn.Module()
        self.backbone_teacher.vit = ViT()
        self.register_buffer("num_steps", torch.zeros(1, dtype=torch.int64))


def get_annealed_rate(start, end, curr_step, total_steps):
    r = end - start
    pct_remaining = 1 - curr_step / total_steps
    return end - r * pct_remaining


@torch.no_grad()
def ema_step(twin, decay):
    """fairseq ``EMAModule.step``: ema ← decay · ema + (1 − decay) · param, per parameter."""
    for p_ema, p in zip(twin.backbone_teacher.vit.parameters(), twin.backbone.vit.parameters()):
        p_ema.mul_(decay)
        p_ema.add_(p.data, alpha=1 - decay)


def train_twin(twin, views, masks, cfg):
    params = list(twin.backbone.vit.parameters()) + list(twin.final_proj.parameters())
    if cfg["optimizer"] == "adam":
        opt = torch.optim.Adam(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    else:  # fairseq's adam: decoupled weight decay
        opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    loss_scale = 1 / math.sqrt(DIM)
    snaps = []
    for it, ((img,), mask) in enumerate(zip(views, masks)):
        for group in opt.param_groups:
            group["lr"] = recipe_lr(it, STEPS, cfg["lr"])
        img = torch.as_tensor(img)
        mask_indices = torch.as_tensor(mask)
        bool_mask = mask_indices.view(mask_indices.size(0), -1).bool()
        with torch.no_grad():
            y = twin.backbone_teacher.vit(img, layer_results="end" if cfg["end_of_block_targets"] else "fc")
            y = y[-cfg["top_k"]:]
            if cfg["instance_norm_target_layer"]:
                y = [tl.transpose(1, 2) for tl in y]  # BTC -> BCT
                y = [F.instance_norm(tl) for tl in y]
                y = [tl.transpose(1, 2) for tl in y]  # BCT -> BTC
            y = sum(y) / len(y)
            y = F.layer_norm(y, y.shape[-1:])
            y = y[bool_mask]
        x = twin.backbone.vit(img, mask_indices)
        x = twin.final_proj(x[bool_mask])
        if cfg["beta"] == 0:
            loss = F.mse_loss(x, y, reduction="none").sum(dim=-1)
        else:
            loss = F.smooth_l1_loss(x, y, reduction="none", beta=cfg["beta"]).sum(dim=-1)
        loss = loss * loss_scale
        sample_size = loss.numel()
        loss = loss.sum() / sample_size  # the trainer divides the gradient by the sample size
        opt.zero_grad()
        loss.backward()
        opt.step()
        # set_num_updates(it + 1), the first thing of the next update, before any snapshot of it
        num_updates = it + 1
        if num_updates >= cfg["momentum_steps"]:
            decay = cfg["final_momentum"]
        else:
            decay = get_annealed_rate(cfg["momentum"], cfg["final_momentum"], num_updates, cfg["momentum_steps"])
        if decay < 1:
            ema_step(twin, decay)
        twin.num_steps += 1
        snaps.append({"loss": np.array(loss.item()), **snapshot_torch(twin)})
    return snaps


RECIPE = dict(optimizer="adam", lr=1e-3, weight_decay=1e-6, mask_ratio=0.6, top_k=3, beta=2.0, momentum=0.99,
              final_momentum=0.999, momentum_steps=10000, end_of_block_targets=False,
              instance_norm_target_layer=True)
CONFIGS = {
    # npjem pretrain's data2vec (DEFAULTS["data2vec"]): vit_tiny's layout (tiny here), 60 % masked,
    # the top 3 of 4 blocks, smooth L1 with β 2, EMA 0.99 → 0.999 over Data2Vec's default 10,000
    # updates, Adam (1e-3, L2 1e-6) under the recipe's warm-up + cosine.
    "pretrain": RECIPE,
    # fairseq vision's targets (end-of-block outputs, no per-block norm, a layer norm of the
    # average), the squared error (β 0, the audio config), an EMA annealed to its end inside the
    # run (6 of 10 updates, then constant), fairseq's adam with its decoupled weight decay 0.05.
    "vision-targets-mse-anneal-adamw": {**RECIPE, "optimizer": "adamw", "weight_decay": 0.05, "beta": 0.0,
                                       "momentum": 0.9, "final_momentum": 0.99, "momentum_steps": 6,
                                       "end_of_block_targets": True, "instance_norm_target_layer": False},
}


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_data2vec_takes_the_steps_of_fairseq(config):
    cfg = CONFIGS[config]
    vit = vit_tiny(img_size=IMG, patch_size=PATCH, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, generator=0)
    method = Data2Vec(vit, mask_ratio=cfg["mask_ratio"], top_k=cfg["top_k"], beta=cfg["beta"],
                      momentum=cfg["momentum"], final_momentum=cfg["final_momentum"],
                      momentum_steps=cfg["momentum_steps"], instance_norm=cfg["instance_norm_target_layer"],
                      target_layer="output" if cfg["end_of_block_targets"] else "ffn", generator=1).double()
    views = draw_views(0, STEPS, n_views=1, batch=BATCH, shape=(3, IMG, IMG))
    # The masks the method will draw (its own generator, one call per step): inputs of the twin.
    g = nrandom.as_generator(method._mask_seed, "cpu")
    masks = [random_patch_mask(BATCH, IMG // PATCH, cfg["mask_ratio"], generator=g, device="cpu")
             for _ in range(STEPS)]
    twin = load_from_npjem(Twin(), method)
    theirs = train_twin(twin, views, masks, cfg)

    params = method.trainable_parameters()
    opt = (optim.Adam(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"]) if cfg["optimizer"] == "adam"
           else optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"]))
    sched = optim.WarmupCosine(opt, total_steps=STEPS, warmup_steps=recipe_warmup_steps(STEPS))
    ours = run_npjem(method, views, opt, schedule=sched,
                     snapshot=lambda m, loss: {"loss": np.array(loss), **snapshot_npjem(m)})
    worst = assert_snapshots_agree(ours, theirs)
    print(f"\ndata2vec twin ({config}): {STEPS} steps, worst relative difference {worst:.2e}")
    assert method._mask_generator is not None  # the method drew its masks (the ones replayed above)
