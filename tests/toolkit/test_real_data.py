"""The rolling z-score on real sensor data (SKAB), against pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from toolkit import rolling_zscore, zscore_flags

pytestmark = pytest.mark.real_data


@pytest.fixture(scope="module")
def skab(real_data):
    frame = pd.read_csv(real_data / "SKAB/data/anomaly-free/anomaly-free.csv", sep=";",
                        parse_dates=["datetime"])
    assert len(frame) == 9405  # as the data README says
    metrics = [c for c in frame.columns if c not in ("datetime", "anomaly", "changepoint")]
    ds = xr.Dataset(
        {m: (("device", "time"), frame[m].to_numpy()[None, :]) for m in metrics},
        coords={"device": ["skab-testbed"], "time": frame.datetime.to_numpy()},
    )
    return ds


def test_zscore_on_skab_matches_pandas(skab):
    scores = rolling_zscore(skab.chunk(device=1), window=60, min_count=60).compute()
    for name in skab.data_vars:
        series = pd.Series(skab[name].values[0])
        roll = series.rolling(60)
        expected = ((series - roll.mean().shift(1)) / roll.std().shift(1)).to_numpy()
        got = scores[name].values[0]
        # Pressure takes few distinct values: windows of one repeated value
        # give inf (a change) or nan (no change), as in the reference
        both = np.isfinite(expected) & np.isfinite(got)
        np.testing.assert_allclose(got[both], expected[both], rtol=1e-7, atol=1e-7)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))


def test_pressure_has_constant_windows_and_they_are_exact(skab):
    pressure = skab.Pressure.values[0]
    assert len(np.unique(pressure)) < 20
    scores = rolling_zscore(skab[["Pressure"]], window=5).Pressure.values[0]
    constant_before = np.array([
        i >= 5 and len(np.unique(pressure[i - 5:i])) == 1 for i in range(len(pressure))])
    assert constant_before.sum() > 100
    same = constant_before & (pressure == np.roll(pressure, 1))
    assert np.isnan(scores[same]).all()
    assert np.isinf(scores[constant_before & ~same]).all()
    flags = zscore_flags(rolling_zscore(skab, 60), 6.0, values=skab)
    assert int((flags.to_array() == 9).sum()) == int(skab.to_array().isnull().sum())
