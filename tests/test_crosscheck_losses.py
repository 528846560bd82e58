"""crosscheck against an independent PyTorch twin of every registered loss: the twin passes over
drawn seeds and sizes, and each planted bug (a wrong sign, a missing stop-gradient, a sum for a
mean, a temperature in the wrong place) is caught."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npjem import crosscheck as cc

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _reduce(per, reduction):
    return per.sum() if reduction == "sum" else per.mean()


# ------------------------------------------------------------------ twins, each with its bugs

def barlow_twins(a, b, lambd=5e-3, *, bug=None):
    n = a.shape[0]
    za = (a - a.mean(0)) / torch.sqrt(a.var(0, unbiased=bug == "unbiased") + 1e-5)
    zb = (b - b.mean(0)) / torch.sqrt(b.var(0, unbiased=bug == "unbiased") + 1e-5)
    c = za.T @ zb / n
    on = ((1 - torch.diagonal(c)) ** 2).sum()
    off = (c ** 2).sum() - (torch.diagonal(c) ** 2).sum()
    return on - lambd * off if bug == "sign" else on + lambd * off


def vicreg(x, y, *, bug=None):
    n, d = x.shape
    inv = TF.mse_loss(x, y)

    def var_cov(z):
        z = z - z.mean(0)
        std = torch.sqrt(z.var(0) + 1e-4)
        v = TF.relu(1 - std).mean() / 2
        cov = z.T @ z / (n - 1)
        c = ((cov ** 2).sum() - (torch.diagonal(cov) ** 2).sum()) / d
        return v, c
    vx, cx = var_cov(x)
    vy, cy = var_cov(y.detach() if bug == "detach" else y)
    std_coeff = 25.0 if bug != "std_coeff" else 2.5
    return 25.0 * inv + std_coeff * (vx + vy) + 1.0 * (cx + cy)


def swav(scores, codes, temperature=0.1, *, bug=None):
    total = 0.0
    for i, q in enumerate(codes):
        q = q if bug == "no_detach" else q.detach()
        sub = 0.0
        for j, s in enumerate(scores):
            if j == i:
                continue
            t = temperature if bug != "temperature_mult" else 1 / temperature
            sub = sub - (q * TF.log_softmax(s / t, dim=1)).sum(1).mean()
        total = total + (sub if bug == "no_average" else sub / (len(scores) - 1))
    return total / len(codes)


def simsiam(p1, p2, z1, z2, *, bug=None):
    if bug != "no_detach":
        z1, z2 = z1.detach(), z2.detach()
    d = -(TF.cosine_similarity(p1, z2).mean() + TF.cosine_similarity(p2, z1).mean())
    return -d / 2 if bug == "sign" else d / 2


def byol(p, z, *, bug=None):
    (p1, p2), (z1, z2) = p, z
    if bug != "no_detach":
        z1, z2 = z1.detach(), z2.detach()

    def reg(a, b):
        per = 2 - 2 * (TF.normalize(a, dim=1) * TF.normalize(b, dim=1)).sum(1)
        return per.sum() if bug == "sum" else per.mean()
    return reg(p1, z2) + reg(p2, z1)


def dino(student, teacher, center, student_temp=0.1, teacher_temp=0.04, *, bug=None):
    tt = teacher_temp if bug != "swapped_temps" else student_temp
    ts = student_temp if bug != "swapped_temps" else teacher_temp
    targets = [TF.softmax((t - center) / tt, dim=1) for t in teacher]
    if bug != "no_detach":
        targets = [t.detach() for t in targets]
    total, n = 0.0, 0
    for it, q in enumerate(targets):
        for v, s in enumerate(student):
            if v == it and bug != "same_view":
                continue
            total = total + (-(q * TF.log_softmax(s / ts, dim=1)).sum(1)).mean()
            n += 1
    return total / n


def data2vec(prediction, target, mask, *, bug=None):
    c = prediction.shape[-1]
    t = target if bug == "no_detach" else target.detach()
    per = TF.smooth_l1_loss(prediction[mask], t[mask], reduction="none", beta=2.0).sum(-1)
    per = per / c ** 0.5
    return per.sum() if bug == "sum" else per.mean()


def pair(fn):
    def loss(e_pos, e_neg, reduction="mean", *, bug=None, **kw):
        per = fn(e_pos if bug != "swap" else e_neg, e_neg if bug != "swap" else e_pos, **kw)
        return _reduce(per, "sum" if bug == "sum" else reduction)
    return loss


hinge = pair(lambda p, n, margin=1.0: TF.relu(margin + p - n))
log_loss = pair(lambda p, n: TF.softplus(p - n))
lvq2 = pair(lambda p, n: torch.clamp(TF.relu(p - n), max=1.0))
mce = pair(lambda p, n: torch.sigmoid(p - n))
square_square = pair(lambda p, n, margin=1.0: p ** 2 + TF.relu(margin - n) ** 2)
square_exponential = pair(lambda p, n, gamma=1.0: p ** 2 + gamma * torch.exp(-n))


def energy_loss(e_pos, reduction="mean", *, bug=None):
    return _reduce(-e_pos if bug == "sign" else e_pos, "sum" if bug == "sum" else reduction)


def _answers(fn):
    def loss(energies, target, reduction="mean", *, bug=None, **kw):
        e_c = energies.gather(1, target.long()[:, None])[:, 0]
        per = fn(energies, e_c, bug=bug, **kw)
        return _reduce(per, "sum" if bug == "sum" else reduction)
    return loss


perceptron = _answers(lambda e, c, bug=None: c - (e.max(1).values if bug == "max" else e.min(1).values))
nll_mmi = _answers(lambda e, c, beta=1.0, bug=None: c + torch.logsumexp(-beta * e, 1) / (1 if bug == "beta" else beta))
mee = _answers(lambda e, c, beta=1.0, bug=None: 1 - torch.exp(-beta * c - torch.logsumexp(-beta * e, 1))
               * (1 if bug != "sign" else -1))

def _quadratic(A, b):
    return lambda u: 0.5 * ((u @ A) ** 2).sum(1) + (u * b).sum(1)


def _ising(W, b):
    return lambda u: -0.5 * ((u @ W) * u).sum(1) - (u * b).sum(1)


def score_matching(energy, x, *, bug=None):
    x = x if x.requires_grad else x.detach().requires_grad_(True)
    grad = torch.autograd.grad(energy(x).sum(), x, create_graph=True)[0]
    trace = sum(torch.autograd.grad(grad[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(x.shape[1]))
    half = 0.5 if bug != "no_half" else 1.0
    return (-trace + half * (grad ** 2).sum(1)).mean() if bug != "trace_sign" else (trace + half * (grad ** 2).sum(1)).mean()


def nce(energy, x_data, x_noise, lp_data, lp_noise, log_z, *, bug=None):
    log_nu = torch.log(torch.tensor(x_noise.shape[0] / x_data.shape[0], dtype=torch.float64))
    g = lambda u, lp: -energy(u) - log_z - lp  # noqa: E731
    nu = x_noise.shape[0] / x_data.shape[0] if bug != "no_nu" else 1.0
    return TF.softplus(-(g(x_data, lp_data) - log_nu)).mean() + nu * TF.softplus(g(x_noise, lp_noise) - log_nu).mean()


def _flips(energy, x):
    e = energy(x)
    gaps = []
    for i in range(x.shape[1]):
        xf = x.clone()
        xf[:, i] = 1 - xf[:, i]
        gaps.append(e - energy(xf))
    return torch.stack(gaps, 1)


def _binary(rule):
    def loss(energy, x, reduction="mean", *, bug=None):
        d = _flips(energy, x) if bug != "sign" else -_flips(energy, x)
        per = rule(d).sum(1)
        return _reduce(per, "sum" if bug == "sum" else reduction)
    return loss


ratio_matching = _binary(lambda d: torch.sigmoid(d) ** 2)
pseudo_likelihood = _binary(TF.softplus)
minimum_probability_flow = _binary(lambda d: torch.exp(0.5 * d))


TWINS = {
    "barlow_twins": (barlow_twins, ("sign", "unbiased")),
    "vicreg": (vicreg, ("detach", "std_coeff")),
    "swav": (swav, ("temperature_mult", "no_average")),
    "simsiam": (simsiam, ("sign", "no_detach")),
    "byol": (byol, ("sum", "no_detach")),
    "dino": (dino, ("swapped_temps", "same_view")),
    "data2vec": (data2vec, ("sum", "no_detach")),
    "hinge": (hinge, ("swap", "sum")),
    "log_loss": (log_loss, ("swap", "sum")),
    "lvq2": (lvq2, ("swap", "sum")),
    "mce": (mce, ("swap", "sum")),
    "square_square": (square_square, ("swap", "sum")),
    "square_exponential": (square_exponential, ("swap", "sum")),
    "energy_loss": (energy_loss, ("sign", "sum")),
    "perceptron": (perceptron, ("max", "sum")),
    "nll_mmi": (nll_mmi, ("beta", "sum")),
    "mee": (mee, ("sign", "sum")),
    "score_matching": (score_matching, ("no_half", "trace_sign")),
    "nce": (nce, ("no_nu",)),
    "ratio_matching": (ratio_matching, ("sign", "sum")),
    "pseudo_likelihood": (pseudo_likelihood, ("sign", "sum")),
    "minimum_probability_flow": (minimum_probability_flow, ("sign", "sum")),
}
# The twins of info_nce, moco and pair_margin live in test_crosscheck.py.
COVERED_ELSEWHERE = {"info_nce", "moco", "pair_margin"}


def test_every_registered_loss_has_a_twin():
    assert set(cc.names()) == set(TWINS) | COVERED_ELSEWHERE


@pytest.mark.parametrize("name", sorted(TWINS))
@settings(max_examples=3)
@given(seed=st.integers(0, 2**31 - 1), grow=st.integers(0, 3))
def test_the_twin_passes(name, seed, grow):
    spec = cc.get(name)
    shapes = {k: v + grow for k, v in spec.sizes.items()}
    report = cc.compare(TWINS[name][0], name, seed=seed, shapes=shapes)
    assert report.ok, str(report)


@pytest.mark.parametrize("name,bug", [(n, b) for n in sorted(TWINS) for b in TWINS[n][1]])
def test_a_planted_bug_is_caught(name, bug):
    twin = TWINS[name][0]
    report = cc.compare(lambda *a, **kw: twin(*a, **kw, bug=bug), name, seed=3)
    assert not report.ok, f"{name} with {bug!r} passed:\n{report}"


def test_hints_name_the_known_conventions():
    def vicreg_unhalved(x, y):
        return vicreg(x, y) + 25.0 * 0.5 * sum(TF.relu(1 - torch.sqrt((z - z.mean(0)).var(0) + 1e-4)).mean()
                                               for z in (x, y))
    report = cc.compare(vicreg_unhalved, "vicreg")
    assert not report.ok and "halve_variance=False" in report.hint

    def byol_mean(p, z):
        return byol(p, z) / 2
    assert "directions='mean'" in cc.compare(byol_mean, "byol").hint
    assert "stop-gradient" in cc.compare(lambda *a, **kw: simsiam(*a, **kw, bug="no_detach"), "simsiam").hint \
        or "detach" in cc.compare(lambda *a, **kw: simsiam(*a, **kw, bug="no_detach"), "simsiam").hint
