"""Out of service: a manager takes a machine out of use until a date, and gives it back.

There is one concept for "the machine cannot be booked": the
:class:`~fablab.labs.models.MaintenanceWindow`. Its ``kind`` says why — ``planned`` maintenance
or a ``breakdown`` — and the reports count the first as planned and the second as unplanned
downtime. :func:`fablab.booking.services.check_booking_rules` already refuses new bookings in a
window (``machine_out_of_service``, saying until when, for a breakdown or a window under way;
``maintenance`` for planned maintenance ahead).

What a window does to the bookings it hits (:func:`put_out_of_service`, :func:`schedule_maintenance`),
in the transaction that makes the window:

* a member's booking that is ``pending`` or ``confirmed`` and overlaps the window is cancelled
  (``cancel_reason`` ``out_of_service``, ``cancelled_by`` the manager). Not through
  :func:`~fablab.booking.services.booking_cancel`, which lets nobody cancel a booking that has
  started: here a manager takes the machine away, whoever's time it was. On commit the member
  gets an email in their language with the reason, until when, and the nearest free time of the
  same length on a machine of the same type they may book (:func:`nearest_free_slot`), and
  :data:`~fablab.booking.signals.booking_changed` is sent (``cancelled``);
* a **checked-in** booking stays: the member is at the machine, using it. The manager deals with
  them in person; the machine's interlock follows the booking as usual;
* a training's or workshop's booking that overlaps and has not started yet is cancelled too; it
  has no member to email, so it is returned for the manager to tell the participants. One
  already under way stays, like a checked-in booking;
* the part of a cancelled booking after the window (a booking 10:00–12:00 hit by a window until
  11:00) is given back as freed time (:func:`fablab.booking.freed.release`), so the waitlist gets it.

Giving time back — :func:`back_in_service` (an open window ends now), :func:`shorten_maintenance`
(a window's end moves earlier), :func:`remove_maintenance` (a window ahead is deleted) — records
the time given back with ``freed.release(reason=maintenance)`` in the same transaction; the
waitlist offers it after the commit. Back in service also sends
:data:`~fablab.booking.signals.machine_back_in_service` after the commit: the manager has seen to the
machine, so the machine side closes the fault members reported before that moment.

Races. Every write locks the machine's row and the windows it changes (``SELECT … FOR UPDATE``),
so two managers acting on one machine are serialized, and ending a window twice ends it once
(the second caller finds it no longer open). Each cancellation is a conditional
``UPDATE … WHERE status IN (pending, confirmed)``: a booking checked in at the same moment is
either cancelled before the check-in (which then finds it cancelled) or kept. A booking being
made while the window is written is the remaining gap on PostgreSQL (``booking_create`` checks
the windows without locking the machine): its check may run before the window commits and its
insert after. Two nets catch it: right after the commit the window's bookings are swept once
more (:func:`_sweep_on_commit`, same cancellation and email), and the scheduler marks a booking
whose start falls in a window *unavailable*, never a no-show. On SQLite every write transaction
is ``BEGIN IMMEDIATE``, so there is no gap.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from urllib.parse import urlencode

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from fablab.labs.models import Machine, MaintenanceWindow
from fablab.members import roles

from . import freed, selectors, services, signals
from .errors import BookingError
from .models import Booking, FreedTime

log = logging.getLogger(__name__)

#: Kinds of booking without a member that a window cancels (a maintenance booking is the manager's own).
SESSION_KINDS = (Booking.Kind.TRAINING, Booking.Kind.WORKSHOP)

#: Refusals that no later slot of the same machine can escape: stop looking at that machine.
_MACHINE_CLOSED = {
    "not_bookable",
    "not_certified",
    "certification_expired",
    "no_show_blocked",
    "too_many_bookings",
    "too_short",
    "too_long",
    "bad_granularity",
    "too_far_ahead",
}
#: At most this many candidate slots are checked on one machine for one suggestion.
MAX_TRIES_PER_MACHINE = 200

UNTIL_NOT_AHEAD = _("The machine must be out of service until a moment after now.")
NOT_OPEN = _("This machine is not out of service now.")
END_NOT_EARLIER = _("The new end must be before the current end and after now.")
NOT_AHEAD = _("Only a maintenance window that has not started can be deleted; end one under way instead.")


@dataclasses.dataclass
class Hits:
    """The bookings a window hits: ``cancelled`` (members'), ``sessions`` (trainings and workshops,
    cancelled, for the manager to tell), ``kept`` (checked in, or a session under way)."""

    cancelled: list[Booking] = dataclasses.field(default_factory=list)
    sessions: list[Booking] = dataclasses.field(default_factory=list)
    kept: list[Booking] = dataclasses.field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.cancelled or self.sessions or self.kept)


@dataclasses.dataclass
class Result:
    window: MaintenanceWindow
    hits: Hits


def bookings_hit(*, machine: Machine, start: dt.datetime, end: dt.datetime, now: dt.datetime) -> Hits:
    """What a window ``[start, end)`` on ``machine`` would do to its bookings now (reads only: the
    confirmation a manager sees before putting the machine out of service)."""
    hits = Hits()
    for booking in _overlapping(machine.pk, max(start, now), end):
        _sort(booking, hits, now)
    return hits


def _overlapping(machine_id: int, start: dt.datetime, end: dt.datetime, *, lock: bool = False):
    if start >= end:
        return []
    qs = Booking.objects.filter(
        machine_id=machine_id,
        status__in=(*Booking.CANCELLABLE, Booking.Status.CHECKED_IN),
        start__lt=end,
        end__gt=start,
    ).exclude(kind=Booking.Kind.MAINTENANCE)
    if lock:
        qs = qs.select_for_update(of=("self",))
    return list(qs.select_related("member", "machine__lab").order_by("start", "pk"))


def _sort(booking: Booking, hits: Hits, now: dt.datetime) -> str:
    if booking.status == Booking.Status.CHECKED_IN or (
        booking.kind in SESSION_KINDS and booking.start <= now
    ):
        hits.kept.append(booking)
        return "kept"
    if booking.kind == Booking.Kind.MEMBER:
        hits.cancelled.append(booking)
        return "cancelled"
    hits.sessions.append(booking)
    return "session"


def _check_manager(by, machine: Machine) -> None:
    if not roles.manages_lab(by, machine.lab_id):
        raise BookingError("forbidden")


def _lock_machine(machine: Machine) -> Machine:
    return (
        Machine.objects.select_for_update(of=("self",))
        .select_related("lab", "machine_type")
        .get(pk=machine.pk)
    )


def put_out_of_service(
    *, machine: Machine, kind: str, until: dt.datetime, reason: str, by, now: dt.datetime | None = None
) -> Result:
    """Take ``machine`` out of service from ``now`` until ``until``, as ``kind`` (planned|breakdown).

    An open window of the same kind (under way now) is extended or shortened to ``until`` and keeps
    its start (one continuous downtime); an open window of the other kind ends now and a new window
    starts. Time an open window held after ``until`` is given back. The bookings hit are handled as
    the module describes. Raises :class:`BookingError`: ``forbidden`` (not a manager of the lab),
    ``invalid_range`` (``until`` not after ``now``), ``too_far_ahead``.
    """
    now = now or timezone.now()
    if kind not in MaintenanceWindow.Kind.values:
        raise ValueError(f"unknown maintenance kind {kind!r}")
    _check_until(until, now)
    reason = (reason or "").strip()
    with transaction.atomic():
        machine = _lock_machine(machine)
        _check_manager(by, machine)
        window = None
        for open_window in _open_windows(machine, now, lock=True):
            old_end = open_window.end
            if window is None and open_window.kind == kind:
                open_window.end = until
                open_window.reason = reason or open_window.reason
                open_window.save(update_fields=["end", "reason"])
                window = open_window
            else:
                _end_now(open_window, now)
            if old_end > until:
                _give_back(machine, until, old_end, now)
        if window is None:
            window = MaintenanceWindow.objects.create(
                machine=machine, start=now, end=until, kind=kind, reason=reason, created_by=by
            )
        hits = _cancel_hits(window, by=by, now=now)
        _sweep_on_commit(window.pk, by, now)
    return Result(window=window, hits=hits)


def schedule_maintenance(
    *, machine: Machine, start: dt.datetime, end: dt.datetime, reason: str, by, now: dt.datetime | None = None
) -> Result:
    """Plan a maintenance window ``[start, end)`` (the manager's maintenance page); the bookings it
    hits are cancelled and their members told, as for :func:`put_out_of_service`."""
    now = now or timezone.now()
    if end <= start:
        raise BookingError("invalid_range")
    _check_until(end, now)
    with transaction.atomic():
        machine = _lock_machine(machine)
        _check_manager(by, machine)
        window = MaintenanceWindow.objects.create(
            machine=machine,
            start=start,
            end=end,
            kind=MaintenanceWindow.Kind.PLANNED,
            reason=(reason or "").strip(),
            created_by=by,
        )
        hits = _cancel_hits(window, by=by, now=now)
        _sweep_on_commit(window.pk, by, now)
    return Result(window=window, hits=hits)


def back_in_service(*, window: MaintenanceWindow, by, now: dt.datetime | None = None) -> MaintenanceWindow:
    """End ``window``, under way, now; the rest of its time is given back (freed, for the waitlist).

    The window stays on record with its new end (the reports count the downtime it was). After the
    commit :data:`~fablab.booking.signals.machine_back_in_service` is sent. Raises
    :class:`BookingError` ``forbidden``, or ``invalid_range`` when the window is not under way
    (not started, already over, or ended by someone else a moment ago).
    """
    now = now or timezone.now()
    with transaction.atomic():
        machine = _lock_machine(window.machine)
        _check_manager(by, machine)
        window = MaintenanceWindow.objects.select_for_update().filter(pk=window.pk).first()
        if window is None or not (window.start <= now < window.end):
            raise BookingError("invalid_range", NOT_OPEN)
        _end_early(machine, window, now)
        _announce_back_in_service(machine.pk, by, now)
    return window


def back_in_service_machine(
    *, machine: Machine, by, now: dt.datetime | None = None
) -> list[MaintenanceWindow]:
    """End every window of ``machine`` under way now (the API's "back in service"); see :func:`back_in_service`."""
    now = now or timezone.now()
    with transaction.atomic():
        machine = _lock_machine(machine)
        _check_manager(by, machine)
        windows = _open_windows(machine, now, lock=True)
        if not windows:
            raise BookingError("invalid_range", NOT_OPEN)
        for window in windows:
            _end_early(machine, window, now)
        _announce_back_in_service(machine.pk, by, now)
    return windows


def shorten_maintenance(
    window: MaintenanceWindow, new_end: dt.datetime, by, now: dt.datetime | None = None
) -> MaintenanceWindow:
    """Move ``window``'s end earlier, to ``new_end`` (after now and after its start); the time
    between is given back. Raises :class:`BookingError` ``forbidden`` or ``invalid_range``."""
    now = now or timezone.now()
    with transaction.atomic():
        machine = _lock_machine(window.machine)
        _check_manager(by, machine)
        window = MaintenanceWindow.objects.select_for_update().filter(pk=window.pk).first()
        if window is None or not (max(now, window.start) < new_end < window.end):
            raise BookingError("invalid_range", END_NOT_EARLIER)
        old_end = window.end
        window.end = new_end
        window.save(update_fields=["end"])
        _give_back(machine, new_end, old_end, now)
    return window


def remove_maintenance(*, window: MaintenanceWindow, by, now: dt.datetime | None = None) -> None:
    """Delete ``window``, which has not started; its whole time is given back.

    A window under way is ended with :func:`back_in_service` instead, and one that is over stays:
    the reports count it. Raises :class:`BookingError` ``forbidden`` or ``invalid_range``.
    """
    now = now or timezone.now()
    with transaction.atomic():
        machine = _lock_machine(window.machine)
        _check_manager(by, machine)
        window = MaintenanceWindow.objects.select_for_update().filter(pk=window.pk).first()
        if window is None or window.start <= now:
            raise BookingError("invalid_range", NOT_AHEAD)
        start, end = window.start, window.end
        window.delete()
        _give_back(machine, start, end, now)


def open_windows(machine: Machine, now: dt.datetime) -> list[MaintenanceWindow]:
    """The windows of ``machine`` under way at ``now`` (start ≤ now < end)."""
    return _open_windows(machine, now)


def _open_windows(machine: Machine, now: dt.datetime, *, lock: bool = False) -> list[MaintenanceWindow]:
    qs = MaintenanceWindow.objects.filter(machine_id=machine.pk, start__lte=now, end__gt=now)
    if lock:
        qs = qs.select_for_update()
    return list(qs.order_by("start", "pk"))


def _check_until(until: dt.datetime, now: dt.datetime) -> None:
    if until.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    if until <= now:
        raise BookingError("invalid_range", UNTIL_NOT_AHEAD)
    if until > now + services.REACH:
        raise BookingError("too_far_ahead")


def _end_now(window: MaintenanceWindow, now: dt.datetime) -> None:
    """End an open window at ``now``; one that starts right now never held anything and is deleted."""
    if window.start >= now:
        window.delete()
        return
    window.end = now
    window.save(update_fields=["end"])


def _end_early(machine: Machine, window: MaintenanceWindow, now: dt.datetime) -> None:
    """End ``window``, under way and locked, at ``now``; the rest of its time is given back."""
    old_end = window.end
    _end_now(window, now)
    _give_back(machine, now, old_end, now)


def _announce_back_in_service(machine_id: int, by, now: dt.datetime) -> None:
    """After the commit, tell the machine side that ``by`` put the machine back in service at ``now``
    (once, whatever the number of windows ended): it closes the fault members reported before."""
    transaction.on_commit(
        lambda: signals.machine_back_in_service.send(sender=Machine, machine_id=machine_id, at=now, by=by)
    )


def _give_back(machine: Machine, start: dt.datetime, end: dt.datetime, now: dt.datetime) -> None:
    if end > max(start, now):
        freed.release(machine=machine, start=start, end=end, reason=FreedTime.Reason.MAINTENANCE, now=now)


def _cancel_hits(window: MaintenanceWindow, *, by, now: dt.datetime) -> Hits:
    """Cancel the bookings ``window`` hits (inside the caller's transaction); follow-ups on commit."""
    hits = Hits()
    # A booking over before now is not hit: it was (or was not) used, and the reports keep it as it was.
    start = max(window.start, now)
    for booking in _overlapping(window.machine_id, start, window.end, lock=True):
        if _sort(booking, hits, now) == "kept":
            continue
        changed = Booking.objects.filter(pk=booking.pk, status__in=Booking.CANCELLABLE).update(
            status=Booking.Status.CANCELLED,
            cancelled_at=now,
            cancelled_by=by,
            cancel_reason=Booking.CancelReason.OUT_OF_SERVICE,
            updated_at=now,
        )
        if not changed:  # checked in a moment ago: it stays
            (hits.cancelled if booking.kind == Booking.Kind.MEMBER else hits.sessions).remove(booking)
            hits.kept.append(booking)
            continue
        booking.status = Booking.Status.CANCELLED
        booking.cancelled_at, booking.cancelled_by = now, by
        booking.cancel_reason = Booking.CancelReason.OUT_OF_SERVICE
        if booking.blocked_until > window.end:
            freed.release(
                machine=booking.machine,
                start=window.end,
                end=booking.blocked_until,
                reason=FreedTime.Reason.CANCELLED,
                now=now,
                booking=booking,
            )
        _follow_up_on_commit(booking, window, now)
    return hits


def _sweep_on_commit(window_id: int, by, now: dt.datetime) -> None:
    """After the commit, cancel once more what the window hits: a booking whose rules were checked
    before the window committed may have been inserted since (see the module's docstring)."""

    def sweep() -> None:
        try:
            with transaction.atomic():
                window = MaintenanceWindow.objects.select_for_update().filter(pk=window_id).first()
                if window is not None:
                    _cancel_hits(window, by=by, now=now)
        except Exception:  # the scheduler still marks such a booking unavailable, never a no-show
            log.exception("could not sweep the bookings of maintenance window %s", window_id)

    transaction.on_commit(sweep)


def _follow_up_on_commit(booking: Booking, window: MaintenanceWindow, now: dt.datetime) -> None:
    from .signals import booking_changed

    booking_id, machine_id = booking.pk, booking.machine_id
    window_id = window.pk

    def follow_up() -> None:
        booking_changed.send(sender=Booking, booking_id=booking_id, machine_id=machine_id, change="cancelled")
        send_out_of_service_email(booking_id, window_id, now=now)

    transaction.on_commit(follow_up)


def send_out_of_service_email(booking_id: int, window_id: int, *, now: dt.datetime) -> bool:
    """Tell the member of the cancelled booking why, until when, and where else they could go.

    Never raises (a mail outage must not undo the cancellation); True when sent.
    """
    from .emails import send_member_email

    try:
        booking = Booking.objects.select_related("machine__lab", "machine__machine_type", "member").get(
            pk=booking_id
        )
        window = MaintenanceWindow.objects.filter(pk=window_id).first()
        suggestion = nearest_free_slot(booking=booking, now=now)
    except Exception:
        log.exception("could not prepare the out-of-service email for booking %s", booking_id)
        return False
    lab = booking.machine.lab
    return send_member_email(
        booking.member,
        lab=lab,
        template="booking/email/out_of_service.txt",
        subject=lambda: (
            gettext("Booking cancelled, machine out of service: %(machine)s")
            % {"machine": booking.machine.name}
        ),
        context={
            "booking": booking,
            "window": window,
            "breakdown": window is not None and window.kind == MaintenanceWindow.Kind.BREAKDOWN,
            "suggestion": suggestion,
        },
        what=f"the out-of-service email for booking {booking_id}",
    )


@dataclasses.dataclass
class Suggestion:
    machine: Machine
    start: dt.datetime
    end: dt.datetime
    #: The booking page with the time filled in (absolute).
    book_url: str
    #: The machine's week page at that week (absolute).
    week_url: str


def nearest_free_slot(*, booking: Booking, now: dt.datetime) -> Suggestion | None:
    """The first time, from the booking's start (or now, if later), of the booking's length on a
    machine of its type in its lab that its member may book; None if there is none in reach.

    Every bookable machine of the type is looked at, the out-of-service one included (after its
    window). On each, candidate starts are the slot boundaries inside its free time
    (:func:`~fablab.booking.selectors.availability_for_machine`: opening hours, maintenance, other
    bookings, notice and days ahead) in order of start; each is put to
    :func:`~fablab.booking.services.check_booking_rules` for the member (certification, strikes,
    quota…) and the first that passes is the machine's answer; the earliest answer wins. A
    refusal no later slot can escape (not certified, blocked…) ends the machine's search.
    The time is suggested, not held: the member books it like any other.
    """
    machine = booking.machine
    duration = booking.end - booking.start
    after = max(booking.start, now)
    machines = Machine.objects.filter(
        lab_id=machine.lab_id, machine_type_id=machine.machine_type_id, bookable=True
    ).select_related("lab", "machine_type", "required_training")
    best: tuple[dt.datetime, Machine] | None = None
    for candidate in machines.order_by("name", "pk"):
        start = _first_start(candidate, booking.member, after, duration, now)
        if start is not None and (best is None or start < best[0]):
            best = (start, candidate)
    if best is None:
        return None
    start, chosen = best
    lab = chosen.lab
    local_start = timezone.localtime(start, lab.tz)
    book_url = f"{reverse('booking:book', args=[chosen.pk])}?{urlencode({'start': local_start.isoformat()})}"
    week_url = (
        f"{reverse('labs:machine', args=[lab.slug, chosen.slug])}?"
        f"{urlencode({'week': local_start.date().isoformat()})}"
    )
    return Suggestion(
        machine=chosen,
        start=start,
        end=start + duration,
        book_url=settings.SITE_URL + book_url,
        week_url=settings.SITE_URL + week_url,
    )


def _first_start(
    machine: Machine, member, after: dt.datetime, duration: dt.timedelta, now: dt.datetime
) -> dt.datetime | None:
    horizon = now + dt.timedelta(days=machine.max_days_ahead + 1)
    if after >= horizon:
        return None
    step = dt.timedelta(minutes=machine.slot_minutes)
    tries = 0
    for free_start, free_end in selectors.availability_for_machine(
        machine=machine, start=after, end=horizon, now=now
    ):
        start = free_start
        while start + duration <= free_end:
            tries += 1
            if tries > MAX_TRIES_PER_MACHINE:
                return None
            try:
                services.check_booking_rules(
                    machine=machine, member=member, start=start, end=start + duration, now=now
                )
            except BookingError as exc:
                if exc.code in _MACHINE_CLOSED:
                    return None
            else:
                return start
            start += step
    return None


def until_label(window: MaintenanceWindow) -> str:
    """``window``'s end, lab-local, for messages."""
    return date_format(timezone.localtime(window.end, window.machine.lab.tz), "DATETIME_FORMAT")
