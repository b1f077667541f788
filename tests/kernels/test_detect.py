"""Detectors against plain loops (and numpy/scipy-free references)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.detect import MAD_SCALE, MEAN_AD_SCALE, cusum, drift, hampel, robust_zscore
from tests.helpers import series


def robust_scale(w):
    """The reference scale: 1.4826 MAD, else 1.2533 mean |deviation| but at least
    the finest decimal step of the values."""
    med = np.median(w)
    mad = np.median(np.abs(w - med))
    if mad > 0:
        return med, MAD_SCALE * mad
    mean_ad = np.abs(w - med).mean()
    steps = []
    for v in np.abs(w):
        step = 1.0
        for _ in range(12):
            if abs(v / step - round(v / step)) <= 1e-9 * max(1.0, v / step):
                break
            step *= 0.1
        steps.append(step)
    return med, max(MEAN_AD_SCALE * mean_ad, min(min(steps), 1.0))


def finite(x):
    return np.where(np.isinf(x), np.nan, x).astype(np.float64)


def slow_robust(x, window, min_count, threshold):
    z = np.full(len(x), np.nan)
    f = np.full(len(x), 9, np.int8)
    for i in range(len(x)):
        w = x[max(0, i - window): i]
        w = w[~np.isnan(w)]
        if np.isnan(x[i]):
            continue
        if len(w) < min_count:
            f[i] = 2
            continue
        med, scale = robust_scale(w)
        z[i] = (x[i] - med) / scale
        f[i] = 3 if abs(z[i]) > threshold else 1
    return z, f


@settings(max_examples=150, deadline=None)
@given(x=series(), data=st.data())
def test_robust_zscore(x, data):
    x = finite(x)
    window = data.draw(st.integers(1, len(x) + 2))
    min_count = data.draw(st.integers(1, window))
    z, f = robust_zscore(x, window, 4.0, min_count)
    ez, ef = slow_robust(x, window, min_count, 4.0)
    np.testing.assert_array_equal(f, ef)
    np.testing.assert_allclose(z, ez, rtol=1e-9)


def slow_hampel(x, half, min_count, threshold):
    out, f = x.copy(), np.full(len(x), 9, np.int8)
    for i in range(len(x)):
        if np.isnan(x[i]):
            continue
        w = x[max(0, i - half): i + half + 1]
        w = w[~np.isnan(w)]
        if len(w) < min_count:
            f[i] = 2
            continue
        med, scale = robust_scale(w)
        if abs(x[i] - med) > threshold * scale:
            out[i], f[i] = med, 3
        else:
            f[i] = 1
    return out, f


@settings(max_examples=150, deadline=None)
@given(x=series(), half=st.integers(1, 6))
def test_hampel(x, half):
    x = finite(x)
    got, flag = hampel(x, half, 3.0)
    expected, eflag = slow_hampel(x, half, half + 1, 3.0)
    np.testing.assert_array_equal(flag, eflag)
    np.testing.assert_array_equal(got, expected)


def slow_cusum(x, target, scale, slack, limit):
    hi = lo = 0.0
    score, flag = np.zeros(len(x)), np.ones(len(x), np.int8)
    for i, v in enumerate(x):
        if np.isnan(v):
            score[i], flag[i] = max(hi, lo), 9
            continue
        u = (v - target) / scale
        hi, lo = max(0.0, hi + u - slack), max(0.0, lo - u - slack)
        score[i] = max(hi, lo)
        if hi > limit or lo > limit:
            flag[i], hi, lo = 3, 0.0, 0.0
    return score, flag


@settings(max_examples=150, deadline=None)
@given(x=series(), data=st.data())
def test_cusum_and_pieces(x, data):
    x = finite(x)
    target = float(np.nanmean(x)) if np.isfinite(x).any() else 0.0
    scale = float(np.nanstd(x)) or 1.0 if np.isfinite(x).any() else 1.0
    expected = slow_cusum(x, target, scale, 0.5, 2.0)
    score, flag = cusum(x, target, scale, limit=2.0)
    np.testing.assert_array_equal(flag, expected[1])
    np.testing.assert_allclose(score, expected[0], rtol=1e-12)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(x)), max_size=4)))
    parts, state = [], None
    for piece in np.split(x, cuts):
        s, f, state = cusum(piece, target, scale, limit=2.0, state=state, return_state=True)
        parts.append(f)
    np.testing.assert_array_equal(np.concatenate(parts), expected[1])


def test_cusum_finds_a_level_shift():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(2000)
    x[1000:] += 1.5
    _, flag = cusum(x, 0.0, 1.0, slack=0.5, limit=8.0)
    alarms = np.flatnonzero(flag == 3)
    assert alarms.size and 1000 <= alarms[0] < 1040
    assert (alarms < 1000).sum() <= 1


@settings(max_examples=150, deadline=None)
@given(x=series(), data=st.data())
def test_drift_matches_polyfit(x, data):
    x = finite(x)
    window = data.draw(st.integers(2, len(x) + 2))
    slope, flag = drift(x, window, max_slope=0.1)
    for i in range(len(x)):
        j = np.arange(max(0, i - window + 1), i + 1)
        ok = ~np.isnan(x[j])
        if ok.sum() < 2:
            assert np.isnan(slope[i])
            continue
        expected = np.polyfit(j[ok].astype(float), x[j][ok], 1)[0]
        scale = max(1.0, float(np.abs(x[j][ok]).max()))
        assert slope[i] == pytest.approx(expected, rel=1e-6, abs=1e-9 * scale)


def test_errors():
    with pytest.raises(ValueError, match="threshold must be > 0"):
        robust_zscore(np.ones(4), 2, threshold=0)
    with pytest.raises(ValueError, match="scale must be > 0"):
        cusum(np.ones(4), 0.0, 0.0)
    with pytest.raises(ValueError, match="max_slope"):
        drift(np.ones(4), 3, max_slope=-1)


def test_robust_scores_are_finite_and_meaningful_on_quantised_and_constant_data():
    # a quantised sensor: over half of every window holds one value, MAD 0
    rng = np.random.default_rng(3)
    x = 20.0 + 0.1 * (rng.random(500) < 0.3)
    x[400] = 21.0  # ten steps of resolution: an outlier
    z, f = robust_zscore(x, 60, 5.0)
    assert np.isfinite(z[60:]).all()
    assert f[400] == 3 and (f[60:400] == 1).all()  # one quantum is not an outlier
    filtered, hf = hampel(x, 10)
    assert hf[400] == 3 and filtered[400] == 20.0 and (hf[:400] == 1).all()
    # a constant window: a change scores in steps of the values' resolution
    z, f = robust_zscore(np.array([5.5] * 20 + [5.6, 5.5, 7.5]), 10, 5.0)
    np.testing.assert_allclose(z[20:], [1.0, 0.0, 20.0], atol=1e-9)
    assert f.tolist()[20:] == [1, 1, 3]
    z, _ = robust_zscore(np.array([101325.0] * 12 + [101327.0]), 10)
    assert z[-1] == 2.0


def slow_peers(x, groups, min_count, threshold):
    """Peer z-scores with a plain loop over times and groups."""
    z = np.full(x.shape, np.nan)
    f = np.full(x.shape, 9, np.int8)
    for t in range(x.shape[1]):
        for g in set(groups):
            rows = [r for r in range(x.shape[0]) if groups[r] == g]
            w = np.array([x[r, t] for r in rows if not np.isnan(x[r, t])])
            for r in rows:
                if np.isnan(x[r, t]):
                    continue
                if len(w) < min_count:
                    f[r, t] = 2
                    continue
                med, scale = robust_scale(w)
                z[r, t] = (x[r, t] - med) / scale
                f[r, t] = 3 if abs(z[r, t]) > threshold else 1
    return z, f


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_peer_zscore_against_a_plain_loop(data):
    rows = data.draw(st.integers(1, 9))
    cols = data.draw(st.integers(1, 12))
    x = np.array(data.draw(st.lists(st.one_of(st.floats(-50, 50), st.just(np.nan),
                                              st.sampled_from([1.0, 1.5, 2.0])),
                                    min_size=rows * cols, max_size=rows * cols)))
    x = x.reshape(rows, cols)
    groups = data.draw(st.lists(st.sampled_from("ab"), min_size=rows, max_size=rows))
    min_count = data.draw(st.integers(1, 4))
    from kernels import peer_zscore

    z, f = peer_zscore(x, 3.0, min_count, groups=groups)
    ez, ef = slow_peers(x, groups, min_count, 3.0)
    np.testing.assert_array_equal(f, ef)
    np.testing.assert_allclose(z, ez, rtol=1e-9, atol=1e-12)
