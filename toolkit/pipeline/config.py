"""The pipeline file: TOML read with :mod:`tomllib`, checked key by key.

A pipeline file describes one job from raw telemetry to findings::

    [source]                      # where the samples come from
    type = "csv"                  # csv | http | store | zarr | synthetic
    paths = ["data/*.csv"]        # (csv) files or globs, relative to this file
    time = "timestamp"            # (csv) any read_csv schema keyword

    [grid]
    freq = "1min"                 # the bins
    how = "mean"                  # aggregation per bin
    duplicates = "mean"           # same device, metric and time

    [checks]                      # QARTOD checks for every metric
    gross_range = { fail = [-40, 85], suspect = [-10, 45] }
    spike = { suspect = 3.0, fail = 8.0 }
    rate_of_change = { threshold = 2.0, per = "1min" }
    flat_line = { tolerance = 0.0, suspect = 30, fail = 120 }
    time_gap = { max_gap = "10min" }

    [detectors]                   # anomaly detectors for every metric
    zscore = { window = 60, threshold = 6.0 }

    [metrics.humidity.checks]     # per metric: replaces a default, false drops it
    gross_range = { fail = [0, 100] }

    [output]
    folder = "results"            # relative to this file

    [alerts]                      # optional: events posted to the devices' API
    url = "http://127.0.0.1:8080/devices/alerts"

    [cluster]                     # optional: default a local cluster
    address = "tcp://10.0.0.5:8786"

Every key is checked before anything runs: an unknown key, a wrong type or
an impossible value raises :class:`PipelineError` naming the key and its line.
"""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ..errors import ArgumentError

SOURCE_TYPES = ("csv", "http", "store", "zarr", "synthetic")
CHECKS = ("gross_range", "spike", "rate_of_change", "flat_line", "time_gap")
DETECTORS = ("zscore", "anomaly")
SEVERITIES = ("suspect", "fail")


class PipelineError(ArgumentError):
    """A pipeline description that cannot run: names the key, and the line in its file."""


# --- value checkers: each returns the cleaned value or raises ValueError(why) ---

def _number(minimum=None, above=None):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError("must be a number")
        if minimum is not None and v < minimum:
            raise ValueError(f"must be >= {minimum}")
        if above is not None and not v > above:
            raise ValueError(f"must be > {above}")
        return float(v)
    return check


def _whole(minimum=1):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError("must be a whole number")
        if v < minimum:
            raise ValueError(f"must be >= {minimum}")
        return int(v)
    return check


def _duration(v):
    if not isinstance(v, str):
        raise ValueError("must be a duration in quotes, such as \"10min\"")
    try:
        d = pd.Timedelta(v)
    except ValueError:
        raise ValueError("must be a duration such as \"10min\" or \"1h\"") from None
    if not d > pd.Timedelta(0):
        raise ValueError("must be a positive duration")
    return v


def _count_or_duration(v):
    if isinstance(v, str):
        return _duration(v)
    return _whole(1)(v)


def _text(v):
    if not isinstance(v, str) or not v:
        raise ValueError("must be a non-empty string")
    return v


def _choice(*options):
    def check(v):
        if v not in options:
            raise ValueError(f"must be one of {', '.join(map(repr, options))}")
        return v
    return check


def _boolean(v):
    if not isinstance(v, bool):
        raise ValueError("must be true or false")
    return v


def _texts(v):
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
        raise ValueError("must be a string or a list of strings")
    return list(v)


def _span(v):
    if not (isinstance(v, list) and len(v) == 2 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
        raise ValueError("must be a list of two numbers [low, high]")
    if not v[0] < v[1]:
        raise ValueError("must be [low, high] with low < high")
    return [float(v[0]), float(v[1])]


def _strings_map(v):
    if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
        raise ValueError("must be a table of strings")
    return dict(v)


def _period(v):
    """The anomaly detector's seasonal cycle: "auto", a duration, or false."""
    if v is False or (isinstance(v, str) and v == "auto"):
        return v
    if isinstance(v, bool) or not isinstance(v, str):
        raise ValueError("must be \"auto\", a duration such as \"1D\", or false")
    return _duration(v)


def _numbers(v):
    if not isinstance(v, list) or not all(isinstance(x, (int, float))
                                          and not isinstance(x, bool) for x in v):
        raise ValueError("must be a list of numbers")
    return [float(x) for x in v]


def _any_text_or_false(v):
    if v is False:
        return v
    return _text(v)


# The keys of each part: name -> (checker, required)
CSV_KEYS = {
    "paths": (_texts, True), "on_bad_rows": (_choice("raise", "quarantine"), False),
    "layout": (_choice("long", "wide"), False), "sep": (_text, False),
    "decimal": (_text, False), "device": (_any_text_or_false, False),
    "time": (_texts, False), "time_format": (_text, False), "timezone": (_text, False),
    "metric": (_text, False), "value": (_text, False), "metrics": (_texts, False),
    "missing": (_numbers, False), "units": (_strings_map, False), "ignore": (_texts, False),
    "device_pattern": (_text, False), "encoding": (_text, False),
    "blocksize": (_whole(1024), False),
}
HTTP_KEYS = {
    "url": (_text, True),
    "format": (_choice("json", "ndjson", "csv", "sensorthings", "thingspeak"), False),
    "devices": (_texts, False), "paging": (_choice("auto", "link", "next", "offset", "none"),
                                           False),
    "page_size": (_whole(1), False), "records": (_text, False), "time": (_text, False),
    "device": (_text, False), "metric": (_text, False), "value": (_text, False),
    "metrics": (_texts, False), "since_param": (_text, False), "token_env": (_text, False),
    "header": (_text, False), "token_param": (_text, False), "retries": (_whole(0), False),
    "start": (_text, False), "on_bad_rows": (_choice("raise", "quarantine"), False),
    "samples": (_text, False),
}
STORE_KEYS = {"path": (_text, True)}
#: a fleet already on a grid (device x time), in Zarr: regularised onto [grid]
ZARR_KEYS = {"path": (_text, True), "metrics": (_texts, False)}
SYNTHETIC_KEYS = {
    "devices": (_whole(1), False), "days": (_number(above=0), False),
    "freq": (_duration, False), "seed": (_whole(0), False),
}
SOURCE_KEYS = {"csv": CSV_KEYS, "http": HTTP_KEYS, "store": STORE_KEYS, "zarr": ZARR_KEYS,
               "synthetic": SYNTHETIC_KEYS}
GRID_KEYS = {
    "freq": (_duration, True),
    "how": (_choice("mean", "sum", "min", "max", "first", "last", "count"), False),
    "duplicates": (_choice("mean", "first", "last", "raise"), False),
}
CHECK_KEYS = {
    "gross_range": {"fail": (_span, True), "suspect": (_span, False)},
    "spike": {"suspect": (_number(above=0), True), "fail": (_number(above=0), True)},
    "rate_of_change": {"threshold": (_number(above=0), True), "per": (_duration, False)},
    "flat_line": {"tolerance": (_number(minimum=0), False),
                  "suspect": (_count_or_duration, True), "fail": (_count_or_duration, True)},
    "time_gap": {"max_gap": (_duration, True)},
}
DETECTOR_KEYS = {
    "zscore": {"window": (_whole(2), False), "threshold": (_number(above=0), False),
               "min_count": (_whole(1), False)},
    "anomaly": {"threshold": (_number(above=0), False), "halflife": (_number(above=0), False),
                "calibration": (_number(above=0), False), "warmup": (_whole(0), False),
                "min_duration": (_whole(1), False), "merge_gap": (_whole(0), False),
                "cooldown": (_whole(0), False), "period": (_period, False)},
}
DETECTOR_DEFAULTS = {
    "zscore": {"window": 60, "threshold": 6.0},
    "anomaly": {"threshold": 0.99999, "halflife": 1024.0, "calibration": 4096.0,
                "warmup": 100, "min_duration": 1, "merge_gap": 30, "cooldown": 300,
                "period": "auto"},
}
OUTPUT_KEYS = {"folder": (_text, False), "report": (_boolean, False),
               "title": (_text, False), "events": (_texts, False)}
ALERT_KEYS = {"url": (_text, True), "min_severity": (_choice(*SEVERITIES), False),
              "token_env": (_text, False), "batch_size": (_whole(1), False)}
CLUSTER_KEYS = {"address": (_text, False), "workers": (_whole(1), False),
                "threads_per_worker": (_whole(1), False), "memory_limit": (_text, False)}
TOP_KEYS = ("title", "source", "grid", "checks", "detectors", "metrics", "output", "alerts",
            "cluster")


class _Where:
    """Finds the line of a key path in the TOML text (for error messages)."""

    def __init__(self, text: str | None, name: str):
        self.name = name
        self.lines: list[tuple[tuple[str, ...], int]] = []
        if text is None:
            return
        table: tuple[str, ...] = ()
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.split("#", 1)[0].strip() if '"' not in line else line.strip()
            header = re.match(r"^\[\[?\s*([^\]]+?)\s*\]\]?$", stripped)
            if header:
                table = _dotted(header.group(1))
                self.lines.append((table, number))
                continue
            key = re.match(r'^([A-Za-z0-9_\-."\' ]+?)\s*=', stripped)
            if key:
                path = table + _dotted(key.group(1))
                self.lines.append((path, number))
                # keys of an inline table on the same line
                for inner in re.finditer(r"[{,]\s*([A-Za-z0-9_\-]+)\s*=", stripped):
                    self.lines.append((path + (inner.group(1),), number))

    def __call__(self, path: tuple[str, ...]) -> str:
        best, best_len = None, -1
        for p, number in self.lines:
            n = len(p)
            if p == path[:n] and n > best_len:
                best, best_len = number, n
        where = self.name if best is None else f"{self.name}, line {best}"
        return f"{where}: {'.'.join(path)}" if path else where


def _dotted(key: str) -> tuple[str, ...]:
    return tuple(part.strip().strip('"').strip("'") for part in key.split("."))


def _check_table(raw, keys: dict, path: tuple, where: _Where) -> dict:
    if not isinstance(raw, dict):
        raise PipelineError(f"{where(path)} must be a table")
    out = {}
    for k, v in raw.items():
        if k not in keys:
            raise PipelineError(f"{where(path + (k,))} is not a known key (known: "
                                f"{', '.join(keys)})")
        checker, _ = keys[k]
        try:
            out[k] = checker(v)
        except ValueError as err:
            raise PipelineError(f"{where(path + (k,))} {err}, got {v!r}") from None
    for k, (_, required) in keys.items():
        if required and k not in raw:
            raise PipelineError(f"{where(path)} needs the key {k!r}")
    return out


def _check_tests(raw, known: dict, path: tuple, where: _Where, allow_false: bool) -> dict:
    if not isinstance(raw, dict):
        raise PipelineError(f"{where(path)} must be a table")
    out = {}
    for name, params in raw.items():
        if name not in known:
            raise PipelineError(f"{where(path + (name,))} is not a known "
                                f"{path[-1][:-1]} (known: {', '.join(known)})")
        if params is False and allow_false:
            out[name] = False
            continue
        if params is True and name in DETECTOR_DEFAULTS:
            params = {}
        checked = _check_table(params, known[name], path + (name,), where)
        out[name] = _cross_check(name, checked, path + (name,), where)
    return out


def _cross_check(name: str, p: dict, path: tuple, where: _Where) -> dict:
    if name == "spike" and not p["suspect"] < p["fail"]:
        raise PipelineError(f"{where(path + ('fail',))} must be above suspect "
                            f"({p['suspect']}), got {p['fail']}")
    if name == "gross_range" and "suspect" in p:
        lo, hi = p["fail"]
        if not (lo <= p["suspect"][0] < p["suspect"][1] <= hi):
            raise PipelineError(f"{where(path + ('suspect',))} must lie inside fail "
                                f"{p['fail']}, got {p['suspect']}")
    if name == "flat_line":
        s, f = p["suspect"], p["fail"]
        if isinstance(s, str) != isinstance(f, str):
            raise PipelineError(f"{where(path)}: suspect and fail must both be numbers of "
                                f"samples or both durations, got {s!r} and {f!r}")
        if (pd.Timedelta(s) > pd.Timedelta(f)) if isinstance(s, str) else s > f:
            raise PipelineError(f"{where(path + ('fail',))} must be at least suspect "
                                f"({s!r}), got {f!r}")
    if name == "anomaly":
        p = {**DETECTOR_DEFAULTS["anomaly"], **p}
        if not p["threshold"] < 1:
            raise PipelineError(f"{where(path + ('threshold',))} must be below 1 (scores are "
                                f"in [0, 1]), got {p['threshold']}")
    if name == "zscore":
        p = {**DETECTOR_DEFAULTS["zscore"], **p}
        if p.get("min_count", 1) > p["window"]:
            raise PipelineError(f"{where(path + ('min_count',))} must be at most window "
                                f"({p['window']}), got {p['min_count']}")
    return p


def check_config(raw: dict, *, name: str = "pipeline", text: str | None = None,
                 base: Path | None = None) -> dict:
    """Check a pipeline description (the parsed TOML) and return it cleaned.

    Relative paths are taken from ``base`` (the pipeline file's folder).

    Examples
    --------
    >>> c = check_config({"source": {"type": "synthetic"}, "grid": {"freq": "1min"}})
    >>> c["grid"]["how"], c["checks"], Path(c["output"]["folder"]).name
    ('mean', {}, 'pipeline-out')
    >>> check_config({"source": {"type": "synthetic"}, "grid": {"freq": "1min"},
    ...               "checks": {"spike": {"suspect": 1}}})
    Traceback (most recent call last):
    ...
    toolkit.pipeline.config.PipelineError: pipeline: checks.spike needs the key 'fail'
    """
    where = _Where(text, name)
    if not isinstance(raw, dict):
        raise PipelineError(f"{name}: a pipeline is a table of sections")
    for k in raw:
        if k not in TOP_KEYS:
            raise PipelineError(f"{where((k,))} is not a known section (known: "
                                f"{', '.join(TOP_KEYS)})")
    raw = copy.deepcopy(raw)
    base = Path(base) if base is not None else Path.cwd()
    if "source" not in raw:
        raise PipelineError(f"{where(())} needs a [source] section")
    if "grid" not in raw:
        raise PipelineError(f"{where(())} needs a [grid] section with freq")
    src = raw["source"]
    if not isinstance(src, dict):
        raise PipelineError(f"{where(('source',))} must be a table")
    kind = src.pop("type", None)
    if kind not in SOURCE_TYPES:
        raise PipelineError(f"{where(('source', 'type'))} must be one of "
                            f"{', '.join(map(repr, SOURCE_TYPES))}, got {kind!r}")
    source = {"type": kind, **_check_table(src, SOURCE_KEYS[kind], ("source",), where)}
    if kind == "csv":
        source["paths"] = [str(base / p) for p in source["paths"]]
    if kind in ("store", "zarr"):
        source["path"] = str(base / source["path"])
    if kind == "http" and "samples" in source:
        source["samples"] = str(base / source["samples"])
    grid = _check_table(raw["grid"], GRID_KEYS, ("grid",), where)
    grid.setdefault("how", "mean")
    grid.setdefault("duplicates", "mean")
    checks = _check_tests(raw.get("checks", {}), CHECK_KEYS, ("checks",), where, False)
    detectors = _check_tests(raw.get("detectors", {}), DETECTOR_KEYS, ("detectors",), where,
                             False)
    metrics = {}
    for metric, part in (raw.get("metrics") or {}).items():
        path = ("metrics", metric)
        if not isinstance(part, dict):
            raise PipelineError(f"{where(path)} must be a table (checks, detectors)")
        for k in part:
            if k not in ("checks", "detectors"):
                raise PipelineError(f"{where(path + (k,))} is not a known key (known: checks, "
                                    "detectors)")
        metrics[metric] = {
            "checks": _check_tests(part.get("checks", {}), CHECK_KEYS, path + ("checks",),
                                   where, True),
            "detectors": _check_tests(part.get("detectors", {}), DETECTOR_KEYS,
                                      path + ("detectors",), where, True)}
    tables = [(("detectors",), detectors)] + [
        (("metrics", m, "detectors"), part["detectors"]) for m, part in metrics.items()]
    for path, table in tables:  # a seasonal cycle needs two bins of the grid at least
        period = (table.get("anomaly") or {}).get("period")
        if isinstance(period, str) and period != "auto" \
                and pd.Timedelta(period) < 2 * pd.Timedelta(grid["freq"]):
            raise PipelineError(f"{where(path + ('anomaly', 'period'))} must span at least 2 "
                                f"bins of the grid ({grid['freq']}), got {period!r}")
    output = _check_table(raw.get("output", {}), OUTPUT_KEYS, ("output",), where)
    output["folder"] = str(base / output.get("folder", f"{name.rsplit('.', 1)[0]}-out"))
    output.setdefault("report", True)
    output.setdefault("title", raw.get("title") or "Fleet report")
    events = output.setdefault("events", ["parquet", "csv"])
    for e in events:
        if e not in ("parquet", "csv"):
            raise PipelineError(f"{where(('output', 'events'))} may hold 'parquet' and "
                                f"'csv', got {e!r}")
    alerts = None
    if "alerts" in raw:
        alerts = _check_table(raw["alerts"], ALERT_KEYS, ("alerts",), where)
        alerts.setdefault("min_severity", "suspect")
    cluster = _check_table(raw.get("cluster", {}), CLUSTER_KEYS, ("cluster",), where)
    if "address" in cluster and len(cluster) > 1:
        raise PipelineError(f"{where(('cluster',))}: give an address, or the shape of a "
                            "local cluster (workers, threads_per_worker, memory_limit), not "
                            "both")
    if "title" in raw and not isinstance(raw["title"], str):
        raise PipelineError(f"{where(('title',))} must be a string")
    return {"title": raw.get("title", output["title"]), "source": source, "grid": grid,
            "checks": checks, "detectors": detectors, "metrics": metrics, "output": output,
            "alerts": alerts, "cluster": cluster}


def read_config(path) -> dict:
    """Read and check a pipeline file (see the module docstring)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PipelineError(f"{path}: no such pipeline file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise PipelineError(f"{path}: cannot be read ({err})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise PipelineError(f"{path}: not valid TOML: {err}") from None
    return check_config(raw, name=path.name, text=text, base=path.parent)


def tests_for(config: dict, metric: str) -> tuple[dict, dict]:
    """The checks and detectors that apply to ``metric``: defaults, then its own."""
    own = config["metrics"].get(metric, {"checks": {}, "detectors": {}})
    checks = {**config["checks"], **own["checks"]}
    detectors = {**config["detectors"], **own["detectors"]}
    return ({k: v for k, v in checks.items() if v is not False},
            {k: v for k, v in detectors.items() if v is not False})


Checker = Callable[[object], object]

__all__ = ["CHECKS", "DETECTORS", "PipelineError", "check_config", "read_config", "tests_for"]
