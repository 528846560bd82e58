"""Training an energy without sampling from it: NCE, score matching, ratio matching, PL, MPF.

Maximum likelihood pushes the energy down on data and up *everywhere*, weighted by the model's
own Gibbs distribution, which needs MCMC (:mod:`npjem.ebm.training`). The objectives here avoid
the partition function Z = ∫ exp(−E) another way each:

============================  =============================================  ===============
objective                     where the energy is pushed up                  d/dx order
============================  =============================================  ===============
:func:`nce`                   at samples of a known noise distribution       0 (θ-grad: 1st)
:func:`score_matching`        nowhere: curvature up, slope down at the data  2 (θ-grad: 3rd)
:func:`denoising_score_…`     at the data's Gaussian perturbations           1 (θ-grad: 2nd)
:func:`sliced_score_matching` as score matching, one direction at a time     2, as H·v only
:func:`ratio_matching`        at the D single-bit flips of each binary x     0 (θ-grad: 1st)
:func:`pseudo_likelihood`     at the D single-bit flips of each binary x     0 (θ-grad: 1st)
:func:`minimum_probability_…` at the D single-bit flips of each binary x     0 (θ-grad: 1st)
============================  =============================================  ===============

**An energy** is any callable mapping a batch ``x`` of shape (N, D) to a Tensor of N energies
(an ``npjem.nn`` Module, a closure over parameter Tensors, ...). Its parameters are whatever
Tensors it closes over; the objective's ``backward()`` reaches them. The score-based objectives
also take a **score network** s(x) ≈ ∇ₓ log p(x), mapping (N, D) to (N, D)
(``parametrization="score"``); for an energy the score is s = −∇ₓE, computed with
``npjem.grad(..., create_graph=True)`` so that the parameters still get their gradient through
it (second- and third-order reverse mode).

Every objective returns a scalar Tensor to *minimise* (``reduction="mean"`` over the batch;
``"sum"`` and ``"none"`` (per-sample values) where a per-sample value exists), validates its
inputs at the boundary, and draws its randomness (noise, projections) from an explicit
``generator``.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..losses._inputs import batch
from .. import backend
from .. import random as nrandom
from .._checks import ArgumentTypeError, check_bool, check_choice, check_int, check_positive
from ..autograd import functional as F
from ..autograd import ops
from ..autograd.tensor import Tensor, enable_grad, grad

__all__ = [
    "energy_score", "nce", "score_matching", "denoising_score_matching", "sliced_score_matching",
    "ratio_matching", "pseudo_likelihood", "minimum_probability_flow",
]

_PARAMETRIZATIONS = ("energy", "score")
_REDUCTIONS = ("mean", "sum", "none")


# ------------------------------------------------------------------ validation helpers

def _batch(value, name="x"):
    """``value`` as a floating Tensor (N, D), N, D >= 1."""
    return batch(name, value)


def _callable(model, name):
    if not callable(model):
        raise ArgumentTypeError(f"{name} must be callable (x of shape (N, D) -> Tensor), got "
                                f"{type(model).__name__}")
    return model


def _energies(energy, x, name="energy", *args):
    """E(x) as a Tensor of shape (N,); anything else (an (N, 1) column, an array) raises."""
    e = energy(x, *args)
    if not isinstance(e, Tensor):
        raise ArgumentTypeError(f"{name} must return a Tensor, got {type(e).__name__}")
    if tuple(e.shape) != (x.shape[0],):
        raise ValueError(f"{name} must return one energy per sample, shape ({x.shape[0]},), for x of shape "
                         f"{tuple(x.shape)}; got shape {tuple(e.shape)}")
    return e


def _leaf(x):
    """``x`` itself when it is already differentiable (so d/dx of the loss is right), else a leaf."""
    return x if x.requires_grad else Tensor(x.data, requires_grad=True)


def _grad_or_zero(out, x, create_graph=True):
    """∂(Σ out)/∂x, differentiable; zeros where ``out`` does not depend on x (a linear energy's
    gradient is constant, so its Hessian rows have no path back to x)."""
    if out.requires_grad:
        (g,) = grad(out.sum(), x, create_graph=create_graph, allow_unused=True)
        if g is not None:
            return g
    return Tensor(x.xp.zeros(x.shape, dtype=x.dtype))


def _scores(model, x, parametrization, name, *args):
    """s(x) of shape (N, D), differentiable in x and in the model's parameters.

    For an energy, s = −∇ₓE with ``create_graph=True``; ``x`` must require grad.
    """
    if parametrization == "score":
        s = model(x, *args)
        if not isinstance(s, Tensor):
            raise ArgumentTypeError(f"{name} must return a Tensor, got {type(s).__name__}")
        if tuple(s.shape) != tuple(x.shape):
            raise ValueError(f"{name} (a score network) must return shape {tuple(x.shape)}, like x; got "
                             f"{tuple(s.shape)}")
        return s
    return -_grad_or_zero(_energies(model, x, name, *args), x)


def _reduce(per_sample, reduction):
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


def _per_sample(name, value, n, like):
    """A per-sample quantity (log-densities) as a Tensor of shape (n,) on ``like``'s device."""
    if isinstance(value, Tensor):
        t = value
    elif backend.is_array(value):
        t = Tensor(value)
    else:
        raise ArgumentTypeError(f"{name} must be a Tensor or an array of shape ({n},), got {type(value).__name__}")
    if tuple(t.shape) != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {tuple(t.shape)}")
    if t.device != like.device:
        raise ValueError(f"{name} is on {t.device} but the samples are on {like.device}")
    return t


def energy_score(energy, x, create_graph=True):
    """The score of an energy, s(x) = ∇ₓ log p(x) = −∇ₓE(x), shape (N, D).

    With ``create_graph=True`` (default) the result is differentiable again, in x and in the
    energy's parameters, which every energy-parametrised score objective needs.
    """
    _callable(energy, "energy")
    x = _batch(x)
    check_bool(create_graph, "create_graph")
    with enable_grad():
        xl = _leaf(x)
        g = _grad_or_zero(_energies(energy, xl), xl, create_graph)
    return -g


# ------------------------------------------------------------------ NCE

def nce(energy, x_data, x_noise, log_noise_data, log_noise_noise, log_z, nu=None):
    """Noise-contrastive estimation with a known noise density (Gutmann & Hyvärinen 2010, 2012).

    The model is log p_m(u) = −E(u) − c with the log-normaliser c = ``log_z`` learned as one more
    parameter (a scalar Tensor; a float holds it fixed). A logistic classifier tells the T_d data
    points x from the T_n noise points y ~ p_n by the log-ratio

        G(u) = log p_m(u) − log p_n(u),      h(u) = σ(G(u) − log ν),      ν = T_n / T_d,

    and NCE maximises J = (1/T_d)[Σ_t log h(x_t) + Σ_t log(1 − h(y_t))]. Returned (to minimise):

        −J = mean_x softplus(−(G(x) − log ν)) + ν · mean_y softplus(G(y) − log ν).

    The population optimum is p_m = p_data for any ν > 0, with c the true log Z, so NCE learns
    the normaliser that maximum likelihood cannot see; the estimator's variance approaches
    MLE's as ν grows. The noise should cover the data (a Gaussian fitted to it and widened).
    Derivatives: the energy's values only (θ-gradient first order); no sampling from the model.

    Args:
        energy: callable, (N, D) → (N,) energies.
        x_data: (T_d, D) data; x_noise: (T_n, D) samples of the noise distribution.
        log_noise_data, log_noise_noise: log p_n at ``x_data`` (T_d,) and at ``x_noise`` (T_n,).
        log_z: the log-normaliser c, a scalar (or one-element) Tensor, or a float.
        nu: the noise ratio ν in h; default T_n / T_d (Gutmann & Hyvärinen's definition).
    """
    _callable(energy, "energy")
    x_data, x_noise = _batch(x_data, "x_data"), _batch(x_noise, "x_noise")
    if x_noise.shape[1] != x_data.shape[1]:
        raise ValueError(f"x_noise must have D = {x_data.shape[1]} columns like x_data, got shape "
                         f"{tuple(x_noise.shape)}")
    if x_noise.device != x_data.device:
        raise ValueError(f"x_noise is on {x_noise.device} but x_data is on {x_data.device}")
    td, tn = x_data.shape[0], x_noise.shape[0]
    lpd = _per_sample("log_noise_data", log_noise_data, td, x_data)
    lpn = _per_sample("log_noise_noise", log_noise_noise, tn, x_data)
    if isinstance(log_z, Tensor):
        if log_z.size != 1:
            raise ValueError(f"log_z must be a scalar (one element), got shape {tuple(log_z.shape)}")
        c = log_z.reshape(())
    elif isinstance(log_z, numbers.Real) and not isinstance(log_z, bool):
        c = float(log_z)
    else:
        raise ArgumentTypeError(f"log_z must be a scalar Tensor or a real number, got {type(log_z).__name__}")
    nu = tn / td if nu is None else check_positive(nu, "nu")
    log_nu = math.log(nu)
    e = _energies(energy, ops.concatenate([x_data, x_noise], axis=0))
    # Logits of "is data": G(u) − log ν = −E(u) − c − log p_n(u) − log ν.
    logits = -e - c - ops.concatenate([lpd, lpn], axis=0) - log_nu
    return F.softplus(-logits[:td]).mean() + nu * F.softplus(logits[td:]).mean()


# ------------------------------------------------------------------ score matching

def score_matching(model, x, *, parametrization="energy", reduction="mean"):
    """Exact (implicit) score matching (Hyvärinen 2005).

    Fisher divergence ½E‖s_θ − ∇ log p_data‖², integrated by parts so that the unknown data
    score drops out (up to a θ-free constant):

        J(θ) = E_x[ tr ∇ₓs_θ(x) + ½‖s_θ(x)‖² ],     and for an energy, s = −∇ₓE:
        J(θ) = E_x[ −tr ∇²ₓE(x) + ½‖∇ₓE(x)‖² ]

    (a low, flat energy at the data: small slope, large curvature). The trace takes one
    backward pass per dimension (one Hessian row each), so this is for small D; use
    :func:`sliced_score_matching` or :func:`denoising_score_matching` beyond that. For an energy
    the loss is second order in x and its θ-gradient third order; both run through
    ``npjem.grad(..., create_graph=True)``.

    For a Gaussian model E = ½(x − μ)ᵀP(x − μ) the minimiser is μ = sample mean and P = C⁻¹
    (C the biased sample covariance), where J = −½ tr C⁻¹.

    Args:
        model: an energy (N, D) → (N,), or a score network (N, D) → (N, D) with
            ``parametrization="score"``.
        x: data, (N, D).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (the N per-sample values).
    """
    check_choice(parametrization, "parametrization", _PARAMETRIZATIONS)
    check_choice(reduction, "reduction", _REDUCTIONS)
    _callable(model, "model")
    x = _batch(x)
    with enable_grad():
        xl = _leaf(x)
        s = _scores(model, xl, parametrization, "model")
        trace = None
        for i in range(x.shape[1]):
            # Row i of the Jacobian ∇ₓs: one backward pass of Σ_n s_i(x_n).
            row = _grad_or_zero(s[:, i], xl)
            trace = row[:, i] if trace is None else trace + row[:, i]
        per = trace + 0.5 * (s * s).sum(axis=1)
    return _reduce(per, reduction)


def _sigma_levels(sigma, xp, dtype):
    """A positive float, or (host list, device array) of positive noise levels."""
    if isinstance(sigma, numbers.Real) and not isinstance(sigma, bool):
        return check_positive(sigma, "sigma"), None
    if isinstance(sigma, Tensor):
        sigma = backend.to_numpy(sigma.data)
    elif backend.is_array(sigma):
        sigma = backend.to_numpy(sigma)
    try:
        levels = [check_positive(s, f"sigma[{i}]") for i, s in enumerate(np.asarray(sigma).ravel().tolist())]  # host
    except TypeError:
        raise ArgumentTypeError(f"sigma must be a positive number or a sequence of them, got {sigma!r}") from None
    if not levels:
        raise ValueError("sigma must hold at least one noise level, got an empty sequence")
    return None, xp.asarray(np.asarray(levels, dtype=dtype))  # host list to the data's device


def denoising_score_matching(model, x, sigma, *, parametrization="energy", weight_power=None,
                             generator=None, reduction="mean"):
    """Denoising score matching (Vincent 2011), one noise level or several (NCSN).

    Perturb each point, x̃ = x + σε with ε ~ N(0, I), and regress the model's score at x̃ on the
    score of the perturbation kernel, ∇ₓ̃ log q_σ(x̃|x) = (x − x̃)/σ² = −ε/σ:

        ℓ_σ(θ) = ½ E_{x,ε} ‖ s_θ(x̃) + ε/σ ‖².

    Its minimiser is the score of the *smoothed* density q_σ = p_data * N(0, σ²I), not of p_data
    (for data N(μ, S) and a Gaussian model: precision (S + σ²I)⁻¹), and ℓ_σ differs from exact
    score matching on q_σ by a θ-free constant. With several levels σ_1..σ_L (Song & Ermon 2019)
    each sample draws its level uniformly, the model is conditioned on it, ``model(x̃, σ)`` with
    σ a Tensor of shape (N,), and the loss is weighted by λ(σ) = σ^``weight_power``:

        ℓ(θ) = E_{σ, x, ε}[ λ(σ) · ½‖ s_θ(x̃, σ) + ε/σ ‖² ],     λ(σ) = σ² ⇒ ½‖σ s_θ + ε‖².

    ``weight_power`` defaults to 0 (Vincent's unweighted loss) for one level and to 2 (NCSN's
    λ(σ) = σ², which makes every level's term O(1)) for several. Implementations differ in
    this weight: NCSN's ``anneal_dsm_score_estimation`` is the default for several levels
    (anneal_power 2); Song et al.'s ``dsm.py`` (sliced score matching) computes
    ½‖σ²∇ₓ̃ log p(x̃) + σε‖² = σ⁴ · ½‖s + ε/σ‖², which is ``weight_power=4``. Derivatives: a score network
    needs none in x (θ-gradient first order); an energy needs ∇ₓE (θ-gradient second order,
    through ``create_graph``).

    Args:
        model: an energy (N, D) → (N,), or a score network (N, D) → (N, D) with
            ``parametrization="score"``; with several levels it is called as ``model(x̃, σ)``.
        x: data, (N, D).
        sigma: a positive float, or a sequence of them (the NCSN levels).
        weight_power: the exponent p of λ(σ) = σ^p (default: 0 for one level, 2 for several).
        generator: seed or ``npjem.random.Generator`` for ε (and the levels).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """
    check_choice(parametrization, "parametrization", _PARAMETRIZATIONS)
    check_choice(reduction, "reduction", _REDUCTIONS)
    _callable(model, "model")
    x = _batch(x)
    xp = x.xp
    single, levels = _sigma_levels(sigma, xp, x.dtype)
    if weight_power is None:
        weight_power = 0.0 if single is not None else 2.0
    else:
        weight_power = float(_real(weight_power, "weight_power"))
    gen = nrandom.as_generator(generator, x.device)
    n = x.shape[0]
    eps = Tensor(xp.asarray(gen.standard_normal(tuple(x.shape), dtype=x.dtype)))
    if single is not None:
        sig, args = single, ()
        x_t = x + eps * single
    else:
        idx = xp.asarray(gen.integers(0, levels.shape[0], size=n))
        sig_col = levels[idx]
        sig = Tensor(sig_col.reshape(n, 1))
        args = (Tensor(sig_col),)
        x_t = x + eps * sig
    with enable_grad():
        xl = _leaf(x_t) if parametrization == "energy" else x_t
        s = _scores(model, xl, parametrization, "model", *args)
        r = s + eps / sig
        per = 0.5 * (r * r).sum(axis=1)
    if weight_power != 0.0:
        w = sig ** weight_power
        per = per * (w if single is not None else w.reshape(n))
    return _reduce(per, reduction)


def _real(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ArgumentTypeError(f"{name} must be a finite real number, got {value!r}")
    return value


def _projections(gen, kind, shape, dtype, xp):
    """Random directions v with E[v vᵀ] = I: Rademacher ±1, standard normal, or √D · uniform on the sphere."""
    if kind == "rademacher":
        return xp.where(xp.asarray(gen.random(shape, dtype=dtype)) < 0.5, -1.0, 1.0).astype(dtype)
    v = xp.asarray(gen.standard_normal(shape, dtype=dtype))
    if kind == "sphere":
        v = v / xp.sqrt((v * v).sum(axis=-1, keepdims=True)) * math.sqrt(shape[-1])
    return v


def sliced_score_matching(model, x, *, n_projections=1, projection="rademacher", variance_reduction=False,
                          parametrization="energy", generator=None, reduction="mean"):
    """Sliced score matching (Song, Garg, Shi & Ermon 2019) and its variance-reduced form.

    Score matching along random directions v with E[v vᵀ] = I (Hutchinson's trace estimator
    E_v[vᵀAv] = tr A), so the trace needs one Hessian-vector product instead of D rows:

        SSM:     J(θ) = E_x E_v[ vᵀ∇ₓs_θ(x) v + ½(vᵀs_θ(x))² ]
        SSM-VR:  J(θ) = E_x E_v[ vᵀ∇ₓs_θ(x) v ] + ½‖s_θ(x)‖²       (the second term in closed form)

    Both equal exact score matching (:func:`score_matching`) in expectation over v. Directions:
    ``"rademacher"`` (±1, the smallest variance for the trace: 2Σ_{i≠j}H_ij²), ``"gaussian"``
    (N(0, I), variance 2‖H‖_F²) or ``"sphere"`` (uniform on the sphere of radius √D, as the
    reference code's option). M = ``n_projections`` directions per sample (M = 1 is the usual
    choice). For a score network: one backward pass per direction (θ-gradient second order);
    for an energy, s = −∇ₓE adds one more (θ-gradient third order).

    Args:
        model: an energy (N, D) → (N,), or a score network with ``parametrization="score"``.
        x: data, (N, D).
        n_projections: M, the directions drawn per sample.
        projection: ``"rademacher"``, ``"gaussian"`` or ``"sphere"``.
        variance_reduction: use SSM-VR (the ½‖s‖² term exactly).
        generator: seed or ``npjem.random.Generator`` for the directions.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """
    check_choice(parametrization, "parametrization", _PARAMETRIZATIONS)
    check_choice(reduction, "reduction", _REDUCTIONS)
    check_choice(projection, "projection", ("rademacher", "gaussian", "sphere"))
    m = check_int(n_projections, "n_projections")
    vr = check_bool(variance_reduction, "variance_reduction")
    _callable(model, "model")
    x = _batch(x)
    gen = nrandom.as_generator(generator, x.device)
    v = _projections(gen, projection, (m,) + tuple(x.shape), x.dtype, x.xp)
    with enable_grad():
        xl = _leaf(x)
        s = _scores(model, xl, parametrization, "model")
        per = None
        for j in range(m):
            vj = Tensor(v[j])
            sv = (s * vj).sum(axis=1)
            # ∇ₓ(vᵀs) = (∇ₓs)ᵀv; its product with v is vᵀ(∇ₓs)v.
            jv = _grad_or_zero(sv, xl)
            term = (jv * vj).sum(axis=1)
            if not vr:
                term = term + 0.5 * sv * sv
            per = term if per is None else per + term
        per = per * (1.0 / m)
        if vr:
            per = per + 0.5 * (s * s).sum(axis=1)
    return _reduce(per, reduction)


# ------------------------------------------------------------------ binary data

def _binary(x, name="x"):
    x = _batch(x, name)
    xp = x.xp
    if not bool(xp.all((x.data == 0) | (x.data == 1))):
        raise ValueError(f"{name} must be binary: every entry 0 or 1")
    return x


def _flip_gaps(energy, x):
    """E(x) − E(x̄ⁱ) for every sample and bit, shape (N, D); x̄ⁱ is x with bit i flipped.

    One call of the energy on the N samples and their N·D single-bit-flip neighbours.
    """
    _callable(energy, "energy")
    x = _binary(x)
    xp = x.xp
    n, d = x.shape
    a = x.data
    flips = a[:, None, :] + (1 - 2 * a)[:, None, :] * xp.eye(d, dtype=a.dtype)[None]
    both = Tensor(xp.concatenate([a, flips.reshape(n * d, d)], axis=0))
    e = _energies(energy, both)
    return e[:n].reshape(n, 1) - e[n:].reshape(n, d)


def ratio_matching(energy, x, *, reduction="mean"):
    """Ratio matching for binary data (Hyvärinen 2007).

    Matches the ratios p(x)/p(x̄ⁱ) between each point and its single-bit-flip neighbours, where
    Z cancels. With g(u) = 1/(1 + u), g(p(x)/p(x̄ⁱ)) = σ(E(x) − E(x̄ⁱ)) and

        J(θ) = E_x Σ_i σ(E(x) − E(x̄ⁱ))²,       x ∈ {0, 1}^D,

    which pushes E(x) below each neighbour's energy. Consistent: with data from the model the
    true parameters minimise it. D + 1 energy evaluations per sample, first-order θ-gradient.

    Args:
        energy: callable over {0, 1}^D, (N, D) → (N,).
        x: binary data (N, D), entries exactly 0 or 1, floating dtype.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """
    check_choice(reduction, "reduction", _REDUCTIONS)
    s = ops.sigmoid(_flip_gaps(energy, x))
    return _reduce((s * s).sum(axis=1), reduction)


def pseudo_likelihood(energy, x, *, reduction="mean"):
    """Negative log pseudo-likelihood for binary data (Besag 1975), summed over all D bits.

    −log PL(x) = −Σ_i log P(x_i | x_{−i}), and with P(x_i | x_{−i}) = σ(E(x̄ⁱ) − E(x)):

        J(θ) = E_x Σ_i softplus(E(x) − E(x̄ⁱ)).

    The exact sum over the D bits (scikit-learn's ``BernoulliRBM.score_samples`` uses a
    one-bit stochastic estimate of it, D·log σ(·) at a random i). Consistent; first order.

    Args: as :func:`ratio_matching`.
    """
    check_choice(reduction, "reduction", _REDUCTIONS)
    return _reduce(F.softplus(_flip_gaps(energy, x)).sum(axis=1), reduction)


def minimum_probability_flow(energy, x, *, reduction="mean"):
    """Minimum probability flow with single-bit-flip neighbours (Sohl-Dickstein et al. 2011).

    Start a continuous-time dynamics at the data that would flow to the model distribution, and
    minimise the initial flow out of the data; with the connectivity g_ij = 1 between states one
    bit apart and the flow rate exp(½(E_j − E_i)) from j to i:

        K(θ) = E_x Σ_i exp(½(E(x) − E(x̄ⁱ))).

    As the reference code, the sum runs over every neighbour, also those that are themselves
    data points (the paper's Σ_{i∉D}; with data from the model both are consistent); its ε is
    a constant factor, left to the learning rate. First order.

    Args: as :func:`ratio_matching`.
    """
    check_choice(reduction, "reduction", _REDUCTIONS)
    return _reduce(ops.exp(0.5 * _flip_gaps(energy, x)).sum(axis=1), reduction)
