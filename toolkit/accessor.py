"""The ``.telemetry`` accessor on xarray Datasets and DataArrays.

Thin by design: every method calls a plain function of the toolkit (usable
without the accessor), on one metric (DataArray) or on every metric of a
fleet (Dataset). Lazy on Dask, exact over any chunking.

Examples
--------
>>> import toolkit
>>> ds = toolkit.make_fleet(n_devices=2, days=0.2).dataset.chunk(time=50)
>>> smooth = ds.telemetry.rolling(window=60).mean()
>>> stuck = ds.telemetry.flags.flat_line(tolerance=0.0, suspect=5, fail=10)
>>> smooth.temperature.chunks == ds.temperature.chunks
True
"""

from __future__ import annotations

import xarray as xr

from . import anomaly, filling, quality, resample, rolling
from . import events as events_mod
from .model import TIME


class Rolling:
    """Trailing-window statistics; from ``obj.telemetry.rolling(window=...)``."""

    def __init__(self, obj, window, min_count=None, dim=TIME):
        self._obj, self._window, self._min_count, self._dim = obj, window, min_count, dim

    def _stat(self, stat, **kwargs):
        return rolling.rolling(self._obj, self._window, stat, min_count=self._min_count,
                               dim=self._dim, **kwargs)

    def sum(self):
        return self._stat("sum")

    def mean(self):
        return self._stat("mean")

    def var(self):
        return self._stat("var")

    def std(self):
        return self._stat("std")

    def min(self):
        return self._stat("min")

    def max(self):
        return self._stat("max")

    def count(self):
        return self._stat("count")

    def median(self):
        return self._stat("median")

    def quantile(self, q: float):
        return self._stat("quantile", q=q)

    def zscore(self):
        """Z-score against the window before each sample (a number of samples)."""
        return anomaly.rolling_zscore(self._obj, self._window, min_count=self._min_count,
                                      dim=self._dim)


class Ewm:
    """Exponentially weighted statistics; from ``obj.telemetry.ewm(...)``."""

    def __init__(self, obj, kwargs):
        self._obj, self._kwargs = obj, kwargs

    def mean(self):
        return rolling.ewm(self._obj, "mean", **self._kwargs)

    def var(self):
        return rolling.ewm(self._obj, "var", **self._kwargs)

    def std(self):
        return rolling.ewm(self._obj, "std", **self._kwargs)


class Flags:
    """QARTOD quality flags; ``obj.telemetry.flags``."""

    def __init__(self, obj):
        self._obj = obj

    def gross_range(self, fail_span, suspect_span=None):
        return quality.gross_range(self._obj, fail_span, suspect_span)

    def spike(self, suspect, fail):
        return quality.spike(self._obj, suspect, fail)

    def flat_line(self, tolerance, suspect, fail):
        return quality.flat_line(self._obj, tolerance, suspect, fail)

    def rate_of_change(self, threshold, per="1s"):
        return quality.rate_of_change(self._obj, threshold, per=per)


class Detect:
    """Anomaly scores; ``obj.telemetry.detect``."""

    def __init__(self, obj):
        self._obj = obj

    def zscore(self, window=60, min_count=None):
        return anomaly.rolling_zscore(self._obj, window, min_count=min_count)

    def robust_zscore(self, window=60, threshold=5.0, min_count=None):
        return anomaly.robust_zscore(self._obj, window, threshold, min_count=min_count)

    def cusum(self, target, scale, slack=0.5, limit=5.0):
        return anomaly.cusum(self._obj, target, scale, slack=slack, limit=limit)


class TelemetryAccessor:
    """Fleet analysis on xarray objects: ``ds.telemetry`` / ``da.telemetry``."""

    def __init__(self, obj):
        self._obj = obj  # cheap: nothing is computed or checked here

    def rolling(self, window, min_count=None, dim=TIME) -> Rolling:
        """Trailing window of ``window`` samples, or a duration such as ``"10min"``."""
        return Rolling(self._obj, window, min_count, dim)

    def ewm(self, **kwargs) -> Ewm:
        """Exponentially weighted: ``com``, ``span``, ``halflife`` or ``alpha``
        (pandas'), or ``halflife="1h", times=True``."""
        return Ewm(self._obj, kwargs)

    def ffill(self, limit=None):
        return filling.ffill(self._obj, limit)

    def interpolate(self, max_gap=None):
        return filling.interpolate(self._obj, max_gap)

    def regularize(self, freq, how: str = "mean"):
        """Aggregate onto a regular grid of width ``freq`` (mean, sum, count, min, max,
        first, last); a Dataset also gets ``<metric>_count``. See
        :func:`toolkit.resample.regularize`."""
        return resample.regularize(self._obj, freq, how)

    def downsample(self, n: int):
        """The ``n`` samples per series that keep its shape (LTTB), for plots. See
        :func:`toolkit.resample.downsample`."""
        return resample.downsample(self._obj, n)

    def events(self, scores=None, kind: str = "flag", min_flag: int = 3):
        """Runs of flags (>= ``min_flag``) of this flag Dataset as an events table."""
        obj = self._obj if isinstance(self._obj, xr.Dataset) else self._obj.to_dataset()
        return events_mod.flags_to_events(obj, scores, kind=kind, min_flag=min_flag)

    @property
    def flags(self) -> Flags:
        return Flags(self._obj)

    @property
    def detect(self) -> Detect:
        return Detect(self._obj)


xr.register_dataset_accessor("telemetry")(TelemetryAccessor)
xr.register_dataarray_accessor("telemetry")(TelemetryAccessor)
