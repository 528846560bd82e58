"""The one seam between NumPy and CuPy.

Every other module asks this one for the array module (``xp``) of its inputs and creates
arrays with it, so the same line runs on a CPU and on a CUDA GPU. CuPy is imported lazily:
importing npjem never needs a GPU.

Devices are ``"cpu"`` and ``"cuda"`` (or ``"cuda:N"``). ``NPJEM_DEVICE`` sets the default.
"""
from __future__ import annotations

import contextlib
import os
import threading

import numpy as np

__all__ = [
    "get_array_module", "cupy_available", "get_cupy", "default_device", "set_default_device",
    "normalize_device", "device_of", "xp_for_device", "to_numpy", "to_device", "asarray",
    "default_dtype", "set_default_dtype", "scatter_add", "is_array", "block_bytes",
    "get_num_threads", "set_num_threads", "parallel_for", "matmul",
]

_cupy = None
_cupy_checked = False


def get_cupy():
    """Return the ``cupy`` module, or ``None`` when CuPy or a GPU is not available."""
    global _cupy, _cupy_checked
    if not _cupy_checked:
        _cupy_checked = True
        try:
            import cupy  # noqa: PLC0415 — lazy on purpose

            cupy.cuda.runtime.getDeviceCount()
            _cupy = cupy
        except Exception:  # ImportError, CUDARuntimeError, driver missing …
            _cupy = None
    return _cupy


def cupy_available() -> bool:
    return get_cupy() is not None


def _is_cupy_array(a) -> bool:
    # Checked by type name first so that no NumPy-only code path ever imports CuPy.
    t = type(a)
    return t.__module__.startswith("cupy") and t.__name__ == "ndarray"


def is_array(a) -> bool:
    return isinstance(a, np.ndarray) or _is_cupy_array(a)


def get_array_module(*arrays):
    """``numpy`` or ``cupy``, from the arrays (or Tensors) given; NumPy when none is on the GPU."""
    for a in arrays:
        data = getattr(a, "data", a) if not is_array(a) else a
        if _is_cupy_array(data):
            return get_cupy()
    return np


# ---------------------------------------------------------------- devices

def normalize_device(device) -> str:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"``; anything else raises ``ValueError``."""
    if device is None:
        return default_device()
    if not isinstance(device, str):
        device = str(device)
    d = device.strip().lower()
    if d == "cpu":
        return "cpu"
    if d == "cuda" or d == "gpu":
        return "cuda"
    if d.startswith("cuda:") and d[5:].isdigit():
        return d if d != "cuda:0" else "cuda"
    raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")


_default_device = None


def default_device() -> str:
    """The default device: ``set_default_device`` wins, then ``NPJEM_DEVICE``, then ``"cpu"``."""
    if _default_device is not None:
        return _default_device
    env = os.environ.get("NPJEM_DEVICE", "").strip()
    return normalize_device(env) if env else "cpu"


def set_default_device(device) -> None:
    global _default_device
    _default_device = None if device is None else normalize_device(device)


def xp_for_device(device=None):
    """The array module that serves ``device``; asks for CuPy only when a GPU is named."""
    device = normalize_device(device)
    if device == "cpu":
        return np
    cp = get_cupy()
    if cp is None:
        raise RuntimeError(
            f"device {device!r} needs CuPy and a CUDA GPU; install the 'gpu' extra "
            "(pip install 'npjem[gpu]') or use device='cpu'"
        )
    return cp


def _cuda_index(device: str) -> int:
    return int(device.split(":")[1]) if ":" in device else 0


def device_of(a) -> str:
    data = getattr(a, "data", a) if not is_array(a) else a
    if _is_cupy_array(data):
        idx = data.device.id
        return "cuda" if idx == 0 else f"cuda:{idx}"
    return "cpu"


def to_numpy(a) -> np.ndarray:
    """A host NumPy array from an array, a Tensor or a Python scalar/list."""
    data = getattr(a, "data", a) if not (is_array(a) or isinstance(a, (list, tuple))) else a
    if _is_cupy_array(data):
        return data.get()
    return np.asarray(data)


def to_device(a, device=None):
    """``a`` (array-like) as an array on ``device``; no copy when it is already there."""
    device = normalize_device(device)
    xp = xp_for_device(device)
    if xp is np:
        return to_numpy(a)
    with xp.cuda.Device(_cuda_index(device)):
        return xp.asarray(a)


def asarray(a, dtype=None, device=None):
    """``a`` as an array: arrays stay on their device; host data goes to ``device``."""
    if is_array(a):
        return a if dtype is None else a.astype(dtype, copy=False)
    arr = to_device(a, device)
    return arr if dtype is None else arr.astype(dtype, copy=False)


def synchronize(device=None) -> None:
    """Wait for the work queued on ``device`` (a GPU runs asynchronously); no-op on the CPU.

    For timing: without it a GPU timer measures kernel launches, not kernels.
    """
    device = normalize_device(device)
    if device == "cpu":
        return
    cp = xp_for_device(device)
    with cp.cuda.Device(_cuda_index(device)):
        cp.cuda.get_current_stream().synchronize()


# ---------------------------------------------------------------- dtypes

_default_dtype = np.float32


def default_dtype():
    return _default_dtype


def set_default_dtype(dtype) -> None:
    """Default float dtype for new tensors and parameters (float32 unless changed)."""
    global _default_dtype
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise ValueError(f"dtype must be a floating dtype, got {dt}")
    _default_dtype = dt.type


# ---------------------------------------------------------------- blocking

# A blocked loop (im2col + GEMM + col2im a few images at a time) keeps its working set in a
# CPU's L2/L3 cache: measured 3-4x faster than one pass over the batch for the input gradient
# of a 3x3 convolution on NumPy. 8 MiB blocks were as fast as 2-4 MiB ones on an idle machine
# and hold up better on a busy one (fewer, larger BLAS calls, each of which may wait for a
# descheduled BLAS thread). A GPU wants the opposite: one launch over the whole batch.
_CPU_BLOCK_BYTES = 2 << 20


def block_bytes(xp):
    """Working-set bytes a blocked loop should aim for on ``xp``; ``None``: do not block."""
    return _CPU_BLOCK_BYTES if xp is np else None


# ---------------------------------------------------------------- threads

# NumPy runs its elementwise loops, copies and reductions on one core; only the BLAS runs
# matrix products on several. The memory-bound passes of a training step (im2col, col2im,
# BatchNorm, ReLU: more than half of the SimCLR step on one core, docs/performance.md) are
# split here over a few threads instead: NumPy releases the GIL inside those loops. Pieces are
# cut by the work's shape only, never by the number of threads, so every result is the same
# bit for bit with 1 thread or 8. A GPU runs one call over the whole range.
_num_threads = None
_pool = None
_pool_size = 0


def _env_threads():
    for name in ("NPJEM_NUM_THREADS", "OMP_NUM_THREADS"):
        v = os.environ.get(name, "").strip()
        if v:
            try:
                n = int(v)
            except ValueError:
                raise ValueError(f"{name} must be a positive integer, got {v!r}") from None
            if n < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
            return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def get_num_threads() -> int:
    """Threads npjem's own CPU loops use, like ``torch.get_num_threads``: ``set_num_threads``,
    else ``NPJEM_NUM_THREADS``, else ``OMP_NUM_THREADS``, else the CPUs this process may use.
    (The BLAS keeps its own count: threadpoolctl or ``OPENBLAS_NUM_THREADS`` set that one.)"""
    return _num_threads if _num_threads is not None else _env_threads()


def set_num_threads(n) -> None:
    """Threads for npjem's CPU loops (1: none); ``None`` goes back to the environment's count."""
    global _num_threads
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise ValueError(f"num_threads must be a positive integer or None, got {n!r}")
    _num_threads = None if n is None else int(n)


def _forget_pool():
    # A forked child has the pool object but not its threads: it would wait forever.
    global _pool, _pool_size
    _pool, _pool_size = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


_in_worker = threading.local()
_nothing = contextlib.nullcontext


def _thread_pool(n):
    global _pool, _pool_size
    if _pool is None or _pool_size != n:
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 — only when threading

        if _pool is not None:
            _pool.shutdown(wait=False)
        _pool, _pool_size = ThreadPoolExecutor(n - 1, thread_name_prefix="npjem"), n
    return _pool


def _take_pieces(fn, pieces, results, order, lock):
    # Each thread takes the next piece until none is left: a thread slowed down by another
    # process on its core takes fewer pieces instead of holding up the others.
    _in_worker.active = True
    try:
        while True:
            with lock:
                i = next(order, None)
            if i is None:
                return
            results[i] = fn(*pieces[i])
    finally:
        _in_worker.active = False


_blas = None


def _blas_controller():
    """threadpoolctl's handles on the BLAS libraries loaded, or ``False`` when there are none."""
    global _blas
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController  # noqa: PLC0415 — optional

            libs = ThreadpoolController().select(user_api="blas").lib_controllers
            _blas = list(libs) if libs else False
        except Exception:  # not installed, or a BLAS it cannot drive
            _blas = False
    return _blas


@contextlib.contextmanager
def _one_blas_thread(libs):
    # The libraries' own setters, not threadpool_limits: a few microseconds per GEMM, not tens.
    before = [lib.get_num_threads() for lib in libs]
    for lib, n in zip(libs, before):
        if n != 1:
            lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in zip(libs, before):
            if n != 1:
                lib.set_num_threads(n)


def parallel_for(xp, n, fn, chunk, blas=False):
    """Call ``fn(lo, hi)`` for the pieces ``[0, chunk), [chunk, 2·chunk), …`` of ``range(n)``
    and return the results in order of the pieces.

    On NumPy the pieces are shared out to ``get_num_threads()`` threads, the caller's among
    them, each taking the next piece when it is done with one; ``fn`` must write only its own
    piece's output. All of them run in the caller's thread when there is one piece or one
    thread, or when called from inside another ``parallel_for``. With ``blas=True`` (``fn`` multiplies matrices) the BLAS runs one
    thread per piece meanwhile, also with one thread of npjem's, through threadpoolctl: a
    multi-threaded BLAS called from several threads at once would queue the calls or
    oversubscribe the cores, and one piece's product is then the same however many threads
    run. Without threadpoolctl such pieces run one after the other, the BLAS threading each.

    On CuPy, ``fn(0, n)`` runs once: one launch over the whole range. The pieces depend on
    ``chunk`` only, so a result assembled from them does not depend on the number of threads.
    """
    if xp is not np:
        return [fn(0, n)]
    chunk = max(1, int(chunk))
    pieces = [(lo, min(lo + chunk, n)) for lo in range(0, n, chunk)]
    threads = min(get_num_threads(), len(pieces))
    nested = getattr(_in_worker, "active", False)
    libs = _blas_controller() if blas and not nested else None
    if threads <= 1 or nested or libs is False:
        if libs:  # one thread: the pieces still on one BLAS thread each, as with several
            with _one_blas_thread(libs):
                return [fn(lo, hi) for lo, hi in pieces]
        return [fn(lo, hi) for lo, hi in pieces]
    results, order, lock = [None] * len(pieces), iter(range(len(pieces))), threading.Lock()
    pool = _thread_pool(get_num_threads())
    with _one_blas_thread(libs) if libs else _nothing():
        helpers = [pool.submit(_take_pieces, fn, pieces, results, order, lock) for _ in range(threads - 1)]
        try:
            _take_pieces(fn, pieces, results, order, lock)
        finally:
            for h in helpers:  # every piece done (or raised) before returning
                h.result()
    return results


# A GEMM below this many multiply-adds runs on one BLAS thread in OpenBLAS anyway
# (65536 · GEMM_MULTITHREAD_THRESHOLD = 4); above it, npjem shares it out by rows.
_SMALL_GEMM = 1 << 18
# Rows per piece of a shared-out GEMM: about this many multiply-adds, a few hundred microseconds.
_GEMM_PIECE = 1 << 24


def matmul(a, b):
    """``a @ b``; for 2-D NumPy arrays large enough for a multi-threaded BLAS, the rows of
    ``a`` in pieces on npjem's threads, one BLAS thread each (``parallel_for(blas=True)``), so
    ``npjem.set_num_threads`` sets the cores npjem's GEMMs use, as ``torch.set_num_threads``.

    Why not the BLAS's own threads: after a multi-threaded call OpenBLAS's workers spin for
    up to ~0.1 s, and npjem's threaded passes that follow (a convolution's backward after the
    projector's GEMMs) then share the cores with them. The SimCLR step took 15–20 % less time
    with every GEMM on one BLAS thread (docs/performance.md). The pieces depend on the shapes
    only, so the product is the same with any number of threads."""
    xp = get_array_module(a, b)
    if xp is not np or a.ndim != 2 or b.ndim != 2:
        return a @ b
    m, k = a.shape
    n = b.shape[1]
    if m * n * k < _SMALL_GEMM:
        return a @ b
    rows_per_piece = max(1, _GEMM_PIECE // max(n * k, 1))
    libs = _blas_controller()
    if m <= rows_per_piece and libs and not getattr(_in_worker, "active", False):
        # One piece (most GEMMs of a small network): parallel_for's bookkeeping would cost
        # more than the GEMM's own hand-off, on a few microseconds' product.
        before = [lib.get_num_threads() for lib in libs]
        if all(t == 1 for t in before):
            return a @ b
        for lib in libs:
            lib.set_num_threads(1)
        try:
            return a @ b
        finally:
            for lib, t in zip(libs, before):
                lib.set_num_threads(t)
    out = np.empty((m, n), dtype=np.result_type(a.dtype, b.dtype))

    def rows(lo, hi):
        np.matmul(a[lo:hi], b, out=out[lo:hi])

    parallel_for(np, m, rows, rows_per_piece, blas=True)
    return out


# ---------------------------------------------------------------- scatter-add

def scatter_add(target, index, values):
    """``target[index] += values`` with repeated indices accumulated, in place; returns ``target``.

    NumPy's ``add.at`` is slow, so a 1-D integer index along the first axis goes through
    ``bincount`` (per column for 2-D and more); other indices fall back to ``add.at``.
    CuPy has its own fast scatter-add.
    """
    xp = get_array_module(target)
    if xp is not np:
        xp.add.at(target, index, values)  # cupyx-backed atomic add
        return target
    if (
        isinstance(index, np.ndarray) and index.ndim == 1 and index.dtype.kind in "iu"
        and target.dtype.kind == "f"
    ):
        n = target.shape[0]
        idx = np.where(index < 0, index + n, index)
        vals = np.broadcast_to(values, (idx.shape[0],) + target.shape[1:])
        flat = vals.reshape(idx.shape[0], -1)
        if flat.shape[1] == 1:
            target += np.bincount(idx, weights=flat[:, 0], minlength=n).reshape(target.shape).astype(
                target.dtype, copy=False)
            return target
        # One bincount on a combined (row, column) key keeps it a single C loop.
        m = flat.shape[1]
        key = (idx[:, None] * m + np.arange(m)).ravel()
        summed = np.bincount(key, weights=flat.ravel(), minlength=n * m)
        target += summed.reshape(target.shape).astype(target.dtype, copy=False)
        return target
    np.add.at(target, index, values)
    return target


# ---------------------------------------------------------------- special functions

def erf(a):
    """The error function on the device of ``a`` (SciPy on the CPU, cupyx on the GPU)."""
    xp = get_array_module(a)
    if xp is np:
        from scipy import special

        return special.erf(a)
    from cupyx.scipy import special as cspecial  # pragma: no cover - GPU only

    return cspecial.erf(a)


def erfinv(a):
    """The inverse error function on the device of ``a`` (SciPy on the CPU, cupyx on the GPU)."""
    xp = get_array_module(a)
    if xp is np:
        from scipy import special

        return special.erfinv(a)
    from cupyx.scipy import special as cspecial  # pragma: no cover - GPU only

    return cspecial.erfinv(a)
