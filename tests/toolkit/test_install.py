"""The installed toolkit as other processes see it: the CLI and Dask workers
started from another folder, the compiled-kernel cache, a stale install."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import kernels

pytestmark = pytest.mark.slow

CLI = str(Path(sys.executable).with_name("iot-toolkit"))
KERNELS_DIR = Path(kernels.__file__).parent


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("TOOLKIT_SCHEDULER",)}
    return env | extra


def test_cli_and_workers_from_another_folder_import_these_kernels(tmp_path):
    info = subprocess.run([CLI, "info"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=_env())
    assert info.returncode == 0, info.stderr
    rows = dict(line.split(None, 1) if " " in line else (line, "")
                for line in info.stdout.replace("kernels package", "kernels_package")
                .replace("kernel cache", "kernel_cache").splitlines())
    assert Path(rows["kernels_package"].strip()) == KERNELS_DIR
    assert Path(rows["kernel_cache"].strip()) == Path(kernels.CACHE_DIR)

    script = textwrap.dedent("""
        import kernels, toolkit
        client = toolkit.connect(n_workers=1, threads_per_worker=1, dashboard_address=None)
        try:
            where = client.run(lambda: __import__("kernels").__file__)
            print(kernels.__file__)
            print(*where.values())
        finally:
            client.close()
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=180, cwd=tmp_path, env=_env())
    assert run.returncode == 0, run.stderr
    client_file, worker_file = run.stdout.split()[-2:]
    assert Path(client_file).parent == KERNELS_DIR
    assert Path(worker_file).parent == KERNELS_DIR


def test_compiled_kernels_are_cached_outside_the_package(tmp_path):
    cache = tmp_path / "cache"
    env = _env(TOOLKIT_CACHE_DIR=str(cache))
    env.pop("NUMBA_CACHE_DIR", None)
    script = ("import numpy as np, kernels; kernels.move_mean(np.arange(5.0), 2); "
              "print(kernels.CACHE_DIR)")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    assert Path(run.stdout.split()[-1]) == cache
    assert list(cache.rglob("*.nbi")), "numba wrote no cache index into the chosen folder"
    in_package = [p for p in KERNELS_DIR.rglob("*") if p.suffix in (".nbi", ".nbc")]
    assert in_package == [], f"compiled code written into the package: {in_package[:3]}"


def test_a_stale_kernels_folder_gives_a_clear_error(tmp_path):
    """What a pip uninstall left behind once: kernels/ holding only a cache."""
    stale = tmp_path / "stale" / "kernels" / "__pycache__"
    stale.mkdir(parents=True)
    (stale / "rolling._move.py311.nbi").write_bytes(b"")
    env = _env(PYTHONPATH=str(tmp_path / "stale"))
    run = subprocess.run([sys.executable, "-c", "import toolkit"], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path, env=env)
    assert run.returncode != 0
    assert "ImportError" in run.stderr and "leftover" in run.stderr
    assert str(tmp_path / "stale" / "kernels") in run.stderr
    assert "AttributeError" not in run.stderr
