"""A private Mosquitto broker for tests: its own port, directory and config.

Every test that needs MQTT starts one of these on a free loopback port, so
tests never share a broker and never touch a system-wide one. Persistence is
on (the reliability tests restart the broker and expect queued QoS 1 messages
to survive) and ``max_queued_messages`` is 0 (no bound), because Mosquitto's
default of 1000 silently drops messages for a slow subscriber. ``max_packet_size``
is the project's (:data:`devices.mqtt_names.MOSQUITTO_MAX_PACKET_SIZE`), as on a
production broker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

from devices.mqtt_names import MOSQUITTO_MAX_PACKET_SIZE

MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = "/usr/bin/mosquitto_passwd"


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
    """Send ``sig`` to a test server and wait for it to exit (SIGKILL if it does not in time)."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


class Mosquitto:
    """One private broker. ``start()`` may be called again after ``stop()`` (same port, same data)."""

    host = "127.0.0.1"

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        passwords: dict[str, str] | None = None,
        acl: str | None = None,
        extra: str = "",
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port if port is not None else free_port(self.host)
        self.passwords = dict(passwords or {})
        self.acl = acl
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "mosquitto.log"
        self.conf_path = self.workdir / "mosquitto.conf"

    def _write_config(self) -> None:
        lines = [
            "user root",
            f"listener {self.port} {self.host}",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "persistence_file mosquitto.db",
            "max_queued_messages 0",
            f"max_packet_size {MOSQUITTO_MAX_PACKET_SIZE}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if self.passwords:
            pw_file = self.workdir / "passwords"
            pw_file.write_text("")
            for user, password in self.passwords.items():
                subprocess.run(
                    [MOSQUITTO_PASSWD, "-b", str(pw_file), user, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {pw_file}"]
        else:
            lines.append("allow_anonymous true")
        if self.acl is not None:
            acl_file = self.workdir / "acl"
            acl_file.write_text(self.acl if self.acl.endswith("\n") else self.acl + "\n")
            lines.append(f"acl_file {acl_file}")
        if self.extra:
            lines.append(self.extra)
        self.conf_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 30.0) -> None:
        """Write the config, start the broker and wait until it accepts TCP connections."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("mosquitto is already running")
        self._write_config()
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed in stop()
        self._log = log
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                log.close()
                raise RuntimeError(
                    f"mosquitto exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}"
                )
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=1):
                return
            if time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise RuntimeError(f"mosquitto did not listen on {self.host}:{self.port} within {timeout}s")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        """Send ``sig`` and wait for the broker to exit (SIGKILL if it does not in time)."""
        stop_process(self.proc, sig, timeout)
        self.proc = None
        with contextlib.suppress(Exception):
            self._log.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def url(self, user: str | None = None, password: str | None = None) -> str:
        """``mqtt://[user[:password]@]127.0.0.1:port`` (user and password URL-quoted)."""
        auth = ""
        if user is not None:
            auth = urllib.parse.quote(user, safe="")
            if password is not None:
                auth += ":" + urllib.parse.quote(password, safe="")
            auth += "@"
        return f"mqtt://{auth}{self.host}:{self.port}"

    def log(self) -> str:
        """The broker's log so far (for assertion messages)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
