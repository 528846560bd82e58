"""SwAV beyond what the twin fixes (mutation testing found these open):

- the queue holds the newest embeddings first, in order, batch by batch, for any queue length
  (not only twice the batch), and keeps the last rows of a batch longer than itself;
- the loss uses the temperature given, not the loss function's default;
- the diagnostics describe the first crop: its embedding std and its arg-max prototypes.
"""
import numpy as np
import pytest

from npjem.autograd import no_grad
from npjem.autograd import functional as F
from npjem.data.augment import Compose, RandomResizedCrop
from npjem.losses.clustering import sinkhorn_knopp, swav
from npjem.methods import MultiCropViews, SwAV
from npjem.methods._monitor import embedding_std

from conftest import tiny_backbone

from conftest import cpu_only  # noqa: E402

pytestmark = cpu_only


def method(**kw):
    views = MultiCropViews(Compose([RandomResizedCrop(8, scale=(0.5, 1.0))]), n_global=2)
    kw.setdefault("num_prototypes", 4)
    return SwAV(tiny_backbone(), hidden_dim=5, out_dim=3, views=views, generator=0, **kw)


def batch(seed, n=4):
    return np.random.default_rng(seed).random((n, 3, 8, 8)).astype(np.float32)


def embeddings(m, crops):
    """The normalised projections of each crop, computed apart (eval mode: BatchNorm's running
    statistics, so the grouping of crops into batches changes nothing)."""
    with no_grad():
        return [F.normalize(m.projector(m.backbone(c)), axis=1).numpy() for c in crops]


def test_the_queue_holds_the_newest_embeddings_first_in_order():
    m = method(queue_length=12)  # three batches of 4
    m.eval()
    seen = []
    for step in range(4):
        crops = m.make_views(batch(step), generator=step)
        m(*crops)
        seen.append(embeddings(m, crops[:2]))
        m.after_step(step, 10)
    q = m.queue.numpy()
    assert int(m.queue_count.numpy()[0]) == 12
    for i in range(2):  # one queue per assignment crop
        expected = np.concatenate([seen[3][i], seen[2][i], seen[1][i]], axis=0)  # newest first
        np.testing.assert_allclose(q[i], expected, rtol=1e-5, atol=1e-6)


def test_a_batch_longer_than_the_queue_leaves_its_last_rows():
    m = method(queue_length=3)
    m.eval()
    crops = m.make_views(batch(0, n=5), generator=0)
    m(*crops)
    z = embeddings(m, crops[:2])
    m.after_step(0, 10)
    assert int(m.queue_count.numpy()[0]) == 3
    for i in range(2):
        np.testing.assert_allclose(m.queue.numpy()[i], z[i][-3:], rtol=1e-5, atol=1e-6)


def test_loss_uses_the_temperature_given_and_diagnostics_describe_the_first_crop():
    m = method(temperature=0.3, freeze_prototypes_steps=0)
    m.eval()
    crops = m.make_views(batch(1, n=6), generator=1)
    loss = m(*crops)
    z = embeddings(m, crops)
    w = m.prototypes.weight.numpy()
    scores = [zi @ w.T for zi in z]
    codes = [sinkhorn_knopp(s, epsilon=0.05, n_iters=3) for s in scores]
    assert loss.item() == pytest.approx(swav(scores, codes, temperature=0.3).item(), rel=1e-5)
    assert loss.item() != pytest.approx(swav(scores, codes, temperature=0.1).item(), rel=1e-3)
    d = m.diagnostics
    assert d["loss"] == pytest.approx(loss.item())
    assert d["embedding_std"] == pytest.approx(embedding_std(z[0]), rel=1e-5)
    assert d["embedding_std"] != pytest.approx(embedding_std(z[1]), rel=1e-3)
    assert d["prototypes_used"] == len(set(scores[0].argmax(axis=1).tolist()))
    assert d["queue_used"] is False


def test_a_given_projector_sets_the_prototype_width():
    from npjem.nn import Linear, Sequential

    m = SwAV(tiny_backbone(), projector=Linear(6, 5, generator=0), num_prototypes=4, generator=0)
    assert m.out_dim == 5 and tuple(m.prototypes.weight.shape) == (4, 5)
    m = SwAV(tiny_backbone(), projector=Sequential(Linear(6, 3, generator=0)), out_dim=3, num_prototypes=4,
             generator=0)  # no out_features: out_dim is the width
    assert m.out_dim == 3 and tuple(m.prototypes.weight.shape) == (4, 3)


def test_multi_crop_views_default_to_two_global_crops_drawn_from_the_seed():
    crop = Compose([RandomResizedCrop(8, scale=(0.2, 1.0))])
    local = Compose([RandomResizedCrop(4, scale=(0.2, 0.5))])
    views = MultiCropViews(crop)
    x = batch(0)
    assert [v.shape for v in views(x, generator=0)] == [(4, 3, 8, 8)] * 2
    views = MultiCropViews(crop, local, n_local=2)
    a, b, c = views(x, generator=5), views(x, generator=5), views(x, generator=6)
    assert [v.shape for v in a] == [(4, 3, 8, 8)] * 2 + [(4, 3, 4, 4)] * 2
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)  # the seed fixes every crop, local ones too
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[2], a[3])  # each crop drawn anew
    assert all(not np.array_equal(u, v) for u, v in zip(a, c))


@pytest.mark.parametrize("make", [
    lambda: MultiCropViews(Compose([RandomResizedCrop(8)]), Compose([RandomResizedCrop(4)]), n_local=-1),
    lambda: method(queue_start_step=-1),
    lambda: method(freeze_prototypes_steps=-1),
    lambda: method(queue_length=-1),
])
def test_negative_counts_are_refused(make):
    with pytest.raises(ValueError):
        make()


def test_prototypes_used_counts_the_first_crops_arg_max_prototypes():
    m = method(num_prototypes=6)
    m.eval()
    first = batch(2, n=6)
    crops = (first, np.repeat(first[:1], 6, axis=0))  # the second crop: one image six times
    z0 = embeddings(m, crops)[0]
    m.prototypes.weight.data[...] = z0  # each row of the first crop nearest to its own prototype
    m(*crops)
    assert m.diagnostics["prototypes_used"] == 6  # the second crop alone would use one


def test_after_step_before_any_forward_leaves_the_queue_empty():
    m = method(queue_length=8)
    m.after_step(0, 10)
    assert int(m.queue_count.numpy()[0]) == 0 and int(m.num_steps.numpy()[0]) == 1
    assert m.queue_count.dtype == np.int64
