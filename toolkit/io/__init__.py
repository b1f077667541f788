"""Loaders: device telemetry from files into the fleet data model.

:func:`read_csv` returns a regularised, Dask-backed fleet
(:class:`xarray.Dataset`); :func:`read_csv_samples` the raw samples in long
form (a Dask DataFrame). Both read on the workers, never through the client,
and account for every row in a :class:`LoadReport`. Every loader ends in
the same step, :func:`toolkit.io.grid.samples_to_grid` (duplicates, bins with
counts, the report's reconciliation).
"""

from .csv import read_csv, read_csv_samples
from .csvschema import Schema, infer_schema
from .grid import LoadReport

__all__ = ["LoadReport", "Schema", "infer_schema", "read_csv", "read_csv_samples"]
