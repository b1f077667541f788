"""Rolling median and quantiles against numpy, bottleneck and pandas."""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels.quantile
from kernels.quantile import move_median, move_quantile
from tests.helpers import series


def slow_quantile(x, window, q, min_count):
    out = np.full(len(x), np.nan)
    for i in range(len(x)):
        w = x[max(0, i - window + 1): i + 1].astype(np.float64)
        v = np.sort(w[~np.isnan(w)])
        if len(v) < min_count:
            continue
        h = q * (len(v) - 1)
        lo = int(np.floor(h))
        frac = h - lo
        high = v[min(lo + 1, len(v) - 1)]
        if frac == 0 or high == v[lo]:
            out[i] = v[lo]
        elif np.isinf(v[lo]) or np.isinf(high):  # documented: the infinity wins
            out[i] = (1 - frac) * v[lo] + frac * high
        else:
            out[i] = v[lo] + frac * (high - v[lo])
    return out


@contextlib.contextmanager
def loop(name):
    """Run move_quantile with one of its two loops, whatever the window."""
    saved = kernels.quantile._SORTED_UP_TO
    kernels.quantile._SORTED_UP_TO = {"sorted": 2**62, "heaps": 0}[name]
    try:
        yield
    finally:
        kernels.quantile._SORTED_UP_TO = saved


LOOPS = ["sorted", "heaps"]


@pytest.mark.parametrize("path", LOOPS)
@settings(max_examples=200, deadline=None)
@given(x=series(), q=st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.77, 1.0]), data=st.data())
def test_matches_a_plain_loop(path, x, q, data):
    window = data.draw(st.integers(1, len(x) + 3), label="window")
    min_count = data.draw(st.integers(1, window), label="min_count")
    with loop(path):
        got = move_quantile(x, window, q, min_count)
    expected = slow_quantile(x, window, q, min_count)
    assert got.dtype == x.dtype
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(got, expected.astype(x.dtype), rtol=1e-6, atol=0)


@pytest.mark.parametrize("path", LOOPS)
@pytest.mark.parametrize("window", [1, 2, 3, 60, 1000])
def test_median_against_bottleneck(path, window):
    bn = pytest.importorskip("bottleneck")
    rng = np.random.default_rng(window)
    x = rng.standard_normal((4, 3000))
    x[0, 200:1500] = np.nan
    x[1, rng.random(3000) < 0.3] = np.nan
    x[2, 100:900] = 7.0
    x[3] = np.round(x[3])  # many ties
    # min_count 1, and half the window: windows without a result, where the
    # heaps are left unbalanced, alternate with windows with one
    for min_count in (1, max(1, window // 2)):
        with loop(path):
            got = move_median(x, window, min_count=min_count)
        np.testing.assert_array_equal(got, bn.move_median(x, window, min_count=min_count))


@pytest.mark.parametrize("path", LOOPS)
@pytest.mark.parametrize("q", [0.05, 0.5, 0.95])
def test_against_pandas(path, q):
    x = np.random.default_rng(1).standard_normal(5000)
    x[::13] = np.nan
    expected = pd.Series(x).rolling(50, min_periods=10).quantile(q).to_numpy()
    with loop(path):
        got = move_quantile(x, 50, q, min_count=10)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_errors():
    with pytest.raises(ValueError, match="q=1.5"):
        move_quantile(np.ones(3), 2, 1.5)
    with pytest.raises(ValueError, match="window=0"):
        move_median(np.ones(3), 0)
