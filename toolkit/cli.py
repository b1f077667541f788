"""The ``iot-toolkit`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
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
    serve.add_argument("--seed", type=int, default=0,
                       help="seed of the fleet and of the faults (0)")
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
    commands.add_parser(
        "info",
        help="print versions and where the packages and the kernel cache are",
        description="Print the toolkit's version, the folders its packages were "
        "imported from, the folder of the compiled-kernel cache, and the versions of "
        "Python, numba, dask and xarray. Useful in a bug report.",
    )
    return parser


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
    from .demo import format_summary, run_demo
    from .execution.progress import interruptible

    with interruptible():
        client = connect(args.scheduler)
        try:
            result = run_demo(devices=args.devices, days=args.days, freq=args.freq,
                              window=args.window, threshold=args.threshold,
                              seed=args.seed, out=args.out, client=client)
        except KeyboardInterrupt:
            # The user asked to stop: the scheduler's complaints about work
            # cancelled under it (it runs in this process) are noise now.
            logging.getLogger("distributed").setLevel(logging.CRITICAL)
            raise
        finally:
            client.close()
    print(format_summary(result.summary))
    print(f"wrote {result.store}, events.csv, ground_truth.csv, summary.csv "
          f"in {result.store.parent}")
    print(f"done in {result.seconds:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``iot-toolkit`` command."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(args)
        if args.command == "info":
            return _info()
        if args.command == "serve-feed":
            from .feedserver import main as serve_feed

            return serve_feed(args)
    except KeyboardInterrupt:
        print("\ninterrupted: the cluster was shut down", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main"]
