"""Damaged CSV files: every outcome is a reconciled load or a ToolkitError
naming the file and a line -- never a traceback from the csv module, pyarrow
or a decoder, and never a changed value.

The property test damages a valid long-form file (junk fields, truncated,
duplicated, deleted and inserted lines, random bytes, any line ends) and
checks the loader against what the test itself knows of the file: which
lines are untouched (their samples must load, with their exact values), how
many lines it has (the report's rows), and what the quarantine holds (the
damaged file's own lines, by number).
"""

from __future__ import annotations

import csv
import re
from collections import Counter

import dask
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolkit.errors import LoadError, ToolkitError
from toolkit.io import LoadReport, read_csv, read_csv_samples

HEADER = b"device,time,metric,value"
JUNK = [b"", b'"a,b', b"\x00", b"1e400", "\N{GRINNING FACE}".encode(), b"2024-13-45T99:99:00Z",
        b"\r", b"\xff\xfe", b"NaN", b" ", b'"', b"a\rb", b"12\r.5", b"\t", b"1,5"]


def _rows(n=24):
    """(device, time, metric, value) of the undamaged file, values exact in text."""
    rng = np.random.default_rng(3)
    t0 = pd.Timestamp("2024-05-01T00:00:00Z")
    out = []
    for i in range(n):
        device = f"dev-{i % 3}"
        metric = ("temp", "rh")[i % 2]
        time = t0 + pd.Timedelta(minutes=i // 3)
        value = round(float(rng.normal(20, 5)), 3)
        out.append((device, time.value, metric, value))
    return out


ROWS = _rows()


def _nan_as_text(row):
    return row[:3] + (row[3] if row[3] == row[3] else "nan",)


def _line(row) -> bytes:
    device, t, metric, value = row
    stamp = pd.Timestamp(t, tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{device},{stamp},{metric},{value!r}".encode()


@st.composite
def damaged_files(draw):
    """(file bytes, samples of the untouched lines, count of damaged lines)."""
    lines = [(k, _line(r)) for k, r in enumerate(ROWS)]  # (original row or None, text)
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(["junk", "truncate", "duplicate", "delete", "insert",
                                   "byte"]))
        i = draw(st.integers(0, len(lines) - 1))
        tag, text = lines[i]
        if op == "junk":
            fields = text.split(b",")
            fields[draw(st.integers(0, len(fields) - 1))] = draw(st.sampled_from(JUNK))
            lines[i] = (None, b",".join(fields))
        elif op in ("truncate", "byte") and not text:
            continue
        elif op == "truncate":
            lines[i] = (None, text[: draw(st.integers(0, len(text) - 1))])
        elif op == "duplicate":
            lines.insert(i, (tag, text))
        elif op == "delete" and len(lines) > 2:
            del lines[i]
        elif op == "insert":
            lines.insert(i, (None, draw(st.binary(max_size=40))))
        elif op == "byte":
            p = draw(st.integers(0, len(text) - 1))
            lines[i] = (None, text[:p] + bytes([draw(st.integers(0, 255))]) + text[p + 1:])
    ending = draw(st.sampled_from([b"\n", b"\r\n", "mixed"]))
    out = [HEADER + b"\n"]
    for _tag, text in lines:
        end = ending if ending != "mixed" else draw(st.sampled_from([b"\n", b"\r\n"]))
        out.append(text + end)
    data = b"".join(out)
    if draw(st.booleans()):  # no final line break
        data = data[:-2] if data.endswith(b"\r\n") else data[:-1]
    intact = Counter(_nan_as_text(ROWS[tag]) for tag, text in lines
                     if tag is not None and text == _line(ROWS[tag]))
    return data, intact


def _file_lines(data: bytes) -> list[bytes]:
    """The file's lines as a person counts them: ended by LF or CRLF."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return [x[:-1] if x.endswith(b"\r") else x for x in lines]


def _counted(frame: pd.DataFrame) -> Counter:
    """The loaded samples as a multiset; NaN as the string 'nan' (NaN != NaN)."""
    values = [v if v == v else "nan" for v in frame.value]
    return Counter(zip(frame.device.astype(str), frame.time.astype("int64"),
                       frame.metric.astype(str), values, strict=True))


def _check_error(err: ToolkitError, path):
    message = str(err)
    assert str(path) in message, message
    assert re.search(r"line \d+", message), message


def _check_quarantine(q, report: LoadReport, lines: list[bytes]):
    if not report.rows_rejected:
        return
    with open(q, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == report.rows_rejected
    for row in rows:
        number = int(row["line"])
        assert row["text"] == lines[number - 1].decode("utf-8", "replace"), row


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.data_too_large])
@given(damaged=damaged_files(), blocksize=st.sampled_from([None, 300]))
def test_a_damaged_file_loads_reconciled_or_fails_naming_file_and_line(
        damaged, blocksize, tmp_path_factory):
    data, intact = damaged
    folder = tmp_path_factory.mktemp("damaged")
    path = folder / "fleet.csv"
    path.write_bytes(data)
    lines = _file_lines(data)
    loaded = {}
    with dask.config.set(scheduler="sync"):
        for policy in ("raise", "quarantine"):
            q = folder / f"quarantine-{policy}.csv"
            try:
                frame, report = read_csv_samples(path, on_bad_rows=policy, quarantine=q,
                                                 blocksize=blocksize)
                frame = frame.compute()
            except ToolkitError as err:
                _check_error(err, path)
                continue
            assert report.problems() == []
            assert report.rows_read == len(lines) - 1  # the header is not a row
            assert len(frame) == report.rows_loaded
            if policy == "raise":
                assert report.rows_rejected == 0
            _check_quarantine(q, report, lines)
            got = _counted(frame)
            # every untouched row loads with its exact value; nothing else
            # loads but what the damaged lines themselves say
            assert not intact - got, f"untouched rows missing: {intact - got}"
            assert sum((got - intact).values()) <= len(lines) - 1 - sum(intact.values())
            loaded[policy] = got
        if len(loaded) == 2:
            assert loaded["raise"] == loaded["quarantine"]
        try:
            ds = read_csv(path, freq="1min", on_bad_rows="quarantine",
                          quarantine=folder / "q-grid.csv", blocksize=blocksize)
        except ToolkitError as err:
            _check_error(err, path)
        else:
            report = LoadReport.of(ds)
            assert report.problems() == []
            assert report.rows_read == len(lines) - 1


# -- the cases of issue 20, each on its own ------------------------------------

def _write(tmp_path, data: bytes, name="fleet.csv"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


GOOD = [_line(r) for r in ROWS[:6]]


def _expected(n=6):
    return Counter(ROWS[:n])


def _samples(path, **kwargs):
    with dask.config.set(scheduler="sync"):
        frame, report = read_csv_samples(path, **kwargs)
        frame = frame.compute()
    return _counted(frame), report


def test_a_lone_carriage_return_inside_a_value(tmp_path):
    bad = b"dev-1,2024-05-01T00:02:00Z,temp,2\r.020"
    path = _write(tmp_path, b"\n".join([HEADER, *GOOD[:3], bad, *GOOD[3:]]) + b"\n")
    with pytest.raises(LoadError) as err:
        read_csv(path, freq="1min")
    message = str(err.value)
    assert str(path) in message and "line 5" in message and "field 'value'" in message
    q = tmp_path / "q.csv"
    got, report = _samples(path, on_bad_rows="quarantine", quarantine=q)
    assert got == _expected()
    assert (report.rows_read, report.rows_loaded, report.rows_rejected) == (7, 6, 1)
    with open(q, newline="", encoding="utf-8") as f:
        (row,) = list(csv.DictReader(f))
    assert (row["line"], row["field"], row["text"]) == ("5", "value", bad.decode())
    ds = read_csv(path, freq="1min", on_bad_rows="quarantine", quarantine=q)
    assert LoadReport.of(ds).rows_rejected == 1


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r", "mixed"])
@pytest.mark.parametrize("final", [True, False])
@pytest.mark.parametrize("blocksize", [None, 60])  # 60 bytes: a block per line or so
def test_line_ends_of_every_kind(tmp_path, ending, final, blocksize):
    lines = [HEADER, *GOOD]
    if ending == "mixed":
        data = b"".join(x + (b"\r\n" if k % 2 else b"\n") for k, x in enumerate(lines))
    else:
        data = ending.join(lines) + ending
    if not final:
        data = data.rstrip(b"\r\n")
    got, report = _samples(_write(tmp_path, data), blocksize=blocksize)
    assert got == _expected()
    assert (report.rows_read, report.rows_loaded, report.rows_rejected) == (6, 6, 0)
    if ending == b"\r" and blocksize:  # lone-CR line ends: the file is read whole
        assert report.blocks == 1


@pytest.mark.parametrize("blocksize", [None, 120])
def test_nul_bytes_and_invalid_utf8_are_rejected_by_line(tmp_path, blocksize):
    nul = b"dev-1\x00,2024-05-01T00:09:00Z,temp,1.5"
    latin = b"dev-\xe9,2024-05-01T00:09:00Z,temp,1.5"
    path = _write(tmp_path, b"\n".join([HEADER, *GOOD[:2], nul, *GOOD[2:4], latin,
                                        *GOOD[4:]]) + b"\n")
    with pytest.raises(LoadError) as err:
        read_csv_samples(path, blocksize=blocksize)
    assert "line 4" in str(err.value) and "field 'device'" in str(err.value)
    q = tmp_path / "q.csv"
    got, report = _samples(path, on_bad_rows="quarantine", quarantine=q,
                           blocksize=blocksize)
    assert got == _expected()
    assert report.rows_rejected == 2
    with open(q, newline="", encoding="utf-8") as f:
        rows = {r["line"]: r for r in csv.DictReader(f)}
    assert "control character" in rows["4"]["problem"]
    assert "not utf-8 text" in rows["7"]["problem"] and rows["7"]["field"] == "device"
    # the same file read as latin-1 has a readable device 'dev-é'
    got, report = _samples(path, on_bad_rows="quarantine", quarantine=q, encoding="latin-1")
    assert report.rows_rejected == 1 and ("dev-\xe9", ROWS[0][1] + 9 * 60 * 10**9, "temp",
                                          1.5) in got


def test_a_header_only_file_and_an_empty_file(tmp_path):
    header_only = _write(tmp_path, HEADER + b"\n", "header.csv")
    with pytest.raises(LoadError, match="no samples"):
        read_csv(header_only, freq="1min")
    empty = _write(tmp_path, b"", "empty.csv")
    with pytest.raises(LoadError, match="empty"):
        read_csv(empty, freq="1min")
    undecodable = _write(tmp_path, b"dev\xff,time\n", "bad-header.csv")
    with pytest.raises(LoadError, match="line 1"):
        read_csv(undecodable, freq="1min")
