"""Sensor-quality flags of fleets (QARTOD codes), any chunking along time."""

from __future__ import annotations

import numpy as np
import pandas as pd

import kernels

from .apply import apply_kernel
from .arguments import count_or_duration, kernel_arguments
from .errors import ArgumentError
from .model import FLAG_ATTRS, TIME


def _flag_attrs(test):
    return lambda da: dict(FLAG_ATTRS, long_name=f"{test} flag of "
                           f"{da.attrs.get('long_name', da.name)}", test=test)


def gross_range(obj, fail_span, suspect_span=None, *, dim: str = TIME):
    """Fail outside the sensor's range, suspect outside the expected one (int8 flags).

    Examples
    --------
    >>> import xarray as xr
    >>> x = xr.DataArray([[5.0, 45.0, 80.0]], dims=("device", "time"))
    >>> gross_range(x, (-40, 60), (0, 40)).values
    array([[1, 3, 4]], dtype=int8)
    """
    with kernel_arguments():  # checked here, on the client, not in every task
        kernels.qc.check_gross_range(fail_span, suspect_span)

    def func(values):
        return kernels.gross_range(values, fail_span, suspect_span)

    return apply_kernel(obj, func, kind="pointwise", name="gross-range", dim=dim,
                        dtype=np.int8, attrs=_flag_attrs("gross_range"),
                        history=f"gross_range({fail_span}, {suspect_span})")


def spike(obj, suspect: float, fail: float, *, dim: str = TIME):
    """Flag samples far from the mean of their two neighbours (QARTOD spike test)."""
    with kernel_arguments():
        kernels.qc.check_thresholds(suspect, fail)

    def func(values):
        return kernels.spike(values, suspect, fail)

    return apply_kernel(obj, func, kind="window", name="spike", dim=dim, before=1, after=1,
                        dtype=np.int8, attrs=_flag_attrs("spike"),
                        history=f"spike(suspect={suspect}, fail={fail})")


def flat_line(obj, tolerance: float, suspect, fail, *, dim: str = TIME):
    """Flag a stuck sensor: runs of samples within ``tolerance`` of the previous one.

    ``suspect`` and ``fail`` are numbers of samples, or durations (``"2h"``)
    measured along the time coordinate.

    Examples
    --------
    >>> import xarray as xr
    >>> x = xr.DataArray([[1.0, 2.0, 2.0, 2.0, 2.0, 3.0]], dims=("device", "time"))
    >>> flat_line(x.chunk(time=2), 0.0, 3, 4).values
    array([[1, 1, 1, 3, 4, 1]], dtype=int8)
    """
    suspect = count_or_duration(suspect, "suspect")
    fail = count_or_duration(fail, "fail")
    by_time = isinstance(suspect, pd.Timedelta)
    if by_time != isinstance(fail, pd.Timedelta):
        raise ArgumentError(f"suspect and fail must both be numbers of samples or both "
                            f"durations, got suspect={suspect!r} and fail={fail!r}")
    history = f"flat_line(tolerance={tolerance}, suspect={suspect!r}, fail={fail!r})"
    s_ns, f_ns = (suspect.value, fail.value) if by_time else (suspect, fail)
    with kernel_arguments():
        kernels.qc.check_flat_line(tolerance, s_ns, f_ns)
    if not by_time:

        def step(values, state):
            return kernels.flat_line(values, tolerance, suspect, fail, state=state,
                                     return_state=True)

        return apply_kernel(obj, step, kind="scan", name="flat-line", dim=dim,
                            dtype=np.int8, attrs=_flag_attrs("flat_line"), history=history)

    def step_t(values, state, times):
        return kernels.flat_line(values, tolerance, s_ns, f_ns, times=times, state=state,
                                 return_state=True)

    return apply_kernel(obj, step_t, kind="scan", name="flat-line", dim=dim, times=True,
                        dtype=np.int8, attrs=_flag_attrs("flat_line"), history=history)


def rate_of_change(obj, threshold: float, *, per: str = "1s", dim: str = TIME):
    """Suspect where a value changed faster than ``threshold`` per ``per`` of time."""
    unit = pd.Timedelta(per).value

    def step(values, state, times):
        return kernels.rate_of_change(values, threshold / unit, times=times, state=state,
                                      return_state=True)

    return apply_kernel(obj, step, kind="scan", name="rate-of-change", dim=dim, times=True,
                        dtype=np.int8, attrs=_flag_attrs("rate_of_change"),
                        history=f"rate_of_change({threshold} per {per})")
