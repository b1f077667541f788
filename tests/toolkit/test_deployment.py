"""A deployment as on several machines: a scheduler and workers started as
separate ``dask scheduler`` / ``dask worker`` processes, reached by address."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import toolkit
from toolkit import make_fleet

DASK = Path(sys.executable).with_name("dask")


def _start(args, log):
    return subprocess.Popen([str(DASK), *args], stdout=log, stderr=subprocess.STDOUT,
                            env=os.environ | {"PYTHONUNBUFFERED": "1"})


def _stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def address(tmp_path_factory):
    folder = tmp_path_factory.mktemp("deployment")
    file = folder / "scheduler.json"
    log = open(folder / "log.txt", "w")  # noqa: SIM115  (closed below)
    scheduler = _start(["scheduler", "--host", "127.0.0.1", "--port", "0",
                        "--no-dashboard", "--scheduler-file", str(file)], log)
    workers = None
    try:
        deadline = time.monotonic() + 60
        while not file.exists() and time.monotonic() < deadline:
            assert scheduler.poll() is None, (folder / "log.txt").read_text()
            time.sleep(0.2)
        time.sleep(0.2)  # the file is written whole, but let the writer close it
        addr = json.loads(file.read_text())["address"]
        workers = _start(["worker", addr, "--nworkers", "2", "--nthreads", "1",
                          "--memory-limit", "1GiB", "--no-dashboard"], log)
        yield addr
    finally:
        for proc in (workers, scheduler):
            if proc is not None:
                _stop(proc)
        log.close()


def test_accessor_pipeline_on_separate_processes(address):
    with toolkit.connect(address) as client:
        client.wait_for_workers(2, timeout=60)
        assert len(client.scheduler_info()["workers"]) == 2
        # the workers are other processes than this one and the scheduler
        pids = set(client.run(os.getpid).values())
        assert len(pids) == 2 and os.getpid() not in pids

        fleet = make_fleet(n_devices=4, days=0.5, seed=5, anomaly_rate=10.0).dataset
        ds = fleet[["temperature", "pressure"]]

        def pipeline(d):
            regular = d.telemetry.regularize("5min")
            return xr.merge([
                regular.telemetry.rolling(window=6, min_count=3).std()
                .rename(temperature="t_std", pressure="p_std"),
                regular.telemetry.ewm(halflife=4).mean()
                .rename(temperature="t_ewm", pressure="p_ewm"),
                regular.telemetry.flags.flat_line(0.0, 3, 6)
                .rename(temperature="t_flat", pressure="p_flat"),
            ], compat="override", join="exact", combine_attrs="drop")

        eager = pipeline(ds)
        lazy = pipeline(ds.chunk(device=2, time=41))
        got = client.compute(lazy).result()
        xr.testing.assert_allclose(got, eager, rtol=1e-12)
        # the scheduler saw the named operations
        names = {key.split("-")[0] for key in client.run_on_scheduler(
            lambda dask_scheduler: list(dask_scheduler.task_prefixes))}
        assert {"regularize", "rolling", "ewm", "flat"} <= names

        flags = ds.chunk(time=50).telemetry.flags.spike(0.5, 2.0)
        events = flags.telemetry.events()
        assert len(events) > 0
        np.testing.assert_array_equal(
            events.sort_values(["device", "metric", "start"]).to_numpy(),
            ds.telemetry.flags.spike(0.5, 2.0).telemetry.events()
            .sort_values(["device", "metric", "start"]).to_numpy())
