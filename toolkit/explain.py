"""What an event means: the metrics that drove it, how far, and against what.

A detector raises events per device and metric. :func:`explain_events`
joins a device's events that overlap in time into one incident, and says

- which metrics drove it, strongest first, with the peak score of each;
- whether the device left **its own past** (every single-series detector
  and check compares a device with its own history) and whether it left
  **its peers** at the same time: the robust z-score of the device against
  the fleet, or against its group (``by``, a device coordinate such as
  ``site``), from :func:`toolkit.ops.detect.peer_zscore`. A weather front
  moves every sensor: their own pasts are left, their peers are not. One
  sensor that drifts away leaves both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from .errors import ArgumentError
from .model import DEVICE, TIME
from .ops.detect import peer_zscore

COLUMNS = ["device", "start", "end", "driver", "metrics", "scores", "kinds", "events",
           "peer_score", "left"]


def explain_events(events: pd.DataFrame, data: xr.Dataset, *, by: str | None = None,
                   peer_threshold: float = 5.0, join_within="0s") -> pd.DataFrame:
    """One row per incident (a device's overlapping events), explained.

    Parameters
    ----------
    events : pandas.DataFrame
        Events (``device, metric, kind, start, end, score``), e.g. a
        pipeline's ``events.parquet`` or :func:`toolkit.flags_to_events`.
    data : xarray.Dataset
        The fleet the events were found in (the peers are compared on it).
    by : str, optional
        A device coordinate: peers are the devices of the same group.
    peer_threshold : float
        Above this robust z against its peers a device has left them.
    join_within : str or timedelta
        Events of a device closer than this are one incident.

    Returns
    -------
    pandas.DataFrame
        ``device, start, end``; ``driver`` (the metric with the highest peak
        score); ``metrics`` (comma-separated, strongest first); ``scores``
        (``metric=peak``, same order); ``kinds``; ``events`` (how many);
        ``peer_score`` (the largest absolute robust z of the device against
        its peers during the incident, over its metrics); ``left``: ``"own
        past"`` (its peers moved too), ``"own past and peers"`` or ``"peers"``
        (only a fleet-relative detector saw it).

    Examples
    --------
    >>> import toolkit
    >>> fleet = toolkit.make_fleet(n_devices=8, days=0.5, anomaly_rate=0, seed=1).dataset
    >>> ds = fleet.copy(deep=True)
    >>> ds["temperature"][3, 400:460] += 8.0   # one device leaves its peers
    >>> ev = pd.DataFrame({"device": ["dev-0003"], "metric": ["temperature"],
    ...                    "kind": ["anomaly"], "start": [ds.time.values[400]],
    ...                    "end": [ds.time.values[459]], "score": [0.9999]})
    >>> explain_events(ev, ds)[["driver", "left"]].values.tolist()
    [['temperature', 'own past and peers']]
    """
    if not len(events):
        return pd.DataFrame(columns=COLUMNS)
    missing = sorted(set(events["metric"].astype(str)) - set(map(str, data.data_vars)))
    if missing:
        raise ArgumentError(f"events name metrics {missing} that the data do not have")
    gap = pd.Timedelta(join_within)
    metrics = sorted(set(events["metric"].astype(str)))
    peers, _ = peer_zscore(data[metrics], threshold=peer_threshold, by=by)
    peers = np.abs(peers.transpose(DEVICE, TIME)).compute()
    times = pd.DatetimeIndex(data[TIME].values)
    device_index = {str(d): i for i, d in enumerate(data[DEVICE].values)}
    table = events.assign(device=events["device"].astype(str),
                          metric=events["metric"].astype(str)).sort_values(
        ["device", "start"], kind="stable")
    rows = []
    for device, mine in table.groupby("device", sort=True):
        incident: list = []
        end = None
        for ev in mine.itertuples(index=False):
            if incident and ev.start > end + gap:
                rows.append(_explain(device, incident, peers, times, device_index,
                                     peer_threshold))
                incident = []
            end = ev.end if not incident else max(end, ev.end)
            incident.append(ev)
        rows.append(_explain(device, incident, peers, times, device_index, peer_threshold))
    return pd.DataFrame(rows, columns=COLUMNS)


def _explain(device, incident, peers, times, device_index, peer_threshold) -> dict:
    start = min(e.start for e in incident)
    end = max(e.end for e in incident)
    peak: dict[str, float] = {}
    for e in incident:
        score = abs(float(e.score)) if "score" in e._fields and pd.notna(e.score) else np.nan
        peak[e.metric] = np.fmax(peak.get(e.metric, np.nan), score)
    order = sorted(peak, key=lambda m: (np.isnan(peak[m]), -np.nan_to_num(peak[m])))
    lo, hi = times.searchsorted(start), times.searchsorted(end, side="right")
    d = device_index.get(device)
    peer = np.nan
    if d is not None and hi > lo:
        values = [np.asarray(peers[m].values[d, lo:hi]) for m in order]
        values = np.concatenate(values)
        values = values[~np.isnan(values)]
        peer = float(values.max()) if values.size else np.nan
    kinds = sorted({str(e.kind) for e in incident})
    own = any(k != "peers" for k in kinds)
    away = bool(peer > peer_threshold)
    left = "own past and peers" if own and away else ("peers" if away else "own past")
    return {"device": device, "start": start, "end": end, "driver": order[0],
            "metrics": ", ".join(order),
            "scores": "; ".join(f"{m}={peak[m]:.4g}" for m in order),
            "kinds": ", ".join(kinds), "events": len(incident), "peer_score": peer,
            "left": left}


__all__ = ["explain_events"]
