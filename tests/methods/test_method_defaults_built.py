"""Each method built with its defaults holds the values its docstring gives, with their source.

``inspect.signature`` would not see a default that the constructor replaces or forwards wrongly;
these tests build the method and read what it holds: the attribute, the head's layer widths, the
view size. Widths that npjem scales down from the paper for CPU runs are marked "npjem".
"""
import numpy as np
import pytest

from npjem.methods import BYOL, DINO, PIRL, MoCo, SimCLR, SimSiam, SwAV, VICReg, BarlowTwins, Data2Vec
from npjem.nn.models import VisionTransformer

from conftest import tiny_backbone

FEATURES = 6  # tiny_backbone's output width


def weight_shapes(module):
    """The (out, in) shapes of the module's Linear weights, in order (BatchNorm and biases are 1-D)."""
    return [tuple(p.shape) for _, p in module.named_parameters() if p.ndim == 2]


def view_shapes(method, size=40):
    x = np.random.default_rng(0).random((2, 3, size, size)).astype(np.float32)
    return [tuple(v.shape) for v in method.make_views(x, generator=0)]


# (attribute, default, source)
BYOL_DEFAULTS = [("momentum", 0.996, "BYOL §3.2: τ_base = 0.996"), ("final_momentum", 1.0, "BYOL: τ → 1")]


def test_byol_defaults():
    m = BYOL(tiny_backbone(), generator=0)
    for name, value, _ in BYOL_DEFAULTS:
        assert getattr(m, name) == value, name
    assert m.momentum_now == 0.996
    # BYOL §3.3: projector and predictor MLPs 4096 → 256; the predictor's hidden width is the projector's.
    assert weight_shapes(m.projector) == [(4096, FEATURES), (256, 4096)]
    assert weight_shapes(m.predictor) == [(4096, 256), (256, 4096)]
    assert view_shapes(m) == [(2, 3, 32, 32)] * 2  # simclr_views(32)


def test_byol_predictor_hidden_dim_defaults_to_hidden_dim_and_can_differ():
    m = BYOL(tiny_backbone(), hidden_dim=10, out_dim=4, generator=0)
    assert weight_shapes(m.predictor) == [(10, 4), (4, 10)]
    m = BYOL(tiny_backbone(), hidden_dim=10, out_dim=4, predictor_hidden_dim=7, generator=0)
    assert weight_shapes(m.projector) == [(10, FEATURES), (4, 10)]
    assert weight_shapes(m.predictor) == [(7, 4), (4, 7)]


def test_simsiam_defaults():
    m = SimSiam(tiny_backbone(), generator=0)
    # SimSiam §4.1 / builder.py: projector 2048-2048-2048, predictor 2048 → 512 → 2048.
    assert weight_shapes(m.projector)[-1] == (2048, 2048) and weight_shapes(m.projector)[0] == (2048, FEATURES)
    assert weight_shapes(m.predictor) == [(512, 2048), (2048, 512)]
    assert view_shapes(m) == [(2, 3, 32, 32)] * 2


def test_barlow_twins_defaults():
    m = BarlowTwins(tiny_backbone(), generator=0)
    assert m.lambd == 5e-3  # Barlow Twins §2: λ = 5·10⁻³
    assert weight_shapes(m.projector) == [(2048, FEATURES), (2048, 2048), (2048, 2048)]  # npjem: 2048, not 8192
    assert view_shapes(m) == [(2, 3, 32, 32)] * 2


def test_vicreg_defaults():
    m = VICReg(tiny_backbone(), generator=0)
    # VICReg §4.2: λ = μ = 25, ν = 1, γ = 1, ε = 1e-4; three-layer expander (npjem width 2048).
    assert (m.sim_coeff, m.std_coeff, m.cov_coeff, m.gamma, m.eps) == (25.0, 25.0, 1.0, 1.0, 1e-4)
    assert weight_shapes(m.projector) == [(2048, FEATURES), (2048, 2048), (2048, 2048)]
    assert view_shapes(m) == [(2, 3, 32, 32)] * 2


def test_simclr_defaults():
    m = SimCLR(tiny_backbone(), generator=0)
    # npjem: τ = 0.2, 512 → 128 (SimCLR: hidden = feature width, out 128, two Linear layers in v1).
    assert m.temperature == 0.2 and m.directions == "sum"
    assert weight_shapes(m.projector) == [(512, FEATURES), (128, 512)]
    assert view_shapes(m) == [(2, 3, 32, 32)] * 2


def test_moco_defaults():
    m = MoCo(tiny_backbone(), generator=0)
    # MoCo v2: m = 0.999, τ = 0.2, asymmetric, 2-layer MLP head without BN; npjem: K = 4096, 512 → 128;
    # the CIFAR demo's 8 shuffling-BN splits; solo-learn's mean of the two directions when symmetric.
    assert (m.momentum, m.temperature, m.queue_size) == (0.999, 0.2, 4096)
    assert (m.symmetric, m.bn_splits, m.batch_norm, m.directions) == (False, 8, False, "mean")
    assert weight_shapes(m.projector) == [(512, FEATURES), (128, 512)]
    assert not any(p.ndim == 1 and "running" in k for k, p in m.projector.state_dict().items())
    assert m.out_dim == 128
    assert view_shapes(m) == [(2, 3, 32, 32)] * 2


def test_dino_defaults():
    m = DINO(tiny_backbone(), generator=0)
    # DINO main_dino.py: head 2048-2048-256 → 65536, no BN, norm_last_layer, τ_s = 0.1, τ_t = 0.04
    # (warm-up from 0.04), m = 0.996, centre momentum 0.9, 2 global crops; freezing the last layer is off.
    assert (m.student_temp, m.teacher_temp, m.warmup_teacher_temp) == (0.1, 0.04, 0.04)
    assert (m.warmup_teacher_temp_steps, m.freeze_last_layer_steps, m.n_global) == (0, 0, 2)
    assert (m.momentum, m.center_momentum, m.out_dim) == (0.996, 0.9, 65536)
    shapes = weight_shapes(m.projector)
    assert shapes[:3] == [(2048, FEATURES), (2048, 2048), (256, 2048)]
    assert tuple(m.projector.last_layer.weight_v.shape) == (65536, 256)
    assert not m.projector.last_layer.weight_g.requires_grad  # norm_last_layer=True
    assert not any("running" in k for k in m.projector.state_dict())  # batch_norm=False
    assert m.center.shape == (1, 65536) and float(np.abs(m.center.numpy()).max()) == 0.0
    assert m.teacher_temperature(0) == 0.04
    assert view_shapes(m) == [(2, 3, 32, 32)] * 2


def test_swav_defaults():
    m = SwAV(tiny_backbone(), generator=0)
    # SwAV main_swav.py: K = 3000, τ = 0.1, ε = 0.05, 3 Sinkhorn iterations, crops_for_assign [0, 1],
    # prototypes frozen for 313 iterations, no queue by default; 2048 → 128 projector.
    assert (m.num_prototypes, m.temperature, m.epsilon, m.sinkhorn_iterations) == (3000, 0.1, 0.05, 3)
    assert (m.n_assign, m.freeze_prototypes_steps, m.queue_length, m.queue_start_step) == (2, 313, 0, 0)
    assert m.log_domain is False and m.reduction == "mean" and SwAV.LOG_DOMAIN_BELOW == 0.015
    assert weight_shapes(m.projector) == [(2048, FEATURES), (128, 2048)]
    assert tuple(m.prototypes.weight.shape) == (3000, 128) and m.prototypes.bias is None
    assert tuple(m.queue.shape) == (2, 0, 128)
    assert m.prototypes_frozen
    assert view_shapes(m) == [(2, 3, 32, 32)] * 2


def test_swav_log_domain_follows_epsilon_unless_set():
    assert SwAV(tiny_backbone(), epsilon=0.01, num_prototypes=4, hidden_dim=4, out_dim=3).log_domain is True
    assert SwAV(tiny_backbone(), epsilon=0.015, num_prototypes=4, hidden_dim=4, out_dim=3).log_domain is False
    assert SwAV(tiny_backbone(), epsilon=0.05, num_prototypes=4, hidden_dim=4, out_dim=3,
                log_domain=True).log_domain is True


def test_pirl_defaults():
    m = PIRL(tiny_backbone(), dataset_size=100, generator=0)
    # PIRL §4: τ = 0.07, λ = 0.5, memory momentum 0.5, 128-d embeddings, the paper's NCE with h as
    # published and Z estimated as vissl does; npjem: 4096 negatives (PIRL: 32000), a 3 × 3 grid.
    assert (m.temperature, m.lam, m.memory_momentum, m.num_negatives) == (0.07, 0.5, 0.5, 4096)
    assert (m.out_dim, m.normalizer, m.loss, m.h, m.nce_eps) == (128, "auto", "nce", "paper", 0.0)
    assert m.nce_z is None
    assert weight_shapes(m.head_f) == [(128, FEATURES)]
    assert m.head_g.num_tiles == 9
    assert weight_shapes(m.head_g) == [(128, FEATURES), (128, 9 * 128)]
    image, tiles = m.make_views(np.random.default_rng(0).random((2, 3, 40, 40)).astype(np.float32), generator=0)
    assert image.shape == (2, 3, 32, 32) and tiles.shape[:2] == (2, 9)


def test_data2vec_defaults():
    vit = VisionTransformer(img_size=8, patch_size=4, embed_dim=4, depth=6, num_heads=1, generator=0)
    m = Data2Vec(vit, generator=0)
    # data2vec vision (fairseq): mask 0.6, top 6 blocks, instance norm per block, layer norm of the
    # average, smooth L1 with β = 2, EMA 0.999 → 0.9998; npjem: over 10 000 steps, FFN targets.
    assert (m.mask_ratio, m.top_k, m.beta) == (0.6, 6, 2.0)
    assert (m.instance_norm, m.layer_norm, m.layer_norm_targets, m.target_layer) == (True, False, True, "ffn")
    assert (m.momentum, m.final_momentum, m.momentum_steps) == (0.999, 0.9998, 10000)
    assert m.momentum_now == 0.999
    assert weight_shapes(m.final_proj) == [(4, 4)]
    x = np.random.default_rng(0).random((2, 3, 12, 12)).astype(np.float32)
    assert m.make_views(x, generator=0)[0].shape == (2, 3, 8, 8)  # simclr_views(img_size)'s first transform


def test_simclr_num_layers_sets_the_projector_depth():
    m = SimCLR(tiny_backbone(), hidden_dim=5, out_dim=3, num_layers=3, generator=0)
    assert weight_shapes(m.projector) == [(5, FEATURES), (5, 5), (3, 5)]
