"""Events explained: the metrics that drove them, and whether the device left its peers."""

from __future__ import annotations

import pandas as pd

import toolkit
from toolkit.explain import explain_events


def _fleet():
    ds = toolkit.make_fleet(n_devices=10, days=2, anomaly_rate=0, seed=5).dataset.load()
    ds = ds.copy(deep=True)
    ds["temperature"][:, 1500:1560] += 4.0         # a front: every device at once
    ds["humidity"][7, 2200:2260] += 40.0           # one device alone...
    ds["temperature"][7, 2210:2250] += 4.0         # ...in two metrics
    return ds


def test_the_detector_events_explained():
    ds = _fleet()
    scores, flags = ds.telemetry.detect.anomaly()
    events = toolkit.flags_to_events(flags, scores, kind="anomaly", min_flag=4)
    assert len(events)
    table = explain_events(events, ds, join_within="10min")
    # the front: found on every device, each only against its own past
    front = table[(table.start >= ds.time.values[1495]) & (table.start <= ds.time.values[1510])]
    assert set(front.device) == {f"dev-{i:04d}" for i in range(10)}
    assert (front.driver == "temperature").all() and (front.left == "own past").all()
    # the lone device: one incident of two metrics, humidity the stronger,
    # away from its peers as well as from its own past
    lone = table[(table.device == "dev-0007") & (table.start >= ds.time.values[2190])]
    assert len(lone) == 1
    row = lone.iloc[0]
    assert row.metrics.split(", ")[0] == row.driver
    assert set(row.metrics.split(", ")) == {"humidity", "temperature"} and row.events >= 2
    assert row.left == "own past and peers" and row.peer_score > 5
    peak = {m: float(v) for m, v in (p.split("=") for p in row.scores.split("; "))}
    mine = events[(events.device == "dev-0007") & (events.start >= ds.time.values[2190])]
    for metric, got in peak.items():
        assert got == float(f"{mine[mine.metric == metric].score.abs().max():.4g}")


def test_peers_only_and_joining_nearby_events():
    ds = _fleet()
    t = pd.DatetimeIndex(ds.time.values)
    events = pd.DataFrame({
        "device": ["dev-0007", "dev-0007", "dev-0002"],
        "metric": ["humidity", "humidity", "humidity"],
        "kind": ["peers", "peers", "peers"],
        "start": [t[2200], t[2270], t[100]], "end": [t[2259], t[2280], t[110]],
        "score": [9.0, 6.0, 5.5]})
    assert len(explain_events(events, ds)) == 3
    joined = explain_events(events, ds, join_within="30min")
    assert len(joined) == 2
    row = joined[joined.device == "dev-0007"].iloc[0]
    assert row.events == 2 and row.left == "peers" and row.scores == "humidity=9"
    quiet = joined[joined.device == "dev-0002"].iloc[0]
    assert quiet.left == "own past" or quiet.peer_score <= 5  # nothing unusual there
    assert explain_events(events.iloc[:0], ds).empty
