"""Checkpoints: ``npjem.save(obj, path)`` and ``npjem.load(path, device=None)``.

A checkpoint is an ordinary ``.npz`` (a zip of ``.npy`` files) that NumPy can open too:

- every array (or Tensor, moved to the host with ``backend.to_numpy``) is one ``.npy``
  entry named after its path in the object, joined with ``/``
  (``model/encoder.0.weight``, ``optimizer/state/3/exp_avg``);
- one entry ``__npjem__.json`` holds a format marker, a version, and the structure of the
  object: dicts (string or integer keys, in order), lists, tuples, and the scalars
  ``None``/``bool``/``int``/``float``/``str`` stored inline; arrays are referenced by their
  entry name. NumPy scalars (``np.float32(0.5)``) are stored as 0-d arrays and come back
  as NumPy scalars of the same dtype.

The structure, not the entry names, is what ``load`` reads, so a key holding ``/`` can
never be confused with nesting. Nothing is pickled: object arrays are refused on save,
and arrays are read with ``allow_pickle=False``.

Saving is atomic: the file is written to a temporary file in the same directory, flushed
and ``fsync``-ed, then moved over ``path`` with ``os.replace``; an interrupted save leaves
the previous checkpoint (or nothing) at ``path``, never half a file.

The temporary file is named ``.<name>.<pid>-<random>.npjem-tmp`` next to ``path`` (a
repository ignores ``*.npjem-tmp``). A save killed before its rename (``kill -9``, a power
cut) leaves one behind; the next save to the same path removes the temporaries of ``path``
whose process is no longer running.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile

import numpy as np

from . import backend
from .autograd import Tensor

__all__ = ["save", "load", "FORMAT", "VERSION"]

FORMAT = "npjem-checkpoint"
VERSION = 1
_META = "__npjem__.json"
TMP_SUFFIX = ".npjem-tmp"


def _tmp_prefix(path):
    return "." + os.path.basename(path) + "."


def _process_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # someone else's process, or a platform without signal 0
        return True
    return True


def _remove_stale_temporaries(directory, path):
    """Delete the temporaries of earlier saves to ``path`` whose process has died."""
    prefix = _tmp_prefix(path)
    pattern = re.compile(re.escape(prefix) + r"(\d+)-[^.]+" + re.escape(TMP_SUFFIX) + "$")
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        m = pattern.match(name)
        if m and not _process_alive(int(m.group(1))):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


# ---------------------------------------------------------------- save

class _Writer:
    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}

    def _entry_name(self, path):
        base = "/".join(path) if path else "value"
        name, i = base, 1
        while name in self.arrays or name + ".npy" == _META:
            name = f"{base}~{i}"  # two keys that join to the same name ("a/b" and a→b)
            i += 1
        return name

    def encode(self, obj, path):
        where = "/".join(path) or "<root>"
        # NumPy scalars first: np.float64 is a subclass of float, and must keep its dtype.
        if isinstance(obj, Tensor) or backend.is_array(obj) or isinstance(obj, np.generic):
            arr = backend.to_numpy(obj)
            if arr.dtype.hasobject:
                raise TypeError(f"cannot save {where!r}: object arrays would need pickle")
            if arr.dtype.kind not in "biufc":
                raise TypeError(f"cannot save {where!r}: unsupported dtype {arr.dtype}")
            name = self._entry_name(path)
            self.arrays[name] = arr  # write_array copes with any memory layout
            return {"t": "scalar" if isinstance(obj, np.generic) else "array", "entry": name}
        if obj is None:
            return {"t": "none"}
        if isinstance(obj, bool):
            return {"t": "bool", "v": obj}
        if isinstance(obj, int):
            return {"t": "int", "v": obj}
        if isinstance(obj, float):
            return {"t": "float", "v": repr(obj)}  # repr round-trips exactly, nan and inf too
        if isinstance(obj, str):
            return {"t": "str", "v": obj}
        if isinstance(obj, dict):
            items = []
            for k, v in obj.items():
                if isinstance(k, bool) or not isinstance(k, (str, int)):
                    raise TypeError(f"cannot save {where!r}: dict keys must be str or int, got {k!r}")
                items.append(["int" if isinstance(k, int) else "str", k, self.encode(v, path + [str(k)])])
            return {"t": "dict", "items": items}
        if isinstance(obj, (list, tuple)):
            return {"t": "list" if isinstance(obj, list) else "tuple",
                    "items": [self.encode(v, path + [str(i)]) for i, v in enumerate(obj)]}
        raise TypeError(
            f"cannot save {where!r} of type {type(obj).__name__}: a checkpoint holds dicts, lists, "
            "tuples, arrays/Tensors, and None/bool/int/float/str")


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save(obj, path) -> None:
    """Write ``obj`` (a state dict, or nested dicts/lists of them and scalars) to ``path``.

    The file is written exactly at ``path`` (no suffix is added; ``.npz`` is customary),
    atomically (temporary file, ``fsync``, ``os.replace``). Arrays on a GPU are copied to
    the host. Raises ``TypeError`` naming the entry that cannot be stored.
    """
    path = os.fspath(path)
    writer = _Writer()
    root = writer.encode(obj, [])
    meta = json.dumps({"format": FORMAT, "version": VERSION, "root": root}, allow_nan=False).encode()
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save to {path!r}: directory {directory!r} does not exist")
    _remove_stale_temporaries(directory, path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f"{_tmp_prefix(path)}{os.getpid()}-", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                for name, arr in writer.arrays.items():
                    with zf.open(name + ".npy", "w", force_zip64=True) as entry:
                        np.lib.format.write_array(entry, arr, allow_pickle=False)
                zf.writestr(_META, meta)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    # Make the rename itself durable (POSIX); not every platform can open a directory.
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


# ---------------------------------------------------------------- load

class _Reader:
    def __init__(self, zf, path, device):
        self.zf, self.path, self.device = zf, path, device
        self.names = set(zf.namelist())

    def fail(self, what):
        return ValueError(f"{self.path!r} is not a valid npjem checkpoint: {what}")

    def array(self, entry):
        member = f"{entry}.npy"
        if not isinstance(entry, str) or member not in self.names:
            raise self.fail(f"entry {entry!r} is missing (truncated or edited file?)")
        try:
            with self.zf.open(member) as f:
                arr = np.lib.format.read_array(f, allow_pickle=False)
        except (zipfile.BadZipFile, ValueError, EOFError, OSError) as e:
            raise self.fail(f"entry {entry!r} cannot be read ({e})") from None
        return arr

    def decode(self, node):
        if not isinstance(node, dict) or "t" not in node:
            raise self.fail(f"malformed structure node {node!r}")
        t = node["t"]
        if t == "none":
            return None
        if t in ("bool", "int", "str"):
            return node["v"]
        if t == "float":
            return float(node["v"])
        if t == "array":
            arr = self.array(node.get("entry"))
            return arr if self.device is None else backend.to_device(arr, self.device)
        if t == "scalar":
            arr = self.array(node.get("entry"))
            if arr.shape != ():
                raise self.fail(f"scalar entry {node.get('entry')!r} has shape {arr.shape}")
            return arr[()]
        if t == "dict":
            out = {}
            for kind, k, v in node["items"]:
                out[int(k) if kind == "int" else str(k)] = self.decode(v)
            return out
        if t == "list":
            return [self.decode(v) for v in node["items"]]
        if t == "tuple":
            return tuple(self.decode(v) for v in node["items"])
        raise self.fail(f"unknown node type {t!r}")


def load(path, device=None):
    """Read what :func:`save` wrote: the same structure, arrays as NumPy (or on ``device``).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the path for
    anything that is not an intact npjem checkpoint (truncated, corrupt, a foreign
    ``.npz``, a newer format version).
    """
    path = os.fspath(path)
    if device is not None:
        device = backend.normalize_device(device)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path!r} is a directory, not a checkpoint file")
    try:
        zf = zipfile.ZipFile(path, "r")
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise ValueError(
            f"{path!r} is not a valid npjem checkpoint: not a readable .npz/zip file "
            f"(truncated or foreign file?): {e}") from None
    with zf:
        reader = _Reader(zf, path, device)
        if _META not in reader.names:
            raise reader.fail(f"no {_META} entry: a .npz written by something other than npjem.save "
                              "(open it with numpy.load instead)")
        try:
            meta = json.loads(zf.read(_META).decode("utf-8"))
        except (zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError, OSError, EOFError) as e:
            raise reader.fail(f"its {_META} entry is corrupt ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise reader.fail(f"format marker is {meta.get('format') if isinstance(meta, dict) else meta!r}, "
                              f"expected {FORMAT!r}")
        version = meta.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise reader.fail(f"bad format version {version!r}")
        if version > VERSION:
            raise ValueError(f"{path!r} was written by a newer npjem (checkpoint format version {version}, "
                             f"this npjem reads up to {VERSION}); upgrade npjem to load it")
        try:
            return reader.decode(meta["root"])
        except (KeyError, TypeError) as e:
            raise reader.fail(f"malformed structure ({type(e).__name__}: {e})") from None
