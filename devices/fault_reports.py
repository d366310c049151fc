"""A member's fault report ("the nozzle is clogged") becomes a ``fault_reported`` alert for the managers.

:func:`fablab.booking.lifecycle.finish` keeps the member's one line in ``Booking.fault_report`` and,
after the commit, sends :data:`~fablab.booking.signals.booking_changed` with ``completed``;
:func:`devices.follow.follow` passes the completed bookings here (a batch at a time: one query
whatever their number, and none more when no booking carries a fault).

One alert per machine: the database allows one open alert per machine and kind. The first report
opens it, naming its booking; a report while it is still open is *appended* to its message (a
manager reading the alert sees every member's line, not only the first), each line prefixed
``#<booking id> <member>:`` so that it can be found on the booking. Following a booking again (the
signal is sent again when a member adds a line on a second "I'm done", or twice by two processes)
adds nothing: a line whose prefix is already in the open alert is not appended twice. The message
is capped at the column's 500 characters; lines past that are still on their bookings.

The message is the member's own words, stored as typed: it is not translated.

Nothing about the machine's state says a fault is gone, so the alert is closed by people, in one of
three ways: a lab manager marks it resolved (:func:`resolve`: the "Care" section of the machine's page,
the care API), records a service on the machine (:func:`close_reported_before`, from
:func:`devices.care.record_service`), or puts the machine back in service (the same,
from :data:`fablab.booking.signals.machine_back_in_service` through :mod:`devices.follow`). The last two
close the reports made before that moment. The alert keeps when it was closed (``cleared_at``); who
closed it, and how, is in the log (the alert has no column for it). After the commit the machine's card
on the floor board is read again (:func:`devices.live.push_booking_change`), so the alert leaves it at
once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable
from functools import partial

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F, QuerySet, Value
from django.db.models.functions import Concat, Substr
from django.utils import timezone
from django.utils.translation import gettext as _

from devices import alerts, live
from devices.models import Alert
from fablab.booking.models import Booking
from fablab.members import roles

log = logging.getLogger(__name__)

#: ``Alert.message``'s length.
MESSAGE_MAX = 500
SEPARATOR = " | "


def prefix(booking: Booking) -> str:
    """``#<id> <member>:``: which booking a line of the alert comes from."""
    member = booking.member
    name = (member.get_full_name() or member.get_username()) if member is not None else ""
    return f"#{booking.pk} {name}:" if name else f"#{booking.pk}:"


def raise_for_bookings(booking_ids: Iterable[int], now: dt.datetime | None = None) -> int:
    """Raise or extend the ``fault_reported`` alert of every completed booking in ``booking_ids`` that
    carries a fault line; return how many lines were added (0 when all were reported already)."""
    ids = sorted(set(booking_ids))
    if not ids:
        return 0
    now = now or timezone.now()
    rows = (
        Booking.objects.filter(pk__in=ids, status=Booking.Status.COMPLETED)
        .exclude(fault_report="")
        .select_related("member")
        .order_by("completed_at", "pk")
    )
    return sum(report(booking, now) for booking in rows)


def report(booking: Booking, now: dt.datetime) -> bool:
    """Open the machine's ``fault_reported`` alert with this booking's line, or append the line to the
    open one; True when the line was added by this call.

    Races: opening is a claim (:func:`devices.alerts.raise_alert`); appending is one conditional
    ``UPDATE`` on the open alert that does not hold this booking's prefix yet. If the open alert is
    cleared between the two, the claim is tried again (at most three rounds: each round only fails
    because another process changed the alert, which cannot go on for ever).
    """
    head = prefix(booking)
    line = f"{head} {booking.fault_report}"
    for _attempt in range(3):
        if alerts.raise_alert(
            booking.machine_id, Alert.Kind.FAULT_REPORTED, line, now, booking_id=booking.pk
        ):
            return True
        open_alert = Alert.objects.filter(
            machine_id=booking.machine_id, kind=Alert.Kind.FAULT_REPORTED, cleared_at__isnull=True
        )
        if open_alert.filter(message__contains=head).exists():
            return False
        appended = open_alert.exclude(message__contains=head).update(
            message=Substr(Concat(F("message"), Value(SEPARATOR + line)), 1, MESSAGE_MAX)
        )
        if appended:
            return True
    log.warning("could not report the fault of booking %s: its alert kept changing", booking.pk)
    return False


# ----------------------------------------------------------------------------------- reading, closing


@dataclasses.dataclass(frozen=True)
class OpenReport:
    """A machine's open ``fault_reported`` alert as its managers read it: one line per member's report."""

    alert_id: int
    raised_at: dt.datetime
    #: The booking of the first report.
    booking_id: int | None
    lines: list[str]


def open_report(machine_id: int) -> OpenReport | None:
    """The machine's open fault report, or None when no fault is reported."""
    alert = Alert.objects.filter(
        machine_id=machine_id, kind=Alert.Kind.FAULT_REPORTED, cleared_at__isnull=True
    ).first()
    if alert is None:
        return None
    return OpenReport(
        alert_id=alert.pk,
        raised_at=alert.raised_at,
        booking_id=alert.booking_id,
        lines=alert.message.split(SEPARATOR) if alert.message else [],
    )


def resolve(alert: Alert, by, now: dt.datetime | None = None) -> bool:
    """``by`` marks the fault report ``alert`` dealt with: it closes at ``now``; True when this call closed it.

    Only the managers of the machine's lab may (else :class:`PermissionDenied`, nothing written). The
    alert is named by its id, so a manager who read it never closes the one a member opens after it was
    closed; an alert already closed stays as it was (False).
    """
    if not roles.manages_lab(by, alert.machine.lab_id):
        raise PermissionDenied(_("Only the lab's managers may resolve a fault report."))
    return _close(Alert.objects.filter(pk=alert.pk), now or timezone.now(), by, "resolved")


#: Why a fault report closed without a manager's click: a service recorded, or out of service ended.
SERVICE_RECORDED = "service recorded"
BACK_IN_SERVICE = "back in service"


def close_reported_before(machine_id: int, at: dt.datetime, by, *, how: str) -> bool:
    """The manager ``by`` saw to the machine at ``at`` (``how``: :data:`SERVICE_RECORDED` or
    :data:`BACK_IN_SERVICE`): the fault report opened before that moment closes; True when one was
    open. A report opened after ``at`` (a second click on the same service) stays open."""
    return _close(Alert.objects.filter(machine_id=machine_id, raised_at__lte=at), at, by, how)


def _close(candidates: QuerySet[Alert], at: dt.datetime, by, how: str) -> bool:
    """Close the open fault report among ``candidates`` (a conditional UPDATE), log who closed it and,
    after the commit, have the machine's card on the board read again."""
    open_reports = candidates.filter(kind=Alert.Kind.FAULT_REPORTED, cleared_at__isnull=True)
    row = open_reports.values_list("pk", "machine_id").first()
    if row is None or not open_reports.filter(pk=row[0]).update(cleared_at=at):
        return False
    log.info(
        "fault report alert %s of machine %s closed (%s) by user id %s", *row, how, getattr(by, "pk", None)
    )
    # Robust: the board is best effort, and a failed push must not fail the close that committed.
    transaction.on_commit(partial(live.push_booking_change, machine_id=row[1]), robust=True)
    return True
