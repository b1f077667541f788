"""The one last step of every loader: raw samples to the fleet Dataset.

A loader (CSV files, HTTP feeds, ...) parses its input on the workers into
:class:`Samples` blocks -- devices, metrics, times and values in long form
(or in rows of metric columns) -- and counts its rows in a
:class:`LoadReport`. :func:`samples_to_grid` then does, the same way for
every loader:

1. the fleet's axes: every device and metric seen;
2. the grid: ``freq`` as given, or the dominant step between samples;
3. the samples of each group of devices gathered from every block,
   duplicates (same device, metric and time) merged by the stated policy and
   counted, and binned onto the grid with :func:`kernels.bin_samples`, a
   per-bin count beside each metric (see :func:`toolkit.model.count_name`);
4. the report's reconciliation: it refuses to return if the numbers do not
   add up.

The aggregations are :data:`toolkit.model.HOWS`, the same table that
``ds.telemetry.regularize`` uses.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field

import dask
import dask.array as dsa
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

import kernels

from ..chunking import chunk_sizes, compute_threads
from ..errors import ArgumentError, LoadError
from ..model import DEVICE, HOWS, TIME, count_attrs, count_name, with_history

#: a load of this many samples is regularised in at least GROUPS device groups,
#: and in groups of about GROUP_SAMPLES samples (~50 MB to gather in one task)
PARALLEL_SAMPLES, GROUPS, GROUP_SAMPLES = 1_000_000, 4, 2_000_000
#: binned in the blocks, a group's task only adds up partial bins: one group
#: per thread, and groups of at most this many samples (a group whose blocks
#: overlap in time is gathered again from its samples)
GROUP_SAMPLES_BINNED = 8_000_000
DUPLICATES = ("mean", "first", "last", "raise")
NICE_STEPS = [pd.Timedelta(s) for s in (
    "1ms", "10ms", "100ms", "1s", "2s", "5s", "10s", "15s", "20s", "30s", "1min", "2min",
    "5min", "10min", "15min", "20min", "30min", "1h", "2h", "3h", "6h", "12h", "1D")]


@dataclass
class Samples:
    """One block of raw samples, as every loader produces it on a worker.

    ``devices`` and ``metrics`` are the names the codes point into;
    ``times`` int64 ns UTC, one per row; ``values`` is (rows,) with
    ``metric_codes`` (long form) or (rows, n_metrics) with ``metric_codes``
    None (one column per metric). NaN means missing.
    """

    devices: np.ndarray
    device_codes: np.ndarray
    times: np.ndarray
    metrics: list[str]
    metric_codes: np.ndarray | None
    values: np.ndarray

    @property
    def rows(self) -> int:
        return int(self.times.shape[0])

    def summary(self) -> dict:
        """What the client needs to plan the grid and the report (small)."""
        valid = ~np.isnan(self.values)
        step = 0
        if self.rows > 1:
            first = self.device_codes[: 200_000] == self.device_codes[0]
            t = np.unique(self.times[: 200_000][first])
            d = np.diff(t)
            d = d[d > 0]
            step = int(np.median(d)) if d.size else 0
        return {
            "devices": list(self.devices), "metrics": list(self.metrics),
            "tmin": int(self.times.min()) if self.rows else None,
            "tmax": int(self.times.max()) if self.rows else None,
            "rows": self.rows, "valid": int(valid.sum()),
            "missing": int(self.values.size - valid.sum()), "step": step,
        }


class InferredFrequencyWarning(UserWarning):
    """A loader chose the grid's frequency itself (no ``freq=`` given)."""


@dataclass
class LoadReport:
    """Where every row and sample of a load went; the numbers add up.

    Rows: ``rows_read = rows_loaded + rows_rejected + rows_empty`` (header
    lines are not rows). Samples are the values of the loaded rows (one per
    row in the long layout, one per metric column in the wide one):
    ``samples = samples_valid + samples_missing`` and, once regularised,
    ``samples_valid = samples_binned + duplicates_merged + samples_outside``.
    """

    files: int = 0
    blocks: int = 0
    pages: int = 0
    requests: int = 0
    retries: int = 0
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    rows_empty: int = 0
    samples: int = 0
    samples_valid: int = 0
    samples_missing: int = 0
    duplicates_merged: int | None = None
    samples_outside: int | None = None
    samples_binned: int | None = None
    devices: int = 0
    metrics: list = field(default_factory=list)
    freq: str | None = None
    freq_inferred: bool = False
    how: str | None = None
    duplicates: str | None = None
    quarantine: str | None = None
    first_rejections: list = field(default_factory=list)

    def problems(self) -> list[str]:
        """The sums that do not add up (empty when the report is consistent)."""
        out = []
        if self.rows_read != self.rows_loaded + self.rows_rejected + self.rows_empty:
            out.append(f"rows: read {self.rows_read} != loaded {self.rows_loaded} + rejected "
                       f"{self.rows_rejected} + empty {self.rows_empty}")
        if self.samples != self.samples_valid + self.samples_missing:
            out.append(f"samples: {self.samples} != valid {self.samples_valid} + missing "
                       f"{self.samples_missing}")
        if self.samples_binned is not None and self.samples_valid != (
                self.samples_binned + self.duplicates_merged + self.samples_outside):
            out.append(f"valid samples {self.samples_valid} != binned {self.samples_binned} "
                       f"+ duplicates merged {self.duplicates_merged} + outside the grid "
                       f"{self.samples_outside}")
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def of_samples(cls, summaries, *, files: int = 1, blocks: int | None = None,
                   **counts) -> LoadReport:
        """The rows part of a report for blocks read as samples (every row loaded).

        Examples
        --------
        >>> r = LoadReport.of_samples([{"rows": 3, "valid": 5, "missing": 1}], requests=2)
        >>> r.rows_loaded, r.samples, r.requests
        (3, 6, 2)
        """
        report = cls(files=files, blocks=len(summaries) if blocks is None else blocks,
                     **counts)
        for s in summaries:
            report.rows_read += s["rows"]
            report.samples_valid += s["valid"]
            report.samples_missing += s["missing"]
        report.rows_loaded = report.rows_read
        report.samples = report.samples_valid + report.samples_missing
        return report

    @classmethod
    def of(cls, obj) -> LoadReport:
        """The report stored on a loaded Dataset's attributes.

        Examples
        --------
        >>> r = LoadReport(files=1, rows_read=2, rows_loaded=2)
        >>> LoadReport.of(xr.Dataset(attrs={"load_report_json": r.to_json()})).rows_read
        2
        """
        return cls(**json.loads(obj.attrs["load_report_json"]))

    def __str__(self) -> str:
        where = (f"{self.pages:,} page(s) of {self.files:,} stream(s) in {self.blocks} task(s) "
                 f"({self.requests:,} requests, {self.retries:,} retried)") if self.pages else \
            f"{self.files} file(s) in {self.blocks} block(s)"
        lines = [
            f"load report: {where}, {self.devices} device(s), metrics {self.metrics}",
            f"  rows read          {self.rows_read:>14,}",
            f"    loaded           {self.rows_loaded:>14,}",
            f"    rejected         {self.rows_rejected:>14,}"
            + (f"  -> {self.quarantine}" if self.quarantine else ""),
            f"    empty            {self.rows_empty:>14,}",
            f"  samples            {self.samples:>14,}",
            f"    missing (NaN)    {self.samples_missing:>14,}",
            f"    valid            {self.samples_valid:>14,}",
        ]
        if self.samples_binned is not None:
            lines += [
                f"      binned         {self.samples_binned:>14,}  onto a {self.freq} grid "
                f"({self.how}{', frequency inferred' if self.freq_inferred else ''})",
                f"      duplicates merged {self.duplicates_merged:>11,}  (policy "
                f"{self.duplicates!r})",
                f"      outside the grid {self.samples_outside:>12,}",
            ]
        return "\n".join(lines)


def check_grid_args(freq, how: str, duplicates: str) -> pd.Timedelta | None:
    """Check the grid arguments before any input is read; ``freq`` as a Timedelta.

    Examples
    --------
    >>> check_grid_args("1min", "mean", "mean")
    Timedelta('0 days 00:01:00')
    """
    if how not in HOWS:
        raise ArgumentError(f"how must be one of {HOWS}, got how={how!r}")
    if duplicates not in DUPLICATES:
        raise ArgumentError(f"duplicates must be one of {DUPLICATES}, got "
                            f"duplicates={duplicates!r}")
    if freq is None:
        return None
    try:
        step = pd.Timedelta(freq)
    except (TypeError, ValueError) as err:
        raise ArgumentError(f"freq must be a duration such as '1min', got freq={freq!r}") \
            from err
    if not step > pd.Timedelta(0):
        raise ArgumentError(f"freq must be a positive duration, got freq={freq!r}")
    return step


def samples_to_grid(blocks, summaries, report: LoadReport, *, freq=None, how: str = "mean",
                    duplicates: str = "mean", start=None, end=None, metrics=None,
                    units: dict | None = None, source: str, loader: str,
                    binned_in_blocks: bool | None = None,
                    block_partials: list | None = None) -> xr.Dataset:
    """Regularise the samples of every block onto one grid: the fleet Dataset.

    Two ways, one result (the same values, counts and load report):

    - **binned in the blocks** (the default when it fits): each block's
      samples are binned where they lie, into partial bins (count, sum, and
      min, max, first or last with their times) over only the series and
      bins the block touches; the partials of each device group are then
      added up. Only partial bins move between workers. Duplicates within a
      block are merged (or raised) by the policy there. Duplicates *across*
      blocks cannot be seen in partials, so a device group in which any
      series has samples from two blocks with overlapping times (equal
      times included) is redone from the samples by the second way, for
      every policy. Time- or device-ordered inputs (a gateway's log, a file
      per device) never overlap.
    - **from the samples**: each device group gathers its samples from every
      block, merges duplicates by the policy and bins them. Taken for the
      whole load when partials would be much larger than the samples (a
      block whose rows are in no order spans every series and bin).

    Parameters
    ----------
    blocks : list of dask.delayed.Delayed
        The loader's :class:`Samples` blocks, held on the workers.
    summaries : list of dict
        ``Samples.summary()`` of each block (computed already).
    report : LoadReport
        The loader's rows part; this step adds the samples' fate and checks
        that the numbers add up.
    freq, how, duplicates, start, end
        As in :func:`toolkit.read_csv`.
    metrics : list of str, optional
        The metrics in this order (default: every metric seen, sorted).
    units : dict, optional
        ``{metric: units}`` for the variables' attributes.
    source, loader : str
        For the dataset's ``source`` and ``history`` (and error messages).
    binned_in_blocks : bool, optional
        Force one way (True: partial bins, with the per-group fall-back;
        False: from the samples). Default: partial bins when they fit.
    block_partials : list of dask.delayed.Delayed, optional
        Each block's :func:`block_partial`, made by the loader in the task
        after the parse (held on the workers), on the grid of ``freq``; the
        summaries then come from :func:`partial_summary`. Only the groups'
        slices of them move: the samples are not cut again. Used unless
        ``binned_in_blocks`` is False or a block had no partial.

    Returns
    -------
    xarray.Dataset
        Dims ``(device, time)``, a float64 variable per metric and an int32
        count beside each, chunked by groups of devices, held on the workers.
    """
    step = check_grid_args(freq, how, duplicates)
    units = dict(units or {})
    devices, names = _axes(summaries, metrics, units, report, source)
    if step is None:
        step = _infer_step(summaries, loader)
        report.freq_inferred = True
    s_ns = int(step.value)
    tmin = min(s["tmin"] for s in summaries if s["tmin"] is not None)
    tmax = max(s["tmax"] for s in summaries if s["tmax"] is not None)
    lo = pd.Timestamp(start).value if start is not None else tmin
    hi = pd.Timestamp(end).value if end is not None else tmax
    grid_start = (lo // s_ns) * s_ns
    n_bins = max(0, (hi - grid_start) // s_ns + 1)
    if block_partials is not None and (binned_in_blocks is False or not all(
            s.get("partial") for s in summaries)):
        block_partials = None
    if binned_in_blocks is None:
        binned_in_blocks = block_partials is not None or _partials_fit(
            summaries, names, grid_start, s_ns, n_bins)
    bounds = _device_groups(len(devices), n_bins, len(names), report.samples_valid,
                            binned_in_blocks)
    if binned_in_blocks:
        assembled, counts = _bin_in_blocks(blocks, devices, names, bounds, grid_start, s_ns,
                                           n_bins, how, duplicates, block_partials)
    else:
        assembled = _assemble_groups(blocks, devices, names, bounds, grid_start, s_ns, n_bins,
                                     how, duplicates)
        counts = dask.compute(*[dask.delayed(_counts)(a) for a in assembled])
    report.duplicates_merged = sum(c[0] for c in counts)
    report.samples_outside = sum(c[1] for c in counts)
    report.samples_binned = sum(c[2] for c in counts)
    report.devices, report.metrics = len(devices), names
    report.freq, report.how, report.duplicates = str(step), how, duplicates
    problems = report.problems()
    if problems:
        raise LoadError("the load report does not add up (" + "; ".join(problems) +
                        f"); please report this with the input ({source})")
    times = pd.DatetimeIndex(grid_start + s_ns * np.arange(n_bins, dtype=np.int64)).values
    ds = xr.Dataset(_variables(assembled, names, bounds, n_bins, how, units),
                    coords={DEVICE: devices.astype(object), TIME: times},
                    attrs={"source": source, "load_report": str(report),
                           "load_report_json": report.to_json()})
    return with_history(ds, f"{loader}({source!r}, freq={str(step)!r}, how={how!r}, "
                            f"duplicates={duplicates!r})")


def _axes(summaries, metrics, units, report, source):
    """The fleet's devices (sorted) and metrics, checked against ``units``."""
    devices = np.array(sorted({d for s in summaries for d in s["devices"]}), dtype=str)
    names = list(metrics) if metrics else sorted({m for s in summaries for m in s["metrics"]})
    if not len(devices) or not names:
        raise LoadError(f"no samples in {source}: every row was empty or rejected "
                        f"({report.rows_rejected} rejected)")
    unknown_units = sorted(set(units) - set(names))
    if unknown_units:
        raise LoadError(f"units name metrics {unknown_units} that the input does not have "
                        f"(metrics: {names})")
    return devices, names


def _infer_step(summaries, loader: str) -> pd.Timedelta:
    steps = [s["step"] for s in summaries if s["step"] > 0]
    if not steps:
        raise LoadError("cannot infer a sampling interval (no device has two samples); "
                        "pass freq=...")
    step = _nice_step(int(np.median(steps)))
    warnings.warn(f"{loader}: no freq given; regularising onto {step} bins, the "
                  "dominant step between samples. Pass freq=... to choose another.",
                  InferredFrequencyWarning, stacklevel=3)
    return step


def _device_groups(n_devices, n_bins, n_metrics, n_valid, binned_in_blocks=False) -> list[int]:
    """Bounds of the device groups: one task holds every metric of its devices.

    Binned in the blocks, each group costs a cut of every block's partial bins
    (a task each) and its task only adds them up, so there are fewer, larger
    groups: one per thread (a 10 M-row load on 2 workers makes 16 cuts and 2
    sums instead of 48 and 6; median of 10 loads, alternating, 0.83 s against
    0.85 s).
    """
    # with counts: 12 bytes a value
    per = chunk_sizes(n_devices, n_bins, 12 * n_metrics)[DEVICE]
    if n_valid >= PARALLEL_SAMPLES:  # enough work to share among workers
        if binned_in_blocks:
            groups = -(-n_valid // GROUP_SAMPLES_BINNED)
        else:
            groups = max(GROUPS, -(-n_valid // GROUP_SAMPLES))
        threads = compute_threads()  # a multiple of them: no thread waits alone at the end
        groups = -(-groups // threads) * threads
        per = min(per, -(-n_devices // groups))
    return list(range(0, n_devices, per)) + [n_devices]


def _assemble_groups(blocks, devices, names, bounds, grid_start, s_ns, n_bins, how,
                     duplicates, groups=None):
    """Each device group's samples from every block, merged and binned (persisted);
    only the groups ``groups`` (default all)."""
    token = tokenize(tuple(b.key for b in blocks), s_ns, how, duplicates, grid_start, n_bins)
    metric_index = {m: i for i, m in enumerate(names)}
    pieces = [dask.delayed(_split, pure=True)(
        b, devices, metric_index, bounds, dask_key_name=f"split-samples-{token}-{i}")
        for i, b in enumerate(blocks)]
    assembled = [dask.delayed(_assemble, pure=True)(
        [pc[k] for pc in pieces], bounds[k + 1] - bounds[k], names,
        devices[bounds[k]:bounds[k + 1]], grid_start, s_ns, n_bins, how, duplicates,
        dask_key_name=f"regularize-samples-{token}-{k}")
        for k in (range(len(bounds) - 1) if groups is None else groups)]
    return list(dask.persist(*assembled))


def _variables(assembled, names, bounds, n_bins, how, units) -> dict:
    """Each metric and its count as a Dask array whose chunks are the groups'
    tables (one graph layer per variable: a task per group takes its table)."""
    variables = {}
    dtype = np.int32 if how == "count" else np.float64
    chunks = (tuple(np.diff(bounds).tolist()), (n_bins,))
    token = tokenize(tuple(a.key for a in assembled))
    for j, m in enumerate(names):
        for part, dt, name in (("stat", dtype, m), ("count", np.int32, count_name(m))):
            layer = f"{name}-{part}-{token}"
            tasks = {(layer, k, 0): (_take, a.key, part, j) for k, a in enumerate(assembled)}
            graph = HighLevelGraph.from_collections(layer, tasks, dependencies=assembled)
            attrs = count_attrs(m) if part == "count" else \
                {"long_name": m, **({"units": units[m]} if m in units else {})}
            variables[name] = ((DEVICE, TIME), dsa.Array(graph, layer, chunks, dtype=dt), attrs)
    return variables


def _partials_fit(summaries, names, grid_start, s_ns, n_bins) -> bool:
    """Whether every block's partial bins (its series x the bins it spans) stay
    within a few times its samples."""
    for sm in summaries:
        if sm["tmin"] is None or not sm["valid"]:
            continue
        b0 = min(max((sm["tmin"] - grid_start) // s_ns, 0), n_bins)
        b1 = min(max((sm["tmax"] - grid_start) // s_ns + 1, 0), n_bins)
        cells = len(sm["devices"]) * len(sm["metrics"] or names) * max(b1 - b0, 0)
        if not _cells_fit(cells, sm["valid"]):
            return False
    return True


def _cells_fit(cells: int, samples: int) -> bool:
    """Whether partial bins of ``cells`` stay within a few times ``samples``."""
    return cells <= 4 * samples + 65_536


def _bin_in_blocks(blocks, devices, names, bounds, grid_start, s_ns, n_bins, how,
                   duplicates, block_partials=None):
    """Partial bins in each block's own task, added up per device group; a group
    whose series overlap in time between blocks is redone from the samples.
    Returns the groups (persisted) and their counts (see :func:`_counts`)."""
    token = tokenize(tuple(b.key for b in blocks), s_ns, how, duplicates, grid_start, n_bins)
    metric_index = {m: i for i, m in enumerate(names)}
    if block_partials is None:
        partials = [dask.delayed(_bin_block, pure=True)(
            b, devices, metric_index, bounds, names, grid_start, s_ns, n_bins, how,
            duplicates, dask_key_name=f"bin-samples-{token}-{i}")
            for i, b in enumerate(blocks)]
        pieces = [[pc[k] for pc in partials] for k in range(len(bounds) - 1)]
        combined = [dask.delayed(_combine_partials, pure=True)(
            pieces[k], bounds[k + 1] - bounds[k], len(names), n_bins, how,
            dask_key_name=f"regularize-partials-{token}-{k}") for k in range(len(bounds) - 1)]
    else:
        # each group's rows of each block's partial, cut where the partial lies,
        # then added up: one graph layer (a delayed call per task merged the
        # growing graphs again for each, 0.08 s of the client for 54 tasks)
        token = tokenize(token, tuple(p.key for p in block_partials))
        layer = f"regularize-partials-{token}"
        tasks = {}
        for k in range(len(bounds) - 1):
            cuts = [f"group-partial-{token}-{i}-{k}" for i in range(len(block_partials))]
            for cut, p in zip(cuts, block_partials, strict=True):
                tasks[cut] = (_group_partial, p.key, devices[bounds[k]:bounds[k + 1]],
                              metric_index, grid_start // s_ns, n_bins)
            tasks[f"{layer}-{k}"] = (_combine_partials, cuts, bounds[k + 1] - bounds[k],
                                     len(names), n_bins, how)
        graph = HighLevelGraph.from_collections(layer, tasks, dependencies=block_partials)
        combined = [Delayed(f"{layer}-{k}", graph, layer=layer) for k in range(len(bounds) - 1)]
    combined = list(dask.persist(*combined))
    # one round trip: each group's counts, or None where its blocks overlap
    counts = list(dask.compute(*[dask.delayed(_counts)(c) for c in combined]))
    redo = [k for k, c in enumerate(counts) if c is None]
    if redo:
        again = _assemble_groups(blocks, devices, names, bounds, grid_start, s_ns, n_bins,
                                 how, duplicates, groups=redo)
        again_counts = dask.compute(*[dask.delayed(_counts)(a) for a in again])
        for k, a, c in zip(redo, again, again_counts, strict=True):
            combined[k], counts[k] = a, c
    return combined, counts


def _bin_block(parsed: Samples, devices, metric_index, bounds, names, start, step, n_bins,
               how, policy):
    """One block's partial bins per device group (see :func:`_partial`)."""
    pieces = _split(parsed, devices, metric_index, bounds)
    return tuple(_partial(piece, bounds[k + 1] - bounds[k], names,
                          devices[bounds[k]:bounds[k + 1]], start, step, n_bins, how, policy)
                 for k, piece in enumerate(pieces))


def _partial(piece, n_dev, names, devices, start, step, n_bins, how, policy) -> dict:
    """Partial bins of one block's samples of one device group: the series present
    (``rows``), their first and last times, the bins ``[b0, b0 + width)`` they
    span, and the statistics over that window only."""
    n_m = len(names)
    s, t, v = _valid_samples([piece], n_m)
    s, t, v, dups = _dedupe(s, t, v, n_dev * n_m, policy, names, devices)
    present = np.bincount(s, minlength=n_dev * n_m) > 0
    rows = np.flatnonzero(present)
    local = (np.cumsum(present) - 1)[s]
    tmin, tmax = kernels.binning.time_range_per_series(local, t, max(rows.size, 1))
    tmin, tmax = tmin[:rows.size], tmax[:rows.size]
    b0 = b1 = 0
    if t.size:
        b0 = int(min(max((t.min() - start) // step, 0), n_bins))
        b1 = int(min(max((t.max() - start) // step + 1, 0), n_bins))
    binned = kernels.bin_samples(t, v, local, start=start + b0 * step, step=step,
                                 n_bins=max(b1 - b0, 0), n_series=max(rows.size, 1),
                                 stats=("count", "sum") + _EXTRA_STATS[how])
    return {"rows": rows, "tmin": tmin, "tmax": tmax, "b0": b0, "binned": binned,
            "dups": dups, "outside": int(binned.outside.sum())}


def block_partial(parsed: Samples, step: int, how: str, policy: str) -> dict | None:
    """A block's partial bins on the grid of ``step`` ns (bins ``t // step``, as
    every grid of that step is aligned), over the block's own series, made in
    the task after its parse, before the fleet's devices are known.

    Series are ``device rank * metrics + metric``, the devices sorted by name,
    so the series of any range of devices are one slice of the rows
    (:func:`_group_partial` cuts them). Duplicates within the block are merged
    (or raised) by ``policy`` and counted per series. None when the bins would
    be much larger than the samples (rows in no order): the load then bins
    the samples per device group instead.
    """
    names = np.asarray(parsed.devices).astype(str)
    order = np.argsort(names, kind="stable")
    rank = np.empty(order.size, np.int32)
    rank[order] = np.arange(order.size, dtype=np.int32)
    devices, metrics = names[order], list(parsed.metrics)
    n_m = max(len(metrics), 1)
    if parsed.metric_codes is not None and order.size:  # long rows: one compiled pass
        s, t, v, before = kernels.binning.valid_long_samples(
            rank, parsed.device_codes, parsed.metric_codes, parsed.times, parsed.values, n_m)
    else:
        s, t, v = _valid_samples([(rank[parsed.device_codes] if order.size else
                                   parsed.device_codes, parsed.metric_codes, parsed.times,
                                   parsed.values)], n_m)
        before = np.bincount(s, minlength=max(devices.size * n_m, 1))
    s, t, v, dups = _dedupe(s, t, v, devices.size * n_m, policy, metrics, devices)
    present = before > 0
    rows = np.flatnonzero(present)
    local = (np.cumsum(present) - 1)[s]
    b0 = int(t.min() // step) if t.size else 0
    width = int(t.max() // step) + 1 - b0 if t.size else 0
    if not _cells_fit(rows.size * width, t.size):
        return None
    tmin, tmax = kernels.binning.time_range_per_series(local, t, max(rows.size, 1))
    binned = kernels.bin_samples(t, v, local, start=b0 * step, step=step, n_bins=width,
                                 n_series=max(rows.size, 1),
                                 stats=("count", "sum") + _EXTRA_STATS[how])
    merged = (before - np.bincount(s, minlength=before.size))[rows] if dups else None
    return {"devices": devices, "metrics": metrics, "rows": rows, "tmin": tmin[:rows.size],
            "tmax": tmax[:rows.size], "b0": b0, "binned": binned, "dups": merged}


def partial_summary(parsed: Samples, partial: dict | None) -> dict:
    """``parsed.summary()``, and whether its :func:`block_partial` was made."""
    return parsed.summary() | {"partial": partial is not None}


def _group_partial(p: dict, devices, metric_index: dict, grid_b0: int, n_bins: int) -> dict:
    """The rows of a :func:`block_partial` that belong to one device group
    (``devices``, sorted), as :func:`_partial` makes them: the group's series
    numbers, and bins counted from the grid's start, cropped to the grid (what
    falls outside is counted)."""
    n_ml = max(len(p["metrics"]), 1)
    d_lo = np.searchsorted(p["devices"], devices[0])
    d_hi = np.searchsorted(p["devices"], devices[-1], side="right")
    r_lo, r_hi = np.searchsorted(p["rows"], [d_lo * n_ml, d_hi * n_ml])
    rows = p["rows"][r_lo:r_hi]
    dev = np.searchsorted(devices, p["devices"][rows // n_ml])
    met = np.array([metric_index[m] for m in p["metrics"]], np.int64)
    series = dev * len(metric_index) + (met[rows % n_ml] if met.size else 0)
    b = p["binned"]
    start = p["b0"] - grid_b0
    lo = min(max(-start, 0), b.count.shape[1])
    hi = max(min(n_bins - start, b.count.shape[1]), lo)
    count = b.count[r_lo:r_hi]
    outside = int(count.sum() - count[:, lo:hi].sum())
    fields = {f: getattr(b, f)[r_lo:r_hi, lo:hi] for f in
              ("count", "sum", "min", "max", "first", "last", "first_time", "last_time")
              if getattr(b, f) is not None}
    # the counts in the narrowest unsigned type that holds them: most of these
    # pieces move to another worker, and a count per bin rarely passes 255
    fields["count"] = fields["count"].astype(_narrowest(fields["count"]))
    return {"rows": series, "tmin": p["tmin"][r_lo:r_hi], "tmax": p["tmax"][r_lo:r_hi],
            "b0": start + lo, "binned": b._replace(**fields),
            "dups": 0 if p["dups"] is None else int(p["dups"][r_lo:r_hi].sum()),
            "outside": outside}


def _narrowest(count: np.ndarray) -> type:
    """The narrowest unsigned integer type that holds every value of ``count`` (>= 0).

    Examples
    --------
    >>> _narrowest(np.array([[0, 3], [255, 1]])).__name__, _narrowest(np.array([256])).__name__
    ('uint8', 'uint16')
    """
    top = int(count.max()) if count.size else 0
    for kind in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(kind).max:
            return kind
    return np.int64


#: what each `how` needs besides count and sum
_EXTRA_STATS = {"mean": (), "sum": (), "count": (), "min": ("min",), "max": ("max",),
                "first": ("first",), "last": ("last",)}


def _combine_partials(partials, n_dev, n_m, n_bins, how) -> dict:
    """A device group's partial bins from every block added up into its grid (the
    same dict as :func:`_assemble`); ``{"overlap": True}`` when two blocks hold
    samples of one series at overlapping times (they may share duplicates)."""
    rows = np.concatenate([p["rows"] for p in partials])
    if rows.size:
        tmin = np.concatenate([p["tmin"] for p in partials])
        tmax = np.concatenate([p["tmax"] for p in partials])
        order = np.lexsort((tmin, rows))
        r, lo, hi = rows[order], tmin[order], tmax[order]
        # sorted by start, two intervals of a series overlap only if two
        # neighbours do
        if ((r[1:] == r[:-1]) & (lo[1:] <= hi[:-1])).any():
            return {"overlap": True}
    # added up straight into the group's (metric, device, time) tables
    shape = (n_m, n_dev, n_bins)
    count = np.zeros(shape, np.int32)
    total = np.zeros(shape)
    extra = when = None
    if how in ("min", "max", "first", "last"):
        extra = np.full(shape, np.nan)
        when = np.zeros(shape, np.int64)
    for p in partials:
        b = p["binned"]
        if not p["rows"].size or not b.count.shape[1]:
            continue
        met, dev = p["rows"] % n_m, p["rows"] // n_m
        idx = (met, dev, slice(p["b0"], p["b0"] + b.count.shape[1]))
        had = count[idx] > 0 if extra is not None else None
        kernels.binning.add_rows(met, dev, p["b0"], b.count, b.sum, count, total)
        if extra is None:
            continue
        got = b.count > 0
        cur, cur_t = extra[idx], when[idx]
        if how == "min":
            take = got & (~had | (b.min < cur))
            new, new_t = b.min, cur_t
        elif how == "max":
            take = got & (~had | (b.max > cur))
            new, new_t = b.max, cur_t
        elif how == "first":
            take = got & (~had | (b.first_time < cur_t))
            new, new_t = b.first, b.first_time
        else:
            take = got & (~had | (b.last_time >= cur_t))
            new, new_t = b.last, b.last_time
        extra[idx] = np.where(take, new, cur)
        when[idx] = np.where(take, new_t, cur_t)
    if how == "mean":
        empty = count == 0
        np.divide(total, count, out=total, where=~empty)
        total[empty] = np.nan
        stat = total
    elif how == "sum":
        stat = total
    elif how == "count":
        stat = count.copy()
    else:
        stat = extra
    return {"stat": stat, "count": count, "dups": sum(p["dups"] for p in partials),
            "outside": sum(p["outside"] for p in partials), "binned": int(count.sum())}


def _nice_step(step_ns: int) -> pd.Timedelta:
    step = pd.Timedelta(int(step_ns), "ns")
    for nice in NICE_STEPS:
        if abs(step - nice) <= 0.1 * nice:
            return nice
    return step.round("1s") if step > pd.Timedelta("1s") else step.round("1ms")


def _split(parsed: Samples, devices, metric_index, bounds):
    """The block's samples cut by device group: (device in group, metric, time, value)."""
    dev = np.searchsorted(devices, parsed.devices.astype(str))[parsed.device_codes]
    if parsed.metric_codes is not None:
        lookup = np.array([metric_index[m] for m in parsed.metrics], dtype=np.int32)
        met = lookup[parsed.metric_codes] if lookup.size else parsed.metric_codes
    else:
        met = None
    if len(bounds) == 2:  # one group: nothing to cut
        return ((dev.astype(np.int32), met, parsed.times, parsed.values),)
    group = np.searchsorted(np.asarray(bounds[1:]), dev, side="right").astype(
        np.int16 if len(bounds) < 2**15 else np.int32)
    order = np.argsort(group, kind="stable")  # a radix sort on small integers
    cuts = np.searchsorted(group[order], np.arange(1, len(bounds) - 1))
    out = []
    for k, idx in enumerate(np.split(order, cuts)):
        out.append(((dev[idx] - bounds[k]).astype(np.int32),
                    None if met is None else met[idx], parsed.times[idx], parsed.values[idx]))
    return tuple(out)


def _valid_samples(pieces, n_m):
    """The valid samples of pieces as (series = device * n_m + metric, time, value)."""
    # one allocation for the group's valid samples, filled piece by piece
    valid = [~np.isnan(v) for _, _, _, v in pieces]
    total = sum(int(m.sum()) for m in valid)
    s = np.empty(total, np.int64)
    t = np.empty(total, np.int64)
    v = np.empty(total, np.float64)
    at = 0
    for (dev, met, times, values), ok in zip(pieces, valid, strict=True):
        if met is None:  # wide: one sample per metric column
            series = dev[:, None].astype(np.int64) * n_m + np.arange(n_m)
            times = np.broadcast_to(times[:, None], values.shape)
        else:
            series = dev.astype(np.int64) * n_m + met
        k = int(ok.sum())
        s[at:at + k] = series[ok]
        t[at:at + k] = times[ok]
        v[at:at + k] = values[ok]
        at += k
    return s, t, v


def _assemble(pieces, n_dev, names, devices, start, step, n_bins, how, policy):
    n_m = len(names)
    s, t, v = _valid_samples(pieces, n_m)
    s, t, v, dups = _dedupe(s, t, v, n_dev * n_m, policy, names, devices)
    stats = _EXTRA_STATS[how]
    binned = kernels.bin_samples(t, v, s, start=start, step=step, n_bins=n_bins,
                                 n_series=n_dev * n_m, stats=("count", "sum") + stats)
    stat = {"mean": binned.mean, "sum": binned.sum, "count": binned.count}.get(how)
    if stat is None:
        stat = getattr(binned, how)
    shape = (n_dev, n_m, n_bins)
    count = binned.count.reshape(shape).transpose(1, 0, 2).astype(np.int32)
    stat = stat.reshape(shape).transpose(1, 0, 2)
    stat = stat.astype(np.int32) if how == "count" else stat
    return {"stat": np.ascontiguousarray(stat), "count": np.ascontiguousarray(count),
            "dups": dups, "outside": int(binned.outside.sum()),
            "binned": int(binned.count.sum())}


def _dedupe(s, t, v, n_series, policy, names, devices):
    if s.size < 2 or kernels.binning.increasing_per_series(s, t, max(n_series, 1)):
        return s, t, v, 0
    order = np.lexsort((t, s))  # stable: equal keys keep file and line order
    s, t, v = s[order], t[order], v[order]
    new = np.ones(s.size, bool)
    new[1:] = (s[1:] != s[:-1]) | (t[1:] != t[:-1])
    starts = np.flatnonzero(new)
    dups = int(s.size - starts.size)
    if not dups:
        return s, t, v, 0
    sizes = np.diff(np.append(starts, s.size))
    if policy == "raise":
        k = starts[np.argmax(sizes > 1)]
        dev, met = divmod(int(s[k]), len(names))
        raise LoadError(
            f"device {str(devices[dev])!r}, metric {names[met]!r} has {int(sizes.max())} "
            f"samples at {pd.Timestamp(int(t[k]))} ({dups} duplicate samples in this group "
            "of devices); "
            "pass duplicates='mean', 'first' or 'last' to merge them")
    if policy == "mean":
        merged = np.add.reduceat(v, starts) / sizes
    elif policy == "first":
        merged = v[starts]
    else:
        merged = v[starts + sizes - 1]
    return s[starts], t[starts], merged, dups


def _counts(assembled):
    """A group's duplicates merged, samples outside and binned (None: its
    partials overlap, see :func:`_combine_partials`)."""
    if assembled.get("overlap"):
        return None
    return assembled["dups"], assembled["outside"], assembled["binned"]


def _take(assembled, part, j):
    return assembled[part][j]


__all__ = ["DUPLICATES", "InferredFrequencyWarning", "LoadReport", "Samples", "block_partial",
           "check_grid_args", "partial_summary", "samples_to_grid"]
