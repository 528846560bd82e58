"""LeCun et al. (2006)'s loss functionals: promises that hold sample by sample.

Checked on small batches where one sample differs from the others, so that a rule applied to the
whole batch instead of to each sample (or the other way round) gives another answer.
"""
import numpy as np
import pytest

from npjem import backend
from npjem.losses.functionals import most_offending


def test_most_offending_raises_when_one_sample_of_several_has_no_admissible_answer():
    # Sample 0 has an answer farther than ε from its correct one; sample 1 has none.
    e = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]])
    t = np.array([0, 0])
    dist = np.array([[0.0, 1.0, 2.0], [0.0, 0.1, 0.2]])
    with pytest.raises(ValueError, match="no incorrect answer farther than epsilon"):
        most_offending(e, t, distances=dist, epsilon=0.5)
    # Without sample 1 the same answers are admissible: answer 1 (energy 1) is the most offending.
    e_i, idx = most_offending(e[:1], t[:1], distances=dist[:1], epsilon=0.5, return_index=True)
    assert backend.to_numpy(idx).tolist() == [1] and float(e_i.data[0]) == 1.0


@pytest.mark.parametrize("name", ["hinge", "square_square"])
def test_a_margin_is_zero_or_more(name):
    from npjem.losses import functionals

    loss = getattr(functionals, name)
    e_pos, e_neg = np.array([0.5, 0.0]), np.array([0.25, 2.0])
    with pytest.raises(ValueError, match="^margin"):
        loss(e_pos, e_neg, margin=-0.5)
    # margin 0: hinge max(0, E_C − E_I) = (0.25, 0); square-square E_C² + max(0, −E_I)² = (0.25, 0).
    got = backend.to_numpy(loss(e_pos, e_neg, margin=0.0, reduction="none").data)
    np.testing.assert_allclose(got, [0.25, 0.0], atol=0)
