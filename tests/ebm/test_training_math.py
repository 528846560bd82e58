"""train_ebm's bookkeeping checked against values a reader can compute: the loss and the energy
gap of constant energies, the batches of an epoch, the default box, sampler and negatives, the
dtype the chains see, the replay buffer's restarts on the seed's numbers, the log lines and the
progress bar, and the defaults against the table of their sources."""
import io
import math
import re
import sys

import numpy as np
import pytest

from npjem import Tensor, nn, optim
from npjem import random as nrandom
from npjem.ebm.samplers import Langevin
from npjem.ebm.training import (CDNegatives, PersistentNegatives, ReplayBuffer,
                                contrastive_divergence_loss, train_ebm)


class Linear(nn.Module):
    """E(x) = wᵀx + c with a learnable w (and a fixed c), in float64 unless told."""

    def __init__(self, w, c=0.0, dtype=np.float64):
        super().__init__()
        self.w = nn.Parameter(np.asarray(w, dtype=dtype))
        self.c = c

    def forward(self, x):
        return (x * self.w).sum(axis=1) + self.c


class Fixed:
    """Negatives that are always the same array, with the diagnostics a sampler would report."""

    name = "fixed"

    def __init__(self, x_neg, info=None):
        self.x_neg, self.info, self.seen = x_neg, info or {}, []

    def __call__(self, energy, x_pos, sampler, k, gen):
        self.seen.append(x_pos.copy())
        return self.x_neg, dict(self.info)


def recorder():
    calls = []

    def sampler(energy, x, n_steps, generator=None, return_info=False):
        calls.append((x.copy(), n_steps, generator))
        return Tensor(x), {}
    return sampler, calls


def still():
    """An optimizer that takes no step: the energy stays what the test computed by hand."""
    return optim.SGD([nn.Parameter(np.zeros(1))], lr=0.0)


# ------------------------------------------------------------------------------ the loss

def test_the_loss_accepts_a_batch_of_one():
    loss = contrastive_divergence_loss(Tensor(np.array([2.0])), Tensor(np.array([-1.0])), alpha=0.5)
    assert loss.item() == pytest.approx(3.0 + 0.5 * (4.0 + 1.0))


@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_history_holds_the_loss_and_gap_of_known_energies(alpha):
    # every data row is x₊ = (1, 2), the negatives are (3, −1): E₊ = 1 + 4 + 0.5, E₋ = 3 − 2 + 0.5
    energy = Linear([1.0, 2.0], c=0.5)
    data = np.tile([1.0, 2.0], (6, 1))
    neg = Fixed(np.tile([3.0, -1.0], (3, 1)), {"grad_norm": [1.0, 2.0, 6.0], "acceptance": 0.25})
    h = train_ebm(energy, data, still(), negatives=neg, steps=2, batch_size=3, alpha=alpha, progress=False)
    e_pos, e_neg = 5.5, 1.5
    assert h["loss"] == pytest.approx([e_pos - e_neg + alpha * (e_pos ** 2 + e_neg ** 2)] * 2)
    assert h["energy_gap"] == pytest.approx([e_pos - e_neg] * 2)
    assert h["grad_norm"] == pytest.approx([3.0, 3.0])
    assert h["acceptance"] == [0.25, 0.25]


def test_diagnostics_a_sampler_does_not_report_are_nan():
    h = train_ebm(Linear([1.0, 1.0]), np.ones((4, 2)), still(), negatives=Fixed(np.zeros((2, 2))), steps=1,
                  batch_size=2, progress=False)
    assert math.isnan(h["grad_norm"][0]) and math.isnan(h["acceptance"][0])


def test_the_default_alpha_is_one_tenth():
    energy = Linear([1.0, 2.0], c=0.5)
    h = train_ebm(energy, np.tile([1.0, 2.0], (3, 1)), still(), negatives=Fixed(np.tile([3.0, -1.0], (3, 1))),
                  steps=1, batch_size=3, progress=False)
    assert h["loss"][0] == pytest.approx(4.0 + 0.1 * (5.5 ** 2 + 1.5 ** 2))


# ------------------------------------------------------------------------------ batches and epochs

def test_each_epoch_is_a_partition_into_full_batches():
    data = np.arange(22.0).reshape(11, 2)                         # 11 rows, batch 3: 3 batches an epoch
    neg = Fixed(np.zeros((3, 2)))
    h = train_ebm(Linear([0.1, 0.1]), data, still(), negatives=neg, epochs=3, batch_size=3, progress=False,
                  generator=0)
    assert h["epoch"] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert all(x.shape == (3, 2) for x in neg.seen)
    for e in range(3):
        rows = np.concatenate(neg.seen[3 * e:3 * e + 3])[:, 0]
        assert len(set(rows)) == 9 and set(rows) <= set(data[:, 0])


def test_time_is_seconds_since_the_start():
    import time
    t0 = time.perf_counter()
    h = train_ebm(Linear([0.1, 0.1]), np.ones((4, 2)), still(), negatives=Fixed(np.zeros((2, 2))), steps=3,
                  batch_size=2, progress=False)
    assert 0.0 <= h["time"][0] <= h["time"][-1] <= time.perf_counter() - t0


def test_the_callback_record_names_every_field():
    records = []
    neg = Fixed(np.zeros((2, 2)), {"grad_norm": [4.0]})
    h = train_ebm(Linear([0.1, 0.1]), np.ones((4, 2)), still(), negatives=neg, steps=3, batch_size=2,
                  progress=False, callback=records.append)
    assert [r["step"] for r in records] == [0, 1, 2] and [r["epoch"] for r in records] == [0, 0, 1]
    assert [r["loss"] for r in records] == h["loss"] and records[0]["grad_norm"] == 4.0
    assert records[0]["energy_gap"] == h["energy_gap"][0]
    assert records[-1]["history"] is h and records[0]["negatives"] is neg


def test_train_ebm_puts_a_module_in_training_mode_and_takes_plain_callables():
    energy = Linear([0.1, 0.1])
    energy.eval()
    train_ebm(energy, np.ones((4, 2)), still(), negatives=Fixed(np.zeros((2, 2))), steps=1, batch_size=2,
              progress=False)
    assert energy.training
    w = nn.Parameter(np.array([0.5, -0.5]))
    h = train_ebm(lambda x: (x * w).sum(axis=1), np.ones((4, 2)), optim.SGD([w], lr=0.1),
                  negatives=Fixed(np.zeros((2, 2))), steps=1, batch_size=2, progress=False)
    np.testing.assert_allclose(w.data, [0.4, -0.6])                 # one SGD step on mean E₊ − mean E₋
    assert h.steps == 1


def test_integer_data_is_refused():
    with pytest.raises(ValueError, match="floating"):
        train_ebm(Linear([0.1, 0.1]), np.ones((4, 2), dtype=np.int64), still(), steps=1, batch_size=2,
                  progress=False)


# ------------------------------------------------------------------------------ dtype, box, defaults

def test_the_chains_run_in_the_energys_dtype_on_the_seeds_generator():
    sampler, calls = recorder()
    energy = Linear([0.1, 0.1], dtype=np.float32)
    train_ebm(energy, np.random.default_rng(0).random((8, 2)), optim.SGD(energy.parameters(), lr=0.01),
              sampler=sampler, k=3, steps=2, batch_size=4, progress=False, generator=5)
    assert [c[0].dtype for c in calls] == [np.float32, np.float32]
    assert [c[1] for c in calls] == [3, 3]
    assert all(isinstance(c[2], nrandom.Generator) for c in calls)


def run(method, seed=3, **kw):
    data = np.random.default_rng(1).normal(1.0, 0.5, (40, 2))
    energy = Linear([0.3, -0.2])
    records = []
    h = train_ebm(energy, data, optim.SGD(energy.parameters(), lr=0.05), method, steps=3, batch_size=8,
                  generator=seed, progress=False, callback=records.append, **kw)
    return h, records[-1]["negatives"], data, energy


def test_the_default_box_is_the_datas_range_widened_by_a_tenth():
    _, neg, data, _ = run("pcd", k=1)
    lo, hi = data.min(), data.max()
    assert neg.box == pytest.approx((lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo)))
    _, neg, _, _ = run("replay", k=1)
    assert neg.box == pytest.approx((lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo)))
    # a narrow data set (range 0.3) gets a narrow box: the pad is a tenth of the range, not of 1
    records = []
    narrow = np.linspace(0.0, 0.3, 8).reshape(4, 2)
    train_ebm(Linear([0.1, 0.1]), narrow, still(), "pcd", k=1, steps=1, batch_size=2, progress=False,
              callback=records.append)
    assert records[0]["negatives"].box == pytest.approx((-0.03, 0.33))


def test_train_ebm_hands_its_replay_settings_to_the_buffer():
    _, neg, _, _ = run("replay", k=1, buffer_size=77, reinit_fraction=0.4)
    assert (neg.size, neg.reinit_fraction) == (77, 0.4)


@pytest.mark.parametrize("method, explicit", [
    ("cd", lambda box: (CDNegatives(), Langevin(step_size=0.01, clamp=box))),
    ("pcd", lambda box: (PersistentNegatives(8, box=box), Langevin(step_size=0.01, clamp=box))),
    ("replay", lambda box: (ReplayBuffer(10000, 0.05, box=box), Langevin(step_size=0.01, clamp=box))),
])
def test_the_default_negatives_and_sampler_are_the_documented_ones(method, explicit):
    h, _, data, energy = run(method)
    lo, hi = data.min(), data.max()
    box = (lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo))
    negatives, sampler = explicit(box)
    h2, _, _, energy2 = run("cd", negatives=negatives, sampler=sampler, k=10, alpha=0.1)
    assert h["loss"] == h2["loss"]
    np.testing.assert_array_equal(energy.w.data, energy2.w.data)


def test_a_seed_repeats_a_run_and_another_seed_does_not():
    for method in ("cd", "pcd", "replay"):
        a, b, c = run(method, 3)[0], run(method, 3)[0], run(method, 4)[0]
        assert a["loss"] == b["loss"] and a["loss"] != c["loss"]


def test_pcd_keeps_the_number_of_particles_asked_for():
    _, neg, _, _ = run("pcd", k=1, n_particles=13)
    assert neg.n_particles == 13 and neg.particles.shape == (13, 2)


def test_the_default_sampler_stays_in_the_box():
    # an energy that pulls the chains far off the data: the default sampler clamps them to the box
    energy = Linear([-50.0, 50.0])
    data = np.random.default_rng(0).random((16, 2))
    records = []
    train_ebm(energy, data, still(), "pcd", k=5, steps=2, batch_size=8, generator=0, progress=False,
              callback=records.append)
    neg = records[-1]["negatives"]
    lo, hi = neg.box
    assert neg.particles.min() >= lo and neg.particles.max() <= hi
    assert np.isclose(neg.particles[:, 0].max(), hi) and np.isclose(neg.particles[:, 1].min(), lo)


def test_default_batch_size_and_k():
    # Du & Mordatch's CIFAR batch of 128; k = 10 steps (the docstring's default)
    sampler, calls = recorder()
    data = np.random.default_rng(0).random((130, 2))
    h = train_ebm(Linear([0.1, 0.1]), data, still(), sampler=sampler, steps=1, progress=False)
    assert calls[0][0].shape == (128, 2) and calls[0][1] == 10 and h.steps == 1


# ------------------------------------------------------------------------------ PCD and the replay buffer

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_particles_fill_the_box_in_the_datas_dtype(dtype):
    neg = PersistentNegatives(4000, box=(-3.0, 5.0))
    sampler, _ = recorder()
    neg(None, np.zeros((4000, 2), dtype=dtype), sampler, 1, nrandom.default_rng(0))
    p = neg.particles
    assert p.dtype == dtype and p.shape == (4000, 2)
    assert -3.0 <= p.min() < -2.95 and 4.95 < p.max() <= 5.0
    assert abs(p.mean() - 1.0) < 0.15


def test_particles_started_at_the_data_repeat_the_batch():
    neg = PersistentNegatives(5, init="data")
    sampler, _ = recorder()
    x = np.arange(6.0).reshape(2, 3)
    neg(None, x, sampler, 1, nrandom.default_rng(0))
    np.testing.assert_array_equal(neg.particles, x[[0, 1, 0, 1, 0]])


def test_boxes_without_width_raise():
    for make in (lambda b: PersistentNegatives(3, box=b), lambda b: ReplayBuffer(10, box=b)):
        with pytest.raises(ValueError, match="low < high"):
            make((1.0, 1.0))


def test_negatives_say_what_they_are():
    assert repr(CDNegatives()) == "CDNegatives()"
    assert repr(PersistentNegatives(3, box=(0.0, 1.0), init="data")) == \
        "PersistentNegatives(n_particles=3, box=(0.0, 1.0), init='data')"
    assert repr(ReplayBuffer(5, 0.1, box=(-1.0, 1.0))) == "ReplayBuffer(size=5, reinit_fraction=0.1, box=(-1.0, 1.0))"


def test_replay_buffer_defaults_follow_jem():
    # JEM (Grathwohl et al. 2019): buffer 10000, reinit_freq 0.05; the box is npjem's (−4, 4)
    buf = ReplayBuffer()
    assert (buf.size, buf.reinit_fraction, buf.box, buf.last_reinitialised) == (10000, 0.05, (-4.0, 4.0), 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_replay_buffer_restarts_on_the_seeds_numbers(dtype):
    buf = ReplayBuffer(size=20, reinit_fraction=0.5, box=(-1.0, 2.0))
    sampler, _ = recorder()
    x_pos = np.zeros((12, 3), dtype=dtype)
    x, _ = buf(None, x_pos, sampler, 1, nrandom.default_rng(7))
    g = nrandom.default_rng(7)
    buffer = g.uniform(-1.0, 2.0, size=(20, 3), dtype=dtype)
    idx = g.integers(0, 20, size=12)
    fresh = g.random(12, dtype=dtype) < 0.5
    noise = g.uniform(-1.0, 2.0, size=(12, 3), dtype=dtype)
    want = np.where(fresh[:, None], noise, buffer[idx])
    assert 0 < fresh.sum() < 12 and buf.last_reinitialised == fresh.sum()
    assert x.dtype == dtype
    np.testing.assert_array_equal(x, want)
    buffer[idx] = want
    np.testing.assert_array_equal(buf.buffer, buffer)


# ------------------------------------------------------------------------------ the log lines and the bar

def test_log_lines_come_at_the_first_every_log_every_and_the_last_step(capsys):
    neg = Fixed(np.zeros((2, 2)))
    h = train_ebm(Linear([0.1, 0.2]), np.ones((4, 2)), optim.SGD([nn.Parameter(np.zeros(1))], lr=0.0),
                  negatives=neg, steps=53, batch_size=2, generator=0)
    lines = capsys.readouterr().err.strip().splitlines()
    assert [ln.split(" step ")[1].split(" ")[0] for ln in lines] == ["1/53", "50/53", "53/53"]
    assert all(ln.startswith("Linear fixed step ") for ln in lines)
    assert f"loss {np.mean(h['loss'][:50]):.4f}" in lines[1]
    assert "E_data-E_samples" in lines[0] and "epoch 24" in lines[1]


def test_log_lines_of_unnamed_negatives_name_the_energy_only(capsys):
    def negatives(energy, x_pos, sampler, k, gen):
        return np.zeros((2, 2)), {}
    train_ebm(Linear([0.1, 0.2]), np.ones((4, 2)), still(), negatives=negatives, steps=1, batch_size=2)
    assert capsys.readouterr().err.startswith("Linear  step 1/1 epoch 0: loss ")


def test_quiet_runs_print_nothing(capsys):
    train_ebm(Linear([0.1, 0.2]), np.ones((4, 2)), still(), negatives=Fixed(np.zeros((2, 2))), steps=3,
              batch_size=2, progress=False)
    assert capsys.readouterr().err == ""


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_the_bar_counts_the_steps(monkeypatch):
    pytest.importorskip("tqdm")
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    neg = Fixed(np.zeros((2, 2)), {"grad_norm": [0.5]})
    train_ebm(Linear([0.1, 0.2]), np.ones((4, 2)), still(), negatives=neg, steps=3, batch_size=2,
              log_every=1)
    text = term.getvalue()
    assert "Linear fixed" in text and "3/3" in text and "step" in text and "4/3" not in text
    assert re.search(r", [\d.?]+(step/s|s/step)\]", text)
    assert re.search(r"loss=0\.\d{4}\b", text) and re.search(r"gap=0\.\d{3}\b", text) and "grad=0.5" in text


def test_on_a_terminal_unnamed_negatives_leave_the_energys_name_alone(monkeypatch):
    pytest.importorskip("tqdm")
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)

    def negatives(energy, x_pos, sampler, k, gen):
        return np.zeros((2, 2)), {}
    train_ebm(Linear([0.1, 0.2]), np.ones((4, 2)), still(), negatives=negatives, steps=2, batch_size=2)
    assert "Linear: " in term.getvalue()
