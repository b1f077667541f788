"""The documentation site builds in strict mode: a broken link, a missing page or
an API reference that does not resolve fails the build, and so this test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert out.returncode == 0, out.stderr[-4000:]
    # the generated pages are there: the API reference from the docstrings and
    # the CLI reference from the command's parser
    api = (tmp_path / "api" / "toolkit" / "index.html").read_text()
    assert "toolkit.connect" in api and "Parameters" in api
    cli = (tmp_path / "cli" / "index.html").read_text()
    assert "iot-toolkit serve-feed" in cli and "--incremental" in cli
    assert (tmp_path / "benchmarks" / "index.html").read_text().count("<table>") >= 5


def _python_blocks(page: str) -> str:
    text = (ROOT / "docs" / page).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, page
    return "\n".join(blocks)


@pytest.mark.slow
def test_the_first_session_on_the_home_and_getting_started_pages_runs():
    """The code a new user copies first -- the home page's and the getting-started
    page's Python blocks, one after the other -- runs as written (in a fresh
    interpreter: it starts a local cluster)."""
    code = ("import matplotlib\nmatplotlib.use('Agg')\n" + _python_blocks("index.md") + "\n"
            + _python_blocks("getting-started.md")
            + "\nassert len(events) and 'f1' in summary.columns\nclient.close()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
