"""Anomaly scores on fleets: the xarray face of the detector kernels.

Each function is a thin :func:`xarray.apply_ufunc` around a kernel from
:mod:`kernels`; numerical logic lives in the kernels. Dask-backed input stays
lazy, with one task per chunk named after the operation.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

import kernels

from .apply import apply_kernel
from .errors import ArgumentError
from .model import (
    FLAG_ATTRS,
    FLAG_MISSING,
    FLAG_NOT_EVALUATED,
    FLAG_PASS,
    FLAG_SUSPECT,
    TIME,
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
    def block(values):
        return kernels.move_zscore(values, window, min_count, axis=-1)

    def attrs(da):
        long_name = da.attrs.get("long_name", da.name or "values")
        return {"units": "1", "long_name": f"rolling z-score of {long_name}",
                "window": window}

    # the reference window ends before each sample: `window` samples of overlap
    return apply_kernel(obj, block, kind="window", name="rolling-zscore", dim=dim,
                        before=window, dtype=_float_dtype(obj), attrs=attrs,
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


def _float_dtype(obj):
    if isinstance(obj, xr.Dataset):
        return None  # each metric keeps its own float dtype
    return obj.dtype if obj.dtype.kind == "f" else np.dtype(np.float64)


def robust_zscore(obj, window: int, threshold: float = 5.0, *, min_count: int | None = None,
                  dim: str = TIME):
    """Robust z-score against the median and MAD of the ``window`` samples before each.

    Returns the scores; see :func:`kernels.robust_zscore` (flags with
    :func:`zscore_flags`).
    """
    def block(values):
        return kernels.robust_zscore(values, window, threshold, min_count)[0]

    return apply_kernel(obj, block, kind="window", name="robust-zscore", dim=dim,
                        before=window, dtype=np.float64,
                        attrs=lambda da: {"units": "1", "long_name": "robust z-score of "
                                          f"{da.attrs.get('long_name', da.name)}"},
                        history=f"robust_zscore(window={window})")


def cusum(obj, target, scale, *, slack: float = 0.5, limit: float = 5.0, dim: str = TIME):
    """CUSUM flags (3 at an alarm) of a shift from ``target`` in units of ``scale``.

    ``target`` and ``scale`` are numbers (the same for every series). Exact
    over any chunking: the sums are carried from chunk to chunk.
    """
    def step(values, state):
        score, flag, state = kernels.cusum(values, target, scale, slack=slack, limit=limit,
                                           state=state, return_state=True)
        return flag, state

    return apply_kernel(obj, step, kind="scan", name="cusum", dim=dim, dtype=np.int8,
                        attrs=lambda da: dict(FLAG_ATTRS, long_name="CUSUM flag of "
                                              f"{da.attrs.get('long_name', da.name)}"),
                        history=f"cusum(target={target}, scale={scale}, slack={slack}, "
                                f"limit={limit})")
