"""kernels.text: line_ends against bytes.count on any bytes, in any buffer;
parse_long against pyarrow's CSV reader, row by row and bit for bit."""

from __future__ import annotations

import mmap
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernels.text import line_ends, parse_long


def reference(buf: bytes) -> tuple[int, int]:
    return buf.count(b"\n"), buf.count(b"\r") - buf.count(b"\r\n")


@settings(deadline=None)  # the first call loads the compiled kernel
@given(st.lists(st.sampled_from([b"\n", b"\r", b"\r\n", b"a", b",", b"\x00", b"\xff"]),
                max_size=200))
def test_line_ends_equal_bytes_count(pieces):
    buf = b"".join(pieces)
    assert line_ends(buf) == reference(buf)
    assert line_ends(memoryview(buf)[1:]) == reference(buf[1:])
    assert line_ends(np.frombuffer(buf, np.uint8)) == reference(buf)


def test_a_memory_mapped_file_is_read_in_place(tmp_path):
    data = b"a,1\r\nb,2\nc\r,3\n" * 10_000
    path = tmp_path / "f.csv"
    path.write_bytes(data)
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    view = memoryview(mapped)[5:-3]
    assert line_ends(view) == reference(data[5:-3]) == (29_998, 10_000)
    view.release()
    mapped.close()


# --- parse_long against pyarrow --------------------------------------------

NULLS = ("", "NA", "N/A", "NaN", "nan", "NAN", "null", "NULL", "None", "-nan")
DICT = pa.dictionary(pa.int32(), pa.string())


def _arrow(buf: bytes, zoned: bool):
    """The reference: pyarrow reading the four columns as the CSV loader does."""
    table = pcsv.read_csv(
        pa.BufferReader(buf),
        read_options=pcsv.ReadOptions(column_names=["device", "time", "skip", "metric",
                                                    "value"], use_threads=False),
        convert_options=pcsv.ConvertOptions(
            column_types={"device": DICT, "metric": DICT, "value": pa.float64(),
                          "time": pa.timestamp("ns", tz="UTC" if zoned else None)},
            include_columns=["device", "time", "metric", "value"], null_values=list(NULLS),
            strings_can_be_null=True, timestamp_parsers=[pcsv.ISO8601]))
    return (table.column("device").to_pylist(), table.column("metric").to_pylist(),
            table.column("time").cast(pa.int64()).to_numpy(zero_copy_only=False),
            table.column("value").to_numpy(zero_copy_only=False))


def _time_text(ns: int, sep: str, digits: int, zone: str) -> str:
    t = np.datetime64(ns, "ns").astype(str)  # 2026-01-05T00:00:00.123456789
    whole, frac = t[:19], t[20:29]
    return whole.replace("T", sep) + ("." + frac[:digits] if digits else "") + zone


plain_numbers = st.one_of(  # at most 15 digits, powers of ten within 22
    st.floats(-1e12, 1e12).filter(lambda x: x == 0 or abs(x) > 1e-6).map(
        lambda x: f"{x:.15g}"),
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: f"{x:.3f}"),
    st.floats(-1e6, 1e6).filter(lambda x: x == 0 or abs(x) > 1e-12).map(lambda x: f"{x:.6e}"),
    st.integers(-10**15, 10**15).map(str),
    st.sampled_from(["", "NA", "NaN", "-nan", "nan", "null", "-0", "-0.0", "007", "1e22",
                     "9007199254740992", "0.000001", "1E+05", "2.5e-7"]))
odd_numbers = st.floats(allow_nan=False, allow_infinity=False).map(repr) | st.sampled_from([
    "1.", ".5", "+1", "1e400", "4.9e-324", "9007199254740993", "0.1e-30", "1e23", "12.5 ",
    "inf", "abc", "1,5", "1e", "--1", "0x10", "123456789012345678901234"])


@st.composite
def long_blocks(draw):
    """Blocks of 5 columns (device, time, skipped, metric, value): plain ones,
    in every form the fast path takes, or with odd text on some lines."""
    zoned = draw(st.booleans())
    odd = draw(st.booleans())
    n = draw(st.integers(0, 40))
    devices = draw(st.lists(st.sampled_from(["dev-1", "dev-22", "d", "sensor 7", "a" * 30,
                                             "dev-1x", "Dev-1"] + (["NA", ""] if odd else [])),
                            min_size=1, max_size=4))
    lines = []
    t0 = draw(st.integers(-6 * 10**18, 6 * 10**18))  # years 1779 to 2160
    for _ in range(n):
        if draw(st.integers(0, 15)) == 0:
            lines.append("")  # a blank line
            continue
        ns = t0 + draw(st.integers(0, 10**9)) * draw(st.sampled_from([1, 1000, 10**6]))
        zone = draw(st.sampled_from(["Z", "+01:00", "-05:30", "+00:00"])) if zoned else ""
        time = _time_text(ns, draw(st.sampled_from(["T", "T", " "])),
                          draw(st.sampled_from([0, 0, 3, 6, 9, 1])), zone)
        value = draw(plain_numbers)
        fields = [draw(st.sampled_from(devices)), time, draw(st.sampled_from(["x", "", "y;z"])),
                  draw(st.sampled_from(["temperature", "rh", "t"])), value]
        if odd and draw(st.integers(0, 10)) == 0:
            k = draw(st.integers(0, 4))
            fields[k] = draw(st.sampled_from([
                "2026-02-30T00:00:00Z", "2023-02-29T00:00:00Z", "2026-04-31T00:00:00Z",
                "1900-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "2026-01-05", "2026-1-5T00:00:00Z",
                "2026-01-05T24:00:00Z", "2024-02-29T23:59:59Z", "2026-01-05T00:00:00+0100",
                "2026-01-05T00:00:00z", "2026-01-05T00:00:00.1234567891Z", "", "NA"]
                if k == 1 else [draw(odd_numbers), '"q"', "x,y"]))
        if odd and draw(st.integers(0, 40)) == 0:
            fields.append("extra")
        lines.append(",".join(fields))
    end = draw(st.sampled_from(["\n", "\r\n"]))
    text = end.join(lines) + (end if draw(st.booleans()) else "")
    return text.encode(), zoned, odd


def _equal(out, ref):
    devices, metrics, times, values = ref
    assert [out["devices"][c] for c in out["device_codes"]] == devices
    assert [out["metrics"][c] for c in out["metric_codes"]] == metrics
    assert out["times"].tolist() == times.tolist()
    assert out["values"].astype(np.float64).view(np.int64).tolist() == \
        values.astype(np.float64).view(np.int64).tolist()  # bit for bit, NaN and -0.0 too


@settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(long_blocks())
def test_parse_long_reads_what_pyarrow_reads_or_declines(block):
    buf, zoned, odd = block
    if not buf.strip():  # blank lines only (pyarrow: "Empty CSV file"; the loader
        return           # counts them before either reader)
    out = parse_long(buf, columns=5, device=0, time=1, metric=3, value=4, zoned=zoned,
                     nulls=NULLS)
    try:
        ref = _arrow(buf, zoned)
    except (pa.ArrowInvalid, UnicodeDecodeError):
        assert isinstance(out, str)  # what pyarrow refuses, the fast path never takes
        return
    if isinstance(out, str):
        assert odd, out  # only odd text is declined (the loader gives it to pyarrow)
        return
    _equal(out, ref)


@settings(deadline=None, max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 10**15), st.integers(0, 2),
                          st.floats(-1e9, 1e9, allow_nan=False).map(lambda x: round(x, 4))),
                min_size=1, max_size=60),
       st.sampled_from(["\n", "\r\n"]))
def test_parse_long_takes_every_plain_block(rows, end):
    """Blocks as gateways write them are never declined (the fast path is used)."""
    text = "".join(f"dev-{d:03d},{_time_text(1_767_571_200 * 10**9 + t * 1000, 'T', 3, 'Z')},"
                   f",{['temperature', 'humidity', 'rh'][m]},{v!r}{end}" for d, t, m, v in rows)
    buf = text.encode()
    out = parse_long(buf, columns=5, device=0, time=1, metric=3, value=4, nulls=NULLS)
    assert not isinstance(out, str), out
    _equal(out, _arrow(buf, True))


def test_parse_long_on_a_block_that_ends_anywhere():
    """Words are loaded 8 bytes at a time straight from the block; near its end
    they hold fewer bytes. Each block here is a view that ends inside a longer
    buffer, at every byte: what is taken equals pyarrow's reading."""
    text = ("dev-1,2026-01-05T00:00:00.125Z,,temperature,21.25\n"
            "dev-22,2026-01-05T00:01:00Z,,humidity,-3\n"
            "dev-333,2026-01-05T00:02:00.5Z,,temperature,1234567.5\n" * 2).encode()
    whole = memoryview(text)
    first = text.index(b"\n") + 1
    for cut in range(0, len(text) + 1):
        out = parse_long(whole[:cut], columns=5, device=0, time=1, metric=3, value=4,
                         nulls=NULLS)
        if cut >= first and cut not in range(first, first + 1):
            part = text[:cut]
            try:
                ref = _arrow(part, True)
            except pa.ArrowInvalid:
                assert isinstance(out, str)
                continue
            if not isinstance(out, str):
                _equal(out, ref)
        elif cut < 8 and not text[:cut].strip():
            assert out["times"].size == 0
    # a whole last line without its line feed is taken, to its last digit
    for cut in (len(text) - 1, len(text) - 3):
        out = parse_long(whole[:cut], columns=5, device=0, time=1, metric=3, value=4)
        assert not isinstance(out, str), out
        assert out["values"][-1] == float(text[:cut].rsplit(b",", 1)[1])


def test_parse_long_reads_nothing_past_the_end_of_its_block():
    """A block whose last byte is the last before a page that may not be read
    (mprotect'ed to no access): a load of 8 bytes past the block's end would
    crash, so the parse runs in its own process."""
    script = textwrap.dedent("""
        import ctypes, mmap
        from kernels.text import parse_long
        page = mmap.PAGESIZE
        m = mmap.mmap(-1, 3 * page)
        line = b"dev-7,2026-01-05T00:00:00Z,,t,1.5\\n"
        tail = b",2026-01-05T00:00:01Z,,t,12345.678"  # no line feed: the block ends in it
        text = line * (page // len(line))
        text += b"dev-" + b"x" * (2 * page - len(text) - len(tail) - 4) + tail
        m[:2 * page] = text
        libc = ctypes.CDLL(None, use_errno=True)
        address = ctypes.addressof(ctypes.c_char.from_buffer(m)) + 2 * page
        assert libc.mprotect(ctypes.c_void_p(address), page, 0) == 0  # PROT_NONE
        view = memoryview(m)
        for start in (0, 2 * page - 64, 2 * page - 40):
            out = parse_long(view[start:2 * page], columns=5, device=0, time=1, metric=3,
                             value=4)
            print(out if isinstance(out, str) else repr(float(out["values"][-1])))
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.split() == ["12345.678"] * 3


def test_parse_long_on_many_devices_and_a_mapped_file(tmp_path):
    """More devices than the first hash table holds; a memory-mapped block."""
    rows = [f"sensor-{i % 20000},2026-01-05T00:{i % 60:02d}:00Z,,t,{i * 0.25}\n"
            for i in range(60_000)]
    path = tmp_path / "f.csv"
    path.write_text("".join(rows))
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    view = memoryview(mapped)
    out = parse_long(view, columns=5, device=0, time=1, metric=3, value=4)
    assert len(out["devices"]) == 20000
    _equal(out, _arrow(bytes(view), True))
    view.release()
    mapped.close()


@pytest.mark.parametrize("text, why", [
    (b'd,2026-01-05T00:00:00Z,,t,"1"\n', "a quote"),
    ("d\u00e9,2026-01-05T00:00:00Z,,t,1\n".encode(), "non-ASCII"),
    (b"d,2026-01-05T00:00:00Z,t,1\n", "another number of fields"),
    (b",2026-01-05T00:00:00Z,,t,1\n", "an empty device"),
    (b"NA,2026-01-05T00:00:00Z,,t,1\n", "reads as missing"),
    (b"d,2026-01-05T00:00:00+0100,,t,1\n", "ISO 8601"),
    (b"d,2026-01-05T00:00:00Z,,t,0.1e-30\n", "number"),
])
def test_parse_long_names_what_it_declines(text, why):
    out = parse_long(text, columns=5, device=0, time=1, metric=3, value=4, nulls=NULLS)
    assert isinstance(out, str) and why in out


EDGE_TIMES = ["2026-02-30T00:00:00Z", "2023-02-29T00:00:00Z", "2026-04-31T00:00:00Z",
              "2026-06-31T00:00:00Z", "2026-09-31T00:00:00Z", "2026-11-31T00:00:00Z",
              "1900-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "2024-02-29T23:59:59Z",
              "2026-12-31T23:59:59.999999999Z", "1970-01-01T00:00:00Z", "1969-12-31T23:59:59Z",
              "1800-03-01T12:00:00Z", "2026-01-05T24:00:00Z", "2026-01-05T23:60:00Z",
              "2026-01-05T23:00:60Z", "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z",
              "2026-01-00T00:00:00Z", "2026-01-05T00:00:00+23:59", "2026-01-05T00:00:00-12:00",
              "2026-01-05 06:07:08.5+01:00"]


@pytest.mark.parametrize("text", EDGE_TIMES)
def test_parse_long_takes_a_time_exactly_when_pyarrow_does(text):
    buf = f"d,{text},,t,1\n".encode()
    out = parse_long(buf, columns=5, device=0, time=1, metric=3, value=4)
    try:
        ref = _arrow(buf, True)
    except pa.ArrowInvalid:
        assert isinstance(out, str)
        return
    if not isinstance(out, str):  # declining is allowed, a different time is not
        _equal(out, ref)
