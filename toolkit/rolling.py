"""Rolling and exponentially weighted statistics of fleets."""

from __future__ import annotations

import pandas as pd

import kernels

from .apply import apply_kernel
from .arguments import count_or_duration, kernel_arguments
from .errors import ArgumentError
from .model import TIME

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


def ewm(obj, stat: str = "mean", *, com=None, span=None, halflife=None, alpha=None,
        min_count: int = 1, adjust: bool = True, ignore_na: bool = False,
        times: bool = False, dim: str = TIME):
    """Exponentially weighted mean, var or std of every metric (pandas' semantics).

    With ``times=True``, ``halflife`` is a duration and the weight of the past
    halves every ``halflife`` of elapsed time along the time coordinate.
    Exact over any chunking along ``dim`` (the state is carried from chunk
    to chunk).

    Examples
    --------
    >>> import numpy as np, toolkit
    >>> ds = toolkit.make_fleet(n_devices=2, days=0.1).dataset
    >>> a = ewm(ds, halflife=10).temperature
    >>> b = ewm(ds.chunk(time=7), halflife=10).temperature.compute()
    >>> bool(np.array_equal(a, b, equal_nan=True))
    True
    """
    funcs = {"mean": kernels.ewm_mean, "var": kernels.ewm_var, "std": kernels.ewm_std}
    if stat not in funcs:
        raise ArgumentError(f"stat must be one of {sorted(funcs)}, got stat={stat!r}")
    options = {"min_count": min_count, "adjust": adjust, "ignore_na": ignore_na}
    if times:
        if halflife is None or com is not None or span is not None or alpha is not None:
            raise ArgumentError("times=True needs halflife as a duration, such as '1h', "
                                "and no other decay")
        return apply_kernel(obj, funcs[stat], name=f"ewm-{stat}", dim=dim, times=True,
                            halflife=pd.Timedelta(halflife).value, **options,
                            history=f"ewm(stat={stat!r}, halflife={halflife!r}, times)")
    decay = {k: v for k, v in {"com": com, "span": span, "halflife": halflife,
                               "alpha": alpha}.items() if v is not None}
    with kernel_arguments():  # check early, on the client
        kernels.ewm.resolve_alpha(**decay)
    return apply_kernel(obj, funcs[stat], name=f"ewm-{stat}", dim=dim, **decay, **options,
                        history=f"ewm(stat={stat!r}, "
                                + ", ".join(f"{k}={v!r}" for k, v in decay.items()) + ")")
