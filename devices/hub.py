"""The hub: MQTT in, InfluxDB and the database out, at least once.

Three threads:

* paho's network loop receives messages and only queues them (``on_message``);
* the hub's main thread validates each one with ``protocol.decode_*``, applies
  events, command acks and bridge flags to the database right away and statuses
  in batches — every status taken from the inbox in one pass (at most
  ``status_batch``), in one transaction (:func:`devices.services.apply_statuses`),
  before anything else touches those machines — turns telemetry and state into
  line protocol, and cuts batches (``batch_size`` lines or ``batch_interval`` seconds);
* a writer thread writes each batch to InfluxDB — or, while InfluxDB is down,
  to the disk spool (:mod:`devices.influx_spool`) — and only *then*
  acknowledges the batch's messages to the broker (paho's manual ack), in the
  order they arrived. The spool drains when InfluxDB answers again.

MQTT 5 with ``clean_start=False`` and a Session Expiry Interval: the broker
keeps the session (subscriptions and queued QoS 1 messages) while the hub is
stopped, and re-sends unacknowledged messages after a crash; points carry the
message's ``ts``, so a re-sent message overwrites itself in InfluxDB. The hub
never unsubscribes, not even on SIGTERM (flush, ack, disconnect). Telemetry and
events come through ``$share/<group>/…`` so several hubs split them; status,
``cmd/ack`` and bridge ``online`` come through plain subscriptions in every
hub (brokers send no retained messages to shared subscriptions), and the
database claims in :mod:`devices.services` make their effects happen once.

Malformed or hostile messages are counted per reason, logged with their topic,
and acknowledged like the others (so they never block the session). Logging is
rate-limited: one line per machine and reason per ``log_repeat_interval`` (with
the count of the repeats held back), and at most ``log_malformed_per_s`` overall.
Bounds (see :mod:`firmware_bridge.protocol`): a ``ts`` outside the window around the
hub's clock refuses the message; a reading that breaks the contract is left out of
an otherwise valid message (``readings_refused``); a machine's reading names beyond
:data:`~firmware_bridge.protocol.MAX_READING_NAMES` are left out too
(``reading_names_refused``). A line InfluxDB refuses is isolated from its batch and
kept in the spool's ``rejected`` table (``points_rejected``); the batch's other
points are written.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import queue
import socket
import ssl
import struct
import threading
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from typing import Any

import paho.mqtt.client as mqtt
from django.db import close_old_connections
from paho.mqtt import _packet as _paho_packet
from paho.mqtt.client import PUBACK
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices import services
from devices.influx import HUB, InfluxError, InfluxStore, fields_line, state_line, tag_prefix
from devices.influx_spool import Spool
from devices.models import Bridge
from firmware_bridge import protocol
from firmware_bridge.ratelimit import RateLimitedLog

log = logging.getLogger("devices.hub")

SESSION_EXPIRY_S = 24 * 3600
MAX_RECEIVE_MAXIMUM = 65535

# Reasons a message is refused (the keys of HubStats.malformed).
BAD_TOPIC = "bad_topic"
TOO_LARGE = "too_large"
BAD_JSON = "bad_json"
INVALID = "invalid"
UNKNOWN_MACHINE = "unknown_machine"
UNKNOWN_BRIDGE = "unknown_bridge"
UNEXPECTED = "unexpected_topic"
FAILED = "processing_failed"

#: The validating decoder of each topic kind the hub consumes (commands are the bridges' business).
DECODERS = {
    protocol.STATUS: protocol.decode_status,
    protocol.TELEMETRY: protocol.decode_telemetry,
    protocol.EVENT: protocol.decode_event,
    protocol.CMD_ACK: protocol.decode_cmd_ack,
    protocol.ONLINE: protocol.decode_online,
}


def default_client_id(index: int = 0) -> str:
    """A stable id per host and worker index: the broker keeps this hub's session under it."""
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:40] or "host"
    return f"hub-{host}-{index}"


# ------------------------------------------------------------------------------ MQTT client


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


# --------------------------------------------------------------------------------- MQTT URLs


@dataclasses.dataclass(frozen=True)
class MqttTarget:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def parse(cls, url: str) -> MqttTarget:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"MQTT_URL must start with mqtt:// or mqtts://, not {url!r}")
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            username=urllib.parse.unquote(parts.username) if parts.username else None,
            password=urllib.parse.unquote(parts.password) if parts.password else None,
            tls=tls,
        )

    def client(self, client_id: str, *, buffered: bool = False, **kwargs: Any) -> mqtt.Client:
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


# ------------------------------------------------------------------------------------- stats


class HubStats:
    """Counters, readable from any thread as :meth:`snapshot` (the ``hub_stats`` dict).

    Each counter is incremented by one thread only (the processing thread or
    the writer), so no lock is needed; copying a dict is atomic under the GIL.
    """

    def __init__(self) -> None:
        self.counters: collections.Counter[str] = collections.Counter()
        self.writer: collections.Counter[str] = collections.Counter()
        self.malformed: collections.Counter[str] = collections.Counter()

    def add(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def add_writer(self, name: str, n: int = 1) -> None:
        self.writer[name] += n

    def refuse(self, reason: str) -> None:
        self.malformed[reason] += 1
        self.counters["malformed"] += 1

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.counters.copy())
        out.update(self.writer.copy())
        out["malformed_by_reason"] = dict(self.malformed.copy())
        return out


def reason_of(exc: protocol.ProtocolError) -> str:
    text = str(exc)
    if text.startswith("topic"):
        return BAD_TOPIC
    if text.startswith("payload: ") and "bytes, more than" in text:
        return TOO_LARGE
    if text.startswith(("payload: not", "payload: must be", "payload: nested")):
        return BAD_JSON
    return INVALID


@dataclasses.dataclass
class Batch:
    lines: list[str] = dataclasses.field(default_factory=list)
    acks: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)  # (mid, qos, generation)
    telemetry: int = 0
    started: float = 0.0


# --------------------------------------------------------------------------------------- hub


class Hub:
    """One hub worker. ``run()`` blocks until :meth:`stop` (or SIGTERM via the command)."""

    def __init__(
        self,
        *,
        mqtt_url: str,
        store: InfluxStore,
        spool: Spool,
        client_id: str | None = None,
        group: str | None = "hub",
        batch_size: int = 5000,
        batch_interval: float = 1.0,
        receive_maximum: int | None = None,
        session_expiry_s: int = SESSION_EXPIRY_S,
        stats_interval: float = 60.0,
        housekeeping_interval: float = 5.0,
        write_stats: bool = True,
        log_malformed_per_s: float = 20.0,
        log_repeat_interval: float = 60.0,
        readings_interval: float = 1.0,
        status_batch: int = 500,
    ) -> None:
        self.target = MqttTarget.parse(mqtt_url)
        self.store = store
        self.spool = spool
        self.client_id = client_id or default_client_id()
        self.group = group
        self.batch_size = batch_size
        self.batch_interval = batch_interval
        # Unacknowledged messages: the batch being cut, up to two queued for the writer and the
        # one being written. The window must hold all of them, or the broker stalls the hub.
        self.receive_maximum = min(MAX_RECEIVE_MAXIMUM, receive_maximum or 4 * batch_size + 1000)
        self.session_expiry_s = session_expiry_s
        self.stats_interval = stats_interval
        self.housekeeping_interval = housekeeping_interval
        self.write_stats = write_stats
        self.log_malformed_per_s = log_malformed_per_s
        self.readings_interval = readings_interval
        self.status_batch = status_batch

        self.stats = HubStats()
        self.index = services.MachineIndex()
        self._inbox: collections.deque[tuple[mqtt.MQTTMessage, int]] = collections.deque()
        # Connection generation: a PUBACK is only sent on the connection that delivered the
        # message. After a reconnect the broker re-sends what was unacknowledged, possibly
        # reusing packet ids, so an old id acknowledged late could acknowledge another message.
        self._generation = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._writes: queue.Queue[Batch | None] = queue.Queue(maxsize=2)
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._readings: dict[int, services.Readings] = {}
        # Statuses decoded but not applied yet (see _apply_statuses), and their machines.
        self._statuses: list[tuple[services.MachineInfo, protocol.Status]] = []
        self._status_machines: set[int] = set()
        self._topics: dict[str, protocol.ParsedTopic] = {}
        self._readings_applied = 0.0
        self._batch = Batch()
        self._influx_up = True
        self._next_influx_try = 0.0
        self._log_tokens = log_malformed_per_s
        self._log_refill = time.monotonic()
        self._suppressed_logs = 0
        self._repeats = RateLimitedLog(log, interval_s=log_repeat_interval)
        # Reading names seen per machine id (seeded from its live readings): see _allowed_readings.
        self._names: dict[int, set[str]] = {}
        install_fast_properties()
        self.client = self.target.client(self.client_id, manual_ack=True, buffered=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        # Come back quickly after a broker restart: shared subscriptions need the re-subscription.
        self.client.reconnect_delay_set(min_delay=0.2, max_delay=5)

    # -- subscriptions

    def subscriptions(self) -> list[str]:
        """Plain: status, online (retained) and cmd/ack; shared: the telemetry and event streams.

        ``group`` None (``run_hub --group none``) subscribes to the streams plainly too: for a
        single hub. Measured with Mosquitto 2.0.11: a persistent session's *shared*
        subscriptions are not restored when the broker restarts (plain ones are), so stream
        messages published between a broker restart and the hub's re-subscription are lost
        to a shared subscription and kept for a plain one.
        """
        streams = [protocol.filter_all_telemetry(), protocol.filter_all_events()]
        if self.group:
            streams = [protocol.shared(self.group, f) for f in streams]
        return [
            protocol.filter_all_status(),
            protocol.filter_all_online(),
            protocol.filter_all_cmd_acks(),
            *streams,
        ]

    # -- paho callbacks (network thread)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT connection refused: %s", reason_code)
            return
        log.info(
            "connected to %s:%s as %s (session present: %s)",
            self.target.host,
            self.target.port,
            self.client_id,
            flags.session_present,
        )
        self._generation += 1
        self._connected.set()
        # Subscribing again is harmless with a kept session and repairs a lost one.
        client.subscribe([(f, mqtt.SubscribeOptions(qos=protocol.QOS)) for f in self.subscriptions()])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        bad = [rc for rc in reason_codes if rc.is_failure]
        if bad:
            log.error("subscription refused: %s", bad)
        else:
            log.info("subscribed to %d filters", len(reason_codes))
        self._subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._generation += 1  # what this connection delivered and is still unacked comes again
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("disconnected from the broker (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, msg) -> None:
        self._inbox.append((msg, self._generation))
        if len(self._inbox) == 1:
            self._wake.set()

    # -- lifecycle

    def start(self) -> None:
        """Connect (persistent MQTT 5 session) and start the network and writer threads."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        props.ReceiveMaximum = self.receive_maximum
        self.index.reload()
        self._writer = threading.Thread(target=self._write_loop, name="hub-writer", daemon=True)
        self._writer.start()
        self.client.connect_async(
            self.target.host, self.target.port, keepalive=30, clean_start=False, properties=props
        )
        self.client.loop_start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        """Process messages until :meth:`stop`; then flush, ack, and disconnect without unsubscribing."""
        self.start()
        next_housekeeping = time.monotonic() + 1.0
        next_stats = time.monotonic() + self.stats_interval
        try:
            while not self._stop.is_set():
                self._wake.clear()
                self._drain_inbox()
                now = time.monotonic()
                if self._batch.acks and now - self._batch.started >= self.batch_interval:
                    self._cut_batch()
                if self._readings and now - self._readings_applied >= self.readings_interval:
                    self._apply_readings()
                if now >= next_housekeeping:
                    self._housekeeping()
                    next_housekeeping = now + self.housekeeping_interval
                if now >= next_stats:
                    self._log_stats()
                    next_stats = now + self.stats_interval
                if not self._inbox:
                    self._wake.wait(0.05)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        self._drain_inbox(limit=len(self._inbox))
        self._apply_readings()
        self._cut_batch()
        self._writes.put(None)
        self._writer.join(timeout=120)
        self._log_stats()
        # Never unsubscribe: the session (and its queue) must outlive this process.
        self.client.disconnect()
        self.client.loop_stop()
        self.spool.close()
        self.store.close()

    # -- processing (main thread)

    def _drain_inbox(self, limit: int | None = 2000) -> None:
        n = 0
        while self._inbox and (limit is None or n < limit):
            msg, generation = self._inbox.popleft()
            n += 1
            try:
                self._handle(msg)
            except Exception:
                # A database hiccup or a bug must not stop the hub; the message is still acked below
                # (its points, if any, are already in the batch).
                self.stats.refuse(FAILED)
                self._log_failure("process", msg.topic, "failed to process a message on %r", msg.topic)
                close_old_connections()
            self._add_ack(msg, generation)
            if len(self._batch.lines) >= self.batch_size:
                self._cut_batch()
        self._apply_statuses()

    def _add_ack(self, msg: mqtt.MQTTMessage, generation: int) -> None:
        if not self._batch.acks:
            self._batch.started = time.monotonic()
        self._batch.acks.append((msg.mid, msg.qos, generation))

    def _refuse(self, reason: str, topic: str, detail: str, machine: str | None = None) -> None:
        self.stats.refuse(reason)
        self._log_limited(
            reason, machine, "refused message (%s) on topic %r: %s", reason, topic[:300], detail[:300]
        )

    def _log_failure(self, kind: str, key: str | None, msg: str, *args: object) -> None:
        """Log an unexpected exception with its traceback, at most once per ``key`` and ``kind`` per
        interval: a database that is down fails every message, and must not flood the log."""
        if self._repeats.allow((key, f"failed-{kind}")) is None:
            self._suppressed_logs += 1
            return
        log.exception(msg, *args)

    def _log_limited(self, kind: str, machine: str | None, msg: str, *args: object) -> None:
        """Log a warning at most once per machine and kind per interval, and at most
        ``log_malformed_per_s`` in all (made-up machines are as many keys as the sender likes)."""
        if self._repeats.allow((machine, kind)) is None:
            self._suppressed_logs += 1
            return
        now = time.monotonic()
        self._log_tokens = min(
            self.log_malformed_per_s, self._log_tokens + (now - self._log_refill) * self.log_malformed_per_s
        )
        self._log_refill = now
        if self._log_tokens >= 1:
            self._log_tokens -= 1
            log.warning(msg, *args)
        else:
            self._suppressed_logs += 1

    def _handle(self, msg: mqtt.MQTTMessage) -> None:
        self.stats.add("received")
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            self._refuse(BAD_TOPIC, repr(msg._topic[:200]), "topic is not UTF-8")
            return
        parsed = self._topics.get(topic)
        if parsed is None:
            try:
                parsed = protocol.parse_topic(topic)
            except protocol.ProtocolError as exc:
                self._refuse(BAD_TOPIC, topic, str(exc))
                return
            if len(self._topics) >= 50_000:  # bounded: a flood of made-up topics cannot grow it
                self._topics.clear()
            self._topics[topic] = parsed
        kind = parsed.kind
        decoder = DECODERS.get(kind)
        if decoder is None:
            self._refuse(UNEXPECTED, topic, "the hub does not consume this kind of topic")
            return
        try:
            decoded = decoder(msg.payload, now_ms=protocol.now_ms())
        except protocol.ProtocolError as exc:
            self._refuse(reason_of(exc), topic, str(exc), f"{parsed.lab}/{parsed.machine}")
            return
        if kind != protocol.STATUS and kind != protocol.TELEMETRY:
            self._apply_statuses()  # events, acks and Last Wills come after the statuses before them
        if kind == protocol.ONLINE:
            machines = self.index.for_bridge(parsed.machine)
            if not machines and not Bridge.objects.filter(slug=parsed.machine).exists():
                self._refuse(UNKNOWN_BRIDGE, topic, "no such bridge in the database", UNKNOWN_BRIDGE)
                return
            services.apply_bridge_online(parsed.machine, decoded, machines)  # type: ignore[arg-type]
            self.stats.add("online")
            return
        info = self.index.get(parsed.lab, parsed.machine)  # type: ignore[arg-type]
        if info is None:
            self._refuse(UNKNOWN_MACHINE, topic, "no such machine in the database", UNKNOWN_MACHINE)
            return
        if kind == protocol.TELEMETRY:
            self._telemetry(info, decoded)  # type: ignore[arg-type]
        elif kind == protocol.STATUS:
            self._batch.lines.append(state_line(info.tags, decoded.state, decoded.ts))  # type: ignore[union-attr]
            self._statuses.append((info, decoded))  # type: ignore[arg-type]
            self._status_machines.add(info.id)
            if len(self._statuses) >= self.status_batch:
                self._apply_statuses()
        elif kind == protocol.EVENT:
            if not services.apply_event(info, decoded):  # type: ignore[arg-type]
                self.stats.add("event_duplicates")
            self.stats.add("events")
        elif kind == protocol.CMD_ACK:
            services.apply_cmd_ack(info, decoded)  # type: ignore[arg-type]
            self.stats.add("cmd_acks")

    def _apply_statuses(self) -> None:
        """Apply the statuses gathered so far, in one transaction; never raises.

        Called at the end of each pass over the inbox, when ``status_batch`` are
        waiting, and before anything whose effect depends on them: an event, a
        command ack or a Last Will (any machine), a reading of a machine with a
        status waiting, cutting a write batch (its acks include the statuses').
        The pending readings of these machines are folded in first: their energy
        counter so far belongs to the session a status may close. If the batch
        fails, each status is tried alone, so one bad status costs only itself.
        """
        if not self._statuses:
            return
        items, self._statuses = self._statuses, []
        machines, self._status_machines = self._status_machines, set()
        pending = {i: self._readings.pop(i) for i in machines if i in self._readings}
        if pending:
            try:
                services.apply_readings(pending)
            except Exception:
                self._log_failure("readings", None, "failed to update the live readings")
                close_old_connections()
        try:
            services.apply_statuses(items)
        except Exception:
            self._log_failure(
                "status-batch", None, "failed to apply a batch of %d statuses; trying each alone", len(items)
            )
            close_old_connections()
            failed = 0
            for info, msg in items:
                try:
                    services.apply_statuses([(info, msg)])
                except Exception:
                    failed += 1
                    self.stats.refuse(FAILED)
                    self._log_failure(
                        "status",
                        f"{info.lab}/{info.slug}",
                        "failed to apply a status of %s/%s",
                        info.lab,
                        info.slug,
                    )
                    close_old_connections()
            self.stats.add("status", len(items) - failed)
        else:
            self.stats.add("status", len(items))
        self.stats.add("status_batches")

    def _telemetry(self, info: services.MachineInfo, msg: protocol.Telemetry) -> None:
        if info.id in self._status_machines:
            self._apply_statuses()  # this reading comes after that status
        self.stats.add("telemetry")
        key = f"{info.lab}/{info.slug}"
        if msg.refused:
            self.stats.add("readings_refused", len(msg.refused))
            self._log_limited(
                "reading", key, "readings of %s left out: %s", key, "; ".join(msg.refused)[:300]
            )
        values = {k: float(v) for k, v in self._allowed_readings(info, msg.values).items()}
        if not values:
            return
        line = fields_line(self.index.prefix(info), values, msg.ts)
        if line:
            self._batch.lines.append(line)
            self._batch.telemetry += 1
        current = self._readings.get(info.id)
        if current is None:
            current = self._readings[info.id] = services.Readings(msg.ts, {})
        current.add(msg.ts, values)

    def _allowed_readings(
        self, info: services.MachineInfo, values: Mapping[str, float]
    ) -> Mapping[str, float]:
        """``values`` without the names beyond the machine's :data:`~protocol.MAX_READING_NAMES`.

        The names a machine has are seeded from its live readings in the database (so a
        restart does not grant a new allowance) and kept per hub; new names are admitted in
        alphabetical order while there is room. Every name beyond is counted and logged.
        """
        names = self._names.get(info.id)
        if names is None:
            names = self._names[info.id] = services.reading_names(info.id)
        new = [name for name in values if name not in names]
        if not new:
            return values
        room = protocol.MAX_READING_NAMES - len(names)
        if room > 0:
            names.update(sorted(new)[:room])
        refused = [name for name in new if name not in names]
        if not refused:
            return values
        key = f"{info.lab}/{info.slug}"
        self.stats.add("reading_names_refused", len(refused))
        self._log_limited(
            "reading_names",
            key,
            "readings of %s left out: more than %d distinct names (%s)",
            key,
            protocol.MAX_READING_NAMES,
            ", ".join(sorted(refused))[:300],
        )
        return {name: value for name, value in values.items() if name in names}

    def _apply_readings(self) -> None:
        self._readings_applied = time.monotonic()
        if self._readings:
            readings, self._readings = self._readings, {}
            try:
                services.apply_readings(readings)
            except Exception:
                self._log_failure("readings", None, "failed to update the live readings")
                close_old_connections()

    def _cut_batch(self) -> None:
        """Hand the batch to the writer (blocks while two are waiting: back-pressure)."""
        self._apply_statuses()  # the batch acknowledges them: apply them first
        # The live readings (the board's numbers, the silence check, session energy) are folded
        # in at most every readings_interval: a backlog drains in 5,000-line batches, and the
        # board does not need each one. InfluxDB gets every point regardless.
        if time.monotonic() - self._readings_applied >= self.readings_interval:
            self._apply_readings()
        if not self._batch.acks and not self._batch.lines:
            return
        batch, self._batch = self._batch, Batch()
        self._writes.put(batch)

    def _housekeeping(self) -> None:
        try:
            close_old_connections()
            if time.monotonic() - self.index.loaded_at > 60:
                self.index.reload()  # new machines, changed links and intervals
            services.check_silent(self.index)
            services.expire_commands()
        except Exception:
            self._log_failure("housekeeping", None, "housekeeping failed")

    def _log_stats(self) -> None:
        snap = self.stats.snapshot()
        snap["spool_pending"] = self.spool.pending()
        snap["inbox"] = len(self._inbox)
        suppressed, self._suppressed_logs = self._suppressed_logs, 0
        log.info("hub %s stats: %s (refusals not logged: %d)", self.client_id, snap, suppressed)
        if self.write_stats:
            numbers = {k: float(v) for k, v in snap.items() if isinstance(v, int | float)}
            numbers.update({f"malformed_{k}": float(v) for k, v in snap["malformed_by_reason"].items()})
            line = fields_line(tag_prefix(HUB, {"hub": self.client_id}), numbers, protocol.now_ms())
            if line:
                self._batch.lines.append(line)

    @property
    def hub_stats(self) -> dict[str, Any]:
        return self.stats.snapshot()

    # -- writing (writer thread)

    def _write_loop(self) -> None:
        while True:
            try:
                batch = self._writes.get(timeout=1.0)
            except queue.Empty:
                self._drain_spool()
                continue
            if batch is None:
                return
            t0 = time.perf_counter()
            self._persist(batch.lines)
            t1 = time.perf_counter()
            current = self._generation
            qos1 = []
            for mid, qos, generation in batch.acks:
                if generation != current:
                    continue  # delivered on an earlier connection: the broker sends it again
                if qos == 1:
                    qos1.append(mid)
                elif qos == 2:
                    self.client.ack(mid, qos)
            if isinstance(self.client, BufferedClient):
                self.client.ack_many(qos1)
            else:
                for mid in qos1:
                    self.client.ack(mid, 1)
            self.stats.add_writer("write_ms", round((t1 - t0) * 1000))
            self.stats.add_writer("ack_ms", round((time.perf_counter() - t1) * 1000))
            self.stats.add_writer("acked", len(batch.acks))
            self.stats.add_writer("batches")
            self._drain_spool()

    def _persist(self, lines: list[str]) -> None:
        """Write to InfluxDB, else to the spool; return only when the lines are durable somewhere."""
        if not lines:
            return
        if self._influx_up or time.monotonic() >= self._next_influx_try:
            try:
                refused = self._write_isolating(lines)
            except InfluxError as exc:
                if self._influx_up:
                    log.warning("InfluxDB unavailable, spooling to %s: %s", self.spool.path, exc)
                self._influx_up = False
                self._next_influx_try = time.monotonic() + 1.0
                self.stats.add_writer("influx_write_errors")
            else:
                if not self._influx_up:
                    log.info("InfluxDB is back")
                self._influx_up = True
                self.stats.add_writer("points_written", len(lines) - refused)
                return
        while True:
            try:
                self.spool.append(lines)
                break
            except Exception:
                # The disk is full or broken: keep the messages unacknowledged until it works.
                log.exception("cannot spool %d lines; retrying", len(lines))
                time.sleep(1.0)
        self.stats.add_writer("points_spooled", len(lines))

    def _write_isolating(self, lines: list[str]) -> int:
        """Write ``lines``; keep the ones InfluxDB refuses in the spool's ``rejected`` table.

        One bad line never costs the batch's other points (other machines' among them):
        :meth:`InfluxStore.write_isolating` writes everything the server accepts. Returns
        the number of lines refused; raises :class:`InfluxError` when InfluxDB is unavailable.
        """
        refused = self.store.write_isolating(lines)
        count = 0
        for bad, error in refused:
            self.spool.reject(bad, error)
            count += len(bad)
            self._log_limited(
                "influx_refused",
                None,
                "InfluxDB refused %d line(s), kept in the spool's rejected table: %s (first line: %.200s)",
                len(bad),
                error[:300],
                bad[0],
            )
        if count:
            self.stats.add_writer("points_rejected", count)
        return count

    def _spool_write(self, lines: list[str]) -> None:
        """The spool's writer: refused lines are set apart, the others written."""
        self._write_isolating(lines)

    def _drain_spool(self) -> None:
        if not self._influx_up and time.monotonic() < self._next_influx_try:
            return
        try:
            if self.spool.pending() == 0:
                return
            done = self.spool.drain(self._spool_write, max_batches=4)
        except InfluxError as exc:
            self._influx_up = False
            self._next_influx_try = time.monotonic() + 1.0
            log.debug("spool not drained yet: %s", exc)
            return
        if done:
            if not self._influx_up:
                log.info("InfluxDB is back; draining the spool")
            self._influx_up = True
            self.stats.add_writer("points_drained", done)


def spool_path_for(client_id: str) -> str:
    from django.conf import settings

    return os.path.join(str(settings.VAR_DIR), "hub-spool", f"{client_id}.sqlite3")
