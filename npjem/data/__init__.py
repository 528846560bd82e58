from .datasets import DataLoader, Dataset, digits, image_folder, shapes, toy2d  # noqa: F401
from . import augment  # noqa: F401,E402
from .augment import (  # noqa: F401,E402
    ColorJitter, Compose, GaussianBlur, GaussianNoise, Jigsaw, MultiCrop, Normalize, RandomApply,
    RandomGrayscale, RandomHorizontalFlip, RandomResizedCrop, Solarize, TwoViews, byol_views,
    random_patch_mask, simclr_views,
)
