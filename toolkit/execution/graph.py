"""Run kernels over Dask arrays chunked along time, with the one-chunk result.

Each kernel declares how it is distributed over chunks of the time axis
(see ``docs/kernels.md``); this module turns that into a Dask graph:

- :func:`map_window` -- a block is computed from itself plus ``before``
  samples from the blocks preceding it (and ``after`` from those following),
  however many blocks that takes, so chunks shorter than the window work;
- :func:`map_scan` -- blocks run in order along time, each handing its state
  to the next; series in different chunks along the other axes run in
  parallel;
- pointwise kernels need neither: ``dask.array.map_blocks`` does.

Tasks are named after the operation, and the graph has a fixed number of
tasks per chunk, however many samples there are.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from ..errors import ArgumentError


def _neighbours(sizes: Sequence[int], j: int, need: int, step: int) -> list[int]:
    """Indices of the blocks next to block j (step -1 before, +1 after) that
    together hold at least ``need`` samples (fewer at the array's ends)."""
    picked, have, k = [], 0, j + step
    while have < need and 0 <= k < len(sizes):
        picked.append(k)
        have += sizes[k]
        k += step
    return picked


def _take(x, axis, start, stop):
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, stop)
    return x[tuple(index)]


def map_window(
    arr: da.Array,
    func: Callable,
    *,
    before: int | Sequence[int] = 0,
    after: int | Sequence[int] = 0,
    name: str,
    axis: int = -1,
    dtype=None,
    times: np.ndarray | None = None,
) -> da.Array | tuple[da.Array, ...]:
    """Apply a window kernel block by block with the samples it needs around each block.

    Parameters
    ----------
    arr : dask.array.Array
        Input, chunked in any way along ``axis`` (the time axis).
    func : callable
        ``func(segment)`` (or ``func(segment, times)`` with ``times``)
        returns an array of the segment's shape along ``axis``: the kernel.
    before, after : int or sequence of int
        Samples needed before (after) each block: one number for all blocks,
        or one per block along ``axis`` (for windows given as a time span).
    name : str
        Operation name, shown on the dashboard (``rolling-mean``...).
    axis : int
        The time axis.
    dtype : numpy dtype or tuple of them, optional
        Output dtype; default that of ``arr``. A tuple when ``func`` returns
        a tuple of outputs: one array is returned per output.
    times : numpy.ndarray, optional
        Sample times along ``axis`` (in memory); passed to ``func`` sliced to
        each segment.

    Returns
    -------
    dask.array.Array, or a tuple of them
        Same shape and chunks as ``arr``.

    Examples
    --------
    >>> import kernels
    >>> x = da.from_array(np.arange(10.0), chunks=3)
    >>> y = map_window(x, lambda s: kernels.move_sum(s, 4, 1), before=3, name="rolling-sum")
    >>> y.compute()
    array([ 0.,  1.,  3.,  6., 10., 14., 18., 22., 26., 30.])
    """
    axis = axis % arr.ndim
    sizes = arr.chunks[axis]
    n = len(sizes)
    before = [int(before)] * n if np.ndim(before) == 0 else [int(b) for b in before]
    after = [int(after)] * n if np.ndim(after) == 0 else [int(a) for a in after]
    if len(before) != n or len(after) != n or min(before + after, default=0) < 0:
        raise ArgumentError(f"before/after must be >= 0, one number or one per block ({n})")
    out_name = f"{name}-{tokenize(arr, func, before, after, axis, times, name)}"
    dsk = {}
    deps = [arr]
    t_arr = None
    if times is not None:
        t_arr = _times_array(times, arr, axis, name)
        deps.append(t_arr)
    for index in np.ndindex(*arr.numblocks):
        j = index[axis]
        prev = _neighbours(sizes, j, before[j], -1)[::-1]
        nxt = _neighbours(sizes, j, after[j], +1)
        order = prev + [j] + nxt
        have_before = sum(sizes[k] for k in prev)
        have_after = sum(sizes[k] for k in nxt)
        trim_before = max(0, have_before - before[j])
        trim_after = max(0, have_after - after[j])
        keys = [(arr.name,) + index[:axis] + (k,) + index[axis + 1:] for k in order]
        own = sizes[j]
        kept_after = have_after - trim_after
        block_fn = _WindowTask(func, axis, trim_before, trim_after, own, kept_after,
                               len(order), times is not None)
        args = keys + ([(t_arr.name, k) for k in order] if t_arr is not None else [])
        dsk[(out_name,) + index] = (block_fn,) + tuple(args)
    return _as_arrays(dsk, name, out_name, deps, arr, dtype)


class _WindowTask:
    """One block of :func:`map_window` (a class so the task pickles small)."""

    def __init__(self, func, axis, trim_before, trim_after, own, kept_after, n_blocks,
                 with_times):
        self.func = func
        self.axis = axis
        self.trim_before = trim_before
        self.trim_after = trim_after
        self.own = own
        self.kept_after = kept_after
        self.n_blocks = n_blocks
        self.with_times = with_times

    def __call__(self, *parts):
        blocks = parts[: self.n_blocks]
        joined = np.concatenate(blocks, axis=self.axis) if len(blocks) > 1 else blocks[0]
        stop = joined.shape[self.axis] - self.trim_after
        segment = _take(joined, self.axis, self.trim_before, stop)
        if self.with_times:
            times = parts[self.n_blocks:]
            t = np.concatenate(times) if len(times) > 1 else times[0]
            result = self.func(segment, t[self.trim_before: stop])
        else:
            result = self.func(segment)
        end = segment.shape[self.axis] - self.kept_after
        if isinstance(result, tuple):
            return tuple(_take(r, self.axis, end - self.own, end) for r in result)
        return _take(result, self.axis, end - self.own, end)


def map_scan(
    arr: da.Array,
    step: Callable,
    *,
    name: str,
    axis: int = -1,
    dtype=None,
    times: np.ndarray | None = None,
) -> da.Array | tuple[da.Array, ...]:
    """Apply a scan kernel block after block along ``axis``, carrying its state.

    Parameters
    ----------
    arr : dask.array.Array
        Input, chunked in any way.
    step : callable
        ``step(block, state) -> (result, state)``, or ``step(block, state,
        times)`` with ``times``; ``state`` is None for the first block of
        each series. The result has the block's shape (a tuple of such
        results for several outputs, with ``dtype`` a tuple).
    name : str
        Operation name shown on the dashboard.
    axis : int
        The time axis.
    dtype : numpy dtype or tuple of them, optional
        Output dtype(s); default that of ``arr``.
    times : numpy.ndarray, optional
        Sample times along ``axis`` (in memory); each step gets its block's.

    Examples
    --------
    >>> import kernels
    >>> x = da.from_array(np.array([1.0, np.nan, np.nan, 4.0, np.nan]), chunks=2)
    >>> def step(block, state):
    ...     return kernels.ffill(block, state=state, return_state=True)
    >>> map_scan(x, step, name="ffill").compute()
    array([1., 1., 1., 4., 4.])
    """
    axis = axis % arr.ndim
    token = tokenize(arr, step, axis, name, times)
    carry = f"{name}-carry-{token}"
    state = f"{name}-state-{token}"
    out_name = f"{name}-{token}"
    dsk = {}
    deps = [arr]
    t_arr = None
    if times is not None:
        t_arr = _times_array(times, arr, axis, name)
        deps.append(t_arr)
    for index in np.ndindex(*arr.numblocks):
        j = index[axis]
        key = (arr.name,) + index
        previous = (state,) + index[:axis] + (j - 1,) + index[axis + 1:] if j else None
        if t_arr is None:
            dsk[(carry,) + index] = (_scan_block, step, key, previous)
        else:
            dsk[(carry,) + index] = (step, key, previous, (t_arr.name, j))
        # the result and the state get keys of their own: the next block
        # fetches only the (small) state, wherever it runs
        dsk[(out_name,) + index] = (operator.getitem, (carry,) + index, 0)
        dsk[(state,) + index] = (operator.getitem, (carry,) + index, 1)
    return _as_arrays(dsk, name, out_name, deps, arr, dtype)


def _as_arrays(dsk, name, out_name, deps, like, dtype) -> da.Array | tuple[da.Array, ...]:
    """One array, or a tuple of arrays when ``dtype`` is a tuple: the tasks
    under ``out_name`` then hold tuples, and each output gets tasks of its
    own that pick it out (named ``<name>-<k>``)."""
    if not isinstance(dtype, tuple):
        return _as_array(dsk, out_name, deps, like, dtype)
    token = out_name[len(name) + 1:]
    outputs = []
    for k, dt in enumerate(dtype):
        part = f"{name}-{k}-{token}"
        layer = dict(dsk)
        for index in np.ndindex(*like.numblocks):
            layer[(part,) + index] = (operator.getitem, (out_name,) + index, k)
        outputs.append(_as_array(layer, part, deps, like, dt))
    return tuple(outputs)


def _as_array(dsk, out_name, deps, like, dtype) -> da.Array:
    """The graph ``dsk`` as a Dask array with the shape and chunks of ``like``."""
    graph = HighLevelGraph.from_collections(out_name, dsk, dependencies=deps)
    dtype = like.dtype if dtype is None else np.dtype(dtype)
    return da.Array(graph, out_name, like.chunks, dtype=dtype,
                    meta=np.empty((0,) * like.ndim, dtype=dtype))


def _times_array(times, arr, axis, name) -> da.Array:
    """The in-memory times as a Dask array chunked like ``arr`` along ``axis``."""
    times = np.asarray(times)
    if times.shape != (arr.shape[axis],):
        raise ArgumentError(f"times must have {arr.shape[axis]} samples, got {times.shape}")
    return da.from_array(times, chunks=(arr.chunks[axis],),
                         name=f"{name}-times-{tokenize(times, arr.chunks[axis])}")


def _scan_block(step, block, state):
    return step(block, state)


def time_halo(times: np.ndarray, sizes: Sequence[int], span) -> list[int]:
    """Samples each block needs before it for windows of ``span`` in time.

    For the block starting at sample ``s``: the samples ``j < s`` with
    ``times[j] > times[s] - span`` (sorted ``times``).

    Examples
    --------
    >>> time_halo(np.array([0, 1, 2, 10, 11, 12]), [2, 2, 2], 3)
    [0, 2, 1]
    """
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
    first = np.searchsorted(times, times[starts] - span, side="right")
    return [int(s - f) for s, f in zip(starts, first, strict=True)]


def time_halo_after(times: np.ndarray, sizes: Sequence[int], span) -> list[int]:
    """Samples each block needs after it: those within ``span`` after its last sample.

    Examples
    --------
    >>> time_halo_after(np.array([0, 1, 2, 10, 11, 12]), [2, 2, 2], 3)
    [1, 2, 0]
    """
    ends = np.cumsum(sizes).astype(int)
    last = np.searchsorted(times, times[ends - 1] + span, side="left")
    return [int(stop - end) for end, stop in zip(ends, last, strict=True)]


__all__ = ["map_scan", "map_window", "time_halo", "time_halo_after"]
