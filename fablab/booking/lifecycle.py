"""A booking's life after it is made: check-in, no-show, machine unavailable, finishing early, completion.

Every transition is one conditional ``UPDATE … WHERE status = <from>``: whichever caller (a page,
the kiosk, the API, the hub seeing a job start, any number of schedulers side by side) runs it
first changes the row, and every other caller changes nothing and learns so (``False``). The
follow-ups — the member's email, the :data:`~fablab.booking.signals.booking_changed` signal that
moves the interlock — run on commit and only for the caller that made the change.

This module knows bookings only. What the machines did (a job started, the machine was offline at
the start) is the caller's to find out (``devices``) and is passed in.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from fablab.labs.models import EndAction, Machine
from fablab.members import roles

from . import freed, strikes
from .errors import BookingError
from .models import Booking, FreedTime
from .services import check_certification
from .signals import booking_changed

NOT_CERTIFIED_AT_CHECK_IN = _(
    "Your training for this machine is no longer valid, so this booking cannot be checked in."
)
EXPIRES_BEFORE_THE_END = _("Your certification for this machine expires before the end of this booking.")
NON_MEMBER_KINDS = [k for k in Booking.Kind.values if k != Booking.Kind.MEMBER]

log = logging.getLogger(__name__)


def check_in_opens(booking: Booking) -> dt.datetime:
    return booking.start - dt.timedelta(minutes=booking.machine.check_in_window_minutes)


def no_show_deadline(booking: Booking) -> dt.datetime:
    """Without a check-in or a job by this moment, a member booking is a no-show."""
    return booking.start + dt.timedelta(minutes=booking.machine.no_show_grace_minutes)


def check_in_closes(booking: Booking) -> dt.datetime:
    """The no-show deadline, or the booking's end when that comes first or when the machine could not
    be used at the start: never after the end."""
    return booking.end if booking.unavailable else min(no_show_deadline(booking), booking.end)


def check_in_open(booking: Booking, now: dt.datetime) -> bool:
    """Whether ``booking`` (a confirmed member booking) can be checked in at ``now``: the window's rule
    alone, not who checks it in nor their certification (:func:`check_in` checks those)."""
    return (
        booking.kind == Booking.Kind.MEMBER
        and booking.status == Booking.Status.CONFIRMED
        and check_in_opens(booking) <= now < check_in_closes(booking)
    )


def check_in(*, booking: Booking, by, via: str, now: dt.datetime | None = None) -> Booking:
    """Check ``booking`` in, as its member or a manager of its lab; returns the booking, checked in.

    Checking in a booking that is already checked in changes nothing and returns it (a double tap,
    a retry). Raises :class:`BookingError`: ``forbidden``, ``check_in_too_early``, ``check_in_closed``,
    ``not_certified`` or ``certification_expired`` (the certification is checked again now).
    """
    now = now or timezone.now()
    if via not in Booking.CheckInVia.values or via == Booking.CheckInVia.MACHINE:
        raise ValueError(f"check-in through {via!r}")
    with transaction.atomic():
        booking = (
            # ``of=self``: PostgreSQL cannot lock the nullable side of the outer join to ``member``.
            Booking.objects.select_for_update(of=("self",))
            .select_related("machine__lab", "member")
            .get(pk=booking.pk)
        )
        is_manager = roles.manages_lab(by, booking.machine.lab_id)
        if booking.member_id != by.pk and not is_manager:
            raise BookingError("forbidden")
        if booking.kind != Booking.Kind.MEMBER:
            raise BookingError("check_in_closed", _("Only a member's booking is checked in."))
        if booking.status == Booking.Status.CHECKED_IN:
            return booking
        if booking.status == Booking.Status.PENDING:
            raise BookingError("check_in_closed", _("This booking still awaits a lab manager's approval."))
        if booking.status != Booking.Status.CONFIRMED:
            raise BookingError("check_in_closed")
        if now < check_in_opens(booking):
            raise BookingError("check_in_too_early")
        if now >= check_in_closes(booking):
            raise BookingError("check_in_closed")
        _check_certification_now(booking, by)
        Booking.objects.filter(pk=booking.pk, status=Booking.Status.CONFIRMED).update(
            status=Booking.Status.CHECKED_IN,
            checked_in_at=now,
            checked_in_by=by,
            check_in_via=via,
            updated_at=now,
        )
        booking.refresh_from_db()
        _changed_on_commit(booking, "checked_in")
    return booking


def _check_certification_now(booking: Booking, by) -> None:
    """The certification may have been revoked or may expire before the end since the booking was made."""
    try:
        check_certification(
            booking.machine, booking.member, booking.end, for_manager=booking.member_id != by.pk
        )
    except BookingError as exc:
        if booking.member_id != by.pk:
            raise
        raise BookingError(
            exc.code, NOT_CERTIFIED_AT_CHECK_IN if exc.code == "not_certified" else EXPIRES_BEFORE_THE_END
        ) from exc


def check_in_by_machine(booking_id: int, at: dt.datetime) -> bool:
    """A job started on the machine during a confirmed member booking: it counts as the check-in.

    ``at`` is when the job started (the bridge's clock); True when this call checked the booking in.
    """
    changed = Booking.objects.filter(
        pk=booking_id, kind=Booking.Kind.MEMBER, status=Booking.Status.CONFIRMED
    ).update(
        status=Booking.Status.CHECKED_IN,
        checked_in_at=at,
        check_in_via=Booking.CheckInVia.MACHINE,
        updated_at=timezone.now(),
    )
    if changed:
        _changed_on_commit_ids(booking_id, "checked_in")
    return bool(changed)


def mark_no_show(booking_id: int, now: dt.datetime) -> bool:
    """No check-in, no job, machine usable: the booking becomes ``no_show`` and frees the rest of its time.

    The caller has checked the machine's activity and availability; this claims the transition and
    sends the member an email in their language. True when this call made the change.
    """
    with transaction.atomic():
        changed = Booking.objects.filter(
            pk=booking_id, kind=Booking.Kind.MEMBER, status=Booking.Status.CONFIRMED, unavailable=""
        ).update(status=Booking.Status.NO_SHOW, released_at=now, updated_at=now)
        if changed:
            booking = Booking.objects.select_related("machine__lab").get(pk=booking_id)
            freed.release(
                machine=booking.machine,
                start=now,
                end=booking.blocked_until,
                reason=FreedTime.Reason.NO_SHOW,
                now=now,
                booking=booking,
            )
            _changed_on_commit_ids(booking_id, "no_show", email="no_show")
            transaction.on_commit(lambda: _notify_block(booking_id, now))
    return bool(changed)


def _notify_block(booking_id: int, now: dt.datetime) -> None:
    """The no-show that reaches the lab's strike limit: tell the member until when they are blocked."""
    try:
        strikes.notify_if_blocked(booking_id, now)
    except Exception:  # the block itself holds without the email
        log.exception("could not tell the member of booking %s about their block", booking_id)


def mark_unavailable(booking_id: int, reason: str, now: dt.datetime) -> bool:
    """The machine was offline, in error or out of service at the start: never a no-show; check-in stays open."""
    if reason not in Booking.Unavailable.values:
        raise ValueError(reason)
    changed = Booking.objects.filter(
        pk=booking_id, kind=Booking.Kind.MEMBER, status=Booking.Status.CONFIRMED, unavailable=""
    ).update(unavailable=reason, updated_at=now)
    if changed:
        _changed_on_commit_ids(booking_id, "unavailable")
    return bool(changed)


def complete(booking_id: int, now: dt.datetime) -> bool:
    """The booking's time is over: a checked-in booking, a confirmed one of another kind, or a
    member's confirmed booking whose machine was unavailable becomes ``completed``."""
    changed = (
        Booking.objects.filter(pk=booking_id, end__lte=now)
        .filter(
            Q(status=Booking.Status.CHECKED_IN)
            | Q(status=Booking.Status.CONFIRMED, kind__in=NON_MEMBER_KINDS)
            | (Q(status=Booking.Status.CONFIRMED, kind=Booking.Kind.MEMBER) & ~Q(unavailable=""))
        )
        .update(status=Booking.Status.COMPLETED, completed_at=now, updated_at=now)
    )
    if changed:
        _changed_on_commit_ids(booking_id, "completed")
    return bool(changed)


#: The longest fault line a member may leave when finishing (``Booking.fault_report``).
FAULT_MAX = 300

LOCKED_AT_ONCE = _("The machine is locked and the rest of the booking is given back to other makers.")
LOCKED_AFTER_THE_JOB = _(
    "The machine is locked, or locks as soon as the running job ends; the rest of the booking is given "
    "back to other makers."
)


def finish_effect(machine: Machine) -> str:
    """What "I'm done" does to ``machine``, in words for the member about to press it.

    With the end action ``finish`` a job still running is left to end (the interlock's reason
    ``finishing``, :mod:`devices.interlock`) and the machine locks after it. Whether a job runs is
    known to ``devices`` only, which this app never imports, so that sentence holds either way.
    """
    return str(LOCKED_AFTER_THE_JOB if machine.effective_end_action == EndAction.FINISH else LOCKED_AT_ONCE)


def one_line(text: str) -> str:
    """``text`` as one line: every run of whitespace (newlines included) becomes one space."""
    return " ".join((text or "").split())


def finish(*, booking: Booking, by, via: str, fault: str = "", now: dt.datetime | None = None) -> Booking:
    """The member (or a manager of the lab) is done early: complete the booking and free the rest of it.

    Only a ``checked_in`` booking can be finished (else ``not_checked_in``; ``forbidden`` for anyone
    but its member and the lab's managers). One conditional ``UPDATE … WHERE status = 'checked_in'``
    makes it ``completed`` (``completed_at = now``, ``fault_report = fault``) and, when the next slot
    boundary of the machine (never before the booking's start: a member may check in early) comes
    before ``blocked_until``, moves ``blocked_until`` and ``released_at`` there. ``start`` and ``end``
    stay as booked (the reports and the usage need them). In the same transaction the time from that
    boundary to the old ``blocked_until`` is recorded as freed (:func:`fablab.booking.freed.release`,
    which offers it to the waitlist after the commit); a boundary too close to the end frees nothing.
    After the commit :data:`~fablab.booking.signals.booking_changed` goes out with ``completed``:
    ``devices`` locks the machine (:mod:`devices.interlock`: a booking finished early holds it until
    ``completed_at``) and raises a ``fault_reported`` alert when there is a fault line.

    Finishing a booking that is already ``completed`` (a double tap, a retry, the page and the kiosk
    at once) changes nothing and returns it, except that a fault line given when none was recorded
    is kept (nothing the member typed is lost) and reported like the first time.

    ``via`` says where the member finished (``page``, ``kiosk``, ``api``, ``manager``); the model
    has no field for it, so it is logged. ``fault`` is made one line; longer than :data:`FAULT_MAX`
    characters is the caller's bug (its form or serializer refuses it) and raises ``ValueError``.
    """
    now = now or timezone.now()
    if via not in Booking.CheckInVia.values or via == Booking.CheckInVia.MACHINE:
        raise ValueError(f"finishing through {via!r}")
    fault = one_line(fault)
    if len(fault) > FAULT_MAX:
        raise ValueError(f"a fault line of {len(fault)} characters")
    with transaction.atomic():
        booking = (
            Booking.objects.select_for_update(of=("self",))
            .select_related("machine__lab", "member")
            .get(pk=booking.pk)
        )
        if booking.member_id != by.pk and not roles.manages_lab(by, booking.machine.lab_id):
            raise BookingError("forbidden")
        if booking.status == Booking.Status.COMPLETED:
            added = (
                fault
                and not booking.fault_report
                and Booking.objects.filter(pk=booking.pk, fault_report="").update(
                    fault_report=fault, updated_at=now
                )
            )
            if added:
                booking.refresh_from_db()
                _changed_on_commit(booking, "completed")
            return booking
        if booking.status != Booking.Status.CHECKED_IN:
            raise BookingError("not_checked_in")
        machine = booking.machine
        old_blocked_until = booking.blocked_until
        boundary = max(freed.next_boundary(machine, now), booking.start)
        fields = {
            "status": Booking.Status.COMPLETED,
            "completed_at": now,
            "fault_report": fault,
            "updated_at": now,
        }
        releases = boundary < old_blocked_until
        if releases:
            fields.update(released_at=boundary, blocked_until=boundary)
        changed = Booking.objects.filter(pk=booking.pk, status=Booking.Status.CHECKED_IN).update(**fields)
        booking.refresh_from_db()
        if not changed:  # another caller got there first (the row lock makes this the rare path)
            if booking.status == Booking.Status.COMPLETED:
                return booking
            raise BookingError("not_checked_in")
        if releases:
            freed.release(
                machine=machine,
                start=boundary,
                end=old_blocked_until,
                reason=FreedTime.Reason.FINISHED_EARLY,
                now=now,
                booking=booking,
            )
        log.info("booking %s finished early through %s by user %s", booking.pk, via, by.pk)
        _changed_on_commit(booking, "completed")
    return booking


def _changed_on_commit(booking: Booking, change: str) -> None:
    booking_id, machine_id = booking.pk, booking.machine_id
    transaction.on_commit(
        lambda: booking_changed.send(
            sender=Booking, booking_id=booking_id, machine_id=machine_id, change=change
        )
    )


def _changed_on_commit_ids(booking_id: int, change: str, *, email: str | None = None) -> None:
    def follow_up() -> None:
        booking = Booking.objects.select_related("machine__lab", "member").get(pk=booking_id)
        if email:
            from .emails import send_booking_email

            send_booking_email(booking, email)
        booking_changed.send(
            sender=Booking, booking_id=booking.pk, machine_id=booking.machine_id, change=change
        )

    transaction.on_commit(follow_up)
