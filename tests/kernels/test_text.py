"""kernels.text.line_ends against bytes.count on any bytes, in any buffer."""

from __future__ import annotations

import mmap

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.text import line_ends


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
