"""Semantics of the engine: accumulation, grad modes, detach, dtypes, errors, deep graphs,
npjem.grad's contract, conversions."""
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import npjem
from npjem import backend
from npjem import functional as F
from npjem import testing as nt

DEVICE = backend.default_device()
pytestmark = pytest.mark.skipif(DEVICE != "cpu" and not backend.cupy_available(),
                                reason="NPJEM_DEVICE asks for a GPU that is not available")


def T(a, requires_grad=True, dtype=np.float64):
    return npjem.tensor(np.asarray(a, dtype=dtype), device=DEVICE, requires_grad=requires_grad)


# ------------------------------------------------------------------------ accumulation

def test_grads_accumulate_over_two_backward_calls():
    x = T([1.0, 2.0, 3.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()  # the graph was kept: a second call adds up
    assert np.allclose(x.grad.numpy(), 4 * np.array([1.0, 2.0, 3.0]))
    (x * 3.0).sum().backward()
    assert np.allclose(x.grad.numpy(), 4 * np.array([1.0, 2.0, 3.0]) + 3.0)
    x.zero_grad()
    assert x.grad is None


# ------------------------------------------------------------------------ retain_graph

_FREED = "backward through the graph a second time.*retain_graph=True"


def test_a_second_backward_through_a_freed_graph_raises_and_adds_nothing():
    x = T([1.0, 2.0, 3.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match=_FREED):
        y.backward()
    assert np.array_equal(x.grad.numpy(), [2.0, 4.0, 6.0])  # not silently doubled


def test_backward_frees_what_the_graph_saved():
    x = T(np.arange(6.0).reshape(2, 3))
    h = npjem.tanh(x * 2.0)  # tanh keeps its output, mul its inputs
    y = (h * h).sum()
    fn = y.creator
    y.backward()
    assert fn._freed and "inputs" not in vars(fn)
    assert h.creator._freed and "inputs" not in vars(h.creator)


def test_retain_graph_keeps_it_and_then_a_default_pass_frees_it():
    x = T([0.5, -1.0])
    y = (npjem.exp(x) * x).sum()
    y.backward(retain_graph=True)
    assert not y.creator._freed
    y.backward()
    assert np.allclose(x.grad.numpy(), 2 * np.exp([0.5, -1.0]) * (1 + np.array([0.5, -1.0])))
    with pytest.raises(RuntimeError, match=_FREED):
        y.backward()


def test_a_freed_shared_subgraph_raises_from_another_loss():
    x = T([1.0, 2.0])
    z = x * x
    z.sum().backward()
    with pytest.raises(RuntimeError, match=_FREED):
        (z * 3.0).sum().backward()


def test_grad_frees_the_graph_unless_retained():
    x = T([1.0, 2.0])
    y = (x * x * x).sum()
    (g,) = npjem.grad(y, x, retain_graph=True)
    (g2,) = npjem.grad(y, x)
    assert np.array_equal(g.numpy(), g2.numpy())
    with pytest.raises(RuntimeError, match=_FREED):
        npjem.grad(y, x)


def test_retain_graph_defaults_to_create_graph():
    x = T([1.0, 2.0])
    y = (x * x * x).sum()
    (g,) = npjem.grad(y, x, create_graph=True)  # keeps y's graph, as torch does
    y.backward()  # y's graph was retained by create_graph=True
    assert np.allclose(x.grad.numpy(), [3.0, 12.0])
    with pytest.raises(RuntimeError, match=_FREED):
        (gg,) = npjem.grad(g.sum(), x)  # g's graph runs through y's, now freed
    z = (x * x).sum()
    z.backward(create_graph=True)
    z.backward(create_graph=True)
    assert np.allclose(x.grad.detach().numpy(), [3.0 + 4.0, 12.0 + 8.0])


def test_a_fresh_forward_after_a_freed_one_works_like_a_training_loop():
    w = T([0.5, -0.25])
    for _ in range(3):
        loss = (w * w).sum()
        w.zero_grad()
        loss.backward()
        assert np.allclose(w.grad.numpy(), 2 * w.numpy())


def test_a_tensor_used_twice_gets_both_contributions():
    x = T([2.0])
    y = x * x + x * 3.0  # dy/dx = 2x + 3
    y.backward(T([1.0], False))
    assert x.grad.item() == pytest.approx(7.0)


def test_stored_grads_are_writable_and_do_not_alias():
    # Optimizers and clipping update .grad in place: it must be an array of its own.
    a, b = T(np.ones((2, 3))), T(np.ones((2, 3)))
    v = T(np.full((2, 3), 2.0), False)
    (a + b).backward(v)  # add passes the same gradient to both inputs
    a.grad.data *= 10.0
    assert np.array_equal(b.grad.numpy(), np.full((2, 3), 2.0))
    assert np.array_equal(v.numpy(), np.full((2, 3), 2.0))
    c = T(np.ones((2, 3)))
    c.sum().backward()  # sum's gradient is a broadcast (read-only) view
    c.grad.data += 1.0
    assert np.array_equal(c.grad.numpy(), np.full((2, 3), 2.0))
    d = T(np.ones(3))
    d.backward(v[0])
    d.grad.data[0] = 5.0
    assert v.numpy()[0, 0] == 2.0


# ------------------------------------------------------------------------ grad modes, detach

def test_no_grad_records_nothing():
    x = T([1.0, 2.0])
    with npjem.no_grad():
        y = x * 2.0 + 1.0
        z = F.softmax(x)
    for t in (y, z):
        assert t.creator is None and not t.requires_grad and t.is_leaf
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()
    assert npjem.is_grad_enabled()

    @npjem.no_grad()
    def f(t):
        return t * 3.0

    assert not f(x).requires_grad
    with npjem.no_grad():
        with npjem.enable_grad():
            w = x * 2.0
        assert w.requires_grad and w.creator is not None
        assert not npjem.is_grad_enabled()
    with npjem.autograd.set_grad_enabled(False):
        assert not (x * 2.0).requires_grad


def test_no_grad_is_restored_after_an_exception():
    with pytest.raises(ZeroDivisionError), npjem.no_grad():
        raise ZeroDivisionError
    assert npjem.is_grad_enabled()


def test_detach_stops_the_gradient():
    x = T([1.0, 2.0])
    y = x * x.detach()  # d/dx = x (the detached factor is a constant)
    y.sum().backward()
    assert np.allclose(x.grad.numpy(), [1.0, 2.0])
    d = x.detach()
    assert not d.requires_grad and d.creator is None
    assert np.shares_memory(backend.to_numpy(d.data), backend.to_numpy(x.data)) or DEVICE != "cpu"


def test_requires_grad_rules():
    with pytest.raises(TypeError, match="floating"):
        npjem.tensor(np.arange(3), requires_grad=True)
    x = T([1.0])
    y = x * 2.0
    with pytest.raises(RuntimeError, match="non-leaf"):
        y.requires_grad_(False)
    c = T([1.0], False)
    assert not (c * 2.0).requires_grad
    assert c.requires_grad_().requires_grad


# ------------------------------------------------------------------------ dtypes

FLOAT32_FORMS = {
    "x*0.5": lambda x: x * 0.5, "0.5*x": lambda x: 0.5 * x, "2**x": lambda x: 2 ** x,
    "2.0**x": lambda x: 2.0 ** x, "x/3": lambda x: x / 3, "3/x": lambda x: 3 / x,
    "x-1": lambda x: x - 1, "1-x": lambda x: 1 - x, "x+1.5": lambda x: x + 1.5,
    "x**2": lambda x: x ** 2, "x**0.5": lambda x: abs(x) ** 0.5, "x*np.float64": lambda x: x * np.float64(0.5),
    "np.float64*x": lambda x: np.float64(0.5) * x, "x**np.float64": lambda x: x ** np.float64(2.0),
    "x**np.int64": lambda x: x ** np.int64(3), "x/np.float64": lambda x: x / np.float64(3.0), "max(x,0.1)": lambda x: npjem.maximum(x, 0.1),
    "where": lambda x: npjem.where(x.data > 0, x, 0.25), "clip": lambda x: npjem.clip(x, -0.5, 0.5),
    "mean": lambda x: x.mean(), "var": lambda x: x.var(ddof=1), "std": lambda x: x.std(),
    "exp": npjem.exp, "log": lambda x: npjem.log(abs(x) + 1), "erf": npjem.erf,
    "sigmoid": npjem.sigmoid, "tanh": npjem.tanh, "sqrt": lambda x: npjem.sqrt(abs(x) + 1),
    "softmax": F.softmax, "log_softmax": F.log_softmax, "logsumexp": F.logsumexp,
    "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"), "softplus": F.softplus, "silu": F.silu,
    "softplus_beta": lambda x: F.softplus(x, beta=2.0), "relu": F.relu, "leaky": F.leaky_relu,
    "normalize": F.normalize, "layer_norm": lambda x: F.layer_norm(x, (4,)),
    "cross_entropy": lambda x: F.cross_entropy(x, np.array([0, 3, 1])),
    "ce_smooth": lambda x: F.cross_entropy(x, np.array([0, 3, 1]), label_smoothing=0.1),
    "cosine": lambda x: F.cosine_similarity(x, x * 2.0 + 1.0), "mse": lambda x: F.mse_loss(x, x * 0.5),
    "smooth_l1": lambda x: F.smooth_l1_loss(x, x * 0.5), "bce": lambda x: F.binary_cross_entropy_with_logits(x, x * 0),
    "dropout": lambda x: F.dropout(x, 0.5, generator=npjem.random.default_rng(0, DEVICE)),
    "matmul": lambda x: x @ x.T, "getitem": lambda x: x[np.array([0, 0]), np.array([1, 2])],
    "pad": lambda x: npjem.pad(x, 1, 0.5), "concat": lambda x: npjem.concatenate([x, x * 2.0]),
    "stack": lambda x: npjem.stack([x, x]), "norm": lambda x: F.norm(x, eps=1e-6),
    "linear": lambda x: F.linear(x, x), "rpow_tensor": lambda x: abs(x) ** (x * 0.5),
}


@pytest.mark.parametrize("form", sorted(FLOAT32_FORMS))
def test_float32_stays_float32(form):
    x = T(np.random.default_rng(0).standard_normal((3, 4)), dtype=np.float32)
    y = FLOAT32_FORMS[form](x)
    assert y.dtype == np.float32, f"{form} gave {y.dtype}"
    (g,) = npjem.grad(y, [x], grad_outputs=npjem.ones_like(y), retain_graph=True)
    assert g.dtype == np.float32 and g.shape == x.shape
    (gg,) = npjem.grad(y, [x], grad_outputs=npjem.ones_like(y), create_graph=True)
    assert gg.dtype == np.float32


def test_mixed_precision_promotes_forward_and_casts_gradients_back():
    a = T([1.0, 2.0], dtype=np.float32)
    b = T([3.0, 4.0], dtype=np.float64)
    y = a * b
    assert y.dtype == np.float64
    y.sum().backward()
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64


def test_python_values_take_the_default_dtype_and_arrays_keep_theirs():
    assert npjem.tensor([1.0, 2.0]).dtype == npjem.default_dtype()
    assert npjem.tensor(np.zeros(2)).dtype == np.float64
    assert npjem.tensor(np.zeros(2, np.float32)).dtype == np.float32


# ------------------------------------------------------------------------ errors

def test_backward_on_a_non_scalar_needs_a_gradient():
    x = T(np.ones((2, 3)))
    with pytest.raises(RuntimeError, match=r"one-element.*\(2, 3\)"):
        (x * 2.0).backward()
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 3\)"):
        (x * 2.0).backward(T(np.ones(3), False))
    (x * 2.0).backward(T(np.ones((2, 3)), False))
    assert np.allclose(x.grad.numpy(), 2.0)


@pytest.mark.parametrize("case", ["add", "mul", "matmul", "matmul_batch", "concatenate", "where",
                                  "concatenate_ndim"])
def test_mismatched_shapes_name_both_shapes(case):
    a, b = T(np.ones((2, 3))), T(np.ones((4, 5)))
    fn = {
        "add": lambda: a + b,
        "mul": lambda: a * b,
        "matmul": lambda: a @ b,
        "matmul_batch": lambda: T(np.ones((2, 2, 3))) @ T(np.ones((3, 3, 5))),
        "concatenate": lambda: npjem.concatenate([a, b], axis=0),
        "concatenate_ndim": lambda: npjem.concatenate([a, T(np.ones(3))], axis=1),
        "where": lambda: npjem.where(npjem.tensor(np.ones((4, 5), dtype=bool), device=DEVICE), a, 0.0),
    }[case]
    with pytest.raises(ValueError) as info:
        fn()
    msg = str(info.value).replace(" ", "")
    first = "(2,2,3)" if case == "matmul_batch" else "(2,3)"
    assert first in msg
    second = {"matmul_batch": "(3,3,5)", "concatenate_ndim": "(3,)"}.get(case, "(4,5)")
    assert second in msg


def test_grad_shape_and_dtype_invariant_is_enforced():
    class WrongShape(npjem.Function):
        def forward(self, x):
            return x * 2.0

        def backward(self, gy):
            return npjem.Tensor(gy.xp.ones((7,), dtype=gy.dtype))

    class WrongKind(npjem.Function):
        def forward(self, x):
            return x * 2.0

        def backward(self, gy):
            return npjem.Tensor(gy.xp.ones(gy.shape, dtype=np.int64))

    class TooMany(npjem.Function):
        def forward(self, x):
            return x * 2.0

        def backward(self, gy):
            return gy, gy

    x = T(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"\(7,\).*\(2, 3\)"):
        WrongShape()(x).sum().backward()
    with pytest.raises(TypeError, match="int64"):
        WrongKind()(x).sum().backward()
    with pytest.raises(RuntimeError, match="2 gradients for 1 inputs"):
        TooMany()(x).sum().backward()


def test_broadcast_gradient_is_reduced_to_the_input_shape():
    class Broadcasting(npjem.Function):
        """Returns its gradient in the broadcast output shape; the engine sums it down."""

        def forward(self, a, b):
            return a + b

        def backward(self, gy):
            return gy, gy

    a, b = T(np.ones((3, 1))), T(np.ones(4))
    Broadcasting()(a, b).backward(T(np.ones((3, 4)), False))
    assert a.grad.shape == (3, 1) and np.allclose(a.grad.numpy(), 4.0)
    assert b.grad.shape == (4,) and np.allclose(b.grad.numpy(), 3.0)


# ------------------------------------------------------------------------ deep graphs

# 30,000 operations: thirty times Python's default recursion limit, so a recursive backward,
# graph walk or deallocation would fail here.
CHAIN = 30_000


def test_a_long_chain_of_ops_backpropagates():
    x = T([0.5, -0.25])
    y = x
    for i in range(CHAIN):
        y = y * 1.0000001 if i % 2 else y + 1e-6
    t0 = time.perf_counter()
    y.sum().backward()
    elapsed = time.perf_counter() - t0
    assert np.allclose(x.grad.numpy(), 1.0000001 ** (CHAIN // 2))
    assert elapsed < 30  # ~0.1 s on a laptop; generous for a loaded CI machine
    del y  # freeing the chain must not recurse either


def test_a_long_chain_of_ops_with_grad():
    x = T([0.5])
    y = x
    for _ in range(CHAIN):
        y = y + 1e-6
    (g,) = npjem.grad(y, [x])
    assert g.item() == 1.0


# ------------------------------------------------------------------------ npjem.grad

def test_grad_leaves_dot_grad_untouched_and_accepts_intermediates():
    x = T([1.0, 2.0])
    h = x * x          # intermediate
    y = (h * 3.0).sum()
    x.grad = T([7.0, 7.0], False)
    gh, gx = npjem.grad(y, [h, x], retain_graph=True)
    assert np.allclose(gh.numpy(), 3.0) and np.allclose(gx.numpy(), 6 * np.array([1.0, 2.0]))
    assert np.allclose(x.grad.numpy(), 7.0) and h.grad is None
    assert not gx.requires_grad  # no graph without create_graph
    (gx1,) = npjem.grad(y, x)  # a single input
    assert np.allclose(gx1.numpy(), gx.numpy())


def test_grad_runs_only_the_part_of_the_graph_it_needs():
    # ∇ₓE must not pay for (or trip over) the parameters' branch, as torch.autograd.grad.
    calls = []

    class Spy(npjem.Function):
        def forward(self, a, b):
            return a * b

        def backward(self, gy):
            calls.append(self.needs_input_grad)
            a, b = self.inputs
            return (gy * b if self.needs_input_grad[0] else None,
                    gy * a if self.needs_input_grad[1] else None)

    class NoBackward(npjem.Function):
        def forward(self, w):
            return w * 2.0

    x, w = T([1.0, 2.0]), T([3.0, 4.0])
    spy = Spy()
    y = spy(x, NoBackward()(w)).sum()
    (gx,) = npjem.grad(y, [x], retain_graph=True)
    assert np.allclose(gx.numpy(), [6.0, 8.0])
    assert calls == [(True, False)]  # asked for x's gradient only
    assert spy.needs_input_grad == (True, True)  # the function's own record is restored
    with pytest.raises(NotImplementedError):  # backward() does need the whole graph
        y.backward()


def test_grad_allow_unused():
    x, z = T([1.0]), T([2.0])
    y = (x * 2.0).sum()
    with pytest.raises(RuntimeError, match="allow_unused"):
        npjem.grad(y, [x, z], retain_graph=True)
    gx, gz = npjem.grad(y, [x, z], allow_unused=True)
    assert gx.item() == 2.0 and gz is None


def test_grad_with_several_outputs_and_grad_outputs():
    x = T([1.0, 2.0])
    y1, y2 = x * 2.0, x * x
    (g,) = npjem.grad([y1, y2], [x], grad_outputs=[T([1.0, 1.0], False), T([0.5, 2.0], False)])
    assert np.allclose(g.numpy(), [2.0 + 1.0, 2.0 + 8.0])
    with pytest.raises(ValueError, match="grad_outputs"):
        npjem.grad([y1, y2], [x], grad_outputs=[T([1.0, 1.0], False)])


def test_grad_rejects_inputs_without_requires_grad():
    x = T([1.0], False)
    with pytest.raises(ValueError, match=r"inputs\[0\]"):
        npjem.grad((x * 2.0), [x])


def test_retain_grad_keeps_intermediate_gradients():
    x = T([1.0, 2.0])
    h = (x * 3.0).retain_grad()
    other = x * 5.0
    y = (h * h).sum() + other.sum()
    y.backward(retain_graph=True)
    assert np.allclose(h.grad.numpy(), 2 * 3 * np.array([1.0, 2.0]))
    assert other.grad is None  # not retained
    assert np.allclose(x.grad.numpy(), 18 * np.array([1.0, 2.0]) + 5.0)
    y.retain_grad()
    y.backward()
    assert y.grad.item() == 1.0


# ------------------------------------------------------------------------ conversions

def test_numpy_and_dlpack_round_trip():
    a = np.arange(6.0).reshape(2, 3)
    t = npjem.tensor(a, device=DEVICE)
    assert np.array_equal(t.numpy(), a)
    if DEVICE == "cpu":
        b = np.from_dlpack(t)
        assert np.array_equal(b, a) and np.shares_memory(b, t.data)
        back = npjem.Tensor(b)
        assert np.array_equal(back.numpy(), a)
    else:
        cp = backend.get_cupy()
        b = cp.from_dlpack(t)
        assert np.array_equal(cp.asnumpy(b), a)
    assert t.__dlpack_device__() == t.data.__dlpack_device__()


def test_reductions_and_scalar_indexing_give_0d_arrays():
    # NumPy's own reductions return np.float64 scalars; a Tensor always holds an array, so it
    # keeps its dtype when wrapped again and can be exported with dlpack.
    x = T(np.arange(6.0).reshape(2, 3))
    for y in (x.sum(), x.max(), x.mean(), x[1, 2], (x * x).sum() * 2.0):
        assert backend.is_array(y.data) and y.shape == () and y.dtype == np.float64
        assert npjem.tensor(y).dtype == np.float64
    if DEVICE == "cpu":
        assert np.from_dlpack(x.sum()) == 15.0
    assert npjem.gradcheck(lambda t: t * t, [x.sum()])  # a 0-d input from a reduction


def test_to_cpu_item_tolist():
    t = T([[1.5, 2.5]])
    c = t.to("cpu")
    assert c.device == "cpu" and np.array_equal(c.numpy(), [[1.5, 2.5]])
    assert t.cpu().device == "cpu"
    if DEVICE == "cpu":
        assert c is t  # nothing to do
    assert T([3.25]).item() == 3.25 and isinstance(T(2.0).item(), float)
    assert t.tolist() == [[1.5, 2.5]]
    with pytest.raises(ValueError, match="one element"):
        t.item()
    with pytest.raises(ValueError, match="device"):
        t.to("tpu")
    h = t.to(dtype=np.float32)
    assert h.dtype == np.float32 and h.requires_grad
    h.sum().backward()
    assert t.grad.dtype == np.float64 and np.allclose(t.grad.numpy(), 1.0)


@given(data=st.data(), shape=nt.shapes(max_dims=3, max_side=3))
def test_comparisons_are_not_differentiable(data, shape):
    a = T(data.draw(nt.arrays(shape), label="a"))
    b = T(data.draw(nt.arrays(shape), label="b"))
    for r, want in ((a < b, np.less), (a <= b, np.less_equal), (a > b, np.greater),
                    (a >= b, np.greater_equal), (a == b, np.equal), (a != b, np.not_equal)):
        assert r.dtype == bool and not r.requires_grad and r.creator is None
        assert np.array_equal(r.numpy(), want(a.numpy(), b.numpy()))
    assert not (a > 0.0).requires_grad
    s = npjem.autograd.sign(a)
    assert not s.requires_grad


def test_bool_of_a_tensor():
    assert bool(T([1.0]) > 0.0)
    with pytest.raises(ValueError, match="ambiguous"):
        bool(T([1.0, 2.0]) > 0.0)


def test_factories_default_dtype_and_requires_grad():
    assert npjem.zeros(2, 3).shape == (2, 3) and npjem.zeros((2, 3)).dtype == npjem.default_dtype()
    assert npjem.ones(2, dtype=np.float64, requires_grad=True).requires_grad
    r1 = npjem.randn(3, generator=npjem.random.default_rng(5, DEVICE), device=DEVICE)
    r2 = npjem.randn(3, generator=npjem.random.default_rng(5, DEVICE), device=DEVICE)
    assert np.array_equal(r1.numpy(), r2.numpy())
    assert npjem.arange(4).dtype.kind == "i" and npjem.arange(0.0, 1.0, 0.5).dtype == npjem.default_dtype()
    assert npjem.full((2,), 3.0).numpy().tolist() == [3.0, 3.0]
    assert npjem.zeros_like(r1).shape == (3,) and npjem.ones_like(r1).numpy().sum() == 3.0


# ------------------------------------------------------------------------ two devices

@pytest.mark.skipif(DEVICE == "cpu", reason="needs a second device: NPJEM_DEVICE=cuda (or the fake GPU)")
def test_ops_and_gradients_on_two_devices_raise_naming_the_devices():
    x = T([1.0, 2.0, 3.0])
    host = npjem.Tensor(np.ones(3))
    assert host.device == "cpu" and x.device == DEVICE
    with pytest.raises(ValueError, match=r"Add: inputs are on different devices \(cuda, cpu\)"):
        x + host
    with pytest.raises(ValueError, match="different devices"):
        F.linear(npjem.Tensor(np.ones((2, 3))), x.reshape(1, 3))
    y = x * 2.0
    with pytest.raises(ValueError, match="the gradient is on cpu but the output is on cuda"):
        y.backward(np.ones(3))
    # Host data that is not an array (a list, a scalar) goes to the output's device.
    y.backward([1.0, 1.0, 1.0])
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0, 2.0])
    # npjem.tensor copies host arrays to the default device (torch.tensor); Tensor() wraps in place.
    assert npjem.tensor(np.ones(2)).device == DEVICE and npjem.Tensor(np.ones(2)).device == "cpu"
