"""Plots on small data: figure objects, labels, lines and patches (no pixel comparison)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import toolkit  # noqa: E402
from toolkit.errors import ArgumentError  # noqa: E402


@pytest.fixture(scope="module")
def fleet():
    return toolkit.make_fleet(n_devices=3, days=1, seed=2).dataset


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_series_one_axes_per_metric_downsampled_with_events_and_flags(fleet):
    device = str(fleet.device.values[1])
    t = fleet.time.values
    events = pd.DataFrame({"device": [device, device, "other"],
                           "metric": ["temperature", "humidity", "temperature"],
                           "start": [t[100], t[300], t[10]], "end": [t[120], t[310], t[20]]})
    flags = fleet[["temperature"]].telemetry.flags.gross_range((-100, 200), (20.5, 21.5))
    axes = fleet.telemetry.plot.series(device, metrics=["temperature", "humidity"],
                                       events=events, flags=flags, n=200)
    assert len(axes) == 2 and axes[0].figure is axes[1].figure
    assert axes[0].figure.get_suptitle() == f"device {device}"
    assert [a.get_ylabel() for a in axes] == ["temperature [degC]", "humidity [%]"]
    assert axes[-1].get_xlabel() == "time (UTC)"
    trace = axes[0].lines[0]
    assert len(trace.get_xdata()) == 200  # LTTB: 200 of 1,440 samples
    # the flagged samples of this device, marked on the temperature axes
    n_flagged = int((flags.temperature.sel(device=device) >= 3).sum())
    assert n_flagged > 0
    assert len(axes[0].lines) == 2 and len(axes[0].lines[1].get_xdata()) == n_flagged
    assert len(axes[1].lines) == 1  # humidity: no flags given, no marks
    # one shaded event per axes: the other device's event is not drawn
    # (all of an axes' events are one collection of rectangles)
    for a in axes:
        shaded = [c for c in a.collections if c.get_label() == "events"]
        assert len(shaded) == 1 and len(shaded[0].get_paths()) == 1


def test_series_of_one_metric_returns_one_axes_and_takes_ax(fleet):
    fig, ax = plt.subplots()
    got = fleet.temperature.telemetry.plot.series(ax=ax, n=50)
    assert got is ax and len(ax.lines) == 1 and len(ax.lines[0].get_xdata()) == 50


def test_series_names_what_is_wrong(fleet):
    with pytest.raises(ArgumentError, match="device 'nope'"):
        fleet.telemetry.plot.series("nope")
    with pytest.raises(ArgumentError, match=r"metrics \['wind'\]"):
        fleet.telemetry.plot.series(metrics=["wind"])


def test_coverage_heatmap_of_devices_by_time(fleet):
    gappy = fleet.copy()
    gappy["temperature"] = gappy.temperature.where(gappy.time < gappy.time[720])
    image = gappy.telemetry.plot.coverage("1h")
    data = np.asarray(image.get_array())
    assert data.shape == (3, 24)  # devices x hourly bins
    assert image.axes.get_ylabel() == "device" and image.axes.get_xlabel() == "time"
    assert data[:, 15:].max() <= 0.75  # one of four metrics gone in the second half
    assert data[:, :10].min() > 0.9
    flags = fleet.telemetry.flags.gross_range((-100, 200), (20.5, 21.5))
    flagged = fleet.telemetry.plot.coverage("2h", what="flags", flags=flags)
    assert np.asarray(flagged.get_array()).shape == (3, 12)
    assert flagged.axes.get_title().startswith("flags")
    with pytest.raises(ArgumentError, match="needs flags"):
        fleet.telemetry.plot.coverage(what="flags")
