"""A deterministic synthetic fleet with injected anomalies and ground truth.

The fleet follows the data model of :mod:`toolkit.model`. Every value is a
function of ``seed``, the device's index and the metric only, so a fleet is
the same whether it is generated in one piece or in chunks on Dask workers.

Each metric is a per-device level, a daily cycle, a slow trend (pressure has
weather swings over days, batteries discharge), and white noise. Anomalies are
drawn from their own random stream, so ``anomaly_rate=0`` gives exactly the
same clean signal the anomalies were injected into.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import xarray as xr

from .errors import ArgumentError
from .model import DEVICE, TIME

ANOMALY_KINDS: tuple[str, ...] = ("spike", "level_shift", "stuck", "drift", "gap")


@dataclass(frozen=True)
class MetricSpec:
    """How one synthetic metric behaves (all amounts in the metric's units)."""

    units: str
    long_name: str
    level: float  # fleet-wide typical value
    spread: float  # standard deviation of the per-device offset
    daily_amplitude: float  # amplitude of the daily cycle (negative: anti-phase)
    noise: float  # standard deviation of the white noise
    trend_per_day: float = 0.0
    weather: float = 0.0  # amplitude of slow multi-day swings


METRICS: dict[str, MetricSpec] = {
    "temperature": MetricSpec("degC", "air temperature", 21.0, 2.0, 3.0, 0.3),
    "humidity": MetricSpec("%", "relative humidity", 45.0, 5.0, -6.0, 1.0),
    "pressure": MetricSpec("Pa", "air pressure", 101325.0, 150.0, 30.0, 8.0,
                           weather=600.0),
    "battery_voltage": MetricSpec("V", "battery voltage", 3.95, 0.05, 0.004, 0.002,
                                  trend_per_day=-0.01),
}

# Size of each anomaly in units of the metric's noise, and its duration in
# samples: (low, high) ranges drawn uniformly.
_MAGNITUDE = {"spike": (12.0, 25.0), "level_shift": (8.0, 16.0), "drift": (15.0, 30.0)}
_DURATION = {"spike": (1, 1), "level_shift": (120, 720), "stuck": (120, 480),
             "drift": (1440, 4320), "gap": (30, 360)}


class Fleet(NamedTuple):
    """A synthetic fleet and the anomalies injected into it."""

    dataset: xr.Dataset
    #: one row per injected anomaly: device, metric, kind, start, end
    #: (inclusive), magnitude, start_index, end_index
    events: pd.DataFrame


def make_fleet(
    n_devices: int = 100,
    days: float = 14.0,
    freq: str = "1min",
    *,
    start: str = "2026-01-05",
    metrics: list[str] | None = None,
    seed: int = 0,
    dropout: float = 0.001,
    anomaly_rate: float = 0.5,
    dtype: str = "float64",
    chunks: int | None = None,
) -> Fleet:
    """Generate a fleet of sensors with known, injected anomalies.

    Parameters
    ----------
    n_devices : int
        Number of devices (ids ``dev-0000``, ``dev-0001``...).
    days : float
        Length of the record in days.
    freq : str
        Sampling interval, a pandas frequency such as ``"1min"`` or ``"30s"``.
    start : str
        First timestamp (UTC).
    metrics : list of str, optional
        Subset of :data:`METRICS` (temperature, humidity, pressure,
        battery_voltage). Default: all.
    seed : int
        Seed of every random stream; the same seed gives the same fleet.
    dropout : float
        Probability that a single sample is missing (NaN) -- ordinary data
        loss, not counted as an anomaly.
    anomaly_rate : float
        Expected number of anomalies per device, metric and 14 days; 0 gives
        the clean fleet.
    dtype : {"float64", "float32"}
        Dtype of the metric variables.
    chunks : int, optional
        Devices per chunk. When given, the data are generated lazily by Dask
        tasks (on the workers of the current client), one task per chunk and
        metric; when omitted, they are numpy arrays.

    Returns
    -------
    Fleet
        ``(dataset, events)``: the dataset follows the data model
        (``("device", "time")``, NaN missing) and ``events`` is the ground
        truth of the injected anomalies, inclusive ``start``/``end`` times.

    Examples
    --------
    >>> fleet = make_fleet(n_devices=3, days=1, seed=1)
    >>> fleet.dataset.temperature.shape
    (3, 1440)
    >>> sorted(fleet.dataset.data_vars)
    ['battery_voltage', 'humidity', 'pressure', 'temperature']
    >>> set(fleet.events.kind) <= set(ANOMALY_KINDS)
    True
    """
    names = list(METRICS) if metrics is None else list(metrics)
    unknown = sorted(set(names) - set(METRICS))
    if unknown:
        raise ArgumentError(f"unknown metrics {unknown}; choose from {list(METRICS)}")
    if n_devices < 1:
        raise ArgumentError(f"n_devices must be at least 1, got {n_devices}")
    if not 0 <= dropout < 1:
        raise ArgumentError(f"dropout must be a probability in [0, 1), got {dropout}")
    if anomaly_rate < 0:
        raise ArgumentError(f"anomaly_rate must be >= 0, got {anomaly_rate}")
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise ArgumentError(f"dtype must be float32 or float64, got {dtype!r}")
    step = pd.Timedelta(freq)
    n_times = int(round(pd.Timedelta(days=days) / step))
    if n_times < 1:
        raise ArgumentError(f"days={days} at freq={freq!r} gives no sample")
    times = pd.date_range(start, periods=n_times, freq=step)
    day_fraction = np.arange(n_times) / (pd.Timedelta(days=1) / step)

    per_day = pd.Timedelta(days=1) / step
    events = _schedule_anomalies(n_devices, names, times, day_fraction, per_day,
                                 seed, anomaly_rate)
    devices = np.array([f"dev-{i:04d}" for i in range(n_devices)])
    data_vars = {}
    for m_index, name in enumerate(names):
        spec = METRICS[name]
        gen = _MetricGenerator(name, m_index, spec, seed, n_times, per_day, dropout,
                               dtype, events[events.metric == name])
        if chunks is None:
            values = gen(np.arange(n_devices))
        else:
            import dask.array as da

            index = da.arange(n_devices, chunks=int(chunks))
            values = index.map_blocks(
                gen, new_axis=1, chunks=(index.chunks[0], (n_times,)),
                dtype=dtype, name=f"synthetic-{name}-{seed}-{n_devices}-{n_times}"
                f"-{freq}-{dropout}-{anomaly_rate}-{dtype}-{start}",
                meta=np.empty((0, 0), dtype=dtype),
            )
        data_vars[name] = ((DEVICE, TIME), values,
                           {"units": spec.units, "long_name": spec.long_name})

    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(3,)))
    coords = {
        DEVICE: devices,
        TIME: times.values.astype("datetime64[ns]"),
        "site": (DEVICE, np.array([f"site-{i % 10:02d}" for i in range(n_devices)])),
        "x": (DEVICE, rng.uniform(0, 40, n_devices), {"units": "m"}),
        "y": (DEVICE, rng.uniform(0, 30, n_devices), {"units": "m"}),
    }
    attrs = {
        "source": f"toolkit.synthetic.make_fleet(n_devices={n_devices}, "
        f"days={days}, freq={freq!r}, seed={seed}, dropout={dropout}, "
        f"anomaly_rate={anomaly_rate})",
        "history": "",
    }
    return Fleet(xr.Dataset(data_vars, coords, attrs), events)


class _MetricGenerator:
    """Generates the rows of one metric for given device indices (a Dask task)."""

    def __init__(self, name, m_index, spec, seed, n_times, per_day, dropout, dtype, events):
        self.__name__ = f"synthetic_{name}"
        self.m_index = m_index
        self.spec = spec
        self.seed = seed
        # sizes, not the time axis itself: every task carries this object, so
        # the graph stays small whatever the length of the series
        self.n_times, self.per_day = n_times, per_day
        self.dropout = dropout
        self.dtype = dtype
        # the metric's anomalies as a few flat arrays sorted by device, not a
        # DataFrame per device: every task carries (a copy of) this object, and
        # thousands of small frames per copy made a worker's memory grow with
        # the number of tasks it ran (paused at 1 GiB on a 1.2 GiB fleet)
        order = np.argsort(events.device_index.to_numpy(), kind="stable")
        self.ev_device = events.device_index.to_numpy(np.int64)[order]
        self.ev_kind = events.kind.to_numpy(str)[order]
        self.ev_start = events.start_index.to_numpy(np.int64)[order]
        self.ev_end = events.end_index.to_numpy(np.int64)[order]
        self.ev_magnitude = events.magnitude.to_numpy(np.float64)[order]

    def __call__(self, device_index: np.ndarray) -> np.ndarray:
        day_fraction = np.arange(self.n_times) / self.per_day
        out = np.empty((len(device_index), self.n_times), dtype=self.dtype)
        for row, dev in enumerate(np.asarray(device_index)):
            values = _clean_series(self.spec, day_fraction, self.seed, int(dev),
                                   self.m_index, self.dropout)
            lo, hi = np.searchsorted(self.ev_device, [dev, dev + 1])
            for k in range(lo, hi):
                _inject(values, self.ev_kind[k], self.ev_start[k], self.ev_end[k],
                        self.ev_magnitude[k])
            out[row] = values
        return out


def _clean_series(spec, t, seed, device, metric, dropout):
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, device, metric)))
    offset = rng.normal(0.0, spec.spread)
    phase = rng.uniform(-0.05, 0.05)  # days; devices sit in slightly different spots
    amplitude = spec.daily_amplitude * rng.uniform(0.8, 1.2)
    x = spec.level + offset + amplitude * np.sin(2 * np.pi * (t - 0.375 - phase))
    x += spec.trend_per_day * t
    if spec.weather:
        periods = rng.uniform(2.0, 7.0, 3)
        phases = rng.uniform(0, 1, 3)
        weights = rng.dirichlet(np.ones(3))
        for p, ph, w in zip(periods, phases, weights, strict=True):
            x += spec.weather * w * np.sin(2 * np.pi * (t / p + ph))
    x += rng.normal(0.0, spec.noise, t.size)
    if dropout:
        x[rng.random(t.size) < dropout] = np.nan
    return x


def _inject(x, kind, start, end, magnitude):
    a, b = start, end + 1
    if kind == "spike":
        x[a] += magnitude
    elif kind == "level_shift":
        x[a:b] += magnitude
    elif kind == "drift":
        x[a:b] += np.linspace(0.0, magnitude, b - a)
    elif kind == "stuck":
        # the sensor repeats the last value it read before freezing
        x[a:b] = magnitude
    elif kind == "gap":
        x[a:b] = np.nan


def _schedule_anomalies(n_devices, names, times, day_fraction, per_day, seed, rate):
    """Draw the anomalies: non-overlapping, separated by a margin, per series."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2,)))
    n_times = len(times)
    scale = per_day / 1440.0  # durations above are in minutes
    margin = int(round(180 * scale))  # quiet time before and after each event
    expected = rate * n_times / (14 * per_day)
    rows = []
    for dev in range(n_devices):
        for m_index, name in enumerate(names):
            spec = METRICS[name]
            taken: list[tuple[int, int]] = []
            for _ in range(rng.poisson(expected)):
                kind = ANOMALY_KINDS[rng.integers(len(ANOMALY_KINDS))]
                lo, hi = _DURATION[kind]
                length = max(1, int(round(rng.integers(lo, hi + 1) * scale)))
                if kind == "spike":
                    length = 1
                first, last = margin, n_times - length - margin
                if last <= first:
                    continue
                a = int(rng.integers(first, last))
                b = a + length - 1
                if any(a <= q + margin and p <= b + margin for p, q in taken):
                    continue  # would overlap an anomaly already placed
                taken.append((a, b))
                if kind in _MAGNITUDE:
                    size = rng.uniform(*_MAGNITUDE[kind]) * spec.noise
                    magnitude = size * rng.choice([-1.0, 1.0])
                else:
                    magnitude = np.nan
                rows.append((dev, name, m_index, kind, a, b, magnitude))
    events = pd.DataFrame(rows, columns=["device_index", "metric", "metric_index",
                                         "kind", "start_index", "end_index",
                                         "magnitude"])
    events = events.astype({"device_index": np.int64, "start_index": np.int64,
                            "end_index": np.int64, "magnitude": np.float64})
    # a stuck sensor holds the clean value it had just before the event
    for i in np.flatnonzero(events.kind.to_numpy() == "stuck"):
        ev = events.iloc[i]
        clean = _clean_series(METRICS[ev.metric], day_fraction, seed,
                              int(ev.device_index), int(ev.metric_index), 0.0)
        events.iloc[i, events.columns.get_loc("magnitude")] = clean[ev.start_index - 1]
    events.insert(0, "device", [f"dev-{i:04d}" for i in events.device_index])
    events["start"] = times[events.start_index].values
    events["end"] = times[events.end_index].values
    cols = ["device", "metric", "kind", "start", "end", "magnitude",
            "start_index", "end_index", "device_index"]
    return events[cols].sort_values(["device", "metric", "start"], ignore_index=True)


def to_samples(ds: xr.Dataset, *, jitter: str | None = None, seed: int = 0) -> pd.DataFrame:
    """The fleet in long form: one row per valid sample (device, time, metric, value).

    Missing (NaN) samples have no row, as a device that did not report sends
    nothing. With ``jitter`` (a duration such as ``"2s"``) every timestamp is
    moved by a uniform random offset in ``[-jitter, +jitter]``, as device
    clocks do. A Dask-backed fleet is computed: use this on fleets that fit in
    memory.

    Examples
    --------
    >>> fleet = make_fleet(n_devices=2, days=1 / 24, anomaly_rate=0, dropout=0)
    >>> samples = to_samples(fleet.dataset)
    >>> list(samples.columns), len(samples)
    (['device', 'time', 'metric', 'value'], 480)
    """
    frames = []
    for name in ds.data_vars:
        values = np.asarray(ds[name].transpose(DEVICE, TIME).values)
        dev_i, time_i = np.nonzero(~np.isnan(values))
        frames.append(pd.DataFrame({
            "device": ds[DEVICE].values[dev_i],
            "time": ds[TIME].values[time_i],
            "metric": name,
            "value": values[dev_i, time_i],
        }))
    samples = pd.concat(frames, ignore_index=True)
    if jitter is not None:
        span = pd.Timedelta(jitter).value
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(4,)))
        shift = rng.integers(-span, span + 1, len(samples))
        samples["time"] = samples["time"] + pd.to_timedelta(shift, unit="ns")
    return samples.sort_values(["device", "time", "metric"], ignore_index=True)


def write_csv(ds: xr.Dataset, path: str | Path, *, jitter: str | None = None,
              seed: int = 0) -> Path:
    """Write the fleet as a long CSV file: ``device,time,metric,value``.

    Times are ISO 8601 in UTC with milliseconds and a ``Z``. Compression
    follows the file name (``.gz``, ``.zst``...). See :func:`to_samples` for
    ``jitter``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> fleet = make_fleet(n_devices=1, days=1 / 24, anomaly_rate=0, dropout=0)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = write_csv(fleet.dataset, pathlib.Path(tmp) / "fleet.csv")
    ...     print(path.read_text().splitlines()[1])
    dev-0000,2026-01-05T00:00:00.000Z,battery_voltage,3.877...
    """
    path = Path(path)
    samples = to_samples(ds, jitter=jitter, seed=seed)
    samples["time"] = samples["time"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").str.slice(0, 23) + "Z"
    samples.to_csv(path, index=False)  # shortest repr: values round-trip exactly
    return path


__all__ = ["ANOMALY_KINDS", "Fleet", "METRICS", "MetricSpec", "make_fleet", "to_samples",
           "write_csv"]
