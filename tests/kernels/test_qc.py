"""Quality-flag kernels against plain loops; scans split in pieces."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.qc import flat_line, gross_range, rate_of_change, sample_gaps, spike, time_gaps
from tests.helpers import series


def pieces(draw, n):
    return sorted(draw(st.lists(st.integers(0, n), max_size=5)))


def run_in_pieces(func, x, cuts, *args, times=None, **kwargs):
    parts, state = [], None
    for idx in np.split(np.arange(len(x)), cuts):
        extra = {} if times is None else {"times": times[idx]}
        out, state = func(x[idx], *args, state=state, return_state=True, **extra, **kwargs)
        parts.append(out)
    return np.concatenate(parts)


@settings(max_examples=150, deadline=None)
@given(x=series())
def test_gross_range(x):
    got = gross_range(x, (-1.0, 1e5), (-0.5, 2.0))
    expected = np.where(np.isnan(x), 9, np.where((x < -1) | (x > 1e5), 4,
                        np.where((x < -0.5) | (x > 2.0), 3, 1)))
    np.testing.assert_array_equal(got, expected)


def slow_spike(x, suspect, fail):
    out = np.full(len(x), 2, dtype=np.int8)
    for i in range(len(x)):
        if np.isnan(x[i]):
            out[i] = 9
        elif 0 < i < len(x) - 1 and not np.isnan(x[i - 1]) and not np.isnan(x[i + 1]):
            d = abs(float(x[i]) - (float(x[i - 1]) + float(x[i + 1])) / 2)
            out[i] = 4 if d > fail else 3 if d > suspect else 1
    return out


@settings(max_examples=150, deadline=None)
@given(x=series(), suspect=st.floats(0, 3))
def test_spike(x, suspect):
    x = x.astype(np.float64)
    np.testing.assert_array_equal(spike(x, suspect, suspect * 2), slow_spike(x, suspect,
                                                                             suspect * 2))


def slow_rate(x, t, threshold):
    out = np.full(len(x), 9, dtype=np.int8)
    last = None
    for i in range(len(x)):
        if np.isnan(x[i]):
            continue
        if last is None:
            out[i] = 2
        else:
            dt = t[i] - t[last]
            rate = abs(x[i] - x[last]) / dt if dt > 0 else np.inf
            out[i] = 3 if rate > threshold else 1
        last = i
    return out


@settings(max_examples=150, deadline=None)
@given(x=series(), threshold=st.floats(0.01, 10), data=st.data())
def test_rate_of_change_and_pieces(x, threshold, data):
    x = x.astype(np.float64)
    rng = np.random.default_rng(len(x))
    t = np.cumsum(rng.integers(0, 5, len(x))).astype(np.int64)
    expected = slow_rate(x, t, threshold)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(rate_of_change(x, threshold, times=t), expected)
        cuts = pieces(data.draw, len(x))
        np.testing.assert_array_equal(
            run_in_pieces(rate_of_change, x, cuts, threshold, times=t), expected)


def slow_flat(x, t, tol, suspect, fail, by_time):
    out = np.full(len(x), 9, dtype=np.int8)
    last, length, first = None, 0, 0
    for i in range(len(x)):
        if np.isnan(x[i]):
            continue
        if last is not None and abs(x[i] - last) <= tol:
            length += 1
        else:
            length, first = 1, t[i]
        last = x[i]
        size = t[i] - first if by_time else length
        out[i] = 4 if size >= fail else 3 if size >= suspect else 1
    return out


@settings(max_examples=150, deadline=None)
@given(x=series(), tol=st.sampled_from([0.0, 0.01, 1.0]), by_time=st.booleans(),
       data=st.data())
def test_flat_line_and_pieces(x, tol, by_time, data):
    x = x.astype(np.float64)
    t = np.cumsum(np.random.default_rng(len(x)).integers(1, 4, len(x))).astype(np.int64)
    times = t if by_time else None
    expected = slow_flat(x, t if by_time else np.arange(len(x)), tol, 3, 6, by_time)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(flat_line(x, tol, 3, 6, times=times), expected)
        cuts = pieces(data.draw, len(x))
        np.testing.assert_array_equal(
            run_in_pieces(flat_line, x, cuts, tol, 3, 6, times=times), expected)


def test_flat_line_with_datetimes():
    t = np.datetime64("2026-01-01") + np.arange(10) * np.timedelta64(1, "m")
    x = np.array([1, 2, 2, 2, 2, 2, 2, 3, 3, 3], dtype=float)
    got = flat_line(x, 0.0, np.timedelta64(3, "m"), np.timedelta64(5, "m"), times=t)
    np.testing.assert_array_equal(got, [1, 1, 1, 1, 3, 3, 4, 1, 1, 1])


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(st.integers(-5, 50), min_size=1, max_size=60), data=st.data())
def test_time_gaps_and_pieces(steps, data):
    t = np.cumsum(steps).astype(np.int64)
    expected = np.array([2] + [4 if s > 20 or s < 0 else 1 for s in steps[1:]], np.int8)
    np.testing.assert_array_equal(time_gaps(t, 20), expected)
    cuts = pieces(data.draw, len(t))
    parts, state = [], None
    for piece in np.split(t, cuts):
        out, state = time_gaps(piece, 20, state=state, return_state=True)
        parts.append(out)
    np.testing.assert_array_equal(np.concatenate(parts), expected)


def slow_sample_gaps(x, t, max_gap):
    out, prev = np.empty(len(x), np.int8), None
    for i in range(len(x)):
        if np.isnan(x[i]):
            out[i] = 9
            continue
        out[i] = 2 if prev is None else (4 if t[i] - prev > max_gap else 1)
        prev = t[i]
    return out


@settings(max_examples=150, deadline=None)
@given(x=series(), data=st.data())
def test_sample_gaps_against_a_loop_and_in_pieces(x, data):
    t = np.cumsum(data.draw(st.lists(st.integers(1, 30), min_size=len(x), max_size=len(x)))
                  ).astype(np.int64)
    expected = slow_sample_gaps(x, t, 40)
    np.testing.assert_array_equal(sample_gaps(x, 40, times=t), expected)
    cuts = pieces(data.draw, len(x))
    got = run_in_pieces(sample_gaps, x, cuts, 40, times=t)
    np.testing.assert_array_equal(got, expected)


def test_argument_errors():
    with pytest.raises(ValueError, match="inside fail_span"):
        gross_range(np.ones(3), (0, 1), (-1, 2))
    with pytest.raises(ValueError, match="suspect=5, fail=2"):
        spike(np.ones(3), 5, 2)
    with pytest.raises(ValueError, match="tolerance=-1"):
        flat_line(np.ones(3), -1, 2, 3)
    with pytest.raises(TypeError, match="datetime64 or integers"):
        time_gaps(np.array([0.5, 1.0]), 1)
