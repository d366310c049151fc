"""Live status: each machine's state as its newest status left it, applied once by several hubs.

Contract: :func:`apply_statuses` applies a batch of statuses as if one by one in
``ts`` order (newest ``ts`` wins, every state change recorded, sessions opened and
closed, alerts raised and cleared, one board frame per status applied, pushed
after the commit). Every hub gets every ``status`` and ``online`` message (plain
subscriptions), so each change is *claimed* — a row lock plus a conditional
``UPDATE`` (``status_ts < ts``) — and only the hub that claims it records the side
effects and pushes the change to the board. :func:`apply_bridge_online` and
:func:`mark_machine_offline` handle a bridge's online flag and its Last Will.
:func:`push` and :func:`push_machines` are the best-effort board pushes the other
appliers share.

Called by the hub (:mod:`devices.hub`); :mod:`devices.readings` and
:mod:`devices.events` use its pushes. Imports :mod:`devices.sessions`,
:mod:`devices.alerts`, :mod:`devices.live` and :mod:`devices.interlock` (a status that changes
``enabled`` or ``online`` has the machine's interlock reconciled after the commit).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from devices import interlock, live
from devices.alerts import alerts_for_status, open_alerts_of, raise_alert
from devices.machines import MachineInfo, dt_to_ms, ms_to_dt
from devices.models import Alert, Bridge, MachineStatus, StateChange
from devices.sessions import close_session, open_session
from firmware_bridge import protocol

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ live pushes


def push(status: MachineStatus, ts: int | None, alerts: list[dict[str, str]] | None = None) -> None:
    """Push one machine's frame to its lab's board; best effort (the database is the truth)."""
    try:
        live.push_status(status, ts=ts, alerts=alerts)
    except Exception:  # the board is best effort; the database is the truth
        log.exception("push to the channel layer failed for machine %s", status.machine_id)


def push_machines(machine_ids: Iterable[int], ts: int | None) -> None:
    """Push the frames of these machines as the database has them now (after a commit)."""
    for status in MachineStatus.objects.select_related("machine__lab").filter(
        machine_id__in=list(machine_ids)
    ):
        push(status, ts)


# ---------------------------------------------------------------------------------- status

_STATUS_FIELDS = (
    "state", "online", "enabled", "adapter", "job_id", "job_name", "job_started_at",
    "progress_pct", "error_code", "error_message", "last_message_at", "since", "capabilities",
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
    # None (not declared: a bridge older than the field) is kept apart from [] (can do nothing).
    status.capabilities = None if msg.capabilities is None else list(msg.capabilities)
    status.last_message_at = now
    state_changed = previous != msg.state or created
    if state_changed or status.since is None:
        status.since = at
    status.status_ts = msg.ts
    return previous, previous_job, state_changed


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
        alerts = open_alerts_of(by_machine)
        changes: list[StateChange] = []
        lock_changed: list[int] = []  # machines whose reported lock or presence changed
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
            before = (status.enabled, status.online)
            steps = []
            for msg in fresh:
                steps.append((msg, *_step(status, msg, created, now), copy.copy(status)))
                created = False
            if not _claim(status, fresh[0].ts):
                continue  # another hub applied a status at least as new meanwhile
            if (status.enabled, status.online) != before:
                lock_changed.append(machine_id)
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
                        open_session(snapshot, msg.job, at)
                elif msg.state in (protocol.IDLE, protocol.ERROR, protocol.OFFLINE) and state_changed:
                    close_session(snapshot, at)
                open_alerts = alerts_for_status(machine_id, msg, at, open_alerts)
                pushes.append((msg.ts, snapshot, open_alerts))
        if changes:
            StateChange.objects.bulk_create(changes)
    pushes.sort(key=lambda p: p[0])
    for ts, snapshot, open_alerts in pushes:
        push(snapshot, ts, [{"kind": kind} for _pk, kind, _raised in open_alerts])
    if lock_changed:
        # A restarted bridge (back disabled) or a machine back online: its interlock is set right now.
        interlock.machines_of_statuses(lock_changed)
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
        close_session(status, at)
        raise_alert(info.id, Alert.Kind.OFFLINE, reason, at)
    status = MachineStatus.objects.select_related("machine__lab").get(pk=info.id)
    push(status, dt_to_ms(at))
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
