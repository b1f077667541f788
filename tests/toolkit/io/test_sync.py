"""Incremental sync and alerts against ``iot-toolkit serve-feed`` as a real process."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from toolkit import alerts
from toolkit.errors import LoadError
from toolkit.feedserver import FeedServerProcess, FleetData
from toolkit.io import read_store, read_store_samples, sync
from toolkit.io.grid import Samples
from toolkit.io.store import BATCHES, CHECKPOINT, SampleStore

pytestmark = pytest.mark.slow

KEY = ["device", "metric", "time"]


def served_frame(**params) -> pd.DataFrame:
    data = FleetData(n_devices=params["devices"], days=params["days"],
                     page_size=params.get("page_size", 1000), seed=params.get("seed", 0))
    return _sorted(data.served_samples())


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.assign(time=pd.to_datetime(frame.time).astype("int64"),
                         device=frame.device.astype(str), metric=frame.metric.astype(str))
    return frame.sort_values(KEY).reset_index(drop=True)[KEY + ["value"]]


def stored(path) -> pd.DataFrame:
    return _sorted(read_store_samples(path))


PARAMS = dict(devices=4, days=0.05, page_size=10)


@pytest.fixture(scope="module")
def server():
    with FeedServerProcess(**PARAMS) as s:
        yield s


@pytest.mark.parametrize("kind", ["sensorthings", "json", "thingspeak"])
def test_sync_twice_stores_exactly_the_feed_and_the_second_run_changes_nothing(
        server, tmp_path, kind):
    devices = [f"dev-{i:04d}" for i in range(4)]
    source, kwargs = {
        "sensorthings": (server.url + "/sta/v1.1", dict(format="sensorthings")),
        "json": (server.url + "/api/{device}/samples.json",
                 dict(devices=devices, since_param="since")),
        "thingspeak": (server.url, dict(format="thingspeak", devices=[1, 2, 3, 4],
                                        page_size=10)),
    }[kind]
    path = tmp_path / "store"
    first = sync(source, path, batch_streams=3, **kwargs)
    before = {p: p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()}
    again = sync(source, path, batch_streams=3, **kwargs)
    after = {p: p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()}
    want = served_frame(**PARAMS)
    got = stored(path)
    if kind == "thingspeak":
        got["device"] = got.device.map({str(i + 1): d for i, d in enumerate(devices)})
        got = got.sort_values(KEY).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert first.samples_new == len(want) and first.batches >= 2
    assert again.samples_new == 0 and again.batches == 0
    assert before == after  # not a byte touched


def test_sync_resumes_from_the_checkpoint_and_asks_only_for_newer(server, tmp_path):
    path = tmp_path / "store"
    cut = pd.Timestamp("2026-01-05 00:30")
    first = sync(server.url + "/sta/v1.1", path, format="sensorthings", end=cut)
    second = sync(server.url + "/sta/v1.1", path, format="sensorthings")
    pd.testing.assert_frame_equal(stored(path), served_frame(**PARAMS), check_dtype=False)
    assert first.samples_new + second.samples_new == len(served_frame(**PARAMS))
    assert second.samples_known == 0  # $filter=phenomenonTime gt <last>: nothing re-sent


def test_an_uncommitted_batch_is_never_read_and_is_removed(tmp_path):
    def block(times, values):
        n = len(times)
        return Samples(np.array(["a"], object), np.zeros(n, np.int32),
                       np.array(times, np.int64), ["t"], np.zeros(n, np.int32),
                       np.array(values, float))

    path = tmp_path / "store"
    with SampleStore(path, writer=True, create=True) as st:
        assert st.append(block([1, 2], [1.0, 2.0])) == 2
        assert st.append(block([2, 3], [9.0, 3.0])) == 1  # time 2 is stored already
    # a writer killed after writing its batch, before the checkpoint: a stray batch
    stray = path / BATCHES / "b000099-killed"
    stray.mkdir()
    (stray / "zarr.json").write_text("{not even json")
    (path / (CHECKPOINT + ".tmp")).write_text('{"half": ')
    assert stored(path).value.tolist() == [1.0, 2.0, 3.0]
    with SampleStore(path, writer=True):
        pass
    assert not stray.exists() and not (path / (CHECKPOINT + ".tmp")).exists()
    with SampleStore(path, writer=True), pytest.raises(LoadError, match="another sync"):
        SampleStore(path, writer=True)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_sync_killed_at_random_moments_and_rerun_holds_exactly_the_served_data(
        tmp_path, seed):
    params = dict(devices=6, days=0.1, page_size=8)
    rng = random.Random(seed)
    path = tmp_path / "store"
    with FeedServerProcess(**params, latency=0.01, fail_rate=0.1, retry_after=0,
                           fault_seed=seed) as s:
        command = [sys.executable, "-m", "toolkit.cli", "sync", s.url + "/sta/v1.1",
                   str(path), "--format", "sensorthings", "--batch-streams", "2"]
        kills = 0
        for _ in range(3):  # interrupted runs, each killed with SIGKILL at a random moment
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(1.5, 4.0))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                kills += 1
            proc.wait()
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    assert kills >= 1, "no run was interrupted: the test did not test"
    pd.testing.assert_frame_equal(stored(path), served_frame(**params), check_dtype=False)
    ds = read_store(path, freq="1min")
    assert int(ds.temperature.count()) == int(
        FleetData(n_devices=6, days=0.1).dataset.temperature.count())


def test_sync_command_reports_and_exit_codes(server, tmp_path):
    run = [sys.executable, "-m", "toolkit.cli", "sync"]
    ok = subprocess.run(run + [server.url + "/sta/v1.1", str(tmp_path / "s"), "--format",
                               "sensorthings"], capture_output=True, text=True)
    assert ok.returncode == 0 and "new samples" in ok.stdout
    bad = subprocess.run(run + [server.url, str(tmp_path / "t"), "--format", "thingspeak"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "channel" in bad.stderr
    down = subprocess.run(run + ["http://127.0.0.1:9/sta", str(tmp_path / "u"), "--format",
                                 "sensorthings", "--retries", "0"],
                          capture_output=True, text=True)
    assert down.returncode == 1 and "connection failed" in down.stderr


# --------------------------------------------------------------------------------------
# alerts


def _events(n: int) -> pd.DataFrame:
    start = pd.Timestamp("2026-01-05")
    return pd.DataFrame({
        "device": [f"dev-{k % 7:04d}" for k in range(n)],
        "metric": ["temperature", "humidity"] * (n // 2) + ["pressure"] * (n % 2),
        "kind": "spike", "start": [start + pd.Timedelta(minutes=k) for k in range(n)],
        "end": [start + pd.Timedelta(minutes=k + 2) for k in range(n)],
        "score": np.linspace(4, 9, n)})


def _received(url: str) -> dict:
    import requests

    return requests.get(url + "/devices/alerts", timeout=30).json()


def test_alerts_arrive_exactly_once_under_faults():
    events = _events(250)
    with FeedServerProcess(devices=1, days=0.01, fail_rate=0.2, drop_rate=0.2,
                           latency=0.005, retry_after=0, fault_seed=7) as s:
        report = alerts.post(events, s.url + "/devices/alerts", batch_size=20, retries=15)
        got = _received(s.url)
        again = alerts.post(events, s.url + "/devices/alerts", batch_size=50, retries=15)
        got_again = _received(s.url)
    keys = [a["idempotency_key"] for a in got["alerts"]]
    assert len(keys) == len(set(keys)) == len(events)
    assert sorted(keys) == sorted(a["idempotency_key"] for a in alerts.alerts_of(events))
    assert got["items"] > len(events)  # some batches arrived twice: dropped answers
    assert report.retried > 0 and report.delivered == len(events)
    assert report.failed.empty and not report.failed_batches
    assert again.created == 0 and again.duplicates == len(events)
    assert len(got_again["alerts"]) == len(events)
    first = got["alerts"][0]
    assert {"device", "metric", "kind", "start", "end", "score"} <= set(first)


def test_a_failed_batch_is_never_dropped_silently(tmp_path):
    events = _events(30)
    with FeedServerProcess(devices=1, days=0.01, token="right") as s:
        with pytest.raises(alerts.AlertError, match="30 of 30 alert") as err:
            alerts.post(events, s.url + "/devices/alerts", token="wrong", batch_size=10,
                        failed_path=tmp_path / "failed.csv")
        report = err.value.report
        assert len(report.failed) == 30 and len(report.failed_batches) == 3
        assert len(pd.read_csv(tmp_path / "failed.csv")) == 30
        kept = alerts.post(events, s.url + "/devices/alerts", token="wrong",
                           raise_on_failure=False)
        assert len(kept.failed) == 30
        sent = alerts.post(pd.read_csv(tmp_path / "failed.csv", parse_dates=["start", "end"]),
                           s.url + "/devices/alerts", token="right")
        assert sent.created == 30


def test_the_demo_over_http_finds_what_it_finds_locally_and_alerts_once(client, tmp_path):
    from toolkit.demo import run_demo

    lines: list = []
    over_http = run_demo(devices=4, days=1, seed=1, out=tmp_path / "http", client=client,
                         http=True, echo=lines.append)
    local = run_demo(devices=4, days=1, seed=1, out=tmp_path / "local", client=client,
                     echo=lines.append)
    text = "\n".join(lines)
    assert "(OGC SensorThings)" in text and "0 failed" in text
    assert f"{len(over_http.events)} created" in text
    pd.testing.assert_frame_equal(over_http.summary, local.summary)


def test_sync_every_repeats_and_later_runs_find_nothing_new(server, tmp_path):
    from toolkit.io.sync import sync_every

    lines: list = []
    sync_every(server.url + "/sta/v1.1", tmp_path / "s", 0.1, runs=3, log=lines.append,
               format="sensorthings")
    assert len(lines) == 3
    assert "0 new samples" not in lines[0]
    assert all(" 0 new samples" in line for line in lines[1:])
    bad = subprocess.run([sys.executable, "-m", "toolkit.cli", "sync", server.url,
                          str(tmp_path / "t"), "--every", "soon"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "--every" in bad.stderr
