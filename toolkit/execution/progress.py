"""Long computations a user can watch and stop.

:func:`compute` (and :func:`compute_all`, for several at once) runs Dask
collections on a client with a progress bar and polls for Ctrl-C. Inside
:func:`interruptible`, Ctrl-C both raises KeyboardInterrupt and sets a flag;
the flag matters because Python ignores an exception raised inside a callback
(a garbage-collection hook of ``distributed`` is a common place for the
signal to land), and the polling loops here see the flag even then.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import sys
import threading
import weakref

from distributed import Client, progress

_INTERRUPTED = threading.Event()


@contextlib.contextmanager
def sigint_handler(handler):
    """Handle SIGINT with ``handler`` inside the block, then restore the old one.

    Only the main thread may set signal handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def quiet_after_interrupt() -> None:
    """The user asked to stop: from now on the complaints of the scheduler (it
    may run in this process), of the client's pending waits and of the event
    loop about work cancelled under them are noise, not news."""
    for name in ("distributed", "asyncio", "tornado"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


#: clients whose cluster this program started (and will close)
_OWN_CLUSTERS: weakref.WeakSet = weakref.WeakSet()


def owns_cluster(client: Client) -> Client:
    """Note that ``client``'s cluster is this program's own: after Ctrl-C its
    workers are quietened too (:func:`quiet_workers`). Returns ``client``."""
    _OWN_CLUSTERS.add(client)
    return client


def quiet_workers(client: Client) -> None:
    """After Ctrl-C, on a cluster this program started: the workers' complaints
    about work cancelled under them (a transfer between two workers cut off,
    with its traceback) are noise as well. Only on such a cluster: another
    cluster's workers keep their logging."""
    if client not in _OWN_CLUSTERS:
        return
    try:
        client.run(quiet_after_interrupt)
    except Exception:  # noqa: BLE001 - a worker already gone has nothing to say
        pass


def _on_sigint(signum, frame):
    _INTERRUPTED.set()
    quiet_after_interrupt()
    # Inside a garbage-collection callback an exception cannot propagate, and
    # distributed's own callback is left half-done (its next call then fails
    # an assertion): there, only set the flag, which the wait loops check.
    while frame is not None:
        if frame.f_code.co_name == "_gc_callback":
            return
        frame = frame.f_back
    raise KeyboardInterrupt


@contextlib.contextmanager
def interruptible():
    """Make Ctrl-C stop the work in this block reliably (main thread only).

    A KeyboardInterrupt raised where Python cannot propagate it (a garbage
    collection callback) would be printed as "Exception ignored ... Traceback";
    here it is dropped quietly instead, since the flag already carries it.
    A block whose work never looked at the flag after that still ends with
    KeyboardInterrupt: Ctrl-C is never lost.
    """
    _INTERRUPTED.clear()
    previous_hook = sys.unraisablehook

    def hook(unraisable):
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            previous_hook(unraisable)

    sys.unraisablehook = hook
    try:
        with sigint_handler(_on_sigint):
            yield
        check_interrupted()
    finally:
        sys.unraisablehook = previous_hook


def check_interrupted() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed inside :func:`interruptible`."""
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt


def compute(client: Client, collection, *, show_progress: bool = True):
    """Compute ``collection`` on ``client``, showing progress; Ctrl-C cancels it.

    Parameters
    ----------
    client : distributed.Client
        Where to run.
    collection
        Any Dask collection or delayed object.
    show_progress : bool
        Draw a text progress bar (a widget in a notebook).

    Returns
    -------
    The computed result.

    Examples
    --------
    >>> import dask  # doctest: +SKIP
    >>> compute(client, dask.delayed(sum)([1, 2]))  # doctest: +SKIP
    3
    """
    return compute_all(client, [collection], show_progress=show_progress)[0]


def compute_all(client: Client, collections, *, show_progress: bool = True,
                on_result=None) -> list:
    """Compute several Dask collections at once, fetching each result as soon as
    its own work is done; Ctrl-C (or an error in one) cancels the rest.

    Fetching each result when it is ready, rather than gathering them all on
    one worker at the end, moves each result once (worker to client) and
    overlaps the moving with the work still running, so the last result
    arrives shortly after the last task.

    Parameters
    ----------
    client : distributed.Client
        Where to run.
    collections : sequence
        Dask collections or delayed objects.
    show_progress : bool
        Draw a text progress bar over all of them (a widget in a notebook).
    on_result : callable, optional
        Called in this thread as ``on_result(index, result)`` as each result
        arrives, while the others may still run.

    Returns
    -------
    list
        The results, in the order of ``collections``.

    Examples
    --------
    >>> import dask  # doctest: +SKIP
    >>> jobs = [dask.delayed(sum)([1, 2]), dask.delayed(max)([1, 2])]  # doctest: +SKIP
    >>> compute_all(client, jobs)  # doctest: +SKIP
    [3, 2]
    """
    futures = client.compute(list(collections))
    ready: queue.SimpleQueue = queue.SimpleQueue()
    for i, future in enumerate(futures):
        # called in distributed's own thread when the task ends (or errs, or is cancelled)
        future.add_done_callback(lambda _, i=i: ready.put(i))
    bar = None
    if show_progress and futures:
        bar = threading.Thread(target=progress, args=(futures,), daemon=True)
        bar.start()
    results = [None] * len(futures)
    try:
        for _ in futures:
            while True:
                check_interrupted()
                try:
                    i = ready.get(timeout=0.05)
                    break
                except queue.Empty:
                    pass
            results[i] = futures[i].result()
            if on_result is not None:
                on_result(i, results[i])
        check_interrupted()
        return results
    except BaseException as err:
        # Ctrl-C, or one of them failed: let the workers stop the others
        # before the cluster closes
        if isinstance(err, KeyboardInterrupt):
            quiet_workers(client)
        client.cancel(futures)
        raise
    finally:
        if bar is not None:
            bar.join(timeout=2)
            print()


__all__ = ["check_interrupted", "compute", "compute_all", "interruptible", "owns_cluster",
           "quiet_after_interrupt", "quiet_workers", "sigint_handler"]
