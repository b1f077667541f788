"""Pipeline suite: the toolkit on a Dask cluster -- scaling, the naive peer, beyond memory.

    python benchmarks/bench_pipeline.py scaling      # 1 vs 2 workers, threads, overhead
    python benchmarks/bench_pipeline.py xarray       # toolkit vs xarray's own rolling
    python benchmarks/bench_pipeline.py beyond       # a Zarr fleet 4x the cluster memory
    python benchmarks/bench_pipeline.py all --quick  # everything, small (a smoke run)

The pipeline is the one a researcher runs: regularise onto a 5-minute grid,
rolling mean and std, quality flags (gross range and flat line), written to
Zarr, then the flags turned into an events table. Inputs are Zarr stores
written first (uncompressed, so that reading costs what the disk and page
cache cost); outputs go to Zarr, so nothing is gathered to the client except
the events table. Peak memory is the largest resident set of any worker
process, sampled every 0.2 s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import dask
import psutil
import xarray as xr
from distributed import Client, LocalCluster, get_task_stream, wait

import toolkit
from toolkit.cluster import starting_workers
from toolkit.model import metric_names

GiB = 2**30
PER_CHUNK = 250  # devices per chunk: 250 x 28 days at 1 min = 77 MiB per metric


def _rss() -> int:
    return psutil.Process().memory_info().rss


class PeakMemory:
    """Largest RSS of any worker process, sampled in a thread while a block runs."""

    def __init__(self, client: Client, interval: float = 0.2):
        self.client, self.interval, self.peak, self.spilled = client, interval, 0, 0
        self._stop = threading.Event()

    def _sample(self):
        while not self._stop.is_set():
            try:
                self.peak = max([self.peak, *self.client.run(_rss).values()])
                for w in self.client.scheduler_info()["workers"].values():
                    disk = w.get("metrics", {}).get("spilled_bytes", {}).get("disk", 0)
                    self.spilled = max(self.spilled, disk)
            except Exception:  # noqa: BLE001  (a sample lost while a worker restarts)
                pass
            self._stop.wait(self.interval)

    def __enter__(self):
        if self.interval is None:
            return self
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.interval is None:
            return
        self._stop.set()
        self._thread.join()


def write_fleet(client, path, n_devices, days, per_chunk, anomaly_rate=0.5):
    """A synthetic fleet generated on the workers and written to an uncompressed Zarr."""
    ds = toolkit.make_fleet(n_devices, days, "1min", seed=1, chunks=per_chunk,
                            anomaly_rate=anomaly_rate).dataset
    encoding = {v: {"compressors": None} for v in ds.data_vars}
    started = time.perf_counter()
    job = client.compute(ds.to_zarr(path, mode="w", compute=False, zarr_format=2,
                                    encoding=encoding, consolidated=True))
    wait(job)
    job.result()
    return time.perf_counter() - started, ds.nbytes


def pipeline(ds: xr.Dataset, out: Path, phases: dict | None = None, client=None):
    """regularize -> rolling mean/std, z-score -> flags -> Zarr; then events from the flags.

    ``phases`` gets the seconds of building the graph (client), writing the
    Zarr store (the Dask computation; with ``client``, also the seconds the
    workers were busy in it) and turning the flags into events.
    """
    phases = {} if phases is None else phases
    started = time.perf_counter()
    regular = ds.telemetry.regularize("5min")
    metrics = regular[metric_names(regular)]
    window = metrics.telemetry.rolling(window=12, min_count=6)
    scores = toolkit.rolling_zscore(metrics, 12, min_count=6)

    def named(d, suffix):
        return d.rename({m: f"{m}_{suffix}" for m in metrics.data_vars})

    flags = xr.merge([
        named(metrics.telemetry.flags.gross_range((-1e6, 1e6), (-40, 1.1e5)), "range"),
        named(metrics.telemetry.flags.flat_line(0.0, 6, 12), "flat"),
        named(toolkit.zscore_flags(scores, threshold=4.5, values=metrics), "zflag"),
    ], compat="override", join="exact", combine_attrs="drop")
    result = xr.merge([
        named(window.mean(), "mean"), named(window.std(), "std"), named(scores, "zscore"),
        flags, regular[[f"{m}_count" for m in metrics.data_vars]],
    ], compat="override", join="exact", combine_attrs="drop")
    job = result.to_zarr(out, mode="w", compute=False, zarr_format=2, consolidated=True)
    built = time.perf_counter()
    submitted = time.time()  # the task stream's clock
    with contextlib.ExitStack() as stack:
        ts = stack.enter_context(get_task_stream(client)) if client else None
        dask.compute(job)
    written_at = time.perf_counter()
    if ts is not None:
        spans = [s for t in ts.data for s in t["startstops"] if s["action"] == "compute"]
        phases["write_busy"] = sum(s["stop"] - s["start"] for s in spans)
        # from submitting the graph to the first task running: the client
        # sending the graph and the scheduler taking it in
        phases["write_lead"] = min(s["start"] for s in spans) - submitted
        phases["write_span"] = max(s["stop"] for s in spans) - min(s["start"] for s in spans)
    events = toolkit.events.flags_to_events(xr.open_zarr(out)[list(flags.data_vars)],
                                            kind="flag")
    phases.update(build=built - started, write=written_at - built,
                  events_s=time.perf_counter() - written_at)
    return events


def run_pipeline(client, store, out, threads, memory=True):
    """One run; the memory sampler (which interrupts the workers) only if asked."""
    ds = xr.open_zarr(store)
    phases = {}
    started = time.perf_counter()
    with get_task_stream(client) as ts, PeakMemory(client, 0.2 if memory else None) as mem:
        events = pipeline(ds, out, phases, client)
    wall = time.perf_counter() - started
    busy = sum(s["stop"] - s["start"] for t in ts.data for s in t["startstops"]
               if s["action"] == "compute")
    return {"wall": wall, "busy": busy, "tasks": len(ts.data), "threads": threads,
            "peak": mem.peak, "spilled": mem.spilled, "events": len(events), **phases}


def cluster(n_workers, threads, memory_limit="4GiB"):
    """A local cluster of processes whose workers start with the environment
    :func:`toolkit.connect` gives them (:func:`toolkit.cluster.starting_workers`)."""
    with starting_workers(memory_limit, threads):
        return LocalCluster(n_workers=n_workers, threads_per_worker=threads, processes=True,
                            memory_limit=memory_limit, dashboard_address=None,
                            host="127.0.0.1")


#: the pipeline a researcher runs, as a pipeline file would give it
PIPELINE = {
    "grid": {"freq": "5min"},
    "checks": {"gross_range": {"fail": [-1e6, 1e6], "suspect": [-40, 1.1e5]},
               "flat_line": {"tolerance": 0.0, "suspect": 6, "fail": 12},
               "time_gap": {"max_gap": "30min"}},
    "detectors": {"zscore": {"window": 12, "threshold": 4.5, "min_count": 6},
                  "anomaly": {}},
    "output": {"report": False, "events": ["parquet"]},
}


def _cpu() -> float:
    """CPU seconds this process has used, all its threads."""
    t = psutil.Process().cpu_times()
    return t.user + t.system


def run_engine(client, store, out, threads, fuse=True):
    """One run of the pipeline engine on the gridded fleet in ``store``: wall time,
    tasks (in all and per chunk of devices), idle time between tasks while the
    workers computed, and the CPU seconds of the workers and of this process
    (the client, which also runs a local cluster's scheduler)."""
    pipeline = toolkit.Pipeline.from_dict(
        {**PIPELINE, "source": {"type": "zarr", "path": str(store)},
         "output": {**PIPELINE["output"], "folder": str(out)}})
    workers0, client0 = client.run(_cpu), _cpu()
    started = time.perf_counter()
    with get_task_stream(client) as ts:
        result = pipeline.run(client, progress=False, echo=lambda *a: None,
                              fuse_writes=fuse)
    wall = time.perf_counter() - started
    client_cpu = _cpu() - client0
    workers_cpu = sum(v - workers0[k] for k, v in client.run(_cpu).items())
    spans = [s for t in ts.data for s in t["startstops"] if s["action"] == "compute"]
    busy = sum(s["stop"] - s["start"] for s in spans)
    span = max(s["stop"] for s in spans) - min(s["start"] for s in spans)
    chunks = len({t["key"] for t in ts.data if "pipeline-chain" in str(t["key"])})
    return {"wall": wall, "tasks": len(ts.data), "chunks": chunks,
            "idle": 1 - busy / (span * threads), "events": len(result.events), "threads": threads,
            "workers_cpu": workers_cpu, "client_cpu": client_cpu}


def scaling(folder: Path, quick: bool):
    n_devices, days = (100, 7) if quick else (1000, 28)
    store = folder / "scaling.zarr"
    with cluster(2, 1) as lc, Client(lc) as client:
        seconds, nbytes = write_fleet(client, store, n_devices, days, per_chunk=PER_CHUNK)
    print(f"\n## Scaling: {n_devices} devices x {days} days at 1 min, "
          f"{nbytes / GiB:.2f} GiB in Zarr (chunks of {PER_CHUNK} devices x all times, "
          f"{PER_CHUNK * days * 1440 * 8 / 2**20:.0f} MiB)\n")
    print("The pipeline engine (toolkit.Pipeline, zarr source): regularise to 5 min, gross "
          "range, flat line, time gap, rolling z-score and the anomaly detector on "
          "4 metrics, every variable to Zarr, events. Idle: 1 - busy / (span x threads) "
          "over the tasks' own start and stop times.\n")
    rows = []
    shapes = (("1 worker x 1 thread", 1, 1, True), ("2 workers x 1 thread", 2, 1, True),
              ("1 worker x 2 threads", 1, 2, True),
              ("2 workers x 1 thread, writes through to_zarr", 2, 1, False))
    for label, n, threads, fuse in shapes:
        with cluster(n, threads) as lc, Client(lc) as client:
            run_engine(client, store, folder / "out", n * threads, fuse)  # warm: numba, zarr
            best = min((run_engine(client, store, folder / "out", n * threads, fuse)
                        for _ in range(2)), key=lambda r: r["wall"])
        rows.append((label, best))
    base = rows[0][1]["wall"]
    cores = len(os.sched_getaffinity(0))
    print("| cluster | wall s | speedup | tasks | tasks per chunk of devices "
          "| idle between tasks | events | workers' CPU s | client's CPU s "
          "| speedup of a perfect split |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, r in rows:
        # every CPU second of the run spread evenly over the machine's cores
        cpu = r["workers_cpu"] + r["client_cpu"]
        perfect = f"{base / (cpu / cores):.2f}x" if r["threads"] >= cores else "-"
        print(f"| {label} | {r['wall']:.2f} | {base / r['wall']:.2f}x | {r['tasks']} "
              f"| {r['tasks'] / max(r['chunks'], 1):.1f} | {r['idle']:.1%} | {r['events']} "
              f"| {r['workers_cpu']:.2f} | {r['client_cpu']:.2f} | {perfect} |")
    with dask.config.set(scheduler="threads", num_workers=2):
        pipeline = toolkit.Pipeline.from_dict(
            {**PIPELINE, "source": {"type": "zarr", "path": str(store)},
             "output": {**PIPELINE["output"], "folder": str(folder / "out")}})
        with Client(processes=False, n_workers=1, threads_per_worker=2,
                    dashboard_address=None) as client:
            pipeline.run(client, progress=False, echo=lambda *a: None)
            started = time.perf_counter()
            pipeline.run(client, progress=False, echo=lambda *a: None)
            wall = time.perf_counter() - started
    print(f"| one process, 2 threads (in-process cluster) | {wall:.2f} | {base / wall:.2f}x "
          "| | | | | | | |")
    print("\nThe client's CPU is this process's: the pipeline's own work on the client and "
          "the local cluster's scheduler. It shares the machine's cores with the workers, so "
          "with as many workers as cores it bounds the speedup: the last column is the "
          "speedup if all the run's CPU seconds, workers' and client's, were spread evenly "
          "over the cores.")
    accessor_chain(folder, store, quick)


def accessor_chain(folder: Path, store: Path, quick: bool):
    """The same kind of chain written with the accessor and to_zarr: tasks per chunk
    (the number before the pipeline engine fused it)."""
    with cluster(2, 1) as lc, Client(lc) as client:
        run_pipeline(client, store, folder / "out2.zarr", 2, memory=False)  # warm
        r = run_pipeline(client, store, folder / "out2.zarr", 2, memory=False)
    chunks = -(-xr.open_zarr(store).sizes["device"] // PER_CHUNK)
    idle = 1 - r["write_busy"] / (r["write_span"] * 2)
    print(f"\nThe accessor chain (regularize, rolling mean/std/z-score, three flag tests, "
          f"to_zarr, then flags_to_events), 2 workers x 1 thread: {r['wall']:.2f} s, "
          f"{r['tasks']} tasks = {r['tasks'] / chunks:.1f} per chunk of devices, idle "
          f"between tasks {idle:.1%}")


def against_xarray(folder: Path, quick: bool):
    n_devices, days = (100, 7) if quick else (500, 28)
    store = folder / "peer.zarr"
    with cluster(2, 1) as lc, Client(lc) as client:
        _, nbytes = write_fleet(client, store, n_devices, days, per_chunk=PER_CHUNK)
        ds = xr.open_zarr(store)[["temperature", "humidity", "pressure", "battery_voltage"]]
        ds = ds.drop_encoding().chunk(time=10_080)  # a week per chunk: the overlap matters
        print(f"\n## Rolling mean and std (window 60) vs xarray's own rolling: "
              f"{nbytes / GiB:.2f} GiB, chunks of {PER_CHUNK} devices x 1 week, "
              "2 workers x 1 thread\n")

        def ours():
            r = ds.telemetry.rolling(window=60)
            return xr.merge([r.mean().rename({m: f"{m}_mean" for m in ds.data_vars}),
                             r.std().rename({m: f"{m}_std" for m in ds.data_vars})],
                            compat="override", join="exact")

        def naive():
            r = ds.rolling(time=60)  # ddof=1: the same statistic as ours and pandas'
            return xr.merge([r.mean().rename({m: f"{m}_mean" for m in ds.data_vars}),
                             r.std(ddof=1).rename({m: f"{m}_std" for m in ds.data_vars})],
                            compat="override", join="exact")

        results = {}
        for name, make in (("toolkit", ours), ("xarray rolling", naive)):
            # persisted on the workers, then released (xarray's result has
            # uneven chunks that Zarr cannot take)
            wait(client.persist(make()))  # warm-up
            client.run(lambda: __import__("gc").collect())
            times, peak = [], 0
            for _ in range(2):
                with PeakMemory(client) as mem:
                    started = time.perf_counter()
                    held = client.persist(make())
                    wait(held)
                    times.append(time.perf_counter() - started)
                peak = max(peak, mem.peak)
                del held
            sample = make().isel(device=slice(0, 5)).compute()
            results[name] = (min(times), peak, sample)
        a, b = results["toolkit"][2], results["xarray rolling"][2]
        err = max(float(abs(a[v] - b[v]).max()) for v in a.data_vars)
        print("| method | wall s | ratio | peak worker RSS | ratio |")
        print("|---|---|---|---|---|")
        t0, m0 = results["toolkit"][:2]
        for name, (t, m, _) in results.items():
            print(f"| {name} | {t:.2f} | {t / t0:.2f}x | {m / GiB:.2f} GiB | {m / m0:.2f}x |")
        print(f"\nlargest difference between the two (first 5 devices): {err:.2e}")


def beyond_memory(folder: Path, quick: bool):
    memory_limit = "1GiB"
    n_devices, days = (40, 60) if quick else (1000, 200)
    store = folder / "big.zarr"
    with cluster(2, 1, memory_limit) as lc, Client(lc) as client:
        # no injected anomalies: scheduling them calibrates each against its
        # whole series on the client, minutes for a fleet this size
        seconds, nbytes = write_fleet(client, store, n_devices, days, per_chunk=10,
                                      anomaly_rate=0.0)
        on_disk = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
        print(f"\n## Beyond memory: {n_devices} devices x {days} days at 1 min, 4 metrics\n")
        print(f"- store: {on_disk / GiB:.2f} GiB on disk ({nbytes / GiB:.2f} GiB of data), "
              f"written in {seconds:.0f} s")
        print(f"- cluster: 2 workers x 1 thread, memory limit {memory_limit} each "
              f"(store / total limit = {on_disk / (2 * GiB):.1f}x)")
        pids = set(client.run(os.getpid).values())
        r = run_pipeline(client, store, folder / "big-out.zarr", 2)
        same = set(client.run(os.getpid).values()) == pids
    print(f"- pipeline (regularize 5min -> rolling mean/std/z-score -> gross range, flat "
          f"line, z-score flags -> Zarr -> events): {r['wall']:.0f} s, {r['tasks']} tasks, "
          f"{r['events']} events")
    print(f"- peak worker RSS {r['peak'] / GiB:.2f} GiB (limit 1.00 GiB); largest spill to "
          f"disk {r['spilled'] / 2**20:.0f} MiB; same worker processes at the end: {same}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", choices=["scaling", "xarray", "beyond", "all"])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--dir", help="folder for the Zarr stores (default: a temporary one)")
    args = parser.parse_args(argv)
    folder = Path(args.dir or tempfile.mkdtemp(prefix="toolkit-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if args.suite in ("scaling", "all"):
            scaling(folder, args.quick)
        if args.suite in ("xarray", "all"):
            against_xarray(folder, args.quick)
        if args.suite in ("beyond", "all"):
            beyond_memory(folder, args.quick)
    finally:
        if not args.dir:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
