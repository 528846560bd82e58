"""Tests of npjem.losses.functionals: LeCun et al. 2006's loss functionals on energies."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import npjem
from npjem import Tensor, backend
from npjem.autograd import functional as AF
from npjem.losses import (
    energy_loss,
    hinge,
    log_loss,
    lvq2,
    mce,
    mee,
    most_offending,
    nll_mmi,
    pair_margin_loss,
    perceptron,
    square_exponential,
    square_square,
)

# The xp fixture only names the array module: it holds no state to reset between examples.
stateless_fixtures = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                     HealthCheck.data_too_large])
GC = dict(eps=1e-6, atol=1e-6, rtol=1e-4)
REDUCTIONS = ["mean", "sum", "none"]

batch = st.integers(1, 6)
answers = st.integers(2, 6)
seeds = st.integers(0, 2**32 - 1)
betas = st.floats(0.1, 5.0)


def host(t):
    return backend.to_numpy(t.data if isinstance(t, Tensor) else t)


def energies(rng, *shape, scale=1.0):
    return rng.standard_normal(shape) * scale


def gap_ok(values, at, tol=1e-3):
    """No value within ``tol`` of a kink at ``at`` (central differences straddle a kink badly)."""
    return bool(np.all(np.abs(np.asarray(values) - at) > tol))


# ================================================================ gradients (float64)

@given(n=batch, seed=seeds, reduction=st.sampled_from(REDUCTIONS), m=st.floats(0.0, 2.0))
def test_pair_functionals_gradcheck(n, seed, reduction, m):
    rng = np.random.default_rng(seed)
    ep, en = energies(rng, n), energies(rng, n)
    assume(gap_ok(ep - en, -m) and gap_ok(en, m) and gap_ok(ep - en, 0.0) and gap_ok(ep - en, 1.0))
    fns = [
        lambda a, b: energy_loss(a, reduction) + b.sum() * 0.0,
        lambda a, b: hinge(a, b, margin=m, reduction=reduction),
        lambda a, b: log_loss(a, b, reduction=reduction),
        lambda a, b: lvq2(a, b, reduction=reduction),
        lambda a, b: mce(a, b, reduction=reduction),
        lambda a, b: square_square(a, b, margin=m, reduction=reduction),
        lambda a, b: square_exponential(a, b, gamma=0.7, reduction=reduction),
    ]
    for fn in fns:
        assert npjem.gradcheck(fn, [ep, en], **GC)


@given(n=batch, seed=seeds, delta=st.floats(0.1, 2.0), big_m=st.floats(0.5, 3.0))
def test_lvq2_ratio_form_gradcheck(n, seed, delta, big_m):
    rng = np.random.default_rng(seed)
    ep, en = rng.uniform(0.2, 3.0, n), rng.uniform(0.2, 3.0, n)
    ratio = (ep - en) / (delta * en)
    assume(gap_ok(ratio, 0.0) and gap_ok(ratio, big_m))
    assert npjem.gradcheck(lambda a, b: lvq2(a, b, saturation=big_m, delta=delta), [ep, en], **GC)


@given(n=batch, k=answers, seed=seeds, beta=betas, reduction=st.sampled_from(REDUCTIONS))
def test_all_answer_functionals_gradcheck(n, k, seed, beta, reduction):
    rng = np.random.default_rng(seed)
    e = energies(rng, n, k)
    t = rng.integers(0, k, n)
    assert npjem.gradcheck(lambda a: nll_mmi(a, t, beta=beta, reduction=reduction), [e], **GC)
    assert npjem.gradcheck(lambda a: mee(a, t, beta=beta, reduction=reduction), [e], **GC)
    srt = np.sort(e, axis=1)
    assume(np.all(srt[:, 1] - srt[:, 0] > 1e-3))  # the min's kink at ties
    assert npjem.gradcheck(lambda a: perceptron(a, t, reduction=reduction), [e], **GC)
    assert npjem.gradcheck(lambda a: most_offending(a, t), [e], **GC)


@given(n=batch, k=answers, seed=seeds, beta=betas)
def test_second_order_of_smooth_functionals(n, k, seed, beta):
    rng = np.random.default_rng(seed)
    e, t = energies(rng, n, k), rng.integers(0, k, n)
    ep, en = energies(rng, n), energies(rng, n)
    assert npjem.gradgradcheck(lambda a: nll_mmi(a, t, beta=beta), [e], **GC)
    assert npjem.gradgradcheck(lambda a: mee(a, t, beta=beta), [e], **GC)
    assert npjem.gradgradcheck(lambda a, b: log_loss(a, b) + mce(a, b), [ep, en], **GC)
    assert npjem.gradgradcheck(lambda a, b: square_exponential(a, b, gamma=2.0), [ep, en], **GC)


# ================================================================ margins

@stateless_fixtures
@given(n=batch, seed=seeds, m=st.floats(0.1, 3.0))
def test_hinge_is_zero_exactly_when_its_margin_holds(n, seed, m, xp):
    rng = np.random.default_rng(seed)
    ep = energies(rng, n)
    gap = rng.uniform(-2 * m, 3 * m, n)           # E_I − E_C
    assume(gap_ok(gap, m))
    en = ep + gap
    loss = host(hinge(xp.asarray(ep), xp.asarray(en), margin=m, reduction="none"))
    holds = gap >= m
    assert np.all(loss[holds] == 0)
    assert np.all(loss[~holds] > 0)
    np.testing.assert_allclose(loss, np.maximum(0, m - gap), rtol=1e-12, atol=1e-12)


@stateless_fixtures
@given(n=batch, seed=seeds, m=st.floats(0.1, 3.0))
def test_square_square_is_zero_exactly_when_its_margin_holds(n, seed, m, xp):
    rng = np.random.default_rng(seed)
    en = rng.uniform(0, 2 * m, n)
    assume(gap_ok(en, m))
    zero = np.zeros(n)
    loss = host(square_square(xp.asarray(zero), xp.asarray(en), margin=m, reduction="none"))
    assert np.all(loss[en >= m] == 0)
    assert np.all(loss[en < m] > 0)
    # A correct answer with non-zero energy is still pushed down, margin or not.
    ep = rng.uniform(0.1, 1.0, n)
    loss2 = host(square_square(xp.asarray(ep), xp.asarray(en), margin=m, reduction="none"))
    np.testing.assert_allclose(loss2, ep**2 + np.maximum(0, m - en) ** 2, rtol=1e-12)


@stateless_fixtures
@given(n=batch, seed=seeds, big_m=st.floats(0.5, 3.0))
def test_lvq2_margin_zero_and_saturation(n, seed, big_m, xp):
    rng = np.random.default_rng(seed)
    ep = energies(rng, n)
    gap = rng.uniform(-4, 4, n)                     # E_C − E_I
    assume(gap_ok(gap, 0.0))
    loss = host(lvq2(xp.asarray(ep), xp.asarray(ep - gap), saturation=big_m, reduction="none"))
    assert np.all(loss[gap < 0] == 0)               # the correct answer wins: margin 0
    assert np.all(loss[gap > 0] > 0)
    assert np.all(loss <= big_m)
    np.testing.assert_allclose(loss, np.minimum(big_m, np.maximum(0, gap)), rtol=1e-12)


def test_lvq2_ratio_form_saturates_at_one_plus_delta(xp):
    delta = 0.5
    en = np.array([2.0, 2.0, 2.0, 4.0])
    ep = np.array([1.8, 2.5, 3.2, 5.0])             # ratios E_C / E_I: 0.9, 1.25, 1.6, 1.25
    loss = host(lvq2(xp.asarray(ep), xp.asarray(en), delta=delta, reduction="none"))
    np.testing.assert_allclose(loss, [0.0, 0.5, 1.0, 0.5], rtol=1e-12)


@stateless_fixtures
@given(n=batch, k=answers, seed=seeds)
def test_perceptron_is_zero_iff_the_correct_answer_has_the_lowest_energy(n, k, seed, xp):
    rng = np.random.default_rng(seed)
    e = energies(rng, n, k)
    t = rng.integers(0, k, n)
    loss = host(perceptron(xp.asarray(e), xp.asarray(t), reduction="none"))
    is_min = e[np.arange(n), t] == e.min(axis=1)
    assert np.all(loss >= 0)
    assert np.all(loss[is_min] == 0) and np.all(loss[~is_min] > 0)


@stateless_fixtures
@given(n=batch, seed=seeds, k=answers, beta=betas)
def test_soft_margin_functionals_are_positive_and_fall_as_the_gap_opens(n, seed, k, beta, xp):
    rng = np.random.default_rng(seed)
    ep = rng.uniform(0, 2, n)
    gaps = [-1.0, 0.0, 1.0, 3.0]                      # E_I − E_C
    for fn in (log_loss, mce, lambda a, b, reduction: square_exponential(a, b, reduction=reduction)):
        vals = [host(fn(xp.asarray(ep), xp.asarray(ep + g), reduction="none")) for g in gaps]
        assert all(np.all(v > 0) for v in vals)
        assert all(np.all(a > b) for a, b in zip(vals, vals[1:]))
    t = rng.integers(0, k, n)
    base = energies(rng, n, k)
    for fn in (nll_mmi, mee):
        vals = []
        for g in gaps:
            e = base.copy()
            e[np.arange(n), t] = base.min(axis=1) - g  # the correct answer g below every other one
            vals.append(host(fn(xp.asarray(e), xp.asarray(t), beta=beta, reduction="none")))
        assert all(np.all(v > 0) for v in vals)
        assert all(np.all(a > b) for a, b in zip(vals, vals[1:]))


# ================================================================ closed forms

@stateless_fixtures
@given(n=batch, seed=seeds)
def test_pair_functionals_closed_forms(n, seed, xp):
    rng = np.random.default_rng(seed)
    ep, en = energies(rng, n, scale=3.0), energies(rng, n, scale=3.0)
    a, b = xp.asarray(ep), xp.asarray(en)
    np.testing.assert_allclose(host(log_loss(a, b, reduction="none")), np.logaddexp(0, ep - en), rtol=1e-12, atol=1e-15)
    # atol: sigmoid(−12) ≈ 5e-6 is computed by two formulas that agree to ~1e-17 absolute
    np.testing.assert_allclose(host(mce(a, b, reduction="none")), 1 / (1 + np.exp(en - ep)), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(host(square_exponential(a, b, gamma=0.3, reduction="none")),
                               ep**2 + 0.3 * np.exp(-en), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(host(energy_loss(a)), ep.mean(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(host(hinge(a, b, reduction="sum")), np.maximum(0, 1 + ep - en).sum(), rtol=1e-12, atol=1e-15)
    assert float(host(mce(xp.asarray([0.7]), xp.asarray([0.7])))) == 0.5


def test_log_loss_does_not_overflow(xp):
    loss = host(log_loss(xp.asarray([1e4, -1e4]), xp.asarray([0.0, 0.0]), reduction="none"))
    np.testing.assert_allclose(loss, [1e4, 0.0], atol=1e-12)


@stateless_fixtures
@given(n=batch, k=answers, seed=seeds, beta=betas)
def test_nll_mmi_is_the_cross_entropy_of_the_gibbs_distribution_over_beta(n, k, seed, beta, xp):
    rng = np.random.default_rng(seed)
    e, t = energies(rng, n, k), rng.integers(0, k, n)
    ce = host(AF.cross_entropy(Tensor(xp.asarray(-beta * e)), xp.asarray(t), reduction="none"))
    got = host(nll_mmi(xp.asarray(e), xp.asarray(t), beta=beta, reduction="none"))
    np.testing.assert_allclose(got, ce / beta, rtol=1e-12, atol=1e-12)
    # ∂L/∂E(y) = [y = Y^i] − P(y | X^i): push the answer down, every answer up by its probability.
    leaf = Tensor(xp.asarray(e), requires_grad=True)
    nll_mmi(leaf, xp.asarray(t), beta=beta, reduction="sum").backward()
    p = np.exp(-beta * e - np.logaddexp.reduce(-beta * e, axis=1, keepdims=True))
    np.testing.assert_allclose(host(leaf.grad), np.eye(k)[t] - p, atol=1e-12)


@stateless_fixtures
@given(n=batch, k=answers, seed=seeds, beta=betas)
def test_mee_is_one_minus_the_probability_of_the_correct_answer(n, k, seed, beta, xp):
    rng = np.random.default_rng(seed)
    e, t = energies(rng, n, k), rng.integers(0, k, n)
    p = np.exp(-beta * e) / np.exp(-beta * e).sum(axis=1, keepdims=True)
    got = host(mee(xp.asarray(e), xp.asarray(t), beta=beta, reduction="none"))
    np.testing.assert_allclose(got, 1 - p[np.arange(n), t], rtol=1e-12, atol=1e-14)
    assert np.all((got >= 0) & (got < 1))


@stateless_fixtures
@given(n=batch, k=answers, seed=seeds)
def test_nll_tends_to_the_perceptron_loss_as_beta_grows(n, k, seed, xp):
    rng = np.random.default_rng(seed)
    e, t = xp.asarray(energies(rng, n, k)), xp.asarray(rng.integers(0, k, n))
    perc = host(perceptron(e, t, reduction="none"))
    previous = None
    for beta in (1.0, 10.0, 100.0, 1e4):
        gap = host(nll_mmi(e, t, beta=beta, reduction="none")) - perc
        # log-sum-exp bounds: min E − log(K)/β <= −(1/β) log Σ exp(−βE) <= min E.
        assert np.all(gap >= -1e-12) and np.all(gap <= math.log(k) / beta + 1e-12)
        if previous is not None:
            assert np.all(gap <= previous + 1e-12)
        previous = gap
    assert np.all(previous < 1e-3)


def test_pair_margin_loss_is_half_the_square_square_loss_on_pairs(xp):
    rng = np.random.default_rng(3)
    m = 1.5
    h_x, h_y = rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    d = np.linalg.norm(h_x - h_y, axis=1)                # energies: row 0 similar, row 1 dissimilar
    pml = host(pair_margin_loss(xp.asarray(h_x), xp.asarray(h_y), np.array([True, False]), margin=m,
                                reduction="sum"))
    sq = host(square_square(xp.asarray(d[:1]), xp.asarray(d[1:]), margin=m))
    np.testing.assert_allclose(pml, 0.5 * sq, rtol=1e-12)


# ================================================================ the most offending answer

@stateless_fixtures
@given(n=batch, k=st.integers(2, 7), seed=seeds)
def test_most_offending_is_the_lowest_incorrect_energy(n, k, seed, xp):
    rng = np.random.default_rng(seed)
    e, t = energies(rng, n, k), rng.integers(0, k, n)
    got, idx = most_offending(xp.asarray(e), xp.asarray(t), return_index=True)
    masked = e.copy()
    masked[np.arange(n), t] = np.inf
    np.testing.assert_array_equal(host(got), masked.min(axis=1))
    idx = backend.to_numpy(idx)
    assert np.all(idx != t)
    np.testing.assert_array_equal(idx, masked.argmin(axis=1))


def test_most_offending_skips_answers_within_epsilon_of_the_correct_one(xp):
    # Continuous answers y_k on a line, the correct one at y = 0: the neighbours at |y| <= ε
    # have low energy but are not errors.
    y = np.array([-2.0, -0.5, -0.1, 0.0, 0.1, 0.5, 2.0])
    e = (y**2)[None, :] + np.array([[0, 0, 0, 0, 0, 0, -3.9]])
    t = np.array([3])
    dist = np.abs(y - y[3])[None, :]
    e_i, idx = most_offending(xp.asarray(e), xp.asarray(t), distances=xp.asarray(dist), epsilon=0.2,
                              return_index=True)
    assert int(backend.to_numpy(idx)[0]) == 6 and float(host(e_i)[0]) == pytest.approx(0.1)
    e_i, idx = most_offending(xp.asarray(e), xp.asarray(t), distances=xp.asarray(dist), epsilon=0.6,
                              return_index=True)
    assert int(backend.to_numpy(idx)[0]) == 6
    # Exactly at ε is still "too close": an error must be farther than ε.
    e_i, idx = most_offending(xp.asarray(e - np.array([[0, 0, 0, 0, 0, 9, 0]])), xp.asarray(t),
                              distances=xp.asarray(dist), epsilon=0.5, return_index=True)
    assert int(backend.to_numpy(idx)[0]) == 6
    e_i, idx = most_offending(xp.asarray(e), xp.asarray(t), return_index=True)
    assert int(backend.to_numpy(idx)[0]) in (2, 4)
    with pytest.raises(ValueError, match="epsilon"):
        most_offending(xp.asarray(e), xp.asarray(t), distances=xp.asarray(dist), epsilon=5.0)


def test_most_offending_gradient_reaches_only_the_picked_answer():
    e = Tensor(np.array([[0.0, 1.0, 0.5, 2.0]]), requires_grad=True)
    most_offending(e, np.array([0])).sum().backward()
    np.testing.assert_array_equal(e.grad.numpy(), [[0, 0, 1, 0]])


# ================================================================ validation

def test_bad_inputs_raise_naming_the_argument():
    ep, en = np.zeros(3), np.ones(3)
    with pytest.raises(ValueError, match="e_neg"):
        hinge(ep, np.ones(4))
    with pytest.raises(ValueError, match="e_pos"):
        hinge(np.zeros((3, 1)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="e_pos"):
        log_loss(np.zeros(0), np.zeros(0))
    with pytest.raises(TypeError, match="e_neg"):
        mce(ep, en.astype(np.float32))
    with pytest.raises(TypeError, match="e_pos"):
        mce(np.zeros(3, dtype=int), en)
    with pytest.raises(TypeError, match="e_pos"):
        energy_loss([0.0, 1.0])
    with pytest.raises(ValueError, match="margin"):
        hinge(ep, en, margin=-1.0)
    with pytest.raises(ValueError, match="margin"):
        square_square(ep, en, margin=float("nan"))
    with pytest.raises(ValueError, match="gamma"):
        square_exponential(ep, en, gamma=0.0)
    with pytest.raises(ValueError, match="saturation"):
        lvq2(ep, en, saturation=0.0)
    with pytest.raises(ValueError, match="delta"):
        lvq2(ep, en, delta=-1.0)
    with pytest.raises(ValueError, match="e_neg > 0"):
        lvq2(ep, np.array([1.0, 0.0, 1.0]), delta=0.5)
    with pytest.raises(ValueError, match="reduction"):
        hinge(ep, en, reduction="avg")
    e, t = np.zeros((3, 4)), np.array([0, 1, 2])
    with pytest.raises(ValueError, match="energies"):
        nll_mmi(np.zeros(4), t)
    with pytest.raises(ValueError, match="target"):
        perceptron(e, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"target.*\[0, 4\)"):
        mee(e, np.array([0, 1, 4]))
    with pytest.raises(ValueError, match=r"target.*\[0, 4\)"):
        mee(e, np.array([0, -1, 2]))
    with pytest.raises(TypeError, match="target"):
        nll_mmi(e, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="beta"):
        nll_mmi(e, t, beta=0.0)
    with pytest.raises(ValueError, match="beta"):
        mee(e, t, beta=math.inf)
    with pytest.raises(ValueError, match="K >= 2"):
        most_offending(np.zeros((3, 1)), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="distances"):
        most_offending(e, t, distances=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="epsilon"):
        most_offending(e, t, distances=np.ones((3, 4)), epsilon=-0.1)


def test_target_may_be_a_list_or_a_tensor():
    e = np.array([[0.0, 1.0], [2.0, -1.0]])
    ref = float(nll_mmi(e, np.array([0, 1])).numpy())
    assert float(nll_mmi(e, [0, 1]).numpy()) == ref
    assert float(nll_mmi(e, Tensor(np.array([0, 1]))).numpy()) == ref


# ================================================================ against PyTorch

def test_functionals_match_an_independent_torch_evaluation():
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    rng = np.random.default_rng(11)
    n, k, beta, m = 7, 5, 2.5, 0.8
    e, t = rng.standard_normal((n, k)) * 2, rng.integers(0, k, n)
    ep, en = rng.standard_normal(n), rng.standard_normal(n)
    te, tt = torch.tensor(e, requires_grad=True), torch.tensor(t)
    tp, tn = torch.tensor(ep), torch.tensor(en)

    ours = nll_mmi(Tensor(e, requires_grad=True), t, beta=beta)
    theirs = tf.cross_entropy(-beta * te, tt) / beta
    assert abs(float(ours.numpy()) - theirs.item()) < 1e-10
    leaf = Tensor(e, requires_grad=True)
    nll_mmi(leaf, t, beta=beta).backward()
    theirs.backward()
    np.testing.assert_allclose(leaf.grad.numpy(), te.grad.numpy(), atol=1e-10)

    p = torch.softmax(-beta * torch.tensor(e), dim=1)
    assert abs(float(mee(e, t, beta=beta).numpy()) - (1 - p[torch.arange(n), tt]).mean().item()) < 1e-10
    assert abs(float(hinge(ep, en, margin=m).numpy()) - torch.relu(m + tp - tn).mean().item()) < 1e-10
    assert abs(float(log_loss(ep, en).numpy()) - tf.softplus(tp - tn).mean().item()) < 1e-10
    assert abs(float(square_square(ep, en, margin=m).numpy())
               - (tp**2 + torch.relu(m - tn) ** 2).mean().item()) < 1e-10
    emin = torch.tensor(e).min(dim=1).values
    assert abs(float(perceptron(e, t).numpy()) - (torch.tensor(e)[torch.arange(n), tt] - emin).mean().item()) < 1e-10
