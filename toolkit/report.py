"""The run's HTML report: one self-contained file a researcher can forward.

:func:`write_report` writes a single HTML file -- styles inline, every plot a
PNG embedded as a ``data:`` URI, no script, nothing fetched -- with:

1. the run's parameters and its load report;
2. a fleet overview: device x time heatmaps of coverage and of flags;
3. the most anomalous devices (most events, then highest peak score), each
   with its traces (LTTB-downsampled, flagged samples marked, events shaded);
4. flag statistics per metric (samples by QARTOD code);
5. the per-device health summary (:func:`health_summary`) and the events
   with the highest scores.

The same inputs give the same file, byte for byte (no time stamps; the PNGs
are written without metadata).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .model import (
    DEVICE,
    FLAG_FAIL,
    FLAG_MISSING,
    FLAG_NOT_EVALUATED,
    FLAG_PASS,
    FLAG_SUSPECT,
    metric_names,
)

CODES = {int(FLAG_PASS): "pass", int(FLAG_NOT_EVALUATED): "not evaluated",
         int(FLAG_SUSPECT): "suspect", int(FLAG_FAIL): "fail", int(FLAG_MISSING): "missing"}
GAP_KINDS = ("gap", "time_gap", "time_gaps", "sample_gaps")
STUCK_KINDS = ("stuck", "flat_line")

_STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;
color:#222;line-height:1.4}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ccc;padding-bottom:.2em;
margin-top:2em}table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}img{max-width:100%;height:auto}
pre{background:#f8f8f8;padding:.8em;font-size:.8em;overflow-x:auto}.note{color:#666}
"""


def _flag_names(flags: xr.Dataset) -> list[str]:
    """The flag variables (int8 series along time)."""
    return [str(n) for n, v in flags.data_vars.items() if "time" in v.dims
            and v.dtype.kind in "iu"]


def health_summary(data: xr.Dataset, flags: xr.Dataset | None = None,
                   events: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per device: coverage, gaps, stuck periods, flags by code, events by kind.

    ``coverage_pct`` is the share of (metric, time) samples present;
    ``gaps`` and ``stuck_periods`` count events of the gap kinds
    (``gap``, ``time_gap``...) and stuck kinds (``stuck``, ``flat_line``);
    ``flags_<code>`` count samples by QARTOD code over all metrics;
    ``events_<kind>`` count events by kind.

    Examples
    --------
    >>> import toolkit
    >>> ds = toolkit.make_fleet(n_devices=2, days=0.1).dataset
    >>> health_summary(ds).coverage_pct.between(90, 100).all()
    np.True_
    """
    names = metric_names(data)
    devices = [str(d) for d in data[DEVICE].values]
    present = sum(data[m].notnull().sum("time") for m in names)
    codes = None
    if flags is not None:
        codes = {}
        for m in _flag_names(flags):
            f = flags[m].compute()
            for code in CODES:
                codes[code] = codes.get(code, 0) + np.asarray((f == code).sum("time").values)
    return health_from_counts(devices, np.asarray(present.values),
                              len(names) * data.sizes["time"], codes, events)


def health_from_counts(devices, present, total: int, codes: dict | None,
                       events: pd.DataFrame | None) -> pd.DataFrame:
    """:func:`health_summary` from counts made elsewhere (for example in the tasks
    that computed the flags): ``present`` per device, of ``total`` (metric, time)
    samples; ``codes`` {QARTOD code: count per device} or None."""
    devices = [str(d) for d in devices]
    out = pd.DataFrame(index=pd.Index(devices, name="device"))
    out["coverage_pct"] = np.round(100.0 * np.asarray(present, float) / max(total, 1), 3)
    if events is None or not len(events):
        where = np.zeros(0, np.int64)
        kinds = np.zeros(0, dtype=object)
    else:
        # each event's device as a row number (-1: not one of `devices`), once
        where = pd.Index(devices).get_indexer(events["device"].astype(str))
        kinds = events["kind"].astype(str).to_numpy()

    def count(mask) -> np.ndarray:
        rows = where[mask & (where >= 0)]
        return np.bincount(rows, minlength=len(devices)).astype(np.int64)

    out["gaps"] = count(np.isin(kinds, GAP_KINDS))
    out["stuck_periods"] = count(np.isin(kinds, STUCK_KINDS))
    if codes is not None:
        for code, name in CODES.items():
            out[f"flags_{name.replace(' ', '_')}"] = codes.get(code, 0)
    for kind in sorted(set(kinds)):
        out[f"events_{kind}"] = count(kinds == kind)
    return out


def flag_statistics(flags: xr.Dataset) -> pd.DataFrame:
    """Samples by QARTOD code, one row per metric (and the share flagged)."""
    rows = {}
    for m in _flag_names(flags):
        f = np.asarray(flags[m].values)
        rows[m] = {name.replace(" ", "_"): int((f == code).sum())
                   for code, name in CODES.items()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    evaluated = table[["pass", "suspect", "fail"]].sum(axis=1).replace(0, np.nan)
    table["flagged_pct"] = np.round(100 * (table["suspect"] + table["fail"]) / evaluated, 3)
    table.index.name = "metric"
    return table


def most_anomalous(events: pd.DataFrame, n: int = 5) -> list[str]:
    """The devices with the most events (ties: the highest peak score)."""
    if events is None or not len(events):
        return []
    score = events["score"] if "score" in events else pd.Series(0.0, index=events.index)
    table = events.assign(device=events["device"].astype(str), peak=score.abs()).groupby(
        "device").agg(n=("kind", "size"), peak=("peak", "max"))
    table = table.sort_values(["n", "peak"], ascending=[False, False], kind="stable")
    return list(table.index[:n])


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight",
                metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _series_png(data: xr.Dataset, device: str, events, flags) -> str:
    """One device's traces as a PNG ``data:`` URI (run on a worker by
    :func:`write_report` when it is given a client)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from . import plots

    axes = plots.series(data, device, events=events, flags=flags, n=1500)
    return _png(np.atleast_1d(axes)[0].figure)


def _img(src: str, alt: str) -> str:
    return f'<p><img src="{src}" alt="{html.escape(alt)}"></p>'


def _table(frame: pd.DataFrame, max_rows: int = 200) -> str:
    shown = frame.head(max_rows)
    more = f'<p class="note">{len(frame) - max_rows} more rows not shown</p>' \
        if len(frame) > max_rows else ""
    return shown.to_html(border=0, na_rep="-", float_format=lambda v: f"{v:.4g}") + more


def write_report(path, data: xr.Dataset, *, flags: xr.Dataset | None = None,
                 events: pd.DataFrame | None = None, params: dict | None = None,
                 load_report: str | None = None, title: str = "Fleet report",
                 top: int = 5, client=None) -> Path:
    """Write the self-contained HTML report (see the module docstring); returns its path.

    Parameters
    ----------
    path : str or path
        The HTML file to write.
    data : xarray.Dataset
        The regularised fleet (numpy- or Dask-backed).
    flags : xarray.Dataset, optional
        Combined QARTOD flags per metric (the same variable names).
    events : pandas.DataFrame, optional
        The events table (``device, metric, kind, start, end, score``...).
    params : dict, optional
        The run's parameters, shown as a table.
    load_report : str, optional
        The printed :class:`~toolkit.io.grid.LoadReport` (default: the
        dataset's ``load_report`` attribute, when it has one).
    title : str
    top : int
        Most anomalous devices shown with their traces.
    client : distributed.Client, optional
        Draw the devices' traces on its workers, each device's data sent
        there, while this process draws the fleet overview; the file is the
        same. (A pipeline run passes its client: the five devices' figures
        were two thirds of a small run's report time.)

    Examples
    --------
    >>> import tempfile, toolkit
    >>> ds = toolkit.make_fleet(n_devices=3, days=0.2).dataset
    >>> out = write_report(tempfile.mkdtemp() + "/report.html", ds)
    >>> out.read_text().count("<img")
    1
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from . import plots

    data = data[metric_names(data)].compute() if data.chunks else data[metric_names(data)]
    flags = None if flags is None else flags.compute()
    events = events if events is not None else pd.DataFrame(
        columns=["device", "metric", "kind", "start", "end", "score"])
    load_report = load_report if load_report is not None else data.attrs.get("load_report")
    t0, t1 = pd.Timestamp(data.time.values[0]), pd.Timestamp(data.time.values[-1])
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p>{data.sizes[DEVICE]} devices, metrics {', '.join(metric_names(data))}; "
             f"{t0} to {t1} UTC, {data.sizes['time']:,} time steps; "
             f"{len(events):,} events.</p>"]
    parts.append("<h2>Run parameters</h2>")
    if params:
        rows = pd.DataFrame({"parameter": list(params),
                             "value": [str(v) for v in params.values()]})
        parts.append(rows.to_html(border=0, index=False))
    else:
        parts.append('<p class="note">none given</p>')
    if load_report:
        parts += ["<h2>Load report</h2>", f"<pre>{html.escape(load_report)}</pre>"]
    devices = most_anomalous(events, top)
    def of(ds, device):  # the device's rows, whatever the type of its labels
        return None if ds is None else ds.isel(
            {DEVICE: [i for i, d in enumerate(ds[DEVICE].values) if str(d) == device]})

    theirs, traces = {}, {}
    for device in devices:  # started first: drawn on the workers during the overview
        theirs[device] = events[events["device"].astype(str) == device]
        args = (of(data, device), device, theirs[device], of(flags, device))
        traces[device] = client.submit(_series_png, *args, pure=False) \
            if client is not None else args
    parts.append("<h2>Fleet overview</h2>")
    image = plots.coverage(data)
    parts.append(_img(_png(image.axes.figure), "coverage of every device over time"))
    if flags is not None:
        image = plots.coverage(data, flags=flags, what="flags")
        parts.append(_img(_png(image.axes.figure), "share of samples flagged"))
    parts.append("<h2>Most anomalous devices</h2>")
    if not devices:
        parts.append('<p class="note">no events</p>')
    for device in devices:
        mine = theirs[device]
        kinds = ", ".join(f"{k} {n}" for k, n in mine["kind"].value_counts().sort_index()
                          .items())
        parts.append(f"<h3>{html.escape(device)}</h3><p>{len(mine)} events ({html.escape(kinds)})"
                     "</p>")
        trace = traces[device]
        src = trace.result() if client is not None else _series_png(*trace)
        parts.append(_img(src, f"traces of {device}"))
    if flags is not None:
        parts += ["<h2>Flag statistics per metric</h2>", _table(flag_statistics(flags))]
    parts += ["<h2>Device health</h2>", _table(health_summary(data, flags, events))]
    if len(events):
        shown = events.copy()
        if "score" in shown:
            shown = shown.assign(_abs=shown["score"].abs()).sort_values(
                "_abs", ascending=False, kind="stable").drop(columns="_abs")
        parts += ["<h2>Events with the highest scores</h2>", _table(shown.head(50))]
    parts.append("</body></html>")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts), encoding="utf-8")
    return out


__all__ = ["flag_statistics", "health_summary", "most_anomalous", "write_report"]
