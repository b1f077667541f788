"""Binned aggregation against pandas groupby; partials combine to the whole."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.binning import bin_samples, combine_bins, valid_long_samples

START = np.datetime64("2026-03-01T00:00:00", "ns")
STEP = np.timedelta64(60, "s")


def irregular(seed, n, n_series, shuffle):
    """Samples in time order, shuffled (shuffle=True) or by series ("series")."""
    rng = np.random.default_rng(seed)
    t = START + (rng.uniform(-120, 3720, n) * 1e9).astype("timedelta64[ns]")
    if n:
        t[:: max(1, n // 7)] = t[0]  # some exactly equal times
    v = rng.standard_normal(n) + 100.0
    v[rng.random(n) < 0.05] = np.nan
    s = rng.integers(0, n_series, n)
    if shuffle == "series":
        order = np.lexsort((t, s))
    else:
        order = rng.permutation(n) if shuffle else np.argsort(t, kind="stable")
    return t[order], v[order], s[order]


def pandas_reference(t, v, s, n_series, n_bins):
    frame = pd.DataFrame({"t": t, "v": v, "s": s})
    inside = frame.v.notna() & (frame.t >= START) & (frame.t < START + n_bins * STEP)
    inner = frame[inside].copy()
    inner["b"] = (inner.t - START) // pd.Timedelta(STEP)
    # first/last by time, ties by order of appearance
    inner = inner.sort_values("t", kind="stable")
    grouped = inner.groupby(["s", "b"]).v
    stats = {name: getattr(grouped, name)() for name in
             ("count", "sum", "mean", "min", "max", "first", "last")}
    index = pd.MultiIndex.from_product([range(n_series), range(n_bins)])
    return {k: x.reindex(index).to_numpy().reshape(n_series, n_bins)
            for k, x in stats.items()}, frame


@pytest.mark.parametrize("shuffle", [False, True, "series"])
def test_matches_pandas_groupby(shuffle):
    n_series, n_bins = 7, 60
    t, v, s = irregular(1, 20_000, n_series, shuffle)
    got = bin_samples(t, v, s, start=START, step=STEP, n_bins=n_bins, n_series=n_series)
    # the tables are bin-major when the series interleave, series-major otherwise
    assert got.count.flags.f_contiguous == (shuffle != "series")
    assert got.count.flags.c_contiguous == (shuffle == "series")
    expected, frame = pandas_reference(t, v, s, n_series, n_bins)
    np.testing.assert_array_equal(got.count, np.nan_to_num(expected["count"]).astype(int))
    for name in ("min", "max", "first", "last"):
        np.testing.assert_array_equal(getattr(got, name), expected[name], err_msg=name)
    np.testing.assert_allclose(got.sum, np.nan_to_num(expected["sum"]), rtol=1e-12)
    np.testing.assert_allclose(got.mean, expected["mean"], rtol=1e-12)
    # every sample is counted exactly once
    assert got.count.sum() + got.outside.sum() + got.missing.sum() == len(t)
    assert got.missing.sum() == frame.v.isna().sum()
    outside = frame.v.notna() & ((frame.t < START) | (frame.t >= START + n_bins * STEP))
    np.testing.assert_array_equal(got.outside, np.bincount(s[outside], minlength=n_series))


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 300), data=st.data())
def test_partials_combine_to_the_whole(seed, n, data):
    t, v, s = irregular(seed, n, 3, shuffle=True)
    kwargs = {"start": START, "step": STEP, "n_bins": 70, "n_series": 3}
    whole = bin_samples(t, v, s, **kwargs)
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=4)))
    partials = [bin_samples(t[i], v[i], s[i], **kwargs)
                for i in np.split(np.arange(n), cuts)]
    merged = partials[0]
    for p in partials[1:]:
        merged = combine_bins(merged, p)
    for name in ("count", "min", "max", "first", "last", "first_time", "last_time",
                 "outside", "missing"):
        np.testing.assert_array_equal(getattr(merged, name), getattr(whole, name), name)
    np.testing.assert_allclose(merged.sum, whole.sum, rtol=1e-12)


def test_mean_only_skips_the_rest():
    t, v, s = irregular(3, 5000, 4, shuffle=True)
    kwargs = {"start": START, "step": STEP, "n_bins": 64, "n_series": 4}
    lean = bin_samples(t, v, s, stats=("count", "sum"), **kwargs)
    full = bin_samples(t, v, s, **kwargs)
    assert lean.min is None and lean.first is None
    np.testing.assert_array_equal(lean.mean, full.mean)
    merged = combine_bins(lean, bin_samples(t[:10], v[:10], s[:10], stats=(), **kwargs))
    np.testing.assert_array_equal(merged.count, full.count + bin_samples(
        t[:10], v[:10], s[:10], **kwargs).count)
    with pytest.raises(ValueError, match="different stats"):
        combine_bins(lean, full)
    with pytest.raises(ValueError, match="unknown stats"):
        bin_samples(t, v, s, stats=("median",), **kwargs)


def test_argument_errors():
    t = np.array([0, 1])
    with pytest.raises(ValueError, match="step must be a positive"):
        bin_samples(t, [1.0, 2.0], start=0, step=0, n_bins=2)
    with pytest.raises(ValueError, match=r"series codes must lie in \[0, 2\)"):
        bin_samples(t, [1.0, 2.0], [0, 5], start=0, step=1, n_bins=2, n_series=2)
    with pytest.raises(ValueError, match="one length"):
        bin_samples(t, [1.0], start=0, step=1, n_bins=2)
    with pytest.raises(TypeError, match="datetime64 or integers"):
        bin_samples(np.array([0.5]), [1.0], start=0, step=1, n_bins=2)


@settings(deadline=None, max_examples=60)
@given(st.integers(1, 7), st.integers(1, 4), st.integers(0, 300), st.integers(0, 2**32 - 1))
def test_valid_long_samples_equal_a_numpy_filter(n_dev, n_m, n, seed):
    rng = np.random.default_rng(seed)
    rank = rng.permutation(n_dev)
    codes = rng.integers(0, n_dev, n).astype(np.int32)
    metrics = rng.integers(0, n_m, n).astype(np.int32)
    times = rng.integers(-10**12, 10**12, n)
    values = np.where(rng.random(n) < 0.3, np.nan, rng.normal(size=n))
    s, t, v, counts = valid_long_samples(rank, codes, metrics, times, values, n_m)
    ok = ~np.isnan(values)
    series = rank[codes] * n_m + metrics
    np.testing.assert_array_equal(s, series[ok])
    np.testing.assert_array_equal(t, times[ok])
    np.testing.assert_array_equal(v, values[ok])
    np.testing.assert_array_equal(counts, np.bincount(series[ok], minlength=n_dev * n_m))
