"""The input checks every loss shares (npjem/losses/_inputs.py), called directly.

Each check either hands back the input as a floating Tensor (the same object when it already is
one) or raises with the argument's name; these tests pin both sides for the boundary shapes.
"""
import numpy as np
import pytest

from npjem import Tensor
from npjem._checks import ArgumentTypeError
from npjem.losses._inputs import as_float_tensor, batch, like, matrix, tensor_list


def test_as_float_tensor_keeps_a_tensor_and_wraps_an_array():
    t = Tensor(np.ones((2, 3)))
    assert as_float_tensor("h", t) is t
    a = np.arange(6.0).reshape(2, 3)
    w = as_float_tensor("h", a)
    assert isinstance(w, Tensor) and w.data is a


@pytest.mark.parametrize("value", [[1.0, 2.0], 3.0, np.arange(4), np.ones(3, dtype=bool)])
def test_as_float_tensor_refuses_non_arrays_and_non_float_dtypes(value):
    with pytest.raises(ArgumentTypeError, match="^h_q "):
        as_float_tensor("h_q", value)


@pytest.mark.parametrize("check", [matrix, batch])
def test_matrix_and_batch_take_two_dimensions_only(check):
    x = np.ones((3, 2))
    assert check("z", x).shape == (3, 2)
    for bad in (np.ones(3), np.ones((2, 2, 2))):
        with pytest.raises(ValueError, match="^z must be 2-D"):
            check("z", bad)


def test_batch_needs_a_row_and_a_column_where_matrix_does_not():
    assert batch("z", np.ones((1, 1))).shape == (1, 1)
    for shape in [(0, 3), (3, 0), (0, 0)]:
        assert matrix("z", np.ones(shape)).shape == shape
        with pytest.raises(ValueError, match=r"^z must hold at least one sample"):
            batch("z", np.ones(shape))


def test_like_checks_shape_then_dtype_then_device():
    ref = Tensor(np.ones((2, 3)))
    t = Tensor(np.zeros((2, 3)))
    assert like("t", t, "ref", ref) is t
    assert like("t", t, "ref", ref, shape=(2, 3)) is t
    # without a shape, any shape of the right dtype passes
    assert like("t", Tensor(np.zeros(4)), "ref", ref) is not None
    with pytest.raises(ValueError, match=r"^t must have shape \(3, 2\)"):
        like("t", t, "ref", ref, shape=(3, 2))
    with pytest.raises(TypeError, match="^t has dtype float32 but ref has dtype float64"):
        like("t", Tensor(np.zeros((2, 3), np.float32)), "ref", ref, shape=(2, 3))


def test_tensor_list_accepts_lists_and_tuples_of_one_shape():
    a, b = np.ones((2, 3)), np.zeros((2, 3))
    for values in ([a, b], (a, b), [a]):
        out = tensor_list("s", values)
        assert isinstance(out, list) and len(out) == len(values)
        assert all(isinstance(t, Tensor) and t.shape == (2, 3) for t in out)
    assert len(tensor_list("s", [a, b, a], min_len=3)) == 3


def test_tensor_list_refuses_what_is_not_a_list_of_matching_matrices():
    a = np.ones((2, 3))
    with pytest.raises(TypeError, match="single ndarray; wrap it in a list"):
        tensor_list("s", a)
    with pytest.raises(TypeError, match="single Tensor; wrap it in a list"):
        tensor_list("s", Tensor(a))
    with pytest.raises(TypeError, match="^s must be a list or tuple"):
        tensor_list("s", {"a": a})
    with pytest.raises(ValueError, match=r"^s must hold at least 1 Tensor\(s\), got 0"):
        tensor_list("s", [])
    with pytest.raises(ValueError, match=r"^s must hold at least 2 Tensor\(s\), got 1"):
        tensor_list("s", [a], min_len=2)
    with pytest.raises(ValueError, match=r"^s\[1\] must be 2-D"):
        tensor_list("s", [a, np.ones(3)])
    with pytest.raises(ValueError, match=r"^s\[0\] must have at least one row"):
        tensor_list("s", [np.ones((0, 3)), np.ones((0, 3))])
    with pytest.raises(ValueError, match=r"^s\[0\] must have at least one row"):
        tensor_list("s", [np.ones((2, 0))])
    with pytest.raises(ValueError, match=r"^s\[2\] must have shape \(2, 3\) \(to match s\[0\]\)"):
        tensor_list("s", [a, a, np.ones((3, 3))])
    with pytest.raises(TypeError, match=r"^s\[1\] has dtype float32 but s\[0\] has dtype float64"):
        tensor_list("s", [a, a.astype(np.float32)])
