"""Barlow Twins and VICReg against their formulas on examples small enough to work by hand.

The batches have two samples whose columns have mean 0 or a known mean and a biased variance of
exactly 1 (or an unbiased one of exactly 2), so every standardisation, covariance and hinge
below is a number a reader can check on paper.
"""
import math

import numpy as np
import pytest

from npjem import Tensor, backend
from npjem.losses import barlow_twins, vicreg


def value(t):
    return float(backend.to_numpy(t.data if isinstance(t, Tensor) else t))


# Columns with biased variance exactly 1: ẑ_x = [[1, 1], [-1, -1]], ẑ_y = [[1, -1], [-1, 1]].
BX = np.array([[1.0, 2.0], [-1.0, 0.0]])
BY = np.array([[1.0, 0.0], [-1.0, 2.0]])


def test_barlow_twins_by_hand_with_exact_standardisation():
    # C = ẑ_xᵀ ẑ_y / 2 = [[1, -1], [1, -1]]: on-diagonal (1 − 1)² + (1 + 1)² = 4, off 1 + 1 = 2.
    for lambd in (0.0, 0.25, 1.0):
        assert value(barlow_twins(BX, BY, lambd=lambd, eps=0.0)) == pytest.approx(4.0 + 2.0 * lambd, abs=1e-12)


def test_barlow_twins_eps_sits_inside_the_square_root():
    # var = 1 per column, so every entry of C is divided by (1 + eps).
    eps, lambd = 0.3, 0.5
    c = 1.0 / (1.0 + eps)
    expected = (1.0 - c) ** 2 + (1.0 + c) ** 2 + lambd * 2.0 * c * c
    assert value(barlow_twins(BX, BY, lambd=lambd, eps=eps)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("scale", [2.0, 0.5, 1.0 / 32])
def test_barlow_twins_scale_multiplies_the_whole_loss(scale):
    base = value(barlow_twins(BX, BY, lambd=0.25, eps=0.0))
    assert value(barlow_twins(BX, BY, lambd=0.25, eps=0.0, scale=scale)) == pytest.approx(scale * base, rel=1e-12)


def test_barlow_twins_with_eps_zero_accepts_a_column_of_variance_exactly_one():
    # eps = 0 refuses only a constant column (variance 0), never one of variance 1.
    x = np.array([[1.0, 5.0], [-1.0, 3.0], [1.0, 5.0], [-1.0, 3.0]])
    assert value(barlow_twins(x, x, lambd=0.0, eps=0.0)) == pytest.approx(0.0, abs=1e-12)


# VICReg: Z has unbiased variances (2, 2) and covariance 2; Z' variances (2, 0), covariance 0.
VZ = np.array([[1.0, 1.0], [-1.0, -1.0]])
VZP = np.array([[1.0, 0.0], [-1.0, 0.0]])


@pytest.mark.parametrize("swap", [False, True])
def test_vicreg_terms_by_hand(swap):
    gamma, eps = 2.0, 0.25
    a, b = (VZP, VZ) if swap else (VZ, VZP)
    # std(Z) = sqrt(2 + 0.25) = 1.5 in both columns: v(Z) = 2 − 1.5 = 0.5.
    # std(Z') = (1.5, sqrt(0.25) = 0.5): v(Z') = (0.5 + 1.5) / 2 = 1.
    # c(Z) = (2² + 2²) / 2 = 4, c(Z') = 0;  s = mean((Z − Z')²) = 2 / 4.
    out = vicreg(a, b, sim_coeff=3.0, std_coeff=5.0, cov_coeff=7.0, gamma=gamma, eps=eps)
    assert value(out.invariance) == pytest.approx(0.5, abs=1e-12)
    assert value(out.variance) == pytest.approx(0.75, abs=1e-12)
    assert value(out.covariance) == pytest.approx(4.0, abs=1e-12)
    assert value(out.loss) == pytest.approx(3.0 * 0.5 + 5.0 * 0.75 + 7.0 * 4.0, abs=1e-12)
    summed = vicreg(a, b, sim_coeff=3.0, std_coeff=5.0, cov_coeff=7.0, gamma=gamma, eps=eps,
                    halve_variance=False)
    assert value(summed.variance) == pytest.approx(1.5, abs=1e-12)
    assert value(summed.loss) == pytest.approx(1.5 + 5.0 * 1.5 + 28.0, abs=1e-12)


def test_vicreg_unbiased_statistics_over_three_samples():
    # Z = [[0, 0], [1, 2], [2, 1]]: means (1, 1), deviations [[-1, -1], [0, 1], [1, 0]].
    # Unbiased: var = (2/2, 2/2) = (1, 1), cov_01 = (1 + 0 + 0) / 2 = 0.5, c = 2·0.25 / 2 = 0.25.
    z = np.array([[0.0, 0.0], [1.0, 2.0], [2.0, 1.0]])
    eps, gamma = 0.44, 1.5
    out = vicreg(z, z, gamma=gamma, eps=eps)
    std = math.sqrt(1.0 + eps)  # 1.2
    assert value(out.variance) == pytest.approx(gamma - std, abs=1e-12)
    assert value(out.covariance) == pytest.approx(2 * 0.25, abs=1e-12)
    assert value(out.invariance) == 0.0


def test_zero_weights_are_ablations_and_zero_gamma_or_eps_is_refused():
    kw = dict(gamma=2.0, eps=0.25)
    # The hand-worked terms above: s = 0.5, [v + v']/2 = 0.75, c + c' = 4.
    assert value(vicreg(VZ, VZP, sim_coeff=0.0, std_coeff=5.0, cov_coeff=7.0, **kw).loss) == pytest.approx(31.75)
    assert value(vicreg(VZ, VZP, sim_coeff=3.0, std_coeff=0.0, cov_coeff=7.0, **kw).loss) == pytest.approx(29.5)
    assert value(vicreg(VZ, VZP, sim_coeff=3.0, std_coeff=5.0, cov_coeff=0.0, **kw).loss) == pytest.approx(5.25)
    for bad in ({"gamma": 0.0}, {"gamma": -1.0}, {"eps": 0.0}, {"eps": -1e-4}):
        with pytest.raises(ValueError, match="^" + next(iter(bad))):
            vicreg(VZ, VZP, **bad)
    for bad in ({"sim_coeff": -1.0}, {"std_coeff": -1.0}, {"cov_coeff": -1.0}):
        with pytest.raises(ValueError, match="^" + next(iter(bad))):
            vicreg(VZ, VZP, **bad)
    assert value(barlow_twins(BX, BY, lambd=0.0, eps=0.0)) == pytest.approx(4.0)
    for bad in ({"lambd": -1e-3}, {"eps": -1e-5}, {"scale": 0.0}, {"scale": -1.0}):
        with pytest.raises(ValueError, match="^" + next(iter(bad))):
            barlow_twins(BX, BY, **bad)
