"""Where computations run: a local cluster by default, or an existing one.

Library functions never start a cluster; they build lazy Dask graphs that run
on the current client. Only :func:`connect` starts one, when asked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal

import dask
from distributed import Client
from distributed.worker_memory import parse_memory_limit

from kernels.parallel import cores

from .errors import ArgumentError, ClusterConnectionError
from .execution.progress import owns_cluster, sigint_handler

SCHEDULER_ENV = "TOOLKIT_SCHEDULER"

#: the dashboard of a local cluster listens on the loopback interface only
DEFAULT_DASHBOARD = "127.0.0.1:8787"


def connect(address: str | None = None, *, timeout: float = 10, **cluster_kwargs) -> Client:
    """Start a local Dask cluster, or connect to a running scheduler.

    Parameters
    ----------
    address : str, optional
        Address of a running scheduler, such as ``"tcp://10.0.0.5:8786"``.
        When omitted, the ``TOOLKIT_SCHEDULER`` environment variable is used;
        when that is unset too, a :class:`distributed.LocalCluster` is
        started: one single-threaded worker process per core (the shape the
        scaling benchmark favours, see the docs), each with its share of the
        machine's memory as its limit, and the dashboard bound to 127.0.0.1
        (port 8787, or a free one if that is taken).
    timeout : float
        Seconds to wait for the scheduler before giving up.
    **cluster_kwargs
        Passed to :class:`distributed.LocalCluster` (``n_workers``,
        ``threads_per_worker``, ``memory_limit``, ``dashboard_address``...).
        Only valid when a local cluster is started.

    Returns
    -------
    distributed.Client
        Its ``dashboard_link`` is the dashboard's URL. Closing the client
        also shuts down a local cluster that ``connect`` started.

    Raises
    ------
    ClusterConnectionError
        If no scheduler answers at ``address`` within ``timeout`` seconds.

    Examples
    --------
    >>> client = connect(n_workers=2, threads_per_worker=1)  # doctest: +SKIP
    >>> print(client.dashboard_link)                         # doctest: +SKIP
    http://127.0.0.1:8787/status
    >>> client.close()                                       # doctest: +SKIP
    """
    address = address or os.environ.get(SCHEDULER_ENV) or None
    if address is not None:
        if cluster_kwargs:
            raise ArgumentError(
                f"cluster options {sorted(cluster_kwargs)} only apply when "
                f"connect() starts a local cluster, not when it connects to "
                f"the scheduler at {address!r}"
            )
        try:
            return Client(address, timeout=timeout)
        except (OSError, TimeoutError) as err:
            raise ClusterConnectionError(
                f"no Dask scheduler answered at {address!r} within {timeout} s "
                f"({err}). Check the address (for example tcp://HOST:8786), "
                f"that the scheduler is running, or unset {SCHEDULER_ENV} to "
                "start a local cluster."
            ) from err
    # One single-threaded worker process per core: measured on 2 cores
    # (benchmarks/bench_pipeline.py scaling, the pipeline engine on a 1.2 GiB
    # fleet), 2 processes x 1 thread ran 1.6-1.7x one worker, 1 process x 2
    # threads 1.3x (building the events tables holds the GIL), and
    # processes keep the dashboard, a memory limit per worker (the machine's
    # memory shared out) and a nanny that restarts a killed worker.
    options = {
        "processes": True,
        "host": "127.0.0.1",
        "dashboard_address": DEFAULT_DASHBOARD,
        "n_workers": cores(),
        "threads_per_worker": 1,
    }
    options.update(cluster_kwargs)
    # A Client given cluster options starts the LocalCluster itself and owns
    # it, so closing the client also shuts the cluster and its workers down.
    # Ctrl-C in a terminal signals the whole process group. Worker processes
    # started while SIGINT is ignored keep ignoring it (an ignored signal
    # stays ignored in a newly spawned interpreter), so they keep running
    # while the interrupted program closes the cluster in order instead of
    # each dying with a traceback.
    with sigint_handler(signal.SIG_IGN), \
            starting_workers(options.get("memory_limit", "auto"),
                             options["threads_per_worker"]):
        return owns_cluster(Client(timeout=timeout, **options))


@contextlib.contextmanager
def starting_workers(memory_limit="auto", threads_per_worker: int = 1):
    """Within this block, local workers start with :func:`worker_environ`'s
    environment (for a :class:`distributed.LocalCluster` made by hand).

    Examples
    --------
    >>> from distributed import LocalCluster
    >>> with starting_workers("4GiB"):                        # doctest: +SKIP
    ...     cluster = LocalCluster(n_workers=2, memory_limit="4GiB")
    """
    environ = worker_environ(memory_limit, threads_per_worker)
    # a nanny prefers this process's environment to the configuration, and
    # writes the values it starts workers with into it: an earlier cluster's
    # would win over this one's
    os.environ.update({k: str(v) for k, v in environ.items() if k in _HEAP_KEYS})
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        yield


#: distributed's own default, which :func:`worker_environ` replaces
_DASK_TRIM = 65536
#: the heap settings :func:`worker_environ` chooses
_HEAP_KEYS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")
#: glibc's tunable (2.35 and later; older versions ignore it) that asks for
#: transparent huge pages for the heap and large allocations
_HUGE_PAGES = "glibc.malloc.hugetlb=1"
#: those in this process's environment when the toolkit was imported (a nanny
#: writes its own into the environment of the process that starts it)
_USER_HEAP = {k: os.environ[k] for k in _HEAP_KEYS if k in os.environ}


def worker_environ(memory_limit="auto", threads_per_worker: int = 1) -> dict:
    """The environment a local cluster's worker processes start with.

    Distributed starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, so that
    memory freed by a task goes back to the system at once and the memory
    monitor sees what the worker holds. A kernel or parse task allocates and
    frees arrays of tens of megabytes, and then every new array is a fresh
    mapping whose pages the system must zero again: with that setting a
    10-million-row ``read_csv`` spent 2.8 s of system time in 3.6 s (2
    workers), against 1.3 s and 2.4 s with the values set here (see
    ``docs/chunk-exact.md``). Arrays up to ``MALLOC_MMAP_THRESHOLD_`` come from the
    reused heap, and up to ``MALLOC_TRIM_THRESHOLD_`` of freed memory is kept
    for the next task: at most 32 MiB and 256 MiB, and never more than a
    32nd and a 16th of the worker's memory limit, so a worker with a small
    limit keeps little memory it does not use.

    ``GLIBC_TUNABLES`` gets ``glibc.malloc.hugetlb=1``: large arrays (a
    Zarr chunk read into a ``bytes`` buffer, a parse block) are then mapped
    in 2 MiB pages where the system gives transparent huge pages on request
    (``/sys/kernel/mm/transparent_hugepage/enabled`` set to ``madvise``, as
    on Debian and Ubuntu), so the system zeroes and maps each one 512 times
    less often. In the pipeline benchmark this cut the workers' page faults
    from 350,000 to 25,000 a run and their system time by a quarter. Other
    glibc tunables in the environment are kept; with ``always`` or
    ``never`` there, or an older glibc, it changes nothing. Values in the Dask
    configuration (``distributed.nanny.pre-spawn-environ``) other than
    distributed's default, or in this process's environment when the toolkit
    was imported, are kept.

    Parameters
    ----------
    memory_limit : str, float, int or None
        A worker's memory limit, as :class:`distributed.LocalCluster` takes it.
    threads_per_worker : int
        Threads of each worker (for the ``"auto"`` limit).

    Returns
    -------
    dict
        The ``distributed.nanny.pre-spawn-environ`` mapping to start workers with.

    Examples
    --------
    >>> env = worker_environ("1GiB")
    >>> env["MALLOC_TRIM_THRESHOLD_"], env["MALLOC_MMAP_THRESHOLD_"]
    (67108864, 33554432)
    >>> env["GLIBC_TUNABLES"]
    'glibc.malloc.hugetlb=1'
    """
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    limit = parse_memory_limit(memory_limit, threads_per_worker,
                               logger=logging.getLogger(__name__))
    limit = limit or 8 * 2**30  # no limit: as for a worker of 8 GiB
    ours = {"MALLOC_TRIM_THRESHOLD_": min(256 * 2**20, limit // 16),
            "MALLOC_MMAP_THRESHOLD_": min(32 * 2**20, limit // 32)}
    for key, value in ours.items():
        if key in _USER_HEAP and int(_USER_HEAP[key]) != _DASK_TRIM:
            continue
        if key not in environ or (key == "MALLOC_TRIM_THRESHOLD_"
                                  and int(environ[key]) == _DASK_TRIM):
            environ[key] = value
    tunables = str(_USER_HEAP.get("GLIBC_TUNABLES") or environ.get("GLIBC_TUNABLES") or "")
    if "glibc.malloc.hugetlb" not in tunables:
        tunables = ":".join(filter(None, (tunables, _HUGE_PAGES)))
    environ["GLIBC_TUNABLES"] = tunables
    return environ


__all__ = ["connect", "starting_workers", "worker_environ"]
