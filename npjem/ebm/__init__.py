"""Energy-based models: what needs the energy function itself, not only its values.

An energy F(x) (or F(x, y)) is pushed down on data and up elsewhere (NYU Deep Learning
notes, ch. 8-1 "Contrastive Methods in Energy-Based Models"). This package holds the models, the samplers and the training procedures; every loss
on energies lives in :mod:`npjem.losses`, as the joint-embedding losses do. It imports
``losses``, ``nn`` and ``autograd``, never the other way round.

- ``energy``: energy modules (MLP, ConvNet, conditional), free energies, Gibbs, exact NLL;
- ``samplers``: Langevin, MALA, Metropolis–Hastings on bits, block Gibbs for the RBM;
- ``training``: maximum likelihood with MCMC negatives (CD-k, persistent CD, replay buffer);
- ``rbm``: the Bernoulli RBM; ``dae``: the denoising autoencoder;
- ``objectives``: NCE, score matching (exact, denoising, sliced), ratio matching,
  pseudo-likelihood, minimum probability flow;
- ``latent``: K-means, sparse coding (ISTA, FISTA, LISTA), dictionary learning, the VAE;
- ``plot``: 2-D energy landscapes to PNG and the grid NLL.
"""
from . import latent, objectives, plot, samplers, training
from .dae import DenoisingAutoencoder
from .energy import ConditionalEnergy, ConvEnergy, MLPEnergy, free_energy, free_energy_min, gibbs, nll
from .plot import gaussian_nll, grid_log_partition, grid_nll, plot_landscape
from .rbm import BernoulliRBM
from .samplers import (
    MALA,
    Langevin,
    MetropolisHastings,
    block_gibbs,
    energy_and_grad,
    langevin,
    mala,
    metropolis_hastings,
)
from .training import CDNegatives, PersistentNegatives, ReplayBuffer, contrastive_divergence_loss, train_ebm

__all__ = [
    "latent", "objectives", "plot", "samplers", "training",
    "MLPEnergy", "ConvEnergy", "ConditionalEnergy", "free_energy_min", "free_energy", "gibbs", "nll",
    "langevin", "mala", "metropolis_hastings", "block_gibbs", "energy_and_grad", "Langevin", "MALA",
    "MetropolisHastings", "contrastive_divergence_loss", "CDNegatives", "PersistentNegatives",
    "ReplayBuffer", "train_ebm",
    "plot_landscape", "grid_log_partition", "grid_nll", "gaussian_nll",
    "BernoulliRBM", "DenoisingAutoencoder",
]
