"""The Bernoulli–Bernoulli restricted Boltzmann machine, trained in closed form.

Binary visible units v ∈ {0,1}^D and hidden units h ∈ {0,1}^H, weights W of shape (H, D)
(scikit-learn's ``components_`` layout, PyTorch's ``Linear(D, H).weight``), visible biases b
(``intercept_visible_``) and hidden biases c (``intercept_hidden_``)::

    E(v, h) = −bᵀv − cᵀh − hᵀWv                       energy of a joint state
    p(v, h) = exp(−E(v, h)) / Z
    F(v)    = −log Σ_h exp(−E(v, h)) = −bᵀv − Σ_j softplus(c_j + W_j·v)     free energy
    F(h)    = −cᵀh − Σ_i softplus(b_i + hᵀW_:,i)      the same with the roles swapped
    log Z   = logsumexp_v(−F(v)) = logsumexp_h(−F(h))
    p(h_j = 1 | v) = σ(c_j + W_j·v),   p(v_i = 1 | h) = σ(b_i + hᵀW_:,i)

The gradient of the mean log-likelihood is a difference of statistics, data minus model::

    ∂/∂W = ⟨p(h|v) vᵀ⟩_data − ⟨h vᵀ⟩_model,   ∂/∂c = ⟨p(h|v)⟩_data − ⟨h⟩_model,
    ∂/∂b = ⟨v⟩_data − ⟨v⟩_model

so no autograd is needed: the model statistics come from Gibbs chains (CD-k: k steps started at
the data; PCD: persistent "fantasy particles"; FPCD: persistent particles that run on the
weights plus fast, decaying weights) or, for a small model, from enumerating the smaller layer.
Everything runs with the array module of the inputs (NumPy or CuPy) and draws from an explicit
``npjem.random`` generator.

Evaluation: exact log Z by enumeration (over whichever layer is smaller, in chunks, stable
logsumexp), exact log-likelihood, exact pseudo-likelihood and scikit-learn's one-bit estimate of
it, and annealed importance sampling (Salakhutdinov & Murray 2008) for models too big to
enumerate.

How this differs from ``sklearn.neural_network.BernoulliRBM`` (which is PCD with one Gibbs
sweep per mini-batch, ``batch_size`` particles, W ~ N(0, 0.01²), zero biases, contiguous
unshuffled batches): with ``visible_bias_init="zeros"``, ``method="pcd"``, ``k=1`` and
``shuffle=False`` the update is the same, except that the negative statistics are averaged over
the particles (sklearn divides them by the size of the data batch, so its last, shorter batch
over-weights them); ``negative_normalization="batch"`` takes sklearn's division, and then every
update is ``BernoulliRBM._fit``'s given the same uniforms (tests/ebm/test_rbm_vs_sklearn.py). The default ``visible_bias_init="data"`` starts b at the data's log-odds
(Hinton's practical guide), which helps at a small budget.
"""
from __future__ import annotations

import math
import sys
import time
from collections import namedtuple

import numpy as np

from .. import backend
from .. import random as nrandom
from .._checks import (check_bool, check_choice, check_estimator_input, check_float_dtype, check_int,
                       check_ndim, check_positive, check_probability, check_real, check_shape, is_sparse)
from ..autograd import functional as F
from ..autograd.tensor import Tensor
from ..nn.module import Module, Parameter

__all__ = ["BernoulliRBM", "AISResult", "sigmoid", "softplus", "ais_betas"]

AISResult = namedtuple("AISResult", ["log_z", "stderr", "log_weights", "log_z_base"])
AISResult.__doc__ = """Annealed importance sampling estimate of log Z.

``log_z``: log of the mean importance weight times the base model's Z; ``stderr``: its standard
error over the runs (delta method, std(w) / (√M · mean(w))); ``log_weights``: the M runs' log
weights (host NumPy); ``log_z_base``: the base-rate model's exact log Z."""


# ---------------------------------------------------------------- elementwise helpers

def sigmoid(x):
    """σ(x) = 1 / (1 + e^{−x}) as ½ tanh(x/2) + ½: never overflows, same line on NumPy and CuPy."""
    xp = backend.get_array_module(x)
    return xp.tanh(x * 0.5) * 0.5 + 0.5


def _sigmoid_(t, xp):
    """σ in place on a fresh temporary ``t`` (the training loop's hot path: no new arrays)."""
    t *= 0.5
    xp.tanh(t, out=t)
    t *= 0.5
    t += 0.5
    return t


def softplus(x):
    """log(1 + e^x) = max(x, 0) + log1p(e^{−|x|}), stable for any x."""
    xp = backend.get_array_module(x)
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


def _logsumexp(a, xp):
    m = a.max()
    return m + xp.log(xp.exp(a - m).sum())


def _bit_states(start, stop, m, xp, dtype):
    """Rows ``start..stop-1`` of the 2^m binary states, bit j of row r = (r >> j) & 1."""
    idx = xp.arange(start, stop, dtype=xp.int64)[:, None]
    return ((idx >> xp.arange(m, dtype=xp.int64)[None, :]) & 1).astype(dtype)


def ais_betas(n_intermediate=15000):
    """Salakhutdinov & Murray's (2008) schedule of inverse temperatures 0 = β_0 < … < β_K = 1.

    Their 15,000 steps are spaced uniformly: 1,000 over [0, 0.5], 4,000 over [0.5, 0.9] and
    10,000 over [0.9, 1]; another ``n_intermediate`` keeps those proportions. Host NumPy.
    """
    n = check_int(n_intermediate, "n_intermediate", minimum=15)
    n1, n2 = max(1, round(n / 15)), max(1, round(4 * n / 15))
    n3 = max(1, n - n1 - n2)
    return np.concatenate([np.linspace(0.0, 0.5, n1, endpoint=False),  # host
                           np.linspace(0.5, 0.9, n2, endpoint=False),  # host
                           np.linspace(0.9, 1.0, n3 + 1)])  # host


def _progress_bar(show, total, desc):
    if show and sys.stderr.isatty():
        from tqdm.auto import tqdm  # noqa: PLC0415  (only when a bar is shown)

        return tqdm(total=total, desc=desc, unit="epoch")
    return None


# ---------------------------------------------------------------- the model

class BernoulliRBM(Module):
    """A binary RBM with scikit-learn's constructor and attributes, on NumPy or CuPy.

    Args:
        n_components: H, the number of hidden units.
        learning_rate: step on the mean gradient of one mini-batch (sklearn's ``learning_rate``:
            its update is lr / batch × summed statistics, the same thing).
        batch_size: data rows per update, and the number of persistent particles (PCD, FPCD).
        n_iter: epochs of :meth:`fit`.
        k: Gibbs sweeps (h → v → h) per update in the negative phase.
        method: ``"pcd"`` (persistent CD, Tieleman 2008; sklearn's), ``"cd"`` (CD-k, chains
            restarted at the data, Hinton 2002) or ``"fpcd"`` (persistent CD with fast weights,
            Tieleman & Hinton 2009).
        fast_learning_rate, fast_decay: FPCD's fast weights W_f take the same gradient step with
            ``fast_learning_rate`` (default: ``learning_rate``) and shrink by ``fast_decay``
            (19/20 in the paper) at every update; the particles sample from W + W_f, the model is W.
        visible_bias_init: ``"data"`` (b = log-odds of the data's mean, Hinton's guide) or
            ``"zeros"`` (sklearn's).
        shuffle: shuffle the rows every epoch (sklearn does not).
        negative_normalization: ``"particles"`` (default) averages the negative statistics over
            the chains; ``"batch"`` divides their sum by the number of data rows in the update,
            as sklearn's ``_fit`` (lr / batch × the summed difference). The two differ only for
            PCD and FPCD on a batch shorter than ``batch_size`` (the last one of an epoch when
            ``batch_size`` does not divide the rows), where sklearn's weighs the negatives more.
        n_visible: D; when given the parameters are created now, otherwise at the first fit.
        generator / random_state: an ``npjem.random`` generator or a seed (sklearn's name is
            kept as an alias); it draws the initial weights, the chains and the shuffling.
        device, dtype: where and in which float dtype the parameters live when created here;
            :meth:`fit` on data creates them on the data's device in its dtype.
        progress: a tqdm bar over the epochs of :meth:`fit` (on a terminal).
        monitor: what :meth:`fit` records each epoch: ``"pseudo_likelihood"`` (sklearn's one-bit
            estimate on the training data, as its verbose mode prints) or ``None`` (time only).
        verbose: print one line per epoch to stdout, as sklearn's ``verbose``:
            ``[BernoulliRBM] Iteration 1, pseudo-likelihood = -25.39, time = 0.12s`` (the time of
            that epoch). Printing never changes the fit: without the monitor the printed estimate
            draws its bits from a generator of its own, not from the training chains'.

    Inputs follow scikit-learn's rule (:func:`npjem._checks.check_estimator_input`): integer or
    boolean data become float64, so the parameters :meth:`fit` creates are float64; a
    ``scipy.sparse`` matrix is densified on the host (the CPU path; mini-batches are dense anyway).

    Random numbers are drawn in float64 and cast, whatever the model's dtype (sklearn does the
    same): with one seed, a float32 and a float64 fit draw the same initial weights and the same
    Bernoulli samples, so they agree to float32 rounding instead of following different chains.

    Attributes (sklearn's names are properties on the parameters): ``weight`` / ``components_``
    (H, D), ``hidden_bias`` / ``intercept_hidden_`` (H,), ``visible_bias`` /
    ``intercept_visible_`` (D,), ``h_samples_`` (the persistent hidden particles), ``history_``.
    """

    def __init__(self, n_components=256, *, learning_rate=0.1, batch_size=10, n_iter=10, k=1,
                 method="pcd", fast_learning_rate=None, fast_decay=0.95, visible_bias_init="data",
                 shuffle=False, n_visible=None, generator=None, random_state=None, device=None,
                 dtype=None, progress=True, monitor="pseudo_likelihood", verbose=0,
                 negative_normalization="particles"):
        super().__init__()
        self.n_components = check_int(n_components, "n_components")
        self.learning_rate = check_positive(learning_rate, "learning_rate", allow_zero=True)
        self.batch_size = check_int(batch_size, "batch_size")
        self.n_iter = check_int(n_iter, "n_iter", minimum=0)
        self.k = check_int(k, "k")
        self.method = check_choice(method, "method", ("pcd", "cd", "fpcd"))
        self.fast_learning_rate = (self.learning_rate if fast_learning_rate is None
                                   else check_positive(fast_learning_rate, "fast_learning_rate",
                                                       allow_zero=True))
        self.fast_decay = check_probability(fast_decay, "fast_decay")
        self.visible_bias_init = check_choice(visible_bias_init, "visible_bias_init", ("data", "zeros"))
        self.shuffle = check_bool(shuffle, "shuffle")
        self.negative_normalization = check_choice(negative_normalization, "negative_normalization",
                                                   ("particles", "batch"))
        self.progress = check_bool(progress, "progress")
        self.monitor = check_choice(monitor, "monitor", ("pseudo_likelihood", None))
        # sklearn's verbose is an int; True and False are accepted as 1 and 0.
        self.verbose = (int(verbose) if isinstance(verbose, (bool, np.bool_))
                        else check_int(verbose, "verbose", minimum=0))
        if generator is not None and random_state is not None:
            raise ValueError("give generator or random_state (its scikit-learn alias), not both")
        self._seed = generator if generator is not None else random_state
        self.device = None if device is None else backend.normalize_device(device)
        self.dtype = None if dtype is None else check_float_dtype(dtype)
        self._generator = None
        self.history_ = None
        if n_visible is not None:
            n_visible = check_int(n_visible, "n_visible")
            dev = self.device or backend.default_device()
            self._create(n_visible, backend.xp_for_device(dev),
                         self.dtype or check_float_dtype(None, default=backend.default_dtype()),
                         self._gen(dev))

    # ------------------------------------------------------------ parameters
    def _gen(self, device):
        """The model's generator on ``device``, made once from the seed it was given."""
        if self._generator is None or self._generator.device != backend.normalize_device(device):
            self._generator = nrandom.as_generator(self._seed, device) if self._seed is not None \
                else nrandom.default_rng(None, device)
            if self._generator.device != backend.normalize_device(device):
                raise ValueError(f"generator is on {self._generator.device} but the RBM's data and "
                                 f"parameters are on {backend.normalize_device(device)}")
        return self._generator

    def _create(self, n_visible, xp, dtype, generator):
        H = self.n_components
        self.n_visible = n_visible
        # Drawn in float64 and cast (sklearn's order): float32 and float64 models start equal.
        w = generator.standard_normal((H, n_visible), dtype=np.float64) * 0.01
        self.weight = Parameter(w.astype(dtype, copy=False))
        self.hidden_bias = Parameter(xp.zeros(H, dtype=dtype))
        self.visible_bias = Parameter(xp.zeros(n_visible, dtype=dtype))
        self.register_buffer("persistent_hidden", xp.zeros((self.batch_size, H), dtype=dtype))
        if self.method == "fpcd":
            self.register_buffer("fast_weight", xp.zeros((H, n_visible), dtype=dtype))
            self.register_buffer("fast_hidden_bias", xp.zeros(H, dtype=dtype))
            self.register_buffer("fast_visible_bias", xp.zeros(n_visible, dtype=dtype))

    def _fitted(self, what):
        if "weight" not in self._parameters:
            raise RuntimeError(f"{what} needs a fitted BernoulliRBM: call fit first, give n_visible, "
                               "or assign components_")

    def _set(self, name, value, shape_of):
        value = getattr(value, "data", value) if isinstance(value, Tensor) else value
        if "weight" not in self._parameters:
            if name != "weight":
                raise RuntimeError("assign components_ first: it sets the number of visible units")
            arr = backend.asarray(value, device=self.device)
            check_ndim(arr, "components_", 2, "(n_components, n_visible)")
            if arr.shape[0] != self.n_components:
                raise ValueError(f"components_ must have n_components={self.n_components} rows, "
                                 f"got shape {tuple(arr.shape)}")
            # Integer weights follow the data's rule (float64) unless the constructor named a dtype.
            dtype = arr.dtype if arr.dtype.kind == "f" else check_float_dtype(self.dtype, default=np.float64)
            dev = backend.device_of(arr)
            self._create(arr.shape[1], backend.xp_for_device(dev), np.dtype(dtype), self._gen(dev))
        target = getattr(self, name)
        arr = backend.asarray(value, device=target.device)
        check_shape(arr, shape_of, target.shape)
        target.data[...] = arr.astype(target.dtype, copy=False)

    components_ = property(lambda self: self._get("weight"),
                           lambda self, v: self._set("weight", v, "components_"),
                           doc="W, shape (n_components, n_visible) (sklearn's name).")
    intercept_hidden_ = property(lambda self: self._get("hidden_bias"),
                                 lambda self, v: self._set("hidden_bias", v, "intercept_hidden_"),
                                 doc="c, shape (n_components,) (sklearn's name).")
    intercept_visible_ = property(lambda self: self._get("visible_bias"),
                                  lambda self, v: self._set("visible_bias", v, "intercept_visible_"),
                                  doc="b, shape (n_visible,) (sklearn's name).")
    h_samples_ = property(lambda self: self._get("persistent_hidden"),
                          lambda self, v: self._set("persistent_hidden", v, "h_samples_"),
                          doc="The persistent hidden particles, shape (batch_size, n_components).")

    def _get(self, name):
        self._fitted(name)
        return getattr(self, name).data

    @classmethod
    def from_sklearn(cls, estimator, **kwargs):
        """An npjem RBM holding a fitted ``sklearn.neural_network.BernoulliRBM``'s parameters
        (and hyper-parameters; ``kwargs`` override them, e.g. ``device="cuda"``)."""
        params = dict(n_components=estimator.n_components, learning_rate=estimator.learning_rate,
                      batch_size=estimator.batch_size, n_iter=estimator.n_iter,
                      visible_bias_init="zeros", negative_normalization="batch")
        params.update(kwargs)
        rbm = cls(**params)
        rbm.components_ = estimator.components_
        rbm.intercept_hidden_ = estimator.intercept_hidden_
        rbm.intercept_visible_ = estimator.intercept_visible_
        if getattr(estimator, "h_samples_", None) is not None \
                and estimator.h_samples_.shape == tuple(rbm.persistent_hidden.shape):
            rbm.h_samples_ = estimator.h_samples_
        return rbm

    # ------------------------------------------------------------ inputs
    def _visible(self, v, name="v"):
        """``v`` as an array of shape (N, D) in [0, 1], with the parameters' dtype and device."""
        self._fitted(name)
        v = v.data if isinstance(v, Tensor) else v
        if is_sparse(v):
            v = v.toarray(order="C")  # host: the RBM's products are dense (C order, as dense input)
        if not backend.is_array(v):
            raise TypeError(f"{name} must be an array or a Tensor, got {type(v).__name__}")
        check_ndim(v, name, 2, "(n_samples, n_visible)")
        if v.shape[1] != self.n_visible:
            raise ValueError(f"{name} must have n_visible={self.n_visible} columns, got shape {tuple(v.shape)}")
        if v.shape[0] == 0:
            raise ValueError(f"{name} must have at least one row, got shape {tuple(v.shape)}")
        if backend.device_of(v) != self.weight.device:
            raise ValueError(f"{name} is on {backend.device_of(v)} but the RBM is on {self.weight.device}; "
                             "move one of them (rbm.to(device))")
        return v.astype(self.weight.dtype, copy=False)

    def _hidden(self, h, name="h"):
        self._fitted(name)
        h = h.data if isinstance(h, Tensor) else h
        if not backend.is_array(h):
            raise TypeError(f"{name} must be an array or a Tensor, got {type(h).__name__}")
        check_ndim(h, name, 2, "(n_samples, n_components)")
        if h.shape[1] != self.n_components:
            raise ValueError(f"{name} must have n_components={self.n_components} columns, "
                             f"got shape {tuple(h.shape)}")
        return h.astype(self.weight.dtype, copy=False)

    @staticmethod
    def _check_data(X, name="X"):
        xp = backend.get_array_module(X)
        lo, hi = float(X.min()), float(X.max())
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0.0 or hi > 1.0:
            raise ValueError(f"{name} must hold values in [0, 1] (binary, or probabilities), "
                             f"got values in [{lo}, {hi}]")
        return xp

    def _generator_for(self, generator, like):
        dev = backend.device_of(like)
        if generator is None:
            return self._gen(dev)
        g = nrandom.as_generator(generator, dev)
        if g.device != dev:
            raise ValueError(f"generator is on {g.device} but the data is on {dev}")
        return g

    # ------------------------------------------------------------ energies
    def energy(self, v, h):
        """E(v, h) = −bᵀv − cᵀh − hᵀWv for rows of v (N, D) and h (N, H); shape (N,)."""
        v, h = self._visible(v), self._hidden(h)
        if v.shape[0] != h.shape[0]:
            raise ValueError(f"v and h must have the same number of rows, got {v.shape[0]} and {h.shape[0]}")
        W, b, c = self.weight.data, self.visible_bias.data, self.hidden_bias.data
        return -(v @ b) - (h @ c) - ((h @ W) * v).sum(axis=1)

    def free_energy(self, v):
        """F(v) = −bᵀv − Σ_j softplus(c_j + W_j·v), shape (N,) (arrays in, arrays out)."""
        v = self._visible(v)
        return self._free_energy(v, self.weight.data, self.hidden_bias.data, self.visible_bias.data)

    @staticmethod
    def _free_energy(v, W, c, b):
        return -(v @ b) - softplus(v @ W.T + c).sum(axis=1)

    def free_energy_hidden(self, h):
        """F(h) = −cᵀh − Σ_i softplus(b_i + hᵀW_:,i), the hidden layer's free energy, shape (N,)."""
        h = self._hidden(h)
        return -(h @ self.hidden_bias.data) - softplus(h @ self.weight.data + self.visible_bias.data).sum(axis=1)

    def forward(self, v):
        """F(v) as a Tensor, differentiable in v and in the parameters (for autograd users, e.g.
        a generic energy trainer or ∇ᵥF); :meth:`free_energy` is the array version."""
        v = v if isinstance(v, Tensor) else Tensor(self._visible(v))
        if v.ndim != 2 or v.shape[1] != self.n_visible:
            raise ValueError(f"v must have shape (N, {self.n_visible}), got {tuple(v.shape)}")
        pre = F.linear(v, self.weight, self.hidden_bias)
        return -(v * self.visible_bias).sum(axis=1) - F.softplus(pre).sum(axis=1)

    # ------------------------------------------------------------ conditionals
    def mean_hiddens(self, v):
        """p(h_j = 1 | v) = σ(c + vWᵀ), shape (N, H)."""
        v = self._visible(v)
        return sigmoid(v @ self.weight.data.T + self.hidden_bias.data)

    transform = mean_hiddens  # sklearn's name for the hidden probabilities

    def mean_visibles(self, h):
        """p(v_i = 1 | h) = σ(b + hW), shape (N, D)."""
        h = self._hidden(h)
        return sigmoid(h @ self.weight.data + self.visible_bias.data)

    @staticmethod
    def _bernoulli(p, generator):
        # Uniforms in float64 whatever p's dtype, so that float32 and float64 models draw the
        # same samples from one seed (sklearn's promise; see the class docstring).
        return (generator.random(p.shape, dtype=np.float64) < p).astype(p.dtype)

    def sample_hiddens(self, v, generator=None):
        """h ~ p(h | v), binary, shape (N, H)."""
        p = self.mean_hiddens(v)
        return self._bernoulli(p, self._generator_for(generator, p))

    def sample_visibles(self, h, generator=None):
        """v ~ p(v | h), binary, shape (N, D)."""
        p = self.mean_visibles(h)
        return self._bernoulli(p, self._generator_for(generator, p))

    def gibbs_step(self, v, generator=None):
        """One block-Gibbs sweep v → h ~ p(h|v) → v' ~ p(v|h); returns v' (sklearn's ``gibbs``).

        The kernel T(v'|v) = Σ_h p(h|v) p(v'|h) leaves p(v) invariant and is reversible.
        """
        v = self._visible(v)
        g = self._generator_for(generator, v)
        W, b, c = self.weight.data, self.visible_bias.data, self.hidden_bias.data
        h = self._bernoulli(sigmoid(v @ W.T + c), g)
        return self._bernoulli(sigmoid(h @ W + b), g)

    gibbs = gibbs_step

    def sample(self, n_samples, n_steps=1000, generator=None, v0=None, return_hidden=False):
        """``n_samples`` independent block-Gibbs chains run for ``n_steps`` sweeps.

        Chains start at ``v0`` (N, D) or at v ~ Bernoulli(σ(b)) (the visible biases' own
        factorised distribution). Returns v (N, D), and with ``return_hidden`` also
        h ~ p(h | v), so that (v, h) is a draw from the joint.
        """
        self._fitted("sample")
        n_steps = check_int(n_steps, "n_steps", minimum=0)
        return_hidden = check_bool(return_hidden, "return_hidden")
        W, b, c = self.weight.data, self.visible_bias.data, self.hidden_bias.data
        g = self._generator_for(generator, W)
        if v0 is None:
            n = check_int(n_samples, "n_samples")
            xp = backend.get_array_module(W)
            v = self._bernoulli(xp.broadcast_to(sigmoid(b), (n, W.shape[1])), g)
        else:
            v = self._visible(v0, "v0")
            if n_samples is not None and check_int(n_samples, "n_samples") != v.shape[0]:
                raise ValueError(f"n_samples={n_samples} but v0 has {v.shape[0]} rows")
        for _ in range(n_steps):
            h = self._bernoulli(sigmoid(v @ W.T + c), g)
            v = self._bernoulli(sigmoid(h @ W + b), g)
        if return_hidden:
            return v, self._bernoulli(sigmoid(v @ W.T + c), g)
        return v

    # ------------------------------------------------------------ gradients
    def _chain(self, h, k, g, W, c, b):
        """k sweeps h → v → h from hidden states h; returns (v, p(h|v)) of the last sweep and
        the sampled h that continues the chain."""
        xp = backend.get_array_module(W)
        for step in range(k):
            t = h @ W
            t += b
            v = self._bernoulli(_sigmoid_(t, xp), g)
            ph = v @ W.T
            ph += c
            _sigmoid_(ph, xp)
            h = self._bernoulli(ph, g)
        return v, ph, h

    @staticmethod
    def _statistics(v_pos, ph_pos, v_neg, ph_neg, n_neg=None):
        """(∂W, ∂c, ∂b): mean data statistics minus the negative-phase statistics summed and
        divided by ``n_neg`` (default: their number, a mean)."""
        a, z = 1.0 / v_pos.shape[0], -1.0 / (v_neg.shape[0] if n_neg is None else n_neg)
        dW = (ph_pos.T * a) @ v_pos
        dW += (ph_neg.T * z) @ v_neg
        dc = ph_pos.sum(axis=0) * a + ph_neg.sum(axis=0) * z
        db = v_pos.sum(axis=0) * a + v_neg.sum(axis=0) * z
        return dW, dc, db

    def cd_gradient(self, X, k=1, generator=None):
        """The CD-k estimate of the log-likelihood gradient on the rows of X: (∂W, ∂c, ∂b).

        Each row starts a chain at the data: h⁰ ~ p(h|x), then k sweeps v ~ p(v|h), h ~ p(h|v);
        the negative statistics use the last v and p(h|v) (Rao–Blackwellised, as Hinton's guide
        recommends). Its expectation tends to the exact gradient as k → ∞.
        """
        v_pos = self._visible(X, "X")
        k = check_int(k, "k")
        g = self._generator_for(generator, v_pos)
        W, b, c = self.weight.data, self.visible_bias.data, self.hidden_bias.data
        ph_pos = sigmoid(v_pos @ W.T + c)
        v_neg, ph_neg, _ = self._chain(self._bernoulli(ph_pos, g), k, g, W, c, b)
        return self._statistics(v_pos, ph_pos, v_neg, ph_neg)

    def log_likelihood_gradient(self, X, chunk_size=16384):
        """The exact gradient of the mean log-likelihood of X, (∂W, ∂c, ∂b), by enumerating the
        smaller layer (small models only; see :meth:`log_partition`)."""
        v_pos = self._visible(X, "X")
        W, b, c = self.weight.data, self.visible_bias.data, self.hidden_bias.data
        xp = backend.get_array_module(W)
        ph_pos = sigmoid(v_pos @ W.T + c)
        log_z = self.log_partition(chunk_size=chunk_size)
        H, D = W.shape
        EvhT = xp.zeros_like(W)
        Eh, Ev = xp.zeros_like(c), xp.zeros_like(b)
        for states in self._enumerate(chunk_size):
            if D <= H:  # states are visible vectors
                p = xp.exp(-self._free_energy(states, W, c, b) - log_z)
                ph = sigmoid(states @ W.T + c)
                EvhT += (ph * p[:, None]).T @ states
                Eh += p @ ph
                Ev += p @ states
            else:  # states are hidden vectors
                p = xp.exp(-self._free_energy_h(states, W, c, b) - log_z)
                pv = sigmoid(states @ W + b)
                EvhT += (states * p[:, None]).T @ pv
                Eh += p @ states
                Ev += p @ pv
        n = v_pos.shape[0]
        return ph_pos.T @ v_pos * (1.0 / n) - EvhT, ph_pos.mean(axis=0) - Eh, v_pos.mean(axis=0) - Ev

    # ------------------------------------------------------------ training
    @staticmethod
    def _training_data(X):
        """X for :meth:`fit` / :meth:`partial_fit`: an array (N, D) with a float dtype and values
        in [0, 1]; integers become float64 and a sparse matrix is densified (scikit-learn's rule)."""
        X = X.data if isinstance(X, Tensor) else X
        X = check_estimator_input(X, "X", accept_sparse=True)
        if is_sparse(X):
            X = X.toarray(order="C")  # host: the CPU path; every mini-batch update is dense
        if not backend.is_array(X):
            raise TypeError(f"X must be an array or a Tensor, got {type(X).__name__}")
        check_ndim(X, "X", 2, "(n_samples, n_visible)")
        if X.shape[0] < 1:
            raise ValueError(f"X must have at least one row, got shape {tuple(X.shape)}")
        BernoulliRBM._check_data(X)
        return X

    def _init_from_data(self, X):
        if "weight" not in self._parameters:
            xp = backend.get_array_module(X)
            self._create(X.shape[1], xp, np.dtype(X.dtype), self._gen(backend.device_of(X)))
            if self.visible_bias_init == "data":
                # Hinton's guide: b_i = log(p_i / (1 − p_i)), p_i the fraction of rows with v_i on;
                # a pseudo-count keeps units that are always off (or on) finite.
                n = X.shape[0]
                p = (X.astype(self.weight.dtype).sum(axis=0) + 0.5) / (n + 1.0)
                self.visible_bias.data[...] = xp.log(p) - xp.log1p(-p)

    def _update(self, v_pos, g):
        W, b, c = self.weight.data, self.visible_bias.data, self.hidden_bias.data
        ph_pos = v_pos @ W.T
        ph_pos += c
        _sigmoid_(ph_pos, backend.get_array_module(W))
        if self.method == "cd":
            v_neg, ph_neg, _ = self._chain(self._bernoulli(ph_pos, g), self.k, g, W, c, b)
        elif self.method == "pcd":
            v_neg, ph_neg, h_next = self._chain(self.persistent_hidden.data, self.k, g, W, c, b)
            self.persistent_hidden.data = h_next
        else:  # fpcd: the particles run on W + W_fast
            Wf, cf, bf = self.fast_weight.data, self.fast_hidden_bias.data, self.fast_visible_bias.data
            v_neg, _, h_next = self._chain(self.persistent_hidden.data, self.k, g, W + Wf, c + cf, b + bf)
            self.persistent_hidden.data = h_next
            ph_neg = sigmoid(v_neg @ W.T + c)  # the model's statistics are those of W
        n_neg = v_pos.shape[0] if self.negative_normalization == "batch" else None
        dW, dc, db = self._statistics(v_pos, ph_pos, v_neg, ph_neg, n_neg)
        lr = self.learning_rate
        W += lr * dW
        c += lr * dc
        b += lr * db
        if self.method == "fpcd":
            lf, decay = self.fast_learning_rate, self.fast_decay
            Wf *= decay
            Wf += lf * dW
            cf *= decay
            cf += lf * dc
            bf *= decay
            bf += lf * db

    def partial_fit(self, X, generator=None):
        """One update on X as a single mini-batch (sklearn's ``partial_fit``); returns self."""
        X = self._training_data(X)
        self._init_from_data(X)
        v = self._visible(X, "X")
        self._update(v, self._generator_for(generator, v))
        return self

    def fit(self, X, y=None, generator=None):
        """Train for ``n_iter`` epochs of mini-batches of ``batch_size`` rows; returns self.

        X: (N, D) binary or in [0, 1] (read as probabilities, as sklearn does), on the device
        the model is trained on. Parameters are created at the first fit, on X's device and in
        its float dtype. ``history_`` holds per epoch ``epoch``, ``time`` (seconds since the
        start) and, with ``monitor="pseudo_likelihood"``, the mean one-bit pseudo-likelihood.
        Integer data become float64 and a ``scipy.sparse`` matrix is densified (see the class).
        """
        X = self._training_data(X)
        self._init_from_data(X)
        v_all = self._visible(X, "X")
        g = self._generator_for(generator, v_all)
        n = v_all.shape[0]
        bs = self.batch_size
        starts = range(0, n, bs)
        history = {"epoch": [], "time": []}
        if self.monitor is not None:
            history[self.monitor] = []
        bar = _progress_bar(self.progress, self.n_iter, f"{type(self).__name__}({self.method})")
        # Printing must not move the training chains: without the monitor, the printed
        # estimate draws its random bits from a generator of its own.
        g_print = None if self.monitor is not None or not self.verbose \
            else nrandom.default_rng(0, backend.device_of(v_all))
        start = time.perf_counter()
        try:
            for epoch in range(self.n_iter):
                begin = time.perf_counter()
                data = v_all[g.permutation(n)] if self.shuffle else v_all
                for s in starts:
                    self._update(data[s:s + bs], g)
                end = time.perf_counter()
                history["epoch"].append(epoch)
                history["time"].append(end - start)
                pl = None
                if self.monitor is not None:
                    pl = float(self.score_samples(v_all, generator=g).mean())
                    history[self.monitor].append(pl)
                    if bar is not None:
                        bar.set_postfix(pseudo_likelihood=f"{pl:.2f}", refresh=False)
                if self.verbose:
                    if pl is None:
                        pl = float(self.score_samples(v_all, generator=g_print).mean())
                    print(f"[{type(self).__name__}] Iteration {epoch + 1}, pseudo-likelihood = {pl:.2f}, "
                          f"time = {end - begin:.2f}s")
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        self.history_ = history
        return self

    # ------------------------------------------------------------ evaluation
    def _free_energy_h(self, h, W, c, b):
        return -(h @ c) - softplus(h @ W + b).sum(axis=1)

    def _enumerate(self, chunk_size):
        """Chunks of all 2^m states of the smaller layer (visible when D <= H)."""
        W = self.weight.data
        xp = backend.get_array_module(W)
        H, D = W.shape
        m = min(H, D)
        total = 1 << m
        for s in range(0, total, chunk_size):
            yield _bit_states(s, min(total, s + chunk_size), m, xp, W.dtype)

    def log_partition(self, max_units=26, chunk_size=16384):
        """Exact log Z = logsumexp over the 2^m states of the smaller layer of −F(state).

        Sums over v ∈ {0,1}^D with −F(v) when D ≤ H, else over h ∈ {0,1}^H with −F(h); both give
        the same number. Runs in chunks of ``chunk_size`` states with a running logsumexp.
        Raises when the smaller layer has more than ``max_units`` units (use :meth:`ais`).
        """
        self._fitted("log_partition")
        max_units = check_int(max_units, "max_units")
        chunk_size = check_int(chunk_size, "chunk_size")
        H, D = self.weight.shape
        if min(H, D) > max_units:
            raise ValueError(f"exact log Z enumerates 2^{min(H, D)} states (n_visible={D}, "
                             f"n_components={H}), more than 2^max_units = 2^{max_units}; "
                             "raise max_units or estimate it with ais()")
        W, b, c = self.weight.data, self.visible_bias.data, self.hidden_bias.data
        xp = backend.get_array_module(W)
        total = None
        for states in self._enumerate(chunk_size):
            neg_f = -(self._free_energy(states, W, c, b) if D <= H else self._free_energy_h(states, W, c, b))
            part = _logsumexp(neg_f, xp)
            total = part if total is None else xp.logaddexp(total, part)
        return float(total)

    def log_likelihood(self, X, log_z=None):
        """log p(v) = −F(v) − log Z per row, shape (N,); log Z exact unless given (e.g. from AIS)."""
        v = self._visible(X, "X")
        if log_z is None:
            log_z = self.log_partition()
        else:
            log_z = check_real(log_z, "log_z")
        return -self.free_energy(v) - log_z

    def pseudo_likelihood(self, X, exact=True, generator=None, chunk_size=None):
        """log PL(v) = Σ_i log p(v_i | v_−i) = Σ_i log σ(F(v⁽ⁱ⁾) − F(v)) per row, shape (N,).

        v⁽ⁱ⁾ is v with bit i flipped (1 − v_i). ``exact=True`` sums all D terms; ``exact=False``
        is scikit-learn's ``score_samples``: one random bit i per row and D · log σ(F(v⁽ⁱ⁾) − F(v)),
        an unbiased but noisy estimate of the same sum.
        """
        v = self._visible(X, "X")
        exact = check_bool(exact, "exact")
        W, b, c = self.weight.data, self.visible_bias.data, self.hidden_bias.data
        xp = backend.get_array_module(W)
        N, D = v.shape
        H = W.shape[0]
        pre = v @ W.T + c  # (N, H)
        sp = softplus(pre).sum(axis=1)
        flip = 1.0 - 2.0 * v  # the change of each bit when flipped
        if not exact:
            g = self._generator_for(generator, v)
            idx = g.integers(0, D, size=N)
            rows = xp.arange(N)
            s = flip[rows, idx]
            pre_f = pre + s[:, None] * W.T[idx]
            delta = -s * b[idx] - softplus(pre_f).sum(axis=1) + sp  # F(v⁽ⁱ⁾) − F(v)
            return -D * softplus(-delta)
        rows_per = chunk_size if chunk_size is not None else max(1, (1 << 22) // max(1, D * H))
        rows_per = check_int(rows_per, "chunk_size")
        out = []
        for s0 in range(0, N, rows_per):
            sl = slice(s0, s0 + rows_per)
            pre_f = pre[sl, None, :] + flip[sl, :, None] * W.T[None, :, :]  # (n, D, H)
            delta = -flip[sl] * b - softplus(pre_f).sum(axis=2) + sp[sl, None]
            out.append(-softplus(-delta).sum(axis=1))
        return xp.concatenate(out)

    def score_samples(self, X, generator=None):
        """scikit-learn's ``score_samples``: the one-bit stochastic pseudo-likelihood, shape (N,)."""
        return self.pseudo_likelihood(X, exact=False, generator=generator)

    def ais(self, n_runs=100, betas=None, data=None, base_visible_bias=None, generator=None):
        """Annealed importance sampling estimate of log Z (Salakhutdinov & Murray 2008).

        The base model A has no weights and no hidden biases and visible biases b_A: the
        data's log-odds ("base rate" model; from ``data`` with a pseudo-count, or given as
        ``base_visible_bias``; zeros when neither is given), so log Z_A = Σ_i softplus(b_A,i)
        + H log 2 exactly. The intermediate models, for 0 = β_0 < … < β_K = 1, are

            log p*_β(v) = (1 − β) b_Aᵀv + β bᵀv + Σ_j softplus(β (c_j + W_j·v)),

        (at β = 1: −F(v)). Each of ``n_runs`` chains starts with v ~ p_A and, at every k,
        adds log p*_{β_k}(v) − log p*_{β_{k−1}}(v) to its log weight and then moves v by one
        Gibbs sweep that leaves p_{β_k} invariant. log Ẑ = log Z_A + log mean(w). Ẑ is unbiased;
        log Ẑ is biased low by about stderr²/2 and its standard error is std(w) / (√M mean(w)).

        ``betas``: None (:func:`ais_betas`, 15,000 steps), an int K (K + 1 uniformly spaced
        values) or an increasing sequence from 0 to 1. Returns :class:`AISResult`.
        """
        self._fitted("ais")
        n_runs = check_int(n_runs, "n_runs", minimum=2)
        W, b, c = self.weight.data, self.visible_bias.data, self.hidden_bias.data
        xp = backend.get_array_module(W)
        H, D = W.shape
        if betas is None:
            betas_h = ais_betas()
        elif isinstance(betas, (int, np.integer)) and not isinstance(betas, bool):
            betas_h = np.linspace(0.0, 1.0, check_int(betas, "betas") + 1)  # host
        else:
            betas_h = np.asarray(backend.to_numpy(betas), dtype=np.float64).ravel()  # host
            if betas_h.size < 2 or betas_h[0] != 0.0 or betas_h[-1] != 1.0 or np.any(np.diff(betas_h) <= 0):
                raise ValueError("betas must increase strictly from 0 to 1 (at least 2 values)")
        if data is not None and base_visible_bias is not None:
            raise ValueError("give data or base_visible_bias, not both")
        if data is not None:
            X = self._visible(data, "data")
            self._check_data(X, "data")
            p = (X.sum(axis=0) + 0.5) / (X.shape[0] + 1.0)
            b_a = xp.log(p) - xp.log1p(-p)
        elif base_visible_bias is not None:
            b_a = backend.asarray(getattr(base_visible_bias, "data", base_visible_bias), device=self.weight.device)
            check_shape(b_a, "base_visible_bias", (D,))
            b_a = b_a.astype(W.dtype, copy=False)
        else:
            b_a = xp.zeros_like(b)
        g = self._generator_for(generator, W)
        log_z_a = float(softplus(b_a).sum()) + H * math.log(2.0)

        def log_p(beta, v, pre):
            return (1.0 - beta) * (v @ b_a) + beta * (v @ b) + softplus(beta * pre).sum(axis=1)

        v = self._bernoulli(xp.broadcast_to(sigmoid(b_a), (n_runs, D)), g)
        log_w = xp.zeros(n_runs, dtype=W.dtype)
        for k in range(1, betas_h.size):
            bk, bprev = float(betas_h[k]), float(betas_h[k - 1])
            pre = v @ W.T + c
            log_w += log_p(bk, v, pre) - log_p(bprev, v, pre)
            if k < betas_h.size - 1:
                h = self._bernoulli(sigmoid(bk * pre), g)
                v = self._bernoulli(sigmoid((1.0 - bk) * b_a + bk * (h @ W + b)), g)
        lw = backend.to_numpy(log_w).astype(np.float64)  # host
        m = lw.max()
        w = np.exp(lw - m)  # host
        mean_w = w.mean()
        log_z = log_z_a + m + math.log(mean_w)
        stderr = float(w.std(ddof=1) / (math.sqrt(n_runs) * mean_w))
        return AISResult(float(log_z), stderr, lw, log_z_a)

    def extra_repr(self):
        d = getattr(self, "n_visible", None)
        return (f"n_visible={d}, n_components={self.n_components}, method={self.method!r}, k={self.k}, "
                f"learning_rate={self.learning_rate}, batch_size={self.batch_size}, n_iter={self.n_iter}")
