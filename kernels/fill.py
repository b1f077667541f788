"""Filling missing samples: forward fill with a limit, linear interpolation.

Distribution kinds over chunks of the time axis: :func:`ffill` is a **scan**
(it carries the last valid value and the length of the current gap);
:func:`interpolate` is a **window** kernel (a gap is filled only when both of
its ends are known, so a chunk needs an overlap of ``max_gap`` samples, or of
the time span, on both sides).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._wrap import (
    JIT_OPTIONS,
    as_float_array,
    as_series,
    duration_ns,
    from_series,
    series_state,
    times_2d,
)
from .distribution import Scan, Window, distributed
from .parallel import Rows, run_rows

_NO_LIMIT = np.iinfo(np.int64).max


@njit(**JIT_OPTIONS)
def _ffill(a, limit, last, gap, out):
    for r in range(a.shape[0]):
        x = a[r]
        value = last[r]
        run = gap[r]  # NaN samples since `value`
        for i in range(x.shape[0]):
            v = x[i]
            if v == v:
                value = v
                run = 0
                out[r, i] = v
            else:
                run += 1
                out[r, i] = value if run <= limit else np.nan
        last[r] = value
        gap[r] = run


@distributed(Scan())
def ffill(a, limit: int | None = None, *, axis: int = -1, state=None,
          return_state: bool = False):
    """Fill each NaN with the last valid value before it, at most ``limit`` in a row.

    As :meth:`pandas.Series.ffill`: NaN before the first valid value stay NaN;
    in a gap longer than ``limit`` the first ``limit`` samples are filled.

    Parameters
    ----------
    a : array_like
        Values; NaN means missing.
    limit : int, optional
        Most consecutive NaN filled after a valid value; default no limit.
    axis : int
        The time axis.
    state : tuple of arrays, optional
        ``(last_value, gap_length)`` returned by the previous piece.
    return_state : bool
        Also return the state for the next piece.

    Examples
    --------
    >>> ffill([np.nan, 1.0, np.nan, np.nan, np.nan, 2.0], limit=2)
    array([nan,  1.,  1.,  1., nan,  2.])
    >>> head, state = ffill([1.0, np.nan], return_state=True)
    >>> ffill([np.nan, 3.0], state=state)
    array([1., 3.])
    """
    if limit is None:
        limit = _NO_LIMIT
    elif isinstance(limit, bool) or int(limit) != limit or limit < 1:
        raise ValueError(f"limit must be a whole number >= 1 or None, got limit={limit!r}")
    arr = as_float_array(a)
    series, shape = as_series(arr, axis)
    n = series.shape[0]
    last = series_state(None if state is None else state[0], n, np.full(n, np.nan),
                        "state")
    gap = series_state(None if state is None else state[1], n, np.zeros(n, np.int64),
                       "state")
    out = np.empty_like(series)
    run_rows(_ffill, Rows(series), np.int64(limit), Rows(last), Rows(gap), Rows(out))
    result = from_series(out, shape, axis)
    if return_state:
        return result, (last.reshape(shape[:-1]), gap.reshape(shape[:-1]))
    return result


@njit(**JIT_OPTIONS)
def _interpolate(a, t, by_count, limit, out):
    for r in range(a.shape[0]):
        x = a[r]
        tt = t[r if t.shape[0] > 1 else 0]
        prev = -1  # index of the last valid sample
        for i in range(x.shape[0]):
            v = x[i]
            out[r, i] = v
            if v != v:
                continue
            # fill the gap (prev, i) when it is short enough: `limit` counts
            # missing samples, or (by_count False) time between the ends
            if prev >= 0 and i - prev > 1:
                span = tt[i] - tt[prev]
                if (i - prev - 1 <= limit) if by_count else (span <= limit):
                    for j in range(prev + 1, i):
                        w = (tt[j] - tt[prev]) / span
                        out[r, j] = x[prev] + w * (v - x[prev])
            prev = i


@distributed(Window(before="max_gap", before_add=1, after="max_gap", after_add=1,
         span="max_span", span_after=True, span_inclusive=True))
def interpolate(a, max_gap: int | None = None, *, times=None, max_span=None,
                axis: int = -1):
    """Fill gaps by linear interpolation between the valid samples around them.

    A gap is filled only when it is short enough -- at most ``max_gap``
    missing samples, or, with ``times``, when its two valid ends are at most
    ``max_span`` apart -- and entirely: a longer gap stays NaN, as do NaN
    before the first and after the last valid sample. With ``times`` the
    interpolation follows the time of each sample, otherwise its position.

    Parameters
    ----------
    a : array_like
        Values; NaN means missing.
    max_gap : int, optional
        Longest gap, in missing samples, that is filled. Default: any.
    times : array_like, optional
        Sample times (datetime64 or numbers), one axis for all series or one
        per series, sorted.
    max_span : timedelta64 or number, optional
        With ``times``: longest time between a gap's valid ends.
    axis : int
        The time axis.

    Examples
    --------
    >>> interpolate([1.0, np.nan, 3.0, np.nan, np.nan, np.nan, 7.0], max_gap=2)
    array([ 1.,  2.,  3., nan, nan, nan,  7.])
    >>> interpolate([0.0, np.nan, 10.0], times=np.array([0, 9, 10]), max_span=20)
    array([ 0.,  9., 10.])
    """
    arr = as_float_array(a)
    series, shape = as_series(arr, axis)
    if times is None:
        if max_span is not None:
            raise ValueError("max_span needs times; without times give max_gap")
        if max_gap is not None and (isinstance(max_gap, bool) or int(max_gap) != max_gap
                                    or max_gap < 1):
            raise ValueError(f"max_gap must be a whole number >= 1, got max_gap={max_gap!r}")
        t = np.arange(series.shape[1], dtype=np.float64)[None, :]
        by_count, limit = True, float(np.inf if max_gap is None else max_gap)
    else:
        if max_gap is not None:
            raise ValueError("with times, give max_span (a duration), not max_gap")
        t, limit = _times_as_float(times, max_span, series.shape)
        by_count = False
    out = np.empty_like(series)
    run_rows(_interpolate, Rows(series), Rows(t), by_count, limit, Rows(out))
    return from_series(out, shape, axis)


def _times_as_float(times, max_span, shape):
    t = times_2d(times, shape)
    # positions relative to the first time, as floats for the interpolation
    t = (t - (t.min() if t.size else 0)).astype(np.float64)
    limit = np.inf if max_span is None else duration_ns(max_span, "max_span", times)
    if limit < 0:
        raise ValueError(f"max_span must be >= 0, got {max_span!r}")
    return t, limit
