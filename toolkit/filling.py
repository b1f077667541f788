"""Filling gaps in fleets: forward fill and linear interpolation."""

from __future__ import annotations

import pandas as pd

import kernels

from .apply import apply_kernel
from .arguments import count_or_duration
from .errors import ArgumentError
from .model import TIME


def ffill(obj, limit: int | None = None, *, dim: str = TIME):
    """Forward-fill NaN, at most ``limit`` in a row (pandas' ``ffill``), any chunking.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> x = xr.DataArray([[1.0, np.nan, np.nan, 4.0]], dims=("device", "time"))
    >>> ffill(x.chunk(time=1), limit=1).values
    array([[ 1.,  1., nan,  4.]])
    """
    if limit is not None and (int(limit) != limit or limit < 1):
        raise ArgumentError(f"limit must be a whole number >= 1 or None, got limit={limit!r}")

    def step(values, state):
        return kernels.ffill(values, limit, state=state, return_state=True)

    return apply_kernel(obj, step, kind="scan", name="ffill", dim=dim,
                        history=f"ffill(limit={limit})")


def interpolate(obj, max_gap=None, *, dim: str = TIME):
    """Fill gaps linearly; only gaps of at most ``max_gap`` (samples, or a duration).

    With a duration (``"15min"``) the interpolation follows the time
    coordinate and a gap is filled when its valid ends are at most that far
    apart. Leading and trailing NaN stay.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> x = xr.DataArray([[1.0, np.nan, 3.0, np.nan, np.nan, 6.0]], dims=("device", "time"))
    >>> interpolate(x, max_gap=1).values
    array([[ 1.,  2.,  3., nan, nan,  6.]])
    """
    if max_gap is not None:
        max_gap = count_or_duration(max_gap, "max_gap")
    if not isinstance(max_gap, pd.Timedelta):
        gap = max_gap
        # a gap of g samples needs its two valid ends: g + 1 on either side
        halo = 0 if gap is None else gap + 1

        def func(values):
            return kernels.interpolate(values, gap)

        if gap is None and _is_chunked(obj, dim):
            raise ArgumentError("interpolate over time chunks needs max_gap (the overlap "
                                "between chunks); give one, or rechunk time to one chunk")
        return apply_kernel(obj, func, kind="window", name="interpolate", dim=dim,
                            before=halo, after=halo, history=f"interpolate(max_gap={gap})")
    span_ns = pd.Timedelta(max_gap).value

    def func_t(values, times):
        return kernels.interpolate(values, times=times, max_span=span_ns)

    # a gap is filled when its ends are at most max_gap apart (inclusive), so
    # each chunk needs the samples within max_gap on both sides; the halos
    # count strictly, hence one nanosecond more
    return apply_kernel(obj, func_t, kind="window", name="interpolate", dim=dim,
                        span=pd.Timedelta(max_gap) + pd.Timedelta(1, "ns"),
                        after_span=True,
                        history=f"interpolate(max_gap={max_gap!r})")


def _is_chunked(obj, dim):
    variables = obj.data_vars.values() if hasattr(obj, "data_vars") else [obj]
    return any(v.chunks is not None and dim in v.dims
               and len(v.chunks[v.get_axis_num(dim)]) > 1 for v in variables)
