"""The ``iot-toolkit demo`` job: a synthetic fleet through the whole stack.

Generate a fleet with known anomalies on the workers, score every metric with
the rolling z-score kernel, flag it and its time gaps, write the result to
Zarr, turn flags into events, measure them against the ground truth and write
the HTML report.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from distributed import Client

from . import alerts
from .chunking import chunk_sizes
from .cluster import connect
from .errors import ArgumentError
from .events import evaluate_events, flags_to_events
from .execution.progress import check_interrupted, compute
from .feedserver import FeedServerProcess
from .io.http import read_http
from .model import DEVICE, FLAG_FAIL, FLAG_MISSING
from .ops.detect import rolling_zscore, zscore_flags
from .report import write_report
from .synthetic import make_fleet

STORE = "anomalies.zarr"
#: a run of missing samples longer than this many sampling steps is a gap
GAP_STEPS = 10
REPORT = "report.html"


@dataclass
class DemoResult:
    """What the demo produced; paths point into the output folder."""

    store: Path
    events: pd.DataFrame
    summary: pd.DataFrame
    seconds: float


def check_demo_args(devices: int, days: float, freq: str, window: int,
                    threshold: float) -> None:
    """The demo's arguments, checked before any cluster is started."""
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ArgumentError(f"devices must be a whole number >= 1, got {devices!r}")
    try:
        step = pd.Timedelta(freq)
    except (TypeError, ValueError):
        raise ArgumentError(f"freq must be a duration such as '1min', got {freq!r}") from None
    if not step > pd.Timedelta(0) or not days > 0 or \
            round(pd.Timedelta(days=days) / step) < 1:
        raise ArgumentError(f"days={days} at freq={freq!r} gives no sample")
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise ArgumentError(f"window must be a whole number >= 2, got {window!r}")
    if not threshold > 0:
        raise ArgumentError(f"threshold must be > 0, got {threshold!r}")


def run_demo(
    *,
    devices: int = 100,
    days: float = 14.0,
    freq: str = "1min",
    window: int = 60,
    threshold: float = 6.0,
    seed: int = 0,
    out: str | Path = "toolkit-demo",
    client: Client | None = None,
    echo: Callable[[str], None] = print,
    http: bool = False,
) -> DemoResult:
    """Run the demo on ``client`` (or on a local cluster started for it).

    Writes into ``out``: ``anomalies.zarr`` (per metric the z-score
    ``<metric>_zscore`` and the QARTOD flag ``<metric>_flag``), ``events.csv``
    (detected events), ``ground_truth.csv`` (injected anomalies) and
    ``summary.csv`` (recall per kind, precision overall) and ``report.html``
    (:func:`toolkit.report.write_report`: fleet overview, the most anomalous
    devices, flag statistics, device health).

    With ``http=True`` the fleet makes the round trip of a real deployment:
    ``iot-toolkit serve-feed`` serves it as an OGC SensorThings API in a
    child process, :func:`toolkit.read_http` loads it, and the events go
    back to the server's device-management endpoint with
    :func:`toolkit.alerts.post` (each exactly once).
    """
    check_demo_args(devices, days, freq, window, threshold)
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    own_client = client is None
    if own_client:
        client = connect()
    stack = contextlib.ExitStack()
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        # whole time series per chunk, at most the size guidance allows, and
        # several chunks per worker so that both cores have work
        n_times = int(round(pd.Timedelta(days=days) / pd.Timedelta(freq)))
        per_chunk = min(chunk_sizes(devices, n_times)[DEVICE],
                        max(1, math.ceil(devices / (4 * n_workers))))
        fleet = make_fleet(devices, days, freq, seed=seed, chunks=per_chunk)
        ds = fleet.dataset
        echo(f"fleet: {devices} devices x {ds.sizes['time']:,} samples at {freq} "
             f"({ds.sizes['time'] * devices:,} samples per metric, "
             f"{len(ds.data_vars)} metrics, {len(fleet.events)} injected anomalies)")
        echo(f"Dask dashboard: {client.dashboard_link}")
        if http:
            server = stack.enter_context(FeedServerProcess(devices=devices, days=days,
                                                           freq=freq, seed=seed))
            echo(f"serving the fleet at {server.url}/sta/v1.1 (OGC SensorThings); loading it")
            loaded = read_http(server.url + "/sta/v1.1", format="sensorthings", freq=freq)
            echo(loaded.attrs["load_report"])
            ds = loaded[list(ds.data_vars)].chunk({DEVICE: per_chunk})

        min_count = max(2, window * 3 // 4)  # tolerate a few dropouts per window
        scores = rolling_zscore(ds, window, min_count=min_count)
        flags = zscore_flags(scores, threshold, values=ds)
        # a gap: no valid sample for longer than GAP_STEPS sampling steps
        max_gap = GAP_STEPS * pd.Timedelta(freq)
        gaps = ds.telemetry.flags.time_gaps(max_gap)
        result = xr.merge([_suffixed(scores, "_zscore"), _suffixed(flags, "_flag"),
                           _suffixed(gaps, "_gap")], compat="override", join="exact",
                          combine_attrs="override")
        store = out / STORE
        echo(f"scoring (rolling z-score, window {window}, |z| > {threshold}; time gaps "
             f"over {max_gap}) and writing {store}")
        # Zarr format 2: its spec covers string coordinates and consolidated
        # metadata, so any Zarr reader can open the store.
        compute(client, result.to_zarr(store, mode="w", compute=False,
                                       zarr_format=2, consolidated=True))

        written = xr.open_zarr(store)
        events = pd.concat([
            flags_to_events(_unsuffixed(written, "_flag"), _unsuffixed(written, "_zscore"),
                            kind="zscore"),
            flags_to_events(_unsuffixed(written, "_gap"), kind="time_gap",
                            min_flag=int(FLAG_FAIL))], ignore_index=True).sort_values(
            ["device", "metric", "start"], ignore_index=True)
        check_interrupted()
        tolerance = 5 * pd.Timedelta(freq)
        summary, matched = evaluate_events(events, fleet.events, tolerance=tolerance)
        matched.to_csv(out / "events.csv", index=False)
        fleet.events.to_csv(out / "ground_truth.csv", index=False)
        summary.to_csv(out / "summary.csv")
        echo(f"writing the report {out / REPORT}")
        combined = np.maximum(_unsuffixed(written, "_flag").where(
            _unsuffixed(written, "_flag") != FLAG_MISSING, 0), _unsuffixed(written, "_gap")
            .where(_unsuffixed(written, "_gap") != FLAG_MISSING, 0)).astype(np.int8)
        combined = combined.where(ds.notnull(), FLAG_MISSING).astype(np.int8)
        write_report(out / REPORT, ds, flags=combined, events=events,
                     title="iot-toolkit demo: a synthetic fleet",
                     load_report=ds.attrs.get("load_report"),
                     params={"devices": devices, "days": days, "freq": freq,
                             "detector": f"rolling z-score, window {window}",
                             "threshold": f"|z| > {threshold}",
                             "time gaps": f"over {GAP_STEPS} steps", "seed": seed,
                             "source": "HTTP (SensorThings)" if http else "generated"})
        if http:
            report = alerts.post(events, server.url + "/devices/alerts")
            echo(str(report))
        return DemoResult(store, matched, summary, time.perf_counter() - started)
    finally:
        stack.close()
        if own_client:
            client.close()


def _suffixed(ds: xr.Dataset, suffix: str) -> xr.Dataset:
    return ds.rename({name: f"{name}{suffix}" for name in ds.data_vars})


def _unsuffixed(ds: xr.Dataset, suffix: str) -> xr.Dataset:
    """The variables named ``<metric><suffix>``, renamed ``<metric>``."""
    names = [str(n) for n in ds.data_vars if str(n).endswith(suffix)]
    return ds[names].rename({n: n[: -len(suffix)] for n in names})


def format_summary(summary: pd.DataFrame) -> str:
    """The evaluation table as aligned text.

    Examples
    --------
    >>> s = pd.DataFrame({"injected": [2.0], "found": [1.0], "recall": [0.5],
    ...                   "detections": [1.0], "precision": [float("nan")]},
    ...                  index=pd.Index(["spike"], name="kind"))
    >>> print(format_summary(s))
    kind         injected  found  recall  detections  precision
    spike               2      1    0.50           1          -
    """
    lines = [f"{'kind':<12}{'injected':>9}{'found':>7}{'recall':>8}"
             f"{'detections':>12}{'precision':>11}"]
    for kind, row in summary.iterrows():
        recall = "-" if pd.isna(row.recall) else f"{row.recall:.2f}"
        precision = "-" if pd.isna(row.precision) else f"{row.precision:.2f}"
        lines.append(f"{kind:<12}{int(row.injected):>9}{int(row.found):>7}"
                     f"{recall:>8}{int(row.detections):>12}{precision:>11}")
    return "\n".join(lines)


__all__ = ["DemoResult", "check_demo_args", "format_summary", "run_demo"]
