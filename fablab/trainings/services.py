"""Training session writes: schedule, edit, cancel, register, cancel a registration, trainer role.

Every write follows lock → check → write in one transaction, like :mod:`fablab.booking.services`:

* the session row is locked (``SELECT … FOR UPDATE``; on SQLite every transaction is
  ``BEGIN IMMEDIATE``, one writer at a time), so of simultaneous registrations for the last seat
  exactly one gets it and the others go to the waitlist; a cancellation and the waitlist's
  move-up happen under the same lock;
* the rules are checked and the first broken one raises
  :class:`~fablab.booking.errors.BookingError` (codes in ``errors.RULES``);
* the rows are written; the emails go out after the commit (:mod:`fablab.trainings.notify`).

The conditional unique constraint ``one_live_registration_per_member`` is the last line against a
member registered twice. Attendance and its certification are in :mod:`fablab.trainings.attendance`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext

from fablab.booking import services as booking_services
from fablab.booking.errors import BookingError
from fablab.labs.models import Lab
from fablab.members import roles
from fablab.members.models import Certification

from . import access, holds, notify
from .models import Initiative, InitiativeParticipation, Registration, Trainer, TrainingSession

#: Test hook for the seat race (tests/trainings/test_seat_race.py): runs between the count and the insert.
race_point: Callable[[], None] | None = None

#: Fields :func:`session_update` may change; ``training`` and ``lab`` are fixed once scheduled.
EDITABLE = (
    "start",
    "end",
    "seats",
    "language",
    "initiative",
    "outside_opening_hours",
    "machines",
    "prerequisites",
)


def locked(session: TrainingSession) -> TrainingSession:
    """``session``'s row read again and locked until the transaction ends (its lab and training joined):
    every write that counts seats or changes the session takes this lock first."""
    return (
        TrainingSession.objects.select_for_update(of=("self",))
        .select_related("lab", "training")
        .get(pk=session.pk)
    )


def _check_times(start: dt.datetime, end: dt.datetime, now: dt.datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("session times must be timezone-aware")
    booking_services.check_reach(start, end, now)
    if start <= now:
        raise BookingError("in_past")


def _check_scheduler(by, lab: Lab, training, outside_opening_hours: bool) -> None:
    if not access.may_run(by, lab):
        raise BookingError("forbidden")
    if training.lab_id not in (None, lab.pk):
        raise BookingError("training_not_for_lab")
    if outside_opening_hours and not roles.manages_lab(by, lab):
        raise BookingError(
            "forbidden", gettext("Only a lab manager may schedule a session outside opening hours.")
        )


def session_create(
    *,
    training,
    lab: Lab,
    machines,
    start: dt.datetime,
    end: dt.datetime,
    seats: int,
    by,
    language: str = TrainingSession.Language.EN,
    initiative: Initiative | None = None,
    prerequisites=(),
    outside_opening_hours: bool = False,
    now: dt.datetime | None = None,
) -> TrainingSession:
    """A manager or trainer of ``lab`` schedules a session; its machines are held for its time.

    Raises :class:`BookingError` (nothing written) if ``by`` may not, the training is another lab's,
    the times are wrong, or a machine cannot be held (see :func:`fablab.trainings.holds.hold`).
    """
    now = now or timezone.now()
    _check_times(start, end, now)
    if seats < 1:
        raise ValueError("a session has at least one seat")
    _check_scheduler(by, lab, training, outside_opening_hours)
    holds.check_not_closed(lab, start, end)  # with machines or without: the lab is shut that day
    machines = list(machines)
    with transaction.atomic():
        session = TrainingSession.objects.create(
            training=training,
            lab=lab,
            start=start,
            end=end,
            seats=seats,
            language=language,
            initiative=initiative,
            outside_opening_hours=outside_opening_hours,
            created_by=by,
            created_at=now,
        )
        session.machines.set(machines)
        session.prerequisites.set(list(prerequisites))
        session.holds.set(
            holds.hold(session, machines, by=by, now=now, outside_opening_hours=outside_opening_hours)
        )
    return session


def session_update(
    *, session: TrainingSession, by, now: dt.datetime | None = None, **changes
) -> TrainingSession:
    """Change a session that has not started (fields in :data:`EDITABLE`).

    New times or machines replace the holds (the old ones are released in the same transaction, so
    a refused change leaves the session as it was). Seats may not drop below the members already
    registered (``seats_below_registered``); more seats move the waitlist up. A new start time
    re-arms the day-before reminder.
    """
    now = now or timezone.now()
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise ValueError(f"not editable: {sorted(unknown)}")
    with transaction.atomic():
        session = locked(session)
        if session.cancelled_at is not None:
            raise BookingError("session_cancelled")
        if session.start <= now:
            raise BookingError("session_started")
        outside = changes.get("outside_opening_hours", session.outside_opening_hours)
        _check_scheduler(by, session.lab, session.training, outside and not session.outside_opening_hours)
        if not access.may_run(by, session.lab):
            raise BookingError("forbidden")
        start, end = changes.get("start", session.start), changes.get("end", session.end)
        moved = start != session.start or end != session.end
        if moved:
            _check_times(start, end, now)
            holds.check_not_closed(session.lab, start, end)
        seats = changes.get("seats", session.seats)
        if seats < 1:
            raise ValueError("a session has at least one seat")
        if seats < session.registrations.filter(status=Registration.Status.REGISTERED).count():
            raise BookingError("seats_below_registered")
        old_machines = set(session.machines.values_list("pk", flat=True))
        machines = list(changes["machines"]) if "machines" in changes else list(session.machines.all())
        rehold = moved or outside != session.outside_opening_hours or {m.pk for m in machines} != old_machines
        if moved and start != session.start:
            session.reminded_at = None
        session.start, session.end, session.seats = start, end, seats
        session.language = changes.get("language", session.language)
        session.initiative = changes.get("initiative", session.initiative)
        session.outside_opening_hours = outside
        session.save()
        if "prerequisites" in changes:
            session.prerequisites.set(list(changes["prerequisites"]))
        if rehold:
            holds.release(list(session.holds.all()), by=by, now=now)
            session.machines.set(machines)
            session.holds.set(holds.hold(session, machines, by=by, now=now, outside_opening_hours=outside))
        _move_up(session, now)
    return session


def session_cancel(*, session: TrainingSession, by, now: dt.datetime | None = None) -> TrainingSession:
    """Cancel a session (once): its machines are released and everyone registered or waiting is told."""
    now = now or timezone.now()
    with transaction.atomic():
        session = locked(session)
        if not access.may_run(by, session.lab):
            raise BookingError("forbidden")
        if session.cancelled_at is not None:
            raise BookingError("session_cancelled")
        if session.end <= now:
            raise BookingError("session_started")
        session.cancelled_at = now
        session.save(update_fields=["cancelled_at"])
        holds.release(list(session.holds.all()), by=by, now=now)
        for registration in session.registrations.exclude(
            status=Registration.Status.CANCELLED
        ).select_related("member"):
            notify.on_commit(registration, "session_cancelled")
    return session


def _missing_prerequisites(session: TrainingSession, member) -> list[str]:
    """Names of the session's prerequisites ``member`` does not hold, valid at the session's start."""
    needed = list(session.prerequisites.all())
    if not needed:
        return []
    held = set(
        Certification.objects.filter(member=member, training__in=needed, revoked_at=None)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=session.start))
        .values_list("training_id", flat=True)
    )
    return [t.name for t in needed if t.pk not in held]


def register(*, session: TrainingSession, member, now: dt.datetime | None = None) -> Registration:
    """Register ``member``: a seat if one is left, else a place on the waitlist (first come, first served).

    Raises :class:`BookingError`: ``session_cancelled``, ``session_started``, ``already_registered``,
    ``prerequisite_missing`` (naming the missing trainings). The session row is locked from the
    count to the insert, so the last seat goes to exactly one of simultaneous requests.
    """
    now = now or timezone.now()
    with transaction.atomic():
        session = locked(session)
        if session.cancelled_at is not None:
            raise BookingError("session_cancelled")
        if session.start <= now:
            raise BookingError("session_started")
        if not member.is_active:
            raise BookingError("forbidden")
        live = Registration.objects.filter(session=session, member=member).exclude(
            status=Registration.Status.CANCELLED
        )
        if live.exists():
            raise BookingError("already_registered")
        missing = _missing_prerequisites(session, member)
        if missing:
            raise BookingError(
                "prerequisite_missing",
                gettext("You need %(trainings)s before you can register for this session.")
                % {"trainings": ", ".join(missing)},
            )
        taken = Registration.objects.filter(session=session, status=Registration.Status.REGISTERED).count()
        if race_point is not None:
            race_point()
        status = Registration.Status.REGISTERED if taken < session.seats else Registration.Status.WAITLISTED
        try:
            with transaction.atomic():
                registration = Registration.objects.create(
                    session=session, member=member, status=status, created_at=now
                )
        except IntegrityError as exc:
            raise BookingError("already_registered") from exc
        notify.on_commit(registration, status)
    return registration


def cancel_registration(*, registration: Registration, by, now: dt.datetime | None = None) -> Registration:
    """The member (or a manager or trainer of the lab) cancels a registration before the session starts.

    A freed seat goes to the first member on the waitlist, in the same transaction (they are emailed).
    """
    now = now or timezone.now()
    with transaction.atomic():
        session = (
            TrainingSession.objects.select_for_update(of=("self",))
            .select_related("lab", "training")
            .get(pk=registration.session_id)
        )
        registration = Registration.objects.select_for_update().get(pk=registration.pk)
        if registration.member_id != by.pk and not access.may_run(by, session.lab):
            raise BookingError("forbidden")
        if registration.status == Registration.Status.CANCELLED:
            raise BookingError("not_registered")
        if session.start <= now:
            raise BookingError("session_started")
        registration.status = Registration.Status.CANCELLED
        registration.cancelled_at = now
        registration.save(update_fields=["status", "cancelled_at"])
        if session.cancelled_at is None:
            _move_up(session, now)
    return registration


def _move_up(session: TrainingSession, now: dt.datetime) -> list[Registration]:
    """Under the session's lock: give free seats to the waitlist, oldest first; each is emailed."""
    taken = session.registrations.filter(status=Registration.Status.REGISTERED).count()
    free = session.seats - taken
    if free <= 0:
        return []
    moved = list(
        session.registrations.select_for_update()
        .filter(status=Registration.Status.WAITLISTED)
        .order_by("created_at", "pk")[:free]
    )
    for registration in moved:
        registration.status = Registration.Status.REGISTERED
        registration.save(update_fields=["status"])
        notify.on_commit(registration, "promoted")
    return moved


def waitlist_position(registration: Registration) -> int | None:
    """1 for the first member waiting, and so on; None when not on the waitlist."""
    if registration.status != Registration.Status.WAITLISTED:
        return None
    ahead = Registration.objects.filter(
        session_id=registration.session_id, status=Registration.Status.WAITLISTED
    )
    ahead = ahead.filter(
        Q(created_at__lt=registration.created_at)
        | Q(created_at=registration.created_at, pk__lt=registration.pk)
    )
    return ahead.count() + 1


# ---------------------------------------------------------------------------------------- roles, initiatives


def trainer_give(*, lab: Lab, member, by, now: dt.datetime | None = None) -> Trainer:
    """A manager of ``lab`` makes ``member`` a trainer there (again: no change)."""
    if not roles.manages_lab(by, lab):
        raise BookingError("forbidden")
    trainer, _created = Trainer.objects.get_or_create(
        lab=lab, member=member, defaults={"granted_by": by, "granted_at": now or timezone.now()}
    )
    return trainer


def trainer_remove(*, lab: Lab, member, by) -> bool:
    """A manager of ``lab`` removes ``member``'s trainer role there; True if they had it."""
    if not roles.manages_lab(by, lab):
        raise BookingError("forbidden")
    deleted, _rows = Trainer.objects.filter(lab=lab, member=member).delete()
    return bool(deleted)


def initiative_join(
    *, member, initiative: Initiative, now: dt.datetime | None = None
) -> InitiativeParticipation:
    participation, _created = InitiativeParticipation.objects.get_or_create(
        member=member, initiative=initiative, defaults={"joined_at": now or timezone.now()}
    )
    return participation


def initiative_leave(*, member, initiative: Initiative) -> bool:
    deleted, _rows = InitiativeParticipation.objects.filter(member=member, initiative=initiative).delete()
    return bool(deleted)
