"""A worker process killed in the middle of a computation does not change the result."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import psutil
import pytest
import xarray as xr
from distributed import Client, LocalCluster

from toolkit import make_fleet

pytestmark = pytest.mark.slow


def slow(block):
    time.sleep(0.1)  # keeps the computation busy long enough to be interrupted
    return block


def test_killed_worker_is_replaced_and_the_result_is_right():
    fleet = make_fleet(n_devices=24, days=1, seed=7, chunks=1)
    ds = fleet.dataset[["temperature"]].chunk(time=240)
    slowed = ds.copy()
    slowed["temperature"] = ds.temperature.copy(data=ds.temperature.data.map_blocks(slow))
    lazy = slowed.telemetry.rolling(window=60, min_count=30).std()
    expected = fleet.dataset[["temperature"]].compute().telemetry.rolling(
        window=60, min_count=30).std()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        future = client.compute(lazy)
        deadline = time.monotonic() + 60
        while not any(client.processing().values()):  # work has started
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.0)
        victim = next(iter(cluster.workers.values())).process.pid
        os.kill(victim, signal.SIGKILL)
        time.sleep(0.5)
        assert not future.done(), "the computation ended before the worker was killed"
        assert not psutil.pid_exists(victim) or \
            psutil.Process(victim).status() == psutil.STATUS_ZOMBIE
        result = future.result(timeout=300)
        assert not future.cancelled()
    assert np.isfinite(result.temperature).sum() > 0
    xr.testing.assert_allclose(result, expected.assign_attrs(history=result.history))
