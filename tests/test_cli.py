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
        cli.main(["pretrain", "--method", "byol"])
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


# ---------------------------------------------------------------- the methods without negatives

NONCONTRASTIVE = ("byol", "simsiam", "barlow_twins", "vicreg", "swav", "dino", "data2vec")


@pytest.mark.parametrize("name", NONCONTRASTIVE)
def test_pretrain_runs_each_noncontrastive_method(tmp_path, name):
    out = tmp_path / name
    res = cli.main(["pretrain", "--method", name, "--n-train", "64", "--n-test", "20", "--epochs", "1",
                    "--batch-size", "32", "--width", "4", "--hidden-dim", "16", "--out-dim", "8",
                    "--probe-max-iter", "5", "--quiet", "--out", str(out)])
    assert res == 0
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
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["pretrain", "--lambd", "-1"])
