"""Anomaly scores and detectors; each gives a score and a QARTOD flag.

- :func:`robust_zscore` and :func:`hampel`: distance from a rolling median in
  units of the scaled median absolute deviation (MAD); **window** kernels.
- :func:`cusum`: two-sided tabular CUSUM for level shifts; a **scan** that
  carries its sums.
- :func:`drift`: least-squares slope over a trailing window; **window**.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._wrap import (
    JIT_OPTIONS,
    as_float_array,
    as_series,
    check_window,
    from_series,
    series_state,
)
from .distribution import Pointwise, Scan, Window, distributed
from .flags import MISSING, NOT_EVALUATED, PASS, SUSPECT
from .parallel import Rows, Scratch, run_rows

MAD_SCALE = 1.4826  # makes the MAD of normal noise its standard deviation
MEAN_AD_SCALE = 1.2533  # makes the mean absolute deviation of normal noise its std
_DECIMALS = 12


@njit(inline="always")
def _decimal_resolution(values, m):
    """The finest decimal step among values[:m]: 1 for 101325.0, 0.1 for 20.5..."""
    finest = 1.0
    for j in range(m):
        v = abs(values[j])
        step = 1.0
        k = 0
        while k < _DECIMALS:
            scaled = v / step
            if abs(scaled - np.round(scaled)) <= 1e-9 * max(1.0, scaled):
                break
            step *= 0.1
            k += 1
        finest = min(finest, step)
    return finest


@njit(inline="always")
def _robust_scale(values, m, scratch):
    """Median and robust scale of values[:m] (reordered in place; scratch for deviations).

    The scale is 1.4826 * MAD; where more than half the window holds one
    value (quantised data, a sensor's resolution) the MAD is 0, and the scale
    falls back to 1.2533 * the mean absolute deviation from the median, but
    never below the finest decimal step of the window's values (the
    readings' resolution: a change of one step scores at most 1).
    """
    med = np.median(values[:m])
    total = 0.0
    for j in range(m):
        d = abs(values[j] - med)
        scratch[j] = d
        total += d
    mad = np.median(scratch[:m])
    if mad > 0.0:
        return med, MAD_SCALE * mad
    return med, max(MEAN_AD_SCALE * total / m, _decimal_resolution(values, m))


@njit(inline="always")
def _scored(v, enough, med, scale, threshold):
    """A sample's robust score and flag: missing, not evaluated, or pass/suspect."""
    if v != v:
        return np.nan, MISSING
    if not enough:
        return np.nan, NOT_EVALUATED
    z = (v - med) / scale
    return z, SUSPECT if abs(z) > threshold else PASS


@njit(**JIT_OPTIONS)
def _robust_zscore(a, window, min_count, threshold, buf, scratch, score, flag):
    for r in range(a.shape[0]):
        x = a[r]
        for i in range(x.shape[0]):
            m = 0
            for j in range(max(0, i - window), i):  # the window before sample i
                if x[j] == x[j]:
                    buf[m] = x[j]
                    m += 1
            v = x[i]
            med = scale = np.nan
            if v == v and m >= min_count:
                med, scale = _robust_scale(buf, m, scratch)
            score[r, i], flag[r, i] = _scored(v, m >= min_count, med, scale, threshold)


@distributed(Window(before="window", outputs=(("score", "same"), ("flag", "int8"))))
def robust_zscore(a, window: int, threshold: float = 5.0, min_count: int | None = None,
                  axis: int = -1):
    """Robust z-score against the ``window`` samples before each sample.

    ``z = (x - median) / (1.4826 * MAD)`` of the preceding window, so one
    outlier moves neither its own reference nor the scale much. The score is
    always finite: where more than half of the window holds one value
    (quantised readings) the MAD is 0 and the scale is 1.2533 times the mean
    absolute deviation from the median, but at least the finest decimal step
    of the window's values (their resolution), so one step of resolution
    scores at most 1. O(n * window).

    Returns
    -------
    (score, flag)
        float scores; int8 flags: 3 where ``|z| > threshold``, 1 otherwise,
        2 where the window has fewer than ``min_count`` valid samples, 9 for NaN.

    Examples
    --------
    >>> z, f = robust_zscore([1.0, 1.2, 0.9, 1.1, 1.0, 9.0], window=5)
    >>> f
    array([2, 2, 2, 2, 2, 3], dtype=int8)
    >>> round(float(z[-1]), 1)
    54.0
    """
    arr = as_float_array(a)
    window, min_count = check_window(window, min_count)
    threshold = _positive(threshold, "threshold")
    series, shape = as_series(arr, axis)
    score = np.empty(series.shape, dtype=arr.dtype)
    flag = np.empty(series.shape, dtype=np.int8)
    run_rows(_robust_zscore, Rows(series), np.int64(window), np.int64(min_count), threshold,
             Scratch(np.empty(window)), Scratch(np.empty(window)), Rows(score), Rows(flag))
    return from_series(score, shape, axis), from_series(flag, shape, axis)


@njit(**JIT_OPTIONS)
def _hampel(a, half, min_count, threshold, buf, scratch, filtered, flag):
    for r in range(a.shape[0]):
        x = a[r]
        n = x.shape[0]
        for i in range(n):
            v = x[i]
            filtered[r, i] = v
            if v != v:
                flag[r, i] = MISSING
                continue
            m = 0
            for j in range(max(0, i - half), min(n, i + half + 1)):  # centred
                if x[j] == x[j]:
                    buf[m] = x[j]
                    m += 1
            if m < min_count:
                flag[r, i] = NOT_EVALUATED
                continue
            med, scale = _robust_scale(buf, m, scratch)
            if abs(v - med) > threshold * scale:
                filtered[r, i] = med
                flag[r, i] = SUSPECT
            else:
                flag[r, i] = PASS


@distributed(Window(before="half_window", after="half_window",
         outputs=(("filtered", "same"), ("flag", "int8"))))
def hampel(a, half_window: int, threshold: float = 3.0, min_count: int | None = None,
           axis: int = -1):
    """Hampel filter: replace outliers by the median of a centred window.

    A sample is an outlier when it lies more than ``threshold`` scaled MADs
    from the median of the ``2 * half_window + 1`` samples centred on it
    (NaN skipped; the window is cut at the ends). The scale never is 0: see
    :func:`robust_zscore`. Needs ``half_window`` samples of overlap on both
    sides of a chunk.

    Returns
    -------
    (filtered, flag)
        the series with outliers replaced; int8 flags (3 outlier, 1 pass,
        2 fewer than ``min_count`` valid samples, default ``half_window + 1``,
        9 NaN).

    Examples
    --------
    >>> filtered, flag = hampel([1.0, 1.1, 0.9, 8.0, 1.0, 1.2, 0.95], half_window=2)
    >>> filtered
    array([1.  , 1.1 , 0.9 , 1.1 , 1.  , 1.2 , 0.95])
    >>> flag
    array([1, 1, 1, 3, 1, 1, 1], dtype=int8)
    """
    arr = as_float_array(a)
    half, _ = check_window(half_window, None)
    width = 2 * half + 1
    _, min_count = check_window(width, half + 1 if min_count is None else min_count)
    threshold = _positive(threshold, "threshold")
    series, shape = as_series(arr, axis)
    filtered = np.empty(series.shape, dtype=arr.dtype)
    flag = np.empty(series.shape, dtype=np.int8)
    run_rows(_hampel, Rows(series), np.int64(half), np.int64(min_count), threshold,
             Scratch(np.empty(width)), Scratch(np.empty(width)), Rows(filtered), Rows(flag))
    return from_series(filtered, shape, axis), from_series(flag, shape, axis)


@njit(**JIT_OPTIONS)
def _cusum(a, target, scale, slack, limit, reset, hi, lo, score, flag):
    for r in range(a.shape[0]):
        x = a[r]
        s_hi = hi[r]
        s_lo = lo[r]
        for i in range(x.shape[0]):
            v = x[i]
            if v != v:
                score[r, i] = max(s_hi, s_lo)
                flag[r, i] = MISSING
                continue
            u = (v - target[r, i]) / scale[r, i]
            s_hi = max(0.0, s_hi + u - slack)
            s_lo = max(0.0, s_lo - u - slack)
            score[r, i] = max(s_hi, s_lo)
            if s_hi > limit or s_lo > limit:
                flag[r, i] = SUSPECT
                if reset:  # start over after an alarm, as the tabular CUSUM does
                    s_hi = 0.0
                    s_lo = 0.0
            else:
                flag[r, i] = PASS
        hi[r] = s_hi
        lo[r] = s_lo


@distributed(Scan((("score", "float64"), ("flag", "int8"))))
def cusum(a, target, scale, *, slack: float = 0.5, limit: float = 5.0, reset: bool = True,
          axis: int = -1, state=None, return_state: bool = False):
    """Two-sided tabular CUSUM: detect a lasting shift of the level from ``target``.

    With ``u = (x - target) / scale`` the upper and lower sums are
    ``S+ = max(0, S+ + u - slack)`` and ``S- = max(0, S- - u - slack)``; a
    sample where either exceeds ``limit`` is flagged 3 (and, with ``reset``,
    both sums restart from 0). NaN leaves the sums unchanged.

    Parameters
    ----------
    a : array_like
        Values.
    target, scale : float or array_like
        In-control level and standard deviation: scalars or arrays
        broadcastable to ``a`` (for example a trailing mean and std).
    slack, limit : float
        The allowance ``k`` and decision interval ``h``, in units of ``scale``.
    reset : bool
        Restart the sums after an alarm.
    state : tuple of arrays, optional
        ``(S+, S-)`` left by the previous piece.
    return_state : bool
        Also return the state.

    Returns
    -------
    (score, flag) or (score, flag, state)
        ``max(S+, S-)`` and int8 flags.

    Examples
    --------
    >>> score, flag = cusum([0.0, 0.2, -0.1, 3.0, 3.1, 2.9, 3.0], target=0.0, scale=1.0)
    >>> flag
    array([1, 1, 1, 1, 3, 1, 1], dtype=int8)
    """
    arr = as_float_array(a)
    series, shape = as_series(arr, axis)
    target_s, _ = as_series(np.broadcast_to(np.asarray(target, np.float64), arr.shape), axis)
    scale_s, _ = as_series(np.broadcast_to(np.asarray(scale, np.float64), arr.shape), axis)
    if (scale_s <= 0).any():
        raise ValueError("scale must be > 0 everywhere")
    if slack < 0 or not limit > 0:
        raise ValueError(f"need slack >= 0 and limit > 0, got slack={slack!r}, "
                         f"limit={limit!r}")
    n = series.shape[0]
    hi = series_state(None if state is None else state[0], n, np.zeros(n), "state")
    lo = series_state(None if state is None else state[1], n, np.zeros(n), "state")
    score = np.empty(series.shape, dtype=np.float64)
    flag = np.empty(series.shape, dtype=np.int8)
    run_rows(_cusum, Rows(series), Rows(np.ascontiguousarray(target_s)),
             Rows(np.ascontiguousarray(scale_s)), float(slack), float(limit), bool(reset),
             Rows(hi), Rows(lo), Rows(score), Rows(flag))
    result = (from_series(score, shape, axis), from_series(flag, shape, axis))
    if return_state:
        return (*result, (hi.reshape(shape[:-1]), lo.reshape(shape[:-1])))
    return result


@njit(**JIT_OPTIONS)
def _drift(a, window, min_count, max_slope, score, flag):
    for r in range(a.shape[0]):
        x = a[r]
        for i in range(x.shape[0]):
            # least squares over the valid samples of x[i-window+1..i], with
            # positions and values centred first (two passes: no cancellation)
            n = 0
            su = 0.0
            sx = 0.0
            for j in range(max(0, i - window + 1), i + 1):
                if x[j] == x[j]:
                    n += 1
                    su += j - i
                    sx += x[j]
            v = x[i]
            if n < min_count or n < 2:
                score[r, i] = np.nan
                flag[r, i] = MISSING if v != v else NOT_EVALUATED
                continue
            mu = su / n
            mx = sx / n
            suu = 0.0
            sux = 0.0
            for j in range(max(0, i - window + 1), i + 1):
                if x[j] == x[j]:
                    du = (j - i) - mu
                    suu += du * du
                    sux += du * (x[j] - mx)
            slope = sux / suu
            score[r, i] = slope
            if v != v:
                flag[r, i] = MISSING
            else:
                flag[r, i] = SUSPECT if abs(slope) > max_slope else PASS


@distributed(Window(before="window", before_add=-1,
         outputs=(("slope", "float64"), ("flag", "int8"))))
def drift(a, window: int, max_slope: float, min_count: int | None = None, axis: int = -1):
    """Least-squares slope (per sample) over the trailing ``window`` samples.

    Flags 3 where ``|slope| > max_slope``. Centred two-pass sums: exact on
    series with large offsets. O(n * window).

    Returns
    -------
    (slope, flag)

    Examples
    --------
    >>> slope, flag = drift([1.0, 2.0, 3.0, 5.0, 7.0], window=3, max_slope=1.5)
    >>> slope
    array([nan, 1. , 1. , 1.5, 2. ])
    >>> flag
    array([2, 1, 1, 1, 3], dtype=int8)
    """
    arr = as_float_array(a)
    window, min_count = check_window(window, 2 if min_count is None else min_count)
    max_slope = _positive(max_slope, "max_slope")
    series, shape = as_series(arr, axis)
    score = np.empty(series.shape, dtype=np.float64)
    flag = np.empty(series.shape, dtype=np.int8)
    run_rows(_drift, Rows(series), np.int64(window), np.int64(min_count), max_slope,
             Rows(score), Rows(flag))
    return from_series(score, shape, axis), from_series(flag, shape, axis)


def _positive(value, name):
    value = float(value)
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {name}={value!r}")
    return value


@njit(**JIT_OPTIONS)
def _peer_zscore(a, order, starts, min_count, threshold, buf, scratch, score, flag):
    n_groups = starts.shape[0] - 1
    for t in range(a.shape[1]):
        for g in range(n_groups):
            m = 0
            for k in range(starts[g], starts[g + 1]):
                v = a[order[k], t]
                if v == v:
                    buf[m] = v
                    m += 1
            med = np.nan
            scale = np.nan
            if m >= min_count:
                med, scale = _robust_scale(buf, m, scratch)
            for k in range(starts[g], starts[g + 1]):
                r = order[k]
                score[r, t], flag[r, t] = _scored(a[r, t], m >= min_count, med, scale,
                                                  threshold)


@distributed(Pointwise(outputs=(("score", "same"), ("flag", "int8"))))
def peer_zscore(a, threshold: float = 5.0, min_count: int = 3, *, groups=None,
                axis: int = -1):
    """Each series against its peers at the same time: a robust z-score across series.

    At every time, the valid values of the series of one group (all series,
    or those sharing a code in ``groups``) give a median and a robust scale
    (see :func:`robust_zscore`: never 0); each series scores
    ``(x - median) / scale``. A change that moves every peer (a weather
    front over a site) leaves the scores as they were; one series leaving
    its peers stands out. Pointwise along time: chunks of time need nothing
    from each other, but every peer series must be in the call.

    Parameters
    ----------
    a : array_like
        Series along every axis but ``axis`` (the time axis); typically
        ``(device, time)``.
    threshold : float
        Flag 3 (suspect) where ``|z| > threshold``.
    min_count : int
        Peers with a value needed at a time (fewer: flag 2, score NaN).
    groups : array_like of int or str, optional
        One label per series (in the order of the series, ``axis`` removed):
        each series is compared with its own group only.

    Returns
    -------
    (score, flag)

    Examples
    --------
    >>> x = np.array([[20.0, 25.0], [20.5, 25.4], [19.8, 24.9], [20.2, 31.0]])
    >>> z, f = peer_zscore(x, min_count=3)
    >>> f[:, 1]  # all moved up by 5 but the last, which moved 11
    array([1, 1, 1, 3], dtype=int8)
    """
    arr = as_float_array(a)
    if isinstance(min_count, bool) or int(min_count) != min_count or min_count < 1:
        raise ValueError(f"min_count must be a whole number >= 1, got {min_count!r}")
    threshold = _positive(threshold, "threshold")
    series, shape = as_series(arr, axis)
    n = series.shape[0]
    if groups is None:
        codes = np.zeros(n, dtype=np.int64)
    else:
        labels = np.asarray(groups).reshape(-1)
        if labels.shape[0] != n:
            raise ValueError(f"groups holds {labels.shape[0]} labels for {n} series")
        codes = np.unique(labels, return_inverse=True)[1].astype(np.int64)
    order = np.argsort(codes, kind="stable").astype(np.int64)
    starts = np.searchsorted(codes[order], np.arange(codes.max() + 2 if n else 1)).astype(
        np.int64)
    score = np.empty(series.shape, dtype=arr.dtype)
    flag = np.empty(series.shape, dtype=np.int8)
    if series.size:
        _peer_zscore(series, order, starts, np.int64(min_count), threshold,
                     np.empty(max(n, 1)), np.empty(max(n, 1)), score, flag)
    return from_series(score, shape, axis), from_series(flag, shape, axis)
