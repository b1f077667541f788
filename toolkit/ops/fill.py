"""Filling gaps in fleets: forward fill and linear interpolation."""

from __future__ import annotations

import pandas as pd

import kernels

from ..arguments import count, count_or_duration
from ..execution.apply import apply_kernel
from ..model import TIME


def ffill(obj, limit: int | None = None, *, dim: str = TIME):
    """Forward-fill NaN, at most ``limit`` in a row (pandas' ``ffill``), any chunking.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> x = xr.DataArray([[1.0, np.nan, np.nan, 4.0]], dims=("device", "time"))
    >>> ffill(x.chunk(time=1), limit=1).values
    array([[ 1.,  1., nan,  4.]])
    """
    limit = None if limit is None else count(limit, "limit")
    return apply_kernel(obj, kernels.ffill, name="ffill", dim=dim, limit=limit,
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
    gap = None if max_gap is None else count_or_duration(max_gap, "max_gap")
    if isinstance(gap, pd.Timedelta):
        return apply_kernel(obj, kernels.interpolate, name="interpolate", dim=dim, times=True,
                            max_span=gap.value, history=f"interpolate(max_gap={str(gap)!r})")
    # without max_gap every gap is filled: the kernel then needs whole series
    # (apply_kernel says so for input chunked along time)
    return apply_kernel(obj, kernels.interpolate, name="interpolate", dim=dim, max_gap=gap,
                        history=f"interpolate(max_gap={gap})")


__all__ = ["ffill", "interpolate"]
