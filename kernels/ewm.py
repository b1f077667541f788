"""Exponentially weighted mean, variance and standard deviation.

Distribution kind over chunks of the time axis: **scan** -- each result
depends on the whole past through a few numbers per series (the state). Every
function takes the state left by the previous piece of a series
(``state=``) and can return the state it leaves (``return_state=True``), so a
series processed piece by piece gives exactly the result of the whole.

The recurrences are pandas' (``DataFrame.ewm``, ``adjust``, ``ignore_na`` and
``min_periods`` included), so the results match pandas to rounding. As in
pandas, NaN and ±inf are missing: an infinity would poison the weighted mean
of everything after it.
"""

from __future__ import annotations

import math
from typing import NamedTuple

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
from .distribution import Scan, distributed
from .parallel import Rows, run_rows

_MEAN, _VAR, _STD = 0, 1, 2

# columns of EwmState.values
_M, _COV, _SUM_WT, _SUM_WT2, _OLD_WT, _NOBS = range(6)
_NO_TIME = np.iinfo(np.int64).min


class EwmState(NamedTuple):
    """What an exponentially weighted statistic carries from one piece to the next.

    ``values`` has shape ``(*series, 6)`` (weighted mean, weighted variance,
    sum of weights, sum of squared weights, weight of the past, number of
    observations) and ``last_time`` shape ``series`` (int64 time of the last
    sample, for time-aware decay). Treat both as opaque, and pass a state
    only to the statistic that produced it (the mean keeps fewer sums).
    """

    values: np.ndarray
    last_time: np.ndarray


def _initial_state(n_series: int) -> EwmState:
    values = np.zeros((n_series, 6))
    values[:, _M] = np.nan  # no observation yet
    values[:, _SUM_WT] = values[:, _SUM_WT2] = values[:, _OLD_WT] = 1.0
    return EwmState(values, np.full(n_series, _NO_TIME, dtype=np.int64))


@njit(**JIT_OPTIONS)
def _ewm(a, times, halflife, alpha, adjust, ignore_na, min_count, bias, stat, values,
         last_time, out):
    decay = 1.0 - alpha
    new_wt = 1.0 if adjust else alpha
    for r in range(a.shape[0]):
        x = a[r]
        t = times[r if times.shape[0] > 1 else 0]
        mean = values[r, _M]
        cov = values[r, _COV]
        sum_wt = values[r, _SUM_WT]
        sum_wt2 = values[r, _SUM_WT2]
        old_wt = values[r, _OLD_WT]
        nobs = values[r, _NOBS]
        t_prev = last_time[r]
        for i in range(x.shape[0]):
            v = x[i]
            # only finite values are observations: an infinity would poison
            # the weighted mean forever (pandas drops them alike)
            is_obs = v - v == 0.0
            nobs += is_obs
            # with times, the past decays by 0.5 per halflife elapsed since
            # the previous sample (observed or not), as in pandas
            if halflife > 0 and t_prev != _NO_TIME:
                factor = 0.5 ** ((t[i] - t_prev) / halflife)
            else:
                factor = decay
            if halflife > 0:
                t_prev = t[i]
            if mean == mean:
                if is_obs or not ignore_na:
                    old_wt *= factor
                    if stat != _MEAN:  # the mean needs none of the variance's sums
                        sum_wt *= factor
                        sum_wt2 *= factor * factor
                    if is_obs:
                        old_mean = mean
                        # pandas' guard: a constant series keeps its exact mean
                        if mean != v:
                            mean = (old_wt * old_mean + new_wt * v) / (old_wt + new_wt)
                        if stat != _MEAN:
                            d_old = old_mean - mean
                            cov = (old_wt * (cov + d_old * d_old)
                                   + new_wt * (v - mean) * (v - mean)) / (old_wt + new_wt)
                            sum_wt += new_wt
                            sum_wt2 += new_wt * new_wt
                        old_wt += new_wt
                        if not adjust:
                            if stat != _MEAN:
                                sum_wt /= old_wt
                                sum_wt2 /= old_wt * old_wt
                            old_wt = 1.0
            elif is_obs:
                mean = v
            if nobs < min_count or mean != mean:
                out[r, i] = np.nan
            elif stat == _MEAN:
                out[r, i] = mean
            else:
                if bias:
                    var = cov
                else:
                    # unbiased weighted variance: (sum w)^2 / ((sum w)^2 - sum w^2)
                    numerator = sum_wt * sum_wt
                    denominator = numerator - sum_wt2
                    var = numerator / denominator * cov if denominator > 0 else np.nan
                out[r, i] = np.sqrt(var) if stat == _STD else var
        values[r, _M] = mean
        values[r, _COV] = cov
        values[r, _SUM_WT] = sum_wt
        values[r, _SUM_WT2] = sum_wt2
        values[r, _OLD_WT] = old_wt
        values[r, _NOBS] = nobs
        last_time[r] = t_prev


@njit(inline="always", fastmath={"contract"})
def _ewm_mean_step(v, mean, old_wt, nobs, decay, new_wt, adjust, ignore_na, min_count):
    """One sample of the exponentially weighted mean: (result, mean, old_wt, nobs)."""
    is_obs = v - v == 0.0
    nobs += is_obs
    started = mean == mean
    if adjust:
        # the weight of past and present after this sample: one fused
        # multiply-add on the chain; the sample's share of it, new_wt /
        # grown, is pandas' new_wt / (old_wt + new_wt)
        grown = old_wt * decay + (new_wt if is_obs else 0.0)
        if ignore_na and not is_obs:
            grown = old_wt
        share = new_wt / grown
    else:
        decayed = old_wt * decay
        share = new_wt / (decayed + new_wt)
        grown = 1.0 if is_obs else (old_wt if ignore_na else decayed)
    if is_obs:
        # v == mean leaves the mean exact, as pandas' guard does
        mean = mean + share * (v - mean) if started else v
    if started:
        old_wt = grown
    result = mean if nobs >= min_count and started | is_obs else np.nan
    return result, mean, old_wt, nobs


@njit(**JIT_OPTIONS, fastmath={"contract"})
def _ewm_mean_steps(a, alpha, adjust, ignore_na, min_count, values, out):
    # The mean with a decay per sample (no times): _ewm's recurrence, arranged
    # so that the chains from one sample to the next are short: pandas'
    # (old_wt * mean + new_wt * v) / (old_wt + new_wt) divides on the chain
    # of the mean; here the sample's share is formed off it, from the
    # weights, which do not depend on the data. Two series go through the
    # loop side by side, so that one's chain runs while the other's waits.
    # "contract" only lets a multiply and an add fuse (one rounding instead
    # of two); NaN and inf behave as without it.
    decay = 1.0 - alpha
    new_wt = 1.0 if adjust else alpha
    n_rows = a.shape[0]
    for r in range(0, n_rows - 1, 2):
        x0 = a[r]
        x1 = a[r + 1]
        o0 = out[r]
        o1 = out[r + 1]
        mean0, old_wt0, nobs0 = values[r, _M], values[r, _OLD_WT], values[r, _NOBS]
        mean1, old_wt1, nobs1 = values[r + 1, _M], values[r + 1, _OLD_WT], values[r + 1, _NOBS]
        for i in range(x0.shape[0]):
            o0[i], mean0, old_wt0, nobs0 = _ewm_mean_step(
                x0[i], mean0, old_wt0, nobs0, decay, new_wt, adjust, ignore_na, min_count)
            o1[i], mean1, old_wt1, nobs1 = _ewm_mean_step(
                x1[i], mean1, old_wt1, nobs1, decay, new_wt, adjust, ignore_na, min_count)
        values[r, _M], values[r, _OLD_WT], values[r, _NOBS] = mean0, old_wt0, nobs0
        values[r + 1, _M], values[r + 1, _OLD_WT], values[r + 1, _NOBS] = mean1, old_wt1, nobs1
    if n_rows % 2:
        r = n_rows - 1
        x0 = a[r]
        o0 = out[r]
        mean0, old_wt0, nobs0 = values[r, _M], values[r, _OLD_WT], values[r, _NOBS]
        for i in range(x0.shape[0]):
            o0[i], mean0, old_wt0, nobs0 = _ewm_mean_step(
                x0[i], mean0, old_wt0, nobs0, decay, new_wt, adjust, ignore_na, min_count)
        values[r, _M], values[r, _OLD_WT], values[r, _NOBS] = mean0, old_wt0, nobs0


@njit(inline="always", fastmath={"contract"})
def _ewm_sums_step(v, k, num, den, nobs, mean, decay, ignore_na, min_count):
    """One sample of the adjusted mean as a ratio of decayed sums:
    (result, num, den, nobs, mean)."""
    is_obs = v - v == 0.0
    # without ignore_na the past decays at every sample; with it, only at
    # observations (factor 1.0 leaves both sums exact)
    factor = decay if is_obs | (not ignore_na) else 1.0
    num = num * factor + ((v - k) if is_obs else 0.0)
    den = den * factor + (1.0 if is_obs else 0.0)
    nobs += is_obs
    # a missing sample leaves the mean as it was, as in pandas: both sums
    # decay alike, down to underflow in a long gap
    mean = k + num / den if is_obs else mean
    return (mean if nobs >= min_count else np.nan), num, den, nobs, mean


_SUMS_COL, _SUMS_MARK = _SUM_WT, -1.0  # a weight is never negative: k and num are in the state


@njit(**JIT_OPTIONS, fastmath={"contract"})
def _ewm_mean_sums(a, alpha, ignore_na, min_count, values, out, bad):
    # The adjusted mean (pandas' adjust=True) as the ratio of two decayed
    # sums, num = sum w_i (x_i - k) and den = sum w_i, with k the first
    # observation. Each sum is one fused multiply-add per sample, and the
    # division is off both chains -- pandas' form divides on the chain of
    # the mean. k keeps a constant series exact (num stays 0) and the sums
    # small on large offsets. Two series go through the loop side by side.
    # A series whose sums overflow (|x| near the float64 limit) is flagged in
    # `bad` for pandas' form. State columns: _M the mean, _OLD_WT den (which
    # is pandas' weight of the past), _NOBS, and for this loop alone _COV
    # num, _SUM_WT2 k and _SUM_WT the mark.
    decay = 1.0 - alpha
    n_rows, n_time = a.shape
    # per lane: where the sums run from, k, num, den, nobs, mean
    begin = np.zeros(2, dtype=np.int64)
    sums = np.zeros((2, 5))
    for r0 in range(0, n_rows, 2):
        lanes = min(2, n_rows - r0)
        begin[1] = n_time  # an odd last series runs alone
        for lane in range(lanes):
            r = r0 + lane
            x = a[r]
            o = out[r]
            mean, den, nobs = values[r, _M], values[r, _OLD_WT], values[r, _NOBS]
            k, num = mean, 0.0
            if values[r, _SUMS_COL] == _SUMS_MARK:
                k, num = values[r, _SUM_WT2], values[r, _COV]
            i = 0
            if mean != mean:
                # the first observation starts the sums; nothing decays before it
                while i < n_time and not x[i] - x[i] == 0.0:
                    o[i] = np.nan
                    i += 1
                if i < n_time:
                    k = mean = x[i]
                    num, den = 0.0, 1.0
                    nobs += 1.0
                    o[i] = mean if nobs >= min_count else np.nan
                    i += 1
            begin[lane] = i
            sums[lane, 0], sums[lane, 1], sums[lane, 2] = k, num, den
            sums[lane, 3], sums[lane, 4] = nobs, mean
        # the series that started first runs alone up to the other's start
        together = max(begin[0], begin[1])
        for lane in range(lanes):
            x = a[r0 + lane]
            o = out[r0 + lane]
            k, num, den, nobs, mean = sums[lane]
            if mean == mean:
                for i in range(begin[lane], min(together, n_time)):
                    o[i], num, den, nobs, mean = _ewm_sums_step(
                        x[i], k, num, den, nobs, mean, decay, ignore_na, min_count)
            sums[lane, 1], sums[lane, 2], sums[lane, 3], sums[lane, 4] = num, den, nobs, mean
        if lanes == 2 and together < n_time:
            # slices from 0: no negative-index handling in the loop
            x0, x1 = a[r0, together:], a[r0 + 1, together:]
            o0, o1 = out[r0, together:], out[r0 + 1, together:]
            k0, num0, den0, nobs0, mean0 = sums[0]
            k1, num1, den1, nobs1, mean1 = sums[1]
            for i in range(x0.shape[0]):
                o0[i], num0, den0, nobs0, mean0 = _ewm_sums_step(
                    x0[i], k0, num0, den0, nobs0, mean0, decay, ignore_na, min_count)
                o1[i], num1, den1, nobs1, mean1 = _ewm_sums_step(
                    x1[i], k1, num1, den1, nobs1, mean1, decay, ignore_na, min_count)
            sums[0, 1], sums[0, 2], sums[0, 3], sums[0, 4] = num0, den0, nobs0, mean0
            sums[1, 1], sums[1, 2], sums[1, 3], sums[1, 4] = num1, den1, nobs1, mean1
        for lane in range(lanes):
            r = r0 + lane
            k, num, den, nobs, mean = sums[lane]
            if mean == mean:
                values[r, _M], values[r, _OLD_WT], values[r, _NOBS] = mean, den, nobs
                values[r, _COV], values[r, _SUM_WT2] = num, k
                values[r, _SUMS_COL] = _SUMS_MARK
            bad[r] = num - num != 0.0 or den - den != 0.0


def resolve_alpha(com=None, span=None, halflife=None, alpha=None) -> float:
    """The smoothing factor from exactly one of pandas' four parametrisations.

    Examples
    --------
    >>> resolve_alpha(span=9)
    0.2
    >>> resolve_alpha(halflife=1)
    0.5
    """
    given = {k: v for k, v in dict(com=com, span=span, halflife=halflife,
                                   alpha=alpha).items() if v is not None}
    if len(given) != 1:
        raise ValueError("give exactly one of com, span, halflife or alpha, got "
                         f"{given or 'none'}")
    (name, value), = given.items()
    value = float(value)
    if name == "com" and value >= 0:
        return 1.0 / (1.0 + value)
    if name == "span" and value >= 1:
        return 2.0 / (value + 1.0)
    if name == "halflife" and value > 0:
        return 1.0 - math.exp(-math.log(2.0) / value)
    if name == "alpha" and 0 < value <= 1:
        return value
    limits = {"com": ">= 0", "span": ">= 1", "halflife": "> 0", "alpha": "in (0, 1]"}
    raise ValueError(f"{name} must be {limits[name]}, got {name}={value}")


def _run(stat, a, com, span, halflife, alpha, times, min_count, adjust, ignore_na,
         bias, axis, state, return_state):
    arr = as_float_array(a)
    series, moved_shape = as_series(arr, axis)
    lead = moved_shape[:-1]
    if isinstance(min_count, bool) or int(min_count) != min_count or min_count < 0:
        raise ValueError(f"min_count must be a whole number >= 0, got {min_count!r}")
    if times is None:
        step_halflife = 0.0
        alpha_value = resolve_alpha(com, span, halflife, alpha)
        t = np.zeros((1, series.shape[1]), dtype=np.int64)
    else:
        if halflife is None or com is not None or span is not None or alpha is not None:
            raise ValueError("with times, give halflife (a duration) and nothing else")
        t, step_halflife = _times_as_int(times, halflife, series.shape)
        alpha_value = 0.5  # unused: the decay follows the elapsed time
    initial = _initial_state(series.shape[0])
    state = EwmState(
        series_state(None if state is None else state.values, series.shape[0],
                     initial.values, "state"),
        series_state(None if state is None else state.last_time, series.shape[0],
                     initial.last_time[:, None], "state")[:, 0].copy(),
    )
    out = np.empty(series.shape, dtype=arr.dtype)
    need = float(max(min_count, 1))
    # the adjusted mean without times runs as a ratio of sums (alpha 1, no
    # decay, would make a gap's sums 0 / 0)
    sums_loop = stat == _MEAN and times is None and adjust and alpha_value < 1.0
    if sums_loop:
        incoming = state.values.copy()
        bad = np.zeros(series.shape[0], dtype=np.bool_)
        run_rows(_ewm_mean_sums, Rows(series), alpha_value, bool(ignore_na), need,
                 Rows(state.values), Rows(out), Rows(bad))
        if bad.any():  # sums beyond float64: redo those series in pandas' own form
            rows = np.flatnonzero(bad)
            values = incoming[rows]
            redo = np.empty((rows.size, series.shape[1]), dtype=out.dtype)
            run_rows(_ewm, Rows(np.ascontiguousarray(series[rows])), Rows(t), 0.0,
                     alpha_value, True, bool(ignore_na), need, False, _MEAN, Rows(values),
                     Rows(state.last_time[rows]), Rows(redo))
            out[rows] = redo
            values[:, _SUMS_COL] = 1.0  # no longer the sums loop's state
            state.values[rows] = values
    elif stat == _MEAN and times is None:
        run_rows(_ewm_mean_steps, Rows(series), alpha_value, bool(adjust), bool(ignore_na),
                 need, Rows(state.values), Rows(out))
    else:
        run_rows(_ewm, Rows(series), Rows(t), step_halflife, alpha_value, bool(adjust),
                 bool(ignore_na), need, bool(bias), stat, Rows(state.values),
                 Rows(state.last_time), Rows(out))
    if stat == _MEAN and not sums_loop:
        # the other loops' mean leaves the sums loop's columns as they came:
        # clear the mark, so that a later sums loop restarts from the mean
        state.values[:, _SUMS_COL] = 1.0
    result = from_series(out, moved_shape, axis)
    if return_state:
        return result, EwmState(state.values.reshape(*lead, 6),
                                state.last_time.reshape(lead))
    return result


def _times_as_int(times, halflife, shape):
    t = times_2d(times, shape)
    halflife = duration_ns(halflife, "halflife", times)
    if not halflife > 0:
        raise ValueError(f"halflife must be a positive duration, got {halflife}")
    return t, halflife


def _doc(stat_name):
    return f"""Exponentially weighted {stat_name} along ``axis``, NaN-aware, as pandas.

    Give exactly one of ``com``, ``span``, ``halflife`` or ``alpha`` (pandas'
    definitions); or ``times`` (datetime64 or integers, one axis for all
    series or one per series) with ``halflife`` as a duration, and the weight
    of the past then halves every ``halflife`` of elapsed time.

    Parameters
    ----------
    a : array_like
        Values; NaN means missing.
    com, span, halflife, alpha : float, optional
        The decay, as in :meth:`pandas.DataFrame.ewm`.
    times : array_like, optional
        Sample times for a time-aware decay.
    min_count : int
        Observations needed (over the whole past) before a result; default 1.
    adjust, ignore_na : bool
        As in pandas (defaults True and False).
    axis : int
        The time axis.
    state : EwmState, optional
        The state returned by the previous piece of the same series.
    return_state : bool
        Also return the state to pass to the next piece.

    Returns
    -------
    numpy.ndarray, or (numpy.ndarray, EwmState) with ``return_state``
    """


@distributed(Scan())
def ewm_mean(a, com=None, span=None, halflife=None, alpha=None, *, times=None,
             min_count=1, adjust=True, ignore_na=False, axis=-1, state=None,
             return_state=False):
    return _run(_MEAN, a, com, span, halflife, alpha, times, min_count, adjust,
                ignore_na, False, axis, state, return_state)


@distributed(Scan())
def ewm_var(a, com=None, span=None, halflife=None, alpha=None, *, times=None,
            min_count=1, adjust=True, ignore_na=False, bias=False, axis=-1, state=None,
            return_state=False):
    return _run(_VAR, a, com, span, halflife, alpha, times, min_count, adjust,
                ignore_na, bias, axis, state, return_state)


@distributed(Scan())
def ewm_std(a, com=None, span=None, halflife=None, alpha=None, *, times=None,
            min_count=1, adjust=True, ignore_na=False, bias=False, axis=-1, state=None,
            return_state=False):
    return _run(_STD, a, com, span, halflife, alpha, times, min_count, adjust,
                ignore_na, bias, axis, state, return_state)


ewm_mean.__doc__ = _doc("mean") + """
    Examples
    --------
    >>> ewm_mean([1.0, np.nan, 3.0], alpha=0.5)
    array([1. , 1. , 2.6])
    >>> first, state = ewm_mean([1.0, np.nan], alpha=0.5, return_state=True)
    >>> ewm_mean([3.0], alpha=0.5, state=state)
    array([2.6])
"""
ewm_var.__doc__ = _doc("variance") + """
    ``bias=False`` (default) gives pandas' unbiased weighted variance.

    Examples
    --------
    >>> ewm_var([1.0, 2.0, 4.0], span=3)
    array([nan, 0.5, 2.5])
"""
ewm_std.__doc__ = _doc("standard deviation") + """
    Examples
    --------
    >>> ewm_std([1.0, 2.0, 4.0], span=3).round(4)
    array([   nan, 0.7071, 1.5811])
"""
