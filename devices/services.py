"""What the hub does with each message: live status, state history, usage sessions, alerts, commands.

Every function here is safe with several hubs running at once: each hub gets
every ``status``, ``online`` and ``cmd/ack`` message (plain subscriptions) and
a share of telemetry and events, so each change is *claimed* — a row lock plus
a conditional ``UPDATE`` (``status_ts < ts``, ``result = 'sent'``, …) or a
unique constraint (one open alert per kind, one open session, an event applied
once) — and only the hub that claims it records the side effects and pushes
the change to the board with :func:`devices.live.push_status`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from devices import live
from devices.influx import TELEMETRY, tag_prefix
from devices.models import (
    Alert,
    Bridge,
    Command,
    MachineLink,
    MachineStatus,
    ProcessedEvent,
    StateChange,
    UsageSession,
)
from fablab.labs.models import Machine
from firmware_bridge import protocol

log = logging.getLogger(__name__)

#: A command not acknowledged within this long after it expired is marked "no answer".
COMMAND_TTL_S = 30
COMMAND_GRACE_S = 10
#: An event that closes a job may arrive shortly after the status that ended the session.
LATE_OUTCOME_WINDOW = timedelta(minutes=5)
SILENT_FACTOR = 3

OUTCOME_EVENTS = {
    "job_finished": UsageSession.Outcome.FINISHED,
    "job_failed": UsageSession.Outcome.FAILED,
    "job_cancelled": UsageSession.Outcome.CANCELLED,
}


def ms_to_dt(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC)


def dt_to_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


# --------------------------------------------------------------------------- machine index


@dataclasses.dataclass(frozen=True)
class MachineInfo:
    """What the hub needs to know about a machine, cached in memory."""

    id: int
    lab: str
    slug: str
    machine_type: str
    adapter: str
    interval_s: int | None
    bridge: str | None

    @property
    def tags(self) -> dict[str, str]:
        return {
            "lab": self.lab,
            "machine": self.slug,
            "machine_type": self.machine_type,
            "adapter": self.adapter,
        }

    @property
    def telemetry_prefix(self) -> str:
        return tag_prefix(TELEMETRY, self.tags)


class MachineIndex:
    """``(lab slug, machine slug) -> MachineInfo``, reloaded on a miss at most every ``min_reload_s``.

    A flood of messages for machines that do not exist must not become a
    flood of queries, hence the rate limit.
    """

    def __init__(self, min_reload_s: float = 5.0) -> None:
        self.min_reload_s = min_reload_s
        self._by_key: dict[tuple[str, str], MachineInfo] = {}
        self._prefix: dict[int, str] = {}
        self._loaded_at = -1e9
        self._lock = threading.Lock()

    def reload(self) -> None:
        links = {link.machine_id: link for link in MachineLink.objects.select_related("bridge").all()}
        by_key = {}
        for m in Machine.objects.select_related("lab", "machine_type").all():
            link = links.get(m.pk)
            info = MachineInfo(
                id=m.pk,
                lab=m.lab.slug,
                slug=m.slug,
                machine_type=m.machine_type.slug if m.machine_type_id else "unknown",
                adapter=link.adapter if link else "unlinked",
                interval_s=link.telemetry_interval_s if link else None,
                bridge=link.bridge.slug if link else None,
            )
            by_key[(info.lab, info.slug)] = info
        with self._lock:
            self._by_key = by_key
            self._prefix = {info.id: info.telemetry_prefix for info in by_key.values()}
            self._loaded_at = time.monotonic()

    @property
    def loaded_at(self) -> float:
        return self._loaded_at

    def get(self, lab: str, machine: str) -> MachineInfo | None:
        info = self._by_key.get((lab, machine))
        if info is None and time.monotonic() - self._loaded_at >= self.min_reload_s:
            self.reload()
            info = self._by_key.get((lab, machine))
        return info

    def prefix(self, info: MachineInfo) -> str:
        return self._prefix.get(info.id) or info.telemetry_prefix

    def for_bridge(self, bridge: str) -> list[MachineInfo]:
        return [info for info in self._by_key.values() if info.bridge == bridge]

    def all(self) -> list[MachineInfo]:
        return list(self._by_key.values())


# ------------------------------------------------------------------------------ live pushes


def _push(status: MachineStatus, ts: int | None, alerts: list[dict[str, str]] | None = None) -> None:
    try:
        live.push_status(status, ts=ts, alerts=alerts)
    except Exception:  # the board is best effort; the database is the truth
        log.exception("push to the channel layer failed for machine %s", status.machine_id)


def _load_for_push(machine_ids: Iterable[int]) -> list[MachineStatus]:
    return list(MachineStatus.objects.select_related("machine__lab").filter(machine_id__in=list(machine_ids)))


def push_command(command: Command) -> None:
    """Tell the lab's board what came of a command (best effort, like every push)."""
    try:
        live.push_command(command)
    except Exception:
        log.exception("push of command %s failed", command.id)


# ---------------------------------------------------------------------------------- alerts


def raise_alert(machine_id: int, kind: str, message: str, at: datetime) -> bool:
    """Open an alert unless one of this kind is open already; True when this call opened it."""
    try:
        with transaction.atomic():
            Alert.objects.create(machine_id=machine_id, kind=kind, message=message[:500], raised_at=at)
    except IntegrityError:
        return False
    return True


def clear_alert(machine_id: int, kind: str, at: datetime) -> bool:
    """Close the open alert of this kind (conditional UPDATE); True when one was open."""
    return bool(
        Alert.objects.filter(machine_id=machine_id, kind=kind, cleared_at__isnull=True).update(cleared_at=at)
    )


# ------------------------------------------------------------------------------- sessions


def _open_session(status: MachineStatus, job: protocol.Job | None, at: datetime) -> None:
    current = UsageSession.objects.filter(machine_id=status.machine_id, ended_at__isnull=True).first()
    if current is not None:
        if job is None or not current.job_id or current.job_id == job.id:
            if job is not None and not current.job_id:
                current.job_id, current.job_name = job.id[:128], job.name[:255]
                current.save(update_fields=["job_id", "job_name"])
            return
        # A different job while the previous session is still open: it ended unseen.
        _close_session(status, at)
    started = ms_to_dt(job.started_ts) if job is not None and job.started_ts else at
    energy = status.last_reading.get("energy_wh") if isinstance(status.last_reading, dict) else None
    try:
        with transaction.atomic():
            UsageSession.objects.create(
                machine_id=status.machine_id,
                started_at=min(started, at),
                job_id=job.id[:128] if job else "",
                job_name=job.name[:255] if job else "",
                energy_wh_start=float(energy) if isinstance(energy, int | float) else None,
            )
    except IntegrityError:  # another hub opened it
        pass


def _close_session(status: MachineStatus, at: datetime) -> None:
    session = UsageSession.objects.filter(machine_id=status.machine_id, ended_at__isnull=True).first()
    if session is None:
        return
    outcome = session.outcome
    if outcome == UsageSession.Outcome.RUNNING:
        outcome = UsageSession.Outcome.INTERRUPTED
    UsageSession.objects.filter(pk=session.pk, ended_at__isnull=True).update(
        ended_at=max(at, session.started_at), outcome=outcome
    )


# ---------------------------------------------------------------------------------- status


_STATUS_FIELDS = (
    "state", "online", "enabled", "adapter", "job_id", "job_name", "job_started_at",
    "progress_pct", "error_code", "error_message", "last_message_at", "since",
)  # fmt: skip


def _locked_statuses(machine_ids: list[int]) -> tuple[dict[int, MachineStatus], set[int]]:
    """The live status rows, locked for this transaction in primary-key order (missing ones created).

    Returns the rows by machine id (with machine and lab) and the ids whose row this call created.
    """
    qs = MachineStatus.objects.select_for_update(of=("self",)).select_related("machine__lab").order_by("pk")
    rows = {s.machine_id: s for s in qs.filter(pk__in=machine_ids)}
    missing = [i for i in machine_ids if i not in rows]
    created: set[int] = set()
    if missing:
        MachineStatus.objects.bulk_create(
            [MachineStatus(machine_id=i) for i in missing], ignore_conflicts=True
        )
        for status in qs.filter(pk__in=missing):
            rows[status.machine_id] = status
            # A row another hub created meanwhile may hold a status already: not "created" then.
            if status.status_ts == 0:
                created.add(status.machine_id)
    return rows, created


def _open_alerts_of(machine_ids: Iterable[int]) -> dict[int, list[tuple[int, str, datetime]]]:
    """Open alerts per machine as ``(pk, kind, raised_at)``, oldest first."""
    out: dict[int, list[tuple[int, str, datetime]]] = {}
    rows = (
        Alert.objects.filter(machine_id__in=list(machine_ids), cleared_at__isnull=True)
        .order_by("raised_at", "pk")
        .values_list("machine_id", "pk", "kind", "raised_at")
    )
    for machine_id, pk, kind, raised_at in rows:
        out.setdefault(machine_id, []).append((pk, kind, raised_at))
    return out


def _claim_sql() -> str:
    table = connection.ops.quote_name(MachineStatus._meta.db_table)
    sets = ", ".join(
        f"{connection.ops.quote_name(MachineStatus._meta.get_field(f).column)} = %s"
        for f in ("status_ts", *_STATUS_FIELDS)
    )
    pk = connection.ops.quote_name(MachineStatus._meta.pk.column)
    ts = connection.ops.quote_name(MachineStatus._meta.get_field("status_ts").column)
    return f"UPDATE {table} SET {sets} WHERE {pk} = %s AND {ts} < %s"  # noqa: S608 - names only


def _claim(status: MachineStatus, first_ts: int) -> bool:
    """Write the live row, conditional on no status at or after ``first_ts`` applied (by any hub) yet."""
    values = [status.status_ts]
    for name in _STATUS_FIELDS:
        values.append(MachineStatus._meta.get_field(name).get_db_prep_save(getattr(status, name), connection))
    with connection.cursor() as cursor:
        cursor.execute(_claim_sql(), [*values, status.machine_id, first_ts])
        return cursor.rowcount == 1


def _step(status: MachineStatus, msg: protocol.Status, created: bool, now: datetime) -> tuple[str, str, bool]:
    """Move the in-memory live status to ``msg``; return (previous state, previous job id, state changed)."""
    at = ms_to_dt(msg.ts)
    previous, previous_job = status.state, status.job_id
    job = msg.job
    status.state = msg.state
    status.online = msg.state != protocol.OFFLINE
    status.enabled = msg.enabled
    status.adapter = msg.adapter[:20]
    status.job_id = job.id[:128] if job else ""
    status.job_name = job.name[:255] if job else ""
    status.job_started_at = ms_to_dt(job.started_ts) if job else None
    status.progress_pct = float(job.progress_pct) if job and job.progress_pct is not None else None
    status.error_code = msg.error.code[:64] if msg.error else ""
    status.error_message = msg.error.message[:500] if msg.error else ""
    status.last_message_at = now
    state_changed = previous != msg.state or created
    if state_changed or status.since is None:
        status.since = at
    status.status_ts = msg.ts
    return previous, previous_job, state_changed


def _alerts_for(
    machine_id: int, msg: protocol.Status, at: datetime, open_alerts: list[tuple[int, str, datetime]]
) -> list[tuple[int, str, datetime]]:
    """Clear the open alerts this status resolves and raise the one it calls for; return the open ones after.

    Queries only when something changes: ``open_alerts`` (read in the same transaction) says what is open.
    """
    resolved = []
    for pk, kind, raised_at in open_alerts:
        if (
            (kind == Alert.Kind.ERROR and msg.state != protocol.ERROR and raised_at <= at)
            or (kind == Alert.Kind.OFFLINE and msg.state != protocol.OFFLINE)
            or (kind == Alert.Kind.JOB_FAILED and msg.state == protocol.RUNNING)
        ):
            resolved.append(pk)
    if resolved:
        Alert.objects.filter(pk__in=resolved, cleared_at__isnull=True).update(cleared_at=at)
        open_alerts = [a for a in open_alerts if a[0] not in resolved]
    kinds = {kind for _pk, kind, _raised in open_alerts}
    if msg.state == protocol.OFFLINE and Alert.Kind.OFFLINE not in kinds:
        raise_alert(machine_id, Alert.Kind.OFFLINE, _("The machine is offline."), at)
        open_alerts = _open_alerts_of([machine_id]).get(machine_id, [])
    elif msg.state == protocol.ERROR and Alert.Kind.ERROR not in kinds:
        text = f"{msg.error.code}: {msg.error.message}" if msg.error else _("The machine reports an error.")
        raise_alert(machine_id, Alert.Kind.ERROR, text, at)
        open_alerts = _open_alerts_of([machine_id]).get(machine_id, [])
    return open_alerts


def apply_statuses(items: Iterable[tuple[MachineInfo, protocol.Status]]) -> list[MachineStatus]:
    """Apply a batch of statuses in one transaction; return one live status per status applied, in order.

    The contract, per machine, is that of applying its statuses one by one in
    ``ts`` order: newest ``ts`` wins (a status not newer than the one applied
    already is skipped), every state change is recorded as a
    :class:`StateChange` (several in one batch included), usage sessions open
    and close and alerts are raised and cleared as each status calls for, and
    one frame is pushed to the board per status applied — after the commit,
    showing the machine as that status left it.

    Cost, whatever the batch size: one locked SELECT of the batch's live rows
    (in primary-key order, so hubs never deadlock), one SELECT of their open
    alerts, one raw conditional ``UPDATE`` per machine (the claim: it moves
    ``status_ts`` forward only if no status at or after the batch's first one
    for that machine was applied, so of several hubs exactly one applies it),
    one ``bulk_create`` of the state changes; sessions and alerts are queried
    only for machines whose state or job changes or whose alerts do.
    """
    by_machine: dict[int, list[protocol.Status]] = {}
    for info, msg in items:
        by_machine.setdefault(info.id, []).append(msg)
    if not by_machine:
        return []
    now = timezone.now()
    pushes: list[tuple[int, MachineStatus, list[tuple[int, str, datetime]]]] = []
    with transaction.atomic():
        rows, created_ids = _locked_statuses(sorted(by_machine))
        alerts = _open_alerts_of(by_machine)
        changes: list[StateChange] = []
        for machine_id, msgs in by_machine.items():
            status = rows[machine_id]
            msgs = sorted((m for m in msgs if m.ts > status.status_ts), key=lambda m: m.ts)
            fresh = []
            for msg in msgs:
                if fresh and msg.ts == fresh[-1].ts:
                    continue  # the same ts twice in one batch: the first one wins, as one by one
                fresh.append(msg)
            if not fresh:
                continue
            created = machine_id in created_ids
            steps = []
            for msg in fresh:
                steps.append((msg, *_step(status, msg, created, now), copy.copy(status)))
                created = False
            if not _claim(status, fresh[0].ts):
                continue  # another hub applied a status at least as new meanwhile
            open_alerts = alerts.get(machine_id, [])
            created = machine_id in created_ids
            for msg, previous, previous_job, state_changed, snapshot in steps:
                at = ms_to_dt(msg.ts)
                if previous != msg.state:
                    changes.append(
                        StateChange(
                            machine_id=machine_id,
                            state=msg.state,
                            previous_state="" if created else previous,
                            at=at,
                        )
                    )
                created = False
                if msg.state == protocol.RUNNING:
                    if state_changed or snapshot.job_id != previous_job:
                        _open_session(snapshot, msg.job, at)
                elif msg.state in (protocol.IDLE, protocol.ERROR, protocol.OFFLINE) and state_changed:
                    _close_session(snapshot, at)
                open_alerts = _alerts_for(machine_id, msg, at, open_alerts)
                pushes.append((msg.ts, snapshot, open_alerts))
        if changes:
            StateChange.objects.bulk_create(changes)
    pushes.sort(key=lambda p: p[0])
    for ts, snapshot, open_alerts in pushes:
        _push(snapshot, ts, [{"kind": kind} for _pk, kind, _raised in open_alerts])
    return [snapshot for _ts, snapshot, _alerts in pushes]


def apply_status(info: MachineInfo, msg: protocol.Status) -> MachineStatus | None:
    """Apply one status unless a newer one was applied already; return the new live status if applied.

    :func:`apply_statuses` with a batch of one (the hub batches; see there for the contract).
    """
    applied = apply_statuses([(info, msg)])
    return applied[-1] if applied else None


def mark_machine_offline(info: MachineInfo, at: datetime, reason: str) -> bool:
    """The bridge went away: the machine is offline until its bridge says otherwise."""
    with transaction.atomic():
        status, _created = MachineStatus.objects.select_for_update().get_or_create(machine_id=info.id)
        if not MachineStatus.objects.filter(pk=info.id, online=True).update(
            online=False, state=protocol.OFFLINE, since=at, last_message_at=timezone.now()
        ):
            if _created:
                raise_alert(info.id, Alert.Kind.OFFLINE, reason, at)
            return False
        StateChange.objects.create(
            machine_id=info.id, state=protocol.OFFLINE, previous_state=status.state, at=at
        )
        _close_session(status, at)
        raise_alert(info.id, Alert.Kind.OFFLINE, reason, at)
    status = MachineStatus.objects.select_related("machine__lab").get(pk=info.id)
    _push(status, dt_to_ms(at))
    return True


def apply_bridge_online(bridge: str, msg: protocol.BridgeOnline, machines: list[MachineInfo]) -> int:
    """A bridge's ``online`` flag (its Last Will when false); return how many machines went offline."""
    now = timezone.now()
    Bridge.objects.filter(slug=bridge).exclude(online=msg.online).update(
        online=msg.online, online_changed_at=now
    )
    if msg.online:
        return 0
    at = ms_to_dt(msg.ts) if msg.ts else now
    reason = _("The bridge %(bridge)s went offline.") % {"bridge": bridge}
    return sum(mark_machine_offline(info, at, reason) for info in machines)


# ---------------------------------------------------------------------------------- events


def apply_event(info: MachineInfo, msg: protocol.Event) -> bool:
    """Apply an event once (de-duplicated on machine, sid, seq); True when it was new."""
    at = ms_to_dt(msg.ts)
    with transaction.atomic():
        try:
            with transaction.atomic():
                ProcessedEvent.objects.create(
                    machine_id=info.id, sid=msg.sid, seq=msg.seq, type=msg.type[:64], at=at
                )
        except IntegrityError:
            return False
        if msg.type == "job_started":
            clear_alert(info.id, Alert.Kind.JOB_FAILED, at)
        outcome = OUTCOME_EVENTS.get(msg.type)
        if outcome is not None:
            sessions = UsageSession.objects.filter(machine_id=info.id)
            if not sessions.filter(ended_at__isnull=True).update(outcome=outcome):
                late = (
                    sessions.filter(
                        ended_at__gte=at - LATE_OUTCOME_WINDOW, outcome=UsageSession.Outcome.INTERRUPTED
                    )
                    .order_by("-ended_at")
                    .first()
                )
                if late is not None:
                    UsageSession.objects.filter(pk=late.pk).update(outcome=outcome)
        if msg.type == "job_failed":
            name = msg.job.name if msg.job else ""
            raise_alert(info.id, Alert.Kind.JOB_FAILED, _("Job failed: %(job)s") % {"job": name}, at)
        elif msg.type == "alarm":
            detail = msg.detail or {}
            text = str(detail.get("message") or detail.get("code") or _("Alarm"))
            raise_alert(info.id, Alert.Kind.ERROR, text, at)
    if msg.type in ("job_failed", "alarm", "job_started"):
        for status in _load_for_push([info.id]):
            _push(status, msg.ts)
    return True


# ------------------------------------------------------------------------------- telemetry


@dataclasses.dataclass
class Readings:
    """A batch's telemetry of one machine: the newest values, and the first energy counter seen."""

    ts: int
    values: dict[str, float]
    energy_first: float | None = None
    energy_first_ts: int | None = None

    def add(self, ts: int, values: Mapping[str, float]) -> None:
        energy = values.get("energy_wh")
        if energy is not None and (self.energy_first_ts is None or ts < self.energy_first_ts):
            self.energy_first, self.energy_first_ts = energy, ts
        if ts >= self.ts:
            self.ts = ts
            self.values.update(values)
        else:
            for key, value in values.items():
                self.values.setdefault(key, value)


def reading_names(machine_id: int) -> set[str]:
    """The reading names a machine has so far: the keys of its live readings (the hub's allowance)."""
    reading = (
        MachineStatus.objects.filter(machine_id=machine_id).values_list("last_reading", flat=True).first()
    )
    return set(reading) if isinstance(reading, dict) else set()


def _update_readings_sql() -> str:
    table = connection.ops.quote_name(MachineStatus._meta.db_table)
    col = {f: connection.ops.quote_name(MachineStatus._meta.get_field(f).column) for f in _READING_FIELDS}
    pk = connection.ops.quote_name(MachineStatus._meta.pk.column)
    # Conditional: never move the reading time backwards (another hub may have applied a newer one).
    return (
        f"UPDATE {table} SET {col['last_reading']} = %s, {col['last_reading_at']} = %s, "  # noqa: S608 - names only
        f"{col['last_message_at']} = %s WHERE {pk} = %s AND "
        f"({col['last_reading_at']} IS NULL OR {col['last_reading_at']} <= %s)"
    )


_READING_FIELDS = ("last_reading", "last_reading_at", "last_message_at")


def apply_readings(readings: Mapping[int, Readings]) -> list[int]:
    """Fold a batch's newest readings into the live status; energy into the open sessions.

    The session's energy is the ``energy_wh`` counter's rise since the first
    reading seen while it was open. A few queries per call whatever the number
    of machines (one SELECT, one executemany UPDATE): the hub calls this about
    once a second while draining thousands of messages. Returns the machine ids updated.
    """
    if not readings:
        return []
    now = timezone.now()
    ids = sorted(readings)
    reading_field = MachineStatus._meta.get_field("last_reading")
    at_field = MachineStatus._meta.get_field("last_reading_at")
    with transaction.atomic():
        rows = list(
            MachineStatus.objects.select_for_update()
            .filter(machine_id__in=ids)
            .order_by("pk")
            .values_list("machine_id", "last_reading", "last_reading_at")
        )
        missing = set(ids).difference(r[0] for r in rows)
        if missing:
            MachineStatus.objects.bulk_create(
                [MachineStatus(machine_id=i) for i in sorted(missing)], ignore_conflicts=True
            )
            rows += [(i, {}, None) for i in sorted(missing)]
        params = []
        updated = []
        now_db = at_field.get_db_prep_value(now, connection)
        for machine_id, reading, reading_at in rows:
            batch = readings[machine_id]
            if reading_at is not None and batch.ts < dt_to_ms(reading_at):
                continue  # older than what another hub (or a replay) applied already
            merged = dict(reading) if isinstance(reading, dict) else {}
            merged.update(batch.values)
            at = at_field.get_db_prep_value(ms_to_dt(batch.ts), connection)
            params.append((reading_field.get_db_prep_value(merged, connection), at, now_db, machine_id, at))
            updated.append(machine_id)
        if params:
            with connection.cursor() as cursor:
                cursor.executemany(_update_readings_sql(), params)
        with_energy = [i for i in updated if readings[i].values.get("energy_wh") is not None]
        if with_energy:
            for session in UsageSession.objects.select_for_update().filter(
                machine_id__in=with_energy, ended_at__isnull=True
            ):
                batch = readings[session.machine_id]
                energy = batch.values["energy_wh"]
                start = session.energy_wh_start
                if start is None:
                    start = batch.energy_first if batch.energy_first is not None else energy
                UsageSession.objects.filter(pk=session.pk).update(
                    energy_wh_start=start, energy_wh=energy - start if energy >= start else session.energy_wh
                )
        if updated:
            Alert.objects.filter(
                machine_id__in=updated, kind=Alert.Kind.SILENT, cleared_at__isnull=True
            ).update(cleared_at=now)
    for status in _load_for_push(updated):
        _push(status, readings[status.machine_id].ts)
    return updated


def check_silent(index: MachineIndex, now: datetime | None = None) -> int:
    """Raise a "silent" alert for each online machine without telemetry for 3x its interval."""
    now = now or timezone.now()
    raised = 0
    intervals = {info.id: info.interval_s for info in index.all() if info.interval_s}
    if not intervals:
        return 0
    rows = MachineStatus.objects.filter(machine_id__in=list(intervals), online=True).values_list(
        "machine_id", "last_reading_at", "since"
    )
    for machine_id, last_at, since in rows:
        limit = timedelta(seconds=SILENT_FACTOR * intervals[machine_id])
        reference = last_at or since
        if reference is None or now - reference <= limit:
            continue
        message = _("No telemetry for more than %(s)d seconds.") % {"s": int(limit.total_seconds())}
        if raise_alert(machine_id, Alert.Kind.SILENT, message, now):
            raised += 1
            for status in _load_for_push([machine_id]):
                _push(status, dt_to_ms(now))
    return raised


# -------------------------------------------------------------------------------- commands


def apply_cmd_ack(info: MachineInfo, msg: protocol.CommandAck) -> Command | None:
    """Record a bridge's answer to a command (once: only a command still "sent" is updated)."""
    try:
        command_id = uuid.UUID(str(msg.id))
    except ValueError:
        return None
    error_code = msg.error.code[:20] if msg.error else ""
    error_message = msg.error.message[:500] if msg.error else ""
    now = timezone.now()
    done = Command.objects.filter(
        pk=command_id, machine_id=info.id, result__in=[Command.Result.SENT, Command.Result.NO_ANSWER]
    ).update(
        result=Command.Result.OK if msg.ok else Command.Result.FAILED,
        error_code=error_code,
        error_message=error_message,
        answered_at=now,
    )
    if not done:
        return None
    command = Command.objects.select_related("machine__lab").get(pk=command_id)
    push_command(command)
    return command


def expire_commands(now: datetime | None = None) -> int:
    """Commands never answered, well past their expiry: "no answer" (conditional UPDATE)."""
    now = now or timezone.now()
    return Command.objects.filter(
        result=Command.Result.SENT, expires_at__lt=now - timedelta(seconds=COMMAND_GRACE_S)
    ).update(result=Command.Result.NO_ANSWER, answered_at=now)


def send_command(
    machine: Machine, action: str, user: Any, *, booking: Any = None, ttl_s: int = COMMAND_TTL_S
) -> Command:
    """Publish ``action`` on the machine's ``cmd`` topic (QoS 1, expiring) and audit it as a Command.

    The row is written first (who, when, what); if the broker cannot be reached
    the command is marked failed with the reason. The bridge's ack arrives
    through the hub (:func:`apply_cmd_ack`).
    """
    from django.conf import settings

    from devices.hub import publish_once

    if action not in protocol.ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    issued = timezone.now()
    command = Command.objects.create(
        machine=machine,
        action=action,
        issued_by=user,
        issued_at=issued,
        expires_at=issued + timedelta(seconds=ttl_s),
    )
    payload = protocol.encode(
        protocol.Command(
            id=str(command.id),
            action=action,
            ts=dt_to_ms(issued),
            expires=dt_to_ms(command.expires_at),
            booking=getattr(booking, "pk", booking),
        )
    )
    try:
        publish_once(
            settings.MQTT_URL, protocol.topic_cmd(machine.lab.slug, machine.slug), payload, expiry_s=ttl_s
        )
    except Exception as exc:
        log.warning("command %s to %s not published: %s", command.id, machine.slug, exc)
        Command.objects.filter(pk=command.pk, result=Command.Result.SENT).update(
            result=Command.Result.FAILED,
            error_code="broker",
            error_message=str(exc)[:500],
            answered_at=timezone.now(),
        )
        command.refresh_from_db()
    return command
