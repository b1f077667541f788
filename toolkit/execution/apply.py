"""Apply a kernel to labelled data, distributed as the kernel declares.

The one place where kernels meet xarray. Each kernel carries its
distribution (:mod:`kernels.distribution`): pointwise, window (its halo
follows from its own arguments), scan (its state is carried from chunk to
chunk) or reduce. :func:`apply_kernel` reads that declaration: the time
dimension goes last, a numpy-backed variable is computed at once, a
Dask-backed one stays lazy with the chunk-exact graph of
:mod:`toolkit.execution.graph`, and a Dataset applies the kernel to each metric
(float variable along time) and records history. A kernel with several
outputs (a score and a flag; a filtered series and a flag) returns all of
them, as a tuple in the kernel's order.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr

from kernels.distribution import Pointwise, Scan, Window

from ..errors import ArgumentError, DataModelError
from ..model import TIME, check_fleet, metric_names, with_history
from .graph import map_scan, map_window, time_halo, time_halo_after


def apply_kernel(
    obj: xr.Dataset | xr.DataArray,
    kernel: Callable,
    *,
    name: str,
    dim: str = TIME,
    times: bool = False,
    attrs: Callable[[xr.DataArray, str], dict] | None = None,
    history: str | None = None,
    **args,
):
    """Apply ``kernel`` along ``dim`` of every metric, lazily when the data are Dask.

    Parameters
    ----------
    obj : xarray.Dataset or xarray.DataArray
        A fleet or one metric.
    kernel : callable
        A function of :mod:`kernels` with a ``distribution`` declaration,
        called as ``kernel(values, **args)`` on numpy blocks with ``dim``
        last (plus ``times=``, and ``state=``/``return_state=`` for scans).
    name : str
        Operation name (Dask task names on the dashboard, errors).
    dim : str
        The time dimension.
    times : bool
        Pass the time coordinate (int64 ns) as ``times=``: for kernels that
        follow elapsed time. A window kernel then takes its halo from the
        duration argument its declaration names.
    attrs : callable, optional
        ``attrs(input_variable, output_name)``: the attributes of a result
        variable (default: the input's).
    history : str, optional
        Line appended to a Dataset's history (default ``name``).
    **args
        The kernel's arguments.

    Returns
    -------
    Same type as ``obj``, or a tuple of them (one per output) for a kernel
    with several outputs.

    Examples
    --------
    >>> import kernels
    >>> x = xr.DataArray([[1.0, 2.0, 3.0, 4.0]], dims=("device", "time")).chunk(time=1)
    >>> apply_kernel(x, kernels.move_sum, name="rolling-sum", window=2).values
    array([[nan,  3.,  5.,  7.]])
    """
    if isinstance(obj, xr.Dataset):
        check_fleet(obj, dim)
        results = {m: apply_kernel(obj[m], kernel, name=name, dim=dim, times=times,
                                   attrs=attrs, **args)
                   for m in metric_names(obj, dim)}
        outputs = kernel.distribution.outputs
        datasets = tuple(
            with_history(xr.Dataset({m: r[k] if len(outputs) > 1 else r
                                     for m, r in results.items()}, attrs=obj.attrs),
                         history or name)
            for k in range(len(outputs)))
        return datasets if len(outputs) > 1 else datasets[0]
    if dim not in obj.dims:
        raise DataModelError(f"{obj.name!r} has no dimension {dim!r} (its dims: {obj.dims})")
    da = obj.transpose(..., dim)
    dist = kernel.distribution
    t = _time_ns(da[dim].values) if times else None
    if hasattr(da.data, "dask"):
        result = _lazy(da.data, kernel, dist, name, args, t, _dtypes(dist, da.dtype))
    else:
        result = _eager(np.asarray(da.data), kernel, dist, args, t)
    results = result if isinstance(result, tuple) else (result,)
    outs = []
    for (output, _), data in zip(dist.outputs, results, strict=True):
        out = da.copy(data=data)
        out.attrs = attrs(da, output) if attrs is not None else dict(da.attrs)
        outs.append(out.transpose(*obj.dims))
    return tuple(outs) if len(outs) > 1 else outs[0]


def _time_ns(t: np.ndarray) -> np.ndarray:
    t = np.asarray(t)
    return t.astype("datetime64[ns]").view(np.int64) \
        if np.issubdtype(t.dtype, np.datetime64) else t.astype(np.int64)


def _dtypes(dist, dtype) -> tuple:
    """The dtype of each output: 'same' is the float dtype the kernel computes in."""
    dtype = np.dtype(dtype)
    same = np.dtype(np.float32) if dtype.kind == "f" and dtype.itemsize <= 4 \
        else np.dtype(np.float64)
    return tuple(same if dt == "same" else np.dtype(dt) for _, dt in dist.outputs)


def _eager(arr, kernel, dist, args, t):
    extra = {} if t is None else {"times": t}
    if isinstance(dist, (Pointwise, Window, Scan)):
        return kernel(arr, **args, **extra)
    raise ArgumentError(f"{kernel.__name__} needs whole series (a reduce); it is not "
                        "applied sample by sample")


def _lazy(values, kernel, dist, name, args, t, dtypes):
    dtype = dtypes if len(dtypes) > 1 else dtypes[0]
    task_name = name.replace("_", "-")
    if isinstance(dist, Scan):
        n = len(dtypes)

        def step(block, state, times=None):
            extra = {} if times is None else {"times": times}
            result = kernel(block, **args, **extra, state=state, return_state=True)
            return (result[:-1] if n > 1 else result[0]), result[-1]

        return map_scan(values, step, name=task_name, dtype=dtype, times=t)
    if isinstance(dist, Pointwise):
        return map_window(values, _Call(kernel, args), name=task_name, dtype=dtype)
    if not isinstance(dist, Window):
        raise ArgumentError(f"{kernel.__name__} needs whole series (a reduce); it is not "
                            "applied chunk by chunk")
    if t is not None and dist.span is not None:
        span_ns, ahead = dist.span_of(args)
        sizes = values.chunks[-1]
        before = time_halo(t, sizes, span_ns)
        after = time_halo_after(t, sizes, span_ns) if ahead else 0
        return map_window(values, _Call(kernel, args, with_times=True), before=before,
                          after=after, name=task_name, dtype=dtype, times=t)
    before, after = dist.halo(args)
    if None in (before, after):
        if len(values.chunks[-1]) > 1:
            needed = dist.before if before is None else dist.after
            raise ArgumentError(f"{name} over time chunks needs {needed} (the overlap "
                                "between chunks); give one, or rechunk time to one chunk")
        before, after = before or 0, after or 0
    return map_window(values, _Call(kernel, args, with_times=t is not None), before=before,
                      after=after, name=task_name, dtype=dtype, times=t)


class _Call:
    """``kernel(segment, **args)`` as a picklable task function."""

    def __init__(self, kernel, args, with_times=False):
        self.kernel, self.args, self.with_times = kernel, args, with_times

    def __dask_tokenize__(self):  # the same call, the same task keys
        return (self.kernel.__module__, self.kernel.__name__, repr(sorted(self.args.items())),
                self.with_times)

    def __call__(self, segment, times=None):
        if self.with_times:
            return self.kernel(segment, **self.args, times=times)
        return self.kernel(segment, **self.args)


__all__ = ["apply_kernel"]
