"""The .telemetry accessor: every operation over random chunkings equals the
one-chunk result, stays lazy, and keeps coordinates and attributes."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels
import toolkit  # noqa: F401  (registers the accessor)
from tests.helpers import raise_if_dask_computes
from toolkit import make_fleet

FLEET = make_fleet(n_devices=3, days=0.25, seed=3, anomaly_rate=20.0).dataset
# irregular times, for the operations over a duration
IRREGULAR = FLEET.assign_coords(
    time=FLEET.time.values + (np.random.default_rng(1).integers(0, 50, FLEET.sizes["time"])
                              * np.timedelta64(1, "s")))

OPERATIONS = {
    "rolling mean": lambda t: t.rolling(window=30, min_count=10).mean(),
    "rolling std": lambda t: t.rolling(window=30, min_count=10).std(),
    "rolling max": lambda t: t.rolling(window=45, min_count=1).max(),
    "rolling median": lambda t: t.rolling(window=21, min_count=5).median(),
    "rolling quantile": lambda t: t.rolling(window=21, min_count=5).quantile(0.9),
    "rolling 10min mean": lambda t: t.rolling(window="10min").mean(),
    "rolling 10min std": lambda t: t.rolling(window="10min").std(),
    "rolling zscore": lambda t: t.rolling(window=30, min_count=10).zscore(),
    "ewm mean": lambda t: t.ewm(halflife=20).mean(),
    "ewm std": lambda t: t.ewm(span=15).std(),
    "ewm mean by time": lambda t: t.ewm(halflife="20min", times=True).mean(),
    "ffill": lambda t: t.ffill(limit=3),
    "interpolate": lambda t: t.interpolate(max_gap=5),
    "interpolate 10min": lambda t: t.interpolate(max_gap="10min"),
    "gross range": lambda t: t.flags.gross_range((-100, 1e6), (0, 1e5)),
    "spike": lambda t: t.flags.spike(1.0, 3.0),
    "flat line": lambda t: t.flags.flat_line(0.0, 3, 6),
    "flat line by time": lambda t: t.flags.flat_line(0.0, "3min", "6min"),
    "rate of change": lambda t: t.flags.rate_of_change(0.05, per="1s"),
    "time gaps": lambda t: t.flags.time_gaps("3min"),
    # detectors return (scores, flags): each output is checked
    "robust zscore": lambda t: t.detect.robust_zscore(window=20)[0],
    "robust zscore flags": lambda t: t.detect.robust_zscore(window=20)[1],
    "hampel": lambda t: t.detect.hampel(half_window=7)[0],
    "hampel flags": lambda t: t.detect.hampel(half_window=7)[1],
    "drift": lambda t: t.detect.drift(window=25, max_slope=0.1)[0],
    "drift flags": lambda t: t.detect.drift(window=25, max_slope=0.1)[1],
    "cusum": lambda t: t.detect.cusum(target=20.0, scale=1.0)[1],
    "cusum scores": lambda t: t.detect.cusum(target=20.0, scale=1.0)[0],
}
# operations whose result has another shape than the input along time
RESHAPING = {
    "regularize mean": lambda t: t.regularize("7min"),
    "regularize last": lambda t: t.regularize("13min", how="last"),
    "regularize min": lambda t: t.regularize("1min", how="min"),
    "downsample": lambda t: t.downsample(25),
}
NEEDS_IRREGULAR = {"regularize mean", "regularize last", "regularize min",
                   "rolling 10min mean", "rolling 10min std", "ewm mean by time",
                   "interpolate 10min", "flat line by time", "rate of change",
                   "time gaps"}


@st.composite
def chunking(draw):
    return {"time": draw(st.sampled_from([1, 2, 7, 29, 100, 360])),
            "device": draw(st.sampled_from([1, 2, 3]))}


def lazy_and_eager(make, ds, chunks, rtol):
    """``make`` on ``ds`` chunked: lazy, then computed equal to the in-memory result."""
    eager = make(ds.telemetry)
    with raise_if_dask_computes():
        lazy = make(ds.chunk(chunks).telemetry)
    assert lazy.temperature.chunks is not None
    computed = lazy.compute(scheduler="sync")
    xr.testing.assert_allclose(computed, eager.assign_attrs(history=computed.history),
                               rtol=rtol, atol=rtol)
    return computed


@pytest.mark.parametrize("op", list(OPERATIONS))
@settings(max_examples=6, deadline=None)
@given(chunks=chunking())
def test_any_chunking_gives_the_one_chunk_result(op, chunks):
    ds = IRREGULAR if op in NEEDS_IRREGULAR else FLEET
    ds = ds[["temperature", "pressure"]]
    computed = lazy_and_eager(OPERATIONS[op], ds, chunks, 1e-10)
    assert computed.temperature.dims == ("device", "time")
    assert computed.coords.equals(ds.coords)
    assert computed.attrs["history"].count("\n") == ds.attrs["history"].count("\n") + (
        1 if ds.attrs["history"] else 0)


@pytest.mark.parametrize("op", list(RESHAPING))
@settings(max_examples=6, deadline=None)
@given(chunks=chunking())
def test_any_chunking_regularize_and_downsample(op, chunks):
    computed = lazy_and_eager(RESHAPING[op], IRREGULAR[["temperature", "pressure"]], chunks,
                              1e-12)
    assert computed.temperature.attrs["units"] == "degC"


def _pandas_resample(series, freq, how):
    return getattr(series.resample(freq, origin="epoch"), how)()


@pytest.mark.parametrize("how", ["mean", "sum", "count", "min", "max", "first", "last"])
def test_regularize_equals_pandas_resample(how):
    # irregular times, NaN samples and a gap of an hour (empty bins: NaN, sum 0 as
    # in pandas)
    ds = IRREGULAR[["humidity"]].isel(time=slice(0, 300))
    ds = ds.where(np.random.default_rng(2).random(ds.humidity.shape) > 0.2)
    ds = ds.drop_isel(time=range(100, 160))
    got = ds.chunk(time=23).telemetry.regularize("4min", how=how).compute()
    for d in range(ds.sizes["device"]):
        ref = _pandas_resample(ds.humidity.isel(device=d).to_series(), "4min", how)
        np.testing.assert_array_equal(got.time.values, ref.index.values)
        np.testing.assert_allclose(got.humidity.isel(device=d).values, ref.values,
                                   rtol=1e-13, equal_nan=True)
        counts = ds.humidity.isel(device=d).to_series().resample("4min", origin="epoch").count()
        np.testing.assert_array_equal(got.humidity_count.isel(device=d).values, counts.values)
    assert got.humidity_count.dtype == np.int32


def test_downsample_equals_the_kernel_per_device():
    import kernels

    da = IRREGULAR.temperature
    small = da.chunk(time=37).telemetry.downsample(40).compute()
    x = (da.time.values - da.time.values[0]).astype(np.int64).astype(float)
    for d in range(da.sizes["device"]):
        idx = kernels.lttb(da.values[d], 40, x=x)
        np.testing.assert_array_equal(small.values[d], da.values[d][idx])
        np.testing.assert_array_equal(small.time.values[d], da.time.values[idx])


def test_regularize_refuses_unsorted_times():
    shuffled = IRREGULAR.isel(time=np.random.default_rng(0).permutation(IRREGULAR.sizes["time"]))
    with pytest.raises(toolkit.DataModelError, match="not sorted; use ds.sortby"):
        shuffled.telemetry.regularize("5min")
    with pytest.raises(ValueError, match="how must be one of"):
        FLEET.telemetry.regularize("5min", how="median")
    with pytest.raises(ValueError, match="n must be a whole number >= 3"):
        FLEET.telemetry.downsample(2)


def test_dataarray_accessor_and_attrs():
    da = FLEET.temperature
    out = da.telemetry.rolling(window=10).mean()
    assert isinstance(out, xr.DataArray) and out.attrs["units"] == "degC"
    flags = da.telemetry.flags.gross_range((-40, 60))
    assert flags.dtype == np.int8 and "flag_meanings" in flags.attrs


def test_on_a_cluster(client):
    ds = FLEET[["humidity"]].chunk(time=50, device=1)
    lazy = ds.telemetry.rolling(window=30).std()
    got = client.compute(lazy).result()
    xr.testing.assert_allclose(got, FLEET[["humidity"]].telemetry.rolling(window=30).std()
                               .assign_attrs(history=got.history))


def test_clear_errors():
    with pytest.raises(ValueError, match="window must be a number of samples or a duration"):
        FLEET.telemetry.rolling(window="soon").mean()
    with pytest.raises(ValueError, match="over a duration, stat must be one of"):
        FLEET.telemetry.rolling(window="5min").median()
    with pytest.raises(ValueError, match="interpolate over time chunks needs max_gap"):
        FLEET.chunk(time=10).telemetry.interpolate()


def test_a_detector_returns_both_outputs_of_its_kernel():
    ds = FLEET.chunk(time=37)
    scores, flags = ds.telemetry.detect.robust_zscore(window=20, threshold=4.0)
    z, f = kernels.robust_zscore(FLEET.temperature.values, 20, 4.0)
    np.testing.assert_allclose(scores.temperature, z, rtol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(flags.temperature, f)
    assert flags.temperature.dtype == np.int8 and flags.temperature.attrs["flag_values"].size
    filtered, hflags = ds.temperature.telemetry.detect.hampel(half_window=4)
    hf, hg = kernels.hampel(FLEET.temperature.values, 4)
    np.testing.assert_allclose(filtered, hf, rtol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(hflags, hg)


def test_every_accessor_method_is_in_the_docs():
    import inspect
    from pathlib import Path

    from toolkit import accessor

    docs = (Path(__file__).parents[2] / "docs" / "chunk-exact.md").read_text()
    for cls in (accessor.TelemetryAccessor, accessor.Rolling, accessor.Ewm, accessor.Flags,
                accessor.Detect):
        for name, member in inspect.getmembers(cls):
            if name.startswith("_"):
                continue
            assert f".{name}(" in docs or f".{name}." in docs, f"{cls.__name__}.{name}"
            assert (member.__doc__ if not isinstance(member, property)
                    else member.fget.__doc__), f"{cls.__name__}.{name} has no docstring"
