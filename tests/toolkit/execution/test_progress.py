"""compute_all on a real cluster: results in order, each fetched as it ends, errors cancel."""

from __future__ import annotations

import time

import dask
import pytest
from distributed import Event

from toolkit.execution.progress import compute_all


def _after(name, value, timeout=60.0):
    """A task that ends only once the client has set the Event ``name``."""
    if not Event(name).wait(timeout):
        raise TimeoutError(f"{name} was never set")
    return value


def _fail():
    raise ValueError("this task fails")


def test_results_come_in_order_and_each_as_soon_as_its_task_ends(client):
    # the slow task ends only after the client holds the fast one's result:
    # gathering everything at the end would leave it waiting (a TimeoutError)
    name = f"fast-result-in-{time.time_ns()}"
    jobs = [dask.delayed(_after, pure=False)(name, "slow"), dask.delayed(sum)([1, 2, 3])]
    seen = []

    def arrived(i, value):
        seen.append((i, value))
        if i == 1:
            Event(name, client=client).set()

    assert compute_all(client, jobs, show_progress=False, on_result=arrived) == ["slow", 6]
    assert seen == [(1, 6), (0, "slow")]


def test_an_error_in_one_raises_and_cancels_the_others(client):
    name = f"never-set-{time.time_ns()}"
    jobs = [dask.delayed(_after, pure=False)(name, "waits", 120.0), dask.delayed(_fail)()]
    with pytest.raises(ValueError, match="this task fails"):
        compute_all(client, jobs, show_progress=False)
    deadline = time.monotonic() + 30
    try:
        while any(client.processing().values()):  # the waiting task is cancelled, not left
            assert time.monotonic() < deadline, client.processing()
            time.sleep(0.1)
    finally:
        Event(name, client=client).set()  # free the worker thread it held
