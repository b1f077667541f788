"""The IoT back ends' real servers on this machine: InfluxDB 1.x and mosquitto.

For trying the back ends on a laptop, for the notebooks, the tests and the
benchmarks: each class starts Debian's server binary (``influxd`` from the
``influxdb`` package, ``mosquitto``) as a child process on 127.0.0.1, on a
free port, with its files in a folder of its own, and stops it again. They
configure the servers as ``docs/backends.md`` recommends for the toolkit
(no row limit on queries; a persistent broker without queue limits).

Examples
--------
>>> from toolkit.localservers import InfluxDBProcess
>>> with InfluxDBProcess(tmp) as influx:          # doctest: +SKIP
...     ds = read_influx(influx.url, "telemetry", "sensors", freq="1min")
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

__all__ = ["InfluxDBProcess", "MosquittoProcess", "ServerNotInstalled", "free_port",
           "installed"]


class ServerNotInstalled(RuntimeError):
    """The server's binary is not on this machine (the message says which package)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: each server's binary: its Debian package, and where Debian puts it off the PATH
_SERVERS = {"influxd": ("influxdb", None), "mosquitto": ("mosquitto", "/usr/sbin/mosquitto")}


def installed(name: str) -> str | None:
    """The path of a server's binary (``"influxd"``, ``"mosquitto"``), or None."""
    fallback = _SERVERS[name][1]
    return shutil.which(name) or (fallback if fallback and os.path.exists(fallback) else None)


def _binary(name: str) -> str:
    path = installed(name)
    package = _SERVERS[name][0]
    if path is None:
        raise ServerNotInstalled(
            f"{name} is not installed: install the Debian package {package!r} "
            f"(apt-get install {package}), or point the toolkit at a server of your own")
    return path


def _wait(ready, what: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} while starting")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{what} did not answer within {timeout:.0f} s")
        time.sleep(0.1)


class _ServerProcess:
    """Start on entry (or ``start()``), stop on exit (or ``stop()``)."""

    proc: subprocess.Popen | None = None

    def __init__(self, root=None):
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(
            prefix=f"{type(self).__name__.lower()}-"))
        self.root.mkdir(parents=True, exist_ok=True)

    def stop(self) -> None:
        """Stop the server cleanly (it saves its state), killing it if it will not."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class InfluxDBProcess(_ServerProcess):
    """Debian's ``influxd`` (InfluxDB 1.x) on 127.0.0.1, its data in ``root``.

    Parameters
    ----------
    root : path, optional
        The folder for its configuration, data and write-ahead log (default:
        a new temporary folder).
    password : str, optional
        With a password, authentication is on and an admin user ``admin``
        with this password is created; without, the server is open.
    cache_max_memory_size : str, optional
        The server's in-memory write cache (``"2g"``; InfluxDB's default is
        1 GB), for writing many millions of points at once.
    startup_timeout : float
        Seconds to wait for ``/ping`` to answer.

    Attributes
    ----------
    url : str
        ``http://127.0.0.1:PORT``, once started.
    """

    def __init__(self, root=None, *, password: str | None = None,
                 cache_max_memory_size: str | None = None, startup_timeout: float = 60.0):
        super().__init__(root)
        self.password, self.startup_timeout = password, startup_timeout
        self.cache = cache_max_memory_size
        self.url: str | None = None

    def start(self) -> InfluxDBProcess:
        binary = _binary("influxd")
        port = free_port()
        auth = "true" if self.password else "false"
        conf = self.root / "influxdb.conf"
        conf.write_text(f"""reporting-disabled = true
bind-address = "127.0.0.1:{free_port()}"
[meta]
  dir = "{self.root}/meta"
[data]
  dir = "{self.root}/data"
  wal-dir = "{self.root}/wal"
{f'  cache-max-memory-size = "{self.cache}"' if self.cache else ""}
[http]
  bind-address = "127.0.0.1:{port}"
  auth-enabled = {auth}
  log-enabled = false
  max-row-limit = 0
""")
        self.proc = subprocess.Popen([binary, "-config", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                self.request("/ping", auth=False)
                return True
            except (urllib.error.URLError, OSError):
                return False

        _wait(ready, "influxd", self.proc, self.startup_timeout)
        if self.password:  # the first user, created while there is none, is the admin
            self.query(f"CREATE USER admin WITH PASSWORD '{self.password}' WITH ALL "
                       "PRIVILEGES", auth=False)
        return self

    def request(self, path: str, params: dict | None = None, body: bytes | None = None,
                auth: bool = True) -> bytes:
        """One HTTP request to the server (as ``admin`` when it has a password)."""
        headers = {}
        if auth and self.password:
            headers["Authorization"] = "Basic " + base64.b64encode(
                f"admin:{self.password}".encode()).decode()
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        req = urllib.request.Request(f"{self.url}{path}{query}", data=body, headers=headers,
                                     method="POST" if body is not None else "GET")
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.read()

    def query(self, q: str, auth: bool = True) -> bytes:
        """Run an InfluxQL statement that changes something (POST /query)."""
        return self.request("/query", {"q": q}, body=b"", auth=auth)

    def write(self, database: str, lines: list[str], batch: int = 5000) -> None:
        """Write line-protocol points (nanosecond times), creating the database."""
        self.query(f'CREATE DATABASE "{database}"')
        for k in range(0, len(lines), batch):
            self.request("/write", {"db": database, "precision": "ns"},
                         body="\n".join(lines[k:k + batch]).encode())


class MosquittoProcess(_ServerProcess):
    """Debian's ``mosquitto`` MQTT broker on 127.0.0.1, persistent, restartable.

    Configured as the collector needs (``docs/backends.md``): persistence in
    ``root``, no limit on queued or in-flight messages. ``stop()`` then
    ``start()`` restarts it on the same port with its sessions and queued
    messages.

    Attributes
    ----------
    port : int
        The broker's port on 127.0.0.1.
    """

    def __init__(self, root=None, *, startup_timeout: float = 30.0):
        super().__init__(root)
        self.port = free_port()
        self.startup_timeout = startup_timeout
        self.conf = self.root / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {self.root}/\n"
            "autosave_interval 1\nmax_queued_messages 0\nmax_inflight_messages 0\n"
            # started as root, mosquitto drops to its own user, which could not
            # write its persistence file into our private folder
            + ("user root\n" if os.geteuid() == 0 else ""))

    def start(self) -> MosquittoProcess:
        binary = _binary("mosquitto")
        self.proc = subprocess.Popen([binary, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def ready() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        _wait(ready, "mosquitto", self.proc, self.startup_timeout)
        return self
