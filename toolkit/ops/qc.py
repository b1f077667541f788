"""Sensor-quality flags of fleets (QARTOD codes), any chunking along time.

Each function hands a kernel of :mod:`kernels.qc` to
:func:`toolkit.execution.apply.apply_kernel`, which distributes it as the kernel
declares (pointwise, a window of neighbours, or a scan with its state).
"""

from __future__ import annotations

import pandas as pd

import kernels

from ..arguments import count_or_duration, kernel_arguments
from ..errors import ArgumentError
from ..execution.apply import apply_kernel
from ..model import FLAG_ATTRS, TIME


def _flag_attrs(test):
    return lambda da, output: dict(FLAG_ATTRS, long_name=f"{test} flag of "
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
    return apply_kernel(obj, kernels.gross_range, name="gross-range", dim=dim,
                        fail_span=fail_span, suspect_span=suspect_span,
                        attrs=_flag_attrs("gross_range"),
                        history=f"gross_range({fail_span}, {suspect_span})")


def spike(obj, suspect: float, fail: float, *, dim: str = TIME):
    """Flag samples far from the mean of their two neighbours (QARTOD spike test).

    Examples
    --------
    >>> import xarray as xr
    >>> x = xr.DataArray([[1.0, 1.0, 9.0, 1.0, 1.0]], dims=("device", "time"))
    >>> spike(x.chunk(time=2), suspect=2.0, fail=6.0).values
    array([[2, 3, 4, 3, 2]], dtype=int8)
    """
    with kernel_arguments():
        kernels.qc.check_thresholds(suspect, fail)
    return apply_kernel(obj, kernels.spike, name="spike", dim=dim, suspect=suspect, fail=fail,
                        attrs=_flag_attrs("spike"),
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
    if by_time:
        suspect, fail = suspect.value, fail.value
    with kernel_arguments():
        kernels.qc.check_flat_line(tolerance, suspect, fail)
    return apply_kernel(obj, kernels.flat_line, name="flat-line", dim=dim, times=by_time,
                        tolerance=tolerance, suspect=suspect, fail=fail,
                        attrs=_flag_attrs("flat_line"),
                        history=f"flat_line(tolerance={tolerance}, suspect={suspect!r}, "
                                f"fail={fail!r})")


def rate_of_change(obj, threshold: float, *, per: str = "1s", dim: str = TIME):
    """Suspect where a value changed faster than ``threshold`` per ``per`` of time.

    Examples
    --------
    >>> import xarray as xr, pandas as pd
    >>> x = xr.DataArray([[1.0, 1.1, 5.0, 5.1]], dims=("device", "time"),
    ...                  coords={"time": pd.date_range("2026", periods=4, freq="1min")})
    >>> rate_of_change(x.chunk(time=2), 1.0, per="1min").values
    array([[2, 1, 3, 1]], dtype=int8)
    """
    unit = pd.Timedelta(per).value
    return apply_kernel(obj, kernels.rate_of_change, name="rate-of-change", dim=dim,
                        times=True, threshold=threshold / unit,
                        attrs=_flag_attrs("rate_of_change"),
                        history=f"rate_of_change({threshold} per {per})")


def time_gaps(obj, max_gap, *, dim: str = TIME):
    """Fail (4) the valid sample that ends a gap longer than ``max_gap`` in its series.

    A gap is the time since the previous valid sample of the same device and
    metric (missing samples, NaN, do not end it; they are flagged 9). The
    first valid sample is 2 (not evaluated). Exact over any chunking (a
    scan carrying the time of the last valid sample).

    Parameters
    ----------
    max_gap : str or timedelta
        The longest normal step between valid samples, such as ``"10min"``.

    Examples
    --------
    >>> import xarray as xr, numpy as np, pandas as pd
    >>> x = xr.DataArray([[1.0, np.nan, np.nan, np.nan, 2.0, 3.0]], dims=("device", "time"),
    ...                  coords={"time": pd.date_range("2026", periods=6, freq="1min")})
    >>> time_gaps(x.chunk(time=2), "2min").values
    array([[2, 9, 9, 9, 4, 1]], dtype=int8)
    """
    span = count_or_duration(max_gap, "max_gap")
    if not isinstance(span, pd.Timedelta):
        raise ArgumentError(f"max_gap must be a duration such as '10min', got "
                            f"max_gap={max_gap!r}")
    return apply_kernel(obj, kernels.sample_gaps, name="time-gaps", dim=dim, times=True,
                        max_gap=span.value, attrs=_flag_attrs("time_gaps"),
                        history=f"time_gaps(max_gap={str(span)!r})")


__all__ = ["flat_line", "gross_range", "rate_of_change", "spike", "time_gaps"]
