"""Strikes: a lab's answer to members who keep not showing up.

A *strike* is one of a member's bookings in a lab that

* became a ``no_show`` (a booking whose machine was unavailable at the start never does:
  :func:`fablab.booking.lifecycle.mark_no_show` leaves those alone), or
* was cancelled by the member within ``lab.late_cancel_hours`` of its start (when the lab counts
  late cancellations, i.e. that setting is above 0),

and whose strike no manager has waived (:class:`~fablab.booking.models.StrikeWaiver`, audited).

The policy is the lab's: ``strike_limit`` strikes within ``strike_window_days`` block new bookings
in that lab for ``strike_block_days`` from the strike that reached the limit. The block is computed
from the rows each time (nothing to expire, nothing to forget): waiving a strike lifts a block it
caused at once. ``strike_limit = 0`` switches the policy off.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from fablab.labs.models import Lab
from fablab.members import roles

from .errors import BookingError
from .models import Booking, StrikeWaiver


@dataclasses.dataclass(frozen=True)
class Strike:
    booking: Booking
    #: When it counted: the no-show deadline passing (``released_at``) or the late cancellation.
    at: dt.datetime
    kind: str  # "no_show" or "late_cancel"
    waiver: StrikeWaiver | None


def strikes(member, lab: Lab, *, since: dt.datetime | None = None, with_waived: bool = False) -> list[Strike]:
    """The member's strikes in ``lab`` (oldest first), from ``since`` if given."""
    q = Q(status=Booking.Status.NO_SHOW)
    if lab.late_cancel_hours:
        q |= Q(status=Booking.Status.CANCELLED, cancel_reason=Booking.CancelReason.MEMBER)
    rows = (
        Booking.objects.filter(q, member=member, machine__lab=lab, kind=Booking.Kind.MEMBER)
        .select_related("machine", "strike_waiver__by")
        .order_by("start")
    )
    if since is not None:
        rows = rows.filter(Q(released_at__gte=since) | Q(cancelled_at__gte=since))
    late = dt.timedelta(hours=lab.late_cancel_hours)
    result = []
    for b in rows:
        if b.status == Booking.Status.NO_SHOW:
            at, kind = b.released_at or b.start, "no_show"
        elif b.cancelled_at is not None and b.start - b.cancelled_at < late:
            at, kind = b.cancelled_at, "late_cancel"
        else:
            continue
        waiver = getattr(b, "strike_waiver", None)
        if waiver is None or with_waived:
            result.append(Strike(b, at, kind, waiver))
    result.sort(key=lambda s: s.at)
    return result


def blocked_until(member, lab: Lab, now: dt.datetime) -> dt.datetime | None:
    """Until when the member may not book in ``lab`` (None: not blocked).

    Blocked from the strike that brought the count within ``strike_window_days`` to
    ``strike_limit``, for ``strike_block_days``; the latest such block that has not ended counts.
    """
    if not lab.strike_limit:
        return None
    window = dt.timedelta(days=lab.strike_window_days)
    block = dt.timedelta(days=lab.strike_block_days)
    counted = [s.at for s in strikes(member, lab, since=now - window - block)]
    until = None
    for i, at in enumerate(counted):
        if at > now:
            break
        within = [t for t in counted[: i + 1] if t > at - window]
        if len(within) >= lab.strike_limit and at + block > now:
            until = at + block
    return until


def check_not_blocked(member, lab: Lab, now: dt.datetime) -> None:
    """Raise ``no_show_blocked``, saying until when, if the member is blocked in ``lab``."""
    until = blocked_until(member, lab, now)
    if until is not None:
        from django.utils.formats import date_format
        from django.utils.translation import gettext as _

        local = timezone.localtime(until, lab.tz)
        raise BookingError(
            "no_show_blocked",
            _("Because of missed bookings you cannot make new bookings in this lab until %(until)s.")
            % {"until": date_format(local, "DATETIME_FORMAT")},
        )


def waive(*, booking: Booking, by, reason: str, now: dt.datetime | None = None) -> StrikeWaiver:
    """A manager of the booking's lab waives its strike, with a reason (kept; never edited)."""
    now = now or timezone.now()
    reason = reason.strip()
    if not reason:
        raise ValueError("a waiver needs a reason")
    with transaction.atomic():
        booking = Booking.objects.select_related("machine__lab").get(pk=booking.pk)
        if not roles.manages_lab(by, booking.machine.lab_id):
            raise BookingError("forbidden")
        lab = booking.machine.lab
        if not any(s.booking.pk == booking.pk for s in strikes(booking.member, lab)):
            raise BookingError("not_waivable")
        try:
            with transaction.atomic():
                return StrikeWaiver.objects.create(booking=booking, by=by, reason=reason[:300], at=now)
        except IntegrityError as exc:  # waived concurrently
            raise BookingError("not_waivable") from exc
