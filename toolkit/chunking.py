"""Chunk sizes for fleets: big enough that Dask's per-task cost stays small,
small enough to stream through worker memory."""

from __future__ import annotations

import xarray as xr

from kernels.parallel import cores

from .model import DEVICE, TIME, metric_names

#: default target bytes of one chunk of one metric (the guidance is 64-256 MB)
TARGET_BYTES = 128 * 2**20


def fleet_chunks(ds: xr.Dataset, target_bytes: int = TARGET_BYTES) -> dict[str, int]:
    """Chunk sizes of about ``target_bytes`` per metric chunk, whole devices first.

    Chunks hold whole time series of as many devices as fit; only when one
    device's series alone exceeds the target is time split too. Time-axis
    kernels then need no overlap between chunks at all in the common case.

    Examples
    --------
    >>> ds = xr.Dataset({"t": (("device", "time"), np.zeros((1000, 100_000)))})
    >>> fleet_chunks(ds)  # 800 kB per device: 167 devices make 128 MiB
    {'device': 167, 'time': 100000}
    >>> fleet_chunks(ds, target_bytes=2**19)  # one series is 800 kB: split time
    {'device': 1, 'time': 65536}
    """
    names = metric_names(ds) or list(ds.data_vars)
    itemsize = max((ds[n].dtype.itemsize for n in names), default=8)
    return chunk_sizes(ds.sizes[DEVICE], ds.sizes[TIME], itemsize, target_bytes)


def chunk_sizes(n_devices: int, n_times: int, itemsize: int = 8,
                target_bytes: int = TARGET_BYTES) -> dict[str, int]:
    """:func:`fleet_chunks` from the sizes alone (before any data exist).

    Examples
    --------
    >>> chunk_sizes(100, 20_160)
    {'device': 100, 'time': 20160}
    """
    row = max(1, n_times * itemsize)
    if row <= target_bytes:
        return {DEVICE: int(min(n_devices, max(1, target_bytes // row))), TIME: int(n_times)}
    return {DEVICE: 1, TIME: int(max(1, target_bytes // itemsize))}


def rechunk_fleet(ds: xr.Dataset, target_bytes: int = TARGET_BYTES) -> xr.Dataset:
    """``ds`` rechunked with :func:`fleet_chunks` (lazily, on Dask).

    Examples
    --------
    >>> ds = xr.Dataset({"t": (("device", "time"), np.zeros((10, 1000)))})
    >>> rechunk_fleet(ds, target_bytes=16_000).t.chunks
    ((2, 2, 2, 2, 2), (1000,))
    """
    return ds.chunk(fleet_chunks(ds, target_bytes))


def compute_threads() -> int:
    """The threads that will run the tasks: those of the current Dask client's
    workers, or the cores this process may run on without a client (Dask's
    local threads; :func:`kernels.parallel.cores`, which honours CPU affinity).

    Work cut into a multiple of this many tasks leaves no thread waiting
    alone for the last one.
    """
    try:
        from distributed import get_client

        return sum(get_client().nthreads().values()) or 1
    except (ImportError, ValueError):
        return cores()


__all__ = ["TARGET_BYTES", "chunk_sizes", "compute_threads", "fleet_chunks", "rechunk_fleet"]
