"""InfluxDB 1.x, the real server (Debian's influxd) on 127.0.0.1: history in, results out."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pandas as pd
import pytest

import toolkit
from toolkit.errors import LoadError
from toolkit.io.influx import read_influx, write_influx

INFLUXD = shutil.which("influxd")
PASSWORD = "s3cret-for-tests"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(INFLUXD is None, reason="influxd is not installed (Debian "
                                 "package influxdb; .ci/run installs it)")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(url, path, params, body=None, auth=True):
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(
            f"admin:{PASSWORD}".encode()).decode()
    req = urllib.request.Request(f"{url}{path}?{urllib.parse.urlencode(params)}", data=body,
                                 headers=headers, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read()


@pytest.fixture(scope="module")
def influx(tmp_path_factory):
    """A real influxd with authentication, on free ports, in a temporary folder."""
    root = tmp_path_factory.mktemp("influxd")
    port = _free_port()
    (root / "influxdb.conf").write_text(f"""
reporting-disabled = true
bind-address = "127.0.0.1:{_free_port()}"
[meta]
  dir = "{root}/meta"
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
[http]
  bind-address = "127.0.0.1:{port}"
  auth-enabled = true
  log-enabled = false
""")
    proc = subprocess.Popen([INFLUXD, "-config", str(root / "influxdb.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            _call(url, "/ping", {}, auth=False)
            break
        except (urllib.error.URLError, OSError):
            assert time.monotonic() < deadline, "influxd did not start"
            time.sleep(0.2)
    # the first user, created while there is none, is the admin
    _call(url, "/query", {"q": f"CREATE USER admin WITH PASSWORD '{PASSWORD}' WITH ALL "
                               "PRIVILEGES"}, body=b"", auth=False)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def login(monkeypatch):
    monkeypatch.setenv("TEST_INFLUX_PASSWORD", PASSWORD)
    return {"username": "admin", "password_env": "TEST_INFLUX_PASSWORD"}


def _write_plain(url, db, lines):
    """The test's own line-protocol writer (not the toolkit's)."""
    _call(url, "/query", {"q": f'CREATE DATABASE "{db}"'}, body=b"")
    for k in range(0, len(lines), 5000):
        _call(url, "/write", {"db": db, "precision": "ns"},
              body="\n".join(lines[k:k + 5000]).encode())


@pytest.fixture(scope="module")
def fleet():
    return toolkit.make_fleet(n_devices=6, days=1, seed=8).dataset.load()


def test_a_fleet_reads_back_exactly(influx, login, fleet, client):
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
    _write_plain(influx, "fleet", wide + long)

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


def test_errors_name_the_query_and_never_the_password(influx, login, fleet, monkeypatch):
    _write_plain(influx, "errors", ["tele,device=a temperature=1.0 0"])
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


def test_results_go_back_and_a_second_write_changes_nothing(influx, login, fleet):
    ds = fleet
    scores, flags = ds[["temperature", "humidity"]].telemetry.detect.anomaly()
    results = scores.rename({m: f"{m}_score" for m in scores.data_vars}).merge(
        flags.rename({m: f"{m}_flag" for m in flags.data_vars}), compat="override").compute()
    events = toolkit.flags_to_events(flags, scores, kind="anomaly", min_flag=4)
    events["severity"] = "fail"
    assert len(events)
    for _ in range(2):
        write_influx(influx, "results", results, measurement="detections", **login)
        report = write_influx(influx, "results", events, measurement="events", **login)
        assert report.points == len(events)
        counts = json.loads(_call(influx, "/query", {
            "db": "results", "q": 'SELECT COUNT("temperature_flag") FROM "detections"; '
                                  'SELECT COUNT("end") FROM "events"'}))
        n_points = counts["results"][0]["series"][0]["values"][0][1]
        n_events = counts["results"][1]["series"][0]["values"][0][1]
        assert n_points == int(results.temperature_flag.notnull().sum())
        assert n_events == len(events)
    back = read_influx(influx, "results", "detections", freq="1min", **login).load()
    for name in results.data_vars:
        np.testing.assert_array_equal(back[name].values, results[name].values.astype(float))
    rows = json.loads(_call(influx, "/query", {
        "db": "results", "epoch": "ns",
        "q": 'SELECT "end", "score", "severity" FROM "events" GROUP BY "device", "metric"'}))
    got = sorted((s["tags"]["device"], s["tags"]["metric"], v[0], v[1], v[2])
                 for s in rows["results"][0]["series"] for v in s["values"])
    want = sorted((e.device, e.metric, pd.Timestamp(e.start).value, pd.Timestamp(e.end).value,
                   e.score) for e in events.itertuples())
    assert got == want
