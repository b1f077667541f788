"""Kernel suite: the toolkit's kernels against numbagg, bottleneck and pandas.

Same data, same process, single thread (and, in the last table, every
library at its default too); each time is the minimum of several
repetitions (page faults swing single timings by 2x on these machines). The
repetitions run in rounds over the whole speed table -- every implementation
of every row once per round -- so that a slow spell of the machine, which can
last minutes, does not fall on one row's repetitions alone.

    python benchmarks/bench_kernels.py            # the issue's size: (200, 500_000)
    python benchmarks/bench_kernels.py --quick    # (50, 100_000), for a smoke run
    python benchmarks/bench_kernels.py --cores    # only the table on every core

Prints the tables: speed single-threaded (seconds and ratios to the fastest
peer), binning, accuracy of the rolling std on pressure-like data,
compilation costs, and every library single-threaded and at its default
(toolkit: every core, numbagg: its parallel target) beside the memory floor.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time

import bottleneck as bn
import numba
import numbagg
import numpy as np
import pandas as pd

import kernels
from kernels import parallel

# the single-threaded tables: the toolkit on one thread, numba's pool at one
parallel.set_threads(1)
CORES = parallel.cores()
numba.set_num_threads(1)

WINDOW = 60
ALPHA = 0.05


def best_of(impls, repeat):
    """Minimum time of each implementation, repetitions taken in turns.

    Taking the rounds in turns (toolkit, peer, peer, toolkit, ...) rather
    than all of one first means that a slow spell of the machine hits every
    implementation alike.
    """
    return best_of_rows({"": impls}, repeat)[""]


def best_of_rows(rows, repeat):
    """`best_of` for a table: each round runs every implementation of every
    row, so each row's minimum is taken from rounds spread over the whole
    run, not from one stretch of it that a slow spell of the machine (they
    last minutes here) may cover."""
    for impls in rows.values():
        for fn in impls.values():
            fn()  # warm-up: compilation, first-touch page faults
    times = {row: {name: [] for name in impls} for row, impls in rows.items()}
    for turn in range(repeat):
        for row, impls in rows.items():
            # the first call after another row's is often slow (measured: up
            # to +0.3 s for whichever library comes first after a long
            # median), so the order turns from round to round
            names = list(impls)
            names = names[turn % len(names):] + names[:turn % len(names)]
            for name in names:
                start = time.perf_counter()
                impls[name]()
                times[row][name].append(time.perf_counter() - start)
    return {row: {name: min(t) for name, t in by_name.items()}
            for row, by_name in times.items()}


def pandas_rolling(x, stat, min_periods=None):
    frame = pd.DataFrame(x.T, copy=False)  # pandas rolls down columns
    return getattr(frame.rolling(WINDOW, min_periods=min_periods), stat)()


def pandas_flat_line(x, tol, suspect, fail):
    """The flat-line flags as a pandas user writes them: diff, run ids, cumsum."""
    out = np.full(x.shape, 9, dtype=np.int8)
    for row in range(x.shape[0]):
        valid = pd.Series(x[row]).dropna()  # NaN neither breaks nor extends a run
        steady = valid.diff().abs().le(tol)
        length = steady.groupby((~steady).cumsum()).cumsum() + 1
        out[row, valid.index] = np.where(length >= fail, 4, np.where(length >= suspect, 3, 1))
    return out


def binning_table(repeat):
    """2 million irregular samples of 200 devices into 1-minute bins."""
    import flox

    rng = np.random.default_rng(2)
    n, devices, minutes = 2_000_000, 200, 10_000
    t = np.sort(rng.integers(0, minutes * 60_000_000_000, n)).astype(np.int64)
    s = rng.integers(0, devices, n)
    v = rng.standard_normal(n)
    step = 60_000_000_000
    frame = pd.DataFrame({"device": s, "bin": t // step, "value": v})
    impls = {
        "toolkit": lambda: kernels.bin_samples(t, v, s, start=0, step=step, n_bins=minutes,
                                               n_series=devices, stats=("count", "sum")).mean,
        "pandas groupby": lambda: frame.groupby(["device", "bin"]).value.mean(),
        "flox": lambda: flox.groupby_reduce(
            v, s, t // step, func="mean",
            expected_groups=(np.arange(devices), np.arange(minutes)))[0],
    }
    times = best_of(impls, repeat)
    lines = [f"{'binned mean (2M samples, 200 devices, 1-min bins)':<52}{'s':>8}"
             f"{'toolkit speed-up':>18}"]
    for k, sec in times.items():
        lines.append(f"{k:<52}{sec:>8.3f}{times[k] / times['toolkit']:>17.1f}x")
    return "\n".join(lines)


def speed_table(x, repeat):
    # numbagg picks its parallel target for large arrays; force one thread
    for f in (numbagg.move_mean, numbagg.move_std, numbagg.move_sum,
              numbagg.move_exp_nanmean):
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
        # min_count=1: every window has a result (with the default
        # min_count=window and 5% NaN, most windows have none)
        "mean, min_count 1": {
            "toolkit": lambda: kernels.move_mean(x, WINDOW, min_count=1),
            "numbagg": lambda: numbagg.move_mean(x, window=WINDOW, min_count=1),
            "bottleneck": lambda: bn.move_mean(x, WINDOW, min_count=1),
            "pandas": lambda: pandas_rolling(x, "mean", min_periods=1),
        },
        "std, min_count 1": {
            "toolkit": lambda: kernels.move_std(x, WINDOW, min_count=1),
            "numbagg": lambda: numbagg.move_std(x, window=WINDOW, min_count=1),
            "bottleneck": lambda: bn.move_std(x, WINDOW, min_count=1, ddof=1),
            "pandas": lambda: pandas_rolling(x, "std", min_periods=1),
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
            "toolkit": lambda: kernels.move_median(x, WINDOW),
            "bottleneck": lambda: bn.move_median(x, WINDOW),
            "pandas": lambda: pandas_rolling(x, "median"),
        },
        # a long window: bottleneck's heap against ours (50 rows)
        "median, window 512": {
            "toolkit": lambda: kernels.move_median(x[:50], 512),
            "bottleneck": lambda: bn.move_median(x[:50], 512),
        },
        "median w512, min_count 1": {
            "toolkit": lambda: kernels.move_median(x[:50], 512, min_count=1),
            "bottleneck": lambda: bn.move_median(x[:50], 512, min_count=1),
        },
        # numbagg's move_exp_nanmean decays the past across NaN as well:
        # pandas' ignore_na=False (its default), used for all three
        "EWMA mean": {
            "toolkit": lambda: kernels.ewm_mean(x, alpha=ALPHA),
            "numbagg": lambda: numbagg.move_exp_nanmean(x, alpha=ALPHA),
            "pandas": lambda: pd.DataFrame(x.T, copy=False).ewm(alpha=ALPHA).mean(),
        },
        "flat line": {
            "toolkit": lambda: kernels.flat_line(x, 1e-3, 5, 10),
            "pandas": lambda: pandas_flat_line(x[:20], 1e-3, 5, 10),  # 1/10 of the rows
        },
    }
    peers = ["numbagg", "bottleneck", "pandas"]
    header = (f"{'operation':<26}{'toolkit s':>10}" + "".join(f"{p + ' s':>13}" for p in peers)
              + f"  {'toolkit vs fastest peer':<30}")
    lines = [header, "-" * len(header)]
    # what any kernel of this shape pays before computing anything: reading
    # every sample and writing a freshly allocated output of the same size
    best = best_of_rows({**rows, "memory floor": {"copy": lambda: x.copy()}}, repeat)
    floor = best["memory floor"]["copy"]
    for name in rows:
        t = best[name]
        if name == "flat line":
            t["pandas"] *= x.shape[0] / 20  # scaled from the rows it ran on
        fastest = min(v for k, v in t.items() if k != "toolkit")
        cells = "".join(f"{t[p]:>13.3f}" if p in t else f"{'-':>13}" for p in peers)
        if "toolkit" in t:
            ratio = f"{t['toolkit'] / fastest:.2f}x time ({fastest / t['toolkit']:.2f}x speed)"
            own = f"{t['toolkit']:>10.3f}"
        else:
            ratio, own = "not implemented", f"{'-':>10}"
        lines.append(f"{name:<26}{own}{cells}  {ratio:<30}")
    lines.append(f"\nmemory floor: numpy copy of the array (read it, write a new one) "
                 f"{floor:.3f} s")
    return "\n".join(lines)


def _numbagg(f, parallel_target: bool):
    """Call numbagg's ``f`` single-threaded (its CPU target) or at its default."""

    def call(*args, **kwargs):
        f._target_cpu = not parallel_target
        numba.set_num_threads(CORES if parallel_target else 1)
        try:
            return f(*args, **kwargs)
        finally:
            f._target_cpu = True
            numba.set_num_threads(1)

    return call


def _threads(n, f):
    def call():
        with parallel.use_threads(n):
            return f()
    return call


def cores_table(x, repeat):
    """Every library single-threaded and at its default, beside the memory floor."""
    rows = {
        "rolling mean, min_count 1": (
            lambda: kernels.move_mean(x, WINDOW, min_count=1),
            lambda: bn.move_mean(x, WINDOW, min_count=1),
            lambda p: _numbagg(numbagg.move_mean, p)(x, window=WINDOW, min_count=1)),
        "rolling std, min_count 2": (
            lambda: kernels.move_std(x, WINDOW, min_count=2),
            lambda: bn.move_std(x, WINDOW, min_count=2, ddof=1),
            lambda p: _numbagg(numbagg.move_std, p)(x, window=WINDOW, min_count=2)),
        "rolling max": (
            lambda: kernels.move_max(x, WINDOW),
            lambda: bn.move_max(x, WINDOW),
            None),
        "EWMA mean": (
            lambda: kernels.ewm_mean(x, alpha=ALPHA),
            None,
            lambda p: _numbagg(numbagg.move_exp_nanmean, p)(x, alpha=ALPHA)),
    }
    impls = {}
    for name, (ours, bottle, nbagg) in rows.items():
        row = {"toolkit 1": _threads(1, ours), f"toolkit {CORES}": _threads(CORES, ours)}
        if bottle is not None:
            row["bottleneck 1"] = bottle
        if nbagg is not None:
            row["numbagg 1"] = lambda nbagg=nbagg: nbagg(False)
            row["numbagg default"] = lambda nbagg=nbagg: nbagg(True)
        impls[name] = row
    best = best_of_rows({**impls, "memory floor": {"copy": lambda: x.copy()}}, repeat)
    floor = best["memory floor"]["copy"]
    cols = ["toolkit 1", f"toolkit {CORES}", "bottleneck 1", "numbagg 1", "numbagg default"]
    header = (f"{'operation':<28}" + "".join(f"{c + ' s':>18}" for c in cols)
              + f"{'numpy copy s':>15}{'toolkit ' + str(CORES) + ' / copy':>20}")
    lines = [f"every library single-threaded (1) and at its default; toolkit on {CORES} "
             "threads (its default outside Dask)", header, "-" * len(header)]
    for name in rows:
        t = best[name]
        cells = "".join(f"{t[c]:>18.3f}" if c in t else f"{'-':>18}" for c in cols)
        lines.append(f"{name:<28}{cells}{floor:>15.3f}"
                     f"{t[f'toolkit {CORES}'] / floor:>19.2f}x")
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
    x = np.ones((2, 100))
    t = np.arange(100)
    for f in (kernels.move_sum, kernels.move_mean, kernels.move_var, kernels.move_std,
              kernels.move_zscore, kernels.move_min, kernels.move_max, kernels.move_count,
              kernels.move_median):
        f(x, 10)
    kernels.time_rolling(x, t, 5, "std"); kernels.time_rolling(x, t, 5, "max")
    x_inf = x.copy(); x_inf[:, 5] = np.inf  # series with infinities: the careful loops
    for f in (kernels.move_sum, kernels.move_mean, kernels.move_var, kernels.move_std):
        f(x_inf, 10)
    kernels.ewm_mean(x, alpha=0.5); kernels.ewm_std(x, alpha=0.5)
    kernels.ewm_mean(x, times=t, halflife=3)
    kernels.ffill(x, 3); kernels.interpolate(x, 3)
    kernels.gross_range(x, (0, 2)); kernels.spike(x, 1, 2); kernels.rate_of_change(x, 1.0)
    kernels.flat_line(x, 0.0, 3, 5); kernels.time_gaps(t, 3)
    kernels.robust_zscore(x, 10); kernels.hampel(x, 3); kernels.cusum(x, 0.0, 1.0)
    kernels.drift(x, 10, 1.0); kernels.lttb(x, 10)
    kernels.bin_samples(t, x[0], start=0, step=10, n_bins=10)
    t2 = time.perf_counter()
    print(f"{t1 - t0:.3f} {t2 - t1:.3f}")
""")


NUMBA_ALONE_SNIPPET = textwrap.dedent("""
    import time
    t0 = time.perf_counter()
    import numpy as np
    from trivial_numba import total
    t1 = time.perf_counter()
    total(np.ones(3))
    t2 = time.perf_counter()
    print(f"{t1 - t0:.3f} {t2 - t1:.3f}")
""")


def compile_table(warm_runs=3):
    """Cold (empty cache) and warm (best of `warm_runs`) cost of import + first calls.

    The floor, numba itself (import, and the first call of one cached
    function), is measured alike and printed below.
    """
    lines = [f"{'cache':<16}{'import kernels s':>18}"
             f"{'first call of every kernel (float64) s':>40}{'total s':>10}"]

    def run(snippet, env):
        out = subprocess.run([sys.executable, "-c", snippet], env=env, capture_output=True,
                             text=True, check=True).stdout.split()
        return float(out[0]), float(out[1])

    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        cold = run(COMPILE_SNIPPET, env)
        warm = min((run(COMPILE_SNIPPET, env) for _ in range(warm_runs)), key=sum)
        with open(os.path.join(cache, "trivial_numba.py"), "w") as f:
            f.write("from numba import njit\n\n\n@njit(cache=True)\n"
                    "def total(x):\n    return x.sum()\n")
        env["PYTHONPATH"] = cache
        run(NUMBA_ALONE_SNIPPET, env)  # fills the cache
        alone = min((run(NUMBA_ALONE_SNIPPET, env) for _ in range(warm_runs)), key=sum)
    for label, (imp, calls) in (("cold", cold), (f"warm (best of {warm_runs})", warm),
                                ("numba alone", alone)):
        lines.append(f"{label:<16}{imp:>18.3f}{calls:>40.3f}{imp + calls:>10.3f}")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small arrays, one repeat")
    parser.add_argument("--cores", action="store_true",
                        help="only the table of every library on every core")
    args = parser.parse_args()
    shape = (50, 100_000) if args.quick else (200, 500_000)
    repeat = 1 if args.quick else 5
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    x[rng.random(shape) < 0.05] = np.nan
    if args.cores:
        print(f"float64 array {shape}, 5% NaN, window {WINDOW}, best of {repeat}\n")
        print(cores_table(x, repeat))
        return
    print(f"float64 array {shape}, 5% NaN, window {WINDOW}, single thread, "
          f"best of {repeat}\n")
    print(speed_table(x, repeat), end="\n\n")
    print(binning_table(repeat), end="\n\n")
    print(accuracy_table(), end="\n\n")
    print(compile_table(), end="\n\n")
    print(cores_table(x, repeat))


if __name__ == "__main__":
    main()
