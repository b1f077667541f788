"""LTTB against a plain reference implementation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.lttb import lttb
from tests.helpers import series


def slow_lttb(x, y, n_out):
    """Steinarsson's algorithm, written plainly over the valid points."""
    keep = np.flatnonzero(~np.isnan(y))
    if len(keep) <= n_out:
        return np.concatenate([keep, -np.ones(n_out - len(keep), int)])
    px, py = x[keep], y[keep]
    m = len(keep)
    every = (m - 2) / (n_out - 2)
    chosen = [0]
    for b in range(n_out - 2):
        nxt = range(int(np.floor((b + 1) * every)) + 1, min(int(np.floor((b + 2) * every)) + 1, m))
        # sequential sums (not np.mean's pairwise ones): on a flat series the
        # areas nearly tie and the choice follows the last bit
        ax, ay = sum(px[j] for j in nxt) / len(nxt), sum(py[j] for j in nxt) / len(nxt)
        a = chosen[-1]
        cur = range(int(np.floor(b * every)) + 1, int(np.floor((b + 1) * every)) + 1)
        areas = [abs((px[a] - ax) * (py[j] - py[a]) - (px[a] - px[j]) * (ay - py[a]))
                 for j in cur]
        chosen.append(cur[int(np.argmax(areas))])
    chosen.append(m - 1)
    return keep[chosen]


@settings(max_examples=150, deadline=None)
@given(y=series(max_len=200), n_out=st.integers(3, 40))
def test_matches_reference(y, n_out):
    y = np.where(np.isinf(y), np.nan, y).astype(np.float64)
    x = np.cumsum(np.random.default_rng(len(y)).uniform(0.5, 2.0, len(y)))
    np.testing.assert_array_equal(lttb(y, n_out, x=x), slow_lttb(x, y, n_out))


def test_keeps_a_spike_and_the_ends():
    y = np.sin(np.linspace(0, 20, 100_000))
    y[54_321] = 50.0
    idx = lttb(y, 500)
    assert idx[0] == 0 and idx[-1] == len(y) - 1
    assert 54_321 in idx
    assert (np.diff(idx) > 0).all()


def test_nd_and_errors():
    y = np.random.default_rng(0).standard_normal((2, 3, 1000))
    idx = lttb(y, 50)
    assert idx.shape == (2, 3, 50)
    np.testing.assert_array_equal(idx[1, 2], lttb(y[1, 2], 50))
    with pytest.raises(ValueError, match="n_out=2"):
        lttb(y, 2)
