"""MQTT: live telemetry into the sample store, and commands back to the devices.

:class:`Collector` subscribes to the devices' topics on a broker (a topic
pattern with ``{device}`` in it, such as ``devices/{device}/telemetry``)
with QoS 1 in a persistent session, and appends what arrives to a
:class:`~toolkit.io.store.SampleStore` in batches, with the store's
checkpoint rules. A message is acknowledged to the broker only after the
batch holding it is committed, so:

- killed at any moment and started again, the collector gets every message
  it had not committed back from the broker (the session is persistent);
- a message committed but not yet acknowledged comes back too, and is
  recognised: a sample whose device, metric and time the store already
  holds is merged (counted as a redelivery), never stored twice;
- a restarted broker keeps the session's queued messages (with persistence
  on, see ``docs/backends.md``).

A payload is JSON: one sample or a list of them, each an object with a time
(``time``: ISO 8601, or epoch seconds, milliseconds or nanoseconds) and
either a field per metric (``{"time": ..., "temperature": 21.5}``) or a
metric and a value field (``metric=``, ``value=``). A payload that is not
valid -- not JSON, no time, a value that is not a number -- goes to the
quarantine CSV with its topic and the reason, and is counted.

:func:`send_commands` publishes events to each device's command topic (QoS
1), one message per event with its idempotency key; a ledger file remembers
what was sent, so a re-run sends nothing twice.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd

from ..errors import ArgumentError, LoadError
from .grid import Samples
from .store import SampleStore, load_batch

#: batches of the store read back on start, to recognise redelivered samples
RECENT_BATCHES = 32
_decode = msgspec.json.Decoder()


def _mqtt():
    try:
        import paho.mqtt.client as mqtt
    except ImportError as err:  # pragma: no cover - a declared dependency
        raise LoadError("the MQTT support needs paho-mqtt (pip install paho-mqtt)") from err
    return mqtt


def topic_filter(pattern: str) -> tuple[str, re.Pattern]:
    """The subscription filter of a topic pattern, and the regex that reads the device.

    Examples
    --------
    >>> f, rx = topic_filter("devices/{device}/telemetry")
    >>> f, rx.fullmatch("devices/dev-7/telemetry").group("device")
    ('devices/+/telemetry', 'dev-7')
    """
    if pattern.count("{device}") != 1:
        raise ArgumentError(f"the topic pattern must hold {{device}} once, got {pattern!r}")
    parts = pattern.split("{device}")
    if any(ch in p for p in parts for ch in "+#"):
        raise ArgumentError(f"the topic pattern may not hold MQTT wildcards besides "
                            f"{{device}}, got {pattern!r}")
    rx = re.compile(re.escape(parts[0]) + r"(?P<device>[^/]+)" + re.escape(parts[1]))
    return parts[0] + "+" + parts[1], rx


@dataclass
class CollectReport:
    """What a collector did; ``samples = stored + redelivered`` (merged) for the payloads
    that parsed; the others are quarantined."""

    messages: int = 0
    samples: int = 0
    stored: int = 0
    redelivered: int = 0
    quarantined: int = 0
    batches: int = 0
    reasons: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return (f"collect: {self.messages:,} messages, {self.samples:,} samples: "
                f"{self.stored:,} stored in {self.batches} batch(es), {self.redelivered:,} "
                f"redelivered (merged), {self.quarantined:,} payloads quarantined")


class Mapping:
    """How a payload's objects become samples (time field; wide or metric/value)."""

    def __init__(self, time: str = "time", metric: str | None = None, value: str | None = None,
                 metrics: list[str] | None = None):
        if (metric is None) != (value is None):
            raise ArgumentError("give metric and value together (the long layout), or "
                                "neither (a field per metric)")
        self.time, self.metric, self.value = time, metric, value
        self.metrics = list(metrics) if metrics else None

    def samples(self, payload: bytes) -> list[tuple[str, float, object]]:
        """``(metric, value, time)`` of a payload; raises ValueError(why)."""
        try:
            doc = _decode.decode(payload)
        except msgspec.DecodeError as err:
            raise ValueError(f"not JSON ({err})") from None
        records = doc if isinstance(doc, list) else [doc]
        out = []
        for rec in records:
            if not isinstance(rec, dict):
                raise ValueError("a sample must be a JSON object")
            if self.time not in rec:
                raise ValueError(f"no {self.time!r} field")
            when = rec[self.time]
            if self.metric is not None:
                name, v = rec.get(self.metric), rec.get(self.value)
                if not isinstance(name, str):
                    raise ValueError(f"no metric name in {self.metric!r}")
                out.append((name, _number(v, self.value), when))
                continue
            names = self.metrics or [k for k in rec if k != self.time]
            for name in names:
                if name in rec:
                    out.append((name, _number(rec[name], name), when))
        return out


def _number(v, name) -> float:
    if v is None:
        return float("nan")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{name!r} is not a number: {v!r}")
    return float(v)


def _times(raw: list) -> np.ndarray:
    """Times of samples: ISO text, or epoch numbers in s, ms, us or ns (by size)."""
    out = np.empty(len(raw), np.int64)
    numbers = [i for i, t in enumerate(raw) if isinstance(t, (int, float))
               and not isinstance(t, bool)]
    texts = [i for i, t in enumerate(raw) if isinstance(t, str)]
    if len(numbers) + len(texts) != len(raw):
        raise ValueError("a time must be text or a number")
    if numbers:
        v = np.array([raw[i] for i in numbers], dtype=np.float64)
        scale = np.where(np.abs(v) < 1e11, 1e9, np.where(np.abs(v) < 1e14, 1e6,
                                                          np.where(np.abs(v) < 1e17, 1e3, 1)))
        out[numbers] = np.round(v * scale).astype(np.int64)
    if texts:
        parsed = pd.to_datetime([raw[i] for i in texts], utc=True, format="ISO8601")
        out[texts] = parsed.tz_convert(None).as_unit("ns").asi8
    return out


class Collector:
    """Subscribe, batch, commit, then acknowledge (see the module docstring).

    Parameters
    ----------
    host, port : str, int
        The broker.
    store : str or path
        The sample store (created on first use).
    topic : str
        The devices' topic pattern, with ``{device}``.
    client_id : str
        The persistent session's id: the same id resumes the same session.
    batch_seconds, batch_size : float, int
        A batch is committed every ``batch_seconds``, or sooner when it holds
        ``batch_size`` messages.
    quarantine : str or path
        The CSV for bad payloads (topic, reason, payload).
    mapping : Mapping, optional
        How payloads become samples (default: a time field and a field per
        metric).
    username, password_env : str, optional
        Broker credentials; the password from this environment variable.
    """

    def __init__(self, host: str, port: int, store, *, topic: str = "devices/{device}/telemetry",
                 client_id: str = "iot-toolkit-collector", batch_seconds: float = 0.5,
                 batch_size: int = 20_000, quarantine="quarantine-mqtt.csv",
                 mapping: Mapping | None = None, username: str | None = None,
                 password_env: str | None = None):
        self.host, self.port = host, int(port)
        self.store_path = Path(store)
        self.filter, self.rx = topic_filter(topic)
        self.client_id = client_id
        self.batch_seconds, self.batch_size = float(batch_seconds), int(batch_size)
        self.quarantine = Path(quarantine)
        self.mapping = mapping or Mapping()
        self.username, self.password_env = username, password_env
        self.report = CollectReport()
        self._inbox: queue.Queue = queue.Queue()
        self._connected = threading.Event()
        self._seen: set = set()
        self._log = None
        self._session = "new"

    # --- the broker ---

    def _client(self):
        mqtt = _mqtt()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             clean_session=False, manual_ack=True)
        if self.username is not None:
            password = os.environ.get(self.password_env) if self.password_env else None
            client.username_pw_set(self.username, password)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)

        def on_connect(c, userdata, flags, reason_code, properties):
            self._session = "resumed" if flags.session_present else "new"
            c.subscribe(self.filter, qos=1)
            self._connected.set()

        def on_subscribe(c, userdata, mid, reason_codes, properties):
            # the broker confirmed the subscription: from now on nothing is missed
            if self._log is not None:
                self._log(f"connected to {self.host}:{self.port} (session "
                          f"{self._session}), subscribed to {self.filter}")

        def on_disconnect(c, userdata, flags, reason_code, properties):
            self._connected.clear()

        def on_message(c, userdata, msg):
            self._inbox.put((msg.topic, msg.payload, msg.mid, msg.qos))

        client.on_connect, client.on_disconnect = on_connect, on_disconnect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        client.reconnect_delay_set(0.2, 5)
        return client

    def _remember_recent(self, store: SampleStore) -> None:
        """The keys of the last batches: a redelivered sample is recognised by them."""
        cp = store.checkpoint
        for path in store.batch_paths()[-RECENT_BATCHES:]:
            b = load_batch(path, cp.devices, cp.metrics)
            if not b.rows:
                continue
            dev = np.asarray(cp.devices, dtype=object)[b.device_codes]
            met = np.asarray(cp.metrics, dtype=object)[b.metric_codes]
            self._seen.update(zip(dev.tolist(), met.tolist(), b.times.tolist(), strict=True))

    # --- running ---

    def run(self, *, duration: float | None = None, stop: threading.Event | None = None,
            idle_stop: float | None = None, on_batch=None, log=None,
            connected=None) -> CollectReport:
        """Collect until ``stop`` is set, ``duration`` seconds have passed, or nothing
        arrived for ``idle_stop`` seconds (each optional; Ctrl-C stops it too).

        ``log`` receives a line per batch; ``connected`` a line per connection."""
        self._log = connected
        store = SampleStore(self.store_path, writer=True, create=True)
        try:
            self._remember_recent(store)
            client = self._client()
            try:
                client.connect(self.host, self.port, keepalive=30)
            except OSError as err:
                raise LoadError(f"cannot reach the MQTT broker at {self.host}:{self.port}: "
                                f"{err}") from None
            client.loop_start()
            try:
                self._loop(client, store, duration, stop, idle_stop, on_batch, log)
            finally:
                client.loop_stop()
                client.disconnect()
        finally:
            store.close()
        return self.report

    def _loop(self, client, store, duration, stop, idle_stop, on_batch, log):
        from ..execution.progress import check_interrupted

        began = last_message = time.monotonic()
        while True:
            check_interrupted()
            now = time.monotonic()
            if stop is not None and stop.is_set():
                break
            if duration is not None and now - began >= duration:
                break
            if idle_stop is not None and now - last_message >= idle_stop \
                    and self._inbox.empty():
                break
            batch = []
            deadline = now + self.batch_seconds
            while len(batch) < self.batch_size:
                try:
                    batch.append(self._inbox.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            if not batch:
                continue
            last_message = time.monotonic()
            self._commit(batch, store)
            for _, _, mid, qos in batch:  # only now: the batch is in the store
                client.ack(mid, qos)
            if on_batch is not None:
                on_batch(self.report)
            if log is not None:
                log(str(self.report))

    def _commit(self, batch, store: SampleStore) -> None:
        devices, metrics, values, whens, bad = [], [], [], [], []
        for topic, payload, _, _ in batch:
            self.report.messages += 1
            match = self.rx.fullmatch(topic)
            try:
                if match is None:
                    raise ValueError("the topic does not fit the pattern")
                rows = self.mapping.samples(payload)
                t = _times([w for _, _, w in rows])
            except (ValueError, TypeError, OverflowError) as err:
                bad.append((topic, str(err), payload))
                continue
            device = match.group("device")
            for (name, v, _), when in zip(rows, t.tolist(), strict=True):
                devices.append(device)
                metrics.append(name)
                values.append(v)
                whens.append(when)
        if bad:
            self._quarantine(bad)
        keep = []
        for k, key in enumerate(zip(devices, metrics, whens, strict=True)):
            self.report.samples += 1
            if key in self._seen:
                self.report.redelivered += 1
                continue
            self._seen.add(key)
            keep.append(k)
        if not keep:
            return
        dev_names = sorted({devices[k] for k in keep})
        met_names = sorted({metrics[k] for k in keep})
        d_index = {d: i for i, d in enumerate(dev_names)}
        m_index = {m: i for i, m in enumerate(met_names)}
        samples = Samples(np.array(dev_names, dtype=object),
                          np.array([d_index[devices[k]] for k in keep], np.int32),
                          np.array([whens[k] for k in keep], np.int64), met_names,
                          np.array([m_index[metrics[k]] for k in keep], np.int32),
                          np.array([values[k] for k in keep], np.float64))
        self.report.stored += store.append(samples)
        self.report.batches += 1

    def _quarantine(self, bad) -> None:
        new = not self.quarantine.exists()
        self.quarantine.parent.mkdir(parents=True, exist_ok=True)
        with open(self.quarantine, "a", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["topic", "problem", "payload"])
            for topic, why, payload in bad:
                writer.writerow([topic, why, payload[:2000].decode("utf-8", "replace")])
                self.report.quarantined += 1
                self.report.reasons[why.split(" (")[0]] = \
                    self.report.reasons.get(why.split(" (")[0], 0) + 1


def send_commands(events: pd.DataFrame, host: str, port: int, *,
                  topic: str = "devices/{device}/commands", ledger=None,
                  client_id: str = "iot-toolkit-commands", timeout: float = 30.0,
                  username: str | None = None, password_env: str | None = None) -> int:
    """Publish each event to its device's command topic (QoS 1), once.

    Each message is the event as JSON with its ``idempotency_key`` (the key
    of :func:`toolkit.events.idempotency_key`). ``ledger`` (a file) keeps the
    keys sent and acknowledged by the broker: events already there are not
    sent again. Returns how many were sent.
    """
    from ..events import idempotency_key, jsonable

    topic_filter(topic)  # checks the pattern
    sent = set()
    ledger = Path(ledger) if ledger is not None else None
    if ledger is not None and ledger.exists():
        sent = set(ledger.read_text().split())
    mqtt = _mqtt()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=True)
    if username is not None:
        client.username_pw_set(username, os.environ.get(password_env)
                               if password_env else None)
    try:
        client.connect(host, int(port), keepalive=30)
    except OSError as err:
        raise LoadError(f"cannot reach the MQTT broker at {host}:{port}: {err}") from None
    client.loop_start()
    count = 0
    try:
        for row in events.to_dict("records"):
            key = idempotency_key(row["device"], row["metric"], row["kind"], row["start"])
            if key in sent:
                continue
            body = {"idempotency_key": key, **{k: jsonable(v) for k, v in row.items()}}
            info = client.publish(topic.replace("{device}", str(row["device"])),
                                  json.dumps(body), qos=1)
            info.wait_for_publish(timeout)
            if not info.is_published():
                raise LoadError(f"the broker at {host}:{port} did not acknowledge the "
                                f"command for event {key} within {timeout} s")
            sent.add(key)
            count += 1
            if ledger is not None:
                with open(ledger, "a") as f:
                    f.write(key + "\n")
    finally:
        client.loop_stop()
        client.disconnect()
    return count


__all__ = ["CollectReport", "Collector", "Mapping", "send_commands", "topic_filter"]
