"""Trailing-window statistics of fleets: the xarray face of :mod:`kernels.rolling`
(sum, mean, var, std, min, max, count), :mod:`kernels.quantile` (median,
quantile) and :mod:`kernels.timewindow` (windows over a span of time)."""

from __future__ import annotations

import pandas as pd

import kernels

from ..arguments import count_or_duration
from ..errors import ArgumentError
from ..execution.apply import apply_kernel
from ..model import TIME

COUNT_STATS = ("sum", "mean", "var", "std", "min", "max", "count", "median")
TIME_STATS = ("sum", "mean", "var", "std", "min", "max", "count")


def rolling(obj, window, stat: str = "mean", *, min_count: int | None = None,
            q: float | None = None, dim: str = TIME):
    """A trailing-window statistic of every metric.

    Parameters
    ----------
    obj : xarray.Dataset or xarray.DataArray
        A fleet, numpy- or Dask-backed (any chunking along ``dim``).
    window : int or str or timedelta
        A number of samples, or a duration (``"10min"``) over the time
        coordinate, for irregular samples.
    stat : str
        sum, mean, var, std, min, max, count, median, or quantile (with ``q``).
    min_count : int, optional
        Fewest valid samples for a result (default: the window for a count,
        1 for a duration).
    q : float, optional
        The quantile, with ``stat="quantile"``.
    dim : str
        The time dimension.

    Examples
    --------
    >>> import toolkit
    >>> ds = toolkit.make_fleet(n_devices=2, days=0.1).dataset
    >>> rolling(ds, 10, "std").temperature.dims
    ('device', 'time')
    >>> rolling(ds.chunk(time=17), "15min", "max").temperature.chunks[1][:2]
    (17, 17)
    """
    window = count_or_duration(window, "window")
    name = f"rolling-{stat}"
    if isinstance(window, pd.Timedelta):
        if stat not in TIME_STATS:
            raise ArgumentError(f"over a duration, stat must be one of {TIME_STATS}, "
                                f"got stat={stat!r}")
        return apply_kernel(obj, kernels.time_rolling, name=name, dim=dim, times=True,
                            span=window.value, stat=stat,
                            min_count=1 if min_count is None else min_count,
                            history=f"rolling(window={str(window)!r}, stat={stat!r})")
    args = {"window": window} if stat == "count" else {"window": window, "min_count": min_count}
    if stat == "quantile":
        if q is None:
            raise ArgumentError("stat='quantile' needs q")
        args["q"] = q
    elif stat not in COUNT_STATS:
        raise ArgumentError(f"stat must be one of {COUNT_STATS + ('quantile',)}, "
                            f"got stat={stat!r}")
    return apply_kernel(obj, getattr(kernels, f"move_{stat}"), name=name, dim=dim, **args,
                        history=f"rolling(window={window}, stat={stat!r}, "
                                f"min_count={min_count})")


__all__ = ["rolling"]
