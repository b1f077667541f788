"""Loader suite: a 10-million-row long CSV into a regularised fleet, against its peers.

    python benchmarks/bench_load.py            # 10,000,000 rows (about 510 MB)
    python benchmarks/bench_load.py --rows 1e6 # a smaller file, for a smoke run

The file: 1,000 devices (``dev-0042``), four metrics, ISO-8601 times with
milliseconds and ``Z`` one minute apart, written time-major (every device at
one time, then the next), as a gateway would log them. Three ways to get from
it to an array (device x time x metric):

- pyarrow ``csv.read_csv`` alone: parsing only, multithreaded, no array;
- pandas ``read_csv`` + ``to_datetime`` + ``pivot(...).to_xarray()``;
- ``toolkit.io.read_csv(path, freq="1min")`` on ``toolkit.connect()``'s local
  cluster of 2 worker processes x 1 thread: parse on the workers,
  regularise, held there.

Each time is the best of three. Peak memory is the largest sum of the
resident sets of this process and its children (the workers) during a run,
and that peak less the same sum just before the run (the idle interpreter,
libraries and workers).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.csv as pcsv

from toolkit import connect
from toolkit.io import LoadReport, read_csv

METRICS = ["temperature", "humidity", "pressure", "battery_voltage"]


def write_file(path: Path, rows: int) -> None:
    n_dev = 1000
    n_times = max(1, rows // (n_dev * len(METRICS)))
    times = pd.date_range("2026-01-05", periods=n_times, freq="1min")
    text_times = pa.array(times.strftime("%Y-%m-%dT%H:%M:%S.000Z"))
    devices = pa.array([f"dev-{i:04d}" for i in range(n_dev)])
    rng = np.random.default_rng(0)
    per_time = n_dev * len(METRICS)
    with pcsv.CSVWriter(str(path), pa.schema([("device", pa.string()), ("time", pa.string()),
                                              ("metric", pa.string()),
                                              ("value", pa.float64())]),
                         write_options=pcsv.WriteOptions(quoting_style="none")) as writer:
        for lo in range(0, n_times, 100):
            hi = min(lo + 100, n_times)
            k = hi - lo
            dev = np.tile(np.repeat(np.arange(n_dev), len(METRICS)), k)
            met = np.tile(np.arange(len(METRICS)), n_dev * k)
            tim = np.repeat(np.arange(lo, hi), per_time)
            values = np.round(rng.normal(20, 5, k * per_time), 3)
            writer.write_table(pa.table({
                "device": devices.take(pa.array(dev)),
                "time": text_times.take(pa.array(tim)),
                "metric": pa.array(METRICS).take(pa.array(met)),
                "value": values,
            }))


class PeakRSS:
    """Largest total RSS of this process and its children, sampled every 50 ms;
    the processes in ``skip`` (and their children) are not counted."""

    def __init__(self, skip=()):
        self.skip = set(skip)

    def total(self) -> int:
        me, total = psutil.Process(), 0
        for p in [me, *me.children(recursive=True)]:
            try:
                if p.pid not in self.skip and not any(a.pid in self.skip
                                                      for a in p.parents()):
                    total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def __enter__(self):
        self.peak, self._stop = 0, threading.Event()
        self.idle = self.total()  # before the run: interpreter, libraries, idle workers

        def sample():
            while not self._stop.is_set():
                self.peak = max(self.peak, self.total())
                self._stop.wait(0.05)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def best(fn, repeat=3):
    """Best time of ``repeat`` runs, the peak total RSS and the peak above idle."""
    times, peak, added = [], 0, 0
    for _ in range(repeat):
        with PeakRSS() as mem:
            started = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - started)
        peak, added = max(peak, mem.peak), max(added, mem.peak - mem.idle)
        del result
    return min(times), peak, added


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=10e6)
    parser.add_argument("--dir", help="folder for the CSV (default: a temporary one)")
    parser.add_argument("--beyond", action="store_true",
                        help="only load the file on 2 workers x 1 GiB (make --rows large "
                             "enough that the file is bigger than that)")
    args = parser.parse_args(argv)
    folder = Path(args.dir or tempfile.mkdtemp(prefix="toolkit-load-"))
    path = folder / f"long-{int(args.rows)}.csv"
    if not path.exists():
        write_file(path, int(args.rows))
    size = path.stat().st_size
    if args.beyond:
        return beyond(path, size)
    print(f"\n## Loading a long CSV: {int(args.rows):,} rows, {size / 1e6:.0f} MB\n")

    def arrow():
        return pcsv.read_csv(path)

    def pandas_pivot():
        frame = pd.read_csv(path)
        frame["time"] = pd.to_datetime(frame["time"], format="ISO8601")
        return frame.pivot(index=["device", "time"], columns="metric",
                           values="value").to_xarray()

    rows = []
    rows.append(("pyarrow read_csv (parse only, threads)", *best(arrow)))
    rows.append(("pandas read_csv + to_datetime + pivot.to_xarray",
                 *best(pandas_pivot, repeat=2)))
    with connect(n_workers=2, threads_per_worker=1, dashboard_address=None,
                 memory_limit="8GiB"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            read_csv(path, freq="1min", blocksize=16 * 2**20)  # warm: numba, imports

            def ours():
                return read_csv(path, freq="1min")

            rows.append(("toolkit read_csv (2 workers x 1 thread, held there)", *best(ours)))
            ds = ours()
        report = LoadReport.of(ds)
    arrow_t = rows[0][1]
    print("| method | wall s | MB/s | vs pyarrow throughput | peak RSS, all processes "
          "| / file size | peak above idle | / file size |")
    print("|---|---|---|---|---|---|---|---|")
    for name, t, peak, added in rows:
        print(f"| {name} | {t:.2f} | {size / 1e6 / t:.0f} | {arrow_t / t:.2f}x "
              f"| {peak / 2**30:.2f} GiB | {peak / size:.1f}x | {added / 2**30:.2f} GiB "
              f"| {added / size:.1f}x |")
    print(f"\ntoolkit vs pandas + pivot: {rows[1][1] / rows[2][1]:.1f}x faster")
    print(f"\n{report}")
    if not args.dir:
        path.unlink()


def beyond(path, size):
    """The file on a cluster whose memory limit is smaller than the file."""
    print(f"\n## A CSV larger than the cluster's memory: {size / 2**30:.2f} GiB file, "
          "2 workers x 1 thread with a 1 GiB limit each\n")
    with connect(n_workers=2, threads_per_worker=1, dashboard_address=None,
                 memory_limit="1GiB") as client:
        pids = set(client.run(os.getpid).values())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with PeakRSS() as mem:
                started = time.perf_counter()
                ds = read_csv(path, freq="1min")
                seconds = time.perf_counter() - started
        workers = client.run(lambda: psutil.Process().memory_info().rss)
        same = set(client.run(os.getpid).values()) == pids
        report = LoadReport.of(ds)
        mean = float(ds.temperature.mean().compute())
    print(f"- loaded in {seconds:.1f} s; largest total RSS of client and workers "
          f"{mem.peak / 2**30:.2f} GiB; worker RSS at the end "
          f"{max(workers.values()) / 2**30:.2f} GiB; same worker processes: {same}")
    print(f"- mean temperature {mean:.4f} (computed from the held result)\n\n{report}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
