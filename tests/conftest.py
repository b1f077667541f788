"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

REAL_DATA_ENV = "TOOLKIT_REAL_DATA"

# CI replays the same examples on every run (a red CI is then reproducible);
# local runs draw new ones, which is how new failures are found.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The folder of public sensor data sets, or a skip saying why not."""
    folder = os.environ.get(REAL_DATA_ENV)
    if not folder:
        pytest.skip(f"{REAL_DATA_ENV} is unset: set it to the shared/data folder "
                    "to run the tests on real sensor data (.ci/run does)")
    path = Path(folder)
    if not (path / "README.md").exists():
        pytest.fail(f"{REAL_DATA_ENV}={folder!r} is not the shared data folder "
                    "(no README.md there)")
    return path


@pytest.fixture(autouse=True)
def _cluster_only_when_asked(request):
    """A test runs on the cluster when it asks for the ``client`` fixture, and
    only then. Without this, every Dask computation of a test that comes after
    the first ``client`` user would go to that session's cluster (a Client is
    Dask's default scheduler while it lives): whether a test ran on worker
    processes would depend on the order of the tests, and a property test of
    many tiny graphs would pay the cluster's per-graph cost on each (75 s
    instead of 6 s for one of them). The others use Dask's threads; a test
    that starts a Client of its own makes that the default inside it."""
    if "client" in request.fixturenames:
        yield
        return
    import dask

    with dask.config.set(scheduler="threads"):
        yield


@pytest.fixture(scope="session")
def client():
    """A real LocalCluster: 2 worker processes of 1 thread, no dashboard."""
    from toolkit import connect

    with connect(n_workers=2, threads_per_worker=1, dashboard_address=None,
                 memory_limit="2GiB") as c:
        yield c
