"""The notes' two baselines built as their docstrings say: DAE (its views, its decoder) and the
jigsaw pretext task (its classifier): defaults, the seed, the backbone's dtype, the user's own
parts, diagnostics, and errors that name the argument."""
import numpy as np
import pytest

from npjem import random as nrandom
from npjem.autograd import Tensor
from npjem.data.augment import Jigsaw
from npjem.ebm.dae import corrupt
from npjem.methods.dae import DAE, DAEViews, ImageDecoder
from npjem.methods.jigsaw import JigsawClassifier, JigsawPretext
from npjem.nn import Module
from npjem.nn.models import ConvNet

from conftest import cpu_only

pytestmark = cpu_only


def images(n=2, size=8, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).random((n, 3, size, size)).astype(dtype)


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)


def weight_shapes(module):
    return [tuple(p.shape) for _, p in module.named_parameters() if p.ndim >= 2]


class Pool(Module):
    """A backbone without parameters or ``num_features``: the spatial mean of each channel."""

    def forward(self, x):
        return x.mean(axis=(2, 3))


# ---------------------------------------------------------------- DAE

def test_dae_views_default_to_gaussian_noise_of_half():
    v = DAEViews()
    assert (v.corruption, v.noise, v.base) == ("gaussian", 0.5, None)  # Vincent et al.'s middle of the road


def test_dae_views_draw_the_base_then_the_noise_from_one_generator():
    x = images()
    clean, noisy = DAEViews("gaussian", 0.3)(x, generator=5)
    np.testing.assert_array_equal(clean, x)
    np.testing.assert_array_equal(noisy, corrupt(x, "gaussian", 0.3, generator=nrandom.Generator(5, "cpu")))

    def shift(a, generator=None):
        return (a + generator.random(a.shape, dtype=a.dtype),)

    clean, noisy = DAEViews("gaussian", 0.3, base=shift)(x, generator=5)
    g = nrandom.Generator(5, "cpu")
    (want,) = shift(x, generator=g)
    np.testing.assert_array_equal(clean, want)
    np.testing.assert_array_equal(noisy, corrupt(want, "gaussian", 0.3, generator=g))
    # a base returning one array (not a tuple) is that array
    clean, _ = DAEViews("masking", 0.5, base=lambda a, generator=None: a * 2)(x, generator=5)
    np.testing.assert_array_equal(clean, x * 2)


def test_dae_views_refuse_a_base_that_is_not_callable_naming_it():
    with pytest.raises(TypeError, match=r"base must be a view function views\(x, generator\) or None, got int"):
        DAEViews(base=3)


def test_dae_defaults_and_the_users_own_views():
    m = DAE(ConvNet(widths=(4, 6), generator=0), generator=0)
    assert (m.corruption, m.noise, m.views.corruption, m.views.noise) == ("gaussian", 0.5, "gaussian", 0.5)
    assert (m.decoder.image_shape, m.decoder.widths) == ((3, 32, 32), (64, 32, 16))
    assert m.diagnostics == {}
    own = DAEViews("masking", 0.25)
    assert DAE(ConvNet(widths=(4, 6), generator=0), views=own).views is own


def test_dae_builds_its_decoder_from_the_backbone_seed_and_widths():
    def build(backbone=None, **kw):
        return DAE(backbone or ConvNet(widths=(4, 6), generator=0), image_shape=(3, 8, 8), **kw)

    a, b = build(decoder_widths=(8, 4), generator=3), build(decoder_widths=(8, 4), generator=3)
    assert a.decoder.widths == (8, 4) and same_weights(a.decoder, b.decoder)
    assert not same_weights(a.decoder, build(decoder_widths=(8, 4), generator=4).decoder)
    wide = build(ConvNet(widths=(4, 6), generator=0).double(), decoder_widths=(8, 4))
    assert all(p.dtype == np.float64 for p in wide.decoder.parameters())  # the backbone's dtype
    # a backbone without parameters or num_features: feature_dim sizes the decoder's input
    bare = build(Pool(), feature_dim=3, decoder_widths=(8, 4))
    assert bare.decoder.fc.weight.shape[1] == 3
    assert all(p.dtype == np.float32 for p in bare.decoder.parameters())
    assert tuple(bare.reconstruct(Tensor(images())).shape) == (2, 3, 8, 8)


def test_dae_forward_takes_arrays_and_records_its_loss():
    m = DAE(ConvNet(widths=(4, 6), generator=0), image_shape=(3, 8, 8), decoder_widths=(8, 4), generator=0)
    x, x_tilde = images(), images(seed=1)
    loss = m(x, x_tilde)
    want = ((x - m.reconstruct(Tensor(x_tilde)).numpy()) ** 2).sum(axis=(1, 2, 3)).mean()
    assert loss.item() == pytest.approx(want, rel=1e-5)
    assert m(Tensor(x), Tensor(x_tilde)).item() == loss.item()
    assert m.diagnostics == {"loss": loss.item()}
    wrong = DAE(ConvNet(widths=(4, 6), generator=0), image_shape=(3, 16, 16), decoder_widths=(8, 4))
    with pytest.raises(ValueError, match=r"the decoder gives images of shape \(3, 16, 16\) but x is \(3, 8, 8\)"):
        wrong(x, x_tilde)


def test_image_decoder_defaults_and_its_layers():
    dec = ImageDecoder(5, generator=0)
    assert (dec.image_shape, dec.widths, dec.start) == ((3, 32, 32), (64, 32, 16), (8, 8))
    # Linear(5, 64·8·8), then ConvTranspose2d 64→32 and 32→16 without bias (a BatchNorm follows),
    # then Conv2d 16→3 with its bias
    assert weight_shapes(dec) == [(64 * 8 * 8, 5), (64, 32, 4, 4), (32, 16, 4, 4), (3, 16, 3, 3)]
    names = [k for k, _ in dec.named_parameters()]
    assert sum(k.endswith("bias") for k in names) == 1 + 2 + 1  # fc, two BatchNorms, last conv


def test_image_decoder_follows_its_seed_and_dtype():
    a = ImageDecoder(5, (3, 8, 8), (4, 2), dtype=np.float64, generator=0)
    assert same_weights(a, ImageDecoder(5, (3, 8, 8), (4, 2), dtype=np.float64, generator=0))
    assert not same_weights(a, ImageDecoder(5, (3, 8, 8), (4, 2), dtype=np.float64, generator=1))
    assert all(p.dtype == np.float64 for p in a.parameters())
    assert all(v.dtype == np.float64 for k, v in a.state_dict().items() if "running" in k)


@pytest.mark.parametrize("shape, widths", [((3, 16, 10), (8, 4, 2)), ((3, 10, 16), (8, 4, 2)),
                                           ((3, 12, 16), (8, 4, 2, 2)), ((3, 16, 12), (8, 4, 2, 2))])
def test_image_decoder_refuses_sizes_it_cannot_double_to(shape, widths):
    # three doublings need H and W divisible by 8 (12 is divisible by 2·3, not by 2³)
    with pytest.raises(ValueError, match=f"H and W must be divisible by 2\\^{len(widths) - 1}"):
        ImageDecoder(4, shape, widths)
    ImageDecoder(4, (3, 16, 16) if len(widths) == 3 else (3, 24, 24), widths)


@pytest.mark.parametrize("kw, name", [(dict(image_shape=(3, 0, 8)), "image_shape"), (dict(widths=(4, 0)), "widths"),
                                      (dict(in_features=0), "in_features"), (dict(widths=()), "widths")])
def test_image_decoder_names_a_bad_argument(kw, name):
    args = dict(in_features=4, image_shape=(3, 8, 8), widths=(4, 2))
    args.update(kw)
    with pytest.raises(ValueError, match=f"^{name} must"):
        ImageDecoder(**args)


# ---------------------------------------------------------------- the jigsaw pretext task

def test_jigsaw_classifier_defaults():
    # the context-free network's widths, scaled down for CPU runs (npjem): 64 per tile, 256 hidden,
    # one logit for each of the paper's 100 permutations, nine tiles
    c = JigsawClassifier(6, generator=0)
    assert c.num_tiles == 9
    assert weight_shapes(c) == [(64, 6), (256, 9 * 64), (100, 256)]


def test_jigsaw_classifier_follows_its_seed_and_dtype():
    a = JigsawClassifier(6, 4, 3, 5, 7, dtype=np.float64, generator=0)
    assert same_weights(a, JigsawClassifier(6, 4, 3, 5, 7, dtype=np.float64, generator=0))
    assert all(p.dtype == np.float64 for p in a.parameters())
    assert weight_shapes(a) == [(3, 6), (5, 12), (7, 5)]


@pytest.mark.parametrize("kw, name", [(dict(num_tiles=0), "num_tiles"), (dict(feature_dim=0), "feature_dim"),
                                      (dict(tile_dim=0), "tile_dim"), (dict(hidden_dim=0), "hidden_dim"),
                                      (dict(n_permutations=0), "n_permutations")])
def test_jigsaw_classifier_names_a_bad_argument(kw, name):
    args = dict(feature_dim=6)
    args.update(kw)
    with pytest.raises(ValueError, match=f"^{name} must be a positive integer"):
        JigsawClassifier(**args)


def test_jigsaw_pretext_defaults():
    m = JigsawPretext(ConvNet(widths=(4, 6), generator=0), generator=0)
    # Noroozi & Favaro: a 3 × 3 grid, 100 permutations (their set chosen once, seed 0 here), whole cells
    assert (m.views.grid, m.views.n_permutations, m.views.tile_size) == (3, 100, None)
    np.testing.assert_array_equal(m.permutations, Jigsaw(grid=3, n_permutations=100, permutation_seed=0).permutations)
    assert weight_shapes(m.classifier) == [(64, 6), (256, 9 * 64), (100, 256)]
    assert m.diagnostics == {}


def test_jigsaw_pretext_builds_its_classifier_from_the_grid_backbone_and_seed():
    def build(backbone=None, **kw):
        return JigsawPretext(backbone or ConvNet(widths=(4, 6), generator=0), n_permutations=4, tile_dim=3,
                             hidden_dim=5, **kw)

    m = build(grid=2, generator=1)
    assert m.views.grid == 2 and m.classifier.num_tiles == 4
    assert weight_shapes(m.classifier) == [(3, 6), (5, 12), (4, 5)]
    assert same_weights(m.classifier, build(grid=2, generator=1).classifier)
    assert all(p.dtype == np.float64 for p in build(ConvNet(widths=(4, 6), generator=0).double()).classifier.parameters())
    bare = build(Pool(), feature_dim=3)
    assert weight_shapes(bare.classifier)[0] == (3, 3)
    assert all(p.dtype == np.float32 for p in bare.classifier.parameters())


def test_jigsaw_pretext_views_logits_and_loss():
    m = JigsawPretext(ConvNet(widths=(4, 6), generator=0), n_permutations=4, tile_dim=3, hidden_dim=5, generator=0)
    x = images(size=12)
    patches, j = m.make_views(x, generator=4)
    want_patches, want_j = m.views(x, generator=nrandom.Generator(4, "cpu"))
    np.testing.assert_array_equal(patches.numpy(), want_patches)
    np.testing.assert_array_equal(j.numpy(), want_j)
    m.eval()
    np.testing.assert_array_equal(m.logits(patches.numpy()).numpy(), m.logits(patches).numpy())
    loss = m(patches, j)
    assert m(patches.numpy(), j.numpy()).item() == loss.item()  # arrays as well as Tensors
    acc = float((m.logits(patches).numpy().argmax(axis=1) == want_j).mean())
    assert m.diagnostics == {"loss": loss.item(), "accuracy": acc}


def test_jigsaw_pretext_refuses_other_views_naming_them():
    with pytest.raises(TypeError, match="views must be an npjem.data.augment.Jigsaw, got function"):
        JigsawPretext(ConvNet(widths=(4,)), views=lambda x, generator=None: x)
