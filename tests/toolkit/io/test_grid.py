"""The shared samples→grid step: a stated Schema, and one aggregation table
and count convention for the loaders and ``regularize``."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

import toolkit
from toolkit.errors import ArgumentError
from toolkit.io import LoadReport, Schema, infer_schema, read_csv
from toolkit.model import HOWS, count_attrs, count_name
from toolkit.synthetic import write_csv

FLEET = toolkit.make_fleet(n_devices=3, days=0.1, seed=4).dataset


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    return write_csv(FLEET, tmp_path_factory.mktemp("grid") / "fleet.csv")


def test_a_stated_schema_reads_like_the_inferred_one(path):
    inferred = read_csv(path, freq="1min")
    schema = infer_schema(path)
    assert isinstance(schema, Schema)
    stated = read_csv(path, freq="1min", schema=schema)
    for name in inferred.data_vars:
        np.testing.assert_array_equal(stated[name], inferred[name])
    assert LoadReport.of(stated).rows_loaded == LoadReport.of(inferred).rows_loaded


def test_keywords_override_a_stated_schema(path):
    schema = dataclasses.replace(infer_schema(path), sep=";")  # a wrong separator
    with pytest.raises(toolkit.LoadError):
        read_csv(path, freq="1min", schema=schema)
    fixed = read_csv(path, freq="1min", schema=schema, sep=",", units={"temperature": "degC"})
    np.testing.assert_array_equal(fixed.temperature, FLEET.temperature)
    assert fixed.temperature.attrs["units"] == "degC"
    with pytest.raises(ArgumentError, match="ignore"):
        read_csv(path, freq="1min", schema=schema, ignore=["value"])
    with pytest.raises(ArgumentError, match="schema must be"):
        read_csv(path, freq="1min", schema={"sep": ","})


@pytest.mark.parametrize("how", HOWS)
def test_the_loader_and_regularize_aggregate_alike(path, how):
    """Loading onto 10-minute bins equals loading onto the samples' own
    1-minute grid and regularising that to 10 minutes: one table, one count."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # freq is given: no inference warning
        direct = read_csv(path, freq="10min", how=how)
    fine = read_csv(path, freq="1min")
    metrics = [m for m in FLEET.data_vars]
    regular = fine[metrics].telemetry.regularize("10min", how=how)
    for m in metrics:
        np.testing.assert_allclose(direct[m], regular[m], rtol=1e-12, equal_nan=True)
        np.testing.assert_array_equal(direct[count_name(m)], regular[count_name(m)])
        assert direct[count_name(m)].attrs == regular[count_name(m)].attrs == count_attrs(m)
