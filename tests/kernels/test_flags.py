"""Runs of raised flags (kernels.flags.runs) against a plain loop."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import flags


def _runs_by_loop(f, s, min_flag, skip_missing):
    out = []
    for r in range(f.shape[0]):
        run = None
        for i in range(f.shape[1]):
            up = f[r, i] >= min_flag and not (skip_missing and f[r, i] == flags.MISSING)
            if up and run is None:
                run = [r, i, i, f[r, i], []]
                out.append(run)
            if up:
                run[2], run[3] = i, max(run[3], f[r, i])
                if s is not None and not np.isnan(s[r, i]):
                    run[4].append(abs(s[r, i]))
            else:
                run = None
    return [(r, a, b, w, max(p) if p else np.nan) for r, a, b, w, p in out]


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 5), cols=st.integers(1, 60),
       min_flag=st.sampled_from([3, 4]), skip_missing=st.booleans(), scored=st.booleans())
def test_runs_equal_a_plain_loop(seed, rows, cols, min_flag, skip_missing, scored):
    rng = np.random.default_rng(seed)
    f = rng.choice(np.array(flags.CODES, dtype=np.int8), (rows, cols))
    s = rng.normal(0, 3, (rows, cols)) if scored else None
    if scored:
        s[rng.random((rows, cols)) < 0.3] = np.nan
    got = list(zip(*(a.tolist() for a in flags.runs(f, s, min_flag=min_flag,
                                                     skip_missing=skip_missing)),
                   strict=True))
    want = _runs_by_loop(f, s, min_flag, skip_missing)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g[:4] == tuple(int(x) for x in w[:4])
        assert (np.isnan(g[4]) and np.isnan(w[4])) or g[4] == w[4]


def test_runs_name_bad_shapes():
    with pytest.raises(ValueError, match="2-D"):
        flags.runs(np.zeros(5, np.int8))
    with pytest.raises(ValueError, match="shape"):
        flags.runs(np.zeros((2, 5), np.int8), np.zeros((2, 4)))
    row, first, last, worst, peak = flags.runs(np.ones((3, 0), np.int8))
    assert row.size == first.size == last.size == worst.size == peak.size == 0
