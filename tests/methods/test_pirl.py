"""PIRL: jigsaw head, NCE against the memory bank, and the memory update after the step."""
import numpy as np
import pytest

from npjem import backend, optim
from npjem.autograd import Tensor, no_grad
from npjem.autograd import functional as F
from npjem.data import DataLoader
from npjem.losses.contrastive import moco_loss, nce_loss
from npjem.methods import PIRL, IndexedDataLoader, JigsawHead, fit, pirl_views
from npjem.random import default_rng


def method(make_backbone, n=12, **kw):
    kw.setdefault("num_negatives", 5)
    return PIRL(make_backbone(), n, out_dim=4, tile_dim=3, grid=2, views=pirl_views(8, grid=2, tile_size=4),
                generator=0, **kw)


def test_views_are_an_image_and_its_tiles(make_backbone, images, device):
    m = method(make_backbone)
    img, tiles = m.make_views(backend.to_device(images, device), generator=0)
    assert img.shape == (12, 3, 8, 8) and tiles.shape == (12, 4, 3, 4, 4)
    assert img.device == tiles.device == device


def test_loss_is_finite_with_gradients_for_backbone_and_both_heads(make_backbone, images, device):
    m = method(make_backbone)
    idx = np.arange(6)
    loss = m(*m.make_views(backend.to_device(images[:6], device), generator=1), indices=idx)
    assert loss.shape == () and np.isfinite(loss.item())
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and np.isfinite(p.grad.data).all(), name
    for part in (m.backbone, m.head_f, m.head_g):
        assert any(np.abs(p.grad.data).max() > 0 for p in part.parameters())
    assert m.nce_z is not None and m.nce_z > 0


@pytest.mark.parametrize("loss_type", ["nce", "infonce"])
def test_loss_is_the_lambda_mixture_against_the_drawn_memory_rows(make_backbone, images, loss_type, device):
    m = method(make_backbone, normalizer=2.0, num_negatives=4, lam=0.3, loss=loss_type)
    idx = np.array([0, 2, 4, 6, 8, 10])
    img, tiles = m.make_views(backend.to_device(images[:6], device), generator=2)
    assert m.memory is None                      # made lazily, on the device/dtype of f
    m(img, tiles, indices=idx)
    bank = m.memory
    assert bank.data.shape == (12, 4) and bank.data.dtype == np.float32
    m._negative_generator = default_rng(5)          # so that the test can replay the draw
    loss = m(img, tiles, indices=idx).item()
    neg_idx = bank.sample_indices(4, exclude=idx, generator=default_rng(5))
    assert not np.isin(backend.to_numpy(neg_idx), idx).any()       # the batch's own rows are never negatives
    with no_grad():
        f = m.head_f(m.backbone(img))
        h = m.backbone(Tensor(tiles.data.reshape(24, 3, 4, 4)))
        g = m.head_g(h.reshape(6, 4, 6))
    pos, neg = Tensor(bank.data[idx]), Tensor(bank.data[neg_idx])
    if loss_type == "nce":
        expected = nce_loss(f, g, pos, neg, dataset_size=12, temperature=0.07, lam=0.3, normalizer=2.0).item()
    else:
        expected = 0.3 * moco_loss(g, pos, neg, 0.07).item() + 0.7 * moco_loss(f, pos, neg, 0.07).item()
    assert loss == pytest.approx(expected, rel=1e-5)


def test_after_step_updates_only_the_batch_rows(make_backbone, images, device):
    m = method(make_backbone, memory_momentum=0.5)
    idx = np.array([1, 5, 7])
    img, tiles = m.make_views(backend.to_device(images[idx], device), generator=3)
    m(img, tiles, indices=idx)
    before = backend.to_numpy(m.memory.data).copy()   # host copies
    with no_grad():
        f = F.normalize(m.head_f(m.backbone(img)), axis=1).numpy()
    m.after_step(0, 1)
    after = backend.to_numpy(m.memory.data)
    rest = np.setdiff1d(np.arange(12), idx)
    np.testing.assert_array_equal(after[rest], before[rest])
    mixed = 0.5 * before[idx] + 0.5 * f
    np.testing.assert_allclose(after[idx], mixed / np.linalg.norm(mixed, axis=1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_fit_needs_and_gets_indices(make_backbone, images):
    m = method(make_backbone)
    opt = optim.SGD(m.trainable_parameters(), lr=0.01)
    with pytest.raises(ValueError, match="IndexedDataLoader"):
        fit(m, DataLoader(images, batch_size=4), opt, progress=False)
    h = fit(m, IndexedDataLoader(images, batch_size=4, generator=0), opt, epochs=1, progress=False)
    assert h.steps == 3 and np.isfinite(h["loss"]).all()
    with pytest.raises(ValueError, match="indices"):
        m(*m.make_views(images[:4], generator=0))


def test_jigsaw_head_and_arguments(make_backbone, device):
    head = JigsawHead(6, num_tiles=4, tile_dim=3, out_dim=5, generator=0)
    out = head(Tensor(np.ones((2, 4, 6), np.float32), device=device))
    assert out.shape == (2, 5)
    with pytest.raises(ValueError, match="tile features"):
        head(Tensor(np.ones((2, 3, 6), np.float32), device=device))
    with pytest.raises(ValueError, match="dataset_size"):
        PIRL(make_backbone(), 1)
    with pytest.raises(ValueError, match="normalizer"):
        PIRL(make_backbone(), 10, normalizer=-1.0)
    with pytest.raises(ValueError, match="loss"):
        PIRL(make_backbone(), 10, loss="hinge")


def test_h_and_nce_eps_are_checked(make_backbone):
    with pytest.raises(ValueError, match="h must be one of"):
        method(make_backbone, h="softmax")
    with pytest.raises(ValueError, match="nce_eps"):
        method(make_backbone, nce_eps=-1.0)
    with pytest.raises(ValueError, match="h='notes'"):
        method(make_backbone, h="notes", normalizer=2.0)


def test_notes_h_is_the_notes_nce_against_the_drawn_rows(make_backbone, images, device):
    m = method(make_backbone, num_negatives=4, lam=0.3, h="notes")
    idx = np.array([0, 2, 4, 6, 8, 10])
    img, tiles = m.make_views(backend.to_device(images[:6], device), generator=4)
    loss = m(img, tiles, indices=idx).item()
    assert m.nce_z is None                         # the notes' h has no Z
    bank, neg_idx = m.memory, m.negative_indices
    assert not np.isin(backend.to_numpy(neg_idx), idx).any()
    with no_grad():
        h = m.backbone(Tensor(tiles.data.reshape(24, 3, 4, 4)))
        g = m.head_g(h.reshape(6, 4, 6))
        f = m.head_f(m.backbone(img))
    pos, neg = Tensor(bank.data[idx]), Tensor(bank.data[neg_idx])
    expected = nce_loss(f, g, pos, neg, dataset_size=12, temperature=0.07, lam=0.3, h="notes").item()
    assert loss == pytest.approx(expected, rel=1e-5)
