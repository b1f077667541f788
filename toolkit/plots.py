"""Plots of a fleet for notebooks and reports (matplotlib; ``ds.telemetry.plot``).

- :func:`series`: one device's metrics over time, each downsampled with
  LTTB (the shape of a long series in a few thousand points), samples
  flagged suspect or worse marked, events shaded;
- :func:`coverage`: the fleet at a glance, a device x time heatmap of the
  share of samples present (or flagged) per time bin, drawn with xarray's own
  ``plot.imshow``.

Both return what xarray's ``.plot`` returns (axes, or the image artist) and
take ``ax=`` to draw into a figure of the caller's. Data held on Dask
workers is reduced there first (only the plotted points come back).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from .errors import ArgumentError
from .model import DEVICE, FLAG_SUSPECT, TIME, metric_names
from .ops import lttb


def _pyplot():
    import matplotlib.pyplot as plt  # headless, matplotlib falls back to Agg itself

    return plt


def _as_dataset(obj) -> xr.Dataset:
    if isinstance(obj, xr.DataArray):
        return obj.to_dataset(name=obj.name or "value")
    return obj


def series(obj, device=None, *, metrics=None, events: pd.DataFrame | None = None,
           flags=None, n: int = 2000, ax=None):
    """Plot one device's metrics over time: LTTB-downsampled, flags marked, events shaded.

    Parameters
    ----------
    obj : xarray.Dataset or xarray.DataArray
        A fleet (or one metric) with dims ``(device, time)``.
    device : str, optional
        The device (default: the first).
    metrics : list of str, optional
        The metrics, one axes each (default: every metric).
    events : pandas.DataFrame, optional
        An events table (``device, metric, start, end``): the device's events
        are shaded on their metric's axes.
    flags : xarray.Dataset or xarray.DataArray, optional
        QARTOD flags of the same variables: samples flagged suspect (3) or
        fail (4) are marked.
    n : int
        Points per line after LTTB downsampling.
    ax : matplotlib axes, optional
        One axes per metric (a single one for a single metric).

    Returns
    -------
    numpy.ndarray of matplotlib.axes.Axes (one per metric), or one Axes

    Examples
    --------
    >>> axes = fleet.telemetry.plot.series(metrics=["temperature", "humidity"])
    >>> [a.get_ylabel() for a in axes]
    ['temperature [degC]', 'humidity [%]']
    """
    plt = _pyplot()
    ds = _as_dataset(obj)
    names = list(metrics) if metrics is not None else metric_names(ds)
    missing = [m for m in names if m not in ds.data_vars]
    if missing:
        raise ArgumentError(f"metrics {missing} are not in the dataset "
                            f"(it has {metric_names(ds)})")
    devices = [str(d) for d in ds[DEVICE].values]
    device = devices[0] if device is None else str(device)
    if device not in devices:
        raise ArgumentError(f"device {device!r} is not in the dataset (it has "
                            f"{devices[:5]}{'...' if len(devices) > 5 else ''})")
    one = ds[names].sel({DEVICE: device})
    if ax is None:
        fig, axes = plt.subplots(len(names), 1, sharex=True, squeeze=False,
                                 figsize=(10, 2.2 * len(names) + 0.6))
        axes = axes[:, 0]
        fig.suptitle(f"device {device}")
    else:
        axes = np.atleast_1d(ax)
        if axes.size != len(names):
            raise ArgumentError(f"ax holds {axes.size} axes for {len(names)} metric(s)")
    flag_ds = None if flags is None else _as_dataset(flags)
    for a, m in zip(axes, names, strict=True):
        line = one[m].expand_dims({DEVICE: [device]})
        small = lttb.downsample(line, min(n, max(3, line.sizes[TIME])))
        t = np.asarray(small[TIME].values).ravel()
        v = np.asarray(small.values).ravel()
        keep = ~np.isnat(t)
        a.plot(t[keep], v[keep], lw=0.8, color="C0", label=m)
        if flag_ds is not None and m in flag_ds:
            f = flag_ds[m].sel({DEVICE: device})
            bad = f.where(f >= FLAG_SUSPECT, drop=True) if f.size else f
            if bad.size:
                times = bad[TIME].values
                values = one[m].sel({TIME: times}).values
                a.plot(times, values, "o", ms=3, color="C3", label="flagged")
        if events is not None and len(events):
            mine = events[(events["device"].astype(str) == device) &
                          (events["metric"].astype(str) == m)]
            if len(mine):  # one collection for all of them: thousands of events stay fast
                from matplotlib.dates import date2num

                lo = date2num(pd.to_datetime(mine["start"]).to_numpy())
                hi = date2num(pd.to_datetime(mine["end"]).to_numpy())
                a.broken_barh(list(zip(lo, np.maximum(hi - lo, 0), strict=True)), (0, 1),
                              transform=a.get_xaxis_transform(), color="C1", alpha=0.25,
                              lw=0, label="events")
        units = ds[m].attrs.get("units")
        a.set_ylabel(f"{m} [{units}]" if units else m)
    axes[-1].set_xlabel("time (UTC)")
    return axes if len(axes) > 1 else axes[0]


def coverage(obj, freq=None, *, flags=None, what: str = "coverage", ax=None, max_bins=400):
    """The fleet at a glance: a device x time heatmap of coverage (or of flags).

    Parameters
    ----------
    obj : xarray.Dataset
        A fleet with dims ``(device, time)``.
    freq : str, optional
        The time bins (default: about ``max_bins`` bins over the record).
    flags : xarray.Dataset, optional
        With ``what="flags"``: the share of samples flagged suspect or worse.
    what : {"coverage", "flags"}
        Share of samples present per bin, across metrics, or share flagged.
    ax : matplotlib axes, optional

    Returns
    -------
    matplotlib.image.AxesImage (from xarray's ``plot.imshow``)

    Examples
    --------
    >>> image = fleet.telemetry.plot.coverage()
    >>> image.axes.get_title()
    'coverage: share of samples present'
    """
    plt = _pyplot()
    ds = _as_dataset(obj)
    names = metric_names(ds)
    if what not in ("coverage", "flags"):
        raise ArgumentError(f"what must be 'coverage' or 'flags', got what={what!r}")
    if what == "flags":
        if flags is None:
            raise ArgumentError("what='flags' needs flags=<the flag Dataset>")
        f = _as_dataset(flags)
        shared = [m for m in names if m in f] or [str(n) for n in f.data_vars]
        share = xr.concat([(f[m] >= FLAG_SUSPECT).astype(np.float32) for m in shared],
                          "metric").mean("metric")
        title = "flags: share of samples suspect or worse"
    else:
        share = xr.concat([ds[m].notnull().astype(np.float32) for m in names],
                          "metric").mean("metric")
        title = "coverage: share of samples present"
    times = pd.DatetimeIndex(ds[TIME].values)
    if freq is None and len(times) > max_bins:
        span = times[-1] - times[0]
        freq = pd.Timedelta(span / max_bins).ceil("1s")
    if freq is not None:
        share = share.resample({TIME: pd.Timedelta(freq)}).mean()
    share = share.compute()
    labels = np.array([str(d) for d in share[DEVICE].values], dtype="U")  # plottable
    share = share.assign_coords({DEVICE: labels})
    if ax is None:
        _, ax = plt.subplots(figsize=(10, max(2.5, min(8, 0.18 * ds.sizes[DEVICE] + 1.5))))
    image = share.plot.imshow(ax=ax, x=TIME, y=DEVICE, vmin=0, vmax=1,
                              cmap="viridis" if what == "coverage" else "magma_r",
                              add_colorbar=True, cbar_kwargs={"label": "share"})
    ax.set_aspect("auto")  # fill the axes: time runs much longer than the devices
    n_dev = share.sizes[DEVICE]
    if n_dev > 40:  # at most ~40 device labels
        step = -(-n_dev // 40)
        ticks = list(range(0, n_dev, step))
        ax.set_yticks(ticks)
        ax.set_yticklabels([str(share[DEVICE].values[k]) for k in ticks])
    ax.set_title(title)
    return image


class Plot:
    """``ds.telemetry.plot``: :func:`series` and :func:`coverage` of this object."""

    def __init__(self, obj):
        self._obj = obj

    def series(self, device=None, **kwargs):
        """See :func:`toolkit.plots.series`."""
        return series(self._obj, device, **kwargs)

    def coverage(self, freq=None, **kwargs):
        """See :func:`toolkit.plots.coverage`."""
        return coverage(self._obj, freq, **kwargs)


__all__ = ["Plot", "coverage", "series"]
