"""The collapse monitor the non-contrastive methods record (``npjem.methods._monitor``), by values
worked out by hand: the mean over dimensions of the batch std (ddof = 1) of the L2-normalised rows."""
import math

import numpy as np
import pytest

from npjem.autograd import Tensor
from npjem.methods._monitor import as_float, embedding_std


def by_hand(z):
    z = np.asarray(z, dtype=np.float64)
    u = z / np.linalg.norm(z, axis=1, keepdims=True)
    return float(np.mean(np.std(u, axis=0, ddof=1)))


def test_two_orthogonal_rows_give_one_over_root_two():
    # u = z; each column holds (1, 0) or (0, 1): std with ddof = 1 is 1/√2 (ddof = 0 would give 1/2)
    assert embedding_std(np.array([[1.0, 0.0], [0.0, 1.0]])) == pytest.approx(1 / math.sqrt(2), rel=1e-12)
    # the rows' lengths do not count: only their directions
    assert embedding_std(np.array([[5.0, 0.0], [0.0, 0.25]])) == pytest.approx(1 / math.sqrt(2), rel=1e-12)


def test_complete_collapse_is_zero_whatever_the_rows_lengths():
    z = np.array([[3.0, -4.0]]) * np.array([[1.0], [2.0], [0.5]])
    assert embedding_std(z) == pytest.approx(0.0, abs=1e-15)


def test_random_rows_match_the_formula_for_a_tensor_or_an_array():
    z = np.random.default_rng(0).normal(size=(7, 5))
    want = by_hand(z)
    assert embedding_std(z) == pytest.approx(want, rel=1e-12)
    assert embedding_std(Tensor(z)) == pytest.approx(want, rel=1e-12)
    got = embedding_std(z.astype(np.float32))  # computed in float64 from the float32 values
    assert type(got) is float
    assert got == pytest.approx(by_hand(z.astype(np.float32).astype(np.float64)), rel=1e-12)


def test_a_zero_row_counts_as_the_origin_not_nan():
    # u = ((0, 0), (0.6, 0.8)): column stds 0.6/√2 and 0.8/√2
    got = embedding_std(np.array([[0.0, 0.0], [3.0, 4.0]]))
    assert got == pytest.approx((0.6 + 0.8) / 2 / math.sqrt(2), rel=1e-12)


def test_one_dimension_is_the_spread_of_the_rows_signs():
    # u = (1, −1, 1): mean 1/3, std (ddof = 1) √(4/3)
    assert embedding_std(np.array([[1.0], [-1.0], [2.0]])) == pytest.approx(math.sqrt(4 / 3), rel=1e-12)


def test_one_row_has_no_spread_to_measure():
    assert math.isnan(embedding_std(np.ones((1, 4))))
    assert not math.isnan(embedding_std(np.eye(2)))


def test_as_float_reads_a_scalar_tensor_or_array():
    assert as_float(Tensor(np.array(2.5))) == 2.5 and type(as_float(Tensor(np.array(2.5)))) is float
    assert as_float(np.float32(-1.5)) == -1.5
