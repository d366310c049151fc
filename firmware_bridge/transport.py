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

A topic the broker will not take, and answers by dropping the connection
(Mosquitto 2.0.11 closes an MQTT 5 client's connection right after refusing
one of its QoS 1 publishes), would otherwise stall the whole bridge: paho
re-sends it first after every reconnect. So the transport isolates it: after
``QUICK_DROPS`` connections in a row that each ended within
``QUICK_DROP_S`` with messages unacknowledged, the topics of those messages
are *quarantined* (their messages taken back from paho; spooled ones stay in
the spool) and published again one topic at a time, as a probe, after a
backoff. A probe's topic that gets a successful PUBACK is free again; one
whose probe ends in another quick drop is blamed alone and waits twice as
long (up to ``QUARANTINE_MAX_S``). Innocent topics caught in the first round
are freed by their own probes within seconds. A drop that follows a refusal
the broker did answer (a PUBACK with reason 135) is explained by it: only
that topic is held back, with every message of it that paho still holds, and
the drop does not count towards blaming the other topics in flight.
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

#: A connection that ends sooner than this with messages unacknowledged counts as a quick drop.
QUICK_DROP_S = 10.0
#: Quick drops in a row before the topics in flight are quarantined.
QUICK_DROPS = 3
QUARANTINE_MIN_S = 10.0
QUARANTINE_MAX_S = 300.0


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
        self.client.on_pre_connect = self._on_pre_connect
        self.client.on_socket_open = protocol.send_at_once
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
        self._stopping = False
        # Topic isolation (see the module docstring); guarded by _q_lock.
        self._q_lock = threading.Lock()
        self._in_flight: dict[int, str] = {}  # paho mid -> topic, until its PUBACK
        self._connected_at: float | None = None
        self._quick_drops = 0
        self._refused_here = False  # a publish was refused on the current connection
        #: topic -> monotonic time from which it may be probed again.
        self.quarantined: dict[str, float] = {}
        self._quarantine_s: dict[str, float] = {}  # topic -> its current backoff
        self._probe: str | None = None  # the quarantined topic being tried, if any
        self._probe_since = 0.0
        self._to_take_back: list[int] = []

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
        self._stopping = True
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
        self._stopping = False

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
        # Snapshot the filters and mark the connection up in one step under the lock, so that a
        # subscribe() racing with this connect is either in the snapshot or subscribes itself.
        with self._subs_lock:
            filters = list(self._subs)
            if filters:
                client.subscribe([(f, SubscribeOptions(qos=protocol.QOS)) for f in filters])
            self.generation += 1
            self._failures = 0
            with self._q_lock:
                self._connected_at = time.monotonic()
                self._refused_here = False
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
        if was and not self._stopping:
            self._after_drop()

    # ------------------------------------------------------ topic isolation

    def _after_drop(self) -> None:
        """In paho's thread, before it reconnects: count quick drops and quarantine topics if needed."""
        now = time.monotonic()
        with self._q_lock:
            quick = (
                self._connected_at is not None
                and now - self._connected_at < QUICK_DROP_S
                and bool(self._in_flight)
            )
            self._connected_at = None
            explained, self._refused_here = self._refused_here, False
            probe, self._probe = self._probe, None
            if probe is not None and quick and probe in self._in_flight.values():
                suspects = {probe}  # only the probe was new on this connection: blame it alone
            elif explained:
                # The broker refused a publish on this connection (a PUBACK with a failure reason)
                # and then dropped it: the refusal explains the drop, and its topic is already held
                # back. Counting it as an unexplained quick drop would, after a few, blame every
                # innocent topic that happened to be in flight with it.
                suspects = set()
                if probe is not None:  # another topic's refusal ended the probe's connection: later
                    self.quarantined[probe] = now + self._quarantine_s.get(probe, QUARANTINE_MIN_S)
            elif quick:
                self._quick_drops += 1
                if self._quick_drops < QUICK_DROPS:
                    return
                suspects = set(self._in_flight.values())
            else:
                self._quick_drops = 0
                if probe is not None:  # the probe's connection ended for another reason: try it again later
                    self.quarantined[probe] = now + self._quarantine_s.get(probe, QUARANTINE_MIN_S)
                return
            self._quick_drops = 0
            for topic in suspects:
                self._quarantine_locked(topic, now)
            # Every message of a held-back topic leaves paho's queue, not only the suspects': paho
            # would otherwise re-send the rest of a refused topic first thing after reconnecting.
            mids = [mid for mid, topic in self._in_flight.items() if topic in self.quarantined]
            for mid in mids:
                del self._in_flight[mid]
            # Taken out of paho's queue just before it reconnects (on_pre_connect): here, paho may
            # be iterating over that queue.
            self._to_take_back.extend(mids)
            if not suspects:
                return
        log.error(
            "the broker keeps dropping the connection while these topics are in flight: %s; holding them "
            "back (spooled messages stay spooled) and trying them one at a time. Does the broker's ACL "
            "allow them?",
            ", ".join(sorted(suspects)),
        )

    def _quarantine_locked(self, topic: str, now: float) -> None:
        """Under ``_q_lock``: hold ``topic`` back, twice as long as the last time (bounded)."""
        backoff = self._quarantine_s.get(topic)
        backoff = QUARANTINE_MIN_S if backoff is None else min(QUARANTINE_MAX_S, backoff * 2)
        self._quarantine_s[topic] = backoff
        self.quarantined[topic] = now + backoff

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        with self._q_lock:
            mids, self._to_take_back = self._to_take_back, []
        if mids:
            self._take_back(mids)

    def _take_back(self, mids: list[int]) -> None:
        """Remove ``mids`` from paho's outgoing queue so it does not re-send them; the pump re-queues them.

        Runs in paho's thread between two connections, when paho iterates over nothing.
        """
        # paho has no public call for this; its queue and lock are stable across paho-mqtt 2.x.
        with self.client._out_message_mutex:
            for mid in mids:
                self.client._out_messages.pop(mid, None)
        for mid in mids:
            self.acks.append((mid, True, "held back: the broker dropped the connection"))
        self.wakeup.set()

    def quarantine_until(self, topic: str) -> float | None:
        """When ``topic`` may be published again (monotonic), or None if it may be published now.

        The first due quarantined topic becomes the probe and is released; the
        others wait until the probe is settled.
        """
        with self._q_lock:
            until = self.quarantined.get(topic)
            if until is None:
                return None
            now = time.monotonic()
            if self._probe is not None and now - self._probe_since > 2 * QUICK_DROP_S:
                self._probe = None  # its messages went through without trouble, or none were sent
            if until <= now and self._probe is None:
                self._probe, self._probe_since = topic, now
                del self.quarantined[topic]
                log.info("trying %s again", topic)
                return None
            return max(until, now + 1.0)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        # Called with paho's message mutex held: only hand the ack over, never publish from here.
        failed = bool(getattr(reason, "is_failure", False))
        with self._q_lock:
            topic = self._in_flight.pop(mid, None)
            if topic is not None and not failed:
                # (Not a reason to reset the quick drops: a broker may accept a few messages
                # before it reads the one it drops the connection for.)
                self._quarantine_s.pop(topic, None)
                if topic == self._probe:
                    self._probe = None
                    log.info("%s is accepted again", topic)
            elif topic is not None:
                # Refused outright (reason 135): hold the topic back too, tried again by a probe.
                if topic == self._probe:
                    self._probe = None
                self._quarantine_locked(topic, time.monotonic())
                self._refused_here = True
        self.acks.append((mid, failed, str(reason)))
        self.wakeup.set()

    def _on_unexpected_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        log.debug("message on %s matched no subscription callback", message.topic)

    # ----------------------------------------------------- publish/subscribe

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> int | None:
        """Publish at QoS 1 if connected; returns paho's message id, or None when not handed over."""
        if not self.connected or self.quarantine_until(topic) is not None:
            return None
        # Both locks, in paho's order (its message mutex, then ours, as in _on_publish), so that
        # the PUBACK cannot be handled before the mid is recorded.
        with self.client._out_message_mutex, self._q_lock:
            info = self.client.publish(topic, payload, qos=protocol.QOS, retain=retain)
            if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                self._in_flight[info.mid] = topic
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

        self.client.message_callback_add(topic_filter, deliver)
        with self._subs_lock:  # see _on_connect: a filter added during a connect is never missed
            self._subs[topic_filter] = callback
            connected = self.connected
        if connected:
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
            if failed and reason.startswith("held back"):
                # Its topic is quarantined (the transport logged it once): _fill keeps it until it may go.
                self.refused[row_id] = time.monotonic()
            elif failed:
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
            held_until = self.transport.quarantine_until(row.topic)
            if held_until is not None:
                # A topic the broker drops us for: keep the row, go on with the others.
                self.refused[row.id] = held_until
                self.cursor = max(self.cursor, row.id)
                continue
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
