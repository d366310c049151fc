"""A session's hold on its machines: one booking of kind ``training`` per machine.

Called inside the session's write transaction (:mod:`fablab.trainings.services`), so a session and
its holds are written, or refused, together. The holds go through the booking integrity:

* the checks of :mod:`fablab.booking.services` that apply to a training (opening hours unless a
  manager ticked "outside opening hours", maintenance and breakdowns, overlapping bookings), and the
  lab's closures whatever was ticked (:func:`check_not_closed`);
* the insert in a savepoint (:func:`~fablab.booking.services.insert_booking`): on PostgreSQL the
  exclusion constraint ``booking_no_overlap`` refuses a concurrent overlapping insert; on SQLite the
  transaction is IMMEDIATE, so nobody else writes between the check and the insert.

A clash is refused as ``machine_busy`` naming the machine and the time it is taken (lab-local).
"""

from __future__ import annotations

import datetime as dt

from django.db import IntegrityError
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext

from fablab.booking import services as booking_services
from fablab.booking.errors import BookingError
from fablab.booking.models import NO_OVERLAP_CONSTRAINT, Booking
from fablab.labs.models import Machine


def _clash(machine: Machine, booking: Booking | None) -> BookingError:
    if booking is None:
        return BookingError("machine_busy")
    tz = machine.lab.tz
    detail = gettext("%(machine)s is already taken from %(start)s to %(end)s (%(what)s).") % {
        "machine": machine.name,
        "start": date_format(timezone.localtime(booking.start, tz), "DATETIME_FORMAT"),
        "end": date_format(timezone.localtime(booking.blocked_until, tz), "TIME_FORMAT"),
        "what": booking.get_kind_display(),
    }
    return BookingError("machine_busy", detail)


def check_not_closed(lab, start: dt.datetime, end: dt.datetime) -> None:
    """Refuse (``lab_closed``) a session or a hold on any day ``[start, end)`` touches that ``lab`` is closed.

    "Outside opening hours" lets a manager run an evening course; a closure is a day the lab is shut,
    when no session may run, as for a workshop's sessions (:mod:`fablab.booking.series`) and the
    bookings of a machine bookable around the clock (``services.check_opening_hours``).
    """
    first = timezone.localtime(start, lab.tz).date()
    last = timezone.localtime(end - dt.timedelta(microseconds=1), lab.tz).date()
    if lab.closures.filter(starts_on__lte=last, ends_on__gte=first).exists():
        raise BookingError("lab_closed")


def hold(
    session, machines: list[Machine], *, by, now: dt.datetime, outside_opening_hours: bool
) -> list[Booking]:
    """Insert one confirmed training booking per machine for ``session``'s time; return them.

    Raises :class:`BookingError` (``machine_not_in_lab``, ``not_bookable``, ``lab_closed``,
    ``outside_opening_hours``, ``maintenance``, ``machine_out_of_service``, ``machine_busy``) for the
    first machine that cannot be held. Must run inside a transaction: the caller's rollback undoes
    the holds already made.
    """
    start, end = session.start.astimezone(dt.UTC), session.end.astimezone(dt.UTC)
    made = []
    for machine in machines:
        machine = Machine.objects.select_related("lab").get(pk=machine.pk)
        if machine.lab_id != session.lab_id:
            raise BookingError("machine_not_in_lab")
        check_not_closed(machine.lab, start, end)
        if not outside_opening_hours:
            booking_services.check_opening_hours(machine, start, end)
        booking_services.check_maintenance(machine, start, end, now)
        blocked_until = end + machine.buffer
        clash = booking_services.first_overlapping(machine, start, blocked_until)
        if clash is not None:
            raise _clash(machine, clash)
        if booking_services.race_point is not None:
            booking_services.race_point()
        try:
            booking = booking_services.insert_booking(
                kind=Booking.Kind.TRAINING,
                machine=machine,
                member=None,
                title=str(session.training)[:200],
                start=start,
                end=end,
                blocked_until=blocked_until,
                status=Booking.Status.CONFIRMED,
                decided_by=by,
                decided_at=now,
            )
        except IntegrityError as exc:
            if NO_OVERLAP_CONSTRAINT not in str(exc):
                raise
            # A concurrent insert won and has committed: it can be named now.
            raise _clash(machine, booking_services.first_overlapping(machine, start, blocked_until)) from exc
        booking_services.notify_on_commit(booking, "confirmed")
        made.append(booking)
    return made


def release(bookings, *, by, now: dt.datetime) -> None:
    """Cancel the holds still held (inside the caller's transaction); their time goes to the waitlist."""
    for booking in Booking.objects.select_for_update().filter(
        pk__in=[b.pk for b in bookings], status__in=Booking.CANCELLABLE
    ):
        booking.status = Booking.Status.CANCELLED
        booking.cancelled_at = now
        booking.cancelled_by = by
        booking.cancel_reason = Booking.CancelReason.MANAGER
        booking.save(update_fields=["status", "cancelled_at", "cancelled_by", "cancel_reason", "updated_at"])
        if booking.end > now:
            booking_services.release_cancelled(booking, now)
        booking_services.notify_on_commit(booking, "cancelled")
