"""Energy-based models: what needs the energy function itself, not only its values.

An energy F(x) (or F(x, y)) is pushed down on data and up elsewhere (lecture notes ``000_`` and
``004_``). This package holds the models, the samplers and the training procedures; every loss
on energies lives in :mod:`npjem.losses`, as the joint-embedding losses do. It imports
``losses``, ``nn`` and ``autograd``, never the other way round.
"""
from . import objectives  # noqa: F401,E402  (NCE, score matching, ratio matching, PL, MPF)
from . import latent  # noqa: F401,E402  (K-means, sparse coding: ISTA/FISTA/LISTA, dictionary learning, VAE)
