"""The gradient-oracle examples: each catches its buggy loss and passes the fixed one."""
import importlib.util
import os

import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_my_pytorch_loss(capsys):
    pytest.importorskip("torch")
    assert _load("check_my_pytorch_loss").main() == 0
    out = capsys.readouterr().out
    assert "MISMATCH" in out and out.rstrip().splitlines()[-1].endswith("ok")


def test_check_my_jax_loss(capsys):
    pytest.importorskip("jax")
    assert _load("check_my_jax_loss").main() == 0
    assert "missing .detach() / stop_gradient" in capsys.readouterr().out
