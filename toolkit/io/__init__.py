"""Loaders: device telemetry from files and HTTP feeds into the fleet data model.

:func:`read_csv` and :func:`read_http` return a regularised, Dask-backed
fleet (:class:`xarray.Dataset`); :func:`read_csv_samples` and
:func:`read_http_samples` the raw samples in long form (a Dask DataFrame);
:func:`sync` appends what is new in a feed to a sample store, which
:func:`read_store` regularises. Both read on the workers, never through the client,
and account for every row in a :class:`LoadReport`. Every loader ends in
the same step, :func:`toolkit.io.grid.samples_to_grid` (duplicates, bins with
counts, the report's reconciliation).
"""

from .csv import read_csv, read_csv_samples
from .csvschema import Schema, infer_schema
from .feeds import Feed
from .fetch import Secret
from .grid import LoadReport
from .http import feed, read_http, read_http_samples
from .store import SampleStore, read_store, read_store_samples
from .sync import SyncReport, sync

__all__ = ["Feed", "LoadReport", "SampleStore", "Schema", "Secret", "SyncReport", "feed",
           "infer_schema", "read_csv", "read_csv_samples", "read_http", "read_http_samples",
           "read_store", "read_store_samples", "sync"]
