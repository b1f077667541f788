"""Window and scan kernels over random time chunkings equal the one-chunk result."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from dask.utils import key_split
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels
from tests.helpers import raise_if_dask_computes
from toolkit.execution.graph import map_scan, map_window, time_halo

N = 120
RNG = np.random.default_rng(11)
X = 50.0 + RNG.standard_normal((3, N))
X[0, 10:25] = np.nan
X[1, RNG.random(N) < 0.2] = np.nan
X[2, 60:80] = 51.5  # stuck
T = np.cumsum(RNG.integers(1, 8, N)).astype(np.int64)

WINDOWS = {
    # name: (func, before, after)
    "rolling-mean": (lambda s: kernels.move_mean(s, 7, 3), 6, 0),
    "rolling-std": (lambda s: kernels.move_std(s, 7, 3), 6, 0),
    "rolling-zscore": (lambda s: kernels.move_zscore(s, 7, 3), 7, 0),
    "rolling-max": (lambda s: kernels.move_max(s, 9, 1), 8, 0),
    "rolling-median": (lambda s: kernels.move_median(s, 9, 1), 8, 0),
    "interpolate": (lambda s: kernels.interpolate(s, 4), 5, 5),
    "hampel": (lambda s: kernels.hampel(s, 3)[0], 3, 3),
    "spike": (lambda s: kernels.spike(s, 0.5, 1.0), 1, 1),
    "drift": (lambda s: kernels.drift(s, 6, 0.1)[0], 5, 0),
}

SCANS = {
    "ewm-mean": lambda b, s: kernels.ewm_mean(b, halflife=5, state=s, return_state=True),
    "ewm-std": lambda b, s: kernels.ewm_std(b, span=9, state=s, return_state=True),
    "ffill": lambda b, s: kernels.ffill(b, 3, state=s, return_state=True),
    "flat-line": lambda b, s: kernels.flat_line(b, 1e-9, 3, 6, state=s, return_state=True),
    "cusum": lambda b, s: _drop_flag(kernels.cusum(b, 50.0, 1.0, state=s, return_state=True)),
}


def _drop_flag(result):
    score, _, state = result
    return score, state


def chunkings(n):
    """Random chunk sizes along time, including single samples."""
    return st.lists(st.integers(1, 25), min_size=1, max_size=n).map(
        lambda sizes: _fit(sizes, n))


def _fit(sizes, n):
    out, total = [], 0
    for s in sizes:
        s = min(s, n - total)
        if s:
            out.append(s)
            total += s
    if total < n:
        out.append(n - total)
    return tuple(out)


@pytest.mark.parametrize("name", list(WINDOWS))
@settings(max_examples=25, deadline=None)
@given(chunks=chunkings(N), rows=st.sampled_from([1, 2, 3]))
def test_window_kernels(name, chunks, rows):
    func, before, after = WINDOWS[name]
    expected = func(X)
    arr = da.from_array(X, chunks=(rows, chunks))
    with raise_if_dask_computes():
        lazy = map_window(arr, func, before=before, after=after, name=name,
                          dtype=expected.dtype)
    got = lazy.compute(scheduler="sync")
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))


@pytest.mark.parametrize("name", list(SCANS))
@settings(max_examples=25, deadline=None)
@given(chunks=chunkings(N), rows=st.sampled_from([1, 2, 3]))
def test_scan_kernels(name, chunks, rows):
    step = SCANS[name]
    expected = step(X, None)[0]
    arr = da.from_array(X, chunks=(rows, chunks))
    with raise_if_dask_computes():
        lazy = map_scan(arr, step, name=name, dtype=expected.dtype)
    np.testing.assert_array_equal(lazy.compute(scheduler="sync"), expected)


@settings(max_examples=25, deadline=None)
@given(chunks=chunkings(N), span=st.integers(1, 40),
       stat=st.sampled_from(["mean", "std", "max", "count"]))
def test_time_span_windows(chunks, span, stat):
    def func(segment, times):
        return kernels.time_rolling(segment, times, span, stat)

    expected = func(X, T)
    arr = da.from_array(X, chunks=(2, chunks))
    lazy = map_window(arr, func, before=time_halo(T, chunks, span), name="time-rolling",
                      times=T)
    np.testing.assert_allclose(lazy.compute(scheduler="sync"), expected, rtol=1e-12,
                               atol=1e-12)


def test_on_a_cluster_with_readable_task_names(client):
    arr = da.from_array(X, chunks=(1, 7))
    func, before, _ = WINDOWS["rolling-mean"]
    window = map_window(arr, func, before=before, name="rolling-mean")
    scan = map_scan(arr, SCANS["ewm-mean"], name="ewm-mean")
    names = {key_split(k) for k in window.__dask_graph__()} | \
        {key_split(k) for k in scan.__dask_graph__()}
    assert {"rolling-mean", "ewm-mean"} <= names
    # a fixed number of tasks per chunk: 1 for a window, 3 for a scan step
    blocks = arr.npartitions
    assert len(window.dask.layers[window.name]) == blocks
    assert len(scan.dask.layers[scan.name]) == 3 * blocks
    got_w, got_s = client.compute([window, scan], sync=True)
    np.testing.assert_allclose(got_w, func(X), rtol=1e-12)
    np.testing.assert_array_equal(got_s, SCANS["ewm-mean"](X, None)[0])


def test_bad_halo():
    with pytest.raises(ValueError, match="before/after"):
        map_window(da.ones(10, chunks=5), lambda s: s, before=[1], name="x")
