"""InfluxDB history: toolkit.read_influx against the influxdb client and raw /query.

    python benchmarks/bench_influx.py                       # 200 devices x 30 days
    python benchmarks/bench_influx.py --devices 50 --days 7

Starts Debian's ``influxd`` on 127.0.0.1 in a temporary folder, writes a
synthetic fleet (two fields, ``temperature`` and ``humidity``, a point a
minute per device) with ``toolkit.io.influx.write_influx``, then reads it
back four ways, each timed on the warm server:

- the ``influxdb`` Python client's ``query()`` into pandas, one device at a
  time (the usual script), then one frame;
- raw ``GET /query`` with ``epoch=ns``, parsed by ``orjson``: one device at
  a time, and 8 devices at a time in threads (parse only: no grid);
- ``toolkit.read_influx(..., freq="1min")`` into the fleet Dataset on a
  LocalCluster of 2 worker processes x 1 thread (the data held there).

Rows are points (a time of a device with its two fields); the table gives
rows per second and the ratio to the client. On 2 cores the server itself
is the limit.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pandas as pd
from distributed import Client, LocalCluster

import toolkit
from toolkit.io.influx import read_influx, write_influx
from toolkit.localservers import InfluxDBProcess

FIELDS = ["temperature", "humidity"]


def raw_query(url: str, device: str) -> int:
    q = f'SELECT "temperature","humidity" FROM "tele" WHERE "device" = \'{device}\''
    body = urllib.request.urlopen(url + "/query?" + urllib.parse.urlencode(
        {"db": "bench", "q": q, "epoch": "ns"}), timeout=600).read()
    doc = orjson.loads(body)
    return sum(len(s["values"]) for r in doc["results"] for s in r.get("series", []))


def client_script(url: str, devices) -> int:
    from influxdb import InfluxDBClient

    host, port = url.rsplit("//", 1)[1].split(":")
    client = InfluxDBClient(host=host, port=int(port), database="bench")
    frames = []
    for d in devices:
        result = client.query(f'SELECT "temperature","humidity" FROM "tele" WHERE '
                              f'"device" = \'{d}\'', epoch="ns")
        frame = pd.DataFrame(result.get_points())
        frame["device"] = d
        frames.append(frame)
    return len(pd.concat(frames, ignore_index=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--days", type=float, default=30.0)
    args = parser.parse_args()
    if shutil.which("influxd") is None:
        raise SystemExit("influxd is not installed (Debian package influxdb)")
    root = Path(tempfile.mkdtemp(prefix="bench-influx-"))
    server = InfluxDBProcess(root, cache_max_memory_size="2g").start()
    url = server.url
    try:
        fleet = toolkit.make_fleet(n_devices=args.devices, days=args.days, seed=0,
                                   metrics=FIELDS, anomaly_rate=0, dropout=0.0)
        ds = fleet.dataset.load()
        t0 = time.perf_counter()
        written = write_influx(url, "bench", ds, measurement="tele", batch_size=20_000)
        print(f"wrote {written.points:,} points in {time.perf_counter() - t0:.1f} s")
        devices = [str(d) for d in ds.device.values]
        rows = written.points
        raw_query(url, devices[0])  # warm the server
        results = {}
        t0 = time.perf_counter()
        assert client_script(url, devices) == rows
        results["influxdb client query() -> pandas, one device at a time"] = \
            time.perf_counter() - t0
        t0 = time.perf_counter()
        assert sum(raw_query(url, d) for d in devices) == rows
        results["raw /query + orjson, one at a time"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            assert sum(pool.map(lambda d: raw_query(url, d), devices)) == rows
        results["raw /query + orjson, 8 at a time"] = time.perf_counter() - t0
        with Client(LocalCluster(n_workers=2, threads_per_worker=1,
                                 dashboard_address=None)) as client:
            read_influx(url, "bench", "tele", devices=devices[:2], freq="1min").load()
            t0 = time.perf_counter()
            got = client.persist(read_influx(url, "bench", "tele", freq="1min"))
            client.wait_for_workers(1)
            from distributed import wait

            wait(got)
            results["toolkit.read_influx -> fleet Dataset (2 workers)"] = \
                time.perf_counter() - t0
            assert int(got.temperature.count()) == rows
        base = results["influxdb client query() -> pandas, one device at a time"]
        print(f"\n{args.devices} devices x {args.days:g} days at 1 min, two fields: "
              f"{rows:,} rows\n")
        print("| reader | seconds | rows/s | vs the client |")
        print("|---|---|---|---|")
        for name, seconds in results.items():
            print(f"| {name} | {seconds:.2f} | {rows / seconds:,.0f} | "
                  f"{base / seconds:.2f}x |")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
