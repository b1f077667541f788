"""Parsing one block of a CSV file into arrays, on a worker.

A block is a byte range of a plain file (its rows are the lines that *start*
inside the range) or a whole compressed file. The fast path hands the block
to pyarrow's CSV reader with every column typed. If anything in the block is
wrong (a row with too many or too few fields, a value or time that does not
parse, a row without time or device), the block takes the slow path: it is
split into lines, every line is judged on its own, the bad ones are recorded
with their line number, field and text, and the good ones go through the
fast path again. Only blocks with bad rows pay for that.
"""

from __future__ import annotations

import csv
import io
import mmap
import os
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from kernels.text import line_ends, parse_long

from ..errors import LoadError
from .csvschema import (
    BAD_CHAR,
    EPOCH_UNITS,
    NULL_TEXTS,
    ROW_ID,
    ZONED,
    Schema,
    compression_of,
    cr_to_lf,
    read_fields,
    split_lines,
)
from .grid import Samples

DICT = pa.dictionary(pa.int32(), pa.string())


@dataclass(frozen=True)
class Block:
    """One parse task: ``path[start:end]`` (``end`` None: the whole file).

    ``whole`` says that the block is its file's only one (known when the
    blocks are planned, so a worker need not look at the file's size).
    """

    path: str
    file_index: int
    start: int
    end: int | None
    first: bool
    device: str | None
    whole: bool = False


@dataclass
class Parsed(Samples):
    """The samples of one block (see :class:`~toolkit.io.grid.Samples`) and its
    accounting: ``lines`` read, ``empty`` rows, and ``rejected`` rows as
    ``(line_in_block, text, field, problem)``; line 0 is the block's first
    line (the header, in a file's first block).
    """

    block: Block | None = None
    lines: int = 0
    empty: int = 0
    rejected: list = field(default_factory=list)

    @classmethod
    def no_rows(cls, block: Block | None, metrics=(), wide: bool = False,
                empty: int = 0) -> Parsed:
        """A block without samples (blank lines only, or a frame's meta)."""
        return cls(np.array([], object), np.zeros(0, np.int32), np.zeros(0, np.int64),
                   list(metrics), None if wide else np.zeros(0, np.int32),
                   np.zeros((0, len(metrics)) if wide else 0), block=block, empty=empty)

    def summary(self) -> dict:
        """The samples' summary and the block's accounting (small)."""
        return super().summary() | {"lines": self.lines, "empty": self.empty,
                                    "rejected": self.rejected}


class _NeedsSlowPath(Exception):
    pass


def read_block(block: Block):
    """The bytes of the lines that start in the block.

    A plain file is memory-mapped and its range returned as a memoryview:
    the parser reads the page cache in place, with no copy of the block. A
    compressed file, and a whole file that may end its lines at lone CRs (no
    LF in its head), are read into bytes, which :func:`parse_bytes` translates.
    """
    if compression_of(block.path):
        with pa.input_stream(block.path, compression=compression_of(block.path)) as s:
            return s.read()
    with open(block.path, "rb") as f:
        if block.whole:
            head = f.read(1 << 16)
            if b"\n" not in head:
                return head + f.read()
        end = f.seek(0, os.SEEK_END) if block.end is None else block.end
        # the line running into the block belongs to the previous one; the
        # block's last line runs on past its end, unless a break ends it there
        lo = 0 if block.start == 0 else _line_start_after(f, block.start - 1)
        hi = _line_start_after(f, end - 1) if end else 0
        if hi <= lo:
            return b""
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return memoryview(mapped)[lo:hi]


def _line_start_after(f, pos: int) -> int:
    """Where the line after the first line break at or after ``pos`` starts (the
    end of the file when no break follows)."""
    f.seek(pos)
    while True:
        piece = f.read(1 << 16)
        if not piece:
            return f.tell()
        cut = piece.find(b"\n")
        if cut >= 0:
            return pos + cut + 1
        pos += len(piece)


def count_lines(buf) -> tuple[int, bool]:
    """Lines in ``buf`` (a last line without a line break counts), and whether
    it holds a carriage return outside a CRLF line end (pyarrow ends a line
    there, the line-by-line path judges and names such a line instead)."""
    breaks, lone_crs = line_ends(buf)
    unended = len(buf) > 0 and buf[-1] != 10  # an int for bytes and memoryviews
    return breaks + unended, lone_crs > 0


def _normalise_header(fields: list[str], schema: Schema) -> tuple[str, ...]:
    names = [f.strip() for f in fields]
    if schema.columns and schema.columns[0] == ROW_ID:
        names = [ROW_ID] + names
    return tuple(c if c else f"_unnamed_{i}" for i, c in enumerate(names))


def parse_block(block: Block, schema: Schema) -> Parsed:
    """Parse ``block`` (see the module docstring); runs on a worker."""
    raw = read_block(block)
    try:
        return parse_bytes(raw, block, schema)
    finally:
        if isinstance(raw, memoryview):  # unmap now: mapped pages count in the RSS
            mapped = raw.obj
            try:
                raw.release()
                mapped.close()
            except BufferError:  # still viewed somewhere: unmapped when collected
                pass


def parse_bytes(raw, block: Block, schema: Schema) -> Parsed:
    """Parse the bytes of ``block`` (already read: a file's part, or a CSV page of a feed)."""
    if block.whole and isinstance(raw, bytes):  # only a whole file may end lines at lone CRs
        raw = cr_to_lf(raw)
    lines, has_lone_cr = count_lines(raw)
    buf = memoryview(raw)  # slices below copy nothing
    offset = 0
    if block.first:
        cut = bytes(buf[:1 << 16]).find(b"\n")
        cut = cut if cut >= 0 else bytes(buf).find(b"\n")
        header = bytes(buf if cut < 0 else buf[:cut]).decode(schema.encoding, "replace")
        fields = next(csv.reader([header.rstrip("\r")], delimiter=schema.sep), [])
        if _normalise_header(fields, schema) != schema.columns:
            raise LoadError(
                f"{block.path}, line 1: the header {fields} differs from the first file's "
                f"columns {list(schema.columns)}; read files with different columns in "
                "separate calls")
        buf = buf[len(buf):] if cut < 0 else buf[cut + 1:]
        offset = 1
    try:
        # pyarrow ends a line at a lone CR, the line-by-line path judges and
        # names such a line instead
        if has_lone_cr:
            raise _NeedsSlowPath
        out = _fast(buf, schema, block, lines - offset)
    except _NeedsSlowPath:
        out = _slow(bytes(buf), schema, block, offset)
    out.lines = lines
    return out


def _convert_options(schema: Schema) -> pcsv.ConvertOptions:
    types = {}
    if schema.device:
        types[schema.device] = DICT
    if schema.time_kind == "iso":
        types[schema.time[0]] = pa.timestamp("ns")
    elif schema.time_kind == "iso_zoned":
        types[schema.time[0]] = pa.timestamp("ns", tz="UTC")
    elif schema.time_kind == "epoch":
        types[schema.time[0]] = pa.float64() if schema.time_format in ("s", "ms") \
            else pa.int64()
    else:
        for c in schema.time:
            types[c] = pa.string()
    if schema.layout == "long":
        types[schema.metric] = DICT
        types[schema.value] = pa.float64()
    else:
        for m in schema.metrics:
            types[m] = pa.float64()
    return pcsv.ConvertOptions(
        column_types=types, include_columns=list(schema.used), null_values=list(NULL_TEXTS),
        strings_can_be_null=True, quoted_strings_can_be_null=True,
        decimal_point=schema.decimal, timestamp_parsers=[pcsv.ISO8601],
    )


def _times(table: pa.Table, schema: Schema) -> tuple[np.ndarray, np.ndarray]:
    """int64 ns UTC times and a mask of rows whose time failed to parse."""
    if schema.time_kind in ("iso", "iso_zoned"):
        ts = table.column(schema.time[0])
        failed = np.zeros(len(ts), bool)
    elif schema.time_kind == "epoch":
        raw = table.column(schema.time[0]).to_numpy(zero_copy_only=False)
        scale = EPOCH_UNITS[schema.time_format]
        with np.errstate(invalid="ignore"):
            ns = np.round(raw * scale) if raw.dtype.kind == "f" else raw * scale
        bad = ~np.isfinite(ns) if ns.dtype.kind == "f" else np.zeros(len(ns), bool)
        return np.where(bad, 0, ns).astype(np.int64), bad
    else:
        cols = [table.column(c) for c in schema.time]
        text = cols[0] if len(cols) == 1 else pc.binary_join_element_wise(*cols, " ")
        ts = pc.strptime(text, format=schema.time_format, unit="ns", error_is_null=True)
        failed = (pc.is_valid(text).to_numpy(zero_copy_only=False)
                  & pc.is_null(ts).to_numpy(zero_copy_only=False))
    if schema.timezone and schema.time_kind != "iso_zoned":
        ts = pc.assume_timezone(ts, timezone=schema.timezone, ambiguous="earliest",
                                nonexistent="latest")
    ns = ts.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
    return ns.astype(np.int64, copy=False), failed


def _compiled(buf, schema: Schema, block: Block, lines: int) -> Parsed | None:
    """The block read by :func:`kernels.text.parse_long` (long layout, one ISO
    8601 time column in UTC, UTF-8), or None when it is pyarrow's to read."""
    if schema.layout != "long" or not schema.device or len(schema.time) != 1 or \
            schema.time_kind not in ("iso", "iso_zoned") or \
            (schema.time_kind == "iso" and schema.timezone not in (None, "UTC")) or \
            schema.encoding.lower().replace("-", "") not in ("utf8", "ascii"):
        return None
    where = {c: i for i, c in enumerate(schema.columns)}
    out = parse_long(buf, columns=len(schema.columns), device=where[schema.device],
                     time=where[schema.time[0]], metric=where[schema.metric],
                     value=where[schema.value], sep=schema.sep, decimal=schema.decimal,
                     zoned=schema.time_kind == "iso_zoned", nulls=NULL_TEXTS,
                     lines=lines + 1)
    if isinstance(out, str):
        return None
    rows = out["times"].size
    return Parsed(np.array(out["devices"], dtype=object), out["device_codes"], out["times"],
                  out["metrics"], out["metric_codes"], out["values"], block=block,
                  empty=lines - rows)


def _fast(buf, schema: Schema, block: Block, lines: int) -> Parsed:
    # nothing but blank lines (pyarrow calls it an error); the whole block is
    # copied and stripped only when its start is blank
    if not bytes(buf[:1 << 16]).strip() and not bytes(buf).strip():
        return Parsed.no_rows(block, schema.metrics, schema.layout == "wide", empty=lines)
    compiled = _compiled(buf, schema, block, lines)
    if compiled is not None:
        _check_names(compiled.devices)
        _check_names(compiled.metrics)
        if schema.missing:
            compiled.values[np.isin(compiled.values, schema.missing)] = np.nan
        return compiled
    try:
        table = pcsv.read_csv(
            pa.BufferReader(pa.py_buffer(buf)),
            read_options=pcsv.ReadOptions(column_names=list(schema.columns), use_threads=False,
                                          encoding=schema.encoding, block_size=1 << 22),
            # no invalid_row_handler: a row of the wrong width raises, which
            # sends the block line by line (a handler made pyarrow decode the
            # row's text first, and undecodable text escaped from there)
            parse_options=pcsv.ParseOptions(delimiter=schema.sep),
            convert_options=_convert_options(schema),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as err:
        raise _NeedsSlowPath from err
    n = table.num_rows
    times, failed = _times(table, schema)
    keys = list(schema.time) + [c for c in (schema.device, schema.metric if
                                             schema.layout == "long" else None) if c]
    n_empty = 0
    # with no missing key in the block (the usual case) no row is empty or keyless
    if any(table.column(c).null_count for c in keys) or failed.any():
        time_null = np.zeros(n, bool)
        for c in schema.time:
            time_null |= table.column(c).is_null().to_numpy(zero_copy_only=False)
        all_null = time_null.copy()
        for c in schema.used:
            if c not in schema.time:
                all_null &= table.column(c).is_null().to_numpy(zero_copy_only=False)
        keyless = time_null | failed
        for c in keys[len(schema.time):]:
            keyless |= table.column(c).is_null().to_numpy(zero_copy_only=False)
        if (keyless & ~all_null).any():
            raise _NeedsSlowPath
        keep = ~all_null
        n_empty = int(all_null.sum())
        if n_empty:
            table = table.filter(pa.array(keep))
            times = times[keep]
    if schema.device:
        devices, codes = _dictionary(table.column(schema.device))
        _check_names(devices)
    else:
        devices = np.array([block.device], dtype=object)
        codes = np.zeros(table.num_rows, np.int32)
    if schema.layout == "long":
        metrics, metric_codes = _dictionary(table.column(schema.metric))
        _check_names(metrics)
        metrics = list(metrics)
        values = table.column(schema.value).to_numpy(zero_copy_only=False).astype(
            np.float64, copy=False)
    else:
        metrics, metric_codes = list(schema.metrics), None
        values = np.empty((table.num_rows, len(metrics)))
        for k, m in enumerate(metrics):
            values[:, k] = table.column(m).to_numpy(zero_copy_only=False)
    if schema.missing:
        values = np.array(values)  # writable (pyarrow's view may not be)
        values[np.isin(values, schema.missing)] = np.nan
    blank_lines = lines - n  # pyarrow skips blank lines
    return Parsed(devices, codes, times, metrics, metric_codes, values, block=block,
                  empty=n_empty + blank_lines)


def _check_names(names) -> None:
    """Device or metric names with a control character were damaged: such a
    block goes line by line, where the rows are judged and named."""
    if any(BAD_CHAR.search(str(n)) for n in names):
        raise _NeedsSlowPath


def _dictionary(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Values and codes of a dictionary column (chunks unified)."""
    column = column.unify_dictionaries() if column.num_chunks > 1 else column
    if column.num_chunks == 0:
        return np.array([], dtype=object), np.zeros(0, np.int32)
    chunks = column.chunks
    dictionary = chunks[0].dictionary.to_numpy(zero_copy_only=False).astype(object)
    codes = np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in chunks])
    return dictionary, codes.astype(np.int32, copy=False)


def _slow(buf: bytes, schema: Schema, block: Block, offset: int) -> Parsed:
    lines = split_lines(buf)
    index = {c: i for i, c in enumerate(schema.columns)}
    used = {index[c] for c in schema.used}
    empty, rejected, good, good_fields = 0, [], [], []

    def reject(i, name, problem):
        rejected.append((offset + i, lines[i].decode(schema.encoding, "replace"), name,
                         problem))

    for i, line in enumerate(lines):
        fields, bad, problem = read_fields(line, schema.sep, schema.encoding, used)
        if problem:
            reject(i, schema.columns[bad] if bad is not None and bad < len(schema.columns)
                   else None, problem)
        elif not any(f.strip() for f in fields):
            empty += 1
        elif len(fields) != len(schema.columns):
            reject(i, None, f"expected {len(schema.columns)} fields separated by "
                            f"{schema.sep!r}, found {len(fields)}")
        else:
            good.append(i)
            good_fields.append(fields)
    problems = _field_problems(good_fields, schema, index)
    kept = []
    for k, i in enumerate(good):
        if k in problems:
            reject(i, *problems[k])
        else:
            kept.append((i, _blank_spaces(lines[i], good_fields[k], schema)))
    out, unreadable = _parse_kept(kept, schema, block)
    for i, name, problem in unreadable:
        reject(i, name, problem)
    out.empty += empty
    out.rejected = sorted(rejected)
    return out


def _blank_spaces(line: bytes, fields: list[str], schema: Schema) -> bytes:
    """``line`` with its space-only fields emptied: the line-by-line check reads
    them as missing, and so must pyarrow (which only trims around numbers)."""
    if all(f.strip() or not f for f in fields):
        return line
    text = io.StringIO()
    csv.writer(text, delimiter=schema.sep, lineterminator="").writerow(
        [f if f.strip() else "" for f in fields])
    return text.getvalue().encode(schema.encoding)


def _parse_kept(kept: list[tuple[int, bytes]], schema: Schema, block: Block):
    """Parse the lines the check judged good; a line pyarrow still refuses is
    found one by one and rejected with pyarrow's reason (the checks should
    agree; this keeps a disagreement from losing the block)."""
    body = b"\n".join(line for _, line in kept) + b"\n" if kept else b""
    try:
        return _fast(body, schema, block, len(kept)), []
    except _NeedsSlowPath:
        pass
    unreadable, readable = [], []
    for i, line in kept:
        try:
            _fast(line + b"\n", schema, block, 1)
            readable.append(line)
        except _NeedsSlowPath as err:
            cause = str(err.__cause__ or "the value does not parse").splitlines()[0]
            column = re.search(r"column #(\d+)", cause)
            name = schema.columns[int(column.group(1))] if column else None
            unreadable.append((i, name, f"cannot be read ({cause})"))
    body = b"\n".join(readable) + b"\n" if readable else b""
    return _fast(body, schema, block, len(readable)), unreadable


def _field_problems(rows: list[list[str]], schema: Schema, index: dict) -> dict:
    """``{row number: (field, problem)}`` for rows with a field that does not parse."""
    problems: dict[int, tuple[str, str]] = {}
    if not rows:
        return problems

    def column(name):
        return pd.Series([r[index[name]].strip() for r in rows], dtype=object)

    def blank(s):
        return s.isin(NULL_TEXTS)

    def note(mask, name, why):
        for k in np.flatnonzero(mask.to_numpy()):
            problems.setdefault(int(k), (name, why(rows[k][index[name]])))

    time_text = column(schema.time[0])
    for c in schema.time[1:]:
        time_text = time_text + " " + column(c)
    time_blank = pd.Series(np.zeros(len(rows), bool))
    for c in schema.time:
        time_blank |= blank(column(c))
    tname = "+".join(schema.time)
    note(time_blank, schema.time[0], lambda t: "the time is empty")
    if schema.time_kind == "epoch":
        parsed = pd.to_numeric(time_text, errors="coerce")
    elif schema.time_kind == "format":
        parsed = pd.to_datetime(time_text, format=schema.time_format, errors="coerce")
    else:
        zoned = time_text.str.contains(ZONED, regex=True)
        parsed = pd.to_datetime(time_text, format="ISO8601", errors="coerce", utc=True)
        wrong_zone = zoned if schema.time_kind == "iso" else ~zoned
        note(wrong_zone & ~time_blank, tname,
             lambda t: f"cannot read the time {t!r}: " + (
                 "it has a zone offset where the file's times have none"
                 if schema.time_kind == "iso" else "it has no zone offset (such as Z)"))
    fmt = schema.time_format or "ISO 8601"
    note(parsed.isna() & ~time_blank, tname,
         lambda t: f"cannot read the time {t!r} as {fmt}")
    keys = ([schema.device] if schema.device else []) + (
        [schema.metric] if schema.layout == "long" else [])
    for c in keys:
        note(blank(column(c)), c, lambda t, c=c: f"the {c} is empty")
    numbers = [schema.value] if schema.layout == "long" else list(schema.metrics)
    for c in numbers:
        s = column(c)
        missing = blank(s)
        num = pd.to_numeric(s.str.replace(schema.decimal, ".", regex=False), errors="coerce")
        note(num.isna() & ~missing, c, lambda t: f"cannot read {t!r} as a number (decimal "
                                                 f"mark {schema.decimal!r})")
    return problems


__all__ = ["Block", "Parsed", "count_lines", "parse_block", "parse_bytes", "read_block"]
