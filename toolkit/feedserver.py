"""``iot-toolkit serve-feed``: a real HTTP server of a synthetic fleet, with faults on demand.

It serves one :func:`~toolkit.make_fleet` fleet in every format that
:func:`toolkit.read_http` reads, so the HTTP path can be tried, tested and
measured without a cloud account:

- ``GET /``: what is served where (JSON);
- ``GET /api/devices``: ``{"devices": [...]}``;
- ``GET /api/{device}/samples.json``: wide records (``device``, ``time``,
  one field per metric); ``.ndjson``: the same, a record per line;
  ``.csv``: the same as CSV, a header on every page;
- ``GET /api/all/samples.json``: long records of every device
  (``device``, ``time``, ``metric``, ``value``);
- ``GET /sta/v1.1/Things``, ``/Things({id})/Datastreams``
  (``$expand=ObservedProperty``), ``/Datastreams({id})/Observations``
  (``$top``, ``$skip``, ``$filter``, ``@iot.nextLink``): OGC SensorThings,
  a Thing per device and a Datastream per metric;
- ``GET /channels/{id}/feeds.json`` (``start``, ``end``, ``results``):
  ThingSpeak, a channel per device;
- ``POST /devices/alerts``: alerts, de-duplicated by ``idempotency_key``;
  ``GET /devices/alerts``: the alerts received, once each.


The ``/api`` pages take ``paging=link`` (a ``Link: <...>; rel="next"`` header,
default), ``paging=next`` (an object ``{"data": [...], "next": url}``) or
``paging=offset`` (``offset`` and ``limit``), and ``since`` (only samples
after that time). Missing samples are ``null`` in the records and absent
from SensorThings and ThingSpeak.

Faults (each decided per request by a seeded random stream): ``latency``
added to every answer, a ``fail_rate`` of ``503``/``429`` answers with
``Retry-After``, a ``drop_rate`` of connections closed without an answer (for
alerts: after they were stored, so the client retries what arrived), a
``truncate_rate`` of answers cut short mid-body, and a ``malformed_rate`` of
pages that are an HTML error page or JSON cut in the middle with status 200.
The index, ``/health`` and the list of received alerts are exempt from
faults. With ``token``, every request must carry it (``Authorization: Bearer``,
``X-API-Key`` or ``api_key=``). Access logs name the path, never the query.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import random
import re
import sys
from dataclasses import dataclass

import msgspec
import numpy as np
import pandas as pd

from .errors import ArgumentError
from .synthetic import METRICS, make_fleet

THINGSPEAK_MAX = 8000


@dataclass(frozen=True)
class Faults:
    """Fault injection of the feed server (rates are fractions of requests)."""

    latency: float = 0.0
    fail_rate: float = 0.0
    drop_rate: float = 0.0
    truncate_rate: float = 0.0
    malformed_rate: float = 0.0
    retry_after: float = 1.0
    seed: int = 0

    def __post_init__(self):
        for name in ("fail_rate", "drop_rate", "truncate_rate", "malformed_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ArgumentError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.latency < 0 or self.retry_after < 0:
            raise ArgumentError("latency and retry_after must be >= 0 seconds")


class FleetData:
    """The served fleet, laid out for fast pages."""

    def __init__(self, n_devices=20, days=1.0, freq="1min", seed=0, start="2026-01-05",
                 metrics=None, page_size=1000, thingspeak_max=THINGSPEAK_MAX):
        fleet = make_fleet(n_devices=n_devices, days=days, freq=freq, seed=seed, start=start,
                           metrics=metrics)
        ds = fleet.dataset
        self.dataset = ds
        self.devices = [str(d) for d in ds.device.values]
        self.metrics = [m for m in METRICS if m in ds.data_vars]
        self.units = {m: ds[m].attrs.get("units", "") for m in self.metrics}
        self.times = ds.time.values.astype("datetime64[ns]").astype(np.int64)
        self.iso = np.char.add(np.datetime_as_string(ds.time.values, unit="ms"), "Z")
        self.iso_s = np.char.add(np.datetime_as_string(ds.time.values, unit="s"), "Z")
        self.values = {m: np.asarray(ds[m].values, dtype=np.float64) for m in self.metrics}
        self.page_size = int(page_size)
        self.thingspeak_max = int(thingspeak_max)
        self.index = {d: i for i, d in enumerate(self.devices)}
        # rows of each device where at least one metric has a value
        stacked = np.stack([self.values[m] for m in self.metrics])  # (metric, device, time)
        self.rows = [np.flatnonzero(~np.isnan(stacked[:, i, :]).all(axis=0))
                     for i in range(len(self.devices))]
        self.valid = {(i, j): np.flatnonzero(~np.isnan(stacked[j, i, :]))
                      for i in range(len(self.devices)) for j in range(len(self.metrics))}

    def served_samples(self) -> pd.DataFrame:
        """Every valid sample served, long form (what a complete load must hold)."""
        frames = []
        for (i, j), idx in self.valid.items():
            frames.append(pd.DataFrame({"device": self.devices[i], "metric": self.metrics[j],
                                        "time": self.times[idx],
                                        "value": self.values[self.metrics[j]][i, idx]}))
        return pd.concat(frames, ignore_index=True)


def _num(v: float):
    return None if v != v else float(v)


class FeedApp:
    """The aiohttp application of :func:`serve`."""

    def __init__(self, data: FleetData, faults: Faults, token: str | None = None,
                 cache_bytes: int = 2**30):
        self.data, self.faults, self.token = data, faults, token
        self.random = random.Random(faults.seed)
        self.cache: dict = {}
        self.cache_left = cache_bytes
        self.alerts: dict = {}
        self.alert_posts = 0
        self.alert_items = 0
        self.requests = 0

    # --- plumbing ------------------------------------------------------------------------

    def app(self):
        from aiohttp import web

        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 2**20)
        r = app.router
        r.add_get("/", self.root)
        r.add_get("/health", self.health)
        r.add_get("/api/devices", self.api_devices)
        r.add_get(r"/api/{device}/samples.{ext:json|ndjson|csv}", self.api_samples)
        r.add_get("/sta/v1.1/Things", self.sta_things)
        r.add_get(r"/sta/v1.1/Things({id:\d+})/Datastreams", self.sta_datastreams)
        r.add_get(r"/sta/v1.1/Datastreams({id:\d+})/Observations", self.sta_observations)
        r.add_get(r"/channels/{id:\d+}/feeds.json", self.thingspeak)
        r.add_post("/devices/alerts", self.post_alerts)
        r.add_get("/devices/alerts", self.get_alerts)
        return app

    def _authorised(self, request) -> bool:
        if not self.token:
            return True
        auth = request.headers.get("Authorization", "")
        return (auth == f"Bearer {self.token}" or request.headers.get("X-API-Key") == self.token
                or request.query.get("api_key") == self.token)

    async def _middleware(self, app, handler):
        from aiohttp import web

        async def middleware(request):
            self.requests += 1
            if request.path in ("/", "/health") or (
                    request.path == "/devices/alerts" and request.method == "GET"):
                return await handler(request)  # what is served, and what was received
            f = self.faults
            if f.latency:
                await asyncio.sleep(f.latency)
            if not self._authorised(request):
                return web.json_response({"error": "unauthorised"}, status=401)
            roll = self.random.random()
            if roll < f.fail_rate:
                status = 429 if self.random.random() < 0.5 else 503
                return web.Response(status=status, text="try again later",
                                    headers={"Retry-After": _seconds(f.retry_after)})
            roll -= f.fail_rate
            is_post = request.method == "POST"
            if roll < f.drop_rate and not is_post:
                request.transport.abort()
                return web.Response(status=500)
            roll -= f.drop_rate
            response = await handler(request)
            if is_post:
                if roll < f.drop_rate:  # the alerts were stored; the answer is lost
                    request.transport.abort()
                return response
            if not isinstance(response, web.Response) or response.status != 200:
                return response
            body = response.body
            if roll < f.truncate_rate and body and len(body) > 8:
                cut = web.StreamResponse(status=200, headers={
                    "Content-Type": response.content_type})
                cut.content_length = len(body)
                await cut.prepare(request)
                await cut.write(body[: len(body) // 2])
                request.transport.abort()
                return cut
            roll -= f.truncate_rate
            if roll < f.malformed_rate:
                bad = b"<html><body><h1>502 Bad Gateway</h1></body></html>" \
                    if self.random.random() < 0.5 else body[: max(1, len(body) // 3)]
                return web.Response(status=200, body=bad,
                                    content_type=response.content_type)
            return response

        return middleware

    def _cached(self, request, build):
        from aiohttp import web

        key = request.path_qs
        hit = self.cache.get(key)
        if hit is None:
            hit = build()
            size = len(hit[0])
            if self.cache_left >= size:
                self.cache[key] = hit
                self.cache_left -= size
        body, content_type, headers = hit
        return web.Response(body=body, content_type=content_type, headers=headers)

    # --- pages ---------------------------------------------------------------------------

    async def health(self, request):
        from aiohttp import web

        return web.json_response({"ok": True, "requests": self.requests})

    async def root(self, request):
        from aiohttp import web

        d = self.data
        return web.json_response({
            "devices": len(d.devices), "metrics": d.metrics, "units": d.units,
            "page_size": d.page_size, "formats": {
                "json": "/api/{device}/samples.json", "ndjson": "/api/{device}/samples.ndjson",
                "csv": "/api/{device}/samples.csv", "json_long": "/api/all/samples.json",
                "sensorthings": "/sta/v1.1", "thingspeak": "/channels/{id}/feeds.json",
                "alerts": "/devices/alerts"},
            "thingspeak_channels": list(range(1, len(d.devices) + 1))})

    async def api_devices(self, request):
        from aiohttp import web

        return web.json_response({"devices": self.data.devices})

    async def api_samples(self, request):
        from aiohttp import web

        device, ext = request.match_info["device"], request.match_info["ext"]
        d = self.data
        if device != "all" and device not in d.index:
            return web.json_response({"error": f"no device {device}"}, status=404)
        q = request.query
        try:
            limit = int(q.get("limit", d.page_size))
            paging = q.get("paging", "link")
            if paging == "offset":
                start = int(q.get("offset", 0))
            elif paging == "next":
                start = int(base64.urlsafe_b64decode(q["cursor"]).decode()) \
                    if "cursor" in q else 0
            else:
                start = int(q.get("page", 0)) * limit
            since = pd.Timestamp(q["since"]).value if "since" in q else None
        except (ValueError, KeyError) as err:
            return web.json_response({"error": f"bad query: {err}"}, status=400)
        if limit < 1 or start < 0:
            return web.json_response({"error": "bad limit or offset"}, status=400)

        def build():
            records, total = self._records(device, start, limit, since, ext)
            more = start + limit < total
            headers = {}
            base = f"{request.scheme}://{request.host}{request.path}"
            keep = f"paging={paging}&limit={limit}" + (
                f"&since={q['since']}" if "since" in q else "")
            nxt = None
            if more and paging == "link":
                nxt = f"{base}?{keep}&page={start // limit + 1}"
                headers["Link"] = f'<{nxt}>; rel="next"'
            elif more and paging == "next":
                cursor = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
                nxt = f"{base}?{keep}&cursor={cursor}"
            if ext == "csv":
                return _csv_page(records, device == "all", d.metrics), "text/csv", headers
            if ext == "ndjson":

                return (b"".join(msgspec.json.encode(r) + b"\n" for r in records),
                        "application/x-ndjson", headers)

            body = {"data": records, "next": nxt} if paging == "next" else records
            return msgspec.json.encode(body), "application/json", headers

        return self._cached(request, build)

    def _records(self, device, start, limit, since, ext):
        d = self.data
        if device == "all":
            keys = [(i, j) for i in range(len(d.devices)) for j in range(len(d.metrics))]
            sizes = []
            for key in keys:
                idx = d.valid[key]
                sizes.append(idx.size if since is None else
                             idx.size - np.searchsorted(d.times[idx], since, side="right"))
            total = int(sum(sizes))
            out, skip = [], start
            for key, n in zip(keys, sizes, strict=True):
                if skip >= n:
                    skip -= n
                    continue
                idx = d.valid[key][-n:] if n else d.valid[key][:0]
                take = idx[skip: skip + limit - len(out)]
                skip = 0
                i, j = key
                vals = d.values[d.metrics[j]][i, take]
                out += [{"device": d.devices[i], "time": t, "metric": d.metrics[j], "value": v}
                        for t, v in zip(d.iso[take].tolist(), vals.tolist(), strict=True)]
                if len(out) >= limit:
                    break
            return out, total
        i = d.index[device]
        rows = d.rows[i]
        if since is not None:
            rows = rows[np.searchsorted(d.times[rows], since, side="right"):]
        take = rows[start: start + limit]
        cols = [[_num(v) for v in d.values[m][i, take].tolist()] for m in d.metrics]
        times = d.iso[take].tolist()
        out = []
        for k, t in enumerate(times):
            rec = {"device": device, "time": t}
            for m, col in zip(d.metrics, cols, strict=True):
                rec[m] = col[k]
            out.append(rec)
        return out, int(rows.size)

    # --- SensorThings ---------------------------------------------------------------------

    def _sta_base(self, request) -> str:
        return f"{request.scheme}://{request.host}/sta/v1.1"

    async def sta_things(self, request):
        from aiohttp import web

        d = self.data
        q = request.query
        top = min(int(q.get("$top", 100)), 100)
        skip = int(q.get("$skip", 0))
        base = self._sta_base(request)
        things = [{"@iot.id": i + 1, "name": dev, "description": f"synthetic device {dev}",
                   "@iot.selfLink": f"{base}/Things({i + 1})",
                   "Datastreams@iot.navigationLink": f"{base}/Things({i + 1})/Datastreams"}
                  for i, dev in enumerate(d.devices[skip: skip + top], start=skip)]
        body = {"value": things}
        if skip + top < len(d.devices):
            body["@iot.nextLink"] = f"{base}/Things?$top={top}&$skip={skip + top}"
        return web.json_response(body)

    async def sta_datastreams(self, request):
        from aiohttp import web

        d = self.data
        i = int(request.match_info["id"]) - 1
        if not 0 <= i < len(d.devices):
            return web.json_response({"error": "no such Thing"}, status=404)
        expand = "ObservedProperty" in request.query.get("$expand", "")
        base = self._sta_base(request)
        out = []
        for j, m in enumerate(d.metrics):
            ds_id = i * len(d.metrics) + j + 1
            item = {"@iot.id": ds_id, "name": f"{d.devices[i]} {m}",
                    "unitOfMeasurement": {"name": METRICS[m].long_name,
                                          "symbol": d.units[m], "definition": ""},
                    "@iot.selfLink": f"{base}/Datastreams({ds_id})",
                    "Observations@iot.navigationLink":
                        f"{base}/Datastreams({ds_id})/Observations"}
            if expand:
                item["ObservedProperty"] = {"@iot.id": j + 1, "name": m,
                                            "definition": f"urn:toolkit:{m}"}
            out.append(item)
        return web.json_response({"value": out})

    async def sta_observations(self, request):
        from aiohttp import web

        d = self.data
        k = int(request.match_info["id"]) - 1
        i, j = divmod(k, len(d.metrics))
        if not 0 <= i < len(d.devices):
            return web.json_response({"error": "no such Datastream"}, status=404)
        q = dict(request.query)
        if "$skiptoken" in q:  # our own opaque cursor: the query it continues
            try:
                q = dict(_unpack(q["$skiptoken"]))
            except ValueError:
                return web.json_response({"error": "bad $skiptoken"}, status=400)
        try:
            top = min(int(q.get("$top", d.page_size)), d.page_size)
            skip = int(q.get("$skip", 0))
            lo, hi = _sta_filter(q.get("$filter", ""))
        except ValueError as err:
            return web.json_response({"error": {"code": 400, "message": str(err)}},
                                     status=400)
        base = self._sta_base(request)

        def build():

            idx = d.valid[(i, j)]
            t = d.times[idx]
            a = np.searchsorted(t, lo[0], side="left" if lo[1] else "right") \
                if lo else 0
            b = np.searchsorted(t, hi[0], side="right" if hi[1] else "left") \
                if hi else idx.size
            sel = idx[a:b][skip: skip + top]
            vals = d.values[d.metrics[j]][i, sel].tolist()
            body = {"value": [{"phenomenonTime": tt, "result": v}
                              for tt, v in zip(d.iso[sel].tolist(), vals, strict=True)]}
            if skip + top < max(0, b - a):
                nxt = dict(q, **{"$skip": str(skip + top), "$top": str(top)})
                body["@iot.nextLink"] = (f"{base}/Datastreams({k + 1})/Observations?"
                                         f"$skiptoken={_pack(nxt)}")
            return msgspec.json.encode(body), "application/json", {}

        return self._cached(request, build)

    # --- ThingSpeak -----------------------------------------------------------------------

    async def thingspeak(self, request):
        from aiohttp import web

        d = self.data
        i = int(request.match_info["id"]) - 1
        if not 0 <= i < len(d.devices) or len(d.metrics) > 8:
            return web.json_response(-1, status=404)
        q = request.query
        try:
            results = min(int(q.get("results", 100)), d.thingspeak_max)
            start = _ts_time(q["start"]) if "start" in q else None
            end = _ts_time(q["end"]) if "end" in q else None
        except ValueError as err:
            return web.json_response({"error": str(err)}, status=400)

        def build():

            rows = d.rows[i]
            t = d.times[rows]
            a = np.searchsorted(t, start, side="left") if start is not None else 0
            b = np.searchsorted(t, end, side="right") if end is not None else rows.size
            sel_pos = np.arange(a, b)[-results:] if results else np.arange(0)
            sel = rows[sel_pos]
            channel = {"id": i + 1, "name": d.devices[i], "description": "synthetic",
                       "created_at": str(d.iso_s[rows[0]]) if rows.size else None,
                       "updated_at": str(d.iso_s[rows[-1]]) if rows.size else None,
                       "last_entry_id": int(rows.size)}
            for j, m in enumerate(d.metrics):
                channel[f"field{j + 1}"] = m
            cols = [d.values[m][i, sel].tolist() for m in d.metrics]
            feeds = []
            for n, (pos, ts) in enumerate(zip(sel_pos.tolist(), d.iso_s[sel].tolist(),
                                               strict=True)):
                entry = {"created_at": ts, "entry_id": pos + 1}
                for j, col in enumerate(cols):
                    v = col[n]
                    entry[f"field{j + 1}"] = None if v != v else repr(v)
                feeds.append(entry)
            return msgspec.json.encode({"channel": channel, "feeds": feeds}), "application/json", {}

        return self._cached(request, build)

    # --- alerts ---------------------------------------------------------------------------

    async def post_alerts(self, request):
        from aiohttp import web

        try:
            body = await request.json()
            alerts = body["alerts"]
            if not isinstance(alerts, list):
                raise ValueError("alerts must be a list")
            keys = [a["idempotency_key"] for a in alerts]
        except (ValueError, KeyError, TypeError) as err:
            return web.json_response({"error": f"bad alert batch: {err}"}, status=400)
        self.alert_posts += 1
        results = []
        for key, alert in zip(keys, alerts, strict=True):
            self.alert_items += 1
            if key in self.alerts:
                results.append({"idempotency_key": key, "status": "duplicate"})
            else:
                self.alerts[key] = alert
                results.append({"idempotency_key": key, "status": "created"})
        return web.json_response({"results": results})

    async def get_alerts(self, request):
        from aiohttp import web

        return web.json_response({"alerts": list(self.alerts.values()),
                                  "posts": self.alert_posts, "items": self.alert_items})


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _pack(query: dict) -> str:

    return base64.urlsafe_b64encode(msgspec.json.encode(query)).decode().rstrip("=")


def _unpack(token: str) -> dict:

    try:
        return msgspec.json.decode(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except Exception as err:  # any garbage: a bad token
        raise ValueError("bad token") from err


_CONDITION = re.compile(r"phenomenonTime\s+(ge|gt|le|lt)\s+(\S+)", re.I)


def _sta_filter(text: str):
    """``(lower, upper)`` bounds of a ``$filter`` on phenomenonTime: ``(ns, inclusive)``."""
    lo = hi = None
    if not text.strip():
        return lo, hi
    parts = re.split(r"\s+and\s+", text.strip(), flags=re.I)
    for part in parts:
        m = _CONDITION.fullmatch(part.strip().strip("()"))
        if not m:
            raise ValueError(f"unsupported $filter {text!r}")
        op, value = m.group(1).lower(), pd.Timestamp(m.group(2).strip("'")).value
        if op in ("ge", "gt"):
            lo = (value, op == "ge")
        else:
            hi = (value, op == "le")
    return lo, hi


def _ts_time(text: str) -> int:
    stamp = pd.Timestamp(text)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.value


def _csv_page(records, long: bool, metrics) -> bytes:
    out = io.StringIO()
    names = ["device", "time", "metric", "value"] if long else ["device", "time", *metrics]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    for r in records:
        writer.writerow(["" if r[n] is None else (repr(r[n]) if isinstance(r[n], float)
                                                  else r[n]) for n in names])
    return out.getvalue().encode()


async def serve(data: FleetData, faults: Faults, *, host="127.0.0.1", port=0,
                token: str | None = None, ready=print) -> None:
    """Run the feed server until cancelled; ``ready(url)`` once it listens."""
    from aiohttp import web

    feed = FeedApp(data, faults, token)
    runner = web.AppRunner(feed.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]
    ready(f"http://{host}:{bound}")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(args) -> int:
    """The ``serve-feed`` command (see :mod:`toolkit.cli`)."""
    import logging
    import os

    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)  # dropped connections are ours
    token = os.environ.get(args.token_env) if args.token_env else None
    if args.token_env and not token:
        print(f"error: ${args.token_env} is not set", file=sys.stderr)
        return 2
    faults = Faults(latency=args.latency, fail_rate=args.fail_rate, drop_rate=args.drop_rate,
                    truncate_rate=args.truncate_rate, malformed_rate=args.malformed_rate,
                    retry_after=args.retry_after, seed=args.fault_seed)
    data = FleetData(n_devices=args.devices, days=args.days, freq=args.freq, seed=args.seed,
                     page_size=args.page_size, thingspeak_max=args.thingspeak_max)

    def ready(url):
        print(f"serving {len(data.devices)} devices at {url}", flush=True)

    try:
        asyncio.run(serve(data, faults, host=args.host, port=args.port, token=token,
                          ready=ready))
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0


class FeedServerProcess:
    """``iot-toolkit serve-feed`` in a child process, for tests, notebooks and the demo.

    The keywords are the command's options (``devices``, ``days``, ``freq``,
    ``seed``, ``page_size``, ``thingspeak_max``, ``latency``, ``fail_rate``,
    ``drop_rate``, ``truncate_rate``, ``malformed_rate``, ``retry_after``,
    ``port``); a ``token`` reaches the child through its environment, never
    its command line.

    Examples
    --------
    >>> with FeedServerProcess(devices=2, days=0.01) as server:
    ...     server.url.startswith("http://127.0.0.1:")
    True
    """

    def __init__(self, *, token: str | None = None, host: str = "127.0.0.1",
                 startup_timeout: float = 120.0, **options):
        self.token, self.host, self.options = token, host, options
        self.startup_timeout = startup_timeout
        self.process = None
        self.url: str | None = None

    def command(self) -> list[str]:
        args = [sys.executable, "-m", "toolkit.cli", "serve-feed", "--host", self.host]
        for key, value in self.options.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        if self.token:
            args += ["--token-env", "TOOLKIT_FEED_SERVER_TOKEN"]
        return args

    def start(self) -> FeedServerProcess:
        import os
        import subprocess
        import threading

        env = dict(os.environ)
        if self.token:
            env["TOOLKIT_FEED_SERVER_TOKEN"] = self.token
        self.process = subprocess.Popen(self.command(), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=env)
        line: list = []
        reader = threading.Thread(target=lambda: line.append(self.process.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(self.startup_timeout)
        text = line[0] if line else ""
        match = re.search(r"(http://\S+)", text)
        if not match:
            self.stop()
            err = self.process.stderr.read() if self.process.stderr else ""
            raise RuntimeError(f"the feed server did not start: {text!r} {err[-2000:]}")
        self.url = match.group(1)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except Exception:  # noqa: BLE001 - a server that will not stop is killed
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> FeedServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = ["Faults", "FeedApp", "FeedServerProcess", "FleetData", "serve"]
