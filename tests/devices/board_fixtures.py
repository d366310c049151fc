"""Fixtures of the floor board tests: a private Redis, users and a lab with machines.

Import what a test module needs: ``from tests.devices.board_fixtures import redis_server, ...``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mosquitto import free_port

REDIS_SERVER = "/usr/bin/redis-server"


class RedisServer:
    """One private redis-server on a free loopback port, with no persistence, in ``workdir``."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port(self.host)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 30.0) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed in stop()
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                self.host,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--protected-mode",
                "yes",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log_path.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=1) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"redis-server did not answer on {self.host}:{self.port} within {timeout}s"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._log.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_layer(redis_server: RedisServer, settings) -> Iterator[RedisServer]:
    """The Channels layer is Redis (the private one) for this test."""
    from channels.layers import channel_layers

    from fablab.settings import redis_channel_layer

    settings.CHANNEL_LAYERS = {"default": redis_channel_layer(redis_server.url)}
    channel_layers.backends.clear()
    yield redis_server
    channel_layers.backends.clear()


@pytest.fixture
def in_memory_layer(settings) -> Iterator[None]:
    from channels.layers import channel_layers

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def make_board(now: dt.datetime | None = None):
    """A lab with a printer (running, booked by ``maker_b``) and a laser (idle); a manager and two makers."""
    from django.utils import timezone

    from devices.models import Alert, MachineStatus
    from firmware_bridge.protocol import ACTIONS
    from tests.factories import BookingFactory, LabFactory, MachineFactory, UserFactory

    now = now or timezone.now()
    lab = LabFactory(slug="board-lab", name="Board lab")
    manager = UserFactory(username="manager-m", first_name="Mia", last_name="Manager")
    lab.managers.add(manager)
    maker_a = UserFactory(username="maker-a", first_name="Anouk", last_name="Maker")
    maker_b = UserFactory(username="maker-b", first_name="Karim", last_name="Other")
    printer = MachineFactory(lab=lab, slug="printer-1", name="Printer 1")
    laser = MachineFactory(lab=lab, slug="laser-1", name="Laser 1")
    MachineStatus.objects.create(
        machine=printer,
        state="running",
        since=now - dt.timedelta(minutes=20),
        online=True,
        enabled=True,
        job_name="karim-bracket.gcode",
        progress_pct=42.0,
        last_reading={"temp_nozzle_c": 210.5, "temp_bed_c": 60.0},
        status_ts=int(now.timestamp() * 1000) - 60_000,
        capabilities=list(ACTIONS),  # an interlocked printer: every command is offered
    )
    MachineStatus.objects.create(
        machine=laser, state="idle", since=now, online=True, enabled=True, capabilities=list(ACTIONS)
    )
    Alert.objects.create(machine=laser, kind=Alert.Kind.SILENT, message="", raised_at=now)
    current = BookingFactory(
        machine=printer, member=maker_b, start=now - dt.timedelta(minutes=30), end=now + dt.timedelta(hours=1)
    )
    upcoming = BookingFactory(
        machine=laser, member=maker_a, start=now + dt.timedelta(hours=2), end=now + dt.timedelta(hours=3)
    )
    return {
        "lab": lab,
        "manager": manager,
        "maker_a": maker_a,
        "maker_b": maker_b,
        "printer": printer,
        "laser": laser,
        "current": current,
        "upcoming": upcoming,
    }
