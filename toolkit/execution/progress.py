"""Long computations a user can watch and stop.

:func:`compute` runs a Dask collection on a client with a progress bar and
polls for Ctrl-C. Inside :func:`interruptible`, Ctrl-C both raises
KeyboardInterrupt and sets a flag; the flag matters because Python ignores an
exception raised inside a callback (a garbage-collection hook of
``distributed`` is a common place for the signal to land), and the polling
loops here see the flag even then.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time

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
    future = client.compute(collection)
    bar = None
    if show_progress:
        bar = threading.Thread(target=progress, args=(future,), daemon=True)
        bar.start()
    try:
        while not future.done():
            check_interrupted()
            time.sleep(0.05)
        check_interrupted()
        return future.result()
    except KeyboardInterrupt:
        client.cancel(future)  # let the workers stop before the cluster closes
        raise
    finally:
        if bar is not None:
            bar.join(timeout=2)
            print()


__all__ = ["check_interrupted", "compute", "interruptible", "quiet_after_interrupt",
           "sigint_handler"]
