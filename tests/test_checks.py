"""npjem._checks: every check returns the canonical value or names the argument and the expectation."""
import numpy as np
import pytest

from npjem import _checks as C


def test_check_int_accepts_python_and_numpy_ints():
    assert C.check_int(3, "n") == 3 and type(C.check_int(np.int64(3), "n")) is int
    assert C.check_int(0, "n", minimum=0) == 0
    assert C.check_int(-5, "n", minimum=None) == -5


@pytest.mark.parametrize("bad", [True, 2.0, "3", None])
def test_check_int_refuses_non_integers_with_the_name(bad):
    with pytest.raises(TypeError, match="n_iters must be an integer"):
        C.check_int(bad, "n_iters")
    with pytest.raises(ValueError):  # ArgumentTypeError is a ValueError too
        C.check_int(bad, "n_iters")


def test_check_int_bounds():
    with pytest.raises(ValueError, match="k must be a positive integer, got 0"):
        C.check_int(0, "k")
    with pytest.raises(ValueError, match="k must be an integer >= 2, got 1"):
        C.check_int(1, "k", minimum=2)
    with pytest.raises(ValueError, match="k must be an integer <= 4, got 5"):
        C.check_int(5, "k", maximum=4)
    assert C.check_int(4, "k", maximum=4) == 4 and C.check_int(2, "k", minimum=2) == 2


def test_check_real_bounds_and_open_ends():
    assert C.check_real(0, "x", low=0) == 0.0
    assert C.check_real(1, "x", high=1) == 1.0
    with pytest.raises(ValueError, match="x must be > 0, got 0"):
        C.check_real(0, "x", low=0, low_open=True)
    with pytest.raises(ValueError, match="x must be < 1, got 1"):
        C.check_real(1, "x", high=1, high_open=True)
    with pytest.raises(ValueError, match="x must be >= -1"):
        C.check_real(-1.5, "x", low=-1)
    with pytest.raises(ValueError, match="x must be <= 2"):
        C.check_real(2.5, "x", high=2)
    with pytest.raises(ValueError, match="NaN"):
        C.check_real(float("nan"), "x")
    with pytest.raises(ValueError, match="finite"):
        C.check_real(float("inf"), "x")
    assert C.check_real(float("inf"), "x", finite=False) == float("inf")
    with pytest.raises(TypeError, match="x must be a real number"):
        C.check_real(True, "x")
    with pytest.raises(TypeError, match="x must be a real number"):
        C.check_real("1", "x")
    assert type(C.check_real(np.float32(0.5), "x")) is float


def test_check_positive_and_probability():
    assert C.check_positive(0.1, "t") == 0.1
    with pytest.raises(ValueError, match="t must be > 0"):
        C.check_positive(0, "t")
    assert C.check_positive(0, "t", allow_zero=True) == 0.0
    with pytest.raises(ValueError, match="t must be >= 0"):
        C.check_positive(-1e-9, "t", allow_zero=True)
    assert C.check_probability(1, "p") == 1.0 and C.check_probability(0, "p") == 0.0
    with pytest.raises(ValueError, match="p must be <= 1"):
        C.check_probability(1.01, "p")
    with pytest.raises(ValueError, match="p must be >= 0"):
        C.check_probability(-0.01, "p")


def test_check_choice_and_bool():
    assert C.check_choice("sum", "reduction", ("mean", "sum")) == "sum"
    with pytest.raises(ValueError, match="reduction must be one of 'mean', 'sum', got 'max'"):
        C.check_choice("max", "reduction", ("mean", "sum"))
    with pytest.raises(ValueError, match="reduction must be one of"):
        C.check_choice(["mean"], "reduction", ("mean", "sum"))
    assert C.check_bool(np.bool_(True), "flag") is True
    with pytest.raises(TypeError, match="flag must be True or False, got 1"):
        C.check_bool(1, "flag")


def test_check_float_dtype():
    assert C.check_float_dtype("float64") == np.float64
    assert C.check_float_dtype(None, default=np.float32) == np.float32
    with pytest.raises(TypeError, match="dtype must be a floating dtype, got int64"):
        C.check_float_dtype("int64")
    with pytest.raises(TypeError, match="out_dtype must be a floating dtype"):
        C.check_float_dtype(object(), "out_dtype")


def test_check_ndim_and_shape():
    a = np.zeros((3, 4))
    assert C.check_ndim(a, "h_x", 2) is a
    assert C.check_ndim(a, "h_x", (2, 3)) is a
    with pytest.raises(ValueError, match=r"h_x must be 1-D or 3-D with shape \(N, D\), got shape \(3, 4\)"):
        C.check_ndim(a, "h_x", (1, 3), "(N, D)")
    assert C.check_shape(a, "h_y", (3, None)) is a
    with pytest.raises(ValueError, match=r"h_y must have shape \(\*, 5\), got \(3, 4\)"):
        C.check_shape(a, "h_y", (None, 5))
    with pytest.raises(ValueError, match=r"must have shape \(3,\), got \(3, 4\)"):
        C.check_shape(a, "v", (3,))


def test_check_estimator_input_is_scikit_learns_rule():
    # Integers and booleans become float64; a floating array keeps its dtype (and identity).
    for dt in (np.int8, np.int64, np.uint8, bool):
        out = C.check_estimator_input(np.ones((2, 3), dtype=dt), "X")
        assert out.dtype == np.float64 and out.shape == (2, 3)
    x32 = np.ones(3, dtype=np.float32)
    assert C.check_estimator_input(x32, "X") is x32
    other = [[1, 2]]  # not an array: left to the caller's own checks
    assert C.check_estimator_input(other, "X") is other


def test_check_estimator_input_refuses_sparse_in_one_line_unless_accepted():
    sparse = pytest.importorskip("scipy.sparse")
    X = sparse.csr_matrix(np.eye(3, dtype=np.int64))
    with pytest.raises(TypeError, match=r"^codes is a sparse matrix \(csr_matrix\).*pass codes\.toarray\(\)$"):
        C.check_estimator_input(X, "codes")
    assert C.is_sparse(X) and not C.is_sparse(np.eye(3))
    kept = C.check_estimator_input(X, "X", accept_sparse=True)
    assert C.is_sparse(kept) and kept.dtype == np.float64
