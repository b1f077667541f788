"""Fleet-relative detection: a device against its peers at the same time."""

from __future__ import annotations

import numpy as np
import xarray as xr

import toolkit


def _fleet():
    ds = toolkit.make_fleet(n_devices=12, days=0.5, seed=4, anomaly_rate=0).dataset
    return ds.assign_coords(site=("device", ["north"] * 9 + ["south"] * 3))


def test_a_shift_of_every_device_is_no_anomaly_but_one_device_leaving_its_peers_is(client):
    ds = _fleet()
    t = ds.time[300:360]
    base_scores, base = toolkit.ops.detect.peer_zscore(ds.temperature, threshold=6)
    moved = ds.temperature.where(~ds.time.isin(t), ds.temperature + 8.0)  # a front: all
    one = moved.copy()
    one[3] = one[3].where(~ds.time.isin(t), one[3] + 30.0)  # and device 3 far more
    scores_all, flags_all = toolkit.ops.detect.peer_zscore(moved.chunk(device=5, time=100),
                                                           threshold=6)
    _, flags_one = toolkit.ops.detect.peer_zscore(one.chunk(device=5, time=100), threshold=6)
    # every device moved: the same scores as without the front
    np.testing.assert_allclose(scores_all.values, base_scores.values, atol=1e-9)
    xr.testing.assert_equal(flags_all.compute(), base)
    # one device left its peers: flagged throughout; the others barely notice (it
    # moves the robust median by one rank among twelve)
    in_window = flags_one.sel(time=t).compute()
    assert bool((in_window[3] == 3).all())
    others = np.arange(12) != 3
    before = base.sel(time=t).values[others]
    changed = in_window.values[others] != before
    assert changed.mean() < 0.01


def test_groups_compare_within_a_site_only_and_any_chunking_is_exact(client):
    ds = _fleet()
    t = ds.time[100:130]
    south = ds.site == "south"
    shifted = ds.where(~(ds.time.isin(t) & south), ds + 80.0)  # a front over one site
    scores, flags = shifted.telemetry.detect.peers(threshold=6, by="site")
    _, base = ds.telemetry.detect.peers(threshold=6, by="site")
    xr.testing.assert_equal(flags.sel(time=t), base.sel(time=t))  # the front is no anomaly
    # without the sites, the three south devices leave the fleet: flagged throughout
    _, mixed = shifted.telemetry.detect.peers(threshold=6)
    assert bool((mixed.humidity.sel(time=t, device=south) == 3).all())
    chunked_scores, chunked_flags = shifted.chunk(device=4, time=77).telemetry.detect.peers(
        threshold=6, by="site")
    got = chunked_flags.compute()
    for d in (got, flags):  # the history holds the time of the call
        d.attrs.pop("history", None)
    xr.testing.assert_identical(got, flags)
    np.testing.assert_array_equal(chunked_scores.temperature.values, scores.temperature.values)
    assert scores.temperature.attrs["long_name"].startswith("peer z-score")
