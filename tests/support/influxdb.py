"""A private InfluxDB 1.x server for tests: its own ports, directories and config.

Debian's ``influxdb`` package (1.6.7) is the only InfluxDB installable here; it
speaks the v1 API (``/write``, InfluxQL ``/query``). Each test that needs one
starts it on free loopback ports (the HTTP API and the backup listener that 1.6
always opens), with its data under the test's directory, so tests never share a
server and never touch a system-wide one. ``start()`` may be called again after
``stop()``: same ports, same data (the reliability tests stop it mid-stream).

``InfluxDB(dir, auth=("admin", "secret"))`` starts it with ``auth-enabled = true`` and
creates that admin user on first start (InfluxDB accepts exactly that statement
without credentials while no user exists); the helper's own queries then use it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.mosquitto import free_port, stop_process

INFLUXD = "/usr/bin/influxd"


class InfluxDB:
    host = "127.0.0.1"

    def __init__(
        self, workdir: Path, *, database: str = "fablab", auth: tuple[str, str] | None = None
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port(self.host)
        self.backup_port = free_port(self.host)
        self.database = database
        self.auth = auth
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf_path = self.workdir / "influxdb.conf"
        self.log_path = self.workdir / "influxd.log"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url_with_credentials(self) -> str:
        """``http://user:pass@host:port`` (percent-encoded), as ``INFLUX_URL`` would carry them."""
        if self.auth is None:
            return self.url
        user, password = (urllib.parse.quote(x, safe="") for x in self.auth)
        return f"http://{user}:{password}@{self.host}:{self.port}"

    def _write_config(self) -> None:
        d = self.workdir
        # `reporting-disabled` is silently ignored by this build: the key is `reporting-enabled`.
        self.conf_path.write_text(
            f"""reporting-enabled = false
bind-address = "{self.host}:{self.backup_port}"
[meta]
  dir = "{d}/meta"
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
[http]
  bind-address = "{self.host}:{self.port}"
  log-enabled = false
  auth-enabled = {"true" if self.auth else "false"}
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
"""
        )

    def start(self, timeout: float = 30.0) -> InfluxDB:
        """Start the server, wait until ``/ping`` answers and create the database."""
        if self.running:
            raise RuntimeError("influxd is already running")
        self._write_config()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed in stop()
        self.proc = subprocess.Popen(
            [INFLUXD, "-config", str(self.conf_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"influxd exited with {self.proc.returncode}: {self.log()[-2000:]}")
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(self.url + "/ping", timeout=1) as resp,
            ):
                if resp.status == 204:
                    break
            if time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise RuntimeError(f"influxd did not answer on {self.url} within {timeout}s")
            time.sleep(0.05)
        if self.auth and not (self.workdir / "meta" / "admin-created").exists():
            user, password = self.auth
            escaped = password.replace("\\", "\\\\").replace("'", "\\'")
            self.query(f"CREATE USER \"{user}\" WITH PASSWORD '{escaped}' WITH ALL PRIVILEGES", database=None)
            (self.workdir / "meta" / "admin-created").touch()
        self.query(f'CREATE DATABASE "{self.database}"', database=None)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        """Send ``sig`` and wait for the server to exit (SIGKILL if it does not in time)."""
        stop_process(self.proc, sig, timeout)
        self.proc = None
        with contextlib.suppress(Exception):
            self._log.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def query(self, q: str, *, database: str | None = "", epoch: str = "ms") -> list[dict[str, Any]]:
        """Run InfluxQL; return the first result's series (``[{"name", "tags", "columns", "values"}]``)."""
        params = {"q": q, "epoch": epoch}
        db = self.database if database == "" else database
        if db:
            params["db"] = db
        request = urllib.request.Request(self.url + "/query", data=urllib.parse.urlencode(params).encode())
        if self.auth is not None:
            token = base64.b64encode(":".join(self.auth).encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=30) as resp:
            body = json.loads(resp.read())
        result = body["results"][0]
        if "error" in result:
            raise RuntimeError(f"InfluxQL error: {result['error']} in {q!r}")
        return result.get("series", [])

    def count(self, q: str) -> int:
        """The single number a ``SELECT count(...)`` query returns (0 when no series)."""
        series = self.query(q)
        return int(series[0]["values"][0][1]) if series else 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> InfluxDB:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
