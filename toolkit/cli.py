"""The ``iot-toolkit`` command line."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iot-toolkit",
        description="Analyse fleets of IoT sensors with Numba kernels on Dask.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="generate a synthetic fleet, detect its anomalies, score the detector",
        description="Generate a synthetic fleet with injected anomalies on a Dask "
        "cluster, compute rolling z-scores and flags, write them to Zarr, and "
        "print recall and precision against the ground truth.",
    )
    demo.add_argument("--devices", type=int, default=100, help="number of devices (100)")
    demo.add_argument("--days", type=float, default=14.0, help="days of data (14)")
    demo.add_argument("--freq", default="1min", help="sampling interval (1min)")
    demo.add_argument("--window", type=int, default=60,
                      help="z-score reference window in samples (60)")
    demo.add_argument("--threshold", type=float, default=6.0,
                      help="flag samples with |z| above this (6)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (0)")
    demo.add_argument("--out", default="toolkit-demo",
                      help="output folder (./toolkit-demo/)")
    demo.add_argument("--http", action="store_true",
                      help="serve the fleet over HTTP (OGC SensorThings) in a child process, "
                      "load it from there, and post the events back as alerts")
    demo.add_argument("--scheduler", default=None, metavar="ADDRESS",
                      help="use a running Dask scheduler instead of a local cluster "
                      "(default: $TOOLKIT_SCHEDULER, else a local cluster)")
    serve = commands.add_parser(
        "serve-feed",
        help="serve a synthetic fleet over HTTP in every feed format, with faults on demand",
        description="Serve a synthetic fleet (make_fleet) over HTTP: JSON, NDJSON and CSV "
        "pages (Link header, next field or offset paging), OGC SensorThings, ThingSpeak, "
        "and a device-management endpoint that takes alerts (de-duplicated by idempotency "
        "key). Prints the URL, then serves until Ctrl-C.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    serve.add_argument("--port", type=int, default=0,
                       help="port (0, the default: a free port, printed)")
    serve.add_argument("--devices", type=int, default=20, help="number of devices (20)")
    serve.add_argument("--days", type=float, default=1.0, help="days of data (1)")
    serve.add_argument("--freq", default="1min", help="sampling interval (1min)")
    serve.add_argument("--seed", type=int, default=0, help="seed of the fleet (0)")
    serve.add_argument("--fault-seed", type=int, default=0,
                       help="seed of the faults: which requests fail (0)")
    serve.add_argument("--page-size", type=int, default=1000,
                       help="records per page, and the largest $top (1000)")
    serve.add_argument("--thingspeak-max", type=int, default=8000,
                       help="most entries per ThingSpeak answer (8000, as ThingSpeak)")
    serve.add_argument("--latency", type=float, default=0.0,
                       help="seconds added to every answer (0)")
    serve.add_argument("--fail-rate", type=float, default=0.0,
                       help="fraction of requests answered 503 or 429 with Retry-After (0)")
    serve.add_argument("--retry-after", type=float, default=1.0,
                       help="the Retry-After of those answers, in seconds (1)")
    serve.add_argument("--drop-rate", type=float, default=0.0,
                       help="fraction of connections closed without an answer (0)")
    serve.add_argument("--truncate-rate", type=float, default=0.0,
                       help="fraction of answers cut short mid-body (0)")
    serve.add_argument("--malformed-rate", type=float, default=0.0,
                       help="fraction of pages that are an HTML error page or broken JSON (0)")
    serve.add_argument("--token-env", default=None, metavar="VARIABLE",
                       help="require the token in this environment variable on every request")
    sync = commands.add_parser(
        "sync",
        help="append what is new in an HTTP feed to a sample store, once or every N seconds",
        description="Fetch only what is newer than the store holds for each device and "
        "append it, committing a checkpoint after each batch. Re-run at any time: a run "
        "that was killed resumes without losing or duplicating a sample. Exit status: 0 "
        "done, 1 the feed failed (the store keeps every batch committed before), 2 bad "
        "arguments.",
    )
    sync.add_argument("url", help="the feed's URL ({device} for one URL per device; the "
                      "service root for SensorThings; the API root for ThingSpeak)")
    sync.add_argument("store", help="the sample store's folder (created on first use)")
    _feed_arguments(sync)
    sync.add_argument("--every", default=None, metavar="DURATION",
                      help="repeat every DURATION (such as 60s or 5min) until Ctrl-C")
    sync.add_argument("--batch-streams", type=int, default=16,
                      help="streams fetched and committed together (16)")
    sync.add_argument("--quarantine", default=None, metavar="CSV",
                      help="set bad records aside in this CSV instead of failing")
    collect = commands.add_parser(
        "collect",
        help="collect live telemetry from an MQTT broker into a sample store",
        description="Subscribe to the devices' topics on an MQTT broker (QoS 1, a persistent "
        "session) and append what arrives to a sample store in batches; a message is "
        "acknowledged only once its batch is committed, so a collector killed at any "
        "moment and started again loses nothing and stores nothing twice. Bad payloads go "
        "to the quarantine CSV. With --pipeline, runs the pipeline incrementally every "
        "--every. Exit status: 0 done, 1 failed, 2 bad arguments, 130 interrupted.",
    )
    collect.add_argument("broker", help="the broker as HOST:PORT (such as 127.0.0.1:1883)")
    collect.add_argument("store", help="the sample store's folder (created on first use)")
    collect.add_argument("--topic", default="devices/{device}/telemetry",
                         help="the devices' topic pattern, with {device} "
                         "(devices/{device}/telemetry)")
    collect.add_argument("--client-id", default="iot-toolkit-collector",
                         help="the persistent session's client id: the same id resumes it")
    collect.add_argument("--time", default="time", help="the time field of a sample (time)")
    collect.add_argument("--metric", default=None,
                         help="the metric field (long payloads; with --value)")
    collect.add_argument("--value", default=None, help="the value field (long payloads)")
    collect.add_argument("--metrics", default=None,
                         help="only these metric fields, comma-separated (default: every "
                         "field but the time)")
    collect.add_argument("--batch-seconds", type=float, default=0.5,
                         help="commit a batch this often (0.5)")
    collect.add_argument("--quarantine", default="quarantine-mqtt.csv",
                         help="the CSV for bad payloads (quarantine-mqtt.csv)")
    collect.add_argument("--idle-stop", type=float, default=None, metavar="SECONDS",
                         help="stop when nothing arrived for this long (default: run until "
                         "Ctrl-C)")
    collect.add_argument("--pipeline", default=None, metavar="FILE",
                         help="a pipeline file (its source: this store) to run incrementally")
    collect.add_argument("--every", default="60s", metavar="DURATION",
                         help="how often to run the pipeline (60s)")
    collect.add_argument("--username", default=None, help="the broker user")
    collect.add_argument("--password-env", default=None, metavar="VARIABLE",
                         help="the environment variable that holds the broker password")
    check = commands.add_parser(
        "check",
        help="check a pipeline file without running it",
        description="Read a pipeline file (TOML) and check every key: unknown keys, wrong "
        "types and impossible values are named with their line. Prints what the pipeline "
        "will do. Exit status: 0 valid, 2 invalid, 1 its inputs cannot be found.",
    )
    check.add_argument("pipeline", help="the pipeline file (TOML)")
    run = commands.add_parser(
        "run",
        help="run a pipeline: store, events, health summary, report (and alerts)",
        description="Run the pipeline a TOML file describes on a Dask cluster (the file's "
        "[cluster], else $TOOLKIT_SCHEDULER, else a local one): load the source, "
        "regularise it onto the grid, run the checks and detectors, and write the Zarr "
        "store, the events table (Parquet and CSV), the health summary and the HTML "
        "report into the output folder. With --incremental only what arrived since the "
        "last run is processed (the results equal a full run's). Exit status: 0 done, "
        "1 failed, 2 bad arguments or pipeline file, 130 interrupted.",
    )
    run.add_argument("pipeline", help="the pipeline file (TOML)")
    run.add_argument("--incremental", action="store_true",
                     help="process only what arrived since the last run (new CSV files, "
                     "or new batches of the sample store); a full run when that cannot be "
                     "exact, saying why")
    run.add_argument("--every", default=None, metavar="DURATION",
                     help="repeat incrementally every DURATION (such as 60s) until Ctrl-C")
    run.add_argument("--runs", type=int, default=None,
                     help="with --every: stop after this many runs")
    run.add_argument("--scheduler", default=None, metavar="ADDRESS",
                     help="use a running Dask scheduler (overrides the file's [cluster])")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    commands.add_parser(
        "info",
        help="print versions and where the packages and the kernel cache are",
        description="Print the toolkit's version, the folders its packages were "
        "imported from, the folder of the compiled-kernel cache, and the versions of "
        "Python, numba, dask and xarray. Useful in a bug report.",
    )
    return parser


def _feed_arguments(parser) -> None:
    """The feed options of the HTTP commands (see toolkit.read_http)."""
    add = parser.add_argument
    add("--format", default="json",
        choices=["json", "ndjson", "csv", "sensorthings", "thingspeak"],
        help="the feed's format (json)")
    add("--devices", default=None,
        help="device ids, comma-separated (or ThingSpeak channel ids), or the URL of a JSON "
        "list of them")
    add("--paging", default="auto", choices=["auto", "link", "next", "offset", "none"],
        help="how pages follow each other (auto: a Link header or a next field)")
    add("--page-size", type=int, default=1000, help="records per page asked for (1000)")
    add("--records", default=None, help="key of the list of records in a JSON object")
    add("--time", default=None, help="the time field (default: found by name)")
    add("--device", default=None, help="the device field (default: found by name)")
    add("--metric", default=None, help="the metric field of long records")
    add("--value", default=None, help="the value field of long records")
    add("--metrics", default=None, help="metric fields of wide records, comma-separated")
    add("--since-param", default=None,
        help="a query parameter the server filters newer samples by")
    add("--start", default=None, help="only samples from this time on")
    add("--token-env", default=None, metavar="VARIABLE",
        help="the environment variable that holds the token (never put a token on the "
        "command line)")
    add("--header", default=None, help="send the token in this header (default "
        "Authorization: Bearer)")
    add("--token-param", default=None, help="send the token in this query parameter "
        "(ThingSpeak: api_key)")
    add("--retries", type=int, default=8, help="retries of a failed request (8)")


def _feed_kwargs(args) -> dict:
    devices = args.devices
    if devices and not devices.startswith(("http://", "https://")):
        devices = [d.strip() for d in devices.split(",") if d.strip()]
    return dict(format=args.format, devices=devices, paging=args.paging,
                page_size=args.page_size, records=args.records, time=args.time,
                device=args.device, metric=args.metric, value=args.value,
                metrics=args.metrics.split(",") if args.metrics else None,
                since_param=args.since_param, token_env=args.token_env, header=args.header,
                token_param=args.token_param, retries=args.retries)


def _quiet_after_interrupt(client=None) -> None:
    from .execution.progress import quiet_after_interrupt, quiet_workers

    quiet_after_interrupt()
    if client is not None:  # before it closes: its workers' complaints too
        quiet_workers(client)


def _seconds(text: str, name: str) -> float:
    """A positive duration such as ``60s`` or ``5min``, in seconds (else ArgumentError)."""
    import pandas as pd

    from .errors import ArgumentError

    try:
        seconds = pd.Timedelta(text).total_seconds()
    except ValueError:
        raise ArgumentError(f"{name} must be a duration such as 60s or 5min, got "
                            f"{text!r}") from None
    if not seconds > 0:
        raise ArgumentError(f"{name} must be a positive duration, got {text!r}")
    return seconds


def _sync(args) -> int:

    from .errors import ArgumentError, LoadError
    from .io.sync import sync, sync_every

    kwargs = dict(batch_streams=args.batch_streams, start=args.start,
                  on_bad_rows="quarantine" if args.quarantine else "raise",
                  quarantine=args.quarantine or "quarantine.csv", **_feed_kwargs(args))
    try:
        if args.every:
            sync_every(args.url, args.store, _seconds(args.every, "--every"), **kwargs)
        else:
            print(sync(args.url, args.store, **kwargs))
    except ArgumentError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except LoadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def _info() -> int:
    import platform

    import dask
    import numba
    import xarray

    import kernels

    from . import __file__ as toolkit_file

    rows = [("iot-telemetry-toolkit", __version__), ("python", platform.python_version()),
            ("numba", numba.__version__), ("dask", dask.__version__),
            ("xarray", xarray.__version__), ("toolkit package", str(Path(toolkit_file).parent)),
            ("kernels package", str(Path(kernels.__file__).parent)),
            ("kernel cache", kernels.CACHE_DIR)]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def _demo(args) -> int:
    from .cluster import connect
    from .demo import check_demo_args, format_summary, run_demo
    from .execution.progress import interruptible

    check_demo_args(args.devices, args.days, args.freq, args.window, args.threshold)
    with interruptible():
        client = connect(args.scheduler)
        try:
            result = run_demo(devices=args.devices, days=args.days, freq=args.freq,
                              window=args.window, threshold=args.threshold,
                              seed=args.seed, out=args.out, client=client, http=args.http)
        except KeyboardInterrupt:
            _quiet_after_interrupt(client)
            raise
        finally:
            client.close()
    print(format_summary(result.summary))
    print(f"wrote {result.store.name}, events.parquet, events.csv, health.csv, report.html, "
          "evaluation.csv, ground_truth.csv, summary.csv "
          f"in {result.store.parent}")
    print(f"done in {result.seconds:.1f} s")
    return 0


def _check(args) -> int:
    from .io.csv import expand_paths
    from .pipeline import Pipeline
    from .pipeline.config import tests_for

    pipeline = Pipeline.from_file(args.pipeline)
    c = pipeline.config
    src = c["source"]
    print(f"{args.pipeline}: valid")
    if src["type"] == "csv":
        files = expand_paths(src["paths"])
        print(f"  source     csv, {len(files)} file(s) now")
    else:
        where = src.get("url") or src.get("path") or ""
        print(f"  source     {src['type']} {where}".rstrip())
    print(f"  grid       {c['grid']['freq']} ({c['grid']['how']}, duplicates "
          f"{c['grid']['duplicates']})")
    checks, detectors = tests_for(c, "*")
    print(f"  checks     {', '.join(checks) or '-'}")
    print(f"  detectors  {', '.join(detectors) or '-'}")
    for metric in c["metrics"]:
        own_checks, own_detectors = tests_for(c, metric)
        print(f"  {metric}: checks {', '.join(own_checks) or '-'}; detectors "
              f"{', '.join(own_detectors) or '-'}")
    print(f"  output     {c['output']['folder']}")
    if c["alerts"]:
        print(f"  alerts     {c['alerts']['url']} (from {c['alerts']['min_severity']})")
    return 0


def _run(args) -> int:
    from .cluster import connect
    from .errors import ArgumentError
    from .execution.progress import interruptible
    from .pipeline import Pipeline

    pipeline = Pipeline.from_file(args.pipeline)
    if args.runs is not None and args.runs < 1:
        raise ArgumentError(f"--runs must be at least 1, got {args.runs}")
    every = _seconds(args.every, "--every") if args.every else None
    with interruptible():
        client = connect(args.scheduler) if args.scheduler else pipeline.connect()
        try:
            if every is not None:
                pipeline.run_every(every, client, runs=args.runs,
                                   progress=not args.no_progress)
            else:
                result = pipeline.run(client, incremental=args.incremental,
                                      progress=not args.no_progress)
                print(result)
                if result.mode != "nothing new":
                    print(f"wrote {result.store.name}, events.parquet, events.csv, health.csv"
                          f"{', report.html' if result.report else ''} in {result.folder}")
        except KeyboardInterrupt:
            _quiet_after_interrupt(client)
            raise
        finally:
            client.close()
    return 0


def _collect(args) -> int:

    from .errors import ArgumentError
    from .execution.progress import interruptible
    from .io.mqtt import Collector, Mapping

    host, _, port = args.broker.rpartition(":")
    if not host or not port.isdigit():
        raise ArgumentError(f"broker must be HOST:PORT, got {args.broker!r}")
    every = _seconds(args.every, "--every")
    pipeline, client, last = None, None, [time.monotonic()]
    if args.pipeline:
        from .pipeline import Pipeline

        pipeline = Pipeline.from_file(args.pipeline)
    mapping = Mapping(args.time, args.metric, args.value,
                      args.metrics.split(",") if args.metrics else None)
    collector = Collector(host, int(port), args.store, topic=args.topic,
                          client_id=args.client_id, batch_seconds=args.batch_seconds,
                          quarantine=args.quarantine, mapping=mapping, username=args.username,
                          password_env=args.password_env)

    def on_batch(report):
        nonlocal client
        if pipeline is None or time.monotonic() - last[0] < every:
            return
        if client is None:
            client = pipeline.connect()
        print(pipeline.run(client, incremental=True, progress=False))
        last[0] = time.monotonic()

    print(f"collecting {collector.filter} from {host}:{port} into {args.store}", flush=True)
    try:
        with interruptible():
            report = collector.run(idle_stop=args.idle_stop, on_batch=on_batch,
                                   connected=lambda line: print(line, flush=True))
    finally:
        if client is not None:
            client.close()
    print(report)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``iot-toolkit`` command.

    Exit status, for every command: 0 done, 1 it failed (a feed, a file, the
    cluster), 2 bad arguments (argparse's own, and the toolkit's argument
    checks), 130 interrupted (Ctrl-C).
    """
    from .errors import ArgumentError, ToolkitError

    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "info":
            return _info()
        if args.command == "sync":
            return _sync(args)
        if args.command == "check":
            return _check(args)
        if args.command == "collect":
            return _collect(args)
        if args.command == "run":
            return _run(args)
        if args.command == "serve-feed":
            from .feedserver import main as serve_feed

            return serve_feed(args)
    except KeyboardInterrupt:
        _quiet_after_interrupt()
        print("\ninterrupted" + (": the cluster was shut down" if args.command in
                                 ("demo", "run") else ""), file=sys.stderr)
        return 130
    except ArgumentError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ToolkitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main"]
