"""Tests of npjem.state: MoCo's FIFO queue and the NPID/PIRL memory bank."""
from collections import deque

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npjem import Tensor, backend
from npjem.state import MemoryBank, Queue


def norms(a):
    return np.linalg.norm(backend.to_numpy(a), axis=1)


def _device():
    """The suite's device, for the Hypothesis tests (which cannot take function-scoped fixtures)."""
    dev = backend.default_device()
    if dev != "cpu" and not backend.cupy_available():
        pytest.skip("NPJEM_DEVICE asks for a GPU but CuPy or a GPU is not available")
    return dev


def host(a):
    return backend.to_numpy(a)


# ================================================================ Queue

def test_queue_starts_full_of_seeded_random_unit_vectors(device):
    q = Queue(7, 4, generator=3, device=device, dtype=np.float64)
    assert q.data.shape == (7, 4) and q.data.dtype == np.float64 and len(q) == 7 and q.ptr == 0
    assert backend.device_of(q.data) == device
    np.testing.assert_allclose(norms(q.data), 1.0, rtol=1e-14)
    again = Queue(7, 4, generator=3, device=device, dtype=np.float64)
    np.testing.assert_array_equal(backend.to_numpy(q.data), backend.to_numpy(again.data))
    assert not np.array_equal(backend.to_numpy(Queue(7, 4, generator=4, device=device, dtype=np.float64).data),
                              backend.to_numpy(q.data))
    assert Queue(3, 2, generator=0, device=device).data.dtype == backend.default_dtype()


@given(size=st.integers(1, 9), batches=st.lists(st.integers(0, 12), min_size=1, max_size=8))
def test_queue_is_a_fifo_of_the_latest_keys_and_keeps_its_size(size, batches):
    dim = 3
    device = _device()
    q = Queue(size, dim, generator=0, device=device, dtype=np.float64)
    model = deque((row.copy() for row in host(q.data)), maxlen=size)   # oldest first
    counter, total = 0, 0
    for n in batches:
        keys = np.arange(counter, counter + n, dtype=np.float64)[:, None] * np.ones(dim)
        counter += n
        q.enqueue(Tensor(keys, device=device))
        model.extend(keys)
        total += n
        assert q.data.shape == (size, dim) and len(q) == size
        assert q.ptr == total % size
        np.testing.assert_array_equal(q.tensor().numpy(), np.array(model))
        # Slot arithmetic: key j of the stream lives in slot j mod size (MoCo's layout).
        data = host(q.data)
        for j in range(max(0, counter - size), counter):
            assert data[j % size, 0] == j


def test_queue_slots_match_moco_when_the_batch_divides_the_size(device, xp):
    q = Queue(6, 2, generator=0, device=device, dtype=np.float64)
    for step in range(5):
        keys = np.full((2, 2), float(step))
        ptr = q.ptr
        q.enqueue(backend.to_device(keys, device))
        np.testing.assert_array_equal(host(q.data)[ptr:ptr + 2], keys)  # MoCo: queue[:, ptr:ptr + N] = k.T
        assert q.ptr == (ptr + 2) % 6


def test_queue_wraps_around_when_the_batch_does_not_divide_the_size(device, xp):
    q = Queue(5, 1, generator=0, device=device, dtype=np.float64)
    q.enqueue(xp.array([[0.0], [1.0], [2.0]]))
    q.enqueue(xp.array([[3.0], [4.0], [5.0]]))        # runs past the end: 3, 4 at slots 3, 4; 5 at slot 0
    np.testing.assert_array_equal(host(q.data)[:, 0], [5.0, 1.0, 2.0, 3.0, 4.0])
    assert q.ptr == 1
    np.testing.assert_array_equal(q.tensor().numpy()[:, 0], [1.0, 2.0, 3.0, 4.0, 5.0])
    q.enqueue(xp.arange(10.0, 22.0)[:, None])          # longer than the queue: its last 5 keys stay
    np.testing.assert_array_equal(q.tensor().numpy()[:, 0], np.arange(17.0, 22.0))
    assert q.ptr == (1 + 12) % 5


def test_queue_hands_out_constants_and_copies_keys(device):
    q = Queue(4, 2, generator=0, device=device, dtype=np.float64)
    keys = Tensor(np.ones((2, 2)), requires_grad=True, device=device)
    q.enqueue(keys * 2.0)                              # a graph output: stored detached
    t = q.tensor()
    assert not t.requires_grad and t.creator is None
    keys.data[...] = 7.0
    assert np.all(host(q.data)[:2] == 2.0)


def test_queue_on_device(device, xp):
    q = Queue(4, 3, generator=1, device=device, dtype=np.float32)
    q.enqueue(Tensor(xp.ones((3, 3), dtype=np.float32)))
    assert backend.device_of(q.tensor().data) == device and q.tensor().dtype == np.float32


@pytest.mark.parametrize("call, exc, match", [
    (lambda q, xp: q.enqueue(xp.ones((2, 4))), ValueError, r"keys must have shape \(n, 3\)"),
    (lambda q, xp: q.enqueue(xp.ones(3)), ValueError, "keys"),
    (lambda q, xp: q.enqueue(xp.ones((2, 3), dtype=np.float32)), TypeError, "dtype"),
    (lambda q, xp: q.enqueue([[1.0, 2.0, 3.0]]), TypeError, "keys"),
])
def test_queue_rejects_bad_keys(call, exc, match, device, xp):
    q = Queue(5, 3, generator=0, device=device, dtype=np.float64)
    with pytest.raises(exc, match=match):
        call(q, xp)


@pytest.mark.parametrize("kwargs, match", [
    (dict(size=0, dim=3), "size"), (dict(size=4, dim=0), "dim"), (dict(size=2.5, dim=3), "size"),
    (dict(size=4, dim=3, dtype=np.int64), "dtype"),
])
def test_queue_rejects_bad_construction(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Queue(**kwargs)


# ================================================================ MemoryBank

def test_memory_bank_starts_with_unit_rows_from_a_uniform_draw(device):
    bank = MemoryBank(50, 8, generator=0, device=device, dtype=np.float64)
    assert bank.data.shape == (50, 8) and len(bank) == 50 and backend.device_of(bank.data) == device
    np.testing.assert_allclose(norms(bank.data), 1.0, rtol=1e-14)
    again = MemoryBank(50, 8, generator=0, device=device, dtype=np.float64)
    np.testing.assert_array_equal(backend.to_numpy(bank.data), backend.to_numpy(again.data))


@given(size=st.integers(2, 30), momentum=st.floats(0, 1), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_memory_bank_updates_only_the_indexed_rows(size, momentum, seed, data):
    dim = 4
    device = _device()
    rng = np.random.default_rng(seed)
    bank = MemoryBank(size, dim, momentum=momentum, generator=seed, device=device, dtype=np.float64)
    before = host(bank.data).copy()
    n = data.draw(st.integers(1, size))
    idx = rng.choice(size, n, replace=False)
    feats = rng.standard_normal((n, dim))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    bank.update(idx, Tensor(feats, device=device))
    untouched = np.setdiff1d(np.arange(size), idx)
    np.testing.assert_array_equal(host(bank.data)[untouched], before[untouched])
    mixed = momentum * before[idx] + (1 - momentum) * feats
    expected = mixed / np.maximum(np.linalg.norm(mixed, axis=1, keepdims=True), 1e-12)
    np.testing.assert_allclose(host(bank.data)[idx], expected, rtol=1e-13, atol=1e-15)


def test_memory_bank_momentum_extremes(device, xp):
    bank = MemoryBank(5, 3, momentum=1.0, generator=0, device=device, dtype=np.float64)
    before = host(bank.data).copy()
    bank.update([1, 3], xp.ones((2, 3)))
    np.testing.assert_allclose(host(bank.data), before, rtol=1e-15)      # μ = 1: the rows never move
    bank = MemoryBank(5, 3, momentum=0.0, generator=0, device=device, dtype=np.float64)
    bank.update([2], xp.array([[3.0, 0.0, 4.0]]))
    np.testing.assert_allclose(host(bank.data)[2], [0.6, 0.0, 0.8], rtol=1e-15)  # μ = 0: the new embedding, normalised


def test_memory_bank_getitem_returns_constants_of_any_index_shape(device):
    bank = MemoryBank(10, 3, generator=0, device=device, dtype=np.float64)
    rows = bank[np.array([[1, 2], [3, 1]])]
    assert rows.shape == (2, 2, 3) and not rows.requires_grad
    np.testing.assert_array_equal(rows.numpy()[1, 1], host(bank.data)[1])
    assert bank[4].shape == (3,)
    assert bank[Tensor(np.array([0, 9]))].shape == (2, 3)


def test_memory_bank_sampling_is_uniform_over_the_rows_not_excluded(device):
    bank = MemoryBank(12, 2, generator=0, device=device, dtype=np.float64)
    exclude = np.array([0, 5, 5, 11, 7])
    idx = host(bank.sample_indices(24000, exclude=exclude, generator=1))
    allowed = np.setdiff1d(np.arange(12), exclude)
    assert set(np.unique(idx)) == set(allowed)
    counts = np.bincount(idx, minlength=12)[allowed]
    expected = 24000 / len(allowed)
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))   # ~5σ of a binomial
    assert set(np.unique(host(bank.sample_indices(3000, generator=2)))) == set(range(12))


@given(size=st.integers(1, 40), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_memory_bank_sampling_never_returns_an_excluded_row(size, seed, data):
    bank = MemoryBank(size, 2, generator=seed, device=_device(), dtype=np.float64)
    exclude = np.array(data.draw(st.lists(st.integers(0, size - 1), max_size=size)), dtype=np.int64)
    if np.unique(exclude).size == size:
        with pytest.raises(ValueError, match="exclude"):
            bank.sample_indices(3, exclude=exclude)
        return
    idx = host(bank.sample_indices((4, 5), exclude=exclude, generator=seed))
    assert idx.shape == (4, 5) and idx.min() >= 0 and idx.max() < size
    assert not np.isin(idx, exclude).any()


def test_memory_bank_sample_negatives_is_seeded_and_shaped(device):
    bank = MemoryBank(20, 3, generator=0, device=device, dtype=np.float64)
    a = bank.sample_negatives(6, exclude=[1, 2], generator=5)
    b = bank.sample_negatives(6, exclude=[1, 2], generator=5)
    assert a.shape == (6, 3) and backend.device_of(a.data) == device
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert bank.sample_negatives((2, 4)).shape == (2, 4, 3)


@pytest.mark.parametrize("call, exc, match", [
    (lambda b, xp: b.update([0, 1], xp.ones((3, 4))), ValueError, "features"),
    (lambda b, xp: b.update([0, 0], xp.ones((2, 4))), ValueError, "repeat"),
    (lambda b, xp: b.update([0, 10], xp.ones((2, 4))), ValueError, "indices"),
    (lambda b, xp: b.update([-1], xp.ones((1, 4))), ValueError, "indices"),
    (lambda b, xp: b.update([[0]], xp.ones((1, 4))), ValueError, "1-D"),
    (lambda b, xp: b.update([0], xp.ones((1, 4), dtype=np.float32)), TypeError, "dtype"),
    (lambda b, xp: b.update([0.5], xp.ones((1, 4))), ValueError, "integers"),
    (lambda b, xp: b[np.array([10])], ValueError, "indices"),
    (lambda b, xp: b.sample_indices(3, exclude=[11]), ValueError, "exclude"),
    (lambda b, xp: b.sample_indices(-1), ValueError, "shape"),
])
def test_memory_bank_rejects_bad_arguments(call, exc, match, device, xp):
    bank = MemoryBank(10, 4, generator=0, device=device, dtype=np.float64)
    with pytest.raises(exc, match=match):
        call(bank, xp)


@pytest.mark.parametrize("kwargs, match", [
    (dict(size=0, dim=3), "size"), (dict(size=3, dim=0), "dim"),
    (dict(size=3, dim=2, momentum=1.5), "momentum"), (dict(size=3, dim=2, momentum=-0.1), "momentum"),
])
def test_memory_bank_rejects_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MemoryBank(**kwargs)
