"""Timing helper shared by the benchmark scripts."""
import time

import numpy as np


def time_it(fn, repeats, stat="min"):
    """Seconds per call of ``fn``: the minimum or the median of ``repeats`` calls after one warm-up
    call (first-touch allocations, BLAS threads starting)."""
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(min(ts)) if stat == "min" else float(np.median(ts))
