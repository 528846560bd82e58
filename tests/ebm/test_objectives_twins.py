"""NCE and denoising score matching training steps against PyTorch twins (float64, ≥ 10 steps).

The twins are written from the papers and the authors' code, not from npjem's:

* NCE (Gutmann & Hyvärinen 2012, eqs. 8-9): log p_m(u) = −E(u) − c with c learned,
  G(u) = log p_m(u) − log p_n(u), h(u) = 1/(1 + ν e^{−G(u)}), and the step minimises
  −J_T = −(1/T_d)[Σ_t log h(x_t) + Σ_t log(1 − h(y_t))], T_n = ν T_d noise points per step.
* DSM with an energy: Song et al.'s ``losses/dsm.py`` (sliced_score_matching):
  ``dlogp = σ²∇ₓ̃(−E)``, ``loss = mean ‖dlogp + σε‖² / 2``, which is σ⁴ times Vincent's
  ½‖s + ε/σ‖², so npjem runs with ``weight_power=4``.
* DSM with a noise-conditional score network at several levels: NCSN's
  ``anneal_dsm_score_estimation`` (Song & Ermon 2019): ``target = −(x̃ − x)/σ²``,
  ``½‖s − target‖² σ^anneal_power`` with anneal_power 2, a level per sample; npjem's default.

Each test feeds both the same weights, data batches and noise (ε, levels, noise samples), takes
the same optimizer steps and compares the loss, every parameter and the optimizer state after
every step.
"""
import math

import numpy as np
import pytest

from npjem import nn, optim
from npjem.autograd import Tensor
from npjem.ebm import MLPEnergy
from npjem.ebm.objectives import denoising_score_matching, nce

from _twin_rng import ScriptedGenerator, Worst, check_steps

torch = pytest.importorskip("torch")

D, N, BATCH, STEPS = 2, 24, 6, 12
HIDDEN = (12, 12)


def _data():
    rng = np.random.default_rng(5)
    angles = rng.uniform(0, 2 * np.pi, N)
    return np.stack([1.5 * np.cos(angles), np.sin(angles)], axis=1) + 0.1 * rng.standard_normal((N, D))


def _mlp(out_features, generator):
    """An npjem MLP (Linear → swish → … → Linear) and its torch copy with the same weights."""
    layers, d = [], D
    for h in HIDDEN:
        layers += [nn.Linear(d, h, device="cpu", dtype="float64", generator=generator), nn.SiLU()]
        d = h
    layers.append(nn.Linear(d, out_features, device="cpu", dtype="float64", generator=generator))
    ours = nn.Sequential(*layers)
    t_layers, d = [], D
    for h in HIDDEN:
        t_layers += [torch.nn.Linear(d, h), torch.nn.SiLU()]
        d = h
    t_layers.append(torch.nn.Linear(d, out_features))
    theirs = torch.nn.Sequential(*t_layers).double()
    theirs.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ours.state_dict().items()})
    return ours, theirs


def _batches(rng):
    order = np.concatenate([rng.permutation(N) for _ in range(-(-STEPS * BATCH // N))])
    return [order[s * BATCH:(s + 1) * BATCH] for s in range(STEPS)]


def _snapshot(loss, named, opt_state):
    return {"loss": float(loss),
            "params": {k: np.array(v, dtype=np.float64) for k, v in named.items()},
            "opt": {i: {n: np.array(a, dtype=np.float64) for n, a in s.items()} for i, s in opt_state.items()}}


def _torch_state(opt):
    return {i: {n: (v.detach().numpy() if torch.is_tensor(v) else v) for n, v in s.items()}
            for i, s in opt.state_dict()["state"].items()}


def _step_torch(opt, loss, net, extra=None):
    """One optimizer step of the twin, and its snapshot (``extra``: more named parameters)."""
    opt.zero_grad()
    loss.backward()
    opt.step()
    named = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    named.update({k: v.detach().numpy().copy() for k, v in (extra or {}).items()})
    return _snapshot(loss.item(), named, _torch_state(opt))


def _step_npjem(opt, loss, model, extra=None):
    """One npjem optimizer step, and its snapshot."""
    opt.zero_grad()
    loss.backward()
    opt.step()
    named = {k: v.copy() for k, v in model.state_dict().items()}
    named.update({k: v.data.copy() for k, v in (extra or {}).items()})
    return _snapshot(loss.item(), named, opt.state_dict()["state"])


def _compare(ours, reference, worst):
    assert len(ours) == len(reference) == STEPS
    check_steps(worst, ours, reference)
    moved = max(np.abs(ours[-1]["params"][k] - ours[0]["params"][k]).max() for k in ours[0]["params"])
    assert moved > 1e-4, "the parameters hardly moved: the comparison would prove little"
    return worst


# ------------------------------------------------------------------ NCE

NU = 2  # T_n / T_d


def _nce_inputs():
    rng = np.random.default_rng(11)
    data = _data()
    mu, cov = data.mean(axis=0), 1.5 ** 2 * np.cov(data.T)  # the data's Gaussian, widened
    chol = np.linalg.cholesky(cov)
    prec, logdet = np.linalg.inv(cov), np.linalg.slogdet(cov)[1]

    def log_pn(u):
        z = u - mu
        return -0.5 * np.einsum("ni,ij,nj->n", z, prec, z) - 0.5 * (D * math.log(2 * math.pi) + logdet)

    steps = []
    for idx in _batches(rng):
        x = data[idx]
        y = mu + rng.standard_normal((NU * BATCH, D)) @ chol.T
        steps.append((x, y, log_pn(x), log_pn(y)))
    return steps


def _nce_reference(net, steps, lr, planted_nu=None):
    c = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
    opt = torch.optim.Adam(list(net.parameters()) + [c], lr=lr)
    out = []
    for x, y, lpx, lpy in steps:
        x, y, lpx, lpy = (torch.from_numpy(a) for a in (x, y, lpx, lpy))
        t_d, t_n = x.shape[0], y.shape[0]
        nu = t_n / t_d if planted_nu is None else planted_nu
        # G(u) = log p_m(u) − log p_n(u), log p_m = −E − c; h = 1/(1 + ν exp(−G)) = σ(G − log ν).
        g_x = -net(x).squeeze(1) - c - lpx
        g_y = -net(y).squeeze(1) - c - lpy
        log_h_x = torch.nn.functional.logsigmoid(g_x - math.log(nu))
        log_1mh_y = torch.nn.functional.logsigmoid(-(g_y - math.log(nu)))
        loss = -(log_h_x.sum() + log_1mh_y.sum()) / t_d
        out.append(_step_torch(opt, loss, net, {"log_z": c}))
    return out


def _nce_npjem(model, steps, lr):
    energy = _EnergyOf(model)
    c = nn.Parameter(np.zeros((), dtype=np.float64))
    opt = optim.Adam(list(model.parameters()) + [c], lr=lr)
    out = []
    for x, y, lpx, lpy in steps:
        loss = nce(energy, Tensor(x), Tensor(y), lpx, lpy, log_z=c)
        out.append(_step_npjem(opt, loss, model, {"log_z": c}))
    return out


class _EnergyOf:
    """An MLP with one output as an energy (N, D) → (N,)."""

    def __init__(self, net):
        self.net = net

    def __call__(self, x):
        return self.net(x).reshape((x.shape[0],))


def test_nce_training_matches_gutmann_hyvarinen_step_for_step():
    model, net = _mlp(1, generator=3)
    steps = _nce_inputs()
    worst = _compare(_nce_npjem(model, steps, 1e-2), _nce_reference(net, steps, 1e-2), Worst(rtol=1e-9))
    print(f"NCE: worst relative difference {worst.value:.3g} ({worst.where})")


def test_nce_twin_catches_another_noise_ratio():
    model, net = _mlp(1, generator=3)
    steps = _nce_inputs()
    with pytest.raises(AssertionError, match="relative difference"):
        _compare(_nce_npjem(model, steps, 1e-2), _nce_reference(net, steps, 1e-2, planted_nu=1.0), Worst())


# ------------------------------------------------------------------ DSM, one level, an energy

SIGMA = 0.3


def _dsm_draws():
    rng = np.random.default_rng(21)
    return _batches(rng), [rng.standard_normal((BATCH, D)) for _ in range(STEPS)]


def _song_dsm_reference(net, data, batches, eps, sigma, lr):
    """``losses/dsm.py`` of Song et al. (2019), the noise ``vector = randn_like(samples) * σ`` given."""
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    out = []
    for idx, e in zip(batches, eps):
        samples = torch.from_numpy(data[idx]).requires_grad_(True)
        vector = torch.from_numpy(e) * sigma
        perturbed_inputs = samples + vector
        logp = -net(perturbed_inputs).squeeze(1)
        dlogp = sigma ** 2 * torch.autograd.grad(logp.sum(), perturbed_inputs, create_graph=True)[0]
        kernel = vector
        loss = torch.norm(dlogp + kernel, dim=-1) ** 2
        loss = loss.mean() / 2.
        out.append(_step_torch(opt, loss, net))
    return out


def _dsm_npjem(model, data, batches, eps, sigma, lr, **kw):
    energy = _EnergyOf(model)
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    gen = ScriptedGenerator(standard_normal=list(eps))
    out = []
    for idx in batches:
        loss = denoising_score_matching(energy, Tensor(data[idx]), sigma, generator=gen, **kw)
        out.append(_step_npjem(opt, loss, model))
    gen.assert_consumed()
    return out


def test_energy_dsm_training_matches_song_et_al_dsm_py_with_weight_power_4():
    model, net = _mlp(1, generator=4)
    data = _data()
    batches, eps = _dsm_draws()
    ours = _dsm_npjem(model, data, batches, eps, SIGMA, 0.5, weight_power=4)
    worst = _compare(ours, _song_dsm_reference(net, data, batches, eps, SIGMA, 0.5), Worst(rtol=1e-9))
    print(f"DSM (energy, dsm.py): worst relative difference {worst.value:.3g} ({worst.where})")


def test_energy_dsm_twin_catches_another_weight():
    model, net = _mlp(1, generator=4)
    data = _data()
    batches, eps = _dsm_draws()
    ours = _dsm_npjem(model, data, batches, eps, SIGMA, 0.5, weight_power=2)
    with pytest.raises(AssertionError, match="relative difference"):
        _compare(ours, _song_dsm_reference(net, data, batches, eps, SIGMA, 0.5), Worst())


def test_energy_dsm_default_weight_is_vincent_not_song():
    # npjem's default for one level is Vincent's unweighted ½‖s + ε/σ‖²: σ⁻⁴ times dsm.py's loss.
    model, net = _mlp(1, generator=4)
    data = _data()
    batches, eps = _dsm_draws()
    ours = _dsm_npjem(model, data, batches[:1], eps[:1], SIGMA, 0.0)
    theirs = _song_dsm_reference(net, data, batches[:1], eps[:1], SIGMA, 0.0)
    assert ours[0]["loss"] == pytest.approx(theirs[0]["loss"] / SIGMA ** 4, rel=1e-12)


# ------------------------------------------------------------------ DSM, several levels, a score network

SIGMAS = np.geomspace(1.0, 0.05, 4)


class _NoiseConditional:
    """s(x̃, σ) = MLP(x̃) / σ: NCSNv2's parametrisation of a noise-conditional score."""

    def __init__(self, net):
        self.net = net

    def __call__(self, x, sigma):
        return self.net(x) / sigma.reshape((x.shape[0], 1))


def _ncsn_reference(net, data, batches, labels, eps, lr):
    """NCSN's ``anneal_dsm_score_estimation`` (anneal_power 2); labels and ε given."""
    sigmas = torch.from_numpy(SIGMAS)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    out = []
    for idx, lab, e in zip(batches, labels, eps):
        samples = torch.from_numpy(data[idx])
        used_sigmas = sigmas[torch.from_numpy(lab)].view(samples.shape[0], 1)
        perturbed_samples = samples + torch.from_numpy(e) * used_sigmas
        target = -1 / (used_sigmas ** 2) * (perturbed_samples - samples)
        scores = net(perturbed_samples) / used_sigmas
        loss = 1 / 2. * ((scores - target) ** 2).sum(dim=-1) * used_sigmas.squeeze() ** 2.
        loss = loss.mean(dim=0)
        out.append(_step_torch(opt, loss, net))
    return out


def _ncsn_comparison(**kw):
    model, net = _mlp(D, generator=6)
    data = _data()
    rng = np.random.default_rng(31)
    batches = _batches(rng)
    labels = [rng.integers(0, len(SIGMAS), BATCH) for _ in range(STEPS)]
    eps = [rng.standard_normal((BATCH, D)) for _ in range(STEPS)]
    score = _NoiseConditional(model)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    gen = ScriptedGenerator(standard_normal=list(eps), integers=list(labels))
    ours = []
    for idx in batches:
        loss = denoising_score_matching(score, Tensor(data[idx]), list(SIGMAS), parametrization="score",
                                        generator=gen, **kw)
        ours.append(_step_npjem(opt, loss, model))
    gen.assert_consumed()
    return _compare(ours, _ncsn_reference(net, data, batches, labels, eps, 1e-2), Worst(rtol=1e-9))


def test_score_network_dsm_matches_ncsn_anneal_dsm_step_for_step():
    worst = _ncsn_comparison()
    print(f"DSM (score network, NCSN): worst relative difference {worst.value:.3g} ({worst.where})")


def test_ncsn_twin_catches_another_weight():
    with pytest.raises(AssertionError, match="relative difference"):
        _ncsn_comparison(weight_power=0.0)
