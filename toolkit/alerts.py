"""Alerts back to the devices' management API: each event delivered exactly once.

:func:`post` sends an events table (from :func:`toolkit.flags_to_events`) as
JSON batches ``{"alerts": [...]}``. Every alert carries an
``idempotency_key`` derived from what identifies its event (device, metric,
kind, start), so a batch can be sent again after a timeout, a reset
connection, a ``429`` or a ``5xx`` -- or the whole call re-run tomorrow --
and an API that de-duplicates by that key (as ``iot-toolkit serve-feed``
does) keeps each event once. The returned :class:`AlertReport` says what was
sent, created, already known, retried and failed; a batch that still fails
after its retries is never dropped silently: :func:`post` raises
:class:`AlertError` carrying the report, and the failed events can be written
to a CSV to send again.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, field

import msgspec
import pandas as pd

from .errors import ArgumentError, LoadError, ToolkitError
from .events import alerts_of, idempotency_key
from .io.fetch import Fetcher, HttpOptions, credentials, redact
from .io.http import run_sync

#: the columns an events table must have


class AlertError(ToolkitError):
    """Some alerts could not be delivered; ``.report`` says which (``report.failed``)."""

    def __init__(self, message: str, report: AlertReport):
        super().__init__(message)
        self.report = report


@dataclass
class AlertReport:
    """What :func:`post` did. ``failed`` holds the events not delivered."""

    url: str
    events: int = 0
    batches: int = 0
    created: int = 0
    duplicates: int = 0
    retried: int = 0
    failed_batches: list = field(default_factory=list)
    failed: pd.DataFrame | None = None

    @property
    def delivered(self) -> int:
        return self.created + self.duplicates

    def __str__(self) -> str:
        failed = 0 if self.failed is None else len(self.failed)
        return (f"alerts -> {self.url}: {self.events} event(s) in {self.batches} batch(es); "
                f"{self.created} created, {self.duplicates} already there, {failed} failed; "
                f"{self.retried} request(s) retried")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["failed"] = 0 if self.failed is None else len(self.failed)
        return out


def post(events: pd.DataFrame, url: str, *, batch_size: int = 100, token=None,
         token_env: str | None = None, header: str | None = None, retries: int = 8,
         connect_timeout: float = 10.0, read_timeout: float = 60.0, connections: int = 4,
         verify: bool = True, failed_path=None, raise_on_failure: bool = True) -> AlertReport:
    """Send events to a device-management API as alerts, each exactly once.

    Parameters
    ----------
    events : pandas.DataFrame
        An events table (``device, metric, kind, start`` at least; every
        column is sent).
    url : str
        The endpoint that takes ``POST {"alerts": [...]}`` and answers
        ``{"results": [{"idempotency_key", "status": "created"|"duplicate"}]}``.
    batch_size : int
        Alerts per request.
    token, token_env, header
        Credentials, as for :func:`toolkit.read_http` (never shown).
    retries, connect_timeout, read_timeout, connections, verify
        As for :func:`toolkit.read_http`; ``connections`` batches in flight.
    failed_path : str or path, optional
        Write the events that could not be delivered there (CSV).
    raise_on_failure : bool
        Raise :class:`AlertError` when some batch failed (default); else
        return the report, whose ``failed`` holds them.

    Returns
    -------
    AlertReport

    Examples
    --------
    >>> from toolkit.feedserver import FeedServerProcess
    >>> events = pd.DataFrame({"device": ["dev-0000"], "metric": ["temperature"],
    ...     "kind": ["spike"], "start": [pd.Timestamp("2026-01-05 10:00")],
    ...     "end": [pd.Timestamp("2026-01-05 10:00")], "score": [9.5]})
    >>> with FeedServerProcess(devices=1, days=0.01) as server:
    ...     first = post(events, server.url + "/devices/alerts")
    ...     again = post(events, server.url + "/devices/alerts")
    >>> first.created, again.created, again.duplicates
    (1, 0, 1)
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ArgumentError(f"url must be an http:// or https:// URL, got url={url!r}")
    creds = credentials(url, token=token, token_env=token_env, header=header)
    options = HttpOptions(connect_timeout=connect_timeout, read_timeout=read_timeout,
                          retries=retries, connections=connections, verify=verify)
    alerts = alerts_of(events)
    batches = [alerts[k:k + batch_size] for k in range(0, len(alerts), batch_size)]
    report = AlertReport(url=redact(url, creds), events=len(alerts), batches=len(batches))
    failed_keys = run_sync(_post_all(batches, url, options, creds, report))
    keys = [a["idempotency_key"] for a in alerts]
    report.failed = events.iloc[[i for i, k in enumerate(keys) if k in failed_keys]].copy()
    if len(report.failed):
        if failed_path is not None:
            report.failed.to_csv(failed_path, index=False)
        if raise_on_failure:
            where = f"; written to {failed_path}" if failed_path is not None else ""
            raise AlertError(f"{len(report.failed)} of {report.events} alert(s) were not "
                             f"delivered to {report.url}: {report.failed_batches[0][1]}{where}. "
                             "Posting the same events again is safe (idempotency keys)",
                             report)
    return report


async def _post_all(batches, url, options, creds, report) -> set:
    failed: set = set()
    async with Fetcher(options, creds) as f:
        gate = asyncio.Semaphore(options.connections)

        async def one(k, batch):
            body = msgspec.json.encode({"alerts": batch})
            async with gate:
                why = await _post_batch(f, url, body, batch, report, k)
            if why is not None:
                report.failed_batches.append((k, why))
                failed.update(a["idempotency_key"] for a in batch)

        await asyncio.gather(*(one(k, b) for k, b in enumerate(batches)))
        report.retried = f.tally.retries
    report.failed_batches.sort()
    return failed


async def _post_batch(f: Fetcher, url, body, batch, report, k) -> str | None:
    """Post one batch until the API confirms every alert; the failure's reason, or None."""
    wanted = {a["idempotency_key"] for a in batch}
    for _ in range(f.options.retries + 1):
        try:
            resp = await f.request("POST", url, page=k, what="batch", json_body=body)
        except LoadError as err:
            return str(err)
        if not 200 <= resp.status < 300:
            return f.redact(f"HTTP {resp.status}: {resp.body[:200]!r}")
        try:
            results = msgspec.json.decode(resp.body)["results"]
            status = {r["idempotency_key"]: r["status"] for r in results}
        except (msgspec.DecodeError, KeyError, TypeError):
            f.tally.note_retry("unreadable answer")  # safe to send again: same keys
            await asyncio.sleep(f._wait(0, None))
            continue
        if not wanted <= set(status):
            return f"the API confirmed {len(wanted & set(status))} of {len(wanted)} alerts"
        report.created += sum(1 for key in wanted if status[key] == "created")
        report.duplicates += sum(1 for key in wanted if status[key] != "created")
        return None
    return "the API's answers could not be read"


__all__ = ["AlertError", "AlertReport", "alerts_of", "idempotency_key", "post"]
