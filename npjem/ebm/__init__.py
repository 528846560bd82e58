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

__all__ = ["MLPEnergy", "ConvEnergy", "ConditionalEnergy", "free_energy_min", "free_energy", "gibbs", "nll"]

# MCMC samplers (samplers.py) and maximum-likelihood training with MCMC negatives (training.py).
from . import samplers, training  # noqa: F401,E402
from .samplers import (  # noqa: F401,E402
    MALA, Langevin, MetropolisHastings, block_gibbs, energy_and_grad, langevin, mala, metropolis_hastings,
)
from .training import (  # noqa: F401,E402
    CDNegatives, PersistentNegatives, ReplayBuffer, contrastive_divergence_loss, train_ebm,
)

__all__ += ["langevin", "mala", "metropolis_hastings", "block_gibbs", "energy_and_grad", "Langevin", "MALA",
            "MetropolisHastings", "contrastive_divergence_loss", "CDNegatives", "PersistentNegatives",
            "ReplayBuffer", "train_ebm"]

# 2-D landscapes to PNG and the grid NLL (plot.py).
from . import plot  # noqa: F401,E402
from .plot import gaussian_nll, grid_log_partition, grid_nll, plot_landscape  # noqa: F401,E402

__all__ += ["plot_landscape", "grid_log_partition", "grid_nll", "gaussian_nll"]

# The Bernoulli RBM (rbm.py) and the denoising autoencoder (dae.py).
from .rbm import BernoulliRBM  # noqa: E402,F401
from .dae import DenoisingAutoencoder  # noqa: E402,F401

# Objectives without sampling (objectives.py) and regularised latent-variable EBMs (latent.py).
from . import objectives  # noqa: F401,E402  (NCE, score matching, ratio matching, PL, MPF)
from . import latent  # noqa: F401,E402  (K-means, sparse coding: ISTA/FISTA/LISTA, dictionary learning, VAE)
