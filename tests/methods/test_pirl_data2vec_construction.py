"""PIRL's and Data2Vec's constructors: what they build from their arguments, the state they start
with, and the error that names each argument a user can get wrong (the message starts with it)."""
import numpy as np
import pytest

from npjem.autograd import Tensor
from npjem.data.augment import Compose, RandomResizedCrop
from npjem.methods import PIRL, Data2Vec, ViTMeanPool
from npjem.nn.models import VisionTransformer

from conftest import cpu_only, tiny_backbone

pytestmark = cpu_only


def pirl(**kw):
    kw = {"dataset_size": 12, "num_negatives": 5, **kw}
    return PIRL(tiny_backbone(), out_dim=4, tile_dim=3, generator=0, **kw)


def test_pirls_default_views_cut_the_grid_given():
    m = pirl(grid=2)
    assert m.views.jigsaw.grid == 2 and m.head_g.num_tiles == 4
    _, tiles = m.make_views(np.random.default_rng(0).random((2, 3, 32, 32)).astype(np.float32), generator=0)
    assert tiles.shape[:2] == (2, 4)


def test_a_bank_of_two_rows_is_enough():
    # the positive's row and one negative
    m = pirl(dataset_size=2, grid=2, views=None)
    assert m.dataset_size == 2
    with pytest.raises(ValueError, match="^dataset_size must be an integer >= 2, got 1"):
        pirl(dataset_size=1)


def test_before_the_first_step_there_is_nothing_to_write_and_no_negatives():
    m = pirl(grid=2)
    assert m.negative_indices is None and m.memory is None
    m.after_step(0, 1)  # no forward yet: the bank is not touched (nor created)
    assert m.memory is None


@pytest.mark.parametrize("kw, start", [
    (dict(num_negatives=0), "num_negatives must be a positive integer"),
    (dict(lam=1.5), "lam must be <= 1.0"),
    (dict(memory_momentum=-0.1), "memory_momentum must be >= 0.0"),
    (dict(normalizer=0.0), r"normalizer \('auto' or a number\) must be > 0.0"),
    (dict(loss="cross_entropy"), "loss must be one of 'nce', 'infonce'"),
    (dict(nce_eps=-1.0), "nce_eps must be >= 0.0"),
    (dict(h="notes", normalizer=2.0), "h='notes' has no normalizer and no eps: leave normalizer='auto' and nce_eps=0"),
])
def test_pirl_names_a_bad_argument(kw, start):
    with pytest.raises(ValueError, match="^" + start):
        pirl(**kw)


def vit(**kw):
    return VisionTransformer(img_size=8, patch_size=4, embed_dim=6, depth=2, num_heads=1, generator=0, **kw)


def test_vit_mean_pool_averages_the_patch_tokens_seen_through_the_mask():
    pool = ViTMeanPool(vit())
    pool.eval()
    x = Tensor(np.random.default_rng(0).random((2, 3, 8, 8)).astype(np.float32))
    mask = np.array([[True, False, False, True], [False, True, False, False]])
    masked = pool(x, mask)
    np.testing.assert_allclose(masked.numpy(), pool.tokens(x, mask).numpy().mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(pool(x).numpy(), pool.tokens(x).numpy().mean(axis=1), rtol=1e-6)
    assert not np.allclose(masked.numpy(), pool(x).numpy())  # the mask reaches the tokens
    with pytest.raises(TypeError, match="^vit must be an npjem VisionTransformer, got int"):
        ViTMeanPool(3)


def data2vec(**kw):
    kw = {"top_k": 2, **kw}
    return Data2Vec(vit(), views=Compose([RandomResizedCrop(8)]), generator=0, **kw)


def test_data2vec_accepts_both_target_layers():
    assert data2vec(target_layer="output").target_layer == "output"
    assert data2vec(target_layer="ffn").target_layer == "ffn"


@pytest.mark.parametrize("kw, start", [
    (dict(mask_ratio=1.5), "mask_ratio must be <= 1.0"),
    (dict(top_k=3), "top_k must be an integer <= 2"),
    (dict(instance_norm=1), "instance_norm must be True or False"),
    (dict(layer_norm=0), "layer_norm must be True or False"),
    (dict(layer_norm_targets=None), "layer_norm_targets must be True or False"),
    (dict(beta=-1.0), "beta must be >= 0.0"),
    (dict(target_layer="end"), "target_layer must be one of 'ffn', 'output'"),
    (dict(momentum=1.5), "momentum must be <= 1.0"),
    (dict(final_momentum=-0.5), "final_momentum must be >= 0.0"),
])
def test_data2vec_names_a_bad_argument(kw, start):
    with pytest.raises(ValueError, match="^" + start):
        data2vec(**kw)


def test_data2vec_refuses_another_backbone_naming_its_type():
    with pytest.raises(TypeError, match=r"^backbone must be a VisionTransformer \(or ViTMeanPool\), got ConvNet"):
        Data2Vec(tiny_backbone())
