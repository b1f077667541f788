"""Exponentially weighted kernels against pandas, and split-in-pieces exactness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.ewm import ewm_mean, ewm_std, ewm_var, resolve_alpha
from tests.helpers import series

FUNCS = {"mean": ewm_mean, "var": ewm_var, "std": ewm_std}
DECAYS = st.sampled_from([{"alpha": 0.3}, {"alpha": 1.0}, {"span": 10}, {"halflife": 4},
                          {"com": 0.5}])


def split_points(draw, n):
    return sorted(draw(st.lists(st.integers(0, n), max_size=5)))


@pytest.mark.parametrize("stat", list(FUNCS))
@settings(max_examples=120, deadline=None)
@given(x=series(), decay=DECAYS, adjust=st.booleans(), ignore_na=st.booleans(),
       min_count=st.integers(0, 5))
def test_matches_pandas(stat, x, decay, adjust, ignore_na, min_count):
    got = FUNCS[stat](x, adjust=adjust, ignore_na=ignore_na, min_count=min_count, **decay)
    frame = pd.Series(x.astype(np.float64)).ewm(adjust=adjust, ignore_na=ignore_na,
                                                 min_periods=min_count, **decay)
    expected = getattr(frame, stat)().to_numpy()
    assert got.dtype == x.dtype
    rtol = 1e-5 if x.dtype == np.float32 else 1e-9
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * 1e-3)


@pytest.mark.parametrize("stat", list(FUNCS))
@settings(max_examples=100, deadline=None)
@given(x=series(), decay=DECAYS, adjust=st.booleans(), data=st.data())
def test_pieces_with_carried_state_equal_the_whole(stat, x, decay, adjust, data):
    cuts = split_points(data.draw, len(x))
    whole = FUNCS[stat](x, adjust=adjust, **decay)
    parts, state = [], None
    for piece in np.split(x, cuts):
        out, state = FUNCS[stat](piece, adjust=adjust, state=state, return_state=True,
                                 **decay)
        parts.append(out)
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_time_aware_mean_matches_pandas():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 400))
    x[:, rng.random(400) < 0.1] = np.nan
    steps = rng.integers(1, 300, 400)
    times = pd.Timestamp("2026-02-01") + pd.to_timedelta(np.cumsum(steps), unit="s")
    got = ewm_mean(x, halflife=np.timedelta64(10, "m"), times=times.values)
    for row in range(3):
        expected = pd.Series(x[row]).ewm(halflife="10min", times=times).mean()
        np.testing.assert_allclose(got[row], expected.to_numpy(), rtol=1e-12)


def slow_time_var(x, t, halflife):
    """Plain loop: unbiased weighted variance with weights 0.5**(age/halflife)."""
    out = np.full(len(x), np.nan)
    for i in range(len(x)):
        ok = ~np.isnan(x[: i + 1])
        w = 0.5 ** ((t[i] - t[: i + 1][ok]) / halflife)
        v = x[: i + 1][ok]
        if len(v) < 2:
            continue
        m = (w * v).sum() / w.sum()
        biased = (w * (v - m) ** 2).sum() / w.sum()
        out[i] = biased * w.sum() ** 2 / (w.sum() ** 2 - (w**2).sum())
    return out


def test_time_aware_variance_matches_a_plain_loop_and_splits():
    rng = np.random.default_rng(6)
    x = rng.standard_normal(300)
    x[rng.random(300) < 0.1] = np.nan
    t = np.cumsum(rng.integers(1, 100, 300)).astype(np.int64)
    got = ewm_var(x, halflife=50, times=t)
    np.testing.assert_allclose(got, slow_time_var(x, t, 50.0), rtol=1e-9)
    first, state = ewm_var(x[:120], halflife=50, times=t[:120], return_state=True)
    rest = ewm_var(x[120:], halflife=50, times=t[120:], state=state)
    np.testing.assert_array_equal(np.concatenate([first, rest]), got)


@pytest.mark.parametrize("adjust", [True, False])
@pytest.mark.parametrize("ignore_na", [True, False])
def test_mean_of_many_series_matches_pandas(adjust, ignore_na):
    # the mean runs two series side by side; an odd count leaves one alone
    rng = np.random.default_rng(5)
    x = 50.0 + rng.standard_normal((5, 400))
    x[rng.random(x.shape) < 0.2] = np.nan
    x[1, :30] = np.nan
    x[2] = np.where(np.isnan(x[2]), np.nan, 7.25)  # constant: the mean stays exact
    x[3, 200] = np.inf
    got = ewm_mean(x, span=12, adjust=adjust, ignore_na=ignore_na, min_count=3)
    expected = pd.DataFrame(x.T).ewm(span=12, adjust=adjust, ignore_na=ignore_na,
                                     min_periods=3).mean().to_numpy().T
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert (got[2, 10:] == 7.25).all()


@pytest.mark.parametrize("ignore_na", [True, False])
def test_mean_through_long_gaps_and_near_overflow(ignore_na):
    # the adjusted mean runs as a ratio of decayed sums: a gap of 20000
    # samples takes both sums below the smallest float64 (decay 0.95), and
    # values near the float64 limit overflow them (those series are redone
    # in pandas' form); each must still match pandas
    x = np.full((3, 20_100), np.nan)
    x[0, :50] = np.linspace(1.0, 2.0, 50)
    x[0, 20_050:] = 3.0 + np.arange(50) / 7
    x[1, :50] = np.linspace(-1.0, 1.0, 50)
    x[1, 600:602] = 1e308  # two in a row: the decayed sums overflow
    x[1, 20_000:] = 2.0 + np.arange(100) / 9
    x[2, 100:] = 101325.0 + np.sin(np.arange(20_000))
    got, state = ewm_mean(x, alpha=0.05, ignore_na=ignore_na, return_state=True)
    expected = pd.DataFrame(x.T).ewm(alpha=0.05, ignore_na=ignore_na).mean().to_numpy().T
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # the state carries on from either loop, also in pieces where a series
    # overflows only in the second (its state then comes from pandas' form)
    more = np.full((3, 10), 5.0)
    expected = pd.DataFrame(np.concatenate([x, more], axis=1).T).ewm(
        alpha=0.05, ignore_na=ignore_na).mean().to_numpy().T
    nxt = ewm_mean(more, alpha=0.05, ignore_na=ignore_na, state=state)
    np.testing.assert_allclose(nxt, expected[:, -10:], rtol=1e-12)
    state = None
    parts = []
    for piece in (x[:, :400], x[:, 400:], more):
        out, state = ewm_mean(piece, alpha=0.05, ignore_na=ignore_na, state=state,
                              return_state=True)
        parts.append(out)
    np.testing.assert_allclose(np.concatenate(parts, axis=1), expected, rtol=1e-12)


def test_nd_input_and_state_shape():
    x = np.random.default_rng(0).standard_normal((2, 3, 50))
    out, state = ewm_std(x, span=5, return_state=True)
    assert out.shape == x.shape and state.values.shape == (2, 3, 6)
    for i in range(2):
        for j in range(3):
            np.testing.assert_array_equal(out[i, j], ewm_std(x[i, j], span=5))
    moved = ewm_mean(np.moveaxis(x, -1, 0), span=5, axis=0)
    np.testing.assert_array_equal(np.moveaxis(moved, 0, -1), ewm_mean(x, span=5))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({}, "exactly one of"), ({"span": 3, "alpha": 0.5}, "exactly one of"),
     ({"span": 0.5}, "span must be >= 1, got span=0.5"),
     ({"alpha": 1.5}, r"alpha must be in \(0, 1\]"), ({"halflife": 0}, "halflife must be > 0")],
)
def test_decay_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        resolve_alpha(**kwargs)


def test_time_errors():
    x = np.ones(3)
    with pytest.raises(ValueError, match="sorted"):
        ewm_mean(x, halflife=1, times=np.array([3, 2, 1]))
    with pytest.raises(ValueError, match="with times, give halflife"):
        ewm_mean(x, alpha=0.5, times=np.arange(3))
    with pytest.raises(ValueError, match="state is for 2 series"):
        _, state = ewm_mean(np.ones((2, 3)), alpha=0.5, return_state=True)
        ewm_mean(np.ones((3, 3)), alpha=0.5, state=state)
