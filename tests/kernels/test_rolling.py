"""Rolling kernels against pandas and a plain-loop reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels
from tests.helpers import STATS, series, slow_moving, tolerance


def slow_zscore(x, window, min_count, ddof=1):
    out = np.full(x.shape, np.nan)
    for i in range(len(x)):
        w = x[max(0, i - window): i].astype(np.float64)
        v = w[~np.isnan(w)]
        if len(v) < min_count or len(v) <= ddof or np.isinf(v).any():
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            if (v == v[0]).all():  # documented: exact 0 spread, inf or nan
                out[i] = (x[i] - v[0]) / np.float64(0.0)
            else:
                # shifted by a sample of the window (exact for nearby values),
                # so that the reference keeps its digits on 1e6 + small noise
                c = v - v[0]
                out[i] = ((x[i] - v[0]) - c.mean()) / c.std(ddof=ddof)
    return out


@pytest.mark.parametrize("stat", list(STATS))
@settings(max_examples=150, deadline=None)
@given(x=series(), data=st.data())
def test_moving_matches_slow_loop(stat, x, data):
    window = data.draw(st.integers(1, len(x) + 3), label="window")
    min_count = data.draw(st.integers(1, window), label="min_count")
    got = STATS[stat][0](x, window, min_count)
    assert got.dtype == x.dtype
    expected = slow_moving(x, window, min_count, stat)
    if stat == "std":
        tol = tolerance(x, "var")
        np.testing.assert_allclose(got.astype(float) ** 2, expected**2, **tol)
    else:
        np.testing.assert_allclose(got, expected, **tolerance(x, stat))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))


@settings(max_examples=300, deadline=None)
@given(x=series(), data=st.data())
def test_zscore_matches_slow_loop(x, data):
    window = data.draw(st.integers(2, len(x) + 3), label="window")
    min_count = data.draw(st.integers(2, window), label="min_count")
    got = kernels.move_zscore(x, window, min_count)
    expected = slow_zscore(x, window, min_count)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    both = np.isfinite(got) & np.isfinite(expected)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
    rtol = 1e-4 if x.dtype == np.float32 else 1e-7
    np.testing.assert_allclose(got[both], expected[both], rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stat", ["sum", "mean", "var", "std"])
def test_against_pandas_with_nans(dtype, stat):
    rng = np.random.default_rng(42)
    x = (20 + rng.standard_normal((5, 2000))).astype(dtype)
    x[0, 100:180] = np.nan  # a run longer than the window
    x[1, rng.random(2000) < 0.1] = np.nan  # scattered dropouts
    x[2, :] = np.nan  # a dead sensor
    x[3, :50] = np.nan  # starts late
    x[4, 500:] = 21.5  # stuck
    window, min_count = 60, 40
    got = STATS[stat][0](x, window, min_count)
    frame = pd.DataFrame(x.T.astype(np.float64)).rolling(window, min_periods=min_count)
    expected = getattr(frame, stat)().to_numpy().T
    rtol = 1e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol)
    assert got.dtype == dtype


def test_zscore_against_pandas():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 5000))
    x[:, rng.random(5000) < 0.02] = np.nan
    x[0, 2500] = 40.0
    z = kernels.move_zscore(x, 60, min_count=30)
    frame = pd.DataFrame(x.T).rolling(60, min_periods=30)
    expected = ((pd.DataFrame(x.T) - frame.mean().shift(1)) / frame.std().shift(1))
    np.testing.assert_allclose(z, expected.to_numpy().T, rtol=1e-9, atol=1e-9)
    assert z[0, 2500] > 30


def test_axis_and_non_contiguous_input():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6))  # time along axis 0
    got = kernels.move_mean(x, 5, axis=0)
    expected = kernels.move_mean(np.ascontiguousarray(x.T), 5).T
    np.testing.assert_array_equal(got, expected)
    strided = rng.standard_normal((4, 100))[:, ::3]
    np.testing.assert_allclose(kernels.move_std(strided, 7),
                               kernels.move_std(strided.copy(), 7))


def test_large_offset_is_not_cancelled():
    rng = np.random.default_rng(3)
    x = 101325.0 + 0.5 * rng.standard_normal(20_000)
    got = kernels.move_std(x, 60)
    expected = pd.Series(x - 101325.0).rolling(60).std().to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-8)


@pytest.mark.parametrize("stat", ["sum", "mean", "var", "std"])
def test_rows_with_and_without_infinities_in_one_array(stat):
    # Series without infinities take a lean loop, the others a careful one;
    # a level jump (recentring), a stuck stretch with NaN inside (exact
    # constant windows) and infinities meet in one 2-D call.
    rng = np.random.default_rng(11)
    n, window = 3000, 50
    jump = np.concatenate([rng.standard_normal(n // 2),
                           1e9 + rng.standard_normal(n - n // 2)])
    stuck = 20.0 + rng.standard_normal(n)
    stuck[1000:1400] = 21.3
    stuck[1100:1110] = np.nan
    with_inf = stuck.copy()
    with_inf[[200, 1600, 2500]] = [np.inf, -np.inf, np.inf]
    x = np.stack([jump, stuck, with_inf, jump[::-1].copy()])
    got = STATS[stat][0](x, window, 10)
    for row in range(x.shape[0]):
        expected = slow_moving(x[row], window, 10, stat)
        if stat in ("var", "std"):
            # exact zero for windows inside the stuck stretch
            inside = slice(1000 + window - 1, 1400)
            if row in (1, 2):
                assert (got[row, inside] == 0.0).all()
            np.testing.assert_allclose(got[row] ** (2 if stat == "std" else 1),
                                       expected ** (2 if stat == "std" else 1),
                                       rtol=1e-9, atol=1e-9)
        else:
            if row in (1, 2) and stat == "mean":
                assert (got[row, 1000 + window - 1:1400] == 21.3).all()
            # a sum keeps an absolute error of about eps times the largest
            # value since the last rebuild (as bottleneck's running sums):
            # after the jump back from 1e9 that is ~1e-7 per sample
            scale = np.abs(x[row][np.isfinite(x[row])]).max()
            np.testing.assert_allclose(got[row], expected, rtol=1e-12,
                                       atol=1e-12 + 1e-13 * scale * window)
        np.testing.assert_array_equal(np.isnan(got[row]), np.isnan(expected))


@pytest.mark.parametrize("stat", ["var", "std"])
def test_big_values_through_windows_without_results_leave_no_residue(stat):
    # A glitch to 1e9 while every window lacks a result (NaN in each, and
    # min_count = window): windows without a result do not test their
    # digits, but the rounding the big values leave must not reach the
    # windows after them.
    # (with a test of (mean - k)**2 > C * variance alone, the variance after
    # the glitch came out thousands of times too large for this seed)
    rng = np.random.default_rng(2)
    x = rng.standard_normal(3000)
    x[1100:1300] = 1e9 * (1 + rng.random(200))  # no scheduled rebuild in there
    x[1090:1400:15] = np.nan
    got = STATS[stat][0](x, 20)
    expected = slow_moving(x, 20, 20, stat)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"window": 0}, ValueError, "window must be at least 1, got window=0"),
        ({"window": 2.5}, TypeError, "window=2.5"),
        ({"window": 5, "min_count": 6}, ValueError, "min_count=6"),
        ({"window": 5, "min_count": 0}, ValueError, "min_count=0"),
        ({"window": 5, "ddof": -1}, ValueError, "ddof=-1"),
    ],
)
def test_argument_errors_name_the_value(kwargs, error, match):
    with pytest.raises(error, match=match):
        kernels.move_std(np.zeros(10), **kwargs)


def test_rejects_non_numeric_input():
    with pytest.raises(TypeError, match="dtype <U1"):
        kernels.move_mean(np.array(["a", "b"]), 2)
    with pytest.raises(ValueError, match="at least one dimension"):
        kernels.move_mean(np.float64(1.0), 1)


def test_integers_become_float64():
    np.testing.assert_array_equal(kernels.move_sum(np.arange(4), 2),
                                  [np.nan, 1.0, 3.0, 5.0])


@pytest.mark.parametrize("stat", ["min", "max"])
@pytest.mark.parametrize("window", [1, 2, 7, 60, 3000])
def test_extremes_against_bottleneck(stat, window):
    bn = pytest.importorskip("bottleneck")
    rng = np.random.default_rng(window)
    x = rng.standard_normal((4, 2500))
    x[0, 100:400] = np.nan
    x[1, ::3] = np.nan
    x[2, 50:900] = 1.5  # ties: the deque must keep the newest of equal values
    x[3] = np.sort(x[3])  # monotone: the deque's worst case
    got = STATS[stat][0](x, window, min_count=1)
    # bottleneck refuses a window longer than the series; a trailing window
    # that long covers the same samples as one of the series' length
    expected = getattr(bn, f"move_{stat}")(x, min(window, x.shape[-1]), min_count=1)
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=100, deadline=None)
@given(x=series(), data=st.data())
def test_count_matches_slow_loop(x, data):
    window = data.draw(st.integers(1, len(x) + 3), label="window")
    got = kernels.move_count(x, window)
    expected = [np.count_nonzero(~np.isnan(x[max(0, i - window + 1): i + 1]))
                for i in range(len(x))]
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == x.dtype


def test_zscore_keeps_small_deviations_near_a_large_offset():
    # found by hypothesis: [a, v x 8] has z(v) = 1/3 exactly; forming the
    # window mean near 1e6 first rounded it to 0.3333332
    a, v = 999999.98821436, 999999.989184
    x = np.array([1e6] * 20 + [a] + [v] * 9)
    assert kernels.move_zscore(x, 9, 2)[-1] == pytest.approx(1 / 3, rel=1e-12)


def stuck_series(seed, window, offset, nan_share, size):
    """Stuck stretches of 1 to 3 windows and more, at ``offset``, with NaN inside;
    and the trailing windows of each sample (NaN before the start)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 3 * window + 2, size=4000)
    values = offset + rng.standard_normal(lengths.size)
    x = np.repeat(values, lengths)[:size]
    x[rng.random(x.size) < nan_share] = np.nan
    windows = np.lib.stride_tricks.sliding_window_view(
        np.concatenate([np.full(window - 1, np.nan), x]), window)
    return x, windows


@pytest.mark.parametrize("stat", ["sum", "mean"])
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), window=st.integers(1, 90),
       offset=st.sampled_from([0.0, 101325.0, 3e9]),
       nan_share=st.sampled_from([0.0, 0.1, 0.5, 0.9]))
def test_windows_of_equal_values_give_that_value_across_blocks(stat, seed, window, offset,
                                                               nan_share):
    # The lean loop gives a block the careful pass (which knows runs of
    # equal samples) only when a stretch of it may hold a window whose valid
    # samples are all equal; every such window, in any block, must still
    # give exactly that value (its multiple by the count for the sum), and a
    # window with one valid sample exactly that sample. Stuck stretches,
    # short and long, with NaN inside, far from 0.
    x, windows = stuck_series(seed, window, offset, nan_share, 5000)
    got = STATS[stat][0](x, window, 1)
    expected = slow_moving(x, window, 1, stat)
    with np.errstate(invalid="ignore"):
        top = np.nanmax(windows, axis=1)
        constant = top == np.nanmin(windows, axis=1)
    counts = (~np.isnan(windows)).sum(axis=1)
    np.testing.assert_array_equal(np.isnan(got), counts == 0)
    exact = top if stat == "mean" else top * counts
    np.testing.assert_array_equal(got[constant], exact[constant])
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9 * max(offset, 1.0))


@pytest.mark.parametrize("stat", ["var", "std"])
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), window=st.integers(2, 90),
       offset=st.sampled_from([0.0, 101325.0]), nan_share=st.sampled_from([0.0, 0.02, 0.1, 0.5]),
       full=st.booleans())
def test_constant_windows_are_exactly_zero_across_blocks(stat, seed, window, offset, nan_share,
                                                         full):
    # Long series of stuck stretches, short and long, with NaN inside: the
    # lean loop works in blocks of about a thousand samples and hands the
    # blocks with a constant window to a redo that must find the run of
    # equal samples begun in an earlier block. Every window whose valid
    # samples are all equal gives exactly 0; every other window with a
    # result gives more than 0 and agrees with the plain loop. With
    # min_count = window and NaN about, few windows have a result, and
    # blocks take the one-pass way that computes only those.
    x, windows = stuck_series(seed, window, offset, nan_share, 3500)
    min_count = window if full else 2
    got = STATS[stat][0](x, window, min_count)
    expected = slow_moving(x, window, min_count, stat)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    with np.errstate(invalid="ignore"):
        constant = np.nanmax(windows, axis=1) == np.nanmin(windows, axis=1)
    due = ~np.isnan(expected)
    assert (got[due & constant] == 0.0).all()
    assert (got[due & ~constant] > 0.0).all()
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)
