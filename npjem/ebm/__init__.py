"""Energy-based models: what needs the energy function itself, not only its values.

An energy F(x) (or F(x, y)) is pushed down on data and up elsewhere (lecture notes ``000_`` and
``004_``). This package holds the models, the samplers and the training procedures; every loss
on energies lives in :mod:`npjem.losses`, as the joint-embedding losses do. It imports
``losses``, ``nn`` and ``autograd``, never the other way round.
"""

# Energies, free energies, the Gibbs distribution and its NLL (energy.py).
from .energy import (  # noqa: F401
    ConditionalEnergy, ConvEnergy, MLPEnergy, free_energy, free_energy_min, gibbs, nll,
)
from .rbm import BernoulliRBM  # noqa: F401
from .dae import DenoisingAutoencoder  # noqa: F401

__all__ = ["MLPEnergy", "ConvEnergy", "ConditionalEnergy", "free_energy_min", "free_energy", "gibbs", "nll",
           "BernoulliRBM", "DenoisingAutoencoder"]
