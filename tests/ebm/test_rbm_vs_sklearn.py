"""The Bernoulli RBM's CD-k and PCD updates, minibatch for minibatch, against scikit-learn's
``BernoulliRBM._fit`` given the same uniforms (float64).

scikit-learn's ``_fit`` is one PCD update with one Gibbs sweep: v⁻ ~ p(v | h_samples_),
h⁻ = p(h | v⁻), the update with lr / batch × (data − negative statistics), then h_samples_ ~
Bernoulli(h⁻). Its Bernoulli draws are ``rng.uniform(size=p.shape) < p``; here ``rng`` is a
``RandomState`` whose ``uniform`` hands out pre-drawn arrays, and npjem gets the same arrays
through its generator. k > 1 sweeps and CD-k are built from scikit-learn's own pieces:

* PCD-k: k − 1 sweeps ``_sample_visibles`` / ``_sample_hiddens`` from ``h_samples_``, then ``_fit``;
* CD-k: ``h_samples_ = _sample_hiddens(v_pos)`` (the chain starts at the data, Hinton 2002),
  k − 1 sweeps, then ``_fit``.

After every minibatch W (``components_``), both intercepts and the persistent hidden chain agree
to a relative 1e-9.
"""
from collections import deque

import numpy as np
import pytest

from npjem.ebm import BernoulliRBM

from _twin_rng import ScriptedGenerator, Worst

sklearn_rbm = pytest.importorskip("sklearn.neural_network")

N, D, H, BATCH = 30, 6, 4, 5
LR = 0.5
# scikit-learn scales the summed difference, lr/B · (Σ data − Σ negatives), npjem the difference
# of the means, lr · (mean data − mean negatives): where the two sums are equal, sklearn's is
# exactly 0 and npjem's a rounding error of order 1e-16, which no relative tolerance can accept.
ATOL = 1e-14


class _ScriptedRandomState(np.random.RandomState):
    """A RandomState whose ``uniform(size=...)`` returns the next pre-drawn array of that shape."""

    def __init__(self, uniforms):
        super().__init__(0)
        self._uniforms = deque(uniforms)

    def uniform(self, low=0.0, high=1.0, size=None):
        assert (low, high) == (0.0, 1.0)
        assert self._uniforms, "scikit-learn asked for more uniforms than were drawn"
        u = self._uniforms.popleft()
        assert u.shape == tuple(size), f"scikit-learn drew shape {size}, the script holds {u.shape}"
        return u.copy()


def _data():
    rng = np.random.default_rng(2)
    p = rng.uniform(0.1, 0.9, D)
    return (rng.random((N, D)) < p).astype(np.float64)


def _uniforms(method, k, n_updates, seed=0):
    """The Bernoulli uniforms of every update in the order both draw them."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_updates):
        if method == "cd":
            out.append(rng.random((BATCH, H)))  # h⁰ ~ p(h | data)
        for _ in range(k):
            out += [rng.random((BATCH, D)), rng.random((BATCH, H))]
    return out


def _initial():
    rng = np.random.default_rng(9)
    return rng.normal(0, 0.01, (H, D))


def _sklearn_updates(method, k, batches, uniforms):
    sk = sklearn_rbm.BernoulliRBM(n_components=H, learning_rate=LR, batch_size=BATCH)
    sk.components_ = _initial()
    sk.intercept_hidden_ = np.zeros(H)
    sk.intercept_visible_ = np.zeros(D)
    sk.h_samples_ = np.zeros((BATCH, H))
    rng = _ScriptedRandomState(uniforms)
    snaps = []
    for v_pos in batches:
        if method == "cd":
            sk.h_samples_ = sk._sample_hiddens(v_pos, rng)
        for _ in range(k - 1):
            sk.h_samples_ = sk._sample_hiddens(sk._sample_visibles(sk.h_samples_, rng), rng)
        sk._fit(v_pos, rng)
        snaps.append({"components_": sk.components_.copy(), "intercept_hidden_": sk.intercept_hidden_.copy(),
                      "intercept_visible_": sk.intercept_visible_.copy(), "h_samples_": sk.h_samples_.copy()})
    assert not rng._uniforms
    return snaps


def _npjem_rbm(method, k, **kw):
    rbm = BernoulliRBM(H, learning_rate=LR, batch_size=BATCH, k=k, method=method, visible_bias_init="zeros",
                       n_visible=D, device="cpu", dtype="float64", generator=0, progress=False, monitor=None, **kw)
    rbm.components_ = _initial()
    return rbm


def _npjem_updates(method, k, batches, uniforms):
    rbm = _npjem_rbm(method, k)
    gen = ScriptedGenerator(random=uniforms)
    snaps = []
    for v_pos in batches:
        rbm.partial_fit(v_pos, generator=gen)
        snaps.append({"components_": rbm.components_.copy(), "intercept_hidden_": rbm.intercept_hidden_.copy(),
                      "intercept_visible_": rbm.intercept_visible_.copy(), "h_samples_": rbm.h_samples_.copy()})
    gen.assert_consumed()
    return snaps


def _batches(epochs):
    X = _data()
    return [X[s:s + BATCH] for _ in range(epochs) for s in range(0, N, BATCH)]


def _compare(ours, theirs, persistent=True):
    """Parameters after every minibatch, and the hidden chain where it persists (PCD; CD-k
    restarts at the data, and its h_samples_ in scikit-learn is only the twin's scratch)."""
    worst = Worst(rtol=1e-9, atol=ATOL)
    assert len(ours) == len(theirs) >= 10
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for name in b:
            if name != "h_samples_" or persistent:
                worst.check(f"minibatch {step} {name}", a[name], b[name])
    assert np.abs(ours[-1]["components_"] - _initial()).max() > 1e-2, "the weights hardly moved"
    return worst


@pytest.mark.parametrize("method, k", [("pcd", 1), ("pcd", 3), ("cd", 1), ("cd", 2)])
def test_updates_match_sklearn_fit_minibatch_for_minibatch(method, k):
    batches = _batches(epochs=2)
    uniforms = _uniforms(method, k, len(batches))
    worst = _compare(_npjem_updates(method, k, batches, uniforms), _sklearn_updates(method, k, batches, uniforms),
                     persistent=method == "pcd")
    print(f"RBM {method}-{k}: worst relative difference {worst.value:.3g} ({worst.where}) "
          f"over {len(batches)} minibatches")


def test_fit_takes_sklearns_batches_and_updates():
    # fit (unshuffled, contiguous batches) ends where scikit-learn's fit loop over _fit ends.
    epochs = 2
    batches = _batches(epochs)
    uniforms = _uniforms("pcd", 1, len(batches))
    rbm = _npjem_rbm("pcd", 1)
    rbm.n_iter = epochs
    gen = ScriptedGenerator(random=list(uniforms))
    rbm.fit(_data(), generator=gen)
    gen.assert_consumed()
    theirs = _sklearn_updates("pcd", 1, batches, uniforms)[-1]
    worst = Worst(rtol=1e-9, atol=ATOL)
    for name in theirs:
        worst.check(f"after fit: {name}", getattr(rbm, name), theirs[name])


def test_twin_catches_an_update_in_the_wrong_order():
    # The h sample must use p(h | v⁻) from *before* the update; sampling it after differs.
    batches = _batches(epochs=2)
    uniforms = _uniforms("pcd", 1, len(batches))
    ours = _npjem_updates("pcd", 1, batches, uniforms)
    sk = sklearn_rbm.BernoulliRBM(n_components=H, learning_rate=LR, batch_size=BATCH)
    sk.components_, sk.intercept_hidden_ = _initial(), np.zeros(H)
    sk.intercept_visible_, sk.h_samples_ = np.zeros(D), np.zeros((BATCH, H))
    rng = _ScriptedRandomState(uniforms)
    theirs = []
    for v_pos in batches:
        v_neg = sk._sample_visibles(sk.h_samples_, rng)
        h_neg = sk._mean_hiddens(v_neg)
        lr = LR / v_pos.shape[0]
        sk.components_ += lr * (v_pos.T @ sk._mean_hiddens(v_pos) - v_neg.T @ h_neg).T
        sk.intercept_hidden_ += lr * (sk._mean_hiddens(v_pos).sum(0) - h_neg.sum(0))
        sk.intercept_visible_ += lr * (v_pos.sum(0) - v_neg.sum(0))
        sk.h_samples_ = sk._sample_hiddens(v_neg, rng).astype(np.float64)  # planted: after the update
        theirs.append({"components_": sk.components_.copy(), "intercept_hidden_": sk.intercept_hidden_.copy(),
                       "intercept_visible_": sk.intercept_visible_.copy(), "h_samples_": sk.h_samples_.copy()})
    with pytest.raises(AssertionError, match="relative difference"):
        _compare(ours, theirs)


# ------------------------------------------------------------------ a batch shorter than batch_size

def _short_batch_run(n_rows, **kw):
    """fit on n_rows rows (batch_size does not divide them) and scikit-learn's fit loop: its
    batches are gen_even_slices(n_batches · batch_size, n_batches, n_samples=n_rows)."""
    from sklearn.utils import gen_even_slices

    X = np.concatenate([_data()] * 2)[:n_rows]
    n_batches = -(-n_rows // BATCH)
    slices = list(gen_even_slices(n_batches * BATCH, n_batches, n_samples=n_rows))
    epochs = 2
    batches = [X[sl] for _ in range(epochs) for sl in slices]
    rng = np.random.default_rng(4)
    uniforms = []
    for _ in batches:  # PCD-1: the particles are batch_size rows whatever the data batch
        uniforms += [rng.random((BATCH, D)), rng.random((BATCH, H))]
    theirs = _sklearn_updates("pcd", 1, batches, uniforms)
    rbm = _npjem_rbm("pcd", 1, **kw)
    rbm.n_iter = epochs
    gen = ScriptedGenerator(random=list(uniforms))
    rbm.fit(X, generator=gen)
    gen.assert_consumed()
    return rbm, theirs[-1], len(batches)


def test_sklearn_negative_normalization_matches_fit_with_a_short_last_batch():
    rbm, theirs, n_updates = _short_batch_run(32, negative_normalization="batch")  # batches 5 × 6 and 2
    assert n_updates >= 10
    worst = Worst(rtol=1e-9, atol=ATOL)
    for name in theirs:
        worst.check(f"after fit: {name}", getattr(rbm, name), theirs[name])
    print(f"RBM fit, short last batch: worst relative difference {worst.value:.3g} ({worst.where}) "
          f"after {n_updates} updates")


def test_default_negative_normalization_differs_only_through_the_short_batch():
    rbm, theirs, _ = _short_batch_run(32)
    diff = np.abs(rbm.components_ - theirs["components_"]).max()
    assert diff > 1e-3, "the mean over the particles must differ from sklearn's division by the batch"
    rbm, theirs, _ = _short_batch_run(30)  # no short batch: the two conventions coincide
    np.testing.assert_allclose(rbm.components_, theirs["components_"], rtol=1e-9, atol=ATOL)


def test_negative_normalization_is_checked_and_from_sklearn_takes_sklearns():
    with pytest.raises(ValueError, match="negative_normalization"):
        BernoulliRBM(H, negative_normalization="mean")
    sk = sklearn_rbm.BernoulliRBM(n_components=H, batch_size=BATCH, n_iter=1, random_state=0).fit(_data())
    assert BernoulliRBM.from_sklearn(sk).negative_normalization == "batch"
