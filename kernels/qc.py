"""Sensor-quality flags with the QARTOD codes.

1 pass, 2 not evaluated, 3 suspect, 4 fail, 9 missing; int8 results.

Distribution kinds over chunks of the time axis: :func:`gross_range` is
**pointwise**; :func:`spike` is a **window** kernel (one neighbour on each
side); :func:`rate_of_change`, :func:`flat_line` and :func:`time_gaps` are
**scans** that carry state from one piece of a series to the next.
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
from .distribution import FLAG, Pointwise, Scan, Window, distributed
from .flags import FAIL, MISSING, NOT_EVALUATED, PASS, SUSPECT
from .parallel import Rows, run_rows

_NO_TIME = np.iinfo(np.int64).min


@njit(**JIT_OPTIONS)
def _gross_range(a, fail_lo, fail_hi, suspect_lo, suspect_hi, out):
    for r in range(a.shape[0]):
        for i in range(a.shape[1]):
            v = a[r, i]
            if v != v:
                out[r, i] = MISSING
            elif v < fail_lo or v > fail_hi:
                out[r, i] = FAIL
            elif v < suspect_lo or v > suspect_hi:
                out[r, i] = SUSPECT
            else:
                out[r, i] = PASS


@distributed(Pointwise(FLAG))
def gross_range(a, fail_span: tuple[float, float],
                suspect_span: tuple[float, float] | None = None, *, axis: int = -1):
    """Flag values outside the sensor's range (fail) or the expected range (suspect).

    Examples
    --------
    >>> gross_range([5.0, 45.0, 80.0, np.nan], (-40, 60), (0, 40))
    array([1, 3, 4, 9], dtype=int8)
    """
    fail_lo, fail_hi, suspect_lo, suspect_hi = check_gross_range(fail_span, suspect_span)
    return _flags(_gross_range, a, axis, fail_lo, fail_hi, suspect_lo, suspect_hi)


@njit(**JIT_OPTIONS)
def _spike(a, suspect, fail, out):
    for r in range(a.shape[0]):
        x = a[r]
        n = x.shape[0]
        for i in range(n):
            v = x[i]
            if v != v:
                out[r, i] = MISSING
            elif i == 0 or i == n - 1 or x[i - 1] != x[i - 1] or x[i + 1] != x[i + 1]:
                out[r, i] = NOT_EVALUATED
            else:
                # distance from the mean of the two neighbours (QARTOD)
                d = abs(v - 0.5 * (x[i - 1] + x[i + 1]))
                out[r, i] = FAIL if d > fail else (SUSPECT if d > suspect else PASS)


@distributed(Window(before=1, after=1, outputs=FLAG))
def spike(a, suspect: float, fail: float, *, axis: int = -1):
    """Flag a sample far from the mean of its two neighbours.

    ``|x[i] - (x[i-1] + x[i+1]) / 2|`` above ``suspect`` is 3, above ``fail``
    4. The first and last samples, and those next to a NaN, are 2. As in
    QARTOD, a large spike also lifts its neighbours' distance: choose
    ``suspect`` with that in mind.

    Examples
    --------
    >>> spike([1.0, 1.1, 9.0, 1.0, 1.2], suspect=4.5, fail=6)
    array([2, 1, 4, 1, 2], dtype=int8)
    >>> spike([1.0, 1.1, 9.0, 1.0, 1.2], suspect=2, fail=6)
    array([2, 3, 4, 3, 2], dtype=int8)
    """
    suspect, fail = check_thresholds(suspect, fail)
    return _flags(_spike, a, axis, suspect, fail)


@njit(**JIT_OPTIONS)
def _rate_of_change(a, t, threshold, last_value, last_time, out):
    for r in range(a.shape[0]):
        x = a[r]
        tt = t[r if t.shape[0] > 1 else 0]
        value = last_value[r]
        when = last_time[r]
        for i in range(x.shape[0]):
            v = x[i]
            if v != v:
                out[r, i] = MISSING
                continue
            if value != value:
                out[r, i] = NOT_EVALUATED
            else:
                dt = tt[i] - when
                rate = abs(v - value) / dt if dt > 0 else np.inf
                out[r, i] = SUSPECT if rate > threshold else PASS
            value = v
            when = tt[i]
        last_value[r] = value
        last_time[r] = when


@distributed(Scan(FLAG))
def rate_of_change(a, threshold: float, *, times=None, axis: int = -1, state=None,
                   return_state: bool = False):
    """Flag a sample that changed faster than ``threshold`` since the last valid one.

    The rate is per sample, or per unit of ``times`` (integers, or datetime64
    in nanoseconds). Suspect (3) above the threshold; the first valid sample
    is 2; NaN is 9. Carries ``(last_value, last_time)`` as state.

    Examples
    --------
    >>> rate_of_change([1.0, 1.5, np.nan, 9.0, 9.2], threshold=2.0)
    array([2, 1, 9, 3, 1], dtype=int8)
    """
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got threshold={threshold!r}")
    arr = as_float_array(a)
    series, shape = as_series(arr, axis)
    t = _times(times, series.shape)
    n = series.shape[0]
    value = series_state(None if state is None else state[0], n, np.full(n, np.nan), "state")
    when = series_state(None if state is None else state[1], n, np.zeros(n, np.int64), "state")
    out = np.empty(series.shape, dtype=np.int8)
    run_rows(_rate_of_change, Rows(series), Rows(t), float(threshold), Rows(value), Rows(when),
             Rows(out))
    return _result(out, shape, axis, (value, when), return_state)


@njit(**JIT_OPTIONS)
def _flat_line(a, t, tolerance, suspect, fail, by_time, last_value, run, start, out):
    for r in range(a.shape[0]):
        x = a[r]
        tt = t[r if t.shape[0] > 1 else 0]
        value = last_value[r]
        length = run[r]
        first = start[r]
        for i in range(x.shape[0]):
            v = x[i]
            if v != v:
                out[r, i] = MISSING  # a NaN neither breaks nor extends a run
                continue
            if value == value and abs(v - value) <= tolerance:
                length += 1
            else:
                length = 1
                first = tt[i]
            value = v
            size = tt[i] - first if by_time else length
            out[r, i] = FAIL if size >= fail else (SUSPECT if size >= suspect else PASS)
        last_value[r] = value
        run[r] = length
        start[r] = first


@distributed(Scan(FLAG))
def flat_line(a, tolerance: float, suspect: float, fail: float, *, times=None,
              axis: int = -1, state=None, return_state: bool = False):
    """Flag a stuck sensor: a run of valid samples each within ``tolerance`` of the last.

    A run grows while each valid sample differs from the previous valid one
    by at most ``tolerance`` (NaN are skipped). A sample is suspect (3) once
    its run holds ``suspect`` samples, failed (4) at ``fail`` samples; with
    ``times``, ``suspect`` and ``fail`` are durations since the run began.
    The flags look back only, so the first samples of a run pass until the
    run is long enough. Carries ``(last_value, run_length, run_start)``.

    Examples
    --------
    >>> flat_line([1.0, 2.0, 2.0, 2.0, 2.0, 3.0], tolerance=0.0, suspect=3, fail=4)
    array([1, 1, 1, 3, 4, 1], dtype=int8)
    """
    check_flat_line(tolerance, suspect, fail)
    arr = as_float_array(a)
    series, shape = as_series(arr, axis)
    t = _times(times, series.shape)
    if times is not None:
        suspect = duration_ns(suspect, "suspect", times)
        fail = duration_ns(fail, "fail", times)
    n = series.shape[0]
    value = series_state(None if state is None else state[0], n, np.full(n, np.nan), "state")
    run = series_state(None if state is None else state[1], n, np.zeros(n, np.int64), "state")
    start = series_state(None if state is None else state[2], n, np.zeros(n, np.int64),
                         "state")
    out = np.empty(series.shape, dtype=np.int8)
    run_rows(_flat_line, Rows(series), Rows(t), float(tolerance), float(suspect), float(fail),
             times is not None, Rows(value), Rows(run), Rows(start), Rows(out))
    return _result(out, shape, axis, (value, run, start), return_state)


@njit(**JIT_OPTIONS)
def _time_gaps(t, max_gap, last_time, out):
    for r in range(t.shape[0]):
        prev = last_time[r]
        for i in range(t.shape[1]):
            if prev == _NO_TIME:
                out[r, i] = NOT_EVALUATED
            else:
                step = t[r, i] - prev
                # a step longer than max_gap follows a gap; a step backwards
                # is a clock jump: both fail
                out[r, i] = FAIL if step > max_gap or step < 0 else PASS
            prev = t[r, i]
        last_time[r] = prev


@distributed(Scan(FLAG))
def time_gaps(times, max_gap, *, axis: int = -1, state=None, return_state: bool = False):
    """Flag the sample after a gap longer than ``max_gap`` (4), or after a clock jump back.

    ``times`` are datetime64 (``max_gap`` a timedelta64) or integers. The
    first sample is 2 unless ``state`` (the last time of the previous piece)
    is given.

    Examples
    --------
    >>> time_gaps(np.array([0, 10, 20, 95, 100, 90]), max_gap=30)
    array([2, 1, 1, 4, 1, 4], dtype=int8)
    """
    max_gap = duration_ns(max_gap, "max_gap", times)
    t = np.asarray(times)
    if np.issubdtype(t.dtype, np.datetime64):
        t = t.astype("datetime64[ns]").view(np.int64)
    elif not np.issubdtype(t.dtype, np.integer):
        raise TypeError(f"times must be datetime64 or integers, got dtype {t.dtype}")
    series, shape = as_series(t.astype(np.int64), axis)
    n = series.shape[0]
    last = series_state(state, n, np.full(n, _NO_TIME, dtype=np.int64), "state")
    out = np.empty(series.shape, dtype=np.int8)
    run_rows(_time_gaps, Rows(series), max_gap, Rows(last), Rows(out))
    return _result(out, shape, axis, last, return_state)


@njit(**JIT_OPTIONS)
def _sample_gaps(a, t, max_gap, last_time, out):
    shared = t.shape[0] == 1  # one time axis for every series
    for r in range(a.shape[0]):
        tr = t[0] if shared else t[r]
        prev = last_time[r]
        for i in range(a.shape[1]):
            if a[r, i] != a[r, i]:  # a missing sample is no sample: the gap goes on
                out[r, i] = MISSING
                continue
            if prev == _NO_TIME:
                out[r, i] = NOT_EVALUATED
            else:
                out[r, i] = FAIL if tr[i] - prev > max_gap else PASS
            prev = tr[i]
        last_time[r] = prev


@distributed(Scan(FLAG))
def sample_gaps(a, max_gap, *, times, axis: int = -1, state=None,
                return_state: bool = False):
    """Flag the valid sample that ends a gap in a series with missing values (4).

    On a regular grid a gap is a run of NaN: a valid sample fails when more
    than ``max_gap`` of time passed since the previous valid sample of its
    series. Missing samples are 9; the first valid sample is 2 unless
    ``state`` (the time of the last valid sample before) is given.

    Examples
    --------
    >>> x = np.array([1.0, np.nan, np.nan, np.nan, 2.0, 3.0])
    >>> sample_gaps(x, 2, times=np.arange(6))
    array([2, 9, 9, 9, 4, 1], dtype=int8)
    """
    arr = as_float_array(a)
    series, shape = as_series(arr, axis)
    t = _times(times, series.shape)
    max_gap = duration_ns(max_gap, "max_gap", times)
    n = series.shape[0]
    last = series_state(state, n, np.full(n, _NO_TIME, dtype=np.int64), "state")
    out = np.empty(series.shape, dtype=np.int8)
    run_rows(_sample_gaps, Rows(series), Rows(t), max_gap, Rows(last), Rows(out))
    return _result(out, shape, axis, last, return_state)


def _flags(loop, a, axis, *params):
    arr = as_float_array(a)
    series, shape = as_series(arr, axis)
    out = np.empty(series.shape, dtype=np.int8)
    run_rows(loop, Rows(series), *params, Rows(out))
    return from_series(out, shape, axis)


def _result(out, shape, axis, state, return_state):
    result = from_series(out, shape, axis)
    if not return_state:
        return result
    lead = shape[:-1]
    if isinstance(state, tuple):
        return result, tuple(s.reshape(lead) for s in state)
    return result, state.reshape(lead)


def _times(times, shape):
    """Sample times as int64 ``(1 or series, time)``; positions when None."""
    if times is None:
        return np.arange(shape[1], dtype=np.int64)[None, :]
    return times_2d(times, shape, sorted_=False)


def check_gross_range(fail_span, suspect_span=None) -> tuple[float, float, float, float]:
    """Check the ranges of :func:`gross_range`: ``(fail_lo, fail_hi, suspect_lo, suspect_hi)``.

    Examples
    --------
    >>> check_gross_range((-40, 60))
    (-40.0, 60.0, -40.0, 60.0)
    """
    fail_lo, fail_hi = _span(fail_span, "fail_span")
    suspect_lo, suspect_hi = (fail_lo, fail_hi) if suspect_span is None else \
        _span(suspect_span, "suspect_span")
    if suspect_lo < fail_lo or suspect_hi > fail_hi:
        raise ValueError(f"suspect_span {suspect_span} must lie inside fail_span {fail_span}")
    return fail_lo, fail_hi, suspect_lo, suspect_hi


def check_flat_line(tolerance, suspect, fail) -> None:
    """Check the arguments of :func:`flat_line` (counts or durations alike)."""
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got tolerance={tolerance!r}")
    if not 0 < suspect <= fail:
        raise ValueError(f"need 0 < suspect <= fail, got suspect={suspect!r}, fail={fail!r}")


def _span(span, name):
    lo, hi = (float(v) for v in span)
    if not lo <= hi:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {span!r}")
    return lo, hi


def check_thresholds(suspect, fail) -> tuple[float, float]:
    """Check the thresholds of :func:`spike`: ``0 <= suspect <= fail``.

    Examples
    --------
    >>> check_thresholds(1, 2.5)
    (1.0, 2.5)
    """
    if not 0 <= suspect <= fail:
        raise ValueError(f"need 0 <= suspect <= fail, got suspect={suspect!r}, fail={fail!r}")
    return float(suspect), float(fail)
