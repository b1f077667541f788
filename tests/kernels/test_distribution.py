"""Every kernel declares how it is distributed, and the declaration is enough:
a stretch of a series computed with only the context the declaration asks
for (its halo, its time span, or the state carried in) equals the same
stretch of the whole-series result."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels
from kernels.distribution import Pointwise, Reduce, Scan, Window

N = 80
T = np.cumsum(np.random.default_rng(5).integers(1, 6, N)).astype(np.int64)

# kernel name -> arguments (times=True: the kernel runs on T)
CASES = {
    "move_sum": {"window": 7, "min_count": 3},
    "move_mean": {"window": 7, "min_count": 3},
    "move_var": {"window": 7, "min_count": 3},
    "move_std": {"window": 7, "min_count": 3},
    "move_min": {"window": 7, "min_count": 1},
    "move_max": {"window": 7, "min_count": 1},
    "move_count": {"window": 7},
    "move_zscore": {"window": 7, "min_count": 3},
    "move_median": {"window": 7, "min_count": 3},
    "move_quantile": {"window": 7, "q": 0.3, "min_count": 3},
    "time_rolling": {"span": 12, "stat": "std", "min_count": 2, "times": True},
    "interpolate": {"max_gap": 3},
    "interpolate by time": {"max_span": 9, "times": True},
    "gross_range": {"fail_span": (-3.0, 3.0)},
    "spike": {"suspect": 1.0, "fail": 3.0},
    "robust_zscore": {"window": 7, "min_count": 3},
    "hampel": {"half_window": 3},
    "drift": {"window": 7, "max_slope": 0.5},
    "ewm_mean": {"halflife": 3},
    "ewm_var": {"span": 4},
    "ewm_std": {"alpha": 0.3},
    "ffill": {"limit": 2},
    "flat_line": {"tolerance": 0.0, "suspect": 2, "fail": 3},
    "rate_of_change": {"threshold": 0.5, "times": True},
    "sample_gaps": {"max_gap": 4, "times": True},
    "cusum": {"target": 0.0, "scale": 1.0},
    "peer_zscore": {"min_count": 1},
    "anomaly_score": {"halflife": 8.0, "calibration": 16.0, "warmup": 5},
    "alarms": {"threshold": 0.5, "warmup": 2, "min_duration": 2, "merge_gap": 2,
               "cooldown": 3},
}


def _kernel(case):
    return getattr(kernels, case.split(" ")[0])


def _call(kernel, x, args, t=None, **extra):
    args = dict(args)
    if args.pop("times", False):
        extra["times"] = t
    out = kernel(x, **args, **extra)
    return out if isinstance(out, tuple) else (out,)


def test_every_public_kernel_declares_its_distribution():
    declared = {}
    for name in kernels.__all__:
        func = getattr(kernels, name)
        if callable(func) and not isinstance(func, type) and name != "combine_bins":
            declared[name] = type(func.distribution)
    assert set(declared.values()) <= {Pointwise, Window, Scan, Reduce}
    # every declaration other than the reduces and time_gaps (which runs on
    # times, not values) is exercised below
    untested = {n for n, kind in declared.items() if kind is not Reduce} - \
        {c.split(" ")[0] for c in CASES} - {"time_gaps"}
    assert not untested, untested
    for case in CASES:
        outputs = _kernel(case).distribution.outputs
        assert all(isinstance(o, str) and dt in ("same", "float64", "int8")
                   for o, dt in outputs), case


def _values(data):
    # readings with a sensor's resolution (6 decimals): a value such as 3e-130
    # beside 0 and 1 is below what sums of O(1) values resolve, and its
    # stretch and whole-series results then differ by rounding alone (the
    # whole series' sums are shifted by another value), not by a missing context
    x = np.array(data.draw(st.lists(
        st.one_of(st.floats(-5, 5).map(lambda v: round(v, 6)), st.just(np.nan),
                  st.just(1.0)), min_size=N, max_size=N)))
    return x


@pytest.mark.parametrize("case", sorted(CASES))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_the_declared_context_is_enough(case, data):
    kernel, args = _kernel(case), CASES[case]
    dist = kernel.distribution
    x = _values(data)
    whole = _call(kernel, x, args, T)
    start = data.draw(st.integers(0, N - 1))
    stop = data.draw(st.integers(start + 1, N))
    if isinstance(dist, Scan):
        head = _call(kernel, x[:start], args, T[:start], state=None, return_state=True)
        part = _call(kernel, x[start:stop], args, T[start:stop], state=head[-1],
                     return_state=True)[:-1]
        lo, hi = 0, stop - start
    else:
        if isinstance(dist, Pointwise):
            before, after = 0, 0
        elif args.get("times") and dist.span is not None:
            # the samples within the span (strictly) before the first and
            # after the last sample of the stretch
            span, ahead = dist.span_of(args)
            before = start - int(np.searchsorted(T, T[start] - span, side="right"))
            after = int(np.searchsorted(T, T[stop - 1] + span, side="left")) - stop \
                if ahead else 0
        else:
            before, after = dist.halo(args)
        lo, hi = max(0, start - before), min(N, stop + after)
        part = _call(kernel, x[lo:hi], args, T[lo:hi])
        lo, hi = start - lo, start - lo + (stop - start)
    # A stretch recentres its sums on its own first value, the whole series on
    # another: the same numbers up to rounding. A z-score divides by the
    # window's spread, which magnifies that rounding where the spread is small
    # against the values (measured: 1.1e-9 relative, a window of 0.0, 0.997
    # and 1.0): its tolerance is ten times wider.
    # A spread (std, var) of values up to 5 carries an absolute rounding of up
    # to about 1e-14 / spread: 1e-8 where six-decimal readings barely differ
    # (measured: 1.8e-12 on a std of 7e-4).
    rtol = 1e-8 if case == "move_zscore" else 1e-9
    atol = 1e-8 if case in ("move_std", "move_var", "time_rolling") else 1e-12
    for w, p in zip(whole, part, strict=True):
        np.testing.assert_allclose(p[lo:hi], w[start:stop], rtol=rtol, atol=atol,
                                   equal_nan=True, err_msg=case)
