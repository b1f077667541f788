"""HTTP feeds: the toolkit's read_http against a serial requests + json + pandas loop.

    python benchmarks/bench_http.py                 # 200 devices x 50 pages of 1,000
    python benchmarks/bench_http.py --devices 20    # a smaller run

The server is ``iot-toolkit serve-feed`` in its own process on 127.0.0.1
(SensorThings: a Datastream per device and metric, pages of 1,000
observations followed by ``@iot.nextLink``). 200 devices x 4 metrics x
12,500 observations: 200 devices x 50 pages of 1,000 observations, 10 M in
all. The server renders each page once and then answers from memory; an
untimed first pass warms it (and numba, and the imports), so both sides are
timed against the same warm server.

Two settings: the server answering at once, and the server adding
``--latency`` (20 ms) to every answer. The serial loop, as a typical IoT
script does it: for each Datastream, ``requests.get`` each page, ``.json()``,
collect, then one pandas frame, ``to_datetime`` and ``pivot_table`` to the
device x time grid. With latency it runs on ``--serial-devices`` devices
only (a rate does not need the whole fleet); its rate is reported.

The toolkit: ``read_http(..., format="sensorthings", freq="1min")`` on a
LocalCluster of 2 worker processes x 1 thread (fetch and parse on the
workers, the result held there). Peak memory: the largest sum of resident
sets of this process and its workers, the server not counted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import pandas as pd
import requests
from bench_load import PeakRSS  # this folder: the same memory sampling
from distributed import Client, LocalCluster

from toolkit.feedserver import FeedServerProcess
from toolkit.io import LoadReport
from toolkit.io.http import read_http


def serial_loop(root: str, devices: int, metrics: int) -> tuple[pd.DataFrame, int]:
    """What a typical script does: page after page, then pandas."""
    rows = []
    session = requests.Session()
    for thing in range(devices):
        for j in range(metrics):
            ds_id = thing * metrics + j + 1
            url = f"{root}/Datastreams({ds_id})/Observations?$top=1000"
            while url:
                page = session.get(url, timeout=60)
                page.raise_for_status()
                body = page.json()
                for obs in body["value"]:
                    rows.append((f"dev-{thing:04d}", j, obs["phenomenonTime"], obs["result"]))
                url = body.get("@iot.nextLink")
    frame = pd.DataFrame(rows, columns=["device", "metric", "time", "value"])
    frame["time"] = pd.to_datetime(frame["time"], format="ISO8601")
    grid = frame.pivot_table(index=["device", "time"], columns="metric", values="value")
    return grid, len(rows)


def run(args, latency: float, client) -> list:
    rows = []
    with FeedServerProcess(devices=args.devices, days=args.days, page_size=1000,
                           latency=latency) as server:
        root = server.url + "/sta/v1.1"
        skip = {server.process.pid}

        def ours():
            return read_http(root, format="sensorthings", freq="1min",
                             connections=args.connections)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = ours()  # warm: the server's pages, numba, imports
            report = LoadReport.of(ds)
            n = report.samples_valid
            times = []
            with PeakRSS(skip) as mem:
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    ds = ours()
                    times.append(time.perf_counter() - started)
                    del ds
        rows.append((f"toolkit read_http (2 workers x 1 thread), latency {latency * 1e3:.0f} ms",
                     n, min(times), mem.peak))
        devices = args.devices if latency == 0 else min(args.serial_devices, args.devices)
        with PeakRSS(skip) as mem:
            started = time.perf_counter()
            _, m = serial_loop(root, devices, 4)
            seconds = time.perf_counter() - started
        rows.append((f"serial requests + json + pandas ({devices} devices), latency "
                     f"{latency * 1e3:.0f} ms", m, seconds, mem.peak))
    return rows, report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--days", type=float, default=12500 / 1440)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--serial-devices", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"\n## HTTP feed: {args.devices} devices x 4 Datastreams, SensorThings pages of "
          "1,000 observations\n", flush=True)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, host="127.0.0.1",
                      memory_limit="8GiB") as lc, Client(lc) as client:
        table, report = [], None
        for latency in (0.0, args.latency):
            rows, report = run(args, latency, client)
            table += rows
            print(f"latency {latency}: done", file=sys.stderr, flush=True)
    print("| method | observations | wall s | observations/s | peak RSS (no server) |")
    print("|---|---|---|---|---|")
    for name, n, t, peak in table:
        print(f"| {name} | {n:,} | {t:.2f} | {n / t:,.0f} | {peak / 2**30:.2f} GiB |")
    rate = [n / t for _, n, t, _ in table]
    print(f"\nat once: toolkit {rate[0] / rate[1]:.1f}x the serial loop; with "
          f"{args.latency * 1e3:.0f} ms latency: {rate[2] / rate[3]:.1f}x")
    print(f"\n{report}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
