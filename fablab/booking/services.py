"""Booking writes. Every path (pages, API, admin) goes through these functions.

Each write follows lock → check → write in one transaction:

* the member's row is locked (``SELECT … FOR UPDATE``), so two requests of
  one member cannot both pass the quota check;
* every rule is checked and the first broken one raises :class:`BookingError`;
* the booking is inserted. On PostgreSQL the exclusion constraint
  ``booking_no_overlap`` is the last line against a concurrent overlapping
  insert; on SQLite every transaction is ``BEGIN IMMEDIATE`` (see settings), so
  only one writer at a time runs check and insert.

The other writers of bookings without a member — a workshop's sessions
(:mod:`fablab.booking.series`) and a training session's holds on its machines
(:mod:`fablab.trainings.holds`) — follow the same pattern with the public building
blocks of this module, and nothing else of it: the checks that apply to them
(:func:`check_reach`, :func:`check_opening_hours`, :func:`check_maintenance`,
:func:`first_overlapping`), the insert (:func:`insert_booking`), the release of
cancelled time (:func:`release_cancelled`) and the follow-ups (:func:`notify_on_commit`).
Every refusal is a :class:`BookingError` with a code of ``errors.RULES``.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import IntegrityError, OperationalError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from fablab.labs.models import Machine, MaintenanceWindow
from fablab.members import accounts, roles
from fablab.members.models import Certification

from . import freed, strikes
from .errors import BookingError
from .models import NO_OVERLAP_CONSTRAINT, Booking, FreedTime, QuotaPolicy

# Test hooks for the concurrency proofs (tests/booking/test_concurrency.py):
# ``race_point`` runs between the checks and the insert, and ``lock_member``
# switches the member lock off to show the race it prevents. Never set in production.
race_point: Callable[[], None] | None = None
lock_member: bool = True

#: Times farther than this from now are refused before any time zone arithmetic, which
#: overflows near the years 1 and 9999 (a 500 instead of a rule's code).
REACH = dt.timedelta(days=3660)


def booking_create(
    *,
    machine: Machine,
    member,
    start: dt.datetime,
    end: dt.datetime,
    purpose: str = "",
    now: dt.datetime | None = None,
    from_waitlist: bool = False,
) -> Booking:
    """Book ``machine`` for ``member`` from ``start`` to ``end`` (aware datetimes).

    Returns the booking, ``confirmed`` or (machines needing approval) ``pending``.
    Raises :class:`BookingError` naming the first rule the request breaks.

    ``from_waitlist``: the member accepts time offered from the waitlist
    (:func:`fablab.booking.waitlist.accept`). They could not have asked earlier, so the notice,
    horizon and approval rules do not apply, nor ``in_past`` while the time has not ended;
    certification, strikes, quota and integrity do.
    """
    now = now or timezone.now()
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("booking times must be timezone-aware")
    check_reach(start, end, now)
    # Normalise to UTC: datetimes sharing a zone subtract on the wall clock in Python.
    start, end = start.astimezone(dt.UTC), end.astimezone(dt.UTC)
    with transaction.atomic():
        if lock_member:
            get_user_model().objects.select_for_update().filter(pk=member.pk).first()
        machine = Machine.objects.select_related("lab", "machine_type", "required_training").get(
            pk=machine.pk
        )
        check_booking_rules(
            machine=machine, member=member, start=start, end=end, now=now, from_waitlist=from_waitlist
        )
        if race_point is not None:
            race_point()
        pending = machine.approval_required and not from_waitlist
        status = Booking.Status.PENDING if pending else Booking.Status.CONFIRMED
        try:
            booking = insert_booking(
                machine=machine,
                member=member,
                start=start,
                end=end,
                blocked_until=end + machine.buffer,
                status=status,
                purpose=purpose.strip(),
            )
        except IntegrityError as exc:
            if NO_OVERLAP_CONSTRAINT in str(exc):
                # A concurrent insert won; it has committed, so it can be seen now.
                raise BookingError(_overlap_code(machine, member, start, end + machine.buffer)) from exc
            raise
        notify_on_commit(booking, "confirmed" if status == Booking.Status.CONFIRMED else "requested")
    return booking


#: PostgreSQL's SQLSTATE for a deadlock: the server aborted this statement to break a cycle.
DEADLOCK_DETECTED = "40P01"
#: A deadlocked insert is tried again this many times before the error is let through.
DEADLOCK_RETRIES = 5


def insert_booking(**fields) -> Booking:
    """Insert the booking in a savepoint; retry it when PostgreSQL broke a deadlock by aborting it.

    The write step: call it inside the writer's ``transaction.atomic``, after its lock and checks.
    The checks cannot see an overlapping insert not yet committed: on PostgreSQL the exclusion
    constraint refuses it here with an :class:`~django.db.IntegrityError` naming
    ``NO_OVERLAP_CONSTRAINT``, which the caller turns into its own rule code (``slot_taken``,
    ``machine_busy``, ``series_conflict``); on SQLite ``BEGIN IMMEDIATE`` leaves no such gap.

    Two conflicting inserts checked by the exclusion constraint at the same moment may each wait for
    the other's transaction; PostgreSQL aborts one of them (``deadlock detected``) rather than pick a
    loser by the constraint. Rolling back to the savepoint releases this insert, the other one commits,
    and the retry then meets it as an ordinary constraint violation (``slot_taken``).
    """
    for attempt in itertools.count():
        try:
            with transaction.atomic():
                return Booking.objects.create(**fields)
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != DEADLOCK_DETECTED or attempt >= DEADLOCK_RETRIES:
                raise


def check_booking_rules(
    *,
    machine: Machine,
    member,
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime,
    from_waitlist: bool = False,
) -> None:
    """Raise :class:`BookingError` for the first rule a new booking would break.

    ``from_waitlist`` leaves out the rules an accepted waitlist offer skips (see :func:`booking_create`).
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("booking times must be timezone-aware")
    check_reach(start, end, now)
    start, end = start.astimezone(dt.UTC), end.astimezone(dt.UTC)
    if not machine.bookable:
        raise BookingError("not_bookable")
    refusal = accounts.booking_refusal(member, machine.lab, now)
    if refusal:
        raise BookingError(refusal)
    check_certification(machine, member, end)
    strikes.check_not_blocked(member, machine.lab, now)
    _check_timing(machine, start, end, now, from_waitlist=from_waitlist)
    check_opening_hours(machine, start, end)
    check_maintenance(machine, start, end, now)
    if _overlapping(machine, start, end + machine.buffer).exists():
        raise BookingError(_overlap_code(machine, member, start, end + machine.buffer))
    _check_quota(machine, member, start, end, now)


def check_maintenance(machine: Machine, start: dt.datetime, end: dt.datetime, now: dt.datetime) -> None:
    """No maintenance window of ``machine`` overlaps ``[start, end)``.

    Raises ``machine_out_of_service`` (saying until when) for a breakdown or a window already under
    way, ``maintenance`` for planned maintenance ahead. A check step: run it in the writer's
    transaction, after its lock.
    """
    windows = list(
        MaintenanceWindow.objects.filter(machine=machine, start__lt=end, end__gt=start).order_by("start")
    )
    if not windows:
        return
    down = [w for w in windows if w.kind == MaintenanceWindow.Kind.BREAKDOWN or w.start <= now]
    if not down:
        raise BookingError("maintenance")
    from django.utils.formats import date_format
    from django.utils.translation import gettext

    until = timezone.localtime(max(w.end for w in down), machine.lab.tz)
    raise BookingError(
        "machine_out_of_service",
        gettext("This machine is out of service until %(until)s.")
        % {"until": date_format(until, "DATETIME_FORMAT")},
    )


def check_reach(start: dt.datetime, end: dt.datetime, now: dt.datetime) -> None:
    """``[start, end)`` (aware) is a range within :data:`REACH` of ``now``; run it before any time zone
    arithmetic on the times.

    Raises ``invalid_range`` (the end is not after the start), ``in_past`` or ``too_far_ahead``.
    Needs no transaction: it reads nothing.
    """
    # Comparing aware datetimes never overflows; converting them may.
    if end <= start:
        raise BookingError("invalid_range")
    if start < now - REACH:
        raise BookingError("in_past")
    if end > now + REACH:
        raise BookingError("too_far_ahead")


def _overlapping(machine: Machine, start: dt.datetime, blocked_until: dt.datetime):
    return Booking.objects.filter(
        machine=machine, status__in=Booking.ACTIVE, start__lt=blocked_until, blocked_until__gt=start
    )


def first_overlapping(machine: Machine, start: dt.datetime, blocked_until: dt.datetime) -> Booking | None:
    """The earliest active booking of ``machine`` whose blocked time overlaps ``[start, blocked_until)``
    (a new booking's end plus the machine's buffer), or None.

    A check step for a writer that names the clash in its own refusal (``machine_busy``): run it in
    the writer's transaction, after its lock; :func:`insert_booking` catches what it cannot see.
    """
    return _overlapping(machine, start, blocked_until).order_by("start").first()


def _overlap_code(machine: Machine, member, start: dt.datetime, blocked_until: dt.datetime) -> str:
    """``already_booked_by_you`` when one of the overlapping bookings is the member's own, else ``slot_taken``.

    A member's repeated request (a double click, a retry) must not be told that someone else has the time.
    """
    if _overlapping(machine, start, blocked_until).filter(member_id=member.pk).exists():
        return "already_booked_by_you"
    return "slot_taken"


def check_certification(machine: Machine, member, end: dt.datetime, *, for_manager: bool = False) -> None:
    """The member holds an unrevoked certification for the machine's training, valid until ``end``.

    ``for_manager`` words the refusal for the manager deciding on someone else's booking.
    """
    if machine.required_training_id is None:
        return
    certs = Certification.objects.filter(
        member=member, training_id=machine.required_training_id, revoked_at=None
    )
    if not certs.exists():
        raise BookingError(
            "not_certified",
            _("The member no longer has the training this machine needs.") if for_manager else None,
        )
    # The certification must still hold when the booking ends.
    if not certs.filter(Q(expires_at__isnull=True) | Q(expires_at__gte=end)).exists():
        raise BookingError(
            "certification_expired",
            _(
                "The member's certification for this machine has expired or expires before the end of this booking."
            )
            if for_manager
            else None,
        )


def _check_timing(
    machine: Machine, start: dt.datetime, end: dt.datetime, now: dt.datetime, *, from_waitlist: bool = False
) -> None:
    tz = machine.lab.tz
    if from_waitlist:
        if end <= now:
            raise BookingError("in_past")
    else:
        if start < now:
            raise BookingError("in_past")
        if start < now + dt.timedelta(minutes=machine.min_notice_minutes):
            raise BookingError("too_soon")
        last_day = timezone.localtime(now, tz).date() + dt.timedelta(days=machine.max_days_ahead)
        if timezone.localtime(start, tz).date() > last_day:
            raise BookingError("too_far_ahead")
    slot = machine.slot_minutes
    for moment in (start, end):
        local = timezone.localtime(moment, tz)
        if local.second or local.microsecond or (local.hour * 60 + local.minute) % slot:
            raise BookingError("bad_granularity")
    minutes = (end - start).total_seconds() / 60
    if minutes < machine.min_duration_minutes:
        raise BookingError("too_short")
    if minutes > machine.max_duration_minutes:
        raise BookingError("too_long")


def check_opening_hours(machine: Machine, start: dt.datetime, end: dt.datetime) -> None:
    """``[start, end)`` (aware) lies within one of the lab's opening intervals of its day, or, for a
    machine bookable around the clock, touches no day the lab is closed.

    Raises ``lab_closed`` or ``outside_opening_hours``. A check step: run it in the writer's
    transaction, after its lock.
    """
    lab = machine.lab
    day = timezone.localtime(start, lab.tz).date()
    if machine.bookable_around_the_clock:
        # Any hour, across midnight too; only a closure on a day the booking touches refuses it.
        last = timezone.localtime(end - dt.timedelta(microseconds=1), lab.tz).date()
        if lab.closures.filter(starts_on__lte=last, ends_on__gte=day).exists():
            raise BookingError("lab_closed")
        return
    intervals = lab.opening_intervals(day)
    if not intervals and lab.closures.filter(starts_on__lte=day, ends_on__gte=day).exists():
        raise BookingError("lab_closed")
    if not any(opens <= start and end <= closes for opens, closes in intervals):
        raise BookingError("outside_opening_hours")


def quota_policy_for(machine: Machine) -> QuotaPolicy | None:
    policies = QuotaPolicy.objects.filter(machine_type_id=machine.machine_type_id).filter(
        Q(lab_id=machine.lab_id) | Q(lab__isnull=True)
    )
    # A lab's own policy wins over the general one.
    return sorted(policies, key=lambda p: p.lab_id is None)[0] if policies else None


def _check_quota(machine: Machine, member, start: dt.datetime, end: dt.datetime, now: dt.datetime) -> None:
    policy = quota_policy_for(machine)
    if policy is None:
        return
    scope = Booking.objects.filter(
        member=member, machine__machine_type_id=machine.machine_type_id, status__in=Booking.ACTIVE
    )
    if policy.lab_id is not None:
        scope = scope.filter(machine__lab_id=policy.lab_id)
    if policy.max_future_bookings is not None:
        upcoming = scope.filter(status__in=Booking.CANCELLABLE, end__gt=now).count()
        if upcoming >= policy.max_future_bookings:
            raise BookingError("too_many_bookings")
    if policy.max_hours_per_week is not None:
        week_start, week_end = _local_week(start, machine.lab.tz)
        booked = sum(
            (
                (b_end - b_start).total_seconds()
                for b_start, b_end in scope.filter(start__gte=week_start, start__lt=week_end).values_list(
                    "start", "end"
                )
            ),
            0.0,
        )
        hours = Decimal(str((booked + (end - start).total_seconds()) / 3600))
        if hours > policy.max_hours_per_week:
            raise BookingError("quota_exceeded")


def _local_week(moment: dt.datetime, tz) -> tuple[dt.datetime, dt.datetime]:
    """Monday 00:00 to the next Monday 00:00, lab-local, as aware datetimes."""
    local_day = timezone.localtime(moment, tz).date()
    monday = local_day - dt.timedelta(days=local_day.weekday())
    start = dt.datetime.combine(monday, dt.time(0), tzinfo=tz)
    end = dt.datetime.combine(monday + dt.timedelta(days=7), dt.time(0), tzinfo=tz)
    return start, end


def booking_cancel(*, booking: Booking, by, now: dt.datetime | None = None) -> Booking:
    """Cancel a pending or confirmed booking, as its member (before it starts) or a lab manager."""
    now = now or timezone.now()
    with transaction.atomic():
        booking = Booking.objects.select_for_update().select_related("machine").get(pk=booking.pk)
        is_manager = roles.manages_lab(by, booking.machine.lab_id)
        if booking.member_id != by.pk and not is_manager:
            raise BookingError("forbidden")
        if not booking.is_cancellable or (not is_manager and booking.start <= now):
            raise BookingError("not_cancellable")
        booking.status = Booking.Status.CANCELLED
        booking.cancelled_at = now
        booking.cancelled_by = by
        booking.cancel_reason = (
            Booking.CancelReason.MEMBER if booking.member_id == by.pk else Booking.CancelReason.MANAGER
        )
        booking.save(update_fields=["status", "cancelled_at", "cancelled_by", "cancel_reason", "updated_at"])
        release_cancelled(booking, now)
        notify_on_commit(booking, "cancelled")
    return booking


def booking_approve(*, booking: Booking, by, now: dt.datetime | None = None) -> Booking:
    """A lab manager confirms a pending booking."""
    return _decide(booking=booking, by=by, approve=True, now=now or timezone.now())


def booking_decline(*, booking: Booking, by, now: dt.datetime | None = None) -> Booking:
    """A lab manager declines a pending booking, which frees its slot."""
    return _decide(booking=booking, by=by, approve=False, now=now or timezone.now())


def _decide(*, booking: Booking, by, approve: bool, now: dt.datetime) -> Booking:
    with transaction.atomic():
        booking = Booking.objects.select_for_update().select_related("machine").get(pk=booking.pk)
        if not roles.manages_lab(by, booking.machine.lab_id):
            raise BookingError("forbidden")
        if booking.status != Booking.Status.PENDING:
            raise BookingError("not_pending")
        if approve:
            # The certification may have been revoked, or may now expire before the
            # booking ends, since the member asked: check it again, under the lock.
            check_certification(booking.machine, booking.member, booking.end, for_manager=True)
        booking.decided_by = by
        booking.decided_at = now
        fields = ["status", "decided_by", "decided_at", "updated_at"]
        if approve:
            booking.status = Booking.Status.CONFIRMED
        else:
            booking.status = Booking.Status.CANCELLED
            booking.cancelled_at = now
            booking.cancelled_by = by
            booking.cancel_reason = Booking.CancelReason.DECLINED
            fields += ["cancelled_at", "cancelled_by", "cancel_reason"]
        booking.save(update_fields=fields)
        if not approve:
            release_cancelled(booking, now)
        notify_on_commit(booking, "approved" if approve else "declined")
    return booking


def release_cancelled(booking: Booking, now: dt.datetime) -> None:
    """The time a cancelled booking blocked, from the next slot boundary, goes to the waitlist.

    Call it in the cancelling transaction, once the booking is saved cancelled: the freed time is
    recorded only if the cancellation commits, and offered after the commit. Raises nothing.
    """
    freed.release(
        machine=booking.machine,
        start=booking.start,
        end=booking.blocked_until,
        reason=FreedTime.Reason.CANCELLED,
        now=now,
        booking=booking,
    )


#: The email kind of each write, and the :data:`~fablab.booking.signals.booking_changed` change it makes.
_CHANGES = {
    "confirmed": "created",
    "requested": "created",
    "approved": "approved",
    "declined": "cancelled",
    "cancelled": "cancelled",
}


def notify_on_commit(booking: Booking, kind: str) -> None:
    """After the commit: the member's email, and the signal the machine side follows (interlock, board).

    ``kind`` is a key of :data:`_CHANGES`. Call it in the writing transaction, last: nothing is sent
    if it rolls back. Raises nothing.
    """
    from .emails import send_booking_email
    from .signals import booking_changed

    def follow_up() -> None:
        send_booking_email(booking, kind)
        booking_changed.send(
            sender=Booking, booking_id=booking.pk, machine_id=booking.machine_id, change=_CHANGES[kind]
        )

    transaction.on_commit(follow_up)
