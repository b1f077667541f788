"""connect(): a local cluster of processes, or a scheduler reached by address."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import xarray as xr
from distributed import LocalCluster, Nanny

from toolkit import ClusterConnectionError, connect, make_fleet, rolling_zscore
from toolkit.cluster import worker_environ
from toolkit.localservers import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def separate_scheduler():
    """A scheduler and a worker started as their own processes, as on other hosts."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "dask"]
    procs = [subprocess.Popen(dask + ["scheduler", "--host", "127.0.0.1", "--port",
                                      str(port), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    procs.append(subprocess.Popen(dask + ["worker", address, "--nworkers", "1",
                                          "--nthreads", "2", "--no-dashboard",
                                          "--host", "127.0.0.1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


def wait_for_workers(client, n, timeout=60):
    deadline = time.monotonic() + timeout
    while len(client.scheduler_info()["workers"]) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {n} workers after {timeout} s")
        time.sleep(0.2)


def check_computes_like_numpy(client):
    fleet = make_fleet(n_devices=4, days=0.5, seed=9, chunks=2)
    lazy = rolling_zscore(fleet.dataset, window=20)
    got = client.compute(lazy).result()
    expected = rolling_zscore(fleet.dataset.compute(), window=20)
    xr.testing.assert_allclose(got, expected)
    # the data were generated on the workers: the worker holds the results
    assert client.scheduler_info()["workers"]


def test_connect_by_address(separate_scheduler):
    with connect(separate_scheduler, timeout=30) as client:
        assert client.scheduler.address == separate_scheduler
        assert client.cluster is None  # nothing was started locally
        wait_for_workers(client, 1)
        check_computes_like_numpy(client)


def test_connect_by_environment_variable(separate_scheduler, monkeypatch):
    monkeypatch.setenv("TOOLKIT_SCHEDULER", separate_scheduler)
    with connect(timeout=30) as client:
        assert client.scheduler.address == separate_scheduler
        wait_for_workers(client, 1)
        assert sum(client.nthreads().values()) == 2


def test_local_cluster_of_processes_on_loopback(monkeypatch):
    monkeypatch.delenv("TOOLKIT_SCHEDULER", raising=False)
    client = connect(n_workers=2, threads_per_worker=1)
    try:
        cluster = client.cluster
        assert isinstance(cluster, LocalCluster)
        assert all(isinstance(w, Nanny) for w in cluster.workers.values())
        assert client.dashboard_link.startswith("http://127.0.0.1:")
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        check_computes_like_numpy(client)
        pids = [w.process.pid for w in cluster.workers.values()]
        assert all(psutil.pid_exists(p) for p in pids)
        # the workers started with the heap settings of worker_environ()
        env = client.run(lambda: (os.environ.get("MALLOC_MMAP_THRESHOLD_"),
                                  os.environ.get("MALLOC_TRIM_THRESHOLD_"),
                                  os.environ.get("GLIBC_TUNABLES")))
        limit = min(w["memory_limit"] for w in client.scheduler_info()["workers"].values())
        expected = worker_environ(limit)
        assert set(env.values()) == {(str(expected["MALLOC_MMAP_THRESHOLD_"]),
                                      str(expected["MALLOC_TRIM_THRESHOLD_"]),
                                      expected["GLIBC_TUNABLES"])}
        if _huge_pages_on_request():
            # a 64 MiB buffer (as a Zarr chunk read) is mapped in huge pages:
            # 16,384 faults of 4 KiB pages without them
            faults = client.run(_faults_of_a_large_buffer)
            assert all(n < 2000 for n in faults.values()), faults
    finally:
        client.close()
    # closing the client shut the cluster and its worker processes down
    assert cluster.status.name == "closed"
    deadline = time.monotonic() + 20
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
              for p in pids):
        assert time.monotonic() < deadline, "worker processes outlived the client"
        time.sleep(0.2)


def _huge_pages_on_request() -> bool:
    try:
        mode = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False
    import platform

    return "[madvise]" in mode and platform.libc_ver()[0] == "glibc" and \
        tuple(int(x) for x in platform.libc_ver()[1].split(".")[:2]) >= (2, 35)


def _faults_of_a_large_buffer() -> int:
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer = bytearray(64 * 2**20)  # zeroed: every page touched
    after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    del buffer
    return after - before


def test_default_size_follows_the_machine(monkeypatch):
    monkeypatch.delenv("TOOLKIT_SCHEDULER", raising=False)
    with connect(dashboard_address=None) as client:
        # one single-threaded worker process per core
        assert sorted(client.nthreads().values()) == [1] * len(os.sched_getaffinity(0))


def test_unreachable_scheduler_is_a_clear_error():
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(ClusterConnectionError, match=f"no Dask scheduler answered at '{address}'"):
        connect(address, timeout=2)


def test_cluster_options_with_an_address_are_refused():
    with pytest.raises(TypeError, match=r"\['n_workers'\] only apply"):
        connect("tcp://127.0.0.1:8786", n_workers=2)


def test_worker_environ_keeps_what_the_user_chose(monkeypatch):
    import dask

    import toolkit.cluster

    small = worker_environ("512MiB")
    assert (small["MALLOC_MMAP_THRESHOLD_"], small["MALLOC_TRIM_THRESHOLD_"]) == \
        (16 * 2**20, 32 * 2**20)  # a 32nd and a 16th of a small limit
    with dask.config.set({"distributed.nanny.pre-spawn-environ": {
            "MALLOC_TRIM_THRESHOLD_": 1, "OMP_NUM_THREADS": 1}}):
        env = worker_environ("8GiB")
    assert env["MALLOC_TRIM_THRESHOLD_"] == 1 and env["OMP_NUM_THREADS"] == 1
    assert env["MALLOC_MMAP_THRESHOLD_"] == 32 * 2**20
    monkeypatch.setitem(toolkit.cluster._USER_HEAP, "MALLOC_MMAP_THRESHOLD_", "4096")
    assert "MALLOC_MMAP_THRESHOLD_" not in worker_environ("8GiB")
    # the user's own glibc tunables are kept, huge pages added unless they chose
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
    monkeypatch.setitem(toolkit.cluster._USER_HEAP, "GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    assert worker_environ("8GiB")["GLIBC_TUNABLES"] == \
        "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    monkeypatch.setitem(toolkit.cluster._USER_HEAP, "GLIBC_TUNABLES", "glibc.malloc.hugetlb=0")
    assert worker_environ("8GiB")["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=0"
