"""Exponentially weighted statistics of fleets: the xarray face of :mod:`kernels.ewm`."""

from __future__ import annotations

import pandas as pd

import kernels

from ..arguments import kernel_arguments
from ..errors import ArgumentError
from ..execution.apply import apply_kernel
from ..model import TIME


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


__all__ = ["ewm"]
