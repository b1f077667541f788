"""What an HTTP feed is: its format, its streams, its pages, and how a page becomes samples.

A :class:`Feed` describes where the telemetry is and how it is laid out. The
feed is cut into *streams*, each a sequence of pages read one after the
other:

- ``json``, ``ndjson``, ``csv``: one stream per device when the URL holds
  ``{device}``, else one stream holding every device (each record names its
  device). Records are *wide* (``time``, ``device`` and one field per metric)
  or *long* (``time``, ``device``, ``metric``, ``value``), mapped by the same
  keywords as the CSV schema. Pages follow ``Link: <...>; rel="next"``
  headers, a next-URL field of the body, or ``offset``/``limit`` parameters.
- ``sensorthings`` (OGC SensorThings API 1.1): a stream per Datastream; the
  Thing's name is the device, the ObservedProperty's name the metric, the
  ``unitOfMeasurement`` the units. Observations are asked for with
  ``$top``, ``$orderby``, ``$filter=phenomenonTime ...``; pages follow
  ``@iot.nextLink`` as an opaque URL (``$skip`` when a server gives none).
- ``thingspeak``: a stream per channel; the channel's ``field1``..``field8``
  names are the metrics. ThingSpeak answers the latest entries of a
  ``start``/``end`` window, at most 8,000: pages walk back in time, each
  window ending at the oldest entry of the one before, until a window is not
  full; entries are de-duplicated by ``entry_id``.

The pure parts (discovery answers and pages to samples) are here; the
fetching, planning and regularising are in :mod:`toolkit.io.http`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urljoin

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ArgumentError, LoadError
from .csvschema import EPOCH_UNITS
from .fetch import Credentials, HttpOptions, Response, redact, with_params
from .grid import Samples

FORMATS = ("json", "ndjson", "csv", "sensorthings", "thingspeak")
PAGINGS = ("auto", "link", "next", "offset", "none")
RECORD_KEYS = ("data", "records", "items", "results", "value", "values", "samples", "feeds",
               "observations")
NEXT_KEYS = ("next", "next_url", "nextUrl", "nextLink", "@iot.nextLink", "next_page")
TIME_KEYS = ("time", "timestamp", "datetime", "ts", "date", "created_at", "phenomenonTime")
DEVICE_KEYS = ("device", "device_id", "deviceId", "sensor", "sensor_id", "id")
THINGSPEAK_MAX = 8000
PREVIEW = 120


@dataclass(frozen=True)
class Feed:
    """Where a fleet's telemetry is served and how (see :func:`toolkit.read_http`).

    Build it with :func:`toolkit.io.http.feed`, which checks every argument.
    Its repr never shows a credential.
    """

    url: str
    format: str = "json"
    devices: tuple | None = None
    paging: str = "auto"
    records: str | None = None
    next_field: str | None = None
    offset_param: str = "offset"
    limit_param: str = "limit"
    page_size: int = 1000
    time: str | None = None
    device: str | None = None
    metric: str | None = None
    value: str | None = None
    metrics: tuple | None = None
    ignore: tuple = ()
    time_format: str | None = None
    timezone: str | None = None
    units: dict = field(default_factory=dict)
    missing: tuple = ()
    params: dict = field(default_factory=dict)
    since_param: str | None = None
    credentials: Credentials | None = None
    http: HttpOptions = HttpOptions()

    def describe(self) -> dict:
        """The feed as plain data without credentials (for checkpoints and reports)."""
        return {"url": redact(self.url, self.credentials), "format": self.format,
                "devices": list(self.devices) if self.devices else None,
                "paging": self.paging}


@dataclass
class Stream:
    """One sequence of pages: a device's records, a Datastream, a channel."""

    url: str
    device: str | None = None
    metric: str | None = None
    units: str | None = None
    start: int | None = None  # ns, inclusive (ThingSpeak windows, SensorThings filter)
    end: int | None = None
    since: int | None = None  # ns, exclusive: only newer samples (sync)
    fields: dict = field(default_factory=dict)  # ThingSpeak: field key -> metric


@dataclass(frozen=True)
class Mapping:
    """How records of a json/ndjson feed map to samples (resolved from the first page)."""

    time: str
    device: str | None
    layout: str
    metric: str | None = None
    value: str | None = None
    metrics: tuple = ()
    records: str | None = None


# --------------------------------------------------------------------------------------
# collecting samples of many pages


class Collector:
    """The samples and the accounting of one task's pages (long form)."""

    #: times waiting for one conversion (per-call costs dwarf small pages)
    PENDING = 1 << 18

    def __init__(self, missing=(), time_format: str | None = None,
                 timezone: str | None = None):
        self.time_format, self.timezone = time_format, timezone
        self.pending: list = []
        self.pending_n = 0
        self.device_index: dict = {}
        self.metric_index: dict = {}
        self.parts: list = []
        self.records = 0
        self.empty = 0
        self.pages = 0
        self.rejected: list = []  # (url, position, field, problem, text)
        self.missing = tuple(float(m) for m in missing)

    def code(self, index: dict, name) -> int:
        code = index.get(name)
        if code is None:
            code = index[name] = len(index)
        return code

    def add(self, devices, metrics, times: np.ndarray, values: np.ndarray) -> None:
        """Samples with a device and metric each (a name, or an array of names)."""
        n = times.shape[0]
        if not n:
            return
        dev = self._codes(self.device_index, devices, n)
        met = self._codes(self.metric_index, metrics, n)
        values = np.asarray(values, np.float64)
        if self.missing:
            values = np.where(np.isin(values, self.missing), np.nan, values)
        self.parts.append((dev, met, np.asarray(times, np.int64), values))

    def _codes(self, index, names, n):
        if isinstance(names, str):
            return np.full(n, self.code(index, names), np.int32)
        names = np.asarray(names, dtype=object)
        uniq, inverse = np.unique(names.astype(str), return_inverse=True)
        lookup = np.array([self.code(index, str(u)) for u in uniq], np.int32)
        return lookup[inverse]

    def defer(self, devices, columns: list, times: list, url: str, positions, time_field: str
              ) -> None:
        """Samples whose time text is converted later, with many pages' at once.

        ``columns`` are ``(metric, values)`` pairs sharing ``times`` (one
        metric for SensorThings, each metric of wide records); ``positions``
        the records' places in the page (None: their index), for rejections.
        """
        if not times:
            return
        self.pending.append((devices, columns, times, url, positions, time_field))
        self.pending_n += len(times)
        if self.pending_n >= self.PENDING:
            self.flush()

    def flush(self) -> None:
        """Convert the pending times; a record whose time does not read is rejected."""
        if not self.pending:
            return
        pending, self.pending, self.pending_n = self.pending, [], 0
        texts = [t for part in pending for t in part[2]]
        ns, bad = times_to_ns(texts, self.time_format, self.timezone)
        at = 0
        for devices, columns, times, url, positions, time_field in pending:
            n = len(times)
            part_ns, part_bad = ns[at:at + n], bad[at:at + n]
            at += n
            if part_bad.any():
                for k in np.flatnonzero(part_bad):
                    record = {time_field: times[k]}
                    for m, vals in columns:
                        record[m if isinstance(m, str) else str(m[k])] = \
                            None if vals[k] != vals[k] else float(vals[k])
                    self.reject(url, positions[k] if positions is not None else int(k),
                                time_field, "the time is missing or not a time", record)
                keep = np.flatnonzero(~part_bad)
                part_ns = part_ns[keep]
                if not isinstance(devices, str):
                    devices = np.asarray(devices, object)[keep]
                columns = [(m if isinstance(m, str) else m[keep], vals[keep])
                           for m, vals in columns]
            for m, vals in columns:
                self.add(devices, m, part_ns, vals)

    def reject(self, url, position, name, problem, record) -> None:

        try:
            text = msgspec.json.encode(record).decode() if not isinstance(record, str) else record
        except (TypeError, msgspec.EncodeError):
            text = repr(record)
        self.rejected.append((url, position, name, problem, text[:500]))

    def samples(self, since: dict | None = None) -> Samples:
        self.flush()
        devices = np.array(list(self.device_index), dtype=object)
        metrics = list(self.metric_index)
        if self.parts:
            dev, met, t, v = (np.concatenate(x) for x in zip(*self.parts, strict=True))
        else:
            dev, met = np.zeros(0, np.int32), np.zeros(0, np.int32)
            t, v = np.zeros(0, np.int64), np.zeros(0)
        if since:
            limit = np.full((len(devices), max(len(metrics), 1)), np.iinfo(np.int64).min)
            for (d, m), ns in since.items():
                if d in self.device_index and m in self.metric_index and ns is not None:
                    limit[self.device_index[d], self.metric_index[m]] = ns
            keep = t > limit[dev, met]
            dev, met, t, v = dev[keep], met[keep], t[keep], v[keep]
        return Samples(devices, dev, t, metrics, met, v)


# --------------------------------------------------------------------------------------
# conversions, fast path first, record by record where the fast path refuses


def times_to_ns(items: list, time_format: str | None = None, timezone: str | None = None):
    """Times of records (ISO text, epoch numbers or ``time_format`` text) as int64 ns UTC.

    Returns ``(ns, bad)``: a mask of items that are not times (missing or
    unreadable), whose ``ns`` is 0.

    Examples
    --------
    >>> ns, bad = times_to_ns(["2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00", "x"])
    >>> pd.to_datetime(ns[:2]).tolist(), bad.tolist()
    ([Timestamp('2026-01-01 00:00:00'), Timestamp('2026-01-01 00:00:00')], [False, False, True])
    """
    n = len(items)
    if not n:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    unit = _epoch_unit(items, time_format)
    if unit is not None:
        nums = _numbers(items)
        ok = np.isfinite(nums)
        with np.errstate(invalid="ignore", over="ignore"):
            ns = np.round(np.where(ok, nums, 0) * EPOCH_UNITS[unit])
        ok &= np.abs(ns) < 9.2e18
        return np.where(ok, ns, 0).astype(np.int64), ~ok
    try:
        arr = pa.array(items, pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        arr = pa.array([x if isinstance(x, str) else None for x in items], pa.string())
    if time_format is not None:
        ts = pc.strptime(arr, format=time_format, unit="ns", error_is_null=True)
        return _zoned(ts, timezone)
    try:
        ts = pc.cast(arr, pa.timestamp("ns", tz="UTC"))
        return _finish(ts)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    try:  # no zone on any: the timezone's wall clock (UTC by default)
        return _zoned(pc.cast(arr, pa.timestamp("ns")), timezone)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    ns = np.zeros(n, np.int64)
    bad = np.ones(n, bool)
    for k, x in enumerate(items):
        if not isinstance(x, str) or not x.strip():
            continue
        try:
            stamp = pd.Timestamp(x.strip())
        except (ValueError, TypeError, OverflowError):
            continue
        if stamp is pd.NaT:
            continue
        if stamp.tzinfo is None:
            stamp = stamp.tz_localize(timezone or "UTC", ambiguous=True,
                                      nonexistent="shift_forward")
        ns[k], bad[k] = stamp.tz_convert("UTC").value, False
    return ns, bad


def _zoned(ts, timezone):
    if timezone:
        ts = pc.assume_timezone(ts, timezone=timezone, ambiguous="earliest",
                                nonexistent="latest")
    return _finish(ts)


def _finish(ts):
    valid = pc.is_valid(ts).to_numpy(zero_copy_only=False)
    ns = ts.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    return ns, ~valid


def _epoch_unit(items, time_format):
    if time_format is not None:
        if time_format in EPOCH_UNITS or time_format.startswith("epoch"):
            unit = time_format.removeprefix("epoch").strip("_") or "s"
            if unit not in EPOCH_UNITS:
                raise ArgumentError(f"time_format={time_format!r}: an epoch unit is one of "
                                    f"{['epoch_' + u for u in EPOCH_UNITS]}")
            return unit
        return None
    first = next((x for x in items if x is not None), None)
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        magnitude = abs(float(first))
        return "s" if magnitude < 1e11 else "ms" if magnitude < 1e14 else \
            "us" if magnitude < 1e17 else "ns"
    return None


def _numbers(items: list) -> np.ndarray:
    """Values as float64: numbers, numeric text, null (NaN); anything else NaN and
    listed by :func:`_not_numbers`."""
    try:
        out = np.array(items, dtype=np.float64)
        if out.ndim == 1:
            return out
    except (ValueError, TypeError):
        pass
    out = np.empty(len(items))
    for k, x in enumerate(items):
        out[k] = _number(x)
    return out


def _number(x) -> float:
    if x is None:
        return np.nan
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return float(x)
    if isinstance(x, bool):
        return float(x)
    if isinstance(x, str):
        try:
            return float(x) if x.strip() not in ("", "null", "NaN", "nan", "NA") else np.nan
        except ValueError:
            return np.nan
    return np.nan


def _not_numbers(items: list) -> list[int]:
    """Positions of items that are neither numbers, numeric text, nor null."""
    bad = []
    for k, x in enumerate(items):
        if x is None or isinstance(x, (int, float)):
            continue
        if isinstance(x, str):
            s = x.strip()
            if s in ("", "null", "NaN", "nan", "NA"):
                continue
            try:
                float(s)
                continue
            except ValueError:
                pass
        bad.append(k)
    return bad


def values_to_float(items: list):
    """``(values, bad positions)``; the fast path when every item is a number or null."""
    try:
        out = np.array(items, dtype=np.float64)
        if out.ndim == 1:
            return out, []
    except (ValueError, TypeError):
        pass
    return np.array([_number(x) for x in items], dtype=np.float64), _not_numbers(items)


# --------------------------------------------------------------------------------------
# pages


def page_error(response: Response, page: int, problem: str, credentials) -> LoadError:
    return LoadError(redact(
        f"{response.url} (page {page}, HTTP {response.status}): {problem}; the answer begins "
        f"{response.body[:PREVIEW]!r}", credentials))


def decode_json(response: Response, page: int, credentials):

    body = response.body
    head = body[:64].lstrip()
    if head[:1] == b"<" or "html" in response.headers.get("Content-Type", "").lower():
        raise page_error(response, page, "an HTML page where JSON was expected (an error "
                         "page of a proxy or the server?)", credentials)
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as err:
        raise page_error(response, page, f"not valid JSON ({err})", credentials) from None


def records_of(body, records_key: str | None, response, page, credentials) -> list:
    """The list of records of a JSON page (the body, or the list it holds)."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        if records_key is not None:
            found = body.get(records_key)
            if isinstance(found, list):
                return found
            if found is None and records_key in body:
                return []
            raise page_error(response, page, f"no list of records under {records_key!r} "
                             f"(keys: {sorted(body)[:10]})", credentials)
        for key in RECORD_KEYS:
            if isinstance(body.get(key), list):
                return body[key]
        raise page_error(response, page, "an object without a list of records (pass "
                         f"records='<key>'; keys: {sorted(body)[:10]})", credentials)
    raise page_error(response, page, f"a JSON {type(body).__name__} where a list of records "
                     "or an object holding one was expected", credentials)


def next_url(response: Response, body, feed: Feed) -> str | None:
    """The next page's URL from a ``Link`` header or a next field (relative URLs resolved)."""
    if feed.paging in ("auto", "link"):
        link = _link_next(response.headers.get("Link", ""))
        if link:
            return urljoin(response.url, link)
    if feed.paging in ("auto", "next") and isinstance(body, dict):
        keys = (feed.next_field,) if feed.next_field else NEXT_KEYS
        for key in keys:
            value = _dotted(body, key)
            if isinstance(value, str) and value:
                return urljoin(response.url, value)
    return None


def _dotted(body: dict, key: str):
    value = body
    for part in key.split(".") if key not in body else [key]:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


_LINK = re.compile(r'<([^>]*)>\s*((?:;\s*[^;,]+)*)')


def _link_next(header: str) -> str | None:
    for target, params in _LINK.findall(header or ""):
        if re.search(r'rel\s*=\s*"?([^";]*\s)?next(\s[^";]*)?"?', params):
            return target
    return None


def resolve_mapping(feed: Feed, records: list) -> Mapping:
    """The record mapping of a json/ndjson feed, from its keywords and a first page."""
    first = [r for r in records[:200] if isinstance(r, dict)]
    keys: dict = {}
    for r in first:
        keys.update(dict.fromkeys(r))
    if not keys and feed.time is None:
        raise LoadError(redact(f"{feed.url}: the first page holds no records to learn the "
                               "fields from; pass time=..., and metrics=... or metric=/value=",
                               feed.credentials))

    def find(given, candidates, what):
        if given is not None:
            if keys and given not in keys:
                raise LoadError(f"{what}={given!r} is not a field of the records; their "
                                f"fields are {list(keys)}")
            return given
        return next((c for c in candidates if c in keys), None)

    time_key = find(feed.time, TIME_KEYS, "time")
    if time_key is None:
        raise LoadError(f"no time field in the records (fields {list(keys)}); pass time=...")
    per_device_url = "{device}" in feed.url
    device_key = None if feed.device is False else find(
        feed.device, DEVICE_KEYS if not per_device_url else ("device", "device_id"), "device")
    if device_key is None and not per_device_url:
        raise LoadError(f"no device field in the records (fields {list(keys)}); pass "
                        "device=..., or put {device} in the URL with devices=[...]")
    metric_key = find(feed.metric, ("metric",) if feed.metrics is None else (), "metric")
    value_key = find(feed.value, ("value",) if metric_key else (), "value")
    if metric_key and value_key:
        return Mapping(time_key, device_key, "long", metric_key, value_key, (), feed.records)
    taken = {time_key, device_key, *feed.ignore}
    metrics = tuple(feed.metrics) if feed.metrics is not None else tuple(
        k for k in keys if k not in taken and not k.startswith("@"))
    if not metrics:
        raise LoadError(f"no metric fields in the records (fields {list(keys)}); pass "
                        "metrics=[...], or metric= and value= for long records")
    return Mapping(time_key, device_key, "wide", None, None, metrics, feed.records)


def add_records(records: list, mapping: Mapping, stream: Stream, feed: Feed,
                collector: Collector, url: str, positions: list | None = None) -> None:
    """Samples of a page of json/ndjson records; bad records are rejected with their place
    (``positions``: each record's line in an NDJSON page; default its index)."""
    before = len(collector.rejected)
    try:
        _add_records(records, mapping, stream, feed, collector, url, positions)
    finally:  # rejections in the page's order
        collector.rejected[before:] = sorted(collector.rejected[before:], key=lambda r: r[1])


def _add_records(records, mapping, stream, feed, collector, url, positions) -> None:
    n = len(records)
    collector.records += n
    if not n:
        return
    good = [r for r in records if isinstance(r, dict)]
    if len(good) != n:
        for k, r in enumerate(records):
            if not isinstance(r, dict):
                collector.reject(url, positions[k] if positions else k, None,
                                 "a record that is not a JSON object", r)
        keep_pos = [positions[k] if positions else k
                    for k, r in enumerate(records) if isinstance(r, dict)]
    else:
        keep_pos = positions
    records = good
    raw_times = [r.get(mapping.time) for r in records]
    ok = np.ones(len(records), bool)
    problems: dict[int, tuple] = {}
    if mapping.device:
        devices = [r.get(mapping.device) for r in records]
        devices = [d if isinstance(d, str) else (str(d) if isinstance(d, int) and
                                                 not isinstance(d, bool) else None)
                   for d in devices]
        for k, d in enumerate(devices):
            if d is None or not d.strip():
                problems[k] = (mapping.device, "the device is missing or not text")
    else:
        devices = stream.device
    if mapping.layout == "long":
        metric_names = [r.get(mapping.metric) for r in records]
        for k, m in enumerate(metric_names):
            if not isinstance(m, str) or not m:
                problems.setdefault(k, (mapping.metric, "the metric is missing or not text"))
        vals, vbad = values_to_float([r.get(mapping.value) for r in records])
        for k in vbad:
            problems.setdefault(int(k), (mapping.value, "the value is not a number"))
        columns = [(np.array(metric_names, object), vals)]
    else:
        columns = []
        for m in mapping.metrics:
            vals, vbad = values_to_float([r.get(m) for r in records])
            for k in vbad:
                problems.setdefault(int(k), (m, "the value is not a number"))
            columns.append((m, vals))
    if not problems:  # the common case: times converted later, many pages at once
        collector.defer(devices, columns, raw_times, url, keep_pos, mapping.time)
        return
    times, tbad = times_to_ns(raw_times, feed.time_format, feed.timezone)
    for k in np.flatnonzero(tbad):
        problems.setdefault(int(k), (mapping.time, "the time is missing or not a time"))
    ok[list(problems)] = False
    _reject(collector, problems, records, keep_pos, url)
    idx = np.flatnonzero(ok)
    if not idx.size:
        return
    dev = devices if isinstance(devices, str) else np.array(devices, object)[idx]
    for m, vals in columns:
        collector.add(dev, m if isinstance(m, str) else m[idx], times[idx], vals[idx])


def _reject(collector, problems, records, keep_pos, url):
    for k, (name, why) in sorted(problems.items()):
        collector.reject(url, keep_pos[k] if keep_pos is not None else k, name, why,
                         records[k])


def ndjson_records(response: Response, page: int, collector: Collector, url: str,
                   credentials) -> tuple[list, list]:
    """Records of an NDJSON page and their line numbers; unreadable lines are rejected."""

    body = response.body
    if body[:64].lstrip()[:1] == b"<":
        raise page_error(response, page, "an HTML page where NDJSON was expected",
                         credentials)
    records, lines = [], []
    for k, line in enumerate(body.split(b"\n")):
        if not line.strip():
            if k < body.count(b"\n"):
                collector.empty += 1
            continue
        try:
            records.append(msgspec.json.decode(line))
            lines.append(k)
        except msgspec.DecodeError as err:
            collector.records += 1
            collector.reject(url, k, None, f"not valid JSON ({err})",
                             line.decode("utf-8", "replace"))
    return records, lines


# --------------------------------------------------------------------------------------
# SensorThings


def sta_streams(things: list[dict], datastreams: dict, feed: Feed) -> list[Stream]:
    """A stream per Datastream of the wanted Things (``datastreams``: Thing id -> list)."""
    out = []
    for thing in things:
        name = str(thing.get("name", thing.get("@iot.id")))
        if feed.devices and name not in feed.devices:
            continue
        for ds in datastreams.get(thing.get("@iot.id"), []):
            prop = (ds.get("ObservedProperty") or {}).get("name") or ds.get("name")
            if not prop:
                continue
            if feed.metrics is not None and prop not in feed.metrics:
                continue
            unit = ds.get("unitOfMeasurement") or {}
            url = ds.get("Observations@iot.navigationLink") or ds.get("@iot.selfLink", "") + \
                "/Observations"
            if not url or url == "/Observations":
                url = f"{feed.url.rstrip('/')}/Datastreams({_sta_id(ds.get('@iot.id'))})" \
                      "/Observations"
            out.append(Stream(url=url, device=name, metric=str(prop),
                              units=unit.get("symbol") or unit.get("name")))
    return out


def _sta_id(value) -> str:
    return f"'{value}'" if isinstance(value, str) else str(value)


def sta_first_url(stream: Stream, feed: Feed) -> str:
    filters = []
    if stream.since is not None:
        filters.append(f"phenomenonTime gt {_iso(stream.since)}")
    elif stream.start is not None:
        filters.append(f"phenomenonTime ge {_iso(stream.start)}")
    if stream.end is not None:
        filters.append(f"phenomenonTime le {_iso(stream.end)}")
    params = {"$top": feed.page_size, "$orderby": "phenomenonTime asc",
              "$select": "phenomenonTime,result", **feed.params}
    if filters:
        params["$filter"] = " and ".join(filters)
    return with_params(stream.url, params)


class _Observation(msgspec.Struct, gc=False):
    phenomenonTime: str | None = None
    result: float | None = None


class _ObservationPage(msgspec.Struct, gc=False):
    value: list[_Observation]
    nextLink: str | None = msgspec.field(default=None, name="@iot.nextLink")


_OBSERVATION_PAGE = msgspec.json.Decoder(_ObservationPage)


def sta_add_typed(body: bytes, stream: Stream, collector: Collector, url: str):
    """A page of Observations decoded straight into typed records (no dict each).

    Returns ``(observations, nextLink)``, or None when the page is not of
    the plain shape (text results, no ``value`` list, not JSON...): then the
    general path reads it and names what is wrong.
    """
    try:
        page = _OBSERVATION_PAGE.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    obs = page.value
    collector.records += len(obs)
    if obs:
        times = [o.phenomenonTime for o in obs]
        if "/" in (times[0] or "") or "/" in (times[-1] or ""):  # intervals: their start
            times = [t.split("/", 1)[0] if t else t for t in times]
        values = np.array([o.result for o in obs], dtype=np.float64)
        collector.defer(stream.device, [(stream.metric, values)], times, url, None,
                        "phenomenonTime")
    return obs, page.nextLink


def sta_add(body, stream: Stream, feed: Feed, collector: Collector, url, response, page):
    obs = records_of(body, "value", response, page, feed.credentials)
    n = len(obs)
    collector.records += n
    if not n:
        return obs
    try:
        times = [o["phenomenonTime"] for o in obs]
        results = [o["result"] for o in obs]
    except (KeyError, TypeError):
        times = [o.get("phenomenonTime") if isinstance(o, dict) else None for o in obs]
        results = [o.get("result") if isinstance(o, dict) else None for o in obs]
    if any(isinstance(t, str) and "/" in t for t in times[:1]) or \
            any(isinstance(t, str) and "/" in t for t in times[-1:]):
        times = [t.split("/", 1)[0] if isinstance(t, str) else t for t in times]
    vals, vbad = values_to_float(results)
    if not vbad:  # the common case: times converted later, many pages at once
        collector.defer(stream.device, [(stream.metric, vals)], times, url, None,
                        "phenomenonTime")
        return obs
    ns, tbad = times_to_ns(times, feed.time_format, feed.timezone)
    ok = ~tbad
    if vbad:
        ok[vbad] = False
    for k in np.flatnonzero(~ok):
        why = ("phenomenonTime", "the phenomenonTime is missing or not a time") if tbad[k] \
            else ("result", "the result is not a number")
        collector.reject(url, int(k), why[0], why[1], obs[k])
    idx = np.flatnonzero(ok) if not ok.all() else None
    if idx is None:
        collector.add(stream.device, stream.metric, ns, vals)
    else:
        collector.add(stream.device, stream.metric, ns[idx], vals[idx])
    return obs


def _iso(ns: int) -> str:
    return pd.Timestamp(int(ns), tz="UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(
        ".000000Z", "Z")


# --------------------------------------------------------------------------------------
# ThingSpeak


def thingspeak_url(feed: Feed, channel) -> str:
    return f"{feed.url.rstrip('/')}/channels/{channel}/feeds.json"


def thingspeak_stream(feed: Feed, channel, info: dict, start, end) -> Stream:
    """A channel's stream from its metadata (``channel`` object of an answer)."""
    fields = {f"field{k}": info[f"field{k}"] for k in range(1, 9)
              if isinstance(info.get(f"field{k}"), str) and info.get(f"field{k}")}
    if feed.metrics is not None:
        fields = {k: v for k, v in fields.items() if v in feed.metrics}
    # (the channel's updated_at is when its settings changed, not its last entry)
    return Stream(url=thingspeak_url(feed, channel), device=str(channel), fields=fields,
                  start=start, end=end)


def _ns(text) -> int:
    stamp = pd.Timestamp(text)
    return (stamp.tz_convert("UTC") if stamp.tzinfo else stamp.tz_localize("UTC")).value


def thingspeak_window_url(stream: Stream, feed: Feed, lo: int | None, hi: int | None,
                          results: int) -> str:
    """A window's URL (``start``/``end`` inclusive, to the second; None: open)."""
    fmt = "%Y-%m-%d %H:%M:%S"
    params = {"results": results, **feed.params}
    if lo is not None:
        params["start"] = pd.Timestamp(lo).strftime(fmt)
    if hi is not None:
        params["end"] = pd.Timestamp(hi).strftime(fmt)
    return with_params(stream.url, params)


def thingspeak_oldest(feeds: list) -> int | None:
    """The time of a window's oldest entry (ThingSpeak lists entries oldest first)."""
    for e in feeds:
        if isinstance(e, dict) and isinstance(e.get("created_at"), str):
            try:
                return _ns(e["created_at"])
            except ValueError:
                continue
    return None


def thingspeak_add(body, stream: Stream, feed: Feed, collector: Collector, url, response,
                   page, seen: set) -> int:
    """Add a window's entries (new entry ids only); returns the number of entries."""
    if body == -1:
        raise page_error(response, page, "ThingSpeak answers -1: no such channel, or a "
                         "private one (pass token=..., token_param='api_key')",
                         feed.credentials)
    if not isinstance(body, dict) or not isinstance(body.get("feeds"), list):
        raise page_error(response, page, "not a ThingSpeak answer (an object with 'channel' "
                         "and 'feeds')", feed.credentials)
    feeds = body["feeds"]
    fresh = []
    for k, e in enumerate(feeds):
        key = e.get("entry_id") if isinstance(e, dict) else None
        if key is not None and key in seen:
            continue
        if key is not None:
            seen.add(key)
        fresh.append((k, e))
    collector.records += len(fresh)
    if not fresh:
        return len(feeds)
    entries = [e if isinstance(e, dict) else {} for _, e in fresh]
    ns, tbad = times_to_ns([e.get("created_at") for e in entries], feed.time_format,
                           feed.timezone)
    ok = ~tbad
    cols = {}
    bad_field = {}
    for key, metric in stream.fields.items():
        vals, vbad = values_to_float([e.get(key) for e in entries])
        for b in vbad:
            bad_field.setdefault(b, key)
        cols[metric] = vals
    if bad_field:
        ok[list(bad_field)] = False
    for k in np.flatnonzero(~ok):
        pos, e = fresh[k]
        if not isinstance(e, dict):
            collector.reject(url, pos, None, "an entry that is not a JSON object", e)
        elif tbad[k]:
            collector.reject(url, pos, "created_at", "created_at is missing or not a time", e)
        else:
            collector.reject(url, pos, bad_field[k], "the value is not a number", e)
    idx = np.flatnonzero(ok)
    for metric, vals in cols.items():
        collector.add(stream.device, metric, ns[idx], vals[idx])
    return len(feeds)


def check_feed_args(format: str, paging: str) -> None:
    if format not in FORMATS:
        raise ArgumentError(f"format must be one of {FORMATS}, got format={format!r}")
    if paging not in PAGINGS:
        raise ArgumentError(f"paging must be one of {PAGINGS}, got paging={paging!r}")


__all__ = ["FORMATS", "PAGINGS", "Collector", "Feed", "Mapping", "Stream", "add_records",
           "check_feed_args", "decode_json", "next_url", "records_of", "resolve_mapping",
           "sta_add", "sta_add_typed", "sta_first_url", "sta_streams", "thingspeak_add",
           "thingspeak_oldest", "thingspeak_stream", "thingspeak_window_url", "times_to_ns",
           "values_to_float"]
