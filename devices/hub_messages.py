"""What the hub does with each message it receives: validate, refuse, apply, turn into points.

Contract: :meth:`MessageHandler.handle` validates a message with ``protocol.decode_*``
and either refuses it — counted per reason in :class:`~devices.hub_stats.HubStats`,
logged with its topic at a limited rate — or applies it: events, command acks and
bridge flags to the database right away, statuses gathered and applied in batches
(:meth:`MessageHandler.apply_statuses`, in one transaction, before anything else
touches those machines), telemetry and state as line protocol into the write batch,
and the newest readings folded into the live status every so often
(:meth:`MessageHandler.flush_readings`). Bounds (see :mod:`firmware_bridge.protocol`):
a ``ts`` outside the window around the hub's clock refuses the message; a reading that
breaks the contract is left out of an otherwise valid message (``readings_refused``);
a machine's reading names beyond :data:`~firmware_bridge.protocol.MAX_READING_NAMES`
are left out too (``reading_names_refused``).

Called by the hub's main thread only (:mod:`devices.hub`); not thread-safe. Imports
the appliers: :mod:`devices.status`, :mod:`devices.readings`, :mod:`devices.events`,
:mod:`devices.commands`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import paho.mqtt.client as mqtt
from django.db import close_old_connections

from devices import commands, events, status
from devices.hub_stats import (
    BAD_TOPIC,
    FAILED,
    UNEXPECTED,
    UNKNOWN_BRIDGE,
    UNKNOWN_MACHINE,
    HubStats,
    LimitedLog,
    reason_of,
)
from devices.hub_writer import Batch
from devices.influx import fields_line, state_line
from devices.machines import MachineIndex, MachineInfo
from devices.models import Bridge, MachineStatus
from devices.readings import Readings, apply_readings, reading_names
from firmware_bridge import protocol

log = logging.getLogger("devices.hub")

#: The validating decoder of each topic kind the hub consumes (commands are the bridges' business).
DECODERS = {
    protocol.STATUS: protocol.decode_status,
    protocol.TELEMETRY: protocol.decode_telemetry,
    protocol.EVENT: protocol.decode_event,
    protocol.CMD_ACK: protocol.decode_cmd_ack,
    protocol.ONLINE: protocol.decode_online,
}


class MessageHandler:
    """The hub's processing of messages, one at a time, on its main thread."""

    def __init__(
        self, *, index: MachineIndex, stats: HubStats, logs: LimitedLog, status_batch: int = 500
    ) -> None:
        self.index = index
        self.stats = stats
        self.logs = logs
        self.status_batch = status_batch
        #: The newest readings per machine id since the last :meth:`flush_readings`.
        self.readings: dict[int, Readings] = {}
        # Statuses decoded but not applied yet (see apply_statuses), and their machines.
        self.statuses: list[tuple[MachineInfo, protocol.Status]] = []
        self.status_machines: set[int] = set()
        self._topics: dict[str, protocol.ParsedTopic] = {}
        # Reading names seen per machine id (seeded from its live readings): see _allowed_readings.
        self._names: dict[int, set[str]] = {}
        self._names_seeded = False

    def refuse(self, reason: str, topic: str, detail: str, machine: str | None = None) -> None:
        self.stats.refuse(reason)
        self.logs.warning(
            (machine, reason), "refused message (%s) on topic %r: %s", reason, topic[:300], detail[:300]
        )

    def handle(self, msg: mqtt.MQTTMessage, batch: Batch) -> None:
        """Decode and apply one message; its points go into ``batch``. Refuses (counts, logs) bad ones."""
        self.stats.add("received")
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            self.refuse(BAD_TOPIC, repr(msg._topic[:200]), "topic is not UTF-8")
            return
        parsed = self._topics.get(topic)
        if parsed is None:
            try:
                parsed = protocol.parse_topic(topic)
            except protocol.ProtocolError as exc:
                self.refuse(BAD_TOPIC, topic, str(exc))
                return
            if len(self._topics) >= 50_000:  # bounded: a flood of made-up topics cannot grow it
                self._topics.clear()
            self._topics[topic] = parsed
        kind = parsed.kind
        decoder = DECODERS.get(kind)
        if decoder is None:
            self.refuse(UNEXPECTED, topic, "the hub does not consume this kind of topic")
            return
        try:
            decoded = decoder(msg.payload, now_ms=protocol.now_ms())
        except protocol.ProtocolError as exc:
            self.refuse(reason_of(exc), topic, str(exc), f"{parsed.lab}/{parsed.machine}")
            return
        if kind != protocol.STATUS and kind != protocol.TELEMETRY:
            self.apply_statuses()  # events, acks and Last Wills come after the statuses before them
        if kind == protocol.ONLINE:
            machines = self.index.for_bridge(parsed.machine)
            if not machines and not Bridge.objects.filter(slug=parsed.machine).exists():
                self.refuse(UNKNOWN_BRIDGE, topic, "no such bridge in the database", UNKNOWN_BRIDGE)
                return
            status.apply_bridge_online(parsed.machine, decoded, machines)  # type: ignore[arg-type]
            self.stats.add("online")
            return
        info = self.index.get(parsed.lab, parsed.machine)  # type: ignore[arg-type]
        if info is None:
            self.refuse(UNKNOWN_MACHINE, topic, "no such machine in the database", UNKNOWN_MACHINE)
            return
        if kind == protocol.TELEMETRY:
            self._telemetry(info, decoded, batch)  # type: ignore[arg-type]
        elif kind == protocol.STATUS:
            batch.lines.append(state_line(info.tags, decoded.state, decoded.ts))  # type: ignore[union-attr]
            self.statuses.append((info, decoded))  # type: ignore[arg-type]
            self.status_machines.add(info.id)
            if len(self.statuses) >= self.status_batch:
                self.apply_statuses()
        elif kind == protocol.EVENT:
            if not events.apply_event(info, decoded):  # type: ignore[arg-type]
                self.stats.add("event_duplicates")
            self.stats.add("events")
        elif kind == protocol.CMD_ACK:
            commands.apply_cmd_ack(info, decoded)  # type: ignore[arg-type]
            self.stats.add("cmd_acks")

    def apply_statuses(self) -> None:
        """Apply the statuses gathered so far, in one transaction; never raises.

        Called at the end of each pass over the inbox, when ``status_batch`` are
        waiting, and before anything whose effect depends on them: an event, a
        command ack or a Last Will (any machine), a reading of a machine with a
        status waiting, cutting a write batch (its acks include the statuses').
        The pending readings of these machines are folded in first: their energy
        counter so far belongs to the session a status may close. If the batch
        fails, each status is tried alone, so one bad status costs only itself.
        """
        if not self.statuses:
            return
        items, self.statuses = self.statuses, []
        machines, self.status_machines = self.status_machines, set()
        pending = {i: self.readings.pop(i) for i in machines if i in self.readings}
        if pending:
            try:
                apply_readings(pending)
            except Exception:
                self.logs.exception("readings", "failed to update the live readings")
                close_old_connections()
        try:
            status.apply_statuses(items)
        except Exception:
            self.logs.exception(
                "status-batch", "failed to apply a batch of %d statuses; trying each alone", len(items)
            )
            close_old_connections()
            failed = 0
            for info, msg in items:
                try:
                    status.apply_statuses([(info, msg)])
                except Exception:
                    failed += 1
                    self.stats.refuse(FAILED)
                    self.logs.exception(
                        ("status", info.id), "failed to apply a status of %s/%s", info.lab, info.slug
                    )
                    close_old_connections()
            self.stats.add("status", len(items) - failed)
        else:
            self.stats.add("status", len(items))
        self.stats.add("status_batches")

    def _telemetry(self, info: MachineInfo, msg: protocol.Telemetry, batch: Batch) -> None:
        if info.id in self.status_machines:
            self.apply_statuses()  # this reading comes after that status
        self.stats.add("telemetry")
        key = f"{info.lab}/{info.slug}"
        if msg.refused:
            self.stats.add("readings_refused", len(msg.refused))
            self.logs.warning(
                (key, "reading"), "readings of %s left out: %s", key, "; ".join(msg.refused)[:300]
            )
        values = {k: float(v) for k, v in self._allowed_readings(info, msg.values).items()}
        if not values:
            return
        line = fields_line(self.index.prefix(info), values, msg.ts)
        if line:
            batch.lines.append(line)
            batch.telemetry += 1
        current = self.readings.get(info.id)
        if current is None:
            current = self.readings[info.id] = Readings(msg.ts, {})
        current.add(msg.ts, values)

    def _allowed_readings(self, info: MachineInfo, values: Mapping[str, float]) -> Mapping[str, float]:
        """``values`` without the names beyond the machine's :data:`~protocol.MAX_READING_NAMES`.

        The names a machine has are seeded from its live readings in the database (so a
        restart does not grant a new allowance) and kept per hub; new names are admitted in
        alphabetical order while there is room. Every name beyond is counted and logged.
        """
        names = self._names.get(info.id)
        if names is None:
            if not self._names_seeded:
                self._seed_names()
                names = self._names.get(info.id)
            if names is None:
                names = self._names[info.id] = reading_names(info.id)
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
        self.logs.warning(
            (key, "reading_names"),
            "readings of %s left out: more than %d distinct names (%s)",
            key,
            protocol.MAX_READING_NAMES,
            ", ".join(sorted(refused))[:300],
        )
        return {name: value for name, value in values.items() if name in names}

    def _seed_names(self) -> None:
        """Every machine's reading names in one query, on the first reading after the start.

        Not one query per machine as each is first seen: after a start with a backlog waiting,
        those queries were a third of the time to the first point (100 machines). A machine
        added later is looked up alone (:func:`reading_names`).
        """
        self._names_seeded = True
        known = {
            machine_id: set(reading) if isinstance(reading, dict) else set()
            for machine_id, reading in MachineStatus.objects.values_list("machine_id", "last_reading")
        }
        for info in self.index.all():  # a machine without live status yet has no names yet
            self._names.setdefault(info.id, known.get(info.id, set()))

    def flush_readings(self) -> None:
        """Fold the readings gathered so far into the live status; never raises."""
        if self.readings:
            pending, self.readings = self.readings, {}
            try:
                apply_readings(pending)
            except Exception:
                self.logs.exception("readings", "failed to update the live readings")
                close_old_connections()
