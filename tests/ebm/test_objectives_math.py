"""npjem.ebm.objectives against values worked out by hand on tiny examples.

Each objective's formula is evaluated here in NumPy on an energy whose gradients, flips and
noise draws are known in closed form, and compared with the library's value; the defaults are
compared with the values the docstrings give (reduction "mean", weight_power 0 for one noise
level and 2 for several, a differentiable score).
"""
import math

import numpy as np
import pytest

import npjem
from npjem import Tensor
from npjem import random as nrandom
from npjem.ebm import objectives as O


def softplus(z):
    return np.logaddexp(0.0, z)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# ================================================================ energy_score

def test_energy_score_is_differentiable_in_the_parameters_by_default():
    # E(x) = ½ a ‖x‖²: s(x) = −a x, so d(Σ s)/da = −Σ x.
    x = np.array([[0.5, -1.0], [2.0, 0.25]])
    a = Tensor(np.array(1.5), requires_grad=True)
    s = O.energy_score(lambda z: 0.5 * a * (z * z).sum(axis=1), x)
    np.testing.assert_allclose(s.numpy(), -1.5 * x, rtol=1e-12)
    assert s.requires_grad
    (ga,) = npjem.grad(s.sum(), a)
    assert float(ga.item()) == pytest.approx(-x.sum(), rel=1e-12)


def test_energy_score_without_create_graph_is_a_constant():
    x = np.array([[0.5, -1.0], [2.0, 0.25]])
    a = Tensor(np.array(1.5), requires_grad=True)
    s = O.energy_score(lambda z: 0.5 * a * (z * z).sum(axis=1), x, create_graph=False)
    np.testing.assert_allclose(s.numpy(), -1.5 * x, rtol=1e-12)
    assert not s.requires_grad


# ================================================================ denoising score matching

def _dsm_by_hand(x, levels, seed, weight_power, score):
    """½ σ^p ‖s(x̃) + ε/σ‖² per sample, with the draws the objective makes: ε first, then the levels."""
    g = nrandom.as_generator(seed)
    eps = g.standard_normal(x.shape, dtype=x.dtype)
    if len(levels) == 1:
        sig = np.full((x.shape[0], 1), levels[0])
    else:
        sig = np.asarray(levels)[g.integers(0, len(levels), size=x.shape[0])].reshape(-1, 1)
    xt = x + eps * sig
    r = score(xt) + eps / sig
    return (sig[:, 0] ** weight_power) * 0.5 * (r * r).sum(axis=1)


def _standard_normal_score(z, *sigma):
    """The score of N(0, I), −z, as a score network (the level, when given, is ignored)."""
    return -z


@pytest.mark.parametrize("weight_power", [None, 0.0, 1.0, 2.0, 4.0])
@pytest.mark.parametrize("levels", [[0.5], [0.3, 1.0, 2.0]])
def test_denoising_score_matching_is_its_formula(levels, weight_power):
    x = np.random.default_rng(3).standard_normal((6, 3))
    sigma = levels[0] if len(levels) == 1 else levels
    kwargs = {} if weight_power is None else {"weight_power": weight_power}
    got = O.denoising_score_matching(_standard_normal_score, x, sigma, parametrization="score",
                                     generator=11, reduction="none", **kwargs)
    # The docstring's defaults: Vincent's unweighted loss for one level, NCSN's σ² for several.
    p = weight_power if weight_power is not None else (0.0 if len(levels) == 1 else 2.0)
    expected = _dsm_by_hand(x, levels, 11, p, lambda z: -z)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_denoising_score_matching_energy_form_is_its_formula():
    # E(z) = ½ a‖z‖² has the score −a z; the energy path must give the same per-sample values.
    x = np.random.default_rng(4).standard_normal((5, 2))
    levels = [0.2, 0.7]
    got = O.denoising_score_matching(lambda z, sig: 0.75 * (z * z).sum(axis=1), x, levels,
                                     generator=5, reduction="none")
    expected = _dsm_by_hand(x, levels, 5, 2.0, lambda z: -1.5 * z)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_denoising_score_matching_levels_as_list_array_or_tensor_agree():
    x = np.random.default_rng(6).standard_normal((8, 2))
    levels = [0.1, 0.5, 1.5]
    expected = _dsm_by_hand(x, levels, 2, 2.0, lambda z: -z).mean()
    for sigma in (levels, tuple(levels), np.array(levels), Tensor(np.array(levels))):
        got = O.denoising_score_matching(_standard_normal_score, x, sigma, parametrization="score",
                                         generator=2)
        assert float(got.item()) == pytest.approx(expected, rel=1e-12), type(sigma).__name__


def test_denoising_score_matching_keeps_float32():
    # The levels are cast to the data's dtype: float32 data give a float32 loss.
    x = np.random.default_rng(7).standard_normal((4, 3)).astype(np.float32)
    for sigma in (0.5, [0.5, 1.0]):
        loss = O.denoising_score_matching(_standard_normal_score, x, sigma, parametrization="score",
                                          generator=0)
        assert loss.dtype == np.float32


@pytest.mark.parametrize("bad", [True, math.inf, -math.inf, math.nan, "2"])
def test_denoising_score_matching_refuses_a_weight_power_that_is_not_a_finite_real(bad):
    x = np.zeros((2, 2))
    with pytest.raises(TypeError, match="weight_power must be a finite real number"):
        O.denoising_score_matching(_standard_normal_score, x, 0.5, parametrization="score",
                                   weight_power=bad)


# ================================================================ binary objectives

def _independent_bits(b, dtype=np.float64):
    """E(x) = −bᵀx: flipping bit i changes the energy by b_i(2x_i − 1), so the gap
    E(x) − E(x̄ⁱ) is b_i(1 − 2x_i)."""
    bt = Tensor(np.asarray(b, dtype=dtype))

    def energy(z):
        assert z.dtype == dtype, f"the energy was called with {z.dtype}, not the data's {dtype}"
        return -(z @ bt)
    return energy


BINARY = {
    "ratio_matching": (O.ratio_matching, lambda gap: (sigmoid(gap) ** 2).sum(axis=1)),
    "pseudo_likelihood": (O.pseudo_likelihood, lambda gap: softplus(gap).sum(axis=1)),
    "minimum_probability_flow": (O.minimum_probability_flow, lambda gap: np.exp(0.5 * gap).sum(axis=1)),
}


@pytest.mark.parametrize("which", sorted(BINARY))
def test_binary_objectives_are_their_formulas_on_independent_bits(which):
    fn, formula = BINARY[which]
    b = np.array([1.5, -0.5, 0.25])
    x = np.array([[0, 1, 1], [1, 0, 0], [1, 1, 0], [0, 0, 0]], dtype=np.float64)
    per = formula(b * (1 - 2 * x))
    energy = _independent_bits(b)
    np.testing.assert_allclose(fn(energy, x, reduction="none").numpy(), per, rtol=1e-12)
    assert float(fn(energy, x, reduction="sum").item()) == pytest.approx(per.sum(), rel=1e-12)
    assert float(fn(energy, x, reduction="mean").item()) == pytest.approx(per.mean(), rel=1e-12)
    assert float(fn(energy, x).item()) == pytest.approx(per.mean(), rel=1e-12)  # default: mean


@pytest.mark.parametrize("which", sorted(BINARY))
def test_binary_objectives_keep_float32(which):
    # The flipped copies are made in the data's dtype: a float32 energy sees float32 inputs only.
    fn, formula = BINARY[which]
    b = np.array([0.5, -1.0])
    x = np.array([[0, 1], [1, 1]], dtype=np.float32)
    loss = fn(_independent_bits(b, np.float32), x)
    assert loss.dtype == np.float32
    assert float(loss.item()) == pytest.approx(formula(b * (1 - 2 * x)).mean(), rel=1e-6)


@pytest.mark.parametrize("which", sorted(BINARY))
def test_binary_objectives_name_a_bad_reduction(which):
    fn, _ = BINARY[which]
    with pytest.raises(ValueError, match=r"^reduction must be one of"):
        fn(_independent_bits([1.0]), np.ones((1, 1)), reduction="max")


# ================================================================ sliced score matching

A = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, -0.3], [0.0, -0.3, 1.5]])


def _quadratic_energy(z):
    """E(x) = ½ xᵀAx: score s = −Ax, Jacobian ∇ₓs = −A (A symmetric)."""
    return 0.5 * ((z @ Tensor(A)) * z).sum(axis=1)


def _directions_by_hand(seed, kind, m, shape):
    """The directions the objective draws from ``seed``: uniforms thresholded at ½ (Rademacher),
    normals, or normals scaled to the sphere of radius √D."""
    g = nrandom.as_generator(seed)
    if kind == "rademacher":
        return np.where(g.random((m,) + shape, dtype=np.float64) < 0.5, -1.0, 1.0)
    v = g.standard_normal((m,) + shape, dtype=np.float64)
    if kind == "sphere":
        v = v / np.sqrt((v * v).sum(axis=-1, keepdims=True)) * math.sqrt(shape[-1])
    return v


def _ssm_by_hand(x, v, vr):
    s = -x @ A
    vav = np.einsum("mnd,de,mne->mn", v, A, v)          # vᵀ(∇ₓs)v = −vᵀAv
    if vr:
        return (-vav).mean(axis=0) + 0.5 * (s * s).sum(axis=1)
    vs = np.einsum("mnd,nd->mn", v, s)
    return (-vav + 0.5 * vs * vs).mean(axis=0)


@pytest.mark.parametrize("vr", [False, True])
@pytest.mark.parametrize("m", [1, 3])
@pytest.mark.parametrize("kind", ["rademacher", "gaussian", "sphere"])
def test_sliced_score_matching_is_its_formula(kind, m, vr):
    x = np.random.default_rng(8).standard_normal((4, 3))
    got = O.sliced_score_matching(_quadratic_energy, x, n_projections=m, projection=kind,
                                  variance_reduction=vr, generator=21, reduction="none")
    expected = _ssm_by_hand(x, _directions_by_hand(21, kind, m, x.shape), vr)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_sliced_score_matching_defaults_are_one_rademacher_direction_without_variance_reduction():
    x = np.random.default_rng(9).standard_normal((5, 3))
    got = O.sliced_score_matching(_quadratic_energy, x, generator=4)
    expected = _ssm_by_hand(x, _directions_by_hand(4, "rademacher", 1, x.shape), False).mean()
    assert float(got.item()) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("kind", ["rademacher", "sphere"])
def test_sliced_score_matching_with_fixed_norm_directions_is_exact_on_an_isotropic_energy(kind):
    # For E = ½a‖x‖², vᵀ(∇ₓs)v = −a‖v‖² = −aD whenever ‖v‖² = D (Rademacher, the √D sphere):
    # SSM-VR then equals exact score matching, −aD + ½a²‖x‖², for every draw.
    a, x = 1.7, np.random.default_rng(10).standard_normal((6, 4))
    got = O.sliced_score_matching(lambda z: 0.5 * a * (z * z).sum(axis=1), x, projection=kind,
                                  variance_reduction=True, generator=0, reduction="none")
    np.testing.assert_allclose(got.numpy(), -a * 4 + 0.5 * a * a * (x * x).sum(axis=1), rtol=1e-12)


@pytest.mark.parametrize("kind", ["rademacher", "gaussian", "sphere"])
def test_sliced_score_matching_keeps_float32(kind):
    x = np.random.default_rng(11).standard_normal((3, 2)).astype(np.float32)
    loss = O.sliced_score_matching(lambda z: 0.5 * (z * z).sum(axis=1), x, projection=kind, generator=1)
    assert loss.dtype == np.float32


# ================================================================ NCE

def test_nce_takes_log_densities_as_tensors_or_arrays():
    rng = np.random.default_rng(12)
    x, y = rng.standard_normal((3, 2)), rng.standard_normal((5, 2))
    lpx, lpy = rng.standard_normal(3), rng.standard_normal(5)
    E = lambda z: (z * z).sum(axis=1)  # noqa: E731
    gx = -(x ** 2).sum(1) - 0.4 - lpx - math.log(5 / 3)
    gy = -(y ** 2).sum(1) - 0.4 - lpy - math.log(5 / 3)
    expected = softplus(-gx).mean() + 5 / 3 * softplus(gy).mean()
    for wrap in (np.asarray, Tensor):
        got = O.nce(E, x, y, wrap(lpx), wrap(lpy), 0.4)
        assert float(got.item()) == pytest.approx(expected, rel=1e-12), wrap.__name__


def test_nce_names_its_bad_arguments():
    E = lambda z: (z * z).sum(axis=1)  # noqa: E731
    x, lp = np.zeros((3, 2)), np.zeros(3)
    with pytest.raises(ValueError, match=r"^x_data must be 2-D"):
        O.nce(E, x[0], x, lp, lp, 0.0)
    with pytest.raises(ValueError, match=r"^x_noise must be 2-D"):
        O.nce(E, x, x[0], lp, lp, 0.0)
    for bad in (True, "0.0", None):
        with pytest.raises(TypeError, match=r"^log_z must be a scalar Tensor or a real number"):
            O.nce(E, x, x, lp, lp, bad)


# ================================================================ score matching

def test_score_matching_is_its_formula_on_a_quadratic_energy():
    # s = −Ax, tr ∇ₓs = −tr A: J per sample = −tr A + ½‖Ax‖².
    x = np.random.default_rng(13).standard_normal((4, 3))
    got = O.score_matching(_quadratic_energy, x, reduction="none")
    np.testing.assert_allclose(got.numpy(), -np.trace(A) + 0.5 * ((x @ A) ** 2).sum(axis=1), rtol=1e-12)
    assert float(O.score_matching(_quadratic_energy, x).item()) == pytest.approx(float(got.numpy().mean()),
                                                                              rel=1e-12)


def test_linear_energy_keeps_float32():
    # A linear energy's Hessian rows have no path back to x: they are zeros of the data's dtype.
    w = Tensor(np.array([1.0, -2.0], dtype=np.float32))
    x = np.random.default_rng(14).standard_normal((3, 2)).astype(np.float32)
    for fn, kwargs in ((O.score_matching, {}), (O.sliced_score_matching, {"variance_reduction": True})):
        loss = fn(lambda z: z @ w, x, **kwargs)
        assert loss.dtype == np.float32
        assert float(loss.item()) == pytest.approx(0.5 * 5.0, rel=1e-6)  # ½‖w‖², zero curvature
