"""Flags to events, and events against ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit import evaluate_events, flags_to_events
from toolkit.events import flag_runs


def slow_runs(flags: np.ndarray, scores: np.ndarray):
    """Plain loop: (row, first, last, peak |score|) of every run of flags >= 3."""
    runs = []
    for r, row in enumerate(flags):
        i = 0
        while i < len(row):
            if 3 <= row[i] < 9:
                j = i
                while j + 1 < len(row) and 3 <= row[j + 1] < 9:
                    j += 1
                runs.append((r, i, j, np.abs(scores[r, i:j + 1]).max()))
                i = j + 1
            else:
                i += 1
    return runs


@pytest.mark.parametrize("chunked", [False, True])
def test_events_match_a_plain_loop(chunked, client):
    rng = np.random.default_rng(8)
    flags = rng.choice(np.array([1, 2, 3, 4, 9], dtype=np.int8), size=(7, 300),
                       p=[0.6, 0.1, 0.15, 0.1, 0.05])
    flags[3] = 3  # one run over the whole series
    scores = rng.standard_normal(flags.shape) * 10
    times = pd.date_range("2026-03-01", periods=300, freq="1min")
    devices = [f"d{i}" for i in range(7)]
    ds = xr.Dataset({"t": (("device", "time"), flags)},
                    coords={"device": devices, "time": times})
    sc = xr.Dataset({"t": (("device", "time"), scores)}, coords=ds.coords)
    if chunked:
        ds, sc = ds.chunk(device=3), sc.chunk(device=2)  # different chunks on purpose
    events = flags_to_events(ds, sc, kind="zscore")
    expected = slow_runs(flags, scores)
    assert len(events) == len(expected)
    got = sorted(zip(events.device, events.start, events.end, events.score, strict=True))
    want = sorted((devices[r], times[a], times[b], peak) for r, a, b, peak in expected)
    for g, w in zip(got, want, strict=True):
        assert g[:3] == w[:3]
        assert g[3] == pytest.approx(w[3])
    assert (events.kind == "zscore").all() and (events.metric == "t").all()


def test_no_flags_give_an_empty_table():
    ds = xr.Dataset({"t": (("device", "time"), np.ones((2, 5), dtype=np.int8))},
                    coords={"device": ["a", "b"],
                            "time": pd.date_range("2026", periods=5, freq="s")})
    events = flags_to_events(ds)
    assert list(events.columns) == ["device", "metric", "start", "end", "kind", "score"]
    assert len(events) == 0


def test_flag_runs_edges():
    row, first, last = flag_runs(np.array([[1, 1, 0, 1], [0, 0, 0, 0], [1, 0, 0, 1]]))
    assert row.tolist() == [0, 0, 2, 2]
    assert first.tolist() == [0, 3, 0, 3] and last.tolist() == [1, 3, 0, 3]


def test_evaluation_counts():
    t = pd.Timestamp("2026-01-01")
    m = pd.Timedelta("1min")
    truth = pd.DataFrame({
        "device": ["a", "a", "b", "b"], "metric": ["x", "x", "x", "y"],
        "kind": ["spike", "gap", "spike", "level_shift"],
        "start": [t, t + 100 * m, t, t + 10 * m], "end": [t, t + 200 * m, t, t + 50 * m],
    })
    detected = pd.DataFrame({
        "device": ["a", "b", "b", "b", "c"], "metric": ["x", "y", "y", "x", "x"],
        "start": [t + 2 * m, t + 9 * m, t + 51 * m, t + 500 * m, t],
        "end": [t + 2 * m, t + 9 * m, t + 52 * m, t + 500 * m, t],
    })
    summary, matched = evaluate_events(detected, truth, tolerance="2min")
    assert matched.matched_kind.tolist() == ["spike", "level_shift", "level_shift", "", ""]
    assert summary.loc["spike", ["injected", "found", "detections"]].tolist() == [2, 1, 1]
    assert summary.loc["level_shift", "recall"] == 1.0
    assert summary.loc["gap", "recall"] == 0.0
    assert summary.loc["all", "precision"] == pytest.approx(3 / 5)
    # the false alarms: b/x at +500 min is near b/x's spike; c/x has no truth
    assert matched.kind_near.tolist() == ["spike", "level_shift", "level_shift", "spike", ""]
    assert summary.loc["spike", ["detections", "false"]].tolist() == [1, 1]
    assert summary.loc["spike", "precision"] == pytest.approx(0.5)
    assert summary.loc["spike", "f1"] == pytest.approx(2 * 0.5 * 0.5 / (0.5 + 0.5))
    assert summary.loc["all", ["detections", "false"]].tolist() == [3, 2]
    assert summary.loc["all", "recall"] == pytest.approx(2 / 4)
    # without tolerance the spike detection two minutes late does not count
    strict, _ = evaluate_events(detected, truth)
    assert strict.loc["spike", "found"] == 0


@settings(max_examples=30, deadline=None)
@given(time_chunk=st.integers(1, 40), device_chunk=st.integers(1, 7))
def test_any_chunking_gives_the_same_table(time_chunk, device_chunk):
    rng = np.random.default_rng(time_chunk * 7 + device_chunk)
    flags = rng.choice(np.array([1, 3, 4, 9], dtype=np.int8), size=(7, 120),
                       p=[0.5, 0.3, 0.1, 0.1])
    scores = rng.standard_normal(flags.shape)
    coords = {"device": [f"d{i}" for i in range(7)],
              "time": pd.date_range("2026-03-01", periods=120, freq="1min")}
    ds = xr.Dataset({"t": (("device", "time"), flags)}, coords=coords)
    sc = xr.Dataset({"t": (("device", "time"), scores)}, coords=coords)
    expected = flags_to_events(ds, sc)
    chunks = {"time": time_chunk, "device": device_chunk}
    got = flags_to_events(ds.chunk(chunks), sc.chunk(chunks))
    pd.testing.assert_frame_equal(got, expected)


def test_events_crossing_many_chunks_are_joined_on_the_workers(client):
    # runs of every length across 1-sample to 9-sample chunks, on a real cluster
    rng = np.random.default_rng(5)
    flags = np.repeat(rng.choice(np.array([1, 3, 4], dtype=np.int8), size=(5, 40)),
                      rng.integers(1, 12, 40), axis=1)[:, :160]
    coords = {"device": [f"d{i}" for i in range(5)],
              "time": pd.date_range("2026-03-01", periods=flags.shape[1], freq="1min")}
    ds = xr.Dataset({"t": (("device", "time"), flags), "u": (("device", "time"), flags[::-1])},
                    coords=coords)
    expected = flags_to_events(ds)
    assert (expected.end - expected.start).max() > pd.Timedelta("20min")
    for time_chunk in (3, 10):
        got = flags_to_events(ds.chunk(time=time_chunk, device=2))
        pd.testing.assert_frame_equal(got, expected)


def test_times_and_devices_enter_the_graph_once(client, tmp_path):
    # 3 variables x 20 device blocks of one 50,000-bin time chunk, read from
    # Zarr: each task carried its own copy of the 400 kB times before (a 24 MB
    # graph)
    import warnings

    import dask

    rng = np.random.default_rng(2)
    n = 50_000
    coords = {"device": [f"d{i}" for i in range(40)],
              "time": pd.date_range("2026-03-01", periods=n, freq="1min")}
    ds = xr.Dataset({v: (("device", "time"), rng.choice(np.array([1, 1, 1, 4], np.int8),
                                                        size=(40, n)))
                     for v in ("t", "u", "w")}, coords=coords)
    ds.chunk(device=2, time=-1).to_zarr(tmp_path / "f.zarr", zarr_format=2)
    expected = flags_to_events(xr.open_zarr(tmp_path / "f.zarr").load())
    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "4MB"}), \
            warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        got = flags_to_events(xr.open_zarr(tmp_path / "f.zarr"))
    assert not [w for w in seen if "large graph" in str(w.message)]
    pd.testing.assert_frame_equal(got, expected)
