"""Tiny backbones, images and view makers shared by the method tests (8×8 images, 4–6 channels)."""
import numpy as np
import pytest

from npjem import backend

from npjem.data.augment import (
    Compose,
    RandomHorizontalFlip,
    RandomResizedCrop,
    TwoViews,
)
from npjem.nn import models


def tiny_backbone(seed=0):
    """ConvNet 3 → 4 → 6 channels, strides 2, 2: an 8×8 image becomes 6 features (a 4×4 tile too)."""
    return models.ConvNet(widths=(4, 6), strides=(2, 2), generator=seed)


def tiny_views():
    return TwoViews(Compose([RandomResizedCrop(8, scale=(0.5, 1.0)), RandomHorizontalFlip(0.5)]))


@pytest.fixture
def make_backbone():
    return tiny_backbone


@pytest.fixture
def make_views():
    return tiny_views


@pytest.fixture
def images():
    return np.random.default_rng(0).random((12, 3, 8, 8)).astype(np.float32)


#: For tests that check values on host arrays built by hand (the fake-GPU run of tests/methods
#: skips them); the device paths run in each method's fit-based tests.
cpu_only = pytest.mark.skipif(backend.default_device() != "cpu",
                              reason="values checked on host arrays; the device path runs in the fit-based tests")
