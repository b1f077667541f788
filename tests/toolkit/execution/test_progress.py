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


def _distributed_log_level():
    import logging

    return logging.getLogger("distributed").getEffectiveLevel()


def test_after_ctrl_c_only_a_cluster_of_our_own_has_its_workers_quietened():
    import logging

    from distributed import Client, LocalCluster

    from toolkit import connect
    from toolkit.execution.progress import quiet_workers

    with connect(n_workers=1, threads_per_worker=1, dashboard_address=None,
                 memory_limit="1GiB") as own:
        assert max(own.run(_distributed_log_level).values()) < logging.CRITICAL
        quiet_workers(own)
        assert set(own.run(_distributed_log_level).values()) == {logging.CRITICAL}
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as theirs:
        before = theirs.run(_distributed_log_level)
        quiet_workers(theirs)
        assert theirs.run(_distributed_log_level) == before
        assert max(before.values()) < logging.CRITICAL


def test_a_ctrl_c_noticed_only_as_the_flag_still_ends_the_block_as_interrupted():
    """Ctrl-C landing in a garbage-collection callback only sets the flag; a block
    whose work never checks it again must still end with KeyboardInterrupt."""
    import logging
    import signal
    import sys

    from toolkit.execution import progress

    names = ("distributed", "asyncio", "tornado")
    levels = {n: logging.getLogger(n).level for n in names}

    def _gc_callback():  # the name of distributed's garbage-collection hook
        progress._on_sigint(signal.SIGINT, sys._getframe())

    reached = []
    try:
        with pytest.raises(KeyboardInterrupt), progress.interruptible():
            _gc_callback()  # no exception here: the flag only
            reached.append(True)
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)
    assert reached == [True]
    with progress.interruptible():  # the next block starts afresh
        pass
