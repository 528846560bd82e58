"""npjem: energy-based models and joint-embedding self-supervised learning from scratch."""
from . import backend, random  # noqa: F401

__version__ = "0.1.0"
