"""One task per device chunk: every check and detector of the pipeline, and its events.

:func:`run_chain` takes a chunk of devices over a stretch of the grid and
returns, for the bins ``[r, n)``, the values, counts, every step's flags
and scores, the aggregate flag per metric and the events; plus what the next
incremental run needs at bin ``s``: each scan's state and each flag's run
that is still open at ``s - 1``. Window steps read the bins before ``r`` they
need (``i0 <= r - before``); scans start at ``r`` from the carried state.
The same function does a full run (``i0 = r = 0``, no state) and an
incremental one, so both give the same result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kernels.flags import runs as flag_run_table

from ..model import (
    FLAG_FAIL,
    FLAG_MISSING,
    FLAG_NOT_EVALUATED,
    FLAG_PASS,
    FLAG_SUSPECT,
    count_name,
)
from .steps import Step

#: columns of the events table
EVENT_COLUMNS = ["device", "metric", "kind", "start", "end", "score", "severity"]
#: and the bin indices kept beside them between incremental runs
INDEX_COLUMNS = ["first", "last"]


@dataclass(frozen=True)
class Plan:
    """Where a run's chain starts, writes from, saves state at, and ends (bin indices)."""

    steps: tuple[Step, ...]
    metrics: tuple[str, ...]
    grid_start: int
    step_ns: int
    i0: int
    r: int
    s: int
    n: int

    def times(self, lo: int, hi: int) -> np.ndarray:
        return self.grid_start + self.step_ns * np.arange(lo, hi, dtype=np.int64)


def run_chain(plan: Plan, devices: np.ndarray, values: dict, counts: dict, states: dict,
              opens: dict) -> dict:
    """Run every step of ``plan`` on one chunk of devices (see the module docstring).

    ``values[m]`` (float64) and ``counts[m]`` (int32) hold bins ``[i0, n)``;
    ``states[key]`` the scan state at ``r`` (None: a fresh start);
    ``opens[flag_name]`` the run open at ``r - 1`` as ``(start, peak, worst)``
    arrays per device (start -1: none), or None.
    """
    p = plan
    t = p.times(p.i0, p.n)
    at = p.r - p.i0
    out: dict[str, np.ndarray] = {}
    for m in p.metrics:
        out[m] = values[m][:, at:]
        out[count_name(m)] = counts[m][:, at:]
    worst = {m: np.zeros(out[m].shape, np.int8) for m in p.metrics}
    new_states, new_opens, tables = {}, {}, []
    for st in p.steps:
        v = values[st.metric]
        if st.is_scan:
            cut = p.s - p.i0
            state = states.get(st.key)
            if cut > at:
                f1, s1, state = st.run(v[:, at:cut], t[at:cut], state, with_state=True)
            else:
                f1, s1 = np.empty((v.shape[0], 0), np.int8), np.empty((v.shape[0], 0))
            f2, s2, _ = st.run(v[:, cut:], t[cut:], state, with_state=True)
            flag = np.concatenate([f1, f2], axis=1)
            score = None if s2 is None else np.concatenate([s1, s2], axis=1)
            new_states[st.key] = state
        else:
            before, _ = st.halo()
            lo = max(0, p.r - before) - p.i0
            flag, score = st.run(v[:, lo:], t[lo:])
            flag = flag[:, at - lo:]
            score = None if score is None else score[:, at - lo:]
        out[st.flag_name] = flag
        if score is not None:
            out[st.score_name] = score
        counted = (flag == 1) | (flag == FLAG_SUSPECT) | (flag == FLAG_FAIL)
        np.maximum(worst[st.metric], np.where(counted, flag, 0).astype(np.int8),
                   out=worst[st.metric])
        table, new_opens[st.flag_name] = _events(
            flag, score, opens.get(st.flag_name), p, devices, st.metric, st.kind)
        tables.append(table)
    present = np.zeros(len(devices), np.int64)
    codes = {}
    for m in p.metrics:
        agg = np.where(worst[m] == 0, FLAG_NOT_EVALUATED, worst[m]).astype(np.int8)
        agg[np.isnan(out[m])] = FLAG_MISSING
        out[f"{m}_flag"] = agg
        # the health summary's counts over [r, n), per device
        present += (~np.isnan(out[m])).sum(axis=1)
        for code in (FLAG_PASS, FLAG_NOT_EVALUATED, FLAG_SUSPECT, FLAG_FAIL, FLAG_MISSING):
            codes[int(code)] = codes.get(int(code), 0) + (agg == code).sum(axis=1)
    tables = [x for x in tables if len(x)]
    events = pd.concat(tables, ignore_index=True) if tables else empty_events()
    return {"vars": out, "states": new_states, "opens": new_opens, "events": events,
            "health": (present, codes)}


def empty_events() -> pd.DataFrame:
    return pd.DataFrame({"device": pd.Series(dtype=object), "metric": pd.Series(dtype=object),
                         "kind": pd.Series(dtype=object),
                         "start": pd.Series(dtype="datetime64[ns]"),
                         "end": pd.Series(dtype="datetime64[ns]"),
                         "score": pd.Series(dtype=float), "severity": pd.Series(dtype=object),
                         "first": pd.Series(dtype=np.int64),
                         "last": pd.Series(dtype=np.int64)})


def _events(flag, score, carried, p: Plan, devices, metric, kind):
    """Runs of flags >= 3 in bins ``[r, n)``, joined to the run carried from ``r - 1``.

    Returns the events (every run that reaches into ``[r, n)``, and the
    carried run if it ended at ``r - 1``) and the runs open at ``s - 1``.
    """
    nd = flag.shape[0]
    # one compiled pass: each run's row, first and last bin, highest flag, peak |score|
    row, first, last, worst, peak = flag_run_table(flag, score, min_flag=FLAG_SUSPECT,
                                                   skip_missing=True)
    first_g = first.astype(np.int64) + p.r
    last_g = last.astype(np.int64) + p.r
    extra_rows, extra = [], []
    if carried is not None:
        c_start, c_peak, c_worst = carried
        for d in np.flatnonzero(c_start >= 0):
            k = np.flatnonzero((row == d) & (first == 0))
            if len(k):  # the carried run goes on at r
                k = k[0]
                first_g[k] = c_start[d]
                peak[k] = np.fmax(peak[k], c_peak[d])
                worst[k] = max(worst[k], c_worst[d])
            else:  # it ended at r - 1
                extra_rows.append(d)
                extra.append((c_start[d], p.r - 1, c_peak[d], c_worst[d]))
    rows = np.concatenate([row, np.array(extra_rows, dtype=row.dtype)])
    f_all = np.concatenate([first_g, np.array([e[0] for e in extra], np.int64)])
    l_all = np.concatenate([last_g, np.array([e[1] for e in extra], np.int64)])
    pk = np.concatenate([peak, np.array([e[2] for e in extra], float)])
    wf = np.concatenate([worst, np.array([e[3] for e in extra], np.int8)])
    table = pd.DataFrame({
        "device": devices[rows].astype(object), "metric": metric, "kind": kind,
        "start": pd.to_datetime(p.grid_start + p.step_ns * f_all, unit="ns"),
        "end": pd.to_datetime(p.grid_start + p.step_ns * l_all, unit="ns"),
        "score": pk, "severity": np.where(wf >= FLAG_FAIL, "fail", "suspect").astype(object),
        "first": f_all, "last": l_all})
    return table, _open_at(p, nd, row, first, first_g, last_g, flag, score, carried)


def _open_at(p: Plan, nd, row, first, first_g, last_g, flag, score, carried):
    """The run of each device that covers bin ``s - 1``: (start, peak, worst) up to it."""
    start = np.full(nd, -1, np.int64)
    peak = np.full(nd, np.nan)
    worst = np.zeros(nd, np.int8)
    edge = p.s - 1
    if edge < 0:
        return start, peak, worst
    if edge < p.r:  # the save point is where this run began: the carried runs stay
        if carried is None:
            return start, peak, worst
        return tuple(np.array(a) for a in carried)
    covering = np.flatnonzero((first_g <= edge) & (last_g >= edge))
    for k in covering:
        d = row[k]
        lo, hi = first[k], edge - p.r + 1  # local bins of the run up to s - 1
        start[d] = first_g[k]
        if score is not None:
            seg = np.abs(score[d, lo:hi])
            seg = seg[~np.isnan(seg)]
            peak[d] = seg.max() if seg.size else np.nan
        worst[d] = flag[d, lo:hi].max()  # every bin of a run is raised (3 or 4)
        if carried is not None and first_g[k] < p.r:  # joined to the carried run
            peak[d] = np.fmax(peak[d], carried[1][d])
            worst[d] = max(worst[d], carried[2][d])
    return start, peak, worst


__all__ = ["EVENT_COLUMNS", "Plan", "empty_events", "run_chain"]
