"""Each layer against its PyTorch twin: weights copied with load_state_dict from
{k: v.detach().numpy()}, then outputs, input gradients and parameter gradients (and running
statistics) agree in float64 to 1e-10 — first and second order."""
import numpy as np
import pytest

import npjem
from npjem import nn

from _nn_util import T, host, rng, skip_without_device

torch = pytest.importorskip("torch")
tnn = torch.nn

pytestmark = skip_without_device
TOL = dict(rtol=1e-10, atol=1e-10)


def twin(ours, theirs):
    """Copy the torch module's state into ours (both float64); returns both."""
    theirs = theirs.double()
    ours.to(dtype=np.float64)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    return ours, theirs


def compare(ours, theirs, x, steps=1, train=True):
    ours.train(train)
    theirs.train(train)
    r = rng(42)
    for _ in range(steps):
        xt = torch.tensor(x, requires_grad=True)
        yt = theirs(xt)
        gy = r.standard_normal(tuple(yt.shape))
        yt.backward(torch.tensor(gy))
        xo = T(x)
        yo = ours(xo)
        yo.backward(T(gy, requires_grad=False))
        np.testing.assert_allclose(host(yo), yt.detach().numpy(), **TOL)
        np.testing.assert_allclose(host(xo.grad), xt.grad.numpy(), **TOL)
        tp = dict(theirs.named_parameters())
        for name, p in ours.named_parameters():
            np.testing.assert_allclose(host(p.grad), tp[name].grad.numpy(), **TOL, err_msg=name)
        ours.zero_grad()
        theirs.zero_grad()
        x = x * 0.5 + 0.3
    tb = dict(theirs.named_buffers())
    for name, b in ours.named_buffers():
        np.testing.assert_allclose(host(b), tb[name].numpy(), **TOL, err_msg=name)


def same_grads(ours, theirs):
    tp = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        if tp[name].grad is None:  # torch leaves unreached parameters at None
            assert p.grad is None or not host(p.grad).any(), name
        else:
            np.testing.assert_allclose(host(p.grad), tp[name].grad.numpy(), **TOL, err_msg=name)


def x_of(*shape, seed=0):
    return rng(seed).standard_normal(shape)


def test_linear():
    torch.manual_seed(0)
    compare(*twin(nn.Linear(6, 4), tnn.Linear(6, 4)), x_of(5, 6))


@pytest.mark.parametrize("kw", [dict(stride=1, padding=1), dict(stride=2, padding=0),
                                dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
                                dict(stride=1, padding=1, groups=3), dict(padding="same", dilation=2, bias=False)])
def test_conv2d(kw):
    torch.manual_seed(1)
    compare(*twin(nn.Conv2d(3, 6, 3, **kw), tnn.Conv2d(3, 6, 3, **kw)), x_of(2, 3, 7, 8))


@pytest.mark.parametrize("kw", [dict(stride=2, padding=1, output_padding=1),
                                dict(stride=(1, 2), padding=(0, 1), groups=2, dilation=2, bias=False)])
def test_conv_transpose2d(kw):
    torch.manual_seed(2)
    compare(*twin(nn.ConvTranspose2d(4, 6, 3, **kw), tnn.ConvTranspose2d(4, 6, 3, **kw)), x_of(2, 4, 3, 5))


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("make,shape", [(lambda m: (nn.BatchNorm2d(3, momentum=m), tnn.BatchNorm2d(3, momentum=m)), (4, 3, 3, 2)),
                                        (lambda m: (nn.BatchNorm1d(3, momentum=m), tnn.BatchNorm1d(3, momentum=m)), (5, 3)),
                                        (lambda m: (nn.BatchNorm1d(3, momentum=m), tnn.BatchNorm1d(3, momentum=m)), (2, 3, 4))])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm(make, shape, train, momentum):
    ours, theirs = twin(*make(momentum))
    with torch.no_grad():  # non-trivial affine parameters and running statistics
        theirs.weight.uniform_(0.5, 1.5)
        theirs.bias.normal_()
        theirs.running_mean.normal_()
        theirs.running_var.uniform_(0.5, 2.0)
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    compare(ours, theirs, x_of(*shape) * 2 + 1, steps=3, train=train)


def test_layer_norm():
    torch.manual_seed(3)
    ours, theirs = twin(nn.LayerNorm((3, 4)), tnn.LayerNorm((3, 4)))
    with torch.no_grad():
        theirs.weight.normal_()
        theirs.bias.normal_()
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    compare(ours, theirs, x_of(2, 5, 3, 4))


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1), ceil_mode=True),
                                dict(kernel_size=3, stride=2, ceil_mode=True)])
def test_max_pool2d(kw):
    compare(nn.MaxPool2d(**kw), tnn.MaxPool2d(**kw), x_of(2, 3, 7, 8))


def test_max_pool2d_ties_and_indices():
    x = np.round(x_of(2, 2, 6, 6) * 1.5)  # many ties
    compare(nn.MaxPool2d(3, 1, 1), tnn.MaxPool2d(3, 1, 1), x)
    _, idx = nn.functional.max_pool2d(T(x), 3, 2, 1, return_indices=True)
    _, tidx = torch.nn.functional.max_pool2d(torch.tensor(x), 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(host(idx), tidx.numpy())


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=3, stride=2, padding=1, count_include_pad=False, ceil_mode=True),
                                dict(kernel_size=(3, 2), stride=2, ceil_mode=True),
                                dict(kernel_size=2, divisor_override=3)])
def test_avg_pool2d(kw):
    compare(nn.AvgPool2d(**kw), tnn.AvgPool2d(**kw), x_of(2, 3, 7, 8))


@pytest.mark.parametrize("size", [1, (2, 3), (3, None), 4])
def test_adaptive_avg_pool2d(size):
    compare(nn.AdaptiveAvgPool2d(size), tnn.AdaptiveAvgPool2d(size), x_of(2, 3, 5, 7))


@pytest.mark.parametrize("ours,theirs", [(nn.GELU(), tnn.GELU()), (nn.GELU("tanh"), tnn.GELU("tanh")),
                                         (nn.Softplus(2.0), tnn.Softplus(2.0)), (nn.SiLU(), tnn.SiLU()),
                                         (nn.LeakyReLU(0.1), tnn.LeakyReLU(0.1))])
def test_activations(ours, theirs):
    compare(ours, theirs, x_of(3, 5) * 3)


def _convnet(lib):
    return lib.Sequential(
        lib.Conv2d(2, 4, 3, padding=1), lib.BatchNorm2d(4), lib.GELU(), lib.MaxPool2d(2),
        lib.Conv2d(4, 6, 3, stride=2, padding=1), lib.Softplus(), lib.AdaptiveAvgPool2d(1),
        lib.Flatten(), lib.Linear(6, 3), lib.LayerNorm(3), lib.Linear(3, 1))


def test_sequential_convnet():
    torch.manual_seed(4)
    compare(*twin(_convnet(nn), _convnet(tnn)), x_of(3, 2, 8, 8), steps=2)


def test_sequential_second_order_score_matching_gradient():
    # θ-gradient of ‖∇ₓE(x)‖² for a ConvNet energy E (eval-mode BN, max pooling, GELU, softplus).
    torch.manual_seed(5)
    ours, theirs = twin(_convnet(nn), _convnet(tnn))
    ours.eval(), theirs.eval()
    x = x_of(3, 2, 8, 8)
    xt = torch.tensor(x, requires_grad=True)
    (gxt,) = torch.autograd.grad(theirs(xt).sum(), xt, create_graph=True)
    (gxt ** 2).sum().backward()
    xo = T(x)
    (gxo,) = npjem.grad(ours(xo).sum(), [xo], create_graph=True)
    (gxo * gxo).sum().backward()
    np.testing.assert_allclose(host(gxo), gxt.detach().numpy(), **TOL)
    same_grads(ours, theirs)
    np.testing.assert_allclose(host(xo.grad), xt.grad.numpy(), **TOL)


def test_train_mode_second_order_through_batchnorm():
    torch.manual_seed(6)
    ours, theirs = twin(nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Tanh()),
                        tnn.Sequential(tnn.Conv2d(2, 3, 3), tnn.BatchNorm2d(3), tnn.Tanh()))
    x = x_of(3, 2, 5, 5)
    xt = torch.tensor(x, requires_grad=True)
    (gxt,) = torch.autograd.grad((theirs(xt) ** 2).sum(), xt, create_graph=True)
    (gxt ** 2).sum().backward()
    xo = T(x)
    (gxo,) = npjem.grad((ours(xo) ** 2).sum(), [xo], create_graph=True)
    (gxo * gxo).sum().backward()
    same_grads(ours, theirs)


def test_stacked_convolutions_channels_last_path():
    # The second convolution reads its channels-last, unpadded input without a copy.
    def net(lib):
        return lib.Sequential(lib.Conv2d(2, 4, 3, padding=1), lib.ReLU(), lib.Conv2d(4, 3, 2, stride=2),
                              lib.AvgPool2d(2), lib.Conv2d(3, 2, 1))

    torch.manual_seed(7)
    compare(*twin(net(nn), net(tnn)), x_of(2, 2, 8, 9))
