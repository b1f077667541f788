"""read_csv on the real files of ../shared/data, with the one call per data set
that docs/real-data.md gives as a recipe; checked against pandas reading the same
file by hand and against the counts in the data README."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from toolkit.io import LoadReport, read_csv, read_csv_samples

pytestmark = pytest.mark.real_data

SKAB_LABELS = ["anomaly", "changepoint"]


def skab_run(path):
    """Recipe: one SKAB run (a device named like 'valve1/0'), labels left out."""
    return read_csv(path, ignore=SKAB_LABELS, freq="1s",
                    device_pattern=r"(?P<device>[^/]+/[^/]+)\.csv$")


def air_quality(path):
    """Recipe: the UCI Air Quality file."""
    return read_csv(path, time=["Date", "Time"], time_format="%d/%m/%Y %H.%M.%S",
                    missing=[-200], freq="1h")


def occupancy(path):
    """Recipe: an Occupancy Detection file (its label column left out)."""
    return read_csv(path, ignore=["Occupancy"], freq="1min")


def assert_same_bins(ds, reference: pd.DataFrame, freq):
    """Each metric equals pandas' resample-mean of the hand-read file."""
    expected = reference.resample(freq, origin="epoch").mean()
    for m in reference.columns:
        got = ds[m].isel(device=0).to_series()
        ref = expected[m].reindex(got.index)
        np.testing.assert_allclose(got.to_numpy(), ref.to_numpy(), rtol=1e-13,
                                   equal_nan=True, err_msg=m)


def test_every_skab_file(real_data):
    runs = sorted((real_data / "SKAB/data").glob("*/*.csv"))
    assert len(runs) == 35
    total = 0
    for path in runs:
        if path.name == "anomaly-free.csv":  # no label columns in this one
            ds = read_csv(path, freq="1s")
        else:
            ds = skab_run(path)
        report = LoadReport.of(ds)
        assert report.problems() == []
        frame = pd.read_csv(path, sep=";", parse_dates=["datetime"], index_col="datetime")
        frame = frame.drop(columns=[c for c in SKAB_LABELS if c in frame.columns])
        assert report.rows_read == report.rows_loaded == len(frame)
        assert report.rows_rejected == report.rows_empty == report.samples_missing == 0
        assert 745 <= len(frame) <= 9405
        assert list(ds.data_vars)[::2] == list(frame.columns)
        assert_same_bins(ds, frame, "1s")
        total += len(frame)
        if path.name != "anomaly-free.csv":
            assert ds.device.item() == f"{path.parent.name}/{path.stem}"
    assert total == 9405 + sum(len(pd.read_csv(p, sep=";")) for p in runs
                               if p.name != "anomaly-free.csv")


def test_all_skab_runs_as_raw_samples(real_data):
    frame, report = read_csv_samples(str(real_data / "SKAB/data/*/[0-9]*.csv"),
                                     ignore=SKAB_LABELS,
                                     device_pattern=r"(?P<device>[^/]+/[^/]+)\.csv$")
    assert report.files == 34 and report.rows_rejected == 0
    samples = frame.compute()
    assert len(samples) == 8 * report.rows_read
    assert samples.device.nunique() == 34
    assert samples.metric.nunique() == 8


def test_air_quality(real_data):
    path = real_data / "air_quality_uci/AirQualityUCI.csv"
    ds = air_quality(path)
    report = LoadReport.of(ds)
    assert report.problems() == []
    assert (report.rows_loaded, report.rows_empty, report.rows_rejected) == (9357, 114, 0)
    assert report.duplicates_merged == 0
    # the README: NMHC(GT) is missing (-200) in 8,443 rows
    assert int(ds["NMHC(GT)_count"].sum()) == 9357 - 8443
    ref = pd.read_csv(path, sep=";", decimal=",").dropna(how="all", axis=0)
    ref = ref.drop(columns=[c for c in ref.columns if c.startswith("Unnamed")])
    ref.index = pd.to_datetime(ref.pop("Date") + " " + ref.pop("Time"),
                               format="%d/%m/%Y %H.%M.%S")
    ref = ref.replace(-200, np.nan)
    assert len(ref) == 9357
    assert_same_bins(ds, ref, "1h")
    assert float(ds["T"].min()) == ref["T"].min() and float(ds["T"].max()) == ref["T"].max()
    assert -2 < float(ds["T"].min()) < float(ds["T"].max()) < 45


@pytest.mark.parametrize("name, rows", [("datatraining.txt", 8143), ("datatest.txt", 2665),
                                        ("datatest2.txt", 9752)])
def test_occupancy(real_data, name, rows):
    path = real_data / "occupancy_detection" / name
    ds = occupancy(path)
    report = LoadReport.of(ds)
    assert report.problems() == []
    assert report.rows_read == report.rows_loaded == rows
    assert list(ds.data_vars)[::2] == ["Temperature", "Humidity", "Light", "CO2",
                                       "HumidityRatio"]
    ref = pd.read_csv(path, index_col=0, parse_dates=["date"]).set_index("date")
    ref = ref.drop(columns="Occupancy")
    assert len(ref) == rows
    assert_same_bins(ds, ref, "1min")
    assert 18 < float(ds.Temperature.min()) < float(ds.Temperature.max()) < 25


def intel_lab(folder):
    """Recipe (docs/real-data.md): the Intel Lab matrices, built with xarray (no times)."""
    import xarray as xr

    from toolkit.model import check_fleet

    values = {m: np.loadtxt(folder / f"intel{m.title()}Train.csv", delimiter=",")
              for m in ("temperature", "humidity")}
    n_motes, n_steps = values["temperature"].shape
    ds = xr.Dataset(
        {m: (("device", "time"), v) for m, v in values.items()},
        coords={"device": [f"mote-{k:02d}" for k in range(n_motes)],
                "time": pd.date_range("2004-02-28", periods=n_steps, freq="30min")})
    check_fleet(ds)
    return ds


def test_intel_lab(real_data):
    folder = real_data / "intel_lab" / "derived_SensorPGM"
    ds = intel_lab(folder)
    assert ds.temperature.shape == (50, 144)
    # the hand-read file, by pandas (CRLF, no header, no final line break)
    ref = pd.read_csv(folder / "intelHumidityTrain.csv", header=None).to_numpy()
    np.testing.assert_array_equal(ds.humidity.values, ref)
    # and the toolkit's rolling mean on it equals pandas' row by row
    got = ds.telemetry.rolling(window=6).mean().temperature.values
    want = pd.DataFrame(ds.temperature.values.T).rolling(6).mean().to_numpy().T
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
