"""Rolling statistics over a time span, for irregularly sampled series.

The window of sample ``i`` holds the samples ``j`` with
``times[i] - span < times[j] <= times[i]`` (pandas' ``rolling("10min")``).
Distribution kind: **window** -- a chunk needs the samples of the preceding
``span`` of time from its predecessor.
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
    times_2d,
)
from .distribution import Window, distributed
from .parallel import Rows, Scratch, run_rows
from .rolling import (
    _MEAN,
    _REBUILD_EVERY,
    _STD,
    _SUM,
    _VAR,
    _enter,
    _leave,
    _needs_rebuild,
    _rebuild,
    _statistic,
    _track_run,
    first_finite,
)

_COUNT, _MIN, _MAX = 10, 11, 12


@njit(**JIT_OPTIONS)
def _time_moments(a, t, span, min_count, ddof, stat, out):
    for r in range(a.shape[0]):
        x = a[r]
        tt = t[r if t.shape[0] > 1 else 0]
        # the same shifted sums as rolling._make_moments, with a left edge
        # that follows the times instead of a fixed number of samples
        k = first_finite(x)
        n = 0
        s1 = 0.0
        s2 = 0.0
        n_pos = 0
        n_neg = 0
        last_change = 0
        run = 0
        last_valid = np.nan
        left = 0
        next_rebuild = _REBUILD_EVERY
        for i in range(x.shape[0]):
            v = x[i]
            n, s1, s2, n_pos, n_neg = _enter(v, k, n, s1, s2, n_pos, n_neg)
            last_change, run, last_valid = _track_run(v, i, last_change, run, last_valid)
            while tt[left] <= tt[i] - span:
                n, s1, s2, n_pos, n_neg = _leave(x[left], k, n, s1, s2, n_pos, n_neg)
                left += 1
            constant = last_change <= left or run == n
            if i == next_rebuild or (stat != _SUM and stat != _MEAN and stat != _COUNT
                                     and not constant and _needs_rebuild(n, s1, s2)):
                next_rebuild = i + _REBUILD_EVERY
                k, s1, s2 = _rebuild(x, left, i + 1, n, k, s1, s2)
            if stat == _COUNT:
                out[r, i] = n + n_pos + n_neg
            else:
                out[r, i] = _statistic(stat, n, s1, s2, k, min_count, ddof, n_pos, n_neg,
                                       constant, last_valid)


@njit(**JIT_OPTIONS)
def _time_extreme(a, t, span, min_count, is_max, queue, out):
    for r in range(a.shape[0]):
        x = a[r]
        tt = t[r if t.shape[0] > 1 else 0]
        # monotone deque of indices (queue[front:back]); a window can hold
        # every sample, so the scratch has one slot per sample
        front = 0
        back = 0
        left = 0
        count = 0
        for i in range(x.shape[0]):
            v = x[i]
            if v == v:
                count += 1
                while back > front:
                    b = x[queue[back - 1]]
                    if (b <= v) if is_max else (b >= v):
                        back -= 1
                    else:
                        break
                queue[back] = i
                back += 1
            while tt[left] <= tt[i] - span:
                if x[left] == x[left]:
                    count -= 1
                if back > front and queue[front] == left:
                    front += 1
                left += 1
            out[r, i] = x[queue[front]] if count >= min_count and back > front else np.nan


def _prepare(a, times, span, min_count, axis):
    arr = as_float_array(a)
    series, shape = as_series(arr, axis)
    t = times_2d(times, series.shape)
    span = duration_ns(span, "span", times)
    if not span > 0:
        raise ValueError(f"span must be a positive duration, got span={span!r}")
    if isinstance(min_count, bool) or int(min_count) != min_count or min_count < 1:
        raise ValueError(f"min_count must be a whole number >= 1, got min_count={min_count!r}")
    return arr, series, shape, t, span


@distributed(Window(span="span"))
def time_rolling(a, times, span, stat: str = "mean", *, min_count: int = 1,
                 ddof: int = 1, axis: int = -1):
    """A statistic over the trailing ``span`` of time before each sample.

    Parameters
    ----------
    a : array_like
        Values; NaN means missing.
    times : array_like
        Sorted sample times (datetime64, or integers): one time axis for all
        series, or one per series.
    span : timedelta64 or int
        Window length in time: the window of sample ``i`` is
        ``(times[i] - span, times[i]]``.
    stat : {"count", "sum", "mean", "var", "std", "min", "max"}
        The statistic.
    min_count : int
        Fewest valid samples for a result (default 1, as pandas for time
        windows); ``count`` ignores it.
    ddof : int
        Delta degrees of freedom of ``var`` and ``std``.
    axis : int
        The time axis.

    Examples
    --------
    >>> t = np.array([0, 1, 2, 10, 11])
    >>> time_rolling([1.0, 2.0, 3.0, 4.0, np.nan], t, span=3, stat="sum")
    array([1., 3., 6., 4., 4.])
    >>> time_rolling([1.0, 2.0, 3.0, 4.0, np.nan], t, span=3, stat="count")
    array([1., 2., 3., 1., 1.])
    """
    codes = {"count": _COUNT, "sum": _SUM, "mean": _MEAN, "var": _VAR, "std": _STD,
             "min": _MIN, "max": _MAX}
    if stat not in codes:
        raise ValueError(f"stat must be one of {sorted(codes)}, got stat={stat!r}")
    arr, series, shape, t, span = _prepare(a, times, span, min_count, axis)
    if isinstance(ddof, bool) or int(ddof) != ddof or ddof < 0:
        raise ValueError(f"ddof must be a whole number >= 0, got ddof={ddof!r}")
    out = np.empty(series.shape, dtype=arr.dtype)
    if stat in ("min", "max"):
        queue = np.empty(series.shape[1], dtype=np.int64)
        run_rows(_time_extreme, Rows(series), Rows(t), span, np.int64(min_count),
                 stat == "max", Scratch(queue), Rows(out))
    else:
        run_rows(_time_moments, Rows(series), Rows(t), span, np.int64(min_count),
                 np.int64(ddof), np.int64(codes[stat]), Rows(out))
    return from_series(out, shape, axis)
