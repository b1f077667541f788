"""Rolling z-scores and flags on fleets, in memory and on a real cluster."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from dask.utils import key_split

from tests.helpers import raise_if_dask_computes
from toolkit import DataModelError, make_fleet, rolling_zscore, zscore_flags
from toolkit.model import FLAG_MISSING, FLAG_NOT_EVALUATED, FLAG_PASS, FLAG_SUSPECT


@pytest.fixture(scope="module")
def fleet():
    return make_fleet(n_devices=6, days=1, seed=4, anomaly_rate=4.0)


def pandas_zscore(values: np.ndarray, window: int, min_count: int) -> np.ndarray:
    frame = pd.DataFrame(values.T)
    roll = frame.rolling(window, min_periods=min_count)
    return ((frame - roll.mean().shift(1)) / roll.std().shift(1)).to_numpy().T


def test_every_metric_matches_pandas(fleet):
    scores = rolling_zscore(fleet.dataset, window=30, min_count=20)
    assert sorted(scores.data_vars) == sorted(fleet.dataset.data_vars)
    for name in scores.data_vars:
        expected = pandas_zscore(fleet.dataset[name].values, 30, 20)
        got = scores[name].values
        finite = np.isfinite(expected) & (np.abs(expected) < 1e6)
        np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-8, atol=1e-8)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        assert scores[name].attrs["units"] == "1"
    assert scores.device.equals(fleet.dataset.device)
    assert "rolling_zscore(window=30" in scores.attrs["history"]


def test_chunked_on_cluster_equals_single_chunk(fleet, client):
    eager = rolling_zscore(fleet.dataset, window=45, min_count=30)
    with raise_if_dask_computes():
        lazy = rolling_zscore(fleet.dataset.chunk(device=2), window=45, min_count=30)
        flags = zscore_flags(lazy, 5.0, values=fleet.dataset.chunk(device=2))
    names = {key_split(k) for k in lazy.temperature.data.__dask_graph__()}
    assert "rolling-zscore" in names, names
    # graph size follows the chunks: 3 device chunks -> 3 kernel tasks
    kernel_tasks = [k for k in lazy.temperature.data.__dask_graph__()
                    if key_split(k) == "rolling-zscore"]
    assert len(kernel_tasks) == 3
    computed = client.compute(lazy).result()
    xr.testing.assert_identical(computed, eager.assign_attrs(history=computed.history))
    expected_flags = zscore_flags(eager, 5.0, values=fleet.dataset)
    xr.testing.assert_equal(client.compute(flags).result(), expected_flags)


def test_any_time_chunking_gives_the_one_chunk_result(fleet):
    eager = rolling_zscore(fleet.dataset, window=30, min_count=20)
    for chunks in ({"time": 100}, {"time": 7, "device": 4}, {"time": 1}):
        lazy = rolling_zscore(fleet.dataset.chunk(chunks), window=30, min_count=20)
        xr.testing.assert_allclose(lazy.compute(), eager.assign_attrs(history=lazy.history))


def test_flags_codes():
    x = xr.DataArray([[1.0, 1.1, np.nan, 0.9, 50.0, 1.0]], dims=("device", "time"))
    z = rolling_zscore(x, window=2, min_count=2)
    flags = zscore_flags(z, 5.0, values=x)
    assert flags.dtype == np.int8
    # the window before index 3 holds a NaN, before 4 one value, before 5
    # two (0.9 and 50: z = -0.7)
    expected = [FLAG_NOT_EVALUATED, FLAG_NOT_EVALUATED, FLAG_MISSING,
                FLAG_NOT_EVALUATED, FLAG_NOT_EVALUATED, FLAG_PASS]
    np.testing.assert_array_equal(flags.values[0], expected)
    x = xr.DataArray([[1.0, 1.2, 0.9, 1.1, 50.0, 1.0, 1.05]], dims=("device", "time"))
    flags = zscore_flags(rolling_zscore(x, window=3), 5.0, values=x)
    assert flags.values[0, 4] == FLAG_SUSPECT
    assert flags.values[0, 3] == FLAG_PASS
    with pytest.raises(ValueError, match="threshold"):
        zscore_flags(z, -1.0)


def test_a_dataset_without_metrics_is_a_clear_error():
    ds = xr.Dataset({"label": (("device", "time"), np.zeros((1, 3), dtype=np.int8))})
    with pytest.raises(DataModelError, match="no float variable along 'time'"):
        rolling_zscore(ds, 2)


def test_integer_variables_are_left_out():
    ds = make_fleet(n_devices=2, days=0.1).dataset
    ds["count"] = ds.temperature.notnull().astype(np.int64)
    assert "count" not in rolling_zscore(ds, 10).data_vars
