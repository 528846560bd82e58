"""Gradients of every primitive in npjem/autograd/ops.py against central differences (float64).

Shapes, broadcasting patterns, axes and values are drawn by Hypothesis; non-differentiable
points are avoided by construction (values away from kinks, distinct values for max/min,
positive values for log and sqrt), never by filtering after the fact.
"""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import npjem
from npjem import backend
from npjem import testing as nt

DEVICE = backend.default_device()
pytestmark = pytest.mark.skipif(DEVICE != "cpu" and not backend.cupy_available(),
                                reason="NPJEM_DEVICE asks for a GPU that is not available")

SHAPES = nt.shapes(max_dims=4, max_side=3, max_size=36)
PAIRS = nt.broadcastable_pairs(max_dims=3, max_side=3)


def T(a, requires_grad=True):
    return npjem.tensor(np.asarray(a, dtype=np.float64), device=DEVICE, requires_grad=requires_grad)


def check(fn, *arrays, fixed=(), gradgrad=False):
    inputs = [T(a) for a in arrays]
    assert npjem.gradcheck(fn, inputs, fixed=fixed)
    if gradgrad:
        assert npjem.gradgradcheck(fn, inputs, fixed=fixed)


def to_target(data, target):
    """A shape that broadcasts TO ``target``: a suffix of it with some axes set to 1."""
    k = data.draw(st.integers(0, len(target)), label="dims kept")
    kept = target[len(target) - k:]
    ones = data.draw(st.lists(st.booleans(), min_size=k, max_size=k), label="ones")
    return tuple(1 if o else s for s, o in zip(kept, ones))


# ------------------------------------------------------------------------ arithmetic

BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a ** b,
}


@pytest.mark.parametrize("op", sorted(BINARY))
@given(data=st.data(), shapes=PAIRS)
def test_binary_broadcasting(op, data, shapes):
    sa, sb = shapes
    a = data.draw(nt.positive_arrays(sa, min_value=0.2) if op == "pow" else nt.arrays(sa), label="a")
    b_elems = nt.values_away_from([0.0], 0.3) if op == "div" else None
    b = data.draw(nt.arrays(sb, elements=b_elems, min_value=-2.0, max_value=2.0), label="b")
    check(BINARY[op], a, b)


@pytest.mark.parametrize("op", sorted(BINARY))
@given(data=st.data(), shapes=PAIRS)
def test_binary_with_one_side_fixed(op, data, shapes):
    sa, sb = shapes
    a = data.draw(nt.positive_arrays(sa, min_value=0.2), label="a")
    b = data.draw(nt.positive_arrays(sb, min_value=0.3), label="b")
    check(BINARY[op], a, b, fixed=[0])
    check(BINARY[op], a, b, fixed=[1])


SCALAR_FORMS = {
    "x+c": lambda x: x + 1.5, "c+x": lambda x: 1.5 + x, "x-c": lambda x: x - 1.5,
    "c-x": lambda x: 1.5 - x, "x*c": lambda x: x * 0.5, "c*x": lambda x: 0.5 * x,
    "x/c": lambda x: x / 3.0, "c/x": lambda x: 3.0 / x, "c**x": lambda x: 2.0 ** x,
    "-x": lambda x: -x, "neg": npjem.neg, "+x": lambda x: +x * 1.0,
}


@pytest.mark.parametrize("form", sorted(SCALAR_FORMS))
@given(data=st.data(), shape=SHAPES)
def test_python_scalar_operands(form, data, shape):
    x = data.draw(nt.arrays(shape, elements=nt.values_away_from([0.0], 0.3)), label="x")
    check(SCALAR_FORMS[form], x)


@pytest.mark.parametrize("c", [0, 1, 2, 3, -1, -2, 0.5, 1.5, -0.5])
@given(data=st.data(), shape=SHAPES)
def test_pow_scalar_exponent(c, data, shape):
    integer = float(c).is_integer()
    # integer powers are defined for negative bases; fractional ones only for positive
    elems = nt.values_away_from([0.0], 0.2) if integer else st.floats(0.2, 3.0)
    x = data.draw(nt.arrays(shape, elements=elems), label="x")
    check(lambda t: t ** c, x)
    check(lambda t: npjem.pow(t, c), x)


@given(data=st.data(), shapes=PAIRS)
def test_pow_tensor_exponent_negative_base_integer_exponent(data, shapes):
    # a ** b with a < 0 is real only for integer b; the exponent is then held fixed
    sa, sb = shapes
    a = data.draw(nt.arrays(sa, elements=nt.values_away_from([0.0], 0.2)), label="a")
    b = data.draw(nt.arrays(sb, elements=st.integers(-2, 3).map(float)), label="b")
    check(lambda u, v: u ** v, a, b, fixed=[1])


# ------------------------------------------------------------------------ elementwise

UNARY = {
    "exp": (npjem.exp, nt.arrays),
    "log": (npjem.log, nt.positive_arrays),
    "log1p": (npjem.log1p, lambda s: nt.arrays(s, min_value=-0.8)),
    "sqrt": (npjem.sqrt, nt.positive_arrays),
    "abs": (npjem.abs, lambda s: nt.arrays(s, elements=nt.values_away_from([0.0], 0.1))),
    "tanh": (npjem.tanh, nt.arrays),
    "sigmoid": (npjem.sigmoid, lambda s: nt.arrays(s, min_value=-8, max_value=8)),
    "erf": (npjem.erf, nt.arrays),
    "method_exp": (lambda t: t.exp(), nt.arrays),
    "method_abs": (lambda t: abs(t), lambda s: nt.arrays(s, elements=nt.values_away_from([0.0], 0.1))),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(data=st.data(), shape=SHAPES)
def test_unary(name, data, shape):
    fn, strategy = UNARY[name]
    check(fn, data.draw(strategy(shape), label="x"))


@pytest.mark.parametrize("op", ["maximum", "minimum"])
@given(data=st.data(), shapes=PAIRS)
def test_maximum_minimum_without_ties(op, data, shapes):
    sa, sb = shapes
    # a on the grid k/10, b on the grid k/10 + 1/20: never equal, at least 0.05 apart
    grid = st.integers(-30, 30).map(lambda k: k / 10)
    a = data.draw(nt.arrays(sa, elements=grid), label="a")
    b = data.draw(nt.arrays(sb, elements=grid.map(lambda v: v + 0.05)), label="b")
    check(getattr(npjem, op), a, b)
    check(lambda u: getattr(npjem, op)(u, 0.025), a)  # against a scalar, off both grids


@pytest.mark.parametrize("op", ["maximum", "minimum"])
def test_maximum_minimum_split_ties_evenly(op):
    a = T([1.0, 2.0, 3.0])
    b = T([1.0, 0.0, 3.0])
    y = getattr(npjem, op)(a, b)
    ga, gb = npjem.grad(y, [a, b], grad_outputs=T([10.0, 20.0, 30.0], requires_grad=False))
    win_a = 20.0 if op == "maximum" else 0.0
    assert np.allclose(ga.numpy(), [5.0, win_a, 15.0])
    assert np.allclose(gb.numpy(), [5.0, 20.0 - win_a, 15.0])


@given(data=st.data(), shapes=nt.broadcastable_pairs(max_dims=3, max_side=3))
def test_where_broadcasting(data, shapes):
    sa, sb = shapes
    sc = data.draw(nt.broadcastable_shapes(np.broadcast_shapes(sa, sb), max_dims=3, max_side=3), label="cond")
    cond = data.draw(nt.arrays(sc, dtype=bool), label="cond")
    a = data.draw(nt.arrays(sa), label="a")
    b = data.draw(nt.arrays(sb), label="b")
    c = backend.to_device(cond, DEVICE)  # a raw array condition
    check(lambda u, v: npjem.where(c, u, v), a, b)
    check(lambda u: npjem.where(c, u, 0.5), a)
    check(lambda v: npjem.where(npjem.tensor(cond, device=DEVICE), -1.0, v), b)


@given(data=st.data(), shape=SHAPES,
       bounds=st.sampled_from([(-1.0, 1.0), (None, 0.5), (-0.5, None), (0.0, 2.0)]))
def test_clip_away_from_bounds(data, shape, bounds):
    lo, hi = bounds
    kinks = [v for v in bounds if v is not None]
    x = data.draw(nt.arrays(shape, elements=nt.values_away_from(kinks, 0.05)), label="x")
    check(lambda t: npjem.clip(t, lo, hi), x)
    check(lambda t: t.clamp(lo, hi), x)


def test_clip_gradient_passes_on_the_bounds():
    x = T([-1.0, -0.5, 0.0, 1.0, 2.0])
    (g,) = npjem.grad(npjem.clip(x, -0.5, 1.0).sum(), [x])
    assert np.array_equal(g.numpy(), [0.0, 1.0, 1.0, 1.0, 0.0])


# ------------------------------------------------------------------------ matmul

MATMUL_CASES = {
    "2d": lambda n, k, m, b, c: ((n, k), (k, m)),
    "batched": lambda n, k, m, b, c: ((b, n, k), (b, k, m)),
    "broadcast_batch": lambda n, k, m, b, c: ((b, 1, n, k), (c, k, m)),
    "batch_vs_2d": lambda n, k, m, b, c: ((b, n, k), (k, m)),
    "2d_vs_batch": lambda n, k, m, b, c: ((n, k), (c, k, m)),
    "vec_vec": lambda n, k, m, b, c: ((k,), (k,)),
    "vec_mat": lambda n, k, m, b, c: ((k,), (k, m)),
    "mat_vec": lambda n, k, m, b, c: ((n, k), (k,)),
    "vec_batch": lambda n, k, m, b, c: ((k,), (b, k, m)),
    "batch_vec": lambda n, k, m, b, c: ((b, n, k), (k,)),
}


@pytest.mark.parametrize("case", sorted(MATMUL_CASES))
@given(data=st.data(), dims=st.tuples(*[st.integers(1, 3)] * 5))
def test_matmul(case, data, dims):
    sa, sb = MATMUL_CASES[case](*dims)
    a = data.draw(nt.arrays(sa), label="a")
    b = data.draw(nt.arrays(sb), label="b")
    check(lambda u, v: u @ v, a, b)
    check(npjem.matmul, a, b, fixed=[0])


# ------------------------------------------------------------------------ reductions

@pytest.mark.parametrize("name", ["sum", "mean"])
@given(data=st.data(), shape=SHAPES, keepdims=st.booleans())
def test_sum_mean(name, data, shape, keepdims):
    axis = data.draw(nt.axes(len(shape)), label="axis")
    x = data.draw(nt.arrays(shape), label="x")
    check(lambda t: getattr(t, name)(axis=axis, keepdims=keepdims), x)
    check(lambda t: getattr(npjem, name)(t, axis, keepdims), x)


@pytest.mark.parametrize("name", ["var", "std"])
@given(data=st.data(), shape=nt.shapes(min_dims=1, max_dims=3, max_side=4), keepdims=st.booleans(),
       ddof=st.integers(0, 1))
def test_var_std(name, data, shape, keepdims, ddof):
    axis = data.draw(nt.axes(len(shape), min_size=1), label="axis")
    axes = range(len(shape)) if axis is None else [axis] if isinstance(axis, int) else axis
    n = int(np.prod([shape[a] for a in axes]))
    assume(n - ddof >= 1 and n >= 2)
    # distinct values: the variance is bounded away from 0, where std has its kink
    x = data.draw(nt.distinct_arrays(shape, min_gap=0.1), label="x")
    check(lambda t: getattr(t, name)(axis=axis, keepdims=keepdims, ddof=ddof), x)


def test_var_matches_numpy_and_rejects_too_few_elements():
    x = np.random.default_rng(0).standard_normal((3, 4))
    for ddof in (0, 1):
        assert np.allclose(T(x).var(axis=1, ddof=ddof).numpy(), x.var(axis=1, ddof=ddof))
        assert np.allclose(T(x).std(axis=0, ddof=ddof).numpy(), x.std(axis=0, ddof=ddof))
    with pytest.raises(ValueError, match="ddof"):
        T(x).var(axis=0, ddof=3)


def test_std_of_a_constant_has_zero_gradient_not_nan():
    x = T(np.full((2, 3), 1.5))
    (g,) = npjem.grad(x.std(axis=1).sum() + x.std(), [x])
    assert np.array_equal(g.numpy(), np.zeros((2, 3)))
    y = T([[1.0, 1.0], [1.0, 3.0]])
    (g,) = npjem.grad(y.std(axis=1, ddof=1).sum(), [y])
    assert np.allclose(g.numpy(), [[0.0, 0.0], [-1 / np.sqrt(2), 1 / np.sqrt(2)]])


@pytest.mark.parametrize("name", ["max", "min"])
@given(data=st.data(), shape=SHAPES, keepdims=st.booleans())
def test_max_min_distinct_values(name, data, shape, keepdims):
    axis = data.draw(nt.axes(len(shape)), label="axis")
    x = data.draw(nt.distinct_arrays(shape), label="x")
    check(lambda t: getattr(t, name)(axis=axis, keepdims=keepdims), x)


@pytest.mark.parametrize("name", ["max", "min"])
def test_max_min_split_ties_evenly(name):
    sgn = 1.0 if name == "max" else -1.0
    x = T(sgn * np.array([[3.0, 1.0, 3.0, 3.0], [0.0, 2.0, 2.0, -1.0]]))
    y = getattr(x, name)(axis=1)
    (g,) = npjem.grad(y, [x], grad_outputs=T([6.0, 4.0], requires_grad=False))
    assert np.allclose(g.numpy(), [[2.0, 0.0, 2.0, 2.0], [0.0, 2.0, 2.0, 0.0]])
    (g,) = npjem.grad(getattr(x, name)(), [x])  # global: one maximum, no tie
    assert g.numpy().sum() == pytest.approx(1.0)
    z = T(np.full((2, 2), 7.0))
    (g,) = npjem.grad(getattr(z, name)(), [z])
    assert np.allclose(g.numpy(), 0.25)


# ------------------------------------------------------------------------ shapes

@given(data=st.data(), shape=SHAPES)
def test_reshape_flatten(data, shape):
    x = data.draw(nt.arrays(shape), label="x")
    perm = data.draw(st.permutations(shape), label="target")
    check(lambda t: t.reshape(tuple(perm)) * T(np.arange(len(x.ravel())).reshape(perm), False), x)
    check(lambda t: npjem.reshape(t, -1) * T(np.arange(x.size), False), x)
    check(lambda t: t.flatten(), x)


@given(data=st.data(), shape=SHAPES)
def test_transpose_permute_swapaxes(data, shape):
    x = data.draw(nt.arrays(shape), label="x")
    perm = tuple(data.draw(st.permutations(range(len(shape))), label="perm"))
    check(lambda t: npjem.transpose(t, perm), x)
    check(lambda t: t.permute(*perm) if perm else t.permute(perm), x)
    check(lambda t: t.T, x)
    if len(shape) >= 2:
        i, j = data.draw(st.lists(st.integers(0, len(shape) - 1), min_size=2, max_size=2, unique=True))
        check(lambda t: t.swapaxes(i, j), x)
        check(lambda t: t.mT, x)


@given(data=st.data(), shape=nt.shapes(max_dims=4, min_side=1, max_side=2))
def test_squeeze_unsqueeze(data, shape):
    x = data.draw(nt.arrays(shape), label="x")
    check(lambda t: t.squeeze(), x)
    ones = [i for i, s in enumerate(shape) if s == 1]
    if ones:
        ax = data.draw(st.sampled_from(ones), label="axis")
        check(lambda t: npjem.squeeze(t, ax), x)
    ax = data.draw(st.integers(-len(shape) - 1, len(shape)), label="new axis")
    check(lambda t: t.unsqueeze(ax), x)


def test_squeeze_rejects_a_non_unit_axis():
    with pytest.raises(ValueError, match="size 3"):
        T(np.ones((1, 3))).squeeze(1)


@given(data=st.data(), target=nt.shapes(max_dims=3, max_side=3))
def test_broadcast_to_and_sum_to(data, target):
    src = to_target(data, target)
    x = data.draw(nt.arrays(src), label="x")
    check(lambda t: npjem.broadcast_to(t, target), x)
    check(lambda t: t.expand(target), x)
    big = data.draw(nt.arrays(target), label="big")
    check(lambda t: npjem.sum_to(t, src), big)


# ------------------------------------------------------------------------ indexing

@given(data=st.data(), shape=nt.shapes(min_dims=1, max_dims=3, max_side=4))
def test_getitem_basic(data, shape):
    x = data.draw(nt.arrays(shape), label="x")
    index = data.draw(hnp.basic_indices(shape, allow_newaxis=True), label="index")
    check(lambda t: t[index], x)


@given(data=st.data(), shape=nt.shapes(min_dims=1, max_dims=3, max_side=4))
def test_getitem_integer_arrays_with_repeats(data, shape):
    x = data.draw(nt.arrays(shape), label="x")
    index = data.draw(hnp.integer_array_indices(shape, result_shape=nt.shapes(1, 2, 1, 5)), label="index")
    check(lambda t: t[index], x)
    first = index[0]
    check(lambda t: t[first], x)  # a single array picks whole rows (often the same row twice)
    check(lambda t: t[first.tolist()], x)  # a list, as in x[[0, 0, 1]]
    check(lambda t: t[npjem.tensor(first, device=DEVICE)], x)


def test_getitem_repeated_rows_add_up():
    x = T(np.arange(6.0).reshape(3, 2))
    (g,) = npjem.grad(x[np.array([2, 0, 2, 2])].sum(), [x])
    assert np.array_equal(g.numpy(), [[1.0, 1.0], [0.0, 0.0], [3.0, 3.0]])
    (g,) = npjem.grad(x[np.array([0, 0, -1]), np.array([1, 1, 0])].sum(), [x])
    assert np.array_equal(g.numpy(), [[0.0, 2.0], [0.0, 0.0], [1.0, 0.0]])


@given(data=st.data(), shape=nt.shapes(min_dims=1, max_dims=3, max_side=4))
def test_getitem_boolean_mask(data, shape):
    x = data.draw(nt.arrays(shape), label="x")
    k = data.draw(st.integers(1, len(shape)), label="mask dims")
    mask = data.draw(nt.arrays(shape[:k], dtype=bool), label="mask")
    check(lambda t: t[mask], x)
    check(lambda t: t[npjem.tensor(mask, device=DEVICE)], x)
    y = data.draw(nt.arrays(shape, elements=nt.values_away_from([0.0], 0.1)), label="y")
    check(lambda t: t[t.data > 0], y)  # a mask computed from the data (kept by small steps)


@given(data=st.data(), n=st.integers(1, 5), c=st.integers(1, 4))
def test_getitem_rows_and_labels(data, n, c):
    x = data.draw(nt.arrays((n, c)), label="x")
    labels = np.asarray(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    check(lambda t: t[np.arange(n), labels], x)
    check(lambda t: t[:, labels], x)  # slice + array: every column may repeat
    check(lambda t: t[..., labels], x)


# ------------------------------------------------------------------------ joining, padding

@given(data=st.data(), base=nt.shapes(min_dims=1, max_dims=3, max_side=3), n=st.integers(1, 3))
def test_concatenate(data, base, n):
    axis = data.draw(st.integers(-len(base), len(base) - 1), label="axis")
    sizes = data.draw(st.lists(st.integers(1, 3), min_size=n, max_size=n), label="sizes")
    arrays = []
    for s in sizes:
        shape = list(base)
        shape[axis] = s
        arrays.append(data.draw(nt.arrays(tuple(shape)), label="part"))
    check(lambda *ts: npjem.concatenate(ts, axis=axis), *arrays)
    if n > 1:
        check(lambda *ts: npjem.cat(list(ts), axis), *arrays, fixed=[0])


@given(data=st.data(), shape=nt.shapes(max_dims=3, max_side=3), n=st.integers(1, 3))
def test_stack(data, shape, n):
    axis = data.draw(st.integers(-len(shape) - 1, len(shape)), label="axis")
    arrays = [data.draw(nt.arrays(shape), label="part") for _ in range(n)]
    check(lambda *ts: npjem.stack(ts, axis=axis), *arrays)


@given(data=st.data(), shape=nt.shapes(min_dims=1, max_dims=3, max_side=3))
def test_pad(data, shape):
    widths = data.draw(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)),
                                min_size=len(shape), max_size=len(shape)), label="pad")
    value = data.draw(st.floats(-1, 1), label="value")
    x = data.draw(nt.arrays(shape), label="x")
    check(lambda t: npjem.pad(t, widths, value), x)
    check(lambda t: npjem.pad(t, 1), x)


# ------------------------------------------------------------------------ conversions

@given(data=st.data(), shape=SHAPES)
def test_astype_roundtrip_and_to_cpu(data, shape):
    x = data.draw(nt.arrays(shape), label="x")
    check(lambda t: t.astype(np.float64) * 2.0, x)
    check(lambda t: t.to(DEVICE) * 2.0, x)
    check(lambda t: t.double().exp(), x)
