"""The synthetic fleet: data model, determinism, and truthful ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from toolkit.synthetic import ANOMALY_KINDS, METRICS, make_fleet, to_samples, write_csv


@pytest.fixture(scope="module")
def pair():
    kwargs = {"n_devices": 12, "days": 6, "seed": 11, "anomaly_rate": 3.0}
    return make_fleet(**kwargs), make_fleet(**kwargs | {"anomaly_rate": 0.0})


def test_data_model():
    ds = make_fleet(n_devices=3, days=0.5, freq="30s", dtype="float32").dataset
    assert ds.temperature.dims == ("device", "time")
    assert ds.sizes == {"device": 3, "time": 1440}
    assert ds.time.dtype == np.dtype("datetime64[ns]")
    assert list(ds.device.values) == ["dev-0000", "dev-0001", "dev-0002"]
    assert set(ds.coords) >= {"site", "x", "y"}
    assert "source" in ds.attrs and "history" in ds.attrs
    for name, spec in METRICS.items():
        assert ds[name].dtype == np.float32
        assert ds[name].attrs == {"units": spec.units, "long_name": spec.long_name}
    assert (np.diff(ds.time.values) == np.timedelta64(30, "s")).all()


def test_same_seed_same_fleet_and_chunking_does_not_matter(client):
    a = make_fleet(n_devices=7, days=2, seed=5)
    b = make_fleet(n_devices=7, days=2, seed=5, chunks=3)
    assert b.dataset.temperature.chunks == ((3, 3, 1), (2880,))
    xr.testing.assert_identical(a.dataset, b.dataset.compute())
    pd.testing.assert_frame_equal(a.events, b.events)
    c = make_fleet(n_devices=7, days=2, seed=6)
    assert not np.allclose(a.dataset.temperature, c.dataset.temperature)


def test_values_are_plausible(pair):
    ds = pair[1].dataset
    assert 5 < float(ds.temperature.min()) and float(ds.temperature.max()) < 40
    assert 100_000 < float(ds.pressure.min()) and float(ds.pressure.max()) < 103_000
    assert 0 < float(ds.humidity.min()) and float(ds.humidity.max()) < 100
    missing = float(ds.temperature.isnull().mean())
    assert 0.0003 < missing < 0.003  # dropout=0.001


def test_every_kind_is_injected(pair):
    events = pair[0].events
    assert set(events.kind) == set(ANOMALY_KINDS)
    assert (events.start <= events.end).all()
    assert (events.kind != "spike").sum() and (
        events.loc[events.kind == "spike", "start"]
        == events.loc[events.kind == "spike", "end"]).all()


def test_anomalies_are_where_the_ground_truth_says(pair):
    fleet, clean = pair
    diff = fleet.dataset - clean.dataset
    changed = np.zeros((len(METRICS),) + fleet.dataset.temperature.shape, dtype=bool)
    for ev in fleet.events.itertuples():
        m = list(METRICS).index(ev.metric)
        d = diff[ev.metric].sel(device=ev.device)
        x = fleet.dataset[ev.metric].sel(device=ev.device)
        span = slice(ev.start, ev.end)
        inside = d.sel(time=span).values
        a, b = ev.start_index, ev.end_index + 1
        assert x.time.values[a] == np.datetime64(ev.start)
        assert x.time.values[b - 1] == np.datetime64(ev.end)
        ok = ~np.isnan(inside)
        if ev.kind == "gap":
            assert np.isnan(x.sel(time=span)).all()
        elif ev.kind in ("spike", "level_shift"):
            np.testing.assert_allclose(inside[ok], ev.magnitude)
        elif ev.kind == "drift":
            ramp = np.linspace(0, ev.magnitude, b - a)
            np.testing.assert_allclose(inside[ok], ramp[ok], atol=1e-9)
        elif ev.kind == "stuck":
            vals = x.sel(time=span).values
            assert (vals[~np.isnan(vals)] == ev.magnitude).all()
            before = clean.dataset[ev.metric].sel(device=ev.device).values[a - 1]
            assert np.isnan(before) or before == ev.magnitude
        changed[m, int(ev.device[4:]), a:b] = True
    # and nowhere else: outside the events the fleet equals the clean fleet
    for m, name in enumerate(METRICS):
        outside = diff[name].values[~changed[m]]
        assert np.nanmax(np.abs(outside)) == 0.0


def test_long_csv_round_trip(tmp_path):
    fleet = make_fleet(n_devices=3, days=0.25, seed=2)
    path = write_csv(fleet.dataset, tmp_path / "fleet.csv.gz")
    back = pd.read_csv(path)
    assert list(back.columns) == ["device", "time", "metric", "value"]
    assert back.time.str.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$").all()
    back["time"] = pd.to_datetime(back.time).dt.tz_localize(None)
    wide = back.set_index(["metric", "device", "time"]).value
    for name in METRICS:
        expected = fleet.dataset[name].to_series().dropna()
        got = wide.loc[name].reindex(expected.index)
        np.testing.assert_array_equal(got.values, expected.values)
    assert len(back) == int(fleet.dataset.to_array().notnull().sum())


def test_jitter_moves_times_within_bounds():
    ds = make_fleet(n_devices=2, days=0.1, seed=3).dataset
    plain, jittered = to_samples(ds), to_samples(ds, jitter="2s", seed=1)
    key = ["device", "metric", "value"]
    merged = plain.merge(jittered, on=key, suffixes=("", "_j"))
    offset = (merged.time_j - merged.time).abs()
    assert len(merged) == len(plain)
    assert offset.max() <= pd.Timedelta("2s") and offset.max() > pd.Timedelta("1s")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"metrics": ["wind"]}, "unknown metrics"), ({"n_devices": 0}, "n_devices"),
     ({"dropout": 1.5}, "dropout"), ({"dtype": "int32"}, "dtype")],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_fleet(**kwargs)


def test_a_generation_task_carries_its_anomalies_compactly():
    """Every chunk's task carries the metric's generator (and its anomalies) to the
    worker: it must stay a few dozen bytes per anomaly. A DataFrame per device
    (as before) made each copy hundreds of KB and a worker's memory grow with
    every task it ran, until it paused at 1 GiB on a 1.2 GiB fleet."""
    import pickle

    from dask.base import collections_to_expr

    fleet = make_fleet(n_devices=400, days=7, chunks=10, seed=3, anomaly_rate=2.0)
    graph = dict(collections_to_expr([fleet.dataset.temperature.data]).__dask_graph__())
    payload = max(len(pickle.dumps(task)) for task in graph.values())
    n_events = int((fleet.events.metric == "temperature").sum())
    assert n_events > 300
    assert payload < 40 * n_events + 20_000, (payload, n_events)
