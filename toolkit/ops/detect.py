"""Anomaly scores on fleets: the xarray face of the detector kernels.

Each function hands a kernel of :mod:`kernels.detect` (or
:mod:`kernels.rolling`) to :func:`toolkit.execution.apply.apply_kernel`, which
distributes it as the kernel declares; numerical logic lives in the kernels.
Dask-backed input stays lazy, with tasks named after the operation. A
detector with a score and a flag returns both, as ``(scores, flags)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

import kernels

from ..arguments import kernel_arguments
from ..errors import ArgumentError
from ..execution.apply import apply_kernel
from ..model import (
    DEVICE,
    FLAG_ATTRS,
    FLAG_MISSING,
    FLAG_NOT_EVALUATED,
    FLAG_PASS,
    FLAG_SUSPECT,
    TIME,
    metric_names,
    with_history,
)


def rolling_zscore(
    obj: xr.Dataset | xr.DataArray,
    window: int = 60,
    *,
    min_count: int | None = None,
    dim: str = TIME,
) -> xr.Dataset | xr.DataArray:
    """Rolling z-score of every metric against the ``window`` samples before it.

    See :func:`kernels.move_zscore` for the definition. On a Dataset, every
    float variable along ``dim`` is scored; other variables are left out.

    Parameters
    ----------
    obj : xarray.Dataset or xarray.DataArray
        A fleet (see :mod:`toolkit.model`). Dask-backed input stays lazy.
    window : int
        Samples in the reference window.
    min_count : int, optional
        Fewest valid samples the reference window needs; default ``window``.
    dim : str
        The time dimension (any chunking).

    Returns
    -------
    Same type as ``obj``
        float scores, dimensionless (``units="1"``), history appended.

    Examples
    --------
    >>> da = xr.DataArray([[1.0, 2.0, 1.0, 2.0, 9.0]], dims=("device", "time"))
    >>> rolling_zscore(da, window=4).round(2).values
    array([[  nan,   nan,   nan,   nan, 12.99]])
    """
    def attrs(da, output):
        return {"units": "1", "long_name": f"rolling z-score of {_long_name(da)}",
                "window": window}

    return apply_kernel(obj, kernels.move_zscore, name="rolling-zscore", dim=dim,
                        window=window, min_count=min_count, attrs=attrs,
                        history=f"rolling_zscore(window={window}, min_count={min_count}, "
                                f"dim={dim!r})")


def zscore_flags(scores: xr.Dataset | xr.DataArray, threshold: float = 5.0,
                 values: xr.Dataset | xr.DataArray | None = None):
    """QARTOD flags from z-scores: 3 (suspect) where ``|z| > threshold``.

    1 (pass) where ``|z| <= threshold``, 2 (not evaluated) where the score is
    NaN, and 9 (missing) where ``values`` (the scored data, optional) is NaN.

    Examples
    --------
    >>> z = xr.DataArray([np.nan, 0.5, -7.0, np.nan], dims="time")
    >>> x = xr.DataArray([1.0, 1.0, 9.0, np.nan], dims="time")
    >>> zscore_flags(z, 5.0, values=x).values
    array([2, 1, 3, 9], dtype=int8)
    """
    if threshold <= 0 or not np.isfinite(threshold):
        raise ArgumentError(f"threshold must be a positive number, got {threshold!r}")
    if isinstance(scores, xr.Dataset):
        out = xr.Dataset(
            {name: zscore_flags(scores[name], threshold,
                                None if values is None else values[name])
             for name in scores.data_vars},
            attrs=scores.attrs,
        )
        return with_history(out, f"zscore_flags(threshold={threshold})")

    def block(z, x):
        flags = np.where(np.abs(z) > threshold, FLAG_SUSPECT, FLAG_PASS).astype(np.int8)
        flags[np.isnan(z)] = FLAG_NOT_EVALUATED
        flags[np.isnan(x)] = FLAG_MISSING
        return flags

    x = scores if values is None else values
    out = xr.apply_ufunc(task_named(block, "zscore_flags"), scores, x,
                         dask="parallelized",
                         output_dtypes=[np.int8])
    out.attrs = dict(FLAG_ATTRS, long_name=f"z-score flag (|z| > {threshold})",
                     threshold=threshold)
    return out.rename(scores.name)


def task_named(func, name: str):
    """Give ``func`` the name its Dask tasks show on the dashboard.

    Dask names a blockwise task after the function; the name must not contain
    a hyphen (Dask splits keys on it).
    """
    func.__name__ = func.__qualname__ = name
    return func


def _long_name(da) -> str:
    return da.attrs.get("long_name", da.name or "values")


def _detector_attrs(title: str):
    """Attributes of a detector's outputs: a dimensionless score, or QARTOD flags."""

    def attrs(da, output):
        if output == "flag":
            return dict(FLAG_ATTRS, long_name=f"{title} flag of {_long_name(da)}")
        if output == "filtered":
            return dict(da.attrs, long_name=f"{_long_name(da)}, {title}-filtered")
        units = da.attrs.get("units") if output == "slope" else "1"
        return {"long_name": f"{title} {output} of {_long_name(da)}",
                **({"units": units} if units else {})}

    return attrs


def robust_zscore(obj, window: int = 60, threshold: float = 5.0, *,
                  min_count: int | None = None, dim: str = TIME):
    """Robust z-score against the median and MAD of the ``window`` samples before each.

    See :func:`kernels.robust_zscore`. Returns both of its outputs.

    Returns
    -------
    (scores, flags)
        Same type as ``obj`` each: float scores, and int8 QARTOD flags (3
        where ``|z| > threshold``).

    Examples
    --------
    >>> x = xr.DataArray([[1.0, 1.2, 0.9, 1.1, 1.0, 9.0]], dims=("device", "time"))
    >>> z, f = robust_zscore(x.chunk(time=2), window=5)
    >>> f.values
    array([[2, 2, 2, 2, 2, 3]], dtype=int8)
    """
    return apply_kernel(obj, kernels.robust_zscore, name="robust-zscore", dim=dim,
                        window=window, threshold=threshold, min_count=min_count,
                        attrs=_detector_attrs("robust z-score"),
                        history=f"robust_zscore(window={window}, threshold={threshold})")


def hampel(obj, half_window: int = 3, threshold: float = 3.0, *,
           min_count: int | None = None, dim: str = TIME):
    """Hampel filter: outliers against the median of a centred window, replaced by it.

    See :func:`kernels.hampel`. Needs ``half_window`` samples of overlap on
    both sides of a chunk (declared by the kernel).

    Returns
    -------
    (filtered, flags)
        The series with outliers replaced, and int8 flags (3 at an outlier).

    Examples
    --------
    >>> x = xr.DataArray([[1.0, 1.1, 0.9, 8.0, 1.0, 1.2, 0.95]], dims=("device", "time"))
    >>> filtered, flags = hampel(x.chunk(time=3), half_window=2)
    >>> float(filtered[0, 3]), int(flags[0, 3])
    (1.1, 3)
    """
    return apply_kernel(obj, kernels.hampel, name="hampel", dim=dim, half_window=half_window,
                        threshold=threshold, min_count=min_count,
                        attrs=_detector_attrs("Hampel"),
                        history=f"hampel(half_window={half_window}, threshold={threshold})")


def drift(obj, window: int, max_slope: float, *, min_count: int | None = None,
          dim: str = TIME):
    """Least-squares slope per sample over the trailing ``window`` samples.

    See :func:`kernels.drift`.

    Returns
    -------
    (slopes, flags)
        Slopes in the metric's units per sample, and int8 flags (3 where
        ``|slope| > max_slope``).

    Examples
    --------
    >>> x = xr.DataArray([[1.0, 2.0, 3.0, 5.0, 7.0]], dims=("device", "time"))
    >>> slope, flags = drift(x.chunk(time=2), window=3, max_slope=1.5)
    >>> flags.values
    array([[2, 1, 1, 1, 3]], dtype=int8)
    """
    return apply_kernel(obj, kernels.drift, name="drift", dim=dim, window=window,
                        max_slope=max_slope, min_count=min_count,
                        attrs=_detector_attrs("drift"),
                        history=f"drift(window={window}, max_slope={max_slope})")


def cusum(obj, target: float, scale: float, *, slack: float = 0.5, limit: float = 5.0,
          dim: str = TIME):
    """CUSUM of a shift from ``target`` in units of ``scale``: scores and flags.

    ``target`` and ``scale`` are numbers (the same for every series). Exact
    over any chunking: the sums are carried from chunk to chunk.

    Returns
    -------
    (scores, flags)
        The larger of the two one-sided sums, and int8 flags (3 at an alarm).

    Examples
    --------
    >>> x = xr.DataArray([[0.0, 0.1, 3.0, 3.0, 3.0, 3.0]], dims=("device", "time"))
    >>> score, flags = cusum(x.chunk(time=2), target=0.0, scale=1.0)
    >>> flags.values  # the sums restart after an alarm
    array([[1, 1, 1, 1, 3, 1]], dtype=int8)
    """
    return apply_kernel(obj, kernels.cusum, name="cusum", dim=dim, target=target,
                        scale=scale, slack=slack, limit=limit,
                        attrs=_detector_attrs("CUSUM"),
                        history=f"cusum(target={target}, scale={scale}, slack={slack}, "
                                f"limit={limit})")


def cycle_samples(period, step) -> float | None:
    """The detector's seasonal cycle in samples ``step`` apart (a ``Timedelta``).

    ``"auto"`` is a day when ``step`` is an hour or less, and no profile
    otherwise (the profile is used only once two cycles have shaped it, so
    a shorter series scores as without one); a duration (``"1D"``,
    ``"7D"``, a ``Timedelta``) is that cycle; a number is samples already;
    ``None`` or ``False`` is no profile.

    Examples
    --------
    >>> cycle_samples("auto", pd.Timedelta("5min")), cycle_samples("7D", pd.Timedelta("1h"))
    (288.0, 168.0)
    >>> cycle_samples("auto", pd.Timedelta("2h")) is None, cycle_samples(96, None)
    (True, 96.0)
    """
    if period is None or period is False:
        return None
    if isinstance(period, (int, float, np.integer, np.floating)) and not isinstance(period, bool):
        if not period >= 2:
            raise ArgumentError(f"period must be at least 2 samples, got period={period!r}")
        return float(period)
    if isinstance(period, str) and period == "auto":
        return float(pd.Timedelta("1D") / step) if step <= pd.Timedelta("1h") else None
    try:
        cycle = pd.Timedelta(period)
    except (TypeError, ValueError):
        raise ArgumentError(f"period must be 'auto', a duration such as '1D', a number of "
                            f"samples or None, got period={period!r}") from None
    if cycle < 2 * step:
        raise ArgumentError(f"period={period!r} is under 2 samples of {step}")
    return float(cycle / step)


def season_samples(times, period="auto") -> float | None:
    """The ``period`` of the detector's seasonal profile in samples of ``times``
    (see :func:`cycle_samples`); a duration needs regular datetime samples, and
    ``"auto"`` gives no profile on others.

    Examples
    --------
    >>> t = pd.date_range("2026-01-01", periods=5 * 1440, freq="1min")
    >>> season_samples(t), season_samples(t, "7D"), season_samples(t[::120])
    (1440.0, 10080.0, None)
    >>> season_samples(t, None) is None, season_samples(t, 96), season_samples(None)
    (True, 96.0, None)
    """
    if not isinstance(period, (str, pd.Timedelta)):
        return cycle_samples(period, None)  # a number of samples, or no profile
    steps = np.array([], dtype=np.int64)
    if times is not None and np.issubdtype(np.asarray(times).dtype, np.datetime64):
        steps = np.diff(pd.DatetimeIndex(np.asarray(times)).as_unit("ns").asi8)
    if not (len(steps) > 0 and steps[0] > 0 and bool((steps == steps[0]).all())):
        if isinstance(period, str) and period == "auto":
            return None
        raise ArgumentError(f"period={period!r} needs regular datetime samples "
                            "(regularize first)")
    return cycle_samples(period, pd.Timedelta(int(steps[0]), "ns"))


def anomaly_score(obj, *, period="auto", halflife: float = 1024.0, calibration: float = 4096.0,
                  warmup: int = 100, learn_for: int | None = None, dim: str = TIME):
    """The default streaming detector's score in [0, 1], from the past alone.

    See :func:`kernels.anomaly_score` (a scan: its state is carried from
    chunk to chunk, so any chunking gives the same scores). ``period`` is
    the cycle of its seasonal profile, from the time coordinate (see
    :func:`season_samples`): by default a day, on regular samples at most
    an hour apart.

    Examples
    --------
    >>> x = np.sin(np.arange(400) / 8.0)[None, :] + 0.01 * np.cos(np.arange(400))
    >>> x[0, 300] += 2.0
    >>> da = xr.DataArray(x, dims=("device", "time"))
    >>> s = anomaly_score(da.chunk(time=64), warmup=50)
    >>> int(s.argmax("time")[0]), bool(s.max() > 0.999)
    (300, True)
    """
    samples = season_samples(obj[dim].values if dim in obj.coords else None, period)

    def attrs(da, output):
        return {"long_name": f"anomaly score of {_long_name(da)}", "units": "1",
                "halflife": halflife, "calibration": calibration,
                "period": "none" if samples is None else samples}

    with kernel_arguments():
        kernels.anomaly_score(np.zeros(1), period=samples, halflife=halflife,
                              calibration=calibration, warmup=warmup, learn_for=learn_for)
    return apply_kernel(obj, kernels.anomaly_score, name="anomaly-score", dim=dim,
                        period=samples, halflife=halflife, calibration=calibration,
                        warmup=warmup, learn_for=learn_for, attrs=attrs,
                        history=f"anomaly_score(period={samples}, halflife={halflife}, "
                                f"calibration={calibration}, warmup={warmup})")


def anomaly_alarms(scores, threshold: float | None = 0.99999, *, healthy=None,
                   quantile: float = 1.0, margin: float = 0.5, warmup: int = 100,
                   min_duration: int = 1, merge_gap: int = 30, cooldown: int = 300,
                   dim: str = TIME):
    """Alarms from anomaly scores: 4 while an episode's alarm is raised (see
    :func:`kernels.alarms`: once per episode, warm-up, minimum duration,
    merging of nearby hits, cool-down).

    ``healthy`` (a slice or labels along ``dim``) marks a period the user
    knows to be normal: each metric's threshold is then the ``quantile`` of
    its scores there, raised by ``margin`` of the distance left to 1 (see
    :func:`kernels.healthy_threshold`), and never below ``threshold``.

    Examples
    --------
    >>> s = xr.DataArray([[0.1, 0.2, 0.99999, 0.3, 0.2]], dims=("device", "time"))
    >>> anomaly_alarms(s.chunk(time=2), warmup=0, merge_gap=0).values
    array([[1, 1, 4, 1, 1]], dtype=int8)
    """
    if isinstance(scores, xr.Dataset):
        out = {m: anomaly_alarms(scores[m], threshold, healthy=healthy, quantile=quantile,
                                 margin=margin, warmup=warmup, min_duration=min_duration,
                                 merge_gap=merge_gap, cooldown=cooldown, dim=dim)
               for m in metric_names(scores, dim)}
        return with_history(xr.Dataset(out, attrs=scores.attrs), "anomaly_alarms")
    level = 0.0 if threshold is None else float(threshold)
    if healthy is not None:
        period = scores.sel({dim: healthy})
        if not period.sizes.get(dim, 0):
            raise ArgumentError(f"the healthy period {healthy!r} holds no samples of "
                                f"{scores.name!r}")
        level = max(level, kernels.healthy_threshold(np.asarray(period.values), quantile,
                                                     margin=margin))
    elif threshold is None:
        raise ArgumentError("give a threshold, or a healthy period to take it from")
    with kernel_arguments():
        kernels.alarms(np.zeros(1), level, warmup=warmup, min_duration=min_duration,
                       merge_gap=merge_gap, cooldown=cooldown)

    def attrs(da, output):
        return dict(FLAG_ATTRS, long_name=f"anomaly alarms of {_long_name(da)}",
                    threshold=level)

    return apply_kernel(scores, kernels.alarms, name="anomaly-alarms", dim=dim,
                        threshold=level, warmup=warmup, min_duration=min_duration,
                        merge_gap=merge_gap, cooldown=cooldown, attrs=attrs)


def peer_zscore(obj, threshold: float = 5.0, *, by: str | None = None, min_count: int = 3):
    """Each device against its peers at the same time (fleet-relative robust z-score).

    See :func:`kernels.peer_zscore`: at every time, the median and robust
    scale of the devices (of each group of the device coordinate ``by``,
    such as ``site``) give each device's score, so a change that moves every
    peer is no anomaly and a device that leaves its peers is. On Dask the
    device dimension is gathered into one chunk and each time chunk is one
    task (a reduction over devices within the chunk).

    Returns
    -------
    (scores, flags)
        Same type as ``obj``: float scores and int8 QARTOD flags (3 where
        ``|z| > threshold``, 2 with fewer than ``min_count`` peers, 9 missing).

    Examples
    --------
    >>> x = xr.DataArray([[20.0, 25.0], [20.5, 25.4], [19.8, 24.9], [20.2, 31.0]],
    ...                  dims=("device", "time"), name="t")
    >>> z, f = peer_zscore(x.chunk(time=1))
    >>> f.values[:, 1]
    array([1, 1, 1, 3], dtype=int8)
    """
    if isinstance(obj, xr.Dataset):
        pairs = {m: peer_zscore(obj[m], threshold, by=by, min_count=min_count)
                 for m in metric_names(obj)}
        history = f"peer_zscore(threshold={threshold}, by={by!r}, min_count={min_count})"
        return tuple(with_history(xr.Dataset({m: p[k] for m, p in pairs.items()},
                                             attrs=obj.attrs), history) for k in (0, 1))
    da = obj.transpose(DEVICE, ...)
    groups = None
    if by is not None:
        if by not in da.coords or da[by].dims != (DEVICE,):
            raise ArgumentError(f"by={by!r} must name a coordinate along {DEVICE!r}; the "
                                f"coordinates are {list(da.coords)}")
        groups = da[by].values
    if da.chunks is not None:
        da = da.chunk({DEVICE: -1})

    def block(x):
        return kernels.peer_zscore(x, threshold, min_count, groups=groups, axis=0)

    score, flag = xr.apply_ufunc(task_named(block, "peer_zscore"), da,
                                 input_core_dims=[[DEVICE]],
                                 output_core_dims=[[DEVICE], [DEVICE]], dask="parallelized",
                                 output_dtypes=[da.dtype, np.int8])
    attrs = _detector_attrs("peer z-score")
    score = score.transpose(*da.dims).rename(da.name)
    flag = flag.transpose(*da.dims).rename(da.name)
    score.attrs, flag.attrs = attrs(da, "score"), attrs(da, "flag")
    return score, flag


__all__ = ["anomaly_alarms", "anomaly_score", "cusum", "cycle_samples", "drift", "hampel",
           "peer_zscore", "robust_zscore", "rolling_zscore", "season_samples", "task_named",
           "zscore_flags"]
