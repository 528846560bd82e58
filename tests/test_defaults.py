"""Every public default of npjem.losses and npjem.methods that stands for a published value,
pinned against the source it comes from.

A default that changes silently changes every result computed with it, and no value test
notices when it happens to stay finite (VICReg's ``cov_coeff=1.0 → 0`` once did). Each row
reads the signature with ``inspect.signature`` and names where the value comes from: the paper
(and where in it), or the authors' repository file (commits as read for npjem: simclr 383d414,
moco 132aea9, vissl 09270ed2, barlowtwins 8e8d284, vicreg 4e12602, swav 06b1b7c,
deepmind-research f5de0ed, simsiam a7bc177, dino 7c446df, fairseq 3d262bb2).

Where npjem's default is deliberately not the paper's (a CPU-sized network, a shorter run),
the row carries the paper's value too and the reason; the test asserts that such a row says
why, so a departure is never silent either. Completeness: every int or float default of the
public losses and methods has a row, so a new default cannot arrive without a source.
"""
import inspect
import numbers

import numpy as np
import pytest

from npjem import Tensor, backend
from npjem import losses
from npjem import methods

L, M = losses, methods

# (callable, argument, npjem's default, the source's value or None when equal, source / why)
TABLE = [
    # ---------------------------------------------------------------- contrastive losses
    (L.pair_margin_loss, "margin", 1.0, None,
     "Hadsell, Chopra & LeCun 2006 (DrLIM) eq. 4 leaves m > 0 free; 1 is the unit margin of "
     "torch.nn.HingeEmbeddingLoss"),
    (L.pair_margin_loss, "eps", 0.0, None,
     "DrLIM eq. 1: the exact Euclidean distance D_W = ||G(X1) - G(X2)||_2"),
    (L.info_nce, "temperature", 0.1, None,
     "google-research/simclr run.py, flag temperature=0.1"),
    (L.nt_xent, "temperature", 0.1, None,
     "google-research/simclr run.py, flag temperature=0.1"),
    (L.moco_loss, "temperature", 0.2, None,
     "facebookresearch/moco README.md, MoCo v2: --moco-t 0.2 (v1: main_moco.py default 0.07)"),
    (L.nce_memory_loss, "temperature", 0.07, None,
     "vissl configs/config/pretrain/pirl/pirl_jigsaw_4node_resnet50.yaml, temperature 0.07"),
    (L.nce_memory_loss, "normalizer", 1.0, None,
     "PIRL (Misra & van der Maaten 2020) h = exp(s/tau) / (exp(s/tau) + N/|D|): Z = 1"),
    (L.nce_memory_loss, "eps", 0.0, None,
     "PIRL's h has no epsilon (vissl nce_loss.py adds float32 eps 1.19e-7)"),
    (L.nce_loss, "temperature", 0.07, None,
     "vissl pirl_jigsaw_4node_resnet50.yaml, temperature 0.07"),
    (L.nce_loss, "lam", 0.5, None,
     "vissl pirl_jigsaw_4node_resnet50.yaml, loss_weights [0.5, 0.5] (PIRL's lambda = 0.5)"),
    (L.nce_loss, "normalizer", 1.0, None, "PIRL's h: Z = 1"),
    (L.nce_loss, "eps", 0.0, None, "PIRL's h has no epsilon"),
    (L.nce_normalizer, "temperature", 0.07, None,
     "vissl pirl_jigsaw_4node_resnet50.yaml, temperature 0.07"),
    # ---------------------------------------------------------------- non-contrastive losses
    (L.barlow_twins, "lambd", 5e-3, None,
     "Zbontar et al. 2021, the paper's lambda = 5e-3 (facebookresearch/barlowtwins main.py "
     "now --lambd 0.0051)"),
    (L.barlow_twins, "eps", 1e-5, None,
     "facebookresearch/barlowtwins main.py: nn.BatchNorm1d(affine=False), eps 1e-5"),
    (L.barlow_twins, "scale", 1.0, None,
     "facebookresearch/barlowtwins main.py since 046eec3 (June 2021): no --scale-loss"),
    (L.vicreg, "sim_coeff", 25.0, None, "facebookresearch/vicreg main_vicreg.py --sim-coeff 25"),
    (L.vicreg, "std_coeff", 25.0, None, "facebookresearch/vicreg main_vicreg.py --std-coeff 25"),
    (L.vicreg, "cov_coeff", 1.0, None, "facebookresearch/vicreg main_vicreg.py --cov-coeff 1"),
    (L.vicreg, "gamma", 1.0, None, "facebookresearch/vicreg main_vicreg.py: F.relu(1 - std_x)"),
    (L.vicreg, "eps", 1e-4, None,
     "facebookresearch/vicreg main_vicreg.py: torch.sqrt(x.var(dim=0) + 0.0001)"),
    # ---------------------------------------------------------------- clustering losses
    (L.sinkhorn_knopp, "epsilon", 0.05, None, "facebookresearch/swav main_swav.py --epsilon 0.05"),
    (L.sinkhorn_knopp, "n_iters", 3, None,
     "facebookresearch/swav main_swav.py --sinkhorn_iterations 3"),
    (L.sinkhorn_knopp, "max_iters", 1000, None,
     "npjem's cap for tol= (SwAV has no tolerance): a convergence guard, not a paper value"),
    (L.swav, "temperature", 0.1, None, "facebookresearch/swav main_swav.py --temperature 0.1"),
    (L.sinkhorn_clusters, "epsilon", 0.05, None,
     "SwAV's epsilon (main_swav.py) on unit-free scores in [-1, 0]"),
    (L.sinkhorn_clusters, "n_steps", 30, None,
     "npjem's example clustering (no paper value): enough steps for the toy point clouds"),
    # ---------------------------------------------------------------- distillation losses
    (L.negative_cosine, "eps", 1e-8, None,
     "facebookresearch/simsiam main_simsiam.py: nn.CosineSimilarity(dim=1), eps 1e-8"),
    (L.simsiam_loss, "eps", 1e-8, None,
     "facebookresearch/simsiam main_simsiam.py: nn.CosineSimilarity(dim=1), eps 1e-8"),
    (L.byol_loss, "eps", 1e-6, None,
     "deepmind-research byol/utils/helpers.py l2_normalize: rsqrt(max(sum x^2, 1e-12))"),
    (L.dino, "student_temp", 0.1, None, "facebookresearch/dino main_dino.py, student_temp 0.1"),
    (L.dino, "teacher_temp", 0.04, None,
     "facebookresearch/dino main_dino.py --teacher_temp 0.04 (and --warmup_teacher_temp 0.04)"),
    (L.dino_center_update, "momentum", 0.9, None,
     "facebookresearch/dino main_dino.py DINOLoss(center_momentum=0.9)"),
    (L.data2vec_targets, "top_k", 8, None,
     "fairseq examples/data2vec/models/data2vec_audio.py average_top_k_layers=8 "
     "(config audio/pretraining/base_librispeech.yaml)"),
    (L.data2vec_targets, "eps", 1e-5, None,
     "fairseq data2vec: F.instance_norm / F.layer_norm with PyTorch's eps 1e-5"),
    (L.data2vec_loss, "beta", 2.0, None,
     "fairseq examples/data2vec/config/vision/pretraining/base_imagenet_d2v1.yaml loss_beta 2.0"),
    # ---------------------------------------------------------------- loss functionals
    (L.hinge, "margin", 1.0, None,
     "LeCun et al. 2006, eq. 11 leaves m > 0 free; 1 is the unit margin"),
    (L.square_square, "margin", 1.0, None,
     "LeCun et al. 2006, eq. 16 leaves m > 0 free; 1 is the unit margin"),
    (L.square_exponential, "gamma", 1.0, None,
     "LeCun et al. 2006, eq. 17 leaves gamma > 0 free; 1 weighs both terms equally"),
    (L.lvq2, "saturation", 1.0, None, "LeCun et al. 2006, eq. 13: min(M, ...) with M = 1"),
    (L.nll_mmi, "beta", 1.0, None,
     "LeCun et al. 2006, eq. 23 leaves beta > 0 free; 1 is the Gibbs distribution at unit "
     "temperature (softmax(-E))"),
    (L.mee, "beta", 1.0, None,
     "LeCun et al. 2006, eq. 27 leaves beta > 0 free; 1 is unit temperature"),
    (L.most_offending, "epsilon", 0.0, None,
     "LeCun et al. 2006, §2.2.2 (discrete answers): every answer but the correct one counts"),
    # ---------------------------------------------------------------- methods
    (M.SimCLR, "temperature", 0.2, 0.1,
     "google-research/simclr run.py temperature=0.1; npjem's small CPU runs on shapes work "
     "better at 0.2 (SimCLR docstring)"),
    (M.SimCLR, "out_dim", 128, None, "google-research/simclr run.py proj_out_dim=128"),
    (M.SimCLR, "hidden_dim", 512, 2048,
     "SimCLR: hidden = the ResNet-50's 2048 features; 512 fits npjem's CPU backbones"),
    (M.SimCLR, "num_layers", 2, None, "Chen et al. 2020 (SimCLR), §2.1: g is an MLP with one hidden layer"),
    (M.MoCo, "temperature", 0.2, None, "facebookresearch/moco README.md, MoCo v2 --moco-t 0.2"),
    (M.MoCo, "momentum", 0.999, None, "facebookresearch/moco main_moco.py --moco-m 0.999"),
    (M.MoCo, "queue_size", 4096, 65536,
     "facebookresearch/moco main_moco.py --moco-k 65536; the queue must stay below the data "
     "set's size minus a batch (MoCo docstring), npjem's data sets are small"),
    (M.MoCo, "out_dim", 128, None, "facebookresearch/moco main_moco.py --moco-dim 128"),
    (M.MoCo, "hidden_dim", 512, 2048,
     "MoCo v2 --mlp: 2048 -> 2048 -> 128; 512 fits npjem's CPU backbones"),
    (M.MoCo, "bn_splits", 8, None,
     "MoCo's CIFAR demo (facebookresearch/moco colab): SplitBatchNorm with 8 splits"),
    (M.PIRL, "temperature", 0.07, None,
     "vissl pirl_jigsaw_4node_resnet50.yaml, temperature 0.07"),
    (M.PIRL, "lam", 0.5, None, "vissl pirl_jigsaw_4node_resnet50.yaml, loss_weights [0.5, 0.5]"),
    (M.PIRL, "memory_momentum", 0.5, None,
     "vissl pirl_jigsaw_4node_resnet50.yaml, memory_params momentum 0.5"),
    (M.PIRL, "num_negatives", 4096, 32000,
     "vissl pirl_jigsaw_4node_resnet50.yaml num_negatives 32000; capped at |D| - batch, "
     "npjem's data sets are small"),
    (M.PIRL, "out_dim", 128, None, "vissl PIRL heads: Linear -> 128"),
    (M.PIRL, "tile_dim", 128, None, "vissl PIRL jigsaw head: 128 per tile"),
    (M.PIRL, "grid", 3, None, "PIRL: 9 jigsaw tiles (3 x 3)"),
    (M.PIRL, "nce_eps", 0.0, None, "PIRL's h has no epsilon (vissl nce_loss.py adds float32 eps 1.19e-7)"),
    (M.BarlowTwins, "lambd", 0.005, None,
     "Zbontar et al. 2021, the paper's lambda = 5e-3 (main.py now 0.0051)"),
    (M.BarlowTwins, "hidden_dim", 2048, 8192,
     "facebookresearch/barlowtwins main.py --projector 8192-8192-8192; smaller for CPU"),
    (M.BarlowTwins, "out_dim", 2048, 8192,
     "facebookresearch/barlowtwins main.py --projector 8192-8192-8192; smaller for CPU"),
    (M.VICReg, "sim_coeff", 25.0, None, "facebookresearch/vicreg main_vicreg.py --sim-coeff 25"),
    (M.VICReg, "std_coeff", 25.0, None, "facebookresearch/vicreg main_vicreg.py --std-coeff 25"),
    (M.VICReg, "cov_coeff", 1.0, None, "facebookresearch/vicreg main_vicreg.py --cov-coeff 1"),
    (M.VICReg, "gamma", 1.0, None, "facebookresearch/vicreg main_vicreg.py: F.relu(1 - std_x)"),
    (M.VICReg, "eps", 1e-4, None, "facebookresearch/vicreg main_vicreg.py: var + 0.0001"),
    (M.VICReg, "hidden_dim", 2048, 8192,
     "facebookresearch/vicreg main_vicreg.py --mlp 8192-8192-8192; smaller for CPU"),
    (M.VICReg, "out_dim", 2048, 8192,
     "facebookresearch/vicreg main_vicreg.py --mlp 8192-8192-8192; smaller for CPU"),
    (M.VICReg, "num_layers", 3, None, "facebookresearch/vicreg main_vicreg.py --mlp: 3 layers"),
    (M.SwAV, "temperature", 0.1, None, "facebookresearch/swav main_swav.py --temperature 0.1"),
    (M.SwAV, "epsilon", 0.05, None, "facebookresearch/swav main_swav.py --epsilon 0.05"),
    (M.SwAV, "sinkhorn_iterations", 3, None,
     "facebookresearch/swav main_swav.py --sinkhorn_iterations 3"),
    (M.SwAV, "num_prototypes", 3000, None,
     "facebookresearch/swav main_swav.py --nmb_prototypes 3000"),
    (M.SwAV, "freeze_prototypes_steps", 313, None,
     "facebookresearch/swav main_swav.py --freeze_prototypes_niters 313"),
    (M.SwAV, "out_dim", 128, None, "facebookresearch/swav main_swav.py --feat_dim 128"),
    (M.SwAV, "hidden_dim", 2048, None, "facebookresearch/swav main_swav.py --hidden_mlp 2048"),
    (M.SwAV, "n_assign", 2, None, "facebookresearch/swav main_swav.py --crops_for_assign 0 1"),
    (M.SwAV, "queue_length", 0, None, "facebookresearch/swav main_swav.py --queue_length 0"),
    (M.SwAV, "queue_start_step", 0, None,
     "npjem: the queue fills from this step (SwAV --epoch_queue_starts 15, in epochs, "
     "with a queue only in its batch-256 scripts)"),
    (M.BYOL, "momentum", 0.996, None,
     "deepmind-research byol/configs/byol.py: _EMA_PRESETS[1000] = 0.996 (base_target_ema)"),
    (M.BYOL, "final_momentum", 1.0, None,
     "deepmind-research byol: cosine schedule of the target EMA up to 1"),
    (M.BYOL, "hidden_dim", 4096, None,
     "deepmind-research byol/configs/byol.py: projector_hidden_size=4096"),
    (M.BYOL, "out_dim", 256, None,
     "deepmind-research byol/configs/byol.py: projector_output_size=256"),
    (M.SimSiam, "hidden_dim", 2048, None, "facebookresearch/simsiam main_simsiam.py --dim 2048"),
    (M.SimSiam, "out_dim", 2048, None, "facebookresearch/simsiam main_simsiam.py --dim 2048"),
    (M.SimSiam, "predictor_hidden_dim", 512, None,
     "facebookresearch/simsiam main_simsiam.py --pred-dim 512"),
    (M.DINO, "student_temp", 0.1, None, "facebookresearch/dino main_dino.py, student_temp 0.1"),
    (M.DINO, "teacher_temp", 0.04, None, "facebookresearch/dino main_dino.py --teacher_temp 0.04"),
    (M.DINO, "warmup_teacher_temp", 0.04, None,
     "facebookresearch/dino main_dino.py --warmup_teacher_temp 0.04"),
    (M.DINO, "warmup_teacher_temp_steps", 0, None,
     "facebookresearch/dino main_dino.py --warmup_teacher_temp_epochs default 0"),
    (M.DINO, "momentum", 0.996, None, "facebookresearch/dino main_dino.py --momentum_teacher 0.996"),
    (M.DINO, "center_momentum", 0.9, None,
     "facebookresearch/dino main_dino.py DINOLoss(center_momentum=0.9)"),
    (M.DINO, "out_dim", 65536, None, "facebookresearch/dino main_dino.py --out_dim 65536"),
    (M.DINO, "hidden_dim", 2048, None,
     "facebookresearch/dino vision_transformer.py DINOHead hidden_dim 2048"),
    (M.DINO, "bottleneck_dim", 256, None,
     "facebookresearch/dino vision_transformer.py DINOHead bottleneck_dim 256"),
    (M.DINO, "num_layers", 3, None, "facebookresearch/dino vision_transformer.py DINOHead nlayers 3"),
    (M.DINO, "n_global", 2, None, "facebookresearch/dino main_dino.py: 2 global crops"),
    (M.DINO, "freeze_last_layer_steps", 0, 1,
     "facebookresearch/dino main_dino.py --freeze_last_layer 1 (epoch); npjem counts steps and leaves the "
     "last layer free by default, since an epoch's length is the loader's, not the method's"),
    (M.Data2Vec, "mask_ratio", 0.6, None,
     "Baevski et al. 2022 (data2vec), §4.1 computer vision: 60 % of the patches masked"),
    (M.Data2Vec, "top_k", 6, None,
     "fairseq config/vision/pretraining/base_imagenet_d2v1.yaml average_top_k_layers 6"),
    (M.Data2Vec, "beta", 2.0, None,
     "fairseq config/vision/pretraining/base_imagenet_d2v1.yaml loss_beta 2.0"),
    (M.Data2Vec, "momentum", 0.999, None,
     "fairseq config/vision/pretraining/base_imagenet_d2v1.yaml ema_decay 0.999"),
    (M.Data2Vec, "final_momentum", 0.9998, None,
     "fairseq config/vision/pretraining/base_imagenet_d2v1.yaml ema_end_decay 0.9998"),
    (M.Data2Vec, "momentum_steps", 10000, 375300,
     "fairseq anneals over ema_anneal_end_step = max_update (375300 in base_imagenet_d2v1.yaml); "
     "npjem's runs are thousands of steps, not hundreds of thousands"),
]


def _name(fn):
    return getattr(fn, "__qualname__", repr(fn))


@pytest.mark.parametrize("fn, arg, value, paper, source", TABLE,
                         ids=[f"{_name(r[0])}.{r[1]}" for r in TABLE])
def test_default_is_the_value_its_source_gives(fn, arg, value, paper, source):
    params = inspect.signature(fn).parameters
    assert arg in params, f"{_name(fn)} has no argument {arg!r}"
    default = params[arg].default
    # type and value both: 1 for 1.0 would still compare equal, but 25 for 25.0 is harmless
    # while True for 1 is not; bools are never numbers here.
    assert not isinstance(default, bool) and isinstance(default, numbers.Real), (
        f"{_name(fn)}({arg}=...) default {default!r} is not a number")
    assert default == value, (
        f"{_name(fn)}({arg}=...) defaults to {default!r}, the table says {value!r} ({source})")
    if paper is not None:
        # A departure from the source must say why, not only where the value comes from.
        assert paper != value and ";" in source, (
            f"{_name(fn)}.{arg}: a row with the source's value {paper!r} must give the reason "
            f"for npjem's {value!r} after a ';'")


# Conventions with a string or bool default: the original code's choice is the default.
CONVENTIONS = [
    (L.info_nce, "directions", "sum", "google-research/simclr objective.py: loss_a + loss_b"),
    (L.info_nce, "intra_view_negatives", True, "google-research/simclr objective.py: logits_aa"),
    (L.info_nce, "include_self", False, "google-research/simclr objective.py: LARGE_NUM mask"),
    (L.byol_loss, "directions", "sum", "deepmind-research byol_experiment.py: loss of both views"),
    (L.vicreg, "halve_variance", True,
     "facebookresearch/vicreg main_vicreg.py: std_loss = mean(relu(1-std_x))/2 + mean(relu(1-std_y))/2"),
    (L.data2vec_loss, "loss", "smooth_l1", "fairseq data2vec vision: loss_beta 2.0 > 0"),
    (M.SimCLR, "directions", "sum", "google-research/simclr objective.py: loss_a + loss_b"),
    (M.MoCo, "symmetric", False, "facebookresearch/moco builder.py: one query/key direction"),
    (M.DINO, "norm_last_layer", True, "facebookresearch/dino main_dino.py --norm_last_layer True"),
    (M.DINO, "batch_norm", False, "facebookresearch/dino main_dino.py --use_bn_in_head False"),
    (L.data2vec_targets, "instance_norm", True,
     "fairseq config/audio/pretraining/base_librispeech.yaml instance_norm_target_layer true"),
    (M.Data2Vec, "instance_norm", True,
     "npjem's choice; fairseq's vision config base_imagenet_d2v1.yaml leaves "
     "instance_norm_target_layer at its default False (a disagreement, reported, not changed)"),
    (M.Data2Vec, "layer_norm_targets", True,
     "fairseq config/vision/pretraining/base_imagenet_d2v1.yaml layer_norm_targets True"),
]


@pytest.mark.parametrize("fn, arg, value, source", CONVENTIONS,
                         ids=[f"{_name(r[0])}.{r[1]}" for r in CONVENTIONS])
def test_convention_default_is_the_original_codes(fn, arg, value, source):
    default = inspect.signature(fn).parameters[arg].default
    assert type(default) is type(value) and default == value, (
        f"{_name(fn)}({arg}=...) defaults to {default!r}, the original code's is {value!r} ({source})")


def _public_callables():
    out = [getattr(L, n) for n in L.__all__]
    out += [getattr(M, n) for n in ("SimCLR", "MoCo", "PIRL", "BarlowTwins", "VICReg", "SwAV",
                                    "BYOL", "SimSiam", "DINO", "Data2Vec")]
    return out


def test_every_numeric_default_has_a_row():
    rows = {(fn, arg) for fn, arg, *_ in TABLE}
    missing = []
    for fn in _public_callables():
        for p in inspect.signature(fn).parameters.values():
            d = p.default
            if d is inspect.Parameter.empty or isinstance(d, bool) or not isinstance(d, numbers.Real):
                continue
            if (fn, p.name) not in rows:
                missing.append(f"{_name(fn)}.{p.name}={d!r}")
    assert not missing, "defaults without a source in TABLE: " + ", ".join(missing)


# ---------------------------------------------------------------- the defaults in use
#
# The rows above read the signatures. A default can also be lost on its way into the
# computation (a wrapper that forwards its own default, a mutated copy of the function), so
# every loss is also called with its defaults and with the table's values spelt out: the two
# must agree to the last bit. Each input is chosen so that every one of those values changes
# the result (checked below by moving each value): a call that ignored one would be seen.

def _rng(seed=0):
    return np.random.default_rng(seed)


def _pairs(n=6, d=4, scale=1.0, seed=0):
    rng = _rng(seed)
    return rng.standard_normal((n, d)) * scale, rng.standard_normal((n, d)) * scale


def _nce_args():
    rng = _rng(1)
    v = rng.standard_normal((4, 3))
    mem = rng.standard_normal((4, 3))
    mem /= np.linalg.norm(mem, axis=1, keepdims=True)
    neg = rng.standard_normal((5, 3))
    neg /= np.linalg.norm(neg, axis=1, keepdims=True)
    return v, mem, neg


def _tiny_rows(n=4, d=3, seed=2):
    """Rows of norm ~1, the first of norm 1e-9: below every norm clamp (1e-8, 1e-6)."""
    a, b = _pairs(n, d, seed=seed)
    a[0] *= 1e-9 / np.linalg.norm(a[0])
    return a, b


def _call(fn, args, kwargs):
    out = fn(*args, **kwargs)
    if isinstance(out, tuple) and hasattr(out, "_fields"):
        # VICReg's total; the balanced clusters' soft codes (labels hide small changes)
        out = out.codes if hasattr(out, "codes") else out[0]
    return np.asarray(backend.to_numpy(out.data if isinstance(out, Tensor) else out), dtype=np.float64)


_nce_v, _nce_mem, _nce_neg = _nce_args()
_t1, _t2 = _tiny_rows()
_s = [np.random.default_rng(3).uniform(-1, 1, (5, 4)) for _ in range(3)]
_layers = [np.random.default_rng(10 + i).standard_normal((2, 5, 3)) * (1 + i) for i in range(10)]
_pred, _target = (np.random.default_rng(4 + i).standard_normal((2, 5, 3)) * 3 for i in range(2))
_mask = np.array([[True, False, True, True, False], [False, True, True, False, True]])
_e = np.random.default_rng(5).uniform(0.0, 2.0, (6, 4))
_lab = np.array([0, 1, 2, 3, 0, 1])
_pm = np.array([True, False, True, False, False, True])

# (loss, positional inputs, the source's values spelt out, {argument: another value}): every
# argument whose value is moved must change the result on these inputs.
IN_USE = [
    (L.pair_margin_loss, (*_pairs(scale=0.3), _pm),
     dict(margin=1.0, eps=0.0, distance="euclidean", reduction="mean"), dict(margin=1.5, eps=0.1)),
    (L.info_nce, _pairs(), dict(temperature=0.1, directions="sum", intra_view_negatives=True,
                                include_self=False, normalize=True, reduction="mean"),
     dict(temperature=0.2)),
    (L.nt_xent, _pairs(), dict(temperature=0.1), dict(temperature=0.2)),
    (L.moco_loss, (*_pairs(4, 3), _nce_neg), dict(temperature=0.2, normalize=True, reduction="mean"),
     dict(temperature=0.07)),
    (L.nce_memory_loss, (_nce_v, _nce_mem, _nce_neg),
     dict(dataset_size=50, temperature=0.07, normalizer=1.0, eps=0.0, normalize=True, reduction="mean"),
     dict(temperature=0.1, normalizer=2.0, eps=0.1)),
    (L.nce_loss, (_nce_v, _nce_v[::-1].copy(), _nce_mem, _nce_neg),
     dict(dataset_size=50, temperature=0.07, lam=0.5, normalizer=1.0, eps=0.0, normalize=True,
          reduction="mean"),
     dict(temperature=0.1, lam=0.3, normalizer=2.0, eps=0.1)),
    (L.nce_normalizer, (_nce_v, _nce_mem, _nce_neg), dict(dataset_size=50, temperature=0.07),
     dict(temperature=0.1)),
    (L.barlow_twins, _pairs(), dict(lambd=5e-3, eps=1e-5, scale=1.0),
     dict(lambd=0.01, eps=0.5, scale=2.0)),
    (L.vicreg, _pairs(scale=0.3), dict(sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0, gamma=1.0,
                                       eps=1e-4, halve_variance=True),
     dict(sim_coeff=1.0, std_coeff=1.0, cov_coeff=0.0, gamma=2.0, eps=0.01, halve_variance=False)),
    (L.sinkhorn_knopp, (_s[0],), dict(epsilon=0.05, n_iters=3, log_domain=False, tol=None),
     dict(epsilon=0.1, n_iters=4)),
    (L.swav, ([_s[0], _s[1]], [L.sinkhorn_knopp(_s[2])]), dict(temperature=0.1),
     dict(temperature=0.2)),
    # a cloud that is still moving after 30 steps, so that the 31st would show
    (L.sinkhorn_clusters, (np.random.default_rng(0).uniform(-1, 1, (9, 2)), 3),
     dict(epsilon=0.05, n_steps=30, generator=0), dict(epsilon=1.05, n_steps=31)),
    (L.negative_cosine, _tiny_rows(), dict(eps=1e-8), dict(eps=1e-7)),
    (L.simsiam_loss, (_t1, _t2, _t2, _t1), dict(eps=1e-8), dict(eps=1e-7)),
    (L.byol_loss, ((_t1, _t2), (_t1, _t2)), dict(directions="sum", eps=1e-6),
     dict(directions="mean", eps=1e-5)),
    (L.dino, ([_s[0], _s[1], _s[2]], [_s[1], _s[0]], np.zeros(4)),
     dict(student_temp=0.1, teacher_temp=0.04), dict(student_temp=0.2, teacher_temp=0.07)),
    (L.dino_center_update, (np.ones(4), [_s[0], _s[1]]), dict(momentum=0.9), dict(momentum=0.8)),
    (L.data2vec_targets, (_layers,),
     dict(top_k=8, instance_norm=True, layer_norm=False, instance_norm_targets=False,
          layer_norm_targets=False, eps=1e-5),
     dict(top_k=9, instance_norm=False, layer_norm=True, instance_norm_targets=True,
          layer_norm_targets=True, eps=0.5)),
    (L.data2vec_loss, (_pred, _target, _mask),
     dict(loss="smooth_l1", beta=2.0, scale=1 / np.sqrt(3), reduction="mean"),
     dict(loss="mse", beta=1.0, scale=1.0, reduction="sum")),
    (L.hinge, (_e[:, 0], _e[:, 1]), dict(margin=1.0, reduction="mean"),
     dict(margin=0.5, reduction="sum")),
    (L.lvq2, (_e[:, 0] * 3, _e[:, 1]), dict(saturation=1.0, delta=None, reduction="mean"),
     dict(saturation=2.0, delta=0.5)),
    (L.square_square, (_e[:, 0], _e[:, 1]), dict(margin=1.0, reduction="mean"),
     dict(margin=1.5)),
    (L.square_exponential, (_e[:, 0], _e[:, 1]), dict(gamma=1.0, reduction="mean"),
     dict(gamma=2.0)),
    (L.nll_mmi, (_e, _lab), dict(beta=1.0, reduction="mean"), dict(beta=2.0)),
    (L.mee, (_e, _lab), dict(beta=1.0, reduction="mean"), dict(beta=2.0)),
    (L.perceptron, (_e, _lab), dict(reduction="mean"), dict(reduction="sum")),
    (L.energy_loss, (_e[:, 0],), dict(reduction="mean"), dict(reduction="sum")),
    (L.log_loss, (_e[:, 0], _e[:, 1]), dict(reduction="mean"), dict(reduction="sum")),
    (L.mce, (_e[:, 0], _e[:, 1]), dict(reduction="mean"), dict(reduction="sum")),
    (L.most_offending, (_e, _lab), dict(distances=np.tile([0.5, 2.0, 0.5, 2.0], (6, 1)), epsilon=0.0),
     dict(epsilon=1.0)),
]


@pytest.mark.parametrize("fn, args, explicit, moved", IN_USE, ids=[_name(r[0]) for r in IN_USE])
def test_default_call_is_the_sources_call(fn, args, explicit, moved):
    # arguments without a default (or a seed) are part of the inputs here
    base = {k: v for k, v in explicit.items() if k in ("dataset_size", "distances", "generator")}
    default = _call(fn, args, base)
    np.testing.assert_array_equal(default, _call(fn, args, explicit))
    for arg, value in moved.items():
        other = _call(fn, args, {**explicit, arg: value})
        assert other.shape != default.shape or not np.allclose(other, default, rtol=1e-12, atol=0), (
            f"{_name(fn)}: moving {arg} to {value!r} leaves the result unchanged on these inputs, "
            f"so they cannot show that its default is used")
