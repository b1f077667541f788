"""The ``.telemetry`` accessor on xarray Datasets and DataArrays.

Thin by design: every method calls a plain function of the toolkit (usable
without the accessor), on one metric (DataArray) or on every metric of a
fleet (Dataset). Lazy on Dask, exact over any chunking. Every kernel family
is reachable from here:

==========================  ===============================================
``rolling(window)``         sum, mean, var, std, min, max, count, median,
                            quantile, zscore (:mod:`toolkit.ops.rolling`)
``ewm(...)``                mean, var, std (:func:`toolkit.ops.ewm.ewm`)
``ffill``, ``interpolate``  :mod:`toolkit.ops.fill`
``regularize``,             :mod:`toolkit.ops.binning`
``downsample``
``flags.*``                 gross_range, spike, flat_line, rate_of_change,
                            time_gaps (:mod:`toolkit.ops.qc`)
``detect.*``                zscore, robust_zscore, hampel, drift, cusum
                            (:mod:`toolkit.ops.detect`)
``events``                  :func:`toolkit.events.flags_to_events`
==========================  ===============================================

The examples use ``fleet = toolkit.make_fleet(n_devices=2, days=0.1).dataset``.

Examples
--------
>>> ds = fleet.chunk(time=50)
>>> smooth = ds.telemetry.rolling(window=60).mean()
>>> stuck = ds.telemetry.flags.flat_line(tolerance=0.0, suspect=5, fail=10)
>>> smooth.temperature.chunks == ds.temperature.chunks
True
"""

from __future__ import annotations

import xarray as xr

from . import events as events_mod
from .model import TIME
from .ops import binning, detect, fill, lttb, qc, rolling
from .ops import ewm as ewm_ops

__all__ = ["Detect", "Ewm", "Flags", "Rolling", "TelemetryAccessor"]


class Rolling:
    """Trailing-window statistics; from ``obj.telemetry.rolling(window=...)``.

    Examples
    --------
    >>> fleet.telemetry.rolling(10).std().temperature.dims
    ('device', 'time')
    """

    def __init__(self, obj, window, min_count=None, dim=TIME):
        self._obj, self._window, self._min_count, self._dim = obj, window, min_count, dim

    def _stat(self, stat, **kwargs):
        return rolling.rolling(self._obj, self._window, stat, min_count=self._min_count,
                               dim=self._dim, **kwargs)

    def sum(self):
        """Sum of the valid samples in each window.

        Examples
        --------
        >>> fleet.telemetry.rolling(3).sum().temperature.shape == fleet.temperature.shape
        True
        """
        return self._stat("sum")

    def mean(self):
        """Mean of each window (see :func:`kernels.move_mean`).

        Examples
        --------
        >>> bool(fleet.telemetry.rolling(3).mean().temperature[0, :2].isnull().all())
        True
        """
        return self._stat("mean")

    def var(self):
        """Variance of each window, ``ddof=1``.

        Examples
        --------
        >>> float(fleet.telemetry.rolling(5).var().temperature.min()) >= 0
        True
        """
        return self._stat("var")

    def std(self):
        """Standard deviation of each window, ``ddof=1``.

        Examples
        --------
        >>> float(fleet.telemetry.rolling(5).std().temperature.min()) >= 0
        True
        """
        return self._stat("std")

    def min(self):
        """Smallest valid sample of each window.

        Examples
        --------
        >>> r = fleet.telemetry.rolling(5)
        >>> low, high = r.min().temperature, r.max().temperature
        >>> bool(((low <= high) | low.isnull()).all())
        True
        """
        return self._stat("min")

    def max(self):
        """Largest valid sample of each window.

        Examples
        --------
        >>> bool((fleet.telemetry.rolling(1).max().temperature.fillna(0)
        ...       == fleet.temperature.fillna(0)).all())
        True
        """
        return self._stat("max")

    def count(self):
        """Valid samples in each window.

        Examples
        --------
        >>> int(fleet.telemetry.rolling(4).count().temperature.max()) <= 4
        True
        """
        return self._stat("count")

    def median(self):
        """Median of each window (a count of samples only).

        Examples
        --------
        >>> fleet.telemetry.rolling(5).median().temperature.dtype
        dtype('float64')
        """
        return self._stat("median")

    def quantile(self, q: float):
        """Quantile ``q`` (0 to 1) of each window (a count of samples only).

        Examples
        --------
        >>> r = fleet.telemetry.rolling(5)
        >>> bool((r.quantile(0.5).temperature.fillna(0) == r.median().temperature.fillna(0)).all())
        True
        """
        return self._stat("quantile", q=q)

    def zscore(self):
        """Z-score against the window before each sample (a number of samples).

        Examples
        --------
        >>> fleet.telemetry.rolling(30).zscore().temperature.attrs["units"]
        '1'
        """
        return detect.rolling_zscore(self._obj, self._window, min_count=self._min_count,
                                      dim=self._dim)


class Ewm:
    """Exponentially weighted statistics; from ``obj.telemetry.ewm(...)``.

    Examples
    --------
    >>> fleet.telemetry.ewm(halflife=10).mean().temperature.dims
    ('device', 'time')
    """

    def __init__(self, obj, kwargs):
        self._obj, self._kwargs = obj, kwargs

    def mean(self):
        """Exponentially weighted mean (pandas' ``ewm(...).mean()``).

        Examples
        --------
        >>> m = fleet.telemetry.ewm(span=5).mean().temperature
        >>> bool(np.isclose(m[0, 0], fleet.temperature[0, 0]))
        True
        """
        return ewm_ops.ewm(self._obj, "mean", **self._kwargs)

    def var(self):
        """Exponentially weighted variance (pandas' ``ewm(...).var()``).

        Examples
        --------
        >>> float(fleet.telemetry.ewm(alpha=0.2).var().temperature.min()) >= 0
        True
        """
        return ewm_ops.ewm(self._obj, "var", **self._kwargs)

    def std(self):
        """Exponentially weighted standard deviation.

        Examples
        --------
        >>> float(fleet.telemetry.ewm(com=3).std().temperature.min()) >= 0
        True
        """
        return ewm_ops.ewm(self._obj, "std", **self._kwargs)


class Flags:
    """QARTOD quality flags (int8: 1 pass, 2 not evaluated, 3 suspect, 4 fail,
    9 missing); ``obj.telemetry.flags``.

    Examples
    --------
    >>> fleet.telemetry.flags.gross_range((-40, 80)).temperature.dtype
    dtype('int8')
    """

    def __init__(self, obj):
        self._obj = obj

    def gross_range(self, fail_span, suspect_span=None):
        """Fail outside the sensor's range, suspect outside the expected one.

        See :func:`toolkit.ops.qc.gross_range`.

        Examples
        --------
        >>> f = fleet.telemetry.flags.gross_range((-40, 80), (0, 40)).temperature
        >>> set(np.unique(f).tolist()) <= {1, 3, 4, 9}
        True
        """
        return qc.gross_range(self._obj, fail_span, suspect_span)

    def spike(self, suspect: float, fail: float):
        """QARTOD spike test against the mean of the two neighbours.

        See :func:`toolkit.ops.qc.spike`.

        Examples
        --------
        >>> int(fleet.telemetry.flags.spike(1.0, 3.0).temperature[0, 0])
        2
        """
        return qc.spike(self._obj, suspect, fail)

    def flat_line(self, tolerance: float, suspect, fail):
        """Stuck sensor: runs within ``tolerance`` of the previous sample.

        ``suspect`` and ``fail`` are counts of samples or durations. See
        :func:`toolkit.ops.qc.flat_line`.

        Examples
        --------
        >>> f = fleet.telemetry.flags.flat_line(0.0, "30min", "1h").temperature
        >>> f.attrs["test"]
        'flat_line'
        """
        return qc.flat_line(self._obj, tolerance, suspect, fail)

    def rate_of_change(self, threshold: float, per: str = "1s"):
        """Suspect where a value changes faster than ``threshold`` per ``per``.

        See :func:`toolkit.ops.qc.rate_of_change`.

        Examples
        --------
        >>> int(fleet.telemetry.flags.rate_of_change(5.0, per="1min").temperature[0, 0])
        2
        """
        return qc.rate_of_change(self._obj, threshold, per=per)

    def time_gaps(self, max_gap):
        """Fail the valid sample that ends a gap longer than ``max_gap``.

        See :func:`toolkit.ops.qc.time_gaps`.

        Examples
        --------
        >>> g = fleet.telemetry.flags.time_gaps("10min").temperature
        >>> set(np.unique(g).tolist()) <= {1, 2, 4, 9}
        True
        """
        return qc.time_gaps(self._obj, max_gap)


class Detect:
    """Anomaly scores; ``obj.telemetry.detect``. Detectors with a score and a
    flag return both, as ``(scores, flags)``.

    Examples
    --------
    >>> scores, flags = fleet.telemetry.detect.robust_zscore(window=30)
    >>> flags.temperature.dtype
    dtype('int8')
    """

    def __init__(self, obj):
        self._obj = obj

    def zscore(self, window: int = 60, min_count: int | None = None):
        """Rolling z-score against the ``window`` samples before each.

        See :func:`toolkit.ops.detect.rolling_zscore`.

        Examples
        --------
        >>> fleet.telemetry.detect.zscore(window=30).temperature.attrs["window"]
        30
        """
        return detect.rolling_zscore(self._obj, window, min_count=min_count)

    def robust_zscore(self, window: int = 60, threshold: float = 5.0,
                      min_count: int | None = None):
        """Robust z-score (median and MAD of the window before): ``(scores, flags)``.

        See :func:`toolkit.ops.detect.robust_zscore`.

        Examples
        --------
        >>> z, f = fleet.telemetry.detect.robust_zscore(window=30, threshold=6)
        >>> z.temperature.shape == f.temperature.shape
        True
        """
        return detect.robust_zscore(self._obj, window, threshold, min_count=min_count)

    def hampel(self, half_window: int = 3, threshold: float = 3.0,
               min_count: int | None = None):
        """Hampel filter over a centred window: ``(filtered, flags)``.

        See :func:`toolkit.ops.detect.hampel`.

        Examples
        --------
        >>> filtered, flags = fleet.telemetry.detect.hampel(half_window=5)
        >>> filtered.temperature.shape == fleet.temperature.shape
        True
        """
        return detect.hampel(self._obj, half_window, threshold, min_count=min_count)

    def drift(self, window: int, max_slope: float, min_count: int | None = None):
        """Least-squares slope over the trailing window: ``(slopes, flags)``.

        See :func:`toolkit.ops.detect.drift`.

        Examples
        --------
        >>> slopes, flags = fleet.telemetry.detect.drift(window=60, max_slope=0.5)
        >>> flags.temperature.dtype
        dtype('int8')
        """
        return detect.drift(self._obj, window, max_slope, min_count=min_count)

    def cusum(self, target: float, scale: float, slack: float = 0.5, limit: float = 5.0):
        """CUSUM of a shift from ``target`` in units of ``scale``: ``(scores, flags)``.

        See :func:`toolkit.ops.detect.cusum`.

        Examples
        --------
        >>> scores, flags = fleet.telemetry.detect.cusum(target=20.0, scale=1.0)
        >>> float(scores.temperature.min()) >= 0
        True
        """
        return detect.cusum(self._obj, target, scale, slack=slack, limit=limit)

    def anomaly(self, threshold: float | None = 0.99999, *, healthy=None, quantile: float = 1.0,
                period="auto", halflife: float = 1024.0, calibration: float = 4096.0,
                warmup: int = 100, learn_for: int | None = None, min_duration: int = 1,
                merge_gap: int = 30, cooldown: int = 300):
        """The default detector and its alarms: ``(scores, flags)``.

        Scores in [0, 1] from the past alone (:func:`toolkit.ops.detect.anomaly_score`),
        and flags 4 while an alarm is raised
        (:func:`toolkit.ops.detect.anomaly_alarms`; ``healthy``: a period
        of normal operation to take each metric's threshold from;
        ``period``: the cycle of the seasonal profile, a day by default on
        regular samples at most an hour apart, see
        :func:`toolkit.ops.detect.season_samples`).

        Examples
        --------
        >>> scores, flags = fleet.telemetry.detect.anomaly()
        >>> float(scores.temperature.max()) <= 1.0, flags.temperature.dtype
        (True, dtype('int8'))
        """
        scores = detect.anomaly_score(self._obj, period=period, halflife=halflife,
                                      calibration=calibration, warmup=warmup,
                                      learn_for=learn_for)
        flags = detect.anomaly_alarms(scores, threshold, healthy=healthy, quantile=quantile,
                                      warmup=warmup, min_duration=min_duration,
                                      merge_gap=merge_gap, cooldown=cooldown)
        return scores, flags

    def peers(self, threshold: float = 5.0, *, by: str | None = None, min_count: int = 3):
        """Each device against its peers at the same time: ``(scores, flags)``.

        See :func:`toolkit.ops.detect.peer_zscore` (``by``: a device
        coordinate such as ``site``, to compare within groups).

        Examples
        --------
        >>> scores, flags = fleet.telemetry.detect.peers(min_count=2)
        >>> flags.temperature.dtype
        dtype('int8')
        """
        return detect.peer_zscore(self._obj, threshold, by=by, min_count=min_count)


class TelemetryAccessor:
    """Fleet analysis on xarray objects: ``ds.telemetry`` / ``da.telemetry``.

    Examples
    --------
    >>> fleet.telemetry.flags.spike(1.0, 3.0).temperature.dtype
    dtype('int8')
    """

    def __init__(self, obj):
        self._obj = obj  # cheap: nothing is computed or checked here

    def rolling(self, window, min_count: int | None = None, dim: str = TIME) -> Rolling:
        """Trailing window of ``window`` samples, or a duration such as ``"10min"``.

        Examples
        --------
        >>> fleet.telemetry.rolling("15min").max().temperature.dims
        ('device', 'time')
        """
        return Rolling(self._obj, window, min_count, dim)

    def ewm(self, com=None, span=None, halflife=None, alpha=None, *, min_count: int = 1,
            adjust: bool = True, ignore_na: bool = False, times: bool = False,
            dim: str = TIME) -> Ewm:
        """Exponentially weighted: ``com``, ``span``, ``halflife`` or ``alpha``
        (pandas'), or ``halflife="1h", times=True`` over elapsed time.

        See :func:`toolkit.ops.ewm.ewm`.

        Examples
        --------
        >>> fleet.telemetry.ewm(halflife="1h", times=True).mean().temperature.dims
        ('device', 'time')
        """
        return Ewm(self._obj, {"com": com, "span": span, "halflife": halflife,
                               "alpha": alpha, "min_count": min_count, "adjust": adjust,
                               "ignore_na": ignore_na, "times": times, "dim": dim})

    def ffill(self, limit: int | None = None):
        """Forward-fill NaN, at most ``limit`` in a row. See :func:`toolkit.ops.fill.ffill`.

        Examples
        --------
        >>> int(fleet.telemetry.ffill().temperature.isnull().sum()) <= int(
        ...     fleet.temperature.isnull().sum())
        True
        """
        return fill.ffill(self._obj, limit)

    def interpolate(self, max_gap=None):
        """Fill gaps linearly, up to ``max_gap`` (samples or a duration).

        See :func:`toolkit.ops.fill.interpolate`.

        Examples
        --------
        >>> filled = fleet.telemetry.interpolate(max_gap="10min").temperature
        >>> int(filled.isnull().sum()) <= int(fleet.temperature.isnull().sum())
        True
        """
        return fill.interpolate(self._obj, max_gap)

    def regularize(self, freq, how: str = "mean"):
        """Aggregate onto a regular grid of width ``freq`` (mean, sum, count, min, max,
        first, last); a Dataset also gets ``<metric>_count``. See
        :func:`toolkit.ops.binning.regularize`.

        Examples
        --------
        >>> fleet.telemetry.regularize("1h").temperature_count.dtype
        dtype('int32')
        """
        return binning.regularize(self._obj, freq, how)

    def downsample(self, n: int):
        """The ``n`` samples per series that keep its shape (LTTB), for plots. See
        :func:`toolkit.ops.lttb.downsample`.

        Examples
        --------
        >>> fleet.telemetry.downsample(20).sizes["sample"]
        20
        """
        return lttb.downsample(self._obj, n)

    def events(self, scores=None, kind: str = "flag", min_flag: int = 3):
        """Runs of flags (>= ``min_flag``) of this flag Dataset as an events table.

        Examples
        --------
        >>> flags = fleet.telemetry.flags.gross_range((-40, 80), (0, 22))
        >>> list(flags.telemetry.events().columns)
        ['device', 'metric', 'start', 'end', 'kind', 'score']
        """
        obj = self._obj if isinstance(self._obj, xr.Dataset) else self._obj.to_dataset()
        return events_mod.flags_to_events(obj, scores, kind=kind, min_flag=min_flag)

    @property
    def flags(self) -> Flags:
        """QARTOD quality flags: :class:`Flags`."""
        return Flags(self._obj)

    @property
    def detect(self) -> Detect:
        """Anomaly detectors: :class:`Detect`."""
        return Detect(self._obj)

    @property
    def plot(self):
        """Plots (matplotlib): ``.series(device, events=..., flags=...)`` and
        ``.coverage()``; see :mod:`toolkit.plots`."""
        from .plots import Plot

        return Plot(self._obj)


xr.register_dataset_accessor("telemetry")(TelemetryAccessor)
xr.register_dataarray_accessor("telemetry")(TelemetryAccessor)
