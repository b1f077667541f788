"""Kernels on every core: the series of one call split over threads.

Every compiled loop walks its input series (rows) one after the other and
releases the GIL (``nogil``). :func:`run_rows` cuts the rows into up to
four blocks per thread, and the call's threads (from a shared pool) take the
blocks in turn, so a thread whose core is slowed by other work takes fewer.
A series is computed by the same loop, from the same values, in the same
order, whichever block it lands in, so the result is bit for bit the result
of one thread.

How many threads:

- inside a Dask task -- on a ``distributed`` worker, or in a thread of
  Dask's local thread pools -- **one**: Dask already keeps every core busy
  with its own tasks, and threads inside them would only fight over the
  cores (both are asked of Dask itself, not guessed from thread names);
- otherwise :func:`set_threads` (the whole process), and by default every
  core this process may run on;
- a :func:`use_threads` block (this thread and its context only) overrides
  both, inside Dask too: it is asked for where the call is;
- never more than one block per ``MIN_BLOCK`` values, so small calls do not
  pay for threads.

No numba threading layer is involved (the loops are plain ``nogil``
functions), so concurrent calls from many threads are safe.

Examples
--------
>>> import numpy as np, kernels
>>> x = np.random.default_rng(0).normal(size=(64, 10_000))
>>> with use_threads(1):
...     one = kernels.move_mean(x, 60)
>>> with use_threads(2):
...     two = kernels.move_mean(x, 60)
>>> np.array_equal(one, two, equal_nan=True), last_call_threads()
(True, 2)
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: the fewest values (rows x time) a block of rows is given
MIN_BLOCK = 1 << 16
#: the most blocks of rows per thread
BLOCKS_PER_THREAD = 4

_setting: int | None = None
_scoped: contextvars.ContextVar = contextvars.ContextVar("kernels_threads", default=None)
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()
_last = threading.local()


def cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def set_threads(n: int | None) -> None:
    """Threads per kernel call outside Dask, for the whole process (None: every core)."""
    global _setting
    _setting = _check(n)


@contextlib.contextmanager
def use_threads(n: int | None):
    """Threads per kernel call in this ``with`` block (this thread and context only)."""
    token = _scoped.set(_check(n))
    try:
        yield
    finally:
        _scoped.reset(token)


def _check(n):
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"threads must be a whole number >= 1 or None, got {n!r}")
    return int(n)


def in_dask_task() -> bool:
    """Whether this thread runs a Dask task (a distributed worker, or Dask's thread pools).

    Asked of Dask's own modules when this process has imported them (a process
    that has not cannot be running a Dask task); ``kernels`` itself imports
    numpy and numba only.
    """
    distributed = sys.modules.get("distributed")
    if distributed is not None:
        try:
            distributed.get_worker()
            return True
        except ValueError:  # not in a worker's task
            pass
    threaded = sys.modules.get("dask.threaded")
    if threaded is None:
        return False
    me = threading.current_thread()
    pools = [threaded.default_pool]
    with threaded.pools_lock:
        for by_size in list(threaded.pools.values()):
            pools += list(by_size.values())
    return any(p is not None and me in getattr(p, "_threads", ()) for p in pools)


def threads_for_call() -> int:
    """The threads a kernel call from this thread would use (before the size limit).

    A :func:`use_threads` block wins (it is asked for where the call is);
    then one thread inside a Dask task; then :func:`set_threads`; then every
    core.
    """
    scoped = _scoped.get()
    if scoped is not None:
        return scoped
    if in_dask_task():
        return 1
    return _setting if _setting is not None else cores()


def last_call_threads() -> int:
    """Threads the last kernel call of this thread ran on (for tests and benchmarks)."""
    return getattr(_last, "threads", 0)


class Rows:
    """An argument split with the rows: ``(series, ...)``; an array of one row is
    shared by every block (a time axis common to all series)."""

    __slots__ = ("array",)

    def __init__(self, array):
        self.array = array


class Scratch:
    """A work array of the loop: each block gets a fresh one of the same shape."""

    __slots__ = ("array",)

    def __init__(self, array):
        self.array = array


def run_rows(loop, *args, rows: int | None = None) -> None:
    """Run ``loop(*args)`` over blocks of rows on the threads this call may use.

    Arguments wrapped in :class:`Rows` are cut by rows, :class:`Scratch`
    arrays are made anew per block, the others are passed as they are.
    ``rows`` is the number of series (default: the first :class:`Rows`).
    """
    split = [a.array for a in args if isinstance(a, Rows)]
    if rows is None:
        rows = split[0].shape[0]
    length = split[0].shape[1] if split and split[0].ndim > 1 else 1
    n = min(threads_for_call(), rows, max(1, rows * length // MIN_BLOCK))
    _last.threads = n
    if n <= 1:
        loop(*[_whole(a) for a in args])
        return
    # up to BLOCKS_PER_THREAD blocks a thread, taken in turn: a thread whose
    # core is busy with other work takes fewer (rows are computed alike in
    # any block, so the results do not change)
    blocks = min(rows, max(n, rows * length // MIN_BLOCK), BLOCKS_PER_THREAD * n)
    bounds = np.linspace(0, rows, blocks + 1).astype(np.int64)
    turns = itertools.count()  # its next() is one step under the GIL: no block is taken twice

    def work():
        for k in turns:
            if k >= blocks:
                return
            lo, hi = int(bounds[k]), int(bounds[k + 1])
            loop(*[_part(a, lo, hi, rows) for a in args])

    futures = [_executor(n).submit(work) for _ in range(n)]
    for f in futures:
        f.result()


def _whole(a):
    return a.array if isinstance(a, (Rows, Scratch)) else a


def _part(a, lo, hi, rows):
    if isinstance(a, Rows):
        arr = a.array
        if arr.shape[0] == rows:
            return arr[lo:hi]
        if arr.shape[0] == 1:
            return arr
        raise ValueError(f"an argument split by rows has {arr.shape[0]} rows, not {rows}")
    if isinstance(a, Scratch):
        return np.empty_like(a.array)
    return a


def _executor(n: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < n:
            old = _pool
            _pool = ThreadPoolExecutor(max(n, cores()), thread_name_prefix="kernels")
            _pool_size = max(n, cores())
            if old is not None:
                old.shutdown(wait=False)
        return _pool


def _after_fork() -> None:  # a forked child has the pool object but not its threads
    global _pool, _pool_size
    _pool, _pool_size = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


__all__ = ["MIN_BLOCK", "Rows", "Scratch", "cores", "in_dask_task", "last_call_threads",
           "run_rows", "set_threads", "threads_for_call", "use_threads"]
