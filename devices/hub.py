"""The hub: MQTT in, InfluxDB and the database out, at least once (``manage.py run_hub``).

Three threads:

* paho's network loop receives messages and only queues them (``on_message``);
* the hub's main thread hands each one to its :class:`~devices.hub_messages.MessageHandler`
  (validation, refusals, statuses in batches — every status taken from the inbox in one
  pass, at most ``status_batch``, in one transaction — events, command acks, bridge flags,
  telemetry and state as line protocol) and cuts write batches (``batch_size`` lines or
  ``batch_interval`` seconds);
* a writer thread (:mod:`devices.hub_writer`) writes each batch to InfluxDB — or, while
  InfluxDB is down, to the disk spool (:mod:`devices.influx_spool`) — and only *then*
  acknowledges the batch's messages to the broker (paho's manual ack), in the order they
  arrived. The spool drains when InfluxDB answers again.

A fourth, :mod:`devices.command_publisher`, claims the Command rows the pages,
the API and the system write and publishes them on this hub's connection. Time-based checks
(silent machines, bookings, interlocks) are the scheduler's (:mod:`devices.scheduler`); the hub
only ingests. On SQLite a fifth, :mod:`devices.sqlite_checkpoints`, checkpoints the database's
write-ahead log, so that no status pass waits for the disk.

MQTT 5 with ``clean_start=False`` and a Session Expiry Interval: the broker
keeps the session (subscriptions and queued QoS 1 messages) while the hub is
stopped, and re-sends unacknowledged messages after a crash; points carry the
message's ``ts``, so a re-sent message overwrites itself in InfluxDB. The hub
never unsubscribes, not even on SIGTERM (flush, ack, disconnect). Telemetry and
events come through ``$share/<group>/…`` so several hubs split them; status,
``cmd/ack`` and bridge ``online`` come through plain subscriptions in every
hub (brokers send no retained messages to shared subscriptions), and the
database claims in :mod:`devices.status`, :mod:`devices.events` and
:mod:`devices.commands` make their effects happen once.

Malformed or hostile messages are counted per reason, logged with their topic,
and acknowledged like the others (so they never block the session). Logging is
rate-limited (:class:`~devices.hub_stats.LimitedLog`): one line per machine and
reason per ``log_repeat_interval`` (with the count of the repeats held back), and
at most ``log_malformed_per_s`` overall. A line InfluxDB refuses is isolated from
its batch and kept in the spool's ``rejected`` table (``points_rejected``); the
batch's other points are written.

Imported only by the ``run_hub`` command (and the tests and benchmarks); nothing in
``devices`` imports it.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from django.db import close_old_connections
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices import command_publisher, commands, sqlite_checkpoints
from devices.hub_messages import MessageHandler
from devices.hub_stats import FAILED, HubStats, LimitedLog
from devices.hub_writer import Ack, Batch, Writer
from devices.influx import HUB, InfluxStore, fields_line, tag_prefix
from devices.influx_spool import Spool
from devices.machines import MachineIndex
from devices.mqtt_client import BufferedClient, MqttTarget, default_client_id, install_fast_properties
from firmware_bridge import protocol

log = logging.getLogger("devices.hub")

SESSION_EXPIRY_S = 24 * 3600
MAX_RECEIVE_MAXIMUM = 65535
#: Messages in the first pass over the inbox after the start, which is written at once.
FIRST_PASS = 500


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
        command_poll_s: float | None = command_publisher.POLL_S,
        command_claim_timeout_s: float = command_publisher.CLAIM_TIMEOUT_S,
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
        self.index = MachineIndex()
        self.logs = LimitedLog(log, per_s=log_malformed_per_s, repeat_interval_s=log_repeat_interval)
        self.messages = MessageHandler(
            index=self.index, stats=self.stats, logs=self.logs, status_batch=status_batch
        )
        self.writer = Writer(store=store, spool=spool, stats=self.stats, logs=self.logs, ack=self._ack)
        self._inbox: collections.deque[tuple[mqtt.MQTTMessage, int]] = collections.deque()
        # Connection generation: a PUBACK is only sent on the connection that delivered the
        # message. After a reconnect the broker re-sends what was unacknowledged, possibly
        # reusing packet ids, so an old id acknowledged late could acknowledge another message.
        self._generation = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._readings_applied = 0.0
        self._batch = Batch()
        self.checkpoints: sqlite_checkpoints.Checkpointer | None = None
        install_fast_properties()
        self.client = self.target.client(self.client_id, manual_ack=True, buffered=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        # Come back quickly after a broker restart: shared subscriptions need the re-subscription.
        self.client.reconnect_delay_set(min_delay=0.2, max_delay=5)
        # Commands written as rows go out on this same connection; command_poll_s None: not this hub.
        self.publisher = (
            None
            if command_poll_s is None
            else command_publisher.CommandPublisher(
                self.client,
                self.client_id,
                connected=self._connected.is_set,
                poll_s=command_poll_s,
                claim_timeout_s=command_claim_timeout_s,
            )
        )

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
        # Connect first: the broker's handshake and its first messages (queued in the inbox,
        # handled only once run() starts) overlap the machine index's load.
        self.client.connect_async(
            self.target.host, self.target.port, keepalive=30, clean_start=False, properties=props
        )
        self.client.loop_start()
        self.writer.start()
        # On SQLite, WAL checkpoints run beside the hub, not inside one of its status passes.
        self.checkpoints = sqlite_checkpoints.start_for_hub()
        self.index.reload()
        if self.publisher is not None:
            self.publisher.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self) -> None:
        """Process messages until :meth:`stop`; then flush, ack, and disconnect without unsubscribing."""
        self.start()
        next_housekeeping = time.monotonic() + 1.0
        next_stats = time.monotonic() + self.stats_interval
        try:
            first_batch = True
            while not self._stop.is_set():
                self._wake.clear()
                # The first batch goes to the writer as soon as the first pass over the inbox ends
                # (a short one), not after batch_size lines or batch_interval: after a start, with
                # a backlog waiting and the writer idle, the first points are in InfluxDB at once.
                self._drain_inbox(limit=FIRST_PASS if first_batch else 2000)
                if first_batch and self._batch.acks:
                    first_batch = False
                    self._cut_batch()
                now = time.monotonic()
                if self._batch.acks and now - self._batch.started >= self.batch_interval:
                    self._cut_batch()
                if self.messages.readings and now - self._readings_applied >= self.readings_interval:
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
        if self.publisher is not None:
            self.publisher.stop()  # no new claims while flushing; an unmarked claim is taken again
        self._drain_inbox(limit=len(self._inbox))
        self._apply_readings()
        self._cut_batch()
        self.writer.close(timeout=120)
        self._log_stats()
        # Never unsubscribe: the session (and its queue) must outlive this process.
        self.client.disconnect()
        self.client.loop_stop()
        if self.checkpoints is not None:
            self.checkpoints.stop()
            sqlite_checkpoints.uninstall()
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
                self.logs.exception(("process", msg.topic), "failed to process a message on %r", msg.topic)
                close_old_connections()
            self._add_ack(msg, generation)
            if len(self._batch.lines) >= self.batch_size:
                self._cut_batch()
        self.messages.apply_statuses()

    def _add_ack(self, msg: mqtt.MQTTMessage, generation: int) -> None:
        if not self._batch.acks:
            self._batch.started = time.monotonic()
        self._batch.acks.append((msg.mid, msg.qos, generation))

    def _handle(self, msg: mqtt.MQTTMessage) -> None:
        self.messages.handle(msg, self._batch)

    def _apply_readings(self) -> None:
        self._readings_applied = time.monotonic()
        self.messages.flush_readings()

    def _cut_batch(self) -> None:
        """Hand the batch to the writer (blocks while two are waiting: back-pressure)."""
        self.messages.apply_statuses()  # the batch acknowledges them: apply them first
        # The live readings (the board's numbers, the silence check, session energy) are folded
        # in at most every readings_interval: a backlog drains in 5,000-line batches, and the
        # board does not need each one. InfluxDB gets every point regardless.
        if time.monotonic() - self._readings_applied >= self.readings_interval:
            self._apply_readings()
        if not self._batch.acks and not self._batch.lines:
            return
        batch, self._batch = self._batch, Batch()
        self.writer.put(batch)

    def _housekeeping(self) -> None:
        try:
            close_old_connections()
            if time.monotonic() - self.index.loaded_at > 60:
                self.index.reload()  # new machines, changed links and intervals
            commands.expire_commands()
        except Exception:
            self.logs.exception("housekeeping", "housekeeping failed")

    def _log_stats(self) -> None:
        snap = self.stats.snapshot()
        snap["spool_pending"] = self.spool.pending()
        snap["inbox"] = len(self._inbox)
        suppressed = self.logs.take_suppressed()
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

    def _ack(self, acks: list[Ack]) -> None:
        """The writer's acknowledgement of a written batch (writer thread), on the delivering connection only."""
        current = self._generation
        qos1 = []
        for mid, qos, generation in acks:
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


def spool_path_for(client_id: str) -> str:
    from django.conf import settings

    return os.path.join(str(settings.VAR_DIR), "hub-spool", f"{client_id}.sqlite3")
