"""The contrastive losses' survivors of a whole mutmut run, each pinned by a value or a promise of
the docstring: the memory-bank negatives of PIRL's NCE come as (K, d) or (B, K, d) and nothing else."""
import numpy as np
import pytest

from npjem import Tensor
from npjem.losses import nce_loss, nce_memory_loss, nce_normalizer


def _unit_rows(rng, *shape):
    a = rng.standard_normal(shape)
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


@pytest.mark.parametrize("shape", [(3,), (1, 4, 5, 3)])
def test_memory_negatives_of_another_rank_are_refused(shape):
    # (3,) is one negative without its K axis, (1, 4, 5, 3) a batch of per-sample banks: neither
    # is the (K, d) or (B, K, d) the docstring takes, whichever axis happens to fit.
    rng = np.random.default_rng(0)
    v, mpos = rng.standard_normal((4, 3)), _unit_rows(rng, 4, 3)
    mneg = _unit_rows(rng, *shape)
    msg = r"^memory_neg must have shape \(K, 3\) .* or \(4, K, 3\) "
    for call in (lambda: nce_memory_loss(v, mpos, mneg, dataset_size=100),
                 lambda: nce_loss(v, v, mpos, mneg, dataset_size=100),
                 lambda: nce_normalizer(v, mpos, mneg, dataset_size=100)):
        with pytest.raises(ValueError, match=msg):
            call()


@pytest.mark.parametrize("h", ["paper", "notes"])
def test_pirls_loss_passes_normalize_to_both_terms(h):
    # nce_loss is λ L_NCE(m, g) + (1 − λ) L_NCE(m, f) with every option of nce_memory_loss used for
    # both terms, normalize=False included: on rows of norm 2 and 3 the raw dot products are 2 and
    # 3 times the cosines, so the mixture of the unnormalised terms is another number.
    rng = np.random.default_rng(1)
    f, g = 2 * _unit_rows(rng, 4, 3), 3 * _unit_rows(rng, 4, 3)
    mpos, mneg = _unit_rows(rng, 4, 3), _unit_rows(rng, 5, 3)
    kw = dict(dataset_size=50, temperature=0.5, h=h)
    raw = 0.25 * nce_memory_loss(g, mpos, mneg, normalize=False, **kw).item() \
        + 0.75 * nce_memory_loss(f, mpos, mneg, normalize=False, **kw).item()
    unit = 0.25 * nce_memory_loss(g, mpos, mneg, **kw).item() + 0.75 * nce_memory_loss(f, mpos, mneg, **kw).item()
    assert abs(raw - unit) > 0.1
    assert nce_loss(f, g, mpos, mneg, lam=0.25, normalize=False, **kw).item() == pytest.approx(raw, rel=1e-13)
    assert nce_loss(f, g, mpos, mneg, lam=0.25, **kw).item() == pytest.approx(unit, rel=1e-13)
