"""What npjem implements, in one list: each method, objective and loss with its paper, its
defaults here and the file that holds it (``npjem methods`` prints it)."""
from __future__ import annotations

import inspect
import os

__all__ = ["entries"]

# (name, kind, paper (None: the recipe's, npjem.recipes.SOURCES), the object that implements it, how it is run)
_METHODS = [
    ("simclr", "joint embedding, contrastive", None, "npjem.methods:SimCLR", "npjem pretrain --method simclr"),
    ("moco", "joint embedding, contrastive", None, "npjem.methods:MoCo", "npjem pretrain --method moco"),
    ("pirl", "joint embedding, contrastive", None, "npjem.methods:PIRL", "npjem pretrain --method pirl"),
    ("barlow_twins", "joint embedding, non-contrastive", None, "npjem.methods:BarlowTwins", "npjem pretrain --method barlow_twins"),
    ("vicreg", "joint embedding, non-contrastive", None, "npjem.methods:VICReg", "npjem pretrain --method vicreg"),
    ("swav", "joint embedding, clustering", None, "npjem.methods:SwAV", "npjem pretrain --method swav"),
    ("byol", "joint embedding, distillation", None, "npjem.methods:BYOL", "npjem pretrain --method byol"),
    ("simsiam", "joint embedding, distillation", None, "npjem.methods:SimSiam", "npjem pretrain --method simsiam"),
    ("dino", "joint embedding, distillation", None, "npjem.methods:DINO", "npjem pretrain --method dino"),
    ("data2vec", "joint embedding, distillation", None, "npjem.methods:Data2Vec", "npjem pretrain --method data2vec"),
    ("cd", "EBM, maximum likelihood (MCMC)", "Hinton 2002, contrastive divergence", "npjem.ebm.training:train_ebm", "npjem ebm cd"),
    ("pcd", "EBM, maximum likelihood (MCMC)", "Tieleman 2008, persistent CD", "npjem.ebm.training:PersistentNegatives", "npjem ebm pcd"),
    ("replay", "EBM, maximum likelihood (MCMC)", "Du & Mordatch 2019, replay buffer", "npjem.ebm.training:ReplayBuffer", "npjem ebm replay"),
    ("nce", "EBM, contrastive without sampling", "Gutmann & Hyvärinen 2010, NCE", "npjem.ebm.objectives:nce", "npjem ebm nce"),
    ("sm", "EBM, score matching", "Hyvärinen 2005, score matching", "npjem.ebm.objectives:score_matching", "npjem ebm sm"),
    ("ssm", "EBM, score matching", "Song et al. 2019, sliced score matching", "npjem.ebm.objectives:sliced_score_matching", "npjem ebm ssm"),
    ("dsm", "EBM, score matching", "Vincent 2011, denoising score matching", "npjem.ebm.objectives:denoising_score_matching", "npjem ebm dsm"),
    ("ratio_matching", "EBM, binary data", "Hyvärinen 2007, ratio matching", "npjem.ebm.objectives:ratio_matching", "Python API"),
    ("pseudo_likelihood", "EBM, binary data", "Besag 1975, pseudo-likelihood", "npjem.ebm.objectives:pseudo_likelihood", "Python API"),
    ("mpf", "EBM, binary data", "Sohl-Dickstein et al. 2011, minimum probability flow", "npjem.ebm.objectives:minimum_probability_flow", "Python API"),
    ("rbm", "EBM, latent variable", "Smolensky 1986; Hinton 2002; Tieleman & Hinton 2009 (FPCD)", "npjem.ebm.rbm:BernoulliRBM", "examples/rbm_digits.py"),
    ("dae", "EBM, denoising autoencoder; the generative baseline", None, "npjem.methods:DAE",
     "npjem pretrain --method dae (images); npjem.ebm.dae.DenoisingAutoencoder (vectors)"),
    ("jigsaw", "pretext task baseline", None, "npjem.methods:JigsawPretext", "npjem pretrain --method jigsaw"),
    ("kmeans", "EBM, regularised latent variable", "Lloyd 1982, as an energy", "npjem.ebm.latent:KMeansEnergy", "Python API"),
    ("sparse_coding", "EBM, regularised latent variable", "Olshausen & Field 1996; ISTA; Beck & Teboulle 2009 (FISTA); Gregor & LeCun 2010 (LISTA)", "npjem.ebm.latent:dictionary_learning", "examples/sparse_coding_digits.py"),
    ("vae", "EBM, regularised latent variable", "Kingma & Welling 2014, its free energy", "npjem.ebm.latent:VAE", "examples/vae_free_energy.py"),
]


def _resolve(target):
    import importlib  # noqa: PLC0415

    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _source(obj):
    path = inspect.getsourcefile(obj)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.relpath(path, root)


def entries():
    """One dict per method, objective and loss: ``name``, ``kind``, ``paper``, ``defaults``,
    ``source`` (the file, relative to the repository) and ``run`` (how to run it)."""
    from . import crosscheck, recipes  # noqa: PLC0415
    from .ebm import toy2d  # noqa: PLC0415

    out = []
    for name, kind, paper, target, run in _METHODS:
        paper = recipes.SOURCES[name]["paper"] if paper is None else paper
        if name in recipes.DEFAULTS:
            defaults = ", ".join(f"{k}={v}" for k, v in recipes.DEFAULTS[name].items())
        elif name in toy2d.OBJECTIVES:
            defaults = ", ".join(f"{k}={v}" for k, v in recipes.ebm_defaults(name).items())
        else:
            defaults = "see the docstring"
        out.append({"name": name, "kind": kind, "paper": paper, "defaults": defaults,
                    "source": _source(_resolve(target)), "run": run})
    for name in crosscheck.names():
        spec = crosscheck.get(name)
        out.append({"name": name, "kind": "loss", "paper": spec.doc,
                    "defaults": ", ".join(f"{k}={v}" for k, v in spec.kwargs.items()) or "-",
                    "source": _source(spec.fn), "run": f"npjem reference {name} --out {name}.npz"})
    return out
