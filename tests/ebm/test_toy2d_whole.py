"""npjem.ebm.toy2d by value on runs of a few steps: the NCE noises' densities, the result's
entries (each NLL recomputed from the documented draws, at a learning rate too small to move the
weights), the per-objective defaults, the cosine schedule, the progress lines and the table."""
import math
import time

import numpy as np
import pytest

from npjem import optim
from npjem.data import toy2d as densities
from npjem.ebm import toy2d as T
from npjem.ebm.energy import MLPEnergy
from npjem.ebm.plot import gaussian_nll, grid_log_partition, grid_nll

TINY = dict(steps=2, n_train=40, n_test=30, grid=6, batch_size=8, hidden=(4,), sample_steps=2, progress=False)


def test_uniform_noise_is_uniform_on_the_box():
    noise = T.UniformNoise((-2.0, 3.0))
    x = noise.sample(500, np.random.default_rng(0))
    assert x.shape == (500, 2) and x.min() >= -2.0 and x.max() < 3.0
    assert x.min() < -1.5 and x.max() > 2.5                     # the whole box, both ends
    np.testing.assert_allclose(noise.log_density(x[:4]), np.full(4, -2 * math.log(5.0)))


def test_gaussian_noise_is_the_data_gaussian_widened():
    data = np.random.default_rng(1).standard_normal((200, 2)) @ np.array([[1.0, 0.4], [0.0, 0.5]]) + [1.0, -2.0]
    noise = T.GaussianNoise(data, widen=2.0)
    C = np.cov(data.T) * 4.0
    np.testing.assert_allclose(noise.mean, data.mean(axis=0))
    np.testing.assert_allclose(noise.cov, C)
    x = np.array([[0.0, 0.0], [1.0, -2.0], [3.0, 1.0]])
    d = x - data.mean(axis=0)
    expected = -0.5 * np.einsum("ni,ij,nj->n", d, np.linalg.inv(C), d) - 0.5 * np.log(np.linalg.det(2 * np.pi * C))
    np.testing.assert_allclose(noise.log_density(x), expected, rtol=1e-12)
    # Its draws are m + ε Lᵀ, L the Cholesky factor of C.
    s = noise.sample(4, np.random.default_rng(2))
    eps = np.random.default_rng(2).standard_normal((4, 2))
    np.testing.assert_allclose(s, data.mean(axis=0) + eps @ np.linalg.cholesky(C).T, rtol=1e-12)
    assert T.GaussianNoise(data).cov == pytest.approx(np.cov(data.T) * 2.25)


def _frozen(data, objective, seed=0, **kwargs):
    """run() at lr = 1e-30 (Adam moves a float32 weight by at most that: not at all), and the
    untrained energy it starts from."""
    args = dict(TINY, lr=1e-30, seed=seed)
    args.update(kwargs)
    result = T.run(data, objective, **args)
    energy = MLPEnergy(2, hidden=args["hidden"], activation="swish", dtype=np.float32, generator=seed)
    return result, energy


@pytest.mark.parametrize("objective", ["sm", "cd"])
def test_result_nlls_are_the_documented_ones(objective):
    density = densities.get("rings")
    before = time.perf_counter()
    result, energy = _frozen("rings", objective, seed=3)
    elapsed = time.perf_counter() - before
    lo, hi = density.bounds
    test = density.sample(30, generator=3 + 1000, dtype=np.float64)
    train = density.sample(40, generator=3, dtype=np.float32 if objective == "cd" else np.float64)
    assert result["nll"] == pytest.approx(grid_nll(energy, test, (lo, hi), 6), rel=1e-6)
    assert result["log_z_grid"] == pytest.approx(grid_log_partition(energy, (lo, hi), 6), rel=1e-6)
    assert result["nll_true"] == pytest.approx(-np.mean(density.log_density(test)), rel=1e-12)
    assert result["nll_gaussian"] == pytest.approx(gaussian_nll(train, test), rel=1e-12)
    assert (result["data"], result["objective"], result["steps"], result["batch_size"], result["seed"]) == \
        ("rings", objective, 2, 8, 3)
    assert result["png"] is None and 0 < result["seconds"] < elapsed


def test_objectives_without_sampling_report_their_own_settings():
    sm = T.run("rings", "sm", seed=0, **TINY)
    assert sm["lr"] == 1e-3 and sm["cosine"] is False
    assert sm["sigma"] is None and sm["nce_noise"] is None and sm["nce_ratio"] is None
    assert sm["log_z_nce"] is None and math.isfinite(sm["loss_last"])
    dsm = T.run("rings", "dsm", seed=0, sigma=0.3, **TINY)
    assert dsm["sigma"] == 0.3 and dsm["nce_noise"] is None
    nce = T.run("rings", "nce", seed=0, nce_noise="uniform", nce_ratio=2, **TINY)
    assert (nce["nce_noise"], nce["nce_ratio"], nce["sigma"]) == ("uniform", 2, None)
    assert math.isfinite(nce["log_z_nce"])


@pytest.mark.parametrize("objective, k", [("cd", 10), ("pcd", 10), ("replay", 20)])
def test_sampling_objectives_report_their_defaults(objective, k):
    r = T.run("8gaussians", objective, seed=0, **TINY)
    assert (r["k"], r["lr"], r["step_size"], r["sampler"], r["alpha"]) == (k, 2e-3, 2e-3, "langevin", 0.01)
    assert (r["buffer_size"], r["n_particles"], r["pcd_init"]) == (2048, None, "uniform")
    assert math.isfinite(r["energy_gap_last"]) and math.isfinite(r["grad_norm_last"])
    assert T.run("rings", objective, seed=0, **TINY)["step_size"] == 1e-3


class _RecordingAdam(optim.Adam):
    lrs = []

    def step(self):
        type(self).lrs.append(self.param_groups[0]["lr"])
        return super().step()


@pytest.mark.parametrize("cosine", [False, True])
def test_cosine_schedule_is_a_half_cosine_down_to_zero(monkeypatch, cosine):
    monkeypatch.setattr(optim, "Adam", _RecordingAdam)
    _RecordingAdam.lrs = []
    T.run("rings", "sm", seed=0, cosine=cosine, lr=0.01, **dict(TINY, steps=4))
    expected = [0.5 * 0.01 * (1 + math.cos(math.pi * s / 4)) for s in range(4)] if cosine else [0.01] * 4
    assert _RecordingAdam.lrs == pytest.approx(expected, rel=1e-12)


def test_progress_lines_every_tenth_of_the_run(capsys):
    T.run("rings", "sm", seed=0, **dict(TINY, steps=20, progress=True))
    lines = [line for line in capsys.readouterr().err.splitlines() if "rings sm step" in line]
    assert [line.split(":")[0].strip() for line in lines] == [f"rings sm step {s}/20" for s in range(2, 21, 2)]
    assert all(line.startswith("  rings sm step") and "loss " in line for line in lines)


def test_png_is_written_in_out(tmp_path):
    r = T.run("8gaussians", "cd", seed=0, out=str(tmp_path / "pics"), **TINY)
    assert r["png"] == str(tmp_path / "pics" / "8gaussians_cd.png")
    with open(r["png"], "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")) == (800, 400)


def test_table_rows_by_hand():
    r = dict(data="rings", objective="sm", steps=3, nll=2.34567, nll_true=2.0, nll_gaussian=3.5, seconds=12.4)
    assert T.table([r, dict(r, objective="nce", nll=1.5)]).splitlines() == [
        "| data | objective | steps | NLL learned | NLL true | NLL Gaussian | learned − true | time (s) |",
        "|---|---|---|---|---|---|---|---|",
        "| rings | sm | 3 | 2.346 | 2.000 | 3.500 | +0.346 | 12 |",
        "| rings | nce | 3 | 1.500 | 2.000 | 3.500 | -0.500 | 12 |",
    ]


# ================================================================ what run() hands on


class _Calls:
    """A stand-in that records its arguments and answers ``result``."""

    def __init__(self, result=None):
        self.calls, self.result = [], result

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.result(*args, **kwargs) if callable(self.result) else self.result


@pytest.mark.parametrize("objective, sampler", [("cd", "langevin"), ("pcd", "langevin"), ("replay", "mala")])
def test_sampling_runs_hand_train_ebm_its_settings(monkeypatch, objective, sampler):
    hist = {"energy_gap": list(np.arange(60.0)), "grad_norm": list(np.arange(60.0) * 2)}
    train = _Calls(hist)
    monkeypatch.setattr(T, "train_ebm", train)
    r = T.run("checkerboard", objective, seed=4, sampler=sampler, n_particles=6 if objective == "pcd" else None,
              pcd_init="data", k=3, alpha=0.5, buffer_size=64, **dict(TINY, steps=25))
    (energy, data, opt, method), kw = train.calls[0]
    density = densities.get("checkerboard")
    np.testing.assert_array_equal(data, density.sample(40, generator=4, dtype=np.float32))
    assert method == objective and kw["k"] == 3 and kw["steps"] == 25 and kw["batch_size"] == 8
    assert (kw["alpha"], kw["box"], kw["buffer_size"], kw["reinit_fraction"]) == (0.5, (-2.5, 2.5), 64, 0.05)
    assert kw["generator"] == 4 and kw["progress"] is False and kw["log_every"] == 2
    assert kw["n_particles"] == (6 if objective == "pcd" else None)
    chain = kw["sampler"]
    if sampler == "langevin":
        assert (type(chain).__name__, chain.step_size, chain.clamp) == ("Langevin", 2e-3, (-2.5, 2.5))
    else:
        assert (type(chain).__name__, chain.step_size) == ("MALA", 2e-3)
    negatives = kw["negatives"]
    if objective == "pcd":
        assert (negatives.n_particles, negatives.box, negatives.init) == (6, (-2.5, 2.5), "data")
    else:
        assert negatives is None
    assert r["energy_gap_last"] == 34.5 and r["grad_norm_last"] == 69.0     # means of the last 50
    assert r["k"] == 3 and r["pcd_init"] == "data" and r["n_particles"] == (6 if objective == "pcd" else None)


def test_sampling_step_size_defaults_to_the_data_sets_or_2e_3(monkeypatch):
    train = _Calls({"energy_gap": [0.0], "grad_norm": [0.0]})
    monkeypatch.setattr(T, "train_ebm", train)
    for data, eta in (("rings", 1e-3), ("moons", 2e-3), ("8gaussians", 2e-3)):
        assert T.run(data, "cd", seed=0, **TINY)["step_size"] == eta
    assert T.run("rings", "cd", seed=0, step_size=0.05, **TINY)["step_size"] == 0.05
    assert train.calls[-1][1]["sampler"].step_size == 0.05
    assert train.calls[0][1]["n_particles"] is None and train.calls[0][1]["log_every"] == 1


def test_the_png_shows_langevin_samples_from_uniform_noise_and_the_true_density(monkeypatch, tmp_path):
    chains, plot = _Calls(lambda energy, start, *a, **k: start[:5]), _Calls()
    monkeypatch.setattr(T, "langevin", chains)
    monkeypatch.setattr(T, "plot_landscape", plot)
    T.run("rings", "sm", seed=2, out=str(tmp_path), **dict(TINY, sample_steps=7))
    (energy, start, n, eta), kw = chains.calls[0]
    lo, hi = densities.get("rings").bounds
    expected = npjem_uniform(seed=3, lo=lo, hi=hi)
    np.testing.assert_array_equal(start, expected)
    assert (n, eta, kw["clamp"]) == (7, 1e-3, (lo, hi))
    # The chains' generator is the one that drew the start (seed + 1), continued.
    assert kw["generator"].seed == 3
    (e2, path, bounds), pkw = plot.calls[0]
    assert e2 is energy and path == str(tmp_path / "rings_sm.png") and bounds == (lo, hi)
    np.testing.assert_array_equal(pkw["samples"], expected[:5])
    assert pkw["density"] is densities.get("rings") or pkw["density"].name == "rings"
    assert pkw["resolution"] == 200 and pkw["title"].startswith("rings, sm, test NLL ")


def npjem_uniform(seed, lo, hi):
    from npjem import random as nrandom
    return nrandom.default_rng(seed, "cpu").uniform(lo, hi, size=(1000, 2), dtype=np.float32)


def test_nll_grid_defaults_to_400_and_n_train_needs_three_points(monkeypatch):
    grids = _Calls(0.0)
    monkeypatch.setattr(T, "grid_nll", grids)
    args = {k: v for k, v in TINY.items() if k != "grid"}
    T.run("rings", "sm", seed=0, **args)
    assert grids.calls[0][0][3] == 400
    # Three points fit the Gaussian floor (two have a singular covariance: refused up front).
    assert T.run("rings", "sm", seed=0, **dict(args, n_train=3, batch_size=2))["steps"] == 2
    with pytest.raises(ValueError, match="n_train"):
        T.run("rings", "sm", seed=0, **dict(args, n_train=2))


@pytest.mark.parametrize("nce_noise, kind", [("gaussian", "GaussianNoise"), ("uniform", "UniformNoise")])
def test_nce_uses_the_noise_asked_for(monkeypatch, nce_noise, kind):
    made = []
    for name in ("GaussianNoise", "UniformNoise"):
        cls = getattr(T, name)
        monkeypatch.setattr(T, name, type(name, (cls,), {"__init__": lambda self, *a, _c=cls, _n=name, **k:
                                                          (made.append(_n), _c.__init__(self, *a, **k))[1]}))
    T.run("rings", "nce", seed=0, nce_noise=nce_noise, **TINY)
    assert made == [kind]


def _recording(monkeypatch, name):
    losses, inputs = [], []
    original = getattr(T.O, name)

    def wrapper(energy, x, *args, **kwargs):
        inputs.append(x.data.copy())
        loss = original(energy, x, *args, **kwargs)
        losses.append(float(loss.item()))
        return loss

    monkeypatch.setattr(T.O, name, wrapper)
    return losses, inputs


def test_minibatches_are_uniform_draws_from_all_points(monkeypatch):
    _, inputs = _recording(monkeypatch, "score_matching")
    T.run("rings", "sm", seed=5, **dict(TINY, steps=3, n_train=4, batch_size=50))
    train = densities.get("rings").sample(4, generator=5, dtype=np.float64)
    rng = np.random.default_rng(5)
    for x in inputs:
        np.testing.assert_array_equal(x, train[rng.integers(0, 4, 50)].astype(np.float32))


@pytest.mark.parametrize("objective, name, steps", [("sm", "score_matching", 30),
                                                    ("ssm", "sliced_score_matching", 20),
                                                    ("dsm", "denoising_score_matching", 5)])
def test_progress_lines_show_the_mean_loss_of_the_last_tenth(monkeypatch, capsys, objective, name, steps):
    # A line every max(1, steps // 10) steps, with the mean loss since the last one.
    losses, _ = _recording(monkeypatch, name)
    r = T.run("rings", objective, seed=0, **dict(TINY, steps=steps, progress=True))
    every = max(1, steps // 10)
    lines = [line for line in capsys.readouterr().err.splitlines() if f"rings {objective} step" in line]
    assert lines == [f"  rings {objective} step {s}/{steps}: loss {np.mean(losses[s - every:s]):.4f}"
                     for s in range(every, steps + 1, every)]
    assert r["loss_last"] == pytest.approx(np.mean(losses))


def test_run_defaults_are_its_documented_values(monkeypatch, tmp_path):
    # Every default of run(), read off what it hands on (the training and the measurements
    # replaced by stand-ins, so that 1,500 steps on 20,000 points cost nothing).
    sampling = _Calls({"energy_gap": [0.0], "grad_norm": [0.0]})
    other = _Calls({"loss_last": 0.0, "log_z_nce": None})
    nll, log_z, floor = _Calls(0.0), _Calls(0.0), _Calls(0.0)
    chains, plot = _Calls(lambda energy, start, *a, **k: start), _Calls()
    for name, stub in (("train_ebm", sampling), ("_train_without_sampling", other), ("grid_nll", nll),
                       ("grid_log_partition", log_z), ("gaussian_nll", floor), ("langevin", chains),
                       ("plot_landscape", plot)):
        monkeypatch.setattr(T, name, stub)
    r = T.run("rings", "pcd", out=str(tmp_path))
    (energy, data, opt, method), kw = sampling.calls[0]
    assert data.shape == (20000, 2) and data.dtype == np.float32
    np.testing.assert_array_equal(data[:5], densities.get("rings").sample(20000, generator=0, dtype=np.float32)[:5])
    assert [tuple(p.shape) for p in energy.parameters()] == [(128, 2), (128,), (128, 128), (128,), (1, 128), (1,)]
    assert opt.param_groups[0]["lr"] == 2e-3 and tuple(opt.param_groups[0]["betas"]) == (0.0, 0.999)
    assert (kw["steps"], kw["batch_size"], kw["alpha"], kw["k"], kw["buffer_size"]) == (1500, 256, 0.01, 10, 2048)
    assert kw["n_particles"] is None and kw["progress"] is True and kw["generator"] == 0 and kw["log_every"] == 150
    assert type(kw["sampler"]).__name__ == "Langevin" and kw["sampler"].step_size == 1e-3
    assert (kw["negatives"].n_particles, kw["negatives"].init) == (256, "uniform")
    (_, test, bounds, grid), _ = nll.calls[0]
    assert test.shape == (5000, 2) and grid == 400 and log_z.calls[0][0][2] == 400
    assert chains.calls[0][0][2] == 500 and r["png"] is not None
    T.run("rings", "sm")
    args = other.calls[0][0]
    assert args[1] == "sm" and args[2].shape == (20000, 2) and args[2].dtype == np.float64
    # (energy, objective, train, steps, batch_size, lr, sigma, cosine, nce_noise, nce_ratio, seed, bounds,
    #  progress, label)
    assert args[3:] == (1500, 256, 1e-3, 0.05, False, "gaussian", 1, 0, (-3.0, 3.0), True, "rings sm")


def test_objectives_without_sampling_are_reproducible_from_the_seed():
    for objective in ("ssm", "dsm"):
        a, b = (T.run("rings", objective, seed=1, **dict(TINY, steps=3)) for _ in range(2))
        assert (a["loss_last"], a["nll"]) == (b["loss_last"], b["nll"])


def test_sliced_score_matching_is_variance_reduced_and_nce_works_in_float32(monkeypatch):
    seen = {}

    def spy(name):
        original = getattr(T.O, name)

        def wrapper(*args, **kwargs):
            seen[name] = (args, kwargs)
            return original(*args, **kwargs)
        monkeypatch.setattr(T.O, name, wrapper)

    spy("sliced_score_matching")
    spy("nce")
    T.run("rings", "ssm", seed=0, **TINY)
    assert seen["sliced_score_matching"][1]["variance_reduction"] is True
    T.run("rings", "nce", seed=0, **TINY)
    args = seen["nce"][0]
    assert [a.dtype for a in args[1:]] == [np.float32] * 5


def test_loss_last_is_the_mean_of_the_last_100_losses(monkeypatch):
    losses, _ = _recording(monkeypatch, "score_matching")
    r = T.run("rings", "sm", seed=0, **dict(TINY, steps=103))
    assert len(losses) == 103 and r["loss_last"] == pytest.approx(np.mean(losses[-100:]), rel=1e-12)


def test_run_checks_grid_and_batch_size_at_their_edges():
    assert T.run("rings", "sm", seed=0, **dict(TINY, grid=2, batch_size=2))["steps"] == 2
    with pytest.raises(ValueError, match="grid"):
        T.run("rings", "sm", seed=0, **dict(TINY, grid=1))
    with pytest.raises(ValueError, match="batch_size"):
        T.run("rings", "sm", seed=0, **dict(TINY, batch_size=1))
