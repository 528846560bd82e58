"""One SimCLR training step, npjem (float32, NumPy) against its PyTorch CPU twin.

    python benchmarks/simclr_step.py [--batch 128] [--steps 10] [--rounds 3] [--threads 2]
                                     [--profile] [--device cuda]

The reference step of issue 3: two views × ``batch`` images of 3×32×32 go through one
backbone pass (the views are concatenated, so BatchNorm sees 2·batch images, as SimCLR does)

    conv3×3(3→32)+BN+ReLU → conv3×3/2(32→64)+BN+ReLU → conv3×3/2(64→128)+BN+ReLU → global avg pool
    → Linear(128,128)+BN1d+ReLU → Linear(128,64)

then NT-Xent with τ = 0.2 (``npjem.losses.info_nce``, SimCLR's sum of both directions) and an
SGD step with momentum 0.9. The PyTorch twin has the same layers, starts from the same weights
(npjem's state_dict loaded into it) and runs with ``torch.set_num_threads(threads)``.

Configurations: npjem with NumPy's BLAS limited to 1 and to ``threads`` threads (set in-process
with threadpoolctl when it is installed), PyTorch with ``threads`` and 1 threads. Timing:
``rounds`` rounds, each running every configuration for one warm-up step and ``steps`` timed
steps; the table gives medians over all timed steps (the machine may be shared, so rounds
interleave the configurations to spread the noise over all of them). The target is
npjem ≤ 2× PyTorch with ``threads`` threads. The per-phase table splits npjem's step into
backbone forward, head + loss forward, backward and optimizer step. ``--profile`` adds a
cProfile of npjem steps (top functions by own time).

``--device cuda`` times npjem alone on CuPy (the step synchronised at each phase boundary, so
the timer sees kernels, not launches). H100, CuPy 14.2, a shared run: 23 ms median for
2 × 128 images, 57 ms for 2 × 512.

Why two BLAS settings: OpenBLAS's worker threads spin while they wait; when the machine runs
more threads than it has cores (another process busy), many small GEMMs (the per-block
convolution GEMMs, the head's 128×128 ones) can each lose milliseconds to that, and one
BLAS thread is then several times faster than two.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import npjem  # noqa: E402
from npjem import backend, nn  # noqa: E402
from npjem.losses import info_nce  # noqa: E402
from npjem.optim import SGD  # noqa: E402

TAU = 0.2
LR = 0.1
MOMENTUM = 0.9


# ----------------------------------------------------------------------------- npjem

class NpjemStep:
    def __init__(self, seed, device="cpu"):
        self.device = device
        self.backbone = nn.ConvNet(3, widths=(32, 64, 128), strides=(1, 2, 2), generator=seed).to(device)
        self.head = nn.SimCLRProjectionHead(128, 128, 64, num_layers=2, generator=seed + 1).to(device)
        self.params = list(self.backbone.parameters()) + list(self.head.parameters())
        self.opt = SGD(self.params, lr=LR, momentum=MOMENTUM)
        self.phases = {"forward backbone": [], "head + loss": [], "backward": [], "optimizer step": []}

    def state_dicts(self):
        return self.backbone.state_dict(), self.head.state_dict()

    def __call__(self, x1, x2, record=True):
        sync = lambda: backend.synchronize(self.device)  # noqa: E731  (a GPU runs asynchronously)
        sync()
        t0 = time.perf_counter()
        n = x1.shape[0]
        x = npjem.Tensor(backend.get_array_module(x1).concatenate([x1, x2]))
        feats = self.backbone(x)
        sync()
        t1 = time.perf_counter()
        z = self.head(feats)
        loss = info_nce(z[:n], z[n:], TAU)
        sync()
        t2 = time.perf_counter()
        self.opt.zero_grad()
        loss.backward()
        sync()
        t3 = time.perf_counter()
        self.opt.step()
        sync()
        t4 = time.perf_counter()
        if record:
            for k, dt in zip(self.phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                self.phases[k].append(dt)
        return float(loss.item()), t4 - t0


# ----------------------------------------------------------------------------- PyTorch twin

def torch_twin(torch, backbone_sd, head_sd):
    tnn = torch.nn
    layers, c = [], 3
    for w, s in zip((32, 64, 128), (1, 2, 2)):
        layers += [tnn.Conv2d(c, w, 3, stride=s, padding=1, bias=False), tnn.BatchNorm2d(w), tnn.ReLU()]
        c = w

    class Backbone(tnn.Module):
        def __init__(self):
            super().__init__()
            self.features = tnn.Sequential(*layers)

        def forward(self, x):
            return self.features(x).mean(dim=(2, 3))

    class Head(tnn.Module):
        def __init__(self):
            super().__init__()
            self.layers = tnn.Sequential(tnn.Linear(128, 128, bias=False), tnn.BatchNorm1d(128), tnn.ReLU(),
                                         tnn.Linear(128, 64))

        def forward(self, x):
            return self.layers(x)

    bb, hd = Backbone(), Head()
    bb.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in backbone_sd.items()})
    hd.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in head_sd.items()})
    return bb, hd


def torch_nt_xent(torch, a, b, tau):
    """SimCLR's NT-Xent (sum of the two directions), self-similarity removed."""
    F = torch.nn.functional
    n = a.shape[0]
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    eye = torch.eye(n, dtype=torch.bool)
    l_ab, l_ba = a @ b.T / tau, b @ a.T / tau
    l_aa = (a @ a.T / tau).masked_fill(eye, float("-inf"))
    l_bb = (b @ b.T / tau).masked_fill(eye, float("-inf"))
    y = torch.arange(n)
    return F.cross_entropy(torch.cat([l_ab, l_aa], 1), y) + F.cross_entropy(torch.cat([l_ba, l_bb], 1), y)


class TorchStep:
    def __init__(self, torch, backbone_sd, head_sd):
        self.torch = torch
        self.backbone, self.head = torch_twin(torch, backbone_sd, head_sd)
        params = list(self.backbone.parameters()) + list(self.head.parameters())
        self.opt = torch.optim.SGD(params, lr=LR, momentum=MOMENTUM)

    def __call__(self, x1, x2, record=True):
        torch = self.torch
        t0 = time.perf_counter()
        n = x1.shape[0]
        x = torch.cat([x1, x2])
        z = self.head(self.backbone(x))
        loss = torch_nt_xent(torch, z[:n], z[n:], TAU)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.item()), time.perf_counter() - t0


# ----------------------------------------------------------------------------- main

def profile_npjem(step, x1, x2, steps, top=25):
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(steps):
        step(x1, x2, record=False)
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(top)
    return s.getvalue()


def _blas_limiter():
    """A context factory ``limit(limits=k, user_api="blas")`` that sets NumPy's BLAS threads
    (threadpoolctl, in-process) and npjem's own CPU threads (``npjem.set_num_threads``) to k,
    as ``torch.set_num_threads`` sets PyTorch's; None without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None

    @contextlib.contextmanager
    def limit(limits, user_api="blas"):
        before = npjem.get_num_threads()
        npjem.set_num_threads(limits)
        try:
            with threadpool_limits(limits=limits, user_api=user_api):
                yield
        finally:
            npjem.set_num_threads(before)

    return limit


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=128, help="images per view (default 128)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per round and configuration")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians over all)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (and npjem's BLAS threads)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true", help="cProfile 5 npjem steps (1 BLAS thread)")
    ap.add_argument("--device", default="cpu",
                    help="cpu (default; compared with PyTorch on the CPU) or cuda (npjem on CuPy, timed alone)")
    args = ap.parse_args(argv)
    if backend.normalize_device(args.device) != "cpu":
        return main_device(args)

    rng = np.random.default_rng(args.seed)
    x1 = rng.standard_normal((args.batch, 3, 32, 32)).astype(np.float32)
    x2 = rng.standard_normal((args.batch, 3, 32, 32)).astype(np.float32)

    ours = NpjemStep(args.seed)
    try:
        import torch
    except ImportError:
        torch = None
    limiter = _blas_limiter()
    # Configurations: (label, runner, thread setter). NumPy's BLAS thread count can only be
    # changed in-process with threadpoolctl; without it npjem runs with the environment's.
    configs = []
    if limiter is not None:
        for k in sorted({1, args.threads}):
            configs.append((f"npjem, {k} BLAS thread{'s' if k > 1 else ''}", "npjem", k))
    else:
        configs.append(("npjem, BLAS threads from the environment", "npjem", None))
    if torch is not None:
        theirs = TorchStep(torch, *ours.state_dicts())
        tx1, tx2 = torch.from_numpy(x1), torch.from_numpy(x2)
        for k in sorted({1, args.threads}, reverse=True):
            configs.append((f"PyTorch CPU, {k} thread{'s' if k > 1 else ''}", "torch", k))
        # Same weights, same batch: the first losses must agree (a check that the twin is one).
        l_ours, _ = ours(x1, x2, record=False)
        torch.set_num_threads(args.threads)
        l_theirs, _ = theirs(tx1, tx2, record=False)
        print(f"first-step loss: npjem {l_ours:.6f}   PyTorch {l_theirs:.6f}   |diff| {abs(l_ours - l_theirs):.2e}")
    else:
        ours(x1, x2, record=False)
        print("PyTorch not installed: timing npjem only")

    times = {label: [] for label, _, _ in configs}
    phases = {label: {k: [] for k in ours.phases} for label, kind, _ in configs if kind == "npjem"}
    for _ in range(args.rounds):
        for label, kind, k in configs:
            if kind == "npjem":
                ctx = limiter(limits=k, user_api="blas") if k is not None else _Null()
                with ctx:
                    ours(x1, x2, record=False)  # warm-up (caches, allocator, BLAS threads)
                    for key in ours.phases:
                        ours.phases[key].clear()
                    times[label] += [ours(x1, x2)[1] for _ in range(args.steps)]
                for key, v in ours.phases.items():
                    phases[label][key] += v
            else:
                torch.set_num_threads(k)
                theirs(tx1, tx2, record=False)
                times[label] += [theirs(tx1, tx2)[1] for _ in range(args.steps)]

    med = lambda v: float(np.median(v)) * 1e3  # noqa: E731
    print(f"\nSimCLR step: 2 views x {args.batch} images 3x32x32, ConvNet(32,64,128) + head 128-128-64, "
          f"NT-Xent tau={TAU}, SGD momentum {MOMENTUM}")
    print(f"numpy {np.__version__}" + (f", torch {torch.__version__}" if torch else "")
          + f", {os.cpu_count()} CPUs, load average {_load()}, {args.rounds} rounds x {args.steps} steps\n")
    print(f"{'':34s}{'median ms':>11s}{'min ms':>9s}")
    for label, _, _ in configs:
        print(f"{label:34s}{med(times[label]):11.1f}{min(times[label]) * 1e3:9.1f}")
    if torch is not None:
        ref_label = f"PyTorch CPU, {args.threads} thread{'s' if args.threads > 1 else ''}"
        ref, ref_min = med(times[ref_label]), min(times[ref_label])
        print(f"\nratio to {ref_label} (target <= 2); the ratio of minima estimates an idle machine:")
        for label, kind, _ in configs:
            if kind == "npjem":
                ratio = med(times[label]) / ref
                verdict = "meets" if ratio <= 2.0 else "misses"
                print(f"  {label:32s} medians {ratio:5.2f} ({verdict})   minima "
                      f"{min(times[label]) / ref_min:5.2f}")
    print("\nnpjem per phase (median ms):")
    labels = [label for label, kind, _ in configs if kind == "npjem"]
    print(f"  {'':20s}" + "".join(f"{lab.replace('npjem, ', ''):>22s}" for lab in labels))
    for key in ours.phases:
        print(f"  {key:20s}" + "".join(f"{med(phases[lab][key]):22.1f}" for lab in labels))
    if args.profile:
        print("\ncProfile of 5 npjem steps, 1 BLAS thread (by own time):")
        ctx = limiter(limits=1, user_api="blas") if limiter is not None else _Null()
        with ctx:
            print(profile_npjem(ours, x1, x2, 5))


def main_device(args):
    """npjem's step on a GPU: the same step, synchronised at each phase boundary."""
    rng = np.random.default_rng(args.seed)
    x1, x2 = (backend.to_device(rng.standard_normal((args.batch, 3, 32, 32)).astype(np.float32), args.device)
              for _ in range(2))
    ours = NpjemStep(args.seed, device=args.device)
    ours(x1, x2, record=False)  # first call compiles CuPy's kernels
    times = []
    for _ in range(args.rounds):
        ours(x1, x2, record=False)
        times += [ours(x1, x2)[1] for _ in range(args.steps)]
    med = lambda v: float(np.median(v)) * 1e3  # noqa: E731
    cp = backend.xp_for_device(args.device)
    name = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)["name"].decode()
    print(f"SimCLR step on {name} (CuPy {cp.__version__}): 2 views x {args.batch} images 3x32x32, "
          f"{args.rounds} rounds x {args.steps} steps")
    print(f"median {med(times):.1f} ms, min {min(times) * 1e3:.1f} ms")
    for key, v in ours.phases.items():
        print(f"  {key:20s}{med(v):8.1f} ms")


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _load():
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


if __name__ == "__main__":
    main()
