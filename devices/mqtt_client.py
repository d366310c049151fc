"""The hub's MQTT client: paho 2.2 with two adaptations for speed, and the broker URL.

Contract: :meth:`MqttTarget.parse` reads ``MQTT_URL`` (with the bridge's parser,
:func:`firmware_bridge.protocol.parse_mqtt_url`), :meth:`MqttTarget.client` builds
an MQTT 5 client for it. :class:`FastProperties` and :class:`BufferedClient` change
how paho decodes and reads packets, never what it does with them.

Called by the hub (:mod:`devices.hub`), whose command publisher uses the same client. Imports
paho and the MQTT contract only: no Django.
"""

from __future__ import annotations

import dataclasses
import socket
import ssl
import struct
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt import _packet as _paho_packet
from paho.mqtt.client import PUBACK
from paho.mqtt.client import MalformedPacket as _MalformedPacket
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


def _empty_in_packet() -> dict[str, Any]:
    """paho's ``_in_packet`` between packets (as ``_packet_read`` resets it)."""
    return {
        "command": 0,
        "have_remaining": 0,
        "remaining_count": [],
        "remaining_mult": 1,
        "remaining_length": 0,
        "packet": bytearray(b""),
        "to_process": 0,
        "pos": 0,
    }


class FastMessage(mqtt.MQTTMessage):
    """paho's received message without its ``MQTTMessageInfo`` (built on first use), topic decoded once.

    A received message's ``info`` (a ``threading.Condition`` each) is only for outgoing messages'
    ``wait_for_publish``; paho builds one per PUBLISH received. ``topic`` raises
    ``UnicodeDecodeError`` for a topic that is not UTF-8, as paho's does.
    """

    def __init__(self, mid: int = 0, topic: bytes = b"") -> None:
        self.timestamp = 0.0
        self.state = mqtt.mqtt_ms_invalid
        self.dup = False
        self.mid = mid
        self._topic = topic
        self._topic_str: str | None = None
        self.payload = b""
        self.qos = 0
        self.retain = False
        self._info: mqtt.MQTTMessageInfo | None = None
        self.properties = None

    @property
    def info(self) -> mqtt.MQTTMessageInfo:  # type: ignore[override]
        if self._info is None:
            self._info = mqtt.MQTTMessageInfo(self.mid)
        return self._info

    @info.setter
    def info(self, value: mqtt.MQTTMessageInfo) -> None:
        self._info = value

    @property
    def topic(self) -> str:  # type: ignore[override]
        topic = self._topic_str
        if topic is None:
            topic = self._topic_str = self._topic.decode("utf-8")
        return topic

    @topic.setter
    def topic(self, value: bytes) -> None:
        self._topic = value
        self._topic_str = None


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
            if self._in_packet["command"] == 0:
                rc = self._handle_buffered()
                if rc != mqtt.MQTT_ERR_SUCCESS or self._rpos >= len(self._rbuf):
                    break
            # A packet cut by the end of the buffer (or a malformed length): paho reads it.
            rc = super().loop_read(max_packets)
        return rc

    def _handle_buffered(self) -> mqtt.MQTTErrorCode:
        """Hand every complete packet in the buffer to paho's ``_packet_handle``, as ``_packet_read`` does.

        The same state paho's reader leaves in ``_in_packet`` for the handlers (command, remaining
        length, the packet after the fixed header), without its four ``recv`` calls and dictionary
        updates per packet. Stops at a packet the buffer does not hold whole, or whose remaining
        length is malformed (more than 4 bytes): paho's reader takes it from there.
        """
        buf = self._rbuf
        end = len(buf)
        pos = self._rpos
        rc = mqtt.MQTT_ERR_SUCCESS
        try:
            while pos < end and self._sock is not None:
                i = pos + 1
                length = 0
                mult = 1
                while True:
                    if i >= end or i - pos > 4:
                        return rc
                    byte = buf[i]
                    i += 1
                    length += (byte & 127) * mult
                    mult *= 128
                    if not byte & 128:
                        break
                if i + length > end:
                    return rc
                self._in_packet = {
                    "command": buf[pos],
                    "have_remaining": 1,
                    "remaining_count": list(buf[pos + 1 : i]),
                    "remaining_mult": mult,
                    "remaining_length": length,
                    "packet": buf[i : i + length],
                    "to_process": 0,
                    "pos": 0,
                }
                pos = self._rpos = i + length
                try:
                    rc = self._packet_handle()
                except _MalformedPacket as exc:
                    self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
                    rc = mqtt.MQTT_ERR_PROTOCOL
                self._in_packet = _empty_in_packet()
                if rc > 0:
                    return self._loop_rc_handle(rc)
            return rc
        finally:
            with self._msgtime_mutex:
                self._last_bytes_received = mqtt.time_func()

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        """paho's ``_handle_publish`` for the common PUBLISH (QoS 0 or 1, MQTT 5, no properties).

        The same message, acknowledged the same way (``manual_ack``), but built as a
        :class:`FastMessage` (no ``MQTTMessageInfo`` and its ``threading.Condition`` per message,
        the topic decoded once) and handed to ``on_message`` without matching the topic against
        per-filter callbacks when there are none, and without building debug log arguments when
        nothing logs. Anything else (QoS 2, properties, MQTT 3, a short packet): paho's own.
        """
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        packet = self._in_packet["packet"]
        if qos > 1 or self._protocol != mqtt.MQTTv5 or len(packet) < 2:
            return super()._handle_publish()
        slen = (packet[0] << 8) | packet[1]
        at = 2 + slen
        if qos:
            if len(packet) < at + 3:
                return super()._handle_publish()
            mid = (packet[at] << 8) | packet[at + 1]
            at += 2
        else:
            mid = 0
            if len(packet) < at + 1:
                return super()._handle_publish()
        if packet[at] != 0:  # properties present
            return super()._handle_publish()
        message = FastMessage(mid, packet[2 : 2 + slen])
        message.dup = (header & 0x08) != 0
        message.qos = qos
        message.retain = (header & 0x01) != 0
        message.properties = _paho_packet.Properties(PacketTypes.PUBLISH)
        message.payload = packet[at + 1 :]
        if self._logger is not None or self.on_log is not None:
            try:
                print_topic = message._topic.decode("utf-8")
            except UnicodeDecodeError:
                print_topic = f"TOPIC WITH INVALID UTF-8: {message._topic!r}"
            self._easy_log(
                mqtt.MQTT_LOG_DEBUG,
                "Received PUBLISH (d%d, q%d, r%d, m%d), '%s', properties=%s, ...  (%d bytes)",
                message.dup, message.qos, message.retain, message.mid,
                print_topic, message.properties, len(message.payload),
            )  # fmt: skip
        message.timestamp = mqtt.time_func()
        self._handle_on_message(message)
        if qos == 0 or self._manual_ack:
            return mqtt.MQTT_ERR_SUCCESS
        return self._send_puback(message.mid)

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        root = self._on_message_filtered._root
        if root._children or root._content is not None:
            return super()._handle_on_message(message)
        with self._callback_mutex:
            on_message = self.on_message
        if on_message:
            with self._in_callback_mutex:
                try:
                    on_message(self, self._userdata, message)
                except Exception as err:
                    self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                    if not self.suppress_exceptions:
                        raise

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
        client.on_socket_open = protocol.send_at_once
        return client
