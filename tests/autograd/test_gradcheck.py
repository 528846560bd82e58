"""Tests of npjem.gradcheck / gradgradcheck themselves: they pass on correct gradients and,
as importantly, FAIL on wrong ones, with a message that locates the error."""
import numpy as np
import pytest

import npjem
from npjem import backend
from npjem import functional as F
from npjem.autograd.gradcheck import GradcheckError

DEVICE = backend.default_device()
pytestmark = pytest.mark.skipif(DEVICE != "cpu" and not backend.cupy_available(),
                                reason="NPJEM_DEVICE asks for a GPU that is not available")


def T(a, requires_grad=True, name=None):
    t = npjem.tensor(np.asarray(a, dtype=np.float64), device=DEVICE, requires_grad=requires_grad)
    t.name = name
    return t


def rnd(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# --------------------------------------------------------------- deliberately broken Functions

class ZeroBackwardSoftmax(npjem.Function):
    """Softmax with a backward that returns zeros: exactly right for a ones incoming gradient."""

    def forward(self, x):
        xp = backend.get_array_module(x)
        z = xp.exp(x - x.max(axis=-1, keepdims=True))
        return z / z.sum(axis=-1, keepdims=True)

    def backward(self, gy):
        return gy * 0.0


class WrongSignTanh(npjem.Function):
    def forward(self, x):
        return backend.get_array_module(x).tanh(x)

    def backward(self, gy):
        y = self.output()
        return gy * (y * y - 1.0)  # the sign of 1 − y² flipped


class ConstantBackwardExp(npjem.Function):
    """exp with a correct first derivative built from raw arrays: no graph, so the second
    derivative seen by create_graph is zero. gradcheck passes; gradgradcheck must fail."""

    def forward(self, x):
        return backend.get_array_module(x).exp(x)

    def backward(self, gy):
        return gy * npjem.Tensor(self.output().data)


class ScaleOneElement(npjem.Function):
    """Doubles the gradient of one element only (a localized bug): the report must find it."""

    def forward(self, x):
        return x * 3.0

    def backward(self, gy):
        g = gy * 3.0
        bump = np.ones(gy.shape)
        bump[(1,) * gy.ndim] = 2.0
        return g * npjem.Tensor(backend.to_device(bump, gy.device))


def test_ones_incoming_gradient_is_a_hole_for_softmax():
    # The reason gradcheck draws v at random: with v = 1, vᵀJ of softmax is 0 for every input,
    # so a zero backward agrees with central differences.
    x = rnd(3, 5)
    base = T(x, requires_grad=False)
    eps = 1e-6
    ones_projection = []
    for k in range(x.size):
        idx = np.unravel_index(k, x.shape)
        xp_, xm_ = x.copy(), x.copy()
        xp_[idx] += eps
        xm_[idx] -= eps
        fp = F.softmax(T(xp_, requires_grad=False)).numpy().sum()
        fm = F.softmax(T(xm_, requires_grad=False)).numpy().sum()
        ones_projection.append((fp - fm) / (2 * eps))
    assert np.allclose(ones_projection, 0.0, atol=1e-8)  # a ones-check would compare 0 with 0
    del base
    with pytest.raises(GradcheckError):
        npjem.gradcheck(lambda t: ZeroBackwardSoftmax()(t), [T(x)])
    with pytest.raises(GradcheckError):
        npjem.gradcheck(lambda t: ZeroBackwardSoftmax()(t), [T(x)], mode="fast")
    assert npjem.gradcheck(F.softmax, [T(x)])


def test_wrong_sign_fails_and_report_names_input_and_values():
    x, w = rnd(2, 3), rnd(3, 4, seed=1)
    fn = lambda a, b: WrongSignTanh()(a @ b)
    with pytest.raises(GradcheckError) as info:
        npjem.gradcheck(fn, [T(x, name="x"), T(w)])
    err = info.value
    assert isinstance(err, AssertionError)
    msg = str(err)
    assert "input 0" in msg and "'x'" in msg and "(2, 3)" in msg
    assert "analytic" in msg and "numeric" in msg and "atol" in msg and "rtol" in msg
    assert err.input_index == 0 and err.index is not None
    assert np.sign(err.analytic) == -np.sign(err.numeric)
    assert npjem.gradcheck(fn, [T(x, name="x"), T(w)], raise_exception=False) is False
    assert npjem.gradcheck(lambda a, b: npjem.tanh(a @ b), [T(x), T(w)]) is True


def test_report_finds_the_worst_element():
    with pytest.raises(GradcheckError) as info:
        npjem.gradcheck(lambda t: ScaleOneElement()(t), [T(rnd(3, 4))])
    assert info.value.index == (1, 1)
    assert "(1, 1)" in str(info.value)
    assert info.value.analytic == pytest.approx(2 * info.value.numeric, rel=1e-6)


def test_second_input_reported():
    fn = lambda a, b: a * WrongSignTanh()(b)
    with pytest.raises(GradcheckError) as info:
        npjem.gradcheck(fn, [T(rnd(4)), T(rnd(4, seed=2))])
    assert info.value.input_index == 1 and "input 1" in str(info.value)


def test_gradgradcheck_catches_a_backward_without_graph():
    x = rnd(2, 3)
    assert npjem.gradcheck(lambda t: ConstantBackwardExp()(t), [T(x)])
    with pytest.raises(GradcheckError, match="gradgradcheck"):
        npjem.gradgradcheck(lambda t: ConstantBackwardExp()(t), [T(x)])
    assert npjem.gradgradcheck(npjem.exp, [T(x)])
    assert npjem.gradgradcheck(npjem.exp, [T(x)], mode="fast")


def test_fixed_inputs_are_not_differentiated():
    # The broken function touches only the second input: holding it fixed hides the bug,
    # which shows that fixed inputs are really not checked (and still passed to fn).
    fn = lambda a, b: a * WrongSignTanh()(b)
    a, b = T(rnd(4)), T(rnd(4, seed=2))
    assert npjem.gradcheck(fn, [a, b], fixed=[1])
    assert npjem.gradcheck(fn, [a, T(rnd(4, seed=2), requires_grad=False)])
    with pytest.raises(ValueError, match="no input to differentiate"):
        npjem.gradcheck(fn, [a, b], fixed=[0, 1])
    with pytest.raises(ValueError, match="out of range"):
        npjem.gradcheck(fn, [a, b], fixed=[2])


def test_integer_and_other_inputs_pass_through():
    labels = np.array([0, 2, 1])
    seen = {}

    def fn(z, y, reduction):
        seen["y"] = y
        return F.cross_entropy(z, y, reduction=reduction)

    assert npjem.gradcheck(fn, [T(rnd(3, 4)), labels, "sum"])
    assert isinstance(seen["y"], np.ndarray) and seen["y"].dtype.kind == "i"


def test_inputs_are_float64_copies_and_left_untouched():
    x32 = npjem.tensor(rnd(3).astype(np.float32), device=DEVICE, requires_grad=True)
    before = x32.numpy().copy()
    dtypes = []

    def fn(t):
        dtypes.append(t.dtype)
        return t * t

    assert npjem.gradcheck(fn, [x32])
    assert set(dtypes) == {np.dtype(np.float64)}
    assert x32.dtype == np.float32 and np.array_equal(x32.numpy(), before) and x32.grad is None
    arr = rnd(2, 2)
    copy = arr.copy()
    assert npjem.gradcheck(lambda t: t.exp(), arr)  # a single array is differentiated
    assert np.array_equal(arr, copy)


def test_mutating_fn_is_reported():
    def fn(a, b):
        b.data[0] = 0.0  # writes to an input
        return a * 2.0

    with pytest.raises(GradcheckError, match=r"mutated input 1"):
        npjem.gradcheck(fn, [T(rnd(3)), T(rnd(3), requires_grad=False)])
    assert npjem.gradcheck(fn, [T(rnd(3)), T(rnd(3), requires_grad=False)],
                           raise_exception=False) is False


def test_tuple_outputs_any_shape_and_constant_outputs():
    def fn(a, b):
        return (a @ b).sum(axis=0), npjem.tanh(a), npjem.tensor(np.ones(2), device=DEVICE), a.sum()

    assert npjem.gradcheck(fn, [T(rnd(2, 3)), T(rnd(3, 4))])
    assert npjem.gradgradcheck(fn, [T(rnd(2, 3)), T(rnd(3, 4))])

    def broken(a, b):
        return (a @ b).sum(axis=0), WrongSignTanh()(a)

    with pytest.raises(GradcheckError, match="input 0"):
        npjem.gradcheck(broken, [T(rnd(2, 3)), T(rnd(3, 4))])


def test_unused_input_has_zero_gradient():
    assert npjem.gradcheck(lambda a, b: a * 2.0, [T(rnd(3)), T(rnd(3))])


def test_fast_mode_and_seeds():
    fn = lambda a, b: WrongSignTanh()(a * b)
    for seed in range(3):
        with pytest.raises(GradcheckError, match="fast mode"):
            npjem.gradcheck(fn, [T(rnd(5)), T(rnd(5))], mode="fast", n_directions=1, seed=seed)
    assert npjem.gradcheck(lambda a, b: npjem.tanh(a * b), [T(rnd(5)), T(rnd(5))], mode="fast",
                           n_directions=2)


def test_argument_validation():
    x = T(rnd(2))
    for kw in ({"eps": 0}, {"atol": -1}, {"rtol": -1e-3}, {"mode": "slow"}, {"n_directions": 0}):
        with pytest.raises(ValueError):
            npjem.gradcheck(npjem.exp, [x], **kw)
    with pytest.raises(TypeError, match="Tensor"):
        npjem.gradcheck(lambda t: t.numpy(), [x])
    with pytest.raises(ValueError):
        npjem.gradcheck(npjem.exp, [])


def test_tolerance_decides():
    # The gradient of x ↦ 1.001·x reported as 1: off by 1e-3 relative, just outside rtol=1e-4.
    class Slightly(npjem.Function):
        def forward(self, x):
            return x * 1.001

        def backward(self, gy):
            return gy * 1.0

    x = T(rnd(4) + 5.0)
    assert npjem.gradcheck(lambda t: Slightly()(t), [x], atol=0, rtol=2e-3)
    assert not npjem.gradcheck(lambda t: Slightly()(t), [x], atol=0, rtol=1e-4, raise_exception=False)


def test_nan_gradient_fails():
    class NanGrad(npjem.Function):
        def forward(self, x):
            return x * 1.0

        def backward(self, gy):
            return gy * float("nan")

    assert not npjem.gradcheck(lambda t: NanGrad()(t), [T(rnd(3))], raise_exception=False)


def test_outputs_that_alias_the_input():
    # identity and views share memory with the perturbed input: the check must copy them
    assert npjem.gradcheck(lambda t: t, [T(rnd(3))])
    assert npjem.gradcheck(lambda t: (t.reshape(-1), t.T), [T(rnd(2, 3))])
    assert npjem.gradgradcheck(lambda t: t[0] * t, [T(rnd(2, 3))])


def test_a_scalar_input_alone_is_not_differentiable():
    with pytest.raises(ValueError, match="no input to differentiate"):
        npjem.gradcheck(lambda c: npjem.tensor(c), 3.0)
