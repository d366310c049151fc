"""Fixtures of the device-hub tests: a private Mosquitto and InfluxDB per test, a hub, a publisher.

The hub runs either in a thread of the test process (:func:`hub_thread`,
fast, its ``hub_stats`` readable directly) or as ``manage.py run_hub`` in a
subprocess (:class:`HubProcess`, for kill -9), pointed at the test database
with ``DATABASE_URL`` and at the private servers with ``MQTT_URL``,
``INFLUX_URL`` and ``INFLUX_DATABASE``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from django.conf import settings

from devices.hub import Hub
from devices.influx import InfluxStore
from devices.influx_spool import Spool
from devices.models import Bridge, MachineLink
from firmware_bridge import protocol
from tests.factories import MachineFactory, MachineTypeFactory
from tests.support.influxdb import InfluxDB
from tests.support.mosquitto import Mosquitto

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 60.0


def wait_until(predicate: Callable[[], Any], timeout: float = WAIT_S, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private anonymous Mosquitto (persistence on, max_queued_messages 0)."""
    b = Mosquitto(tmp_path / "mosquitto")
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[InfluxDB]:
    """A private InfluxDB 1.6 with the database ``fablab`` created."""
    server = InfluxDB(tmp_path / "influxdb")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def make_machine(
    lab=None,
    *,
    slug: str | None = None,
    bridge: str = "bridge-1",
    adapter: str = "octoprint",
    interval: int = 10,
):
    """A machine linked to a bridge (created on demand) with the given adapter."""
    kwargs: dict[str, Any] = {"machine_type": MachineTypeFactory(slug="3d-printer")}
    if lab is not None:
        kwargs["lab"] = lab
    if slug is not None:
        kwargs["slug"] = slug
    machine = MachineFactory(**kwargs)
    b, _ = Bridge.objects.get_or_create(slug=bridge, defaults={"lab": machine.lab})
    MachineLink.objects.create(machine=machine, bridge=b, adapter=adapter, telemetry_interval_s=interval)
    return machine


class Publisher:
    """A paho MQTT 5 client that publishes QoS 1 and waits for the broker's PUBACK."""

    def __init__(self, broker: Mosquitto, client_id: str | None = None) -> None:
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"pub-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5,
        )
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def publish(
        self,
        topic: str,
        payload: bytes | str | dict,
        *,
        retain: bool = False,
        wait: bool = True,
        qos: int = 1,
    ):
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        while True:
            info = self.client.publish(topic, payload, qos=qos, retain=retain)
            if info.rc != mqtt.MQTT_ERR_QUEUE_SIZE:
                break
            time.sleep(0.01)
        if wait and qos:
            info.wait_for_publish(WAIT_S)
            assert info.is_published(), f"no PUBACK for {topic}"
        return info

    def message(
        self,
        message: protocol.Message,
        lab: str,
        machine: str,
        *,
        wait: bool = True,
        retain: bool | None = None,
    ):
        kinds = {
            protocol.Status: protocol.topic_status,
            protocol.Telemetry: protocol.topic_telemetry,
            protocol.Event: protocol.topic_event,
            protocol.CommandAck: protocol.topic_cmd_ack,
        }
        topic = kinds[type(message)](lab, machine)
        if retain is None:
            retain = isinstance(message, protocol.Status)
        return self.publish(topic, protocol.encode(message), retain=retain, wait=wait)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(broker: Mosquitto) -> Iterator[Publisher]:
    p = Publisher(broker)
    try:
        yield p
    finally:
        p.close()


def store_for(influx: InfluxDB) -> InfluxStore:
    return InfluxStore(influx.url, database=influx.database)


@contextlib.contextmanager
def hub_thread(broker: Mosquitto, influx: InfluxDB, tmp_path: Path, **kwargs: Any) -> Iterator[Hub]:
    """A hub running in a thread of the test process, stopped (flush, ack, disconnect) on exit."""
    kwargs.setdefault("batch_interval", 0.2)
    kwargs.setdefault("housekeeping_interval", 0.5)
    hub = Hub(
        mqtt_url=broker.url(),
        store=store_for(influx),
        spool=Spool(tmp_path / f"spool-{uuid.uuid4().hex[:6]}.sqlite3"),
        client_id=kwargs.pop("client_id", f"hub-test-{uuid.uuid4().hex[:6]}"),
        **kwargs,
    )
    errors: list[BaseException] = []

    def target() -> None:
        try:
            hub.run()
        except BaseException as exc:  # surfaced in the test
            errors.append(exc)
        finally:
            from django.db import connection

            connection.close()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    wait_until(hub._subscribed.is_set, what="the hub's subscriptions")
    try:
        yield hub
    finally:
        hub.stop()
        thread.join(timeout=WAIT_S)
        assert not thread.is_alive(), "the hub did not stop"
        assert not errors, errors


def database_url() -> str:
    """The URL of the test database the current (transactional_db) test uses."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = urllib.parse.quote(db.get("USER") or "", safe="")
    password = urllib.parse.quote(db.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = db.get("HOST") or "localhost"
    if host.startswith("/"):
        return f"postgres://{auth}/{db['NAME']}?host={urllib.parse.quote(host, safe='')}&port={db.get('PORT') or 5432}"
    return f"postgres://{auth}{host}:{db.get('PORT') or 5432}/{db['NAME']}"


class HubProcess:
    """``manage.py run_hub`` as a subprocess on the test database and the private servers."""

    def __init__(
        self, broker: Mosquitto, influx: InfluxDB, workdir: Path, client_id: str, *extra: str
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.client_id = client_id
        self.extra = extra
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "MQTT_URL": broker.url(),
            "INFLUX_URL": influx.url,
            "INFLUX_DATABASE": influx.database,
            "INFLUX_TOKEN": "",
            "REDIS_URL": "",
            "FABLAB_VAR_DIR": str(self.workdir / "var"),
            "PYTHONUNBUFFERED": "1",
        }
        self.log_path = self.workdir / f"{client_id}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> HubProcess:
        before = self.log().count("subscribed to")
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [
                sys.executable, str(REPO / "manage.py"), "run_hub",
                "--client-id", self.client_id,
                "--spool", str(self.workdir / f"{self.client_id}.spool.sqlite3"),
                "--batch-interval", "0.2",
                "--stats-interval", "2",
                *self.extra,
            ],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        wait_until(
            lambda: self.log().count("subscribed to") > before, what=f"hub {self.client_id} to subscribe"
        )
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=WAIT_S)
        rc = self.proc.returncode
        self.proc = None
        return rc

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def new_sid() -> str:
    return str(uuid.uuid4())
