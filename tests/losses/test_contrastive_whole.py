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
