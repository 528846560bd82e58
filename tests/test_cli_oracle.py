"""npjem reference / check / gradcheck: files written and re-verified, errors in one line."""
import numpy as np
import pytest

from npjem import crosscheck
from npjem.cli import main


def _run(argv, capsys):
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_reference_then_check_round_trips(tmp_path, capsys):
    path = tmp_path / "nce.npz"
    rc, out, _ = _run(["reference", "info_nce", "--out", str(path), "--seed", "3", "--shape", "N=4",
                       "--kwarg", "temperature=0.5", "--kwarg", "directions=mean"], capsys)
    assert rc == 0 and "wrote" in out and path.exists()
    ref = crosscheck.read_reference(path)
    assert ref["kwargs"]["temperature"] == 0.5 and ref["kwargs"]["directions"] == "mean"
    assert ref["inputs"]["h_x"].shape == (4, 5) and ref["seed"] == 3
    rc, out, _ = _run(["check", str(path)], capsys)
    assert rc == 0 and "OK" in out


def test_reference_all_writes_one_file_per_loss_and_refuses_to_overwrite(tmp_path, capsys):
    rc, out, _ = _run(["reference", "--all", str(tmp_path / "refs")], capsys)
    assert rc == 0
    files = sorted(p.name for p in (tmp_path / "refs").iterdir())
    assert files == sorted(f"{n}.npz" for n in crosscheck.names())
    rc, _, err = _run(["reference", "--all", str(tmp_path / "refs")], capsys)
    assert rc == 2 and "--force" in err and len(err.strip().splitlines()) == 1
    rc, _, _ = _run(["reference", "--all", str(tmp_path / "refs"), "--force"], capsys)
    assert rc == 0
    rc, out, _ = _run(["check", *map(str, sorted((tmp_path / "refs").iterdir()))], capsys)
    assert rc == 0 and out.count("OK") == len(files)


def test_check_fails_with_status_1_on_a_changed_file(tmp_path, capsys):
    from npjem import save

    ref = crosscheck.reference("moco", seed=1)
    ref["value"] = ref["value"] + 1e-6
    save(ref, tmp_path / "m.npz")
    rc, out, _ = _run(["check", str(tmp_path / "m.npz")], capsys)
    assert rc == 1 and "MISMATCH" in out


@pytest.mark.parametrize("argv,needle", [
    (["reference", "infonce", "--out", "x.npz"], "unknown loss 'infonce'"),
    (["reference", "info_nce"], "give LOSS and --out"),
    (["reference", "info_nce", "--out", "x.npz", "--shape", "N"], "--shape takes NAME=VALUE"),
    (["reference", "info_nce", "--out", "x.npz", "--shape", "N=x"], "not a valid value"),
    (["reference", "info_nce", "--out", "x.npz", "--shape", "M=3"], "shapes keys must be"),
    (["reference", "info_nce", "--out", "x.npz", "--kwarg", "tau=3"], "unexpected keyword argument 'tau'"),
    (["reference", "--all", "d", "--out", "x.npz"], "neither LOSS nor --out"),
    (["reference", "info_nce", "--out", "x.npz", "--seed", "-1"], "--seed"),
    (["check", "missing.npz"], "missing.npz: no such file"),
    (["gradcheck", "--devic", "cpu"], "unrecognized arguments"),
])
def test_errors_are_one_line_with_status_2(argv, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = _run(argv, capsys)
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_check_refuses_a_truncated_file(tmp_path, capsys):
    path = tmp_path / "r.npz"
    crosscheck.write_reference(path, "info_nce")
    (tmp_path / "cut.npz").write_bytes(path.read_bytes()[:300])
    rc, _, err = _run(["check", str(tmp_path / "cut.npz")], capsys)
    assert rc == 2 and "not a valid npjem" in err and len(err.strip().splitlines()) == 1


def test_gradcheck_subcommand_prints_a_table(capsys, monkeypatch):
    monkeypatch.setattr(crosscheck, "_engine_cases", lambda: [("tanh", np.tanh, [(2,)], 1)][:0])
    rc, out, _ = _run(["gradcheck"], capsys)
    assert rc == 0 and "loss info_nce" in out and "failed" in out.splitlines()[-1]
    assert out.splitlines()[-1].startswith(f"{len(crosscheck.names())} passed, 0 failed")


def test_gradcheck_subcommand_exits_1_on_a_wrong_gradient(capsys, monkeypatch):
    monkeypatch.setattr(crosscheck, "_engine_cases", lambda: [("broken", lambda x: x * x.detach(), [(3,)], 1)])
    rc, out, _ = _run(["gradcheck"], capsys)
    assert rc == 1 and "FAIL" in out and "broken (order 1)" in out


# ------------------------------------------------------------------ npjem ebm

@pytest.mark.parametrize("objective", ["cd", "replay", "nce", "ssm"])
def test_ebm_runs_an_objective_and_writes_its_picture(objective, tmp_path, capsys):
    out = tmp_path / "run"
    rc, stdout, _ = _run(["ebm", objective, "--data", "rings", "--steps", "3", "--n-train", "300", "--grid", "40",
                          "--batch-size", "32", "--sample-steps", "3", "--out", str(out), "--quiet"], capsys)
    assert rc == 0
    import json

    result = json.loads((out / "results.json").read_text())["result"]
    assert result["objective"] == objective and result["data"] == "rings" and result["steps"] == 3
    assert np.isfinite(result["nll"]) and result["nll_true"] < result["nll_gaussian"]
    png = out / f"rings_{objective}.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {png}" in stdout


def test_ebm_refuses_to_overwrite_and_names_bad_flags(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text("{}")
    rc, _, err = _run(["ebm", "sm", "--out", str(out)], capsys)
    assert rc == 2 and "--force" in err and "--resume" not in err and len(err.strip().splitlines()) == 1
    for argv, needle in ((["ebm", "sm", "--data", "moon"], "invalid choice: 'moon'"),
                         (["ebm", "score"], "invalid choice: 'score'"),
                         (["ebm", "sm", "--steps", "0"], "--steps"),
                         (["ebm", "sm", "--sigma", "-1"], "--sigma")):
        rc, _, err = _run(argv, capsys)
        assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_ebm_a_diverging_lr_is_one_line_naming_the_flag(tmp_path, capsys):
    rc, _, err = _run(["ebm", "dsm", "--lr", "1e12", "--steps", "30", "--n-train", "100", "--grid", "20",
                       "--batch-size", "16", "--out", "", "--quiet"], capsys)
    assert rc == 2 and "--lr" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------ npjem methods

def test_methods_lists_every_method_objective_and_loss_with_an_existing_file(capsys):
    import os

    from npjem import catalogue
    from npjem.cli import DEFAULTS, METHODS

    rc, out, _ = _run(["methods"], capsys)
    assert rc == 0
    entries = catalogue.entries()
    rows = {r["name"]: r for r in entries if r["kind"] != "loss"}
    losses = {r["name"]: r for r in entries if r["kind"] == "loss"}
    assert set(METHODS) <= set(rows) and set(crosscheck.names()) == set(losses)
    assert losses["vicreg"]["source"] == os.path.join("npjem", "losses", "noncontrastive.py")
    from npjem.ebm.toy2d import OBJECTIVES
    assert set(OBJECTIVES) <= set(rows)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for r in entries:
        assert os.path.isfile(os.path.join(root, r["source"])), r
        assert f"| {r['name']} |" in out
    assert rows["vicreg"]["source"] == os.path.join("npjem", "methods", "vicreg.py")
    assert rows["moco"]["defaults"].startswith(f"temperature={DEFAULTS['moco']['temperature']}")
    rc, out, _ = _run(["methods", "--kind", "score matching"], capsys)
    assert rc == 0 and "| sm |" in out and "| simclr |" not in out
    rc, _, err = _run(["methods", "--kind", "zzz"], capsys)
    assert rc == 2 and "the kinds are" in err and len(err.strip().splitlines()) == 1
