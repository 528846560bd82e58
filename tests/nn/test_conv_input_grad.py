"""The input gradient of a stride-1 convolution runs as a correlation of gy with the flipped
kernel (``_full_correlation``); it must equal the col2im form A_Wᵀ gy for every geometry it
takes, and leave the others to col2im."""
import numpy as np
import pytest

from npjem.nn import functional as F


def _col2im_form(gy, w, g, in_hw, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(F, "_full_correlation", lambda g: None)
        return F._conv_input_grad(gy, w, g, in_hw)


@pytest.mark.parametrize("kernel, pads, dilation", [
    ((3, 3), ((1, 1), (1, 1)), (1, 1)),
    ((3, 3), ((0, 0), (0, 0)), (1, 1)),
    ((3, 3), ((2, 2), (2, 2)), (1, 1)),
    ((3, 2), ((1, 0), (0, 1)), (1, 1)),   # even kernel, asymmetric "same" padding
    ((3, 3), ((2, 1), (0, 2)), (2, 1)),   # dilation, uneven pads
    ((1, 1), ((0, 0), (0, 0)), (1, 1)),
    ((5, 5), ((2, 2), (2, 2)), (1, 1)),
])
def test_stride_one_input_gradient_equals_the_col2im_form(kernel, pads, dilation, monkeypatch):
    rng = np.random.default_rng(0)
    g = F._ConvGeometry(kernel, (1, 1), pads, dilation, 1)
    h, w_ = 7, 6
    ho, wo = g.out_hw(h, w_)
    x_shape = (3, 4, h, w_)
    w = rng.standard_normal((5, 4) + kernel)
    gy = rng.standard_normal((x_shape[0], 5, ho, wo))
    assert F._full_correlation(g) is not None
    ours = F._conv_input_grad(gy, w, g, (h, w_))
    assert ours.shape == x_shape
    np.testing.assert_allclose(ours, _col2im_form(gy, w, g, (h, w_), monkeypatch), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride, pads, groups", [
    ((2, 2), ((1, 1), (1, 1)), 1),   # strided: taps skip positions, col2im
    ((1, 1), ((3, 3), (1, 1)), 1),   # padding beyond d·(k − 1): would need cropping
    ((1, 1), ((1, 1), (1, 1)), 2),   # grouped
])
def test_other_geometries_keep_the_col2im_form(stride, pads, groups):
    g = F._ConvGeometry((3, 3), stride, pads, (1, 1), groups)
    assert F._full_correlation(g) is None


@pytest.mark.parametrize("stride", [1, 2])
def test_a_convolution_s_output_and_input_gradient_are_channels_last_arrays_of_their_own(stride):
    """Channels-last (what BatchNorm and the next convolution read without a copy) and owning
    their memory (so the engine stores an input gradient as ``.grad`` without copying it)."""
    import npjem

    rng = np.random.default_rng(0)
    x = npjem.tensor(rng.standard_normal((2, 3, 6, 6)), device="cpu", requires_grad=True)
    w = npjem.tensor(rng.standard_normal((4, 3, 3, 3)), device="cpu")
    y = F.conv2d(x, w, stride=stride, padding=1)
    y.backward(npjem.Tensor(np.ones(y.shape)))
    for a in (y.data, x.grad.data):
        assert a.flags.owndata
        assert a.strides[1] == a.itemsize  # C is the fastest axis: x.grad is not the engine's
        # copy of a view, which would be C-ordered NCHW
    g = F._conv_input_grad(np.ones(y.shape), w.data, F._conv_geometry(x, w, stride, 1, 1, 1, "t"), (6, 6))
    np.testing.assert_array_equal(g, x.grad.data)
