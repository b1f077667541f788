"""HTTP feeds against ``iot-toolkit serve-feed`` running as a real process.

Every load is compared with the fleet the server's generator produced
(values, times, units), sample for sample.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import threading
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest

from toolkit.errors import ArgumentError, LoadError, ToolkitError
from toolkit.feedserver import FeedServerProcess, FleetData
from toolkit.io import LoadReport, feed, read_http, read_http_samples
from toolkit.io.fetch import Fetcher, HttpOptions, Secret, redact

pytestmark = pytest.mark.slow

SMALL = dict(devices=5, days=0.1, page_size=25, thingspeak_max=40)


@functools.cache
def served(devices, days, page_size, thingspeak_max=8000, seed=0):
    return FleetData(n_devices=devices, days=days, page_size=page_size, seed=seed,
                     thingspeak_max=thingspeak_max)


@pytest.fixture(scope="module")
def server():
    with FeedServerProcess(**SMALL) as s:
        yield s


def assert_same_fleet(ds, data: FleetData, devices=None):
    fleet = data.dataset
    assert ds.sizes["device"] == fleet.sizes["device"]
    if devices is not None:
        assert list(ds.device.values) == devices
    for m in fleet.data_vars:
        got = ds[m].values
        want = fleet[m].sel(time=ds.time).values
        np.testing.assert_array_equal(got, want)
        # nothing of the fleet lies outside the loaded grid
        outside = fleet[m].where(~fleet.time.isin(ds.time.values))
        assert int(outside.notnull().sum()) == 0


def device_ids(data):
    return list(data.devices)


FORMATS = {
    "sensorthings": lambda url, d: (url + "/sta/v1.1", dict(format="sensorthings")),
    "json-link": lambda url, d: (url + "/api/{device}/samples.json",
                                 dict(devices=device_ids(d))),
    "json-next": lambda url, d: (url + "/api/{device}/samples.json?paging=next",
                                 dict(devices=device_ids(d), paging="next")),
    "json-offset": lambda url, d: (url + "/api/{device}/samples.json?paging=offset",
                                   dict(devices=device_ids(d), paging="offset", page_size=25)),
    "json-long-offset": lambda url, d: (url + "/api/all/samples.json?paging=offset",
                                        dict(paging="offset", page_size=25)),
    "json-device-list-url": lambda url, d: (url + "/api/{device}/samples.json",
                                            dict(devices=url + "/api/devices")),
    "ndjson": lambda url, d: (url + "/api/{device}/samples.ndjson",
                              dict(format="ndjson", devices=device_ids(d))),
    "csv": lambda url, d: (url + "/api/{device}/samples.csv",
                           dict(format="csv", devices=device_ids(d))),
    "thingspeak": lambda url, d: (url, dict(format="thingspeak", devices=[1, 2, 3, 4, 5],
                                            page_size=40)),
}


@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_each_format_and_paging_loads_exactly_the_served_fleet(server, client, kind):
    data = served(**SMALL)
    url, kwargs = FORMATS[kind](server.url, data)
    ds = read_http(url, freq="1min", **kwargs)
    if kind == "thingspeak":  # a device is a channel, named by its id
        assert list(ds.device.values) == ["1", "2", "3", "4", "5"]
        ds = ds.assign_coords(device=data.devices)
    assert_same_fleet(ds, data)
    report = LoadReport.of(ds)
    assert not report.problems() and report.rows_rejected == 0
    assert report.pages > report.files  # really paged
    assert report.samples_valid == sum(int(data.dataset[m].notnull().sum())
                                       for m in data.dataset.data_vars)
    if kind == "sensorthings":  # units from each Datastream's unitOfMeasurement
        for m in data.metrics:
            assert ds[m].attrs["units"] == data.units[m]


def test_samples_in_long_form(server, client):
    data = served(**SMALL)
    frame, report = read_http_samples(server.url + "/sta/v1.1", format="sensorthings")
    got = frame.compute()
    want = data.served_samples()
    assert len(got) == len(want) == report.rows_loaded
    key = ["device", "metric", "time"]
    got = got.assign(time=got.time.astype("int64"), device=got.device.astype(object),
                     metric=got.metric.astype(object))
    pd.testing.assert_frame_equal(got.sort_values(key).reset_index(drop=True)[key + ["value"]],
                                  want.sort_values(key).reset_index(drop=True)[key + ["value"]],
                                  check_dtype=False)


def test_sensorthings_time_range_is_asked_of_the_server(server, client):
    data = served(**SMALL)
    start, end = data.dataset.time.values[30], data.dataset.time.values[59]
    ds = read_http(server.url + "/sta/v1.1", format="sensorthings", freq="1min",
                   start=start, end=end)
    report = LoadReport.of(ds)
    assert report.samples_outside == 0  # the server filtered, nothing came to be dropped
    assert ds.sizes["time"] == 30
    np.testing.assert_array_equal(ds.temperature.values,
                                  data.dataset.temperature.sel(time=ds.time).values)


@pytest.mark.parametrize("kind", ["sensorthings", "json-link", "json-offset", "thingspeak"])
def test_every_sample_arrives_through_injected_faults(client, kind):
    params = dict(devices=4, days=0.05, page_size=20, thingspeak_max=40)
    faults = dict(fail_rate=0.2, drop_rate=0.05, truncate_rate=0.05, latency=0.005,
                  retry_after=0, fault_seed=11)
    data = served(**params)
    with FeedServerProcess(**params, **faults) as s:
        url, kwargs = FORMATS[kind](s.url, data)
        if kind == "thingspeak":
            kwargs["devices"] = [1, 2, 3, 4]
        ds = read_http(url, freq="1min", retries=12, **kwargs)
    if kind == "thingspeak":
        ds = ds.assign_coords(device=data.devices)
    assert_same_fleet(ds, data)
    assert LoadReport.of(ds).retries > 0  # the faults happened, and were survived


def test_a_malformed_page_names_url_page_status_and_first_bytes(client):
    with FeedServerProcess(devices=2, days=0.02, malformed_rate=1.0, fault_seed=1) as s:
        with pytest.raises(LoadError) as err:
            read_http(s.url + "/api/{device}/samples.json", devices=["dev-0000", "dev-0001"],
                      freq="1min")
    text = str(err.value)
    assert "/api/dev-000" in text and "page 0" in text and "HTTP 200" in text
    assert "the answer begins b'" in text


def test_an_unreachable_server_is_a_load_error_after_bounded_retries():
    with pytest.raises(LoadError, match=r"connection failed.*after 2 retries"):
        read_http("http://127.0.0.1:9/api/{device}/x.json", devices=["a"], retries=2,
                  freq="1min")


def test_retry_after_is_honoured(tmp_path):
    with FeedServerProcess(devices=1, days=0.02, page_size=5, fail_rate=0.5,
                           retry_after=0.2, fault_seed=5) as s:
        async def fetch_all():
            async with Fetcher(HttpOptions(retries=20, backoff=0.01)) as f:
                for page in range(10):
                    resp = await f.get(f"{s.url}/api/dev-0000/samples.json?page={page}")
                    assert resp.status == 200
                return f.tally
        tally = asyncio.run(fetch_all())
    refused = [w for w in tally.waits if w[1] in (429, 503)]
    assert refused, "the server refused nothing: the test did not test"
    assert all(ra == 0.2 and wait >= 0.2 for _, _, ra, wait in refused)


def test_answers_over_max_bytes_are_refused(server):
    with pytest.raises(LoadError, match="max_bytes"):
        read_http(server.url + "/api/{device}/samples.json", devices=["dev-0000"],
                  max_bytes=1000, freq="1min")


def test_arguments_are_checked_before_any_request():
    with pytest.raises(ArgumentError, match="format"):
        feed("http://x/y", format="xml")
    with pytest.raises(ArgumentError, match="devices"):
        feed("http://x/{device}")
    with pytest.raises(ArgumentError, match="url"):
        feed("ftp://x/y")
    with pytest.raises(ArgumentError, match="token_env"):
        feed("http://x/y", token_env="TOOLKIT_SURELY_UNSET_VARIABLE")


# --------------------------------------------------------------------------------------
# pages served as static files: bad records, the quarantine, fuzzing


class StaticServer:
    """``http.server`` over a folder on 127.0.0.1 (pages written by the test)."""

    def __init__(self, folder: Path):
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def static(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pages")
    with StaticServer(folder) as s:
        s.folder = folder
        yield s


def test_bad_records_are_quarantined_with_url_and_position(static, tmp_path):
    (static.folder / "p0.json").write_text(
        '{"data": [{"device": "a", "time": "2026-01-05T00:00:00Z", "t": 1.5},'
        ' {"device": "a", "time": "not a time", "t": 2.5},'
        ' {"device": "a", "time": "2026-01-05T00:02:00Z", "t": "warm"},'
        ' 17],'
        ' "next": "p1.json"}')
    (static.folder / "p1.json").write_text(
        '{"data": [{"device": "b", "time": "2026-01-05T00:00:00Z", "t": 3.5},'
        ' {"time": "2026-01-05T00:01:00Z", "t": 4.5}], "next": null}')
    url = static.url + "/p0.json"
    with pytest.raises(LoadError, match=r"p0.json, record 1, field 'time'.*4 bad record"):
        read_http(url, freq="1min")
    quarantine = tmp_path / "bad.csv"
    ds = read_http(url, freq="1min", on_bad_rows="quarantine", quarantine=quarantine)
    report = LoadReport.of(ds)
    assert (report.rows_read, report.rows_rejected, report.rows_loaded) == (6, 4, 2)
    assert ds.t.sel(device="a").values.tolist()[0] == 1.5
    assert ds.t.sel(device="b").values.tolist()[0] == 3.5
    bad = pd.read_csv(quarantine)
    assert bad[["position", "field"]].fillna("").values.tolist() == [
        [1, "time"], [2, "t"], [3, ""], [1, "device"]]
    assert bad.url.str.endswith(("p0.json", "p1.json")).all()


def test_an_html_error_page_is_named(static):
    (static.folder / "proxy.json").write_text("<html><body>502 Bad Gateway</body></html>")
    with pytest.raises(LoadError, match=r"proxy.json \(page 0, HTTP 200\): an HTML page"):
        read_http(static.url + "/proxy.json", freq="1min")


def _json_values():
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | \
        st.floats(allow_nan=False) | st.text(max_size=30) | \
        st.sampled_from(["2026-01-05T00:00:00Z", "2026-01-05 00:01:00", "1767571200", "x"])
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
        st.sampled_from(["time", "device", "t", "value", "metric", "data", "next", "@x"]),
        inner, max_size=6), max_leaves=40)


@pytest.mark.timeout(300)
def test_fuzzed_pages_give_only_toolkit_errors(static):
    """Random and mutated JSON pages: a result or a toolkit error, never a crash or a hang."""
    import msgspec
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    good = msgspec.json.encode({"data": [
        {"device": f"d{k % 3}", "time": f"2026-01-05T00:{k:02d}:00Z", "t": k * 0.5}
        for k in range(20)]})

    @st.composite
    def pages(draw):
        if draw(st.booleans()):
            return msgspec.json.encode(draw(_json_values()))
        body = bytearray(good)
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(body) - 1))
            action = draw(st.sampled_from(["cut", "flip", "insert"]))
            if action == "cut":
                del body[at:]
                if not body:
                    body = bytearray(b"{")
            elif action == "flip":
                body[at] = draw(st.integers(0, 255))
            else:
                body[at:at] = draw(st.binary(min_size=1, max_size=4))
        return bytes(body)

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(page=pages(), quarantine=st.booleans())
    def check(page, quarantine):
        (static.folder / "fuzz.json").write_bytes(page)
        try:
            with dask.config.set(scheduler="sync"):
                ds = read_http(static.url + "/fuzz.json", freq="1min", retries=0,
                               read_timeout=5, on_bad_rows="quarantine" if quarantine
                               else "raise", quarantine=static.folder / "q.csv")
            assert not LoadReport.of(ds).problems()
        except ToolkitError:
            pass

    check()


# --------------------------------------------------------------------------------------
# secrets


def test_a_secret_token_never_appears_anywhere(tmp_path, client, caplog, capfd, monkeypatch):
    import logging

    token = "tok-3c9f1e7a-SECRET-d41d8cd9"
    monkeypatch.setenv("FEED_TOKEN", token)
    caplog.set_level(logging.DEBUG)
    with FeedServerProcess(devices=2, days=0.02, page_size=10, token=token, fail_rate=0.2,
                           retry_after=0, fault_seed=2) as s:
        url = s.url + "/sta/v1.1"
        f = feed(url, format="sensorthings", token_env="FEED_TOKEN", retries=12)
        texts = [repr(f), str(f), repr(f.credentials), repr(Secret(token))]
        ds = read_http(f, freq="1min")
        texts += [ds.attrs["load_report"], ds.attrs["load_report_json"], str(ds.attrs),
                  repr(ds)]
        # a token in a query parameter (ThingSpeak's api_key) is redacted too
        ts = read_http(s.url, format="thingspeak", devices=[1, 2], token=token,
                       token_param="api_key", freq="1min", retries=12)
        texts.append(str(ts.attrs))
        for wrong in ({}, {"token": "not-the-token"}):
            with pytest.raises(LoadError) as err:
                read_http(url, format="sensorthings", freq="1min", **wrong)
            texts.append(str(err.value))
            assert "HTTP 401" in str(err.value)
        with pytest.raises(LoadError) as err:  # the token in the URL's query, redacted
            read_http(s.url + f"/nowhere?api_key={token}", token=token, freq="1min")
        texts.append(str(err.value))
        from toolkit.io.sync import sync

        report = sync(f, tmp_path / "store")
        texts.append(str(report))
        from toolkit import alerts

        events = pd.DataFrame({"device": ["dev-0000"], "metric": ["temperature"],
                               "kind": ["spike"], "start": [pd.Timestamp("2026-01-05")]})
        texts.append(str(alerts.post(events, s.url + "/devices/alerts", token=token)))
        with pytest.raises(alerts.AlertError) as err:
            alerts.post(events, s.url + "/devices/alerts", token="wrong", retries=0,
                        failed_path=tmp_path / "failed.csv")
        texts.append(str(err.value))
    texts += [r.getMessage() for r in caplog.records]
    out = capfd.readouterr()
    texts += [out.out, out.err]
    texts += [p.read_text(errors="replace") for p in tmp_path.rglob("*")
              if p.is_file() and p.suffix in ("", ".json", ".csv", ".txt")]
    texts += [p.read_bytes().decode("latin-1") for p in tmp_path.rglob("*") if p.is_file()]
    server_out = s.process.stdout.read() + s.process.stderr.read()
    texts.append(server_out)
    leaks = [t[:200] for t in texts if token in t]
    assert not leaks
    assert "HTTP 401" in " ".join(texts)  # the failures were looked at


def test_redact_masks_user_info_credential_parameters_and_the_secret():
    from toolkit.io.fetch import credentials

    c = credentials("https://h.example/x", token="abc123")
    assert redact("https://u:p@h.example/x?token=abc123&page=2&key=k", c) == \
        "https://h.example/x?token=***&page=2&key=***"
    assert redact("the answer was abc123", c) == "the answer was ***"
    assert c.headers_for("https://h.example/x?page=3") == {"Authorization": "Bearer abc123"}
    assert c.headers_for("https://other.example/x") == {}  # a next link elsewhere: nothing
