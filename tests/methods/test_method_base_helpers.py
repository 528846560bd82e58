"""The Method base class's own promises, torch-free and small: view making, the training loss with
indices, ``embed`` (evaluation mode, chunks, device and dtype of the method), the two-view check
the methods share, and IndexedDataLoader's rows."""
import numpy as np
import pytest

from npjem import backend
from npjem import random as nrandom
from npjem.autograd import Tensor
from npjem.methods import IndexedDataLoader, Method
from npjem.methods.base import check_two_views
from npjem.nn import Module, Parameter


class PoolScale(Module):
    """(N, C, H, W) → (N, C): the spatial mean of each channel times w_c; records its mode."""

    def __init__(self, dtype=np.float64):
        super().__init__()
        self.w = Parameter(np.array([1.0, 2.0, -1.0], dtype=dtype))
        self.modes = []

    def forward(self, x):
        self.modes.append((self.training, x.shape[0], x.dtype))
        return x.mean(axis=(2, 3)) * self.w


class Pool(Module):
    """The same pooling without a parameter."""

    def forward(self, x):
        return x.mean(axis=(2, 3))


class Double(Module):
    def forward(self, h):
        return h * 2.0


class WithHead(Method):
    def __init__(self, backbone, views=None):
        super().__init__(backbone, views=views)
        self.proj = Double()

    @property
    def head(self):
        return self.proj

    def forward(self, *views, indices=None):
        self.seen = (views, indices)
        return sum((self.backbone(v) ** 2).sum() for v in views)


class Indexed(WithHead):
    needs_indices = True


def noise_views(x, generator=None):
    g = nrandom.as_generator(generator, "cpu")
    return x + g.random(x.shape, dtype=x.dtype), x - g.random(x.shape, dtype=x.dtype)


def images(n=5, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).random((n, 3, 4, 4)).astype(dtype)


def test_embed_runs_the_backbone_in_eval_mode_without_grad_in_chunks_and_restores_the_mode():
    m = WithHead(PoolScale())
    x = images(5, np.float64)
    want = x.mean(axis=(2, 3)) * np.array([1.0, 2.0, -1.0])
    m.train()
    h = m.embed(x, batch_size=2)
    assert isinstance(h, Tensor) and not h.requires_grad
    np.testing.assert_allclose(h.numpy(), want, rtol=1e-12)
    assert m.backbone.modes == [(False, 2, np.float64), (False, 2, np.float64), (False, 1, np.float64)]
    assert m.training and m.backbone.training
    m.eval()
    m.backbone.modes = []
    np.testing.assert_array_equal(m.embed(Tensor(x)).numpy(), h.numpy())  # one chunk by default
    assert m.backbone.modes == [(False, 5, np.float64)]
    assert not m.training
    np.testing.assert_allclose(m.embed(x, projected=True).numpy(), 2 * want, rtol=1e-12)


def test_embed_chunks_512_images_by_default():
    m = WithHead(PoolScale())
    h = m.embed(np.ones((513, 3, 1, 1)))
    assert [n for _, n, _ in m.backbone.modes] == [512, 1] and h.shape == (513, 3)


def test_embed_casts_images_to_the_methods_dtype():
    x32, x64 = images(3), images(3, np.float64)
    h = WithHead(PoolScale(np.float64)).embed(x32)
    assert h.dtype == np.float64
    np.testing.assert_allclose(h.numpy(), x32.astype(np.float64).mean(axis=(2, 3)) * [1.0, 2.0, -1.0], rtol=1e-12)
    assert WithHead(PoolScale(np.float32)).embed(x64).dtype == np.float32
    assert WithHead(Pool()).embed(x32).dtype == np.float32   # no parameter: the images' dtype is kept
    assert WithHead(Pool()).embed(x64).dtype == np.float64


def test_embed_refuses_what_it_cannot_do():
    m = WithHead(PoolScale())
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        m.embed(images(), batch_size=0)
    with pytest.raises(ValueError, match=r"x must have shape \(N, C, H, W\), got \(5, 3\)"):
        m.embed(np.zeros((5, 3)))

    class Headless(Method):
        pass

    with pytest.raises(ValueError, match="Headless has no head to project with"):
        Headless(PoolScale()).embed(images(), projected=True)
    assert Headless(PoolScale()).embed(images()).shape == (5, 3)


def test_make_views_wraps_arrays_keeps_tensors_and_the_first_of_nested_pairs():
    x = images(2)
    m = WithHead(PoolScale(), views=lambda a, generator=None: a * 2)
    (v,) = m.make_views(x)  # a single array is one view
    assert isinstance(v, Tensor) and not v.requires_grad
    np.testing.assert_array_equal(v.numpy(), x * 2)
    t1, t2 = Tensor(x), Tensor(x + 1)
    m = WithHead(PoolScale(), views=lambda a, generator=None: (t1, t2))
    v1, v2 = m.make_views(x)
    assert v1 is t1 and v2 is t2
    m = WithHead(PoolScale(), views=lambda a, generator=None: [(a, 7), (a + 1, 8)])  # (patches, label) pairs
    v1, v2 = m.make_views(x)
    np.testing.assert_array_equal(v1.numpy(), x)
    np.testing.assert_array_equal(v2.numpy(), x + 1)


def test_make_views_refuses_what_is_not_an_array():
    with pytest.raises(TypeError, match="x must be an array or a Tensor, got list"):
        WithHead(PoolScale()).make_views([1, 2])


def test_the_default_views_are_simclrs_at_32_pixels():
    m = Method(PoolScale())
    v1, v2 = m.make_views(np.random.default_rng(0).random((2, 3, 40, 40)), generator=0)
    assert v1.shape == v2.shape == (2, 3, 32, 32)


def test_the_components_are_checked_naming_what_was_given():
    with pytest.raises(TypeError, match="backbone must be an npjem.nn.Module, got object"):
        Method(object())
    with pytest.raises(TypeError, match=r"views must be callable as views\(x, generator\), got int"):
        Method(PoolScale(), views=3)

    class Unfinished(Method):
        pass

    with pytest.raises(NotImplementedError, match=r"Unfinished must implement forward\(\*views\)"):
        Unfinished(PoolScale())(Tensor(images(2)))


def test_training_loss_draws_the_views_with_the_generator_given():
    x = images(3, np.float64)
    m = WithHead(PoolScale(), views=noise_views)
    a = m.training_loss(x, generator=3).item()
    v1, v2 = m.make_views(x, generator=3)
    assert a == m(v1, v2).item() == m.training_loss(x, generator=nrandom.Generator(3, "cpu")).item()
    assert m.seen[1] is None
    assert a != m.training_loss(x, generator=4).item()


def test_training_loss_passes_the_indices_to_a_method_that_needs_them():
    x = images(3, np.float64)
    m = Indexed(PoolScale(), views=noise_views)
    idx = np.array([2, 0, 1])
    loss = m.training_loss(x, indices=idx, generator=1)
    views, seen = m.seen
    assert seen is idx and len(views) == 2
    assert loss.item() == WithHead(PoolScale(), views=noise_views).training_loss(x, generator=1).item()
    with pytest.raises(ValueError, match="Indexed needs the data-set index of each sample: pass indices= "
                                         r"\(fit gets them from an IndexedDataLoader\)"):
        m.training_loss(x, generator=1)
    WithHead(PoolScale(), views=noise_views).training_loss(x, indices=idx)  # ignored when not needed


def test_check_two_views_wants_equal_shapes_and_enough_images():
    a = np.zeros((1, 3, 4, 4))
    check_two_views(a, a)  # one image is enough by default
    with pytest.raises(ValueError, match=r"the two views must have the same shape, got \(1, 3, 4, 4\) and "
                                         r"\(2, 3, 4, 4\)"):
        check_two_views(a, np.zeros((2, 3, 4, 4)))
    with pytest.raises(ValueError, match="^standardising: it needs at least 2 images, got 1$"):
        check_two_views(a, a, 2, "standardising")
    b = np.zeros((2, 1, 4, 4))
    check_two_views(b, b, 2, "standardising")  # exactly the minimum passes
    with pytest.raises(ValueError, match="^: it needs at least 3 images, got 2$"):
        check_two_views(b, b, 3)


def test_indexed_loader_in_order_yields_each_rows_position_as_int64():
    x = images(5)
    positions = [backend.to_numpy(idx) for _, _, idx in IndexedDataLoader(x, batch_size=2, shuffle=False)]
    assert [p.tolist() for p in positions] == [[0, 1], [2, 3], [4]]
    assert all(p.dtype == np.int64 for p in positions)
    for xb, _, idx in IndexedDataLoader(x, batch_size=2, shuffle=False):  # batches on the loader's device
        idx = backend.to_numpy(idx)
        np.testing.assert_array_equal(backend.to_numpy(xb), x[idx])
