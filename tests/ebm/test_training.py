"""Tests of npjem.ebm.training: the CD loss and its gradients, CD-k / PCD / replay-buffer negatives,
train_ebm's updates, history and validation."""
import numpy as np
import pytest

import npjem
from npjem import Tensor, backend, nn, optim
from npjem.ebm.samplers import Langevin
from npjem.ebm.training import (
    CDNegatives, PersistentNegatives, ReplayBuffer, contrastive_divergence_loss, train_ebm,
)

DATA_MEAN = np.array([2.0, -1.0])


class CentredQuadratic(nn.Module):
    """E(x) = ½‖x − μ‖² with a learnable centre μ (the energy's minimum)."""

    def __init__(self, d=2, device=None, dtype=np.float64):
        super().__init__()
        xp = backend.xp_for_device(device)
        self.mu = nn.Parameter(xp.zeros(d, dtype=dtype))

    def forward(self, x):
        return 0.5 * ((x - self.mu) ** 2).sum(axis=1)


def gaussian_data(xp, n=512, seed=0):
    return xp.asarray(np.random.default_rng(seed).standard_normal((n, 2)) * 0.5 + DATA_MEAN)


def identity_sampler(shift=0.0):
    """A stand-in sampler that returns its start (plus ``shift``): isolates the bookkeeping."""
    def sampler(energy, x, n_steps, generator=None, return_info=False):
        out = Tensor(x + shift)
        return (out, {}) if return_info else out
    return sampler


# ------------------------------------------------------------------------------ the loss

def test_loss_value_and_regulariser():
    e_pos, e_neg = Tensor(np.array([1.0, 3.0])), Tensor(np.array([-1.0, 0.0, 2.0]))
    assert float(contrastive_divergence_loss(e_pos, e_neg).item()) == pytest.approx(2.0 - 1.0 / 3.0)
    reg = (1 + 9) / 2 + (1 + 0 + 4) / 3
    assert float(contrastive_divergence_loss(e_pos, e_neg, alpha=0.5).item()) == pytest.approx(
        2.0 - 1.0 / 3.0 + 0.5 * reg)


def mlp_energy_fn(x_pos, x_neg, alpha):
    """The loss as a function of a 2-layer softplus MLP's parameters (for gradcheck)."""
    def fn(w1, b1, w2, b2):
        def energy(x):
            h = npjem.functional.softplus(x @ w1.T + b1)
            return (h @ w2.T + b2).reshape(-1)
        return contrastive_divergence_loss(energy(Tensor(x_pos)), energy(Tensor(x_neg)), alpha)
    return fn


@pytest.mark.parametrize("alpha", [0.0, 0.7])
def test_loss_gradcheck_wrt_parameters(alpha):
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(s) for s in ((5, 2), (5,), (1, 5), (1,))]
    fn = mlp_energy_fn(rng.standard_normal((6, 2)), rng.standard_normal((4, 2)), alpha)
    assert npjem.gradcheck(fn, params, atol=1e-6, rtol=1e-5)
    assert npjem.gradgradcheck(fn, params, atol=1e-6, rtol=1e-5)


def test_loss_names_bad_arguments():
    e = Tensor(np.zeros(3))
    with pytest.raises(ValueError, match="alpha"):
        contrastive_divergence_loss(e, e, alpha=-1.0)
    with pytest.raises(ValueError, match="e_neg"):
        contrastive_divergence_loss(e, Tensor(np.zeros((3, 1))))
    with pytest.raises(ValueError, match="e_pos"):
        contrastive_divergence_loss(Tensor(np.zeros(0)), e)
    with pytest.raises(TypeError, match="e_pos"):
        contrastive_divergence_loss(np.zeros(3), e)


# ------------------------------------------------------------------------------ one exact update

def test_one_cd_step_is_the_ml_gradient_of_the_negatives(xp):
    # Noiseless Langevin, k = 1, from the data: x₋ = x₊ − η(x₊ − μ); the μ-gradient of the loss
    # is mean x₋ − mean x₊ = −η mean(x₊ − μ), so SGD moves μ by lr·η·mean(x₊ − μ).
    energy = CentredQuadratic(device=backend.device_of(xp.zeros(1)))
    data = gaussian_data(xp, n=64)
    opt = optim.SGD(energy.parameters(), lr=1.0)
    train_ebm(energy, data, opt, "cd", k=1, sampler=Langevin(0.1, noise_scale=0.0), steps=1,
              batch_size=64, alpha=0.0, generator=0, progress=False)
    expected = 0.1 * backend.to_numpy(data).mean(axis=0)
    np.testing.assert_allclose(backend.to_numpy(energy.mu.data), expected, rtol=1e-12)


# ------------------------------------------------------------------------------ methods move the minimum

@pytest.mark.parametrize("method", ["cd", "pcd", "replay"])
def test_training_moves_the_minimum_toward_the_data_mean(xp, method):
    energy = CentredQuadratic(device=backend.device_of(xp.zeros(1)))
    data = gaussian_data(xp)
    opt = optim.SGD(energy.parameters(), lr=0.5)
    hist = train_ebm(energy, data, opt, method, k=5, sampler=Langevin(0.1), steps=30, batch_size=64,
                     alpha=0.0, box=(-4.0, 4.0), buffer_size=256, generator=1, progress=False)
    start = np.linalg.norm(DATA_MEAN)
    end = np.linalg.norm(backend.to_numpy(energy.mu.data) - DATA_MEAN)
    assert end < 0.5 * start, (method, end)
    assert hist.steps == 30
    assert all(np.isfinite(hist["grad_norm"])) and all(np.isfinite(hist["energy_gap"]))


def test_history_records_per_step_diagnostics(xp):
    energy = CentredQuadratic(device=backend.device_of(xp.zeros(1)))
    data = gaussian_data(xp, n=100)
    seen = []
    hist = train_ebm(energy, data, optim.SGD(energy.parameters(), lr=0.1), "cd", k=2, epochs=2,
                     batch_size=30, generator=0, progress=False, callback=seen.append)
    assert hist.steps == 2 * (100 // 30) == len(seen)
    assert hist["epoch"] == [0, 0, 0, 1, 1, 1]
    for key in ("loss", "energy_gap", "grad_norm", "acceptance", "time"):
        assert len(hist[key]) == hist.steps
    assert seen[0]["energy_gap"] == hist["energy_gap"][0]
    assert hist["grad_norm"][0] > 0


def test_mala_reports_acceptance_and_callback_stops(xp):
    from npjem.ebm.samplers import MALA
    energy = CentredQuadratic(device=backend.device_of(xp.zeros(1)))
    hist = train_ebm(energy, gaussian_data(xp, n=64), optim.SGD(energy.parameters(), lr=0.1), "cd", k=2,
                     sampler=MALA(0.05), steps=10, batch_size=32, generator=0, progress=False,
                     callback=lambda r: r["step"] == 2)
    assert hist.steps == 3
    assert all(0.0 <= a <= 1.0 for a in hist["acceptance"])


def test_progress_lines_go_to_stderr(xp, capsys):
    energy = CentredQuadratic(device=backend.device_of(xp.zeros(1)))
    train_ebm(energy, gaussian_data(xp, n=64), optim.SGD(energy.parameters(), lr=0.1), steps=4,
              batch_size=32, k=1, generator=0, log_every=2)
    err = capsys.readouterr().err
    assert "step 2/4" in err and "E_data-E_samples" in err


def test_samples_never_reach_the_parameter_grads(xp):
    # After train_ebm's own update, the next sampling leaves .grad as the last backward set it.
    energy = CentredQuadratic(device=backend.device_of(xp.zeros(1)))
    neg = CDNegatives()
    gen = npjem.random.default_rng(0, backend.device_of(xp.zeros(1)))
    neg(energy, gaussian_data(xp, n=8), Langevin(0.1), 3, gen)
    assert energy.mu.grad is None


# ------------------------------------------------------------------------------ PCD and replay buffer

def test_pcd_particles_persist_between_calls(xp):
    gen = npjem.random.default_rng(0, backend.device_of(xp.zeros(1)))
    pcd = PersistentNegatives(16, box=(-1.0, 1.0))
    x_pos = gaussian_data(xp, n=16)
    first, _ = pcd(None, x_pos, identity_sampler(1.0), 1, gen)
    p1 = backend.to_numpy(pcd.particles).copy()
    assert p1.min() >= 0.0 and p1.max() <= 2.0           # uniform in the box, then +1
    second, _ = pcd(None, x_pos, identity_sampler(1.0), 1, gen)
    np.testing.assert_allclose(backend.to_numpy(pcd.particles), p1 + 1.0)
    np.testing.assert_allclose(backend.to_numpy(second), backend.to_numpy(first) + 1.0)


def test_pcd_particles_can_start_at_the_data(xp):
    gen = npjem.random.default_rng(0, backend.device_of(xp.zeros(1)))
    pcd = PersistentNegatives(5, init="data")
    x_pos = xp.asarray(np.arange(6.0).reshape(3, 2))
    pcd(None, x_pos, identity_sampler(0.0), 1, gen)
    np.testing.assert_array_equal(backend.to_numpy(pcd.particles),
                                  np.concatenate([np.arange(6.0).reshape(3, 2)] * 2)[:5])
    with pytest.raises(ValueError, match="init"):
        PersistentNegatives(5, init="zeros")


def test_pcd_with_more_particles_updates_a_batch_of_them(xp):
    gen = npjem.random.default_rng(1, backend.device_of(xp.zeros(1)))
    pcd = PersistentNegatives(40, box=(-1.0, 1.0))
    x_pos = gaussian_data(xp, n=10)
    pcd(None, x_pos, identity_sampler(0.0), 1, gen)
    before = backend.to_numpy(pcd.particles).copy()
    pcd(None, x_pos, identity_sampler(10.0), 1, gen)
    moved = (backend.to_numpy(pcd.particles) != before).all(axis=1)
    assert moved.sum() == 10


def test_pcd_particles_persist_across_train_ebm_calls(xp):
    energy = CentredQuadratic(device=backend.device_of(xp.zeros(1)))
    data = gaussian_data(xp, n=64)
    pcd = PersistentNegatives(32, box=(-4.0, 4.0))
    opt = optim.SGD(energy.parameters(), lr=0.1)
    train_ebm(energy, data, opt, k=1, steps=1, batch_size=32, negatives=pcd, generator=0, progress=False)
    kept = backend.to_numpy(pcd.particles).copy()
    train_ebm(energy, data, opt, k=1, sampler=Langevin(1e-8, noise_scale=0.0), steps=1, batch_size=32,
              negatives=pcd, generator=1, progress=False)
    np.testing.assert_allclose(backend.to_numpy(pcd.particles), kept, atol=1e-6)   # continued, not restarted


def test_replay_buffer_keeps_its_size_and_reinitialises_the_fraction(xp):
    gen = npjem.random.default_rng(2, backend.device_of(xp.zeros(1)))
    buf = ReplayBuffer(size=5000, reinit_fraction=0.2, box=(-1.0, 1.0))
    m = 2000
    x_pos = xp.zeros((m, 2))
    buf(None, x_pos, identity_sampler(), 1, gen)
    assert tuple(buf.buffer.shape) == (5000, 2)
    buf.buffer[...] = 100.0                              # mark every stored state
    out, _ = buf(None, x_pos, identity_sampler(), 1, gen)
    out = backend.to_numpy(out)
    fresh = (out != 100.0).all(axis=1)
    assert fresh.sum() == buf.last_reinitialised
    assert abs(fresh.sum() - 0.2 * m) < 4 * np.sqrt(m * 0.2 * 0.8)
    assert np.all(np.abs(out[fresh]) <= 1.0)             # restarts are uniform noise in the box
    assert tuple(buf.buffer.shape) == (5000, 2)
    # the restarted states were written back (an index drawn twice keeps its last write)
    stored = backend.to_numpy(buf.buffer)
    assert {tuple(r) for r in stored[(stored != 100.0).all(axis=1)]} <= {tuple(r) for r in out[fresh]}
    assert (stored != 100.0).all(axis=1).sum() > 0.8 * fresh.sum()


def test_replay_buffer_writes_the_chains_back(xp):
    gen = npjem.random.default_rng(3, backend.device_of(xp.zeros(1)))
    buf = ReplayBuffer(size=8, reinit_fraction=0.0, box=(-1.0, 1.0))
    x_pos = xp.zeros((8, 2))
    buf(None, x_pos, identity_sampler(), 1, gen)
    before = backend.to_numpy(buf.buffer).copy()
    buf(None, x_pos, identity_sampler(5.0), 1, gen)
    after = backend.to_numpy(buf.buffer)
    changed = (after != before).all(axis=1)
    np.testing.assert_allclose(after[changed], before[changed] + 5.0)
    assert changed.sum() >= 1
    with pytest.raises(ValueError, match="buffer holds"):
        buf(None, xp.zeros((2, 3)), identity_sampler(), 1, gen)


# ------------------------------------------------------------------------------ bad arguments

@pytest.mark.parametrize("kwargs, err, match", [
    (dict(method="cdk"), ValueError, "method"),
    (dict(k=0), ValueError, "k must"),
    (dict(batch_size=1000), ValueError, "batch_size"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(alpha=-0.1), ValueError, "alpha"),
    (dict(epochs=2), ValueError, "exactly one of steps and epochs"),
    (dict(steps=0), ValueError, "steps"),
    (dict(box=(1.0, 0.0)), ValueError, "box"),
    (dict(sampler=3), TypeError, "sampler"),
    (dict(log_every=0), ValueError, "log_every"),
    (dict(callback=1), TypeError, "callback"),
])
def test_train_ebm_names_bad_arguments(xp, kwargs, err, match):
    energy = CentredQuadratic(device=backend.device_of(xp.zeros(1)))
    args = dict(steps=1, batch_size=8, progress=False, generator=0)
    args.update(kwargs)
    with pytest.raises(err, match=match):
        train_ebm(energy, gaussian_data(xp, n=16), optim.SGD(energy.parameters(), lr=0.1), **args)


def test_train_ebm_rejects_bad_data_and_optimizers(xp):
    energy = CentredQuadratic(device=backend.device_of(xp.zeros(1)))
    opt = optim.SGD(energy.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="data must be a batch"):
        train_ebm(energy, xp.zeros(16), opt, steps=1, batch_size=4)
    with pytest.raises(TypeError, match="optimizer"):
        train_ebm(energy, gaussian_data(xp, n=16), object(), steps=1, batch_size=4)
    with pytest.raises(ValueError, match="n_particles"):
        PersistentNegatives(0)
    with pytest.raises(ValueError, match="reinit_fraction"):
        ReplayBuffer(10, reinit_fraction=1.5)


def test_diverging_training_raises_before_the_update(xp):
    energy = CentredQuadratic(device=backend.device_of(xp.zeros(1)))

    def bad_sampler(energy, x, n_steps, generator=None, return_info=False):
        return Tensor(x * float("nan")), {}
    mu0 = backend.to_numpy(energy.mu.data).copy()
    with pytest.raises(FloatingPointError, match="step 0"):
        train_ebm(energy, gaussian_data(xp, n=16), optim.SGD(energy.parameters(), lr=0.1), steps=2,
                  batch_size=8, sampler=bad_sampler, progress=False, generator=0)
    np.testing.assert_array_equal(backend.to_numpy(energy.mu.data), mu0)
