"""Data2Vec beyond what the twin fixes (mutation testing found these open):

- the linear EMA schedule over a single step: τ(0) = ``momentum``, τ(1) = ``final_momentum``;
- with ``momentum_steps=0`` τ is ``final_momentum`` from the start.
"""
import pytest

from npjem.data.augment import Compose, RandomResizedCrop
from npjem.methods import Data2Vec
from npjem.nn.models import VisionTransformer


def method(**kw):
    vit = VisionTransformer(img_size=8, patch_size=4, embed_dim=4, depth=2, num_heads=1, generator=0)
    return Data2Vec(vit, top_k=2, views=Compose([RandomResizedCrop(8)]), generator=0, **kw)


def test_a_one_step_schedule_starts_at_momentum_and_ends_at_final_momentum():
    m = method(momentum=0.9, final_momentum=0.99, momentum_steps=1)
    assert m.ema_momentum(0) == pytest.approx(0.9)
    assert m.ema_momentum(1) == pytest.approx(0.99) and m.ema_momentum(5) == pytest.approx(0.99)


def test_no_schedule_is_final_momentum_from_the_start():
    m = method(momentum=0.9, final_momentum=0.99, momentum_steps=0)
    assert [m.ema_momentum(k) for k in range(3)] == pytest.approx([0.99] * 3)
