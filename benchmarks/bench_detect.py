"""Detection quality and speed: the default detector against every existing one.

Measures, with one default configuration for every series:

- **SKAB** (``$TOOLKIT_REAL_DATA/SKAB``): point-wise precision, recall and F1
  over all 34 runs of valve1, valve2 and other concatenated (SKAB's protocol:
  the first 400 rows of each run may be treated as normal -- the default
  detector learns from them only, ``learn_for=400``, each sensor's threshold
  is its largest score there raised half way to 1, and a run alarms where any
  of its sensors does);
- **the synthetic fleet** (``toolkit.make_fleet``): event precision, recall
  and F1 per anomaly kind (:func:`toolkit.evaluate_events`), with the
  time-gap check beside the detector for gaps;
- **made streams** of the kinds the detector must cope with (periodic,
  trending, noisy, spiky, quantised, with gaps), each with anomalies of one
  kind (spike, level shift, variance change, period change, shape change,
  stuck values, drift);
- the **early-detection window score** on all three (the rule of the
  Numenta Anomaly Benchmark, implemented from its public description:
  scaled sigmoid weights, standard profile A_TP = 1, A_FP = 0.11,
  A_FN = 1, a probationary first 15 % of each series that is not scored,
  windows of 10 % of the series' length shared among its anomalies;
  normalised so that 0 = never alarming, 100 = perfect);
- the default detector's **throughput** in samples per second per core.

Run: ``python benchmarks/bench_detect.py [--quick]``.
"""

from __future__ import annotations

import argparse
import math
import os
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

import kernels
import toolkit

PROBATION = 0.15
A_TP, A_FP, A_FN = 1.0, 0.11, 1.0
SKAB_TRAIN = 400


# --- the early-detection window score ------------------------------------------------------

def sigmoid(y: float) -> float:
    """NAB's scaled sigmoid: +1 far before a window's end, 0 at it, -1 far after."""
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def nab_windows(starts: list[int], ends: list[int], length: int) -> list[tuple[int, int]]:
    """Windows around the anomalies: 10 % of the length shared among them, centred on
    each anomaly's start (and reaching at least to its end); overlaps merged."""
    if not starts:
        return []
    width = int(0.1 * length / len(starts))
    out = []
    for s, e in sorted(zip(starts, ends, strict=True)):
        lo, hi = max(0, s - width // 2), min(length - 1, max(e, s + width // 2))
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def window_score(detections, windows, length) -> tuple[float, float, float]:
    """(score, perfect score, null score) of one series: detections are sample indices
    where an alarm starts."""
    probation = int(PROBATION * length)
    detections = sorted(int(d) for d in detections if d >= probation)
    score, hit = 0.0, set()
    for d in detections:
        inside = [k for k, (lo, hi) in enumerate(windows) if lo <= d <= hi]
        if inside:
            k = inside[0]
            if k in hit:
                continue  # only the first detection in a window counts
            hit.add(k)
            lo, hi = windows[k]
            score += A_TP * sigmoid(-(hi - d + 1) / (hi - lo + 1))
            continue
        before = [(lo, hi) for lo, hi in windows if hi < d]
        if before:
            lo, hi = before[-1]
            score += A_FP * sigmoid((d - hi) / (hi - lo + 1))
        else:
            score -= A_FP
    scored = [w for w in windows if w[1] >= probation]
    score -= A_FN * sum(1 for k, w in enumerate(windows) if w[1] >= probation and k not in hit)
    perfect = sum(A_TP * sigmoid(-(hi - max(lo, probation) + 1) / (hi - lo + 1))
                  for lo, hi in scored)
    return score, perfect, -A_FN * len(scored)


def normalised(parts) -> float:
    s, p, n = (sum(x[k] for x in parts) for k in range(3))
    return 100.0 * (s - n) / (p - n) if p != n else float("nan")


def starts(flag_row: np.ndarray) -> np.ndarray:
    on = np.isin(flag_row, (3, 4))
    return np.flatnonzero(on & ~np.concatenate([[False], on[:-1]]))


# --- the detectors, one default configuration each -----------------------------------------

def _flags_from(z, limit):
    f = np.where(np.abs(z) > limit, 4, 1).astype(np.int8)
    f[np.isnan(z)] = 2
    return f


def _shifted(stat):
    out = np.full_like(stat, np.nan)
    out[..., 1:] = stat[..., :-1]
    return out


def det_default(x, period=None):
    s = kernels.anomaly_score(x, period=period)
    return s, kernels.alarms(s)  # the default threshold


def det_rolling_z(x, period=None):  # (no cycle)
    z = kernels.move_zscore(x, 288, min_count=30)
    return z, _flags_from(z, 4.0)


def det_ewm_z(x, period=None):  # (no cycle)
    mean = _shifted(kernels.ewm_mean(x, halflife=100.0))
    std = _shifted(kernels.ewm_std(x, halflife=100.0))
    z = (x - mean) / std
    return z, _flags_from(z, 4.0)


def det_cusum(x, period=None):  # (no cycle)
    mean = _shifted(kernels.move_mean(x, 288, min_count=30))
    std = _shifted(kernels.move_std(x, 288, min_count=30))
    std = np.where(std > 0, std, np.nan)
    score, flag = kernels.cusum(x, np.nan_to_num(mean, nan=0.0),
                                np.nan_to_num(std, nan=1.0))
    flag = np.where(np.isnan(mean), 2, flag).astype(np.int8)
    return score, flag


def det_robust_z(x, period=None):  # (no cycle)
    return kernels.robust_zscore(x, 288, threshold=5.0, min_count=30)


DETECTORS = {"anomaly_score (default)": det_default, "rolling z |z|>4 w288": det_rolling_z,
             "EWM z |z|>4": det_ewm_z, "CUSUM on trailing mean/std": det_cusum,
             "robust z |z|>5 w288": det_robust_z}


# --- SKAB ------------------------------------------------------------------------------------

def skab_runs(root: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    runs = []
    for group in ("valve1", "valve2", "other"):
        files = sorted((root / "SKAB/data" / group).glob("*.csv"),
                       key=lambda p: int(p.stem))
        for f in files:
            frame = pd.read_csv(f, sep=";")
            values = frame.drop(columns=["datetime", "anomaly", "changepoint"]).to_numpy(float)
            runs.append((values.T.copy(), frame["anomaly"].to_numpy(int)))
    return runs


def skab(root: Path, name: str, detect) -> dict:
    truth, pred, parts = [], [], []
    for values, labels in skab_runs(root):
        score, flags = _combined(detect, values)
        alarm = np.isin(flags, (3, 4))
        truth.append(labels)
        pred.append(alarm)
        seg = _segments(labels)
        windows = nab_windows([s for s, _ in seg], [e for _, e in seg], len(labels))
        parts.append(window_score(starts(flags), windows, len(labels)))
    t, p = np.concatenate(truth).astype(bool), np.concatenate(pred)
    tp, fp, fn = (t & p).sum(), (~t & p).sum(), (t & ~p).sum()
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn)
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {"detector": name, "precision": precision, "recall": recall, "F1": f1,
            "window score": normalised(parts)}


def _combined(detect, values):
    """A multi-sensor run: the detector on each sensor, alarms where any alarms.

    The default detector follows SKAB's protocol through the toolkit's own
    healthy-period option: it learns from the first rows only (``learn_for``)
    and each sensor's threshold is its largest score there (after the
    warm-up) raised half way to 1, as ``detect.anomaly(threshold=None,
    healthy=...)`` does per metric."""
    if detect is det_default:
        s = kernels.anomaly_score(values, learn_for=SKAB_TRAIN)
        flags = np.stack([kernels.alarms(row, kernels.healthy_threshold(
            row[100:SKAB_TRAIN], 1.0, margin=0.5)) for row in s])
        return np.nanmax(s, axis=0), np.where((flags == 4).any(axis=0), 4, 1).astype(np.int8)
    _, flags = detect(values)
    return None, np.max(np.where(np.isin(flags, (3, 4)), 4, 1), axis=0).astype(np.int8)


def _segments(labels) -> list[tuple[int, int]]:
    on = np.asarray(labels).astype(bool)
    edges = np.diff(np.concatenate([[0], on.astype(int), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1, strict=True))


# --- made streams ----------------------------------------------------------------------------

SHAPES = ("periodic", "trending", "noisy", "spiky", "quantised", "gappy")
KINDS = ("spike", "level_shift", "variance", "period", "shape", "stuck", "drift")


DAY = 288  # samples per day of the made streams: the detector's seasonal cycle


def _seed(*parts) -> int:
    """A seed from names that is the same in every process (``hash`` of a string is not)."""
    return zlib.crc32(repr(parts).encode())


def make_stream(shape: str, kind: str, seed: int, n: int = 4032):
    """One series (5-minute samples over 14 days) with one or two anomalies of ``kind``."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    day = DAY
    base = 10 + 3 * np.sin(2 * np.pi * t / day)
    noise = rng.normal(0, 0.3, n)
    if shape == "trending":
        base = base + 4.0 * t / n
    if shape == "noisy":
        noise = rng.normal(0, 1.2, n)
    if shape == "spiky":  # benign, frequent small spikes are normal here
        noise = noise + rng.choice([0, 1.5], n, p=[0.97, 0.03])
    x = base + noise
    n_anom = int(rng.integers(1, 3))
    first = int(PROBATION * n) + 300
    at = sorted(rng.choice(np.arange(first, n - 300, 400), n_anom, replace=False).tolist())
    ends = []
    for a in at:
        if kind == "spike":
            x[a] += rng.choice([-1, 1]) * 8.0
            ends.append(a)
        elif kind == "level_shift":
            x[a:] += 4.0
            ends.append(a + 50)
        elif kind == "variance":
            x[a:a + 200] += rng.normal(0, 2.0, len(x[a:a + 200]))
            ends.append(a + 200)
        elif kind == "period":  # the cycle runs twice as fast for a while
            seg = slice(a, a + 288)
            x[seg] = x[seg] - base[seg] + 10 + 3 * np.sin(4 * np.pi * t[seg] / day)
            ends.append(a + 288)
        elif kind == "shape":  # the cycle turns into a square wave for a while
            seg = slice(a, a + 288)
            x[seg] = x[seg] - base[seg] + 10 + 3 * np.sign(np.sin(2 * np.pi * t[seg] / day))
            ends.append(a + 288)
        elif kind == "stuck":
            x[a:a + 150] = x[a]
            ends.append(a + 150)
        elif kind == "drift":
            k = min(400, n - a)
            x[a:a + k] += np.linspace(0, 6, k)
            x[a + k:] += 6
            ends.append(a + 150)
    if shape == "quantised":
        x = np.round(x * 2) / 2
    if shape == "gappy":
        for g in rng.choice(n - 30, 8, replace=False):
            x[g:g + int(rng.integers(3, 25))] = np.nan
    return x, at, ends


def streams_score(name: str, detect, quick: bool) -> dict:
    parts, per_kind = [], {}
    seeds = 2 if quick else 4
    for shape in SHAPES:
        for kind in KINDS:
            for seed in range(seeds):
                x, at, ends = make_stream(shape, kind, _seed(shape, kind, seed))
                _, flags = detect(x[None, :], period=DAY)
                w = nab_windows(at, ends, len(x))
                part = window_score(starts(flags[0]), w, len(x))
                parts.append(part)
                per_kind.setdefault(kind, []).append(part)
    row = {"detector": name, "all": normalised(parts)}
    row.update({k: normalised(v) for k, v in per_kind.items()})
    return row


# --- the synthetic fleet ---------------------------------------------------------------------

def fleet_table(quick: bool):
    """The default detector's events on the synthetic fleet, per kind; and every
    detector's window score there."""
    fleet = toolkit.make_fleet(n_devices=20 if quick else 60, days=14, seed=1)
    ds = fleet.dataset.load()
    frames = []
    period = toolkit.ops.detect.season_samples(ds.time.values)  # "auto": a day of samples
    for m in ds.data_vars:
        s, f = det_default(ds[m].values, period=period)
        flags = ds[[m]].copy(data={m: f})
        frames.append(toolkit.flags_to_events(flags, ds[[m]].copy(data={m: s}),
                                              kind="anomaly", min_flag=4))
    gaps = ds.telemetry.flags.time_gaps("10min")
    frames.append(toolkit.flags_to_events(gaps, kind="time_gap", min_flag=4))
    events = pd.concat(frames, ignore_index=True)
    summary, _ = toolkit.evaluate_events(events, fleet.events, tolerance="5min")
    return summary, fleet_window_scores(ds, fleet.events, gaps, period)


def fleet_window_scores(ds, truth: pd.DataFrame, gaps, period) -> dict:
    """Each detector's window score over every series of the fleet (series without an
    injected anomaly included: their alarms are false ones), the time-gap check's
    alarms added to every detector's."""
    times = ds.time.values
    windows = {}
    for (device, metric), rows in truth.groupby(["device", "metric"]):
        windows[device, metric] = nab_windows(list(np.searchsorted(times, rows.start.values)),
                                              list(np.searchsorted(times, rows.end.values)),
                                              len(times))
    scores = {}
    for name, detect in DETECTORS.items():
        parts = []
        for m in ds.data_vars:
            _, flags = detect(ds[m].values, period=period)
            gap_flags = gaps[m].values
            for i, device in enumerate(ds.device.values):
                alarms = np.union1d(starts(flags[i]), starts(gap_flags[i]))
                parts.append(window_score(alarms, windows.get((device, m), []), len(times)))
        scores[name] = normalised(parts)
    return scores


def throughput(period=None) -> float:
    x = np.random.default_rng(0).normal(size=(64, 200_000))
    kernels.anomaly_score(x[:, :1000], period=period)
    with kernels.parallel.use_threads(1):
        best = min(_timed(lambda: kernels.anomaly_score(x, period=period)) for _ in range(3))
    return x.size / best


def _timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def markdown(frame: pd.DataFrame, digits: int = 3) -> str:
    """A DataFrame as a Markdown table (index first)."""
    frame = frame.reset_index()
    cells = [[f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row]
             for row in frame.itertuples(index=False)]
    head = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    root = os.environ.get("TOOLKIT_REAL_DATA")
    if root:
        rows = [skab(Path(root), name, det) for name, det in DETECTORS.items()]
        print("\n## SKAB (34 runs, point-wise; window score on the labelled segments)\n")
        print(markdown(pd.DataFrame(rows).set_index("detector")))
    else:
        print("SKAB skipped: set TOOLKIT_REAL_DATA to the shared data folder")
    rows = [streams_score(name, det, args.quick) for name, det in DETECTORS.items()]
    print("\n## Made streams: window score per anomaly kind (6 shapes each)\n")
    print(markdown(pd.DataFrame(rows).set_index("detector"), 1))
    summary, scores = fleet_table(args.quick)
    print("\n## Synthetic fleet: default detector + time-gap check, per kind\n")
    print(markdown(summary))
    print("\n## Synthetic fleet: window score, every series (time-gap check added to each)\n")
    print(markdown(pd.DataFrame({"window score": scores}).rename_axis("detector"), 1))
    for period, what in ((None, "no profile"), (1440, "a daily profile, 1-minute samples")):
        print(f"\nthroughput of anomaly_score ({what}): "
              f"{throughput(period) / 1e6:.2f} million samples/s on one core")


if __name__ == "__main__":
    main()
