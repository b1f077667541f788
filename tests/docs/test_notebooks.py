"""Every notebook in notebooks/ runs top to bottom in a fresh kernel, and is stored clean.

Each runs in its own temporary folder (the notebooks write their outputs to
the current folder) with a fresh Jupyter kernel of this interpreter; any
error in any cell fails the test, naming the cell.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolkit.localservers import installed

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))
#: the budget of the issue: each notebook in under a minute on 2 cores (the
#: timeout is per cell and generous, so a slow machine fails by error, not here)
CELL_TIMEOUT = 300


def test_there_are_notebooks():
    names = [p.stem for p in NOTEBOOKS]
    assert names == ["01-quickstart", "02-real-sensor-data", "03-scale-out",
                     "04-http-feeds", "05-pipeline-and-report", "06-iot-backends"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_stored_without_outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, path.name


def _servers_missing(path: Path) -> list[str]:
    """The Debian servers a notebook starts that this machine lacks."""
    if path.stem != "06-iot-backends":
        return []
    return [name for name in ("influxd", "mosquitto") if not installed(name)]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    """(Each notebook's time is in the run's list of slowest tests.)"""
    missing = _servers_missing(path)
    if missing:
        pytest.skip(f"{path.name} starts {missing}, not installed here (Debian packages "
                    "influxdb and mosquitto; .ci/run installs them)")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
