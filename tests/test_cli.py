"""The command line: ``npjem --help``, a tiny ``npjem pretrain`` per method, ``npjem baselines``."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import npjem
from npjem import cli


@pytest.fixture(autouse=True)
def shapes_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NPJEM_CACHE", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def pillow_pictures(request, monkeypatch):
    """Draw the run's pictures with Pillow (fast); the tests in ``AUTO_PICTURES`` keep the
    automatic choice, which is matplotlib where it is installed."""
    from npjem import plot

    if request.function.__name__ not in AUTO_PICTURES:
        monkeypatch.setattr(plot, "_has_matplotlib", lambda: False)


def test_help_lists_the_commands_and_options(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "pretrain" in out and "baselines" in out
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--help"])
    out = capsys.readouterr().out
    for flag in ("--method", "--epochs", "--batch-size", "--lr", "--device", "--seed", "--n-train", "--out"):
        assert flag in out


def test_python_dash_m_npjem_help_runs():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "npjem", "pretrain", "--help"], capture_output=True, text=True,
                       env=env, timeout=60, check=False)
    assert r.returncode == 0 and "--method" in r.stdout


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "pretrain" in capsys.readouterr().out


@pytest.mark.parametrize("method", ["simclr", "moco", "pirl"])
def test_tiny_pretrain_writes_results_and_a_checkpoint(tmp_path, capsys, method):
    out = tmp_path / method
    cli.main(["pretrain", "--method", method, "--n-train", "64", "--n-test", "40", "--epochs", "1",
              "--batch-size", "32", "--width", "4", "--hidden-dim", "16", "--out-dim", "8", "--queue-size", "64",
              "--num-negatives", "16", "--probe-max-iter", "30", "--quiet", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "linear probe" in printed and "kNN" in printed
    res = json.loads((out / "results.json").read_text())
    assert res["command"] == "pretrain" and res["config"]["method"] == method and res["steps"] == 2
    m = res["metrics"]
    for key in ("linear_probe", "knn", "h_effective_rank", "h_embedding_std", "z_effective_rank"):
        assert key in m
    assert 0.0 <= m["linear_probe"] <= 1.0 and 0.0 <= m["knn"] <= 1.0
    ckpt = npjem.load(str(out / "checkpoint.npz"))
    assert "backbone.features.0.weight" in ckpt["method"]
    assert ckpt["config"]["method"] == method


def test_tiny_baselines_write_their_rows(tmp_path, capsys):
    cli.main(["baselines", "--n-train", "60", "--n-test", "30", "--epochs", "1", "--batch-size", "30",
              "--width", "4", "--raw-probe-max-iter", "20", "--probe-max-iter", "30", "--quiet",
              "--out", str(tmp_path)])
    res = json.loads((tmp_path / "baselines.json").read_text())
    names = [r["name"] for r in res["rows"]]
    assert names[0] == "raw pixels" and names[1].startswith("random init") and names[2].startswith("supervised")
    for r in res["rows"]:
        assert 0.0 <= r["linear_probe"] <= 1.0 and 0.0 <= r["knn"] <= 1.0
    assert "fine_tune_accuracy" in res["rows"][2]


def test_bad_arguments_exit_with_a_message(capsys):
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--method", "nosuch"])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--epochs", "0"])
    assert "positive integer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--weight-decay", "-1e-4"])
    assert "--weight-decay" in capsys.readouterr().err


def test_pretrain_batch_size_defaults_to_the_method_recipe(tmp_path):
    out = tmp_path / "moco"
    n = 2 * cli.DEFAULTS["moco"]["batch_size"]
    cli.main(["pretrain", "--method", "moco", "--n-train", str(n), "--n-test", "40", "--epochs", "1",
              "--width", "4", "--hidden-dim", "16", "--out-dim", "8", "--queue-size", "64",
              "--probe-max-iter", "5", "--quiet", "--out", str(out)])
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["batch_size"] == cli.DEFAULTS["moco"]["batch_size"] and res["steps"] == 2
    assert res["recipe"]["bn_splits"] == cli.DEFAULTS["moco"]["bn_splits"]
    assert res["recipe"]["batch_norm"] is cli.DEFAULTS["moco"]["head_bn"]
    assert res["config"]["optimizer"] == cli.DEFAULTS["moco"]["optimizer"]
    assert res["config"]["weight_decay"] == cli.DEFAULTS["moco"]["weight_decay"]


def test_optimizer_defaults_follow_the_method_and_the_chosen_optimizer():
    moco = cli.DEFAULTS["moco"]
    assert cli.optimizer_defaults("moco") == (moco["optimizer"], moco["weight_decay"])
    assert cli.optimizer_defaults("simclr") == (cli.OPTIMIZER["optimizer"], cli.OPTIMIZER["weight_decay"])
    # Another optimizer than the method's own does not inherit its decay.
    assert cli.optimizer_defaults("moco", "adam") == ("adam", cli.OPTIMIZER["weight_decay"])
    assert cli.optimizer_defaults("moco", weight_decay=0.0) == (moco["optimizer"], 0.0)
    assert cli.optimizer_defaults("moco", moco["optimizer"]) == (moco["optimizer"], moco["weight_decay"])
    assert cli.optimizer_defaults("pirl", "sgd", 1e-4) == ("sgd", 1e-4)
    with pytest.raises(ValueError, match="method"):
        cli.optimizer_defaults("no_such_method")
    args = cli.build_parser().parse_args(["pretrain", "--method", "moco"])
    assert args.optimizer is None and args.weight_decay is None  # resolved per method in cmd_pretrain


def test_moco_head_bn_flag_switches_the_projector_batchnorm():
    from npjem.nn import BatchNorm1d

    def has_bn(**kw):
        bb = cli.build_backbone("convnet", 4, seed=0)
        m = cli.build_method("moco", bb, 100, hidden_dim=16, out_dim=8, **kw)
        return any(isinstance(layer, BatchNorm1d) for layer in m.projector.modules())

    assert has_bn() is cli.DEFAULTS["moco"]["head_bn"]
    assert has_bn(head_bn=True) and not has_bn(head_bn=False)
    args = cli.build_parser().parse_args(["pretrain", "--method", "moco", "--no-head-bn"])
    assert args.head_bn is False


def test_recipe_augmentation_rotates_inverts_and_crops_large():
    from npjem.data.augment import (
        ColorJitter,
        RandomInvert,
        RandomResizedCrop,
        RandomRotation,
    )

    aug = cli.shapes_augmentation(32, **cli.AUGMENTATION)
    kinds = [type(t) for t in aug.transforms]
    assert kinds[0] is RandomRotation and kinds[-1] is RandomInvert
    crop = next(t for t in aug.transforms if isinstance(t, RandomResizedCrop))
    assert crop.scale == (cli.AUGMENTATION["scale"], 1.0)
    jitter = next(t for t in aug.transforms if isinstance(t, ColorJitter))
    assert jitter.brightness == pytest.approx((0.6, 1.4)) and jitter.contrast == pytest.approx((0.6, 1.4))
    assert jitter.hue == pytest.approx((-0.5, 0.5))


def test_shapes_augmentation_optional_rotation_and_invert():
    from npjem.data.augment import RandomInvert, RandomRotation, RandomVerticalFlip

    plain = cli.shapes_augmentation(32, scale=0.25, strength=1.0, hue=0.5)
    assert "RandomRotation" not in repr(plain) and "RandomInvert" not in repr(plain)
    assert "RandomVerticalFlip" not in repr(plain)
    full = cli.shapes_augmentation(32, scale=0.25, strength=1.0, hue=0.5, rotation=180, invert=0.5, vflip=0.5)
    assert any(isinstance(t, RandomVerticalFlip) and t.p == 0.5 for t in full.transforms)
    assert isinstance(full.transforms[0], RandomRotation) and full.transforms[0].degrees == (-180.0, 180.0)
    assert isinstance(full.transforms[-1], RandomInvert) and full.transforms[-1].p == 0.5
    out = full(np.random.default_rng(1).random((4, 3, 32, 32)).astype(np.float32), generator=0)
    assert out.shape == (4, 3, 32, 32) and out.min() >= 0.0 and out.max() <= 1.0


# ====================================================================== pictures, progress

AUTO_PICTURES = {"test_pretrain_draws_the_curves_and_the_embeddings_and_prints_where"}
TINY = ["--n-train", "64", "--n-test", "24", "--epochs", "2", "--batch-size", "16", "--width", "4",
        "--hidden-dim", "16", "--out-dim", "8", "--queue-size", "40", "--num-negatives", "16", "--bn-splits", "2",
        "--probe-max-iter", "5"]


def _pretrain(out, *extra, method="simclr"):
    return cli.main(["pretrain", "--method", method, *TINY, "--out", str(out), *extra])


def test_pretrain_draws_the_curves_and_the_embeddings_and_prints_where(tmp_path, capsys):
    from PIL import Image

    _pretrain(tmp_path / "run")
    captured = capsys.readouterr()
    for name, size in (("curves.png", (1200, 380)), ("embeddings.png", (760, 560))):
        path = tmp_path / "run" / name
        assert f"wrote {path}" in captured.out
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size == size
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    per_epoch = res["per_epoch"]
    for key in ("loss", "h_embedding_std", "z_embedding_std", "h_effective_rank", "z_effective_rank"):
        assert len(per_epoch[key]) == 2 and all(np.isfinite(per_epoch[key])), key
    assert per_epoch["loss"] == res["loss_per_epoch"]
    # The silent steps say what they do (stderr), unless --quiet.
    assert "shapes: 64 train / 24 test images" in captured.err and "evaluating:" in captured.err


# ====================================================================== no lost work

def test_out_is_checked_before_training(tmp_path, capsys, monkeypatch):
    import npjem.methods

    def no_training(*a, **k):
        raise AssertionError("trained before --out was checked")

    monkeypatch.setattr(npjem.methods, "fit", no_training)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit) as e:
        _pretrain(blocker / "run", "--quiet")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out" in err and "not writable" in err and "Traceback" not in err
    assert not list(tmp_path.glob("**/.npjem-write-test-*"))


def test_a_second_run_into_a_run_folder_stops_unless_force(tmp_path, capsys):
    from PIL import Image

    from npjem import plot

    out = tmp_path / "run"
    _pretrain(out, "--quiet")
    assert capsys.readouterr().err == ""  # --quiet: no progress
    assert plot.available_backends() == ("pillow",)  # the autouse fixture: drawn with Pillow alone
    with Image.open(out / "curves.png") as im:
        assert im.size == (1200, 380)
    first = (out / "results.json").read_text()
    with pytest.raises(SystemExit) as e:
        _pretrain(out, "--quiet")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--force" in err and err.count("\n") == 1
    assert (out / "results.json").read_text() == first
    _pretrain(out, "--quiet", "--seed", "1", "--force")
    assert json.loads((out / "results.json").read_text())["config"]["seed"] == 1
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--help"])
    assert "--force" in capsys.readouterr().out


def _interrupt_at(monkeypatch, method_cls, call, how):
    """Patch ``after_step`` to interrupt at its ``call``-th call: a real SIGINT (Ctrl-C) or a
    KeyboardInterrupt raised inside the step (a second Ctrl-C)."""
    import signal

    orig = method_cls.after_step
    calls = {"n": 0}

    def after_step(self, step, total):
        orig(self, step, total)
        calls["n"] += 1
        if calls["n"] == call:
            if how == "sigint":
                os.kill(os.getpid(), signal.SIGINT)
            else:
                raise KeyboardInterrupt

    monkeypatch.setattr(method_cls, "after_step", after_step)


@pytest.mark.parametrize("method", ["simclr", "moco", "pirl"])
def test_ctrl_c_saves_a_checkpoint_that_resume_continues_to_the_same_run(tmp_path, capsys, monkeypatch, method):
    from npjem.methods import MoCo, PIRL, SimCLR

    cls = {"simclr": SimCLR, "moco": MoCo, "pirl": PIRL}[method]
    _pretrain(tmp_path / "whole", "--quiet", method=method)
    with monkeypatch.context() as m:
        _interrupt_at(m, cls, 6, "sigint")  # in the second epoch (4 steps per epoch)
        with pytest.raises(SystemExit) as e:
            _pretrain(tmp_path / "cut", "--quiet", method=method)
    assert e.value.code == 130
    err = capsys.readouterr().err
    assert "--resume" in err and "after epoch 1, step 2 of 4" in err
    saved = npjem.load(str(tmp_path / "cut" / "checkpoint.npz"))
    assert saved["progress"]["step"] == 6 and not saved["progress"]["complete"]
    assert not (tmp_path / "cut" / "results.json").exists()
    _pretrain(tmp_path / "cut", "--quiet", "--resume", method=method)
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    cut = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert cut["steps"] == whole["steps"] == 8
    assert cut["resumed_at_step"] == 6 and whole["resumed_at_step"] is None
    if npjem.backend.default_device() != "cpu":
        return  # CuPy's generator states cannot be saved: a resumed GPU run draws fresh streams
    # The same run, as far as the CPU run itself repeats (float32 sums may differ in the last bits).
    np.testing.assert_allclose(cut["loss_per_epoch"], whole["loss_per_epoch"], rtol=1e-5)
    a = npjem.load(str(tmp_path / "whole" / "checkpoint.npz"))["method"]
    b = npjem.load(str(tmp_path / "cut" / "checkpoint.npz"))["method"]
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_an_interrupt_inside_a_step_still_saves_and_resumes(tmp_path, capsys, monkeypatch):
    from npjem.methods import SimCLR

    with monkeypatch.context() as m:
        _interrupt_at(m, SimCLR, 3, "raise")
        with pytest.raises(SystemExit) as e:
            _pretrain(tmp_path / "run", "--quiet")
    assert e.value.code == 130
    saved = npjem.load(str(tmp_path / "run" / "checkpoint.npz"))
    assert saved["progress"]["step"] == 2 and not saved["progress"]["complete"]
    capsys.readouterr()
    _pretrain(tmp_path / "run", "--quiet", "--resume")
    assert json.loads((tmp_path / "run" / "results.json").read_text())["steps"] == 8


def test_resume_refuses_what_it_cannot_continue(tmp_path, capsys, monkeypatch):
    from npjem.methods import SimCLR

    with pytest.raises(SystemExit) as e:
        _pretrain(tmp_path / "empty", "--quiet", "--resume")
    assert e.value.code == 2 and "no checkpoint" in capsys.readouterr().err
    with monkeypatch.context() as m:
        _interrupt_at(m, SimCLR, 1, "sigint")
        with pytest.raises(SystemExit):
            _pretrain(tmp_path / "run", "--quiet")
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        _pretrain(tmp_path / "run", "--quiet", "--resume", "--lr", "0.01")
    assert e.value.code == 2 and "--lr 0.01 differs from the run being resumed" in capsys.readouterr().err
    _pretrain(tmp_path / "run", "--quiet", "--resume")
    with pytest.raises(SystemExit) as e:
        _pretrain(tmp_path / "run", "--quiet", "--resume")
    assert e.value.code == 2 and "is complete" in capsys.readouterr().err


# ====================================================================== one-line errors

def _usage_error(capsys, argv):
    """The one line a mistake gets (exit status 2, no traceback, no usage block)."""
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "usage:" not in err
    assert len(err.splitlines()) == 1, err
    return err


def test_batch_size_one_is_refused_naming_the_flag(capsys):
    line = _usage_error(capsys, ["pretrain", "--batch-size", "1"])
    assert "--batch-size" in line and "contrasted" in line
    assert "--batch-size" in _usage_error(capsys, ["baselines", "--batch-size", "1"])


def test_cuda_without_cupy_is_refused(capsys, monkeypatch):
    from npjem import backend

    monkeypatch.setattr(backend, "cupy_available", lambda: False)
    line = _usage_error(capsys, ["pretrain", "--device", "cuda"])
    assert "--device" in line and "CuPy" in line
    assert "--device" in _usage_error(capsys, ["pretrain", "--device", "tpu"])


@pytest.mark.parametrize("flag,value", [("--aug-invert", "2"), ("--aug-grayscale", "-0.1"), ("--aug-vflip", "1.5"),
                                        ("--aug-scale", "0"), ("--aug-hue", "0.7"), ("--aug-rotation", "400"),
                                        ("--momentum", "1"), ("--aug-strength", "-1"), ("--lr", "nan")])
def test_out_of_range_flags_are_refused_at_parse_time_naming_the_flag(capsys, flag, value):
    line = _usage_error(capsys, ["pretrain", flag, value])
    assert flag in line and " p " not in line


def test_unknown_data_and_missing_folders_are_refused(capsys, tmp_path):
    assert "--data" in _usage_error(capsys, ["pretrain", "--data", "cifar10"])
    assert "no such folder" in _usage_error(capsys, ["pretrain", "--data", str(tmp_path / "nowhere")])
    (tmp_path / "imgs" / "train" / "a").mkdir(parents=True)
    line = _usage_error(capsys, ["pretrain", "--data", str(tmp_path / "imgs"), "--out", str(tmp_path / "o")])
    assert "--data" in line and "test/ is missing" in line


def test_digits_without_scikit_learn_is_one_line_after_the_status(capsys, monkeypatch, tmp_path):
    from npjem.data import datasets

    def no_sklearn(*a, **k):
        raise ImportError("digits needs scikit-learn")

    monkeypatch.setattr(datasets, "digits", no_sklearn)
    with pytest.raises(SystemExit) as e:
        cli.main(["pretrain", "--data", "digits", "--out", str(tmp_path / "r")])
    assert e.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("digits:") and lines[-1] == ("npjem pretrain: error: --data digits needs "
                                                            "scikit-learn: pip install 'npjem[datasets]'")


def test_data_folder_trains_on_its_images(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 16), ("test", 6)):
        for cls in ("dark", "light"):
            d = tmp_path / "imgs" / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                base = 40 if cls == "dark" else 200
                Image.fromarray(rng.integers(base - 30, base + 30, (20, 20, 3)).astype(np.uint8)).save(d / f"{i}.png")
    cli.main(["pretrain", "--data", str(tmp_path / "imgs"), "--epochs", "1", "--batch-size", "8", "--width", "4",
              "--hidden-dim", "16", "--out-dim", "8", "--probe-max-iter", "10", "--quiet",
              "--out", str(tmp_path / "run")])
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["config"]["n_train"] == 32 and res["config"]["n_test"] == 12 and res["steps"] == 4
    assert "imgs" in capsys.readouterr().out


def test_too_few_training_images_for_the_probe_are_refused_before_training(capsys, monkeypatch):
    import npjem.methods

    monkeypatch.setattr(npjem.methods, "fit", lambda *a, **k: pytest.fail("trained on too few images"))
    line = _usage_error(capsys, ["pretrain", "--n-train", "32", "--n-test", "24", "--batch-size", "8", "--out", "", "--quiet"])
    assert "--n-train 32" in line and "linear probe" in line


def test_prefixes_of_flags_are_not_accepted(capsys):
    line = _usage_error(capsys, ["pretrain", "--data-s", "1"])
    assert "unrecognized" in line
    assert "unrecognized" in _usage_error(capsys, ["pretrain", "--n-tr", "64"])
    assert "unrecognized" in _usage_error(capsys, ["baselines", "--epoch", "1"])


def test_a_learning_rate_that_breaks_the_loss_stops_naming_epoch_step_and_flag(tmp_path, capsys):
    line = _usage_error(capsys, ["pretrain", *TINY, "--lr", "1e30", "--quiet", "--out", str(tmp_path / "r")])
    assert "not finite at epoch" in line and ", step " in line and "lower --lr" in line
    assert not (tmp_path / "r" / "results.json").exists()


def test_debug_shows_the_traceback(capsys, monkeypatch, tmp_path):
    with pytest.raises(cli.UsageError, match="already holds a run"):
        (tmp_path / "results.json").write_text("{}")
        cli.main(["pretrain", "--quiet", "--out", str(tmp_path), "--debug"])
    monkeypatch.setenv("NPJEM_DEBUG", "1")
    with pytest.raises(cli.UsageError):
        cli.main(["pretrain", "--quiet", "--out", str(tmp_path)])
    monkeypatch.setenv("NPJEM_DEBUG", "0")
    assert "already holds a run" in _usage_error(capsys, ["pretrain", "--quiet", "--out", str(tmp_path)])


def test_other_errors_are_one_line_too(tmp_path, capsys):
    # MoCo's shuffling BN needs a batch that splits into --bn-splits groups: caught as one line.
    line = _usage_error(capsys, ["pretrain", "--method", "moco", *TINY, "--batch-size", "15", "--quiet",
                                 "--out", str(tmp_path / "r")])
    assert "bn_splits" in line and "--debug" in line

# ---------------------------------------------------------------- the methods without negatives

NONCONTRASTIVE = ("byol", "simsiam", "barlow_twins", "vicreg", "swav", "dino", "data2vec")


@pytest.mark.parametrize("name", NONCONTRASTIVE)
def test_pretrain_runs_each_noncontrastive_method(tmp_path, capsys, name):
    out = tmp_path / name
    res = cli.main(["pretrain", "--method", name, "--n-train", "64", "--n-test", "20", "--epochs", "1",
                    "--batch-size", "32", "--width", "4", "--hidden-dim", "16", "--out-dim", "8",
                    "--probe-max-iter", "5", "--quiet", "--out", str(out)])
    assert res == 0
    printed = capsys.readouterr().out
    trained = "vit_tiny" if name == "data2vec" else "convnet"  # the backbone it trains, whatever --arch says
    assert trained in printed and ("convnet" not in printed) == (name == "data2vec")
    r = json.loads((out / "results.json").read_text())
    assert r["steps"] == 2 and all(np.isfinite(r["loss_per_epoch"]))
    assert r["metrics"]["h_effective_rank"] > 0 and "z_embedding_std" in r["metrics"]
    assert (out / "checkpoint.npz").exists()


def test_noncontrastive_recipes_reach_the_methods():
    bb = lambda: cli.build_backbone("convnet", 4, seed=0)  # noqa: E731
    m = cli.build_method("byol", bb(), 100)
    assert m.momentum == cli.DEFAULTS["byol"]["momentum"]
    assert cli.build_method("byol", bb(), 100, momentum=0.5).momentum == 0.5
    assert cli.build_method("barlow_twins", bb(), 100, lambd=0.02).lambd == 0.02
    assert cli.build_method("barlow_twins", bb(), 100).lambd == cli.DEFAULTS["barlow_twins"]["lambd"]
    v = cli.build_method("vicreg", bb(), 100, std_coeff=10.0)
    assert (v.sim_coeff, v.std_coeff) == (cli.DEFAULTS["vicreg"]["sim_coeff"], 10.0)
    s = cli.build_method("swav", bb(), 100)
    assert s.num_prototypes == cli.DEFAULTS["swav"]["num_prototypes"]
    assert s.views.n_local == cli.DEFAULTS["swav"]["n_local"] and s.temperature == cli.DEFAULTS["swav"]["temperature"]
    d = cli.build_method("dino", bb(), 100, teacher_temp=0.06, n_local=0)
    assert d.teacher_temp == 0.06 and d.views.n_local == 0 and d.out_dim == cli.DEFAULTS["dino"]["num_prototypes"]
    from npjem.methods import ViTMeanPool

    d2v = cli.build_method("data2vec", bb(), 100, mask_ratio=0.5)
    assert isinstance(d2v.backbone, ViTMeanPool) and d2v.mask_ratio == 0.5
    assert d2v.top_k == cli.DEFAULTS["data2vec"]["top_k"]
    with pytest.raises(TypeError, match="lambd"):
        cli.build_method("vicreg", bb(), 100, lambd=0.1)
    with pytest.raises(TypeError, match="lambd"):
        cli.build_method("simclr", bb(), 100, lambd=0.1)


def test_noncontrastive_flags_parse():
    args = cli.build_parser().parse_args(["pretrain", "--method", "dino", "--teacher-temp", "0.05", "--n-local", "0",
                                          "--num-prototypes", "64"])
    assert cli._method_options(args) == {"teacher_temp": 0.05, "n_local": 0, "num_prototypes": 64}
    args = cli.build_parser().parse_args(["pretrain", "--method", "barlow_twins", "--lambd", "0.01",
                                          "--teacher-temp", "0.05"])
    assert cli._method_options(args) == {"lambd": 0.01}  # another method's flag is not passed on
    args = cli.build_parser().parse_args(["pretrain", "--method", "swav", "--epsilon", "0.02"])
    assert cli._method_options(args) == {"epsilon": 0.02}
    assert cli.build_method("swav", cli.build_backbone("convnet", 4), 100, **cli._method_options(args)).epsilon == 0.02
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["pretrain", "--lambd", "-1"])


def test_barlow_twins_recipe_has_a_512_wide_projector_unless_told_otherwise():
    bb = lambda: cli.build_backbone("convnet", 4, seed=0)  # noqa: E731
    weights = {k: v.shape for k, v in cli.build_method("barlow_twins", bb(), 100).state_dict().items()
               if k.startswith("projector") and k.endswith("weight") and len(v.shape) == 2}
    assert all(shape[0] == 512 for shape in weights.values()), weights
    small = cli.build_method("barlow_twins", bb(), 100, out_dim=16, hidden_dim=8).state_dict()
    assert small["projector.layers.6.weight"].shape == (16, 8)
    simclr = cli.build_method("simclr", bb(), 100).state_dict()
    assert max(v.shape[0] for k, v in simclr.items() if k.startswith("projector") and v.ndim == 2) == 128


def test_a_method_recipe_may_change_the_augmentation(monkeypatch):
    bb = lambda: cli.build_backbone("convnet", 4, seed=0)  # noqa: E731
    monkeypatch.setitem(cli.DEFAULTS, "vicreg", {**cli.DEFAULTS["vicreg"], "augmentation": {"invert": 0.0}})
    aug = cli.method_augmentation("vicreg")
    assert aug["invert"] == 0.0 and {k: v for k, v in aug.items() if k != "invert"} == \
        {k: v for k, v in cli.AUGMENTATION.items() if k != "invert"}
    assert "RandomInvert" not in repr(cli.build_method("vicreg", bb(), 100).views)
    assert "RandomInvert(p=0.3" in repr(cli.build_method("vicreg", bb(), 100, aug_invert=0.3).views).replace(" ", "")
    assert cli.method_augmentation("simclr") == cli.AUGMENTATION
    assert "RandomInvert" in repr(cli.build_method("simclr", bb(), 100).views)


def test_dino_head_bn_puts_batch_norm_in_the_head():
    from npjem.nn import BatchNorm1d

    bb = lambda: cli.build_backbone("convnet", 4, seed=0)  # noqa: E731
    has_bn = lambda m: any(isinstance(x, BatchNorm1d) for x in m.projector.modules())  # noqa: E731
    assert has_bn(cli.build_method("dino", bb(), 100, head_bn=True))
    assert not has_bn(cli.build_method("dino", bb(), 100, head_bn=False))
    assert has_bn(cli.build_method("dino", bb(), 100)) == bool(cli.DEFAULTS["dino"].get("batch_norm", False))
