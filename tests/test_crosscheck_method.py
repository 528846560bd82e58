"""crosscheck.compare_method: a user's PyTorch training step against npjem's, step for step.

The BYOL step is the one of ``examples/check_my_pytorch_byol.py`` (a user's code, with its own
module names); DINO's is written below from the authors' train loop (student and teacher on the
concatenated global crops, the loss against the centred, sharpened teacher, then the optimizer
step, the teacher's EMA and the centre update). Planted bugs must be caught and named.
"""
import copy
import importlib.util
import math
import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import npjem  # noqa: E402
import npjem.methods  # noqa: E402
import npjem.optim  # noqa: E402
from npjem import crosscheck  # noqa: E402
from npjem.nn.models import ConvNet  # noqa: E402

_EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "check_my_pytorch_byol.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("check_my_pytorch_byol", _EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_EX = _load_example()


@pytest.fixture(scope="module")
def byol_example():
    return _EX


def test_a_faithful_byol_step_agrees_for_ten_steps(byol_example):
    report = byol_example.check(steps=10, verbose=False)
    assert report.ok, str(report)
    assert report.worst < 1e-9
    assert {r.step for r in report.rows} == set(range(10))
    # every parameter, BN buffer and target tensor is compared, under the user's names
    names = {r.theirs_name for r in report.rows}
    assert {"loss", "target.encoder.features.1.running_var", "predictor.3.bias",
            "online.projector.0.weight"} <= names
    assert "OK" in str(report) and report.first is None


@pytest.mark.parametrize("bug, step, quantity, words", [
    ("ema_before_step", 0, "target.", "before the step"),
    ("momentum_per_epoch", 1, "target.", "per epoch"),
    ("stopgrad_wrong_branch", 0, "online.", "stop-gradient on the wrong branch"),
])
def test_planted_bugs_are_caught_and_named(byol_example, bug, step, quantity, words):
    report = byol_example.check(bug=bug, steps=4, verbose=False)
    assert not report.ok
    assert report.first.step == step
    assert report.first.theirs_name.startswith(quantity)
    assert words in report.hint
    assert "first divergence: step" in str(report) and words in str(report)
    with pytest.raises(crosscheck.CrossCheckError, match="MISMATCH"):
        report.raise_if_failed()


def test_an_off_by_one_momentum_schedule_is_named(byol_example):
    torch.manual_seed(0)
    model = byol_example.MyBYOL().double()
    step = byol_example.make_step(model)
    report = crosscheck.compare_method(
        lambda views, k, total: step(views, k + 1, total), "byol", their_model=model,
        npjem_method=byol_example.npjem_byol(), optimizer=lambda p: npjem.optim.SGD(p, lr=0.05, momentum=0.9),
        key_map=byol_example.key_map, steps=4)
    assert not report.ok and report.first.step == 0
    assert "shifted by one step" in report.hint


def test_weight_decay_on_biases_and_norms_is_named(byol_example):
    torch.manual_seed(0)
    model = byol_example.MyBYOL().double()

    def npjem_sgd(params):  # the authors' exclusion: no decay on biases and BN parameters
        params = list(params)
        return npjem.optim.SGD([{"params": [p for p in params if p.ndim > 1], "weight_decay": 0.01},
                                {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}],
                               lr=0.05, momentum=0.9)

    report = crosscheck.compare_method(byol_example.make_step(model, weight_decay=0.01), "byol", their_model=model,
                                       npjem_method=byol_example.npjem_byol(), optimizer=npjem_sgd,
                                       key_map=byol_example.key_map, steps=2)
    assert not report.ok and report.first.step == 0
    assert "Only biases and BatchNorm" in report.hint


# ------------------------------------------------------------------ DINO, with its centre

WIDTHS, HIDDEN, BOTTLENECK, K = (4, 8), 16, 8, 12


class _WeightNormLinear(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.weight_g = nn.Parameter(torch.ones(o, 1), requires_grad=False)  # norm_last_layer
        self.weight_v = nn.Parameter(torch.randn(o, i))

    def forward(self, x):
        return x @ (self.weight_g * self.weight_v / self.weight_v.norm(dim=1, keepdim=True)).T


class _Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(WIDTHS[-1], HIDDEN), nn.GELU(), nn.Linear(HIDDEN, HIDDEN), nn.GELU(),
                                 nn.Linear(HIDDEN, BOTTLENECK))
        self.last_layer = _WeightNormLinear(BOTTLENECK, K)

    def forward(self, x):
        return self.last_layer(nn.functional.normalize(self.mlp(x), dim=-1, eps=1e-12))


class _DINO(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone, self.projector = _EX.Encoder(WIDTHS), _Head()
        self.backbone_teacher, self.projector_teacher = copy.deepcopy(self.backbone), copy.deepcopy(self.projector)
        for p in list(self.backbone_teacher.parameters()) + list(self.projector_teacher.parameters()):
            p.requires_grad = False
        self.register_buffer("center", torch.zeros(1, K))
        self.register_buffer("num_steps", torch.zeros(1, dtype=torch.int64))


def _dino_step(model, center_first=False, base=0.996, tau_s=0.1, tau_t=0.04, m_c=0.9):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, momentum=0.9)

    def update_center(t):
        with torch.no_grad():
            model.center.mul_(m_c).add_(t.mean(dim=0, keepdim=True), alpha=1 - m_c)

    def step(views, k, total):
        x = torch.cat(views)
        s = model.projector(model.backbone(x)).chunk(2)
        with torch.no_grad():
            t_all = model.projector_teacher(model.backbone_teacher(x))
        if center_first:
            update_center(t_all)
        t = t_all.chunk(2)
        loss = sum((-nn.functional.softmax((t[i] - model.center) / tau_t, dim=-1)
                    * nn.functional.log_softmax(s[v] / tau_s, dim=-1)).sum(-1).mean()
                   for i in range(2) for v in range(2) if v != i) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        m = 1 - (1 - base) * (math.cos(math.pi * k / total) + 1) / 2
        with torch.no_grad():
            for a, b in ((model.backbone_teacher, model.backbone), (model.projector_teacher, model.projector)):
                for pt, po in zip(a.parameters(), b.parameters()):
                    pt.mul_(m).add_(po, alpha=1 - m)
        if not center_first:
            update_center(t_all)
        model.num_steps += 1
        return loss

    return step


def _check_dino(center_first):
    torch.manual_seed(0)
    model = _DINO().double()
    ours = npjem.methods.DINO(ConvNet(widths=WIDTHS, dtype="float64", generator=0), hidden_dim=HIDDEN,
                              bottleneck_dim=BOTTLENECK, out_dim=K, generator=1).double()
    return crosscheck.compare_method(_dino_step(model, center_first), "dino", their_model=model, npjem_method=ours,
                                     optimizer=lambda p: npjem.optim.SGD(p, lr=0.05, momentum=0.9), steps=4)


def test_dino_with_its_centre_agrees():
    report = _check_dino(center_first=False)
    assert report.ok, str(report)
    assert any(r.quantity == "center" for r in report.rows)


def test_dino_centre_updated_before_the_loss_is_caught():
    report = _check_dino(center_first=True)
    assert not report.ok
    assert report.first.step == 0 and report.first.quantity == "loss"
    assert "centre is updated before the loss" in report.hint


# ------------------------------------------------------------------ arguments

def _args(byol_example, **over):
    torch.manual_seed(0)
    model = byol_example.MyBYOL().double()
    kw = dict(their_model=model, npjem_method=byol_example.npjem_byol(), key_map=byol_example.key_map,
              optimizer=lambda p: npjem.optim.SGD(p, lr=0.05), steps=2)
    kw.update(over)
    return byol_example.make_step(model), kw


@pytest.mark.parametrize("over, method, err, words", [
    ({}, "byl", ValueError, "method must be one of"),
    ({"their_model": object()}, "byol", TypeError, "their_model must be a torch.nn.Module"),
    ({"npjem_method": object()}, "byol", TypeError, "npjem_method must be an npjem.methods.Method"),
    ({"key_map": None}, "byol", ValueError, "pass key_map="),
    ({"key_map": 3}, "byol", TypeError, "key_map must be None, a dict or a callable"),
    ({"steps": 0}, "byol", ValueError, "steps"),
    ({"state": (len,)}, "byol", TypeError, "state must be None or a pair"),
    ({"views": [(np.zeros((8, 3, 8, 8)),)]}, "byol", ValueError, "views must be a list of 2"),
    ({"image_shape": (3, -1)}, "byol", ValueError, "image_shape"),
    ({"optimizer": 5}, "byol", TypeError, "optimizer must be an npjem optimizer"),
])
def test_malformed_arguments_raise_one_clear_error(byol_example, over, method, err, words):
    step, kw = _args(byol_example, **over)
    with pytest.raises(err, match=words):
        crosscheck.compare_method(step, method, **kw)


def test_a_float32_npjem_method_is_refused(byol_example):
    step, kw = _args(byol_example)
    kw["npjem_method"] = npjem.methods.BYOL(ConvNet(widths=(4, 8), generator=0), hidden_dim=16, out_dim=8)
    with pytest.raises(ValueError, match=r"float64 throughout \(call npjem_method.double\(\)\)"):
        crosscheck.compare_method(step, "byol", **kw)


def test_their_step_must_be_callable(byol_example):
    _, kw = _args(byol_example)
    with pytest.raises(TypeError, match="their_step must be callable"):
        crosscheck.compare_method(None, "byol", **kw)


def test_extra_state_is_compared_by_name(byol_example):
    step, kw = _args(byol_example)
    calls = {"n": 0}

    def theirs(model):
        calls["n"] += 1
        return {"step_count": np.array(float(calls["n"]))}

    report = crosscheck.compare_method(step, "byol", state=(theirs, lambda m: {"step_count": np.array(7.0)}), **kw)
    bad = [r for r in report.rows if r.quantity == "state:step_count"]
    assert len(bad) == 2 and not any(r.ok for r in bad)
    assert "state 'step_count'" in report.hint


# ------------------------------------------------------------------ compare()'s own arguments

@pytest.mark.parametrize("kwargs, err, words", [
    ({"shapes": [(8, 5), (8, 5)]}, TypeError, "shapes must be a dict such as"),
    ({"kwargs": ["tau"]}, TypeError, "kwargs must be a dict"),
    ({"their_kwargs": 1}, TypeError, "their_kwargs must be a dict"),
    ({"seed": -1}, ValueError, "seed"),
    ({"inputs": np.zeros(3)}, TypeError, "inputs must be a list"),
])
def test_compare_rejects_malformed_arguments(kwargs, err, words):
    with pytest.raises(err, match=words):
        crosscheck.compare(lambda a, b: (a * b).sum(), "vicreg", **kwargs)


def test_compare_rejects_a_loss_that_is_not_a_name():
    with pytest.raises(TypeError, match="loss must be a registered name"):
        crosscheck.compare(lambda a, b: (a * b).sum(), 3)
