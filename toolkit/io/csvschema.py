"""The schema of a CSV file: what the caller states, and inference for the rest.

Inference reads only the head of the first file (64 KiB): the header, the
separator, the decimal mark, a row-id column that R's ``write.csv`` adds,
unnamed trailing columns, the layout, the time column(s) and their format.
Whatever is inferred can be stated instead, and a statement always wins.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ..errors import LoadError

HEAD_BYTES = 64 * 1024
#: texts read as missing in every column (besides empty fields)
NULL_TEXTS = ("", "NA", "N/A", "NaN", "nan", "NAN", "null", "NULL", "None", "-nan")
#: date-time formats tried, in order, when the times are not ISO 8601
FORMATS = (
    "%d/%m/%Y %H.%M.%S", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%Y/%m/%d %H:%M:%S",
    "%d-%m-%Y %H:%M:%S", "%Y%m%d %H%M%S", "%Y%m%dT%H%M%S",
)
EPOCH_UNITS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
ROW_ID = "_row_id"
#: an ISO 8601 time with a zone: Z or an offset such as +01:00
ZONED = r"(?:Z|[+-]\d\d:?\d\d)$"
COMPRESSIONS = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd",
                ".bz2": "bz2"}


@dataclass(frozen=True)
class Schema:
    """How to read one family of CSV files (the same columns in each file).

    Attributes
    ----------
    columns : tuple of str
        Every column of a row, in file order (a row id added by R, and
        unnamed columns, get names starting with ``_`` and are ignored).
    sep, decimal : str
        Field separator and decimal mark.
    layout : {"long", "wide"}
        Long: one row per (device, time, metric, value); wide: one row per
        (device, time) with a column per metric.
    device : str or None
        The device id column; None takes the id from the file name.
    time : tuple of str
        The time column, or a date and a time column joined with a space.
    time_kind : {"iso", "iso_zoned", "format", "epoch"}
        ISO 8601 text without or with a zone (``Z``, ``+01:00``), text in
        ``time_format``, or numbers since 1970.
    time_format : str or None
        A strptime format (``time_kind="format"``) or the epoch unit
        (``"s"``, ``"ms"``, ``"us"``, ``"ns"``).
    timezone : str or None
        The zone of times written without one (None: UTC).
    metric, value : str or None
        The metric-name and value columns of the long layout.
    metrics : tuple of str
        The metric columns of the wide layout (empty for long).
    missing : tuple of float
        Values that mean "missing" (such as -200), besides empty fields.
    units : dict
        Units per metric, written to the variables' ``units`` attribute.
    device_pattern : str or None
        A regular expression with a group ``device`` matched against each
        file's path when ids come from file names (default: the file name
        without its extensions).
    """

    columns: tuple[str, ...]
    sep: str = ","
    decimal: str = "."
    layout: str = "long"
    device: str | None = "device"
    time: tuple[str, ...] = ("time",)
    time_kind: str = "iso"
    time_format: str | None = None
    timezone: str | None = None
    metric: str | None = "metric"
    value: str | None = "value"
    metrics: tuple[str, ...] = ()
    missing: tuple[float, ...] = ()
    units: dict = field(default_factory=dict)
    device_pattern: str | None = None
    encoding: str = "utf-8"

    @property
    def used(self) -> tuple[str, ...]:
        """The columns that are read (the others are skipped)."""
        keys = ((self.device,) if self.device else ()) + self.time
        if self.layout == "long":
            return keys + (self.metric, self.value)
        return keys + self.metrics

    def device_of(self, path) -> str | None:
        """The device id of a file, from its path (None when rows carry it)."""
        if self.device is not None:
            return None
        if self.device_pattern is None:
            name = Path(path).name
            for suffix in COMPRESSIONS:
                name = name.removesuffix(suffix)
            return name.rsplit(".", 1)[0] if "." in name else name
        match = re.search(self.device_pattern, str(path))
        if not match or "device" not in match.groupdict():
            raise LoadError(f"{path}: device_pattern={self.device_pattern!r} does not match "
                            "this path (it needs a group named 'device', such as "
                            r"'(?P<device>[^/]+)\.csv$')")
        return match.group("device")


def compression_of(path) -> str | None:
    """The compression of a file, from its extension (None: plain)."""
    return COMPRESSIONS.get(Path(path).suffix.lower())


def read_head(path, nbytes: int = HEAD_BYTES) -> bytes:
    """The first ``nbytes`` of a file, decompressed, cut at the last full line."""
    with pa.input_stream(str(path), compression=compression_of(path)) as stream:
        head = stream.read(nbytes)
    if len(head) == nbytes and b"\n" in head:
        head = head[: head.rfind(b"\n") + 1]
    return head


def _sniff_sep(header: str) -> str:
    counts = {sep: header.count(sep) for sep in (",", ";", "\t", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _rows(text: str, sep: str, n: int = 200) -> list[list[str]]:
    reader = csv.reader(io.StringIO(text), delimiter=sep)
    return [row for _, row in zip(range(n), reader, strict=False)]


def _find(columns, wanted, candidates) -> str | None:
    if wanted is not None:
        return wanted
    lower = {c.lower(): c for c in columns}
    for name in candidates:
        if name in lower:
            return lower[name]
    return None


def infer_schema(
    path,
    *,
    sep: str | None = None,
    decimal: str | None = None,
    layout: str | None = None,
    device: str | None | bool = None,
    time: str | list[str] | None = None,
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
) -> Schema:
    """Infer the :class:`Schema` of ``path`` from its head; stated arguments win.

    Parameters are those of :func:`toolkit.io.read_csv` (see there). Pass
    ``device=False`` to take device ids from file names even when a column
    is called ``device``.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "dev-1.csv")
    >>> _ = open(path, "w").write("time;temp;rh\\n2026-01-01 00:00:00;21,5;40\\n")
    >>> s = infer_schema(path)
    >>> s.sep, s.decimal, s.layout, s.device, s.metrics, s.device_of(path)
    (';', ',', 'wide', None, ('temp', 'rh'), 'dev-1')
    """
    head = read_head(path)
    try:
        text = head.decode(encoding)
    except UnicodeDecodeError as err:
        raise LoadError(f"{path}: not {encoding} text ({err}); pass encoding=...") from err
    text = text.replace("\r\n", "\n")
    if not text.strip():
        raise LoadError(f"{path}: the file is empty; there is no header to read")
    header_line = text.split("\n", 1)[0]
    sep = sep or _sniff_sep(header_line)
    rows = _rows(text, sep)
    columns = [c.strip() for c in rows[0]]
    body = [r for r in rows[1:] if any(f.strip() for f in r)]
    # R's write.csv: a quoted row id in every row, no name for it in the header
    if body and all(len(r) == len(columns) + 1 for r in body[:20]):
        columns = [ROW_ID] + columns
    columns = [c if c else f"_unnamed_{i}" for i, c in enumerate(columns)]
    if len(set(columns)) != len(columns):
        dup = sorted({c for c in columns if columns.count(c) > 1})
        raise LoadError(f"{path}: the header names columns {dup} more than once")
    ignored = set(ignore) | {c for c in columns if c.startswith("_")}
    unknown = [c for c in ignore if c not in columns]
    if unknown:
        raise LoadError(f"{path}: ignore names columns {unknown} that the file does not "
                        f"have; its columns are {columns}")

    if device is False:
        device_col = None
    else:
        device_col = _find(columns, device, ("device", "device_id", "sensor", "sensor_id",
                                             "id"))
    if isinstance(time, str):
        time_cols = (time,)
    elif time is not None:
        time_cols = tuple(time)
    else:
        lower = {c.lower(): c for c in columns}
        if "date" in lower and "time" in lower:
            time_cols = (lower["date"], lower["time"])
        else:
            found = _find(columns, None, ("time", "timestamp", "datetime", "date", "ts"))
            time_cols = (found,) if found else ()
    if not time_cols:
        raise LoadError(f"{path}: no time column found among {columns}; pass time='name' "
                        "(or time=['date column', 'time column'])")
    metric_col = _find(columns, metric, ("metric", "variable", "quantity"))
    value_col = _find(columns, value, ("value", "reading"))
    if layout is None:
        layout = "long" if metric_col and value_col else "wide"
    if layout not in ("long", "wide"):
        raise ValueError(f"layout must be 'long' or 'wide', got layout={layout!r}")
    stated = [c for c in (device_col, metric_col if layout == "long" else None,
                          value_col if layout == "long" else None, *time_cols) if c]
    for c in stated:
        if c not in columns:
            raise LoadError(f"{path}: column {c!r} is not in the header; the columns are "
                            f"{columns}")
    if layout == "long" and not (metric_col and value_col):
        raise LoadError(f"{path}: the long layout needs a metric and a value column; pass "
                        f"metric=... and value=... (columns: {columns})")
    keys = set(stated)
    if layout == "wide":
        wide = tuple(metrics) if metrics is not None else tuple(
            c for c in columns if c not in keys and c not in ignored)
        missing_cols = [c for c in wide if c not in columns]
        if missing_cols:
            raise LoadError(f"{path}: metrics {missing_cols} are not columns of the file "
                            f"({columns})")
        if not wide:
            raise LoadError(f"{path}: no metric columns left (columns {columns}, ignored "
                            f"{sorted(ignored)})")
    else:
        wide = ()
    index = {c: i for i, c in enumerate(columns)}

    def sample(col):
        return [r[index[col]].strip() for r in body if len(r) == len(columns)]

    if decimal is None:
        numeric_cols = wide if layout == "wide" else (value_col,)
        commas = any(re.fullmatch(r"-?\d+,\d+", v) for c in numeric_cols for v in sample(c))
        decimal = "," if commas and sep != "," else "."
    if layout == "wide":
        _check_numeric(path, {c: sample(c) for c in wide}, decimal)

    time_text = [" ".join(parts) for parts in zip(*(sample(c) for c in time_cols),
                                                    strict=True)]
    time_text = [t for t in time_text if t]
    kind, fmt = _time_kind(path, time_text, time_format)
    if timezone is not None:
        try:
            pd.Timestamp("2026-01-01").tz_localize(timezone)
        except Exception as err:  # noqa: BLE001  (pytz/zoneinfo raise various types)
            raise LoadError(f"timezone={timezone!r} is not a known time zone "
                            "(use an IANA name such as 'Europe/Rome')") from err
    return Schema(
        columns=tuple(columns), sep=sep, decimal=decimal, layout=layout, device=device_col,
        time=time_cols, time_kind=kind, time_format=fmt, timezone=timezone,
        metric=metric_col if layout == "long" else None,
        value=value_col if layout == "long" else None, metrics=wide,
        missing=tuple(float(m) for m in missing), units=dict(units or {}),
        device_pattern=device_pattern, encoding=encoding,
    )


def _check_numeric(path, samples: dict, decimal: str) -> None:
    for col, values in samples.items():
        texts = [v for v in values if v not in NULL_TEXTS]
        nums = pd.to_numeric(pd.Series(texts, dtype=object).str.replace(decimal, ".",
                                                                         regex=False),
                             errors="coerce")
        if len(texts) and nums.isna().all():
            raise LoadError(f"{path}: column {col!r} is not numeric (for example "
                            f"{texts[0]!r}); list it in ignore=[...] if it is a label, or "
                            "pass metrics=[...]")


def _time_kind(path, texts: list[str], time_format: str | None) -> tuple[str, str | None]:
    if time_format in EPOCH_UNITS or (time_format or "").startswith("epoch"):
        unit = time_format.removeprefix("epoch").strip("_") or "s"
        if unit not in EPOCH_UNITS:
            raise ValueError(f"time_format={time_format!r}: an epoch unit is one of "
                             f"{list(EPOCH_UNITS)}")
        return "epoch", unit
    if time_format is not None:
        return "format", time_format
    if not texts:
        return "iso", None
    # the kind that reads (nearly) all of the sample: a bad row must not derail it
    series = pd.Series(texts, dtype=object)
    numbers = pd.to_numeric(series, errors="coerce")
    if numbers.notna().mean() >= 0.9:
        magnitude = float(np.nanmedian(np.abs(numbers)))
        unit = "s" if magnitude < 1e11 else "ms" if magnitude < 1e14 else \
            "us" if magnitude < 1e17 else "ns"
        return "epoch", unit
    iso = pd.to_datetime(series, format="ISO8601", errors="coerce", utc=True)
    if iso.notna().mean() >= 0.9:
        zoned = series.str.contains(ZONED, regex=True).mean() > 0.5
        return ("iso_zoned" if zoned else "iso"), None
    fits = []
    for fmt in FORMATS:
        parsed = pd.to_datetime(series, format=fmt, errors="coerce")
        if parsed.notna().mean() >= 0.9:
            fits.append(fmt)
    if len(fits) == 1:
        return "format", fits[0]
    if len(fits) > 1 and all(f.replace("%m/%d", "%d/%m") == fits[0] or f == fits[0]
                             for f in fits):
        raise LoadError(f"{path}: times such as {texts[0]!r} could be day/month or "
                        f"month/day; pass time_format={fits[0]!r} or {fits[1]!r}")
    if fits:
        return "format", fits[0]
    raise LoadError(f"{path}: cannot tell the format of times such as {texts[0]!r}; pass "
                    "time_format='%d/%m/%Y %H:%M:%S' (a strptime format) or 'epoch_s' / "
                    "'epoch_ms'")
