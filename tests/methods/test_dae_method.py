"""npjem.methods.DAE: the convolutional denoising autoencoder, probed like the joint-embedding methods."""
import numpy as np
import pytest

import npjem
from npjem import optim
from npjem.autograd import Tensor
from npjem.ebm.dae import DenoisingAutoencoder, gaussian_noise, masking_noise, reconstruction_energy
from npjem.methods import fit
from npjem.methods.dae import DAE, DAEViews, ImageDecoder
from npjem.nn import Linear, Module
from npjem.nn.models import ConvNet

from conftest import cpu_only


class FlatLinear(Module):
    """x (N, C, H, W) → W x_flat + b: a linear encoder of full width."""

    def __init__(self, d, dtype="float64", generator=0):
        super().__init__()
        self.num_features = d
        self.linear = Linear(d, d, dtype=dtype, generator=generator)

    def forward(self, x):
        return self.linear(x.reshape(x.shape[0], -1))


class Unflatten(Module):
    def __init__(self, shape, dtype="float64", generator=1):
        super().__init__()
        self.shape = tuple(shape)
        d = int(np.prod(shape))
        self.linear = Linear(d, d, dtype=dtype, generator=generator)

    def forward(self, h):
        return self.linear(h).reshape((h.shape[0],) + self.shape)


def _images(n=16, shape=(3, 8, 8), seed=0, dtype="float32"):
    return np.random.default_rng(seed).random((n,) + shape).astype(dtype)


def test_the_reconstruction_loss_falls_on_a_few_batches():
    m = DAE(ConvNet(widths=(8, 16), generator=0), image_shape=(3, 8, 8), decoder_widths=(16, 8), generator=1)
    x = _images()
    hist = fit(m, [x] * 25, optim.Adam(m.trainable_parameters(), lr=3e-3), progress=False, generator=0)
    assert np.mean(hist["loss"][-5:]) < 0.7 * np.mean(hist["loss"][:3])
    assert m.embed(x).shape == (16, 16)  # the probe reads the backbone's pooled features


@cpu_only
def test_without_corruption_a_full_width_linear_dae_reaches_the_identity():
    shape = (3, 2, 2)
    m = DAE(FlatLinear(12), decoder=Unflatten(shape), corruption="gaussian", noise=0.0)
    x = np.random.default_rng(0).standard_normal((64,) + shape)
    opt = optim.Adam(m.trainable_parameters(), lr=2e-2)
    hist = fit(m, [x] * 400, opt, progress=False, generator=0)
    assert hist["loss"][-1] < 1e-4 * hist["loss"][0]
    fresh = np.random.default_rng(1).standard_normal((8,) + shape)  # the identity, not a memorised batch
    np.testing.assert_allclose(m.reconstruct(Tensor(fresh)).numpy(), fresh, atol=1e-2)


@cpu_only
def test_image_and_vector_paths_give_the_same_energy():
    shape = (3, 2, 2)
    x = np.random.default_rng(0).standard_normal((5,) + shape)
    flat = x.reshape(5, -1)
    # the same corruption draws on images as on their flattened rows
    for corrupt, level in ((gaussian_noise, 0.3), (masking_noise, 0.25)):
        img = corrupt(x, level, generator=npjem.random.Generator(3))
        vec = corrupt(flat, level, generator=npjem.random.Generator(3))
        np.testing.assert_array_equal(img.reshape(5, -1), vec)
    # a DAE on images with linear encoder/decoder = the vector DAE with the same weights
    img_dae = DAE(FlatLinear(12), decoder=Unflatten(shape), noise=0.0)
    vec_dae = DenoisingAutoencoder(12, 12, tied=False, activation="identity", dtype="float64")
    vec_dae.encoder.weight.data[...] = img_dae.backbone.linear.weight.data
    vec_dae.encoder.bias.data[...] = img_dae.backbone.linear.bias.data
    vec_dae.decoder.weight.data[...] = img_dae.decoder.linear.weight.data
    vec_dae.decoder.bias.data[...] = img_dae.decoder.linear.bias.data
    x_tilde = gaussian_noise(x, 0.5, generator=npjem.random.Generator(4))
    e_img = reconstruction_energy(Tensor(x), img_dae.reconstruct(Tensor(x_tilde))).numpy()
    e_vec = vec_dae.reconstruction_energy(flat, x_tilde.reshape(5, -1)).numpy()
    np.testing.assert_allclose(e_img, e_vec, rtol=1e-12)
    np.testing.assert_allclose(e_img, ((x - img_dae.reconstruct(Tensor(x_tilde)).numpy()) ** 2).sum(axis=(1, 2, 3)),
                               rtol=1e-12)
    loss = img_dae(Tensor(x), Tensor(x_tilde))
    assert loss.item() == pytest.approx(e_img.mean(), rel=1e-12)


@cpu_only
def test_masking_noise_zeroes_a_fixed_fraction_of_each_image():
    x = _images(n=6, shape=(3, 4, 4), dtype="float64") + 1.0
    out = masking_noise(x, 0.25, generator=npjem.random.Generator(0))
    assert out.shape == x.shape
    np.testing.assert_array_equal((out == 0).reshape(6, -1).sum(axis=1), np.full(6, 12))
    np.testing.assert_array_equal(out[out != 0], x[out != 0])


def test_views_are_the_clean_batch_and_its_corruption():
    x = _images(n=4)
    clean, noisy = DAEViews("masking", 0.5)(x, generator=0)
    np.testing.assert_array_equal(clean, x)
    assert ((noisy == 0).reshape(4, -1).sum(axis=1) == 96).all()
    seen = []
    base = DAEViews("gaussian", 0.1, base=lambda a, generator=None: (seen.append(1) or a[:, :, ::-1],))
    clean, _ = base(x, generator=0)
    np.testing.assert_array_equal(clean, x[:, :, ::-1])
    assert seen == [1]


@cpu_only
def test_the_decoder_doubles_the_size_per_width():
    dec = ImageDecoder(16, image_shape=(3, 16, 8), widths=(8, 4, 2), generator=0)
    out = dec(Tensor(np.zeros((2, 16), dtype="float32")))
    assert tuple(out.shape) == (2, 3, 16, 8) and dec.start == (4, 2)


@pytest.mark.parametrize("make, err, words", [
    (lambda: ImageDecoder(16, image_shape=(3, 10, 10), widths=(8, 4, 2)), ValueError, "divisible by 2"),
    (lambda: ImageDecoder(16, widths=()), ValueError, "widths"),
    (lambda: DAEViews("blur", 0.1), ValueError, "corruption"),
    (lambda: DAEViews("masking", 1.5), ValueError, "noise"),
    (lambda: DAEViews("gaussian", 0.1, base=3), TypeError, "base"),
    (lambda: DAE(ConvNet(widths=(4,)), decoder=lambda h: h), TypeError, "decoder must be"),
])
def test_bad_arguments_name_themselves(make, err, words):
    with pytest.raises(err, match=words):
        make()


@cpu_only
def test_a_decoder_of_the_wrong_size_is_named():
    m = DAE(ConvNet(widths=(4, 8), generator=0), image_shape=(3, 16, 16), decoder_widths=(8, 4))
    x = _images(n=2)
    with pytest.raises(ValueError, match="set image_shape"):
        m(Tensor(x), Tensor(x))
