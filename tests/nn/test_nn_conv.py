"""Conv2d: values against a direct scipy.signal.correlate reference, first and second (and
third) derivatives against central differences, blocking, gradient pruning, errors."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import signal

import npjem
from npjem import backend, nn
from npjem.nn import functional as F
from npjem.nn.functional import (
    Conv2dFunction, Conv2dWeightGradFunction, ConvTranspose2dFunction, _conv_geometry,
)

from _nn_util import DEVICE, T, host, rng, skip_without_device

pytestmark = skip_without_device


def reference_conv2d(x, w, b, stride, padding, dilation, groups):
    """Direct cross-correlation: for each (n, o, c in o's group) a scipy 'valid' correlation of the
    zero-padded image with the dilated kernel, subsampled by the stride."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    kd = np.zeros((o, cg, dh * (kh - 1) + 1, dw * (kw - 1) + 1))
    kd[:, :, ::dh, ::dw] = w
    og = o // groups
    ho = (h + 2 * ph - kd.shape[2]) // sh + 1
    wo = (wd + 2 * pw - kd.shape[3]) // sw + 1
    y = np.zeros((n, o, ho, wo))
    for i in range(n):
        for oo in range(o):
            grp = oo // og
            for cc in range(cg):
                full = signal.correlate(xp[i, grp * cg + cc], kd[oo, cc], mode="valid")
                y[i, oo] += full[::sh, ::sw][:ho, :wo]
            if b is not None:
                y[i, oo] += b[oo]
    return y


@st.composite
def conv_cases(draw, max_side=7):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.integers(1, 3))
    og = draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    n = draw(st.integers(1, 3))
    # input at least as large as the dilated kernel after padding
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), max_side))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), max_side))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    return dict(n=n, c=cg * groups, o=og * groups, h=h, w=w, k=(kh, kw), stride=(sh, sw),
                padding=(ph, pw), dilation=(dh, dw), groups=groups, bias=bias, seed=seed)


def _arrays(case):
    r = rng(case["seed"])
    x = r.standard_normal((case["n"], case["c"], case["h"], case["w"]))
    w = r.standard_normal((case["o"], case["c"] // case["groups"]) + case["k"])
    b = r.standard_normal(case["o"]) if case["bias"] else None
    return x, w, b


def _conv(case):
    return lambda x, w, b=None: F.conv2d(x, w, b, case["stride"], case["padding"], case["dilation"],
                                         case["groups"])


def channels_last(x):
    """The same values in channels-last memory (what a convolution outputs), seen as NCHW."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


@given(conv_cases(), st.booleans())
def test_conv2d_matches_scipy_reference(case, cl):
    x, w, b = _arrays(case)
    # channels-last and unpadded: the columns are read from the input without a copy
    xt = npjem.Tensor(backend.to_device(channels_last(x) if cl else x, DEVICE))
    if cl and DEVICE == "cpu" and case["c"] > 1:  # NumPy may give a length-1 axis any stride
        assert xt.data.strides[1] == xt.data.itemsize
    y = _conv(case)(xt, T(w), None if b is None else T(b))
    ref = reference_conv2d(x, w, b, case["stride"], case["padding"], case["dilation"], case["groups"])
    assert y.shape == ref.shape
    np.testing.assert_allclose(host(y), ref, rtol=1e-12, atol=1e-12)


@given(conv_cases(max_side=6))
def test_conv2d_gradcheck(case):
    x, w, b = _arrays(case)
    inputs = [T(x), T(w)] + ([] if b is None else [T(b)])
    assert npjem.gradcheck(_conv(case), inputs)


@given(conv_cases(max_side=5))
def test_conv2d_gradgradcheck(case):
    x, w, b = _arrays(case)
    inputs = [T(x), T(w)] + ([] if b is None else [T(b)])
    assert npjem.gradgradcheck(_conv(case), inputs, mode="fast", n_directions=4)


def test_conv2d_gradgradcheck_full_with_cached_columns(monkeypatch):
    # Force the forward to keep its column matrix: create_graph must still build a graph.
    orig = Conv2dFunction.__init__
    monkeypatch.setattr(Conv2dFunction, "__init__", lambda self, g, cache_cols=False: orig(self, g, True))
    r = rng(1)
    x, w, b = T(r.standard_normal((2, 2, 5, 4))), T(r.standard_normal((3, 2, 3, 2))), T(r.standard_normal(3))
    assert npjem.gradgradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=1), [x, w, b])


def _fn_case():
    r = rng(2)
    g = _conv_geometry(None, np.zeros((4, 1, 3, 2)), (2, 1), (1, 0), (1, 2), 2, "test")
    x = r.standard_normal((2, 2, 5, 6))
    w = r.standard_normal((4, 1, 3, 2))
    y = reference_conv2d(x, w, None, (2, 1), (1, 0), (1, 2), 2)
    return g, x, w, y


def test_conv_transpose_and_weight_grad_functions_are_twice_differentiable():
    # Third derivatives of the convolution: each Function's backward is made of the other two.
    g, x, w, y = _fn_case()
    gy = rng(3).standard_normal(y.shape)
    tr = lambda gy_, w_: ConvTranspose2dFunction(g, x.shape[2:])(gy_, w_)  # noqa: E731
    wg = lambda x_, gy_: Conv2dWeightGradFunction(g, w.shape)(x_, gy_)  # noqa: E731
    assert npjem.gradcheck(tr, [T(gy), T(w)])
    assert npjem.gradcheck(wg, [T(x), T(gy)])
    assert npjem.gradgradcheck(tr, [T(gy), T(w)])
    assert npjem.gradgradcheck(wg, [T(x), T(gy)])


def test_transpose_and_weight_grad_are_the_adjoints():
    # ⟨A_W x, gy⟩ = ⟨x, A_Wᵀ gy⟩ = ⟨W, gW(x, gy)⟩
    g, x, w, y = _fn_case()
    gy = rng(4).standard_normal(y.shape)
    gx = host(ConvTranspose2dFunction(g, x.shape[2:])(T(gy, False), T(w, False)))
    gw = host(Conv2dWeightGradFunction(g, w.shape)(T(x, False), T(gy, False)))
    lhs = np.sum(y * gy)
    assert np.isclose(lhs, np.sum(x * gx), rtol=1e-12)
    assert np.isclose(lhs, np.sum(w * gw), rtol=1e-12)


def test_grad_of_grad_through_conv_energy():
    # Denoising score matching's pattern: θ-gradient of ‖∇ₓE(x)‖² with E a small ConvNet.
    r = rng(5)
    x = T(r.standard_normal((2, 2, 6, 6)))
    w1, w2 = T(r.standard_normal((3, 2, 3, 3)) * 0.5), T(r.standard_normal((1, 3, 3, 3)) * 0.5)

    def score_norm(x, w1, w2):
        with npjem.enable_grad():  # gradcheck's central differences run fn under no_grad
            x = x if x.requires_grad else npjem.tensor(x.data, requires_grad=True)
            e = F.conv2d(F.softplus(F.conv2d(x, w1, padding=1)), w2, stride=2).sum()
            (gx,) = npjem.grad(e, [x], create_graph=True)
            return (gx * gx).sum()

    assert npjem.gradcheck(score_norm, [x, w1, w2])


@given(conv_cases(max_side=6))
def test_blocking_over_images_gives_the_same_result(case):
    # Small test batches fit one block; force one image per block to exercise the loops
    # (several blocks, a partial last block, the reused padded buffer).
    x, w, b = _arrays(case)
    x = np.concatenate([x, x[:1] * 0.5])
    args = [T(x), T(w)] + ([] if b is None else [T(b)])
    gy = rng(7).standard_normal(host(_conv(case)(*args)).shape)

    def run():
        ts = [T(host(a)) for a in args]
        y = _conv(case)(*ts)
        y.backward(T(gy, False))
        return [host(y)] + [host(t.grad) for t in ts]

    whole = run()
    orig = backend._CPU_BLOCK_BYTES
    try:
        backend._CPU_BLOCK_BYTES = 1
        blocked = run()
    finally:
        backend._CPU_BLOCK_BYTES = orig
    for a, b_ in zip(whole, blocked):
        np.testing.assert_allclose(a, b_, rtol=1e-12, atol=1e-12)


def test_unblocked_backend_keeps_columns_and_agrees(monkeypatch):
    # What a GPU does (block_bytes None): whole batch at once, columns kept by the forward.
    r = rng(15)
    x, w, b = r.standard_normal((3, 4, 6, 5)), r.standard_normal((6, 2, 3, 3)), r.standard_normal(6)

    def run():
        ts = [T(x), T(w), T(b)]
        y = F.conv2d(*ts, stride=(1, 2), padding=1, groups=2)
        y.backward(T(np.cos(np.arange(y.size)).reshape(y.shape), False), retain_graph=True)
        return y, [host(y)] + [host(t.grad) for t in ts]

    _, blocked = run()
    monkeypatch.setattr(backend, "block_bytes", lambda xp: None)
    y, whole = run()
    assert y.creator.cache_cols
    for a, b_ in zip(blocked, whole):
        np.testing.assert_allclose(a, b_, rtol=1e-12, atol=1e-12)


def test_no_input_gradient_for_images_that_do_not_require_one(monkeypatch):
    calls = []
    orig = F._conv_input_grad
    monkeypatch.setattr(F, "_conv_input_grad", lambda *a, **k: calls.append(1) or orig(*a, **k))
    conv = nn.Conv2d(2, 3, 3, padding=1, device=DEVICE, dtype=np.float64, generator=0)
    x = T(rng().standard_normal((2, 2, 5, 5)), requires_grad=False)
    conv(x).sum().backward()
    assert calls == []
    assert conv.weight.grad is not None and conv.bias.grad is not None
    xr = T(host(x))
    conv(xr).sum().backward()
    assert calls == [1] and xr.grad.shape == xr.shape


def test_weight_gradient_skipped_when_weight_is_frozen(monkeypatch):
    calls = []
    orig = F._conv_weight_grad
    monkeypatch.setattr(F, "_conv_weight_grad", lambda *a, **k: calls.append(1) or orig(*a, **k))
    conv = nn.Conv2d(2, 3, 3, device=DEVICE, dtype=np.float64, generator=0).requires_grad_(False)
    x = T(rng().standard_normal((1, 2, 4, 4)))
    conv(x).sum().backward()
    assert calls == [] and x.grad is not None


def test_second_backward_recomputes_what_the_first_freed():
    r = rng(8)
    x, w = T(r.standard_normal((2, 2, 4, 4))), T(r.standard_normal((3, 2, 2, 2)))
    y = F.conv2d(x, w)
    gy = T(r.standard_normal(y.shape), False)
    y.backward(gy, retain_graph=True)
    g1 = host(w.grad).copy()
    y.backward(gy)  # the graph was kept: gradients add up, columns recomputed if released
    np.testing.assert_allclose(host(w.grad), 2 * g1, rtol=1e-12)


def test_padding_same_and_valid():
    r = rng(9)
    x, w = r.standard_normal((1, 2, 6, 5)), r.standard_normal((3, 2, 4, 3))
    y = F.conv2d(T(x), T(w), padding="same", dilation=(1, 2))
    assert y.shape == (1, 3, 6, 5)
    # 'same' with an even dilated kernel pads one more row after than before, as PyTorch.
    xp = np.pad(x, ((0, 0), (0, 0), (1, 2), (2, 2)))
    np.testing.assert_allclose(host(y), reference_conv2d(xp, w, None, (1, 1), (0, 0), (1, 2), 1), atol=1e-12)
    assert F.conv2d(T(x), T(w), padding="valid").shape == (1, 3, 3, 3)


def test_mixed_dtypes_promote_and_gradients_keep_their_dtype():
    r = rng(13)
    x = T(r.standard_normal((2, 2, 4, 4)))
    w = T(r.standard_normal((3, 2, 3, 3)), dtype=np.float32)
    b = T(r.standard_normal(3), dtype=np.float32)
    y = F.conv2d(x, w, b, padding=1)
    assert y.dtype == np.float64
    y.sum().backward()
    assert x.grad.dtype == np.float64 and w.grad.dtype == np.float32 and b.grad.dtype == np.float32
    ref = F.conv2d(x.detach(), T(host(w).astype(np.float64)), T(host(b).astype(np.float64)), padding=1)
    np.testing.assert_allclose(host(y), host(ref), rtol=1e-12)


def test_unbatched_input():
    r = rng(10)
    x, w = r.standard_normal((2, 5, 5)), r.standard_normal((3, 2, 3, 3))
    y = F.conv2d(T(x), T(w), padding=1)
    assert y.shape == (3, 5, 5)
    np.testing.assert_allclose(host(y), host(F.conv2d(T(x[None]), T(w), padding=1))[0])


def test_conv_transpose2d_is_the_adjoint_with_output_padding():
    r = rng(11)
    x = r.standard_normal((2, 4, 3, 4))   # transposed-conv input: C_in = 4
    w = r.standard_normal((4, 3, 3, 3))   # (C_in, C_out, kh, kw)
    y = F.conv_transpose2d(T(x), T(w), stride=2, padding=1, output_padding=1)
    assert y.shape == (2, 3, 6, 8)
    z = r.standard_normal(y.shape)
    # ⟨conv_transpose(x), z⟩ = ⟨x, conv(z)⟩ with the same weight
    cz = host(F.conv2d(T(z), T(w), stride=2, padding=1))
    assert np.isclose(np.sum(host(y) * z), np.sum(x * cz), rtol=1e-12)
    assert npjem.gradcheck(lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1),
                           [T(x[:1, :, :2, :3]), T(w)])


def test_conv2d_module_init_and_shapes():
    conv = nn.Conv2d(4, 6, (3, 2), stride=2, padding=(1, 0), groups=2, device=DEVICE, generator=3)
    assert conv.weight.shape == (6, 2, 3, 2) and conv.bias.shape == (6,)
    bound = 1 / np.sqrt(2 * 3 * 2)  # 1/√fan_in: kaiming_uniform(a=√5)
    assert np.abs(host(conv.weight)).max() <= bound and np.abs(host(conv.bias)).max() <= bound
    assert np.abs(host(conv.weight)).max() > 0.6 * bound
    again = nn.Conv2d(4, 6, (3, 2), stride=2, padding=(1, 0), groups=2, device=DEVICE, generator=3)
    np.testing.assert_array_equal(host(conv.weight), host(again.weight))
    assert conv.weight.dtype == np.float32
    y = conv(npjem.randn(2, 4, 7, 5, device=DEVICE, generator=0))
    assert y.shape == (2, 6, 4, 2) and y.dtype == np.float32
    assert repr(conv) == "Conv2d(4, 6, kernel_size=(3, 2), stride=(2, 2), padding=(1, 0), groups=2)"
    assert repr(nn.Conv2d(1, 1, 1, bias=False)) == "Conv2d(1, 1, kernel_size=(1, 1), stride=(1, 1), bias=False)"


def test_conv2d_errors_name_the_argument():
    x = T(np.zeros((1, 3, 5, 5)))
    with pytest.raises(ValueError, match="input has 3 channels"):
        F.conv2d(x, T(np.zeros((2, 2, 3, 3))))
    with pytest.raises(ValueError, match="smaller than the dilated kernel"):
        F.conv2d(x, T(np.zeros((2, 3, 3, 3))), dilation=3)
    with pytest.raises(ValueError, match="weight must be 4-D"):
        F.conv2d(x, T(np.zeros((2, 3, 3))))
    with pytest.raises(ValueError, match="input must be 4-D"):
        F.conv2d(T(np.zeros((3, 5))), T(np.zeros((2, 3, 3, 3))))
    with pytest.raises(TypeError, match="floating"):
        F.conv2d(x, T(np.zeros((2, 3, 3, 3), dtype=np.int64), requires_grad=False, dtype=np.int64))
    with pytest.raises(ValueError, match="stride"):
        F.conv2d(x, T(np.zeros((2, 3, 3, 3))), stride=0)
    with pytest.raises(ValueError, match="bias must have shape"):
        F.conv2d(x, T(np.zeros((2, 3, 3, 3))), T(np.zeros(3)))
    with pytest.raises(ValueError, match="padding='same'"):
        F.conv2d(x, T(np.zeros((2, 3, 3, 3))), stride=2, padding="same")
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding_mode"):
        nn.Conv2d(3, 4, 3, padding_mode="reflect")


def test_conv_transpose2d_layer_output_size():
    up = nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, device=DEVICE, generator=0)
    assert up.weight.shape == (4, 2, 3, 3)
    x = npjem.randn(1, 4, 5, 5, device=DEVICE, generator=1)
    assert up(x).shape == (1, 2, 9, 9)
    assert up(x, output_size=(10, 9)).shape == (1, 2, 10, 9)
    with pytest.raises(ValueError, match="not reachable"):
        up(x, output_size=(11, 9))


@pytest.mark.parametrize("groups", [1, 2])
def test_cached_columns_give_the_same_gradients_and_are_released(groups):
    r = rng(12)
    x, w, b = r.standard_normal((3, 4, 5, 6)), r.standard_normal((4, 4 // groups, 3, 2)), r.standard_normal(4)
    g = _conv_geometry(None, w, (2, 1), (1, 1), (1, 1), groups, "test")
    gy = None
    grads = []
    for cache in (False, True):
        ts = [T(x), T(w), T(b)]
        fn = Conv2dFunction(g, cache_cols=cache)
        y = fn(*ts)
        gy = r.standard_normal(y.shape) if gy is None else gy
        assert (fn._cols is not None) == cache
        y.backward(T(gy, False), retain_graph=True)
        assert fn._cols is None  # the first backward lets the kept columns go
        y.backward(T(gy, False))  # and a second one recomputes them
        grads.append([host(t.grad) for t in ts])
    for a, c in zip(*grads):
        np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads[0][1] / 2, host(F.conv2d(T(x), T(w), None, (2, 1), 1, 1, groups).creator
                                                     .backward(T(gy, False))[1]), rtol=1e-12)


@pytest.mark.parametrize("stride,padding,dilation", [(3, 3, 2), (2, (0, 3), 1), (1, 2, (2, 1))])
def test_input_gradient_where_whole_kernel_offsets_fall_in_the_padding(stride, padding, dilation):
    # col2im adds only the taps that land inside the input; with padding this wide some kernel
    # offsets see nothing but padding for whole rows or columns of the output.
    torch = pytest.importorskip("torch")
    r = rng(7)
    x, w = r.standard_normal((2, 3, 4, 5)), r.standard_normal((4, 3, 2, 3))
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, stride=stride, padding=padding, dilation=dilation)
    gy = r.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(gy))
    xs, ws = T(x), T(w)
    F.conv2d(xs, ws, stride=stride, padding=padding, dilation=dilation).backward(T(gy, requires_grad=False))
    np.testing.assert_allclose(host(xs.grad), xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(host(ws.grad), wt.grad.numpy(), rtol=1e-12, atol=1e-12)
