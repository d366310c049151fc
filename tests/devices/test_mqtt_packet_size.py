"""The broker's ``max_packet_size``: the hub's payload limit plus the largest MQTT header.

Proven against a real Mosquitto configured the way the project configures
every broker (tests/support/mosquitto.py). The publisher is a raw MQTT 5
socket, so the packet's size is exact to the byte and nothing in a client
library decides for the broker: the packet at the limit is acknowledged and
delivered; a bigger one gets DISCONNECT reason 149 ("Packet too large") and
never reaches the subscriber.
"""

from __future__ import annotations

import importlib.util
import socket
import struct
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from devices.mqtt_auth import MOSQUITTO_MAX_PACKET_SIZE
from firmware_bridge import protocol
from tests.support.mosquitto import Mosquitto

WAIT = 30
PACKET_TOO_LARGE = 0x95
REPO = Path(__file__).resolve().parents[2]


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + varint(len(body)) + body


def utf8(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    """An MQTT 5 PUBLISH, QoS 1, without properties."""
    return packet(0x32, utf8(topic) + struct.pack("!H", packet_id) + b"\x00" + payload)


def publish_of_size(topic: str, size: int, packet_id: int) -> bytes:
    """A PUBLISH on ``topic`` that is exactly ``size`` bytes long, as MQTT counts a packet."""
    overhead = len(publish_packet(topic, b"", packet_id))
    data = publish_packet(topic, b"x" * (size - overhead), packet_id)
    if len(data) != size:  # the Remaining Length grew by a byte: one byte less of payload
        data = publish_packet(topic, b"x" * (size - overhead - (len(data) - size)), packet_id)
    assert len(data) == size
    return data


class RawClient:
    """An MQTT 5 client on a bare socket: sends bytes, reads whole packets."""

    def __init__(self, broker: Mosquitto) -> None:
        self.sock = socket.create_connection((broker.host, broker.port), timeout=WAIT)
        connect = utf8("MQTT") + bytes([5, 0x02]) + struct.pack("!H", 60) + b"\x00"
        self.sock.sendall(packet(0x10, connect + utf8(f"raw-{uuid.uuid4().hex[:8]}")))
        kind, body = self.read()
        assert kind == 0x20 and body[1] == 0, (kind, body)

    def read(self) -> tuple[int, bytes]:
        """The next packet's type (high nibble of the first byte) and body; (0, b"") at EOF."""
        first = self.sock.recv(1)
        if not first:
            return 0, b""
        length, shift = 0, 0
        while True:
            byte = self.sock.recv(1)[0]
            length += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        body = b""
        while len(body) < length:
            chunk = self.sock.recv(length - len(body))
            if not chunk:
                break
            body += chunk
        return first[0] & 0xF0, body

    def close(self) -> None:
        self.sock.close()


class Subscriber:
    """A paho MQTT 5 subscriber to everything; remembers the CONNACK's properties."""

    def __init__(self, broker: Mosquitto) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.received: list[tuple[str, int]] = []
        self.cond = threading.Condition()
        self.connack_properties = None
        subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe("#", qos=1)
        assert subscribed.wait(WAIT), "no SUBACK"

    def _on_connect(self, client, userdata, flags, rc, properties):
        self.connack_properties = properties

    def _on_message(self, client, userdata, message):
        with self.cond:
            self.received.append((message.topic, len(message.payload)))
            self.cond.notify_all()

    def wait_for(self, topic: str) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: any(t == topic for t, _ in self.received), timeout=WAIT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path):
    with Mosquitto(tmp_path / "broker") as b:
        yield b


def test_the_limit_is_the_hub_payload_limit_plus_the_largest_publish_header():
    # Any legal topic (up to 65,535 bytes) with the hub's largest payload fits.
    largest_legal = len(publish_packet("t/" + "x" * 65_533, b"x" * protocol.MAX_PAYLOAD_BYTES, 1))
    assert largest_legal <= MOSQUITTO_MAX_PACKET_SIZE
    assert MOSQUITTO_MAX_PACKET_SIZE - largest_legal <= 1024  # room for properties, not for payload
    assert MOSQUITTO_MAX_PACKET_SIZE == 82_444


def test_the_broker_announces_the_limit(broker):
    sub = Subscriber(broker)
    try:
        assert sub.connack_properties.MaximumPacketSize == MOSQUITTO_MAX_PACKET_SIZE
    finally:
        sub.close()


def test_the_broker_refuses_a_packet_over_the_hub_limit(broker):
    sub = Subscriber(broker)
    at_limit, over = "size/at-limit", "size/over"
    try:
        publisher = RawClient(broker)
        publisher.sock.sendall(publish_of_size(at_limit, MOSQUITTO_MAX_PACKET_SIZE, 1))
        assert publisher.read() == (0x40, struct.pack("!H", 1))  # PUBACK, success
        assert sub.wait_for(at_limit)

        # Mosquitto counts a packet without its Remaining Length bytes (3 here), so the
        # smallest packet it refuses is 4 bytes over the limit as MQTT counts it. It decides
        # on the fixed header alone, before reading the rest: only that much is sent, as
        # the rest would reach a closed socket, whose reset could swallow the DISCONNECT.
        oversize = publish_of_size(over, MOSQUITTO_MAX_PACKET_SIZE + 4, 2)
        publisher.sock.sendall(oversize[:4])
        kind, body = publisher.read()
        assert (kind, body[:1]) == (0xE0, bytes([PACKET_TOO_LARGE]))  # DISCONNECT, "Packet too large"
        assert publisher.read() == (0, b"")  # and the connection is closed
        publisher.close()

        # A marker sent afterwards arrives; the refused packet never did.
        marker = RawClient(broker)
        marker.sock.sendall(publish_packet("size/marker", b"m", 3))
        assert marker.read()[0] == 0x40
        marker.close()
        assert sub.wait_for("size/marker")
        assert [t for t, _ in sub.received] == [at_limit, "size/marker"]
        assert sub.received[0][1] > protocol.MAX_PAYLOAD_BYTES
    finally:
        sub.close()


def test_every_mosquitto_config_the_project_writes_sets_the_limit(tmp_path, monkeypatch):
    line = f"max_packet_size {MOSQUITTO_MAX_PACKET_SIZE}"
    spec = importlib.util.spec_from_file_location("run_demo_under_test", REPO / "scripts" / "run_demo.py")
    run_demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_demo)
    monkeypatch.setattr(run_demo, "VAR", tmp_path)
    assert line in run_demo.mosquitto_config(root_user=False).read_text().splitlines()

    broker = Mosquitto(tmp_path / "support")
    broker._write_config()
    assert line in broker.conf_path.read_text().splitlines()

    assert line in (REPO / "hardware_docs" / "broker-security.md").read_text()
