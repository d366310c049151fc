"""The hub's MQTT client: paho 2.2 with two adaptations for speed, and the broker URL.

Contract: :meth:`MqttTarget.parse` reads ``MQTT_URL`` (with the bridge's parser,
:func:`firmware_bridge.protocol.parse_mqtt_url`), :meth:`MqttTarget.client` builds
an MQTT 5 client for it, :func:`publish_once` publishes one QoS 1 message and waits
for the broker's PUBACK. :class:`FastProperties` and :class:`BufferedClient` change
how paho decodes and reads packets, never what it does with them.

Called by the hub (:mod:`devices.hub`) and by :mod:`devices.commands`. Imports
paho and the MQTT contract only: no Django.
"""

from __future__ import annotations

import dataclasses
import socket
import ssl
import struct
import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt import _packet as _paho_packet
from paho.mqtt.client import PUBACK
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from firmware_bridge import protocol


def default_client_id(index: int = 0) -> str:
    """A stable id per host and worker index: the broker keeps this hub's session under it."""
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:40] or "host"
    return f"hub-{host}-{index}"


class FastProperties(Properties):
    """paho's MQTT 5 ``Properties`` without rebuilding its lookup tables for every packet.

    paho creates one ``Properties`` per received PUBLISH; its ``__init__``
    builds three tables (27 names) and ``unpack`` first ``clear()``s every
    name with ``str.replace``: about a quarter of the receive path's CPU here.
    This subclass shares the (never mutated) tables and clears by dictionary
    lookup; everything else is paho's. Installed for paho's packet decoder by
    :func:`install_fast_properties` (``tests/devices/test_hub.py`` checks it
    decodes exactly like the original).
    """

    _tables: tuple[list, dict, dict] | None = None
    _compressed: tuple[str, ...] = ()

    def __init__(self, packetType: int) -> None:
        tables = FastProperties._tables
        if tables is None:
            ref = Properties(packetType)
            tables = FastProperties._tables = (ref.types, ref.names, ref.properties)
            FastProperties._compressed = tuple(name.replace(" ", "") for name in ref.names)
        object.__setattr__(self, "packetType", packetType)
        object.__setattr__(self, "types", tables[0])
        object.__setattr__(self, "names", tables[1])
        object.__setattr__(self, "properties", tables[2])

    def clear(self) -> None:
        attrs = self.__dict__
        for name in FastProperties._compressed:
            if name in attrs:
                delattr(self, name)


def install_fast_properties() -> None:
    """Make paho's packet decoder build :class:`FastProperties` (process-wide, idempotent)."""
    _paho_packet.Properties = FastProperties


class BufferedClient(mqtt.Client):
    """paho's client, reading the socket in large chunks.

    Stock paho 2.2 reads one packet per ``select()`` and each packet with
    several small ``recv()`` calls; draining a backlog of small QoS 1 messages
    is then bound by system calls (measured here: 3,900 msg/s stock, 6,700
    buffered, receive only). This keeps a read buffer and parses every complete
    packet in it before going back to ``select()``. Only the two read hooks
    change; the buffer is dropped on every (re)connect.
    """

    _READ_CHUNK = 256 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(self._READ_CHUNK)
            if not data:
                return data
            self._rbuf, self._rpos = data, 0
        end = self._rpos + bufsize
        out = self._rbuf[self._rpos : end]
        self._rpos = min(end, len(self._rbuf))
        return out

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while rc == mqtt.MQTT_ERR_SUCCESS and self._sock is not None and self._rpos < len(self._rbuf):
            rc = super().loop_read(max_packets)
        return rc

    def reconnect(self) -> mqtt.MQTTErrorCode:
        self._rbuf, self._rpos = b"", 0
        return super().reconnect()

    def ack_many(self, mids: list[int]) -> None:
        """PUBACK many QoS 1 messages in one write: the same 4 bytes per message that ``ack()`` sends
        (``_send_command_with_mid``), queued as one buffer instead of one packet and one wake-up each."""
        if not mids:
            return
        packet = b"".join(struct.pack("!BBH", PUBACK, 2, mid) for mid in mids)
        self._packet_queue(PUBACK, packet, 0, 1)


@dataclasses.dataclass(frozen=True)
class MqttTarget:
    """Where the hub's broker is and how to log in (``MQTT_URL``)."""

    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def parse(cls, url: str) -> MqttTarget:
        """Read ``mqtt[s]://[user[:password]@]host[:port]``; ValueError naming ``MQTT_URL`` if it is not."""
        try:
            host, port, tls, user, password = protocol.parse_mqtt_url(url)
        except ValueError as exc:
            raise ValueError(f"MQTT_URL {exc}") from None
        return cls(host=host, port=port, username=user or None, password=password or None, tls=tls)

    def client(self, client_id: str, *, buffered: bool = False, **kwargs: Any) -> mqtt.Client:
        """An MQTT 5 client with these credentials (TLS verified when ``mqtts``); not connected."""
        cls = BufferedClient if buffered else mqtt.Client
        client = cls(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, **kwargs)
        if self.username:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        return client


def publish_once(
    url: str, topic: str, payload: bytes, *, expiry_s: int | None = None, timeout: float = 10.0
) -> None:
    """Connect, publish one QoS 1 message, wait for the broker's PUBACK, disconnect. Raises on failure."""
    target = MqttTarget.parse(url)
    client = target.client(f"hub-cmd-{uuid.uuid4().hex[:12]}")
    connected = threading.Event()
    result: dict[str, Any] = {}

    def on_connect(c, userdata, flags, reason_code, properties):
        result["connect"] = reason_code
        connected.set()

    client.on_connect = on_connect
    client.connect(target.host, target.port, keepalive=30)
    client.loop_start()
    try:
        if not connected.wait(timeout):
            raise TimeoutError("no CONNACK from the broker")
        if result["connect"].is_failure:
            raise ConnectionError(f"broker refused the connection: {result['connect']}")
        props = None
        if expiry_s:
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = int(expiry_s)
        info = client.publish(topic, payload, qos=protocol.QOS, retain=False, properties=props)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise TimeoutError("the broker did not acknowledge the command")
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(mqtt.error_string(info.rc))
    finally:
        client.disconnect()
        client.loop_stop()
