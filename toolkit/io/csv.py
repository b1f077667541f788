"""Load device telemetry from CSV files: long or wide, one or thousands of files.

How a load runs (every step on the workers of the current Dask client, or on
Dask's local threads without one):

1. **Parse**: one task per block (a byte range of a plain file, or a whole
   compressed file) turns rows into arrays; blocks with bad rows find them
   line by line (:mod:`toolkit.io.csvparse`). The parsed blocks stay on the
   workers; only a summary per block (devices, time range, counts, bad rows)
   comes back.
2. **Check**: bad rows raise a :class:`~toolkit.errors.LoadError` naming the
   file, line, field and text, or go to a quarantine CSV.
3. **Regularise**: the samples of each group of devices are gathered from
   every block, duplicates (same device, metric and time) merged by the
   stated policy and counted, and binned onto the grid with the binned
   kernel; the result stays on the workers as the chunks of the Dataset.

The :class:`LoadReport` accounts for every row and sample; its numbers add
up, and :func:`read_csv` refuses to return if they did not.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dask
import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize

import kernels

from ..chunks import chunk_sizes
from ..errors import ArgumentError, LoadError
from ..model import DEVICE, TIME, with_history
from .csvparse import Block, Parsed, parse_block
from .csvschema import COMPRESSIONS, compression_of, cr_only, infer_schema, read_head

BLOCKSIZE = 64 * 2**20
#: a load of this many samples is regularised in at least GROUPS device groups,
#: and in groups of about GROUP_SAMPLES samples (~50 MB to gather in one task)
PARALLEL_SAMPLES, GROUPS, GROUP_SAMPLES = 1_000_000, 4, 2_000_000
DUPLICATES = ("mean", "first", "last", "raise")
HOWS = ("mean", "sum", "min", "max", "first", "last", "count")
NICE_STEPS = [pd.Timedelta(s) for s in (
    "1ms", "10ms", "100ms", "1s", "2s", "5s", "10s", "15s", "20s", "30s", "1min", "2min",
    "5min", "10min", "15min", "20min", "30min", "1h", "2h", "3h", "6h", "12h", "1D")]


class InferredFrequencyWarning(UserWarning):
    """read_csv chose the grid's frequency itself (no ``freq=`` given)."""


@dataclass
class LoadReport:
    """Where every row and sample of a load went; the numbers add up.

    Rows: ``rows_read = rows_loaded + rows_rejected + rows_empty`` (header
    lines are not rows). Samples are the values of the loaded rows (one per
    row in the long layout, one per metric column in the wide one):
    ``samples = samples_valid + samples_missing`` and, once regularised,
    ``samples_valid = samples_binned + duplicates_merged + samples_outside``.
    """

    files: int = 0
    blocks: int = 0
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    rows_empty: int = 0
    samples: int = 0
    samples_valid: int = 0
    samples_missing: int = 0
    duplicates_merged: int | None = None
    samples_outside: int | None = None
    samples_binned: int | None = None
    devices: int = 0
    metrics: list = field(default_factory=list)
    freq: str | None = None
    freq_inferred: bool = False
    how: str | None = None
    duplicates: str | None = None
    quarantine: str | None = None
    first_rejections: list = field(default_factory=list)

    def problems(self) -> list[str]:
        """The sums that do not add up (empty when the report is consistent)."""
        out = []
        if self.rows_read != self.rows_loaded + self.rows_rejected + self.rows_empty:
            out.append(f"rows: read {self.rows_read} != loaded {self.rows_loaded} + rejected "
                       f"{self.rows_rejected} + empty {self.rows_empty}")
        if self.samples != self.samples_valid + self.samples_missing:
            out.append(f"samples: {self.samples} != valid {self.samples_valid} + missing "
                       f"{self.samples_missing}")
        if self.samples_binned is not None and self.samples_valid != (
                self.samples_binned + self.duplicates_merged + self.samples_outside):
            out.append(f"valid samples {self.samples_valid} != binned {self.samples_binned} "
                       f"+ duplicates merged {self.duplicates_merged} + outside the grid "
                       f"{self.samples_outside}")
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def of(cls, obj) -> LoadReport:
        """The report stored on a loaded Dataset's attributes.

        Examples
        --------
        >>> r = LoadReport(files=1, rows_read=2, rows_loaded=2)
        >>> LoadReport.of(xr.Dataset(attrs={"load_report_json": r.to_json()})).rows_read
        2
        """
        return cls(**json.loads(obj.attrs["load_report_json"]))

    def __str__(self) -> str:
        lines = [
            f"load report: {self.files} file(s) in {self.blocks} block(s), {self.devices} "
            f"device(s), metrics {self.metrics}",
            f"  rows read          {self.rows_read:>14,}",
            f"    loaded           {self.rows_loaded:>14,}",
            f"    rejected         {self.rows_rejected:>14,}"
            + (f"  -> {self.quarantine}" if self.quarantine else ""),
            f"    empty            {self.rows_empty:>14,}",
            f"  samples            {self.samples:>14,}",
            f"    missing (NaN)    {self.samples_missing:>14,}",
            f"    valid            {self.samples_valid:>14,}",
        ]
        if self.samples_binned is not None:
            lines += [
                f"      binned         {self.samples_binned:>14,}  onto a {self.freq} grid "
                f"({self.how}{', frequency inferred' if self.freq_inferred else ''})",
                f"      duplicates merged {self.duplicates_merged:>11,}  (policy "
                f"{self.duplicates!r})",
                f"      outside the grid {self.samples_outside:>12,}",
            ]
        return "\n".join(lines)


def expand_paths(paths) -> list[str]:
    """A path, a glob or a list of them, as a sorted list of existing files."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    files = []
    for item in items:
        text = str(item)
        if any(ch in text for ch in "*?["):
            found = sorted(glob.glob(text, recursive=True))
            if not found:
                raise LoadError(f"no file matches {text!r}")
            files += found
        elif os.path.isdir(text):
            raise LoadError(f"{text!r} is a folder; pass a glob such as "
                            f"{os.path.join(text, '*.csv')!r}")
        elif not os.path.exists(text):
            raise LoadError(f"no such file: {text!r}")
        else:
            files.append(text)
    if not files:
        raise LoadError("no files given")
    return files


def plan_blocks(files, schema, blocksize) -> list[Block]:
    """Byte-range blocks of plain files; a compressed file is one block."""
    blocks = []
    for i, path in enumerate(files):
        device = schema.device_of(path)
        size = os.path.getsize(path)
        if compression_of(path) or not blocksize or size <= blocksize or \
                cr_only(read_head(path)):  # lone-CR line ends: read the file whole
            blocks.append(Block(path, i, 0, None if compression_of(path) else size, True,
                                device, whole=True))
            continue
        for start in range(0, size, int(blocksize)):
            blocks.append(Block(path, i, start, min(start + int(blocksize), size),
                                start == 0, device))
    return blocks


def _parse_all(paths, *, blocksize, on_bad_rows, quarantine, schema_kwargs):
    if on_bad_rows not in ("raise", "quarantine"):
        raise ArgumentError(f"on_bad_rows must be 'raise' or 'quarantine', got "
                            f"on_bad_rows={on_bad_rows!r}")
    files = expand_paths(paths)
    schema = infer_schema(files[0], **schema_kwargs)
    blocks = plan_blocks(files, schema, blocksize)
    token = tokenize(files, [os.path.getmtime(f) for f in files], schema, blocksize)
    parsed = [dask.delayed(parse_block, pure=True)(b, schema,
                                                    dask_key_name=f"read-csv-{token}-{i}")
              for i, b in enumerate(blocks)]
    if _fits_in_memory(sum(os.path.getsize(f) for f in files)):
        # parse once: the arrays stay on the workers for the next step
        parsed = list(dask.persist(*parsed))
        summaries = dask.compute(*[dask.delayed(Parsed.summary)(p) for p in parsed])
    else:
        # larger than the cluster can hold: keep only the summaries now, and
        # parse each block again, block by block, when it is regularised
        summaries = dask.compute(*[dask.delayed(_parse_summary, pure=True)(
            b, schema, dask_key_name=f"read-csv-summary-{token}-{i}")
            for i, b in enumerate(blocks)])
    report = LoadReport(files=len(files), blocks=len(blocks))
    rejected = []
    lines_before: dict[int, int] = {}
    for b, s in zip(blocks, summaries, strict=True):
        before = lines_before.get(b.file_index, 0)
        lines_before[b.file_index] = before + s["lines"]
        report.rows_read += s["lines"] - (1 if b.first else 0)
        report.rows_loaded += s["rows"]
        report.rows_empty += s["empty"]
        report.rows_rejected += len(s["rejected"])
        report.samples_valid += s["valid"]
        report.samples_missing += s["missing"]
        rejected += [(b.path, before + line + 1, text, fld, why)
                     for line, text, fld, why in s["rejected"]]
    report.samples = report.samples_valid + report.samples_missing
    if rejected:
        path, line, text, fld, why = rejected[0]
        if on_bad_rows == "raise":
            where = f", field {fld!r}" if fld else ""
            raise LoadError(
                f"{path}, line {line}{where}: {why}. The line reads {text[:200]!r}. "
                f"{len(rejected)} bad row(s) in all; fix the file, or pass "
                "on_bad_rows='quarantine' to set bad rows aside in a CSV and load the rest")
        out = Path(quarantine)
        with open(out, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "line", "field", "problem", "text"])
            writer.writerows([(p, n, fl or "", w, t) for p, n, t, fl, w in rejected])
        report.quarantine = str(out)
        report.first_rejections = [f"{p}:{n} {w}" for p, n, _, _, w in rejected[:5]]
    return files, schema, parsed, summaries, report


def _parse_summary(block, schema) -> dict:
    return parse_block(block, schema).summary()


def _fits_in_memory(nbytes: int) -> bool:
    """Whether parsed arrays of ``nbytes`` of CSV can stay in memory until binned.

    Parsed samples take about half the bytes of their text; keep them when
    that is under a quarter of the memory of the current Dask workers (or
    of this machine's available memory without a client).
    """
    try:
        from distributed import get_client

        workers = get_client().scheduler_info()["workers"].values()
        memory = sum(w.get("memory_limit") or 0 for w in workers)
    except (ImportError, ValueError):
        memory = 0
    if not memory:
        import psutil

        memory = psutil.virtual_memory().available
    return nbytes / 2 < memory / 4


def _nice_step(step_ns: int) -> pd.Timedelta:
    step = pd.Timedelta(int(step_ns), "ns")
    for nice in NICE_STEPS:
        if abs(step - nice) <= 0.1 * nice:
            return nice
    return step.round("1s") if step > pd.Timedelta("1s") else step.round("1ms")


def read_csv(
    paths,
    *,
    freq=None,
    how: str = "mean",
    duplicates: str = "mean",
    on_bad_rows: str = "raise",
    quarantine="quarantine.csv",
    blocksize=BLOCKSIZE,
    start=None,
    end=None,
    layout: str | None = None,
    sep: str | None = None,
    decimal: str | None = None,
    device=None,
    time=None,
    time_format: str | None = None,
    timezone: str | None = None,
    metric: str | None = None,
    value: str | None = None,
    metrics: list[str] | None = None,
    missing=(),
    units: dict | None = None,
    ignore=(),
    device_pattern: str | None = None,
    encoding: str = "utf-8",
) -> xr.Dataset:
    """Load CSV files into a regularised, Dask-backed fleet Dataset.

    Parameters
    ----------
    paths : str, path or list
        A file, a glob (``"data/*.csv.gz"``) or a list of them; plain, gzip
        (``.gz``) or zstd (``.zst``) files, all with the same columns.
    freq : str or timedelta, optional
        The grid: samples are binned into ``[t, t + freq)``. Default: the
        dominant (median) step between a device's samples, rounded to a
        round value; an :class:`InferredFrequencyWarning` says which.
    how : str
        Aggregation per bin: mean (default), sum, min, max, first, last or
        count. Each metric ``m`` also gets ``m_count``, the valid samples
        per bin, so coverage is never hidden.
    duplicates : {"mean", "first", "last", "raise"}
        Samples of one device and metric at the same time (a daylight-saving
        repeat, a clock jumping back, the same file read twice): merged into
        their mean, or the first or last in file and line order, or an
        error. Merged samples are counted in the report.
    on_bad_rows : {"raise", "quarantine"}
        A row that cannot be read (wrong number of fields, a time or value
        that does not parse, no time or device): raise a
        :class:`~toolkit.errors.LoadError` naming file, line, field and text
        (default), or write such rows untouched, with file and line, to the
        ``quarantine`` CSV and load the rest.
    quarantine : str or path
        The quarantine file (only written when there are bad rows).
    blocksize : int or None
        Bytes per parse task for plain files (default 64 MiB); None reads
        each file in one task (needed when quoted fields hold line breaks).
        A compressed file is always one task.
    start, end : datetime-like, optional
        Limits of the grid (default: the data's); samples outside are counted.
    layout : {"long", "wide"}, optional
        Long: columns device, time, metric, value. Wide: device, time and one
        column per metric. Default: long when metric and value columns exist.
    sep, decimal : str, optional
        Field separator (default: sniffed from the header) and decimal mark
        (default: ``","`` when values such as ``2,6`` appear and the
        separator is not a comma).
    device : str or False, optional
        The device id column (default: ``device``, ``device_id``, ``sensor``
        or ``id`` if present). Without one, or with ``device=False``, each
        file is one device, named by ``device_pattern``.
    time : str or list of two str, optional
        The time column, or a date and a time column (default: ``time``,
        ``timestamp``, ``datetime``, ``date``; ``Date`` and ``Time``
        together).
    time_format : str, optional
        A strptime format for the (joined) time text, or ``"epoch_s"``,
        ``"epoch_ms"``, ``"epoch_us"``, ``"epoch_ns"``. Default: ISO 8601,
        epoch by magnitude, or the one common format that fits.
    timezone : str, optional
        IANA zone of times written without an offset (default UTC). A
        repeated hour at the end of daylight saving maps onto the same UTC
        times (then merged by ``duplicates``); a skipped hour moves forward.
        Times with an offset (``Z``, ``+01:00``) are converted to UTC.
    metric, value : str, optional
        Columns of the long layout (default ``metric``/``value``).
    metrics : list of str, optional
        Metric columns of the wide layout (default: every other column).
    missing : sequence of float
        Values that mean missing, such as ``-200`` (empty fields, ``NA`` and
        ``NaN`` always do).
    units : dict, optional
        ``{metric: units}``, written to the variables' attributes.
    ignore : sequence of str
        Columns not to read (labels, row ids).
    device_pattern : str, optional
        A regular expression with a group ``device``, searched in each
        file's path, for ids from file names (default: the file name without
        its extensions).
    encoding : str
        Text encoding of the files.

    Returns
    -------
    xarray.Dataset
        Dims ``(device, time)``, one float64 variable per metric and an
        int32 ``<metric>_count`` each, chunked by whole devices and held on
        the workers. ``attrs["load_report"]`` is the printable
        :class:`LoadReport`; ``LoadReport.of(ds)`` gives it back as an object.

    Examples
    --------
    >>> import tempfile, os, toolkit
    >>> folder = tempfile.mkdtemp()
    >>> fleet = toolkit.make_fleet(n_devices=3, days=0.1).dataset
    >>> _ = toolkit.synthetic.write_csv(fleet, os.path.join(folder, "fleet.csv"))
    >>> ds = read_csv(os.path.join(folder, "fleet.csv"), freq="1min")
    >>> print(ds.attrs["load_report"])  # doctest: +NORMALIZE_WHITESPACE
    load report: 1 file(s) in 1 block(s), 3 device(s), metrics [...]
      rows read                 1,726
        loaded                  1,726
        rejected                    0
        empty                       0
    ...
    >>> np.array_equal(ds.temperature, fleet.temperature, equal_nan=True)
    True
    """
    if how not in HOWS:
        raise ArgumentError(f"how must be one of {HOWS}, got how={how!r}")
    if duplicates not in DUPLICATES:
        raise ArgumentError(f"duplicates must be one of {DUPLICATES}, got "
                            f"duplicates={duplicates!r}")
    if freq is not None:
        step = pd.Timedelta(freq)
        if step <= pd.Timedelta(0):
            raise ArgumentError(f"freq must be a positive duration, got freq={freq!r}")
    schema_kwargs = dict(layout=layout, sep=sep, decimal=decimal, device=device, time=time,
                         time_format=time_format, timezone=timezone, metric=metric,
                         value=value, metrics=metrics, missing=missing, units=units,
                         ignore=ignore, device_pattern=device_pattern, encoding=encoding)
    files, schema, parsed, summaries, report = _parse_all(
        paths, blocksize=blocksize, on_bad_rows=on_bad_rows, quarantine=quarantine,
        schema_kwargs=schema_kwargs)
    devices = np.array(sorted({d for s in summaries for d in s["devices"]}), dtype=str)
    names = list(schema.metrics) if schema.layout == "wide" else sorted(
        {m for s in summaries for m in s["metrics"]})
    if not len(devices) or not names:
        raise LoadError(f"no samples in {files[0]}{' and the others' if len(files) > 1 else ''}"
                        f": every row was empty or rejected ({report.rows_rejected} rejected)")
    unknown_units = sorted(set(schema.units) - set(names))
    if unknown_units:
        raise LoadError(f"units name metrics {unknown_units} that the files do not have "
                        f"(metrics: {names})")
    if freq is None:
        steps = [s["step"] for s in summaries if s["step"] > 0]
        if not steps:
            raise LoadError("cannot infer a sampling interval (no device has two samples); "
                            "pass freq=...")
        step = _nice_step(int(np.median(steps)))
        report.freq_inferred = True
        warnings.warn(f"read_csv: no freq given; regularising onto {step} bins, the "
                      "dominant step between samples. Pass freq=... to choose another.",
                      InferredFrequencyWarning, stacklevel=2)
    s_ns = int(step.value)
    tmin = min(s["tmin"] for s in summaries if s["tmin"] is not None)
    tmax = max(s["tmax"] for s in summaries if s["tmax"] is not None)
    lo = pd.Timestamp(start).value if start is not None else tmin
    hi = pd.Timestamp(end).value if end is not None else tmax
    grid_start = (lo // s_ns) * s_ns
    n_bins = max(0, (hi - grid_start) // s_ns + 1)
    # one task holds every metric of its devices, with counts: 12 bytes a value
    per = chunk_sizes(len(devices), n_bins, 12 * len(names))[DEVICE]
    if report.samples_valid >= PARALLEL_SAMPLES:  # enough work to share among workers
        groups = max(GROUPS, -(-report.samples_valid // GROUP_SAMPLES))
        per = min(per, -(-len(devices) // groups))
    bounds = list(range(0, len(devices), per)) + [len(devices)]
    token = tokenize(tuple(p.key for p in parsed), step, how, duplicates, grid_start, n_bins)
    metric_index = {m: i for i, m in enumerate(names)}
    pieces = [dask.delayed(_split, pure=True)(
        p, devices, metric_index, bounds, dask_key_name=f"split-samples-{token}-{i}")
        for i, p in enumerate(parsed)]
    assembled = [dask.delayed(_assemble, pure=True)(
        [pc[k] for pc in pieces], bounds[k + 1] - bounds[k], names, devices[bounds[k]:
                                                                            bounds[k + 1]],
        grid_start, s_ns, n_bins, how, duplicates,
        dask_key_name=f"regularize-samples-{token}-{k}") for k in range(len(bounds) - 1)]
    assembled = list(dask.persist(*assembled))
    del parsed, pieces
    counts = dask.compute(*[dask.delayed(_counts)(a) for a in assembled])
    report.duplicates_merged = sum(c[0] for c in counts)
    report.samples_outside = sum(c[1] for c in counts)
    report.samples_binned = sum(c[2] for c in counts)
    report.devices, report.metrics = len(devices), names
    report.freq, report.how, report.duplicates = str(step), how, duplicates
    problems = report.problems()
    if problems:
        raise LoadError("the load report does not add up (" + "; ".join(problems) +
                        "); please report this with the files")

    variables = {}
    dtype = np.int32 if how == "count" else np.float64
    for j, m in enumerate(names):
        for part, dt, name in (("stat", dtype, m), ("count", np.int32, f"{m}_count")):
            blocks_ = [dsa.from_delayed(dask.delayed(_take)(a, part, j),
                                        shape=(bounds[k + 1] - bounds[k], n_bins), dtype=dt)
                       for k, a in enumerate(assembled)]
            attrs = ({"long_name": f"valid samples of {m} per bin", "units": "1"}
                     if part == "count" else
                     {"long_name": m, **({"units": schema.units[m]}
                                         if m in schema.units else {})})
            variables[name] = ((DEVICE, TIME), dsa.concatenate(blocks_, axis=0), attrs)
    times = pd.DatetimeIndex(grid_start + s_ns * np.arange(n_bins, dtype=np.int64)).values
    source = files[0] if len(files) == 1 else f"{files[0]} and {len(files) - 1} more files"
    ds = xr.Dataset(variables, coords={DEVICE: devices.astype(object), TIME: times},
                    attrs={"source": source, "load_report": str(report),
                           "load_report_json": report.to_json()})
    return with_history(ds, f"read_csv({source!r}, freq={str(step)!r}, how={how!r}, "
                            f"duplicates={duplicates!r})")


def _split(parsed: Parsed, devices, metric_index, bounds):
    """The block's samples cut by device group: (device in group, metric, time, value)."""
    dev = np.searchsorted(devices, parsed.devices.astype(str))[parsed.device_codes]
    if parsed.metric_codes is not None:
        lookup = np.array([metric_index[m] for m in parsed.metrics], dtype=np.int32)
        met = lookup[parsed.metric_codes] if lookup.size else parsed.metric_codes
    else:
        met = None
    if len(bounds) == 2:  # one group: nothing to cut
        return ((dev.astype(np.int32), met, parsed.times, parsed.values),)
    group = np.searchsorted(np.asarray(bounds[1:]), dev, side="right").astype(
        np.int16 if len(bounds) < 2**15 else np.int32)
    order = np.argsort(group, kind="stable")  # a radix sort on small integers
    cuts = np.searchsorted(group[order], np.arange(1, len(bounds) - 1))
    out = []
    for k, idx in enumerate(np.split(order, cuts)):
        out.append(((dev[idx] - bounds[k]).astype(np.int32),
                    None if met is None else met[idx], parsed.times[idx], parsed.values[idx]))
    return tuple(out)


def _assemble(pieces, n_dev, names, devices, start, step, n_bins, how, policy):
    n_m = len(names)
    # one allocation for the group's valid samples, filled piece by piece
    valid = [~np.isnan(v) for _, _, _, v in pieces]
    total = sum(int(m.sum()) for m in valid)
    s = np.empty(total, np.int64)
    t = np.empty(total, np.int64)
    v = np.empty(total, np.float64)
    at = 0
    for (dev, met, times, values), ok in zip(pieces, valid, strict=True):
        if met is None:  # wide: one sample per metric column
            series = dev[:, None].astype(np.int64) * n_m + np.arange(n_m)
            times = np.broadcast_to(times[:, None], values.shape)
        else:
            series = dev.astype(np.int64) * n_m + met
        k = int(ok.sum())
        s[at:at + k] = series[ok]
        t[at:at + k] = times[ok]
        v[at:at + k] = values[ok]
        at += k
    s, t, v, dups = _dedupe(s, t, v, n_dev * n_m, policy, names, devices)
    stats = {"mean": (), "sum": (), "count": (), "min": ("min",), "max": ("max",),
             "first": ("first",), "last": ("last",)}[how]
    binned = kernels.bin_samples(t, v, s, start=start, step=step, n_bins=n_bins,
                                 n_series=n_dev * n_m, stats=("count", "sum") + stats)
    stat = {"mean": binned.mean, "sum": binned.sum, "count": binned.count}.get(how)
    if stat is None:
        stat = getattr(binned, how)
    shape = (n_dev, n_m, n_bins)
    count = binned.count.reshape(shape).transpose(1, 0, 2).astype(np.int32)
    stat = stat.reshape(shape).transpose(1, 0, 2)
    stat = stat.astype(np.int32) if how == "count" else stat
    return {"stat": np.ascontiguousarray(stat), "count": np.ascontiguousarray(count),
            "dups": dups, "outside": int(binned.outside.sum()),
            "binned": int(binned.count.sum())}


def _dedupe(s, t, v, n_series, policy, names, devices):
    if s.size < 2 or kernels.binning.increasing_per_series(s, t, max(n_series, 1)):
        return s, t, v, 0
    order = np.lexsort((t, s))  # stable: equal keys keep file and line order
    s, t, v = s[order], t[order], v[order]
    new = np.ones(s.size, bool)
    new[1:] = (s[1:] != s[:-1]) | (t[1:] != t[:-1])
    starts = np.flatnonzero(new)
    dups = int(s.size - starts.size)
    if not dups:
        return s, t, v, 0
    sizes = np.diff(np.append(starts, s.size))
    if policy == "raise":
        k = starts[np.argmax(sizes > 1)]
        dev, met = divmod(int(s[k]), len(names))
        raise LoadError(
            f"device {str(devices[dev])!r}, metric {names[met]!r} has {int(sizes.max())} "
            f"samples at {pd.Timestamp(int(t[k]))} ({dups} duplicate samples in this group "
            "of devices); "
            "pass duplicates='mean', 'first' or 'last' to merge them")
    if policy == "mean":
        merged = np.add.reduceat(v, starts) / sizes
    elif policy == "first":
        merged = v[starts]
    else:
        merged = v[starts + sizes - 1]
    return s[starts], t[starts], merged, dups


def _counts(assembled):
    return assembled["dups"], assembled["outside"], assembled["binned"]


def _take(assembled, part, j):
    return assembled[part][j]


def _frame(parsed: Parsed):
    n_m = len(parsed.metrics)
    dev = parsed.devices[parsed.device_codes] if parsed.rows else np.array([], object)
    if parsed.metric_codes is None:
        rows = np.repeat(np.arange(parsed.rows), n_m)
        metric = np.tile(np.array(parsed.metrics, dtype=object), parsed.rows)
        values = parsed.values.ravel()
        dev, times = dev[rows], parsed.times[rows]
    else:
        metric = np.array(parsed.metrics, dtype=object)[parsed.metric_codes] \
            if parsed.rows else np.array([], object)
        values, times = parsed.values, parsed.times
    return pd.DataFrame({"device": pd.array(dev, dtype="string"),
                         "time": pd.to_datetime(times, unit="ns"),
                         "metric": pd.array(metric, dtype="string"), "value": values})


def read_csv_samples(paths, *, on_bad_rows: str = "raise", quarantine="quarantine.csv",
                     blocksize=BLOCKSIZE, **schema):
    """Load CSV files as raw samples in long form, before any regularisation.

    Takes the files and schema arguments of :func:`read_csv` (everything but
    the grid and duplicates). Missing values stay as NaN rows; duplicates
    stay as they are.

    Returns
    -------
    (dask.dataframe.DataFrame, LoadReport)
        Columns ``device`` (string), ``time`` (datetime64[ns], UTC),
        ``metric`` (string), ``value`` (float64); one partition per block,
        held on the workers. And the report of the rows.

    Examples
    --------
    >>> import tempfile, os, toolkit
    >>> path = os.path.join(tempfile.mkdtemp(), "fleet.csv")
    >>> _ = toolkit.synthetic.write_csv(toolkit.make_fleet(n_devices=2, days=0.01).dataset, path)
    >>> frame, report = read_csv_samples(path)
    >>> list(frame.columns), report.rows_read == len(frame)
    (['device', 'time', 'metric', 'value'], True)
    """
    import dask.dataframe as dd

    _, _, parsed, _, report = _parse_all(
        paths, blocksize=blocksize, on_bad_rows=on_bad_rows, quarantine=quarantine,
        schema_kwargs=schema)
    meta = _frame(Parsed.no_rows(None))
    parts = [dask.delayed(_frame)(p) for p in parsed]
    frame = dd.from_delayed(parts, meta=meta, verify_meta=False)
    return frame, report


__all__ = ["COMPRESSIONS", "InferredFrequencyWarning", "LoadReport", "read_csv",
           "read_csv_samples"]
