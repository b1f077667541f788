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
import os
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize

from ..errors import ArgumentError, LoadError
from .csvparse import Block, Parsed, parse_block
from .csvschema import (
    COMPRESSIONS,
    Schema,
    compression_of,
    cr_only,
    infer_schema,
    read_head,
    with_overrides,
)
from .grid import (
    InferredFrequencyWarning,
    LoadReport,
    block_partial,
    check_grid_args,
    partial_summary,
    samples_to_grid,
)

BLOCKSIZE = 64 * 2**20


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


def _parse_all(paths, *, blocksize, on_bad_rows, quarantine, schema_kwargs, bins=None):
    """Parse every block on the workers; the report's rows part.

    ``bins``, ``(step in ns, how, duplicates)``, also bins each block in the
    task after its parse (:func:`~toolkit.io.grid.block_partial`), held beside
    its samples. Returns the files, the schema, the parsed blocks, their
    summaries, the report and the block partials (None without ``bins`` or
    when the samples are parsed again later).
    """
    if on_bad_rows not in ("raise", "quarantine"):
        raise ArgumentError(f"on_bad_rows must be 'raise' or 'quarantine', got "
                            f"on_bad_rows={on_bad_rows!r}")
    files = expand_paths(paths)
    given = schema_kwargs.pop("schema", None)
    schema = infer_schema(files[0], **schema_kwargs) if given is None else \
        with_overrides(given, **schema_kwargs)
    blocks = plan_blocks(files, schema, blocksize)
    token = tokenize(files, [os.path.getmtime(f) for f in files], schema, blocksize)
    parsed = [dask.delayed(parse_block, pure=True)(b, schema,
                                                    dask_key_name=f"read-csv-{token}-{i}")
              for i, b in enumerate(blocks)]
    partials = None
    if _fits_in_memory(sum(os.path.getsize(f) for f in files)):
        # parse once: the arrays stay on the workers for the next step
        parsed = list(dask.persist(*parsed))
        if bins is None:
            summaries = dask.compute(*[dask.delayed(Parsed.summary)(p) for p in parsed])
        else:
            partials = list(dask.persist(*[dask.delayed(block_partial, pure=True)(
                p, *bins, dask_key_name=f"bin-block-{tokenize(token, bins)}-{i}")
                for i, p in enumerate(parsed)]))
            summaries = dask.compute(*[dask.delayed(partial_summary)(p, b)
                                       for p, b in zip(parsed, partials, strict=True)])
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
    return files, schema, parsed, summaries, report, partials


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
    schema: Schema | None = None,
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
    encoding: str | None = None,
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
    schema : Schema, optional
        How to read the files (from :func:`~toolkit.io.infer_schema` or built
        by hand), instead of inferring it from the first file. The schema
        keywords below, when given, override its fields.
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
    encoding : str, optional
        Text encoding of the files (default UTF-8, or the schema's).

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
    step = check_grid_args(freq, how, duplicates)  # before anything is read
    schema_kwargs = dict(schema=schema, layout=layout, sep=sep, decimal=decimal, device=device,
                         time=time, time_format=time_format, timezone=timezone, metric=metric,
                         value=value, metrics=metrics, missing=missing, units=units,
                         ignore=ignore, device_pattern=device_pattern, encoding=encoding)
    files, schema, parsed, summaries, report, partials = _parse_all(
        paths, blocksize=blocksize, on_bad_rows=on_bad_rows, quarantine=quarantine,
        schema_kwargs=schema_kwargs,
        bins=None if step is None else (int(step.value), how, duplicates))
    return samples_to_grid(
        parsed, summaries, report, freq=freq, how=how, duplicates=duplicates, start=start,
        end=end, metrics=schema.metrics if schema.layout == "wide" else None,
        units=schema.units, source=_source(files), loader="read_csv",
        block_partials=partials)


def _source(files) -> str:
    return files[0] if len(files) == 1 else f"{files[0]} and {len(files) - 1} more files"


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

    _, _, parsed, _, report, _ = _parse_all(
        paths, blocksize=blocksize, on_bad_rows=on_bad_rows, quarantine=quarantine,
        schema_kwargs=schema)
    meta = _frame(Parsed.no_rows(None))
    parts = [dask.delayed(_frame)(p) for p in parsed]
    frame = dd.from_delayed(parts, meta=meta, verify_meta=False)
    return frame, report


__all__ = ["COMPRESSIONS", "InferredFrequencyWarning", "LoadReport", "Schema", "read_csv",
           "read_csv_samples"]
