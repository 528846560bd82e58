"""Tests of npjem.data.augment: shapes, dtypes, ranges, seeds, parameter ranges, identities, oracles."""
import colorsys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import ndimage

from npjem import backend
from npjem import random as npr
from npjem.data import augment as A

DEVICE = backend.default_device()
if DEVICE != "cpu" and not backend.cupy_available():
    pytest.skip("NPJEM_DEVICE asks for a GPU but CuPy or a GPU is not available", allow_module_level=True)
XP = backend.xp_for_device(DEVICE)
to_np = backend.to_numpy


def images(n=6, c=3, h=12, w=12, dtype=np.float32, seed=0):
    """Random images in [0, 1] on the test device (drawn on the host so every device sees the same)."""
    host = np.random.default_rng(seed).random((n, c, h, w)).astype(dtype)
    return backend.to_device(host, DEVICE)


def gen(seed):
    return npr.default_rng(seed, device=DEVICE)


def assert_same(a, b, atol=0.0):
    np.testing.assert_allclose(to_np(a), to_np(b), rtol=0, atol=atol)


# --------------------------------------------------------------------- catalogue of transforms

RANDOM_TRANSFORMS = {
    "crop": lambda: A.RandomResizedCrop(8),
    "flip": lambda: A.RandomHorizontalFlip(0.5),
    "rotation": lambda: A.RandomRotation(180, p=0.7),
    "invert": lambda: A.RandomInvert(0.5),
    "vflip": lambda: A.RandomVerticalFlip(0.5),
    "jitter": lambda: A.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
    "gray": lambda: A.RandomGrayscale(0.5),
    "blur": lambda: A.GaussianBlur(sigma=(0.1, 2.0), p=0.5),
    "solarize": lambda: A.Solarize(0.5, p=0.5),
    "noise_clip": lambda: A.GaussianNoise((0.0, 0.2), clip=True),
    "compose": lambda: A.Compose([A.RandomResizedCrop(10), A.RandomHorizontalFlip(),
                                  A.ColorJitter(0.4, 0.4, 0.2, 0.1, p=0.8), A.RandomGrayscale(0.2)]),
    "random_apply": lambda: A.RandomApply(A.ColorJitter(0.4, 0.4, 0.4, 0.1), p=0.5),
}


@pytest.mark.parametrize("name", sorted(RANDOM_TRANSFORMS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_shape_dtype_and_range_kept(name, dtype):
    t = RANDOM_TRANSFORMS[name]()
    x = images(dtype=dtype)
    out = t(x, generator=gen(0))
    assert backend.get_array_module(out) is XP
    assert out.dtype == dtype
    expected = (6, 3, 8, 8) if name == "crop" else (6, 3, 10, 10) if name == "compose" else x.shape
    assert out.shape == expected
    o = to_np(out)
    assert np.all(np.isfinite(o)) and o.min() >= 0.0 and o.max() <= 1.0


@pytest.mark.parametrize("name", sorted(RANDOM_TRANSFORMS))
def test_reproducible_from_seed(name):
    t = RANDOM_TRANSFORMS[name]()
    x = images(n=16)
    a = to_np(t(x, generator=7))
    b = to_np(t(x, generator=gen(7)))
    c = to_np(t(x, generator=8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(to_np(x), to_np(images(n=16)))  # the input is never written to


def test_grayscale_only_ops_accept_any_channel_count():
    x = images(c=5)
    for t in (A.RandomResizedCrop(6), A.RandomHorizontalFlip(1.0), A.GaussianBlur(3, p=1.0),
              A.Solarize(p=1.0), A.GaussianNoise(0.1)):
        out = t(x, generator=0)
        assert out.shape[:2] == (6, 5) and out.dtype == np.float32
    with pytest.raises(ValueError, match="3 channels"):
        A.ColorJitter(0.4)(x)
    with pytest.raises(ValueError, match="3 channels"):
        A.RandomGrayscale(1.0)(x)


@pytest.mark.parametrize("n", [0, 1])
def test_empty_and_single_batches(n):
    x = images(n=n, h=16, w=16)
    for t in (A.RandomResizedCrop(8), A.ColorJitter(0.4, 0.4, 0.4, 0.1, p=1.0), A.GaussianBlur(p=1.0),
              A.RandomApply(A.RandomGrayscale(1.0), p=1.0)):
        out = t(x, generator=0)
        assert out.shape[0] == n and out.dtype == np.float32
    views = A.MultiCrop(16, 8, n_local=2)(x, generator=0)
    assert [v.shape[0] for v in views] == [n] * 4
    patches, idx = A.Jigsaw(grid=2)(x, generator=0)
    assert patches.shape == (n, 4, 3, 8, 8) and idx.shape == (n,)


def test_input_validation_names_x():
    with pytest.raises(ValueError, match="x must"):
        A.RandomHorizontalFlip()(XP.zeros((3, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="x must"):
        A.RandomHorizontalFlip()(XP.zeros((2, 3, 4, 4), dtype=np.int64))


# --------------------------------------------------------------------- RandomResizedCrop

@st.composite
def crop_settings(draw):
    h = draw(st.integers(4, 24))
    w = draw(st.integers(4, 24))
    s_lo = draw(st.floats(0.02, 1.0))
    s_hi = draw(st.floats(s_lo, 1.0))
    r_lo = draw(st.floats(0.3, 3.0))
    r_hi = draw(st.floats(r_lo, 3.5))
    return h, w, (s_lo, s_hi), (r_lo, r_hi), draw(st.integers(0, 2**31 - 1))


@given(crop_settings())
def test_crop_params_within_ranges(setting):
    h, w, scale, ratio, seed = setting
    t = A.RandomResizedCrop(5, scale=scale, ratio=ratio)
    p = {k: to_np(v) for k, v in t.sample_params((64, 3, h, w), gen(seed)).items()}
    top, left, hh, ww, fb = p["top"], p["left"], p["height"], p["width"], p["fallback"]
    assert np.all(hh >= 1) and np.all(ww >= 1) and np.all(hh <= h) and np.all(ww <= w)
    assert np.all(top >= 0) and np.all(left >= 0) and np.all(top + hh <= h) and np.all(left + ww <= w)
    ok = ~fb
    area = h * w
    # accepted tries: their draws are inside the ranges and the box is their rounding
    assert np.all((p["scale"][ok] >= scale[0]) & (p["scale"][ok] <= scale[1]))
    assert np.all((p["ratio"][ok] >= ratio[0] * (1 - 1e-12)) & (p["ratio"][ok] <= ratio[1] * (1 + 1e-12)))
    np.testing.assert_array_equal(ww[ok], np.round(np.sqrt(area * p["scale"][ok] * p["ratio"][ok])))
    np.testing.assert_array_equal(hh[ok], np.round(np.sqrt(area * p["scale"][ok] / p["ratio"][ok])))
    tol = 0.5 * (h + w + 1) + 0.25  # rounding of w and h moves the area by at most this
    assert np.all(hh[ok] * ww[ok] >= scale[0] * area - tol)
    assert np.all(hh[ok] * ww[ok] <= scale[1] * area + tol)
    # fallback: torchvision's centre crop with the ratio clamped into range
    if fb.any():
        if w / h < ratio[0]:
            fw, fh = w, int(round(w / ratio[0]))
        elif w / h > ratio[1]:
            fw, fh = int(round(h * ratio[1])), h
        else:
            fw, fh = w, h
        assert np.all(hh[fb] == fh) and np.all(ww[fb] == fw)
        assert np.all(top[fb] == (h - fh) // 2) and np.all(left[fb] == (w - fw) // 2)


def test_crop_positions_cover_the_image():
    t = A.RandomResizedCrop(4, scale=(0.25, 0.25), ratio=(1.0, 1.0))
    p = t.sample_params((4000, 1, 16, 16), gen(0))
    assert np.all(to_np(p["height"]) == 8) and not to_np(p["fallback"]).any()
    counts = np.bincount(to_np(p["top"]), minlength=9)
    assert counts.shape == (9,) and counts.min() > 300  # uniform over the 9 positions 0..8


def test_crop_falls_back_when_no_try_fits():
    # a wide aspect range on a tall image: ratio (3, 4) can never fit at scale 1
    t = A.RandomResizedCrop(6, scale=(1.0, 1.0), ratio=(3.0, 4.0))
    p = {k: to_np(v) for k, v in t.sample_params((5, 3, 12, 6), gen(0)).items()}
    assert p["fallback"].all()
    np.testing.assert_array_equal(p["height"], 2)  # round(6 / 3)
    np.testing.assert_array_equal(p["width"], 6)
    np.testing.assert_array_equal(p["top"], 5)
    np.testing.assert_array_equal(p["left"], 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_crop_full_box_same_size_is_identity(dtype):
    x = images(h=11, w=11, dtype=dtype)
    out = A.RandomResizedCrop(11, scale=(1.0, 1.0), ratio=(1.0, 1.0))(x, generator=3)
    assert out.dtype == dtype
    assert_same(out, x, atol=1e-6)


@given(st.integers(0, 2**31 - 1), st.integers(3, 12), st.integers(3, 12))
def test_crop_resamples_linear_images_exactly(seed, out_h, out_w):
    # bilinear interpolation reproduces an affine image; the oracle is the sampling formula itself
    n, h, w = 5, 13, 9
    ii, jj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    a = np.random.default_rng(seed).uniform(-1, 1, (n, 2, 3))
    host = a[:, :, 0, None, None] * ii + a[:, :, 1, None, None] * jj + a[:, :, 2, None, None]
    x = backend.to_device(host, DEVICE)
    t = A.RandomResizedCrop((out_h, out_w), scale=(0.05, 1.0))
    p = {k: to_np(v) for k, v in t.sample_params(x.shape, gen(seed)).items()}
    out = to_np(t.apply(x, {k: backend.to_device(v, DEVICE) for k, v in p.items()}))

    def src(start, length, m):
        s = (np.arange(m) + 0.5) * length[:, None] / m - 0.5
        return start[:, None] + np.clip(s, 0, length[:, None] - 1)

    sy = src(p["top"], p["height"], out_h)
    sx = src(p["left"], p["width"], out_w)
    want = (a[:, :, 0, None, None] * sy[:, None, :, None] + a[:, :, 1, None, None] * sx[:, None, None, :]
            + a[:, :, 2, None, None])
    np.testing.assert_allclose(out, want, atol=1e-10)


def test_crop_halving_averages_two_by_two_blocks():
    x = images(n=3, h=8, w=8, dtype=np.float64)
    t = A.RandomResizedCrop(4, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    out = to_np(t(x, generator=0))
    want = to_np(x).reshape(3, 3, 4, 2, 4, 2).mean(axis=(3, 5))
    np.testing.assert_allclose(out, want, atol=1e-12)


# --------------------------------------------------------------------- flip, grayscale, solarize

def test_flip():
    x = images()
    once = A.RandomHorizontalFlip(1.0)(x, generator=0)
    assert_same(once, to_np(x)[..., ::-1])
    assert_same(A.RandomHorizontalFlip(1.0)(once, generator=1), x)
    assert_same(A.RandomHorizontalFlip(0.0)(x, generator=0), x)
    t = A.RandomHorizontalFlip(0.5)
    p = t.sample_params((32,) + x.shape[1:], gen(4))
    big = images(n=32)
    out, f, xb = to_np(t.apply(big, p)), to_np(p["flip"]), to_np(big)
    np.testing.assert_array_equal(out[f], xb[f][..., ::-1])
    np.testing.assert_array_equal(out[~f], xb[~f])
    assert 0 < f.sum() < 32


def test_grayscale_has_equal_channels_and_luma_weights():
    x = images()
    out = to_np(A.RandomGrayscale(1.0)(x, generator=0))
    xh = to_np(x)
    luma = 0.299 * xh[:, 0] + 0.587 * xh[:, 1] + 0.114 * xh[:, 2]
    for c in range(3):
        np.testing.assert_array_equal(out[:, c], out[:, 0])
        np.testing.assert_allclose(out[:, c], luma, atol=1e-6)
    assert_same(A.RandomGrayscale(0.0)(x, generator=0), x)
    assert A.rgb_to_grayscale(x).shape == (6, 1, 12, 12)


def test_solarize():
    x = images()
    xh = to_np(x)
    out = to_np(A.Solarize(0.3, p=1.0)(x, generator=0))
    np.testing.assert_array_equal(out, np.where(xh >= 0.3, np.float32(1) - xh, xh))
    assert_same(A.Solarize(0.3, p=0.0)(x, generator=0), x)


# --------------------------------------------------------------------- colour

@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=12))
def test_rgb_to_hsv_matches_colorsys_and_round_trips(pixels):
    host = np.array(pixels, dtype=np.float64).T.reshape(1, 3, 1, -1)
    x = backend.to_device(host, DEVICE)
    hsv = to_np(A.rgb_to_hsv(x))
    want = np.array([colorsys.rgb_to_hsv(*p) for p in pixels]).T.reshape(1, 3, 1, -1)
    # hue is circular: 1.0 and 0.0 are the same hue
    dh = np.abs(hsv[:, 0] - want[:, 0])
    np.testing.assert_allclose(np.minimum(dh, 1 - dh), 0, atol=1e-9)
    np.testing.assert_allclose(hsv[:, 1:], want[:, 1:], atol=1e-9)
    back = to_np(A.hsv_to_rgb(A.rgb_to_hsv(x)))
    np.testing.assert_allclose(back, host, atol=1e-12)
    rgb = np.array([colorsys.hsv_to_rgb(*p) for p in want.reshape(3, -1).T]).T.reshape(1, 3, 1, -1)
    np.testing.assert_allclose(to_np(A.hsv_to_rgb(backend.to_device(want, DEVICE))), rgb, atol=1e-12)


def test_hsv_round_trip_float32():
    x = images(n=4, h=16, w=16)
    y = A.hsv_to_rgb(A.rgb_to_hsv(x))
    assert y.dtype == np.float32 and A.rgb_to_hsv(x).dtype == np.float32
    assert_same(y, x, atol=2e-6)


def test_hue_shift():
    x = images()
    assert_same(A.adjust_hue(x, 0.0), x, atol=2e-6)
    # a full turn, and +h then -h, give the image back
    assert_same(A.adjust_hue(A.adjust_hue(x, 0.3), -0.3), x, atol=1e-5)
    red = backend.to_device(np.array([1.0, 0.0, 0.0], dtype=np.float32).reshape(1, 3, 1, 1), DEVICE)
    assert_same(A.adjust_hue(red, 1.0 / 3.0), np.array([0, 1, 0], np.float32).reshape(1, 3, 1, 1), atol=1e-6)
    assert_same(A.adjust_hue(red, -1.0 / 3.0), np.array([0, 0, 1], np.float32).reshape(1, 3, 1, 1), atol=1e-6)
    # per-sample shifts
    two = XP.concatenate([red, red])
    out = A.adjust_hue(two, XP.asarray([1.0 / 3.0, 0.0]))
    assert_same(out[:, :, 0, 0], np.array([[0, 1, 0], [1, 0, 0]], np.float32), atol=1e-6)


def test_adjust_extremes():
    x = images()
    xh = to_np(x)
    assert_same(A.adjust_brightness(x, 0.0), np.zeros_like(xh))
    assert_same(A.adjust_brightness(x, 1.0), x)
    assert_same(A.adjust_brightness(x, 2.0), np.clip(2 * xh, 0, 1), atol=1e-7)
    flat = to_np(A.adjust_contrast(x, 0.0))
    luma_mean = (0.299 * xh[:, 0] + 0.587 * xh[:, 1] + 0.114 * xh[:, 2]).mean(axis=(1, 2))
    np.testing.assert_allclose(flat, np.broadcast_to(luma_mean[:, None, None, None], xh.shape), atol=1e-6)
    assert_same(A.adjust_saturation(x, 0.0), A.rgb_to_grayscale(x, 3), atol=1e-7)
    assert_same(A.adjust_saturation(x, 1.0), x, atol=1e-7)


def test_jitter_with_zero_strengths_is_identity():
    x = images()
    assert_same(A.ColorJitter(0, 0, 0, 0, p=1.0)(x, generator=0), x)
    assert_same(A.ColorJitter((1, 1), (1, 1), (1, 1), (0, 0), p=1.0)(x, generator=0), x)
    assert_same(A.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.0)(x, generator=0), x)


@given(st.floats(0, 0.9), st.floats(0, 0.9), st.floats(0, 2), st.floats(0, 0.5), st.integers(0, 2**31 - 1))
def test_jitter_factors_within_ranges(b, c, s, h, seed):
    t = A.ColorJitter(b, c, s, h, p=0.5)
    p = {k: (None if v is None else to_np(v)) for k, v in t.sample_params((50, 3, 4, 4), gen(seed)).items()}
    for name, lo, hi in (("brightness", 1 - b, 1 + b), ("contrast", 1 - c, 1 + c),
                         ("saturation", max(0.0, 1 - s), 1 + s), ("hue", -h, h)):
        if (name == "hue" and h == 0) or (name != "hue" and (lo, hi) == (1.0, 1.0)):
            assert p[name] is None
        else:
            assert np.all((p[name] >= lo) & (p[name] <= hi))
    np.testing.assert_array_equal(np.sort(p["order"], axis=1), np.tile(np.arange(4), (50, 1)))


def test_jitter_matches_a_per_sample_loop_in_the_drawn_order():
    x = images(n=24, h=5, w=5, dtype=np.float64)
    t = A.ColorJitter(0.5, 0.5, 0.5, 0.2, p=0.75)
    params = t.sample_params(x.shape, gen(11))
    out = to_np(t.apply(x, params))
    p = {k: to_np(v) for k, v in params.items()}
    xh = to_np(x)
    orders = {tuple(o) for o in p["order"]}
    assert len(orders) > 5 and 0 < p["apply"].sum() < 24

    def gray(img):
        return 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]

    def hue(img, shift):
        hsv = np.array([colorsys.rgb_to_hsv(*px) for px in img.reshape(3, -1).T])
        hsv[:, 0] = (hsv[:, 0] + shift) % 1.0
        return np.array([colorsys.hsv_to_rgb(*px) for px in hsv]).T.reshape(img.shape)

    for i in range(24):
        img = xh[i].copy()
        if p["apply"][i]:
            for op in p["order"][i]:
                if op == 0:
                    img = np.clip(p["brightness"][i] * img, 0, 1)
                elif op == 1:
                    f = p["contrast"][i]
                    img = np.clip(f * img + (1 - f) * gray(img).mean(), 0, 1)
                elif op == 2:
                    f = p["saturation"][i]
                    img = np.clip(f * img + (1 - f) * gray(img)[None], 0, 1)
                else:
                    img = hue(img, p["hue"][i])
        np.testing.assert_allclose(out[i], img, atol=1e-10, err_msg=f"sample {i}")


# --------------------------------------------------------------------- blur, noise, normalize

def test_blur_preserves_a_constant_image():
    x = XP.full((4, 3, 9, 9), 0.37, dtype=np.float32)
    out = A.GaussianBlur(sigma=(0.1, 3.0), p=1.0)(x, generator=0)
    assert out.dtype == np.float32
    assert_same(out, x, atol=1e-6)


@pytest.mark.parametrize("kernel_size", [None, 5])
def test_blur_matches_scipy_convolution(kernel_size):
    x = images(n=5, c=2, h=10, w=13, dtype=np.float64)
    t = A.GaussianBlur(kernel_size=kernel_size, sigma=(0.3, 2.0), p=0.6)
    params = t.sample_params(x.shape, gen(5))
    out = to_np(t.apply(x, params))
    sig, blur = to_np(params["sigma"]), to_np(params["blur"])
    assert np.all((sig >= 0.3) & (sig <= 2.0)) and 0 < blur.sum() < 5
    k = t.kernel_size_for(x.shape)
    assert k == (5 if kernel_size else 13)
    r = k // 2
    xh = to_np(x)
    for i in range(5):
        if not blur[i]:
            np.testing.assert_array_equal(out[i], xh[i])
            continue
        taps = np.exp(-0.5 * (np.arange(-r, r + 1) / sig[i]) ** 2)
        taps /= taps.sum()
        want = ndimage.convolve1d(ndimage.convolve1d(xh[i], taps, axis=2, mode="mirror"), taps, axis=1, mode="mirror")
        np.testing.assert_allclose(out[i], want, atol=1e-12)


def test_blur_kernel_too_large_for_image():
    with pytest.raises(ValueError, match="kernel_size"):
        A.GaussianBlur(kernel_size=9, p=1.0)(images(h=4, w=4), generator=0)
    # automatic size shrinks to fit a small image
    assert A.GaussianBlur(sigma=(1.0, 2.0)).kernel_size_for((1, 3, 4, 4)) == 7


def test_noise():
    x = images(n=64, h=8, w=8)
    assert_same(A.GaussianNoise(0.0)(x, generator=0), x)
    t = A.GaussianNoise((0.05, 0.2))
    params = t.sample_params(x.shape, gen(1), dtype=np.float32)
    out = to_np(t.apply(x, params))
    std = to_np(params["std"])
    assert out.dtype == np.float32 and np.all((std >= 0.05) & (std <= 0.2))
    resid = (out - to_np(x)).reshape(64, -1)
    np.testing.assert_allclose(resid.std(axis=1) / std, 1.0, atol=0.25)
    assert t(x, generator=1).dtype == np.float32
    assert t(images(dtype=np.float64), generator=1).dtype == np.float64
    half = to_np(A.GaussianNoise(0.1, p=0.5)(x, generator=3))
    clean = np.all(half == to_np(x), axis=(1, 2, 3))
    assert 10 < clean.sum() < 54


def test_normalize_and_inverse():
    x = images(n=3)
    norm = A.Normalize((0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261))
    y = norm(x)
    assert y.dtype == np.float32
    want = (to_np(x) - np.array([0.4914, 0.4822, 0.4465], np.float32)[:, None, None]) / np.array(
        [0.247, 0.243, 0.261], np.float32)[:, None, None]
    np.testing.assert_allclose(to_np(y), want, atol=1e-6)
    assert_same(norm.inverse(y), x, atol=1e-6)
    with pytest.raises(ValueError, match="mean"):
        norm(images(c=2))


# --------------------------------------------------------------------- compose, random apply, views

def test_compose_draws_from_one_generator():
    x = images()
    steps = [A.RandomResizedCrop(8), A.ColorJitter(0.4, 0.4, 0.4, 0.1), A.RandomHorizontalFlip()]
    out = A.Compose(steps)(x, generator=5)
    g = gen(5)
    manual = x
    for s in steps:
        manual = s(manual, generator=g)
    assert_same(out, manual)


def test_random_apply_touches_only_the_chosen_samples():
    x = images(n=40)
    t = A.RandomApply(A.Solarize(0.0, p=1.0), p=0.5)  # inner op: x -> 1 - x everywhere
    out, xh = to_np(t(x, generator=2)), to_np(x)
    hit = np.all(out == np.float32(1) - xh, axis=(1, 2, 3))
    kept = np.all(out == xh, axis=(1, 2, 3))
    assert np.all(hit | kept) and 5 < hit.sum() < 35
    assert_same(A.RandomApply(A.Solarize(0.0, p=1.0), p=0.0)(x, generator=2), x)
    with pytest.raises(ValueError, match="keep the image shape"):
        A.RandomApply(A.RandomResizedCrop(4), p=0.5)(x, generator=0)


def test_simclr_and_byol_views():
    x = images(n=8, h=32, w=32)
    for maker in (A.simclr_views, A.byol_views):
        v1, v2 = maker(32)(x, generator=0)
        assert v1.shape == v2.shape == (8, 3, 32, 32) and v1.dtype == v2.dtype == np.float32
        assert not np.array_equal(to_np(v1), to_np(v2))
        w1, w2 = maker(32)(x, generator=0)
        assert_same(v1, w1)
        assert_same(v2, w2)
        assert to_np(v1).min() >= 0 and to_np(v1).max() <= 1
    simclr = A.simclr_views(32).transform1.transforms
    jitter = [t for t in simclr if isinstance(t, A.ColorJitter)][0]
    assert jitter.brightness == (0.6, 1.4) and jitter.hue == (-0.1, 0.1) and jitter.p == 0.8
    assert not any(isinstance(t, A.GaussianBlur) for t in simclr)
    byol = A.byol_views(32)
    blur_p = [[t.p for t in v.transforms if isinstance(t, A.GaussianBlur)][0] for v in (byol.transform1, byol.transform2)]
    sol = [[t.p for t in v.transforms if isinstance(t, A.Solarize)] for v in (byol.transform1, byol.transform2)]
    assert blur_p == [1.0, 0.1] and sol == [[], [0.2]]


def test_two_views_reuses_transform():
    t = A.TwoViews(A.RandomHorizontalFlip(1.0))
    x = images()
    a, b = t(x, generator=0)
    assert_same(a, b)


def test_multicrop():
    x = images(n=4, h=32, w=32)
    views = A.MultiCrop(global_size=32, local_size=16, n_local=3)(x, generator=0)
    assert [v.shape for v in views] == [(4, 3, 32, 32)] * 2 + [(4, 3, 16, 16)] * 3
    assert all(v.dtype == np.float32 for v in views)
    again = A.MultiCrop(global_size=32, local_size=16, n_local=3)(x, generator=0)
    for v, w in zip(views, again):
        assert_same(v, w)
    assert not np.array_equal(to_np(views[2]), to_np(views[3]))
    mc = A.MultiCrop(global_scale=(0.4, 1.0), local_scale=(0.05, 0.4))
    assert mc.global1.transforms[0].scale == (0.4, 1.0) and mc.local.transforms[0].scale == (0.05, 0.4)


# --------------------------------------------------------------------- masks and jigsaw

@given(st.integers(0, 9), st.integers(1, 8), st.integers(1, 8), st.floats(0, 1), st.integers(0, 2**31 - 1))
def test_patch_mask_exact_count(n, rows, cols, ratio, seed):
    m = A.random_patch_mask(n, (rows, cols), ratio, generator=gen(seed))
    mh = to_np(m)
    assert mh.dtype == bool and mh.shape == (n, rows * cols)
    np.testing.assert_array_equal(mh.sum(axis=1), round(ratio * rows * cols))


def test_patch_mask_random_and_reproducible():
    a = to_np(A.random_patch_mask(200, 14, 0.6, generator=gen(0)))
    b = to_np(A.random_patch_mask(200, 14, 0.6, generator=gen(0)))
    c = to_np(A.random_patch_mask(200, 14, 0.6, generator=gen(1)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert len({r.tobytes() for r in a}) == 200  # rows differ
    freq = a.mean(axis=0)  # every patch is masked about 60% of the time
    assert np.all(np.abs(freq - 0.6) < 0.15)


@pytest.mark.parametrize("tile_size", [None, 3])
def test_jigsaw_inverse_permutation_recovers_tiles(tile_size):
    x = images(n=7, h=14, w=13)
    jig = A.Jigsaw(grid=3, tile_size=tile_size, n_permutations=30)
    params = jig.sample_params(x.shape, gen(3))
    patches, idx = jig.apply(x, params)
    th = 4 if tile_size is None else 3
    assert patches.shape == (7, 9, 3, th, th) and patches.dtype == np.float32
    patches, idx = to_np(patches), to_np(idx)
    oy, ox, xh = to_np(params["off_y"]), to_np(params["off_x"]), to_np(x)
    assert np.all((idx >= 0) & (idx < 30))
    assert np.all((oy >= 0) & (oy <= 4 - th) & (ox >= 0) & (ox <= 4 - th))
    for n in range(7):
        inv = np.argsort(jig.permutations[idx[n]])
        tiles = patches[n][inv]
        for t in range(9):
            r, c = divmod(t, 3)
            y0, x0 = 4 * r + oy[n, t], 4 * c + ox[n, t]
            np.testing.assert_array_equal(tiles[t], xh[n, :, y0:y0 + th, x0:x0 + th])
    # a call with a seed is apply(sample_params) with that seed
    p2, i2 = jig(x, generator=3)
    np.testing.assert_array_equal(to_np(p2), patches)
    np.testing.assert_array_equal(to_np(i2), idx)


def test_jigsaw_permutation_set_and_transform():
    jig = A.Jigsaw(grid=3, n_permutations=50, permutation_seed=1)
    perms = jig.permutations
    assert perms.shape == (50, 9)
    np.testing.assert_array_equal(np.sort(perms, axis=1), np.tile(np.arange(9), (50, 1)))
    assert len({p.tobytes() for p in perms}) == 50
    dist = (perms[:, None, :] != perms[None, :, :]).sum(-1) + 9 * np.eye(50, dtype=int)
    assert dist.min() >= 6  # spread out: far from random pairs' worst case (2)
    np.testing.assert_array_equal(A.Jigsaw(grid=3, n_permutations=50, permutation_seed=1).permutations, perms)
    assert A.Jigsaw(grid=2, n_permutations=24).permutations.shape == (24, 4)
    with pytest.raises(ValueError, match="n_permutations"):
        A.Jigsaw(grid=2, n_permutations=25)
    x = images(n=3, h=12, w=12)
    patches, _ = A.Jigsaw(grid=3, transform=A.RandomResizedCrop(6))(x, generator=0)
    assert patches.shape == (3, 9, 3, 6, 6)


# --------------------------------------------------------------------- argument validation

BAD_ARGS = [
    (lambda: A.RandomResizedCrop(0), "size"),
    (lambda: A.RandomResizedCrop(8, scale=(0.5, 0.2)), "scale"),
    (lambda: A.RandomResizedCrop(8, scale=(0.1, 1.5)), "scale"),
    (lambda: A.RandomResizedCrop(8, ratio=(0.0, 1.0)), "ratio"),
    (lambda: A.RandomResizedCrop(8, ratio=(2.0, 1.0)), "ratio"),
    (lambda: A.RandomHorizontalFlip(1.5), "p"),
    (lambda: A.ColorJitter(brightness=-0.1), "brightness"),
    (lambda: A.ColorJitter(contrast=(0.5, 0.2)), "contrast"),
    (lambda: A.ColorJitter(saturation=(-1.0, 1.0)), "saturation"),
    (lambda: A.ColorJitter(hue=0.6), "hue"),
    (lambda: A.ColorJitter(hue=(-0.7, 0.1)), "hue"),
    (lambda: A.ColorJitter(0.4, p=-0.1), "p"),
    (lambda: A.RandomGrayscale(2), "p"),
    (lambda: A.GaussianBlur(kernel_size=4), "kernel_size"),
    (lambda: A.GaussianBlur(sigma=(0.0, 1.0)), "sigma"),
    (lambda: A.GaussianBlur(sigma=(2.0, 1.0)), "sigma"),
    (lambda: A.Solarize(threshold=1.5), "threshold"),
    (lambda: A.GaussianNoise(-0.1), "std"),
    (lambda: A.Normalize((0.5, 0.5), (0.2, 0.0)), "std"),
    (lambda: A.Normalize((0.5, 0.5, 0.5), (0.2, 0.2)), "mean and std"),
    (lambda: A.Compose([A.RandomHorizontalFlip(), 3]), r"transforms\[1\]"),
    (lambda: A.RandomApply("flip"), "transform"),
    (lambda: A.TwoViews(None), "transform1"),
    (lambda: A.MultiCrop(n_local=-1), "n_local"),
    (lambda: A.MultiCrop(local_scale=(0.4, 0.05)), "local_scale"),
    (lambda: A.random_patch_mask(4, 4, 1.2), "mask_ratio"),
    (lambda: A.random_patch_mask(4, 0, 0.5), "grid"),
    (lambda: A.random_patch_mask(-1, 4, 0.5), "n"),
    (lambda: A.Jigsaw(grid=1), "grid"),
    (lambda: A.Jigsaw(grid=3, n_permutations=0), "n_permutations"),
    (lambda: A.Jigsaw(grid=3, tile_size=5)(images(h=12, w=12)), "tile_size"),
]


@pytest.mark.parametrize("make, name", BAD_ARGS, ids=[f"{i}-{n}" for i, (_, n) in enumerate(BAD_ARGS)])
def test_bad_arguments_raise_value_error_naming_them(make, name):
    with pytest.raises(ValueError, match=name):
        make()



# --------------------------------------------------------------------- rotate / RandomRotation

def test_rotate_by_zero_copies_and_by_quarter_turns_matches_rot90():
    x = images(n=3, c=2, h=6, w=6, dtype=np.float64)
    assert_same(A.rotate(x, 0.0), x)
    host = to_np(x)
    for k in (1, 2, 3, -1):
        assert_same(A.rotate(x, 90.0 * k), np.rot90(host, k, axes=(2, 3)), atol=1e-12)


@given(angle=st.floats(-360.0, 360.0), mode=st.sampled_from(["border", "zeros"]),
       h=st.integers(3, 9), w=st.integers(3, 9))
def test_rotate_matches_scipy_ndimage(angle, mode, h, w):
    x = images(n=2, c=2, h=h, w=w, dtype=np.float64, seed=h * 10 + w)
    host = to_np(x)
    scipy_mode = {"border": "nearest", "zeros": "grid-constant"}[mode]
    ref = np.stack([np.stack([ndimage.rotate(ch, angle, reshape=False, order=1, mode=scipy_mode, cval=0.0)
                              for ch in img]) for img in host])
    assert_same(A.rotate(x, angle, padding_mode=mode), ref, atol=1e-9)


def test_rotate_per_sample_angles_and_validation():
    x = images(n=3, h=7, w=7)
    angles = XP.asarray([0.0, 90.0, 180.0])
    out = to_np(A.rotate(x, angles))
    host = to_np(x)
    np.testing.assert_allclose(out[0], host[0], atol=1e-6)
    np.testing.assert_allclose(out[1], np.rot90(host[1], 1, axes=(1, 2)), atol=1e-6)
    np.testing.assert_allclose(out[2], host[2, :, ::-1, ::-1], atol=1e-6)
    with pytest.raises(ValueError, match="angle must"):
        A.rotate(x, XP.asarray([1.0, 2.0]))
    with pytest.raises(ValueError, match="padding_mode"):
        A.rotate(x, 10.0, padding_mode="reflect")
    with pytest.raises(ValueError, match="degrees"):
        A.RandomRotation(-5)
    with pytest.raises(ValueError, match="degrees"):
        A.RandomRotation((30, 10))


def test_random_rotation_draws_in_range_and_applies_with_p():
    t = A.RandomRotation((10.0, 40.0), p=0.5)
    params = t.sample_params((2000, 3, 8, 8), gen(0))
    angle, hit = to_np(params["angle"]), to_np(params["rotate"])
    assert angle.min() >= 10.0 and angle.max() <= 40.0
    assert 0.45 < hit.mean() < 0.55
    x = images(n=40, h=9, w=9)
    params = t.sample_params(x.shape, gen(1))
    out, host = to_np(t.apply(x, params)), to_np(x)
    hit, angle = to_np(params["rotate"]), to_np(params["angle"])
    np.testing.assert_array_equal(out[~hit], host[~hit])
    for i in np.nonzero(hit)[0][:3]:
        np.testing.assert_allclose(out[i], to_np(A.rotate(x[i:i + 1], float(angle[i])))[0], atol=1e-6)


def test_random_invert_negates_exactly_the_drawn_samples():
    t = A.RandomInvert(0.5)
    x = images(n=64)
    params = t.sample_params(x.shape, gen(3))
    hit = to_np(params["invert"])
    assert 0 < hit.sum() < 64
    out, host = to_np(t.apply(x, params)), to_np(x)
    np.testing.assert_array_equal(out[hit], 1.0 - host[hit])
    np.testing.assert_array_equal(out[~hit], host[~hit])
    with pytest.raises(ValueError, match="p must"):
        A.RandomInvert(1.5)


def test_flips_mirror_exactly_the_drawn_samples():
    x = images(n=32, h=5, w=7)
    host = to_np(x)
    for t, mirror in ((A.RandomHorizontalFlip(0.5), host[..., ::-1]), (A.RandomVerticalFlip(0.5), host[..., ::-1, :])):
        params = t.sample_params(x.shape, gen(4))
        hit = to_np(params["flip"])
        assert 0 < hit.sum() < 32
        out = to_np(t.apply(x, params))
        np.testing.assert_array_equal(out[hit], mirror[hit])
        np.testing.assert_array_equal(out[~hit], host[~hit])
