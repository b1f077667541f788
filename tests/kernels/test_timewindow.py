"""Rolling statistics over a time span against pandas and a plain loop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.timewindow import time_rolling
from tests.helpers import STATS, series, slow_moving, tolerance

STAT_NAMES = ["count", "sum", "mean", "var", "std", "min", "max"]


def slow_time_rolling(x, t, span, stat, min_count):
    out = np.full(len(x), np.nan)
    for i in range(len(x)):
        # samples up to position i (as pandas: a later sample with the same
        # time is not in the window yet) within the span
        inside = (t > t[i] - span) & (np.arange(len(t)) <= i)
        w = x[inside]
        if stat == "count":
            out[i] = np.count_nonzero(~np.isnan(w))
            continue
        # the plain count-window loop over exactly this window's samples
        out[i] = slow_moving(w, len(w), min_count, stat)[-1]
    return out


@pytest.mark.parametrize("stat", STAT_NAMES)
@settings(max_examples=100, deadline=None)
@given(x=series(), span=st.integers(1, 40), min_count=st.integers(1, 4), seed=st.integers(0, 99))
def test_matches_a_plain_loop(stat, x, span, min_count, seed):
    t = np.cumsum(np.random.default_rng(seed).integers(0, 6, len(x))).astype(np.int64)
    got = time_rolling(x, t, span, stat, min_count=min_count)
    expected = slow_time_rolling(x, t, span, stat, min_count)
    assert got.dtype == x.dtype
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    if stat in STATS:
        tol = tolerance(x, "var" if stat == "std" else stat)
        if stat == "std":
            np.testing.assert_allclose(got.astype(float) ** 2, expected**2, **tol)
        else:
            np.testing.assert_allclose(got, expected, **tol)
    else:
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("stat", STAT_NAMES)
def test_matches_pandas_time_rolling(stat):
    rng = np.random.default_rng(4)
    n = 3000
    t = pd.Timestamp("2026-01-01") + pd.to_timedelta(np.cumsum(rng.integers(0, 90, n)),
                                                     unit="s")
    x = 101325.0 + 0.5 * rng.standard_normal((2, n))
    x[:, rng.random(n) < 0.1] = np.nan
    got = time_rolling(x, t.values, np.timedelta64(10, "m"), stat)
    for row in range(2):
        expected = getattr(pd.Series(x[row], index=t).rolling("10min"), stat)()
        np.testing.assert_allclose(got[row], expected.to_numpy(), rtol=1e-9, atol=1e-9)


def test_errors():
    with pytest.raises(ValueError, match="stat must be one of"):
        time_rolling(np.ones(3), np.arange(3), 2, "median")
    with pytest.raises(ValueError, match="sorted"):
        time_rolling(np.ones(3), np.array([0, 2, 1]), 2)
    with pytest.raises(ValueError, match="span must be a positive"):
        time_rolling(np.ones(3), np.arange(3), 0)
    with pytest.raises(TypeError, match="span must be a timedelta64"):
        time_rolling(np.ones(3), np.arange(3).astype("datetime64[s]"), 5)
