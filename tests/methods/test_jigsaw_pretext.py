"""npjem.methods.JigsawPretext: Noroozi & Favaro's jigsaw task, probed like the joint-embedding methods."""
import itertools
import math

import numpy as np
import pytest

from npjem import optim
from npjem.autograd import Tensor
from npjem.data.augment import Jigsaw
from npjem.methods import fit
from npjem.methods.jigsaw import JigsawClassifier, JigsawPretext
from npjem.nn.models import ConvNet

from conftest import cpu_only


def _min_hamming(perms):
    d = (perms[:, None, :] != perms[None, :, :]).sum(-1)
    np.fill_diagonal(d, perms.shape[1] + 1)
    return int(d.min())


def _method(**kw):
    return JigsawPretext(ConvNet(widths=(8, 16), generator=0), generator=1, **kw)


def test_the_permutation_set_is_deterministic_of_the_requested_size_and_far_apart():
    a, b, c = (_method(n_permutations=100, permutation_seed=s).permutations for s in (0, 0, 1))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (100, 9)
    assert (np.sort(a, axis=1) == np.arange(9)).all()          # every row a permutation of the 9 tiles
    assert len({tuple(r) for r in a}) == 100                   # all distinct
    rng = np.random.default_rng(0)
    best_random = max(_min_hamming(np.array([rng.permutation(9) for _ in range(100)])) for _ in range(20))
    assert _min_hamming(a) >= 6 > best_random


def test_each_permutation_is_the_farthest_from_those_chosen_before_it():
    # the paper's greedy procedure, checked by brute force on a 2x2 grid (all 24 permutations)
    perms = Jigsaw(grid=2, n_permutations=8, permutation_seed=3).permutations
    pool = np.array(list(itertools.permutations(range(4))))
    for k in range(1, len(perms)):
        dist = lambda p: min(int((p != q).sum()) for q in perms[:k])  # noqa: E731
        assert dist(perms[k]) == max(dist(p) for p in pool if not any((p == q).all() for q in perms[:k]))


@cpu_only
def test_views_keep_the_permutation_index():
    m = _method(n_permutations=10, tile_size=(3, 3))
    x = np.random.default_rng(0).random((4, 3, 12, 12)).astype("float32")
    patches, j = m.make_views(x, generator=0)
    assert tuple(patches.shape) == (4, 9, 3, 3, 3) and tuple(j.shape) == (4,)
    assert ((j.numpy() >= 0) & (j.numpy() < 10)).all()
    assert tuple(m.logits(patches).shape) == (4, 10)
    assert m.embed(x).shape == (4, 16)  # the probe: the backbone on whole images


@cpu_only
def test_the_classifier_memorises_a_tiny_set():
    m = _method(n_permutations=4, tile_dim=16, hidden_dim=32)
    x = np.random.default_rng(0).random((16, 3, 12, 12)).astype("float32")
    hist = fit(m, [x] * 150, optim.Adam(m.trainable_parameters(), lr=3e-3), progress=False, generator=0)
    assert hist["loss"][0] == pytest.approx(math.log(4), abs=0.1)
    assert m.diagnostics["accuracy"] >= 0.95 and hist["loss"][-1] < 0.05
    # and on fresh draws of the same images' puzzles, not only on the last batch
    patches, j = m.make_views(x, generator=123)
    m.eval()
    assert (m.logits(patches).numpy().argmax(axis=1) == j.numpy()).mean() >= 0.9


@pytest.mark.parametrize("make, err, words", [
    (lambda: JigsawPretext(ConvNet(widths=(4,)), views=lambda x, generator=None: x), TypeError, "Jigsaw"),
    (lambda: _method(n_permutations=0), ValueError, "n_permutations"),
    (lambda: JigsawClassifier(8, num_tiles=9)(Tensor(np.zeros((2, 4, 8)))), ValueError, r"\(N, 9, F\)"),
    (lambda: _method(n_permutations=3).logits(np.zeros((2, 9, 3, 4), dtype="float32")), ValueError, "patches"),
])
def test_bad_arguments_name_themselves(make, err, words):
    with pytest.raises(err, match=words):
        make()
