"""Scans of raw text for the loaders: line ends counted in one compiled pass.

Not a time-series kernel (it has no distribution kind): the CSV loader calls
it on the bytes of a block, in the parse task, instead of two or three passes
of ``bytes.count`` over a copy of the block.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._wrap import JIT_OPTIONS


@njit(**JIT_OPTIONS)
def _count_ends(b):
    lf = 0
    cr = 0
    for i in range(b.shape[0]):
        c = b[i]
        lf += np.int64(c == 10)
        cr += np.int64(c == 13)
    return lf, cr


@njit(**JIT_OPTIONS)
def _crlf(b):
    n = 0
    for i in range(b.shape[0] - 1):
        n += np.int64((b[i] == 13) & (b[i + 1] == 10))
    return n


def line_ends(buf) -> tuple[int, int]:
    """The line feeds in ``buf``, and its carriage returns that are not
    followed by a line feed (lone CRs).

    Parameters
    ----------
    buf : bytes-like
        Bytes, a memoryview (of a memory-mapped file, say) or a uint8 array;
        not copied.

    Returns
    -------
    (int, int)
        ``(line feeds, lone carriage returns)``.

    Examples
    --------
    >>> line_ends(b"a,1\\r\\nb,2\\nc,3\\r")
    (2, 1)
    >>> line_ends(b"")
    (0, 0)
    """
    b = np.frombuffer(buf, dtype=np.uint8)
    lf, cr = _count_ends(b)  # one pass that the compiler vectorises
    return int(lf), int(cr - _crlf(b)) if cr else 0


__all__ = ["line_ends"]
