"""The documentation site builds in strict mode: a broken link, a missing page or
an API reference that does not resolve fails the build, and so this test."""

from __future__ import annotations

import os
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

