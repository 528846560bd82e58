"""``npjem.runs``: the command line's runs from Python, with every guarantee the command line gives
(run folder, checkpoints, Ctrl-C, resume, pictures), and the seam between the two."""
import ast
import inspect
import json
import os

import numpy as np
import pytest

import npjem
from npjem import cli, recipes, runs
from npjem.methods import BarlowTwins, SimCLR
from test_cli import _interrupt_at  # Ctrl-C at a given step: a real SIGINT, or raised inside the step

# A run of a second or two: 64 shapes, one epoch of 4 steps, a 4-wide backbone.
TINY = dict(n_train=64, n_test=24, epochs=1, batch_size=16, width=4, hidden_dim=16, out_dim=8, probe_max_iter=5,
            quiet=True)
TINY_FLAGS = ["--n-train", "64", "--n-test", "24", "--epochs", "1", "--batch-size", "16", "--width", "4",
              "--hidden-dim", "16", "--out-dim", "8", "--probe-max-iter", "5", "--quiet"]


@pytest.fixture(autouse=True)
def shapes_cache_and_pillow(tmp_path, monkeypatch):
    from npjem import plot

    monkeypatch.setenv("NPJEM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(plot, "_has_matplotlib", lambda: False)  # Pillow draws fast


def _arrays_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_pretrain_from_python_is_the_command_line_run(tmp_path, capsys):
    res = runs.pretrain("byol", out=str(tmp_path / "py"), **TINY)
    assert cli.main(["pretrain", "--method", "byol", *TINY_FLAGS, "--out", str(tmp_path / "cli")]) == 0
    capsys.readouterr()
    on_disk = json.loads((tmp_path / "py" / "results.json").read_text())
    assert on_disk["metrics"] == pytest.approx(res["metrics"]) and res["steps"] == 4
    from_cli = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert from_cli["loss_per_epoch"] == on_disk["loss_per_epoch"]
    assert from_cli["metrics"]["linear_probe"] == on_disk["metrics"]["linear_probe"]
    assert from_cli["config"] == {**on_disk["config"], "out": str(tmp_path / "cli")}
    _arrays_equal(npjem.load(str(tmp_path / "py" / "checkpoint.npz"))["method"],
                  npjem.load(str(tmp_path / "cli" / "checkpoint.npz"))["method"])
    # The recipe filled in what was left unset, and the method's own options are recorded.
    assert res["config"]["optimizer"] == recipes.OPTIMIZER["optimizer"] and res["config"]["lr"] == recipes.OPTIMIZER["lr"]
    assert "final_momentum" in res["config"] and res["recipe"]["momentum"] == recipes.DEFAULTS["byol"]["momentum"]


def test_a_run_draws_its_pictures_and_is_not_overwritten_unless_force(tmp_path, monkeypatch, capsys):
    from PIL import Image

    out = str(tmp_path / "run")
    first = runs.pretrain("simclr", out=out, **TINY)
    for name in ("curves.png", "embeddings.png"):
        with Image.open(tmp_path / "run" / name) as im:
            assert im.format == "PNG" and im.size[0] > 100
    assert len(first["per_epoch"]["h_effective_rank"]) == 1
    with pytest.raises(runs.RunError) as e:
        runs.pretrain("simclr", out=out, **{**TINY, "seed": 1})
    assert "already holds a run" in str(e.value) and "force=True" in str(e.value) and "resume=True" in str(e.value)
    assert "--force" in e.value.flags() and "--resume" in e.value.flags() and "force=True" not in e.value.flags()
    assert json.loads((tmp_path / "run" / "results.json").read_text())["config"]["seed"] == first["config"]["seed"] == 0
    assert runs.pretrain("simclr", out=out, force=True, **{**TINY, "seed": 1})["config"]["seed"] == 1
    assert json.loads((tmp_path / "run" / "results.json").read_text())["config"]["seed"] == 1
    # out="" writes nothing at all.
    monkeypatch.chdir(tmp_path / "run")
    before = sorted(os.listdir("."))
    assert runs.pretrain("simclr", out="", **TINY)["steps"] == 4
    assert sorted(os.listdir(".")) == before


def test_an_unwritable_out_is_refused_before_training(tmp_path, monkeypatch):
    import npjem.methods

    monkeypatch.setattr(npjem.methods, "fit", lambda *a, **k: pytest.fail("trained before out was checked"))
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(runs.RunError, match=r"out=.*not writable"):
        runs.pretrain("simclr", out=str(blocker / "run"), **TINY)


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes_the_same_run(tmp_path, monkeypatch):
    two = {**TINY, "epochs": 2}  # the interruption falls in the second epoch, after a shuffle
    whole = runs.pretrain("simclr", out=str(tmp_path / "whole"), **two)
    with monkeypatch.context() as m:
        _interrupt_at(m, SimCLR, 6, "sigint")
        with pytest.raises(runs.RunInterrupted) as e:
            runs.pretrain("simclr", out=str(tmp_path / "cut"), **two)
    stop = e.value
    assert isinstance(stop, KeyboardInterrupt) and stop.checkpoint == str(tmp_path / "cut" / "checkpoint.npz")
    assert "after epoch 1, step 2 of 4" in str(stop) and "resume=True" in str(stop)
    saved = npjem.load(stop.checkpoint)
    assert saved["progress"]["step"] == 6 and not saved["progress"]["complete"]
    assert not (tmp_path / "cut" / "results.json").exists()
    # Resumed with the saved settings: none of them needs to be given again.
    cut = runs.pretrain("simclr", out=str(tmp_path / "cut"), resume=True, quiet=True)
    assert cut["resumed_at_step"] == 6 and cut["steps"] == whole["steps"] == 8
    assert cut["config"]["n_train"] == 64 and cut["config"]["width"] == 4
    np.testing.assert_allclose(cut["loss_per_epoch"], whole["loss_per_epoch"], rtol=1e-5)


def test_a_resumed_byol_run_continues_its_momentum_schedule(tmp_path, monkeypatch):
    # BYOL's target momentum follows the whole run's steps: a resumed run must not restart it at τ_base.
    from npjem.methods import BYOL

    two = {**TINY, "epochs": 2}
    runs.pretrain("byol", out=str(tmp_path / "whole"), **two)
    with monkeypatch.context() as m:
        _interrupt_at(m, BYOL, 5, "sigint")
        with pytest.raises(runs.RunInterrupted):
            runs.pretrain("byol", out=str(tmp_path / "cut"), **two)
    runs.pretrain("byol", out=str(tmp_path / "cut"), resume=True, quiet=True)
    whole = npjem.load(str(tmp_path / "whole" / "checkpoint.npz"))["method"]
    cut = npjem.load(str(tmp_path / "cut" / "checkpoint.npz"))["method"]
    targets = [k for k in whole if k.startswith(("backbone_target.", "projector_target.")) and "running" not in k
               and "num_batches" not in k]
    assert targets
    for k in targets:  # Ctrl-C finishes the step: the resumed run is the whole run, bit for bit
        np.testing.assert_array_equal(cut[k], whole[k], err_msg=k)


def test_resume_refuses_a_differing_setting_and_a_finished_run(tmp_path, monkeypatch):
    with pytest.raises(runs.RunError, match="no checkpoint"):
        runs.pretrain("simclr", out=str(tmp_path / "empty"), resume=True, **TINY)
    with monkeypatch.context() as m:
        _interrupt_at(m, SimCLR, 2, "raise")
        with pytest.raises(runs.RunInterrupted):
            runs.pretrain("simclr", out=str(tmp_path / "run"), **TINY)
    with pytest.raises(runs.RunError) as e:
        runs.pretrain("simclr", out=str(tmp_path / "run"), resume=True, **{**TINY, "lr": 0.01})
    assert "lr=0.01 differs from the run being resumed (lr=0.001)" in str(e.value)
    assert "--lr 0.01 differs" in e.value.flags()
    with pytest.raises(runs.RunError, match="temperature was not set"):
        runs.pretrain("simclr", out=str(tmp_path / "run"), resume=True, temperature=0.5, **TINY)
    runs.pretrain("simclr", out=str(tmp_path / "run"), resume=True, **TINY)
    with pytest.raises(runs.RunError, match="is complete"):
        runs.pretrain("simclr", out=str(tmp_path / "run"), resume=True, **TINY)


def test_resume_takes_the_method_and_its_options_from_the_checkpoint(tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        _interrupt_at(m, BarlowTwins, 2, "raise")
        with pytest.raises(runs.RunInterrupted):
            runs.pretrain("barlow_twins", out=str(tmp_path / "run"), lambd=0.02, **TINY)
    res = runs.pretrain(out=str(tmp_path / "run"), resume=True)
    assert res["config"]["method"] == "barlow_twins" and res["config"]["lambd"] == 0.02 and res["steps"] == 4


def test_python_arguments_are_checked_naming_them(tmp_path):
    out = str(tmp_path / "never")
    for kwargs, kind, needle in ((dict(epochs=0), ValueError, "epochs"), (dict(batch_size=1), ValueError, "batch_size"),
                                 (dict(lr=-1.0), ValueError, "lr"), (dict(aug_invert=2.0), ValueError, "aug_invert"),
                                 (dict(arch="vgg"), ValueError, "arch"), (dict(width=2.5), TypeError, "width"),
                                 (dict(lambd=0.1), TypeError, "lambd"), (dict(data=3), TypeError, "data")):
        with pytest.raises(kind, match=needle):
            runs.pretrain("simclr", out=out, **kwargs)
    with pytest.raises(ValueError, match="method"):
        runs.pretrain("simclrr", out=out)
    with pytest.raises(ValueError, match="device"):
        runs.pretrain("simclr", out=out, device="tpu")
    with pytest.raises(runs.RunError, match=r"n_train=32 leaves"):
        runs.pretrain("simclr", out=out, n_train=32, n_test=24)
    assert not os.path.exists(os.path.join(out, "checkpoint.npz"))


def test_a_device_that_is_not_there_is_refused_naming_it(tmp_path, monkeypatch):
    from npjem import backend

    monkeypatch.setattr(backend, "cupy_available", lambda: False)
    with pytest.raises(runs.RunError, match=r"device=cuda: CuPy or a CUDA GPU is not available"):
        runs.pretrain("simclr", out=str(tmp_path / "run"), device="cuda", **TINY)
    with pytest.raises(runs.RunError, match=r"device=cuda"):
        runs.baselines(out="", device="cuda")
    assert not (tmp_path / "run").exists()


def test_baselines_and_ebm_from_python(tmp_path, capsys):
    res = runs.baselines(out=str(tmp_path / "b"), only=("random",), n_train=60, n_test=30, width=4,
                         probe_max_iter=5, quiet=True)
    assert [r["name"] for r in res["rows"]] == ["random init (convnet-4)"]
    assert json.loads((tmp_path / "b" / "baselines.json").read_text())["rows"][0]["linear_probe"] == \
        res["rows"][0]["linear_probe"]
    with pytest.raises(runs.RunError, match="only"):
        runs.baselines(out="", only="raw,pixels")
    r = runs.ebm("nce", data="rings", steps=3, n_train=300, grid=40, batch_size=32, sample_steps=3,
                 out=str(tmp_path / "e"), quiet=True)
    assert r["result"]["lr"] == recipes.ebm_defaults("nce")["lr"] and np.isfinite(r["result"]["nll"])
    assert (tmp_path / "e" / "rings_nce.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(runs.RunError) as e:
        runs.ebm("nce", data="rings", out=str(tmp_path / "e"))
    assert "force=True" in str(e.value) and "resume" not in str(e.value)
    with pytest.raises(ValueError, match="objective"):
        runs.ebm("score", out="")


def test_baselines_of_data2vecs_own_vit_start_where_data2vec_starts(tmp_path):
    # --arch vit_tiny: the backbone data2vec trains (its features the mean of the patch tokens), so
    # its random-init row is data2vec's epoch 0 and its supervised row the ceiling of data2vec's gap.
    from npjem.methods.data2vec import ViTMeanPool

    x = npjem.randn(3, 3, 32, 32, generator=5)
    bb = recipes.build_backbone("vit_tiny", width=7, seed=2)
    d2v = recipes.build_method("data2vec", recipes.build_backbone("convnet", 4, seed=2), n_train=40, seed=2)
    assert isinstance(bb, ViTMeanPool) and bb.num_features == 64
    np.testing.assert_array_equal(bb(x).data, d2v.backbone(x).data)
    res = runs.baselines(out=str(tmp_path / "v"), arch="vit_tiny", only="random", n_train=60, n_test=30,
                         probe_max_iter=3, quiet=True)
    assert [r["name"] for r in res["rows"]] == ["random init (vit_tiny)"] and res["config"]["arch"] == "vit_tiny"
    with pytest.raises(ValueError, match="arch must be one of 'convnet', 'resnet_tiny', 'vit_tiny', got 'vit'"):
        runs.baselines(out="", arch="vit")
    with pytest.raises(ValueError, match="arch"):
        runs.pretrain(method="simclr", arch="vit_tiny", out="")  # its methods need a ConvNet's feature map


def test_run_errors_name_the_argument_or_the_flag():
    e = runs.RunError("[[n_train=32]] is too few; use a larger [[n_train]], or [[force!]]")
    assert str(e) == "n_train=32 is too few; use a larger n_train, or force=True"
    assert e.flags() == "--n-train 32 is too few; use a larger --n-train, or --force"
    assert isinstance(e, ValueError) and cli.UsageError is runs.RunError
    assert runs.RunError("plain words").flags() == "plain words"


def test_the_parser_defaults_are_the_run_defaults():
    """``npjem pretrain``'s resume check compares what was typed with runs.pretrain's defaults."""
    parsed = vars(cli.build_parser().parse_args(["pretrain"]))
    params = inspect.signature(runs.pretrain).parameters
    for name, p in params.items():
        if p.default is not inspect.Parameter.empty:
            assert parsed[name] == p.default, name
    parsed = vars(cli.build_parser().parse_args(["baselines"]))
    for name, p in inspect.signature(runs.baselines).parameters.items():
        if name != "only":
            assert parsed[name] == p.default, name
    parsed = vars(cli.build_parser().parse_args(["ebm", "sm"]))
    for name, p in inspect.signature(runs.ebm).parameters.items():
        if p.default is not inspect.Parameter.empty:
            assert parsed[name] == p.default, name


def test_no_module_imports_the_command_line():
    root = os.path.dirname(npjem.__file__)
    importers = []
    for folder, _, files in os.walk(root):
        for f in files:
            if not f.endswith(".py") or f in ("cli.py", "__main__.py"):
                continue
            path = os.path.join(folder, f)
            for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [f"{node.module or ''}." + a.name for a in node.names] if isinstance(node, ast.ImportFrom)
                         else [])
                if any(n.split(".")[-2:-1] == ["cli"] or n.endswith(".cli") or n == "npjem.cli" for n in names):
                    importers.append(os.path.relpath(path, root))
    assert importers == []


@pytest.mark.parametrize("method, option", [("dae", {"noise": 0.5}), ("jigsaw", {"n_permutations": 10})])
def test_the_notes_baselines_train_and_are_probed_like_the_others(method, option):
    res = runs.pretrain(method, out="", epochs=1, n_train=64, n_test=40, batch_size=32, width=8,
                        probe_max_iter=20, quiet=True, **option)
    m = res["metrics"]
    assert 0.0 <= m["linear_probe"] <= 1.0 and m["h_effective_rank"] > 1.0
    assert res["config"]["method"] == method and res["steps"] == 2
    with pytest.raises(TypeError, match="takes no option"):
        runs.pretrain(method, out="", epochs=1, n_train=64, n_test=40, lambd=0.1)


def test_probing_during_training_leaves_the_trajectory_bit_identical(tmp_path):
    three = {**TINY, "epochs": 3}
    plain = runs.pretrain("simclr", out=str(tmp_path / "plain"), **three)
    probed = runs.pretrain("simclr", out=str(tmp_path / "probed"), probe_every=1, **three)
    assert probed["loss_per_epoch"] == plain["loss_per_epoch"]
    a = npjem.load(str(tmp_path / "plain" / "checkpoint.npz"))
    b = npjem.load(str(tmp_path / "probed" / "checkpoint.npz"))
    for k in a["method"]:
        np.testing.assert_array_equal(a["method"][k], b["method"][k], err_msg=k)
    assert probed["metrics"]["linear_probe"] == plain["metrics"]["linear_probe"]
    assert [q["epoch"] for q in probed["probes"]] == [1, 2, 3]  # the last epoch's probe counted once
    last = probed["probes"][-1]  # the probe after the last epoch is the run's own final one
    assert (last["linear_probe"], last["knn"]) == (probed["metrics"]["linear_probe"], probed["metrics"]["knn"])
    assert (tmp_path / "probed" / "learning_curve.png").stat().st_size > 1000
    assert plain["probes"] == [] and not (tmp_path / "plain" / "learning_curve.png").exists()


def test_probe_epochs_are_listed_or_every_e_and_checked(tmp_path):
    res = runs.pretrain("simclr", out="", probe_every=[2], **{**TINY, "epochs": 2})
    assert [q["epoch"] for q in res["probes"]] == [2]
    res = runs.pretrain("simclr", out="", probe_every=[1], **{**TINY, "epochs": 2})
    assert [q["epoch"] for q in res["probes"]] == [1, 2]  # the run's own probe closes the curve
    assert res["probes"][-1]["linear_probe"] == res["metrics"]["linear_probe"]
    with pytest.raises(ValueError, match="names epoch 5 of a run of 2"):
        runs.pretrain("simclr", out="", probe_every=(1, 5), **{**TINY, "epochs": 2})
    with pytest.raises(ValueError, match="probe_every"):
        runs.pretrain("simclr", out="", probe_every=0, **TINY)
    with pytest.raises(SystemExit) as e:  # one line and exit 2, as every flag error
        cli.main(["pretrain", "--probe-every", "1,x", *TINY_FLAGS, "--out", str(tmp_path / "x")])
    assert e.value.code == 2


def test_a_shapes_variant_is_a_data_name(tmp_path):
    assert runs.shapes_variant("shapes") == () and runs.shapes_variant("digits") is None
    assert runs.shapes_variant("shapes-noclutter-nonoise") == ("clutter", "noise")
    for bad in ("shapes-noblur", "shapes-clutter", "shapes-nonoise-nonoise", 3):
        assert runs.shapes_variant(bad) is None
    res = runs.pretrain("simclr", data="shapes-nocolour", out=str(tmp_path / "v"), **TINY)
    assert res["config"]["data"] == "shapes-nocolour"
    base = runs.baselines(data="shapes-noclutter", out="", only="raw", n_train=100, n_test=20, probe_max_iter=5,
                          raw_probe_max_iter=5, quiet=True)
    assert "raw" in json.dumps(base)
    with pytest.raises(runs.RunError, match="shapes variant"):
        runs.pretrain("simclr", data="shapes-noblur", out="", **TINY)
    with pytest.raises(SystemExit) as e:
        cli.main(["pretrain", "--data", "shapes-noblur", *TINY_FLAGS, "--out", str(tmp_path / "x")])
    assert e.value.code == 2


def test_the_supervised_ceiling_has_a_learning_curve_too():
    res = runs.baselines(out="", only="supervised", epochs=2, n_train=100, n_test=20, width=4, batch_size=32,
                         probe_max_iter=5, probe_every=1, quiet=True)
    (row,) = res["rows"]
    assert [q["epoch"] for q in row["probes"]] == [1, 2]
    assert row["probes"][-1]["linear_probe"] == row["linear_probe"]  # the last probe is the row's own
    plain = runs.baselines(out="", only="supervised", epochs=2, n_train=100, n_test=20, width=4, batch_size=32,
                           probe_max_iter=5, quiet=True)
    assert plain["rows"][0]["fine_tune_accuracy"] == row["fine_tune_accuracy"]  # probing changed nothing
    assert "probes" not in plain["rows"][0]


def test_the_gap_closed_is_measured_against_the_ceiling_at_the_best_epoch(tmp_path):
    def write(folder, name, payload):
        os.makedirs(tmp_path / folder)
        with open(tmp_path / folder / name, "w") as f:
            json.dump(payload, f)

    probes = [{"epoch": 5, "linear_probe": 0.3}, {"epoch": 10, "linear_probe": 0.5}, {"epoch": 20, "linear_probe": 0.4}]
    write("m", "results.json", {"config": {"method": "simclr", "data": "shapes"}, "probes": probes})
    write("b", "baselines.json", {"rows": [
        {"name": "random init (convnet-32)", "linear_probe": 0.1},
        {"name": "supervised (convnet-32, 20 ep)", "linear_probe": 0.9,
         "probes": [{"epoch": 5, "linear_probe": 0.6}, {"epoch": 10, "linear_probe": 0.7},
                    {"epoch": 20, "linear_probe": 0.9}]}]})
    m, rand, sup = runs.learning_curves([str(tmp_path / "m"), str(tmp_path / "b")])
    assert (m["best"], m["best_epoch"]) == (0.5, 10)
    assert m["gap_closed"] == pytest.approx((0.5 - 0.1) / (0.7 - 0.1))  # the ceiling at epoch 10, not at 20
    assert sup["gap_closed"] == pytest.approx(1.0) and rand["gap_closed"] is None


def test_data2vec_is_measured_against_its_own_vit(tmp_path):
    def write(folder, name, payload):
        os.makedirs(tmp_path / folder)
        with open(tmp_path / folder / name, "w") as f:
            json.dump(payload, f)

    def base(arch, floor, top):
        return {"config": {"arch": arch}, "rows": [
            {"name": "random init", "linear_probe": floor},
            {"name": "supervised", "linear_probe": top[-1],
             "probes": [{"epoch": e, "linear_probe": v} for e, v in zip((5, 10), top)]}]}

    curve = [{"epoch": 5, "linear_probe": 0.2}, {"epoch": 10, "linear_probe": 0.3}]
    write("d", "results.json", {"config": {"method": "data2vec", "data": "shapes", "arch": "convnet"}, "probes": curve})
    write("s", "results.json", {"config": {"method": "simclr", "data": "shapes", "arch": "convnet"}, "probes": curve})
    write("c", "baselines.json", base("convnet", 0.1, (0.5, 0.9)))
    write("v", "baselines.json", base("vit_tiny", 0.2, (0.3, 0.4)))
    rows = runs.learning_curves([str(tmp_path / f) for f in "dscv"])
    by = {r["name"]: r for r in rows}
    assert list(by) == ["data2vec", "simclr", "random init", "supervised", "random init (vit_tiny)",
                        "supervised (vit_tiny)"]
    assert by["data2vec"]["arch"] == "vit_tiny" and by["simclr"]["arch"] == "convnet"
    assert by["data2vec"]["gap_closed"] == pytest.approx((0.3 - 0.2) / (0.4 - 0.2))
    assert by["simclr"]["gap_closed"] == pytest.approx((0.3 - 0.1) / (0.9 - 0.1))
    assert by["supervised (vit_tiny)"]["gap_closed"] == pytest.approx(1.0)
    assert by["random init (vit_tiny)"]["gap_closed"] is None
    # Without its own backbone's baselines, data2vec's gap is not measured against the ConvNet's.
    assert runs.learning_curves([str(tmp_path / f) for f in "dc"])[0]["gap_closed"] is None


def test_learning_curves_gather_the_probes_of_every_run(tmp_path):
    import importlib.util

    two = {**TINY, "epochs": 2}
    runs.pretrain("simclr", out=str(tmp_path / "simclr"), probe_every=1, **two)
    runs.pretrain("dae", out=str(tmp_path / "dae"), probe_every=[2], **{**two, "hidden_dim": None, "out_dim": None})
    runs.baselines(out=str(tmp_path / "base"), only="random,supervised", epochs=2, n_train=100, n_test=24, width=4,
                   batch_size=32, probe_max_iter=5, probe_every=1, quiet=True)
    png = tmp_path / "curves.png"
    rows = runs.learning_curves([str(tmp_path / d) for d in ("simclr", "dae", "base")], str(png))
    by = {r["name"]: r for r in rows}
    assert list(by) == ["simclr", "dae", "random init", "supervised"]
    assert by["simclr"]["epochs"] == [1, 2] and not by["simclr"]["dashed"]  # the end's probe counted once
    assert by["dae"]["dashed"] and by["supervised"]["dashed"] and by["random init"]["epochs"] == [0]
    r = by["simclr"]
    assert r["best"] == max(r["linear_probe"]) and r["best_epoch"] in r["epochs"]
    assert by["random init"]["gap_closed"] is None
    assert all(q["gap_closed"] is None for q in runs.learning_curves([str(tmp_path / "simclr")]))
    assert png.stat().st_size > 2000
    with pytest.raises(runs.RunError, match="no probes"):
        runs.pretrain("simclr", out=str(tmp_path / "plain"), **TINY)
        runs.learning_curves([str(tmp_path / "plain")])
    with pytest.raises(runs.RunError, match="no results.json"):
        runs.learning_curves([str(tmp_path)])
    spec = importlib.util.spec_from_file_location("lc", os.path.join(os.path.dirname(__file__), "..", "examples",
                                                                     "learning_curves.py"))
    lc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lc)
    text = lc.table(rows)
    assert text.splitlines()[0] == "| method | ep 0 | ep 1 | ep 2 | best (epoch) | gap closed at best |"
    assert "| simclr |" in text and text.splitlines()[1].count("|---") == 6
