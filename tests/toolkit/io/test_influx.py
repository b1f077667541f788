"""InfluxDB 1.x, the real server (Debian's influxd) on 127.0.0.1: history in, results out."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import toolkit
from toolkit.errors import LoadError
from toolkit.io.influx import read_influx, write_influx
from toolkit.localservers import InfluxDBProcess, installed

PASSWORD = "s3cret-for-tests"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(installed("influxd") is None,
                                 reason="influxd is not installed (Debian package "
                                 "influxdb; .ci/run installs it)")]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real influxd with authentication, on free ports, in a temporary folder."""
    with InfluxDBProcess(tmp_path_factory.mktemp("influxd"), password=PASSWORD) as s:
        yield s


@pytest.fixture(scope="module")
def influx(server):
    return server.url


@pytest.fixture
def login(monkeypatch):
    monkeypatch.setenv("TEST_INFLUX_PASSWORD", PASSWORD)
    return {"username": "admin", "password_env": "TEST_INFLUX_PASSWORD"}


@pytest.fixture(scope="module")
def fleet():
    return toolkit.make_fleet(n_devices=6, days=1, seed=8).dataset.load()


def test_a_fleet_reads_back_exactly(server, influx, login, fleet, client):
    ds = fleet
    times = pd.DatetimeIndex(ds.time.values).asi8
    metrics = list(ds.data_vars)
    wide, long = [], []
    for d, dev in enumerate(ds.device.values):
        for i, t in enumerate(times):
            fields = [f"{m}={float(ds[m].values[d, i])!r}" for m in metrics
                      if not np.isnan(ds[m].values[d, i])]
            if fields:
                wide.append(f"tele,device={dev},site=s{d % 2} {','.join(fields)} {t}")
            long += [f"tele_long,device={dev},metric={m} value={float(ds[m].values[d, i])!r} "
                     f"{t}" for m in metrics if not np.isnan(ds[m].values[d, i])]
    server.write("fleet", wide + long)  # the test's own lines, not write_influx

    got = read_influx(influx, "fleet", "tele", freq="1min", units={"temperature": "degC"},
                      **login).load()
    assert list(got.device.values) == list(ds.device.values)
    for m in metrics:
        np.testing.assert_array_equal(got[m].values, ds[m].values)
    assert got.temperature.attrs["units"] == "degC"
    report = toolkit.LoadReport.of(got)
    assert report.rows_read == len(wide) and report.requests >= 1
    assert report.samples_valid == sum(int(ds[m].notnull().sum()) for m in metrics)

    long_form = read_influx(influx, "fleet", "tele_long", metric="metric", value="value",
                            freq="1min", **login).load()
    for m in metrics:
        np.testing.assert_array_equal(long_form[m].values, ds[m].values)

    some = read_influx(influx, "fleet", "tele", fields=["humidity"], freq="1min",
                       devices=["dev-0001", "dev-0004"], start=ds.time.values[100],
                       end=ds.time.values[199], **login).load()
    assert list(some.data_vars) == ["humidity", "humidity_count"]
    np.testing.assert_array_equal(some.humidity.values,
                                  ds.humidity.isel(device=[1, 4], time=slice(100, 200)).values)


def test_errors_name_the_query_and_never_the_password(server, influx, login, fleet,
                                                      monkeypatch):
    server.write("errors", ["tele,device=a temperature=1.0 0"])
    with pytest.raises(LoadError, match=r"database not found.*|no measurement") as err:
        read_influx(influx, "missing_db", "tele", freq="1min", **login)
    assert "SHOW FIELD KEYS" in str(err.value) or "missing_db" in str(err.value)
    with pytest.raises(LoadError, match="no measurement 'nope'"):
        read_influx(influx, "errors", "nope", freq="1min", **login)
    with pytest.raises(LoadError, match=r"no numeric fields \['pressure'\]"):
        read_influx(influx, "errors", "tele", fields=["pressure"], freq="1min", **login)
    monkeypatch.setenv("TEST_INFLUX_WRONG", "not-" + PASSWORD)
    with pytest.raises(LoadError, match=r"HTTP 401") as err:
        read_influx(influx, "errors", "tele", freq="1min", username="admin",
                    password_env="TEST_INFLUX_WRONG")
    assert "SHOW FIELD KEYS" in str(err.value) and PASSWORD not in str(err.value)
    with pytest.raises(LoadError, match="TEST_INFLUX_UNSET"):
        read_influx(influx, "errors", "tele", freq="1min", username="admin",
                    password_env="TEST_INFLUX_UNSET")


def test_results_go_back_and_a_second_write_changes_nothing(server, influx, login, fleet):
    ds = fleet
    # this fleet has no injected anomaly, and the default threshold raises no alarm on it:
    # a low threshold gives events to write back
    scores, flags = ds[["temperature", "humidity"]].telemetry.detect.anomaly(threshold=0.99)
    results = scores.rename({m: f"{m}_score" for m in scores.data_vars}).merge(
        flags.rename({m: f"{m}_flag" for m in flags.data_vars}), compat="override").compute()
    events = toolkit.flags_to_events(flags, scores, kind="anomaly", min_flag=4)
    events["severity"] = "fail"
    assert len(events)
    for _ in range(2):
        write_influx(influx, "results", results, measurement="detections", **login)
        report = write_influx(influx, "results", events, measurement="events", **login)
        assert report.points == len(events)
        counts = json.loads(server.request("/query", {
            "db": "results", "q": 'SELECT COUNT("temperature_flag") FROM "detections"; '
                                  'SELECT COUNT("end") FROM "events"'}))
        n_points = counts["results"][0]["series"][0]["values"][0][1]
        n_events = counts["results"][1]["series"][0]["values"][0][1]
        assert n_points == int(results.temperature_flag.notnull().sum())
        assert n_events == len(events)
    back = read_influx(influx, "results", "detections", freq="1min", **login).load()
    for name in results.data_vars:
        np.testing.assert_array_equal(back[name].values, results[name].values.astype(float))
    rows = json.loads(server.request("/query", {
        "db": "results", "epoch": "ns",
        "q": 'SELECT "end", "score", "severity" FROM "events" GROUP BY "device", "metric"'}))
    got = sorted((s["tags"]["device"], s["tags"]["metric"], v[0], v[1], v[2])
                 for s in rows["results"][0]["series"] for v in s["values"])
    want = sorted((e.device, e.metric, pd.Timestamp(e.start).value, pd.Timestamp(e.end).value,
                   e.score) for e in events.itertuples())
    assert got == want
