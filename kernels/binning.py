"""Binned aggregation of irregular samples onto a regular time grid.

Distribution kind: **reduce** -- :func:`bin_samples` turns any subset of the
samples (one file, one block, one chunk) into a partial :class:`Binned`;
:func:`combine_bins` merges partials in any order; ``Binned.mean`` finalises. The
result does not depend on how the samples were split or ordered (up to the
rounding of sums).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from ._wrap import JIT_OPTIONS, numba_ready
from .distribution import Reduce, distributed
from .parallel import Rows, run_rows


class Binned(NamedTuple):
    """Per (series, bin) aggregates of samples, and what fell outside the grid.

    ``count`` (int64) counts valid samples; ``sum`` is float64 (0 for an
    empty bin); ``min``, ``max``, ``first`` and ``last`` are float64 (NaN for
    an empty bin); ``first_time`` and ``last_time`` are the int64 times of
    ``first`` and ``last``. Statistics not asked for are None.
    ``outside`` (per series) counts valid samples before the grid's start or
    after its end; ``missing`` (per series) counts NaN values. Every sample is
    in exactly one of ``count``, ``outside`` and ``missing``.
    """

    count: np.ndarray
    sum: np.ndarray
    min: np.ndarray
    max: np.ndarray
    first: np.ndarray
    last: np.ndarray
    first_time: np.ndarray
    last_time: np.ndarray
    outside: np.ndarray
    missing: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        """Mean per bin (NaN for an empty bin)."""
        out = np.empty_like(self.sum)  # same memory order as the tables
        if self.sum.flags.forc and self.count.flags.forc and (
                self.sum.flags.f_contiguous == self.count.flags.f_contiguous):
            # one pass in memory order, no temporary for 0/0
            _divide(self.sum.ravel(order="K"), self.count.ravel(order="K"),
                    out.ravel(order="K"))
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                np.divide(self.sum, self.count, out=out)
        return out


@njit(**JIT_OPTIONS)
def _divide(total, count, out):
    for i in range(total.shape[0]):
        out[i] = total[i] / count[i] if count[i] > 0 else np.nan


_DUMMY_F = np.empty((1, 1))
_DUMMY_I = np.empty((1, 1), dtype=np.int64)
STATS = ("count", "sum", "min", "max", "first", "last")


@njit(**JIT_OPTIONS)
def _bin(t, v, s, start, step, n_bins, extremes, ends, count, total, lo, hi, first, last,
         first_t, last_t, outside, missing):
    # the bin of the previous sample, [edge, edge + step): time-ordered input
    # mostly stays in it, and skips the integer division
    b = -1
    edge = 0
    for i in range(t.shape[0]):
        x = v[i]
        r = s[i]
        if x != x:
            missing[r] += 1
            continue
        ti = t[i]
        if ti < start:
            outside[r] += 1
            continue
        if b < 0 or ti < edge or ti - edge >= step:
            b = (ti - start) // step
            edge = start + b * step
        if b >= n_bins:
            outside[r] += 1
            continue
        total[r, b] += x
        new = count[r, b] == 0
        count[r, b] += 1
        if extremes:
            if new or x < lo[r, b]:
                lo[r, b] = x
            if new or x > hi[r, b]:
                hi[r, b] = x
        if ends:
            # unsorted input: first and last follow the times; on equal times
            # the sample seen first stays first and the one seen last is last
            if new or t[i] < first_t[r, b]:
                first[r, b] = x
                first_t[r, b] = t[i]
            if new or t[i] >= last_t[r, b]:
                last[r, b] = x
                last_t[r, b] = t[i]


def _grid_ns(times, start, step):
    """Times, grid start and step as int64 nanoseconds (for datetime64 times)
    or as the integers given."""
    times = np.asarray(times)
    if np.issubdtype(times.dtype, np.datetime64):
        t = times.astype("datetime64[ns]").view(np.int64)
        start = np.datetime64(start, "ns").astype(np.int64)
        step = np.timedelta64(step).astype("timedelta64[ns]").astype(np.int64)
        return t, start, step
    if not np.issubdtype(times.dtype, np.integer):
        raise TypeError(f"times must be datetime64 or integers, got dtype {times.dtype}")
    return times.astype(np.int64, copy=False), start, step


@distributed(Reduce())
def bin_samples(times, values, series=None, *, start, step, n_bins: int,
                n_series: int | None = None, stats=STATS) -> Binned:
    """Aggregate irregular samples into ``n_bins`` bins of width ``step`` from ``start``.

    Bin ``b`` holds the samples with ``start + b*step <= time < start +
    (b+1)*step``. One pass, sorted or unsorted input.

    Parameters
    ----------
    times : array_like
        Sample times, datetime64 or int64, 1-D.
    values : array_like
        Sample values, 1-D, NaN for missing.
    series : array_like of int, optional
        Series (device) number of each sample, ``0 <= series < n_series``.
        Default: all samples belong to series 0.
    start : datetime64 or int
        Left edge of the first bin.
    step : timedelta64 or int
        Bin width (> 0).
    n_bins : int
        Number of bins.
    n_series : int, optional
        Number of series; default ``max(series) + 1``.
    stats : sequence of str
        Which of count, sum, min, max, first, last to compute (count and sum
        always are; the mean needs nothing more). Default: all.

    Returns
    -------
    Binned

    Examples
    --------
    >>> b = bin_samples(np.array([0, 3, 12, 25, 31]), np.array([1.0, 3.0, 5.0, np.nan, 7.0]),
    ...                 start=0, step=10, n_bins=3)
    >>> b.count, b.mean, b.outside, b.missing
    (array([[2, 1, 0]]), array([[ 2.,  5., nan]]), array([1]), array([1]))
    """
    numba_ready()
    t, start, step = _grid_ns(times, start, step)
    v = np.asarray(values, dtype=np.float64)
    if t.ndim != 1 or v.shape != t.shape:
        raise ValueError(f"times and values must be 1-D of one length, got {t.shape} and "
                         f"{v.shape}")
    if series is None:
        s = np.zeros(t.shape, dtype=np.int64)
    else:
        s = np.asarray(series)
        if not np.issubdtype(s.dtype, np.integer) or s.shape != t.shape:
            raise ValueError("series must be integer codes, one per sample")
        s = s.astype(np.int64, copy=False)
    if n_series is None:
        n_series = int(s.max()) + 1 if s.size else 1
    if s.size and (s.min() < 0 or s.max() >= n_series):
        raise ValueError(f"series codes must lie in [0, {n_series}), got "
                         f"[{s.min()}, {s.max()}]")
    if int(step) <= 0:
        raise ValueError(f"step must be a positive duration, got step={step!r}")
    if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 0:
        raise ValueError(f"n_bins must be a whole number >= 0, got n_bins={n_bins!r}")
    unknown = set(stats) - set(STATS)
    if unknown:
        raise ValueError(f"unknown stats {sorted(unknown)}; choose from {STATS}")
    extremes = "min" in stats or "max" in stats
    ends = "first" in stats or "last" in stats
    shape = (int(n_series), int(n_bins))
    # Memory order of the (series, bin) tables: when consecutive samples
    # mostly belong to different series (a fleet's samples in time order),
    # bin-major order keeps the cells they hit on a few cache lines and
    # pages; series-major when each series comes in a run of its own.
    head = s[:100_000]
    order = "F" if head.size > 1 and np.count_nonzero(head[1:] != head[:-1]) * 2 > head.size \
        else "C"

    def table(dtype, fill):  # np.full, not zeros, for NaN: an empty bin has no min
        return np.full(shape, fill, dtype=dtype, order=order)

    def floats(wanted):
        return table(np.float64, np.nan) if wanted else None

    out = Binned(
        count=table(np.int64, 0), sum=table(np.float64, 0.0),
        min=floats(extremes), max=floats(extremes), first=floats(ends), last=floats(ends),
        first_time=table(np.int64, 0) if ends else None,
        last_time=table(np.int64, 0) if ends else None,
        outside=np.zeros(shape[0], np.int64), missing=np.zeros(shape[0], np.int64),
    )
    _bin(np.ascontiguousarray(t), np.ascontiguousarray(v), np.ascontiguousarray(s),
         np.int64(start), np.int64(step), np.int64(n_bins), extremes, ends, out.count,
         out.sum, _or(out.min, _DUMMY_F), _or(out.max, _DUMMY_F), _or(out.first, _DUMMY_F),
         _or(out.last, _DUMMY_F), _or(out.first_time, _DUMMY_I),
         _or(out.last_time, _DUMMY_I), out.outside, out.missing)
    return out


def _or(array, dummy):
    return dummy if array is None else array


def combine_bins(a: Binned, b: Binned) -> Binned:
    """Merge two partial results over the same grid (``a``'s samples first).

    Examples
    --------
    >>> t, v = np.array([0, 5, 12]), np.array([1.0, 2.0, 4.0])
    >>> whole = bin_samples(t, v, start=0, step=10, n_bins=2)
    >>> parts = combine_bins(bin_samples(t[:1], v[:1], start=0, step=10, n_bins=2),
    ...                 bin_samples(t[1:], v[1:], start=0, step=10, n_bins=2))
    >>> bool((parts.sum == whole.sum).all() and (parts.last == whole.last).all())
    True
    """
    if a.count.shape != b.count.shape:
        raise ValueError(f"partials of different grids: {a.count.shape} and {b.count.shape}")
    if (a.min is None) != (b.min is None) or (a.first is None) != (b.first is None):
        raise ValueError("partials computed with different stats cannot be combined")
    in_a, in_b = a.count > 0, b.count > 0
    extremes = ends = {}
    if a.min is not None:
        extremes = {"min": np.fmin(a.min, b.min), "max": np.fmax(a.max, b.max)}
    if a.first is not None:
        # first/last: the earlier (later) time wins; on equal times a is seen first
        take_b_first = in_b & (~in_a | (b.first_time < a.first_time))
        take_b_last = in_b & (~in_a | (b.last_time >= a.last_time))
        ends = {
            "first": np.where(take_b_first, b.first, a.first),
            "last": np.where(take_b_last, b.last, a.last),
            "first_time": np.where(take_b_first, b.first_time, a.first_time),
            "last_time": np.where(take_b_last, b.last_time, a.last_time),
        }
    none = dict.fromkeys(("min", "max", "first", "last", "first_time", "last_time"))
    return Binned(**(none | extremes | ends), count=a.count + b.count, sum=a.sum + b.sum,
                  outside=a.outside + b.outside, missing=a.missing + b.missing)


ROW_STATS = ("mean", "sum", "count", "min", "max", "first", "last")


@njit(**JIT_OPTIONS)
def _bin_rows(v, bins, n_bins, how, out, count):
    # how: 0 mean, 1 sum, 2 count, 3 min, 4 max, 5 first, 6 last
    for r in range(v.shape[0]):
        for b in range(n_bins):
            count[r, b] = 0
            out[r, b] = 0.0 if how <= 2 else np.nan
        for i in range(v.shape[1]):
            x = v[r, i]
            b = bins[i]
            if x != x or b < 0 or b >= n_bins:
                continue
            c = count[r, b]
            count[r, b] = c + 1
            if how <= 1:
                out[r, b] += x
            elif how == 3:
                if c == 0 or x < out[r, b]:
                    out[r, b] = x
            elif how == 4:
                if c == 0 or x > out[r, b]:
                    out[r, b] = x
            elif how == 5:
                if c == 0:
                    out[r, b] = x
            elif how == 6:
                out[r, b] = x
        for b in range(n_bins):
            if how == 0:
                out[r, b] = out[r, b] / count[r, b] if count[r, b] > 0 else np.nan
            elif how == 2:
                out[r, b] = count[r, b]


@distributed(Reduce())
def bin_rows(values, times, *, start, step, n_bins: int, how: str = "mean"):
    """Aggregate series that share sorted sample times onto a regular grid.

    The fast path of :func:`bin_samples` for a fleet already laid out as
    rows (one per series) over one time axis: bin ``b`` holds the samples
    with ``start + b*step <= time < start + (b+1)*step``; NaN values and
    samples outside the grid are left out (the count shows coverage).

    Parameters
    ----------
    values : array_like
        Shape (..., n_times), float; time along the last axis.
    times : array_like
        Sorted sample times (datetime64 or int64), length n_times.
    start, step, n_bins
        The grid, as in :func:`bin_samples`.
    how : str
        One of mean, sum, count, min, max, first, last.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The statistic (float64; NaN for an empty bin, except sum 0 and
        count 0) and the count of valid samples (int64), each of shape
        (..., n_bins).

    Examples
    --------
    >>> v = np.array([[1.0, 2.0, np.nan, 4.0], [1.0, 1.0, 1.0, 1.0]])
    >>> stat, count = bin_rows(v, np.array([0, 5, 10, 15]), start=0, step=10, n_bins=2)
    >>> stat
    array([[1.5, 4. ],
           [1. , 1. ]])
    >>> count
    array([[2, 1],
           [2, 2]])
    """
    if how not in ROW_STATS:
        raise ValueError(f"how must be one of {ROW_STATS}, got how={how!r}")
    numba_ready()
    t, start, step = _grid_ns(times, start, step)
    v = np.asarray(values, dtype=np.float64)
    if t.ndim != 1 or v.shape[-1:] != t.shape:
        raise ValueError(f"times must be 1-D with the length of values' last axis, got "
                         f"{t.shape} and {v.shape}")
    if t.size > 1 and (np.diff(t) < 0).any():
        raise ValueError("times must be sorted (non-decreasing)")
    if int(step) <= 0:
        raise ValueError(f"step must be a positive duration, got step={step!r}")
    if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 0:
        raise ValueError(f"n_bins must be a whole number >= 0, got n_bins={n_bins!r}")
    shape = v.shape[:-1]
    rows = np.ascontiguousarray(v.reshape(-1, v.shape[-1]))
    # bin of each sample once, in numpy (vectorised): -1 before the grid
    bins = np.where(t >= start, (t - start) // int(step), -1)
    out = np.empty((rows.shape[0], int(n_bins)))
    count = np.empty((rows.shape[0], int(n_bins)), dtype=np.int64)
    run_rows(_bin_rows, Rows(rows), bins, np.int64(n_bins), ROW_STATS.index(how), Rows(out),
             Rows(count), rows=rows.shape[0])
    return out.reshape(shape + (int(n_bins),)), count.reshape(shape + (int(n_bins),))


@njit(**JIT_OPTIONS)
def _increasing(s, t, last):
    for i in range(t.shape[0]):
        r = s[i]
        if t[i] <= last[r]:
            return False
        last[r] = t[i]
    return True


def _series_times(series, times, n_series: int) -> tuple[np.ndarray, np.ndarray]:
    """Series codes and times as int64 arrays of one shape, codes in range."""
    s = np.ascontiguousarray(series, dtype=np.int64)
    t = np.ascontiguousarray(times, dtype=np.int64)
    if s.shape != t.shape:
        raise ValueError(f"series and times differ in shape: {s.shape} and {t.shape}")
    if s.size and (s.min() < 0 or s.max() >= n_series):
        raise ValueError(f"series codes must lie in [0, {n_series})")
    return s, t


@njit(**JIT_OPTIONS)
def _time_range(s, t, lo, hi):
    for i in range(s.shape[0]):
        r = s[i]
        if t[i] < lo[r]:
            lo[r] = t[i]
        if t[i] > hi[r]:
            hi[r] = t[i]


def time_range_per_series(series, times, n_series: int) -> tuple[np.ndarray, np.ndarray]:
    """The first and last time of each series (int64 max and min for a series
    without samples) -- one O(n) pass.

    Examples
    --------
    >>> lo, hi = time_range_per_series(np.array([1, 0, 1]), np.array([5, 7, 3]), 3)
    >>> lo[:2], hi[:2]
    (array([7, 3]), array([7, 5]))
    """
    s, t = _series_times(series, times, n_series)
    lo = np.full(int(n_series), np.iinfo(np.int64).max, dtype=np.int64)
    hi = np.full(int(n_series), np.iinfo(np.int64).min, dtype=np.int64)
    _time_range(s, t, lo, hi)
    return lo, hi


@njit(**JIT_OPTIONS)
def _add_rows(first, second, b0, count, total, out_count, out_total):
    width = count.shape[1]
    for i in range(count.shape[0]):
        oc = out_count[first[i], second[i], b0:b0 + width]
        ot = out_total[first[i], second[i], b0:b0 + width]
        c = count[i]
        t = total[i]
        for j in range(width):
            oc[j] += c[j]
            ot[j] += t[j]


def add_rows(first, second, b0: int, count, total, out_count, out_total) -> None:
    """Add a partial's counts and sums into (first, second, bin) tables, in place.

    Row ``i`` of ``count`` and ``total`` (rows x bins, any memory order)
    goes to ``out[first[i], second[i], b0:b0 + bins]``: a device group's
    partials added up straight into its (metric, device, time) grid.

    Examples
    --------
    >>> out_count, out_total = np.zeros((2, 3, 4), np.int32), np.zeros((2, 3, 4))
    >>> add_rows(np.array([1]), np.array([2]), 1, np.array([[2, 1]]),
    ...          np.array([[3.0, 4.0]]), out_count, out_total)
    >>> out_count[1, 2], out_total[1, 2]
    (array([0, 2, 1, 0], dtype=int32), array([0., 3., 4., 0.]))
    """
    first = np.asarray(first, np.int64)
    second = np.asarray(second, np.int64)
    if count.shape != total.shape or count.shape[0] != first.size or first.shape != second.shape:
        raise ValueError(f"rows of different lengths: {first.size}, {second.size}, "
                         f"{count.shape} and {total.shape}")
    if count.size and (b0 < 0 or b0 + count.shape[1] > out_count.shape[2]):
        raise ValueError(f"bins {b0}..{b0 + count.shape[1]} outside the tables' "
                         f"{out_count.shape[2]}")
    # row by row along the bins: a table in bin-major order is copied to
    # row-major first (a loop over it in place jumps a page per sample)
    _add_rows(first, second, np.int64(b0), np.ascontiguousarray(count),
              np.ascontiguousarray(total), out_count, out_total)


@njit(**JIT_OPTIONS)
def _valid_long(rank, device_codes, metric_codes, times, values, n_metrics, counts):
    n = 0
    for i in range(values.shape[0]):
        n += np.int64(values[i] == values[i])
    s = np.empty(n, np.int64)
    t = np.empty(n, np.int64)
    v = np.empty(n, np.float64)
    k = 0
    for i in range(values.shape[0]):
        x = values[i]
        if x == x:
            series = rank[device_codes[i]] * n_metrics + metric_codes[i]
            s[k] = series
            t[k] = times[i]
            v[k] = x
            counts[series] += 1
            k += 1
    return s, t, v


def valid_long_samples(rank, device_codes, metric_codes, times, values, n_metrics: int):
    """The valid (non-NaN) samples of long rows as series, times and values, and
    the count of samples per series, in one compiled pass.

    A row's series is ``rank[device_codes[i]] * n_metrics + metric_codes[i]``.

    Examples
    --------
    >>> s, t, v, counts = valid_long_samples(
    ...     np.array([1, 0]), np.array([0, 1, 0]), np.array([0, 1, 1]),
    ...     np.array([5, 6, 7]), np.array([1.0, np.nan, 3.0]), 2)
    >>> s.tolist(), t.tolist(), v.tolist(), counts.tolist()
    ([2, 3], [5, 7], [1.0, 3.0], [0, 0, 1, 1])
    """
    rank = np.asarray(rank, np.int64)
    counts = np.zeros(max(rank.size * int(n_metrics), 1), np.int64)
    s, t, v = _valid_long(rank, np.asarray(device_codes), np.asarray(metric_codes),
                          np.asarray(times, np.int64), np.asarray(values, np.float64),
                          np.int64(n_metrics), counts)
    return s, t, v, counts


def increasing_per_series(series, times, n_series: int) -> bool:
    """True when, in input order, every series' times strictly increase.

    Then no series has two samples at one time (no duplicates) -- one O(n)
    pass, with no sort.

    Examples
    --------
    >>> increasing_per_series(np.array([0, 1, 0, 1]), np.array([1, 1, 2, 2]), 2)
    True
    >>> increasing_per_series(np.array([0, 1, 0]), np.array([1, 1, 1]), 2)
    False
    """
    s, t = _series_times(series, times, n_series)
    last = np.full(int(n_series), np.iinfo(np.int64).min, dtype=np.int64)
    return bool(_increasing(s, t, last))
