"""scikit-learn's habits in npjem.ebm.rbm.BernoulliRBM, tried as sklearn/neural_network/tests/test_rbm.py
tries them: float32 and float64 fits that agree, integer and sparse inputs, the verbose lines."""
import re

import numpy as np
import pytest

from npjem import backend
from npjem.data import digits, shapes
from npjem.ebm.rbm import BernoulliRBM


def digits_100():
    # 100 grey 8x8 pictures in [0, 1] (the built-in shapes, so that scikit-learn is not needed;
    # sklearn's own tests use its digits, of the same size)
    return shapes("train", n=100, size=8, cache_dir=False).images.mean(axis=1).reshape(100, 64).astype(np.float64)


def rbm(**kwargs):
    params = dict(n_components=16, batch_size=5, n_iter=5, random_state=42, progress=False)
    params.update(kwargs)
    return BernoulliRBM(**params)


def host(a):
    return backend.to_numpy(a)


@pytest.mark.parametrize("method", ["pcd", "cd"])
def test_convergence_dtype_consistency(method, xp):
    # sklearn's test_convergence_dtype_consistency, on its data (the digits) and with its
    # tolerances: the random numbers are drawn in float64 for both, so the two fits follow the
    # same chains.
    pytest.importorskip("sklearn")
    X = digits("train").images.reshape(-1, 64)[:100].astype(np.float64)
    fits = {}
    for dt in (np.float64, np.float32):
        model = rbm(method=method).fit(xp.asarray(X.astype(dt)))
        assert model.components_.dtype == dt
        fits[dt] = model, host(model.transform(xp.asarray(X.astype(dt))))
    (m64, t64), (m32, t32) = fits[np.float64], fits[np.float32]
    np.testing.assert_allclose(t64, t32, rtol=1e-6, atol=0)
    np.testing.assert_allclose(host(m64.intercept_hidden_), host(m32.intercept_hidden_), rtol=1e-6, atol=0)
    np.testing.assert_allclose(host(m64.intercept_visible_), host(m32.intercept_visible_), rtol=1e-5, atol=0)
    np.testing.assert_allclose(host(m64.components_), host(m32.components_), rtol=1e-3, atol=0)
    np.testing.assert_array_equal(host(m64.h_samples_), host(m32.h_samples_))
    np.testing.assert_allclose(m64.history_["pseudo_likelihood"], m32.history_["pseudo_likelihood"], rtol=1e-5)


def test_samples_agree_across_dtypes(xp):
    model64 = rbm().fit(xp.asarray(digits_100()))
    model32 = rbm()
    model32.components_ = model64.components_.astype(np.float32)
    model32.intercept_hidden_ = model64.intercept_hidden_.astype(np.float32)
    model32.intercept_visible_ = model64.intercept_visible_.astype(np.float32)
    a = model64.sample(20, n_steps=10, generator=3)
    b = model32.sample(20, n_steps=10, generator=3)
    assert b.dtype == np.float32
    np.testing.assert_array_equal(host(a), host(b))


@pytest.mark.parametrize("dtype_in, dtype_out",
                         [(np.float32, np.float32), (np.float64, np.float64), (int, np.float64),
                          (np.uint8, np.float64), (bool, np.float64)])
def test_transformer_dtypes_casting(dtype_in, dtype_out, xp):
    # sklearn's test_transformer_dtypes_casting: integer (and boolean) data become float64.
    X = xp.asarray((digits_100() > 0.5).astype(dtype_in))
    model = rbm().fit(X)
    assert model.components_.dtype == dtype_out
    assert model.transform(X).dtype == dtype_out
    ref = rbm().fit(xp.asarray((digits_100() > 0.5).astype(dtype_out)))
    np.testing.assert_array_equal(host(model.components_), host(ref.components_))


def test_integer_data_follow_the_rule_in_partial_fit_too():
    X = (digits_100() > 0.5).astype(np.int64)
    model = rbm().partial_fit(X)
    assert model.components_.dtype == np.float64
    np.testing.assert_array_equal(model.components_, rbm().partial_fit(X.astype(np.float64)).components_)


@pytest.mark.parametrize("fmt", ["csr", "csc", "lil"])
def test_sparse_input_fits_as_the_dense_one(fmt):
    # sklearn's test_small_sparse / test_fit_gibbs with sparse containers: the CPU path takes them.
    sparse = pytest.importorskip("scipy.sparse")
    X = (digits_100() > 0.5).astype(np.float64)
    Xs = getattr(sparse, f"{fmt}_matrix")(X)
    dense = rbm().fit(X)
    model = rbm().fit(Xs)
    np.testing.assert_array_equal(model.components_, dense.components_)
    np.testing.assert_array_equal(model.transform(Xs), dense.transform(X))
    np.testing.assert_array_equal(model.score_samples(Xs, generator=1), dense.score_samples(X, generator=1))
    np.testing.assert_array_equal(rbm().partial_fit(Xs).components_, rbm().partial_fit(X).components_)
    # Integer sparse data follow the integer rule.
    assert rbm().fit(sparse.csr_matrix(X.astype(np.int64))).components_.dtype == np.float64


def test_sparse_and_verbose(capsys):
    # sklearn's test_sparse_and_verbose, line for line.
    sparse = pytest.importorskip("scipy.sparse")
    X = sparse.csc_matrix([[0.0], [1.0]])
    BernoulliRBM(n_components=2, batch_size=2, n_iter=1, random_state=42, verbose=True, progress=False).fit(X)
    assert re.match(r"\[BernoulliRBM\] Iteration 1, pseudo-likelihood = -?(\d)+(\.\d+)?, time = (\d|\.)+s",
                    capsys.readouterr().out)


@pytest.mark.parametrize("monitor", ["pseudo_likelihood", None])
def test_verbose_prints_each_epoch_and_changes_nothing(monitor, capsys, xp):
    X = xp.asarray(digits_100())
    quiet = rbm(n_iter=3, monitor=monitor).fit(X)
    assert capsys.readouterr().out == ""
    loud = rbm(n_iter=3, monitor=monitor, verbose=1).fit(X)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines, 1):
        m = re.fullmatch(r"\[BernoulliRBM\] Iteration (\d+), pseudo-likelihood = (-?\d+\.\d\d), time = \d+\.\d\ds",
                         line)
        assert m and int(m.group(1)) == i
        if monitor is not None:  # the printed value is the recorded one
            assert m.group(2) == f"{loud.history_['pseudo_likelihood'][i - 1]:.2f}"
    np.testing.assert_array_equal(host(loud.components_), host(quiet.components_))
    np.testing.assert_array_equal(host(loud.h_samples_), host(quiet.h_samples_))


@pytest.mark.parametrize("bad", [-1, 1.5, "yes"])
def test_verbose_is_checked(bad):
    with pytest.raises(ValueError, match="verbose"):
        BernoulliRBM(verbose=bad)
