"""The scheduler's pass: every time-based transition of bookings and machines (``manage.py run_scheduler``).

One :meth:`Scheduler.run_pass` does, in order:

a. **started bookings** — a member's confirmed booking that has started, whose machine was offline,
   in error (its state at the start, from the state history) or out of service (not bookable, or a
   maintenance window covering the start) becomes *unavailable* (:func:`lifecycle.mark_unavailable`:
   never a no-show, check-in stays open) and, offline or in error, raises a ``booked_offline`` alert
   naming the booking, cleared once the machine is back;
b. **no-shows** — at the no-show deadline, a confirmed member booking without check-in and without
   machine activity in [check-in opens, deadline] (a usage session overlapping it, or the machine
   running now) becomes ``no_show`` (:func:`lifecycle.mark_no_show`: the member is emailed, the slot
   is released). With activity on a machine without interlock the job is the check-in
   (:func:`lifecycle.check_in_by_machine`); on an interlocked machine a job is someone else's (a
   previous booking finishing, an override) and does not excuse a missing check-in;
c. **completion** — every booking whose end has passed (:func:`lifecycle.complete`);
d. **interlocks** — every interlocked machine is reconciled (:func:`devices.interlock.reconcile`);
e. **silent machines** — online machines without telemetry raise ``silent``
   (:func:`devices.readings.check_silent`);
f. **attribution** — :func:`devices.attribution.scheduled_pass` (usage, overruns, walk-ins).
g. **care** — :func:`devices.care.scheduled_pass` (``service_due`` alerts from run and laser-on hours).
h. **waitlist** — :func:`fablab.booking.waitlist.scheduled_pass` (holds expire and pass on, freed time is
   offered or closed, entries whose window passed stop waiting).
i. **series** — :func:`fablab.booking.series.extend_member_series` (members' recurring bookings: the
   occurrences that came within the booking horizon are booked, each once).
j. **retention** — :func:`fablab.reports.retention.pseudonymise_pass` (bookings, sessions and commands
   older than ``FABLAB_PSEUDONYMISE_AFTER_DAYS`` are pseudonymised, a batch at a time).
k. **downsample** — :func:`devices.influx_retention.downsample_pass` (complete hours of raw telemetry
   become hourly points in InfluxDB; an InfluxDB outage costs a log line, never the other steps).
l. **reports** — :func:`fablab.reports.rollup.scheduled_pass` (the report rollups of yesterday and
   today rebuilt, at most every ``REPORTS_ROLLUP_INTERVAL_S`` seconds).
m. **report snapshots** — :func:`fablab.reports.snapshots.scheduled_pass` (the protected years of every
   scope in use built again once the rollups changed, so that report requests stay cheap).

Every transition is a conditional ``UPDATE`` (in :mod:`fablab.booking.lifecycle` and
:mod:`devices.interlock`), so any number of schedulers may run side by side: each change happens
once. Every step reads its rows in a few batched queries; a step that fails is logged and the others
still run, and the next pass tries again (a database outage included). The follow-ups of the bookings
steps a–c changed (:mod:`devices.follow`) run together after step c, before the interlocks and usage.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable

from django.db import close_old_connections
from django.db.models import Exists, OuterRef, Q, Subquery
from django.utils import timezone
from django.utils.translation import gettext as _

from devices import alerts, attribution, care, follow, influx_retention, interlock, readings
from devices.machines import MachineIndex, dt_to_ms
from devices.models import Alert, MachineLink, MachineStatus, StateChange, UsageSession
from devices.status import push_machines
from fablab.booking import lifecycle, series, waitlist
from fablab.booking.models import Booking
from fablab.labs.models import MaintenanceWindow
from fablab.reports import retention, rollup, snapshots
from fablab.trainings import reminders as training_reminders
from firmware_bridge import protocol

log = logging.getLogger(__name__)

#: At most this many bookings per step and pass: a backlog (after a long stop) drains over passes.
BATCH = 500
#: How far back a started booking is still looked at (a scheduler stopped longer leaves it be).
LOOKBACK = dt.timedelta(days=1)
#: How often the machine index (for the silence check) is read again.
INDEX_RELOAD_S = 60.0

_UNAVAILABLE_STATES = {
    protocol.OFFLINE: Booking.Unavailable.OFFLINE,
    protocol.ERROR: Booking.Unavailable.ERROR,
}


class Scheduler:
    """Runs passes; keeps only the machine index between them (everything else is in the database)."""

    def __init__(self) -> None:
        self.index = MachineIndex()
        self._index_loaded = -1e9

    def run_pass(self, now: dt.datetime | None = None) -> dict[str, int]:
        """One pass at ``now`` (default: the clock); returns what each step did, by name."""
        now = now or timezone.now()
        steps: list[tuple[str, Callable[[dt.datetime], int]]] = [
            ("unavailable", started_bookings),
            ("no_show", no_shows),
            ("completed", completions),
            ("interlock", reconcile_interlocks),
            ("silent", self.silent),
            ("attribution", attribute),
            ("care", care.scheduled_pass),
            ("waitlist", waitlist.scheduled_pass),
            ("trainings", training_reminders.scheduled_pass),
            ("series", series.extend_member_series),
            ("retention", retention.pseudonymise_pass),
            ("downsample", influx_retention.downsample_pass),
            ("reports", rollup.scheduled_pass),
            ("report_snapshots", snapshots.scheduled_pass),
        ]
        done: dict[str, int] = {}
        # The bookings' follow-ups (interlock, attribution, board) run once the booking steps are done:
        # the interlocks of all the machines that changed hands in one reconcile, not one per booking.
        with follow.batched():
            self._run(steps[:3], now, done)
        self._run(steps[3:], now, done)
        return done

    @staticmethod
    def _run(steps: list[tuple[str, Callable[[dt.datetime], int]]], now: dt.datetime, done: dict) -> None:
        for name, step in steps:
            try:
                done[name] = step(now)
            except Exception:
                # A connection the database dropped is replaced before the next pass (run_forever).
                log.exception("scheduler step %s failed; the next pass tries again", name)
                done[name] = -1

    def silent(self, now: dt.datetime) -> int:
        if time.monotonic() - self._index_loaded > INDEX_RELOAD_S:
            self.index.reload()
            self._index_loaded = time.monotonic()
        return readings.check_silent(self.index, now)

    def run_forever(self, interval_s: float, stop: Callable[[], bool]) -> None:
        """Pass after pass, ``interval_s`` apart, until ``stop()``; a pass that fails is logged only."""
        while not stop():
            began = time.monotonic()
            try:
                close_old_connections()
                self.run_pass()
            except Exception:
                log.exception("scheduler pass failed; retrying in %.0f s", interval_s)
            while not stop() and time.monotonic() - began < interval_s:
                time.sleep(min(0.2, interval_s))


# ---------------------------------------------------------------------------------------- steps


def _linked_ids() -> set[int]:
    return set(MachineLink.objects.values_list("machine_id", flat=True))


def started_bookings(now: dt.datetime) -> int:
    """Step a: member bookings that started on a machine unusable at their start become unavailable."""
    state_at_start = Subquery(
        StateChange.objects.filter(machine_id=OuterRef("machine_id"), at__lte=OuterRef("start"))
        .order_by("-at", "-pk")
        .values("state")[:1]
    )
    maintenance = Exists(
        MaintenanceWindow.objects.filter(
            machine_id=OuterRef("machine_id"), start__lte=OuterRef("start"), end__gt=OuterRef("start")
        )
    )
    rows = (
        Booking.objects.filter(
            kind=Booking.Kind.MEMBER,
            status=Booking.Status.CONFIRMED,
            unavailable="",
            start__lte=now,
            start__gt=now - LOOKBACK,
        )
        .annotate(state_at_start=state_at_start, in_maintenance=maintenance)
        .values_list("pk", "machine_id", "machine__bookable", "state_at_start", "in_maintenance")
        .order_by("start")[:BATCH]
    )
    linked = None
    marked = 0
    for pk, machine_id, bookable, state, in_maintenance in rows:
        if not bookable or in_maintenance:
            reason = Booking.Unavailable.OUT_OF_SERVICE
        else:
            if linked is None:
                linked = _linked_ids()
            if machine_id not in linked:
                continue  # no bridge: nothing says how the machine was
            reason = _UNAVAILABLE_STATES.get(state or protocol.OFFLINE)  # never heard from: offline
            if reason is None:
                continue
        if lifecycle.mark_unavailable(pk, reason, now):
            marked += 1
            log.info("booking %s: machine %s at its start (%s)", pk, machine_id, reason)
            if reason != Booking.Unavailable.OUT_OF_SERVICE:
                message = _("The machine was offline or in error at the start of a booking.")
                alerts.raise_alert(machine_id, Alert.Kind.BOOKED_OFFLINE, message, now, booking_id=pk)
    _clear_booked_offline(now)
    return marked


def _clear_booked_offline(now: dt.datetime) -> int:
    """Close the ``booked_offline`` alerts of machines that are back (online, not in error)."""
    open_ids = Alert.objects.filter(kind=Alert.Kind.BOOKED_OFFLINE, cleared_at__isnull=True).values_list(
        "machine_id", flat=True
    )
    back = MachineStatus.objects.filter(machine_id__in=list(open_ids), online=True).exclude(
        state=protocol.ERROR
    )
    cleared = 0
    for machine_id in back.values_list("machine_id", flat=True):
        cleared += alerts.clear_alert(machine_id, Alert.Kind.BOOKED_OFFLINE, now)
    return cleared


def no_shows(now: dt.datetime) -> int:
    """Step b: confirmed member bookings past their no-show deadline: no-show, or checked in by their job."""
    candidates = [
        b
        for b in Booking.objects.filter(
            kind=Booking.Kind.MEMBER,
            status=Booking.Status.CONFIRMED,
            unavailable="",
            checked_in_at__isnull=True,
            start__lte=now - dt.timedelta(minutes=1),  # the shortest grace the field allows
            start__gt=now - LOOKBACK,
        )
        .select_related("machine")
        .order_by("start")[:BATCH]
        if lifecycle.no_show_deadline(b) <= now
    ]
    if not candidates:
        return 0
    machine_ids = {b.machine_id for b in candidates}
    interlocked = set(interlock.interlocked_ids(machine_ids))
    running = set(
        MachineStatus.objects.filter(machine_id__in=machine_ids, state=protocol.RUNNING).values_list(
            "machine_id", flat=True
        )
    )
    earliest = min(lifecycle.check_in_opens(b) for b in candidates)
    sessions: dict[int, list[tuple[dt.datetime, dt.datetime | None]]] = {}
    for machine_id, started, ended in UsageSession.objects.filter(
        Q(ended_at__isnull=True) | Q(ended_at__gte=earliest), machine_id__in=machine_ids, started_at__lte=now
    ).values_list("machine_id", "started_at", "ended_at"):
        sessions.setdefault(machine_id, []).append((started, ended))
    changed = 0
    for b in candidates:
        opens, deadline = lifecycle.check_in_opens(b), lifecycle.no_show_deadline(b)
        overlapping = [
            s for s, e in sessions.get(b.machine_id, []) if s <= deadline and (e is None or e >= opens)
        ]
        # On an interlocked machine a job is never the member's check-in: it ran for someone else
        # (a previous booking finishing, an override), and the member could still have checked in.
        if (overlapping or b.machine_id in running) and b.machine_id not in interlocked:
            at = max(min(overlapping), opens) if overlapping else deadline
            if lifecycle.check_in_by_machine(b.pk, at):
                changed += 1
                log.info("booking %s: checked in by the job started at %s", b.pk, at)
        elif lifecycle.mark_no_show(b.pk, now):
            changed += 1
            log.info("booking %s: no-show, released at %s", b.pk, now)
    return changed


def completions(now: dt.datetime) -> int:
    """Step c: every booking whose time is over and that may complete, completes."""
    ids = (
        Booking.objects.filter(end__lte=now)
        .filter(
            Q(status=Booking.Status.CHECKED_IN)
            | Q(status=Booking.Status.CONFIRMED, kind__in=lifecycle.NON_MEMBER_KINDS)
            | (Q(status=Booking.Status.CONFIRMED, kind=Booking.Kind.MEMBER) & ~Q(unavailable=""))
        )
        .order_by("end")
        .values_list("pk", flat=True)[:BATCH]
    )
    done = 0
    for pk in list(ids):
        if lifecycle.complete(pk, now):
            done += 1
            log.info("booking %s: completed", pk)
    return done


def reconcile_interlocks(now: dt.datetime) -> int:
    """Step d: every interlocked machine to its wanted state; returns how many commands were written."""
    counts = interlock.reconcile(interlock.interlocked_ids(), now)
    return counts["sent"] + counts["resent"]


def attribute(now: dt.datetime) -> int:
    """Step f: usage brought up to date, unbooked-use and overrun alerts; the changed machines pushed."""
    changed = attribution.scheduled_pass(now)
    if changed:
        push_machines(sorted(changed), dt_to_ms(now))
    return len(changed)
