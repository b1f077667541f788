"""The one-time numba start-up that kernels/_wrap.py runs with the collector paused."""

from __future__ import annotations

import subprocess
import sys

import pytest

SNIPPET = """
import gc
import numpy as np
import kernels
{before}
out = kernels.move_mean(np.arange(4.0), 2)
print(gc.isenabled(), kernels._wrap._ready, out[-1])
"""


@pytest.mark.parametrize("before, expected", [("", "True"), ("gc.disable()", "False")])
def test_first_call_leaves_the_collector_as_it_was(before, expected):
    # a fresh process, so that the first compiled call really is the first
    done = subprocess.run([sys.executable, "-c", SNIPPET.format(before=before)],
                          capture_output=True, text=True, check=True)
    assert done.stdout.split() == [expected, "True", "2.5"]
