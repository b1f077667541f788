"""What the tests share: the array generator, the plain-loop references of
the moving statistics and their tolerances, and a guard against computing."""

from __future__ import annotations

import contextlib

import dask
import numpy as np
from hypothesis import strategies as st

import kernels

STATS = {
    "sum": (kernels.move_sum, lambda v, ddof: v.sum()),
    "mean": (kernels.move_mean, lambda v, ddof: v.mean()),
    "var": (kernels.move_var, lambda v, ddof: v.var(ddof=ddof)),
    "std": (kernels.move_std, lambda v, ddof: v.std(ddof=ddof)),
    "min": (kernels.move_min, lambda v, ddof: v.min()),
    "max": (kernels.move_max, lambda v, ddof: v.max()),
}


def slow_moving(x, window, min_count, stat, ddof=1):
    """Plain loop: the statistic of the valid samples of each trailing window."""
    out = np.full(x.shape, np.nan)
    reduce = STATS[stat][1]
    for i in range(len(x)):
        w = x[max(0, i - window + 1): i + 1].astype(np.float64)
        v = w[~np.isnan(w)]
        if len(v) < min_count or (stat in ("var", "std") and len(v) <= ddof):
            continue
        with np.errstate(invalid="ignore"):
            out[i] = reduce(v, ddof)
    return out


@st.composite
def series(draw, max_len=80):
    """Sensor-like series: NaN at the ends and in runs, constants, infinities,
    large offsets, float32 or float64."""
    n = draw(st.integers(1, max_len))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    offset = draw(st.sampled_from([0.0, 101325.0, 1e6]))
    scale = draw(st.sampled_from([1e-2, 1.0, 100.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = offset + scale * rng.standard_normal(n)
    if draw(st.booleans()):  # a constant stretch (a stuck sensor)
        a = draw(st.integers(0, n - 1))
        x[a: a + draw(st.integers(1, n))] = x[a]
    for _ in range(draw(st.integers(0, 3))):  # NaN runs, possibly at the ends
        a = draw(st.integers(0, n - 1))
        x[a: a + draw(st.integers(1, max(1, n // 3)))] = np.nan
    if draw(st.booleans()) and n > 2:
        x[draw(st.integers(0, n - 1))] = draw(st.sampled_from([np.inf, -np.inf]))
    if draw(st.integers(0, 9)) == 0:
        x[:] = np.nan
    return x.astype(dtype)


def tolerance(x, stat):
    finite = np.abs(x[np.isfinite(x)])
    big = float(finite.max()) if finite.size else 1.0
    eps = np.finfo(x.dtype).eps
    if stat in ("min", "max"):  # picks a value: exact
        return {"rtol": 0, "atol": 0}
    if stat in ("var", "std"):
        spread = float(np.ptp(x[np.isfinite(x)])) if finite.size else 1.0
        # shifted sums keep the error near eps * |x| * spread, never eps * x**2
        return {"rtol": 100 * eps, "atol": 1e4 * np.finfo(float).eps * big * (spread + 1)
                + (1e-6 * spread**2 if x.dtype == np.float32 else 0)}
    return {"rtol": 100 * eps, "atol": 100 * np.finfo(float).eps * big * len(x)}


@contextlib.contextmanager
def raise_if_dask_computes():
    """Fail the test if anything inside the block makes Dask compute."""

    def refuse(dsk, keys, **kwargs):
        raise AssertionError(f"Dask computed {len(dsk)} tasks inside a lazy block")

    with dask.config.set(scheduler=refuse):
        yield
