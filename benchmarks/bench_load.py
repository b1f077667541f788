"""Loader suite: a 10-million-row long CSV into a regularised fleet, against its peers.

    python benchmarks/bench_load.py            # 10,000,000 rows (about 510 MB)
    python benchmarks/bench_load.py --rows 1e6 # a smaller file, for a smoke run

The file: 1,000 devices (``dev-0042``), four metrics, ISO-8601 times with
milliseconds and ``Z`` one minute apart, written time-major (every device at
one time, then the next), as a gateway would log them. Three ways to get from
it to an array (device x time x metric):

- pyarrow ``csv.read_csv`` alone: parsing only, multithreaded, no array;
- pandas ``read_csv`` + ``to_datetime`` + ``pivot(...).to_xarray()``;
- ``toolkit.io.read_csv(path, freq="1min")`` on a LocalCluster of 2 worker
  processes x 1 thread: parse on the workers, regularise, held there.

Each time is the best of three. Peak memory is the largest sum of the
resident sets of this process and its children (the workers) during a run.
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
from distributed import Client, LocalCluster

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
    """Largest total RSS of this process and its children, sampled every 50 ms."""

    def __enter__(self):
        self.peak, self._stop = 0, threading.Event()

        def sample():
            me = psutil.Process()
            while not self._stop.is_set():
                total = 0
                for p in [me, *me.children(recursive=True)]:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak = max(self.peak, total)
                self._stop.wait(0.05)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def best(fn, repeat=3):
    times, peak = [], 0
    base = psutil.Process().memory_info().rss
    for _ in range(repeat):
        with PeakRSS() as mem:
            started = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - started)
        peak = max(peak, mem.peak)
        del result
    return min(times), peak, base


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=10e6)
    parser.add_argument("--dir", help="folder for the CSV (default: a temporary one)")
    args = parser.parse_args(argv)
    folder = Path(args.dir or tempfile.mkdtemp(prefix="toolkit-load-"))
    path = folder / f"long-{int(args.rows)}.csv"
    if not path.exists():
        write_file(path, int(args.rows))
    size = path.stat().st_size
    print(f"\n## Loading a long CSV: {int(args.rows):,} rows, {size / 1e6:.0f} MB\n")

    def arrow():
        return pcsv.read_csv(path)

    def pandas_pivot():
        frame = pd.read_csv(path)
        frame["time"] = pd.to_datetime(frame["time"], format="ISO8601")
        return frame.pivot(index=["device", "time"], columns="metric",
                           values="value").to_xarray()

    rows = []
    t, peak, _ = best(arrow)
    rows.append(("pyarrow read_csv (parse only, threads)", t, peak))
    t, peak, _ = best(pandas_pivot, repeat=2)
    rows.append(("pandas read_csv + to_datetime + pivot.to_xarray", t, peak))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, host="127.0.0.1",
                      memory_limit="8GiB") as lc, Client(lc):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            read_csv(path, freq="1min", blocksize=16 * 2**20)  # warm: numba, imports

            def ours():
                return read_csv(path, freq="1min")

            t, peak, _ = best(ours)
            ds = ours()
        report = LoadReport.of(ds)
        rows.append(("toolkit read_csv (2 workers x 1 thread, held there)", t, peak))
    arrow_t = rows[0][1]
    print("| method | wall s | MB/s | vs pyarrow throughput | peak RSS (all processes) "
          "| peak / file size |")
    print("|---|---|---|---|---|---|")
    for name, t, peak in rows:
        print(f"| {name} | {t:.2f} | {size / 1e6 / t:.0f} | {arrow_t / t:.2f}x "
              f"| {peak / 2**30:.2f} GiB | {peak / size:.1f}x |")
    print(f"\ntoolkit vs pandas + pivot: {rows[1][1] / rows[2][1]:.1f}x faster")
    print(f"\n{report}")
    if not args.dir:
        path.unlink()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
