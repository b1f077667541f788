"""Numba kernels for sensor time series: numpy arrays in, numpy arrays out.

Every function works along one axis (the time axis, last by default) of an
N-d array of real numbers (computed in float32 or float64, see
:func:`kernels._wrap.as_float_array`), treats NaN as missing, and releases
the GIL while it runs. This package imports numpy and numba only.

Each public kernel declares how it is distributed over chunks of the time
axis (``kernel.distribution``; see :mod:`kernels.distribution`). Modules by
that kind:
:mod:`kernels.rolling` and :mod:`kernels.timewindow` (window),
:mod:`kernels.ewm` (scan, with state), :mod:`kernels.fill` (scan and window),
:mod:`kernels.qc` (pointwise, window and scan quality flags),
:mod:`kernels.binning` (reduce), :mod:`kernels.quantile` (window),
:mod:`kernels.detect` (detectors), :mod:`kernels.lttb` (downsampling).

Examples
--------
>>> import numpy as np
>>> import kernels
>>> kernels.move_mean(np.array([1.0, 2.0, 3.0, 4.0]), window=2)
array([nan, 1.5, 2.5, 3.5])

A call splits its series (rows) over every core this process may use, and
runs on one thread inside a Dask task (:mod:`kernels.parallel`;
``kernels.parallel.set_threads(n)`` or ``with kernels.parallel.use_threads(n):``
to choose).

Compiled kernels are cached in a per-user folder, never inside the package
(see :mod:`kernels._cache`): ``kernels.CACHE_DIR`` names it.
"""

# first: numba must know where to cache before any kernel is compiled
from ._cache import CACHE_DIR  # noqa: I001

from . import distribution, flags, parallel
from .anomaly import alarms, anomaly_score, healthy_threshold
from .binning import Binned, bin_rows, bin_samples, combine_bins
from .detect import cusum, drift, hampel, peer_zscore, robust_zscore
from .ewm import EwmState, ewm_mean, ewm_std, ewm_var
from .fill import ffill, interpolate
from .lttb import lttb
from .qc import flat_line, gross_range, rate_of_change, sample_gaps, spike, time_gaps
from .quantile import move_median, move_quantile
from .rolling import (
    move_count,
    move_max,
    move_mean,
    move_min,
    move_std,
    move_sum,
    move_var,
    move_zscore,
)
from .timewindow import time_rolling

__all__ = [
    "CACHE_DIR", "distribution", "flags", "parallel",
    "alarms", "anomaly_score", "healthy_threshold",
    "Binned", "bin_rows", "bin_samples", "combine_bins",
    "cusum", "drift", "hampel", "peer_zscore", "robust_zscore",
    "EwmState", "ewm_mean", "ewm_std", "ewm_var",
    "ffill", "interpolate",
    "lttb",
    "flat_line", "gross_range", "rate_of_change", "sample_gaps", "spike", "time_gaps",
    "move_count", "move_max", "move_mean", "move_min", "move_std", "move_sum",
    "move_var", "move_zscore", "move_median", "move_quantile",
    "time_rolling",
]
