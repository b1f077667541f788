"""One reading of the arguments that many operations share.

A window, a gap, a limit or a run length is either a **count of samples** or
a **duration** along the time coordinate. :func:`count_or_duration` decides
which, the same way everywhere: any integer type (Python's ``int`` or a
numpy integer) is a count; a string such as ``"15min"``, a
``datetime.timedelta``, a ``numpy.timedelta64`` or a ``pandas.Timedelta`` is
a duration; anything else (a float, a bool, None where one is needed) is an
:class:`~toolkit.errors.ArgumentError` that names the argument.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import numbers

import numpy as np
import pandas as pd

from .errors import ArgumentError


def count_or_duration(value, name: str, *, minimum: int = 1) -> int | pd.Timedelta:
    """``value`` as a count of samples (int) or a positive duration (Timedelta).

    Parameters
    ----------
    value : int, numpy integer, str, timedelta, numpy.timedelta64 or pandas.Timedelta
        The argument as the caller gave it.
    name : str
        Its name, for the error message.
    minimum : int
        The smallest count allowed.

    Raises
    ------
    ArgumentError
        For any other type, a count below ``minimum``, a duration that is not
        positive or a string that is not a duration.

    Examples
    --------
    >>> count_or_duration(np.int64(3), "max_gap"), count_or_duration("15min", "window")
    (3, Timedelta('0 days 00:15:00'))
    >>> count_or_duration(2.5, "window")
    Traceback (most recent call last):
    ...
    toolkit.errors.ArgumentError: window must be a number of samples ... (float)
    """
    # numpy.timedelta64 is a subclass of numpy.integer: durations first
    if isinstance(value, (str, _dt.timedelta, np.timedelta64, pd.Timedelta)):
        try:
            span = pd.Timedelta(value)
        except (TypeError, ValueError) as err:
            raise ArgumentError(f"{name} must be a number of samples or a duration such as "
                                f"'10min', '2h' or '1D'; got {name}={value!r}, which is "
                                "not a duration") from err
        if pd.isna(span) or span <= pd.Timedelta(0):
            raise ArgumentError(f"{name} must be a positive duration, got {name}={value!r}")
        return span
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        if int(value) < minimum:
            raise ArgumentError(f"{name} must be at least {minimum} samples, got "
                                f"{name}={value!r}")
        return int(value)
    raise ArgumentError(f"{name} must be a number of samples (a whole number such as 60) "
                        f"or a duration (such as '10min'), got {name}={value!r} "
                        f"({type(value).__name__})")


def count(value, name: str, *, minimum: int = 1) -> int:
    """``value`` as a count of samples; a duration is an error here.

    Examples
    --------
    >>> count(np.int32(60), "window")
    60
    >>> count("1h", "window")
    Traceback (most recent call last):
    ...
    toolkit.errors.ArgumentError: window must be a number of samples here, got window='1h'
    """
    result = count_or_duration(value, name, minimum=minimum)
    if isinstance(result, pd.Timedelta):
        raise ArgumentError(f"{name} must be a number of samples here, got {name}={value!r}")
    return result


@contextlib.contextmanager
def kernel_arguments():
    """Turn a kernel's argument check (a ValueError or TypeError from
    :mod:`kernels`, which cannot import the toolkit) into an
    :class:`~toolkit.errors.ArgumentError` with the same message.

    Examples
    --------
    >>> import kernels
    >>> with kernel_arguments():
    ...     kernels.qc.check_thresholds(3, 1)
    Traceback (most recent call last):
    ...
    toolkit.errors.ArgumentError: need 0 <= suspect <= fail, got suspect=3, fail=1
    """
    try:
        yield
    except ArgumentError:
        raise
    except (ValueError, TypeError) as err:
        raise ArgumentError(str(err)) from err


__all__ = ["count", "count_or_duration", "kernel_arguments"]
