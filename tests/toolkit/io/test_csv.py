"""The CSV loader on files written here: every layout, compression, many files,
bad rows under both policies, daylight-saving repeats and a clock jumping back.
The loaded values must equal what was written, and the load report must add up."""

from __future__ import annotations

import csv
import gzip
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import xarray as xr

import toolkit
from toolkit.errors import LoadError
from toolkit.io import LoadReport, read_csv, read_csv_samples
from toolkit.io.csv import InferredFrequencyWarning
from toolkit.synthetic import to_samples, write_csv

FLEET = toolkit.make_fleet(n_devices=4, days=0.25, seed=7, dropout=0.02).dataset
METRICS = list(FLEET.data_vars)


def assert_fleet_equal(ds, fleet=FLEET):
    assert list(ds.device.values) == list(fleet.device.values)
    np.testing.assert_array_equal(ds.time.values, fleet.time.values)
    for m in fleet.data_vars:
        np.testing.assert_array_equal(ds[m].values, fleet[m].values)  # exact round trip
        np.testing.assert_array_equal(ds[f"{m}_count"].values, fleet[m].notnull().values)


def assert_adds_up(report: LoadReport):
    assert report.problems() == []
    assert report.rows_read == report.rows_loaded + report.rows_rejected + report.rows_empty


def write_wide(fleet, path, *, device_column=True, sep=",", decimal=".", opener=open):
    frame = fleet.to_dataframe().reset_index()
    frame["time"] = frame["time"].dt.strftime("%Y-%m-%d %H:%M:%S")
    if not device_column:
        frame = frame.drop(columns="device")
    frame = frame[[c for c in frame.columns if c not in ("site", "x", "y")]]
    with opener(path, "wt") as f:
        frame.to_csv(f, index=False, sep=sep, decimal=decimal, float_format="%.17g")


@pytest.mark.parametrize("blocksize", [None, 2_000, 50_000])
def test_long_layout_round_trip_in_any_blocks(tmp_path, blocksize):
    path = tmp_path / "fleet.csv"
    write_csv(FLEET, path)
    ds = read_csv(path, freq="1min", blocksize=blocksize)
    assert_fleet_equal(ds)
    report = LoadReport.of(ds)
    assert_adds_up(report)
    n = int(FLEET.to_array().notnull().sum())  # write_csv leaves out missing samples
    assert (report.rows_read, report.rows_loaded, report.samples_binned) == (n, n, n)
    assert report.duplicates_merged == 0 and report.samples_outside == 0
    assert ds.temperature.chunks is not None  # Dask-backed
    assert "rows read" in ds.attrs["load_report"]


@pytest.mark.parametrize("blocksize", [None, 3_000])
def test_the_compiled_long_reader_equals_pyarrow(tmp_path, monkeypatch, blocksize):
    """Long blocks in the forms the compiled reader takes (CRLF, blank lines, a
    skipped column, offsets, missing values, a sentinel, few decimals) load
    to the same Dataset and report as through pyarrow; and it is used."""
    rng = np.random.default_rng(3)
    times = pd.date_range("2026-01-05", periods=120, freq="30s")
    rows = []
    for k, t in enumerate(times):
        for d in rng.permutation(6)[:4]:
            for m in ("temperature", "humidity"):
                v = ["", "NA", "-999", f"{rng.normal(20, 5):.2f}", f"{rng.normal(20, 5):.4e}"][
                    rng.choice(5, p=[0.03, 0.02, 0.02, 0.8, 0.13])]
                stamp = (t + pd.Timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + \
                    "+01:00" if k % 3 == 0 else t.strftime("%Y-%m-%d %H:%M:%SZ")
                rows.append(f"sensor-{d},{stamp},gw-{k % 2},{m},{v}")
            if k % 17 == 0:
                rows.append("")
    path = tmp_path / "long.csv"
    path.write_bytes(("device,time,gateway,metric,value\r\n" + "\r\n".join(rows) +
                      "\r\n").encode())
    used = []
    real = toolkit.io.csvparse.parse_long

    def counted(*args, **kwargs):
        out = real(*args, **kwargs)
        used.append(not isinstance(out, str))
        return out

    monkeypatch.setattr("toolkit.io.csvparse.parse_long", counted)
    fast = read_csv(path, freq="1min", blocksize=blocksize, missing=[-999], ignore=["gateway"])
    assert used and all(used)
    monkeypatch.setattr("toolkit.io.csvparse.parse_long", lambda *a, **k: "declined")
    slow = read_csv(path, freq="1min", blocksize=blocksize, missing=[-999], ignore=["gateway"])
    xr.testing.assert_identical(fast.drop_attrs(), slow.drop_attrs())
    assert LoadReport.of(fast) == LoadReport.of(slow)
    report = LoadReport.of(fast)
    assert_adds_up(report)
    assert report.rows_empty == sum(1 for r in rows if not r)
    assert report.samples_missing > 0


def test_files_larger_than_memory_are_parsed_again_not_held(tmp_path, monkeypatch):
    path = tmp_path / "fleet.csv"
    write_csv(FLEET, path)
    held = read_csv(path, freq="1min", blocksize=5_000)
    monkeypatch.setattr("toolkit.io.csv._fits_in_memory", lambda nbytes: False)
    again = read_csv(path, freq="1min", blocksize=5_000)
    xr.testing.assert_identical(held.drop_attrs(), again.drop_attrs())
    assert LoadReport.of(held) == LoadReport.of(again)


def test_wide_layout_with_semicolons_and_decimal_commas(tmp_path):
    path = tmp_path / "wide.csv"
    write_wide(FLEET, path, sep=";", decimal=",")
    ds = read_csv(path, freq="1min", units={"temperature": "degC"})
    for m in METRICS:
        np.testing.assert_allclose(ds[m].values, FLEET[m].values, rtol=1e-15)
    assert ds.temperature.attrs["units"] == "degC"
    report = LoadReport.of(ds)
    assert_adds_up(report)
    assert report.samples_missing == int(FLEET.to_array().isnull().sum())


def test_one_file_per_device_from_file_names(tmp_path):
    for d in FLEET.device.values:
        write_wide(FLEET.sel(device=[d]), tmp_path / f"site-a_{d}.csv", device_column=False)
    ds = read_csv(str(tmp_path / "*.csv"), freq="1min",
                  device_pattern=r"site-a_(?P<device>[^/]+)\.csv$")
    assert_fleet_equal(ds)
    plain = read_csv(str(tmp_path / "*.csv"), freq="1min")  # default: the file name
    assert list(plain.device.values) == [f"site-a_{d}" for d in FLEET.device.values]


def test_gzip_and_zstd_files(tmp_path):
    frame = to_samples(FLEET)
    half = frame.device.isin(FLEET.device.values[:2])
    write = frame[half].copy()
    write["time"] = write["time"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with gzip.open(tmp_path / "a.csv.gz", "wt") as f:
        write.to_csv(f, index=False, float_format="%.17g")
    rest = frame[~half].copy()
    rest["time"] = rest["time"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    with pa.output_stream(str(tmp_path / "b.csv.zst"), compression="zstd") as f:
        f.write(rest.to_csv(index=False, float_format="%.17g").encode())
    ds = read_csv([tmp_path / "a.csv.gz", tmp_path / "b.csv.zst"], freq="1min")
    assert_fleet_equal(ds)
    assert LoadReport.of(ds).blocks == 2


@pytest.mark.slow
def test_a_folder_of_thousands_of_files(tmp_path):
    fleet = toolkit.make_fleet(n_devices=10, days=1, seed=2).dataset
    frame = to_samples(fleet)
    frame["time"] = frame["time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    for k, rows in enumerate(np.array_split(np.arange(len(frame)), 2000)):
        frame.iloc[rows].to_csv(tmp_path / f"part-{k:04d}.csv", index=False,
                                float_format="%.17g")
    ds = read_csv(str(tmp_path / "part-*.csv"), freq="1min")
    assert_fleet_equal(ds, fleet)
    report = LoadReport.of(ds)
    assert report.files == report.blocks == 2000
    assert report.rows_loaded == len(frame)


def _with_bad_rows(tmp_path):
    """A long file with four kinds of bad rows at known lines, and an empty line."""
    path = tmp_path / "bad.csv"
    write_csv(FLEET, path)
    lines = path.read_text().splitlines()
    bad = {
        10: "dev-0001,2026-01-05T00:07:00.000Z,temperature,abc",  # value
        20: "dev-0001,yesterday,temperature,21.5",  # time
        30: "dev-0002,2026-01-05T00:09:00.000Z,temperature",  # a field short
        40: ",2026-01-05T00:09:00.000Z,temperature,1.0",  # no device
    }
    out = []
    for n, line in enumerate(lines, start=1):
        out.append(line)
        if n in bad:
            out.append(bad[n])
    out.insert(60, "")  # an empty line: counted as empty, not rejected
    path.write_text("\n".join(out) + "\n")
    # 1-based line numbers of the bad rows in the written file
    numbers = {i + 1: text for i, text in enumerate(out) if text in bad.values()}
    return path, numbers, len(lines) - 1


@pytest.mark.parametrize("blocksize", [None, 3_000])
def test_bad_rows_raise_naming_file_line_field_and_text(tmp_path, blocksize):
    path, numbers, _ = _with_bad_rows(tmp_path)
    first = min(numbers)
    with pytest.raises(LoadError) as info:
        read_csv(path, freq="1min", blocksize=blocksize)
    message = str(info.value)
    assert f"{path}, line {first}, field 'value'" in message
    assert "'abc'" in message and "on_bad_rows='quarantine'" in message
    assert "4 bad row(s)" in message


@pytest.mark.parametrize("blocksize", [None, 3_000])
def test_bad_rows_quarantined_with_exact_counts(tmp_path, blocksize):
    path, numbers, good = _with_bad_rows(tmp_path)
    q = tmp_path / "quarantine.csv"
    ds = read_csv(path, freq="1min", on_bad_rows="quarantine", quarantine=q,
                  blocksize=blocksize)
    report = LoadReport.of(ds)
    assert_adds_up(report)
    assert (report.rows_rejected, report.rows_empty, report.rows_loaded) == (4, 1, good)
    assert report.quarantine == str(q)
    with open(q, newline="") as f:
        rows = list(csv.DictReader(f))
    assert {int(r["line"]): r["text"] for r in rows} == numbers
    assert {r["field"] for r in rows} == {"value", "time", "", "device"}
    assert all(r["file"] == str(path) for r in rows)
    assert_fleet_equal(ds)  # the good rows are exactly the fleet


def test_daylight_saving_repeat_is_merged_and_counted(tmp_path):
    # a logger writing local time in Berlin through the night of 25 Oct 2026:
    # 02:00-02:59 comes twice (CEST, then CET)
    utc = pd.date_range("2026-10-24T23:00Z", "2026-10-25T03:00Z", freq="10min",
                        inclusive="left")
    local = utc.tz_convert("Europe/Berlin").tz_localize(None)
    values = np.arange(len(utc), dtype=float)
    path = tmp_path / "dst.csv"
    pd.DataFrame({"device": "logger", "time": local.strftime("%Y-%m-%d %H:%M:%S"),
                  "metric": "t", "value": values}).to_csv(path, index=False)
    repeated = int(local.duplicated().sum())
    assert repeated == 6
    for policy, pick in (("first", lambda a, b: a), ("last", lambda a, b: b),
                         ("mean", lambda a, b: (a + b) / 2)):
        ds = read_csv(path, freq="10min", timezone="Europe/Berlin", duplicates=policy)
        report = LoadReport.of(ds)
        assert_adds_up(report)
        assert report.duplicates_merged == repeated
        got = ds.t.sel(device="logger").to_series()
        # the repeated local hour lands on the first (CEST) UTC hour: 00:00-00:59Z
        first_pass = values[(utc >= "2026-10-25T00:00Z") & (utc < "2026-10-25T01:00Z")]
        second_pass = values[(utc >= "2026-10-25T01:00Z") & (utc < "2026-10-25T02:00Z")]
        np.testing.assert_array_equal(
            got["2026-10-25 00:00":"2026-10-25 00:50"].values, pick(first_pass, second_pass))
        assert got["2026-10-25 01:00":"2026-10-25 01:50"].isna().all()  # the gap it leaves
    with pytest.raises(LoadError, match=r"device 'logger', metric 't' has 2 samples at "
                                        r"2026-10-25 00:00:00.*duplicates='mean'"):
        read_csv(path, freq="10min", timezone="Europe/Berlin", duplicates="raise")


def test_clock_jumping_back(tmp_path):
    t = pd.date_range("2026-03-01", periods=30, freq="1min")
    jumped = t[:20].append(t[15:30] + pd.Timedelta("0s"))  # back 5 minutes at sample 20
    values = np.arange(len(jumped), dtype=float)
    path = tmp_path / "jump.csv"
    pd.DataFrame({"device": "d", "time": jumped.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "metric": "v", "value": values}).to_csv(path, index=False)
    ds = read_csv(path, freq="1min", duplicates="last")
    report = LoadReport.of(ds)
    assert report.duplicates_merged == 5
    expected = pd.Series(values, index=jumped).groupby(level=0).last()
    np.testing.assert_array_equal(ds.v.values[0], expected.values)
    ds = read_csv(path, freq="1min")  # mean by default
    expected = pd.Series(values, index=jumped).groupby(level=0).mean()
    np.testing.assert_array_equal(ds.v.values[0], expected.values)


def test_time_forms_epoch_offsets_and_two_columns(tmp_path):
    t = pd.date_range("2026-05-01T10:00Z", periods=6, freq="30s")
    base = {"device": "d", "metric": "v", "value": np.arange(6.0)}
    pd.DataFrame(base | {"time": t.asi8 // 10**6}).to_csv(tmp_path / "ms.csv", index=False)
    pd.DataFrame(base | {"time": t.tz_convert("Asia/Kolkata").strftime(
        "%Y-%m-%dT%H:%M:%S%z")}).to_csv(tmp_path / "offset.csv", index=False)
    pd.DataFrame(base | {"date": t.strftime("%d/%m/%Y"), "clock": t.strftime("%H.%M.%S")}
                 ).to_csv(tmp_path / "two.csv", index=False)
    expect = pd.Series(np.arange(6.0), index=t.tz_localize(None))
    for path, kwargs in (("ms.csv", {}), ("offset.csv", {}),
                         ("two.csv", {"time": ["date", "clock"],
                                      "time_format": "%d/%m/%Y %H.%M.%S"})):
        ds = read_csv(tmp_path / path, freq="30s", **kwargs)
        got = ds.v.isel(device=0).to_series()
        pd.testing.assert_series_equal(got, expect, check_names=False, check_freq=False,
                                       check_index_type=False)
    local = read_csv(tmp_path / "two.csv", freq="30s", time=["date", "clock"],
                     time_format="%d/%m/%Y %H.%M.%S", timezone="America/New_York")
    assert local.time.values[0] == np.datetime64("2026-05-01T14:00")  # EDT is UTC-4


def test_sentinels_ignored_columns_and_inferred_frequency(tmp_path):
    path = tmp_path / "wide.csv"
    frame = pd.DataFrame({"time": pd.date_range("2026-01-01", periods=50, freq="15s")
                          .strftime("%Y-%m-%d %H:%M:%S"),
                          "co": np.where(np.arange(50) % 7 == 0, -200, np.arange(50.0)),
                          "label": ["x"] * 50})
    frame.to_csv(path, index=False)
    with pytest.warns(InferredFrequencyWarning, match="0 days 00:00:15"):
        ds = read_csv(path, missing=[-200], ignore=["label"])
    report = LoadReport.of(ds)
    assert report.freq_inferred and report.samples_missing == 8
    assert int(ds.co.isnull().sum()) == 8 and list(ds.data_vars) == ["co", "co_count"]


def test_clear_errors(tmp_path):
    path = tmp_path / "f.csv"
    write_csv(FLEET.isel(time=slice(0, 5)), path)
    with pytest.raises(LoadError, match="no such file"):
        read_csv(tmp_path / "nope.csv")
    with pytest.raises(LoadError, match="no file matches"):
        read_csv(str(tmp_path / "*.txt"))
    with pytest.raises(LoadError, match=r"column 'when' is not in the header"):
        read_csv(path, time="when")
    with pytest.raises(LoadError, match=r"ignore names columns \['label'\]"):
        read_csv(path, ignore=["label"])
    other = tmp_path / "g.csv"
    other.write_text("device,time,metric,value,extra\n")
    with pytest.raises(LoadError, match="differs from the first file's columns"):
        read_csv([path, other], freq="1min")
    with pytest.raises(ValueError, match="duplicates must be one of"):
        read_csv(path, duplicates="median")
    with pytest.raises(ValueError, match="freq must be a positive duration"):
        read_csv(path, freq="-1min")
    with pytest.raises(LoadError, match=r"units name metrics \['voltage'\]"):
        read_csv(path, freq="1min", units={"voltage": "V"})


def test_raw_samples_as_a_dask_dataframe(tmp_path):
    path = tmp_path / "fleet.csv"
    write_csv(FLEET, path)
    frame, report = read_csv_samples(path, blocksize=5_000)
    assert frame.npartitions == report.blocks > 1
    got = frame.compute().reset_index(drop=True)
    expected = to_samples(FLEET).reset_index(drop=True)
    np.testing.assert_array_equal(got["value"].to_numpy(), expected["value"].to_numpy())
    np.testing.assert_array_equal(got["time"].to_numpy(), expected["time"].to_numpy())
    assert list(got["device"]) == list(expected["device"])
    assert report.rows_read == len(got)


def test_loads_on_the_cluster_workers(client, tmp_path):
    path = tmp_path / "fleet.csv"
    write_csv(FLEET, path)
    from distributed import get_task_stream

    with warnings.catch_warnings(), get_task_stream(client) as ts:
        warnings.simplefilter("error")  # freq is given: no warning at all
        ds = read_csv(path, freq="1min", blocksize=20_000)
    # each block was binned in the task after its parse, and only the device
    # groups' slices of those bins were added up (its samples were not cut)
    ran = [str(t["key"]) for t in ts.data]
    for name, present in (("bin-block-", True), ("group-partial-", True),
                          ("bin-samples-", False)):
        assert any(k.startswith(name) for k in ran) == present, name
    # the chunks are held by the workers, not computed on the client
    keys = {k for v in client.has_what().values() for k in v}
    # (the device groups' grids, binned in the parse blocks and added up there)
    assert any("regularize-partials" in str(k) for k in keys)
    assert_fleet_equal(ds.compute())
    xr.testing.assert_equal(ds.temperature.compute(), ds.temperature.compute())
