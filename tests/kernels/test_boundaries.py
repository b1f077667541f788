"""kernels/ imports numpy and numba only (and the standard library)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import kernels

ALLOWED = {"numpy", "numba", "kernels"}


def test_kernels_import_only_numpy_and_numba():
    root = Path(kernels.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert files
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: inside kernels
                    continue
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in ALLOWED or top in sys.stdlib_module_names, (
                    f"{path.name} imports {name}: kernels/ may import numpy and "
                    "numba only")
