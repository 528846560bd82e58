"""The course notes' h in PIRL's NCE (``h="notes"``): closed form, gradients, and its relation to
the paper's h = x / (x + K/|D|)."""
import math

import numpy as np
import pytest

import npjem
from npjem import Tensor
from npjem.losses import nce_loss, nce_memory_loss


def unit_rows(rng, n, d):
    a = rng.standard_normal((n, d))
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def notes_reference(v, mpos, mneg, tau):
    """The notes' L_NCE written out with probabilities (no log domain), per sample."""
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    s_pos = np.exp(np.sum(u * mpos, axis=1) / tau)
    s_neg = np.exp((np.einsum("bd,kd->bk", u, mneg) if mneg.ndim == 2 else np.einsum("bd,bkd->bk", u, mneg)) / tau)
    denom = s_neg.sum(axis=1)                            # Σ_{I' ∈ D_N} exp(s(v_{I^t}, v_{I'})/τ)
    h_pos = s_pos / (s_pos + denom)
    h_neg = s_neg / (s_neg + denom[:, None])
    return -np.log(h_pos) - np.log1p(-h_neg).sum(axis=1)


def test_closed_form():
    # s⁺ = 1 against the positive and 0 against each of K orthogonal negatives, τ = 1:
    # h⁺ = e/(e + K), h' = 1/(1 + K), L = log(1 + K/e) + K log(1 + 1/K).
    k = 5
    v = np.array([[2.0, 0.0]])                           # normalised inside to (1, 0)
    mpos = np.array([[1.0, 0.0]])
    mneg = np.tile([[0.0, 1.0]], (k, 1))
    got = nce_memory_loss(v, mpos, mneg, dataset_size=100, temperature=1.0, h="notes").item()
    assert got == pytest.approx(math.log(1 + k / math.e) + k * math.log(1 + 1 / k), rel=1e-14)
    # The paper's h gives another value here (its denominator is e + K/|D|, not e + K).
    paper = nce_memory_loss(v, mpos, mneg, dataset_size=100, temperature=1.0).item()
    assert abs(paper - got) > 0.1


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_matches_the_formula_written_out(per_sample, tau):
    rng = np.random.default_rng(3)
    b, k, d = 4, 6, 5
    v, mpos = rng.standard_normal((b, d)), unit_rows(rng, b, d)
    mneg = unit_rows(rng, b * k, d).reshape(b, k, d) if per_sample else unit_rows(rng, k, d)
    expected = notes_reference(v, mpos, mneg, tau)
    got = nce_memory_loss(v, mpos, mneg, dataset_size=50, temperature=tau, h="notes", reduction="none").numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    mixed = nce_loss(v[::-1].copy(), v, mpos, mneg, dataset_size=50, temperature=tau, lam=0.3, h="notes").item()
    expected_mixed = 0.3 * expected.mean() + 0.7 * notes_reference(v[::-1].copy(), mpos, mneg, tau).mean()
    assert mixed == pytest.approx(expected_mixed, rel=1e-12)


def test_is_the_papers_h_with_the_negatives_own_normaliser():
    # For one sample, the notes' h is the paper's with Z·K/|D| = S = Σ exp(β s'), i.e. Z = S |D| / K.
    rng = np.random.default_rng(4)
    k, d, n_data, tau = 7, 4, 300, 0.2
    v, mpos, mneg = rng.standard_normal((1, d)), unit_rows(rng, 1, d), unit_rows(rng, k, d)
    u = v / np.linalg.norm(v)
    s = np.exp(u @ mneg.T / tau).sum()
    paper = nce_memory_loss(v, mpos, mneg, dataset_size=n_data, temperature=tau, normalizer=s * n_data / k).item()
    notes = nce_memory_loss(v, mpos, mneg, dataset_size=n_data, temperature=tau, h="notes").item()
    assert notes == pytest.approx(paper, rel=1e-12)


@pytest.mark.parametrize("per_sample", [False, True])
def test_gradcheck(per_sample):
    rng = np.random.default_rng(5)
    b, k, d = 3, 4, 5
    f, g, mpos = rng.standard_normal((b, d)), rng.standard_normal((b, d)), unit_rows(rng, b, d)
    mneg = unit_rows(rng, b * k, d).reshape(b, k, d) if per_sample else unit_rows(rng, k, d)

    def fn(x, y, p, m):
        return nce_loss(x, y, p, m, dataset_size=40, temperature=0.3, lam=0.4, h="notes")

    assert npjem.gradcheck(fn, [f, g, mpos, mneg], fixed=(2, 3), eps=1e-6, atol=1e-7, rtol=1e-5)
    # The gradient passes through the denominator's sum too: it differs from the paper's.
    x = Tensor(f, requires_grad=True)
    nce_memory_loss(x, mpos, mneg, dataset_size=40, temperature=0.3, h="notes").backward()
    notes_grad = x.grad.numpy().copy()
    x.grad = None
    nce_memory_loss(x, mpos, mneg, dataset_size=40, temperature=0.3).backward()
    assert np.abs(notes_grad - x.grad.numpy()).max() > 1e-3


def test_arguments_are_checked():
    rng = np.random.default_rng(6)
    v, mpos, mneg = rng.standard_normal((2, 3)), unit_rows(rng, 2, 3), unit_rows(rng, 4, 3)
    with pytest.raises(ValueError, match="h must be one of"):
        nce_memory_loss(v, mpos, mneg, dataset_size=10, h="softmax")
    for kw in (dict(normalizer=2.0), dict(eps=1e-7)):
        with pytest.raises(ValueError, match="h='notes'"):
            nce_memory_loss(v, mpos, mneg, dataset_size=10, h="notes", **kw)
