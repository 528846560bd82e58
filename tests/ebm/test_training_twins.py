"""CD-k, persistent CD and the replay buffer, step for step against PyTorch loops written from the
reference code (float64, the same random draws fed to both).

The twins follow the authors' training loops, not npjem's code:

* the Langevin update of Nijkamp et al. (short-run / ``ebm-anatomy``'s ``sample_s_t``) and of JEM
  (Grathwohl et al.'s ``sample_q``): ∇ₓE of the summed energy through ``torch.autograd.grad``,
  then one in-place update ``x += −η∇ₓE + σξ``;
* PCD: ``ebm-anatomy``'s persistent bank (``t.randperm(bank)[:batch]`` picks the chains, the
  results are written back at those indices), its SGD with the loss scaled by 2/ε² and the
  learning rate by ε²/2;
* the replay buffer: JEM's ``sample_p_0`` (indices with replacement, ``choose_random =
  rand < reinit_freq``, ``choose·noise + (1 − choose)·buffer``) and its write-back;
* the loss: Du & Mordatch's ``loss_ml = mean E₊ − mean E₋`` plus ``α(mean E₊² + mean E₋²)``,
  Adam with β₁ = 0 (IGEBM) or PyTorch's default betas (JEM);
* CD-k: the chains start at the positive batch itself (Hinton 2002).

After every step the loss, every parameter, the optimizer's state, the negatives and the
persistent particles or buffer agree to a relative 1e-9.
"""
import numpy as np
import pytest

from npjem import optim
from npjem.ebm import MLPEnergy
from npjem.ebm.samplers import Langevin
from npjem.ebm.training import PersistentNegatives, ReplayBuffer, train_ebm

from _twin_rng import ScriptedGenerator, Worst, check_steps

torch = pytest.importorskip("torch")

N_DATA, D, BATCH, STEPS = 24, 2, 6, 12
PER_EPOCH = N_DATA // BATCH
EPOCHS = -(-STEPS // PER_EPOCH)
HIDDEN = (16, 16)


def _data():
    rng = np.random.default_rng(123)
    angles = rng.uniform(0, 2 * np.pi, N_DATA)
    return np.stack([2 * np.cos(angles), 2 * np.sin(angles)], axis=1) + 0.1 * rng.standard_normal((N_DATA, D))


def _energy():
    return MLPEnergy(D, hidden=HIDDEN, activation="swish", device="cpu", dtype="float64", generator=7)


def _torch_net(energy):
    """nn.Sequential(Linear, SiLU, Linear, SiLU, Linear) holding npjem's weights (keys ``net.i.*``)."""
    layers, d = [], D
    for h in HIDDEN:
        layers += [torch.nn.Linear(d, h), torch.nn.SiLU()]
        d = h
    layers.append(torch.nn.Linear(d, 1))
    net = torch.nn.Sequential(*layers).double()
    net.load_state_dict({k[len("net."):]: torch.from_numpy(v.copy()) for k, v in energy.state_dict().items()})
    return net


def _igebm_langevin(net, x0, xi, step_lr, sigma, proj_norm, clamp):
    """Du & Mordatch's chain (IGEBM ``train.py``): noise first, then ∇ₓE at the noisy point,
    the elementwise clip (``proj_norm``, 'li'), the step and the clip to the data's box."""
    x_mod = x0
    for noise in xi:
        x_mod = (x_mod + sigma * torch.from_numpy(noise)).requires_grad_(True)
        energy_noise = net(x_mod)
        x_grad = torch.autograd.grad(energy_noise.sum(), [x_mod])[0]
        if proj_norm is not None:
            x_grad = x_grad.clamp(-proj_norm, proj_norm)
        x_mod = (x_mod - step_lr * x_grad).detach()
        x_mod = x_mod.clamp(clamp[0], clamp[1])
    return x_mod


def _langevin_reference(net, x0, xi, eta, sigma, grad_clip, clamp, noise_first=False):
    """k in-place Langevin updates as ``sample_s_t`` / ``sample_q``, the noise ξ given."""
    if noise_first:
        return _igebm_langevin(net, x0, xi, eta, sigma, grad_clip, clamp)
    x = x0.clone().requires_grad_(True)
    for noise in xi:
        f_prime = torch.autograd.grad(net(x).sum(), [x])[0]
        if grad_clip is not None:  # IGEBM's proj_norm: an elementwise clip of ∇ₓE
            f_prime = f_prime.clamp(-grad_clip, grad_clip)
        x.data += -eta * f_prime + sigma * torch.from_numpy(noise)
        if clamp is not None:  # IGEBM clips the states to the data's range after each step
            x.data.clamp_(clamp[0], clamp[1])
    return x.detach()


def _draws(method, k, box, n_particles=None, buffer_size=None, reinit=None, seed=0):
    """Every random number of the run, drawn once in float64, by what it is used for."""
    rng = np.random.default_rng(seed)
    d = {"order": [rng.permutation(N_DATA) for _ in range(EPOCHS)],
         "xi": [[rng.standard_normal((BATCH, D)) for _ in range(k)] for _ in range(STEPS)]}
    if method == "pcd":
        d["init"] = rng.uniform(box[0], box[1], (n_particles, D))
        d["chains"] = [rng.permutation(n_particles) for _ in range(STEPS)]
    if method == "replay":
        d["init"] = rng.uniform(box[0], box[1], (buffer_size, D))
        # Indices with replacement in the reference (torch.randint); drawn here without
        # duplicates inside a step, because a write-back to a repeated index is left
        # undefined by torch's index_put_ (npjem's NumPy assignment keeps the last).
        d["inds"] = [rng.choice(buffer_size, BATCH, replace=False) for _ in range(STEPS)]
        d["u"] = [rng.random(BATCH) for _ in range(STEPS)]
        d["restart"] = [rng.uniform(box[0], box[1], (BATCH, D)) for _ in range(STEPS)]
        fresh = np.concatenate(d["u"]) < reinit
        assert 0 < fresh.sum() < fresh.size, "the draws must restart some chains and keep others"
    return d


def _scripted(method, d, box):
    kinds = {f"permutation{N_DATA}": list(d["order"]),
             "standard_normal": [x for step in d["xi"] for x in step]}
    if method == "pcd":
        kinds["uniform"] = [(box[0], box[1], d["init"])]
        kinds[f"permutation{d['init'].shape[0]}"] = list(d["chains"])
    if method == "replay":
        kinds["uniform"] = [(box[0], box[1], d["init"])] + [(box[0], box[1], r) for r in d["restart"]]
        kinds["integers"] = list(d["inds"])
        kinds["random"] = list(d["u"])
    return ScriptedGenerator(**kinds)


def _run_npjem(method, cfg, d, data):
    energy = _energy()
    params = list(energy.parameters())
    if cfg["optimizer"] == "adam":
        opt = optim.Adam(params, lr=cfg["lr"], betas=cfg["betas"])
    else:
        opt = optim.SGD(params, lr=cfg["lr"])
    sampler = Langevin(cfg["eta"], noise_scale=cfg["sigma"], grad_clip=cfg.get("grad_clip"),
                       clamp=cfg.get("clamp"), **({"noise_first": True} if cfg.get("noise_first") else {}))
    if method == "pcd":
        negatives = PersistentNegatives(cfg["n_particles"], box=cfg["box"])
    elif method == "replay":
        negatives = ReplayBuffer(cfg["buffer_size"], cfg["reinit"], box=cfg["box"])
    else:
        negatives = None
    gen = _scripted(method, d, cfg["box"])
    snaps = []

    def record(rec):
        state = rec["negatives"]
        held = getattr(state, "particles", getattr(state, "buffer", None))
        snaps.append({"loss": rec["loss"],
                      "params": {k: v.copy() for k, v in energy.state_dict().items()},
                      "opt": {i: {n: np.array(a, dtype=np.float64) for n, a in s.items()}
                              for i, s in opt.state_dict()["state"].items()},
                      "held": None if held is None else held.copy()})

    train_ebm(energy, data, opt, method=method, k=cfg["k"], sampler=sampler, steps=STEPS, batch_size=BATCH,
              alpha=cfg["alpha"], box=cfg["box"], negatives=negatives, generator=gen, progress=False,
              callback=record)
    gen.assert_consumed()
    return energy, snaps


def _run_reference(method, cfg, d, data, energy0):
    net = _torch_net(energy0)
    data_t = torch.from_numpy(data)
    eps = cfg["sigma"]
    if cfg["optimizer"] == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"], betas=cfg["betas"])
        scale = 1.0
    else:
        # ebm-anatomy: "scale learning rate according to langevin noise for invariant tuning",
        # lr·ε²/2, and the loss times 2/ε²; for plain SGD the two cancel.
        opt = torch.optim.SGD(net.parameters(), lr=cfg["lr"] * eps ** 2 / 2)
        scale = 2 / eps ** 2
    held = None if method == "cd" else torch.from_numpy(d["init"].copy())
    snaps = []
    for step in range(STEPS):
        epoch, b = divmod(step, PER_EPOCH)
        x_q = data_t[torch.from_numpy(d["order"][epoch][b * BATCH:(b + 1) * BATCH])]
        if method == "cd":
            x0, inds = x_q.clone(), None
        elif method == "pcd":
            inds = torch.from_numpy(d["chains"][step])[:BATCH]
            x0 = held[inds]
        else:
            inds = torch.from_numpy(d["inds"][step])
            buffer_samples = held[inds]
            random_samples = torch.from_numpy(d["restart"][step])
            choose_random = (torch.from_numpy(d["u"][step]) < cfg["reinit"]).double()[:, None]
            x0 = choose_random * random_samples + (1 - choose_random) * buffer_samples
        x_neg = _langevin_reference(net, x0, d["xi"][step], cfg["eta"], cfg["sigma"], cfg.get("grad_clip"),
                                    cfg.get("clamp"), cfg.get("noise_first", False))
        if inds is not None:
            held[inds] = x_neg.clone()
        e_pos, e_neg = net(x_q).squeeze(1), net(x_neg).squeeze(1)
        loss_ml = e_pos.mean() - e_neg.mean()
        loss = loss_ml + cfg["alpha"] * ((e_pos ** 2).mean() + (e_neg ** 2).mean())
        opt.zero_grad()
        (loss * scale).backward()
        opt.step()
        state = opt.state_dict()["state"]
        snaps.append({"loss": loss.item(),
                      "params": {"net." + k: v.detach().numpy().copy() for k, v in net.state_dict().items()},
                      "opt": {i: {n: np.array(v.detach().numpy() if torch.is_tensor(v) else v, dtype=np.float64)
                                  for n, v in s.items()} for i, s in state.items()},
                      "held": None if held is None else held.numpy().copy()})
    return snaps


CONFIGS = {
    # CD-k with Du & Mordatch's α = 1 regulariser and Adam β₁ = 0, IGEBM's gradient clip and clamp.
    "cd": dict(method="cd", k=4, eta=0.05, sigma=0.05, grad_clip=0.5, clamp=(-3.0, 3.0), box=(-3.0, 3.0),
               alpha=1.0, optimizer="adam", lr=1e-2, betas=(0.0, 0.999)),
    # The same with IGEBM's own chain: the noise is added before ∇ₓE is taken.
    "cd-igebm": dict(method="cd", k=4, eta=0.05, sigma=0.05, grad_clip=0.5, clamp=(-3.0, 3.0), box=(-3.0, 3.0),
                     alpha=1.0, optimizer="adam", lr=1e-2, betas=(0.0, 0.999), noise_first=True),
    # ebm-anatomy's toy settings: ε = 0.125, a step of 1 on ∇ₓE, SGD at lr 0.1 (scaled by ε²/2),
    # a persistent bank larger than the batch, uniform in the box at first.
    "pcd": dict(method="pcd", k=3, eta=1.0, sigma=0.125, clamp=(-3.0, 3.0), box=(-3.0, 3.0), alpha=0.0, optimizer="sgd",
                lr=0.1, n_particles=20),
    # JEM: sgld_lr 1, sgld_std 0.01, no clamp, Adam with PyTorch's betas, a buffer in U(box).
    "replay": dict(method="replay", k=3, eta=1.0, sigma=0.01, box=(-3.0, 3.0), alpha=0.0, optimizer="adam", lr=1e-2,
                   betas=(0.9, 0.999), buffer_size=16, reinit=0.25),
}


def _compare_snapshots(method, ours, reference):
    assert len(ours) == len(reference) == STEPS
    return check_steps(Worst(rtol=1e-9), ours, reference, "particles" if method == "pcd" else "buffer")


def compare(name, planted=None):
    """npjem against the reference loop; ``planted`` changes the reference's settings only."""
    cfg = dict(CONFIGS[name])
    method = cfg["method"]
    data = _data()
    d = _draws(method, cfg["k"], cfg["box"], cfg.get("n_particles"), cfg.get("buffer_size"), cfg.get("reinit"))
    energy, ours = _run_npjem(method, cfg, d, data)
    reference = _run_reference(method, dict(cfg, **(planted or {})), d, data, _energy())
    worst = _compare_snapshots(method, ours, reference)
    # The run must have moved: equal parameters that never changed would prove nothing.
    first = _energy().state_dict()
    assert max(np.abs(v - first[k]).max() for k, v in energy.state_dict().items()) > 1e-4
    return worst


@pytest.mark.parametrize("name", list(CONFIGS))
def test_trainer_matches_reference_loop_step_for_step(name):
    worst = compare(name)
    print(f"{name}: worst relative difference {worst.value:.3g} ({worst.where})")


@pytest.mark.parametrize("name, planted", [
    ("cd", {"sigma": CONFIGS["cd"]["sigma"] * 1.01}),     # another noise scale
    ("cd", {"alpha": 0.0}),                               # Du & Mordatch's regulariser left out
    ("cd", {"noise_first": True}),                        # IGEBM's order against npjem's default
    ("cd-igebm", {"noise_first": False}),                 # and the other way round
    ("pcd", {"eta": 0.99}),                               # another step on ∇ₓE
    ("replay", {"reinit": 0.0}),                          # no restarts from noise
])
def test_a_planted_difference_is_caught(name, planted):
    with pytest.raises(AssertionError, match="relative difference"):
        compare(name, planted)
