"""The one layer between the public kernel functions and the compiled loops.

Compiled loops (``@njit`` functions in the sibling modules) take a C-contiguous
2-D array ``(series, time)`` plus scalar parameters and write into an output
array that is allocated here with numpy -- on our machines a large array
allocated inside Numba code costs several times more than one from numpy.

Every argument check lives here or in the public functions, never in the
compiled loops, so that the loops stay short and the messages name the bad
argument and its value.
"""

from __future__ import annotations

import gc
import math
import numbers
import threading
from collections.abc import Callable

import numpy as np
from numba import njit

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Options shared by every compiled loop:
# - nogil: Dask runs several tasks per worker in threads; the loops must not
#   hold the GIL while they run.
# - cache: workers load the machine code from the per-user cache folder
#   (kernels._cache, never the package's own folder) instead of recompiling
#   on every start.
# - error_model="numpy": a float division by zero gives inf/nan as numpy does,
#   instead of raising ZeroDivisionError (the Python semantics).
JIT_OPTIONS = {"nogil": True, "cache": True, "error_model": "numpy"}


@njit(**JIT_OPTIONS)
def _first_load(x):
    return x


_ready = False
_ready_lock = threading.Lock()


def numba_ready() -> None:
    """Pay numba's one-time start-up (its type registries, the code
    generator) with the garbage collector paused, once per process.

    The first compiled call of a process, even one served from the cache,
    adds some 77,000 objects the collector tracks, and its passes over
    them cost about a fifth of the library's warm start (measured: best warm
    import plus first call of every kernel 0.70 s against 0.88 s). Every
    public kernel reaches this through :func:`as_float_array`,
    :func:`times_2d` or the binning entry points; after the first call it is
    one flag test. A collector the caller disabled stays disabled.
    """
    global _ready
    if _ready:
        return
    with _ready_lock:
        if _ready:
            return
        enabled = gc.isenabled()
        gc.disable()
        try:
            _first_load(0.0)
        finally:
            if enabled:
                gc.enable()
        _ready = True


def as_float_array(a, name: str = "a") -> np.ndarray:
    """Return ``a`` as a native-order float32 or float64 numpy array.

    Any real numeric array is accepted:

    - float32 and float64 stay as they are (results are accumulated in
      float64 inside the loops either way);
    - non-native byte order (``>f8`` from a netCDF3 file, say) is converted
      once, so results come back in native order;
    - float16 is computed in float32 and the result is float32: float16 holds
      three significant digits and nothing above 65504, so a rolling sum or
      variance returned in it would lose what the loops computed;
    - integers, booleans and long doubles become float64.

    Complex numbers, objects, strings and times raise a :class:`TypeError`
    naming the dtype.

    Examples
    --------
    >>> as_float_array(np.arange(3, dtype=">f8")).dtype.isnative
    True
    >>> as_float_array(np.ones(2, np.float16)).dtype
    dtype('float32')
    """
    numba_ready()
    arr = np.asarray(a)
    kind = arr.dtype.kind
    if kind == "f" and arr.dtype.itemsize in (4, 8):
        return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))
    if kind == "f" and arr.dtype.itemsize < 4:
        return arr.astype(np.float32)
    if kind in "biu" or kind == "f":  # integers, booleans, long double
        return arr.astype(np.float64)
    what = {"c": "complex numbers", "O": "Python objects", "U": "strings", "S": "bytes",
            "M": "times (datetime64)", "m": "durations (timedelta64)"}.get(kind, "no numbers")
    raise TypeError(
        f"{name} must hold real numbers (floats, integers or booleans); its dtype "
        f"{arr.dtype} holds {what}. Convert it first, e.g. np.real(...) or "
        ".astype('float64')"
    )


def check_window(window, min_count, *, min_allowed: int = 1) -> tuple[int, int]:
    """Validate a window length in samples and its ``min_count``.

    ``min_count=None`` means ``window``: a result needs a full window of valid
    samples, as in pandas, bottleneck and numbagg.
    """
    if isinstance(window, bool) or not isinstance(window, numbers.Integral):
        raise TypeError(
            f"window must be a whole number of samples, got window={window!r}"
        )
    window = int(window)
    if window < 1:
        raise ValueError(f"window must be at least 1, got window={window}")
    if min_count is None:
        min_count = window
    if isinstance(min_count, bool) or not isinstance(min_count, numbers.Integral):
        raise TypeError(f"min_count must be a whole number, got {min_count!r}")
    min_count = int(min_count)
    if not min_allowed <= min_count <= window:
        raise ValueError(
            f"min_count must be between {min_allowed} and window={window}, "
            f"got min_count={min_count}"
        )
    return window, min_count


def as_series(a: np.ndarray, axis: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """View ``a`` as C-contiguous ``(series, time)`` with ``axis`` as time.

    Returns the 2-D array and the shape of ``a`` with ``axis`` moved last,
    which :func:`from_series` needs to put a result back.
    """
    if a.ndim == 0:
        raise ValueError("a must have at least one dimension (the time axis)")
    if not -a.ndim <= axis < a.ndim:
        raise ValueError(f"axis={axis} is out of range for an array of {a.ndim} dims")
    moved = np.moveaxis(a, axis, -1)
    # explicit sizes: reshape(-1, 0) is ambiguous for an empty time axis
    n_series = math.prod(moved.shape[:-1])
    return np.ascontiguousarray(moved.reshape(n_series, moved.shape[-1])), moved.shape


def from_series(out: np.ndarray, moved_shape: tuple[int, ...], axis: int) -> np.ndarray:
    """Undo :func:`as_series` for a result of the same ``(series, time)`` shape."""
    return np.moveaxis(out.reshape(moved_shape), -1, axis)


def series_state(state, n_series: int, initial: np.ndarray, name: str) -> np.ndarray:
    """A per-series state array: a copy of ``state``, or ``initial`` when None.

    ``initial`` has shape ``(n_series, ...)``; ``state`` must hold as many
    series (in any leading shape).
    """
    if state is None:
        return initial
    arr = np.array(state, dtype=initial.dtype).reshape((-1,) + initial.shape[1:])
    if arr.shape[0] != n_series:
        raise ValueError(f"{name} is for {arr.shape[0]} series, the input has {n_series}")
    return arr


def times_2d(times, shape: tuple[int, int], *, sorted_: bool = True) -> np.ndarray:
    """Sample times as a C-contiguous ``(1 or series, time)`` int64 array.

    ``times`` are datetime64 (converted to nanoseconds) or integers: one time
    axis shared by all series, or one per series (``shape`` is the
    ``(series, time)`` shape of the values).
    """
    numba_ready()
    times = np.asarray(times)
    if np.issubdtype(times.dtype, np.datetime64):
        t = times.astype("datetime64[ns]").view(np.int64)
    elif np.issubdtype(times.dtype, np.integer):
        t = times.astype(np.int64)
    else:
        raise TypeError(f"times must be datetime64 or integers, got dtype {times.dtype}")
    if t.ndim == 0 or t.shape[-1] != shape[1]:
        raise ValueError(f"times of shape {times.shape} do not fit {shape[1]} samples "
                         "along the time axis")
    t = t.reshape(math.prod(t.shape[:-1]), t.shape[-1])
    if t.shape[0] not in (1, shape[0]):
        raise ValueError(f"times hold {t.shape[0]} series, the values {shape[0]}: give "
                         "one time axis for all series or one per series")
    if sorted_ and (np.diff(t, axis=-1) < 0).any():
        raise ValueError("times must be sorted (non-decreasing) along the time axis")
    return np.ascontiguousarray(t)


def duration_ns(value, name: str, times) -> float:
    """A duration in the units of ``times``: nanoseconds for datetime64 times."""
    if np.issubdtype(np.asarray(times).dtype, np.datetime64):
        # (np.timedelta64 is itself a subclass of np.integer)
        if not isinstance(value, np.timedelta64) and isinstance(
                value, (int, float, np.integer, np.floating)):
            raise TypeError(f"with datetime64 times, {name} must be a timedelta64, "
                            f"got {value!r}")
        value = np.timedelta64(value).astype("timedelta64[ns]").astype(np.int64)
    return float(value)


def apply_last_axis(
    loop: Callable, a: np.ndarray, axis: int, *params, out_dtype=None
) -> np.ndarray:
    """Run a compiled ``(series, time)`` loop along ``axis`` of an N-d array.

    The array is viewed as 2-D with ``axis`` last (copied only when that view
    is not C-contiguous), the output is allocated here, and the result is
    returned with ``axis`` back in its place.
    """
    from .parallel import Rows, run_rows

    series, shape = as_series(a, axis)
    out = np.empty(series.shape, dtype=out_dtype or a.dtype)
    if series.size:
        run_rows(loop, Rows(series), *params, Rows(out))
    return from_series(out, shape, axis)
