"""Pipeline files and runs end to end: over CSV files, over the serve-feed server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from distributed import wait

import kernels
import toolkit
from tests.toolkit.test_report import CHROMIUM, _inspect
from toolkit.feedserver import FeedServerProcess
from toolkit.pipeline import Pipeline, PipelineError, read_config
from toolkit.synthetic import write_csv

CLI = str(Path(sys.executable).with_name("iot-toolkit"))

VALID = """\
title = "test fleet"

[source]
type = "csv"
paths = ["in/*.csv"]

[grid]
freq = "1min"

[checks]
gross_range = { fail = [-40, 85], suspect = [-10, 45] }
spike = { suspect = 4.0, fail = 12.0 }
flat_line = { tolerance = 0.0, suspect = 5, fail = 15 }
time_gap = { max_gap = "10min" }

[detectors]
zscore = { window = 60, threshold = 6.0, min_count = 45 }

[metrics.humidity.checks]
gross_range = { fail = [0, 100] }
spike = false

[output]
folder = "out"
"""


def _write(tmp_path, text, name="pipeline.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("change, message", [
    (("[grid]", "[grid]\nfrequency = 3"),
     r"pipeline.toml, line 8: grid.frequency is not a known key"),
    (('freq = "1min"', 'freq = "soon"'), r"line 8: grid.freq must be a duration"),
    (("suspect = 4.0, fail = 12.0", "suspect = 4.0, fail = 2.0"),
     r"line 12: checks.spike.fail must be above suspect"),
    (("window = 60,", "window = 1,"), r"line 17: detectors.zscore.window must be >= 2"),
    (("window = 60,", 'window = "60",'), r"line 17: detectors.zscore.window must be a whole"),
    (('time_gap = { max_gap = "10min" }', "time_gap = { max_gap = 10 }"),
     r"line 14: checks.time_gap.max_gap must be a duration"),
    (("flat_line", "flat_lines"), r"line 13: checks.flat_lines is not a known check"),
    (('type = "csv"', 'type = "ftp"'), r"line 4: source.type must be one of"),
    (("[metrics.humidity.checks]", "[metrics.humidity.tests]"),
     r"line 19: metrics.humidity.tests is not a known key"),
    (("suspect = [-10, 45]", "suspect = [-50, 45]"),
     r"line 11: checks.gross_range.suspect must lie inside fail"),
    (('folder = "out"', 'folder = "out"\nformat = "zarr"'),
     r"line 25: output.format is not a known key"),
    (('paths = ["in/*.csv"]', "paths = []"), r"line 5: source.paths must be a string"),
    (("[grid]", "[grid]\nfreq2 = \n"), r"not valid TOML: .*line 8"),
    (("zscore = { window", 'anomaly = { period = "1min" }\nzscore = { window'),
     r"line 17: detectors.anomaly.period must span at least 2 bins of the grid"),
    (("zscore = { window", 'anomaly = { period = 7 }\nzscore = { window'),
     r"line 17: detectors.anomaly.period must be \"auto\", a duration"),
])
def test_invalid_files_name_the_key_and_line(tmp_path, change, message):
    path = _write(tmp_path, VALID.replace(*change, 1))
    with pytest.raises(PipelineError, match=message):
        read_config(path)


def test_check_command_exit_codes(tmp_path):
    (tmp_path / "in").mkdir()
    good = _write(tmp_path, VALID)
    run = subprocess.run([CLI, "check", str(good)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 1, run.stdout  # valid, but no CSV file matches yet
    assert "no file" in run.stderr.lower() or "match" in run.stderr.lower(), run.stderr
    write_csv(toolkit.make_fleet(n_devices=2, days=0.1).dataset, tmp_path / "in" / "a.csv")
    run = subprocess.run([CLI, "check", str(good)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert "valid" in run.stdout and "humidity: checks gross_range, flat_line, time_gap" \
        in run.stdout
    bad = _write(tmp_path, VALID.replace("min_count = 45", "min_count = 99"), "bad.toml")
    run = subprocess.run([CLI, "check", str(bad)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "bad.toml, line 17: detectors.zscore.min_count must be at most window" \
        in run.stderr
    run = subprocess.run([CLI, "run", str(bad)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "min_count" in run.stderr
    run = subprocess.run([CLI, "run", "--help"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "--incremental" in run.stdout and "--every" in run.stdout


def _events_from_flags(store: xr.Dataset, kinds: dict) -> set:
    """A plain loop over every flag variable: its runs of flags 3 and 4."""
    out = set()
    times = pd.DatetimeIndex(store.time.values)
    for (metric, kind), name in kinds.items():
        flags = store[name].values
        for d, device in enumerate(store.device.values):
            row, start, worst = flags[d], None, 0
            for i in range(len(row) + 1):
                on = i < len(row) and row[i] in (3, 4)
                if on and start is None:
                    start, worst = i, 0
                if on:
                    worst = max(worst, int(row[i]))
                if not on and start is not None:
                    out.add((str(device), metric, kind, times[start], times[i - 1],
                             "fail" if worst == 4 else "suspect"))
                    start = None
    return out


@pytest.mark.slow
def test_csv_pipeline_end_to_end(tmp_path, client):
    fleet = toolkit.make_fleet(n_devices=5, days=1, seed=4, anomaly_rate=3)
    ds = fleet.dataset
    (tmp_path / "in").mkdir()
    write_csv(ds, tmp_path / "in" / "fleet.csv")
    path = _write(tmp_path, VALID)
    from distributed import get_task_stream

    with get_task_stream(client) as ts:
        run = subprocess.run([CLI, "run", str(path), "--scheduler", client.scheduler.address,
                              "--no-progress"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "Dask dashboard:" in run.stdout and "load report" in run.stdout
    # the CSV blocks were binned in the task after their parse, as read_csv does
    assert any(str(t["key"]).startswith("group-partial-") for t in ts.data)
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} >= {"telemetry.zarr", "events.parquet",
                                               "events.csv", "health.csv", "report.html"}
    store = xr.open_zarr(out / "telemetry.zarr").load()
    metrics = list(ds.data_vars)
    # the regularised data: one sample per bin, so the fleet's own values
    for m in metrics:
        np.testing.assert_array_equal(store[m].values, ds[m].values)
    # the z-score against numpy, two-pass over each window: the 60 samples before
    # each one, at least 45 of them valid
    for m in metrics:
        x = ds[m].values
        padded = np.concatenate([np.full((x.shape[0], 60), np.nan), x], axis=1)
        windows = np.lib.stride_tricks.sliding_window_view(padded, 60, axis=1)[:, :-1]
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(windows, axis=-1)
            std = np.nanstd(windows, axis=-1, ddof=1)
            top = np.nanmax(windows, axis=-1)
            constant = top == np.nanmin(windows, axis=-1)
        enough = (~np.isnan(windows)).sum(axis=-1) >= 45
        with np.errstate(all="ignore"):
            z = np.where(enough, (x - mean) / std, np.nan)
            # a constant window (a stuck sensor) has no spread: +-inf, or NaN when equal
            z = np.where(enough & constant, np.where(x == top, np.nan,
                                                     np.sign(x - top) * np.inf), z)
        np.testing.assert_allclose(store[f"{m}_zscore_score"].values, z, rtol=1e-9,
                                   atol=1e-9)
        expected = np.where(np.abs(z) > 6.0, 3, 1)
        expected[np.isnan(z)] = 2
        expected[np.isnan(ds[m].values)] = 9
        np.testing.assert_array_equal(store[f"{m}_zscore_flag"].values, expected)
    # the humidity checks: its own gross range, no spike test
    assert "humidity_spike_flag" not in store and "temperature_spike_flag" in store
    h = ds.humidity.values
    gr = np.where((h < 0) | (h > 100), 4, 1)
    gr[np.isnan(h)] = 9
    np.testing.assert_array_equal(store.humidity_gross_range_flag.values, gr)
    # events: exactly the runs of flags in the store, in both formats
    events = pd.read_parquet(out / "events.parquet")
    kinds = {(str(v.attrs["metric"]), str(v.attrs["test"])): name
             for name, v in store.data_vars.items() if "test" in v.attrs}
    assert _events_from_flags(store, kinds) == {
        (e.device, e.metric, e.kind, e.start, e.end, e.severity)
        for e in events.itertuples()}
    assert set(events.kind) >= {"zscore", "time_gap", "spike"}
    csv = pd.read_csv(out / "events.csv", parse_dates=["start", "end"])
    pd.testing.assert_frame_equal(csv, events, check_dtype=False)
    # the summary agrees with both
    health = pd.read_csv(out / "health.csv", index_col="device")
    by_device = events.groupby("device").kind.value_counts().unstack(fill_value=0)
    for device in health.index:
        counts = by_device.loc[device] if device in by_device.index else {}
        assert health.loc[device, "gaps"] == counts.get("time_gap", 0)
        assert health.loc[device, "stuck_periods"] == counts.get("flat_line", 0)
        for kind in by_device.columns:
            assert health.loc[device, f"events_{kind}"] == counts.get(kind, 0)
        worst = np.stack([store[f"{m}_flag"].sel(device=device).values for m in metrics])
        assert health.loc[device, "flags_fail"] == int((worst == 4).sum())
        assert health.loc[device, "flags_suspect"] == int((worst == 3).sum())
    # the aggregate flag is the worst of the metric's tests
    tests = [store[kinds[("temperature", k)]].values for k in
             ("gross_range", "spike", "flat_line", "time_gap", "zscore")]
    counted = [np.where(np.isin(t, (1, 3, 4)), t, 0) for t in tests]
    agg = np.max(counted, axis=0)
    agg = np.where(agg == 0, 2, agg)
    agg[np.isnan(store.temperature.values)] = 9
    np.testing.assert_array_equal(store.temperature_flag.values, agg)
    # the report: its sections, and a real browser loads it
    text = (out / "report.html").read_text()
    for section in ("Run parameters", "Load report", "Fleet overview", "Most anomalous",
                    "Flag statistics", "Device health"):
        assert f"<h2>{section}" in text
    if CHROMIUM:
        seen = asyncio.run(_inspect(CHROMIUM, (out / "report.html").as_uri()))
        assert seen["loaded"] and seen["errors"] == []
        assert seen["images"] and all(done and width > 0 for done, width in seen["images"])
    # the same inputs again: the same outputs
    first = {p: (out / p).read_bytes() for p in ("events.csv", "health.csv")}
    again = Pipeline.from_file(path).run(client, progress=False, echo=lambda *a: None)
    assert again.mode == "full"
    assert {p: (out / p).read_bytes() for p in first} == first
    xr.testing.assert_identical(xr.open_zarr(out / "telemetry.zarr").load(), store)
    # nothing new: an incremental run says so and changes nothing
    same = Pipeline.from_file(path).run(client, incremental=True, progress=False,
                                        echo=lambda *a: None)
    assert same.mode == "nothing new"


def _alerts(url: str) -> list:
    with urllib.request.urlopen(url + "/devices/alerts", timeout=30) as resp:
        body = json.loads(resp.read())
    return body["alerts"] if isinstance(body, dict) else body


@pytest.mark.slow
def test_feed_pipeline_end_to_end_with_alerts(tmp_path, client):
    with FeedServerProcess(devices=4, days=0.5, freq="1min", seed=6) as server:
        raw = {"source": {"type": "http", "url": server.url + "/sta/v1.1",
                          "format": "sensorthings"},
               "grid": {"freq": "1min"},
               "checks": {"time_gap": {"max_gap": "10min"}},
               "detectors": {"zscore": {"window": 60, "threshold": 5.0, "min_count": 45}},
               "output": {"folder": "out", "report": False},
               "alerts": {"url": server.url + "/devices/alerts"}}
        pipeline = Pipeline.from_dict(raw, base=tmp_path)
        result = pipeline.run(client, progress=False, echo=lambda *a: None)
        fleet = toolkit.make_fleet(4, 0.5, "1min", seed=6).dataset
        store = xr.open_zarr(result.store).load()
        for m in fleet.data_vars:
            np.testing.assert_array_equal(store[m].values, fleet[m].values)
        assert len(result.events) > 0
        assert result.alerts.created == len(result.events)
        received = _alerts(server.url)
        assert len(received) == len(result.events)
        # again, incrementally: nothing new in the feed, no alert twice
        again = pipeline.run(client, incremental=True, progress=False, echo=lambda *a: None)
        assert again.mode == "nothing new"
        full = Pipeline.from_dict(raw, base=tmp_path).run(client, progress=False,
                                                          echo=lambda *a: None)
        assert full.alerts.created == 0 and full.alerts.duplicates == len(result.events)
        assert len(_alerts(server.url)) == len(result.events)


def test_gridded_zarr_source_reads_and_bins_inside_the_chain_tasks(tmp_path, client):
    """A fleet already on a 1-minute grid, in Zarr, regularised to 5 minutes by the
    chain tasks themselves: the values and counts equal regularize() on the
    whole fleet, the flags equal the kernels' on them, and the run is one task
    per chunk of devices up to the store (no task per metric), on the store's
    own device chunks (3 devices: 3 tasks, where the cluster alone would make
    tasks of 2 devices, 4 of them, and read the middle stored chunks twice)."""
    fleet = toolkit.make_fleet(n_devices=7, days=0.5, freq="1min", seed=5).dataset
    fleet = fleet[["temperature", "humidity"]].reset_coords(drop=True)
    fleet.chunk(device=3).to_zarr(tmp_path / "fleet.zarr", zarr_format=2)
    pipeline = Pipeline.from_dict({
        "source": {"type": "zarr", "path": "fleet.zarr"}, "grid": {"freq": "5min"},
        "checks": {"gross_range": {"fail": [-40, 85], "suspect": [0, 30]}},
        "output": {"folder": "out", "report": False}}, base=tmp_path)
    from distributed import get_task_stream
    with get_task_stream(client) as ts:
        result = pipeline.run(client, progress=False, echo=lambda *a: None)
    got = xr.open_zarr(result.store).load()
    expected = fleet.telemetry.regularize("5min").load()
    for m in ("temperature", "humidity"):
        np.testing.assert_array_equal(got[m].values, expected[m].values)
        np.testing.assert_array_equal(got[f"{m}_count"].values, expected[f"{m}_count"].values)
        flag = kernels.gross_range(expected[m].values, (-40, 85), (0, 30))
        np.testing.assert_array_equal(got[f"{m}_gross_range_flag"].values, flag)
    # the health summary counted in the chain tasks equals the one read from the store
    from toolkit.report import health_summary
    flags = got[[f"{m}_flag" for m in ("temperature", "humidity")]].rename(
        {f"{m}_flag": m for m in ("temperature", "humidity")})
    expected_health = health_summary(got[["temperature", "humidity"]], flags, result.events)
    pd.testing.assert_frame_equal(result.health, expected_health)
    assert (result.health.flags_pass > 0).all()
    chains = [t for t in ts.data if "pipeline-chain" in str(t["key"])]
    assert len(chains) == 3 and not [t for t in ts.data if "regularize" in str(t["key"])]
    with pytest.raises(toolkit.errors.ArgumentError, match="read whole"):
        pipeline.run(client, incremental=True, progress=False, echo=lambda *a: None)


def _small_zarr_pipeline(tmp_path):
    fleet = toolkit.make_fleet(n_devices=4, days=0.25, freq="1min", seed=3).dataset
    fleet = fleet[["temperature"]].reset_coords(drop=True)
    fleet.chunk(device=2).to_zarr(tmp_path / "fleet.zarr", zarr_format=2)
    return Pipeline.from_dict({
        "source": {"type": "zarr", "path": "fleet.zarr"}, "grid": {"freq": "5min"},
        "checks": {"gross_range": {"fail": [-40, 85], "suspect": [0, 30]}},
        "output": {"folder": "out", "report": False}}, base=tmp_path), fleet


def test_a_full_run_writes_the_store_metadata_while_the_chain_tasks_compute(
        tmp_path, client, monkeypatch):
    """The client writes the output store's metadata beside the chain tasks, which
    wait for it only to write: with a metadata write made slow, the tasks start
    before it ends, and the store is still whole and right."""
    from distributed import get_task_stream

    pipeline, fleet = _small_zarr_pipeline(tmp_path)
    original = xr.Dataset.to_zarr
    done = []

    def slow_to_zarr(self, *args, **kwargs):
        time.sleep(1.0)
        out = original(self, *args, **kwargs)
        done.append(time.time())
        return out

    monkeypatch.setattr(xr.Dataset, "to_zarr", slow_to_zarr)
    with get_task_stream(client) as ts:
        result = pipeline.run(client, progress=False, echo=lambda *a: None)
    monkeypatch.undo()
    chains = [s["start"] for t in ts.data if "pipeline-chain" in str(t["key"])
              for s in t["startstops"] if s["action"] == "compute"]
    assert len(done) == 1 and chains and min(chains) < done[0]
    got = xr.open_zarr(result.store).load()
    expected = fleet.telemetry.regularize("5min").load()
    np.testing.assert_array_equal(got.temperature.values, expected.temperature.values)
    assert not list((tmp_path / "out").glob(".*.ready"))


def test_a_store_metadata_that_cannot_be_written_fails_the_run_at_once(
        tmp_path, client, monkeypatch):
    """The chain tasks are told, not left waiting: the run raises the metadata's
    own error within seconds, every worker is free at once after it, and the
    marker that told them is removed by the next run."""
    pipeline, _ = _small_zarr_pipeline(tmp_path)

    def broken(self, *args, **kwargs):
        raise OSError("disk full (made up by the test)")

    monkeypatch.setattr(xr.Dataset, "to_zarr", broken)
    started = time.perf_counter()
    with pytest.raises(OSError, match="made up by the test"):
        pipeline.run(client, progress=False, echo=lambda *a: None)
    assert time.perf_counter() - started < 60
    # a chain task still waiting for the marker would hold its worker's only thread
    workers = list(client.scheduler_info()["workers"])
    free = [client.submit(int, 7, workers=[w], pure=False) for w in workers]
    wait(free, timeout=30)  # a TimeoutError while a worker's thread is held
    assert [f.result() for f in free] == [7] * len(workers)
    (left,) = (tmp_path / "out").glob(".*.ready")
    assert left.read_text().startswith("failed: OSError")
    monkeypatch.undo()
    pipeline.run(client, progress=False, echo=lambda *a: None)
    assert not list((tmp_path / "out").glob(".*.ready"))


def test_a_chain_task_waits_for_the_marker_and_names_what_is_missing(tmp_path):
    from toolkit.pipeline.run import _wait_until_ready

    with pytest.raises(PipelineError, match="not visible from this worker.*must be shared"):
        _wait_until_ready(str(tmp_path / "elsewhere" / ".telemetry.zarr-x.ready"))
    marker = tmp_path / ".telemetry.zarr-x.ready"
    with pytest.raises(PipelineError, match="not written within 0 s.*shared with the workers"):
        _wait_until_ready(str(marker), timeout=0.05)
    marker.write_text("failed: OSError: no space")
    with pytest.raises(PipelineError, match="could not be written.*no space"):
        _wait_until_ready(str(marker))
    marker.write_text("ok")
    _wait_until_ready(str(marker))
