"""The math of npjem.losses.functionals on values a reader can work out by hand."""
import math

import numpy as np
import pytest

from npjem.losses import lvq2, mee, most_offending, nll_mmi, perceptron


def test_a_single_answer_is_always_right():
    # K = 1: the correct answer is the only one, so nothing is ever offending
    e = np.array([[0.3], [-1.2], [2.0]])
    y = np.zeros(3, dtype=np.int64)
    assert perceptron(e, y).item() == 0.0                    # E_C − min E = 0
    assert nll_mmi(e, y, beta=2.0).item() == pytest.approx(0.0, abs=1e-15)  # E_C + (1/β) log e^{−βE_C}
    assert mee(e, y, beta=2.0).item() == pytest.approx(0.0, abs=1e-15)      # 1 − P(Y^i) = 1 − 1


def test_nll_mmi_and_mee_by_hand():
    # two answers with energies 0 and log 3, β = 1: P = (3/4, 1/4)
    e = np.array([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])
    y = np.array([0, 1])
    want_nll = [-math.log(0.75), math.log(3.0) - math.log(0.25) - math.log(3.0)]
    np.testing.assert_allclose(nll_mmi(e, y, reduction="none").data, want_nll, rtol=1e-13)
    np.testing.assert_allclose(mee(e, y, reduction="none").data, [0.25, 0.75], rtol=1e-13)
    # β = 2 halves the energies' scale: P = (9/10, 1/10), and nll_mmi carries the 1/β
    np.testing.assert_allclose(mee(e, y, beta=2.0, reduction="none").data, [0.1, 0.9], rtol=1e-13)
    np.testing.assert_allclose(nll_mmi(e, y, beta=2.0, reduction="none").data,
                               [-math.log(0.9) / 2, -math.log(0.1) / 2], rtol=1e-13)


def test_most_offending_takes_distances_as_a_list():
    e = np.array([[0.0, 0.5, 0.2, 0.9], [1.0, 0.1, 0.3, 0.0]])
    y = np.array([0, 3])
    dist = [[0.0, 1.0, 0.1, 2.0], [1.0, 1.0, 0.05, 0.0]]
    # answers within ε = 0.2 of the correct one do not count: row 0 loses answer 2, row 1 answer 2
    got, idx = most_offending(e, y, distances=dist, epsilon=0.2, return_index=True)
    np.testing.assert_array_equal(idx, [1, 1])
    np.testing.assert_allclose(got.data, [0.5, 0.1])
    np.testing.assert_array_equal(most_offending(e, y, distances=np.array(dist), epsilon=0.2).data, got.data)


def test_lvq2_ratio_form_needs_a_positive_delta():
    e_pos, e_neg = np.array([2.0, 1.0]), np.array([1.0, 2.0])
    with pytest.raises(ValueError, match="delta"):
        lvq2(e_pos, e_neg, delta=0.0)
    # (E_C − E_I) / (δ E_I) = 1 / (0.5 · 1) = 2, saturated at M = 1.5; the second sample wins: 0
    np.testing.assert_allclose(lvq2(e_pos, e_neg, saturation=1.5, delta=0.5, reduction="none").data,
                               [1.5, 0.0])
    np.testing.assert_allclose(lvq2(e_pos, e_neg, saturation=3.0, delta=0.5, reduction="none").data,
                               [2.0, 0.0])
