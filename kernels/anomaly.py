"""The default streaming detector and the alarm logic on top of it.

:func:`anomaly_score` gives every sample a score in [0, 1] from the past
alone, with no per-series tuning, in three steps -- ideas taken from the
streaming detectors that do best on labelled real streams, written anew:

1. **Forecasts and their errors, in the series' own units.** A robust
   exponentially weighted level (mean and mean absolute deviation, with
   outliers clipped at 3 scales so that a spike does not drag them) and the
   previous value. A sample has two errors: its distance from the level and
   its step from the previous value, each divided by its typical size. The
   level's half-life is long (``halflife``, 1,024 samples): an anomaly that
   lasts minutes is not learnt as normal while it lasts, while a lasting
   change of level is absorbed in time. Given the ``period`` of a seasonal
   pattern (a day, for most telemetry), a second forecast is kept beside
   it -- a level of its own plus a profile over the cycle -- and used
   while it predicts clearly better than the level alone.
   A third error is how long the value has been held: runs of equal values
   are taken as about geometric, with this series' mean run learnt.
2. **A floor from the data's resolution.** The typical sizes never go
   below the smallest step the series has taken (its quantum, for data
   quantised by a sensor's resolution) -- the reason robust scores that
   divide by a zero MAD on quantised data give infinities. A constant
   series scores 0, and its first change scores high but finite.
3. **A likelihood, not a raw error** (the idea behind Numenta's anomaly
   likelihood, with the tail model of peaks-over-threshold detectors such
   as SPOT). How unusual is this error for *this* series lately? Each
   error -- the level's and the step's, each alone and averaged over the
   last few samples -- has its own tail: a running 98th percentile and an
   exponential decay above it with the mean excess, learnt over
   ``calibration`` samples (4,096). The smallest of the tails'
   probabilities and the run's, times the number of tests (5), is the
   sample's p; the score is ``1 - p``. A noisy series and a quiet one, a
   spiky one and a smooth one all get scores whose tails mean the same.
   What an anomaly teaches is bounded, as in SPOT, where alarms are kept
   out of the tail: an excess counts at most 4 mean excesses, in a stretch
   where most samples exceed the percentile each one weighs only its share
   of time, and a run far longer than usual does not lengthen the mean run.
   These bounds start after the first 300 valid samples, while the tails
   are still growing from nothing.

The first ``warmup`` valid samples score 0 while the statistics settle. NaN
samples score NaN and leave the state untouched, so gaps and irregular
sampling cost nothing. A **scan**: the state (one row of numbers per
series) is carried across chunks, so any chunking gives the same scores.

:func:`alarms` turns scores into alarms a person can live with (a scan too,
carrying its state): an alarm when the score crosses ``threshold`` (by
default 0.99999: a p of at most 2e-6) and stays up ``min_duration``
samples, hits closer than ``merge_gap`` samples apart are one episode and
alarm once, no new alarm for ``cooldown`` samples after an episode, none
in the ``warmup``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._wrap import JIT_OPTIONS, as_float_array, as_series, from_series, series_state
from .distribution import Reduce, Scan, distributed
from .flags import FAIL, MISSING, NOT_EVALUATED, PASS
from .parallel import Rows, run_rows

#: state columns of anomaly_score: the level, the step and run statistics, then
#: for each of the four error streams its running quantile, mean excess above it
#: and recent rate of exceedances
(_N, _MU, _MAD, _PREV, _DMAD, _RES, _RUN, _MRUN, _AVG_L, _AVG_S, _POS, _MAD_P,
 _MU_S) = range(13)
_TAILS = 13  # first column of the tails: (quantile, excess, rate) x 4
_SEASON = _TAILS + 12  # first column of the seasonal profile (when there is a period)
STATE_SIZE = _SEASON
#: bins of the seasonal profile, at most
SEASON_BINS = 48
#: state columns of alarms
_SEEN, _IN, _LENGTH, _QUIET, _RAISED, _COOL, _BROKEN = range(7)
ALARM_STATE_SIZE = 7
_SHORT = 1.0 - 2.0 ** (-1.0 / 3.0)  # the "last few" errors: a half-life of 3 samples
_RATE = 1.0 - 2.0 ** (-1.0 / 64.0)  # the recent rate of exceedances: a half-life of 64
#: the tail above this share of the errors is modelled as exponential
_TAIL = 0.02
#: the tests a sample's p-value is the smallest of (a Bonferroni factor)
_TESTS = 5.0
#: valid samples before the rate of exceedances slows the learning of a tail
_SETTLE = 300.0
_HUGE = 1e12
#: the thinnest tail: a mean excess of a fifth of a typical error (slow, wandering errors
#: otherwise teach tails so thin that ordinary excursions look impossible)
_BFLOOR = 0.2
#: cycles over which a bin of the seasonal profile is learnt (a half-life)
_SEASON_CYCLES = 8.0
#: the profile is used while its spread is below this share of the level's alone
_BETTER = 0.5
#: cycles that shape a bin of the profile before it is used
_ESTABLISHED = 2.0


@njit(inline="always")
def _alpha(halflife):
    return 1.0 - 2.0 ** (-1.0 / halflife)


@njit(inline="always")
def _tail(r, q, b):
    """P(error >= r): at most _TAIL above the quantile q, decaying with mean excess b."""
    if r <= q:
        return 1.0
    return _TAIL * math.exp(-(r - q) / max(b, _BFLOOR))


@njit(inline="always")
def _learn_tail(s, k, r, w, n):
    """One step of tail k's running quantile (stochastic approximation), of the mean
    excess above it and of the recent rate of exceedances; w is the learning weight
    of one sample. In a stretch where most samples exceed (an anomaly that lasts),
    each exceedance weighs only what its share of time does, and an excess counts
    at most 4 mean excesses, so a long or wild anomaly is not learnt as the tail.
    Both bounds start after the first _SETTLE valid samples: before, the tail is
    still growing from nothing, and on a series whose errors are 0 or hundreds of
    typical sizes (a held reading with rare jumps) a capped excess grew too slowly,
    so the first ordinary jumps after the warm-up scored 1."""
    j = _TAILS + 3 * k
    q, b, rate = s[j], s[j + 1], s[j + 2]
    over = 1.0 if r > q else 0.0
    rate += _RATE * (over - rate)
    share = max(rate, _TAIL) if n > _SETTLE else _TAIL
    if over > 0.0:
        cap = 4.0 * max(b, 1e-3) if n > _SETTLE else r - q
        b += min(1.0, w / share) * (min(r - q, cap) - b)
    q += w * max(b, 1e-3) * (over - _TAIL) / share
    s[j], s[j + 1], s[j + 2] = q, b, rate


@njit(inline="always")
def _p(s, k, r):
    j = _TAILS + 3 * k
    return _tail(r, s[j], s[j + 1])


@njit(**JIT_OPTIONS)
def _anomaly(a, a_level, a_calib, warmup, learn_for, period, a_season, state, out):
    bins = (state.shape[1] - _SEASON) // 2  # the profile, then each bin's weight so far
    whole = bins > 0 and period == math.floor(period)
    at = 0.0
    established = _ESTABLISHED * period / max(bins, 1)  # a bin's weight after two cycles
    for r in range(a.shape[0]):
        x_row = a[r]
        s = state[r]
        n, mu, mad, prev, dmad = s[_N], s[_MU], s[_MAD], s[_PREV], s[_DMAD]
        res, run, mrun, avg_l, avg_s = s[_RES], s[_RUN], s[_MRUN], s[_AVG_L], s[_AVG_S]
        pos, mad_p, mu_s = s[_POS], s[_MAD_P], s[_MU_S]
        # the phase of the next sample in the cycle, (pos % period), kept by
        # adding 1 when the period is a whole number (exact, and no division)
        phase = pos % period if whole else 0.0
        for i in range(x_row.shape[0]):
            x = x_row[i]
            pos += 1.0  # samples since the series began, NaN included: the phase
            if whole:
                at = phase
                phase = phase + 1.0 if phase + 1.0 < period else 0.0
            elif bins > 0:
                at = (pos - 1.0) % period
            if x != x:
                out[r, i] = np.nan
                continue
            n += 1.0
            profile, k0, k1, f, ready = 0.0, 0, 0, 0.0, False
            if bins > 0:  # the profile, interpolated between the centres of its bins
                u = at * bins / period - 0.5
                fl = math.floor(u)
                f = u - fl
                k0 = int(fl)  # -1 .. bins - 1: wrapped without an integer division
                k0 = k0 if k0 >= 0 else bins - 1
                k0 = k0 if k0 < bins else k0 - bins  # (a guard: u stays below bins - 0.5)
                k1 = k0 + 1 if k0 + 1 < bins else 0
                profile = (1.0 - f) * s[_SEASON + k0] + f * s[_SEASON + k1]
                ready = min(s[_SEASON + bins + k0], s[_SEASON + bins + k1]) >= established
            if n == 1.0:
                mu, mu_s, prev, mad, mad_p, dmad, run, mrun = x, x, x, 0.0, 0.0, 0.0, 1.0, 1.0
                out[r, i] = 0.0
                continue
            step = abs(x - prev)
            run = run + 1.0 if step == 0.0 else 1.0
            floor = res if res < np.inf else 1e-9 * max(1.0, abs(x))
            # the profile is used once two cycles have shaped it, and only while
            # it predicts clearly better than the level alone
            seasonal = ready and mad < _BETTER * mad_p
            forecast = mu_s + profile if seasonal else mu
            s_level = max(1.2533 * (mad if seasonal else mad_p), floor)
            s_step = max(1.2533 * dmad, floor)
            # three errors, each judged against its own history: far from the
            # level, a jump from the last value (each alone and averaged over
            # the last few), and a value held for longer than this series' runs
            raw_l = min(abs(x - forecast) / s_level, _HUGE)  # (an infinity stays finite)
            raw_s = min(step / s_step, _HUGE)
            if n > 10.0:
                avg_l += _SHORT * (raw_l - avg_l)
                avg_s += _SHORT * (raw_s - avg_s)
            else:  # the first errors, measured against scales still forming, are not kept
                avg_l, avg_s = raw_l, raw_s
            p = min(_p(s, 0, raw_l), _p(s, 1, raw_s), _p(s, 2, avg_l), _p(s, 3, avg_s))
            # runs of equal values: about geometric, with the mean run learnt
            p_run = 1.0 if run == 1.0 else math.exp(-(run - 1.0) / mrun)  # (exp(-0) = 1)
            p = min(p, p_run)
            score = 1.0 - min(1.0, _TESTS * p)
            out[r, i] = score if n > warmup else 0.0
            prev = x
            if step > 0.0 and step < res:  # the finest step seen: the data's resolution
                res = step
            if n > learn_for:
                continue
            # learn, robustly: errors clipped at 3 scales
            w = max(a_level, 1.0 / n)
            if bins > 0:  # the seasonal model: its own level, its spread, the profile
                s_s = max(1.2533 * mad, floor)
                dev_s = x - mu_s - profile
                mad += w * (min(abs(dev_s), 3.0 * s_s) - mad)
                mu_s += w * min(max(dev_s, -3.0 * s_s), 3.0 * s_s)
                for k, share in ((k0, 1.0 - f), (k1, f)):
                    if share > 0.0:  # each bin learns its share of the deviation
                        s[_SEASON + bins + k] += share
                        c = s[_SEASON + bins + k]
                        ws = max(share * a_season, share / c)
                        d = min(max(x - mu_s - s[_SEASON + k], -3.0 * s_s), 3.0 * s_s)
                        s[_SEASON + k] += ws * d
            # the level alone (the model without a profile)
            s_p = max(1.2533 * mad_p, floor)
            mad_p += w * (min(abs(x - mu), 3.0 * s_p) - mad_p)
            mu += w * min(max(x - mu, -3.0 * s_p), 3.0 * s_p)
            if bins == 0:
                mad = mad_p
            dmad += w * (min(step, 3.0 * s_step) - dmad)
            if n > 10.0:  # the scales mean something by now
                wc = max(a_calib, min(0.002, 1.0 / (n - 10.0)))
                _learn_tail(s, 0, raw_l, wc, n)
                _learn_tail(s, 1, raw_s, wc, n)
                _learn_tail(s, 2, avg_l, wc, n)
                _learn_tail(s, 3, avg_s, wc, n)
            if p_run > 1e-4:  # a value stuck far longer than usual does not teach
                mrun += w * (min(run, 3.0 * mrun) - mrun)
        s[_N], s[_MU], s[_MAD], s[_PREV], s[_DMAD] = n, mu, mad, prev, dmad
        s[_RES], s[_RUN], s[_MRUN], s[_AVG_L], s[_AVG_S] = res, run, mrun, avg_l, avg_s
        s[_POS], s[_MAD_P], s[_MU_S] = pos, mad_p, mu_s


def _initial_state(n: int, bins: int = 0) -> np.ndarray:
    s = np.zeros((n, STATE_SIZE + 2 * bins))
    s[:, _RES] = np.inf
    return s


def _positive(value, name, integer=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not value > 0 or (integer and int(value) != value):
        kind = "a whole number" if integer else "a number"
        raise ValueError(f"{name} must be {kind} > 0, got {name}={value!r}")
    return value


@distributed(Scan())
def anomaly_score(a, *, period: float | None = None, halflife: float = 1024.0,
                  calibration: float = 4096.0, warmup: int = 100, learn_for: int | None = None,
                  axis: int = -1, state=None, return_state: bool = False):
    """Score every sample in [0, 1] from the past alone (see the module docstring).

    Parameters
    ----------
    a : array_like
        Values along ``axis``; NaN is missing (scored NaN, skipped).
    period : float, optional
        Samples per cycle of a seasonal pattern (a day of 1-minute samples:
        1440). A second forecast is then kept: a level of its own plus a
        profile over the cycle (up to 48 bins, interpolated), learnt over
        about 8 cycles. It is used once two cycles have shaped the profile,
        and only while it predicts clearly better than the level alone
        (otherwise the scores are those without a period). Default: none. NaN samples count as
        samples here (they keep the phase), so the samples must be regular.
    halflife : float
        Samples over which the level and its spread are learnt (1,024).
    calibration : float
        The half-life, in samples, over which the distribution of errors is
        learnt once it has settled (4,096). Before that each sample weighs
        more: 1/500 up to the 510th valid sample, then 1 / (n - 10) until
        that falls to this half-life's weight (after about 5,900 samples
        at the default), so on shorter series it makes no difference; a
        half-life under about 350 samples weighs more than 1/500 and is
        used from the start.
    warmup : int
        Valid samples that score 0 while the statistics settle (100).
    learn_for : int, optional
        Learn from the first ``learn_for`` valid samples only, then hold
        what was learnt: for a reference period known to be healthy, after
        which nothing is absorbed as normal (default: learn throughout).
    state : array, optional
        The state a previous call returned (``return_state=True``): the
        scores go on from there as if the series had not been cut.

    Returns
    -------
    numpy.ndarray of float (and the state, with ``return_state=True``)

    Examples
    --------
    >>> x = np.sin(np.arange(600) / 10.0) + np.random.default_rng(0).normal(0, 0.05, 600)
    >>> x[400] += 3.0
    >>> s = anomaly_score(x, warmup=50)
    >>> int(np.argmax(s)), bool(s[400] > 0.999), bool(np.median(s[50:]) < 0.8)
    (400, True, True)
    >>> first, st = anomaly_score(x[:300], warmup=50, return_state=True)
    >>> np.array_equal(np.concatenate([first, anomaly_score(x[300:], warmup=50, state=st)]), s)
    True

    A slow drift under a daily cycle (5-minute samples, 10 days) is seen
    with the profile and missed without it:

    >>> t = np.arange(2880)
    >>> y = 10 + 3 * np.sin(2 * np.pi * t / 288) + np.random.default_rng(1).normal(0, 0.3, t.size)
    >>> y[2000:2400] += np.linspace(0, 4, 400)
    >>> bool(anomaly_score(y, period=288)[2000:2400].max() > 0.99999)
    True
    >>> bool(anomaly_score(y)[2000:2400].max() > 0.99999)
    False
    """
    _positive(halflife, "halflife")
    _positive(calibration, "calibration")
    if isinstance(warmup, bool) or not isinstance(warmup, (int, np.integer)) or warmup < 0:
        raise ValueError(f"warmup must be a whole number >= 0, got warmup={warmup!r}")
    if learn_for is not None:
        _positive(learn_for, "learn_for", integer=True)
    bins = 0
    if period is not None:
        _positive(period, "period")
        if period < 2:
            raise ValueError(f"period must be at least 2 samples, got period={period!r}")
        bins = int(min(SEASON_BINS, math.floor(period)))
    arr = as_float_array(a)
    series, shape = as_series(arr, axis)
    n = series.shape[0]
    st = series_state(state, n, _initial_state(n, bins), "state")
    out = np.empty(series.shape, dtype=np.float64 if arr.dtype == np.float64 else arr.dtype)
    if series.size:
        per_bin = 1.0 if not bins else float(period) / bins  # samples per bin and cycle
        run_rows(_anomaly, Rows(series), _alpha(float(halflife)), _alpha(float(calibration)),
                 float(warmup), np.inf if learn_for is None else float(learn_for),
                 float(period or 0.0), _alpha(_SEASON_CYCLES * per_bin), Rows(st), Rows(out))
    result = from_series(out, shape, axis)
    if not return_state:
        return result
    return result, st.reshape(shape[:-1] + (STATE_SIZE + 2 * bins,))


@njit(**JIT_OPTIONS)
def _alarms(s, threshold, warmup, min_duration, merge_gap, cooldown, state, out):
    for r in range(s.shape[0]):
        row = s[r]
        st = state[r]
        seen, inside, length, quiet = st[_SEEN], st[_IN], st[_LENGTH], st[_QUIET]
        raised, cool, broken = st[_RAISED], st[_COOL], st[_BROKEN]
        for i in range(row.shape[0]):
            v = row[i]
            if v != v:
                out[r, i] = MISSING
                broken = 1.0  # the quiet samples after a gap are not shown as the alarm
                continue
            seen += 1.0
            if cool > 0.0:
                cool -= 1.0
            hit = v >= threshold and seen > warmup
            if hit:
                if inside == 0.0 and cool > 0.0:
                    hit = False  # cooling down after an episode: not a new one yet
            if hit:
                if inside == 0.0:
                    inside, length, raised = 1.0, 0.0, 0.0
                length += quiet + 1.0  # the quiet samples inside the episode count too
                quiet, broken = 0.0, 0.0
                if raised == 0.0 and length >= min_duration:
                    raised = 1.0
            elif inside == 1.0:
                quiet += 1.0
                if quiet > merge_gap:  # the episode is over
                    if raised == 1.0:
                        cool = cooldown
                    inside, length, quiet, raised = 0.0, 0.0, 0.0, 0.0
            if seen <= warmup:
                out[r, i] = NOT_EVALUATED
            elif inside == 1.0 and raised == 1.0 and (hit or broken == 0.0):
                out[r, i] = FAIL
            else:
                out[r, i] = PASS
        st[_SEEN], st[_IN], st[_LENGTH], st[_QUIET] = seen, inside, length, quiet
        st[_RAISED], st[_COOL], st[_BROKEN] = raised, cool, broken


@distributed(Scan((("flag", "int8"),)))
def alarms(scores, threshold: float = 0.99999, *, warmup: int = 100, min_duration: int = 1,
           merge_gap: int = 30, cooldown: int = 300, axis: int = -1, state=None,
           return_state: bool = False):
    """Alarms from scores: one per episode, after a warm-up, with a cool-down.

    A sample is a *hit* when its score is at least ``threshold``. Hits
    fewer than ``merge_gap`` quiet samples apart form one *episode*; the
    episode raises its alarm once it has lasted ``min_duration`` samples
    (from its first hit), and stays raised until ``merge_gap`` quiet
    samples have passed. For ``cooldown`` samples after a raised episode
    no new episode begins; during the first ``warmup`` valid samples none
    does. After a NaN score inside an episode, its quiet samples are no
    longer shown as the alarm (only a new hit shows it again), so a gap
    does not cut one alarm into an alarm and a trail of quiet samples.

    Returns QARTOD-coded int8: 4 (fail) while an alarm is raised, 1 (pass)
    otherwise, 2 in the warm-up, 9 for NaN scores. Each run of 4s is one
    alarm: :func:`toolkit.flags_to_events` gives one event per episode.

    Examples
    --------
    >>> s = np.zeros(40); s[[12, 14, 15]] = 1.0; s[30] = 1.0
    >>> f = alarms(s, 0.5, warmup=5, merge_gap=3, cooldown=20)
    >>> np.flatnonzero(f == 4).tolist()   # one episode: 12..15 and 3 quiet samples
    [12, 13, 14, 15, 16, 17, 18]
    >>> alarms(s, 0.5, warmup=5, merge_gap=3, cooldown=5)[30]  # after the cool-down
    np.int8(4)
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)) \
            or not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got threshold={threshold!r}")
    for name, value in (("warmup", warmup), ("merge_gap", merge_gap), ("cooldown", cooldown)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a whole number >= 0, got {name}={value!r}")
    if isinstance(min_duration, bool) or not isinstance(min_duration, (int, np.integer)) \
            or min_duration < 1:
        raise ValueError(f"min_duration must be a whole number >= 1, got "
                         f"min_duration={min_duration!r}")
    arr = as_float_array(scores, "scores")
    series, shape = as_series(arr, axis)
    n = series.shape[0]
    st = series_state(state, n, np.zeros((n, ALARM_STATE_SIZE)), "state")
    out = np.empty(series.shape, dtype=np.int8)
    if series.size:
        run_rows(_alarms, Rows(series), float(threshold), float(warmup), float(min_duration),
                 float(merge_gap), float(cooldown), Rows(st), Rows(out))
    result = from_series(out, shape, axis)
    if not return_state:
        return result
    return result, st.reshape(shape[:-1] + (ALARM_STATE_SIZE,))


@distributed(Reduce())
def healthy_threshold(scores, quantile: float = 0.999, *, margin: float = 0.0) -> float:
    """A threshold from the scores of a period the user marks as healthy.

    The ``quantile`` of the (non-NaN) scores, raised by ``margin`` times the
    distance left to 1: with scores in [0, 1], ``margin=0.5`` puts the
    threshold half way from that quantile to certainty.

    Examples
    --------
    >>> healthy_threshold(np.linspace(0, 0.9, 1001), 0.99)
    0.891
    """
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile must be in (0, 1], got quantile={quantile!r}")
    values = np.asarray(scores, dtype=float)
    values = values[~np.isnan(values)]
    if not values.size:
        raise ValueError("the healthy period holds no scores (all NaN)")
    q = float(np.quantile(values, quantile))
    return float(round(q + margin * (1.0 - q), 12))


__all__ = ["ALARM_STATE_SIZE", "STATE_SIZE", "alarms", "anomaly_score", "healthy_threshold"]
