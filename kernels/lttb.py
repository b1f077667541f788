"""Largest-triangle-three-buckets downsampling, for plotting long series.

Not distributed over time chunks: it needs the whole series (its output is
small, so a Dask caller reduces each series in one task).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._wrap import JIT_OPTIONS, as_float_array, as_series
from .distribution import Reduce, distributed
from .parallel import Rows, Scratch, run_rows


@njit(**JIT_OPTIONS)
def _lttb(y, x, n_out, valid, out):
    for r in range(y.shape[0]):
        yr = y[r]
        xr = x[r if x.shape[0] > 1 else 0]
        m = 0
        for i in range(yr.shape[0]):  # NaN samples take no part
            if yr[i] == yr[i]:
                valid[m] = i
                m += 1
        out[r, :] = -1
        if m <= n_out:
            out[r, :m] = valid[:m]
            continue
        every = (m - 2) / (n_out - 2)
        a = 0
        out[r, 0] = valid[0]
        for b in range(n_out - 2):
            # the average point of the next bucket
            lo = int(np.floor((b + 1) * every)) + 1
            hi = min(int(np.floor((b + 2) * every)) + 1, m)
            ax = 0.0
            ay = 0.0
            for j in range(lo, hi):
                ax += xr[valid[j]]
                ay += yr[valid[j]]
            ax /= hi - lo
            ay /= hi - lo
            # the point of this bucket with the largest triangle
            px = xr[valid[a]]
            py = yr[valid[a]]
            best = -1.0
            chosen = lo - 1
            for j in range(int(np.floor(b * every)) + 1, lo):
                area = abs((px - ax) * (yr[valid[j]] - py) - (px - xr[valid[j]]) * (ay - py))
                if area > best:
                    best = area
                    chosen = j
            out[r, b + 1] = valid[chosen]
            a = chosen
        out[r, n_out - 1] = valid[m - 1]


@distributed(Reduce((("index", "int64"),)))
def lttb(y, n_out: int, *, x=None, axis: int = -1) -> np.ndarray:
    """Indices of ``n_out`` samples that keep the visual shape of each series.

    The largest-triangle-three-buckets algorithm (Steinarsson, 2013): the
    first and last valid samples, and from each of ``n_out - 2`` buckets the
    sample forming the largest triangle with the previous choice and the next
    bucket's average. NaN samples are never chosen. A series with at most
    ``n_out`` valid samples keeps them all, padded with -1.

    Parameters
    ----------
    y : array_like
        Values, the time axis along ``axis``.
    n_out : int
        Samples to keep (>= 3).
    x : array_like, optional
        Positions of the samples (times as numbers); default their index.
    axis : int
        The time axis.

    Returns
    -------
    numpy.ndarray of int64
        Shape of ``y`` with the time axis of length ``n_out``: indices into
        that axis, increasing.

    Examples
    --------
    >>> y = np.array([0.0, 1.0, 0.0, 5.0, 0.0, 1.0, 0.0, 0.0])
    >>> lttb(y, 4)
    array([0, 3, 4, 7])
    """
    if isinstance(n_out, bool) or int(n_out) != n_out or n_out < 3:
        raise ValueError(f"n_out must be a whole number >= 3, got n_out={n_out!r}")
    arr = as_float_array(y)
    series, shape = as_series(arr, axis)
    if x is None:
        xs = np.arange(series.shape[1], dtype=np.float64)[None, :]
    else:
        xs = np.asarray(x)
        if np.issubdtype(xs.dtype, np.datetime64):
            xs = xs.astype("datetime64[ns]").view(np.int64)
            xs = xs - (xs.min() if xs.size else 0)
        xs = np.ascontiguousarray(xs.astype(np.float64).reshape(-1, series.shape[1]))
        if xs.shape[0] not in (1, series.shape[0]):
            raise ValueError("x must be one axis for all series or one per series")
    out = np.empty((series.shape[0], int(n_out)), dtype=np.int64)
    run_rows(_lttb, Rows(series), Rows(xs), np.int64(n_out),
             Scratch(np.empty(series.shape[1], np.int64)), Rows(out))
    return np.moveaxis(out.reshape(shape[:-1] + (int(n_out),)), -1, axis)
