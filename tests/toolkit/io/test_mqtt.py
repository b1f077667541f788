"""MQTT with the real broker (Debian's mosquitto) on 127.0.0.1: collect, kill, restart."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import toolkit
from toolkit.io.mqtt import send_commands
from toolkit.io.store import read_store_samples
from toolkit.localservers import MosquittoProcess, installed

CLI = str(Path(sys.executable).with_name("iot-toolkit"))
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(installed("mosquitto") is None,
                                 reason="mosquitto is not installed (Debian package "
                                 "mosquitto; .ci/run installs it)")]
mqtt = pytest.importorskip("paho.mqtt.client")


@pytest.fixture
def broker(tmp_path):
    """A mosquitto on a free port with persistence in a temporary folder; restartable."""
    with MosquittoProcess(tmp_path / "broker") as b:
        yield b


def _publisher(port, client_id):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    c.max_inflight_messages_set(100)
    c.reconnect_delay_set(0.1, 1)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def _wait_until(ready, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _messages(seed):
    """A small fleet's samples as payloads of 1 to 8 samples per message."""
    ds = toolkit.make_fleet(n_devices=4, days=0.25, seed=seed, metrics=["temperature",
                                                                         "humidity"]).dataset
    rng = np.random.default_rng(seed)
    times = pd.DatetimeIndex(ds.time.values)
    out, expected = [], []
    for d, device in enumerate(ds.device.values):
        i = 0
        while i < len(times):
            k = int(rng.integers(1, 9))
            records = []
            for j in range(i, min(i + k, len(times))):
                rec = {"time": times[j].isoformat() + "Z" if rng.random() < 0.5
                       else int(times[j].value // 1_000_000)}
                for m in ("temperature", "humidity"):
                    v = float(ds[m].values[d, j])
                    if not np.isnan(v):
                        rec[m] = v
                        expected.append((str(device), m, times[j].value, v))
                records.append(rec)
            out.append((f"devices/{device}/telemetry", json.dumps(records)))
            i += k
    return out, expected


_STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_collector_outlives_its_test():
    """A collector still running when a test ends (it failed half way) is killed."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _collector(port, store, *extra, wait=False):
    proc = subprocess.Popen([CLI, "collect", f"127.0.0.1:{port}", str(store), "--client-id",
                             "test-collector", "--batch-seconds", "0.1",
                             "--quarantine", str(store.parent / "q.csv"), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    _STARTED.append(proc)
    if wait:  # until its session exists on the broker
        for line in proc.stdout:
            if "subscribed to" in line:
                break
    return proc


@pytest.mark.parametrize("seed", [1, 2])
def test_kills_and_a_broker_restart_lose_nothing_and_store_nothing_twice(tmp_path, broker,
                                                                         seed):
    store = tmp_path / "store"
    messages, expected = _messages(seed)
    rng = random.Random(seed)
    proc = _collector(broker.port, store, wait=True)  # the session exists from now on
    pub = _publisher(broker.port, f"pub-{seed}")
    kills = sorted(rng.sample(range(len(messages)), 3))
    restart_at = len(messages) // 2
    for n, (topic, payload) in enumerate(messages):
        if n in kills:  # the collector dies mid-stream, then comes back
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            proc = _collector(broker.port, store, wait=rng.random() < 0.7)
        if n % 40 == 0:
            time.sleep(rng.uniform(0.0, 0.15))  # the collector commits batches meanwhile
        if n == restart_at:  # every published message so far is accepted; restart
            broker.stop()
            # paho refuses a publish while it reconnects (the message would be
            # queued, but its info says "not connected"): let it see the broker
            # go, then wait for its session to come back
            _wait_until(lambda: not pub.is_connected(), "the publisher did not see the broker go")
            broker.start()
            _wait_until(pub.is_connected, "the publisher did not reconnect")
        info = pub.publish(topic, payload, qos=1)
        info.wait_for_publish(30)
        assert info.is_published()
    pub.loop_stop()
    pub.disconnect()
    time.sleep(rng.uniform(0.0, 0.5))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    final = _collector(broker.port, store, "--idle-stop", "3")
    _, stderr = final.communicate(timeout=120)
    assert final.returncode == 0, stderr
    got = read_store_samples(store)
    assert not got.duplicated(["device", "metric", "time"]).any()
    stored = sorted(zip(got.device, got.metric, got.time.astype("int64"), got.value,
                        strict=True))
    assert stored == sorted(expected)


def test_bad_payloads_are_quarantined_and_counted(tmp_path, broker):
    store = tmp_path / "store"
    pub = _publisher(broker.port, "pub-bad")
    proc = _collector(broker.port, store, "--idle-stop", "2", wait=True)
    good = {"time": "2026-01-05T00:00:00Z", "temperature": 20.5}
    bad = [b"not json", json.dumps({"temperature": 1.0}), json.dumps({"time": 0, "x": "high"}),
           json.dumps([good, 7])]
    for payload in bad:
        pub.publish("devices/dev-1/telemetry", payload, qos=1).wait_for_publish(30)
    pub.publish("devices/dev-1/telemetry", json.dumps(good), qos=1).wait_for_publish(30)
    pub.publish("elsewhere/dev-1", json.dumps(good), qos=1).wait_for_publish(30)
    pub.loop_stop()
    pub.disconnect()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    q = pd.read_csv(tmp_path / "q.csv")
    assert len(q) == len(bad)
    assert set(q.topic) == {"devices/dev-1/telemetry"}
    assert q.problem.str.contains("not JSON").sum() == 1
    assert q.problem.str.contains("no 'time' field").sum() == 1
    assert q.problem.str.contains("not a number").sum() == 1
    got = read_store_samples(store)
    assert len(got) == 1 and got.value.tolist() == [20.5]


def test_commands_reach_each_device_exactly_once(tmp_path, broker):
    received, lock = [], threading.Lock()
    ready = threading.Event()
    device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="device-sim")
    device.on_connect = lambda c, *a: (c.subscribe("devices/+/commands", qos=1), ready.set())

    def on_message(c, userdata, msg):
        with lock:
            received.append((msg.topic, json.loads(msg.payload)))

    device.on_message = on_message
    device.connect("127.0.0.1", broker.port)
    device.loop_start()
    assert ready.wait(10)
    time.sleep(0.3)
    t = pd.Timestamp("2026-01-05")
    events = pd.DataFrame({"device": ["dev-1", "dev-2", "dev-1"],
                           "metric": ["temperature", "humidity", "humidity"],
                           "kind": ["anomaly"] * 3, "start": [t, t, t + pd.Timedelta("1h")],
                           "end": [t, t, t + pd.Timedelta("2h")], "score": [0.9999] * 3})
    ledger = tmp_path / "commands.sent"
    assert send_commands(events, "127.0.0.1", broker.port, ledger=ledger) == 3
    assert send_commands(events, "127.0.0.1", broker.port, ledger=ledger) == 0  # a re-run
    deadline = time.monotonic() + 10
    while len(received) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    device.loop_stop()
    device.disconnect()
    keys = [body["idempotency_key"] for _, body in received]
    assert len(keys) == 3 and len(set(keys)) == 3
    assert sorted(topic for topic, _ in received) == ["devices/dev-1/commands"] * 2 + \
        ["devices/dev-2/commands"]
    assert {body["metric"] for topic, body in received if topic.endswith("dev-2/commands")} \
        == {"humidity"}


def test_collect_runs_the_pipeline_as_data_arrive(tmp_path, broker):
    store = tmp_path / "store"
    (tmp_path / "p.toml").write_text(
        f'[source]\ntype = "store"\npath = "{store}"\n[grid]\nfreq = "1min"\n'
        '[checks]\ntime_gap = { max_gap = "10min" }\n'
        '[output]\nfolder = "out"\nreport = false\n[cluster]\nworkers = 1\n')
    proc = _collector(broker.port, store, "--pipeline", str(tmp_path / "p.toml"), "--every",
                      "1s", "--idle-stop", "5", wait=True)
    pub = _publisher(broker.port, "pub-pipeline")
    messages, expected = _messages(3)
    half = len(messages) // 2
    for k, (topic, payload) in enumerate(messages):
        if k == half:
            time.sleep(2.0)  # a batch after --every has passed: the pipeline runs
        pub.publish(topic, payload, qos=1).wait_for_publish(30)
    pub.loop_stop()
    pub.disconnect()
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    runs = [line for line in stdout.splitlines() if line.startswith("run ")]
    assert runs and "(full" in runs[0], stdout
    # the run after the pause covered what was published before it
    first = {t.split("/")[1] for t, _ in messages[:half]}
    out = pd.read_csv(tmp_path / "out" / "health.csv")
    assert first <= set(out.device)
