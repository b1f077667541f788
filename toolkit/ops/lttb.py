"""Downsampling for plots: the xarray face of :mod:`kernels.lttb`.

:func:`downsample` keeps, per device, the ``n`` samples that best preserve
the shape of the curve (LTTB); it needs each series whole (the kernel is a
reduce), so a Dask input is rechunked to whole series of a few devices per
task.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from dask.base import tokenize

import kernels

from ..chunking import TARGET_BYTES
from ..errors import ArgumentError, DataModelError
from ..model import TIME, metric_names, with_history

SAMPLE = "sample"


def _lttb_block(block, x, n):
    return kernels.lttb(block, n, x=x)


def _take_block(block, idx):
    flat = idx.clip(0)
    out = np.take_along_axis(block, flat, axis=-1)
    return np.where(idx >= 0, out, np.nan).astype(block.dtype, copy=False)


def _time_block(idx, t):
    out = t[idx.clip(0)]
    out[idx < 0] = np.datetime64("NaT")
    return out


def downsample(obj, n: int, *, dim: str = TIME):
    """The ``n`` samples of each series that keep its visual shape (LTTB).

    Largest-triangle-three-buckets over the time coordinate: the first and
    last valid samples, and from each of ``n - 2`` buckets the one forming
    the largest triangle with its neighbours. For plotting long series.

    Parameters
    ----------
    obj : xarray.Dataset or xarray.DataArray
        A fleet or one metric (numpy- or Dask-backed).
    n : int
        Samples to keep per series (>= 3).
    dim : str
        The time dimension.

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        Each device keeps its own samples, so ``dim`` is replaced by a
        dimension ``sample`` of length ``n``, with the chosen times in a
        (device, sample) coordinate ``time`` (a DataArray) or in a variable
        ``m_time`` next to each metric ``m`` (a Dataset). A series with fewer
        than ``n`` valid samples is padded with NaN and NaT.

    Examples
    --------
    >>> import toolkit
    >>> ds = toolkit.make_fleet(n_devices=2, days=1).dataset
    >>> small = downsample(ds.temperature, 100)
    >>> small.sizes["sample"], small.time.dims
    (100, ('device', 'sample'))
    """
    if isinstance(n, bool) or int(n) != n or n < 3:
        raise ArgumentError(f"n must be a whole number >= 3, got n={n!r}")
    n = int(n)
    if isinstance(obj, xr.Dataset):
        names = metric_names(obj, dim)
        if not names:
            raise DataModelError(f"the dataset has no float variable along {dim!r}")
        variables = {}
        for name in names:
            small = downsample(obj[name], n, dim=dim)
            variables[name] = small.drop_vars(dim)
            variables[f"{name}_time"] = small[dim].variable
        kept = {k: v for k, v in obj.data_vars.items() if dim not in v.dims}
        coords = {k: v for k, v in obj.coords.items() if dim not in v.dims}
        return with_history(xr.Dataset(variables | kept, coords=coords, attrs=obj.attrs),
                            f"downsample(n={n})")
    if dim not in obj.dims:
        raise DataModelError(f"no dimension {dim!r} to downsample (dims: {tuple(obj.dims)})")
    da = obj.transpose(..., dim)
    t = np.asarray(da[dim].values)
    x = t.astype("datetime64[ns]").view(np.int64) if np.issubdtype(t.dtype, np.datetime64) \
        else t.astype(np.int64)
    x = (x - (x[0] if x.size else 0)).astype(np.float64)
    data = da.data
    if hasattr(data, "dask"):
        import dask.array as dsa

        row = max(1, data.shape[-1] * data.dtype.itemsize)
        lead = data.chunks[:-1]
        per = max(1, TARGET_BYTES // row)
        if lead:  # whole series, as many rows per task as fit the target
            lead = lead[:-1] + (_split(data.shape[-2], per),)
        data = data.rechunk(lead + ((data.shape[-1],),))
        token = tokenize(data, n)
        # the positions and times go into the graph once, as one-chunk arrays
        # that every task reads (index "k" is contracted: the whole array)
        xs = dsa.from_array(x, chunks=(x.size,), name=f"downsample-x-{tokenize(x)}")
        ts = dsa.from_array(t, chunks=(t.size,), name=f"downsample-t-{tokenize(t)}")
        ind = "abcdefgh"[: data.ndim - 1]
        idx = dsa.blockwise(_lttb_block, ind + "s", data, ind + "k", xs, "k",
                            n=n, new_axes={"s": n}, concatenate=True, dtype=np.int64,
                            name=f"downsample-lttb-{token}")
        values = dsa.map_blocks(_take_block, data, idx, chunks=idx.chunks, dtype=data.dtype,
                                name=f"downsample-take-{token}")
        times = dsa.blockwise(_time_block, ind + "s", idx, ind + "s", ts, "k",
                              concatenate=True, dtype=t.dtype, name=f"downsample-time-{token}")
    else:
        idx = kernels.lttb(np.asarray(data), n, x=x)
        values = _take_block(np.asarray(data), idx)
        times = _time_block(idx, t)
    dims = da.dims[:-1] + (SAMPLE,)
    coords = {k: v for k, v in da.coords.items() if dim not in v.dims}
    coords[dim] = (dims, times)
    out = xr.DataArray(values, dims=dims, coords=coords, name=da.name, attrs=dict(da.attrs))
    return out


def _split(total: int, per: int) -> tuple[int, ...]:
    full, rest = divmod(total, per)
    return (per,) * full + ((rest,) if rest else ())


__all__ = ["downsample"]
