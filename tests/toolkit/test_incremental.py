"""Incremental runs equal one full run: any arrivals, and runs killed mid-way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import toolkit
from toolkit.pipeline import Pipeline

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).with_name("iot-toolkit"))
QUIET = {"progress": False, "echo": lambda *a: None}

CONFIG = {
    "source": {"type": "csv", "paths": ["in/*.csv"], "time": "time"},
    "grid": {"freq": "1min"},
    "checks": {"gross_range": {"fail": [-40, 85], "suspect": [0, 40]},
               "spike": {"suspect": 2.0, "fail": 6.0},
               "rate_of_change": {"threshold": 1.5, "per": "1min"},
               "flat_line": {"tolerance": 0.0, "suspect": 4, "fail": 12},
               "time_gap": {"max_gap": "5min"}},
    "detectors": {"zscore": {"window": 20, "threshold": 3.0, "min_count": 15},
                  "anomaly": {"threshold": 0.999, "warmup": 30, "merge_gap": 3, "cooldown": 10}},
    "output": {"report": False},
}


def _samples() -> pd.DataFrame:
    """Long-form samples every 30 s (two per 1-minute bin), with stuck runs, spikes
    and gaps placed where arrivals are likely to cut them."""
    fleet = toolkit.make_fleet(n_devices=3, days=0.25, freq="30s", seed=11, anomaly_rate=4)
    ds = fleet.dataset[["temperature", "humidity"]].reset_coords(drop=True).load()
    t = ds.temperature.values
    t[0, 100:260] = 21.5          # stuck for 80 minutes
    t[1, 300] += 15.0             # spikes
    t[1, 301] -= 9.0
    t[2, 200:240] = np.nan        # a 20-minute gap
    long = ds.to_dataframe().reset_index().melt(
        id_vars=["device", "time"], var_name="metric", value_name="value")
    return long.dropna(subset=["value"]).sort_values(["time", "device", "metric"],
                                                     ignore_index=True)


SAMPLES = _samples()
#: the first samples hold one of each device and metric: a first arrival cut
#: later has every series (a new one would make the next run a full one)
SERIES = 6


def _pipeline(folder: Path) -> Pipeline:
    return Pipeline.from_dict({**CONFIG, "output": {**CONFIG["output"], "folder": "out"}},
                              base=folder)


def _write(folder: Path, part: pd.DataFrame, k: int) -> None:
    (folder / "in").mkdir(parents=True, exist_ok=True)
    part.to_csv(folder / "in" / f"part-{k:02d}.csv", index=False,
                date_format="%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture(scope="module")
def full(tmp_path_factory, client):
    folder = tmp_path_factory.mktemp("full")
    _write(folder, SAMPLES, 0)
    result = _pipeline(folder).run(client, **QUIET)
    return xr.open_zarr(result.store).load(), result.events


def _same(folder: Path, full) -> None:
    store, events = full
    got = xr.open_zarr(folder / "out" / "telemetry.zarr").load()
    assert sorted(got.data_vars) == sorted(store.data_vars)
    np.testing.assert_array_equal(got.time.values, store.time.values)
    np.testing.assert_array_equal(got.device.values, store.device.values)
    for name, v in store.data_vars.items():
        if v.dtype.kind == "f":
            np.testing.assert_allclose(got[name].values, v.values, rtol=1e-9, atol=1e-12,
                                       err_msg=name)
        else:
            np.testing.assert_array_equal(got[name].values, v.values, err_msg=name)
    table = pd.read_parquet(folder / "out" / "events.parquet")
    pd.testing.assert_frame_equal(table.drop(columns="score"), events.drop(columns="score"))
    np.testing.assert_allclose(table.score.values, events.score.values, rtol=1e-9)


def test_the_full_run_has_events_worth_cutting(full):
    store, events = full
    kinds = set(events.kind)
    assert {"flat_line", "time_gap", "spike", "zscore", "anomaly"} <= kinds
    long = events[(events.end - events.start) >= pd.Timedelta("30min")]
    assert len(long), "a long event, for arrivals to cut through"


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(SERIES, len(SAMPLES) - 1), min_size=1, max_size=6,
                    unique=True))
def test_arrivals_at_random_times_give_the_full_result(tmp_path_factory, client, full, cuts):
    """2-7 arrivals, cut at random samples (so also inside a bin, a stuck run, an
    event), each processed incrementally: the store and events of one full run."""
    assert SAMPLES.iloc[:SERIES].groupby(["device", "metric"]).ngroups == SERIES
    folder = tmp_path_factory.mktemp("arrivals")
    bounds = [0, *sorted(cuts), len(SAMPLES)]
    pipeline = _pipeline(folder)
    modes = []
    for k in range(len(bounds) - 1):
        _write(folder, SAMPLES.iloc[bounds[k]:bounds[k + 1]], k)
        modes.append(pipeline.run(client, incremental=True, **QUIET).mode)
    assert modes == ["full"] + ["incremental"] * (len(bounds) - 2)
    _same(folder, full)


def test_fused_and_unfused_writes_give_identical_stores(tmp_path, client):
    """The chain tasks writing their regions themselves (the default) and xarray's
    to_zarr (a task per variable and chunk) leave the same store: a full run, then
    an incremental one that writes into a region of the resized store."""
    half = len(SAMPLES) // 2
    stores = {}
    for fuse in (True, False):
        folder = tmp_path / f"fuse-{fuse}"
        pipeline = _pipeline(folder)
        _write(folder, SAMPLES.iloc[:half], 0)
        first = pipeline.run(client, incremental=True, fuse_writes=fuse, **QUIET)
        _write(folder, SAMPLES.iloc[half:], 1)
        second = pipeline.run(client, incremental=True, fuse_writes=fuse, **QUIET)
        assert (first.mode, second.mode) == ("full", "incremental")
        stores[fuse] = xr.open_zarr(second.store).load()
        stores[fuse].attrs.pop("source")  # the input folder, which differs
    xr.testing.assert_identical(stores[True], stores[False])
    assert stores[True].temperature_flat_line_flag.isin([1, 2, 3, 4, 9]).all()


def test_late_samples_new_devices_and_changed_files_fall_back_to_a_full_run(tmp_path, client,
                                                                             full):
    pipeline = _pipeline(tmp_path)
    half = len(SAMPLES) // 2
    first = SAMPLES.iloc[:half]
    _write(tmp_path, first[first.device != "dev-0002"], 0)
    pipeline.run(client, incremental=True, **QUIET)
    # dev-0002's first half arrives late, with the second half of the rest
    rest = pd.concat([first[first.device == "dev-0002"], SAMPLES.iloc[half:]])
    _write(tmp_path, rest, 1)
    result = pipeline.run(client, incremental=True, **QUIET)
    assert result.mode == "full" and "reach back" in result.reason
    _same(tmp_path, full)
    # a file read before changes: a full run again
    os.utime(tmp_path / "in" / "part-00.csv", ns=(1, 1))
    result = pipeline.run(client, incremental=True, **QUIET)
    assert result.mode == "full" and "changed" in result.reason
    _same(tmp_path, full)


@pytest.mark.parametrize("delay", [None, 0.0, 0.15, 0.4, 0.8])
def test_a_run_killed_at_any_moment_and_run_again_gives_the_full_result(tmp_path, client, full,
                                                                        delay):
    """SIGKILL before the run starts writing (None), or ``delay`` seconds after it
    began to append (the store already resized, the state not yet replaced)."""
    pipeline = _pipeline(tmp_path)
    third = len(SAMPLES) // 3
    _write(tmp_path, SAMPLES.iloc[:third], 0)
    pipeline.run(client, incremental=True, **QUIET)
    _write(tmp_path, SAMPLES.iloc[third:2 * third], 1)
    config = tmp_path / "pipeline.toml"
    config.write_text(_toml(CONFIG))
    proc = subprocess.Popen([CLI, "run", str(config), "--incremental", "--no-progress",
                             "--scheduler", client.scheduler.address],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    for line in proc.stdout:
        if delay is None and line.startswith("new since the last run"):
            break
        if delay is not None and line.startswith("incremental run"):
            time.sleep(delay)
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    state = json.loads((tmp_path / "out" / ".pipeline" / "state.json").read_text())
    if delay == 0.0:  # killed mid-append: the store is longer than the state says
        written = xr.open_zarr(tmp_path / "out" / "telemetry.zarr", consolidated=False)
        assert written.sizes["time"] > state["n"] and state["run"] == 1
    again = pipeline.run(client, incremental=True, **QUIET)
    assert again.mode in ("incremental", "nothing new")
    _write(tmp_path, SAMPLES.iloc[2 * third:], 2)
    assert pipeline.run(client, incremental=True, **QUIET).mode == "incremental"
    _same(tmp_path, full)


def test_run_every_repeats_incrementally(tmp_path, client):
    pipeline = _pipeline(tmp_path)
    _write(tmp_path, SAMPLES.iloc[:100], 0)
    lines = []
    results = pipeline.run_every("50ms", client, runs=2, progress=False, echo=lines.append)
    assert [r.mode for r in results] == ["full", "nothing new"]
    assert any(line.startswith("run 1 (full") for line in lines)


def _toml(config: dict) -> str:
    """The test's pipeline as a file (the few value types it uses)."""
    def value(v):
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return f'"{v}"'
        return repr(v)

    lines = []
    for section, body in config.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {value(v)}" for k, v in body.items()]
    lines += ['folder = "out"'] if "output" not in config else []
    text = "\n".join(lines)
    return text.replace("[output]\n", '[output]\nfolder = "out"\n')
