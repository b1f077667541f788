"""Kernel suite: the toolkit's kernels against numbagg, bottleneck and pandas.

Same data, same process, single thread; each time is the minimum of several
repetitions (page faults swing single timings by 2x on these machines).

    python benchmarks/bench_kernels.py            # the issue's size: (200, 500_000)
    python benchmarks/bench_kernels.py --quick    # (50, 100_000), for a smoke run

Prints three tables: speed (seconds and ratios to the fastest peer),
accuracy of the rolling std on pressure-like data, and compilation costs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # single thread for every peer

import bottleneck as bn  # noqa: E402
import numbagg  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import kernels  # noqa: E402

WINDOW = 60


def best_of(fn, repeat):
    fn()  # warm-up: compilation, first-touch page faults
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def pandas_rolling(x, stat):
    frame = pd.DataFrame(x.T, copy=False)  # pandas rolls down columns
    return getattr(frame.rolling(WINDOW), stat)()


def speed_table(x, repeat):
    # numbagg picks its parallel target for large arrays; force one thread
    for f in (numbagg.move_mean, numbagg.move_std, numbagg.move_sum):
        f._target_cpu = True
    rows = {
        "rolling mean": {
            "toolkit": lambda: kernels.move_mean(x, WINDOW),
            "numbagg": lambda: numbagg.move_mean(x, window=WINDOW),
            "bottleneck": lambda: bn.move_mean(x, WINDOW),
            "pandas": lambda: pandas_rolling(x, "mean"),
        },
        "rolling sum": {
            "toolkit": lambda: kernels.move_sum(x, WINDOW),
            "numbagg": lambda: numbagg.move_sum(x, window=WINDOW),
            "bottleneck": lambda: bn.move_sum(x, WINDOW),
            "pandas": lambda: pandas_rolling(x, "sum"),
        },
        "rolling std": {
            "toolkit": lambda: kernels.move_std(x, WINDOW),
            "numbagg": lambda: numbagg.move_std(x, window=WINDOW),
            "bottleneck": lambda: bn.move_std(x, WINDOW, ddof=1),
            "pandas": lambda: pandas_rolling(x, "std"),
        },
        "rolling min": {
            "toolkit": lambda: kernels.move_min(x, WINDOW),
            "bottleneck": lambda: bn.move_min(x, WINDOW),
            "pandas": lambda: pandas_rolling(x, "min"),
        },
        "rolling max": {
            "toolkit": lambda: kernels.move_max(x, WINDOW),
            "bottleneck": lambda: bn.move_max(x, WINDOW),
            "pandas": lambda: pandas_rolling(x, "max"),
        },
        "rolling median": {
            "bottleneck": lambda: bn.move_median(x, WINDOW),
        },
    }
    peers = ["numbagg", "bottleneck", "pandas"]
    header = (f"{'operation':<16}{'toolkit s':>10}" + "".join(f"{p + ' s':>13}" for p in peers)
              + f"  {'toolkit vs fastest peer':<30}")
    lines = [header, "-" * len(header)]
    for name, impls in rows.items():
        t = {k: best_of(f, repeat) for k, f in impls.items()}
        fastest = min(v for k, v in t.items() if k != "toolkit")
        cells = "".join(f"{t[p]:>13.3f}" if p in t else f"{'-':>13}" for p in peers)
        if "toolkit" in t:
            ratio = f"{t['toolkit'] / fastest:.2f}x time ({fastest / t['toolkit']:.2f}x speed)"
            own = f"{t['toolkit']:>10.3f}"
        else:
            ratio, own = "not implemented", f"{'-':>10}"
        lines.append(f"{name:<16}{own}{cells}  {ratio:<30}")
    return "\n".join(lines)


def accuracy_table():
    """Max relative error of the rolling std on 101325 Pa +- 0.5 Pa, window 60."""
    rng = np.random.default_rng(0)
    n = 200_000
    x = 101325.0 + 0.5 * rng.standard_normal(n) + np.cumsum(rng.standard_normal(n)) * 0.01
    # exact reference: two-pass std of each window, computed on the offset-free
    # series in float64 (subtracting a constant is exact here)
    windows = np.lib.stride_tricks.sliding_window_view(x - 101325.0, WINDOW)
    exact = np.full(n, np.nan)
    exact[WINDOW - 1:] = windows.std(axis=1, ddof=1)
    got = {
        "toolkit": kernels.move_std(x, WINDOW),
        "numbagg": numbagg.move_std(x, window=WINDOW),
        "bottleneck": bn.move_std(x, WINDOW, ddof=1),
        "pandas": pd.Series(x).rolling(WINDOW).std().to_numpy(),
    }
    lines = [f"{'library':<12}{'max relative error of rolling std':>36}"]
    for name, value in got.items():
        err = np.nanmax(np.abs(value - exact) / exact)
        lines.append(f"{name:<12}{err:>36.2e}")
    return "\n".join(lines)


COMPILE_SNIPPET = textwrap.dedent("""
    import time
    t0 = time.perf_counter()
    import numpy as np
    import kernels
    t1 = time.perf_counter()
    for dtype in (np.float32, np.float64):
        x = np.ones((2, 100), dtype=dtype)
        for f in (kernels.move_sum, kernels.move_mean, kernels.move_var,
                  kernels.move_std, kernels.move_zscore, kernels.move_min,
                  kernels.move_max, kernels.move_count):
            f(x, 10)
    t2 = time.perf_counter()
    print(f"{t1 - t0:.3f} {t2 - t1:.3f}")
""")


def compile_table():
    lines = [f"{'cache':<8}{'import kernels s':>18}{'first call of every kernel s':>31}"]
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold", "warm"):
            out = subprocess.run([sys.executable, "-c", COMPILE_SNIPPET], env=env,
                                 capture_output=True, text=True, check=True).stdout.split()
            lines.append(f"{label:<8}{float(out[0]):>18.3f}{float(out[1]):>31.3f}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small arrays, one repeat")
    args = parser.parse_args()
    shape = (50, 100_000) if args.quick else (200, 500_000)
    repeat = 1 if args.quick else 3
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    x[rng.random(shape) < 0.05] = np.nan
    print(f"float64 array {shape}, 5% NaN, window {WINDOW}, single thread, "
          f"best of {repeat}\n")
    print(speed_table(x, repeat), end="\n\n")
    print(accuracy_table(), end="\n\n")
    print(compile_table())


if __name__ == "__main__":
    main()
