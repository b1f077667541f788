"""The ``iot-toolkit demo`` job: the pipeline on a synthetic fleet with ground truth.

The demo is :class:`toolkit.pipeline.Pipeline` on embedded defaults: a
synthetic fleet with injected anomalies (generated on the workers, or served
over HTTP and loaded from there), the rolling z-score detector and the time
gap check, the Zarr store, events, health summary and HTML report of any
pipeline run -- and then the events are scored against the ground truth:
precision, recall and F1 per anomaly kind and overall.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from distributed import Client

from .cluster import connect
from .errors import ArgumentError
from .events import evaluate_events
from .feedserver import FeedServerProcess
from .pipeline import Pipeline
from .pipeline.run import STORE
from .synthetic import make_fleet

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


def demo_pipeline(*, devices: int = 100, days: float = 14.0, freq: str = "1min",
                  window: int = 60, threshold: float = 6.0, seed: int = 0,
                  out: str | Path = "toolkit-demo", url: str | None = None) -> dict:
    """The demo's pipeline, as the dict a pipeline file would hold.

    Examples
    --------
    >>> demo_pipeline(devices=3)["detectors"]
    {'zscore': {'window': 60, 'threshold': 6.0, 'min_count': 45}}
    """
    source = {"type": "synthetic", "devices": devices, "days": days, "freq": freq,
              "seed": seed}
    if url is not None:
        source = {"type": "http", "url": url + "/sta/v1.1", "format": "sensorthings",
                  "samples": str(Path(out) / "samples")}
    config = {
        "title": "iot-toolkit demo: a synthetic fleet",
        "source": source,
        "grid": {"freq": freq},
        "checks": {"time_gap": {"max_gap": str(GAP_STEPS * pd.Timedelta(freq))}},
        # tolerate a few dropouts per reference window
        "detectors": {"zscore": {"window": window, "threshold": float(threshold),
                                 "min_count": max(2, window * 3 // 4)}},
        "output": {"folder": str(out)},
    }
    if url is not None:
        config["alerts"] = {"url": url + "/devices/alerts"}
    return config


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
    """Run the demo pipeline on ``client`` (or on a local cluster started for it).

    Writes into ``out`` what every pipeline run writes (``telemetry.zarr``,
    ``events.parquet``/``.csv``, ``health.csv``, ``report.html``) and
    ``ground_truth.csv`` (the injected anomalies), ``evaluation.csv`` (each
    event with the kind it matched) and ``summary.csv`` (precision, recall
    and F1 per kind, see :func:`toolkit.evaluate_events`).

    With ``http=True`` the fleet makes the round trip of a real deployment:
    ``iot-toolkit serve-feed`` serves it as an OGC SensorThings API in a
    child process, the pipeline syncs it into a sample store and loads it
    from there, and the events go back to the server's device-management
    endpoint as alerts (each exactly once).
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
        url = None
        if http:
            server = stack.enter_context(FeedServerProcess(devices=devices, days=days,
                                                           freq=freq, seed=seed))
            url = server.url
            echo(f"serving the fleet at {url}/sta/v1.1 (OGC SensorThings)")
            shutil.rmtree(out / "samples", ignore_errors=True)  # this server's data only
        pipeline = Pipeline.from_dict(demo_pipeline(
            devices=devices, days=days, freq=freq, window=window, threshold=threshold,
            seed=seed, out=out, url=url), name="demo")
        result = pipeline.run(client, echo=echo)
        fleet = result.extra.get("fleet") or make_fleet(devices, days, freq, seed=seed)
        tolerance = 5 * pd.Timedelta(freq)
        summary, matched = evaluate_events(result.events, fleet.events, tolerance=tolerance)
        matched.to_csv(out / "evaluation.csv", index=False)
        fleet.events.to_csv(out / "ground_truth.csv", index=False)
        summary.to_csv(out / "summary.csv")
        return DemoResult(out / STORE, matched, summary, time.perf_counter() - started)
    finally:
        stack.close()
        if own_client:
            client.close()


def format_summary(summary: pd.DataFrame) -> str:
    """The evaluation table as aligned text.

    Examples
    --------
    >>> s = pd.DataFrame({"injected": [2.0], "found": [1.0], "recall": [0.5],
    ...                   "detections": [1.0], "false": [1.0], "precision": [0.5],
    ...                   "f1": [0.5]}, index=pd.Index(["spike"], name="kind"))
    >>> print(format_summary(s))
    kind         injected  found  detections  false  precision  recall    f1
    spike               2      1           1      1       0.50    0.50  0.50
    """
    def num(x):
        return "-" if pd.isna(x) else f"{x:.2f}"

    lines = [f"{'kind':<12}{'injected':>9}{'found':>7}{'detections':>12}{'false':>7}"
             f"{'precision':>11}{'recall':>8}{'f1':>6}"]
    for kind, row in summary.iterrows():
        lines.append(f"{kind:<12}{int(row.injected):>9}{int(row.found):>7}"
                     f"{int(row.detections):>12}{int(row['false']):>7}{num(row.precision):>11}"
                     f"{num(row.recall):>8}{num(row.f1):>6}")
    return "\n".join(lines)


__all__ = ["DemoResult", "check_demo_args", "demo_pipeline", "format_summary", "run_demo"]
