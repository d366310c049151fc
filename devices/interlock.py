"""Interlocks that follow the bookings: the server decides, the bridge obeys, mismatches are chased.

Contract. :func:`wanted_state` says what an interlocked machine's lock should be at ``now``, first
rule that applies wins:

1. an active :class:`~devices.models.InterlockOverride` (``starts_at <= now < until``, not ended):
   its ``enabled`` (reason ``override``);
2. a maintenance booking holding the machine now: disabled (reason ``maintenance``, a lock-out;
   technicians use an override);
3. a member booking checked in (``checked_in``/``completed``, ``checked_in_at <= now < end + grace``;
   one its member finished early holds it until ``completed_at`` only)
   or a booking of :attr:`Booking.UNLOCKING_KINDS` (``confirmed``/``completed``,
   ``start <= now < end + grace``): enabled (reason ``booking``; the latest-starting one is named);
4. with the machine's end action ``finish``: a machine that was enabled and still runs a job stays
   enabled (reason ``finishing``) until the job ends, whoever booked the next slot. With ``stop``
   nothing keeps it: it is disabled at the end plus the grace;
5. otherwise disabled (reason ``idle``).

:func:`reconcile` brings many machines to their wanted state in one pass and a handful of queries
whatever their number. Each change of ``wanted`` is claimed with a conditional ``UPDATE`` on the
``(wanted, wanted_since)`` the caller read, and only the caller that wins writes the command (a row
the hub publishes: :func:`devices.commands.issue_command`), so schedulers, hubs and pages running
side by side send it once. When the machine reports ``enabled`` and it disagrees with ``wanted``
(a bridge restarted, a lost command, an override that expired), ``mismatch_since`` is recorded, the
command is sent again at most every :data:`RESEND_AFTER` (claimed on ``last_command_at``, never
while the previous one awaits its answer), and after :data:`ALERT_AFTER` an ``interlock`` alert is
raised; it is cleared when both agree again. An offline machine is not chased: its own ``offline``
alert says enough, and the command goes again once it is back.

Called by :mod:`devices.follow` (bookings changed: their machines in one call), :mod:`devices.status`
(a status changed ``enabled`` or ``online``), :mod:`devices.scheduler` (every pass) and
:mod:`devices.interlock_views` (an override). Never talks MQTT.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable

from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from devices import alerts, capabilities, commands
from devices.models import Alert, Command, Interlock, InterlockOverride, MachineLink, MachineStatus
from fablab.booking.models import Booking
from fablab.labs.models import EndAction, Machine
from firmware_bridge import protocol

log = logging.getLogger(__name__)

#: A disagreeing machine is sent its wanted state again at most this often.
RESEND_AFTER = dt.timedelta(seconds=10)
#: A machine that stays out of its wanted state this long raises an ``interlock`` alert.
ALERT_AFTER = dt.timedelta(seconds=30)
#: The longest end grace a machine may have (the field's validator): bounds the bookings read.
MAX_END_GRACE = dt.timedelta(minutes=120)

OVERRIDE, MAINTENANCE, BOOKING, FINISHING, IDLE = "override", "maintenance", "booking", "finishing", "idle"
#: Reasons under which a machine was enabled, which ``finish`` may extend while a job runs.
_ENABLING = (OVERRIDE, BOOKING, FINISHING)


@dataclasses.dataclass(frozen=True)
class Wanted:
    """The lock a machine should have: ``enabled``, why (``reason``), for which booking (if any)."""

    enabled: bool
    reason: str
    booking_id: int | None = None


def decide(
    machine: Machine,
    now: dt.datetime,
    *,
    override: InterlockOverride | None,
    bookings: Iterable[Booking],
    running: bool,
    current: Interlock | None,
) -> Wanted:
    """The rules of the module docstring, on data already read (no query).

    ``bookings``: the machine's bookings that may hold it around ``now`` (any status); ``running``:
    the machine reports a job running; ``current``: its interlock row as stored (None: none yet).
    """
    if override is not None:
        return Wanted(override.enabled, OVERRIDE)
    grace = dt.timedelta(minutes=machine.end_grace_minutes)
    holding: list[Booking] = []
    for b in bookings:
        if b.kind == Booking.Kind.MAINTENANCE:
            if b.status in Booking.ACTIVE and b.start <= now < b.end:
                return Wanted(False, MAINTENANCE, b.pk)
        elif b.kind == Booking.Kind.MEMBER:
            if (
                b.status in (Booking.Status.CHECKED_IN, Booking.Status.COMPLETED)
                and b.checked_in_at is not None
                and b.checked_in_at <= now < _member_holds_until(b, grace)
            ):
                holding.append(b)
        elif (
            b.kind in Booking.UNLOCKING_KINDS
            and b.status in (Booking.Status.CONFIRMED, Booking.Status.COMPLETED)
            and b.start <= now < b.end + grace
        ):
            holding.append(b)
    if holding:
        return Wanted(True, BOOKING, max(holding, key=lambda b: (b.start, b.pk)).pk)
    if (
        running
        and machine.effective_end_action == EndAction.FINISH
        and current is not None
        and current.wanted
        and current.reason in _ENABLING
    ):
        return Wanted(True, FINISHING, current.booking_id)
    return Wanted(False, IDLE)


def _member_holds_until(booking: Booking, grace: dt.timedelta) -> dt.datetime:
    """Until when a checked-in member booking keeps its machine enabled: the end plus the grace, or,
    for a booking its member finished early (:func:`fablab.booking.lifecycle.finish`: completed
    before its end), the moment they said they were done. That is never after ``released_at`` (the
    next slot boundary), so the machine is locked before its freed time can be booked by anyone else."""
    if (
        booking.status == Booking.Status.COMPLETED
        and booking.completed_at is not None
        and booking.completed_at < booking.end
    ):
        return booking.completed_at
    return booking.end + grace


def _active_overrides(machine_ids: list[int], now: dt.datetime) -> dict[int, InterlockOverride]:
    rows = InterlockOverride.objects.filter(override_filter(now), machine_id__in=machine_ids).order_by(
        "starts_at", "pk"
    )
    return {o.machine_id: o for o in rows}  # the latest-starting one wins


def _bookings_around(machine_ids: list[int], now: dt.datetime) -> dict[int, list[Booking]]:
    """Bookings that may hold the machines at ``now``: started or checked in (a member checks in up to
    the check-in window before the start, and the machine is theirs from then), ended less than the
    longest grace ago.

    Read through the ``(status, end)`` index: a window of hours, whatever the history's length.
    """
    statuses = (Booking.Status.CONFIRMED, Booking.Status.CHECKED_IN, Booking.Status.COMPLETED)
    rows = Booking.objects.filter(
        Q(start__lte=now) | Q(checked_in_at__lte=now),
        machine_id__in=machine_ids,
        status__in=statuses,
        end__gt=now - MAX_END_GRACE,
    ).only("id", "machine_id", "kind", "status", "start", "end", "checked_in_at", "completed_at")
    out: dict[int, list[Booking]] = {}
    for b in rows:
        out.setdefault(b.machine_id, []).append(b)
    return out


def wanted_state(machine: Machine, now: dt.datetime | None = None) -> tuple[bool, str, Booking | None]:
    """``(enabled, reason, booking)``: what ``machine``'s lock should be at ``now`` (see the module)."""
    now = now or timezone.now()
    status = MachineStatus.objects.filter(pk=machine.pk).values_list("state", flat=True).first()
    wanted = decide(
        machine,
        now,
        override=_active_overrides([machine.pk], now).get(machine.pk),
        bookings=_bookings_around([machine.pk], now).get(machine.pk, []),
        running=status == protocol.RUNNING,
        current=Interlock.objects.filter(pk=machine.pk).first(),
    )
    booking = Booking.objects.filter(pk=wanted.booking_id).first() if wanted.booking_id else None
    return wanted.enabled, wanted.reason, booking


def interlocked_ids(machine_ids: Iterable[int] | None = None) -> list[int]:
    """The machines (of ``machine_ids``, else all) whose link says *interlock*."""
    links = MachineLink.objects.filter(interlock=True)
    if machine_ids is not None:
        links = links.filter(machine_id__in=list(machine_ids))
    return sorted(links.values_list("machine_id", flat=True))


def reconcile(machines: Iterable[Machine | int], now: dt.datetime | None = None) -> dict[str, int]:
    """Bring each interlocked machine of ``machines`` to its wanted state; return counts of what it did.

    Machines without an interlock are skipped. About ten queries whatever the number of machines,
    plus one claim (and at most one command) per machine whose wanted state changed or that
    disagrees with it. Keys of the result: ``changed``, ``sent``, ``resent``, ``alerts``, ``cleared``.
    """
    now = now or timezone.now()
    ids = interlocked_ids(m if isinstance(m, int) else m.pk for m in machines)
    counts = dict.fromkeys(("changed", "sent", "resent", "alerts", "cleared"), 0)
    if not ids:
        return counts
    Interlock.objects.bulk_create([Interlock(machine_id=i) for i in ids], ignore_conflicts=True)
    rows = {r.pk: r for r in Interlock.objects.filter(pk__in=ids).select_related("last_command")}
    by_id = {m.pk: m for m in Machine.objects.filter(pk__in=ids).select_related("lab", "machine_type")}
    statuses = {s.pk: s for s in MachineStatus.objects.filter(pk__in=ids).only("state", "online", "enabled")}
    overrides = _active_overrides(ids, now)
    bookings = _bookings_around(ids, now)
    open_interlock = set(
        Alert.objects.filter(
            machine_id__in=ids, kind=Alert.Kind.INTERLOCK, cleared_at__isnull=True
        ).values_list("machine_id", flat=True)
    )
    for machine_id in ids:
        machine, row, status = by_id[machine_id], rows[machine_id], statuses.get(machine_id)
        wanted = decide(
            machine,
            now,
            override=overrides.get(machine_id),
            bookings=bookings.get(machine_id, []),
            running=status is not None and status.state == protocol.RUNNING,
            current=row,
        )
        try:
            _reconcile_one(machine, row, status, wanted, now, machine_id in open_interlock, counts)
        except Exception:
            # One machine's trouble (a refused command, a database hiccup) must not stop the others.
            log.exception("interlock of machine %s could not be reconciled", machine_id)
    return counts


def _reconcile_one(
    machine: Machine,
    row: Interlock,
    status: MachineStatus | None,
    wanted: Wanted,
    now: dt.datetime,
    alert_open: bool,
    counts: dict[str, int],
) -> None:
    reported = status.enabled if status is not None and status.online else None
    if (row.wanted, row.wanted_since is not None) != (wanted.enabled, True):
        # A change (or the first decision for this machine): claimed on what was read.
        claimed = Interlock.objects.filter(
            pk=row.pk, wanted=row.wanted, wanted_since=row.wanted_since
        ).update(
            wanted=wanted.enabled,
            wanted_since=now,
            reason=wanted.reason,
            booking_id=wanted.booking_id,
            mismatch_since=None,
            last_command_at=now,
        )
        if not claimed:
            return  # another caller decided it; its command is on its way
        counts["changed"] += 1
        first = row.wanted_since is None
        row.wanted, row.wanted_since, row.reason = wanted.enabled, now, wanted.reason
        row.booking_id, row.mismatch_since, row.last_command_at = wanted.booking_id, None, now
        log.info(
            "interlock %s: wanted %s (%s)",
            machine,
            "enabled" if wanted.enabled else "disabled",
            wanted.reason,
        )
        # The first decision for a machine that already reports it needs no command.
        if not (first and reported == wanted.enabled) and _send(machine, row, wanted):
            counts["sent"] += 1
    elif (row.reason, row.booking_id) != (wanted.reason, wanted.booking_id):
        Interlock.objects.filter(pk=row.pk, wanted=wanted.enabled).update(
            reason=wanted.reason, booking_id=wanted.booking_id
        )
        row.reason, row.booking_id = wanted.reason, wanted.booking_id
    if reported is None:
        # Offline or never heard from: nothing to compare; chase it again once it reports.
        if row.mismatch_since is not None:
            Interlock.objects.filter(pk=row.pk).update(mismatch_since=None)
        return
    if reported == row.wanted:
        if row.mismatch_since is not None:
            Interlock.objects.filter(pk=row.pk, mismatch_since=row.mismatch_since).update(mismatch_since=None)
        if alert_open and alerts.clear_alert(machine.pk, Alert.Kind.INTERLOCK, now):
            counts["cleared"] += 1
        return
    _chase(machine, row, now, alert_open, counts)


def _chase(
    machine: Machine, row: Interlock, now: dt.datetime, alert_open: bool, counts: dict[str, int]
) -> None:
    """The machine reports the opposite of ``row.wanted``: note since when, resend, alert after 30 s."""
    since = row.mismatch_since
    if since is None:
        Interlock.objects.filter(pk=row.pk, mismatch_since__isnull=True).update(mismatch_since=now)
        since = Interlock.objects.filter(pk=row.pk).values_list("mismatch_since", flat=True).first() or now
    last = row.last_command_at
    due = (last is None or now - last >= RESEND_AFTER) and not _awaiting_answer(row.last_command, now)
    # Claimed on the last_command_at read: of several callers, one sends it again.
    if due and Interlock.objects.filter(pk=row.pk, last_command_at=last).update(last_command_at=now):
        row.last_command_at = now
        if _send(machine, row, Wanted(row.wanted, row.reason, row.booking_id)):
            counts["resent"] += 1
    if now - since >= ALERT_AFTER and not alert_open:
        state = _("enabled") if row.wanted else _("disabled")
        message = _(
            "The interlock of %(machine)s should be %(state)s but the machine reports otherwise since %(since)s."
        ) % {
            "machine": machine.name,
            "state": state,
            "since": timezone.localtime(since, machine.lab.tz).strftime("%H:%M:%S"),
        }
        if alerts.raise_alert(machine.pk, Alert.Kind.INTERLOCK, message, now, booking_id=row.booking_id):
            counts["alerts"] += 1
            log.warning(
                "interlock %s: not %s since %s", machine, "enabled" if row.wanted else "disabled", since
            )


def _awaiting_answer(command: Command | None, now: dt.datetime) -> bool:
    """The previous command may still be carried out: sent, unanswered, not yet past its grace."""
    if command is None or command.result != Command.Result.SENT or command.state == Command.State.EXPIRED:
        return False
    return now < command.expires_at + dt.timedelta(seconds=commands.COMMAND_GRACE_S)


def _send(machine: Machine, row: Interlock, wanted: Wanted) -> bool:
    """Write the command for ``wanted`` and note it on the row; False when the machine refuses it."""
    action = protocol.ENABLE if wanted.enabled else protocol.DISABLE
    booking = Booking.objects.filter(pk=wanted.booking_id).first() if wanted.booking_id else None
    try:
        command = commands.issue_command(
            machine=machine, action=action, booking=booking, source=Command.Source.SYSTEM
        )
    except capabilities.CommandRefused as refused:
        log.warning("interlock %s: %s cannot be sent: %s", machine, action, refused.message)
        return False
    Interlock.objects.filter(pk=row.pk).update(last_command=command)
    row.last_command = command
    return True


def machines_of_statuses(changed: Iterable[int]) -> None:
    """A status changed ``enabled`` or ``online`` for these machines: reconcile them now (best effort).

    The hub calls this after the status's commit, so a restarted bridge is brought back within a
    second, not at the scheduler's next pass. A failure is logged: the scheduler repairs it.
    """
    try:
        reconcile(list(changed))
    except Exception:
        log.exception("interlock reconcile after a status change failed")


def override_filter(now: dt.datetime) -> Q:
    """Overrides in force at ``now`` (for pages and the admin)."""
    return Q(ended_at__isnull=True, starts_at__lte=now, until__gt=now)
