"""`iot-toolkit demo` end to end, as a user runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import xarray as xr

from toolkit import make_fleet
from toolkit.synthetic import METRICS

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).with_name("iot-toolkit"))


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo-out"
    env = {k: v for k, v in os.environ.items() if k != "TOOLKIT_SCHEDULER"}
    run = subprocess.run([CLI, "demo", "--devices", "5", "--days", "1", "--out", str(out)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    assert "Dask dashboard: http://127.0.0.1:" in run.stdout
    assert "Traceback" not in run.stderr
    table = run.stdout[run.stdout.index("kind "):]
    assert "spike" in table or "all" in table
    assert {p.name for p in out.iterdir()} >= {
        "telemetry.zarr", "events.csv", "events.parquet", "health.csv", "ground_truth.csv",
        "evaluation.csv", "summary.csv", "report.html"}

    store = xr.open_zarr(out / "telemetry.zarr")
    assert store.sizes == {"device": 5, "time": 1440}
    for name in METRICS:
        assert store[f"{name}_zscore_score"].dtype == np.float64
        assert store[f"{name}_zscore_flag"].dtype == np.int8
        assert set(np.unique(store[f"{name}_zscore_flag"])) <= {1, 2, 3, 9}
        assert set(np.unique(store[f"{name}_time_gap_flag"])) <= {1, 2, 4, 9}
        assert set(np.unique(store[f"{name}_flag"])) <= {1, 2, 3, 4, 9}

    truth = pd.read_csv(out / "ground_truth.csv", parse_dates=["start", "end"])
    expected = make_fleet(5, 1, seed=0).events
    assert len(truth) == len(expected)
    assert (truth.start.values == expected.start.values).all()

    events = pd.read_csv(out / "events.csv", parse_dates=["start", "end"])
    assert list(events.columns) == ["device", "metric", "kind", "start", "end", "score",
                                    "severity"]
    # every event is a run of suspect flags (z-score) or a failed sample ending a
    # gap (time gaps) in the store, bounded by samples that are not flagged
    assert set(events.kind) <= {"zscore", "time_gap"}
    for ev in events.itertuples():
        flags = store[f"{ev.metric}_{ev.kind}_flag"].sel(device=ev.device).values
        times = store.time.values
        i, j = (np.searchsorted(times, t.to_datetime64()) for t in (ev.start, ev.end))
        assert (flags[i:j + 1] == (3 if ev.kind == "zscore" else 4)).all()
        assert i == 0 or flags[i - 1] < 3 or flags[i - 1] == 9
        assert j == len(times) - 1 or flags[j + 1] < 3 or flags[j + 1] == 9
    summary = pd.read_csv(out / "summary.csv", index_col="kind")
    assert summary.loc["all", "injected"] == len(expected)
    assert summary.loc["all", "detections"] + summary.loc["all", "false"] == len(events)
    assert {"precision", "recall", "f1"} <= set(summary.columns)


def test_ctrl_c_stops_cleanly(tmp_path):
    """Ctrl-C in a terminal: SIGINT to the whole process group."""
    proc = subprocess.Popen(
        [CLI, "demo", "--devices", "400", "--days", "30", "--out", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    _interrupt_when_busy(proc, 1.0)


def _interrupt_when_busy(proc, after: float) -> None:
    """SIGINT to the process group ``after`` seconds past the dashboard line; then
    check it exits 130 with a message, no traceback and no orphan worker."""
    try:
        for line in proc.stdout:
            if line.startswith("Dask dashboard"):
                break
        time.sleep(after)  # the computation is under way
        family = psutil.Process(proc.pid).children(recursive=True)
        assert len(family) >= 2, "expected worker processes"
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    assert "Traceback" not in stderr, stderr
    deadline = time.monotonic() + 20
    while [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]:
        assert time.monotonic() < deadline, "orphan processes after Ctrl-C"
        time.sleep(0.2)


def test_help_and_version():
    run = subprocess.run([CLI, "demo", "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and "--devices" in run.stdout
    run = subprocess.run([CLI, "--version"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("iot-toolkit 0.1.0")


@pytest.mark.parametrize("argv", [["demo", "--devices", "0"], ["demo", "--freq", "soon"],
                                  ["serve-feed", "--fail-rate", "2"]])
def test_bad_arguments_exit_2_with_a_message_not_a_traceback(argv):
    run = subprocess.run([CLI, *argv], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert run.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in run.stderr


def test_ctrl_c_stops_a_pipeline_run_cleanly(tmp_path):
    """`iot-toolkit run` on its own local cluster, interrupted mid-run."""
    from toolkit.synthetic import write_csv

    (tmp_path / "in").mkdir()
    write_csv(make_fleet(n_devices=60, days=4, seed=2).dataset, tmp_path / "in" / "a.csv")
    (tmp_path / "p.toml").write_text(
        '[source]\ntype = "csv"\npaths = ["in/*.csv"]\n[grid]\nfreq = "1min"\n'
        '[detectors]\nzscore = {window = 60, threshold = 6.0}\nanomaly = {}\n'
        '[output]\nfolder = "out"\n')
    env = {k: v for k, v in os.environ.items() if k != "TOOLKIT_SCHEDULER"}
    proc = subprocess.Popen([CLI, "run", str(tmp_path / "p.toml")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)
    # mid-run: on this machine the load ends about 0.6 s past the dashboard line,
    # the computation about 1.3 s and the report about 5 s
    _interrupt_when_busy(proc, 1.5)


@pytest.mark.parametrize("command", ["demo", "run", "check", "sync", "serve-feed", "info"])
def test_every_command_has_complete_help(command):
    import argparse

    from toolkit.cli import _parser

    run = subprocess.run([CLI, command, "--help"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.startswith("usage: iot-toolkit " + command)
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = sub.choices[command]
    assert parser.description, f"{command} has no description"
    undocumented = [a.dest for a in parser._actions if not a.help]
    assert not undocumented, f"{command}: arguments without help: {undocumented}"
