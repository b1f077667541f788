"""Trailing-window statistics by sample count: sum, mean, var, std, z-score.

Distribution kind over chunks of the time axis: **window** -- a result at
sample ``t`` needs the samples ``t - window + 1 .. t`` (the z-score also
needs ``t - window``), so a chunk needs an overlap of ``window`` samples from
its predecessor.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._wrap import JIT_OPTIONS, apply_last_axis, as_float_array, check_window

# statistic codes of _move_moments
_SUM, _MEAN, _VAR, _STD = 0, 1, 2, 3


@njit(**JIT_OPTIONS)
def _move_moments(a, window, min_count, ddof, stat, out):
    for r in range(a.shape[0]):
        x = a[r]
        # Welford's update, run forwards for the sample entering the window
        # and backwards for the one leaving it: no sum of squares is formed,
        # so series like 1e5 + noise do not lose their digits to cancellation.
        n = 0
        mean = 0.0
        m2 = 0.0
        n_pinf = 0  # infinities are counted aside, never put into the moments
        n_ninf = 0
        # index of the newest valid sample that differs from the valid sample
        # before it; when it is older than the window, every valid sample in
        # the window is equal, and mean and var are exact (pandas does alike).
        last_change = 0
        last_valid = np.nan
        for i in range(x.shape[0]):
            v = x[i]
            if v == np.inf:
                n_pinf += 1
            elif v == -np.inf:
                n_ninf += 1
            elif v == v:
                n += 1
                d = v - mean
                mean += d / n
                m2 += d * (v - mean)
            if v == v:
                if v != last_valid:
                    last_change = i
                last_valid = v
            if i >= window:
                u = x[i - window]
                if u == np.inf:
                    n_pinf -= 1
                elif u == -np.inf:
                    n_ninf -= 1
                elif u == u:
                    n -= 1
                    if n == 0:
                        mean = 0.0
                        m2 = 0.0
                    else:
                        d = u - mean
                        mean -= d / n
                        m2 -= d * (u - mean)
            count = n + n_pinf + n_ninf
            if count < min_count:
                out[r, i] = np.nan
                continue
            constant = last_change <= i - window + 1 and n_pinf + n_ninf == 0
            if stat == _SUM or stat == _MEAN:
                if n_pinf and n_ninf:
                    res = np.nan
                elif n_pinf:
                    res = np.inf
                elif n_ninf:
                    res = -np.inf
                elif constant:
                    res = last_valid if stat == _MEAN else last_valid * n
                else:
                    res = mean if stat == _MEAN else mean * n
            else:
                if n_pinf or n_ninf or count - ddof <= 0:
                    res = np.nan
                elif constant:
                    res = 0.0
                else:
                    # rounding can leave m2 a hair below zero
                    res = max(m2, 0.0) / (n - ddof)
                    if stat == _STD:
                        res = np.sqrt(res)
            out[r, i] = res


@njit(**JIT_OPTIONS)
def _move_zscore(a, window, min_count, ddof, out):
    for r in range(a.shape[0]):
        x = a[r]
        # z[i] compares x[i] with the window *before* it, x[i-window..i-1],
        # so an outlier does not dilute its own reference.
        n = 0
        mean = 0.0
        m2 = 0.0
        n_inf = 0
        last_change = 0
        last_valid = np.nan
        for i in range(x.shape[0]):
            v = x[i]
            # 1. score against the current window state
            if n + n_inf < min_count or n + n_inf - ddof <= 0 or n_inf > 0:
                out[r, i] = np.nan
            elif last_change <= i - window:
                # every valid sample in the window equals last_valid exactly
                out[r, i] = (v - last_valid) / 0.0
            else:
                out[r, i] = (v - mean) / np.sqrt(max(m2, 0.0) / (n - ddof))
            # 2. move the window one step: x[i] enters, x[i-window] leaves
            if v == v:
                if abs(v) == np.inf:
                    n_inf += 1
                else:
                    n += 1
                    d = v - mean
                    mean += d / n
                    m2 += d * (v - mean)
                if v != last_valid:
                    last_change = i
                last_valid = v
            if i >= window:
                u = x[i - window]
                if u == u:
                    if abs(u) == np.inf:
                        n_inf -= 1
                    else:
                        n -= 1
                        if n == 0:
                            mean = 0.0
                            m2 = 0.0
                        else:
                            d = u - mean
                            mean -= d / n
                            m2 -= d * (u - mean)


def _moments(a, window, min_count, axis, stat, ddof=0):
    arr = as_float_array(a)
    window, min_count = check_window(window, min_count)
    return apply_last_axis(
        _move_moments, arr, axis, np.int64(window), np.int64(min_count),
        np.int64(ddof), np.int64(stat),
    )


def move_sum(a, window: int, min_count: int | None = None, axis: int = -1):
    """Sum over a trailing window of ``window`` samples, ignoring NaN.

    Parameters
    ----------
    a : array_like
        Input values; NaN means missing. float32 stays float32.
    window : int
        Number of samples in the window, ending at (and including) each sample.
    min_count : int, optional
        Fewest valid (non-NaN) samples a window needs for a result; fewer give
        NaN. Defaults to ``window``, as in pandas and bottleneck.
    axis : int
        The time axis. Default: the last.

    Returns
    -------
    numpy.ndarray
        Same shape and float dtype as ``a``.

    Examples
    --------
    >>> move_sum([1.0, 2.0, np.nan, 4.0], window=2, min_count=1)
    array([1., 3., 2., 4.])
    """
    return _moments(a, window, min_count, axis, _SUM)


def move_mean(a, window: int, min_count: int | None = None, axis: int = -1):
    """Mean over a trailing window of ``window`` samples, ignoring NaN.

    Parameters and result as in :func:`move_sum`.

    Examples
    --------
    >>> move_mean([1.0, 2.0, np.nan, 4.0], window=2, min_count=1)
    array([1. , 1.5, 2. , 4. ])
    >>> move_mean([1.0, 2.0, 3.0], window=2)
    array([nan, 1.5, 2.5])
    """
    return _moments(a, window, min_count, axis, _MEAN)


def move_var(
    a, window: int, min_count: int | None = None, axis: int = -1, ddof: int = 1
):
    """Variance over a trailing window of ``window`` samples, ignoring NaN.

    Parameters as in :func:`move_sum`, plus ``ddof`` (delta degrees of
    freedom; 1 gives the sample variance, as pandas does by default). A window
    with ``ddof`` or fewer valid samples gives NaN. A window whose valid
    samples are all equal gives exactly 0.

    Examples
    --------
    >>> move_var([1.0, 2.0, 4.0, 4.0, 4.0], window=3)
    array([       nan,        nan, 2.33333333, 1.33333333, 0.        ])
    """
    return _moments(a, window, min_count, axis, _VAR, _check_ddof(ddof))


def move_std(
    a, window: int, min_count: int | None = None, axis: int = -1, ddof: int = 1
):
    """Standard deviation over a trailing window; see :func:`move_var`.

    Examples
    --------
    >>> move_std([1.0, 2.0, 3.0, np.nan, 5.0], window=3, min_count=2)
    array([       nan, 0.70710678, 1.        , 0.70710678, 1.41421356])
    """
    return _moments(a, window, min_count, axis, _STD, _check_ddof(ddof))


def move_zscore(
    a, window: int, min_count: int | None = None, axis: int = -1, ddof: int = 1
):
    """How far each sample lies from the window of samples before it.

    ``z[t] = (a[t] - mean(a[t-window:t])) / std(a[t-window:t])`` -- the
    reference window ends *before* ``t``, so an outlier does not pull its own
    reference towards itself. NaN where the reference window has fewer than
    ``min_count`` valid samples (or at most ``ddof``), or holds an infinity.
    A constant reference window gives ``±inf`` for a different value and NaN
    for an equal one.

    Parameters
    ----------
    a : array_like
        Input values; NaN means missing.
    window : int
        Number of samples in the reference window.
    min_count : int, optional
        Fewest valid samples the reference window needs. Default ``window``.
    axis : int
        The time axis. Default: the last.
    ddof : int
        Delta degrees of freedom of the reference standard deviation.

    Examples
    --------
    >>> move_zscore([1.0, 2.0, 1.0, 2.0, 9.0], window=4)
    array([       nan,        nan,        nan,        nan, 12.12435565])
    """
    arr = as_float_array(a)
    window, min_count = check_window(window, min_count)
    return apply_last_axis(
        _move_zscore, arr, axis, np.int64(window), np.int64(min_count),
        np.int64(_check_ddof(ddof)),
    )


def _check_ddof(ddof) -> int:
    if isinstance(ddof, bool) or not isinstance(ddof, (int, np.integer)) or ddof < 0:
        raise ValueError(f"ddof must be a whole number >= 0, got ddof={ddof!r}")
    return int(ddof)
