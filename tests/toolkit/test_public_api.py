"""What is public is said once: every toolkit module has an ``__all__`` whose
names exist, and the top level offers one path to each entry point."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import toolkit

MODULES = sorted(m.name for m in pkgutil.walk_packages(toolkit.__path__, "toolkit."))


@pytest.mark.parametrize("name", MODULES)
def test_every_module_says_what_is_public(name):
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names {missing}, which do not exist"


def test_the_top_level_entry_points():
    for name in ("connect", "read_csv", "read_csv_samples", "read_http", "read_http_samples",
                 "sync", "read_store", "alerts", "feed", "Schema", "LoadReport",
                 "make_fleet", "flags_to_events", "ToolkitError"):
        assert name in toolkit.__all__ and hasattr(toolkit, name)
