"""npjem.save / npjem.load: exact round trips, atomic writes, loud failures on bad files."""
import json
import math
import os
import zipfile

import numpy as np
import pytest

import npjem
from npjem import backend, serialization


def assert_same(a, b):
    """Equal structure, types, dtypes and bits."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert list(a.keys()) == list(b.keys())
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b


def sample_checkpoint():
    rng = np.random.default_rng(0)
    model = {
        "encoder.0.weight": rng.standard_normal((4, 3)).astype(np.float32),
        "encoder.0.bias": rng.standard_normal(4),                           # float64
        "bn.running_var": np.float32(1.0) + rng.random(4, dtype=np.float32),
        "bn.num_batches_tracked": np.array(12, dtype=np.int64),             # 0-d
        "embedding.idx": np.arange(5, dtype=np.int8),
        "mask": np.array([True, False, True]),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "transposed": rng.standard_normal((3, 2)).T,                        # not contiguous
        "complex": np.array([1 + 2j, -0.5j], dtype=np.complex128),
    }
    optimizer = {
        "state": {0: {"momentum_buffer": rng.standard_normal((4, 3)).astype(np.float32), "step": 3},
                  2: {"exp_avg": rng.standard_normal(4)}},
        "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "nesterov": False, "lars_exclude": None,
                          "params": [0, 1, 2]}],
    }
    return {"model": model, "optimizer": optimizer, "epoch": 3, "best": 0.1 + 0.2, "name": "byol-rn18 ✓",
            "history": [1.5, float("inf"), float("nan"), -0.0], "seed": 2 ** 70, "tau": np.float64(0.996),
            "lr32": np.float32(0.3), "flags": (True, None)}


def test_round_trip_is_exact(tmp_path):
    obj = sample_checkpoint()
    npjem.save(obj, tmp_path / "ckpt.npz")
    back = npjem.load(tmp_path / "ckpt.npz")
    assert_same(obj, back)
    assert back["model"]["bn.num_batches_tracked"].shape == ()
    assert back["model"]["transposed"].flags.writeable
    np.testing.assert_array_equal(back["model"]["transposed"], obj["model"]["transposed"])


def test_tensors_are_saved_as_arrays(tmp_path, device):
    w = npjem.randn(3, 2, generator=0, device=device)
    p = npjem.Tensor(w.data, requires_grad=True)
    npjem.save({"w": p, "raw": w.data}, tmp_path / "t.npz")
    back = npjem.load(tmp_path / "t.npz")
    assert isinstance(back["w"], np.ndarray) and back["w"].dtype == p.dtype
    np.testing.assert_array_equal(back["w"], backend.to_numpy(p.data))
    np.testing.assert_array_equal(back["raw"], backend.to_numpy(w.data))
    on_device = npjem.load(tmp_path / "t.npz", device=device)
    assert backend.device_of(on_device["w"]) == device
    np.testing.assert_array_equal(backend.to_numpy(on_device["w"]), back["w"])


def test_keys_that_join_to_the_same_name_stay_apart(tmp_path):
    obj = {"a/b": np.array([1.0]), "a": {"b": np.array([2.0])}, 1: np.array([3]), "1": np.array([4])}
    npjem.save(obj, tmp_path / "c.npz")
    assert_same(obj, npjem.load(tmp_path / "c.npz"))


def test_checkpoint_is_a_plain_npz_for_numpy(tmp_path):
    sd = {"model": {"layer.weight": np.eye(2, dtype=np.float32)}, "epoch": 1}
    npjem.save(sd, tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as f:
        np.testing.assert_array_equal(f["model/layer.weight"], np.eye(2))


def test_root_can_be_an_array_or_list(tmp_path):
    for obj in (np.arange(3.0), [np.ones(2), "x"], 5):
        npjem.save(obj, tmp_path / "r.npz")
        assert_same(obj, npjem.load(tmp_path / "r.npz"))


def test_overwrite_is_atomic_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    npjem.save({"w": np.ones(4)}, path)
    before = path.read_bytes()

    def broken_write(f, arr, **kw):
        f.write(b"\x93NUMPY partial")
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", broken_write)
    with pytest.raises(OSError, match="disk full"):
        npjem.save({"w": np.zeros(1000)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]
    np.testing.assert_array_equal(npjem.load(path)["w"], np.ones(4))


def _killed_save(path):
    """Run a save in a child process that dies (no cleanup, like kill -9) halfway through."""
    import subprocess
    import sys
    code = (
        "import os, sys, numpy as np, npjem\n"
        "def die(f, arr, **kw):\n"
        "    f.write(b'partial'); f.flush(); os._exit(9)\n"
        "np.lib.format.write_array = die\n"
        "npjem.save({'w': np.ones(3)}, sys.argv[1])\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code, str(path)], env=env, capture_output=True, timeout=120)
    assert r.returncode == 9, r.stderr.decode()


def test_a_killed_save_leaves_one_ignored_temporary_that_the_next_save_removes(tmp_path):
    import fnmatch
    path = tmp_path / "ckpt.npz"
    _killed_save(path)
    (left,) = os.listdir(tmp_path)
    assert left.startswith(".ckpt.npz.") and left.endswith(serialization.TMP_SUFFIX)
    gitignore = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".gitignore")
    if os.path.exists(gitignore):  # a source checkout: git must not offer the leftover for commit
        with open(gitignore) as f:
            patterns = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
        assert any(fnmatch.fnmatch(left, p) for p in patterns), left
    # A live save's temporary (this process) and another checkpoint's stay; the dead one goes.
    live = tmp_path / f".ckpt.npz.{os.getpid()}-abc{serialization.TMP_SUFFIX}"
    live.write_bytes(b"being written")
    _killed_save(tmp_path / "other.npz")
    other = [n for n in os.listdir(tmp_path) if n.startswith(".other.npz.")]
    npjem.save({"w": np.zeros(2)}, path)
    assert sorted(os.listdir(tmp_path)) == sorted(["ckpt.npz", live.name] + other)
    np.testing.assert_array_equal(npjem.load(path)["w"], np.zeros(2))


def test_data_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    npjem.save({"w": np.ones(2)}, tmp_path / "s.npz")
    assert events[:2] == ["fsync", "replace"]


def test_saved_file_has_a_normal_mode(tmp_path):
    npjem.save({"w": np.ones(2)}, tmp_path / "m.npz")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "m.npz").stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.1])
def test_truncated_file_fails_loudly(tmp_path, cut):
    path = tmp_path / "ckpt.npz"
    npjem.save(sample_checkpoint(), path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(ValueError, match="not a valid npjem checkpoint") as e:
        npjem.load(path)
    assert str(path) in str(e.value)


def test_corrupted_bytes_fail_loudly(tmp_path):
    path = tmp_path / "ckpt.npz"
    npjem.save({"w": np.arange(1000, dtype=np.float64)}, path)
    data = bytearray(path.read_bytes())
    data[2000] ^= 0xFF  # inside the array's bytes: the zip CRC catches it
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="cannot be read"):
        npjem.load(path)


@pytest.mark.parametrize("content", [b"", b"hello", bytes(np.random.default_rng(0).integers(0, 256, 4096,
                                                                                                 dtype=np.uint8))])
def test_foreign_bytes_fail_loudly(tmp_path, content):
    path = tmp_path / "junk.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="junk.npz"):
        npjem.load(path)


def test_foreign_npz_fails_loudly(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, w=np.ones(3))
    with pytest.raises(ValueError, match="other than npjem.save"):
        npjem.load(path)


def write_meta(path, meta, arrays=()):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(serialization._META, json.dumps(meta))
        for name in arrays:
            with zf.open(name + ".npy", "w") as f:
                np.lib.format.write_array(f, np.ones(2))


@pytest.mark.parametrize("meta, match", [
    ({"format": "something-else", "version": 1, "root": {"t": "none"}}, "format marker"),
    ({"format": serialization.FORMAT, "version": 99, "root": {"t": "none"}}, "newer npjem"),
    ({"format": serialization.FORMAT, "version": "1", "root": {"t": "none"}}, "version"),
    ({"format": serialization.FORMAT, "version": 1, "root": {"t": "array", "entry": "gone"}}, "missing"),
    ({"format": serialization.FORMAT, "version": 1, "root": {"t": "blob"}}, "unknown node"),
    ({"format": serialization.FORMAT, "version": 1}, "malformed"),
])
def test_bad_metadata_fails_loudly(tmp_path, meta, match):
    path = tmp_path / "bad.npz"
    write_meta(path, meta)
    with pytest.raises(ValueError, match=match):
        npjem.load(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        npjem.load(tmp_path / "nothing.npz")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        npjem.save({"w": np.ones(1)}, tmp_path / "no_dir" / "x.npz")
    with pytest.raises(IsADirectoryError):
        npjem.load(tmp_path)


@pytest.mark.parametrize("obj, match", [
    ({"w": np.array([object()], dtype=object)}, "pickle"),
    ({"s": {1, 2}}, "set"),
    ({(1, 2): np.ones(1)}, "keys"),
    ({True: np.ones(1)}, "keys"),
    ({"f": lambda x: x}, "function"),
    ({"u": np.array(["a", "b"])}, "dtype"),
])
def test_unsupported_objects_raise_type_error(tmp_path, obj, match):
    with pytest.raises(TypeError, match=match):
        npjem.save(obj, tmp_path / "x.npz")
    assert os.listdir(tmp_path) == []


def test_bad_device_raises(tmp_path):
    npjem.save({"w": np.ones(1)}, tmp_path / "x.npz")
    with pytest.raises(ValueError, match="device"):
        npjem.load(tmp_path / "x.npz", device="tpu")


def test_module_and_optimizer_checkpoint_round_trip(tmp_path):
    nn = pytest.importorskip("npjem.nn")
    from npjem import optim

    def net(seed):
        return nn.Sequential(nn.Linear(3, 4, generator=seed), nn.BatchNorm1d(4), nn.Linear(4, 2, generator=seed + 1))

    model = net(0)
    opt = optim.AdamW(model.parameters(), lr=1e-2)
    x = npjem.randn(5, 3, generator=2)
    for _ in range(2):
        opt.zero_grad()
        (model(x) ** 2).mean().backward()
        opt.step()
    path = tmp_path / "ckpt.npz"
    npjem.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 2}, path)
    ck = npjem.load(path)
    assert ck["epoch"] == 2
    fresh = net(10)
    fresh.load_state_dict(ck["model"])
    for (n, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert backend.to_numpy(a).tobytes() == backend.to_numpy(b).tobytes(), n
    opt2 = optim.AdamW(fresh.parameters(), lr=1e-2)
    opt2.load_state_dict(ck["optimizer"])
    for m, o in ((model, opt), (fresh, opt2)):
        o.zero_grad()
        (m(x) ** 2).mean().backward()
        o.step()
    for (n, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert backend.to_numpy(a).tobytes() == backend.to_numpy(b).tobytes(), n
