"""The .telemetry accessor: every operation over random chunkings equals the
one-chunk result, stays lazy, and keeps coordinates and attributes."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import toolkit  # noqa: F401  (registers the accessor)
from tests.conftest import raise_if_dask_computes
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
    "robust zscore": lambda t: t.detect.robust_zscore(window=20),
    "cusum": lambda t: t.detect.cusum(target=20.0, scale=1.0),
}
NEEDS_IRREGULAR = {"rolling 10min mean", "rolling 10min std", "ewm mean by time",
                   "interpolate 10min", "flat line by time", "rate of change"}


@st.composite
def chunking(draw):
    return {"time": draw(st.sampled_from([1, 2, 7, 29, 100, 360])),
            "device": draw(st.sampled_from([1, 2, 3]))}


@pytest.mark.parametrize("op", list(OPERATIONS))
@settings(max_examples=6, deadline=None)
@given(chunks=chunking())
def test_any_chunking_gives_the_one_chunk_result(op, chunks):
    ds = IRREGULAR if op in NEEDS_IRREGULAR else FLEET
    ds = ds[["temperature", "pressure"]]
    eager = OPERATIONS[op](ds.telemetry)
    with raise_if_dask_computes():
        lazy = OPERATIONS[op](ds.chunk(chunks).telemetry)
    assert lazy.temperature.chunks is not None
    computed = lazy.compute(scheduler="sync")
    xr.testing.assert_allclose(computed, eager.assign_attrs(history=computed.history),
                               rtol=1e-10, atol=1e-10)
    assert computed.temperature.dims == ("device", "time")
    assert computed.coords.equals(ds.coords)
    assert computed.attrs["history"].count("\n") == ds.attrs["history"].count("\n") + (
        1 if ds.attrs["history"] else 0)


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
