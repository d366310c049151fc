"""Fixtures and helpers of the firmware bridge tests: a private broker per test, an MQTT collector."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from firmware_bridge import protocol
from tests.support.mosquitto import Mosquitto

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 60.0


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A started, anonymous Mosquitto on a free loopback port, stopped after the test."""
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def wait_until(predicate: Callable[[], Any], timeout: float = WAIT_S, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


class Collector:
    """A durable MQTT 5 subscriber that records every message on ``fablab/v1/#``.

    It keeps its session on the broker (fixed client id, session expiry), so
    a broker restart with persistence loses nothing that was queued for it.
    """

    def __init__(
        self,
        broker: Mosquitto,
        filters: tuple[str, ...] = (protocol.filter_everything(),),
        *,
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        self.broker = broker
        self.filters = filters
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"collector-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self.connected.clear()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 2)
        if user is not None:
            self.client.username_pw_set(user, password)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            client.subscribe([(f, 1) for f in self.filters])
            self.connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def start(self, *, probe: bool = True) -> Collector:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect_async(
            self.broker.host, self.broker.port, keepalive=10, clean_start=False, properties=props
        )
        self.client.loop_start()
        wait_until(self.connected.is_set, what="the collector to connect")
        # The SUBACK may come after on_connect returns: wait for it with a probe message (needs write access).
        topic = f"{protocol.PREFIX}/_probe/{uuid.uuid4().hex}"
        if probe and any(f in (protocol.filter_everything(), "#") for f in self.filters):
            self.client.publish(topic, b"{}", qos=1)
            wait_until(lambda: any(t == topic for t, _, _ in self.snapshot()), what="the collector's probe")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        with self.lock:
            return list(self.messages)

    def of_kind(self, kind: str, lab: str | None = None, machine: str | None = None) -> list[tuple[Any, Any]]:
        """Decoded (parsed topic, message) pairs of one kind, in arrival order."""
        out = []
        for topic, payload, _ in self.snapshot():
            try:
                parsed = protocol.parse_topic(topic)
            except protocol.ProtocolError:
                continue
            if parsed.kind != kind or (lab and parsed.lab != lab) or (machine and parsed.machine != machine):
                continue
            out.append(protocol.decode(topic, payload))
        return out

    def seqs(self, lab: str, machine: str) -> list[tuple[str, int]]:
        """(sid, seq) of every telemetry and event message of one machine (one counter), duplicates included."""
        return [
            (m.sid, m.seq)
            for kind in (protocol.TELEMETRY, protocol.EVENT)
            for _, m in self.of_kind(kind, lab, machine)
        ]

    def last(self, kind: str, lab: str | None = None, machine: str | None = None) -> Any:
        items = self.of_kind(kind, lab, machine)
        return items[-1][1] if items else None

    def publish(self, topic: str, payload: bytes | str | dict[str, Any]) -> None:
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        self.client.publish(topic, payload, qos=1).wait_for_publish(timeout=WAIT_S)


@pytest.fixture
def collector(mosquitto: Mosquitto) -> Iterator[Collector]:
    c = Collector(mosquitto).start()
    try:
        yield c
    finally:
        c.stop()


def write_config(
    path: Path,
    broker: Mosquitto,
    machines: list[dict[str, Any]],
    *,
    bridge_id: str = "test-bridge",
    extra_bridge: str = "",
    extra_mqtt: str = "",
) -> Path:
    """Write a bridge.toml for ``machines`` (dicts with lab, machine, adapter, interlock, options)."""
    lines = [
        "[bridge]",
        f'id = "{bridge_id}"',
        f'spool = "{path.parent / "spool.sqlite3"}"',
        extra_bridge,
        "[mqtt]",
        f'url = "{broker.url()}"',
        "reconnect_min_s = 1",
        "reconnect_max_s = 2",
        extra_mqtt,
    ]
    for m in machines:
        lines += [
            "[[machines]]",
            f'lab = "{m["lab"]}"',
            f'machine = "{m["machine"]}"',
            f'adapter = "{m["adapter"]}"',
        ]
        if "interlock" in m:
            lines.append(f"interlock = {'true' if m['interlock'] else 'false'}")
        if m.get("options"):
            lines.append("[machines.options]")
            for k, v in m["options"].items():
                lines.append(f"{k} = {json.dumps(v)}")
    path.write_text("\n".join(lines) + "\n")
    return path


class BridgeProcess:
    """``python -m firmware_bridge run`` in a subprocess, for kill -9 tests."""

    def __init__(self, config: Path, log_path: Path) -> None:
        self.config = config
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self._log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "firmware_bridge", "run", "--config", str(self.config)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=WAIT_S)
        self._log.close()
        return rc

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
