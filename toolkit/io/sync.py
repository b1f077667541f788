"""Incremental sync: append only what is new in a feed to a sample store.

:func:`sync` asks the feed only for what is newer than the store's last
sample of each device (SensorThings ``$filter=phenomenonTime gt ...``,
ThingSpeak windows from there, ``since_param`` for other feeds, which are
otherwise read whole and filtered here), and appends it to a
:class:`~toolkit.io.store.SampleStore` in batches of a few streams, each
committed by the store's checkpoint after it is written. It can be re-run at
any time: run twice in a row, the second run writes nothing; killed at any
moment and re-run, the store holds exactly what the feed served -- nothing
lost, nothing twice.

Late data is the limit of this rule: a sample that appears in the feed with a
time older than what the store already holds for its device and metric is
not fetched again (it is the feed's contract that each series grows at its
end, as SensorThings, ThingSpeak and most device APIs do).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import ArgumentError, LoadError
from .feeds import Feed
from .fetch import redact
from .http import _as_feed, _fetch_streams, discover, run_sync
from .store import SampleStore


@dataclass
class SyncReport:
    """What one sync did."""

    store: str
    streams: int = 0
    batches: int = 0
    pages: int = 0
    requests: int = 0
    retries: int = 0
    records: int = 0
    rejected: int = 0
    samples_new: int = 0
    samples_known: int = 0  # served again, already stored
    samples_missing: int = 0  # null values: nothing to store
    rows_total: int = 0
    seconds: float = 0.0
    first_rejections: list = field(default_factory=list)

    def __str__(self) -> str:
        return (f"sync -> {self.store}: {self.samples_new:,} new samples in {self.batches} "
                f"batch(es) from {self.streams} stream(s), {self.pages:,} page(s), "
                f"{self.requests:,} requests ({self.retries:,} retried); "
                f"{self.samples_known:,} already stored, {self.samples_missing:,} missing, "
                f"{self.rejected:,} records rejected; the store holds {self.rows_total:,} "
                f"samples ({self.seconds:.1f} s)")

    def to_dict(self) -> dict:
        return asdict(self)


def sync(source, store, *, batch_streams: int = 16, on_bad_rows: str = "raise",
         quarantine="quarantine.csv", start=None, end=None, progress=None,
         **feed_kwargs) -> SyncReport:
    """Append what is new in a feed to a sample store (created on first use).

    Parameters
    ----------
    source : str or Feed
        The feed, as for :func:`toolkit.read_http` (with its keywords).
    store : str or path
        The store's folder (see :mod:`toolkit.io.store`);
        :func:`toolkit.io.store.read_store` turns it into the fleet Dataset.
    batch_streams : int
        Streams fetched and committed together (smaller: less is fetched
        again after an interruption; larger: fewer, bigger batches).
    on_bad_rows, quarantine
        As for :func:`toolkit.read_http`; quarantined records are appended to
        the quarantine CSV.
    start, end : datetime-like, optional
        Only samples in this range (``start`` applies until the store holds
        something for a series).
    progress : callable, optional
        Called with a one-line message after each committed batch.

    Returns
    -------
    SyncReport

    Examples
    --------
    >>> import tempfile
    >>> from toolkit.feedserver import FeedServerProcess
    >>> with FeedServerProcess(devices=2, days=0.02) as server:  # doctest: +SKIP
    ...     path = tempfile.mkdtemp() + "/store"
    ...     first = sync(server.url + "/sta/v1.1", path, format="sensorthings")
    ...     again = sync(server.url + "/sta/v1.1", path, format="sensorthings")
    >>> first.samples_new > 0, again.samples_new  # doctest: +SKIP
    (True, 0)
    """
    if not isinstance(batch_streams, int) or batch_streams < 1:
        raise ArgumentError(f"batch_streams must be a positive integer, got {batch_streams!r}")
    if on_bad_rows not in ("raise", "quarantine"):
        raise ArgumentError(f"on_bad_rows must be 'raise' or 'quarantine', got "
                            f"on_bad_rows={on_bad_rows!r}")
    feed = _as_feed(source, feed_kwargs)
    started = time.perf_counter()
    report = SyncReport(store=str(store))
    with SampleStore(store, writer=True, create=True) as st:
        since = st.checkpoint.since()
        plan = run_sync(discover(feed, start=start, end=end, since=since))
        report.streams = len(plan.streams)
        report.requests, report.retries = plan.requests, plan.retries
        for k in range(0, len(plan.streams), batch_streams):
            group = plan.streams[k:k + batch_streams]
            fetched = run_sync(_fetch_streams(plan, group, k, None))
            _account(report, fetched, feed, on_bad_rows, quarantine)
            valid = ~np.isnan(fetched.values)
            report.samples_missing += int((~valid).sum())
            written = st.append(fetched, units=plan.units, feed=feed.describe())
            report.samples_known += int(valid.sum()) - written
            report.samples_new += written
            report.batches += written > 0
            if progress is not None:
                progress(f"{min(k + batch_streams, len(plan.streams))}/{len(plan.streams)} "
                         f"streams, {report.samples_new:,} new samples")
        report.rows_total = st.checkpoint.rows
    report.seconds = time.perf_counter() - started
    return report


def _account(report: SyncReport, fetched, feed: Feed, on_bad_rows, quarantine) -> None:
    report.pages += fetched.pages
    report.requests += fetched.requests
    report.retries += fetched.retries
    report.records += fetched.records
    if not fetched.rejected:
        return
    report.rejected += len(fetched.rejected)
    url, pos, name, why, text = fetched.rejected[0]
    if on_bad_rows == "raise":
        where = f", field {name!r}" if name else ""
        raise LoadError(redact(
            f"{url}, record {pos}{where}: {why}. The record reads {text[:200]!r}. Nothing of "
            "this batch was stored; pass on_bad_rows='quarantine' to set bad records aside",
            feed.credentials))
    import csv
    import os

    new = not os.path.exists(quarantine)
    with open(quarantine, "a", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(["url", "position", "field", "problem", "text"])
        writer.writerows([(redact(u, feed.credentials), p, n or "", w,
                           redact(t, feed.credentials)) for u, p, n, w, t in fetched.rejected])
    report.first_rejections += [f"{redact(u, feed.credentials)} #{p} {w}"
                                for u, p, _, w, _ in fetched.rejected[:5]]


def sync_every(source, store, every: float, *, runs: int | None = None, log=print,
               **kwargs) -> None:
    """:func:`sync` now and then every ``every`` seconds (``runs`` times, or until Ctrl-C)."""
    if not every > 0:
        raise ArgumentError(f"every must be a positive number of seconds, got {every!r}")
    done = 0
    while runs is None or done < runs:
        began = time.monotonic()
        log(str(sync(source, store, **kwargs)))
        done += 1
        if runs is not None and done >= runs:
            break
        time.sleep(max(0.0, every - (time.monotonic() - began)))


__all__ = ["SyncReport", "sync", "sync_every"]
