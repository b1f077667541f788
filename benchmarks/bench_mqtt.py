"""MQTT ingest: samples per second from publishers through mosquitto into the store.

    python benchmarks/bench_mqtt.py                 # 500,000 samples (50,000 one by one)
    python benchmarks/bench_mqtt.py --samples 50000

Starts Debian's ``mosquitto`` on 127.0.0.1 (persistence on, as in
production), a :class:`toolkit.io.mqtt.Collector` in this process (QoS 1,
persistent session, a message acknowledged once its batch is committed to
the sample store) and two publisher processes that send a fleet's samples
as fast as the broker takes them, QoS 1. Timed: from the first publish
until the store holds every sample; the broker, the publishers and the
collector share the machine's cores. Two payload sizes: 1 sample per
message and 100 samples per message.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import tempfile
import threading
import time
from pathlib import Path

from toolkit.io.mqtt import Collector
from toolkit.io.store import SampleStore
from toolkit.localservers import MosquittoProcess


def publish(port: int, worker: int, messages: int, per_message: int, start: float) -> None:
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{worker}")
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    while time.time() < start:
        time.sleep(0.001)
    t0 = 1_767_571_200_000 + worker * 10**9
    info = None
    for i in range(messages):
        base = t0 + i * per_message * 1000
        payload = [{"time": base + k * 1000, "temperature": 20.0 + k * 0.01}
                   for k in range(per_message)]
        info = c.publish(f"devices/dev-{worker}-{i % 50}/telemetry",
                         json.dumps(payload if per_message > 1 else payload[0]), qos=1)
    info.wait_for_publish(300)
    c.loop_stop()
    c.disconnect()


def run(samples: int, per_message: int, publishers: int = 2) -> float:
    root = Path(tempfile.mkdtemp(prefix="bench-mqtt-"))
    broker = MosquittoProcess(root / "broker").start()
    port = broker.port
    try:
        store = root / "store"
        collector = Collector("127.0.0.1", port, store, client_id="bench-collector",
                              batch_seconds=0.5, batch_size=50_000,
                              quarantine=root / "q.csv")
        stop = threading.Event()
        done = threading.Event()
        want = samples

        def on_batch(report):
            if report.stored >= want:
                done.set()
                stop.set()

        ready = threading.Event()
        thread = threading.Thread(target=collector.run, kwargs=dict(
            stop=stop, on_batch=on_batch, connected=lambda line: ready.set()))
        thread.start()
        ready.wait(30)
        messages = samples // per_message // publishers
        start = time.time() + 1.0
        procs = [mp.Process(target=publish, args=(port, w, messages, per_message, start))
                 for w in range(publishers)]
        for p in procs:
            p.start()
        done.wait(600)
        elapsed = time.time() - start
        for p in procs:
            p.join()
        stop.set()
        thread.join()
        with SampleStore(store) as s:
            assert s.checkpoint.rows == samples, (s.checkpoint.rows, samples)
        return samples / elapsed
    finally:
        broker.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=500_000)
    args = parser.parse_args()
    print("| payload | samples | samples/s into the store |")
    print("|---|---|---|")
    for per_message in (1, 100):
        n = args.samples // (10 if per_message == 1 else 1)
        rate = run(n, per_message)
        print(f"| {per_message} sample(s) per message | {n:,} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
