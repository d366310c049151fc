"""Strikes: a lab's answer to members who keep not showing up.

A *strike* is one of a member's bookings in a lab that

* became a ``no_show``. A booking whose machine was unavailable at the start never does
  (:func:`fablab.booking.lifecycle.mark_no_show` leaves those alone), and a no-show row that
  nonetheless carries ``unavailable`` is not counted either; or
* was cancelled by the member within ``lab.late_cancel_hours`` of its start (when the lab counts
  late cancellations, i.e. that setting is above 0), unless a maintenance window (planned or a
  breakdown) covered its start: cancelling a booking the machine could not serve is no fault;

and whose strike no manager has waived (:class:`~fablab.booking.models.StrikeWaiver`, audited,
never edited).

The policy is the lab's: ``strike_limit`` strikes within ``strike_window_days`` block new bookings
in that lab for ``strike_block_days`` from the strike that reached the limit. The window rolls: a
strike counts for ``strike_window_days`` from when it happened, whether or not it already helped
cause a block, so a member who keeps missing bookings right after a block ends is blocked again.
A strike that comes while the member is blocked, with the limit still reached, extends the block
from itself. The block is computed from the rows each time (nothing to expire, nothing to forget):
waiving a strike lifts a block it caused at once. ``strike_limit = 0`` switches the policy off.

When a strike counts: a no-show when it was marked (``released_at``, the scheduler's pass at the
no-show deadline), a late cancellation when it was made (``cancelled_at``). A block ends exactly at
``that moment + strike_block_days``: from then on the member may book again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from fablab.labs.models import Lab, MaintenanceWindow
from fablab.members import roles

from .errors import BookingError
from .models import Booking, StrikeWaiver

NO_SHOW, LATE_CANCEL = "no_show", "late_cancel"
#: A waiver's reason: ``StrikeWaiver.reason``'s length.
REASON_MAX = 300
#: The longest a strike can matter (the largest window plus the largest block the fields allow).
MAX_HORIZON = dt.timedelta(days=366 + 366)


@dataclasses.dataclass(frozen=True)
class Strike:
    booking: Booking
    #: When it counted: the no-show marked (``released_at``) or the late cancellation made.
    at: dt.datetime
    kind: str  # NO_SHOW or LATE_CANCEL
    waiver: StrikeWaiver | None


def _candidates(lab: Lab, *, since: dt.datetime | None = None):
    """The lab's member bookings that may be strikes (one query; :func:`_strikes_of` decides)."""
    q = Q(status=Booking.Status.NO_SHOW, unavailable="")
    if lab.late_cancel_hours:
        covered = MaintenanceWindow.objects.filter(
            machine=OuterRef("machine"), start__lte=OuterRef("start"), end__gt=OuterRef("start")
        )
        q |= Q(~Exists(covered), status=Booking.Status.CANCELLED, cancel_reason=Booking.CancelReason.MEMBER)
    rows = Booking.objects.filter(q, machine__lab=lab, kind=Booking.Kind.MEMBER)
    if since is not None:
        rows = rows.filter(
            Q(released_at__gte=since)
            | Q(status=Booking.Status.NO_SHOW, released_at__isnull=True, start__gte=since)
            | Q(cancelled_at__gte=since)
        )
    return rows.select_related("machine", "strike_waiver__by").order_by("start", "pk")


def _strikes_of(rows: Iterable[Booking], lab: Lab, *, with_waived: bool = False) -> list[Strike]:
    late = dt.timedelta(hours=lab.late_cancel_hours)
    result = []
    for b in rows:
        if b.status == Booking.Status.NO_SHOW:
            at, kind = b.released_at or b.start, NO_SHOW
        elif b.cancelled_at is not None and b.start - b.cancelled_at < late:
            at, kind = b.cancelled_at, LATE_CANCEL
        else:
            continue
        waiver = getattr(b, "strike_waiver", None)
        if waiver is None or with_waived:
            result.append(Strike(b, at, kind, waiver))
    result.sort(key=lambda s: (s.at, s.booking.pk))
    return result


def strikes(member, lab: Lab, *, since: dt.datetime | None = None, with_waived: bool = False) -> list[Strike]:
    """The member's strikes in ``lab`` (oldest first), from ``since`` if given; waived ones on request."""
    return _strikes_of(_candidates(lab, since=since).filter(member=member), lab, with_waived=with_waived)


def _block_until(ats: list[dt.datetime], lab: Lab, now: dt.datetime) -> dt.datetime | None:
    """The block the unwaived strikes at ``ats`` (sorted) put on at ``now``, if any (see the module)."""
    if not lab.strike_limit:
        return None
    window = dt.timedelta(days=lab.strike_window_days)
    block = dt.timedelta(days=lab.strike_block_days)
    until = None
    for i, at in enumerate(ats):
        if at > now:
            break
        within = [t for t in ats[: i + 1] if t > at - window]
        if len(within) >= lab.strike_limit and at + block > now:
            until = at + block
    return until


def _since(lab: Lab, now: dt.datetime) -> dt.datetime:
    """Strikes older than this cannot block anyone at ``now``."""
    return now - dt.timedelta(days=lab.strike_window_days + lab.strike_block_days)


def blocked_until(member, lab: Lab, now: dt.datetime) -> dt.datetime | None:
    """Until when the member may not book in ``lab`` (None: not blocked).

    Blocked from the strike that brought the count within ``strike_window_days`` to
    ``strike_limit``, for ``strike_block_days``; the latest such block that has not ended counts.
    """
    if not lab.strike_limit:
        return None
    return _block_until([s.at for s in strikes(member, lab, since=_since(lab, now))], lab, now)


def local_moment(moment: dt.datetime, lab: Lab) -> str:
    """``moment`` as the lab's local date and time, in the active language."""
    return date_format(timezone.localtime(moment, lab.tz), "DATETIME_FORMAT")


def check_not_blocked(member, lab: Lab, now: dt.datetime) -> None:
    """Raise ``no_show_blocked``, saying until when (lab-local), if the member is blocked in ``lab``."""
    until = blocked_until(member, lab, now)
    if until is not None:
        raise BookingError(
            "no_show_blocked",
            _("Because of missed bookings you cannot make new bookings in this lab until %(until)s.")
            % {"until": local_moment(until, lab)},
        )


def blocks_for(member, now: dt.datetime) -> list[tuple[Lab, dt.datetime]]:
    """Every lab where ``member`` is blocked at ``now``, with until when, by lab name.

    For the member's bookings page (``booking/_strike_notice.html``): one query for the labs where
    the member has recent candidate bookings, then the rule per such lab (usually none or one).
    """
    recent = Q(released_at__gte=now - MAX_HORIZON) | Q(cancelled_at__gte=now - MAX_HORIZON)
    lab_ids = (
        Booking.objects.filter(
            recent,
            member=member,
            kind=Booking.Kind.MEMBER,
            status__in=(Booking.Status.NO_SHOW, Booking.Status.CANCELLED),
        )
        .values_list("machine__lab", flat=True)
        .distinct()
    )
    result = []
    for lab in Lab.objects.filter(pk__in=list(lab_ids), strike_limit__gt=0).order_by("name"):
        until = blocked_until(member, lab, now)
        if until is not None:
            result.append((lab, until))
    return result


@dataclasses.dataclass(frozen=True)
class MemberStrikes:
    """One row of the manager's strikes page."""

    member: object
    #: Unwaived strikes within the lab's window (now).
    count: int
    blocked_until: dt.datetime | None
    last: dt.datetime


def members_with_strikes(lab: Lab, now: dt.datetime) -> list[MemberStrikes]:
    """The lab's members with an unwaived strike that can still matter (within the window plus the
    block), most recent strike first. One query whatever their number."""
    rows = _candidates(lab, since=_since(lab, now)).select_related("member")
    by_member: dict[int, list[Booking]] = {}
    for b in rows:
        by_member.setdefault(b.member_id, []).append(b)
    window = dt.timedelta(days=lab.strike_window_days)
    result = []
    for bookings in by_member.values():
        found = [s for s in _strikes_of(bookings, lab) if s.at <= now]
        if not found:
            continue
        ats = [s.at for s in found]
        result.append(
            MemberStrikes(
                member=bookings[0].member,
                count=sum(1 for t in ats if t > now - window),
                blocked_until=_block_until(ats, lab, now),
                last=ats[-1],
            )
        )
    result.sort(key=lambda m: m.last, reverse=True)
    return result


def waive(*, booking: Booking, by, reason: str, now: dt.datetime | None = None) -> StrikeWaiver:
    """A manager of the booking's lab waives its strike, with a reason (kept; never edited).

    Raises ``forbidden`` (not a manager of that lab), ``not_waivable`` (not a strike, or already
    waived, also by a concurrent request: the one-to-one row decides) and ``ValueError`` for a reason
    that is empty or longer than :data:`REASON_MAX` (the caller's form refuses those first).
    """
    now = now or timezone.now()
    reason = " ".join((reason or "").split())
    if not reason:
        raise ValueError("a waiver needs a reason")
    if len(reason) > REASON_MAX:
        raise ValueError(f"a waiver reason of {len(reason)} characters")
    with transaction.atomic():
        booking = Booking.objects.select_related("machine__lab", "member").get(pk=booking.pk)
        if not roles.manages_lab(by, booking.machine.lab_id):
            raise BookingError("forbidden")
        lab = booking.machine.lab
        if booking.member is None or not any(
            s.booking.pk == booking.pk for s in strikes(booking.member, lab)
        ):
            raise BookingError("not_waivable")
        try:
            with transaction.atomic():
                return StrikeWaiver.objects.create(booking=booking, by=by, reason=reason, at=now)
        except IntegrityError as exc:  # waived concurrently
            raise BookingError("not_waivable") from exc


def notify_if_blocked(booking_id: int, now: dt.datetime) -> bool:
    """After a no-show commits: if that strike is the one that blocks its member, tell them until when.

    Sent once per block-causing strike: only when the block now in force starts at this booking's
    strike. True when an email went out.
    """
    booking = Booking.objects.select_related("machine__lab", "member").filter(pk=booking_id).first()
    if booking is None or booking.member is None or booking.status != Booking.Status.NO_SHOW:
        return False
    lab = booking.machine.lab
    until = blocked_until(booking.member, lab, now)
    at = booking.released_at or booking.start
    if until is None or until != at + dt.timedelta(days=lab.strike_block_days):
        return False
    from .emails import send_member_email

    return send_member_email(
        booking.member,
        lab=lab,
        template="booking/email/strike_block.txt",
        subject=lambda: _("You cannot book in %(lab)s for a while") % {"lab": lab.name},
        context={
            "booking": booking,
            "until": until,
            "limit": lab.strike_limit,
            "days": lab.strike_window_days,
        },
        what=f"the strike block email for booking {booking.pk}",
    )
