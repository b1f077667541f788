"""Every kernel family at once in one Dask worker's thread pool.

The kernels release the GIL, so four threads of one worker run them truly at
the same time; the results must equal those computed alone in this process.
"""

from __future__ import annotations

import numpy as np
import pytest
from distributed import Client, LocalCluster

import kernels

pytestmark = pytest.mark.slow

RNG = np.random.default_rng(0)
X = 101325.0 + RNG.standard_normal((8, 20_000))
X[:, RNG.random(20_000) < 0.05] = np.nan
T = np.cumsum(RNG.integers(1, 90, 20_000)).astype(np.int64)

CALLS = {
    "rolling": lambda x: kernels.move_std(x, 60, 30),
    "extreme": lambda x: kernels.move_max(x, 60, 30),
    "quantile": lambda x: kernels.move_median(x, 61, 30),
    "time window": lambda x: kernels.time_rolling(x, T, 600, "std"),
    "ewm": lambda x: kernels.ewm_std(x, halflife=30),
    "ffill": lambda x: kernels.ffill(x, 5),
    "interpolate": lambda x: kernels.interpolate(x, 10),
    "flat line": lambda x: kernels.flat_line(x, 0.01, 5, 10),
    "gross range": lambda x: kernels.gross_range(x, (1e5, 1.1e5)),
    "robust z": lambda x: kernels.robust_zscore(x[:, :3000], 30)[0],
    "cusum": lambda x: kernels.cusum(x, 101325.0, 1.0)[0],
    "drift": lambda x: kernels.drift(x[:, :3000], 30, 0.1)[0],
    "binning": lambda x: kernels.bin_samples(T, x[0], start=0, step=600,
                                             n_bins=T[-1] // 600 + 1).mean,
    "lttb": lambda x: kernels.lttb(x, 200),
}


def test_all_families_concurrently_in_one_worker():
    expected = {name: call(X) for name, call in CALLS.items()}
    with LocalCluster(n_workers=1, threads_per_worker=4, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        # each family four times, so several run at once in the pool
        futures = {(name, k): client.submit(CALLS[name], X, pure=False)
                   for name in CALLS for k in range(4)}
        results = client.gather(futures)
    for (name, _), got in results.items():
        np.testing.assert_array_equal(got, expected[name], err_msg=name)
