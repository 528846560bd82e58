"""What every method promises at construction: the view maker given is the one used, and the seed
``generator=`` fixes every initial weight (the same seed, the same weights; another seed, others).

A seed that were dropped on the way to a head would leave the run unreproducible; a view maker
that were dropped would silently train on ``simclr_views(32)``.
"""
import numpy as np
import pytest

from npjem.data.augment import Compose, RandomResizedCrop, TwoViews
from npjem.methods import BYOL, DINO, PIRL, MoCo, SimCLR, SimSiam, SwAV, VICReg, BarlowTwins, Data2Vec
from npjem.methods.swav import MultiCropViews
from npjem.nn.models import VisionTransformer

from conftest import tiny_backbone

from conftest import cpu_only  # noqa: E402

pytestmark = cpu_only


def _two_views():
    return TwoViews(Compose([RandomResizedCrop(8, scale=(0.5, 1.0))]))


def _multi_crop():
    return MultiCropViews(Compose([RandomResizedCrop(8, scale=(0.5, 1.0))]), n_global=2)


def _vit():
    # One fixed backbone: only the method's own seed may change its weights.
    return VisionTransformer(img_size=8, patch_size=4, embed_dim=4, depth=2, num_heads=1, generator=0)


BUILDERS = {
    "simclr": lambda views, g: SimCLR(tiny_backbone(), hidden_dim=5, out_dim=3, views=views, generator=g),
    "moco": lambda views, g: MoCo(tiny_backbone(), hidden_dim=5, out_dim=3, queue_size=8, bn_splits=1, views=views,
                                  generator=g),
    "byol": lambda views, g: BYOL(tiny_backbone(), hidden_dim=5, out_dim=3, views=views, generator=g),
    "simsiam": lambda views, g: SimSiam(tiny_backbone(), hidden_dim=5, out_dim=3, predictor_hidden_dim=2,
                                        views=views, generator=g),
    "barlow_twins": lambda views, g: BarlowTwins(tiny_backbone(), hidden_dim=5, out_dim=3, views=views, generator=g),
    "vicreg": lambda views, g: VICReg(tiny_backbone(), hidden_dim=5, out_dim=3, views=views, generator=g),
    "swav": lambda views, g: SwAV(tiny_backbone(), hidden_dim=5, out_dim=3, num_prototypes=4, views=views,
                                  generator=g),
    "dino": lambda views, g: DINO(tiny_backbone(), hidden_dim=5, bottleneck_dim=3, out_dim=4, views=views,
                                  generator=g),
    "pirl": lambda views, g: PIRL(tiny_backbone(), dataset_size=20, out_dim=3, tile_dim=2, views=views, generator=g),
    "data2vec": lambda views, g: Data2Vec(_vit(), top_k=2, views=views, generator=g),
}
VIEWS = {"swav": _multi_crop, "dino": _multi_crop, "data2vec": lambda: Compose([RandomResizedCrop(8)]),
         "pirl": lambda: (lambda x, generator=None: (x, x[:, None].repeat(9, axis=1)))}


def weights(m):
    return {k: np.array(v) for k, v in m.state_dict().items() if v.dtype.kind == "f"}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_the_view_maker_given_is_used(name):
    views = VIEWS.get(name, _two_views)()
    m = BUILDERS[name](views, 0)
    assert m.views is views


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_the_seed_fixes_every_initial_weight(name):
    views = VIEWS.get(name, _two_views)()
    a, b, c = (weights(BUILDERS[name](views, g)) for g in (3, 3, 4))
    assert a.keys() == b.keys() == c.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # Another seed changes the heads (the backbone is built with its own fixed seed here).
    assert any(not np.array_equal(a[k], c[k]) for k in a if not k.startswith("backbone"))


@pytest.mark.parametrize("name", ["byol", "simsiam", "barlow_twins", "vicreg", "swav", "dino", "data2vec"])
def test_diagnostics_are_an_empty_dict_before_the_first_forward(name):
    m = BUILDERS[name](VIEWS.get(name, _two_views)(), 0)
    assert m.diagnostics == {}


@pytest.mark.parametrize("name", sorted(set(BUILDERS) - {"data2vec"}))
def test_feature_dim_sizes_the_heads_of_a_backbone_without_num_features(name):
    from npjem.nn import Sequential

    backbone = Sequential(tiny_backbone())  # 6 features, and no num_features to read them from
    assert not hasattr(backbone, "num_features")
    cls = {"simclr": SimCLR, "moco": MoCo, "byol": BYOL, "simsiam": SimSiam, "barlow_twins": BarlowTwins,
           "vicreg": VICReg, "swav": SwAV, "dino": DINO, "pirl": PIRL}[name]
    kw = {"pirl": {"dataset_size": 20}}.get(name, {})
    with pytest.raises(ValueError, match="feature_dim must be given"):
        cls(backbone, **kw)
    if name != "pirl":  # PIRL's heads have no hidden layer
        kw["hidden_dim"] = 5
    m = cls(backbone, feature_dim=6, generator=0, **kw)
    first = next(p for _, p in m.head.named_parameters() if p.ndim == 2)
    assert first.shape[1] == 6


@pytest.mark.parametrize("name", ["swav", "dino", "data2vec"])
def test_step_counters_are_integers(name):
    # An integer counter stays exact in a checkpoint however long the run.
    m = BUILDERS[name](VIEWS.get(name, _two_views)(), 0)
    assert m.num_steps.dtype == np.int64 and m.num_steps.numpy().tolist() == [0]
