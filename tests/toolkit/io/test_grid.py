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


def _blocks(order: str, rng, n_blocks: int):
    """Long-form samples of 5 devices x 2 metrics over 3 hours (every 20 s, some
    jitter, NaN, duplicates within blocks, a few before the grid), cut into
    blocks: by time (no series overlaps another block in time), by device, or
    shuffled (series overlap across blocks, with duplicates across them)."""
    import dask

    from toolkit.io.grid import Samples

    devices = np.array([f"d{i}" for i in range(5)])
    t = np.arange(0, 3 * 3600, 20, dtype=np.int64) * 10**9 + 1_700_000_000 * 10**9
    dev, met, tt = (a.ravel() for a in np.meshgrid(np.arange(5), np.arange(2), t,
                                                   indexing="ij"))
    tt = tt + rng.integers(0, 5, tt.size) * 10**9
    val = rng.normal(20, 3, tt.size).round(2)
    val[rng.random(val.size) < 0.05] = np.nan
    dup = rng.choice(tt.size, 300, replace=False)  # a second sample at the same time
    dev, met, tt = (np.concatenate([a, a[dup]]) for a in (dev, met, tt))
    val = np.concatenate([val, rng.normal(20, 3, dup.size).round(2)])
    if order == "time":
        idx = np.lexsort((dev, tt))
    elif order == "device":
        idx = np.lexsort((tt, met, dev))
    else:
        idx = rng.permutation(tt.size)
    cuts = np.array_split(idx, n_blocks)
    if order != "shuffled":  # duplicates stay inside one block
        cuts = [c for c in cuts if c.size]
        for k in range(1, len(cuts)):
            key = lambda i: (dev[i], met[i], tt[i])  # noqa: E731
            while cuts[k].size and key(cuts[k][0]) in {key(i) for i in cuts[k - 1][-3:]}:
                cuts[k - 1] = np.append(cuts[k - 1], cuts[k][0])
                cuts[k] = cuts[k][1:]
    blocks = [Samples(devices, dev[c].astype(np.int32), tt[c], ["humidity", "temperature"],
                      met[c].astype(np.int32), val[c]) for c in cuts if c.size]
    summaries = [b.summary() for b in blocks]
    return list(dask.persist(*[dask.delayed(b) for b in blocks])), summaries


@pytest.mark.parametrize("order", ["time", "device", "shuffled"])
@pytest.mark.parametrize("duplicates", ["mean", "first", "last"])
@pytest.mark.parametrize("how", HOWS)
def test_binning_in_the_blocks_equals_binning_the_samples(client, order, duplicates, how):
    """Partial bins per block, added up per device group, give the grid and the
    load report of the sample path, for every how and duplicates policy, made
    after the fleet's devices are known or in the task after each block's
    parse (a CSV load with freq=); blocks whose series overlap in time
    (shuffled rows) go through the sample path."""
    import dask
    from distributed import get_task_stream

    from toolkit.io.grid import block_partial, partial_summary, samples_to_grid

    results, ran = {}, {}
    for way in (True, False, "parse"):
        blocks, summaries = _blocks(order, rng=np.random.default_rng(7), n_blocks=6)
        partials = None
        if way == "parse":
            partials = list(dask.persist(*[dask.delayed(block_partial)(
                b, 300 * 10**9, how, duplicates) for b in blocks]))
            summaries = dask.compute(*[dask.delayed(partial_summary)(b, p)
                                       for b, p in zip(blocks, partials, strict=True)])
        report = LoadReport.of_samples(summaries)
        with get_task_stream(client) as ts:
            ds = samples_to_grid(blocks, summaries, report, freq="5min", how=how,
                                 duplicates=duplicates, start="2023-11-14T22:20:00",
                                 source="test", loader="test",
                                 binned_in_blocks=None if way == "parse" else way,
                                 block_partials=partials)
            results[way] = (ds.load(), report)
        ran[way] = {str(t["key"]).split("-")[0] + "-" + str(t["key"]).split("-")[1]
                    for t in ts.data}
    # which way each took: partials alone for ordered blocks, the samples too
    # for the groups of shuffled ones
    assert "regularize-partials" in ran[True] and "regularize-samples" in ran[False]
    assert ("regularize-samples" in ran[True]) == (order == "shuffled")
    assert "group-partial" in ran["parse"] and "bin-samples" not in ran["parse"]
    assert ("regularize-samples" in ran["parse"]) == (order == "shuffled")
    b, rb = results[False]
    for way in (True, "parse"):
        a, ra = results[way]
        for name in b.data_vars:
            np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-13,
                                       equal_nan=True, err_msg=f"{way}: {name}")
        assert (ra.duplicates_merged, ra.samples_outside, ra.samples_binned) == \
            (rb.duplicates_merged, rb.samples_outside, rb.samples_binned)
    assert rb.duplicates_merged > 0 and rb.samples_outside > 0


@pytest.mark.parametrize("how", ["mean", "count", "max"])
def test_partial_bins_with_hundreds_of_samples_per_bin(client, how):
    """Bins of 2 hours hold about 360 samples of a series per block: the counts
    the groups' pieces carry no longer fit a byte, and still add up exactly."""
    import dask

    from toolkit.io.grid import block_partial, partial_summary, samples_to_grid

    step = 2 * 3600 * 10**9
    out = {}
    for way in (False, "parse"):
        blocks, summaries = _blocks("time", rng=np.random.default_rng(3), n_blocks=2)
        partials = None
        if way == "parse":
            partials = list(dask.persist(*[dask.delayed(block_partial)(b, step, how, "mean")
                                           for b in blocks]))
            summaries = dask.compute(*[dask.delayed(partial_summary)(b, p)
                                       for b, p in zip(blocks, partials, strict=True)])
        report = LoadReport.of_samples(summaries)
        ds = samples_to_grid(blocks, summaries, report, freq="2h", how=how,
                             source="test", loader="test",
                             binned_in_blocks=None if way == "parse" else False,
                             block_partials=partials).load()
        out[way] = (ds, report.samples_binned)
    (a, na), (b, nb) = out["parse"], out[False]
    assert na == nb and int(b["temperature_count"].max()) > 255
    for name in b.data_vars:
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-13,
                                   equal_nan=True, err_msg=name)


def test_duplicates_raise_in_the_block_that_holds_them(client):
    from toolkit.io.grid import samples_to_grid

    blocks, summaries = _blocks("time", np.random.default_rng(7), n_blocks=4)
    with pytest.raises(toolkit.LoadError, match="duplicate samples"):
        samples_to_grid(blocks, summaries, LoadReport.of_samples(summaries), freq="5min",
                        duplicates="raise", source="test", loader="test",
                        binned_in_blocks=True).load()
