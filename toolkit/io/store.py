"""A sample store: raw samples appended in immutable batches, committed by a checkpoint.

The store is a folder (a Zarr group): each *batch* is a Zarr group of four
arrays along ``sample`` -- ``device`` and ``metric`` (int32 codes into the
store's names), ``time`` (int64 ns UTC) and ``value`` (float64) -- written
once and never changed. ``checkpoint.json`` lists the committed batches,
the names the codes point into, and the last time stored of every device
and metric; it is replaced atomically (written aside, then renamed) after
the batch it covers is on disk.

So a writer killed at any moment leaves either the old checkpoint (the batch
it was writing is not listed, and is removed when the store is next opened
for writing) or the new one (the batch is complete): nothing half-written is
ever read, and nothing is stored twice. One writer at a time holds
``store.lock``.

:func:`read_store` regularises a store onto a grid through the same
:func:`~toolkit.io.grid.samples_to_grid` step as every loader.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import xarray as xr

from ..errors import ArgumentError, LoadError
from .grid import LoadReport, Samples, check_grid_args, samples_to_grid

CHECKPOINT = "checkpoint.json"
BATCHES = "batches"
SEP = "\t"


@dataclass
class Checkpoint:
    """What a store holds (the committed state)."""

    batches: list = field(default_factory=list)
    rows: int = 0
    devices: list = field(default_factory=list)
    metrics: list = field(default_factory=list)
    units: dict = field(default_factory=dict)
    last: dict = field(default_factory=dict)  # "device<TAB>metric" -> ns
    feed: dict = field(default_factory=dict)
    version: int = 1

    def since(self) -> dict:
        """``{(device, metric): last ns}``: what a sync must not fetch again."""
        return {tuple(k.split(SEP, 1)): v for k, v in self.last.items()}


class SampleStore:
    """A sample store opened for reading, or for appending (``writer=True``, locked)."""

    def __init__(self, path, *, writer: bool = False, create: bool = False):
        self.path = Path(path)
        self.writer = writer
        self._lock = None
        if not (self.path / CHECKPOINT).exists():
            if not create:
                raise LoadError(f"{self.path} is not a sample store (no {CHECKPOINT}); "
                                "create one with toolkit.sync(feed, store)")
            if self.path.exists() and any(self.path.iterdir()):
                raise ArgumentError(f"{self.path} exists and is not an empty folder nor a "
                                    "sample store; choose a new path")
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / BATCHES).mkdir(exist_ok=True)
            (self.path / "zarr.json").write_text(json.dumps(
                {"zarr_format": 3, "node_type": "group", "attributes": {
                    "toolkit": "sample store (see checkpoint.json)"}}))
            if writer:
                self._take_lock()
            self._write_checkpoint(Checkpoint())
        elif writer:
            self._take_lock()
        self.checkpoint = self._read_checkpoint()
        if writer:
            self._remove_uncommitted()

    # --- locking and the checkpoint ------------------------------------------------------

    def _take_lock(self) -> None:
        if self._lock is not None:
            return
        fh = open(self.path / "store.lock", "a+")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise LoadError(f"{self.path}: another sync is writing to this store") from None
        self._lock = fh

    def close(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def __enter__(self) -> SampleStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read_checkpoint(self) -> Checkpoint:
        try:
            return Checkpoint(**json.loads((self.path / CHECKPOINT).read_text()))
        except (ValueError, TypeError) as err:
            raise LoadError(f"{self.path / CHECKPOINT} cannot be read ({err})") from None

    def _write_checkpoint(self, cp: Checkpoint) -> None:
        tmp = self.path / (CHECKPOINT + ".tmp")
        with open(tmp, "w") as fh:
            json.dump(cp.__dict__, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path / CHECKPOINT)

    def _remove_uncommitted(self) -> None:
        committed = set(self.checkpoint.batches)
        for batch in (self.path / BATCHES).iterdir():
            if batch.name not in committed:
                shutil.rmtree(batch, ignore_errors=True)
        (self.path / (CHECKPOINT + ".tmp")).unlink(missing_ok=True)

    # --- appending -----------------------------------------------------------------------

    def append(self, samples: Samples, units: dict | None = None, feed: dict | None = None
               ) -> int:
        """Write ``samples`` as a new batch, then commit it; returns the samples written.

        Only valid samples newer than the store's last time of their device
        and metric are written, one per (device, metric, time) -- the first.
        """
        if not self.writer:
            raise ArgumentError("the store was opened for reading")
        cp = self.checkpoint
        dev_names = [str(d) for d in samples.devices]
        dev_map = _extend(cp.devices, dev_names)
        met_map = _extend(cp.metrics, list(samples.metrics))
        dev = dev_map[samples.device_codes] if samples.rows else np.zeros(0, np.int32)
        met = met_map[samples.metric_codes] if samples.rows else np.zeros(0, np.int32)
        t, v = samples.times, samples.values
        keep = ~np.isnan(v)
        if cp.last and keep.any():
            limit = np.full((len(cp.devices), len(cp.metrics)), np.iinfo(np.int64).min)
            d_index = {d: i for i, d in enumerate(cp.devices)}
            m_index = {m: i for i, m in enumerate(cp.metrics)}
            for key, ns in cp.last.items():
                d, m = key.split(SEP, 1)
                limit[d_index[d], m_index[m]] = ns
            keep &= t > limit[dev, met]
        dev, met, t, v = dev[keep], met[keep], t[keep], v[keep]
        if t.size:  # one sample per key, the first received
            order = np.lexsort((t, met, dev))
            dev, met, t, v = dev[order], met[order], t[order], v[order]
            first = np.ones(t.size, bool)
            first[1:] = (dev[1:] != dev[:-1]) | (met[1:] != met[:-1]) | (t[1:] != t[:-1])
            dev, met, t, v = dev[first], met[first], t[first], v[first]
        if not t.size:
            return 0
        name = f"b{len(cp.batches) + 1:06d}-{os.getpid()}-{pd.Timestamp.now().value}"
        batch = xr.Dataset({"device": ("sample", dev.astype(np.int32)),
                            "metric": ("sample", met.astype(np.int32)),
                            "time": ("sample", t.astype(np.int64)),
                            "value": ("sample", v.astype(np.float64))})
        batch.to_zarr(self.path / BATCHES / name, mode="w", consolidated=False)
        last = dict(cp.last)
        ends = np.flatnonzero(np.append((dev[1:] != dev[:-1]) | (met[1:] != met[:-1]), True))
        for k in ends:
            key = f"{cp.devices[dev[k]]}{SEP}{cp.metrics[met[k]]}"
            last[key] = max(int(t[k]), last.get(key, int(t[k])))
        new = Checkpoint(batches=[*cp.batches, name], rows=cp.rows + int(t.size),
                         devices=cp.devices, metrics=cp.metrics,
                         units={**cp.units, **(units or {})}, last=last,
                         feed=feed or cp.feed)
        self._write_checkpoint(new)
        self.checkpoint = new
        return int(t.size)

    # --- reading -------------------------------------------------------------------------

    def batch_paths(self) -> list[Path]:
        return [self.path / BATCHES / b for b in self.checkpoint.batches]


def _extend(names: list, new: list) -> np.ndarray:
    """Codes of ``new`` in ``names`` (appending names not there yet)."""
    index = {n: i for i, n in enumerate(names)}
    out = []
    for n in new:
        if n not in index:
            index[n] = len(names)
            names.append(n)
        out.append(index[n])
    return np.array(out, dtype=np.int32)


def load_batch(path, devices, metrics) -> Samples:
    """One committed batch as a :class:`Samples` block (runs on a worker)."""
    with xr.open_zarr(path, consolidated=False) as ds:
        dev = ds["device"].values
        return Samples(np.asarray(devices, dtype=object), dev, ds["time"].values,
                       list(metrics), ds["metric"].values, ds["value"].values)


def read_store_samples(path) -> pd.DataFrame:
    """Every committed sample of a store (device, metric, time, value), in memory.

    Examples
    --------
    >>> import tempfile
    >>> s = SampleStore(tempfile.mkdtemp() + "/s", writer=True, create=True)
    >>> s.append(Samples(np.array(["a"], object), np.zeros(2, np.int32),
    ...                  np.array([0, 60_000_000_000]), ["t"], np.zeros(2, np.int32),
    ...                  np.array([1.0, 2.0])))
    2
    >>> read_store_samples(s.path).value.tolist()
    [1.0, 2.0]
    """
    store = SampleStore(path)
    cp = store.checkpoint
    frames = []
    for p in store.batch_paths():
        b = load_batch(p, cp.devices, cp.metrics)
        frames.append(pd.DataFrame({
            "device": np.asarray(cp.devices, object)[b.device_codes] if b.rows else [],
            "metric": np.asarray(cp.metrics, object)[b.metric_codes] if b.rows else [],
            "time": pd.to_datetime(b.times, unit="ns"), "value": b.values}))
    if not frames:
        return pd.DataFrame({"device": [], "metric": [], "time": pd.to_datetime([]),
                             "value": []})
    return pd.concat(frames, ignore_index=True)


def read_store(path, *, freq=None, how: str = "mean", start=None, end=None) -> xr.Dataset:
    """A sample store regularised onto a grid: the fleet Dataset (see :func:`toolkit.read_csv`).

    Each batch is read on a worker; the grid step is the loaders' own.
    """
    check_grid_args(freq, how, "mean")
    store = SampleStore(path)
    cp = store.checkpoint
    if not cp.batches:
        raise LoadError(f"{path}: the store holds no samples yet")
    blocks = [dask.delayed(load_batch, pure=True)(str(p), cp.devices, cp.metrics)
              for p in store.batch_paths()]
    blocks = list(dask.persist(*blocks))
    summaries = dask.compute(*[dask.delayed(Samples.summary)(b) for b in blocks])
    report = LoadReport.of_samples(summaries)
    return samples_to_grid(blocks, summaries, report, freq=freq, how=how, duplicates="raise",
                           start=start, end=end, units=cp.units, source=str(path),
                           loader="read_store")


__all__ = ["Checkpoint", "SampleStore", "load_batch", "read_store", "read_store_samples"]
