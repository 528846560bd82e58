r"""The loss functionals of LeCun, Chopra, Hadsell, Ranzato & Huang (2006), "A Tutorial on
Energy-Based Learning", on the energies an energy-based model gives to the answers of a sample.

Notation (the tutorial's, and that of the NYU Deep Learning notes of spring 2020, week 11, "Loss
Functions (cont.) and Loss Functions for Energy Based Models"): a sample X^i with its correct
answer Y^i, an energy E(W, Y, X) (written F(x, y) in ch. 8-1, "Contrastive Methods in Energy-Based
Models"), and

    E_C = E(W, Y^i, X^i)      the energy of the correct answer,
    E_I = E(W, Ȳ^i, X^i)      the energy of the *most offending incorrect answer*,

Ȳ^i = argmin_{Y ∈ 𝒴, Y ≠ Y^i} E(W, Y, X^i) for a discrete answer set, and
argmin_{‖Y − Y^i‖ > ε} E(W, Y, X^i) for a continuous one (:func:`most_offending` picks it).
A good loss pushes E_C down and E_I up. The training objective is the mean of the per-sample
loss over the P samples, 𝓛 = (1/P) Σ_i L(Y^i, E(W, 𝒴, X^i)) (``reduction="mean"``; the
regulariser R(W) is the optimiser's business).

Two kinds of function live here:

* **pair functionals** take ``(e_pos, e_neg)``, the (N,) energies E_C and E_I:
  :func:`energy_loss` (E_C only), :func:`hinge`, :func:`log_loss`, :func:`lvq2`, :func:`mce`,
  :func:`square_square`, :func:`square_exponential`;
* **all-answer functionals** need every answer's energy, ``(energies (N, K), target (N,))``:
  :func:`perceptron`, :func:`nll_mmi`, :func:`mee`.

The *margin* of a functional is the gap E_I − E_C beyond which it stops pushing (a finite
margin m: hinge, square-square), 0 where it stops as soon as the correct answer wins
(perceptron, LVQ2), none for the energy loss, and an "infinite" (soft) margin for those that
keep pushing, ever more gently, however large the gap (log, MCE, square-exponential, NLL/MMI,
MEE).

| function              | L(E_C, E_I) or L(Y^i, E(W, 𝒴, X^i))              | margin       |
|-----------------------|--------------------------------------------------|--------------|
| energy_loss           | E_C                                              | none         |
| perceptron            | E_C − min_{Y ∈ 𝒴} E(W, Y, X^i)                   | 0            |
| hinge                 | max(0, m + E_C − E_I)                            | m            |
| log_loss              | log(1 + exp(E_C − E_I))                          | > 0 (soft)   |
| lvq2                  | min(M, max(0, E_C − E_I))                        | 0            |
| mce                   | σ(E_C − E_I) = 1 / (1 + exp(−(E_C − E_I)))       | > 0 (soft)   |
| square_square         | E_C² + max(0, m − E_I)²                          | m            |
| square_exponential    | E_C² + γ exp(−E_I)                               | > 0 (soft)   |
| nll_mmi               | E_C + (1/β) log Σ_{y ∈ 𝒴} exp(−β E(W, y, X^i))   | > 0 (soft)   |
| mee                   | 1 − exp(−β E_C) / Σ_{y ∈ 𝒴} exp(−β E(W, y, X^i)) | > 0 (soft)   |

The joint-embedding pair loss :func:`npjem.losses.pair_margin_loss` (DrLIM) is the hinge idea
on pairs: with the distance D as energy, a similar pair's energy is E_C and a dissimilar pair's
is E_I, and its sum over one of each is ½ · :func:`square_square` (a squared hinge with margin m
on the dissimilar pair).

Every function takes Tensors or arrays of a floating dtype (the two energies on one device and
of one dtype), returns a scalar Tensor (or the (N,) losses with ``reduction="none"``), and
refuses shapes that do not match rather than broadcasting them.
"""
from __future__ import annotations

from ._inputs import as_float_tensor
from .. import backend
from .._checks import check_choice, check_real
from ..autograd import functional as F
from ..autograd import ops
from ..autograd.tensor import Tensor

__all__ = [
    "most_offending", "energy_loss", "perceptron", "hinge", "log_loss", "lvq2", "mce",
    "square_square", "square_exponential", "nll_mmi", "mee",
]


# ---------------------------------------------------------------- validation

def _per_sample(name, value):
    """An (N,) Tensor of energies, N >= 1."""
    t = as_float_tensor(name, value)
    if t.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,), one energy per sample, got shape {tuple(t.shape)}")
    if t.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one sample, got shape {tuple(t.shape)}")
    return t


def _pair(e_pos, e_neg):
    """The (N,) energies E_C and E_I, same shape, dtype and device."""
    e_pos = _per_sample("e_pos", e_pos)
    e_neg = _per_sample("e_neg", e_neg)
    if e_neg.shape != e_pos.shape:
        raise ValueError(f"e_neg must have shape {tuple(e_pos.shape)} (to match e_pos), got {tuple(e_neg.shape)}")
    if e_neg.dtype != e_pos.dtype:
        raise TypeError(f"e_neg has dtype {e_neg.dtype} but e_pos has dtype {e_pos.dtype}; cast one of them")
    if e_neg.device != e_pos.device:
        raise ValueError(f"e_neg is on {e_neg.device} but e_pos is on {e_pos.device}")
    return e_pos, e_neg


def _all_answers(energies, name="energies", min_answers=1):
    """An (N, K) Tensor of the energies of every answer, N >= 1, K >= ``min_answers``."""
    t = as_float_tensor(name, energies)
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, K), the energy of each of K answers per sample, "
                         f"got shape {tuple(t.shape)}")
    n, k = t.shape
    if n < 1:
        raise ValueError(f"{name} must hold at least one sample, got shape {tuple(t.shape)}")
    if k < min_answers:
        raise ValueError(f"{name} must have at least {min_answers} answer(s) per sample (K >= {min_answers}), "
                         f"got shape {tuple(t.shape)}")
    return t


def _target(target, n, k, like, name="target"):
    """The (N,) integer indices of the correct answers in [0, K), as an array on ``like``'s device."""
    lab = target.data if isinstance(target, Tensor) else target
    if not backend.is_array(lab):
        try:
            lab = backend.to_device(backend.to_numpy(lab), like.device)  # lists, ints
        except Exception:
            raise TypeError(f"{name} must be an array of integer answer indices, got {type(target).__name__}") from None
    elif backend.get_array_module(lab) is not like.xp:
        lab = backend.to_device(backend.to_numpy(lab), like.device)
    if lab.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer answer indices, got dtype {lab.dtype}")
    if tuple(lab.shape) != (n,):
        raise ValueError(f"{name} must have shape ({n},), one answer index per sample, got {tuple(lab.shape)}")
    lo, hi = int(lab.min()), int(lab.max())
    if lo < 0 or hi >= k:
        raise ValueError(f"{name} must hold answer indices in [0, {k}), got values in [{lo}, {hi}]")
    return lab


def _beta(beta):
    return check_real(beta, "beta", low=0.0, low_open=True)


def _reduce(loss, reduction):
    check_choice(reduction, "reduction", ("mean", "sum", "none"))
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _pick(energies, lab):
    """E(W, Y^i, X^i): row i's energy at column ``lab[i]`` (differentiable), shape (N,)."""
    xp = energies.xp
    return energies[xp.arange(energies.shape[0]), lab]


# ---------------------------------------------------------------- the most offending answer

def most_offending(energies, target, *, distances=None, epsilon=0.0, return_index=False):
    r"""E_I = E(W, Ȳ^i, X^i), the energy of the most offending incorrect answer of each sample.

    Discrete answers (the tutorial's definition)::

        Ȳ^i = argmin_{Y ∈ 𝒴, Y ≠ Y^i} E(W, Y, X^i)

    Continuous answers, represented by K candidate answers per sample (a grid, samples, the
    other points of a batch) with their distances ‖Y − Y^i‖ to the correct one::

        Ȳ^i = argmin_{Y ∈ 𝒴, ‖Y − Y^i‖ > ε} E(W, Y, X^i)

    so that answers within ε of the correct one do not count as errors (without this the
    lowest incorrect energy would sit next to E_C and no margin could ever hold).

    Args:
        energies: (N, K) energies of the K answers of each of N samples, K >= 2.
        target: (N,) integer index of the correct answer Y^i of each sample.
        distances: optional (N, K) distances ‖Y_k − Y^i‖ of each answer to the correct one;
            answers with distance <= ``epsilon`` are excluded (the correct one always is).
        epsilon: ε >= 0, used with ``distances``.
        return_index: also return the (N,) indices of Ȳ^i.

    Returns the (N,) Tensor E_I, differentiable with respect to ``energies`` (the gradient
    flows to the picked entries only), and with ``return_index`` the index array as well.
    At ties the first lowest answer is picked. A sample with no admissible incorrect answer
    raises.
    """
    energies = _all_answers(energies, min_answers=2)
    n, k = energies.shape
    lab = _target(target, n, k, energies)
    eps = check_real(epsilon, "epsilon", low=0.0)
    xp = energies.xp
    excluded = xp.arange(k)[None, :] == lab[:, None]
    if distances is not None:
        dist = distances.data if isinstance(distances, Tensor) else distances
        if not backend.is_array(dist) or backend.get_array_module(dist) is not xp:
            dist = backend.to_device(backend.to_numpy(dist), energies.device)
        if tuple(dist.shape) != (n, k):
            raise ValueError(f"distances must have shape ({n}, {k}) (to match energies), got {tuple(dist.shape)}")
        excluded = excluded | (dist <= eps)
    if bool(excluded.all(axis=1).any()):
        raise ValueError("most_offending: some sample has no incorrect answer farther than epsilon from "
                         "its correct one; lower epsilon or add answers")
    masked = xp.where(excluded, xp.inf, energies.data)
    idx = masked.argmin(axis=1)
    e_neg = _pick(energies, idx)
    return (e_neg, idx) if return_index else e_neg


# ---------------------------------------------------------------- the functionals

def energy_loss(e_pos, reduction="mean"):
    r"""Energy loss (tutorial eq. 6): L = E_C = E(W, Y^i, X^i). No margin.

    It only pushes the correct answer's energy down, so it works only with architectures that
    cannot give low energy to everything (it collapses otherwise: a constant zero energy is a
    minimum). Regression with E = ½‖G_W(X) − Y‖² trained this way is least squares.

    Args: e_pos: (N,) energies E_C. reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
    """
    return _reduce(_per_sample("e_pos", e_pos), reduction)


def perceptron(energies, target, reduction="mean"):
    r"""Generalized perceptron loss (tutorial eq. 7): L = E_C − min_{Y ∈ 𝒴} E(W, Y, X^i). Margin 0.

    Always >= 0 (the minimum runs over all answers, the correct one included), and 0 exactly
    when the correct answer has the lowest energy, however small the gap: nothing opens a
    margin between E_C and the incorrect energies. It is the β → ∞ limit of :func:`nll_mmi`.
    At ties in the minimum the gradient is shared evenly among the tied answers.

    Args:
        energies: (N, K) energies of every answer. target: (N,) index of the correct answer.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
    """
    energies = _all_answers(energies)
    lab = _target(target, *energies.shape, energies)
    return _reduce(_pick(energies, lab) - energies.min(axis=1), reduction)


def hinge(e_pos, e_neg, margin=1.0, reduction="mean"):
    r"""Hinge loss (tutorial eq. 11): L = max(0, m + E_C − E_I). Margin m.

    Zero (with zero gradient) once the most offending incorrect answer is at least m above the
    correct one, E_I − E_C >= m; below that it pushes E_C down and E_I up with unit slope. The
    pair loss :func:`npjem.losses.pair_margin_loss` is the same hinge on pairs of embeddings
    (squared there, in the square-square form of :func:`square_square`).

    Args:
        e_pos, e_neg: (N,) energies E_C and E_I. margin: m >= 0 (default 1).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
    """
    e_pos, e_neg = _pair(e_pos, e_neg)
    m = check_real(margin, "margin", low=0.0)
    return _reduce(F.relu(e_pos - e_neg + m), reduction)


def log_loss(e_pos, e_neg, reduction="mean"):
    r"""Log loss (tutorial eq. 12): L = log(1 + exp(E_C − E_I)), the "soft hinge". Margin: soft (infinite).

    Always > 0: it keeps pushing the gap E_I − E_C wider, with a force σ(E_C − E_I) that decays
    exponentially once the gap is positive. Evaluated as softplus(E_C − E_I), which never
    overflows.

    Args: e_pos, e_neg: (N,) energies E_C and E_I. reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
    """
    e_pos, e_neg = _pair(e_pos, e_neg)
    return _reduce(F.softplus(e_pos - e_neg), reduction)


def lvq2(e_pos, e_neg, saturation=1.0, delta=None, reduction="mean"):
    r"""LVQ2 loss (Kohonen's rule as a loss, tutorial eq. 13 and Table 1). Margin 0.

    The Table 1 form (``delta=None``)::

        L = min(M, max(0, E_C − E_I))

    and the eq. 13 form, for energies that are distances to prototypes (E > 0)::

        L = min(M, max(0, (E_C − E_I) / (δ E_I)))          (the tutorial has M = 1)

    Zero as soon as the correct answer wins (E_C <= E_I): no margin. It grows linearly while
    the most offending answer is below the correct one and saturates at M (the ratio form at
    E_C = (1 + δ) E_I), so samples that are far on the wrong side stop contributing, as LVQ2's
    update window ignores them.

    Args:
        e_pos, e_neg: (N,) energies E_C and E_I (with ``delta``: E_I > 0).
        saturation: M > 0 (default 1).
        delta: δ > 0 selects the ratio form of eq. 13; None (default) the Table 1 form.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
    """
    e_pos, e_neg = _pair(e_pos, e_neg)
    big_m = check_real(saturation, "saturation", low=0.0, low_open=True)
    gap = e_pos - e_neg
    if delta is not None:
        d = check_real(delta, "delta", low=0.0, low_open=True)
        if not bool((e_neg.data > 0).all()):
            raise ValueError("lvq2 with delta (the ratio form) needs positive energies e_neg > 0 "
                             "(distances to prototypes)")
        gap = gap / (e_neg * d)
    return _reduce(ops.minimum(F.relu(gap), big_m), reduction)


def mce(e_pos, e_neg, reduction="mean"):
    r"""Minimum classification error loss (tutorial eq. 15): L = σ(E_C − E_I), σ(u) = 1 / (1 + e^{−u}).

    A smooth count of errors (Juang et al.'s MCE): close to 1 when the most offending answer
    beats the correct one by a lot, ½ at a tie, close to 0 when the correct one wins by a lot.
    Margin: soft (infinite), it is > 0 for every gap; but it is bounded and saturates on both
    sides, so badly misclassified samples stop pulling (robust, non-convex).

    Args: e_pos, e_neg: (N,) energies E_C and E_I. reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
    """
    e_pos, e_neg = _pair(e_pos, e_neg)
    return _reduce(ops.sigmoid(e_pos - e_neg), reduction)


def square_square(e_pos, e_neg, margin=1.0, reduction="mean"):
    r"""Square-square loss (tutorial eq. 16): L = E_C² + max(0, m − E_I)². Margin m.

    For non-negative energies (distances, as in Siamese nets): E_C is pushed to 0 and E_I up
    to m, after which the second term and its gradient vanish. Eq. 16 and the NYU notes (spring
    2020, week 11, "Square-Square Loss") add the two terms; the tutorial's Table 1 is reported to print a minus sign, which would
    reward low E_I and is a slip. DrLIM's pair loss, :func:`npjem.losses.pair_margin_loss`, is
    ½ of this on one similar and one dissimilar pair.

    Args:
        e_pos, e_neg: (N,) energies E_C and E_I (meant to be >= 0). margin: m >= 0 (default 1).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
    """
    e_pos, e_neg = _pair(e_pos, e_neg)
    m = check_real(margin, "margin", low=0.0)
    h = F.relu(m - e_neg)
    return _reduce(e_pos * e_pos + h * h, reduction)


def square_exponential(e_pos, e_neg, gamma=1.0, reduction="mean"):
    r"""Square-exponential loss (tutorial eq. 17): L = E_C² + γ exp(−E_I). Margin: soft (infinite).

    For non-negative energies: E_C is pushed to 0 and E_I up forever, ever more weakly (the
    push γ e^{−E_I} never reaches zero). γ > 0 is a constant weight (the tutorial's γ; some
    renderings write it β, unrelated to the inverse temperature).

    Args:
        e_pos, e_neg: (N,) energies E_C and E_I. gamma: γ > 0 (default 1).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
    """
    e_pos, e_neg = _pair(e_pos, e_neg)
    g = check_real(gamma, "gamma", low=0.0, low_open=True)
    return _reduce(e_pos * e_pos + ops.exp(-e_neg) * g, reduction)


def nll_mmi(energies, target, beta=1.0, reduction="mean"):
    r"""Negative log-likelihood / maximum mutual information loss (tutorial eq. 23). Margin: soft.

    In the tutorial's convention, with the 1/β in front of the log::

        L = E_C + (1/β) log Σ_{y ∈ 𝒴} exp(−β E(W, y, X^i))

    which is (1/β) · (−log P(Y^i | X^i)) for the Gibbs distribution
    P(y | x) = exp(−β E(y)) / Σ_{y'} exp(−β E(y')) — so β · ``nll_mmi`` is the cross-entropy of
    softmax(−β E) at the correct answer, and :func:`npjem.ebm.energy.nll` (which has no 1/β)
    equals β times this. Dividing by β keeps the loss in units of energy: as β → ∞ it tends to
    the :func:`perceptron` loss, from above, within log(K)/β. Its gradient in E(y) is
    [y = Y^i] − P(y | X^i): push down the correct answer, push up every answer in proportion to
    its probability. Written with a stable log-sum-exp.

    Args:
        energies: (N, K) energies of every answer. target: (N,) index of the correct answer.
        beta: β > 0, the inverse temperature (default 1).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
    """
    energies = _all_answers(energies)
    lab = _target(target, *energies.shape, energies)
    b = _beta(beta)
    return _reduce(_pick(energies, lab) + F.logsumexp(energies * (-b), axis=1) * (1.0 / b), reduction)


def mee(energies, target, beta=1.0, reduction="mean"):
    r"""Minimum empirical error loss (tutorial eq. 27): L = 1 − P(Y^i | X^i). Margin: soft.

    ::

        L = 1 − exp(−β E_C) / Σ_{y ∈ 𝒴} exp(−β E(W, y, X^i))

    the probability of *not* giving the correct answer under the Gibbs distribution (Ljolje et
    al.'s MEE for speech). Bounded in [0, 1): unlike :func:`nll_mmi` it barely pushes on samples
    whose correct answer is already likely, and it saturates (stops pulling) on hopeless ones.

    Args:
        energies: (N, K) energies of every answer. target: (N,) index of the correct answer.
        beta: β > 0, the inverse temperature (default 1).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
    """
    energies = _all_answers(energies)
    lab = _target(target, *energies.shape, energies)
    b = _beta(beta)
    log_p = F.log_softmax(energies * (-b), axis=1)
    return _reduce(1.0 - ops.exp(_pick(log_p, lab)), reduction)
