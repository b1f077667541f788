"""Regularising onto a time grid: the xarray face of :mod:`kernels.binning`.

:func:`regularize` aggregates every metric into bins of a fixed width and
keeps, per metric, the count of valid samples in each bin, so coverage is
never hidden. On Dask it is a **reduce** that needs no communication between
chunks: the time chunks are first moved to bin edges (a sample's bin is then
always in its own chunk), and each chunk is binned on its own.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize

import kernels

from ..errors import ArgumentError, DataModelError
from ..model import HOWS, TIME, count_attrs, count_name, metric_names, with_history


def _grid(times: np.ndarray, freq) -> tuple[np.int64, np.int64, int]:
    """Start (ns), step (ns) and number of bins covering ``times``."""
    try:
        step = pd.Timedelta(freq)
    except (TypeError, ValueError) as err:
        raise ArgumentError(f"freq must be a duration such as '1min', got freq={freq!r}") from err
    if step <= pd.Timedelta(0):
        raise ArgumentError(f"freq must be a positive duration, got freq={freq!r}")
    if times.size == 0:
        return np.int64(0), np.int64(step.value), 0
    if np.isnat(times).any():
        raise DataModelError("the time coordinate has missing times (NaT); drop or fix them "
                             "before regularising")
    t = times.astype("datetime64[ns]").view(np.int64)
    if (np.diff(t) < 0).any():
        raise DataModelError("the time coordinate is not sorted; use ds.sortby('time') "
                             "before regularising")
    s = np.int64(step.value)
    start = (t[0] // s) * s
    return start, s, int((t[-1] - start) // s) + 1


def _bin_aligned_chunks(t: np.ndarray, sizes, start, step) -> tuple[tuple[int, ...], list[int]]:
    """Time chunks moved back to the first sample of the bin they start in.

    Returns the new chunk sizes and the first bin of each new chunk.
    """
    bounds = np.cumsum((0,) + tuple(sizes))
    bins = (t - start) // step
    cut = {0, len(t)}
    for b in bounds[1:-1]:
        cut.add(int(np.searchsorted(bins, bins[b], side="left")))
    cut = sorted(cut)
    return tuple(int(n) for n in np.diff(cut)), [int(bins[c]) for c in cut[:-1]]


def _regular_block(block, times, *, start, step, first_bins, how, block_info=None):
    k = block_info[0]["chunk-location"][-1]
    n_bins = block_info[None]["chunk-shape"][-2]
    stat, count = kernels.bin_rows(block, times, start=start + first_bins[k] * step,
                                   step=step, n_bins=n_bins, how=how)
    return np.stack([stat, count.astype(np.float64)], axis=-1)


def _regularize_array(da: xr.DataArray, start, step, n_bins, how, dim):
    da = da.transpose(..., dim)
    t = da[dim].values.astype("datetime64[ns]").view(np.int64)
    data = da.data
    if hasattr(data, "dask"):
        sizes, first_bins = _bin_aligned_chunks(t, data.chunks[-1], start, step)
        data = data.rechunk(data.chunks[:-1] + (sizes,))
        bin_sizes = tuple(np.diff(first_bins + [n_bins]).tolist())
        import dask.array as dsa

        times = dsa.from_array(t, chunks=(sizes,), name=f"times-{tokenize(t, sizes)}")
        both = dsa.map_blocks(
            _regular_block, data, times, start=start, step=step, first_bins=first_bins,
            how=how, chunks=data.chunks[:-1] + (bin_sizes, (2,)), new_axis=data.ndim,
            dtype=np.float64, name=f"regularize-{how}-{tokenize(data, start, step, how)}",
        )
        stat, count = both[..., 0], both[..., 1].astype(np.int32)
    else:
        stat, count = kernels.bin_rows(np.asarray(data), t, start=start, step=step,
                                       n_bins=n_bins, how=how)
        count = count.astype(np.int32)
    dtype = np.int32 if how == "count" else (da.dtype if da.dtype.kind == "f" else np.float64)
    stat = count if how == "count" else stat.astype(dtype, copy=False)
    return stat, count


def regularize(obj, freq, how: str = "mean", *, dim: str = TIME):
    """Aggregate every metric onto a regular time grid of width ``freq``.

    Bin ``b`` holds the samples with ``start + b*freq <= time < start +
    (b+1)*freq``, where ``start`` is the first time floored to ``freq``; the
    new time coordinate holds the bins' left edges. NaN samples are left out.
    A bin without valid samples is NaN (0 for ``how="sum"``).

    Parameters
    ----------
    obj : xarray.Dataset or xarray.DataArray
        A fleet (or one metric) whose ``dim`` coordinate is sorted; numpy- or
        Dask-backed, any chunking.
    freq : str or timedelta
        Bin width, such as ``"1min"``.
    how : str
        mean (default), sum, count, min, max, first or last.
    dim : str
        The time dimension.

    Returns
    -------
    xarray.Dataset or xarray.DataArray
        Same type as ``obj``. A Dataset also gets, for each metric ``m``, an
        int32 variable ``m_count``: the valid samples in each bin. Variables
        without ``dim`` are kept; other variables along ``dim`` (such as
        flags) are dropped, since they cannot be averaged.

    Examples
    --------
    >>> import toolkit
    >>> ds = toolkit.make_fleet(n_devices=2, days=0.1, freq="1min").dataset
    >>> hourly = regularize(ds, "1h")
    >>> hourly.sizes["time"], int(hourly.temperature_count[0, 0])
    (3, 60)
    >>> bool(np.isclose(hourly.temperature[0, 0], ds.temperature[0, :60].mean(), rtol=1e-15))
    True
    """
    if how not in HOWS:
        raise ArgumentError(f"how must be one of {HOWS}, got how={how!r}")
    if dim not in obj.dims:
        raise DataModelError(f"no dimension {dim!r} to regularise (dims: {tuple(obj.dims)})")
    times = np.asarray(obj[dim].values)
    if not np.issubdtype(times.dtype, np.datetime64):
        raise DataModelError(f"the {dim!r} coordinate must be datetime64, got {times.dtype}")
    start, step, n_bins = _grid(times, freq)
    grid = pd.DatetimeIndex(start + step * np.arange(n_bins, dtype=np.int64)).values
    label = f"regularize(freq={str(pd.Timedelta(freq))!r}, how={how!r})"

    def one(da):
        stat, count = _regularize_array(da, start, step, n_bins, how, dim)
        dims = da.transpose(..., dim).dims
        coords = {k: v for k, v in da.coords.items() if dim not in v.dims}
        coords[dim] = grid
        attrs = dict(da.attrs)
        if how == "count":
            attrs = count_attrs(da.name)
        out = xr.DataArray(stat, dims=dims, coords=coords, name=da.name, attrs=attrs)
        cnt = xr.DataArray(count, dims=dims, coords=coords, name=count_name(da.name),
                           attrs=count_attrs(da.name))
        order = [d for d in da.dims]
        return out.transpose(*order), cnt.transpose(*order)

    if isinstance(obj, xr.DataArray):
        return one(obj)[0]
    names = metric_names(obj, dim)
    if not names:
        raise DataModelError(f"the dataset has no float variable along {dim!r} to regularise")
    variables = {}
    for name in names:
        stat, count = one(obj[name])
        variables[name] = stat
        variables[count_name(name)] = count
    kept = {k: v for k, v in obj.data_vars.items() if dim not in v.dims}
    coords = {k: v for k, v in obj.coords.items() if dim not in v.dims}
    out = xr.Dataset(variables | kept, coords=coords, attrs=obj.attrs)
    return with_history(out, label)


__all__ = ["regularize"]
