"""Apply a kernel to labelled data by its distribution kind.

The one place where kernels meet xarray: the time dimension goes last, a
numpy-backed variable is computed at once, a Dask-backed one stays lazy with
the chunk-exact graph of :mod:`toolkit.chunked`, and a Dataset applies the
kernel to each metric (float variable along time) and records history.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize

from .chunked import map_scan, map_window, time_halo, time_halo_after
from .errors import DataModelError
from .model import TIME, check_fleet, metric_names, with_history

Kind = Literal["pointwise", "window", "scan"]


def apply_kernel(
    obj: xr.Dataset | xr.DataArray,
    func: Callable,
    *,
    kind: Kind,
    name: str,
    dim: str = TIME,
    before: int = 0,
    after: int = 0,
    span=None,
    after_span: bool = False,
    times: bool = False,
    dtype=None,
    attrs: Callable[[xr.DataArray], dict] | None = None,
    history: str | None = None,
):
    """Apply ``func`` along ``dim`` of every metric, lazily when the data are Dask.

    Parameters
    ----------
    obj : xarray.Dataset or xarray.DataArray
        A fleet or one metric.
    func : callable
        The kernel on a numpy array with ``dim`` last: ``func(values)`` for
        pointwise and window kernels, ``func(values, times)`` when ``span``
        is given, ``func(values, state) -> (result, state)`` for scans.
    kind : {"pointwise", "window", "scan"}
        How the kernel is distributed over chunks of ``dim``.
    name : str
        Operation name (Dask task names, history).
    dim : str
        The time dimension.
    before, after : int
        Samples a window kernel needs before and after each sample.
    span : pandas.Timedelta, optional
        For windows over a time span: ``func(values, times)`` gets the times
        (int64 ns) and each chunk gets the samples of the preceding ``span``.
    after_span : bool
        With ``span``: each chunk also gets the samples of the following
        ``span`` (for kernels that look both ways).
    times : bool
        For scans that follow elapsed time: ``func(values, state, times)``.
    dtype : numpy dtype, optional
        Result dtype (default: the input's).
    attrs : callable, optional
        Attributes of a result variable, from its input variable.
    history : str, optional
        Line appended to a Dataset's history (default ``name``).

    Returns
    -------
    Same type as ``obj``.
    """
    if isinstance(obj, xr.Dataset):
        check_fleet(obj, dim)
        out = xr.Dataset(
            {m: apply_kernel(obj[m], func, kind=kind, name=name, dim=dim, before=before,
                             after=after, span=span, after_span=after_span,
                             times=times, dtype=dtype,
                             attrs=attrs)
             for m in metric_names(obj, dim)},
            attrs=obj.attrs,
        )
        return with_history(out, history or name)
    if dim not in obj.dims:
        raise DataModelError(f"{obj.name!r} has no dimension {dim!r} (its dims: {obj.dims})")
    da = obj.transpose(..., dim)
    values = da.data
    out_dtype = np.dtype(dtype) if dtype is not None else da.dtype
    t = None
    if span is not None or times:
        t = np.asarray(da[dim].values)
        t = t.astype("datetime64[ns]").view(np.int64) \
            if np.issubdtype(t.dtype, np.datetime64) else t.astype(np.int64)
    if hasattr(values, "dask"):
        task_name = name.replace("_", "-")
        if kind == "scan":
            result = map_scan(values, func, name=task_name, dtype=out_dtype,
                              times=t if times else None)
        elif kind == "window" and span is not None:
            span_ns = pd.Timedelta(span).value
            halo = time_halo(t, values.chunks[-1], span_ns)
            ahead = time_halo_after(t, values.chunks[-1], span_ns) if after_span else 0
            result = map_window(values, func, before=halo, after=ahead, name=task_name,
                                dtype=out_dtype, times=t)
        elif kind == "window":
            result = map_window(values, func, before=before, after=after, name=task_name,
                                dtype=out_dtype)
        else:
            # map_blocks takes name as the whole key: add a token, or two
            # variables would share their keys
            result = values.map_blocks(func, dtype=out_dtype,
                                       name=f"{task_name}-{tokenize(values, func)}")
    else:
        arr = np.asarray(values)
        if kind == "scan":
            result = (func(arr, None, t) if times else func(arr, None))[0]
        elif span is not None:
            result = func(arr, t)
        else:
            result = func(arr)
    out = da.copy(data=result)
    out.attrs = attrs(da) if attrs is not None else dict(da.attrs)
    return out.transpose(*obj.dims)
