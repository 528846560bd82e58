"""Energy-based models: what needs the energy function itself, not only its values.

An energy F(x) (or F(x, y)) is pushed down on data and up elsewhere (lecture notes ``000_`` and
``004_``). This package holds the models, the samplers and the training procedures; every loss
on energies lives in :mod:`npjem.losses`, as the joint-embedding losses do. It imports
``losses``, ``nn`` and ``autograd``, never the other way round.
"""
from . import samplers, training  # noqa: F401,E402
from .samplers import MALA, Langevin, MetropolisHastings, gibbs, langevin, mala, metropolis_hastings  # noqa: F401,E402
from .training import CDNegatives, PersistentNegatives, ReplayBuffer, contrastive_divergence_loss, train_ebm  # noqa: F401,E402
