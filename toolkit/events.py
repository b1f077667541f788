"""From per-sample flags to an events table, and events against ground truth.

An event is a run of consecutive flagged samples of one device and metric:
``device, metric, start, end, kind, score`` with inclusive ``start``/``end``
times and the largest absolute score inside the run.
"""

from __future__ import annotations

import hashlib

import dask
import numpy as np
import pandas as pd
import xarray as xr

from kernels.flags import runs as flag_run_table

from .errors import ArgumentError
from .model import DEVICE, EVENT_COLUMNS, FLAG_MISSING, FLAG_SUSPECT, TIME


def flag_runs(flagged: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of True along the last axis of a 2-D boolean array.

    Returns ``(row, first, last)`` index arrays with inclusive ``last``.

    Examples
    --------
    >>> flag_runs(np.array([[0, 1, 1, 0, 1], [1, 0, 0, 0, 0]], dtype=bool))
    (array([0, 0, 1]), array([1, 4, 0]), array([2, 4, 0]))
    """
    flagged = np.asarray(flagged, dtype=bool)
    row, first, last, _, _ = flag_run_table(flagged.view(np.int8), min_flag=1,
                                            skip_missing=False)
    return row, first, last


def _block_events(flags, scores, devices, times, offset, metric, kind, min_flag):
    """Runs of flags in one block; start/end indices are global along time."""
    row, first, last, _, peak = flag_run_table(flags, scores, min_flag=min_flag,
                                               skip_missing=True)
    if scores is None:
        peak = np.zeros(len(row))
    return pd.DataFrame({
        "device": devices[row], "metric": metric,
        "start": times[first], "end": times[last],
        "kind": kind, "score": peak,
        "first": first + offset, "last": last + offset,
    })


def _merge_across_chunks(events: pd.DataFrame) -> pd.DataFrame:
    """Join runs that a time-chunk boundary cut in two (by global sample index)."""
    events = events.sort_values(["device", "metric", "first"], ignore_index=True)
    same_series = (events.device.eq(events.device.shift())
                   & events.metric.eq(events.metric.shift()))
    continues = same_series & events["first"].eq(events["last"].shift() + 1)
    group = (~continues).cumsum()
    merged = events.groupby(group, sort=False).agg(
        device=("device", "first"), metric=("metric", "first"), start=("start", "first"),
        end=("end", "last"), kind=("kind", "first"), score=("score", "max"),
        first=("first", "first"), last=("last", "last"))
    return merged.reset_index(drop=True)


def _join_in_time(left, right):
    """Two adjacent stretches of one block row's events, joined (on a worker).

    Each side is ``(lo, hi, table)``: the global sample range it covers and
    its runs. Only the runs that end at ``left``'s last sample and those that
    start at ``right``'s first can continue each other; every other run
    passes through untouched.
    """
    (lo, mid, a), (mid_next, hi, b) = left, right
    ends = a["last"] == mid
    starts = b["first"] == mid_next
    if not ends.any() or not starts.any():
        return lo, hi, pd.concat([a, b], ignore_index=True)
    joined = _merge_across_chunks(pd.concat([a[ends], b[starts]], ignore_index=True))
    return lo, hi, pd.concat([a[~ends], joined, b[~starts]], ignore_index=True)


def _tree(items, combine):
    """Pairwise reduction of delayed ``items`` (in order) with ``combine``."""
    while len(items) > 1:
        items = [combine(items[k], items[k + 1]) if k + 1 < len(items) else items[k]
                 for k in range(0, len(items), 2)]
    return items[0]


def _concat(*parts):
    """Tables, or stretches of them, in one table."""
    tables = [p[2] if isinstance(p, tuple) else p for p in parts]
    tables = [t for t in tables if len(t)]
    return pd.concat(tables, ignore_index=True) if tables else \
        pd.DataFrame(columns=[*EVENT_COLUMNS, "first", "last"])


def _final(table):
    if isinstance(table, tuple):
        table = table[2]
    if not len(table):
        return pd.DataFrame(columns=EVENT_COLUMNS)
    return table[EVENT_COLUMNS].sort_values(["device", "metric", "start"], ignore_index=True)


def flags_to_events(
    flags: xr.Dataset,
    scores: xr.Dataset | None = None,
    *,
    kind: str = "zscore",
    min_flag: int = int(FLAG_SUSPECT),
) -> pd.DataFrame:
    """Turn flag variables into an events table, one row per run of flags.

    A sample counts when its flag is ``>= min_flag`` and is not 9 (missing).
    With a Dask-backed input everything happens on the workers: each chunk's
    runs are found where the chunk lives; along time, neighbouring chunks'
    tables are joined in a tree in which only the runs touching the shared
    edge are looked at (a run crossing several chunks is joined step by
    step); the tables of the device blocks and variables are concatenated in
    a tree too, and the client receives the final table only. Any chunking
    gives the same table.

    Parameters
    ----------
    flags : xarray.Dataset
        int8 QARTOD flag variables with dims ``("device", "time")``.
    scores : xarray.Dataset, optional
        Scores with the same variables; an event's ``score`` is the largest
        absolute score inside it, NaN scores ignored (0 without scores).
    kind : str
        Written to the ``kind`` column.
    min_flag : int
        The lowest flag that counts (3: suspect and fail).

    Examples
    --------
    >>> flags = xr.Dataset(
    ...     {"t": (("device", "time"), np.array([[1, 3, 3, 1]], dtype=np.int8))},
    ...     coords={"device": ["a"], "time": pd.date_range("2026", periods=4, freq="h")})
    >>> flags_to_events(flags.chunk(time=2))[["device", "metric", "start", "end"]]
      device metric               start                 end
    0      a      t 2026-01-01 01:00:00 2026-01-01 02:00:00
    """
    times = flags[TIME].values
    local, rows = [], []
    # each block's times and devices enter the graph once, as keys every
    # variable's tasks share: passed as arguments they were copied into every
    # task (12 flag variables x 100 device blocks of one 57,600-bin time
    # chunk sent a 528 MiB graph)
    pieces: dict = {}

    def piece(values, a, b):
        key = (values is times, a, b)
        if key not in pieces:
            pieces[key] = dask.delayed(values[a:b], pure=True)
        return pieces[key]

    for name in flags.data_vars:
        f = flags[name].transpose(DEVICE, TIME)
        f = f.where(f != FLAG_MISSING, 0).astype(np.int8)
        s = None if scores is None else scores[name].transpose(DEVICE, TIME)
        devices = f[DEVICE].values
        if f.chunks is None:
            local.append(_block_events(f.values, None if s is None else s.values,
                                       devices, times, 0, name, kind, min_flag))
            continue
        if s is not None:
            s = s.chunk(dict(zip(f.dims, f.chunks, strict=True)))
        f_blocks = f.data.to_delayed()
        s_blocks = None if s is None else s.data.to_delayed()
        dev_off = np.cumsum((0,) + f.chunks[0])
        time_off = np.cumsum((0,) + f.chunks[1])
        token = dask.base.tokenize(f.data, None if s is None else s.data, kind, min_flag)
        for i in range(f_blocks.shape[0]):
            stretches = [dask.delayed(_block_stretch, pure=True)(
                int(time_off[j + 1]) - 1, f_blocks[i, j],
                None if s_blocks is None else s_blocks[i, j],
                piece(devices, dev_off[i], dev_off[i + 1]),
                piece(times, time_off[j], time_off[j + 1]),
                int(time_off[j]), name, kind, min_flag,
                dask_key_name=f"flags-to-events-{name}-{i}-{j}-{token}")
                for j in range(f_blocks.shape[1])]
            rows.append(_tree(stretches, dask.delayed(_join_in_time, pure=True)))
    if rows:
        table = _tree(rows, dask.delayed(_concat, pure=True))
        local.append(dask.compute(dask.delayed(_final, pure=True)(table))[0])
    tables = [t for t in local if len(t)]
    if not tables:
        return pd.DataFrame(columns=EVENT_COLUMNS)
    return _final(pd.concat(tables, ignore_index=True))


def _block_stretch(hi, flags, scores, devices, times, offset, metric, kind, min_flag):
    """A block's runs as a stretch ``(first sample, last sample, table)``."""
    return offset, hi, _block_events(flags, scores, devices, times, offset, metric, kind,
                                     min_flag)


def evaluate_events(
    detected: pd.DataFrame, truth: pd.DataFrame, tolerance: pd.Timedelta | str = "0s"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Match detected events to ground-truth events of the same device and metric.

    A detection matches a true event when their time spans, each widened by
    ``tolerance`` on both sides, overlap. Every detection is then given a
    kind: the kind of the first true event it matches, or -- for a false
    alarm -- the kind of the nearest true event of its device and metric (no
    kind when that series has none). So a false alarm counts against the
    kind of anomaly whose neighbourhood it was raised in.

    Returns
    -------
    summary : pandas.DataFrame
        One row per true ``kind`` and a final ``all`` row: ``injected``,
        ``found`` (true events matched by at least one detection),
        ``recall``, ``detections`` (matched to events of that kind),
        ``false`` (false alarms given that kind), ``precision``
        (``detections / (detections + false)``) and ``f1``. The ``all`` row
        counts every detection, false alarms without a kind included.
    detected : pandas.DataFrame
        The detections with ``matched_kind`` (empty when unmatched) and
        ``kind_near`` (the kind they were counted under).

    Examples
    --------
    >>> t = pd.Timestamp("2026-01-01")
    >>> truth = pd.DataFrame({"device": ["a"], "metric": ["t"], "kind": ["spike"],
    ...                       "start": [t], "end": [t]})
    >>> found = pd.DataFrame({"device": ["a", "a"], "metric": ["t", "t"],
    ...                       "start": [t, t + pd.Timedelta("1D")],
    ...                       "end": [t, t + pd.Timedelta("1D")]})
    >>> summary, _ = evaluate_events(found, truth)
    >>> summary[["injected", "found", "detections", "false", "precision", "f1"]].loc[
    ...     "spike"].round(3).tolist()
    [1.0, 1.0, 1.0, 1.0, 0.5, 0.667]
    """
    tol = pd.Timedelta(tolerance)
    detected = detected.reset_index(drop=True).copy()
    matched_kind = np.full(len(detected), "", dtype=object)
    near_kind = np.full(len(detected), "", dtype=object)
    found = np.zeros(len(truth), dtype=bool)
    truth = truth.reset_index(drop=True)
    by_series = {key: grp for key, grp in truth.groupby(["device", "metric"])}
    for key, grp in detected.groupby(["device", "metric"]):
        events = by_series.get(key)
        if events is None:
            continue
        t_start = events["start"].to_numpy() - tol
        t_end = events["end"].to_numpy() + tol
        for i, d_start, d_end in zip(grp.index, grp["start"], grp["end"], strict=True):
            lo, hi = d_start.to_datetime64(), d_end.to_datetime64()
            hit = np.flatnonzero((t_start <= hi) & (lo <= t_end))
            if len(hit):
                found[events.index[hit]] = True
                matched_kind[i] = near_kind[i] = events["kind"].iloc[hit[0]]
            else:
                distance = np.maximum(t_start - hi, lo - t_end)
                near_kind[i] = events["kind"].iloc[int(np.argmin(distance))]
    detected["matched_kind"] = matched_kind
    detected["kind_near"] = near_kind
    kinds = sorted(truth["kind"].unique())
    rows = {}
    for kind in kinds:
        mask = truth["kind"].to_numpy() == kind
        rows[kind] = {"injected": mask.sum(), "found": found[mask].sum(),
                      "detections": (matched_kind == kind).sum(),
                      "false": ((matched_kind == "") & (near_kind == kind)).sum()}
    rows["all"] = {"injected": len(truth), "found": found.sum(),
                   "detections": (matched_kind != "").sum(),
                   "false": (matched_kind == "").sum()}
    summary = pd.DataFrame.from_dict(rows, orient="index").astype(float)
    summary.insert(2, "recall", summary["found"] / summary["injected"].where(
        summary["injected"] > 0))
    raised = summary["detections"] + summary["false"]
    summary["precision"] = summary["detections"] / raised.where(raised > 0)
    p, r = summary["precision"], summary["recall"]
    summary["f1"] = (2 * p * r / (p + r).where(p + r > 0)).where(p.notna() & r.notna())
    summary.index.name = "kind"
    return summary, detected


#: the columns an event needs to be sent anywhere
REQUIRED = ("device", "metric", "kind", "start")


def idempotency_key(device, metric, kind, start) -> str:
    """The key of an event: the same event always gets the same key.

    Examples
    --------
    >>> k = idempotency_key("dev-1", "temperature", "spike", "2026-01-05T10:00:00")
    >>> k == idempotency_key("dev-1", "temperature", "spike", pd.Timestamp("2026-01-05 10:00"))
    True
    >>> len(k)
    32
    """
    stamp = pd.Timestamp(start)
    text = f"{device}\x1f{metric}\x1f{kind}\x1f{stamp.value}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def alerts_of(events: pd.DataFrame) -> list[dict]:
    """The JSON alerts of an events table (times as ISO 8601 UTC, NaN as null)."""
    missing = [c for c in REQUIRED if c not in events.columns]
    if missing:
        raise ArgumentError(f"the events table lacks the columns {missing} (it has "
                            f"{list(events.columns)}); pass the output of flags_to_events")
    out = []
    for row in events.to_dict("records"):
        alert = {"idempotency_key": idempotency_key(row["device"], row["metric"], row["kind"],
                                                    row["start"])}
        for key, value in row.items():
            alert[str(key)] = jsonable(value)
        out.append(alert)
    return out


def jsonable(value):
    """A value of an events table as JSON has it: times in ISO 8601 UTC, NaN as null."""
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        stamp = pd.Timestamp(value)
        if stamp is pd.NaT:
            return None
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return stamp.isoformat().replace("+00:00", "Z")
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


__all__ = ["alerts_of", "evaluate_events", "flag_runs", "flags_to_events", "idempotency_key",
           "jsonable"]
