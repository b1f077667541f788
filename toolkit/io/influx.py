"""InfluxDB 1.x: history into the fleet Dataset, and results back as points.

:func:`read_influx` reads a measurement through the HTTP ``/query`` API
(InfluxQL, ``epoch=ns``, chunked answers): devices are a tag, metrics are
fields -- or one tag names the metric and one field holds the value. The
time range is cut into slices and the devices into groups; each group is
one task on a Dask worker that runs its slices' queries a few at a time and
parses them into :class:`~toolkit.io.grid.Samples`, and the shared
samples-to-grid step does the rest, with the same :class:`LoadReport` as
every loader.

:func:`write_influx` writes a fleet Dataset (values, flags, scores) or an
events table back with the line protocol, in batches. A point is identified
by its measurement, tags and time, so writing the same results again
overwrites them: re-runs never duplicate.

Credentials: ``username`` and the name of the environment variable that
holds the password (``password_env``), sent as HTTP basic authentication --
never put in a URL, never printed.
"""

from __future__ import annotations

import base64
import io
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import dask
import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import xarray as xr

from ..errors import ArgumentError, LoadError
from ..model import DEVICE, TIME
from .fetch import Secret
from .grid import LoadReport, Samples, check_grid_args, samples_to_grid

#: points asked for per chunk of a chunked answer
CHUNK_SIZE = 10_000
#: about this many points per query (a time slice of a device group)
POINTS_PER_QUERY = 100_000
#: tasks a read is cut into (each runs its queries QUERIES_IN_FLIGHT at a time)
TASKS = 8
#: queries of one task in flight at once
QUERIES_IN_FLIGHT = 4
_decode = msgspec.json.Decoder()


@dataclass(frozen=True)
class Server:
    """Where and how to ask: the base URL, database and credentials (never shown).

    The password is read from its environment variable here, on the client,
    and travels to the workers as a :class:`~toolkit.io.fetch.Secret`.
    """

    url: str
    database: str
    username: str | None = None
    password: Secret | None = None
    timeout: float = 60.0
    retries: int = 3

    @classmethod
    def connect(cls, url, database, username=None, password_env=None, timeout=60.0,
                retries=3) -> Server:
        password = None
        if username is not None and password_env is not None:
            if password_env not in os.environ:
                raise LoadError(f"the environment variable {password_env!r} that should hold "
                                "the InfluxDB password is not set")
            password = Secret(os.environ[password_env])
        return cls(url, database, username, password, timeout, retries)

    def __repr__(self) -> str:
        return f"Server({self.url!r}, database={self.database!r})"

    def _auth(self) -> dict:
        if self.username is None:
            return {}
        secret = self.password.reveal() if self.password is not None else ""
        token = base64.b64encode(f"{self.username}:{secret}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def request(self, path: str, params: dict, body: bytes | None = None,
                what: str = "", accept: str | None = None) -> bytes:
        """One request, retried on connection errors and 5xx; errors name ``what``."""
        query = urllib.parse.urlencode(params)
        url = f"{self.url.rstrip('/')}{path}?{query}"
        headers = self._auth()
        if accept:
            headers["Accept"] = accept
        if body is not None:
            headers["Content-Type"] = "text/plain; charset=utf-8"
        last = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(5.0, 0.2 * 2 ** attempt))  # back off before trying again
            req = urllib.request.Request(url, data=body, headers=headers,
                                         method="POST" if body is not None else "GET")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return resp.read()
            except urllib.error.HTTPError as err:
                text = err.read().decode("utf-8", "replace")[:300]
                if err.code < 500:
                    raise LoadError(f"InfluxDB at {self.url} refused {what}: HTTP {err.code} "
                                    f"{_error_text(text)}") from None
                last = f"HTTP {err.code} {_error_text(text)}"
            except (urllib.error.URLError, OSError) as err:
                last = str(getattr(err, "reason", err))
        raise LoadError(f"InfluxDB at {self.url} did not answer {what} after "
                        f"{self.retries + 1} tries: {last}")

    def query(self, q: str, *, chunked: bool = False) -> list[dict]:
        """The ``results`` of an InfluxQL query (every chunk of a chunked answer)."""
        params = {"db": self.database, "q": q, "epoch": "ns"}
        if chunked:
            params.update(chunked="true", chunk_size=str(CHUNK_SIZE))
        what = f"the query {q!r}"
        raw = self.request("/query", params, what=what)
        results = []
        for line in raw.splitlines():
            if not line.strip():
                continue
            try:
                doc = _decode.decode(line)
            except msgspec.DecodeError:
                raise LoadError(f"InfluxDB at {self.url} answered {what} with something that "
                                f"is not JSON: {line[:200]!r}") from None
            if "error" in doc:
                raise LoadError(f"InfluxDB at {self.url} failed {what}: {doc['error']}")
            for result in doc.get("results", []):
                if "error" in result:
                    raise LoadError(f"InfluxDB at {self.url} failed {what}: "
                                    f"{result['error']}")
                results.append(result)
        return results


def _error_text(text: str) -> str:
    try:
        return str(msgspec.json.decode(text).get("error", text))
    except (msgspec.DecodeError, AttributeError):
        return text


def _ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _series_rows(results) -> list:
    return [s for r in results for s in r.get("series", [])]


def discover(server: Server, measurement: str, device: str, fields, metric, value):
    """Devices, metrics and the time range of a measurement."""
    keys = _series_rows(server.query(f"SHOW FIELD KEYS FROM {_ident(measurement)}"))
    if not keys:
        raise LoadError(f"InfluxDB at {server.url}: the database {server.database!r} has no "
                        f"measurement {measurement!r} (no field keys)")
    numeric = {k for k, t in keys[0]["values"] if t in ("float", "integer")}
    if metric is None:
        if fields is None:
            fields = sorted(numeric)
        unknown = sorted(set(fields) - numeric)
        if unknown:
            raise LoadError(f"{measurement!r} has no numeric fields {unknown} (it has "
                            f"{sorted(numeric)})")
        columns = list(fields)
    else:
        if value not in numeric:
            raise LoadError(f"{measurement!r} has no numeric field {value!r} (it has "
                            f"{sorted(numeric)})")
        columns = [value]
    tags = _series_rows(server.query(
        f"SHOW TAG VALUES FROM {_ident(measurement)} WITH KEY = {_ident(device)}"))
    devices = sorted({v for s in tags for _, v in s["values"]})
    if not devices:
        raise LoadError(f"{measurement!r} has no tag {device!r} (the device id)")
    first = _series_rows(server.query(
        f"SELECT {_ident(columns[0])} FROM {_ident(measurement)} ORDER BY time ASC LIMIT 1"))
    last = _series_rows(server.query(
        f"SELECT {_ident(columns[0])} FROM {_ident(measurement)} ORDER BY time DESC LIMIT 1"))
    if not first:
        raise LoadError(f"{measurement!r} holds no points")
    return devices, columns, int(first[0]["values"][0][0]), int(last[0]["values"][0][0])


def _fetch(server: Server, queries: list[str], device: str, metric: str | None,
           columns: list[str]) -> tuple[Samples, int]:
    """Run a task's queries (a few at a time) and parse them into one Samples block.

    The points come as CSV (``Accept: application/csv``): parsed by pyarrow
    straight into typed columns, with no Python object per point."""
    with ThreadPoolExecutor(QUERIES_IN_FLIGHT) as pool:
        tables = list(pool.map(lambda q: _csv_query(server, q, columns), queries))
    tables = [t for t in tables if t is not None and t.num_rows]
    names = [device] if metric is None else [device, metric]
    if not tables:
        empty = np.empty(0, np.int32)
        values = np.empty((0, len(columns))) if metric is None else np.empty(0)
        return Samples(np.array([], dtype=object), empty, np.empty(0, np.int64),
                       list(columns) if metric is None else [], None if metric is None
                       else empty, values), len(queries)
    table = pa.concat_tables(tables)
    tags = table.column("tags").combine_chunks().dictionary_encode()
    parsed = [_tags(str(t)) for t in tags.dictionary.to_pylist()]
    tag_codes = tags.indices.to_numpy(zero_copy_only=False).astype(np.int32)
    dev_names = [p.get(names[0], "") for p in parsed]
    devices, dev_of_tag = np.unique(np.array(dev_names, dtype=object).astype(str),
                                    return_inverse=True)
    times = table.column("time").to_numpy()
    if metric is None:
        values = np.column_stack([table.column(c).to_numpy(zero_copy_only=False)
                                  .astype(np.float64) for c in columns])
        return Samples(devices.astype(object), dev_of_tag[tag_codes].astype(np.int32), times,
                       list(columns), None, values), len(queries)
    met_names = [p.get(names[1], "") for p in parsed]
    metrics, met_of_tag = np.unique(np.array(met_names, dtype=object).astype(str),
                                    return_inverse=True)
    values = table.column(columns[0]).to_numpy(zero_copy_only=False).astype(np.float64)
    return Samples(devices.astype(object), dev_of_tag[tag_codes].astype(np.int32), times,
                   [str(m) for m in metrics], met_of_tag[tag_codes].astype(np.int32),
                   values), len(queries)


def _tags(text: str) -> dict:
    """``device=a,metric=b`` (InfluxDB escapes commas, equals and spaces with \\)."""
    out, key, part, escaped = {}, None, [], False
    for ch in text + ",":
        if escaped:
            part.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "=" and key is None:
            key, part = "".join(part), []
        elif ch == ",":
            if key is not None:
                out[key] = "".join(part)
            key, part = None, []
        else:
            part.append(ch)
    return out


def _csv_query(server: Server, q: str, columns: list[str]):
    raw = server.request("/query", {"db": server.database, "q": q, "epoch": "ns"},
                         what=f"the query {q!r}", accept="application/csv")
    if not raw.strip():
        return None
    if raw.startswith(b"error"):
        message = raw.split(b"\n", 1)[-1].decode("utf-8", "replace").strip().strip('"')
        raise LoadError(f"InfluxDB at {server.url} failed the query {q!r}: {message}")
    types = {"time": pa.int64(), "tags": pa.string(), "name": pa.string()}
    types.update({c: pa.float64() for c in columns})
    try:
        return pa_csv.read_csv(io.BytesIO(raw), read_options=pa_csv.ReadOptions(
            use_threads=False), convert_options=pa_csv.ConvertOptions(
            column_types=types, include_columns=["tags", "time", *columns]))
    except (pa.ArrowInvalid, KeyError) as err:
        raise LoadError(f"InfluxDB at {server.url} answered the query {q!r} with CSV that "
                        f"cannot be read: {err}") from None


def _block(fetched):
    return fetched[0]


def _info(fetched):
    return fetched[0].summary(), fetched[1]


def _plan(server, measurement, devices, columns, device, metric, t0, t1, group, span):
    select = ", ".join(_ident(c) for c in columns)
    by = _ident(device) + ("" if metric is None else ", " + _ident(metric))
    tasks = []
    for g in range(0, len(devices), group):
        members = devices[g:g + group]
        who = " OR ".join(f"{_ident(device)} = {_literal(d)}" for d in members)
        queries = []
        lo = t0
        while lo <= t1:
            hi = min(lo + span, t1 + 1)
            queries.append(f"SELECT {select} FROM {_ident(measurement)} WHERE ({who}) AND "
                           f"time >= {lo} AND time < {hi} GROUP BY {by}")
            lo = hi
        tasks.append(queries)
    return tasks


def read_influx_samples(url: str, database: str, measurement: str, *, device: str = "device",
                        fields: list[str] | None = None, metric: str | None = None,
                        value: str = "value", devices: list[str] | None = None, start=None,
                        end=None, username: str | None = None, password_env: str | None = None,
                        timeout: float = 60.0, retries: int = 3, step=None):
    """The samples of a measurement as blocks on the workers, with their load report.

    See :func:`read_influx` for the parameters. Returns ``(blocks,
    summaries, report, metrics)``.
    """
    server = Server.connect(url, database, username, password_env, timeout, retries)
    known, columns, t0, t1 = discover(server, measurement, device, fields, metric, value)
    if devices is not None:
        unknown = sorted(set(devices) - set(known))
        if unknown:
            raise LoadError(f"{measurement!r} has no devices {unknown[:5]}")
        known = sorted(devices)
    if start is not None:
        t0 = max(t0, pd.Timestamp(start).value)
    if end is not None:
        t1 = min(t1, pd.Timestamp(end).value)
    if t1 < t0:
        raise LoadError(f"{measurement!r} holds no points between {start} and {end}")
    # about POINTS_PER_QUERY points a query (a guess of the sampling from the
    # step), the queries shared among TASKS tasks, each running a few at once
    step_ns = int(pd.Timedelta(step).value) if step is not None else 60_000_000_000
    per_device = max(1, (t1 - t0) // step_ns + 1) * max(1, len(columns))
    group = max(1, min(len(known), POINTS_PER_QUERY // per_device, 50))
    span_points = max(1, POINTS_PER_QUERY // max(1, group * len(columns)))
    span = max(step_ns, span_points * step_ns)
    queries = [q for qs in _plan(server, measurement, known, columns, device, metric, t0, t1,
                                 group, span) for q in qs]
    n_tasks = min(len(queries), TASKS)
    cuts = np.linspace(0, len(queries), n_tasks + 1).astype(int)
    tasks = [queries[cuts[k]:cuts[k + 1]] for k in range(n_tasks)]
    token = dask.base.tokenize(url, database, measurement, device, columns, metric, known,
                               t0, t1, group, span)
    fetched = [dask.delayed(_fetch, pure=True)(server, q, device, metric, columns,
                                               dask_key_name=f"read-influx-{token}-{i}")
               for i, q in enumerate(tasks)]
    fetched = list(dask.persist(*fetched))
    blocks = [dask.delayed(_block, pure=True)(f) for f in fetched]
    info = dask.compute(*[dask.delayed(_info, pure=True)(f) for f in fetched])
    summaries = [s for s, _ in info]
    report = LoadReport.of_samples(summaries, files=len(known),
                                   requests=sum(len(q) for q in tasks),
                                   pages=sum(c for _, c in info))
    return blocks, summaries, report, (columns if metric is None else None)


def read_influx(url: str, database: str, measurement: str, *, device: str = "device",
                fields: list[str] | None = None, metric: str | None = None,
                value: str = "value", devices: list[str] | None = None, start=None, end=None,
                freq=None, how: str = "mean", duplicates: str = "mean",
                units: dict | None = None, username: str | None = None,
                password_env: str | None = None, timeout: float = 60.0,
                retries: int = 3) -> xr.Dataset:
    """Read a measurement of an InfluxDB 1.x server into the fleet Dataset.

    Parameters
    ----------
    url : str
        The server, such as ``"http://127.0.0.1:8086"``.
    database, measurement : str
        What to read.
    device : str
        The tag that holds the device id.
    fields : list of str, optional
        The metrics, one field each (default: every numeric field).
    metric, value : str, optional
        Instead: the tag that names the metric, and the field with the value.
    devices : list of str, optional
        Only these devices (default: every value of the device tag).
    start, end : datetime-like, optional
        The time range (default: all of it).
    freq, how, duplicates, units
        The grid, as for :func:`toolkit.read_csv`.
    username, password_env : str, optional
        Basic authentication: the password is read from this environment
        variable (and never shown).
    timeout, retries
        Per request; connection errors and 5xx answers are retried.

    Returns
    -------
    xarray.Dataset
        As :func:`toolkit.read_csv`, ``attrs["load_report"]`` counting the
        points read, the queries (``requests``) and answer chunks (``pages``).

    Raises
    ------
    LoadError
        When the server refuses a query (bad database, measurement, query or
        credentials): the message names the query.

    Examples
    --------
    >>> read_influx("http://127.0.0.1:8086", "fleet", "telemetry",
    ...             freq="1min")  # doctest: +SKIP
    """
    check_grid_args(freq, how, duplicates)
    if metric is not None and fields is not None:
        raise ArgumentError("give fields (one per metric), or metric and value, not both")
    blocks, summaries, report, metrics = read_influx_samples(
        url, database, measurement, device=device, fields=fields, metric=metric, value=value,
        devices=devices, start=start, end=end, username=username, password_env=password_env,
        timeout=timeout, retries=retries, step=freq)
    return samples_to_grid(blocks, summaries, report, freq=freq, how=how,
                           duplicates=duplicates, start=start, end=end, metrics=metrics,
                           units=units, source=f"{url} {database}.{measurement}",
                           loader="read_influx")


@dataclass
class WriteReport:
    """What :func:`write_influx` wrote."""

    url: str
    measurement: str
    points: int = 0
    requests: int = 0

    def __str__(self) -> str:
        return (f"influx -> {self.url} {self.measurement}: {self.points:,} points in "
                f"{self.requests} request(s)")


def _escape_tag(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(
        " ", "\\ ")


def _field(name: str, value) -> str:
    key = _escape_tag(name)
    if isinstance(value, str):
        return f'{key}="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (bool, np.bool_)):
        return f"{key}={'true' if value else 'false'}"
    if isinstance(value, (int, np.integer)):
        return f"{key}={int(value)}i"
    return f"{key}={float(value)!r}"


def dataset_lines(data: xr.Dataset, measurement: str, *, device: str = "device",
                  variables: list[str] | None = None):
    """Line-protocol lines of a fleet Dataset: one point per device and time with the
    non-missing variables as fields (ints stay integers, NaN floats are left out)."""
    names = variables or [str(v) for v in data.data_vars
                          if data[v].dims == (DEVICE, TIME) or set(data[v].dims) == {DEVICE,
                                                                                    TIME}]
    data = data[names].transpose(DEVICE, TIME).load()
    times = pd.DatetimeIndex(data[TIME].values).asi8
    arrays = [(n, data[n].values) for n in names]
    prefix = _escape_tag(measurement)
    for d, dev in enumerate(data[DEVICE].values):
        head = f"{prefix},{_escape_tag(device)}={_escape_tag(dev)} "
        for i, t in enumerate(times):
            parts = []
            for n, a in arrays:
                v = a[d, i]
                if a.dtype.kind == "f":
                    if v == v:
                        parts.append(_field(n, float(v)))
                else:
                    parts.append(_field(n, int(v)))
            if parts:
                yield head + ",".join(parts) + f" {t}"


def event_lines(events: pd.DataFrame, measurement: str = "events"):
    """One point per event at its start: tags device, metric, kind; fields end (ns),
    score, severity."""
    prefix = _escape_tag(measurement)
    for e in events.itertuples(index=False):
        tags = ",".join(f"{k}={_escape_tag(getattr(e, k))}" for k in ("device", "metric", "kind"))
        fields = [_field("end", int(pd.Timestamp(e.end).value))]
        score = getattr(e, "score", np.nan)
        if pd.notna(score):
            fields.append(_field("score", float(score)))
        if hasattr(e, "severity"):
            fields.append(_field("severity", str(e.severity)))
        yield f"{prefix},{tags} {','.join(fields)} {pd.Timestamp(e.start).value}"


def write_influx(url: str, database: str, data, *, measurement: str,
                 device: str = "device", variables: list[str] | None = None,
                 batch_size: int = 5000, create: bool = True, username: str | None = None,
                 password_env: str | None = None, timeout: float = 60.0,
                 retries: int = 3) -> WriteReport:
    """Write results to InfluxDB with the line protocol, in batches (idempotent).

    ``data`` is a fleet Dataset (values, flags, scores: one point per device
    and time, the variables as fields, integers as integers) or an events
    table (one point per event at its start, tags device/metric/kind). The
    same points written again overwrite themselves, so a re-run never
    duplicates anything.

    Examples
    --------
    >>> write_influx("http://127.0.0.1:8086", "results", flags,
    ...              measurement="flags")  # doctest: +SKIP
    """
    server = Server.connect(url, database, username, password_env, timeout, retries)
    if create:
        server.request("/query", {"q": f"CREATE DATABASE {_ident(database)}"},
                       body=b"", what=f"CREATE DATABASE {database}")
    if isinstance(data, pd.DataFrame):
        lines = event_lines(data, measurement)
    elif isinstance(data, xr.Dataset):
        lines = dataset_lines(data, measurement, device=device, variables=variables)
    else:
        raise ArgumentError(f"data must be a fleet Dataset or an events table, got "
                            f"{type(data).__name__}")
    report = WriteReport(url, measurement)
    batch: list[str] = []

    def flush():
        server.request("/write", {"db": database, "precision": "ns"},
                       body="\n".join(batch).encode(), what=f"a write to {measurement!r}")
        report.points += len(batch)
        report.requests += 1
        batch.clear()

    for line in lines:
        batch.append(line)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return report


__all__ = ["Server", "WriteReport", "dataset_lines", "discover", "event_lines", "read_influx",
           "read_influx_samples", "write_influx"]
