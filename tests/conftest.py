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


@pytest.fixture(scope="session")
def client():
    """A real LocalCluster: 2 worker processes of 1 thread, no dashboard."""
    from toolkit import connect

    with connect(n_workers=2, threads_per_worker=1, dashboard_address=None,
                 memory_limit="2GiB") as c:
        yield c
