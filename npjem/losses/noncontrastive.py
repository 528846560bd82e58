"""Information-maximisation losses: Barlow Twins and VICReg (the "Non-Contrastive methods" of the
NYU Deep Learning notes, ch. 8-2 "Regularized Latent Variable Energy Based Models").

A joint-embedding network can make the energy D(h_x, h_y) of every positive pair zero by
ignoring its input: every sample gets the same embedding (complete collapse). It can also use
only a few directions of the embedding space and leave the others constant or copies of each
other (dimensional collapse). Contrastive losses prevent both by pushing negative pairs apart;
the two losses here do it without negatives, from statistics of the whole batch H_x ∈ R^{N×D}:

* Barlow Twins standardises each embedding dimension over the batch and drives the
  cross-correlation matrix of the two branches to the identity: the diagonal to 1 (each
  dimension is invariant to the distortion) and the off-diagonal to 0 (the dimensions carry
  different information, no redundancy).
* VICReg keeps the three goals apart as three terms: invariance (the mean squared distance of
  the pairs), variance (a hinge that keeps every dimension's standard deviation above γ,
  against complete collapse) and covariance (the squared off-diagonal covariances, against
  dimensional collapse).

Both need a batch: the statistics of one sample are undefined, so N = 1 raises. The conventions
in which the original code, lightly 1.6.0 and solo-learn (9187ea3) differ are parameters; each
docstring has the calls that reproduce them.
"""
from __future__ import annotations

from typing import NamedTuple

from .._checks import check_bool, check_positive, check_real
from ..autograd import functional as F
from ..autograd import ops
from ..autograd.tensor import Tensor
from ._inputs import like, matrix

__all__ = ["barlow_twins", "vicreg", "VICRegLoss"]


def _pair(h_x, h_y):
    h_x = matrix("h_x", h_x)
    h_y = like("h_y", matrix("h_y", h_y), "h_x", h_x, shape=h_x.shape)
    n, d = h_x.shape
    if n < 2:
        raise ValueError(f"the batch statistics need N >= 2 samples, got h_x of shape {(n, d)} "
                         f"(a batch of one has no variance or covariance)")
    if d < 1:
        raise ValueError(f"h_x must have at least one embedding dimension, got shape {(n, d)}")
    return h_x, h_y


def _off_diagonal_mask(xp, d, dtype):
    return Tensor(1.0 - xp.eye(d, dtype=dtype))


# ---------------------------------------------------------------- Barlow Twins

def _standardize(z, eps, name):
    """(z − mean) / sqrt(var + eps) per column, biased variance: BatchNorm1d(affine=False)."""
    d = z - z.mean(axis=0, keepdims=True)
    var = (d * d).mean(axis=0, keepdims=True)
    if eps == 0 and bool((var.data == 0).any()):
        raise ValueError(f"{name} has a dimension that is constant over the batch; its standardised "
                         f"value is 0/0 with eps=0 (use eps > 0, e.g. BatchNorm's 1e-5, which maps "
                         f"it to 0)")
    return d / ops.sqrt(var + eps) if eps else d / ops.sqrt(var)


def barlow_twins(h_x, h_y, lambd=5e-3, eps=1e-5, scale=1.0):
    r"""Barlow Twins (Zbontar et al. 2021): drive the cross-correlation of two branches to I.

    Each branch is standardised over the batch of N samples, dimension by dimension, as
    ``BatchNorm1d(D, affine=False)`` in training mode does (biased variance, ``eps`` inside
    the square root)::

        ẑ_x = (h_x − mean_n h_x) / sqrt(var_n h_x + eps),   ẑ_y likewise
        C   = ẑ_xᵀ ẑ_y / N                                   (D × D cross-correlation)
        L   = scale · [ Σ_i (1 − C_ii)²  +  λ Σ_i Σ_{j≠i} C_ij² ]

    The first sum (invariance) is 0 when each dimension is perfectly correlated across the two
    views; the second (redundancy reduction) when different dimensions are uncorrelated.

    Collapse: a branch whose outputs are constant over the batch standardises to ẑ = 0 (with
    eps > 0), so C = 0 and L = scale · D, the loss of complete collapse. When both branches are
    constant the gradient is 0 as well (C is bilinear in ẑ_x, ẑ_y and both vanish): complete
    collapse is a stationary point that the loss never leads to, not one it pushes out of.
    With ``eps=0`` the standardisation is exact (the loss is then invariant to any
    per-dimension map a·h + b, a > 0, of a branch), and a constant dimension raises instead of
    producing 0/0.

    Args:
        h_x, h_y: (N, D) embeddings of the two views (projector outputs), N ≥ 2.
        lambd: λ ≥ 0, the weight of the off-diagonal terms. The paper: 5e-3; the current original
            code: 0.0051.
        eps: ε ≥ 0 in the standardisation (BatchNorm's 1e-5 in all the codes below).
        scale: a factor on the whole loss (older original code and solo-learn multiply by one).

    Returns a scalar Tensor.

    Matching other code::

        | code                                               | call                                     |
        |----------------------------------------------------|------------------------------------------|
        | the paper                                          | barlow_twins(a, b)                       |
        | original main.py (since June 2021)                 | barlow_twins(a, b, lambd=0.0051)         |
        | original first release (--scale-loss 1/32)         | barlow_twins(a, b, lambd=3.9e-3,         |
        |                                                    |              scale=1/32)                 |
        | lightly 1.6.0 BarlowTwinsLoss()                    | barlow_twins(a, b, lambd=0.005)          |
        | solo-learn barlow_loss_func(z1, z2) (its defaults) | barlow_twins(a, b, lambd=0.005,          |
        |                                                    |              scale=0.025)                |
        | solo-learn BarlowTwins method defaults             | barlow_twins(a, b, lambd=0.0051,         |
        |                                                    |              scale=0.024)                |

    Under data parallelism the original code synchronises the batch statistics (SyncBatchNorm)
    and sums C over devices; with one device all of the above agree.
    """
    h_x, h_y = _pair(h_x, h_y)
    lambd = check_positive(lambd, "lambd", allow_zero=True)
    eps = check_positive(eps, "eps", allow_zero=True)
    scale = check_positive(scale, "scale")
    n, d = h_x.shape
    xp = h_x.xp

    z_x = _standardize(h_x, eps, "h_x")
    z_y = _standardize(h_y, eps, "h_y")
    c = ops.matmul(z_x.T, z_y) * (1.0 / n)
    eye = Tensor(xp.eye(d, dtype=h_x.dtype))
    diag = (c * eye).sum(axis=0)
    on = ((1.0 - diag) * (1.0 - diag)).sum()
    off = (c * c * _off_diagonal_mask(xp, d, h_x.dtype)).sum()
    loss = on + off * lambd if lambd else on
    return loss * scale if scale != 1.0 else loss


# ---------------------------------------------------------------- VICReg

class VICRegLoss(NamedTuple):
    """VICReg's total and its three unweighted terms (scalar Tensors).

    ``loss = sim_coeff·invariance + std_coeff·variance + cov_coeff·covariance``; only ``loss``
    needs a backward, the terms are there to be watched during training.
    """

    loss: Tensor
    invariance: Tensor
    variance: Tensor
    covariance: Tensor


def _variance_covariance(z, gamma, eps, offmask):
    n, d = z.shape
    zc = z - z.mean(axis=0, keepdims=True)
    var = (zc * zc).sum(axis=0) * (1.0 / (n - 1))          # unbiased, as torch.var
    std = ops.sqrt(var + eps)                               # eps inside the root: finite gradient at 0
    v = F.relu(gamma - std).mean()
    cov = ops.matmul(zc.T, zc) * (1.0 / (n - 1))
    c = (cov * cov * offmask).sum() * (1.0 / d)
    return v, c


def vicreg(h_x, h_y, sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0, gamma=1.0, eps=1e-4, *,
           halve_variance=True):
    r"""VICReg (Bardes, Ponce & LeCun 2022): variance, invariance and covariance regularisation.

    For the batches Z = H_x, Z' = H_y ∈ R^{N×D} (the code's formulas; N ≥ 2)::

        s(Z, Z') = (1/(N·D)) Σ_n ‖z_n − z'_n‖²                          invariance (the MSE)
        v(Z)     = (1/D) Σ_j max(0, γ − sqrt(Var(z^j) + ε))              variance hinge
        c(Z)     = (1/D) Σ_{i≠j} [Cov(Z)]_ij²                            covariance
        Var, Cov with the unbiased 1/(N−1);  Cov(Z) = (Z − Z̄)ᵀ(Z − Z̄)/(N − 1)

        L = λ s(Z, Z') + μ [v(Z) + v(Z')]/2 + ν [c(Z) + c(Z')]

    with λ = ``sim_coeff``, μ = ``std_coeff``, ν = ``cov_coeff``. The variance term is 0 as soon as
    every dimension's standard deviation is at least γ, so it only acts against collapse; the
    covariance term is 0 for decorrelated dimensions.

    Collapse: for outputs that are constant over the batch every std is sqrt(ε), and each v
    takes its largest possible value γ − sqrt(ε). Exactly there its gradient is 0 (the
    variance is quadratic in the deviations); one step away from it, the gradient of v moves
    every sample away from the batch mean, with a slope up to 1/(2 sqrt(ε)) = 50 per unit of
    variance (this is why ε sits inside the square root).

    Args:
        h_x, h_y: (N, D) embeddings (expander outputs) of the two views.
        sim_coeff, std_coeff, cov_coeff: λ, μ, ν ≥ 0 (paper and code: 25, 25, 1).
        gamma: γ > 0, the target standard deviation (1 in the paper and code).
        eps: ε > 0 inside the square root (1e-4).
        halve_variance: ``True`` averages the two branches' variance terms, [v(Z) + v(Z')]/2, as
            the original code and lightly do; ``False`` sums them, v(Z) + v(Z'), as the paper
            writes and solo-learn computes (the same as doubling μ).

    Returns ``VICRegLoss(loss, invariance, variance, covariance)``: the total and the unweighted
    terms s, [v(Z) + v(Z')]/2 (or the sum), c(Z) + c(Z').

    Matching other code::

        | code                                        | call                                       |
        |---------------------------------------------|--------------------------------------------|
        | original main_vicreg.py, one device         | vicreg(a, b)                               |
        | lightly 1.6.0 VICRegLoss()                  | vicreg(a, b)                               |
        | solo-learn vicreg_loss_func(z1, z2)         | vicreg(a, b, halve_variance=False)         |
        | the paper's formula                         | vicreg(a, b, halve_variance=False)         |

    (The paper writes the invariance as (1/N) Σ‖z − z'‖², D times the code's mean; all three
    codes use the mean.) Under data parallelism the original code takes the invariance over the
    local batch and the variance and covariance over the gathered global batch.
    """
    h_x, h_y = _pair(h_x, h_y)
    sim_coeff = check_positive(sim_coeff, "sim_coeff", allow_zero=True)
    std_coeff = check_positive(std_coeff, "std_coeff", allow_zero=True)
    cov_coeff = check_positive(cov_coeff, "cov_coeff", allow_zero=True)
    gamma = check_real(gamma, "gamma", low=0.0, low_open=True)
    eps = check_real(eps, "eps", low=0.0, low_open=True)
    halve_variance = check_bool(halve_variance, "halve_variance")
    offmask = _off_diagonal_mask(h_x.xp, h_x.shape[1], h_x.dtype)

    invariance = F.mse_loss(h_x, h_y)
    v_x, c_x = _variance_covariance(h_x, gamma, eps, offmask)
    v_y, c_y = _variance_covariance(h_y, gamma, eps, offmask)
    variance = (v_x + v_y) * 0.5 if halve_variance else v_x + v_y
    covariance = c_x + c_y
    loss = invariance * sim_coeff + variance * std_coeff + covariance * cov_coeff
    return VICRegLoss(loss, invariance, variance, covariance)
