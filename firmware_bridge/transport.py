"""The MQTT side of the bridge: one paho-mqtt 2 client (MQTT 5, QoS 1) and the spool pump.

:class:`Transport` owns the connection:

* Last Will ``{"v":1,"online":false}`` retained on ``fablab/v1/_bridges/{id}/online``;
* reconnects by itself with exponential backoff (paho's ``reconnect_delay_set``);
* TLS with ``ca_file`` for ``mqtts://``; user and password from the URL;
* re-subscribes every registered filter (the machines' ``cmd`` topics and the
  plug adapters' own topics) after every connect;
* an MQTT 5 session that outlives short outages (``session_expiry_s``), so a
  command sent during a Wi-Fi drop still arrives (and is refused if expired);
* tells listeners about each (re)connection through :meth:`add_connect_listener`,
  called from the pump thread (not paho's), so what they publish goes out after
  paho has re-sent its own unacknowledged messages (a stale retained status
  re-sent by paho must not overwrite a fresh one).

:class:`SpoolPump` moves spooled messages to the broker: it hands at most
``window`` of them to paho at once (paho cannot track more than 65,535
unacknowledged messages, and memory on a Pi is small), maps each message id to
its spool row, and deletes a row only after a PUBACK whose MQTT 5 reason code
is a success. A refused message (e.g. reason 135, not authorized) stays
spooled and is retried later. Messages paho was still waiting for when the
connection dropped are re-sent by paho itself after reconnecting; after a
restart the spool replays everything not acknowledged, oldest first.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from firmware_bridge import protocol
from firmware_bridge.config import MqttSection
from firmware_bridge.spool import Spool

log = logging.getLogger(__name__)

MessageCallback = Callable[[str, bytes], None]


class Transport:
    """One MQTT connection for the whole bridge. Thread-safe."""

    def __init__(self, cfg: MqttSection, bridge_id: str) -> None:
        self.cfg = cfg
        self.bridge_id = bridge_id
        self.online_topic = protocol.topic_bridge_online(bridge_id)
        client_id = cfg.client_id or f"fablab-bridge-{bridge_id}"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, reconnect_on_failure=True
        )
        # A callback that raises must never end paho's network thread.
        self.client.suppress_exceptions = True
        self.client.enable_logger(logging.getLogger("firmware_bridge.paho"))
        self.client.will_set(self.online_topic, protocol.WILL_PAYLOAD, qos=protocol.QOS, retain=True)
        if cfg.username is not None:
            self.client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls:
            self.client.tls_set(
                ca_certs=str(cfg.ca_file) if cfg.ca_file else None, tls_version=ssl.PROTOCOL_TLS_CLIENT
            )
        self.client.reconnect_delay_set(
            min_delay=max(1, round(cfg.reconnect_min_s)), max_delay=round(cfg.reconnect_max_s)
        )
        self.client.max_inflight_messages_set(cfg.max_inflight)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_connect_fail = self._on_connect_fail
        self._failures = 0
        #: Why the broker last refused the connection (CONNACK reason), for diagnostics.
        self.last_refusal: str | None = None
        self.client.on_message = self._on_unexpected_message
        self._subs: dict[str, MessageCallback] = {}
        self._subs_lock = threading.Lock()
        self._connected = threading.Event()
        #: Incremented on every successful connect; the pump compares it to notice reconnects.
        self.generation = 0
        #: (mid, failed, reason) for every PUBACK, consumed by the pump thread.
        self.acks: collections.deque[tuple[int, bool, str]] = collections.deque()
        self.wakeup = threading.Event()
        self._connect_listeners: list[Callable[[], None]] = []
        self._started = False

    # ----------------------------------------------------------- life cycle

    def start(self) -> None:
        """Connect in the background; paho keeps retrying until :meth:`stop`."""
        props = Properties(PacketTypes.CONNECT)
        if self.cfg.session_expiry_s:
            props.SessionExpiryInterval = self.cfg.session_expiry_s
        # clean_start False: keep the broker-side session (queued commands) across reconnects and restarts.
        self.client.connect_async(
            self.cfg.host,
            self.cfg.port,
            keepalive=self.cfg.keepalive_s,
            clean_start=not self.cfg.session_expiry_s,
            properties=props,
        )
        self.client.loop_start()
        self._started = True
        log.info("connecting to %s as %s", self.cfg.redacted_url(), self.client._client_id.decode())

    def stop(self, *, graceful: bool = True) -> None:
        """Publish ``online: false`` (graceful) and disconnect; the will is not sent after a clean disconnect."""
        if not self._started:
            return
        if graceful and self.connected:
            info = self.client.publish(
                self.online_topic,
                protocol.encode(protocol.BridgeOnline(online=False, ts=protocol.now_ms())),
                qos=protocol.QOS,
                retain=True,
            )
            with contextlib.suppress(RuntimeError, ValueError):  # disconnected: the will says the same
                info.wait_for_publish(timeout=5)
        self.client.disconnect()
        self.client.loop_stop()
        self._started = False

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def add_connect_listener(self, fn: Callable[[], None]) -> None:
        """``fn()`` runs in the pump thread after every (re)connection."""
        self._connect_listeners.append(fn)

    def run_connect_listeners(self) -> None:
        for fn in list(self._connect_listeners):
            try:
                fn()
            except Exception:
                log.exception("connect listener %r failed", fn)

    # ------------------------------------------------------------ callbacks

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.last_refusal = str(reason)
            self._failures += 1
            if self._failures == 1 or self._failures % 30 == 0:
                log.error(
                    "broker %s refused the connection: %s (attempt %d); check the user, password and ACL",
                    self.cfg.redacted_url(),
                    reason,
                    self._failures,
                )
            return
        log.info(
            "connected to %s (session present: %s)", self.cfg.redacted_url(), bool(flags.session_present)
        )
        with self._subs_lock:
            filters = list(self._subs)
        if filters:
            client.subscribe([(f, SubscribeOptions(qos=protocol.QOS)) for f in filters])
        self.generation += 1
        self._failures = 0
        self._connected.set()
        self.wakeup.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._failures += 1
        # One line for the first failure, then one now and then: an outage can last hours.
        if self._failures == 1 or self._failures % 30 == 0:
            log.warning(
                "cannot reach broker %s (attempt %d); spooling and retrying with backoff",
                self.cfg.redacted_url(),
                self._failures,
            )

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was:
            log.warning(
                "disconnected from %s: %s; reconnecting with backoff", self.cfg.redacted_url(), reason
            )

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        # Called with paho's message mutex held: only hand the ack over, never publish from here.
        failed = bool(getattr(reason, "is_failure", False))
        self.acks.append((mid, failed, str(reason)))
        self.wakeup.set()

    def _on_unexpected_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        log.debug("message on %s matched no subscription callback", message.topic)

    # ----------------------------------------------------- publish/subscribe

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> int | None:
        """Publish at QoS 1 if connected; returns paho's message id, or None when not handed over."""
        if not self.connected:
            return None
        info = self.client.publish(topic, payload, qos=protocol.QOS, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            if info.rc == mqtt.MQTT_ERR_NO_CONN:
                # paho keeps a QoS 1 message it could not send and sends it after reconnecting.
                return info.mid
            log.warning("publish on %s not queued: %s", topic, mqtt.error_string(info.rc))
            return None
        return info.mid

    def subscribe(self, topic_filter: str, callback: MessageCallback) -> None:
        """Receive messages matching ``topic_filter`` (QoS 1), now and after every reconnect."""

        def deliver(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
            try:
                callback(message.topic, bytes(message.payload))
            except Exception:
                log.exception("handler for %s failed on a message; message skipped", message.topic)

        with self._subs_lock:
            self._subs[topic_filter] = callback
        self.client.message_callback_add(topic_filter, deliver)
        if self.connected:
            self.client.subscribe(topic_filter, options=SubscribeOptions(qos=protocol.QOS))


class SpoolPump:
    """Moves spooled rows to the broker in order, with a bounded window; deletes them after PUBACK.

    Runs in its own thread; it is also the thread that runs the transport's
    connect listeners and the periodic ``tick`` callbacks of the bridge.
    """

    RETRY_REFUSED_S = 10.0
    DELETE_BATCH = 500
    DELETE_EVERY_S = 0.2

    def __init__(self, transport: Transport, spool: Spool, *, window: int = 1000) -> None:
        self.transport = transport
        self.spool = spool
        self.window = window
        self.inflight: dict[int, int] = {}  # paho mid -> spool row id
        self.cursor = 0  # highest row id handed to paho
        self.refused: dict[int, float] = {}  # row id -> monotonic time to retry
        self._acked: list[int] = []
        self._last_delete = time.monotonic()
        self._seen_generation = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks: list[Callable[[], None]] = []
        self.published = 0
        self.acknowledged = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="spool-pump", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.transport.wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._flush_deletes(force=True)

    def notify(self) -> None:
        """A row was appended: wake the pump."""
        self.transport.wakeup.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._cycle()
            except Exception:
                log.exception("spool pump cycle failed; continuing")
                self._stop.wait(1.0)
            self.transport.wakeup.wait(0.2)
            self.transport.wakeup.clear()

    def _cycle(self) -> None:
        self._take_acks()
        self._flush_deletes()
        t = self.transport
        if t.connected and t.generation != self._seen_generation:
            self._seen_generation = t.generation
            t.run_connect_listeners()
        for tick in list(self.ticks):
            try:
                tick()
            except Exception:
                log.exception("periodic task %r failed", tick)
        if t.connected:
            self._fill()

    def _take_acks(self) -> None:
        acks = self.transport.acks
        while acks:
            mid, failed, reason = acks.popleft()
            row_id = self.inflight.pop(mid, None)
            if row_id is None:
                continue  # status, ack or online message: not spooled
            if failed:
                log.warning(
                    "broker refused spooled message %d (%s); retrying in %.0f s",
                    row_id,
                    reason,
                    self.RETRY_REFUSED_S,
                )
                self.refused[row_id] = time.monotonic() + self.RETRY_REFUSED_S
            else:
                self._acked.append(row_id)
                self.acknowledged += 1

    def _flush_deletes(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if self._acked and (
            force or len(self._acked) >= self.DELETE_BATCH or now - self._last_delete >= self.DELETE_EVERY_S
        ):
            ids, self._acked = self._acked, []
            self.spool.delete(ids)
            self._last_delete = now

    def _fill(self) -> None:
        room = self.window - len(self.inflight)
        # Refill in batches (a quarter of the window at least): one query per batch, not per PUBACK.
        if room <= 0 or (self.inflight and room < max(1, self.window // 4)):
            return
        rows = []
        if self.refused:
            now = time.monotonic()
            due = [rid for rid, at in self.refused.items() if at <= now][:room]
            for rid in due:
                del self.refused[rid]
            rows += self.spool.fetch_ids(due)
        if len(rows) < room:
            rows += self.spool.fetch_after(self.cursor, room - len(rows))
        for row in rows:
            mid = self.transport.publish(row.topic, row.payload)
            if mid is None:
                # Not handed over (disconnected or a paho queue error): try this row again later.
                if row.id <= self.cursor:
                    self.refused[row.id] = time.monotonic() + 1.0
                break
            self.inflight[mid] = row.id
            self.cursor = max(self.cursor, row.id)
            self.published += 1

    @property
    def in_flight(self) -> int:
        return len(self.inflight)
