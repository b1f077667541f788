"""Filling kernels against pandas and a plain loop; ffill split in pieces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.fill import ffill, interpolate
from tests.helpers import series


@settings(max_examples=200, deadline=None)
@given(x=series(), limit=st.one_of(st.none(), st.integers(1, 10)), data=st.data())
def test_ffill_matches_pandas_and_splits(x, limit, data):
    expected = pd.Series(x).ffill(limit=limit).to_numpy()
    got = ffill(x, limit)
    np.testing.assert_array_equal(got, expected)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(x)), max_size=5)))
    parts, state = [], None
    for piece in np.split(x, cuts):
        out, state = ffill(piece, limit, state=state, return_state=True)
        parts.append(out)
    np.testing.assert_array_equal(np.concatenate(parts), expected)


def slow_interpolate(x, t, max_gap=None, max_span=None):
    out = x.astype(np.float64).copy()
    valid = np.flatnonzero(~np.isnan(x))
    for p, q in zip(valid[:-1], valid[1:], strict=True):
        if q - p < 2:
            continue
        if max_gap is not None and q - p - 1 > max_gap:
            continue
        if max_span is not None and t[q] - t[p] > max_span:
            continue
        for j in range(p + 1, q):
            out[j] = x[p] + (x[q] - x[p]) * (t[j] - t[p]) / (t[q] - t[p])
    return out


@settings(max_examples=200, deadline=None)
@given(x=series(), max_gap=st.one_of(st.none(), st.integers(1, 8)))
def test_interpolate_by_count_matches_a_plain_loop(x, max_gap):
    expected = slow_interpolate(x, np.arange(len(x), dtype=float), max_gap=max_gap)
    got = interpolate(x, max_gap)
    rtol = 1e-6 if x.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, expected, rtol=rtol)


def test_interpolate_matches_pandas_on_short_gaps():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(500)
    x[rng.random(500) < 0.2] = np.nan
    expected = pd.Series(x).interpolate(limit_area="inside").to_numpy()
    np.testing.assert_allclose(interpolate(x), expected, rtol=1e-12)


def test_interpolate_by_time_matches_pandas_and_respects_max_span():
    rng = np.random.default_rng(3)
    n = 300
    t = pd.Timestamp("2026-01-01") + pd.to_timedelta(np.cumsum(rng.integers(1, 120, n)),
                                                     unit="s")
    x = rng.standard_normal(n)
    x[rng.random(n) < 0.25] = np.nan
    expected = pd.Series(x, index=t).interpolate(method="time", limit_area="inside")
    np.testing.assert_allclose(interpolate(x, times=t.values), expected.to_numpy(),
                               rtol=1e-9)
    seconds = (t - t[0]).total_seconds().to_numpy()
    got = interpolate(x, times=t.values, max_span=np.timedelta64(200, "s"))
    np.testing.assert_allclose(got, slow_interpolate(x, seconds, max_span=200), rtol=1e-9)


def test_errors():
    with pytest.raises(ValueError, match="limit=0"):
        ffill(np.ones(3), 0)
    with pytest.raises(ValueError, match="max_gap=0"):
        interpolate(np.ones(3), 0)
    with pytest.raises(ValueError, match="sorted"):
        interpolate(np.ones(3), times=np.array([0, 2, 1]))
    with pytest.raises(ValueError, match="max_span needs times"):
        interpolate(np.ones(3), max_span=3)
