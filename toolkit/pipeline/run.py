"""Run a pipeline: samples -> grid -> checks and detectors -> store, events, summary, report.

One engine does full and incremental runs. A full run grids every input and
runs :func:`~toolkit.pipeline.chain.run_chain` over all bins, one task per
chunk of devices. It keeps, in ``<output>/.pipeline/``, what the next run
needs to go on from where it stopped:

- the raw samples of the last bin (it may still fill up);
- the bins that the window steps look back on (their largest ``before``);
- each scan's state, and each flag's run still open;
- which inputs it read.

An incremental run grids only the new inputs (plus the samples kept) from
the last bin on, and recomputes from ``last bin - after`` (the steps'
largest ``after`` halo), so it writes the same numbers a full run over
everything would. It resizes the Zarr store along time, writes that region,
extends the events table (an event open at the end is extended, not
repeated) and rewrites the summary and report. The state file is replaced
last, atomically: a run killed at any point and run again gives the same
result.

A full run happens instead, saying why, when there is no earlier run, the
checks or grid changed, an input read before changed, or the new samples
reach back before the last run's last bin or bring new devices or metrics.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import dask
import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr

from .. import alerts as alerts_mod
from ..chunking import chunk_sizes
from ..cluster import connect
from ..errors import ArgumentError, LoadError
from ..execution.progress import check_interrupted, compute_all
from ..io.grid import LoadReport, samples_to_grid
from ..model import DEVICE, TIME, count_attrs, count_name
from ..report import health_from_counts, health_summary, write_report
from . import sources
from .chain import EVENT_COLUMNS, INDEX_COLUMNS, Plan, empty_events, run_chain
from .config import PipelineError, check_config, read_config
from .steps import build_steps, reach

STATE_DIR = ".pipeline"
STORE = "telemetry.zarr"
STATE_VERSION = 1
#: bins per Zarr chunk along time
TIME_CHUNK = 4096


def on_stored_chunks(dc: int, stored: xr.Dataset, per_device: int, limits=()) -> int:
    """The device chunk ``dc`` of the chain tasks, moved onto the source store's
    own device chunks.

    A task reads whole stored chunks, so a task whose devices cut a stored
    chunk reads it again for every task that shares it: with 250 devices per
    stored chunk and 72 per task, the scaling benchmark's workers read 3.5
    times the store, and spent 40% of their time in the system copying and
    mapping it. ``dc`` becomes a multiple of the stored chunk when it is at
    least one. When it is smaller, a task takes one stored chunk whole if
    that fits a quarter of the smallest of the workers' memory ``limits``
    (``per_device`` bytes a device; no limit known: it fits), and ``dc``
    stays as it is if not.

    Examples
    --------
    >>> ds = xr.Dataset({"t": (("device", "time"), np.zeros((10, 4)))})
    >>> ds.t.encoding["preferred_chunks"] = {"device": 4, "time": 4}
    >>> on_stored_chunks(9, ds, 100), on_stored_chunks(3, ds, 100)
    (8, 4)
    >>> on_stored_chunks(3, ds, 100, limits=[1000])  # 4 x 100 > 1000 / 4
    3
    """
    sizes = {stored[m].encoding.get("preferred_chunks", {}).get(DEVICE)
             for m in stored.data_vars}
    if len(sizes) != 1 or None in sizes:
        return dc
    (chunk,) = sizes
    if chunk >= stored.sizes[DEVICE]:
        return dc
    if dc >= chunk:
        return dc // chunk * chunk
    known = [x for x in limits if x]
    if known and chunk * per_device > min(known) / 4:
        return dc
    return chunk


@dataclass
class RunResult:
    """What a run did and wrote (paths inside the output folder)."""

    mode: str
    reason: str
    run: int
    folder: Path
    store: Path | None = None
    events: pd.DataFrame | None = None
    health: pd.DataFrame | None = None
    report: Path | None = None
    load_report: LoadReport | None = None
    bins: int = 0
    new_bins: int = 0
    seconds: float = 0.0
    alerts: object = None
    extra: dict = field(default_factory=dict)

    def __str__(self) -> str:
        if self.mode == "nothing new":
            return f"run {self.run}: nothing new since the last run ({self.seconds:.1f} s)"
        n_events = 0 if self.events is None else len(self.events)
        return (f"run {self.run} ({self.mode}{': ' + self.reason if self.reason else ''}): "
                f"{self.bins:,} bins ({self.new_bins:,} written), {n_events:,} events, in "
                f"{self.seconds:.1f} s -> {self.folder}")


class Pipeline:
    """A described job: source, grid, checks, detectors, outputs, alerts, cluster.

    Build one from a TOML file (:meth:`from_file`) or from a dict of the
    same sections (:meth:`from_dict`); every key is checked at once (see
    :mod:`toolkit.pipeline.config`).

    Examples
    --------
    >>> import tempfile
    >>> p = Pipeline.from_dict({
    ...     "source": {"type": "synthetic", "devices": 4, "days": 0.5},
    ...     "grid": {"freq": "1min"},
    ...     "checks": {"time_gap": {"max_gap": "10min"}},
    ...     "detectors": {"zscore": {"window": 60, "threshold": 6.0}},
    ...     "output": {"folder": tempfile.mkdtemp()}})
    >>> result = p.run(client, progress=False, echo=lambda *a: None)  # doctest: +SKIP
    >>> sorted(result.events.columns)  # doctest: +SKIP
    ['device', 'end', 'kind', 'metric', 'score', 'severity', 'start']
    """

    def __init__(self, config: dict):
        self.config = config

    @classmethod
    def from_file(cls, path) -> Pipeline:
        """Read and check a pipeline file; raises :class:`PipelineError` naming key and line."""
        return cls(read_config(path))

    @classmethod
    def from_dict(cls, raw: dict, *, base=None, name: str = "pipeline") -> Pipeline:
        """Check a pipeline given as a dict (relative paths from ``base``, default cwd)."""
        return cls(check_config(raw, name=name, base=base))

    @property
    def folder(self) -> Path:
        return Path(self.config["output"]["folder"])

    def connect(self):
        """A client for the pipeline's ``[cluster]`` (a local cluster by default)."""
        c = dict(self.config["cluster"])
        address = c.pop("address", None)
        shape = {"n_workers": c["workers"]} if "workers" in c else {}
        if "threads_per_worker" in c:
            shape["threads_per_worker"] = c["threads_per_worker"]
        if "memory_limit" in c:
            shape["memory_limit"] = c["memory_limit"]
        return connect(address, **shape)

    def run(self, client=None, *, incremental: bool = False, echo=print,
            progress: bool = True, fuse_writes: bool = True) -> RunResult:
        """Run once: everything, or with ``incremental=True`` only what is new.

        Parameters
        ----------
        client : distributed.Client, optional
            Where to run (default: the pipeline's ``[cluster]``, started
            and closed here).
        incremental : bool
            Go on from the last run's state (see the module docstring); a
            full run when that cannot be exact, saying why.
        echo : callable
            Receives each progress line (default print).
        progress : bool
            Draw a progress bar over the Dask work.
        fuse_writes : bool
            Each chain task writes its devices' region of every variable to
            the store itself (default): one task per chunk of devices in
            all. False writes through xarray's ``to_zarr``, a task per
            variable and store chunk -- the same store, for comparison.
        """
        own = client is None
        if own:
            client = self.connect()
        try:
            return _Run(self.config, client, incremental, echo, progress, fuse_writes).go()
        finally:
            if own:
                client.close()

    def run_every(self, every, client=None, *, runs: int | None = None, echo=print,
                  progress: bool = True) -> list[RunResult]:
        """Incremental runs every ``every`` (a duration, or seconds), ``runs`` times
        or until Ctrl-C."""
        seconds = every if isinstance(every, (int, float)) else \
            pd.Timedelta(every).total_seconds()
        if not seconds > 0:
            raise ArgumentError(f"every must be a positive duration, got {every!r}")
        own = client is None
        if own:
            client = self.connect()
        results = []
        try:
            while runs is None or len(results) < runs:
                began = time.monotonic()
                result = _Run(self.config, client, True, echo, progress).go()
                echo(str(result))
                results.append(result)
                if runs is not None and len(results) >= runs:
                    break
                while time.monotonic() - began < seconds:
                    check_interrupted()
                    time.sleep(min(0.2, seconds))
        finally:
            if own:
                client.close()
        return results


def config_hash(config: dict) -> str:
    """What the results depend on (not the outputs, alerts or cluster)."""
    source = {k: v for k, v in config["source"].items() if k not in ("paths",)}
    key = json.dumps([source, config["grid"], config["checks"], config["detectors"],
                      config["metrics"]], sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class _Run:
    def __init__(self, config, client, incremental, echo, progress, fuse_writes=True):
        self.c, self.client, self.incremental = config, client, incremental
        self.fuse_writes = fuse_writes
        self.echo, self.progress = echo, progress
        self.out = Path(config["output"]["folder"])
        self.state_dir = self.out / STATE_DIR
        self.step = pd.Timedelta(config["grid"]["freq"])
        self.started = time.perf_counter()

    # --- deciding what to do ---

    def go(self) -> RunResult:
        self.out.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(exist_ok=True)
        self.echo(f"Dask dashboard: {self.client.dashboard_link}")
        src = self.c["source"]
        state = read_state(self.state_dir) if self.incremental else None
        reason = ""
        if self.incremental and src["type"] in ("synthetic", "zarr"):
            what = "a synthetic source has" if src["type"] == "synthetic" else \
                "a gridded Zarr source is read whole and has"
            raise ArgumentError(f"{what} no new data to add: run it without incremental")
        if self.incremental and state is None:
            reason = f"no earlier run in {self.out}"
        elif state is not None and state["config"] != config_hash(self.c):
            reason, state = "the grid, checks or detectors changed since the last run", None
        run_no = (state["run"] + 1) if state else _next_run(self.state_dir)
        if src["type"] in ("synthetic", "zarr"):
            return self.full(run_no, reason or "")
        now = sources.inventory(src, self.out, self.echo)
        if state is not None:
            why = sources.changes(src["type"], state["inputs"], now)
            if why:
                reason, state = why, None
        if state is None:
            return self.full(run_no, reason, now)
        new = [name for name in now if name not in state["inputs"]]
        if not new:
            return RunResult("nothing new", "", state["run"], self.out,
                             seconds=time.perf_counter() - self.started)
        loaded = sources.load(src, new, self.out, run_no, list(now))
        why = self.cannot_extend(state, loaded)
        if why:
            return self.full(run_no, why, now)
        inputs = {**state["inputs"], **{k: now[k] for k in new}}
        return self.extend(run_no, state, loaded, inputs)

    def cannot_extend(self, state, loaded) -> str | None:
        last_bin = state["grid_start"] + state["step_ns"] * (state["n"] - 1)
        times = [s["tmin"] for s in loaded.summaries if s["tmin"] is not None]
        if times and min(times) < last_bin:
            return (f"new samples reach back to {pd.Timestamp(min(times))}, before the last "
                    f"run's last bin {pd.Timestamp(last_bin)}")
        devices = {d for s in loaded.summaries for d in s["devices"]} - set(state["devices"])
        if devices:
            return f"{len(devices)} new device(s), such as {sorted(devices)[0]!r}"
        metrics = {m for s in loaded.summaries for m in s["metrics"]} - set(state["metrics"])
        if metrics:
            return f"new metric(s) {sorted(metrics)}"
        return None

    # --- the two kinds of run ---

    def full(self, run_no: int, reason: str, inputs: dict | None = None) -> RunResult:
        if self.incremental:
            self.echo(f"a full run: {reason}")
        # an incremental run must never start from a store this run half rewrote
        (self.state_dir / "state.json").unlink(missing_ok=True)
        src, grid_cfg = self.c["source"], self.c["grid"]
        fleet, loaded = None, None
        if src["type"] == "synthetic":
            n_bins = round(pd.Timedelta(days=src.get("days", 14.0)) / self.step)
            fleet, grid = sources.synthetic(src, grid_cfg["freq"], chunks=self.device_chunk(
                src.get("devices", 100), n_bins, 16))
            report, blocks = None, []
            self.echo(f"fleet: {grid.sizes[DEVICE]} devices x {grid.sizes[TIME]:,} bins "
                      f"(synthetic, {len(fleet.events)} injected anomalies)")
        elif src["type"] == "zarr":
            grid = sources.gridded(src, grid_cfg["freq"], grid_cfg["how"])
            report, blocks = None, []
            self.echo(f"fleet: {grid.sizes[DEVICE]} devices x {grid.sizes[TIME]:,} bins "
                      f"(from {src['path']})")
        else:
            names = list(inputs)
            loaded = sources.load(src, names, self.out, run_no, names, bins=(
                int(self.step.value), grid_cfg["how"], grid_cfg["duplicates"]))
            grid = samples_to_grid(loaded.blocks, loaded.summaries, loaded.report,
                                   freq=grid_cfg["freq"], how=grid_cfg["how"],
                                   duplicates=grid_cfg["duplicates"], metrics=loaded.metrics,
                                   units=loaded.units, source=loaded.source,
                                   loader="pipeline",
                                   block_partials=loaded.extra.get("partials"))
            report, blocks = loaded.report, loaded.blocks
            self.echo(str(report))
        metrics = [str(m) for m in grid.data_vars if not str(m).endswith("_count")]
        devices = np.asarray(grid[DEVICE].values).astype(str)
        n = grid.sizes[TIME]
        grid_start = int(pd.Timestamp(grid[TIME].values[0]).value)
        steps = build_steps(self.c, metrics, self.step)
        before, after = reach(steps)
        dc = self.device_chunk(len(devices), n, len(steps) + 2 * len(metrics))
        if src["type"] == "zarr":  # the task also holds its devices' samples as stored
            stored = xr.open_zarr(src["path"])[metrics]
            raw = stored.sizes[TIME]
            dc = min(dc, self.device_chunk(len(devices), raw, len(metrics)))
            limits = [w.get("memory_limit") for w in
                      self.client.scheduler_info().get("workers", {}).values()]
            dc = on_stored_chunks(dc, stored, 8 * (raw * len(metrics) + n * (
                len(steps) + 2 * len(metrics))), limits)
        plan = Plan(tuple(steps), tuple(metrics), grid_start, int(self.step.value), 0, 0,
                    max(0, n - 1 - after), n)
        keep = max(0, plan.s - before)
        if src["type"] == "zarr":  # each chain task reads and bins its own devices
            values = [sources.GriddedSlice(src["path"], tuple(metrics), grid_cfg["freq"],
                                           grid_cfg["how"], lo, min(lo + dc, len(devices)), n)
                      for lo in range(0, len(devices), dc)]
            counts = None
        else:
            grid = grid.chunk({DEVICE: dc, TIME: -1})
            values = {m: grid[m].data for m in metrics}
            counts = {m: grid[count_name(m)].data for m in metrics}
        units = {m: grid[m].attrs.get("units") for m in metrics if grid[m].attrs.get("units")}
        meta = {"config": config_hash(self.c), "grid_start": grid_start,
                "step_ns": int(self.step.value), "devices": devices.tolist(),
                "metrics": metrics, "units": units, "dc": dc, "before": before,
                "after": after, "inputs": inputs or {}}
        return self.execute(run_no, "full", reason, plan, keep, devices, values, counts,
                            None, blocks, None, meta, report, fleet=fleet,
                            attrs=grid.attrs)

    def extend(self, run_no, state, loaded, inputs) -> RunResult:
        g = self.c["grid"]
        last = state["n"] - 1
        t_last = state["grid_start"] + state["step_ns"] * last
        arrays = load_arrays(self.state_dir, state)
        carried = arrays["carried"]
        blocks, summaries = list(loaded.blocks), list(loaded.summaries)
        report = loaded.report
        if carried.rows:
            blocks.append(dask.delayed(carried))
            summaries.append(carried.summary())
            report.samples += carried.rows
            report.samples_valid += carried.rows
        grid = samples_to_grid(blocks, summaries, report, freq=g["freq"], how=g["how"],
                               duplicates=g["duplicates"], start=pd.Timestamp(t_last),
                               metrics=state["metrics"], units=state["units"],
                               source=loaded.source, loader="pipeline")
        self.echo(f"new since the last run (and {carried.rows:,} samples of its last bin):\n"
                  f"{report}")
        metrics, devices = state["metrics"], np.asarray(state["devices"], dtype=str)
        fill = {m: np.nan for m in metrics} | {count_name(m): 0 for m in metrics}
        grid = grid.reindex({DEVICE: devices.astype(object)}, fill_value=fill)
        n = last + grid.sizes[TIME]
        steps = build_steps(self.c, metrics, self.step)
        before, after = state["before"], state["after"]
        i0 = state["keep"]
        plan = Plan(tuple(steps), tuple(metrics), state["grid_start"], state["step_ns"], i0,
                    state["s"], max(state["s"], n - 1 - after), n)
        keep = max(i0, plan.s - before)
        dc = state["dc"]
        grid = grid.chunk({DEVICE: dc, TIME: -1})
        values, counts = {}, {}
        for m in metrics:
            new_v = grid[m].data.astype(np.float64)
            new_c = grid[count_name(m)].data.astype(np.int32)
            head_v, head_c = arrays["tail"][m], arrays["tail"][count_name(m)]
            if head_v.shape[1]:  # the bins the windows look back on
                new_v = dsa.concatenate([dsa.from_array(head_v, chunks=(dc, -1)), new_v],
                                        axis=1)
                new_c = dsa.concatenate([dsa.from_array(head_c, chunks=(dc, -1)), new_c],
                                        axis=1)
            values[m], counts[m] = new_v, new_c
        meta = {k: state[k] for k in ("config", "grid_start", "step_ns", "devices", "metrics",
                                      "units", "dc", "before", "after")}
        meta["inputs"] = inputs
        return self.execute(run_no, "incremental", "", plan, keep, devices, values, counts,
                            arrays, blocks, state, meta, report, attrs={})

    def device_chunk(self, n_devices, n_bins, n_vars) -> int:
        workers = max(1, len(self.client.scheduler_info().get("workers", {})))
        per = chunk_sizes(n_devices, n_bins, 8 * max(1, n_vars))[DEVICE]
        return max(1, min(per, -(-n_devices // (2 * workers))))

    # --- running the chain and writing everything ---

    def execute(self, run_no, mode, reason, plan: Plan, keep, devices, values, counts, arrays,
                blocks, state, meta, report, *, fleet=None, attrs=None) -> RunResult:
        dc = meta["dc"]
        bounds = list(range(0, len(devices), dc)) + [len(devices)]
        read_in_task = isinstance(values, list)  # GriddedSlices, one per chunk of devices
        # (slices of a store that may change between runs: the run's time is in their keys)
        token = dask.base.tokenize(plan, keep, run_no, meta["config"],
                                   (values, time.time_ns()) if read_in_task else
                                   [values[m].name for m in plan.metrics])
        store = self.out / STORE
        width = plan.n - plan.r
        names, dtypes = _output_names(plan)
        fused = self.fuse_writes
        # A full run with fused writes starts its chain tasks before the
        # store's metadata is written: the client writes it while they
        # compute, then leaves the file `ready`, which each task waits for
        # before it writes its region (_while_writing, _wait_until_ready).
        # (A file, not a Dask Variable: waiting on one made each worker a
        # client, whose teardown at Ctrl-C printed a traceback.)
        concurrent = fused and mode == "full"
        ready = self.out / f".{STORE}-{token}.ready"
        results = []
        for i in range(len(bounds) - 1):
            lo, hi = bounds[i], bounds[i + 1]
            if read_in_task:
                v, c = values[i], None
            else:
                v = {m: values[m].blocks[i, 0] if values[m].numblocks[1] == 1 else
                     values[m][lo:hi].rechunk((hi - lo, -1)) for m in plan.metrics}
                c = {m: counts[m].blocks[i, 0] if counts[m].numblocks[1] == 1 else
                     counts[m][lo:hi].rechunk((hi - lo, -1)) for m in plan.metrics}
            st = {} if arrays is None else {k: _rows(s, lo, hi)
                                            for k, s in arrays["states"].items()}
            op = {} if arrays is None else {k: _rows(s, lo, hi)
                                            for k, s in arrays["opens"].items()}
            target = (str(store), lo, hi, str(ready) if concurrent else None) if fused else None
            results.append(dask.delayed(_chain_task, pure=True)(
                plan, keep, devices[lo:hi], v, c, st, op, target,
                dask_key_name=f"pipeline-chain-{token}-{i}"))
        variables = {}
        for name, dtype in zip(names, dtypes, strict=True):
            if fused:
                # a template: only its metadata is written, the chain tasks
                # write the rest. One chunk and a name: its store graph is
                # built (on the client, while the chain tasks compute) but
                # never run, and tokenising 40 templates cost 0.09 s before
                # the first task could start
                data = dsa.zeros((len(devices), width), chunks=(len(devices), width),
                                 dtype=dtype, name=f"pipeline-template-{name}-{token}")
            else:
                data = dsa.concatenate([dsa.from_delayed(dask.delayed(_pick, pure=True)(
                    res, name, dask_key_name=f"pipeline-{name}-{token}-{i}"),
                    shape=(bounds[i + 1] - bounds[i], width), dtype=dtype)
                    for i, res in enumerate(results)], axis=0)
            variables[name] = ((DEVICE, TIME), data, _attrs(name, plan, meta))
        times = pd.to_datetime(plan.times(plan.r, plan.n), unit="ns")
        ds = xr.Dataset(variables, coords={DEVICE: devices.astype(object), TIME: times})
        t_last = plan.grid_start + plan.step_ns * (plan.n - 1)
        kept = [dask.delayed(sources.tail_samples, pure=True)(b, t_last) for b in blocks]
        if mode == "full":
            # no run time in the attributes: the same inputs give the same store
            ds.attrs.update({"title": self.c["title"], "source": (attrs or {}).get("source", ""),
                             "pipeline": meta["config"]})
            enc = {name: {"chunks": (dc, TIME_CHUNK)} for name in names}
            enc[TIME] = {"units": "nanoseconds since 1970-01-01", "dtype": "int64"}

            def write_metadata():
                if store.exists():
                    shutil.rmtree(store)
                write = ds.to_zarr(store, mode="w", compute=False, zarr_format=2,
                                   consolidated=False, encoding=enc)
                if concurrent:  # the chain tasks write data only: consolidated now
                    _consolidate(store)
                return write

            write = None if concurrent else write_metadata()
        else:
            _resize(store, plan.n, plan.r, plan.times(plan.r, plan.n))
            write = None if fused else ds.drop_vars([DEVICE, TIME]).to_zarr(
                store, region={TIME: slice(plan.r, plan.n)}, mode="r+", compute=False,
                zarr_format=2, consolidated=False, safe_chunks=False)
        self.echo(f"{mode} run {run_no}: {len(plan.steps)} checks and detectors over "
                  f"{len(devices)} devices, bins {plan.r:,}..{plan.n - 1:,}, writing {store}")
        # each chain task's small part (events, states, counts) comes to the
        # client as soon as that task ends, while the others still run
        jobs = [dask.delayed(_part, pure=True)(r) for r in results] + kept
        if write is not None:
            jobs.append(write)

        def run_jobs():
            done = compute_all(self.client, jobs, show_progress=self.progress)
            return done[:len(results)], done[len(results):len(results) + len(kept)]

        if concurrent:
            parts, kept_parts = _while_writing(write_metadata, ready, run_jobs)
        else:
            parts, kept_parts = run_jobs()
            _consolidate(store)
        check_interrupted()
        new_events = pd.concat([p["events"] for p in parts], ignore_index=True) \
            if parts else empty_events()
        old = empty_events() if state is None else arrays["events"]
        old = old[old["last"] < plan.r - 1]
        table = pd.concat([x for x in (old, new_events) if len(x)] or [empty_events()],
                          ignore_index=True)
        table = table.sort_values(["device", "metric", "kind", "start"], ignore_index=True)
        events = table[EVENT_COLUMNS]
        metrics = list(plan.metrics)
        written = flags = None
        if mode != "full" or self.c["output"]["report"]:  # (a full run needs no reading)
            written = xr.open_zarr(store, consolidated=True)
            flags = written[[f"{m}_flag" for m in metrics]].rename(
                {f"{m}_flag": m for m in metrics})
        if mode == "full":  # counted in the chain tasks: the store is not read again
            present = np.concatenate([p["health"][0] for p in parts])
            codes = {c: np.concatenate([p["health"][1][c] for p in parts])
                     for c in parts[0]["health"][1]} if parts else {}
            health = health_from_counts(devices, present, len(metrics) * plan.n, codes, events)
        else:  # an incremental run counts the whole store, earlier runs included
            health = health_summary(written[metrics], flags, events)
        _write_table(events, self.out / "events", self.c["output"]["events"])
        _atomic(self.out / "health.csv", lambda p: health.to_csv(p))
        runs = ([] if state is None else state.get("runs", [])) + [{
            "run": run_no, "mode": mode, "reason": reason, "bins": plan.n,
            "written": plan.n - plan.r, "events": len(events),
            "at": pd.Timestamp.now("UTC").isoformat(timespec="seconds"),
            "load_report": None if report is None else str(report)}]
        report_path = None
        if self.c["output"]["report"]:
            report_path = self.write_report(written, flags, events, runs)
        sent = None
        if self.c["alerts"]:
            a = self.c["alerts"]
            chosen = events if a["min_severity"] == "suspect" else \
                events[events["severity"] == "fail"]
            sent = alerts_mod.post(chosen, a["url"], token_env=a.get("token_env"),
                                   batch_size=a.get("batch_size", 100),
                                   failed_path=self.out / "alerts-failed.csv")
            self.echo(str(sent))
        self.save_state(run_no, plan, keep, meta, parts, kept_parts, table, runs)
        result = RunResult(mode, reason, run_no, self.out, store, events, health, report_path,
                           report, plan.n, plan.n - plan.r,
                           time.perf_counter() - self.started, sent)
        if fleet is not None:
            result.extra["fleet"] = fleet
        return result

    def write_report(self, written, flags, events, runs) -> Path:
        metrics = list(flags.data_vars)
        c = self.c
        params = {"source": c["source"]["type"], "grid": f"{c['grid']['freq']} "
                  f"({c['grid']['how']}, duplicates {c['grid']['duplicates']})",
                  "runs": f"{len(runs)} ({runs[-1]['mode']} last"
                  f"{': ' + runs[-1]['reason'] if runs[-1]['reason'] else ''})"}
        for name, p in c["checks"].items():
            params[f"check {name}"] = json.dumps(p)
        for name, p in c["detectors"].items():
            params[f"detector {name}"] = json.dumps(p)
        for m, own in c["metrics"].items():
            params[f"metric {m}"] = json.dumps(own)
        loads = "\n\n".join(f"run {r['run']} ({r['mode']}):\n{r['load_report']}"
                            for r in runs[-5:] if r["load_report"])
        path = self.out / "report.html"
        _atomic(path, lambda p: write_report(p, written[metrics], flags=flags, events=events,
                                             params=params, load_report=loads or None,
                                             title=c["title"], client=self.client))
        return path

    def save_state(self, run_no, plan, keep, meta, parts, kept_parts, table, runs):
        arrays = {}
        for m in plan.metrics:
            for name in (m, count_name(m)):
                arrays[f"tail/{name}"] = np.concatenate([p["tail"][name] for p in parts])
        for key in parts[0]["states"] if parts else ():
            first = parts[0]["states"][key]
            if first is None:
                continue
            if isinstance(first, tuple):
                for k in range(len(first)):
                    arrays[f"state/{key}/{k}"] = np.concatenate(
                        [p["states"][key][k] for p in parts])
            else:
                arrays[f"state/{key}/-"] = np.concatenate([p["states"][key] for p in parts])
        for name in parts[0]["opens"] if parts else ():
            for k, label in enumerate(("start", "peak", "worst")):
                arrays[f"open/{name}/{label}"] = np.concatenate(
                    [p["opens"][name][k] for p in parts])
        carried = sources.as_samples([k for k in kept_parts if len(k["time"])])
        arrays["carried/device"] = np.asarray(carried.devices, dtype=str)
        arrays["carried/device_codes"] = carried.device_codes
        arrays["carried/metric"] = np.asarray(carried.metrics, dtype=str)
        arrays["carried/metric_codes"] = carried.metric_codes
        arrays["carried/time"] = carried.times
        arrays["carried/value"] = carried.values
        npz = f"state-{run_no}.npz"
        events_file = f"events-{run_no}.parquet"
        with open(self.state_dir / npz, "wb") as f:
            np.savez(f, **arrays)
        table.to_parquet(self.state_dir / events_file, index=False)
        state = {**meta, "version": STATE_VERSION, "run": run_no, "n": plan.n, "s": plan.s,
                 "keep": keep, "arrays": npz, "events": events_file, "runs": runs}
        _atomic(self.state_dir / "state.json",
                lambda p: Path(p).write_text(json.dumps(state, indent=1, default=str)))
        for old in self.state_dir.iterdir():
            if old.name not in ("state.json", npz, events_file, "next-run"):
                old.unlink() if old.is_file() else shutil.rmtree(old, ignore_errors=True)
        (self.state_dir / "next-run").write_text(str(run_no + 1))


def _chain_task(plan, keep, devices, values, counts, states, opens, target=None):
    """The chain of one chunk of devices; with ``target`` (store, first device, end)
    it also writes the chunk's region of every variable (one task does it all).
    ``values`` may be a :class:`sources.GriddedSlice`, read and binned here."""
    if isinstance(values, sources.GriddedSlice):
        values, counts = values.load()
    res = run_chain(plan, devices, values, counts, states, opens)
    lo, hi = keep - plan.i0, plan.n - 1 - plan.i0
    res["tail"] = {}
    for m in plan.metrics:
        res["tail"][m] = np.ascontiguousarray(values[m][:, lo:hi])
        res["tail"][count_name(m)] = np.ascontiguousarray(counts[m][:, lo:hi])
    if target is not None:
        import zarr

        store, d0, d1, ready = target
        if ready is not None:
            _wait_until_ready(ready)
        group = zarr.open_group(store, mode="r+", zarr_format=2, use_consolidated=False)
        for name, data in res.pop("vars").items():
            group[name][d0:d1, plan.r:plan.n] = data
    return res


def _consolidate(store: Path) -> None:
    import zarr

    zarr.consolidate_metadata(str(store), zarr_format=2)


#: how long a chain task waits for the store's metadata before it gives up
READY_TIMEOUT = 600.0


def _while_writing(write_metadata, ready: Path, run):
    """``run()`` while another thread writes the store's metadata, then leaves
    ``ready`` ("ok", or the error that stopped it, which the chain tasks
    waiting for it raise). The metadata's own error wins over theirs.

    When ``run()`` fails (a chain task's error, the metadata's, Ctrl-C), chain
    tasks may still be running on the workers and will look for ``ready``:
    it stays, saying what it says, so that none is left waiting for it; the
    next run in the folder removes it (:func:`_remove_markers`). After a
    run that succeeded every task has read it, and it is removed here.
    """
    failed = []
    _remove_markers(ready.parent, ready.name)  # of earlier runs that failed or were killed

    def writer():
        try:
            write_metadata()
            ready.write_text("ok")
        except BaseException as err:  # noqa: BLE001 - handed to the client below
            failed.append(err)
            ready.write_text(f"failed: {type(err).__name__}: {err}")

    thread = threading.Thread(target=writer, name="toolkit-store-metadata", daemon=True)
    thread.start()
    try:
        result = run()
    except BaseException:
        thread.join()
        if failed:  # in place of the chain tasks' report of it
            raise failed[0] from None
        raise
    thread.join()
    ready.unlink(missing_ok=True)
    if failed:
        raise failed[0]
    return result


def _remove_markers(folder: Path, name: str) -> None:
    """Remove the metadata markers (``.<store>-<token>.ready``) left in ``folder``."""
    stem = name.rsplit("-", 1)[0]  # ".<store>"
    for old in folder.glob(f"{stem}-*.ready"):
        old.unlink(missing_ok=True)


def _wait_until_ready(ready: str, timeout: float = READY_TIMEOUT) -> None:
    """Wait (on a worker) until the client has written the store's metadata."""
    path = Path(ready)
    if not path.parent.is_dir():  # the client made it: this worker does not see it
        raise PipelineError(
            f"the output folder {path.parent} is not visible from this worker; the "
            "workers write the store there, so it must be shared with them")
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        try:
            text = path.read_text()
        except FileNotFoundError:
            text = ""
        if text == "ok":
            return
        if text.startswith("failed"):
            raise PipelineError(f"the output store's metadata could not be written ({text})")
        if time.monotonic() > deadline:
            raise PipelineError(
                f"the output store's metadata was not written within {timeout:.0f} s "
                f"(no {path.name} in {path.parent}); is the output folder shared with "
                "the workers?")
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def _pick(res, name):
    return res["vars"][name]


def _part(res):
    """A chain task's result without its variables (they are in the store)."""
    return {k: v for k, v in res.items() if k != "vars"}


def _rows(state, lo, hi):
    if isinstance(state, tuple):
        return tuple(a[lo:hi] for a in state)
    return state[lo:hi]


def _output_names(plan: Plan):
    names, dtypes = [], []
    for m in plan.metrics:
        names += [m, count_name(m)]
        dtypes += [np.float64, np.int32]
    for st in plan.steps:
        names.append(st.flag_name)
        dtypes.append(np.int8)
        if st.score_name:
            names.append(st.score_name)
            dtypes.append(np.float64)
    for m in plan.metrics:
        names.append(f"{m}_flag")
        dtypes.append(np.int8)
    return names, dtypes


def _attrs(name: str, plan: Plan, meta: dict) -> dict:
    for m in plan.metrics:
        if name == m:
            units = meta["units"].get(m)
            return {"long_name": m, **({"units": units} if units else {})}
        if name == count_name(m):
            return count_attrs(m)
        if name == f"{m}_flag":
            return {"long_name": f"aggregate QARTOD flag of {m}", "metric": m,
                    "flag_values": [1, 2, 3, 4, 9],
                    "flag_meanings": "pass not_evaluated suspect fail missing"}
    for st in plan.steps:
        if name == st.flag_name:
            return {"long_name": f"{st.kind} flag of {st.metric}", "metric": st.metric,
                    "test": st.kind, "flag_values": [1, 2, 3, 4, 9],
                    "flag_meanings": "pass not_evaluated suspect fail missing"}
        if name == st.score_name:
            return {"long_name": f"{st.kind} score of {st.metric}", "metric": st.metric,
                    "units": "1"}
    return {}


def _resize(store: Path, n: int, r: int, times: np.ndarray) -> None:
    """Every array along time resized to ``n`` bins, and the times of bins ``r..n-1``
    written (idempotent: the time coordinate is stored as int64 nanoseconds)."""
    import zarr

    group = zarr.open_group(str(store), mode="r+", zarr_format=2, use_consolidated=False)
    for _, arr in group.arrays():
        dims = arr.attrs.get("_ARRAY_DIMENSIONS", [])
        if TIME in dims:
            shape = list(arr.shape)
            shape[dims.index(TIME)] = n
            if tuple(shape) != arr.shape:
                arr.resize(tuple(shape))
    group[TIME][r:n] = times


def _write_table(events: pd.DataFrame, stem: Path, formats) -> None:
    if "parquet" in formats:
        _atomic(stem.with_suffix(".parquet"), lambda p: events.to_parquet(p, index=False))
    if "csv" in formats:
        _atomic(stem.with_suffix(".csv"), lambda p: events.to_csv(p, index=False))


def _atomic(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    write(tmp)
    os.replace(tmp, path)


def _next_run(state_dir: Path) -> int:
    try:
        return int((state_dir / "next-run").read_text())
    except (OSError, ValueError):
        return 1


def read_state(state_dir: Path) -> dict | None:
    """The last run's state (None when there is none, or it is of another version)."""
    try:
        state = json.loads((Path(state_dir) / "state.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise LoadError(f"{state_dir}/state.json cannot be read ({err}); delete the folder "
                        f"{state_dir} for a full run") from None
    return state if state.get("version") == STATE_VERSION else None


def load_arrays(state_dir: Path, state: dict) -> dict:
    """The arrays the last run saved: tail bins, scan states, open runs, carried samples."""
    with np.load(Path(state_dir) / state["arrays"], allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    tail = {k.split("/", 1)[1]: v for k, v in data.items() if k.startswith("tail/")}
    states: dict = {}
    for k, v in data.items():
        if k.startswith("state/"):
            key, idx = k[len("state/"):].rsplit("/", 1)
            states.setdefault(key, {})[idx] = v
    states = {k: (parts["-"] if "-" in parts else
                  tuple(parts[str(i)] for i in range(len(parts))))
              for k, parts in states.items()}
    opens: dict = {}
    for k, v in data.items():
        if k.startswith("open/"):
            name, label = k[len("open/"):].rsplit("/", 1)
            opens.setdefault(name, {})[label] = v
    opens = {k: (p["start"], p["peak"], p["worst"]) for k, p in opens.items()}
    from ..io.grid import Samples

    carried = Samples(data["carried/device"].astype(object), data["carried/device_codes"],
                      data["carried/time"], [str(m) for m in data["carried/metric"]],
                      data["carried/metric_codes"], data["carried/value"])
    events = pd.read_parquet(Path(state_dir) / state["events"])
    if not len(events):
        events = empty_events()
    return {"tail": tail, "states": states, "opens": opens, "carried": carried,
            "events": events[EVENT_COLUMNS + INDEX_COLUMNS]}


__all__ = ["Pipeline", "PipelineError", "RunResult", "read_state"]
