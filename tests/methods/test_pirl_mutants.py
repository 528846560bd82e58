"""PIRL beyond what the twin fixes (mutation testing found these open):

- the memory bank and the negatives' draws come from the method's seed, also after the method
  moves to float64 mid-run (the bank keeps its rows, cast);
- the bank update uses the method's ``memory_momentum``: m_I ← normalize(μ m_I + (1 − μ) f̂);
- K is capped at |D| − batch, drawn outside the batch; K = 1 works;
- the notes' h uses the temperature given;
- indices as a Tensor, and shape checks on the image, the tiles and their count;
- a step's rows are written once.
"""
import numpy as np
import pytest

from npjem.autograd import Tensor, no_grad
from npjem.autograd import functional as F
from npjem.losses.contrastive import nce_loss, nce_normalizer
from npjem.methods import PIRL, pirl_views

from conftest import tiny_backbone

from conftest import cpu_only  # noqa: E402

pytestmark = cpu_only


def method(n=12, generator=0, **kw):
    kw.setdefault("num_negatives", 5)
    return PIRL(tiny_backbone(), n, out_dim=4, tile_dim=3, grid=2, views=pirl_views(8, grid=2, tile_size=4),
                generator=generator, **kw)


def views(m, seed=0, n=6):
    x = np.random.default_rng(seed).random((n, 3, 8, 8)).astype(np.float32)
    return m.make_views(x, generator=seed)


def step_and_encodings(m, seed):
    """One forward on the even rows; f, g and the bank rows it used, computed apart."""
    idx = np.arange(0, 12, 2)
    img, tiles = views(m, seed=seed)
    loss = m(img, tiles, indices=idx).item()
    with no_grad():
        g = m.head_g(m.backbone(Tensor(tiles.data.reshape(24, 3, 4, 4))).reshape(6, 4, 6))
        f = m.head_f(m.backbone(img))
    return loss, f, g, Tensor(m.memory.data[idx]), Tensor(m.memory.data[m.negative_indices])


def run(generator, double_at=None, steps=3):
    """Bank rows and negatives drawn over a few forwards (no optimizer: only the draws move)."""
    m = method(generator=generator)
    out = []
    for step in range(steps):
        if step == double_at:
            m.double()
        img, tiles = views(m, seed=step)
        if step >= (double_at if double_at is not None else steps):
            img, tiles = Tensor(img.data.astype(np.float64)), Tensor(tiles.data.astype(np.float64))
        m(img, tiles, indices=np.arange(6))
        out.append((m.memory.data.copy(), m.negative_indices.copy()))
        m.after_step(step, steps)
    return m, out


def test_the_bank_and_the_negatives_come_from_the_seed_also_after_double():
    for double_at in (None, 1):
        m, a = run(3, double_at)
        _, b = run(3, double_at)
        _, c = run(4, double_at)
        for (bank_a, neg_a), (bank_b, neg_b) in zip(a, b):
            np.testing.assert_array_equal(bank_a, bank_b)
            np.testing.assert_array_equal(neg_a, neg_b)
        assert not np.array_equal(a[0][0], c[0][0])  # another seed, another initial bank
    # after .double() the bank is float64 and kept its rows (those outside the batch untouched)
    assert m.memory.data.dtype == np.float64 and m.memory.dtype == np.float64
    _, float32_run = run(3, None)
    np.testing.assert_allclose(a[1][0][6:], float32_run[0][0][6:].astype(np.float64), rtol=0, atol=0)


def test_a_float64_method_makes_a_float64_bank():
    m = method().double()
    img, tiles = views(m)
    m(Tensor(img.data.astype(np.float64)), Tensor(tiles.data.astype(np.float64)), indices=np.arange(6))
    assert m.memory.data.dtype == np.float64


def test_the_bank_update_uses_memory_momentum():
    m = method(memory_momentum=0.8)
    img, tiles = views(m)
    idx = np.array([1, 3, 5, 7, 9, 11])
    m(img, tiles, indices=idx)
    before = m.memory.data.copy()
    with no_grad():
        f = F.normalize(m.head_f(m.backbone(img)), axis=1).numpy()
    m.after_step(0, 1)
    mixed = 0.8 * before[idx] + 0.2 * f
    np.testing.assert_allclose(m.memory.data[idx], mixed / np.linalg.norm(mixed, axis=1, keepdims=True),
                               rtol=1e-5, atol=1e-6)
    after = m.memory.data.copy()
    m.after_step(1, 1)  # no forward in between: the rows are written once
    np.testing.assert_array_equal(m.memory.data, after)


def test_k_is_capped_at_the_rows_outside_the_batch():
    m = method(n=10, num_negatives=4096)
    idx = np.arange(6)
    m(*views(m), indices=idx)
    neg = np.asarray(m.negative_indices)
    assert neg.shape == (4,) and (neg >= 6).all() and (neg < 10).all()  # drawn with replacement, as vissl
    one = method(n=7, num_negatives=4096)  # K = |D| − batch = 1
    assert np.isfinite(one(*views(one), indices=idx).item())
    assert np.asarray(one.negative_indices).tolist() == [6]


def test_the_notes_h_uses_the_temperature_given():
    m = method(h="notes", temperature=0.2, lam=0.3, num_negatives=4)
    loss, f, g, pos, neg = step_and_encodings(m, seed=1)
    expected = nce_loss(f, g, pos, neg, dataset_size=12, temperature=0.2, lam=0.3, h="notes").item()
    assert loss == pytest.approx(expected, rel=1e-5)
    assert loss != pytest.approx(nce_loss(f, g, pos, neg, dataset_size=12, temperature=0.07, lam=0.3,
                                          h="notes").item(), rel=1e-3)


def test_indices_as_a_tensor_and_shape_checks():
    m = method()
    img, tiles = views(m)
    assert np.isfinite(m(img, tiles, indices=Tensor(np.arange(6))).item())
    with pytest.raises(ValueError, match="image view"):
        m(img[0], tiles, indices=np.arange(6))  # a 3-D image
    with pytest.raises(ValueError, match="image view"):
        m(img, tiles[0], indices=np.arange(6))  # 4-D tiles
    with pytest.raises(ValueError, match="tiles must have shape"):
        m(img, tiles[:, :3], indices=np.arange(6))  # 3 tiles for a 2 × 2 grid
    with pytest.raises(ValueError, match="tiles must have shape"):
        m(img[:5], tiles, indices=np.arange(6))


def test_the_papers_nce_and_its_estimated_z_use_the_temperature_given():
    m = method(temperature=0.2, lam=0.3, num_negatives=4)
    loss, f, g, pos, neg = step_and_encodings(m, seed=2)
    z = nce_normalizer(g, pos, neg, dataset_size=12, temperature=0.2)  # vissl's Z from the first batch
    assert m.nce_z == pytest.approx(float(z), rel=1e-5)
    assert m.nce_z != pytest.approx(float(nce_normalizer(g, pos, neg, dataset_size=12, temperature=0.07)), rel=1e-3)
    expected = nce_loss(f, g, pos, neg, dataset_size=12, temperature=0.2, lam=0.3, normalizer=m.nce_z).item()
    assert loss == pytest.approx(expected, rel=1e-5)


def test_the_bank_follows_the_method_back_to_float32():
    m = method().double()
    img, tiles = views(m)
    m(Tensor(img.data.astype(np.float64)), Tensor(tiles.data.astype(np.float64)), indices=np.arange(6))
    before = m.memory.data.copy()
    m.float()
    m(*views(m, seed=1), indices=np.arange(6))
    assert m.memory.data.dtype == np.float32 and m.memory.dtype == np.float32
    np.testing.assert_array_equal(m.memory.data, before.astype(np.float32))
