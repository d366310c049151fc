"""Usage sessions: one per run of a machine, opened and closed by its statuses.

Contract: a machine has at most one open session (a unique constraint, so of
several hubs one opens it); :func:`open_session` opens one when a machine starts
running (a new job while one is open closes the old one first), :func:`close_session`
closes it as interrupted unless an event already said how it ended;
:func:`record_outcome` writes that outcome (also on a session closed moments
before, as the event may follow the status); :func:`add_energy` keeps the
``energy_wh`` counter's rise since the session opened. Each hands the sessions it
changed to :mod:`devices.attribution` (which booking they belong to, and that
booking's usage), which holds all booking logic.

Called inside the transactions of :mod:`devices.status` (open, close),
:mod:`devices.events` (outcome) and :mod:`devices.readings` (energy). Imports the
models and the MQTT contract only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction

from devices import attribution
from devices.machines import ms_to_dt
from devices.models import MachineStatus, UsageSession
from firmware_bridge import protocol

#: An event that closes a job may arrive shortly after the status that ended the session.
LATE_OUTCOME_WINDOW = timedelta(minutes=5)

OUTCOME_EVENTS = {
    "job_finished": UsageSession.Outcome.FINISHED,
    "job_failed": UsageSession.Outcome.FAILED,
    "job_cancelled": UsageSession.Outcome.CANCELLED,
}


def open_session(status: MachineStatus, job: protocol.Job | None, at: datetime) -> None:
    """Open the session of a machine that runs ``job`` (``status`` as that status left it)."""
    current = UsageSession.objects.filter(machine_id=status.machine_id, ended_at__isnull=True).first()
    if current is not None:
        if job is None or not current.job_id or current.job_id == job.id:
            if job is not None and not current.job_id:
                current.job_id, current.job_name = job.id[:128], job.name[:255]
                current.save(update_fields=["job_id", "job_name"])
            return
        # A different job while the previous session is still open: it ended unseen.
        close_session(status, at)
    started = ms_to_dt(job.started_ts) if job is not None and job.started_ts else at
    started = min(started, at)
    energy = status.last_reading.get("energy_wh") if isinstance(status.last_reading, dict) else None
    booking_id = attribution.booking_for_new_session(status.machine_id, started)
    try:
        with transaction.atomic():
            UsageSession.objects.create(
                machine_id=status.machine_id,
                started_at=started,
                job_id=job.id[:128] if job else "",
                job_name=job.name[:255] if job else "",
                energy_wh_start=float(energy) if isinstance(energy, int | float) else None,
                booking_id=booking_id,
                walk_in=booking_id is None,
            )
    except IntegrityError:  # another hub opened it
        return
    attribution.recompute_booking([booking_id])


def close_session(status: MachineStatus, at: datetime) -> None:
    """Close the machine's open session, if any (conditional UPDATE: closed once)."""
    session = UsageSession.objects.filter(machine_id=status.machine_id, ended_at__isnull=True).first()
    if session is None:
        return
    outcome = session.outcome
    if outcome == UsageSession.Outcome.RUNNING:
        outcome = UsageSession.Outcome.INTERRUPTED
    session.ended_at, session.outcome = max(at, session.started_at), outcome
    if UsageSession.objects.filter(pk=session.pk, ended_at__isnull=True).update(
        ended_at=session.ended_at, outcome=outcome
    ):
        attribution.session_closed(session)


def record_outcome(machine_id: int, event_type: str, at: datetime) -> None:
    """An event that ends a job: its outcome on the open session, else on one interrupted just before."""
    outcome = OUTCOME_EVENTS.get(event_type)
    if outcome is None:
        return
    sessions = UsageSession.objects.filter(machine_id=machine_id)
    if not sessions.filter(ended_at__isnull=True).update(outcome=outcome):
        late = (
            sessions.filter(ended_at__gte=at - LATE_OUTCOME_WINDOW, outcome=UsageSession.Outcome.INTERRUPTED)
            .order_by("-ended_at")
            .first()
        )
        if late is not None:
            UsageSession.objects.filter(pk=late.pk).update(outcome=outcome)
            attribution.recompute_booking([late.booking_id])


def add_energy(counters: Mapping[int, tuple[float, float | None]]) -> None:
    """Fold energy counters into the open sessions: ``{machine id: (newest energy_wh, first seen or None)}``.

    A session's energy is the counter's rise since the first reading seen while it was
    open; a counter that went backwards (a reset plug) keeps the energy counted so far.
    Must run in the caller's transaction (the sessions are locked).
    """
    if not counters:
        return
    bookings = []
    for session in UsageSession.objects.select_for_update().filter(
        machine_id__in=list(counters), ended_at__isnull=True
    ):
        energy, first = counters[session.machine_id]
        start = session.energy_wh_start
        if start is None:
            start = first if first is not None else energy
        UsageSession.objects.filter(pk=session.pk).update(
            energy_wh_start=start, energy_wh=energy - start if energy >= start else session.energy_wh
        )
        bookings.append(session.booking_id)
    attribution.recompute_booking(bookings, tolerance_minutes=1.0)
