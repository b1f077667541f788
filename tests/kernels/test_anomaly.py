"""The default detector and its alarms: causal, chunk-exact, finite, NaN-aware; alarms
once per episode, against a plain-loop reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels
from toolkit.ops.detect import anomaly_alarms, anomaly_score


def _series(seed: int, n: int = 1500) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = 5 + np.sin(2 * np.pi * t / 96) + rng.normal(0, 0.2, n)
    x[rng.choice(n, 3)] += rng.choice([-4.0, 4.0], 3)
    x[rng.random(n) < 0.05] = np.nan
    return x


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), cut=st.integers(1, 1499),
       period=st.sampled_from([None, 96, 100.5]))
def test_causal_a_future_change_never_changes_a_past_score(seed, cut, period):
    x = _series(seed)
    y = x.copy()
    y[cut:] = np.random.default_rng(seed + 1).normal(50, 30, len(y) - cut)
    a, b = kernels.anomaly_score(x, period=period), kernels.anomaly_score(y, period=period)
    np.testing.assert_array_equal(a[:cut], b[:cut])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000),
       chunks=st.lists(st.integers(1, 400), min_size=1, max_size=8),
       period=st.sampled_from([None, 96, 37.5]))
def test_chunk_exact_over_random_chunkings(seed, chunks, period):
    x = np.stack([_series(seed), _series(seed + 1)])
    da = xr.DataArray(x, dims=("device", "time"))
    sizes = []
    left = x.shape[1]
    for c in chunks:
        if left <= 0:
            break
        sizes.append(min(c, left))
        left -= sizes[-1]
    if left > 0:
        sizes.append(left)
    whole = anomaly_score(da, warmup=50, period=period)
    chunked = anomaly_score(da.chunk(time=tuple(sizes)), warmup=50, period=period)
    np.testing.assert_array_equal(chunked.values, whole.values)
    flags = anomaly_alarms(chunked, 0.999, warmup=50, merge_gap=5, cooldown=30)
    np.testing.assert_array_equal(flags.values,
                                  anomaly_alarms(whole, 0.999, warmup=50, merge_gap=5,
                                                 cooldown=30).values)
    # the state of a numpy call in pieces, too
    first, state = kernels.anomaly_score(x[:, :700], warmup=50, period=period,
                                         return_state=True)
    rest = kernels.anomaly_score(x[:, 700:], warmup=50, period=period, state=state)
    np.testing.assert_array_equal(np.concatenate([first, rest], axis=1), whole.values)


def test_scores_are_in_unit_range_finite_on_constant_and_quantised_series():
    rng = np.random.default_rng(3)
    quantised = np.round(20 + np.cumsum(rng.normal(0, 0.05, 5000)), 1)
    assert np.mean(np.diff(quantised) == 0) > 0.3  # much of it repeats
    constant = np.full(3000, 7.0)
    for x in (quantised, constant, rng.normal(size=3000), rng.standard_cauchy(3000)):
        s = kernels.anomaly_score(x)
        assert np.isfinite(s).all() and (s >= 0).all() and (s <= 1).all()
    assert not (kernels.alarms(kernels.anomaly_score(constant)) == 4).any()
    # one quantum on a constant series is news, but a finite score
    stepped = constant.copy()
    stepped[2000:] += 0.1
    s = kernels.anomaly_score(stepped)
    assert s[2000] > 0.999 and np.isfinite(s).all()
    # a quantised series' ordinary steps of one quantum do not alarm
    flags = kernels.alarms(kernels.anomaly_score(quantised))
    assert (flags == 4).mean() < 0.002


def _daily(seed: int, days: int = 12, per_day: int = 288) -> np.ndarray:
    t = np.arange(days * per_day)
    rng = np.random.default_rng(seed)
    return 10 + 3 * np.sin(2 * np.pi * t / per_day) + rng.normal(0, 0.3, t.size)


def test_the_seasonal_profile_finds_a_drift_under_a_daily_cycle_the_level_misses():
    found = {None: 0, 288: 0}
    for seed in range(6):
        x = _daily(seed)
        x[2300:2700] += np.linspace(0, 4, 400)  # a slow drift, well inside the cycle's range
        for period in found:
            flags = kernels.alarms(kernels.anomaly_score(x, period=period))
            assert not (flags[:2300] == 4).any()  # no false alarm before it
            found[period] += int((flags[2300:2700] == 4).any())
    assert found == {None: 0, 288: 6}


def test_the_profile_waits_two_cycles_and_stands_aside_when_it_does_not_help():
    x = _daily(1, days=3)
    # before two cycles have shaped it, the profile changes nothing
    np.testing.assert_array_equal(kernels.anomaly_score(x[:570], period=288),
                                  kernels.anomaly_score(x[:570]))
    # white noise has no cycle: a profile never predicts clearly better, and the
    # scores are the same as without one
    noise = np.random.default_rng(2).normal(size=4000)
    np.testing.assert_array_equal(kernels.anomaly_score(noise, period=200),
                                  kernels.anomaly_score(noise))
    _, state = kernels.anomaly_score(np.zeros((2, 5)), period=500, return_state=True)
    assert state.shape == (2, kernels.anomaly.STATE_SIZE + 2 * kernels.anomaly.SEASON_BINS)
    with pytest.raises(ValueError, match="period must be at least 2"):
        kernels.anomaly_score(noise, period=1.5)


def test_the_period_comes_from_the_time_coordinate():
    from toolkit.errors import ArgumentError
    from toolkit.ops.detect import season_samples
    t = pd.date_range("2026-01-01", periods=3 * 288, freq="5min")
    assert season_samples(t) == 288.0 and season_samples(t, "12h") == 144.0
    assert season_samples(t[::24]) is None            # 2-hourly: no daily profile by default
    assert season_samples(t.delete(5)) is None        # irregular
    with pytest.raises(ArgumentError, match="regular"):
        season_samples(t.delete(5), "1D")
    with pytest.raises(ArgumentError, match="under 2 samples"):
        season_samples(t, "5min")
    da = xr.DataArray(_daily(3, days=3)[None, :], dims=("device", "time"),
                      coords={"time": t, "device": ["a"]})
    scores = anomaly_score(da.chunk(time=100))
    assert scores.attrs["period"] == 288.0
    np.testing.assert_array_equal(scores.values,
                                  kernels.anomaly_score(da.values, period=288))
    assert anomaly_score(da, period=None).attrs["period"] == "none"


def test_nan_samples_score_nan_and_change_nothing_else():
    x = _series(7)
    x = x[~np.isnan(x)]
    s = kernels.anomaly_score(x)
    holes = np.insert(x, [10, 500, 500, 900], np.nan)
    t = kernels.anomaly_score(holes)
    assert np.isnan(t).sum() == 4
    np.testing.assert_array_equal(t[~np.isnan(t)], s)


def test_false_alarms_on_noise_are_rare_and_anomalies_are_found():
    rng = np.random.default_rng(11)
    noise = rng.normal(size=(10, 20_000))
    flags = kernels.alarms(kernels.anomaly_score(noise))  # the defaults
    starts = ((flags[:, 1:] == 4) & (flags[:, :-1] != 4)).sum()
    assert starts / noise.size < 5e-4  # fewer than 5 alarms per 10,000 samples
    x = rng.normal(size=6000)
    x[3000] += 9.0            # a spike
    x[4500:] += 5.0           # a level shift
    f = kernels.alarms(kernels.anomaly_score(x))
    assert f[3000] == 4 and (f[4500:4505] == 4).any()


def _held_with_rare_jumps(seed: int, n: int = 1200) -> np.ndarray:
    """A reading held at one value, 6 % of samples a unit off, 5 % off by the last
    digit (SKAB's flow meter): errors of 0 or of hundreds of typical sizes."""
    rng = np.random.default_rng(seed)
    x = np.full(n, 32.0)
    jump = rng.random(n) < 0.06
    x[jump] += rng.choice([-1.0, 1.0], jump.sum()) * 0.997
    jitter = rng.random(n) < 0.05
    x[jitter] += rng.choice([-0.004, 0.004], jitter.sum())
    return x


def test_a_held_reading_with_rare_jumps_does_not_alarm_after_the_warm_up():
    # the tails start from nothing: they must reach errors of hundreds of
    # typical sizes within the warm-up, or the first ordinary jumps after it
    # score 1 (they did, on every one of these series)
    x = np.stack([_held_with_rare_jumps(seed) for seed in range(20)])
    flags = kernels.alarms(kernels.anomaly_score(x))
    assert not (flags == 4).any()
    y = x[0].copy()
    y[800:1000] = 31.003  # held a unit below for 200 samples: found
    assert (kernels.alarms(kernels.anomaly_score(y))[800:1000] == 4).any()


def _alarms_reference(s, threshold, warmup, min_duration, merge_gap, cooldown):
    """The alarm rules in plain Python."""
    out, seen, inside, length, quiet, raised, cool = [], 0, False, 0, 0, False, 0
    gap_since_hit = False
    for v in s:
        if np.isnan(v):
            out.append(9)
            gap_since_hit = True
            continue
        seen += 1
        cool = max(0, cool - 1)
        hit = v >= threshold and seen > warmup and (inside or cool == 0)
        if hit:
            if not inside:
                inside, length, raised = True, 0, False
            length += quiet + 1
            quiet, gap_since_hit = 0, False
            raised = raised or length >= min_duration
        elif inside:
            quiet += 1
            if quiet > merge_gap:
                if raised:
                    cool = cooldown
                inside, length, quiet, raised = False, 0, 0, False
        shown = inside and raised and (hit or not gap_since_hit)
        out.append(2 if seen <= warmup else (4 if shown else 1))
    return np.array(out, dtype=np.int8)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), warmup=st.integers(0, 20), min_duration=st.integers(1, 5),
       merge_gap=st.integers(0, 6), cooldown=st.integers(0, 30), cut=st.integers(1, 299))
def test_alarms_follow_their_rules(seed, warmup, min_duration, merge_gap, cooldown, cut):
    rng = np.random.default_rng(seed)
    s = rng.random(300) ** 8  # mostly low, sometimes above 0.9
    s[rng.random(300) < 0.05] = np.nan
    expected = _alarms_reference(s, 0.9, warmup, min_duration, merge_gap, cooldown)
    args = dict(warmup=warmup, min_duration=min_duration, merge_gap=merge_gap,
                cooldown=cooldown)
    np.testing.assert_array_equal(kernels.alarms(s, 0.9, **args), expected)
    first, state = kernels.alarms(s[:cut], 0.9, **args, return_state=True)
    np.testing.assert_array_equal(
        np.concatenate([first, kernels.alarms(s[cut:], 0.9, **args, state=state)]), expected)


def test_a_gap_inside_an_alarm_does_not_leave_a_trail_of_its_own():
    s = np.zeros(60)
    s[20:23] = 1.0
    s[25] = np.nan            # a gap in the quiet samples after the hits
    f = kernels.alarms(s, 0.5, warmup=5, merge_gap=10, cooldown=0)
    assert np.flatnonzero(f == 4).tolist() == [20, 21, 22, 23, 24]
    assert f[25] == 9
    s[28] = 1.0               # a hit after the gap: the same episode, shown again
    f = kernels.alarms(s, 0.5, warmup=5, merge_gap=10, cooldown=0)
    assert np.flatnonzero(f == 4).tolist() == [20, 21, 22, 23, 24] + list(range(28, 39))


def test_alarm_rules_on_a_made_example():
    s = np.zeros(80)
    s[[20, 22, 24]] = 1.0     # one episode (gaps of 1 <= merge_gap 2)
    s[40] = 1.0               # inside the cool-down: no new alarm
    s[70:73] = 1.0            # after it: a new one
    s[5] = 1.0                # in the warm-up: nothing
    f = kernels.alarms(s, 0.5, warmup=10, merge_gap=2, cooldown=30)
    starts = np.flatnonzero((f == 4) & (np.roll(f, 1) != 4))
    assert starts.tolist() == [20, 70]
    assert (f[:10] == 2).all()
    # a minimum duration of 3: a lone hit never alarms, three in a row do
    f = kernels.alarms(s, 0.5, warmup=10, merge_gap=0, cooldown=0, min_duration=3)
    assert np.flatnonzero((f == 4) & (np.roll(f, 1) != 4)).tolist() == [72]


def test_a_threshold_from_a_healthy_period():
    rng = np.random.default_rng(2)
    x = xr.DataArray(rng.normal(size=(3, 4000)), dims=("device", "time"))
    scores = anomaly_score(x)
    flags = anomaly_alarms(scores, None, healthy=slice(100, 2000), quantile=1.0, margin=0.5)
    level = flags.attrs["threshold"]
    healthy_max = float(scores.isel(time=slice(100, 2000)).max())
    assert level == pytest.approx(healthy_max + 0.5 * (1 - healthy_max))
    assert int((flags.isel(time=slice(100, 2000)) == 4).sum()) == 0


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="halflife"):
        kernels.anomaly_score(np.zeros(3), halflife=0)
    with pytest.raises(ValueError, match="merge_gap"):
        kernels.alarms(np.zeros(3), 0.5, merge_gap=-1)
    with pytest.raises(ValueError, match="min_duration"):
        kernels.alarms(np.zeros(3), 0.5, min_duration=0)
