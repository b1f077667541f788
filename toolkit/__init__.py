"""Analyse fleets of IoT sensors: chunked xarray datasets, Numba kernels, Dask.

Examples
--------
>>> import toolkit
>>> fleet = toolkit.make_fleet(n_devices=2, days=1)
>>> toolkit.rolling_zscore(fleet.dataset, window=60).temperature.dims
('device', 'time')
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import kernels as _kernels

if getattr(_kernels, "__file__", None) is None:  # a namespace package: no __init__.py
    raise ImportError(
        "'kernels' was found only as the folder(s) "
        f"{[str(p) for p in _kernels.__path__]}, which hold no kernels: a leftover of "
        "an earlier install (for example a __pycache__ that numba wrote there). Delete "
        "that folder and reinstall the toolkit (pip install .)")

from . import (
    accessor,  # noqa: F401  (registers ds.telemetry and da.telemetry)
    alerts,
)
from .cluster import connect
from .errors import (
    ArgumentError,
    ClusterConnectionError,
    DataModelError,
    LoadError,
    ToolkitError,
)
from .events import evaluate_events, flags_to_events
from .explain import explain_events
from .io import (
    LoadReport,
    Schema,
    feed,
    read_csv,
    read_csv_samples,
    read_http,
    read_http_samples,
    read_store,
    sync,
)
from .ops.detect import rolling_zscore, zscore_flags
from .pipeline import Pipeline, PipelineError
from .synthetic import Fleet, make_fleet

try:
    __version__ = version("iot-telemetry-toolkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "ArgumentError", "ClusterConnectionError", "DataModelError", "Fleet", "LoadError",
    "Pipeline", "PipelineError",
    "LoadReport", "Schema", "alerts", "feed", "read_csv", "read_csv_samples", "read_http",
    "read_http_samples", "read_store", "sync",
    "ToolkitError", "connect", "evaluate_events", "explain_events", "flags_to_events",
    "make_fleet",
    "rolling_zscore", "zscore_flags",
]
