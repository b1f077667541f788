"""Load device telemetry from HTTP feeds into the fleet Dataset.

How a load runs:

1. **Discover** (on the client, a few small requests): the feed's streams --
   the devices of a per-device URL, the Things and Datastreams of a
   SensorThings service, the channels of ThingSpeak -- and, for JSON and CSV
   records, the fields of a first page (as the CSV loader reads the head of
   the first file).
2. **Fetch and parse** (on the workers of the current Dask client, or on
   Dask's local threads): one task per group of streams runs an asyncio
   HTTP session (:class:`~toolkit.io.fetch.Fetcher`: a bounded number of
   keep-alive connections per host, timeouts, retries) that reads its
   streams' pages concurrently and parses each as it arrives (msgspec, or
   the CSV engine for CSV pages) into one :class:`~toolkit.io.grid.Samples`
   block, which stays on that worker. Only a summary comes back.
3. **Regularise**: the shared step :func:`~toolkit.io.grid.samples_to_grid`,
   exactly as for CSV files; the :class:`~toolkit.io.grid.LoadReport` counts
   pages, records, rejected records and retried requests.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import csv
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urljoin

import dask
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize

from ..chunking import compute_threads
from ..errors import ArgumentError, LoadError
from .csvparse import Block, parse_bytes
from .csvschema import infer_schema
from .feeds import (
    THINGSPEAK_MAX,
    Collector,
    Feed,
    Mapping,
    Stream,
    add_records,
    check_feed_args,
    decode_json,
    ndjson_records,
    next_url,
    page_error,
    records_of,
    resolve_mapping,
    sta_add,
    sta_add_typed,
    sta_first_url,
    sta_streams,
    thingspeak_add,
    thingspeak_oldest,
    thingspeak_stream,
    thingspeak_window_url,
)
from .fetch import Fetcher, HttpOptions, check_status, credentials, redact, with_params
from .grid import LoadReport, Samples, check_grid_args, samples_to_grid

#: streams per fetch task at most, and tasks per worker thread at least
STREAMS_PER_TASK, TASKS_PER_THREAD = 64, 2


def feed(url: str, *, format: str = "json", devices=None, paging: str = "auto",
         records: str | None = None, next_field: str | None = None,
         offset_param: str = "offset", limit_param: str = "limit", page_size: int = 1000,
         time: str | None = None, device=None, metric: str | None = None,
         value: str | None = None, metrics=None, ignore=(), time_format: str | None = None,
         timezone: str | None = None, units: dict | None = None, missing=(),
         params: dict | None = None, since_param: str | None = None,
         token=None, token_env: str | None = None, header: str | None = None,
         token_param: str | None = None, connect_timeout: float = 10.0,
         read_timeout: float = 60.0, retries: int = 8, max_bytes: int = 256 * 2**20,
         connections: int = 8, verify: bool = True) -> Feed:
    """Describe an HTTP feed (the keywords of :func:`read_http`, checked).

    Examples
    --------
    >>> f = feed("https://example.org/api/{device}/samples.json", devices=["a", "b"],
    ...          token="s3cr3t")
    >>> "s3cr3t" in repr(f), f.format, f.devices
    (False, 'json', ('a', 'b'))
    """
    check_feed_args(format, paging)
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ArgumentError(f"url must be an http:// or https:// URL, got url={url!r}")
    if "{device}" in url and devices is None:
        raise ArgumentError("the URL holds {device}: pass devices=[...] (the device ids) or "
                            "devices='<URL of the device list>'")
    if format == "thingspeak" and not devices:
        raise ArgumentError("format='thingspeak' needs devices=[<channel id>, ...]")
    if not isinstance(page_size, int) or page_size < 1:
        raise ArgumentError(f"page_size must be a positive integer, got {page_size!r}")
    if devices is not None and not isinstance(devices, str):
        devices = tuple(str(d) for d in devices)
        if not devices:
            raise ArgumentError("devices is empty")
    creds = credentials(url, token=token, token_env=token_env, header=header,
                        param=token_param)
    http = HttpOptions(connect_timeout=connect_timeout, read_timeout=read_timeout,
                       retries=retries, max_bytes=max_bytes, connections=connections,
                       verify=verify)
    return Feed(url=url, format=format, devices=devices, paging=paging, records=records,
                next_field=next_field, offset_param=offset_param, limit_param=limit_param,
                page_size=page_size, time=time, device=device, metric=metric, value=value,
                metrics=None if metrics is None else tuple(metrics), ignore=tuple(ignore),
                time_format=time_format, timezone=timezone, units=dict(units or {}),
                missing=tuple(float(m) for m in missing), params=dict(params or {}),
                since_param=since_param, credentials=creds, http=http)


# --------------------------------------------------------------------------------------
# running coroutines from synchronous code (also inside Jupyter's running loop)


def run_sync(coro):
    """Run ``coro`` to completion; in a helper thread when this thread runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


# --------------------------------------------------------------------------------------
# discovery (client)


@dataclass
class Plan:
    """What a load fetches: the streams and how their pages read."""

    feed: Feed
    streams: list
    mapping: Mapping | None = None
    schema: object = None
    units: dict = field(default_factory=dict)
    requests: int = 0
    retries: int = 0


async def discover(feed: Feed, *, start=None, end=None, since: dict | None = None) -> Plan:
    """The feed's streams (and the mapping of its records), from a few requests."""
    async with Fetcher(feed.http, feed.credentials) as f:
        if feed.format == "sensorthings":
            plan = await _discover_sta(f, feed)
        elif feed.format == "thingspeak":
            plan = await _discover_thingspeak(f, feed, start, end)
        else:
            plan = await _discover_records(f, feed)
        for s in plan.streams:
            if feed.format != "thingspeak":
                s.start, s.end = _ns_or_none(start), _ns_or_none(end)
            if since:
                wide = plan.mapping.metrics if plan.mapping is not None else ()
                s.since = _stream_since(s, since, wide)
        plan.requests, plan.retries = f.tally.requests, f.tally.retries
    plan.units = {**plan.units, **feed.units}
    return plan


def _stream_since(stream: Stream, since: dict, metrics) -> int | None:
    """The time after which ``stream`` may hold what the store lacks (None: all of it).

    The oldest last-stored time among the stream's metrics -- a Datastream's
    one, a channel's fields, the metric fields of wide records; a stream whose
    metrics are not all known, or not all stored yet, is read whole (what the
    store has already is dropped when the batch is appended).
    """
    if stream.device is None:
        return None
    wanted = [stream.metric] if stream.metric else list(stream.fields.values()) or \
        list(metrics)
    known = [since.get((stream.device, m)) for m in wanted]
    return min(known) if known and all(k is not None for k in known) else None


def _ns_or_none(when) -> int | None:
    """A time as int64 ns UTC (times without a zone are UTC)."""
    if when is None:
        return None
    stamp = pd.Timestamp(when)
    return (stamp.tz_convert("UTC") if stamp.tzinfo else stamp).value


async def _devices(f: Fetcher, feed: Feed) -> tuple:
    if not isinstance(feed.devices, str):
        return feed.devices
    resp = await f.get(feed.devices, page=0, what="device list")
    check_status(resp, url=feed.devices, page=0, fetcher=f, what="device list")
    body = decode_json(resp, 0, feed.credentials)
    items = body if isinstance(body, list) else records_of(body, None, resp, 0,
                                                          feed.credentials) \
        if not isinstance(body, dict) or "devices" not in body else body["devices"]
    out = []
    for item in items:
        if isinstance(item, dict):
            item = item.get("id", item.get("name", item.get("device")))
        if item is None:
            raise page_error(resp, 0, "a device list entry without an id", feed.credentials)
        out.append(str(item))
    return tuple(out)


def _first_url(feed: Feed, stream_url: str, since: int | None = None) -> str:
    params = dict(feed.params)
    if feed.paging == "offset":
        params.update({feed.offset_param: 0, feed.limit_param: feed.page_size})
    if feed.since_param and since is not None:
        params[feed.since_param] = pd.Timestamp(int(since), tz="UTC").isoformat()
    return with_params(stream_url, params) if params else stream_url


async def _discover_records(f: Fetcher, feed: Feed) -> Plan:
    devices = await _devices(f, feed)
    if "{device}" in feed.url:
        streams = [Stream(url=feed.url.replace("{device}", quote(d, safe="")), device=d)
                   for d in devices]
    else:
        streams = [Stream(url=feed.url)]
    plan = Plan(feed, streams)
    probe = _first_url(feed, streams[0].url)
    resp = await f.get(probe, page=0)
    check_status(resp, url=probe, page=0, fetcher=f)
    if feed.format == "csv":
        plan.schema = _csv_schema(feed, resp, streams[0])
    else:
        if feed.format == "ndjson":
            records, _ = ndjson_records(resp, 0, Collector(), probe, feed.credentials)
        else:
            records = records_of(decode_json(resp, 0, feed.credentials), feed.records, resp, 0,
                                 feed.credentials)
        plan.mapping = resolve_mapping(feed, records)
    return plan


def _csv_schema(feed: Feed, resp, stream: Stream):
    """The schema of the feed's CSV pages, inferred from the first one."""
    folder = tempfile.mkdtemp(prefix="toolkit-feed-")
    path = Path(folder, "page.csv")
    try:
        path.write_bytes(resp.body)
        kwargs = dict(time=feed.time, time_format=feed.time_format, timezone=feed.timezone,
                      metric=feed.metric, value=feed.value, metrics=feed.metrics,
                      missing=feed.missing, units=feed.units, ignore=feed.ignore)
        if feed.device is not None:
            kwargs["device"] = feed.device
        try:
            return infer_schema(path, **kwargs)
        except LoadError as err:
            raise LoadError(redact(str(err).replace(str(path), f"{resp.url} (page 0)"),
                                   feed.credentials)) from None
    finally:
        path.unlink(missing_ok=True)
        os.rmdir(folder)


async def _paged_values(f: Fetcher, url: str, feed: Feed, what: str) -> list:
    """Every item of a SensorThings collection, following ``@iot.nextLink``."""
    out, page, seen = [], 0, set()
    while url:
        if url in seen:
            raise LoadError(redact(f"{url}: the {what} pages link back to an earlier page",
                                   feed.credentials))
        seen.add(url)
        resp = await f.get(url, page=page, what=what)
        check_status(resp, url=url, page=page, fetcher=f, what=what)
        body = decode_json(resp, page, feed.credentials)
        out += records_of(body, "value", resp, page, feed.credentials)
        link = body.get("@iot.nextLink") if isinstance(body, dict) else None
        url = urljoin(resp.url, link) if link else None
        page += 1
    return out


async def _discover_sta(f: Fetcher, feed: Feed) -> Plan:
    root = feed.url.rstrip("/")
    things = await _paged_values(f, with_params(f"{root}/Things", feed.params), feed, "Things")
    wanted = [t for t in things if isinstance(t, dict) and (
        not feed.devices or str(t.get("name", t.get("@iot.id"))) in feed.devices)]
    if feed.devices:
        missing = sorted(set(feed.devices) - {str(t.get("name")) for t in wanted})
        if missing:
            raise LoadError(redact(f"{root}/Things has no Thing named {missing[:5]} "
                                   f"({len(missing)} missing)", feed.credentials))

    async def datastreams(thing):
        link = thing.get("Datastreams@iot.navigationLink") or \
            f"{root}/Things({thing.get('@iot.id')!r})/Datastreams".replace('"', "'")
        url = with_params(urljoin(root + "/", link), {"$expand": "ObservedProperty"})
        return thing.get("@iot.id"), await _paged_values(f, url, feed, "Datastreams")

    found = dict(await asyncio.gather(*(datastreams(t) for t in wanted)))
    streams = sta_streams(wanted, found, feed)
    if not streams:
        raise LoadError(redact(f"{root}: no Datastreams to read (Things: {len(things)}, "
                               f"wanted: {len(wanted)})", feed.credentials))
    units = {}
    for s in streams:
        if s.units and s.metric not in units:
            units[s.metric] = s.units
    return Plan(feed, streams, units=units)


async def _discover_thingspeak(f: Fetcher, feed: Feed, start, end) -> Plan:
    lo, hi = _ns_or_none(start), _ns_or_none(end)

    async def channel(ch):
        url = with_params(f"{feed.url.rstrip('/')}/channels/{ch}/feeds.json",
                          {"results": 0, **feed.params})
        resp = await f.get(url, page=0, what="channel")
        check_status(resp, url=url, page=0, fetcher=f, what="channel")
        body = decode_json(resp, 0, feed.credentials)
        if not isinstance(body, dict) or not isinstance(body.get("channel"), dict):
            raise page_error(resp, 0, "not a ThingSpeak answer (no 'channel' object)",
                             feed.credentials)
        return thingspeak_stream(feed, ch, body["channel"], lo, hi)

    streams = list(await asyncio.gather(*(channel(c) for c in feed.devices)))
    return Plan(feed, streams)


# --------------------------------------------------------------------------------------
# fetching (workers)


@dataclass
class Fetched(Samples):
    """The samples of one task's streams and their accounting."""

    records: int = 0
    empty: int = 0
    pages: int = 0
    streams: int = 0
    rejected: list = field(default_factory=list)
    requests: int = 0
    retries: int = 0
    bytes: int = 0

    def summary(self) -> dict:
        return super().summary() | {
            "records": self.records, "empty": self.empty, "pages": self.pages,
            "streams": self.streams, "rejected": self.rejected, "requests": self.requests,
            "retries": self.retries, "bytes": self.bytes}


def fetch_streams(plan: Plan, streams: list, seed: int = 0, since: dict | None = None
                  ) -> Fetched:
    """Fetch and parse ``streams`` (a task: runs on a worker)."""
    return run_sync(_fetch_streams(plan, streams, seed, since))


async def _fetch_streams(plan: Plan, streams, seed, since) -> Fetched:
    feed = plan.feed
    collector = Collector(feed.missing, feed.time_format, feed.timezone)
    async with Fetcher(feed.http, feed.credentials, seed=seed) as f:
        reader = {"sensorthings": _read_sta, "thingspeak": _read_thingspeak}.get(
            feed.format, _read_records)
        await asyncio.gather(*(reader(f, plan, s, collector) for s in streams))
        tally = f.tally
    s = collector.samples(since)
    return Fetched(s.devices, s.device_codes, s.times, s.metrics, s.metric_codes, s.values,
                   records=collector.records, empty=collector.empty, pages=collector.pages,
                   streams=len(streams), rejected=collector.rejected,
                   requests=tally.requests, retries=tally.retries, bytes=tally.bytes)


async def _get_page(f: Fetcher, url: str, page: int):
    resp = await f.get(url, page=page)
    check_status(resp, url=url, page=page, fetcher=f)
    return resp


def _parse_records_page(resp, page, plan: Plan, stream: Stream, collector: Collector):
    """One json/ndjson/csv page into the collector; returns (records in page, body)."""
    feed = plan.feed
    where = redact(resp.url, feed.credentials)
    if feed.format == "csv":
        block = Block(where, page, 0, None, True, None if plan.schema.device else stream.device,
                      whole=True)
        parsed = parse_bytes(resp.body, block, plan.schema)
        collector.records += max(parsed.lines - 1, 0)
        collector.empty += parsed.empty
        for line, text, name, why in parsed.rejected:
            collector.reject(where, line, name, why, text)
        _add_parsed(collector, parsed)
        return parsed.rows + len(parsed.rejected) + parsed.empty, None
    if feed.format == "ndjson":
        records, lines = ndjson_records(resp, page, collector, where, feed.credentials)
        add_records(records, plan.mapping, stream, feed, collector, where, positions=lines)
        return len(records), None
    body = decode_json(resp, page, feed.credentials)
    records = records_of(body, plan.mapping.records, resp, page, feed.credentials)
    add_records(records, plan.mapping, stream, feed, collector, where)
    return len(records), body


def _add_parsed(collector: Collector, parsed) -> None:
    if not parsed.rows:
        return
    devices = parsed.devices.astype(object)[parsed.device_codes]
    if parsed.metric_codes is not None:
        metrics = np.array(parsed.metrics, dtype=object)[parsed.metric_codes]
        collector.add(devices, metrics, parsed.times, parsed.values)
        return
    for j, m in enumerate(parsed.metrics):
        collector.add(devices, m, parsed.times, parsed.values[:, j])


async def _read_records(f: Fetcher, plan: Plan, stream: Stream, collector: Collector):
    feed = plan.feed
    first = _first_url(feed, stream.url, stream.since)
    if feed.paging == "offset":
        await _read_offsets(f, plan, stream, collector, first)
        return
    url, page, seen = first, 0, set()
    while url:
        if url in seen:
            raise LoadError(redact(f"{url}: the next-page link points back to an earlier page "
                                   f"(page {page})", feed.credentials))
        seen.add(url)
        resp = await _get_page(f, url, page)
        _, body = _parse_records_page(resp, page, plan, stream, collector)
        collector.pages += 1
        url = next_url(resp, body, feed) if feed.paging != "none" else None
        page += 1


async def _read_offsets(f, plan, stream, collector, first):
    """Offset/limit pages, ``connections`` at a time, up to the first short page."""
    feed = plan.feed
    batch = max(1, feed.http.connections)
    offset, page = 0, 0
    while True:
        urls = [with_params(first, {feed.offset_param: offset + k * feed.page_size,
                                    feed.limit_param: feed.page_size}) for k in range(batch)]
        answers = await asyncio.gather(*(_get_page(f, u, page + k)
                                         for k, u in enumerate(urls)))
        for k, resp in enumerate(answers):
            n, _ = _parse_records_page(resp, page + k, plan, stream, collector)
            collector.pages += 1
            if n < feed.page_size:
                return
        offset += batch * feed.page_size
        page += batch


async def _read_sta(f: Fetcher, plan: Plan, stream: Stream, collector: Collector):
    feed = plan.feed
    first = sta_first_url(stream, feed)
    url, page, skip, seen = first, 0, 0, set()
    while url:
        if url in seen:
            raise LoadError(redact(f"{url}: @iot.nextLink points back to an earlier page",
                                   feed.credentials))
        seen.add(url)
        resp = await _get_page(f, url, page)
        where = redact(resp.url, feed.credentials)
        typed = None if feed.time_format else sta_add_typed(resp.body, stream, collector, where)
        if typed is not None:
            obs, link = typed
        else:
            body = decode_json(resp, page, feed.credentials)
            obs = sta_add(body, stream, feed, collector, where, resp, page)
            link = body.get("@iot.nextLink") if isinstance(body, dict) else None
        collector.pages += 1
        if link:
            url = urljoin(resp.url, link)
        elif len(obs) >= feed.page_size:  # a full page and no link: page by $skip
            skip += len(obs)
            url = with_params(first, {"$skip": skip})
        else:
            url = None
        page += 1


async def _read_thingspeak(f: Fetcher, plan: Plan, stream: Stream, collector: Collector):
    """A channel's entries, newest window first: each window ends at the oldest entry of
    the one before (inclusive; repeated entries are dropped by id) until one is not full."""
    feed = plan.feed
    seen: set = set()
    lo = stream.start
    if stream.since is not None:
        lo = stream.since + 1 if lo is None else max(lo, stream.since + 1)
    hi = stream.end
    if lo is not None and hi is not None and hi < lo:
        return
    limit = min(feed.page_size, THINGSPEAK_MAX) if feed.page_size != 1000 else THINGSPEAK_MAX
    page, before = 0, None
    while True:
        url = thingspeak_window_url(stream, feed, lo, hi, limit)
        resp = await _get_page(f, url, page)
        body = decode_json(resp, page, feed.credentials)
        collector.pages += 1
        n = thingspeak_add(body, stream, feed, collector, redact(resp.url, feed.credentials),
                           resp, page, seen)
        if n < limit:
            return
        oldest = thingspeak_oldest(body["feeds"])
        if oldest is None or (before is not None and oldest >= before):
            raise page_error(resp, page, f"over {limit} entries within one second; they "
                             "cannot be read apart", feed.credentials)
        before, hi = oldest, oldest
        page += 1


# --------------------------------------------------------------------------------------
# planning the tasks and the report


def _task_groups(streams: list) -> list[list]:
    threads = compute_threads()
    # a multiple of the threads, so that no thread waits alone for the last task
    rounds = max(TASKS_PER_THREAD, -(-len(streams) // (STREAMS_PER_TASK * threads)))
    n = min(threads * rounds, len(streams))
    return [streams[k::n] for k in range(n)]


def _fetch_all(plan: Plan, *, on_bad_rows: str, quarantine, since=None):
    if on_bad_rows not in ("raise", "quarantine"):
        raise ArgumentError(f"on_bad_rows must be 'raise' or 'quarantine', got "
                            f"on_bad_rows={on_bad_rows!r}")
    groups = _task_groups(plan.streams)
    token = tokenize(plan.feed.describe(), [s.url for s in plan.streams], since,
                     pd.Timestamp.now().value)
    blocks = [dask.delayed(fetch_streams, pure=False)(
        plan, g, k, since, dask_key_name=f"read-http-{token}-{k}")
        for k, g in enumerate(groups)]
    blocks = list(dask.persist(*blocks))
    summaries = dask.compute(*[dask.delayed(Fetched.summary)(b) for b in blocks])
    report = LoadReport(files=len(plan.streams), blocks=len(blocks))
    report.pages = sum(s["pages"] for s in summaries)
    report.requests = plan.requests + sum(s["requests"] for s in summaries)
    report.retries = plan.retries + sum(s["retries"] for s in summaries)
    rejected = []
    for s in summaries:
        report.rows_read += s["records"]
        report.rows_empty += s["empty"]
        report.rows_rejected += len(s["rejected"])
        report.samples_valid += s["valid"]
        report.samples_missing += s["missing"]
        rejected += s["rejected"]
    report.rows_loaded = report.rows_read - report.rows_rejected - report.rows_empty
    report.samples = report.samples_valid + report.samples_missing
    if rejected:
        url, pos, name, why, text = rejected[0]
        if on_bad_rows == "raise":
            where = f", field {name!r}" if name else ""
            raise LoadError(redact(
                f"{url}, record {pos}{where}: {why}. The record reads {text[:200]!r}. "
                f"{len(rejected)} bad record(s) in all; pass on_bad_rows='quarantine' to set "
                "them aside in a CSV and load the rest", plan.feed.credentials))
        out = Path(quarantine)
        with open(out, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["url", "position", "field", "problem", "text"])
            writer.writerows([(redact(u, plan.feed.credentials), p, n or "", w,
                               redact(t, plan.feed.credentials))
                              for u, p, n, w, t in rejected])
        report.quarantine = str(out)
        report.first_rejections = [f"{redact(u, plan.feed.credentials)} #{p} {w}"
                                   for u, p, _, w, _ in rejected[:5]]
    return blocks, summaries, report


def _as_feed(source, feed_kwargs) -> Feed:
    if isinstance(source, Feed):
        if feed_kwargs:
            raise ArgumentError(f"pass either a Feed or feed keywords, not both "
                                f"(got {sorted(feed_kwargs)})")
        return source
    return feed(source, **feed_kwargs)


def read_http(source, *, freq=None, how: str = "mean", duplicates: str = "mean",
              on_bad_rows: str = "raise", quarantine="quarantine.csv", start=None, end=None,
              **feed_kwargs) -> xr.Dataset:
    """Load an HTTP feed into a regularised, Dask-backed fleet Dataset.

    Parameters
    ----------
    source : str or Feed
        The feed's URL (with ``{device}`` for one URL per device; the service
        root for SensorThings; the API root for ThingSpeak), or a
        :class:`~toolkit.io.feeds.Feed` from :func:`feed`.
    freq, how, duplicates, start, end
        The grid, as in :func:`toolkit.read_csv`. ``start``/``end`` also
        limit what is asked of SensorThings and ThingSpeak servers.
    on_bad_rows : {"raise", "quarantine"}
        A record that cannot be read (no time, a value that is not a number,
        not an object): raise a :class:`~toolkit.errors.LoadError` naming the
        URL and the record's position, or write it, with URL and position, to
        the ``quarantine`` CSV and load the rest. A page that cannot be read
        at all (an HTML error page, truncated JSON, the wrong shape) always
        raises, naming URL, page, HTTP status and its first bytes.
    quarantine : str or path
        The quarantine file (only written when there are bad records).
    **feed_kwargs
        The feed (see :func:`feed`):

        - ``format``: ``"json"`` (default), ``"ndjson"``, ``"csv"``,
          ``"sensorthings"``, ``"thingspeak"``;
        - ``devices``: the device ids of a ``{device}`` URL, or the URL of a
          JSON list of them; ThingSpeak channel ids; for SensorThings, the
          Things to read (default all);
        - ``paging``: ``"auto"`` (a ``Link`` header or a next-URL field,
          default), ``"link"``, ``"next"`` (field ``next_field``),
          ``"offset"`` (``offset_param``/``limit_param``, ``page_size`` per
          page), ``"none"``;
        - ``records``: the key of the list of records in an object (default:
          the first of ``data``, ``records``, ``items``, ``results``...);
        - ``time``, ``device``, ``metric``, ``value``, ``metrics``,
          ``ignore``, ``time_format``, ``timezone``, ``units``, ``missing``:
          the fields, as the CSV schema (default: found by name; records are
          long when they have ``metric`` and ``value``);
        - ``params``: extra query parameters; ``since_param``: a query
          parameter the server filters on (used by :func:`toolkit.sync`);
        - ``token`` or ``token_env`` (an environment variable), sent as
          ``Authorization: Bearer``, or in ``header`` (``header="X-API-Key"``)
          or the query parameter ``token_param`` (ThingSpeak's ``api_key``),
          to the feed's host only; never shown anywhere;
        - ``connect_timeout``, ``read_timeout`` (seconds), ``retries``,
          ``max_bytes`` (per answer), ``connections`` (per host and task),
          ``verify`` (TLS, default True).

    Returns
    -------
    xarray.Dataset
        As :func:`toolkit.read_csv`: dims ``(device, time)``, a float64
        variable per metric with its ``units``, an int32 count beside each,
        chunked by devices and held on the workers; ``attrs["load_report"]``.

    Examples
    --------
    >>> from toolkit.feedserver import FeedServerProcess
    >>> with FeedServerProcess(devices=3, days=0.05) as server:  # doctest: +SKIP
    ...     ds = read_http(server.url + "/sta/v1.1", format="sensorthings", freq="1min")
    >>> ds.sizes  # doctest: +SKIP
    Frozen({'device': 3, 'time': 72})
    """
    check_grid_args(freq, how, duplicates)
    source_feed = _as_feed(source, feed_kwargs)
    plan = run_sync(discover(source_feed, start=start, end=end))
    blocks, summaries, report = _fetch_all(plan, on_bad_rows=on_bad_rows,
                                           quarantine=quarantine)
    if not report.samples_valid and not any(s["rows"] for s in summaries):
        raise LoadError(redact(f"no samples in {source_feed.url}: {report.rows_read} records, "
                               f"{report.rows_rejected} rejected", source_feed.credentials))
    metrics = list(plan.mapping.metrics) if plan.mapping and plan.mapping.metrics else None
    return samples_to_grid(blocks, summaries, report, freq=freq, how=how,
                           duplicates=duplicates, start=start, end=end, metrics=metrics,
                           units=_known_units(plan.units, summaries),
                           source=redact(source_feed.url, source_feed.credentials),
                           loader="read_http")


def _known_units(units: dict, summaries) -> dict:
    seen = {m for s in summaries for m in s["metrics"]}
    return {m: u for m, u in units.items() if m in seen}


def read_http_samples(source, *, on_bad_rows: str = "raise", quarantine="quarantine.csv",
                      start=None, end=None, **feed_kwargs):
    """Load an HTTP feed as raw samples in long form, before any regularisation.

    Takes the feed arguments of :func:`read_http` (everything but the grid).

    Returns
    -------
    (dask.dataframe.DataFrame, LoadReport)
        Columns ``device``, ``time`` (UTC), ``metric``, ``value``; one
        partition per fetch task, held on the workers.
    """
    import dask.dataframe as dd

    source_feed = _as_feed(source, feed_kwargs)
    plan = run_sync(discover(source_feed, start=start, end=end))
    blocks, _, report = _fetch_all(plan, on_bad_rows=on_bad_rows, quarantine=quarantine)
    meta = samples_frame(Samples(np.array([], object), np.zeros(0, np.int32),
                                 np.zeros(0, np.int64), [], np.zeros(0, np.int32),
                                 np.zeros(0)))
    frame = dd.from_delayed([dask.delayed(samples_frame)(b) for b in blocks], meta=meta,
                            verify_meta=False)
    return frame, report


def samples_frame(s: Samples) -> pd.DataFrame:
    """A long-form samples block as a DataFrame (device, time, metric, value)."""
    dev = s.devices.astype(object)[s.device_codes] if s.rows else np.array([], object)
    met = np.array(s.metrics, dtype=object)[s.metric_codes] if s.rows else \
        np.array([], object)
    return pd.DataFrame({"device": pd.array(dev, dtype="string"),
                         "time": pd.to_datetime(s.times, unit="ns"),
                         "metric": pd.array(met, dtype="string"), "value": s.values})


__all__ = ["Fetched", "Plan", "discover", "feed", "fetch_streams", "read_http",
           "read_http_samples", "run_sync", "samples_frame"]
