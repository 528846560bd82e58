"""Sinkhorn-Knopp's marginals: a Tensor or an array, cast to the scores' dtype, checked to sum to
one within that dtype's precision."""
import numpy as np
import pytest

from npjem import Tensor
from npjem.losses import sinkhorn_knopp


def _scores(dtype):
    return np.random.default_rng(0).standard_normal((4, 3)).astype(dtype)


def test_marginals_as_tensors_give_the_same_codes_as_arrays():
    s = _scores(np.float64)
    r, c = np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.5, 0.25, 0.25])
    a = sinkhorn_knopp(s, 0.5, row_marginals=r, col_marginals=c)
    b = sinkhorn_knopp(s, 0.5, row_marginals=Tensor(r), col_marginals=Tensor(c))
    np.testing.assert_array_equal(a, b)


def test_float32_scores_take_float32_tolerance_and_keep_their_dtype():
    s = _scores(np.float32)
    # off 1 by 1e-5: within sqrt(float32 eps) ≈ 3.5e-4, far outside sqrt(float64 eps) ≈ 1.5e-8
    r = np.array([0.25, 0.25, 0.25, 0.25 + 1e-5], np.float32)
    q = sinkhorn_knopp(s, 0.5, row_marginals=r, col_marginals=np.full(3, 1 / 3))
    assert q.dtype == np.float32
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="^row_marginals must sum to 1"):
        sinkhorn_knopp(s, 0.5, row_marginals=np.array([0.25, 0.25, 0.25, 0.26], np.float32))


def test_swav_crop_indices_are_counted_from_zero_and_never_from_the_end():
    from npjem.losses import swav

    rng = np.random.default_rng(3)
    scores = [rng.standard_normal((2, 3)) for _ in range(3)]
    q = sinkhorn_knopp(scores[2], 0.5)
    # crop 2 given as 2 works; as −1 (Python's "the last") is refused by name
    assert np.isfinite(float(swav(scores, [q], crops_for_assign=[2]).data))
    for bad in (-1, 3):
        with pytest.raises(ValueError, match=r"^crops_for_assign\[0\]"):
            swav(scores, [q], crops_for_assign=[bad])


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_plain_sinkhorn_out_of_range_raises_its_own_error_and_no_numpy_warning(sign):
    import warnings

    # exp(±1e3 / 0.01) over- or underflows float64 (every entry, or one row's); the plain form
    # says so with FloatingPointError and leaves NumPy's warnings out.
    s = np.zeros((3, 2))
    s[0] = sign * 1e3
    s[1, 0] = -sign * 1e3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(FloatingPointError, match="use log_domain=True"):
            sinkhorn_knopp(s, 0.01, tol=1e-3)


def test_balanced_clusters_labels_are_int64_group_indices():
    from npjem.losses import sinkhorn_clusters

    # Two tight blobs of three points each: two groups of three.
    x = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [5.0, 5.0], [5.1, 5.0], [5.0, 5.1]])
    out = sinkhorn_clusters(x, 2, n_steps=3, generator=0)
    assert out.labels.dtype == np.int64
    assert sorted(np.bincount(out.labels).tolist()) == [3, 3]
    assert len(set(out.labels[:3].tolist())) == 1 and len(set(out.labels[3:].tolist())) == 1


def test_balanced_round_breaks_ties_by_row_order():
    from npjem.losses import clustering as C

    # Rows 0, 3, 4, 5 like every prototype equally (0.5), rows 1 and 2 none (0): 18 entries, more
    # than a small sort handles by insertion. At a tie the rows are taken in order: rows 0 and 3
    # fill prototype 0, rows 4 and 5 then go to prototype 1, and rows 1 and 2 to prototype 2.
    codes = np.array([[0.5] * 3, [0.0] * 3, [0.0] * 3, [0.5] * 3, [0.5] * 3, [0.5] * 3])
    np.testing.assert_array_equal(C._balanced_round(codes, 3), [0, 2, 2, 0, 1, 1])


def test_balanced_groups_take_the_remainder_one_each():
    from npjem.losses import clustering as C

    # N = 8, K = 3: sizes ⌈8/3⌉, ⌈8/3⌉, ⌊8/3⌋ = 3, 3, 2, every row labelled.
    codes = np.random.default_rng(4).dirichlet(np.ones(3), size=8)
    labels = C._balanced_round(codes, 3)
    assert labels.min() >= 0
    assert sorted(np.bincount(labels, minlength=3).tolist()) == [2, 3, 3]


@pytest.mark.parametrize("dtype, off, tol", [(np.float64, 1e-9, 1e-11), (np.float32, 1e-4, 1e-5)])
@pytest.mark.parametrize("log_domain", [False, True])
def test_marginals_off_one_by_rounding_are_rescaled_before_the_stopping_rule(dtype, off, tol, log_domain):
    import warnings

    # A row marginal summing to 1 + off (accepted: off < sqrt(eps), 1.5e-8 or 3.5e-4) is divided
    # by its sum. The plan's prototype sums then total 1, as the shares c do, so the prototype error
    # max_k |Σ_b P_bk / c_k − 1| can fall below a tol of off / 100; a scale left in r (or squared)
    # would hold that error near off (or 2·off), above tol, and end in max_iters' warning.
    s = _scores(dtype)
    r = (np.array([0.1, 0.2, 0.3, 0.4]) * (1 + off)).astype(dtype)
    c = np.array([0.5, 0.25, 0.25])
    assert abs(float(r.sum()) - 1) > 10 * tol
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = sinkhorn_knopp(s, 0.5, tol=tol, max_iters=200, log_domain=log_domain,
                           row_marginals=r, col_marginals=c)
    plan = q.astype(np.float64) * (r / r.sum()).astype(np.float64)[:, None]
    np.testing.assert_allclose(plan.sum(axis=0) / c, 1.0, atol=tol * 1.5)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=10 * np.finfo(dtype).eps)


def test_balanced_clusters_take_an_epsilon_whose_kernel_underflows():
    # ε = 1e-7: a point 0.1 from its nearest centroid with the largest squared distance near 100
    # has s/ε ≈ −0.01/100/1e-7 = −1000, and exp(−1000) is 0 in float64 (below ≈ e^−745), so the
    # plain Sinkhorn's kernel would have a zero column. The log-domain assignment (the docstring's
    # log_domain=True) still gives each blob its group and the blobs' means as centroids.
    from npjem.losses import sinkhorn_clusters

    x = np.array([[0.0], [0.1], [0.2], [10.0], [10.1], [10.2]])
    with pytest.raises(FloatingPointError):
        sinkhorn_knopp(-np.array([[1e-4, 1.0]]), 1e-7)
    for seed in range(3):
        out = sinkhorn_clusters(x, 2, epsilon=1e-7, n_steps=3, generator=seed)
        assert len(set(out.labels[:3].tolist())) == 1 and len(set(out.labels[3:].tolist())) == 1
        np.testing.assert_allclose(np.sort(out.centroids[:, 0]), [0.1, 10.1], rtol=1e-12)
        assert np.isfinite(out.codes).all()


def test_one_clustering_step_stops_its_sinkhorn_at_500_iterations():
    # K = 2 centroids drawn from four points on a line, ε = 0.01. From the pair seed 1 draws
    # (0.2 and 2.9) Sinkhorn does not reach tol 1e-6, so the step's codes are those of exactly
    # 500 iterations (the docstring's max_iters=500), for one of the 12 ordered pairs of starting
    # points; 501 or 1000 iterations give other codes (by 5e-6 and 1e-3).
    import itertools
    import warnings

    from npjem.losses import sinkhorn_clusters

    x = np.array([[3.7], [0.2], [2.9], [2.5]])
    got = sinkhorn_clusters(x, 2, epsilon=0.01, n_steps=1, generator=1).codes
    matches = []
    for order in itertools.permutations(range(4), 2):
        d2 = (x - x[list(order)].T) ** 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            want = sinkhorn_knopp(-d2 / d2.max(), 0.01, 1, log_domain=True, tol=1e-6, max_iters=500)
        matches.append(np.allclose(got, want, rtol=1e-13, atol=0))
    assert sum(matches) == 1


@pytest.mark.skipif("mutants" in __import__("pathlib").Path(__import__("npjem").__file__).parts,
                    reason="mutmut's trampolines add a frame to every call, so the depth differs there")
@pytest.mark.parametrize("log_domain", [False, True])
def test_the_max_iters_warning_points_at_the_callers_line(log_domain):
    # warnings.warn's stacklevel counts the generator that measures the error, the plain or log
    # iteration, and sinkhorn_knopp; the warning is the caller's, so it names this file.
    s = np.random.default_rng(5).uniform(-1, 1, (4, 3))
    with pytest.warns(RuntimeWarning, match="stopped after 2 iterations") as record:
        sinkhorn_knopp(s, 0.02, 1, tol=1e-300, max_iters=2, log_domain=log_domain)
    assert [w.filename for w in record] == [__file__]


@pytest.mark.parametrize("shape", [(0, 3), (3, 0)])
def test_scores_without_a_sample_or_a_prototype_are_refused(shape):
    with pytest.raises(ValueError, match=r"^scores must have at least one sample and one prototype"):
        sinkhorn_knopp(np.zeros(shape))
