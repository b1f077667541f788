"""Names every doctest in toolkit/ and kernels/ may use without importing them."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr


@pytest.fixture(scope="session")
def _small_fleet():
    from toolkit import make_fleet

    return make_fleet(n_devices=2, days=0.1, seed=0).dataset


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace, request):
    doctest_namespace.update(np=np, pd=pd, xr=xr)
    if any(name in str(request.node.fspath) for name in ("accessor", "plots", "report")):
        # the accessor's examples: toolkit.make_fleet(n_devices=2, days=0.1).dataset
        doctest_namespace["fleet"] = request.getfixturevalue("_small_fleet")
