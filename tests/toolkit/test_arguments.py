"""One reading of every argument, one error tree, flag codes defined once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import kernels
import toolkit
from toolkit import model
from toolkit.errors import ArgumentError, DataModelError, ToolkitError
from toolkit.ops.binning import regularize
from toolkit.ops.fill import interpolate
from toolkit.ops.qc import flat_line
from toolkit.ops.rolling import rolling

TIMES = pd.date_range("2024-05-01", periods=12, freq="1min")
X = xr.DataArray([[1.0, np.nan, np.nan, np.nan, 5.0, 6.0, 6.0, 6.0, 6.0, 6.0, 7.0, 8.0]],
                 dims=("device", "time"), coords={"time": TIMES})


@pytest.mark.parametrize("integer", [np.int64, np.int32, np.uint8, int])
def test_numpy_integers_are_counts_everywhere(integer):
    # a numpy integer once meant nanoseconds here: nothing was filled
    filled = interpolate(X, max_gap=integer(3))
    np.testing.assert_array_equal(filled, interpolate(X, max_gap=3))
    np.testing.assert_array_equal(filled[0, :5], [1.0, 2.0, 3.0, 4.0, 5.0])
    for chunked in (X, X.chunk(time=4)):
        np.testing.assert_allclose(rolling(chunked, integer(3), "mean"),
                                   rolling(X, 3, "mean"), rtol=1e-14)
    np.testing.assert_array_equal(flat_line(X, 0.0, integer(3), integer(4)),
                                  flat_line(X, 0.0, 3, 4))
    assert int(flat_line(X, 0.0, integer(3), integer(4))[0, 8]) == 4


def test_durations_of_every_type_are_durations():
    expected = rolling(X, "3min", "sum")
    for span in ("3min", pd.Timedelta("3min"), np.timedelta64(3, "m"),
                 pd.Timedelta("3min").to_pytimedelta()):
        np.testing.assert_array_equal(rolling(X, span, "sum"), expected)
    # a gap of 4 minutes between valid ends: filled with a 4-minute limit only
    assert np.isnan(interpolate(X, max_gap="3min")[0, 2])
    assert interpolate(X, max_gap=np.timedelta64(4, "m"))[0, 2] == 3.0


@pytest.mark.parametrize("call, name", [
    (lambda: rolling(X, 2.5, "mean"), "window"),
    (lambda: rolling(X, True, "mean"), "window"),
    (lambda: rolling(X, 0, "mean"), "window"),
    (lambda: rolling(X, "-5min", "mean"), "window"),
    (lambda: interpolate(X, max_gap=1.5), "max_gap"),
    (lambda: flat_line(X, 0.0, 3.0, 4), "suspect"),
    (lambda: flat_line(X, 0.0, 3, "5min"), "suspect and fail"),
    (lambda: flat_line(X, -1.0, 3, 4), "tolerance"),
])
def test_anything_else_is_an_error_naming_the_argument(call, name):
    with pytest.raises(ArgumentError, match=name):
        call()


@pytest.mark.parametrize("call", [
    lambda: toolkit.make_fleet(n_devices=0),
    lambda: regularize(X, "1min", how="median"),
    lambda: regularize(X, "soon"),
    lambda: toolkit.zscore_flags(X, threshold=-1),
    lambda: toolkit.connect("tcp://127.0.0.1:1", n_workers=2),
    lambda: X.telemetry.flags.spike(5.0, 1.0),
    lambda: X.telemetry.flags.gross_range((10, 0)),
    lambda: X.telemetry.ewm(span=0.5).mean(),
    lambda: X.telemetry.downsample(2),
])
def test_errors_raised_on_purpose_are_toolkit_errors(call):
    with pytest.raises(ToolkitError) as err:
        call()
    # still a ValueError or TypeError for callers that catch those
    assert isinstance(err.value, (ValueError, TypeError))


def test_a_variable_without_the_time_dimension_is_a_data_model_error():
    with pytest.raises(DataModelError, match="no dimension 'time'"):
        rolling(X.rename(time="t"), 3, "mean")


def test_flag_codes_are_defined_once_in_kernels():
    assert (model.FLAG_PASS, model.FLAG_NOT_EVALUATED, model.FLAG_SUSPECT, model.FLAG_FAIL,
            model.FLAG_MISSING) == kernels.flags.CODES
    assert list(model.FLAG_ATTRS["flag_values"]) == list(kernels.flags.CODES)
    assert model.FLAG_ATTRS["flag_meanings"].split() == list(kernels.flags.MEANINGS)
    flags = kernels.spike(np.array([1.0, 1.0, 9.0, 1.0, np.nan]), 1.0, 5.0)
    assert set(flags.tolist()) <= set(kernels.flags.CODES)
