"""Names every doctest in toolkit/ and kernels/ may use without importing them."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    doctest_namespace.update(np=np, pd=pd, xr=xr)
