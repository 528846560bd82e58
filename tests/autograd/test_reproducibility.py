"""A seed reproduces a run bit for bit on the CPU: losses and parameters of a short SimCLR
``fit`` on ``shapes`` are identical across processes and across BLAS thread counts.

Each run is a fresh process, so memory addresses differ between runs (the engine once broke
ties between functions of one generation by ``id``, which changed the order in which gradient
contributions were added, and with it the last bits) and the BLAS thread count can be set
before NumPy starts.
"""
import os
import subprocess
import sys

import pytest

from npjem import backend

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RUN = r"""
import hashlib
import numpy as np
from npjem import nn, optim
from npjem.data import datasets
from npjem.data.augment import simclr_views
from npjem.methods import IndexedDataLoader, SimCLR, fit

data = datasets.shapes("train", n=64, seed=0, cache_dir=False, size=16)
backbone = nn.ConvNet(3, widths=(16, 32, 64), generator=0)
method = SimCLR(backbone, hidden_dim=64, out_dim=32, views=simclr_views(16), generator=1)
opt = optim.SGD(list(method.trainable_parameters()), lr=0.1, momentum=0.9)
loader = IndexedDataLoader(data.images, batch_size=32, shuffle=True, drop_last=True, generator=0)
history = fit(method, loader, opt, epochs=3, generator=0, progress=False)
digest = hashlib.sha256()
for name, p in method.state_dict().items():
    digest.update(name.encode() + np.ascontiguousarray(p.data if hasattr(p, "data") else p).tobytes())
print(" ".join(float(v).hex() for v in history["loss"]), digest.hexdigest())
"""


def _start(threads):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), NPJEM_DEVICE="cpu",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("NPJEM_FAKE_GPU", None)
    return subprocess.Popen([sys.executable, "-c", RUN], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _result(proc):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    losses, digest = out.split("\n")[-2].rsplit(" ", 1)
    return losses.split(), digest


@pytest.mark.slow
@pytest.mark.skipif(backend.default_device() != "cpu", reason="bit-identity is promised on the CPU")
def test_a_seed_reproduces_a_short_fit_bit_for_bit_across_processes_and_thread_counts():
    procs = [_start(1), _start(1), _start(2)]  # side by side: three processes, three address layouts
    runs = [_result(p) for p in procs]
    losses, digest = runs[0]
    assert len(losses) == 6 and len(set(losses)) > 1  # six steps that did train
    for other in runs[1:]:
        assert other == runs[0]
