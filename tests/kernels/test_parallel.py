"""Kernels split over threads give the single-threaded result bit for bit, and run on
one thread inside Dask."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kernels
from kernels import parallel

T = np.datetime64("2026-01-05T00:00", "ns") + np.arange(200) * np.timedelta64(60, "s")

# every kernel family, called on (rows, time) arrays; each returns an array or a tuple
FAMILIES = {
    "move_mean": lambda x, t: kernels.move_mean(x, 7, min_count=1),
    "move_sum": lambda x, t: kernels.move_sum(x, 5),
    "move_var": lambda x, t: kernels.move_var(x, 9, min_count=2),
    "move_std": lambda x, t: kernels.move_std(x, 9, min_count=2),
    "move_zscore": lambda x, t: kernels.move_zscore(x, 9, min_count=3),
    "move_min": lambda x, t: kernels.move_min(x, 6, min_count=1),
    "move_max": lambda x, t: kernels.move_max(x, 6),
    "move_count": lambda x, t: kernels.move_count(x, 4),
    "move_median": lambda x, t: kernels.move_median(x, 7, min_count=1),
    "move_quantile_heap": lambda x, t: kernels.move_quantile(x, 300, q=0.3, min_count=1),
    "ewm_mean": lambda x, t: kernels.ewm_mean(x, span=10),
    "ewm_mean_unadjusted": lambda x, t: kernels.ewm_mean(x, alpha=0.2, adjust=False),
    "ewm_std": lambda x, t: kernels.ewm_std(x, span=10),
    "ewm_var_times": lambda x, t: kernels.ewm_var(x, times=t[: x.shape[-1]],
                                                  halflife=np.timedelta64(5, "m")),
    "ewm_mean_state": lambda x, t: kernels.ewm_mean(x, span=4, return_state=True)[1].values,
    "ffill": lambda x, t: kernels.ffill(x, 3, return_state=True),
    "interpolate": lambda x, t: kernels.interpolate(x, 4),
    "interpolate_times": lambda x, t: kernels.interpolate(
        x, times=t[: x.shape[-1]], max_span=np.timedelta64(5, "m")),
    "gross_range": lambda x, t: kernels.gross_range(x, (-50, 50), (-20, 20)),
    "spike": lambda x, t: kernels.spike(x, 5, 20),
    "rate_of_change": lambda x, t: kernels.rate_of_change(x, 10, return_state=True),
    "flat_line": lambda x, t: kernels.flat_line(x, 0.0, 3, 6, return_state=True),
    "sample_gaps": lambda x, t: kernels.sample_gaps(
        x, np.timedelta64(2, "m"), times=t[: x.shape[-1]], return_state=True),
    "time_gaps": lambda x, t: kernels.time_gaps(
        np.broadcast_to(t[: x.shape[-1]], x.shape), np.timedelta64(2, "m")),
    "robust_zscore": lambda x, t: kernels.robust_zscore(x, 9, min_count=3),
    "hampel": lambda x, t: kernels.hampel(x, 4, min_count=2),
    "cusum": lambda x, t: kernels.cusum(x, 0.0, 1.0, return_state=True),
    "drift": lambda x, t: kernels.drift(x, 12, 0.5),
    "time_rolling_mean": lambda x, t: kernels.time_rolling(
        x, t[: x.shape[-1]], np.timedelta64(5, "m"), "mean"),
    "time_rolling_max": lambda x, t: kernels.time_rolling(
        x, t[: x.shape[-1]], np.timedelta64(5, "m"), "max"),
    "lttb": lambda x, t: kernels.lttb(np.nan_to_num(np.concatenate([x] * 3, axis=-1)),
                                      min(10, 3 * x.shape[-1])),
    "bin_rows": lambda x, t: kernels.bin_rows(
        x, t[: x.shape[-1]], start=t[0], step=np.timedelta64(5, "m"), n_bins=8, how="mean"),
}


def _flat(result):
    if isinstance(result, tuple):
        out = []
        for r in result:
            out += _flat(r)
        return out
    return [np.ascontiguousarray(result)]


def _same(a, b) -> bool:
    fa, fb = _flat(a), _flat(b)
    return len(fa) == len(fb) and all(
        x.dtype == y.dtype and x.shape == y.shape and
        np.array_equal(x.view(np.uint8) if x.dtype.kind == "f" else x,
                       y.view(np.uint8) if y.dtype.kind == "f" else y)
        for x, y in zip(fa, fb, strict=True))


@st.composite
def fleets(draw):
    rows = draw(st.sampled_from([1, 2, 3, 5, 7, 16]))
    n = draw(st.integers(1, 120))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 10, (rows, n)).round(draw(st.sampled_from([0, 1, 6])))
    x[rng.random(x.shape) < draw(st.sampled_from([0.0, 0.1, 0.5]))] = np.nan
    if draw(st.booleans()):  # infinities send moments and EWMs to their careful loops
        x[rng.random(x.shape) < 0.02] = np.inf
    if draw(st.booleans()):  # constant runs
        x[:, : n // 2] = 3.0
    return x


@pytest.fixture
def tiny_blocks(monkeypatch):
    monkeypatch.setattr(parallel, "MIN_BLOCK", 1)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@settings(max_examples=25, deadline=None)
@given(x=fleets(), threads=st.sampled_from([2, 3, 4]))
def test_threads_give_the_single_threaded_result_bit_for_bit(family, x, threads):
    parallel.MIN_BLOCK, saved = 1, parallel.MIN_BLOCK
    try:
        call = FAMILIES[family]
        with parallel.use_threads(1):
            one = call(x, T)
            assert parallel.last_call_threads() == 1
        with parallel.use_threads(threads):
            many = call(x, T)
            if x.shape[0] > 1 and not np.isinf(x).any():  # (infinities: a redo comes last)
                assert parallel.last_call_threads() == min(threads, x.shape[0])
        assert _same(one, many), family
    finally:
        parallel.MIN_BLOCK = saved


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_n_d_inputs_split_on_every_layout(tiny_blocks, axis):
    x = np.random.default_rng(1).normal(size=(5, 6, 40))
    x[x > 1.5] = np.nan
    with parallel.use_threads(1):
        one = kernels.move_std(x, 5, min_count=2, axis=axis)
    with parallel.use_threads(3):
        many = kernels.move_std(x, 5, min_count=2, axis=axis)
        assert parallel.last_call_threads() == 3
    assert _same(one, many)


def test_small_calls_stay_on_one_thread():
    with parallel.use_threads(4):
        kernels.move_mean(np.ones((8, 100)), 5)
        assert parallel.last_call_threads() == 1
        kernels.move_mean(np.ones((8, parallel.MIN_BLOCK)), 5)
        assert parallel.last_call_threads() == 4


def test_set_threads_is_the_process_default_and_is_checked():
    big = np.ones((4, parallel.MIN_BLOCK))
    try:
        parallel.set_threads(1)
        kernels.move_sum(big, 3)
        assert parallel.last_call_threads() == 1
        parallel.set_threads(2)
        kernels.move_sum(big, 3)
        assert parallel.last_call_threads() == 2
    finally:
        parallel.set_threads(None)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads"):
            parallel.set_threads(bad)


def _threads_in_a_task() -> int:
    x = np.random.default_rng(0).normal(size=(64, 10_000))
    kernels.move_mean(x, 60)
    return parallel.last_call_threads()


def test_one_thread_inside_a_dask_threaded_scheduler_task():
    import dask

    assert parallel.threads_for_call() == parallel.cores()  # a plain call: every core
    inside = dask.delayed(_threads_in_a_task)().compute(scheduler="threads")
    assert inside == 1
    with parallel.use_threads(2):  # the control: the same call outside Dask splits
        assert _threads_in_a_task() == 2


@pytest.mark.slow
def test_one_thread_inside_a_distributed_worker_task():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        assert client.submit(_threads_in_a_task, pure=False).result() == 1
        assert client.submit(parallel.in_dask_task, pure=False).result() is True
    assert parallel.in_dask_task() is False


def test_concurrent_calls_from_four_threads(tiny_blocks):
    rng = np.random.default_rng(2)
    inputs = [rng.normal(size=(9, 3_000)) for _ in range(8)]
    with parallel.use_threads(1):
        expected = [kernels.move_std(x, 30, min_count=2) for x in inputs]

    def work(k):
        with parallel.use_threads(3):
            return kernels.move_std(inputs[k], 30, min_count=2)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(8), timeout=120))
    assert all(_same(e, r) for e, r in zip(expected, results, strict=True))
    assert threading.active_count() < 64
