"""npjem's own CPU threads (``backend.parallel_for``): the settings, the pieces, and the promise
that every threaded kernel (convolution, BatchNorm, ReLU) gives the same bits with any number
of threads and the same gradients as before. Threads are a CPU matter: every tensor here is on
the CPU, whatever ``NPJEM_DEVICE`` says (on CuPy ``parallel_for`` makes one call)."""
import multiprocessing
import os

import numpy as np
import pytest

import npjem
from npjem import backend, nn
from npjem.autograd import functional as AF
from npjem.nn import functional as F


@pytest.fixture
def threads():
    """Restore the thread count a test changes."""
    yield
    backend.set_num_threads(None)


@pytest.fixture
def small_pieces(monkeypatch):
    """Pieces of a few hundred bytes, so that test-sized arrays are cut into many pieces."""
    monkeypatch.setattr(backend, "_CPU_BLOCK_BYTES", 4096)
    monkeypatch.setattr(F, "_PIECE_BYTES", 256)
    monkeypatch.setattr(F, "_BN_PIECE_BYTES", 256)
    monkeypatch.setattr(AF, "_PIECE_BYTES", 256)


# ------------------------------------------------------------------ settings

def test_set_num_threads_is_read_back_and_reset_to_the_environment(threads, monkeypatch):
    monkeypatch.setenv("NPJEM_NUM_THREADS", "3")
    assert npjem.get_num_threads() == 3
    npjem.set_num_threads(5)
    assert npjem.get_num_threads() == 5
    npjem.set_num_threads(None)
    assert npjem.get_num_threads() == 3


def test_the_environment_npjem_first_then_omp_then_the_cpus(threads, monkeypatch):
    monkeypatch.setenv("NPJEM_NUM_THREADS", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    assert npjem.get_num_threads() == 2
    monkeypatch.delenv("NPJEM_NUM_THREADS")
    assert npjem.get_num_threads() == 7
    monkeypatch.delenv("OMP_NUM_THREADS")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert npjem.get_num_threads() == cpus


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_set_num_threads_refuses_what_is_not_a_positive_int(bad, threads):
    with pytest.raises(ValueError, match="num_threads must be a positive integer"):
        npjem.set_num_threads(bad)


@pytest.mark.parametrize("value", ["0", "two", "-3"])
def test_a_bad_thread_count_in_the_environment_is_named(value, threads, monkeypatch):
    monkeypatch.setenv("NPJEM_NUM_THREADS", value)
    with pytest.raises(ValueError, match="NPJEM_NUM_THREADS must be a positive integer"):
        npjem.get_num_threads()


# ------------------------------------------------------------------ parallel_for

@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("n, chunk", [(10, 3), (9, 3), (1, 5), (7, 1), (0, 2)])
def test_parallel_for_covers_the_range_in_pieces_of_chunk_and_returns_them_in_order(n, chunk, n_threads, threads):
    npjem.set_num_threads(n_threads)
    seen = np.zeros(n, dtype=int)

    def fn(lo, hi):
        seen[lo:hi] += 1
        return (lo, hi)

    out = backend.parallel_for(np, n, fn, chunk)
    assert out == [(lo, min(lo + chunk, n)) for lo in range(0, n, chunk)]
    assert (seen == 1).all()  # every index exactly once


def test_parallel_for_uses_several_threads_and_nested_calls_stay_in_their_thread(threads):
    import threading

    npjem.set_num_threads(2)
    barrier = threading.Barrier(2, timeout=10)
    names = []

    def outer(lo, hi):
        barrier.wait()  # passes only if two pieces run at the same time
        inner = backend.parallel_for(np, 4, lambda a, b: threading.get_ident(), 1)
        names.append(set(inner))
        return threading.get_ident()

    idents = backend.parallel_for(np, 2, outer, 1)
    assert len(set(idents)) == 2
    assert all(len(s) == 1 for s in names)  # the inner loop ran in the piece's own thread


def test_parallel_for_raises_a_piece_error_after_every_piece_is_done(threads):
    npjem.set_num_threads(2)
    done = []

    def fn(lo, hi):
        if lo == 0:
            raise KeyError("piece 0")
        done.append(lo)

    with pytest.raises(KeyError, match="piece 0"):
        backend.parallel_for(np, 6, fn, 1)
    assert sorted(done) == [1, 2, 3, 4, 5]


def test_parallel_for_with_blas_runs_every_piece(threads):
    npjem.set_num_threads(2)
    a = np.arange(64.0).reshape(8, 8)
    rows = backend.parallel_for(np, 8, lambda lo, hi: a[lo:hi] @ a, 2, blas=True)
    np.testing.assert_array_equal(np.concatenate(rows), a @ a)


def _child_runs_parallel_for(q):
    q.put(backend.parallel_for(np, 6, lambda lo, hi: hi - lo, 2))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_forked_child_gets_a_pool_of_its_own(threads):
    npjem.set_num_threads(2)
    backend.parallel_for(np, 4, lambda lo, hi: None, 1)  # the parent's pool exists now
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_runs_parallel_for, args=(q,))
    p.start()
    p.join(30)
    assert p.exitcode == 0, "the child hung or failed on the parent's thread pool"
    assert q.get(timeout=5) == [2, 2, 2]


# ------------------------------------------------------------------ the same bits with any thread count

def _conv_step(x, weight, stride, padding, channels_last_gy):
    xt = npjem.tensor(x, device="cpu", requires_grad=True)
    w = npjem.tensor(weight, device="cpu", requires_grad=True)
    y = F.conv2d(xt, w, None, stride=stride, padding=padding)
    rng = np.random.default_rng(1)
    gy = rng.standard_normal(y.shape).astype(x.dtype)
    if channels_last_gy:
        gy = np.ascontiguousarray(gy.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    y.backward(npjem.Tensor(gy))
    return y.data, xt.grad.data, w.grad.data


def _bn_relu_step(x):
    xt = npjem.tensor(x, device="cpu", requires_grad=True)
    bn = nn.BatchNorm2d(x.shape[1]).to("cpu")
    if x.dtype == np.float64:
        bn.double()
    y = F.relu(bn(xt))
    gy = np.random.default_rng(2).standard_normal(y.shape).astype(x.dtype)
    y.backward(npjem.Tensor(gy))
    return y.data, xt.grad.data, bn.weight.grad.data, bn.bias.grad.data, bn.running_var.data.copy()


@pytest.mark.parametrize("stride, padding", [(1, 1), (2, 1), (1, 0)])
@pytest.mark.parametrize("channels_last_gy", [False, True])
def test_convolution_gives_the_same_bits_with_any_number_of_threads(stride, padding, channels_last_gy,
                                                                   small_pieces, threads):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9, 4, 7, 7)).astype(np.float32)
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    results = []
    for k in (1, 2, 3):
        npjem.set_num_threads(k)
        results.append(_conv_step(x, w, stride, padding, channels_last_gy))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)


def test_batchnorm_and_relu_give_the_same_bits_with_any_number_of_threads(small_pieces, threads):
    x = np.random.default_rng(0).standard_normal((6, 3, 5, 5)).astype(np.float32)
    results = []
    for k in (1, 2, 3):
        npjem.set_num_threads(k)
        results.append(_bn_relu_step(x))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)


def test_threaded_kernels_in_pieces_agree_with_one_pass(small_pieces, threads):
    """With many small pieces and 2 threads, conv + BatchNorm + ReLU give what the same
    layers give in one piece, to float64 rounding: the pieces change the order of sums only."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 3, 6, 6))
    w = rng.standard_normal((4, 3, 3, 3))
    npjem.set_num_threads(2)
    pieces = _conv_step(x, w, 1, 1, True)
    bn_pieces = _bn_relu_step(x)
    small_pieces_off = pytest.MonkeyPatch()
    try:
        small_pieces_off.setattr(backend, "_CPU_BLOCK_BYTES", 1 << 30)
        small_pieces_off.setattr(F, "_PIECE_BYTES", 1 << 30)
        small_pieces_off.setattr(F, "_BN_PIECE_BYTES", 1 << 30)
        small_pieces_off.setattr(AF, "_PIECE_BYTES", 1 << 30)
        whole = _conv_step(x, w, 1, 1, True)
        bn_whole = _bn_relu_step(x)
    finally:
        small_pieces_off.undo()
    for a, b in zip(pieces + bn_pieces, whole + bn_whole):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride", [1, 2])
def test_threaded_kernels_pass_gradcheck_in_many_pieces(stride, small_pieces, threads):
    npjem.set_num_threads(2)
    rng = np.random.default_rng(4)
    x, w, g, b = (npjem.tensor(a, device="cpu", requires_grad=True) for a in (
        rng.standard_normal((4, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3)),
        rng.uniform(0.5, 1.5, 4), rng.standard_normal(4)))

    def f(x, w, g, b):
        y = F.conv2d(x, w, None, stride=stride, padding=1)
        y = F.batch_norm(y, None, None, g, b, training=True)
        return F.relu(y + 0.3)

    assert npjem.gradcheck(f, (x, w, g, b))


def test_relu_backward_in_pieces_keeps_masked_infinities_out(small_pieces, threads):
    npjem.set_num_threads(2)
    x = npjem.tensor(np.tile(np.array([-1.0, 2.0]), (40, 1)), device="cpu", requires_grad=True)
    y = F.relu(x)
    gy = np.full((40, 2), np.inf)
    y.backward(npjem.Tensor(gy))
    assert (x.grad.data[:, 0] == 0).all() and np.isinf(x.grad.data[:, 1]).all()


# ------------------------------------------------------------------ matmul

@pytest.mark.parametrize("shapes", [((37, 11), (11, 5)), ((64, 64), (64, 64)), ((3, 200), (200, 7))])
def test_matmul_in_row_pieces_is_the_product_with_the_same_bits_for_any_thread_count(shapes, threads, monkeypatch):
    monkeypatch.setattr(backend, "_SMALL_GEMM", 1)
    monkeypatch.setattr(backend, "_GEMM_PIECE", 500)  # a few rows per piece
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(s).astype(np.float32) for s in shapes)
    outs = []
    for k in (1, 2, 3):
        npjem.set_num_threads(k)
        outs.append(backend.matmul(a, b))
    np.testing.assert_allclose(outs[0], a @ b, rtol=1e-5, atol=1e-5)
    for o in outs[1:]:
        assert np.array_equal(o, outs[0]) and o.dtype == np.float32


def test_matmul_promotes_dtypes_and_leaves_other_shapes_to_numpy(threads, monkeypatch):
    monkeypatch.setattr(backend, "_SMALL_GEMM", 1)
    npjem.set_num_threads(2)
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((9, 4)).astype(np.float32), rng.standard_normal((4, 3))
    assert backend.matmul(a, b).dtype == np.float64
    np.testing.assert_allclose(backend.matmul(a, b), a @ b, rtol=1e-6)
    batched = rng.standard_normal((2, 5, 4))
    np.testing.assert_array_equal(backend.matmul(batched, b), batched @ b)
    v = rng.standard_normal(4)
    np.testing.assert_array_equal(backend.matmul(b.T, v), b.T @ v)


def test_linear_layers_and_matmul_backward_pass_gradcheck_in_pieces(threads, monkeypatch):
    monkeypatch.setattr(backend, "_SMALL_GEMM", 1)
    monkeypatch.setattr(backend, "_GEMM_PIECE", 40)
    npjem.set_num_threads(2)
    rng = np.random.default_rng(2)
    x, w, b, m = (npjem.tensor(rng.standard_normal(s), device="cpu", requires_grad=True)
                  for s in ((7, 5), (4, 5), (4,), (4, 6)))
    assert npjem.gradcheck(lambda x, w, b, m: AF.linear(x, w, b) @ m, (x, w, b, m))
