"""The fleet data model: what every dataset in the toolkit looks like.

A fleet is an :class:`xarray.Dataset` with dimensions ``("device", "time")``
and one float variable per metric; NaN means missing. ``device`` holds string
ids, ``time`` is ``datetime64[ns]`` in UTC (stored without a time zone).
Variables carry ``units`` and ``long_name``; the dataset carries ``source``
and ``history`` (one line per step applied, oldest first).
"""

from __future__ import annotations

import datetime as _dt

import numpy as np
import xarray as xr

from kernels import binning, flags

from .errors import DataModelError

DEVICE = "device"
TIME = "time"

# QARTOD quality flag codes: defined in kernels.flags, as int8 here
FLAG_PASS = np.int8(flags.PASS)
FLAG_NOT_EVALUATED = np.int8(flags.NOT_EVALUATED)
FLAG_SUSPECT = np.int8(flags.SUSPECT)
FLAG_FAIL = np.int8(flags.FAIL)
FLAG_MISSING = np.int8(flags.MISSING)
FLAG_ATTRS = {
    "flag_values": np.array(flags.CODES, dtype=np.int8),
    "flag_meanings": " ".join(flags.MEANINGS),
    "units": "1",
}

EVENT_COLUMNS = ["device", "metric", "start", "end", "kind", "score"]

#: how samples are aggregated per bin of a regular grid (the loaders' grid
#: step and ``regularize`` alike)
HOWS = binning.ROW_STATS


def count_name(metric: str) -> str:
    """The variable that holds the valid samples per bin of ``metric``.

    Examples
    --------
    >>> count_name("temperature")
    'temperature_count'
    """
    return f"{metric}_count"


def count_attrs(metric: str) -> dict:
    """Attributes of a per-bin count variable: coverage is never hidden.

    Examples
    --------
    >>> count_attrs("rh")["long_name"]
    'valid samples of rh per bin'
    """
    return {"long_name": f"valid samples of {metric} per bin", "units": "1"}


def metric_names(ds: xr.Dataset, dim: str = TIME) -> list[str]:
    """Names of the data variables that are float series along ``dim``.

    Examples
    --------
    >>> ds = xr.Dataset({"t": (("device", "time"), np.zeros((1, 3))),
    ...                  "n": (("device", "time"), np.zeros((1, 3), int))})
    >>> metric_names(ds)
    ['t']
    """
    return [
        str(name)
        for name, var in ds.data_vars.items()
        if dim in var.dims and var.dtype.kind == "f"
    ]


def check_fleet(ds: xr.Dataset, dim: str = TIME) -> None:
    """Raise :class:`DataModelError` if ``ds`` has no float series along ``dim``.

    Examples
    --------
    >>> check_fleet(xr.Dataset())
    Traceback (most recent call last):
    ...
    toolkit.errors.DataModelError: the dataset has no float variable along 'time'; ...
    """
    if not isinstance(ds, xr.Dataset):
        raise DataModelError(
            f"expected an xarray.Dataset, got {type(ds).__name__}; wrap a "
            "DataArray with .to_dataset(name=...)"
        )
    if not metric_names(ds, dim):
        raise DataModelError(
            f"the dataset has no float variable along {dim!r}; its variables "
            f"are {dict(ds.data_vars.dtypes) or 'none'}. Metrics must be "
            f"float32/float64 with a {dim!r} dimension."
        )


def with_history(obj, line: str):
    """Return ``obj`` with ``line`` (time-stamped, UTC) appended to ``history``.

    Examples
    --------
    >>> ds = with_history(xr.Dataset(), "made by hand")
    >>> ds.attrs["history"].endswith("made by hand")
    True
    """
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    previous = obj.attrs.get("history", "")
    out = obj.copy()
    out.attrs = dict(obj.attrs)
    out.attrs["history"] = (previous + "\n" if previous else "") + f"{stamp} {line}"
    return out


__all__ = ["DEVICE", "EVENT_COLUMNS", "FLAG_ATTRS", "FLAG_FAIL", "FLAG_MISSING",
           "FLAG_NOT_EVALUATED", "FLAG_PASS", "FLAG_SUSPECT", "HOWS", "TIME", "check_fleet",
           "count_attrs", "count_name", "metric_names", "with_history"]
