"""Checks the two-view methods' tests share: one ``fit`` step trains the method, and a
``state_dict`` round trip into a differently seeded copy restores every entry."""
import math

import numpy as np

from npjem import backend, optim
from npjem.methods import fit


def params(module):
    return {k: v.numpy().copy() for k, v in module.named_parameters()}  # host copies


def check_one_fit_step_changes_parameters(m, images, device):
    before = params(m)
    h = fit(m, [backend.to_device(images, device)], optim.Adam(m.trainable_parameters(), lr=1e-2), progress=False,
            generator=0)
    assert h.steps == 1 and math.isfinite(h["loss"][0])
    assert any(not np.array_equal(v, before[k]) for k, v in params(m).items())


def check_state_dict_round_trip(m, other, images, device):
    """``m`` runs one forward first (training-mode BatchNorm moves its running statistics)."""
    m(*m.make_views(backend.to_device(images, device), generator=2))
    other.load_state_dict(m.state_dict())
    for (k, a), (_, b) in zip(m.state_dict().items(), other.state_dict().items()):
        np.testing.assert_array_equal(backend.to_numpy(a), backend.to_numpy(b), err_msg=k)
