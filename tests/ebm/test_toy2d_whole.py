"""npjem.ebm.toy2d by value on runs of a few steps: the NCE noises' densities, the result's
entries (each NLL recomputed from the documented draws, at a learning rate too small to move the
weights), the per-objective defaults, the cosine schedule, the progress lines and the table."""
import math

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
    result, energy = _frozen("rings", objective, seed=3)
    lo, hi = density.bounds
    test = density.sample(30, generator=3 + 1000, dtype=np.float64)
    train = density.sample(40, generator=3, dtype=np.float32 if objective == "cd" else np.float64)
    assert result["nll"] == pytest.approx(grid_nll(energy, test, (lo, hi), 6), rel=1e-6)
    assert result["log_z_grid"] == pytest.approx(grid_log_partition(energy, (lo, hi), 6), rel=1e-6)
    assert result["nll_true"] == pytest.approx(-np.mean(density.log_density(test)), rel=1e-12)
    assert result["nll_gaussian"] == pytest.approx(gaussian_nll(train, test), rel=1e-12)
    assert (result["data"], result["objective"], result["steps"], result["batch_size"], result["seed"]) == \
        ("rings", objective, 2, 8, 3)
    assert result["png"] is None and result["seconds"] > 0


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
