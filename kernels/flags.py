"""QARTOD quality-flag codes, defined once for the whole project, and the runs of
raised flags that events are made of.

Every flag kernel writes these into int8 arrays; :mod:`toolkit.model`
re-exports them (as ``FLAG_PASS``...) with the CF attributes of a flag
variable. :func:`runs` finds the runs of raised flags (with their worst flag
and peak score) that :func:`toolkit.flags_to_events` and the pipeline turn
into events.

Examples
--------
>>> from kernels import flags
>>> dict(zip(flags.MEANINGS, flags.CODES))["suspect"]
3
"""

import numpy as np
from numba import njit

from ._wrap import JIT_OPTIONS

PASS, NOT_EVALUATED, SUSPECT, FAIL, MISSING = 1, 2, 3, 4, 9
CODES = (PASS, NOT_EVALUATED, SUSPECT, FAIL, MISSING)
MEANINGS = ("pass", "not_evaluated", "suspect", "fail", "missing")


@njit(inline="always")
def _raised(f, min_flag, skip_missing):
    return f >= min_flag and not (skip_missing and f == MISSING)


@njit(**JIT_OPTIONS)
def _count_runs(flags, min_flag, skip_missing):
    count = 0
    for r in range(flags.shape[0]):
        inside = False
        for i in range(flags.shape[1]):
            up = _raised(flags[r, i], min_flag, skip_missing)
            count += up and not inside
            inside = up
    return count


@njit(**JIT_OPTIONS)
def _fill_runs(flags, scores, has_scores, min_flag, skip_missing, row, first, last, worst,
               peak):
    k = -1
    for r in range(flags.shape[0]):
        inside = False
        for i in range(flags.shape[1]):
            f = flags[r, i]
            if not _raised(f, min_flag, skip_missing):
                inside = False
                continue
            if not inside:
                k += 1
                row[k], first[k], worst[k], peak[k] = r, i, f, np.nan
                inside = True
            last[k] = i
            if f > worst[k]:
                worst[k] = f
            if has_scores:
                a = abs(scores[r, i])
                if a == a and not a <= peak[k]:  # NaN ignored; the first number taken
                    peak[k] = a


def runs(flags, scores=None, *, min_flag: int = SUSPECT, skip_missing: bool = True):
    """Runs of raised flags along the last axis of a 2-D int8 array, compiled: one
    pass counts the runs, a second fills them in.

    A sample is raised when its flag is at least ``min_flag`` (and, with
    ``skip_missing``, not :data:`MISSING`). Returns ``(row, first, last,
    worst, peak)``: each run's row, first and last (inclusive) index, its
    highest flag, and the largest ``|score|`` in it, NaN ignored (NaN when
    every score in it is NaN, or without ``scores``). Runs come row by row,
    in order along the row.

    Examples
    --------
    >>> f = np.array([[1, 3, 4, 1, 3], [9, 4, 1, 1, 1]], dtype=np.int8)
    >>> s = np.array([[0.0, -2.0, np.nan, 0.0, 1.0], [0.0, 5.0, 0.0, 0.0, 0.0]])
    >>> row, first, last, worst, peak = runs(f, s)
    >>> row.tolist(), first.tolist(), last.tolist(), worst.tolist(), peak.tolist()
    ([0, 0, 1], [1, 4, 1], [2, 4, 1], [4, 3, 4], [2.0, 1.0, 5.0])
    """
    flags = np.ascontiguousarray(flags, dtype=np.int8)
    if flags.ndim != 2:
        raise ValueError(f"flags must be 2-D (rows x samples), got {flags.ndim}-D")
    has_scores = scores is not None
    if has_scores:
        scores = np.ascontiguousarray(scores, dtype=np.float64)
        if scores.shape != flags.shape:
            raise ValueError(f"scores have shape {scores.shape}, flags {flags.shape}")
    else:
        scores = np.empty((0, 0))
    n = _count_runs(flags, int(min_flag), bool(skip_missing))
    row, first, last = (np.empty(n, np.int64) for _ in range(3))
    worst, peak = np.empty(n, np.int8), np.empty(n)
    _fill_runs(flags, scores, has_scores, int(min_flag), bool(skip_missing), row, first, last,
               worst, peak)
    return row, first, last, worst, peak
