"""The pipeline's inputs: what there is, what is new since the last run, and its samples.

Each source type knows its inputs by name -- CSV files by path (with size and
modification time, so that a changed file is noticed), a sample store's
batches by their names (an HTTP source first syncs its feed into such a
store) -- and turns a list of them into the :class:`~toolkit.io.grid.Samples`
blocks of the shared samples-to-grid step, with their load report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import dask
import numpy as np
import xarray as xr

from ..errors import LoadError
from ..io.csv import _parse_all, expand_paths
from ..io.csvschema import infer_schema
from ..io.grid import LoadReport, Samples
from ..io.store import SampleStore, load_batch
from ..io.sync import sync

CSV_SCHEMA_KEYS = ("layout", "sep", "decimal", "device", "time", "time_format", "timezone",
                   "metric", "value", "metrics", "missing", "units", "ignore",
                   "device_pattern", "encoding")
FEED_KEYS = ("format", "devices", "paging", "page_size", "records", "time", "device",
             "metric", "value", "metrics", "since_param", "token_env", "header",
             "token_param", "retries")


@dataclass
class Loaded:
    """Samples blocks (on the workers) of some inputs, with their report."""

    blocks: list
    summaries: list
    report: LoadReport
    units: dict
    metrics: list | None
    source: str
    extra: dict = field(default_factory=dict)


def inventory(source: dict, out: Path, echo=print) -> dict:
    """Every input the source has now: ``{name: fingerprint}``."""
    kind = source["type"]
    if kind == "csv":
        files = expand_paths(source["paths"])
        return {f: [os.path.getsize(f), os.stat(f).st_mtime_ns] for f in files}
    if kind in ("store", "http"):
        path = samples_path(source, out)
        if kind == "http":
            kwargs = {k: source[k] for k in FEED_KEYS if k in source}
            report = sync(source["url"], path, start=source.get("start"),
                          on_bad_rows=source.get("on_bad_rows", "raise"),
                          quarantine=str(out / "quarantine-feed.csv"), **kwargs)
            echo(f"sync: {report}")
        if not (Path(path) / "checkpoint.json").exists():
            raise LoadError(f"{path}: no sample store there (sync a feed into it first)")
        return {b: 1 for b in SampleStore(path).checkpoint.batches}
    raise AssertionError(kind)


def samples_path(source: dict, out: Path) -> str:
    if source["type"] == "store":
        return source["path"]
    return source.get("samples") or str(out / "samples")


def changes(kind: str, before: dict, now: dict) -> str | None:
    """Why the inputs read before cannot be extended (None when they can).

    A CSV file that changed, or a batch of a sample store that is gone (the
    store was rewritten), needs a full run; a CSV file taken away does not
    (its samples stay in the results).
    """
    for name, fingerprint in before.items():
        if name in now and now[name] != fingerprint:
            return f"{name} changed since the last run"
        if name not in now and kind != "csv":
            return f"the batch {name} of the sample store is gone (store rewritten?)"
    return None


def load(source: dict, names: list, out: Path, run: int, all_files: list,
         bins: tuple | None = None) -> Loaded:
    """The samples of the inputs ``names`` as blocks on the workers; with ``bins``
    (``(step in ns, how, duplicates)``), a CSV source also bins each block in the
    task after its parse (``extra["partials"]``, see :func:`toolkit.read_csv`)."""
    kind = source["type"]
    if kind == "csv":
        kwargs = {k: source[k] for k in CSV_SCHEMA_KEYS if k in source}
        try:
            schema = infer_schema(sorted(all_files)[0], **kwargs)
        except LoadError:
            raise
        except ValueError as err:
            raise LoadError(f"{sorted(all_files)[0]}: {err}") from None
        files, schema, parsed, summaries, report, partials = _parse_all(
            names, blocksize=source.get("blocksize", 64 * 2**20),
            on_bad_rows=source.get("on_bad_rows", "raise"),
            quarantine=out / f"quarantine-run{run}.csv", schema_kwargs={"schema": schema},
            bins=bins)
        src = files[0] if len(files) == 1 else f"{files[0]} and {len(files) - 1} more files"
        return Loaded(list(parsed), list(summaries), report, dict(schema.units or {}),
                      schema.metrics if schema.layout == "wide" else None, src,
                      extra={"partials": partials})
    path = samples_path(source, out)
    store = SampleStore(path)
    cp = store.checkpoint
    blocks = [dask.delayed(load_batch, pure=True)(str(Path(path) / "batches" / b),
                                                  cp.devices, cp.metrics) for b in names]
    blocks = list(dask.persist(*blocks))
    summaries = list(dask.compute(*[dask.delayed(Samples.summary)(b) for b in blocks]))
    report = LoadReport.of_samples(summaries)
    return Loaded(blocks, summaries, report, dict(cp.units), None, str(path))


def synthetic(source: dict, freq: str, chunks: int | None = None):
    """The synthetic fleet (with its ground truth) as the grid, counts included."""
    from ..model import count_attrs, count_name
    from ..synthetic import make_fleet

    fleet = make_fleet(source.get("devices", 100), source.get("days", 14.0),
                       source.get("freq", freq), seed=source.get("seed", 0), chunks=chunks)
    ds = fleet.dataset
    counts = {count_name(m): ds[m].notnull().astype(np.int32).assign_attrs(count_attrs(m))
              for m in ds.data_vars}
    return fleet, xr.merge([ds, xr.Dataset(counts)], combine_attrs="override")


def gridded(source: dict, freq: str, how: str):
    """A fleet already on a grid, in Zarr, regularised onto the pipeline's grid
    (counts included), lazily: the client reads only the coordinates. The
    chain tasks read and bin their own devices (:class:`GriddedSlice`)."""
    from ..model import metric_names

    path = Path(source["path"])
    try:
        ds = xr.open_zarr(path)
    except (FileNotFoundError, OSError, ValueError, KeyError) as err:
        raise LoadError(f"{path}: not a Zarr store of a fleet ({err})") from None
    names = source.get("metrics") or metric_names(ds)
    missing = [m for m in names if m not in ds.data_vars]
    if missing:
        raise LoadError(f"{path}: no metric(s) {missing}; it holds {sorted(ds.data_vars)}")
    return ds[names].telemetry.regularize(freq, how)


@dataclass(frozen=True)
class GriddedSlice:
    """Devices ``lo:hi`` of a gridded Zarr fleet, read and binned inside the task that
    needs them: one task per chunk of devices reads, bins and runs the chain, so
    no sample crosses the network and no task exists per metric."""

    path: str
    metrics: tuple
    freq: str
    how: str
    lo: int
    hi: int
    n_bins: int

    def load(self) -> tuple[dict, dict]:
        from ..model import count_name
        from ..ops.binning import regularize

        ds = xr.open_zarr(self.path, chunks=None)[list(self.metrics)]
        part = regularize(ds.isel(device=slice(self.lo, self.hi)).load(), self.freq, self.how)
        if part.sizes["time"] != self.n_bins:  # the same time axis as on the client
            raise LoadError(f"{self.path} changed while the pipeline ran")
        values = {m: np.ascontiguousarray(part[m].values, dtype=np.float64)
                  for m in self.metrics}
        counts = {m: np.ascontiguousarray(part[count_name(m)].values, dtype=np.int32)
                  for m in self.metrics}
        return values, counts


def tail_samples(block, t0: int) -> dict:
    """A block's valid samples at or after ``t0``, in long form (runs on a worker)."""
    t, v = block.times, block.values
    dev = np.asarray(block.devices, dtype=object)[block.device_codes]
    if block.metric_codes is None:  # wide: one column per metric
        keep = t >= t0
        sub = v[keep]
        rows, cols = np.nonzero(~np.isnan(sub))
        return {"device": dev[keep][rows], "metric": np.asarray(block.metrics, object)[cols],
                "time": t[keep][rows], "value": sub[rows, cols]}
    keep = (t >= t0) & ~np.isnan(v)
    return {"device": dev[keep], "metric": np.asarray(block.metrics, object)[
        block.metric_codes[keep]], "time": t[keep], "value": v[keep]}


def as_samples(parts: list[dict]) -> Samples:
    """Long-form pieces (:func:`tail_samples`) as one Samples block."""
    dev = np.concatenate([p["device"] for p in parts]) if parts else np.array([], object)
    met = np.concatenate([p["metric"] for p in parts]) if parts else np.array([], object)
    devices, d_codes = np.unique(dev.astype(str), return_inverse=True)
    metrics, m_codes = np.unique(met.astype(str), return_inverse=True)
    times = np.concatenate([p["time"] for p in parts]).astype(np.int64) if parts else \
        np.array([], np.int64)
    values = np.concatenate([p["value"] for p in parts]).astype(np.float64) if parts else \
        np.array([], np.float64)
    return Samples(devices.astype(object), d_codes.astype(np.int32), times,
                   [str(m) for m in metrics], m_codes.astype(np.int32), values)


__all__ = ["GriddedSlice", "Loaded", "as_samples", "changes", "gridded", "inventory", "load",
           "synthetic", "tail_samples"]
