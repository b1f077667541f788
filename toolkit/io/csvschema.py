"""The schema of a CSV file: what the caller states, and inference for the rest.

Inference reads only the head of the first file (64 KiB): the header, the
separator, the decimal mark, a row-id column that R's ``write.csv`` adds,
unnamed trailing columns, the layout, the time column(s) and their format.
Whatever is inferred can be stated instead, and a statement always wins.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ..errors import ArgumentError, LoadError

HEAD_BYTES = 64 * 1024
#: rows of the head that inference looks at
HEAD_ROWS = 200
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
    if len(head) == nbytes:
        end = head.rfind(b"\n") if b"\n" in head else head.rfind(b"\r")
        if end >= 0:
            head = head[: end + 1]
    return head


#: what makes a field unreadable: a control character (a lone carriage
#: return included) or a byte that did not decode (a surrogate escape)
BAD_CHAR = re.compile("[\x00-\x08\x0a-\x1f\x7f\udc80-\udcff]")


def split_lines(buf: bytes) -> list[bytes]:
    """The lines of ``buf`` without their line ends.

    Lines end at ``\\n`` or ``\\r\\n``, mixed as they come. A lone ``\\r``
    stays inside its line, where :func:`read_fields` reports it (a whole file
    that ends its lines with lone CRs is translated before, by
    :func:`cr_to_lf`).

    Examples
    --------
    >>> split_lines(b"a\\r\\nb\\nc"), split_lines(b"a\\r.5\\n")
    ([b'a', b'b', b'c'], [b'a\\r.5'])
    """
    lines = buf.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def cr_to_lf(whole_file: bytes) -> bytes:
    """A whole file (or its head) that has no LF but CRs ends its lines at a
    lone CR (the old Mac convention): those become LF. Any other text is
    returned as it is; never apply this to a byte range of a larger file.

    Examples
    --------
    >>> cr_to_lf(b"a\\rb\\r"), cr_to_lf(b"a\\r\\nb\\r.5\\n")
    (b'a\\nb\\n', b'a\\r\\nb\\r.5\\n')
    """
    return whole_file.replace(b"\r", b"\n") if cr_only(whole_file) else whole_file


def cr_only(head: bytes) -> bool:
    """Whether a file whose head this is ends its lines at lone CRs (no LF at all)."""
    return b"\n" not in head and b"\r" in head


def read_fields(line: bytes, sep: str, encoding: str,
                check=None) -> tuple[list[str], int | None, str]:
    """The fields of one line, and the first unreadable one with the reason.

    Returns ``(fields, None, "")`` for a readable line, else ``(fields, k,
    problem)`` where field ``k`` (None: the line as a whole) holds a byte
    that is not ``encoding`` text or a control character. ``check`` limits
    that to the fields at these positions (the columns that are read); a
    carriage return counts in any field, since it would end the line for
    the fast parser.

    Examples
    --------
    >>> read_fields(b"dev-1,2.5", ",", "utf-8")
    (['dev-1', '2.5'], None, '')
    >>> read_fields(b"dev-1,2\\r.5", ",", "utf-8")[1:]
    (1, 'it holds a carriage return (\\\\r) inside the line (a damaged line?)')
    """
    text = line.decode(encoding, "surrogateescape")
    # csv refuses a line break inside an unquoted field: mask them while splitting
    masked = text.replace("\r", "\ue000").replace("\n", "\ue001")
    try:
        fields = next(csv.reader([masked], delimiter=sep), [])
    except csv.Error as err:
        return [], None, f"the line cannot be split into fields ({err})"
    fields = [f.replace("\ue000", "\r").replace("\ue001", "\n") for f in fields]
    for k, value in enumerate(fields):
        bad = BAD_CHAR.search(value)
        if bad is None or (check is not None and k not in check and "\r" not in value):
            continue
        ch = "\r" if "\r" in value else bad.group()
        if "\udc80" <= ch <= "\udcff":
            return fields, k, (f"byte 0x{ord(ch) - 0xDC00:02x} is not {encoding} text; pass "
                               "encoding=... (such as 'latin-1') if the file is in another "
                               "encoding")
        what = "a carriage return (\\r)" if ch == "\r" else f"the control character {ch!r}"
        return fields, k, f"it holds {what} inside the line (a damaged line?)"
    return fields, None, ""


def _sniff_sep(header: str) -> str:
    counts = {sep: header.count(sep) for sep in (",", ";", "\t", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


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
    encoding: str | None = None,
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
    encoding = encoding or "utf-8"
    sep, columns, body = _head(path, sep, encoding)
    ignored = set(ignore) | {c for c in columns if c.startswith("_")}
    unknown = [c for c in ignore if c not in columns]
    if unknown:
        raise LoadError(f"{path}, line 1: ignore names columns {unknown} that the file does "
                        f"not have; its columns are {columns}")
    device_col = None if device is False else _find(
        columns, device, ("device", "device_id", "sensor", "sensor_id", "id"))
    time_cols = _time_columns(path, columns, time)
    layout, metric_col, value_col, wide = _layout(
        path, columns, ignored, layout, device_col, time_cols, metric, value, metrics)
    good = [(n, r) for n, r in body if len(r) == len(columns)]
    index = {c: i for i, c in enumerate(columns)}

    def sample(col):
        return [r[index[col]].strip() for _, r in good]

    if decimal is None:
        numeric_cols = wide if layout == "wide" else (value_col,)
        commas = any(re.fullmatch(r"-?\d+,\d+", v) for c in numeric_cols for v in sample(c))
        decimal = "," if commas and sep != "," else "."
    if layout == "wide":
        _check_numeric(path, {c: sample(c) for c in wide}, decimal, [n for n, _ in good])
    time_text = [(n, " ".join(parts)) for n, *parts in zip(
        [n for n, _ in good], *(sample(c) for c in time_cols), strict=True)]
    time_text = [(n, t) for n, t in time_text if t]
    kind, fmt = _time_kind(f"{path}, line {time_text[0][0] if time_text else 2}",
                           [t for _, t in time_text], time_format)
    _check_timezone(timezone)
    return Schema(
        columns=tuple(columns), sep=sep, decimal=decimal, layout=layout, device=device_col,
        time=time_cols, time_kind=kind, time_format=fmt, timezone=timezone,
        metric=metric_col if layout == "long" else None,
        value=value_col if layout == "long" else None, metrics=wide,
        missing=tuple(float(m) for m in missing), units=dict(units or {}),
        device_pattern=device_pattern, encoding=encoding,
    )


def _head(path, sep, encoding) -> tuple[str, list[str], list[tuple[int, list[str]]]]:
    """The separator, the columns and a sample of readable body rows (with
    their line numbers) from the head of ``path``."""
    lines = split_lines(cr_to_lf(read_head(path)))
    if not any(line.strip() for line in lines):
        raise LoadError(f"{path}: the file is empty; there is no header to read")
    sep = sep or _sniff_sep(lines[0].decode(encoding, "replace"))
    header, _, problem = read_fields(lines[0], sep, encoding)
    if problem:
        raise LoadError(f"{path}, line 1: cannot read the header: {problem}")
    columns = [c.strip() for c in header]
    # readable lines only: bad ones are judged when the blocks are parsed
    body = []
    for number, line in enumerate(lines[1:HEAD_ROWS + 1], start=2):
        fields, _, problem = read_fields(line, sep, encoding)
        if not problem and any(f.strip() for f in fields):
            body.append((number, fields))
    # R's write.csv: a quoted row id in every row, no name for it in the header
    if body and all(len(r) == len(columns) + 1 for _, r in body[:20]):
        columns = [ROW_ID] + columns
    columns = [c if c else f"_unnamed_{i}" for i, c in enumerate(columns)]
    if len(set(columns)) != len(columns):
        dup = sorted({c for c in columns if columns.count(c) > 1})
        raise LoadError(f"{path}, line 1: the header names columns {dup} more than once")
    return sep, columns, body


def _time_columns(path, columns, time) -> tuple[str, ...]:
    if isinstance(time, str):
        return (time,)
    if time is not None:
        return tuple(time)
    lower = {c.lower(): c for c in columns}
    if "date" in lower and "time" in lower:
        return (lower["date"], lower["time"])
    found = _find(columns, None, ("time", "timestamp", "datetime", "date", "ts"))
    if not found:
        raise LoadError(f"{path}, line 1: no time column found among {columns}; pass "
                        "time='name' (or time=['date column', 'time column'])")
    return (found,)


def _layout(path, columns, ignored, layout, device_col, time_cols, metric, value, metrics):
    """The layout, the metric and value columns (long) or the metric columns (wide)."""
    metric_col = _find(columns, metric, ("metric", "variable", "quantity"))
    value_col = _find(columns, value, ("value", "reading"))
    if layout is None:
        layout = "long" if metric_col and value_col else "wide"
    if layout not in ("long", "wide"):
        raise ArgumentError(f"layout must be 'long' or 'wide', got layout={layout!r}")
    long = layout == "long"
    stated = [c for c in (device_col, metric_col if long else None,
                          value_col if long else None, *time_cols) if c]
    for c in stated:
        if c not in columns:
            raise LoadError(f"{path}, line 1: column {c!r} is not in the header; the columns "
                            f"are {columns}")
    if long and not (metric_col and value_col):
        raise LoadError(f"{path}, line 1: the long layout needs a metric and a value column; "
                        f"pass metric=... and value=... (columns: {columns})")
    if long:
        return layout, metric_col, value_col, ()
    wide = tuple(metrics) if metrics is not None else tuple(
        c for c in columns if c not in set(stated) and c not in ignored)
    missing_cols = [c for c in wide if c not in columns]
    if missing_cols:
        raise LoadError(f"{path}, line 1: metrics {missing_cols} are not columns of the file "
                        f"({columns})")
    if not wide:
        raise LoadError(f"{path}, line 1: no metric columns left (columns {columns}, ignored "
                        f"{sorted(ignored)})")
    return layout, metric_col, value_col, wide


def _check_timezone(timezone) -> None:
    if timezone is None:
        return
    try:
        pd.Timestamp("2026-01-01").tz_localize(timezone)
    except Exception as err:  # noqa: BLE001  (pytz/zoneinfo raise various types)
        raise LoadError(f"timezone={timezone!r} is not a known time zone "
                        "(use an IANA name such as 'Europe/Rome')") from err


def with_overrides(schema: Schema, *, ignore=(), **stated) -> Schema:
    """``schema`` with the schema keywords a caller stated applied on top.

    A keyword is stated when it is not its default (None, or an empty
    ``missing``); ``time`` may be one column name or two, ``time_format`` a
    strptime format or an epoch unit, ``device=False`` takes ids from file
    names. ``ignore`` only steers inference and is refused here.

    Examples
    --------
    >>> s = Schema(columns=("device", "time", "metric", "value"))
    >>> with_overrides(s, sep=";", time_format="epoch_ms").time_format
    'ms'
    """
    if not isinstance(schema, Schema):
        raise ArgumentError(f"schema must be a toolkit.io.Schema (from infer_schema or "
                            f"built by hand), got {type(schema).__name__}")
    if ignore:
        raise ArgumentError("ignore=... steers schema inference; with schema=..., list the "
                            "metrics to read in the schema (or metrics=[...]) instead")
    changes = {k: v for k, v in stated.items()
               if v is not None and not (k == "missing" and not v)}
    if "device" in changes:
        changes["device"] = changes["device"] or None
    if "time" in changes:
        changes["time"] = (changes["time"],) if isinstance(changes["time"], str) \
            else tuple(changes["time"])
    if "metrics" in changes:
        changes["metrics"] = tuple(changes["metrics"])
    if "missing" in changes:
        changes["missing"] = tuple(float(m) for m in changes["missing"])
    if "time_format" in changes:
        changes["time_kind"], changes["time_format"] = _time_kind(
            "time_format", [], changes["time_format"])
    unknown = set(changes) - set(Schema.__dataclass_fields__)
    if unknown:
        raise ArgumentError(f"{sorted(unknown)} are not fields of a Schema")
    return replace(schema, **changes)


def _check_numeric(path, samples: dict, decimal: str, lines: list[int]) -> None:
    for col, values in samples.items():
        texts = [v for v in values if v not in NULL_TEXTS]
        where = lines[values.index(texts[0])] if texts else 2
        nums = pd.to_numeric(pd.Series(texts, dtype=object).str.replace(decimal, ".",
                                                                         regex=False),
                             errors="coerce")
        if len(texts) and nums.isna().all():
            raise LoadError(f"{path}, line {where}: column {col!r} is not numeric (for example "
                            f"{texts[0]!r}); list it in ignore=[...] if it is a label, or "
                            "pass metrics=[...]")


def _time_kind(path, texts: list[str], time_format: str | None) -> tuple[str, str | None]:
    if time_format in EPOCH_UNITS or (time_format or "").startswith("epoch"):
        unit = time_format.removeprefix("epoch").strip("_") or "s"
        if unit not in EPOCH_UNITS:
            raise ArgumentError(f"time_format={time_format!r}: an epoch unit is one of "
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


__all__ = ["Schema", "compression_of", "cr_only", "cr_to_lf", "infer_schema",
           "read_fields", "read_head", "split_lines", "with_overrides"]
